// SPDX-License-Identifier: GPL-2.0

//! Compatibility descriptors: the line that a device's `migration_compat` sysfs attribute
//! prints, [`Identity`]'s `Display`, read back.
//!
//! ```text
//! format=2.1 loads=1,2 backend=ivshmem/1.0 pci=1af4:1110 subsystem=1af4:1100 class_rev=0x05000001 state_size=1048576
//! ```
//!
//! `format=` is the stream format a save from the device uses (pre-copy included), `loads=` the
//! format major versions the device loads. `loads=` is optional: a descriptor without it (an
//! older driver's, or one read from a stream's header) loads its own major version only.
//!
//! Parsing is the strict inverse of `Display`: one line (a final newline allowed), `key=value`
//! fields separated by single spaces, every field of the format present once and each value
//! exactly as `Display` writes it (lowercase hex of fixed width, decimal without leading zeros).
//! Keys this reader does not know are ignored, so that a newer descriptor with more fields
//! still reads.

use crate::stream::{Identity, BACKEND_NAME_LEN};

/// A parsed descriptor: the stream format a save uses, the formats loaded and the identity.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Descriptor {
    pub(crate) format_major: u16,
    pub(crate) format_minor: u16,
    /// The major versions loaded, bit `n` for major `n`; 0 when the descriptor says none.
    pub(crate) loads: u32,
    pub(crate) identity: Identity,
}

impl Descriptor {
    /// Whether the device loads streams of major version `major`: those `loads=` lists, or its
    /// own format's without `loads=`.
    pub(crate) fn loads(&self, major: u16) -> bool {
        if self.loads == 0 {
            major == self.format_major
        } else {
            major < 32 && self.loads & (1 << major) != 0
        }
    }

    /// The major versions loaded, as `loads=` writes them.
    pub(crate) fn loads_text(&self) -> String {
        if self.loads == 0 {
            return self.format_major.to_string();
        }
        let majors: Vec<String> = (0..32)
            .filter(|m| self.loads & (1 << m) != 0)
            .map(|m: u32| m.to_string())
            .collect();
        majors.join(",")
    }
}

/// The fields of a descriptor, in the order `Display` writes them.
const KEYS: [&str; 6] = [
    "format",
    "backend",
    "pci",
    "subsystem",
    "class_rev",
    "state_size",
];

