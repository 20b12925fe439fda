// SPDX-License-Identifier: GPL-2.0

//! mk/host-inspect.sh, on a results directory made of sample streams and descriptors.

mod common;

use std::fs;
use std::path::{Path, PathBuf};

use common::*;

fn script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mk/host-inspect.sh")
}

/// Fills `dir` as a 'make check' run does.
fn results(dir: &Path, desc_d: &str) {
    fs::write(dir.join("stream-c.bin"), stream_c().bytes).unwrap();
    fs::write(dir.join("descriptor-c.txt"), format!("{}\n", sysfs(DESC_C))).unwrap();
    fs::write(dir.join("descriptor-d.txt"), format!("{}\n", sysfs(desc_d))).unwrap();
    fs::write(dir.join("descriptor-edu.txt"), format!("{DESC_EDU}\n")).unwrap();
}

/// Runs the script and returns its result and TAP file.
fn host_inspect(dir: &Path, bin: &str) -> (Run, String) {
    let script = script();
    let r = run_with(
        "bash",
        &[script.as_os_str(), dir.as_os_str(), bin.as_ref()],
        &[],
    );
    let tap = fs::read_to_string(dir.join("host-inspect.tap")).unwrap_or_default();
    (r, tap)
}

fn count(tap: &str, prefix: &str) -> usize {
    tap.lines().filter(|l| l.starts_with(prefix)).count()
}

#[test]
fn the_checks_pass_on_a_good_run() {
    let dir = scratch("host-good");
    results(&dir, DESC_D);
    let (r, tap) = host_inspect(&dir, BIN);
    assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
    assert_eq!(count(&tap, "ok "), 7, "{tap}");
    assert_eq!(count(&tap, "not ok "), 0, "{tap}");
    assert!(tap.ends_with("1..7\n"), "{tap}");
    assert_eq!(r.stdout, tap);
    assert!(tap.contains("is refused with EBADMSG at its record"));
}

#[test]
fn a_failing_check_is_a_failing_tap_line() {
    let dir = scratch("host-bad");
    // D is not like C.
    results(&dir, &DESC_D.replace("state_size=1048584", "state_size=1"));
    let (r, tap) = host_inspect(&dir, BIN);
    assert_eq!(r.code, 1);
    assert_eq!(count(&tap, "not ok "), 2, "{tap}");
    assert!(
        tap.contains("# incompatible: state size differs (1048584 vs 1)"),
        "{tap}"
    );
    assert!(tap.ends_with("1..7\n"));

    // A stream that is not complete.
    let dir = scratch("host-bad-stream");
    results(&dir, DESC_D);
    let s = stream_c().bytes;
    fs::write(dir.join("stream-c.bin"), &s[..s.len() - 1]).unwrap();
    let (r, tap) = host_inspect(&dir, BIN);
    assert_eq!(r.code, 1);
    assert!(
        tap.contains("not ok 1 inspect: stream-c.bin is a complete, valid stream"),
        "{tap}"
    );
}

#[test]
fn missing_inputs_fail_loudly() {
    let dir = scratch("host-missing");
    let (r, tap) = host_inspect(&dir, BIN);
    assert_eq!(r.code, 1);
    assert_eq!(count(&tap, "not ok "), 4, "{tap}");
    assert_eq!(count(&tap, "ok "), 0, "{tap}");
    assert!(
        tap.contains("not ok 1 inspect: the VM run saved stream-c.bin"),
        "{tap}"
    );
    assert!(tap.ends_with("1..4\n"));

    let dir = scratch("host-no-binary");
    results(&dir, DESC_D);
    fs::remove_file(dir.join("descriptor-edu.txt")).unwrap();
    let (r, tap) = host_inspect(&dir, "/nonexistent/rustmig");
    assert_eq!(r.code, 1);
    assert!(
        tap.starts_with("not ok 1 inspect: rustmig is built\n"),
        "{tap}"
    );
    assert!(
        tap.contains("not ok 2 inspect: the VM run saved descriptor-edu.txt"),
        "{tap}"
    );
    assert!(tap.ends_with("1..2\n"));

    let r = run_with("bash", &[script()], &[]);
    assert_eq!(r.code, 2);
}
