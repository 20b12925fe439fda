// SPDX-License-Identifier: GPL-2.0

//! The commands that act on a host's VFIO devices: `list`, `state`, `save`, `load`,
//! `preflight` and `estimate`. Each returns the exit status, or a message that says what went
//! wrong and what to do (exit 2).

use std::fs::{self, File};
use std::io::{self, Read, Write};

use crate::compat::{self, Verdict};
use crate::descriptor;
use crate::vfio::{self, errno_text, Device, State};

/// The chunk each read and write of a data file moves.
const CHUNK: usize = 1 << 20;

/// Where progress goes, and how often (in tenths of the total).
pub struct Progress<'a> {
    pub out: &'a mut dyn Write,
    pub on: bool,
}

impl Progress<'_> {
    fn step(&mut self, what: &str, done: u64, total: u64, shown: &mut u64) {
        if !self.on || total == 0 {
            return;
        }
        let tenth = done.saturating_mul(10) / total;
        if tenth > *shown {
            *shown = tenth;
            // Progress that cannot be shown is no reason to stop.
            let _ = writeln!(
                self.out,
                "{what}: {done} of {total} bytes ({}%)",
                done.saturating_mul(100) / total
            );
        }
    }
}

fn open_migratable(dev: &str) -> Result<(Device, u64), String> {
    let d = Device::open(dev)?;
    match d.migration_flags() {
        Ok(Some(flags)) => Ok((d, flags)),
        Ok(None) => Err(format!(
            "{dev}: not migratable: its driver ({}) offers no VFIO migration",
            vfio::driver(dev).unwrap_or_else(|| "none".into())
        )),
        Err(e) => Err(format!(
            "{dev}: VFIO_DEVICE_FEATURE_MIGRATION failed: {}",
            errno_text(&e)
        )),
    }
}

fn set(d: &Device, dev: &str, s: State) -> Result<Option<File>, String> {
    d.set_state(s).map_err(|e| {
        let now = d
            .state()
            .map_or_else(|_| "unknown".into(), |s| s.to_string());
        format!(
            "{dev}: setting {s} failed: {} (the device is now {now})",
            errno_text(&e)
        )
    })
}

fn sysfs_text(dev: &str, attr: &str) -> Option<String> {
    fs::read_to_string(vfio::sysfs_dir(dev).join(attr))
        .ok()
        .map(|s| s.trim_end().to_string())
}

/// `rustmig list`.
pub fn list(out: &mut dyn Write) -> Result<u8, String> {
    let devs = vfio::devices();
    if devs.is_empty() {
        writeln!(
            out,
            "no VFIO device: bind one to vfio-pci or a variant driver (rustmig_vfio_pci)"
        )
        .map_err(|e| e.to_string())?;
        return Ok(0);
    }
    for dev in devs {
        let driver = vfio::driver(&dev).unwrap_or_else(|| "none".into());
        let mig = match Device::open(&dev) {
            Err(_) => "busy (open elsewhere)".to_string(),
            Ok(d) => match d.migration_flags() {
                Ok(Some(f)) => {
                    let size = d
                        .data_size()
                        .map_or_else(|e| errno_text(&e), |n| format!("{n} bytes"));
                    format!("migratable {}, state size {size}", vfio::flag_names(f))
                }
                Ok(None) => "not migratable".into(),
                Err(e) => format!("migration query failed: {}", errno_text(&e)),
            },
        };
        writeln!(out, "{dev} {driver}: {mig}").map_err(|e| e.to_string())?;
        if let Some(desc) = sysfs_text(&dev, "migration_compat") {
            writeln!(out, "  descriptor: {desc}").map_err(|e| e.to_string())?;
        }
    }
    Ok(0)
}

/// `rustmig state DEV [STATE|reset]`.
pub fn state(dev: &str, to: Option<&str>, out: &mut dyn Write) -> Result<u8, String> {
    let (d, _) = open_migratable(dev)?;
    let now = d
        .state()
        .map_err(|e| format!("{dev}: reading the state failed: {}", errno_text(&e)))?;
    let Some(to) = to else {
        writeln!(out, "{now}").map_err(|e| e.to_string())?;
        return Ok(0);
    };
    if to == "reset" {
        d.reset()
            .map_err(|e| format!("{dev}: VFIO_DEVICE_RESET failed: {}", errno_text(&e)))?;
    } else {
        let s = State::parse(to).ok_or_else(|| {
            format!(
                "'{to}': not a state (STOP, RUNNING, STOP_COPY, RESUMING, RUNNING_P2P, \
                 PRE_COPY, PRE_COPY_P2P, or reset)"
            )
        })?;
        // The data file, if the state has one, closes here: nothing is read or written.
        set(&d, dev, s)?;
    }
    let after = d.state().map_err(|e| errno_text(&e))?;
    writeln!(
        out,
        "{now} -> {after} (while the device is open: it is reset when this command exits)"
    )
    .map_err(|e| e.to_string())?;
    Ok(0)
}

