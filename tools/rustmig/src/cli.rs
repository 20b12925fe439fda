// SPDX-License-Identifier: GPL-2.0

//! The command line.

use std::fs::File;
use std::io::{self, Read, Write};

use crate::compat::{self, Verdict};
use crate::descriptor::{self, Descriptor};
use crate::inspect::{self, errno_name, header_refusal, Outcome};
use crate::ops::{self, Progress};
use crate::stream::{DescriptorLine, Header, HEADER_LEN, MAGIC};

const USAGE: &str = "\
usage: rustmig COMMAND ARGS...

On a host's VFIO devices (DEV: a PCI address such as 0000:04:00.0, or an mdev's UUID; the
device must be bound to a VFIO driver and not open elsewhere, e.g. by QEMU):
  list                 the VFIO devices, their driver, whether they are migratable, their
                       migration flags and state size, and for rustmig devices the
                       compatibility descriptor
  state DEV [STATE]    show the device's migration state, or move it to STATE (STOP,
                       RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, PRE_COPY, PRE_COPY_P2P)
                       or `reset` it (VFIO_DEVICE_RESET), and show the state reached; the
                       device is reset again when the command exits
  save DEV FILE        the device's state through STOP_COPY into FILE (the raw stream, which
                       `inspect` reads); the device runs again afterwards. Any VFIO
                       migration driver.
  load DEV FILE        FILE's stream into the device through RESUMING, then RUNNING
  preflight SRC DEV    would DEV accept a stream from the device that SRC describes (a
                       descriptor file, e.g. a copy of the source's migration_compat, or a
                       saved stream)? Prints \"compatible\" (exit 0) or the field that
                       differs (exit 1), without touching either device
  estimate DEV --bandwidth B [--precopy]
                       the bytes STOP_COPY would move now (MIG_DATA_SIZE) and the time at B
                       bytes/s (K, M, G: powers of 1024); with --precopy, also after reading
                       the initial pre-copy data, as a migration's pre-copy does
  save and load print progress every 10% with --progress; --help after any command prints
  this.

