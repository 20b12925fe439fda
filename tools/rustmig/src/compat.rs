// SPDX-License-Identifier: GPL-2.0

//! Whether a stream saved from one device can be loaded into another: the driver's rules,
//! [`Identity::mismatch`], after the stream format's major version.

use crate::descriptor::{backend_name, Descriptor};
use crate::stream::{Identity, VERSION_MAJOR, VERSION_MAJOR_PRECOPY};

/// The answer for a source `a` and a destination `b`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    Compatible,
    /// The first field that differs, and its values in `a` and in `b`.
    Incompatible {
        field: &'static str,
        a: String,
        b: String,
    },
}

/// Returns whether a stream saved from a device described by `a` can be loaded into a device
/// described by `b`: `b` must load the format `a`'s saves use, then the identities must match.
///
/// Fails if `b` loads `a`'s format but it is a major version this tool does not know, whose
/// rules it cannot apply.
pub(crate) fn check(a: &Descriptor, b: &Descriptor) -> Result<Verdict, String> {
    if !b.loads(a.format_major) {
        return Ok(Verdict::Incompatible {
            field: "format",
            a: format!("saves {}.{}", a.format_major, a.format_minor),
            b: format!("loads {}", b.loads_text()),
        });
    }
    if ![VERSION_MAJOR, VERSION_MAJOR_PRECOPY].contains(&a.format_major) {
        return Err(format!(
            "format {}.{} is not a version this tool knows ({VERSION_MAJOR}.x, \
             {VERSION_MAJOR_PRECOPY}.x)",
            a.format_major, a.format_minor
        ));
    }
    // The destination checks the source's identity, as a resuming device does.
    Ok(match b.identity.mismatch(&a.identity) {
        None => Verdict::Compatible,
        Some(field) => Verdict::Incompatible {
            field,
            a: value(field, &a.identity),
            b: value(field, &b.identity),
        },
    })
}

/// Returns the value of the field that [`Identity::mismatch`] named, as the descriptor writes
/// it; the whole descriptor for a field this tool does not know.
fn value(field: &str, id: &Identity) -> String {
    match field {
        "backend" => backend_name(id),
        "backend major version" => format!("{}.{}", id.backend_major, id.backend_minor),
        "vendor/device id" => format!("{:04x}:{:04x}", id.vendor, id.device),
        "subsystem id" => format!("{:04x}:{:04x}", id.subsystem_vendor, id.subsystem_device),
        "class/revision" => format!("{:#010x}", id.class_rev),
        "state size" => id.state_size.to_string(),
        _ => id.to_string(),
    }
}

impl core::fmt::Display for Verdict {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Verdict::Compatible => f.write_str("compatible"),
            Verdict::Incompatible { field, a, b } => {
                write!(f, "incompatible: {field} differs ({a} vs {b})")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::descriptor::parse;

    const C: &str = "format=1.0 backend=ivshmem/1.0 pci=1af4:1110 subsystem=1af4:1100 class_rev=0x05000001 state_size=1048576";

    fn verdict(a: &str, b: &str) -> String {
        check(&parse(a).unwrap(), &parse(b).unwrap())
            .unwrap()
            .to_string()
    }

    #[test]
    fn equal_descriptors_are_compatible() {
        assert_eq!(verdict(C, C), "compatible");
    }

    #[test]
    fn minor_versions_do_not_matter() {
        let newer = C
            .replace("format=1.0", "format=1.9")
            .replace("ivshmem/1.0", "ivshmem/1.4");
        assert_eq!(verdict(C, &newer), "compatible");
        assert_eq!(verdict(&newer, C), "compatible");
    }

    #[test]
    fn each_field_is_named_with_both_values() {
        let cases = [
            (
                "format=1.0",
                "format=2.0",
                "format differs (saves 1.0 vs loads 2)",
            ),
            (
                "format=1.0",
                "format=2.1 loads=2",
                "format differs (saves 1.0 vs loads 2)",
            ),
            (
                "backend=ivshmem/1.0",
                "backend=edu/1.0",
                "backend differs (ivshmem vs edu)",
            ),
            (
                "backend=ivshmem/1.0",
                "backend=ivshmem/2.1",
                "backend major version differs (1.0 vs 2.1)",
            ),
            (
                "pci=1af4:1110",
                "pci=1234:11e8",
                "vendor/device id differs (1af4:1110 vs 1234:11e8)",
            ),
            (
                "pci=1af4:1110",
                "pci=1af5:1110",
                "vendor/device id differs (1af4:1110 vs 1af5:1110)",
            ),
            (
                "subsystem=1af4:1100",
                "subsystem=1af4:1101",
                "subsystem id differs (1af4:1100 vs 1af4:1101)",
            ),
            (
                "subsystem=1af4:1100",
                "subsystem=8086:1100",
                "subsystem id differs (1af4:1100 vs 8086:1100)",
            ),
            (
                "class_rev=0x05000001",
                "class_rev=0x05000002",
                "class/revision differs (0x05000001 vs 0x05000002)",
            ),
            (
                "state_size=1048576",
                "state_size=2097152",
                "state size differs (1048576 vs 2097152)",
            ),
        ];
        for (from, to, want) in cases {
            let b = C.replace(from, to);
            assert_eq!(verdict(C, &b), format!("incompatible: {want}"), "{b}");
        }
    }

    #[test]
    fn the_first_difference_in_the_drivers_order_is_named() {
        let edu = "format=1.0 backend=edu/1.0 pci=1234:11e8 subsystem=1af4:1100 class_rev=0x00ff0010 state_size=48";
        assert_eq!(
            verdict(C, edu),
            "incompatible: backend differs (ivshmem vs edu)"
        );
        assert_eq!(
            verdict(edu, C),
            "incompatible: backend differs (edu vs ivshmem)"
        );
        let b = C
            .replace("pci=1af4:1110", "pci=1af4:1111")
            .replace("state_size=1048576", "state_size=1");
        assert!(verdict(C, &b).starts_with("incompatible: vendor/device id differs"));
    }

    #[test]
    fn an_unknown_major_version_cannot_be_judged() {
        let three = C.replace("format=1.0", "format=3.0");
        assert!(check(&parse(&three).unwrap(), &parse(&three).unwrap()).is_err());
    }

    /// A source whose saves use 2.x (pre-copy), and destinations by what they load.
    #[test]
    fn the_destination_must_load_the_format_the_source_saves() {
        let today = C.replace("format=1.0", "format=2.1 loads=1,2");
        let stop_copy_only = C.replace("format=1.0", "format=1.1 loads=1,2");
        let v1_only = C.replace("format=1.0", "format=1.1");
        let v1_listed = C.replace("format=1.0", "format=1.1 loads=1");
        assert_eq!(verdict(&today, &today), "compatible");
        assert_eq!(verdict(&today, &stop_copy_only), "compatible");
        assert_eq!(verdict(&stop_copy_only, &today), "compatible");
        assert_eq!(verdict(&stop_copy_only, &v1_only), "compatible");
        assert_eq!(verdict(&v1_only, &today), "compatible");
        for old in [&v1_only, &v1_listed] {
            assert_eq!(
                verdict(&today, old),
                "incompatible: format differs (saves 2.1 vs loads 1)",
                "{old}"
            );
        }
    }
}