/// `rustmig save DEV FILE`: the state, through STOP_COPY, into FILE (the raw stream).
pub fn save(dev: &str, path: &str, p: &mut Progress<'_>) -> Result<u8, String> {
    let (d, _) = open_migratable(dev)?;
    let total = d.data_size().unwrap_or(0);
    let mut file = File::create(path).map_err(|e| format!("{path}: {e}"))?;
    let mut data = set(&d, dev, State::StopCopy)?
        .ok_or_else(|| format!("{dev}: STOP_COPY gave no data file"))?;
    let mut buf = vec![0u8; CHUNK];
    let (mut done, mut shown) = (0u64, 0u64);
    loop {
        let n = match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Err(format!(
                    "{dev}: reading its state failed after {done} bytes: {}",
                    errno_text(&e)
                ))
            }
        };
        file.write_all(&buf[..n])
            .map_err(|e| format!("{path}: {e}"))?;
        done += n as u64;
        p.step("save", done, total.max(done), &mut shown);
    }
    file.sync_all().map_err(|e| format!("{path}: {e}"))?;
    drop(data);
    set(&d, dev, State::Stop)?;
    set(&d, dev, State::Running)?;
    writeln!(p.out, "saved {done} bytes of {dev}'s state to {path}").map_err(|e| e.to_string())?;
    Ok(0)
}

/// `rustmig load DEV FILE`: FILE's stream into DEV, through RESUMING.
pub fn load(dev: &str, path: &str, p: &mut Progress<'_>) -> Result<u8, String> {
    let mut file = File::open(path).map_err(|e| format!("{path}: {e}"))?;
    let total = file.metadata().map(|m| m.len()).unwrap_or(0);
    let (d, _) = open_migratable(dev)?;
    let mut data = set(&d, dev, State::Resuming)?
        .ok_or_else(|| format!("{dev}: RESUMING gave no data file"))?;
    let mut buf = vec![0u8; CHUNK];
    let (mut done, mut shown) = (0u64, 0u64);
    loop {
        let n = file.read(&mut buf).map_err(|e| format!("{path}: {e}"))?;
        if n == 0 {
            break;
        }
        let mut at = 0;
        while at < n {
            match data.write(&buf[at..n]) {
                Ok(0) => return Err(format!("{dev}: its data file took nothing at byte {done}")),
                Ok(w) => {
                    at += w;
                    done += w as u64;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let now = d.state().map_or_else(|e| errno_text(&e), |s| s.to_string());
                    return Err(format!(
                        "{dev}: the device refused the stream at byte {done}: {} (the kernel \
                         log says why; `rustmig inspect {path}` checks the file). The device \
                         is now {now}; it is reset when this command exits",
                        errno_text(&e)
                    ));
                }
            }
        }
        p.step("load", done, total, &mut shown);
    }
    drop(data);
    // The driver checks here that the whole state came.
    set(&d, dev, State::Stop)?;
    set(&d, dev, State::Running)?;
    writeln!(p.out, "loaded {done} bytes from {path} into {dev}").map_err(|e| e.to_string())?;
    Ok(0)
}

/// `rustmig preflight SOURCE DEV`: would DEV accept a stream from the device SOURCE
/// describes (a descriptor file or a saved stream)?
pub fn preflight(
    source: &str,
    dev: &str,
    load_source: impl Fn(&str) -> Result<descriptor::Descriptor, String>,
    out: &mut dyn Write,
) -> Result<u8, String> {
    if !vfio::sysfs_dir(dev).exists() {
        return Err(format!(
            "{dev}: no such device (a PCI address such as 0000:04:00.0, or an mdev's UUID)"
        ));
    }
    let Some(text) = sysfs_text(dev, "migration_compat") else {
        writeln!(
            out,
            "unknown: {dev} publishes no compatibility descriptor (driver {}): only rustmig \
             devices do; try a migration or a `rustmig load`",
            vfio::driver(dev).unwrap_or_else(|| "none".into())
        )
        .map_err(|e| e.to_string())?;
        return Ok(1);
    };
    let dst = descriptor::parse(&text)
        .map_err(|e| format!("{dev}: its migration_compat is not a descriptor: {e}"))?;
    let src = load_source(source)?;
    let v = compat::check(&src, &dst)?;
    writeln!(out, "{v}").map_err(|e| e.to_string())?;
    Ok(match v {
        Verdict::Compatible => 0,
        Verdict::Incompatible { .. } => 1,
    })
}