/// Parses a descriptor.
pub(crate) fn parse(text: &str) -> Result<Descriptor, String> {
    let line = text.strip_suffix('\n').unwrap_or(text);
    if line.contains(['\n', '\r']) {
        return Err("not a descriptor: more than one line".into());
    }
    if line.is_empty() {
        return Err("not a descriptor: empty".into());
    }
    if !line.bytes().all(|c| c == b' ' || c.is_ascii_graphic()) {
        return Err("not a descriptor: characters other than printable ASCII and spaces".into());
    }
    let mut values: [Option<&str>; KEYS.len()] = [None; KEYS.len()];
    let mut loads_value = None;
    for field in line.split(' ') {
        if field.is_empty() {
            return Err("fields must be separated by single spaces".into());
        }
        let Some((key, value)) = field.split_once('=') else {
            return Err(format!("'{field}' is not a key=value field"));
        };
        if key.is_empty() || !key.bytes().all(|c| c.is_ascii_alphanumeric() || c == b'_') {
            return Err(format!("'{field}': bad key"));
        }
        let slot = match KEYS.iter().position(|&k| k == key) {
            Some(i) => &mut values[i],
            None if key == "loads" => &mut loads_value,
            None => continue,
        };
        if slot.replace(value).is_some() {
            return Err(format!("{key}= appears twice"));
        }
    }
    let mut v = [""; KEYS.len()];
    for (i, key) in KEYS.iter().enumerate() {
        v[i] = values[i].ok_or_else(|| format!("no {key}= field"))?;
    }
    let bad = |key: &str, value: &str, want: &str| format!("{key}={value}: expected {want}");

    let (format_major, format_minor) =
        version(v[0]).ok_or_else(|| bad("format", v[0], "MAJOR.MINOR"))?;
    let loads = match loads_value {
        None => 0,
        Some(l) => majors(l).ok_or_else(|| {
            bad(
                "loads",
                l,
                "major versions below 32, ascending, separated by commas",
            )
        })?,
    };
    let want_backend = "NAME/MAJOR.MINOR, NAME of 1 to 16 printable characters";
    let (name, backend_version) = v[1]
        .rsplit_once('/')
        .ok_or_else(|| bad("backend", v[1], want_backend))?;
    let (backend_major, backend_minor) =
        version(backend_version).ok_or_else(|| bad("backend", v[1], want_backend))?;
    if name.is_empty()
        || name.len() > BACKEND_NAME_LEN
        || !name.bytes().all(|c| c.is_ascii_graphic())
    {
        return Err(bad("backend", v[1], want_backend));
    }
    let mut backend = [0u8; BACKEND_NAME_LEN];
    backend[..name.len()].copy_from_slice(name.as_bytes());
    let want_ids = "two ids of 4 lowercase hex digits, vvvv:dddd";
    let (vendor, device) = id_pair(v[2]).ok_or_else(|| bad("pci", v[2], want_ids))?;
    let (subsystem_vendor, subsystem_device) =
        id_pair(v[3]).ok_or_else(|| bad("subsystem", v[3], want_ids))?;
    let class_rev = v[4]
        .strip_prefix("0x")
        .and_then(|h| hex(h, 8))
        .and_then(|c| u32::try_from(c).ok())
        .ok_or_else(|| bad("class_rev", v[4], "0x and 8 lowercase hex digits"))?;
    let state_size =
        decimal(v[5]).ok_or_else(|| bad("state_size", v[5], "a decimal number of bytes"))?;
    Ok(Descriptor {
        format_major,
        format_minor,
        loads,
        identity: Identity {
            vendor,
            device,
            subsystem_vendor,
            subsystem_device,
            class_rev,
            backend,
            backend_major,
            backend_minor,
            state_size,
        },
    })
}

/// Returns a backend's name as `Display` writes it: its bytes up to the first NUL, `?` for a
/// byte that is not printable ASCII.
pub(crate) fn backend_name(id: &Identity) -> String {
    id.backend_name()
        .iter()
        .map(|&c| {
            if c.is_ascii_graphic() {
                char::from(c)
            } else {
                '?'
            }
        })
        .collect()
}

/// Parses a decimal number as `Display` writes it: digits, no sign, no leading zero.
fn decimal(s: &str) -> Option<u64> {
    if s.is_empty() || !s.bytes().all(|c| c.is_ascii_digit()) || (s.len() > 1 && s.starts_with('0'))
    {
        return None;
    }
    s.parse().ok()
}

/// Parses `loads=`'s list: decimal major versions below 32, strictly ascending, separated by
/// commas; returns them as bits.
fn majors(s: &str) -> Option<u32> {
    let mut bits = 0u32;
    let mut last = None;
    for m in s.split(',') {
        let m = decimal(m)?;
        if m >= 32 || last.is_some_and(|l| m <= l) {
            return None;
        }
        bits |= 1 << m;
        last = Some(m);
    }
    Some(bits)
}

/// Parses `MAJOR.MINOR`, two decimal `u16`.
fn version(s: &str) -> Option<(u16, u16)> {
    let (major, minor) = s.split_once('.')?;
    let major = u16::try_from(decimal(major)?).ok()?;
    let minor = u16::try_from(decimal(minor)?).ok()?;
    Some((major, minor))
}

