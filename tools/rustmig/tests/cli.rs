// SPDX-License-Identifier: GPL-2.0

//! The rustmig binary on streams built with the driver's encoder.

mod common;

use std::ffi::OsStr;
use std::fs;

use common::*;

#[test]
fn a_valid_stream_is_complete() {
    let d = scratch("cli-valid");
    let s = stream_c();
    let f = d.join("stream-c.bin");
    fs::write(&f, &s.bytes).unwrap();
    let r = inspect(&[OsStr::new("inspect"), f.as_os_str()]);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert!(r.stderr.is_empty());
    // The registers, 16 records of memory and the end record.
    assert_eq!(s.records.len(), 18);
    let records = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("record at "))
        .count();
    assert_eq!(records, 17);
    assert!(r.stdout.contains(&format!("  descriptor: {DESC_C}\n")));
    assert!(r
        .stdout
        .contains("tag 2 (mem): 16 records, 1048576 bytes of data\n"));
    assert_eq!(
        r.last_line(),
        format!(
            "complete: {} bytes, 17 records and the end record, 1048584 bytes of state",
            s.bytes.len()
        )
    );
    // From the standard input too.
    let piped = run_with(BIN, &["inspect", "-"], &s.bytes);
    assert_eq!(piped.code, 0);
    assert_eq!(piped.stdout, r.stdout);
}

#[test]
fn a_flipped_payload_byte_is_refused_with_ebadmsg() {
    let d = scratch("cli-flipped");
    let s = stream_c();
    let rec = s.records[s.records.len() / 2];
    let mut v = s.bytes.clone();
    v[(rec.offset + 16 + u64::from(rec.len) / 2) as usize] ^= 0x20;
    let f = d.join("flipped.bin");
    fs::write(&f, &v).unwrap();
    let r = inspect(&[OsStr::new("inspect"), f.as_os_str()]);
    assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
    let want = format!(
        "refused: EBADMSG at offset {}: record tag 2 flags 0x1 len 65544: its crc ",
        rec.offset
    );
    assert!(r.last_line().starts_with(&want), "{}", r.stdout);
    // Only the records before it were reported.
    let records = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("record at "))
        .count();
    assert_eq!(records, s.records.len() / 2);
}

#[test]
fn a_truncated_stream_is_incomplete() {
    let d = scratch("cli-truncated");
    let s = stream_c();
    let n = s.bytes.len();
    for cut in [10, 72, n / 2, n - 16, n - 1] {
        let f = d.join(format!("cut-{cut}.bin"));
        fs::write(&f, &s.bytes[..cut]).unwrap();
        let r = inspect(&[OsStr::new("inspect"), f.as_os_str()]);
        assert_eq!(r.code, 1, "{}{}", r.stdout, r.stderr);
        let want = if cut < 72 {
            format!("incomplete: {cut} of at least 72 bytes")
        } else {
            format!("incomplete: {cut} of {n} bytes")
        };
        assert!(r.last_line().starts_with(&want), "{}", r.stdout);
    }
}

#[test]
fn a_bad_magic_is_refused_with_einval() {
    let d = scratch("cli-magic");
    let mut v = stream_c().bytes;
    v[1] ^= 0x01;
    let f = d.join("magic.bin");
    fs::write(&f, &v).unwrap();
    let r = inspect(&[OsStr::new("inspect"), f.as_os_str()]);
    assert_eq!(r.code, 1);
    assert_eq!(
        r.stdout,
        "refused: EINVAL at offset 0: header: bad magic \"RLIG\", not \"RMIG\"\n"
    );
    // Without the magic it is not a stream for the other commands either.
    let r = inspect(&[OsStr::new("descriptor"), f.as_os_str()]);
    assert_eq!(r.code, 2);
    assert!(r.stderr.contains("not a stream"), "{}", r.stderr);
}