/// Parses a bandwidth in bytes per second: a number with an optional K, M or G (powers of
/// 1024) and an optional "B/s" or "/s".
pub fn parse_bandwidth(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let t = t
        .strip_suffix("B/s")
        .or_else(|| t.strip_suffix("/s"))
        .unwrap_or(t);
    let (num, mult) = match t.char_indices().last() {
        Some((i, 'K' | 'k')) => (&t[..i], 1u64 << 10),
        Some((i, 'M' | 'm')) => (&t[..i], 1 << 20),
        Some((i, 'G' | 'g')) => (&t[..i], 1 << 30),
        _ => (t, 1),
    };
    let n: u64 = num
        .parse()
        .map_err(|_| format!("'{s}': not a bandwidth (bytes per second, e.g. 100M)"))?;
    match n.checked_mul(mult) {
        Some(0) => Err(format!("'{s}': the bandwidth must not be 0")),
        Some(b) => Ok(b),
        None => Err(format!("'{s}': too large")),
    }
}

/// The time `bytes` take at `bw` bytes per second, in milliseconds.
fn ms(bytes: u64, bw: u64) -> u64 {
    u64::try_from(u128::from(bytes) * 1000 / u128::from(bw)).unwrap_or(u64::MAX)
}

/// `rustmig estimate DEV --bandwidth B [--precopy]`: what STOP_COPY would move now and the
/// transfer time it implies; with --precopy, after reading the initial pre-copy data as a
/// migration would (the device then runs on).
pub fn estimate(dev: &str, bw: u64, precopy: bool, out: &mut dyn Write) -> Result<u8, String> {
    let (d, flags) = open_migratable(dev)?;
    let size = d.data_size().map_err(|e| {
        format!(
            "{dev}: VFIO_DEVICE_FEATURE_MIG_DATA_SIZE failed: {}",
            errno_text(&e)
        )
    })?;
    writeln!(
        out,
        "stop-copy now: {size} bytes, {} ms at {bw} B/s",
        ms(size, bw)
    )
    .map_err(|e| e.to_string())?;
    if !precopy {
        return Ok(0);
    }
    if flags & vfio::MIGRATION_PRE_COPY == 0 {
        return Err(format!("{dev}: --precopy: the device offers no PRE_COPY"));
    }
    let mut data = set(&d, dev, State::PreCopy)?
        .ok_or_else(|| format!("{dev}: PRE_COPY gave no data file"))?;
    let (initial, dirty) = vfio::precopy_info(&data).map_err(|e| {
        format!(
            "{dev}: VFIO_MIG_GET_PRECOPY_INFO failed: {}",
            errno_text(&e)
        )
    })?;
    let mut buf = vec![0u8; CHUNK];
    let mut read = 0u64;
    // The initial data, as a migration's pre-copy reads it: until there is nothing left now.
    loop {
        match data.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => read += n as u64,
            // ENOMSG: nothing more to read now.
            Err(e) if e.raw_os_error() == Some(vfio::ENOMSG) => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("{dev}: reading pre-copy data: {}", errno_text(&e))),
        }
    }
    let left = d.data_size().map_err(|e| {
        format!(
            "{dev}: MIG_DATA_SIZE in PRE_COPY failed: {}",
            errno_text(&e)
        )
    })?;
    writeln!(
        out,
        "pre-copy: {initial} initial bytes and {dirty} dirty when it started, {read} read\n\
         stop-copy after pre-copy: {left} bytes, {} ms at {bw} B/s",
        ms(left, bw)
    )
    .map_err(|e| e.to_string())?;
    drop(data);
    set(&d, dev, State::Running)?;
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bandwidths_parse() {
        assert_eq!(parse_bandwidth("100"), Ok(100));
        assert_eq!(parse_bandwidth("100M"), Ok(100 << 20));
        assert_eq!(parse_bandwidth("1G"), Ok(1 << 30));
        assert_eq!(parse_bandwidth("64KB/s"), Ok(64 << 10));
        assert_eq!(parse_bandwidth("64K/s"), Ok(64 << 10));
        assert_eq!(parse_bandwidth("2kB/s"), Ok(2 << 10));
        assert!(parse_bandwidth("0").is_err());
        assert!(parse_bandwidth("fast").is_err());
        assert!(parse_bandwidth("99999999999999999999G").is_err());
        assert!(parse_bandwidth("17179869184G").is_err());
    }

    #[test]
    fn times_follow_the_bandwidth() {
        assert_eq!(ms(1 << 20, 1 << 20), 1000);
        assert_eq!(ms(1049080, 1 << 30), 0);
        assert_eq!(ms(u64::MAX, 1), u64::MAX);
    }
}
