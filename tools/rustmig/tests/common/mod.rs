// SPDX-License-Identifier: GPL-2.0

//! What the integration tests share: the binary, scratch directories and sample streams.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use rustmig_inspect::sample::{self, Sample};

pub const BIN: &str = env!("CARGO_BIN_EXE_rustmig");

/// ivshmem C and D, as the VM has them: 8 bytes of registers and 1 MiB of shared memory.
pub const DESC_C: &str = "format=1.1 backend=ivshmem/1.0 pci=1af4:1110 subsystem=1af4:1100 class_rev=0x05000001 state_size=1048584";
pub const DESC_D: &str = DESC_C;
/// QEMU's edu: 12 registers (4 of 32 bits, 4 of 64 bits).
pub const DESC_EDU: &str = "format=1.0 backend=edu/1.0 pci=1234:11e8 subsystem=1af4:1100 class_rev=0x00ff0010 state_size=48";

/// A device's `migration_compat` as the driver prints it for the stream descriptor `desc`
/// (a 1.1 save): a save that starts in PRE_COPY uses 2.1, and it loads versions 1 and 2.
pub fn sysfs(desc: &str) -> String {
    desc.replacen("format=1.1 ", "format=2.1 loads=1,2 ", 1)
}

/// The stream that ivshmem C saves.
pub fn stream_c() -> Sample {
    sample::stream(DESC_C, &[(1, 8), (2, 1 << 20)], |tag, o| {
        (o.wrapping_mul(31) >> 3) as u8 ^ tag as u8
    })
    .expect("a valid sample")
}

/// Returns an empty scratch directory of this test.
pub fn scratch(name: &str) -> PathBuf {
    let d = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = fs::remove_dir_all(&d);
    fs::create_dir_all(&d).expect("a scratch directory");
    d
}

/// What running a command gave.
pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn last_line(&self) -> &str {
        self.stdout.lines().last().unwrap_or("")
    }
}

/// Runs `program` with `args`, `stdin` as its input.
pub fn run_with<S: AsRef<OsStr>>(program: &str, args: &[S], stdin: &[u8]) -> Run {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    let mut input = child.stdin.take().expect("a stdin pipe");
    // The program may exit before reading it all.
    let _ = input.write_all(stdin);
    drop(input);
    let out = child.wait_with_output().expect("the program's output");
    Run {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs rustmig.
pub fn inspect<S: AsRef<OsStr>>(args: &[S]) -> Run {
    run_with(BIN, args, &[])
}