#[test]
fn descriptor_prints_the_headers_identity() {
    let d = scratch("cli-descriptor");
    let f = d.join("stream-c.bin");
    fs::write(&f, stream_c().bytes).unwrap();
    let r = inspect(&[OsStr::new("descriptor"), f.as_os_str()]);
    assert_eq!(
        (r.code, r.stdout.as_str()),
        (0, format!("{DESC_C}\n").as_str())
    );
    // A stream whose header is refused.
    let mut v = stream_c().bytes;
    v[20] ^= 1;
    fs::write(&f, &v).unwrap();
    let r = inspect(&[OsStr::new("descriptor"), f.as_os_str()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr
            .contains("stream header refused: EBADMSG: header_crc 0x"),
        "{}",
        r.stderr
    );
}

#[test]
fn compat_of_descriptors_and_streams() {
    let d = scratch("cli-compat");
    let stream = d.join("stream-c.bin");
    fs::write(&stream, stream_c().bytes).unwrap();
    let files = [
        ("c", format!("{DESC_C}\n")),
        ("d", format!("{DESC_D}\n")),
        ("edu", format!("{DESC_EDU}\n")),
        (
            "c-newer",
            format!(
                "{}\n",
                DESC_C
                    .replace("format=1.0", "format=1.2")
                    .replace("/1.0", "/1.5")
            ),
        ),
        (
            "c-bigger",
            format!(
                "{}\n",
                DESC_C.replace("state_size=1048584", "state_size=2097160")
            ),
        ),
    ];
    for (name, text) in &files {
        fs::write(d.join(format!("descriptor-{name}.txt")), text).unwrap();
    }
    let p = |name: &str| d.join(format!("descriptor-{name}.txt"));
    let compat = |a: &std::path::Path, b: &std::path::Path| {
        inspect(&[OsStr::new("compat"), a.as_os_str(), b.as_os_str()])
    };
    let cases = [
        (p("c"), p("d"), 0, "compatible\n"),
        (stream.clone(), p("d"), 0, "compatible\n"),
        (p("d"), stream.clone(), 0, "compatible\n"),
        (stream.clone(), stream.clone(), 0, "compatible\n"),
        (p("c-newer"), stream.clone(), 0, "compatible\n"),
        (
            p("c"),
            p("edu"),
            1,
            "incompatible: backend differs (ivshmem vs edu)\n",
        ),
        (
            stream.clone(),
            p("edu"),
            1,
            "incompatible: backend differs (ivshmem vs edu)\n",
        ),
        (
            stream.clone(),
            p("c-bigger"),
            1,
            "incompatible: state size differs (1048584 vs 2097160)\n",
        ),
    ];
    for (a, b, code, out) in cases {
        let r = compat(&a, &b);
        assert_eq!(
            (r.code, r.stdout.as_str(), r.stderr.as_str()),
            (code, out, ""),
            "{a:?} {b:?}"
        );
    }
}

#[test]
fn malformed_input_and_usage_errors_exit_2() {
    let d = scratch("cli-errors");
    let good = d.join("good.txt");
    fs::write(&good, format!("{DESC_C}\n")).unwrap();
    let bad = [
        (
            "missing-field.txt",
            DESC_C.replace(" class_rev=0x05000001", ""),
            "no class_rev= field",
        ),
        (
            "bad-hex.txt",
            DESC_C.replace("1af4:1110", "1AF4:1110"),
            "pci=1AF4:1110: expected",
        ),
        (
            "two-lines.txt",
            format!("{DESC_C}\n{DESC_C}\n"),
            "more than one line",
        ),
        ("empty.txt", String::new(), "empty"),
    ];
    for (name, text, want) in bad {
        let f = d.join(name);
        fs::write(&f, text).unwrap();
        let r = inspect(&[OsStr::new("compat"), f.as_os_str(), good.as_os_str()]);
        assert_eq!(r.code, 2, "{name}");
        assert!(r.stdout.is_empty());
        assert!(r.stderr.contains(want), "{name}: {}", r.stderr);
    }
    let binary = d.join("binary.bin");
    fs::write(&binary, [0u8, 159, 146, 150]).unwrap();
    let r = inspect(&[OsStr::new("compat"), binary.as_os_str(), good.as_os_str()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("nor a descriptor (not text)"),
        "{}",
        r.stderr
    );
    let cut = d.join("cut.bin");
    fs::write(&cut, &stream_c().bytes[..40]).unwrap();
    let r = inspect(&[OsStr::new("compat"), cut.as_os_str(), good.as_os_str()]);
    assert_eq!(r.code, 2);
    assert!(
        r.stderr.contains("header is cut short: 40 bytes"),
        "{}",
        r.stderr
    );

    let nofile = d.join("no-such-file");
    for args in [
        vec![],
        vec!["frobnicate".into()],
        vec!["inspect".into()],
        vec!["compat".into(), good.clone().into_os_string()],
        vec!["inspect".into(), nofile.clone().into_os_string()],
        vec![
            "compat".into(),
            good.clone().into_os_string(),
            nofile.into_os_string(),
        ],
    ] {
        let r = inspect(&args);
        assert_eq!(r.code, 2, "{args:?}");
        assert!(r.stderr.starts_with("rustmig: "), "{args:?}: {}", r.stderr);
    }
    // --help, alone or after any command, prints the usage of every command.
    for args in [
        &["--help"][..],
        &["save", "--help"],
        &["estimate", "-h"],
        &["preflight", "x", "y", "--help"],
        &["help"],
    ] {
        let r = inspect(args);
        assert_eq!(r.code, 0, "{args:?}");
        assert!(
            r.stdout.starts_with("usage: rustmig COMMAND ARGS...\n"),
            "{args:?}: {}",
            r.stdout
        );
        assert!(r.stdout.contains("estimate DEV --bandwidth"), "{args:?}");
    }
}