/// Parses exactly `digits` lowercase hex digits.
fn hex(s: &str, digits: usize) -> Option<u64> {
    if s.len() != digits || !s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f')) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Parses `vvvv:dddd`.
fn id_pair(s: &str) -> Option<(u16, u16)> {
    let (a, b) = s.split_once(':')?;
    let a = u16::try_from(hex(a, 4)?).ok()?;
    let b = u16::try_from(hex(b, 4)?).ok()?;
    Some((a, b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stream::{
        DescriptorLine, LOADS, VERSION_MAJOR, VERSION_MAJOR_PRECOPY, VERSION_MINOR,
    };

    pub(crate) const C: &str = "format=1.1 backend=ivshmem/1.0 pci=1af4:1110 subsystem=1af4:1100 class_rev=0x05000001 state_size=1048576";

    fn id() -> Identity {
        Identity {
            vendor: 0x1af4,
            device: 0x1110,
            subsystem_vendor: 0x1af4,
            subsystem_device: 0x1100,
            class_rev: 0x0500_0001,
            backend: *b"ivshmem\0\0\0\0\0\0\0\0\0",
            backend_major: 1,
            backend_minor: 0,
            state_size: 1 << 20,
        }
    }

    #[test]
    fn the_documented_example_parses() {
        let d = parse(C).unwrap();
        assert_eq!((d.format_major, d.format_minor), (1, 1));
        assert_eq!(d.identity, id());
        assert_eq!(parse(&format!("{C}\n")).unwrap(), d);
    }

    #[test]
    fn parse_is_the_inverse_of_display() {
        let mut ids = vec![id()];
        let mut edu = id();
        edu.backend = *b"edu\0\0\0\0\0\0\0\0\0\0\0\0\0";
        (edu.vendor, edu.device) = (0x1234, 0x11e8);
        (edu.subsystem_vendor, edu.subsystem_device) = (0x1af4, 0x1100);
        edu.class_rev = 0x00ff_0010;
        edu.state_size = 48;
        ids.push(edu);
        let mut extreme = id();
        extreme.backend = *b"sixteen-char-nam";
        (extreme.vendor, extreme.device) = (0, 0xffff);
        (extreme.subsystem_vendor, extreme.subsystem_device) = (0xabcd, 0);
        extreme.class_rev = u32::MAX;
        (extreme.backend_major, extreme.backend_minor) = (u16::MAX, 0);
        extreme.state_size = u64::MAX;
        ids.push(extreme);
        let mut zero = extreme;
        zero.class_rev = 0;
        zero.state_size = 0;
        ids.push(zero);
        for id in ids {
            for (major, loads) in [(VERSION_MAJOR, &LOADS[..]), (VERSION_MAJOR_PRECOPY, &[])] {
                let line = DescriptorLine {
                    major,
                    minor: VERSION_MINOR,
                    loads,
                    identity: &id,
                }
                .to_string();
                let d = parse(&format!("{line}\n")).unwrap();
                assert_eq!(d.identity, id, "{line}");
                assert_eq!((d.format_major, d.format_minor), (major, VERSION_MINOR));
                assert_eq!(d.loads_text(), if loads.is_empty() { "2" } else { "1,2" });
                assert!(line.ends_with(&d.identity.to_string()));
            }
        }
        let d = parse(C).unwrap();
        let line = DescriptorLine {
            major: d.format_major,
            minor: d.format_minor,
            loads: &[],
            identity: &d.identity,
        };
        assert_eq!(line.to_string(), C);
    }

    #[test]
    fn loads_lists_major_versions() {
        let d = parse(&C.replace("format=1.1", "format=2.1 loads=1,2")).unwrap();
        assert!(d.loads(1) && d.loads(2) && !d.loads(3) && !d.loads(0));
        assert_eq!(d.loads_text(), "1,2");
        let old = parse(C).unwrap();
        assert!(old.loads(1) && !old.loads(2));
        for bad in [
            "loads=",
            "loads=2,1",
            "loads=1,1",
            "loads=1,,2",
            "loads=32",
            "loads=01",
            "loads=a",
        ] {
            let e = parse(&format!("{C} {bad}")).unwrap_err();
            assert!(e.starts_with(bad), "{bad}: {e}");
        }
        assert!(parse(&format!("{C} loads=1 loads=1"))
            .unwrap_err()
            .contains("twice"));
    }

    #[test]
    fn unknown_keys_are_ignored_and_order_is_free() {
        let d = parse(C).unwrap();
        let more = format!("{C} numa=0 x_future=a=b");
        assert_eq!(parse(&more).unwrap(), d);
        let mut fields: Vec<&str> = C.split(' ').collect();
        fields.reverse();
        assert_eq!(parse(&fields.join(" ")).unwrap(), d);
        let newer = C.replace("format=1.1", "format=1.7");
        let n = parse(&newer).unwrap();
        assert_eq!((n.format_major, n.format_minor), (1, 7));
        assert_eq!(n.identity, d.identity);
    }

    #[test]
    fn every_field_is_required() {
        for key in KEYS {
            let without: Vec<&str> = C
                .split(' ')
                .filter(|f| !f.starts_with(&format!("{key}=")))
                .collect();
            let e = parse(&without.join(" ")).unwrap_err();
            assert_eq!(e, format!("no {key}= field"));
        }
    }

    #[test]
    fn malformed_descriptors_are_refused() {
        let cases: &[(&str, &str)] = &[
            ("", "empty"),
            ("\n", "empty"),
            ("format=1.0", "no backend="),
            ("format=1.0 format=1.0", "twice"),
            ("format=1.0  backend=x/1.0", "single spaces"),
            (" format=1.0", "single spaces"),
            ("format=1.0 ", "single spaces"),
            ("format=1.0\tbackend=x/1.0", "printable ASCII"),
            ("format=1.0 backend=\u{e9}/1.0", "printable ASCII"),
            ("hello", "not a key=value"),
            ("=5", "bad key"),
        ];
        for (text, want) in cases {
            let e = parse(text).unwrap_err();
            assert!(e.contains(want), "{text:?}: {e}");
        }
        assert!(parse(&format!("{C}\n{C}\n"))
            .unwrap_err()
            .contains("more than one line"));
        assert!(parse(&format!("{C}\r\n")).is_err());
        assert!(parse(&format!("{C}\n\n")).is_err());
    }

    #[test]
    fn values_are_validated() {
        let bad = [
            (
                "format=1.1",
                &[
                    "format=1",
                    "format=1.",
                    "format=.0",
                    "format=01.0",
                    "format=1.00",
                    "format=65536.0",
                    "format=-1.0",
                    "format=+1.0",
                    "format=1.0.0",
                    "format=a.b",
                ][..],
            ),
            (
                "backend=ivshmem/1.0",
                &[
                    "backend=ivshmem",
                    "backend=/1.0",
                    "backend=ivshmem/1",
                    "backend=ivshmem/x.0",
                    "backend=seventeen-chars-xx/1.0",
                    "backend=ivs\u{e9}m/1.0",
                    "backend=iv\u{7f}/1.0",
                ][..],
            ),
            (
                "pci=1af4:1110",
                &[
                    "pci=1AF4:1110",
                    "pci=1af4:111",
                    "pci=01af4:1110",
                    "pci=1af41110",
                    "pci=1af4:1110:0",
                    "pci=0x1af4:1110",
                    "pci=",
                    "pci=1af4-1110",
                ][..],
            ),
            (
                "subsystem=1af4:1100",
                &["subsystem=1af4", "subsystem=1af4:11g0"][..],
            ),
            (
                "class_rev=0x05000001",
                &[
                    "class_rev=05000001",
                    "class_rev=0x5000001",
                    "class_rev=0x005000001",
                    "class_rev=0X05000001",
                    "class_rev=0x0500000A",
                    "class_rev=83886081",
                ][..],
            ),
            (
                "state_size=1048576",
                &[
                    "state_size=",
                    "state_size=01048576",
                    "state_size=0x100000",
                    "state_size=-1",
                    "state_size=18446744073709551616",
                    "state_size=1M",
                    "state_size=1 048576",
                ][..],
            ),
        ];
        for (good, replacements) in bad {
            assert!(C.contains(good));
            for r in replacements {
                let text = C.replace(good, r);
                assert!(parse(&text).is_err(), "accepted {text}");
            }
        }
        // The largest values.
        let max = C
            .replace("state_size=1048576", "state_size=18446744073709551615")
            .replace("backend=ivshmem/1.0", "backend=a/b/65535.65535");
        let d = parse(&max).unwrap();
        assert_eq!(d.identity.state_size, u64::MAX);
        assert_eq!(d.identity.backend_name(), b"a/b");
        assert_eq!(
            (d.identity.backend_major, d.identity.backend_minor),
            (65535, 65535)
        );
    }
}