On files:
  inspect FILE         read a rustmig migration stream through the driver's parser: print its
                       header, one line per checked record and the counts per tag; exit 0 for
                       a complete, valid stream, 1 for a refused (with the errno and where) or
                       incomplete one
  descriptor FILE      print the compatibility descriptor of a stream's header
  compat A B           can a stream saved from A be loaded into B? A and B are each a
                       descriptor file (a device's migration_compat attribute) or a stream;
                       prints \"compatible\" (exit 0) or \"incompatible: FIELD differs (A vs B)\"
                       (exit 1)

FILE may be - for the standard input (inspect, descriptor, compat). Exit 2: usage error,
unreadable or malformed input, or a device operation that failed (the message says which and
why).
";

/// Every command.
const COMMANDS: [&str; 9] = [
    "inspect",
    "descriptor",
    "compat",
    "list",
    "state",
    "save",
    "load",
    "preflight",
    "estimate",
];

/// Removes `flag` from `args`; returns whether it was there.
fn take_flag(args: &mut Vec<&str>, flag: &str) -> bool {
    let before = args.len();
    args.retain(|a| *a != flag);
    args.len() != before
}

/// The longest descriptor file read.
const MAX_DESCRIPTOR: usize = 4096;

/// Runs the command line `args` (without the program name); returns the exit status.
pub fn run(args: &[String], out: &mut dyn Write, err: &mut dyn Write) -> u8 {
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    // `rustmig COMMAND --help` (or -h) anywhere: the usage, which covers every command.
    if args.iter().any(|a| *a == "--help" || *a == "-h") {
        return match write!(out, "{USAGE}") {
            Ok(()) => 0,
            Err(_) => 2,
        };
    }
    let progress = take_flag(&mut args, "--progress");
    let precopy = take_flag(&mut args, "--precopy");
    let mut p = Progress { out, on: progress };
    let r = match args[..] {
        ["inspect", file] => cmd_inspect(file, p.out),
        ["descriptor", file] => cmd_descriptor(file, p.out),
        ["compat", a, b] => cmd_compat(a, b, p.out),
        ["list"] => ops::list(p.out),
        ["state", dev] => ops::state(dev, None, p.out),
        ["state", dev, to] => ops::state(dev, Some(to), p.out),
        ["save", dev, file] => ops::save(dev, file, &mut p),
        ["load", dev, file] => ops::load(dev, file, &mut p),
        ["preflight", src, dev] => ops::preflight(src, dev, load, p.out),
        ["estimate", dev, "--bandwidth", bw] => {
            ops::parse_bandwidth(bw).and_then(|bw| ops::estimate(dev, bw, precopy, p.out))
        }
        ["help"] => write!(p.out, "{USAGE}")
            .map(|()| 0)
            .map_err(|e| e.to_string()),
        [] => Err(format!("a command is needed\n{USAGE}")),
        [cmd, ..] if COMMANDS.contains(&cmd) => Err(format!("wrong arguments for {cmd}\n{USAGE}")),
        [cmd, ..] => Err(format!("unknown command '{cmd}'\n{USAGE}")),
    };
    match r {
        Ok(code) => code,
        Err(msg) => {
            // Nothing better to do if stderr fails.
            let _ = writeln!(err, "rustmig: {msg}");
            2
        }
    }
}

fn open(path: &str) -> Result<Box<dyn Read>, String> {
    if path == "-" {
        return Ok(Box::new(io::stdin()));
    }
    File::open(path)
        .map(|f| Box::new(f) as Box<dyn Read>)
        .map_err(|e| format!("{path}: {e}"))
}

fn cmd_inspect(path: &str, out: &mut dyn Write) -> Result<u8, String> {
    let mut input = open(path)?;
    match inspect::inspect(&mut input, out, inspect::READ_CHUNK) {
        Ok(Outcome::Complete) => Ok(0),
        Ok(Outcome::Refused(_) | Outcome::Incomplete) => Ok(1),
        // The reader of the report went away (`| head`): nothing to say, and no verdict.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(2),
        Err(e) => Err(format!("{path}: {e}")),
    }
}

fn cmd_descriptor(path: &str, out: &mut dyn Write) -> Result<u8, String> {
    let mut input = open(path)?;
    let head = read_up_to(&mut input, MAGIC.len(), path)?;
    if head != MAGIC {
        return Err(format!("{path}: not a stream: no \"RMIG\" magic"));
    }
    let d = stream_descriptor(head, &mut input, path)?;
    let line = DescriptorLine {
        major: d.format_major,
        minor: d.format_minor,
        loads: &[],
        identity: &d.identity,
    };
    writeln!(out, "{line}").map_err(|e| e.to_string())?;
    Ok(0)
}

fn cmd_compat(a: &str, b: &str, out: &mut dyn Write) -> Result<u8, String> {
    let da = load(a)?;
    let db = load(b)?;
    let v = compat::check(&da, &db)?;
    writeln!(out, "{v}").map_err(|e| e.to_string())?;
    Ok(match v {
        Verdict::Compatible => 0,
        Verdict::Incompatible { .. } => 1,
    })
}

/// Reads a descriptor file, or a stream's header.
fn load(path: &str) -> Result<Descriptor, String> {
    let mut input = open(path)?;
    let mut head = read_up_to(&mut input, MAGIC.len(), path)?;
    if head == MAGIC {
        return stream_descriptor(head, &mut input, path);
    }
    head.extend(read_up_to(
        &mut input,
        MAX_DESCRIPTOR + 1 - head.len(),
        path,
    )?);
    if head.len() > MAX_DESCRIPTOR {
        return Err(format!(
            "{path}: neither a stream (no \"RMIG\" magic) nor a descriptor (longer than \
             {MAX_DESCRIPTOR} bytes)"
        ));
    }
    let text = String::from_utf8(head).map_err(|_| {
        format!("{path}: neither a stream (no \"RMIG\" magic) nor a descriptor (not text)")
    })?;
    descriptor::parse(&text).map_err(|e| format!("{path}: not a descriptor: {e}"))
}

/// Reads the rest of a stream's header, whose first bytes are `head`, and returns its identity.
fn stream_descriptor(
    mut head: Vec<u8>,
    input: &mut dyn Read,
    path: &str,
) -> Result<Descriptor, String> {
    let refused = |head: &[u8], e| {
        format!(
            "{path}: stream header refused: {}: {}",
            errno_name(e),
            header_refusal(head, e)
        )
    };
    head.extend(read_up_to(input, HEADER_LEN - head.len(), path)?);
    if head.len() < HEADER_LEN {
        return Err(format!(
            "{path}: the stream's header is cut short: {} bytes",
            head.len()
        ));
    }
    let header_len = Header::check_start(&head).map_err(|e| refused(&head, e))?;
    head.extend(read_up_to(input, header_len - head.len(), path)?);
    if head.len() < header_len {
        return Err(format!(
            "{path}: the stream's header is cut short: {} of {header_len} bytes",
            head.len()
        ));
    }
    let h = Header::decode(&head).map_err(|e| refused(&head, e))?;
    Ok(Descriptor {
        format_major: h.major,
        format_minor: h.minor,
        loads: 0,
        identity: h.identity,
    })
}

/// Reads `n` bytes, fewer at the end of the input.
fn read_up_to(input: &mut dyn Read, n: usize, path: &str) -> Result<Vec<u8>, String> {
    let mut v = Vec::with_capacity(n);
    input
        .take(n as u64)
        .read_to_end(&mut v)
        .map_err(|e| format!("{path}: {e}"))?;
    Ok(v)
}
