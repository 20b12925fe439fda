// SPDX-License-Identifier: GPL-2.0

//! The constants of `stream.rs` are those of the uAPI header.

use crate::stream::*;
use kernel::uapi::*;

fn u(v: usize) -> u64 {
    v as u64
}

#[test]
fn magic_is_the_headers() {
    assert_eq!(
        u64::from(u32::from_le_bytes(MAGIC)),
        u64::from(RUSTMIG_STREAM_MAGIC),
        "the magic, as a little-endian u32"
    );
    assert_eq!(&MAGIC, b"RMIG");
}

/// The header's layout, as encoded by `stream.rs`: its length and where the CRC is.
#[test]
fn encoded_header_matches_the_headers_layout() {
    let id = Identity {
        vendor: 0x1234,
        device: 0x5678,
        subsystem_vendor: 0x9abc,
        subsystem_device: 0xdef0,
        class_rev: 0x0011_2233,
        backend: *b"ivshmem\0\0\0\0\0\0\0\0\0",
        backend_major: 4,
        backend_minor: 5,
        state_size: 0x0102_0304_0506_0708,
    };
    let h = Header::encode(&id, 0x1122_3344_5566_7788);
    assert_eq!(u(h.len()), u64::from(RUSTMIG_STREAM_HEADER_LEN));
    let off = RUSTMIG_STREAM_HEADER_CRC_OFFSET as usize;
    let mut zeroed = h;
    zeroed[off..off + 4].fill(0);
    assert_eq!(
        le32(&h, off),
        kernel::crc::Crc32c::checksum(&zeroed),
        "header_crc is at RUSTMIG_STREAM_HEADER_CRC_OFFSET"
    );
    // struct rustmig_stream_header, field by field.
    assert_eq!(le32(&h, 0), RUSTMIG_STREAM_MAGIC);
    assert_eq!(u64::from(le32(&h, 8)), u64::from(RUSTMIG_STREAM_HEADER_LEN));
    assert_eq!(le16(&h, 16), 0x1234);
    assert_eq!(le16(&h, 22), 0xdef0);
    assert_eq!(le32(&h, 24), 0x0011_2233);
    assert_eq!((le16(&h, 28), le16(&h, 30)), (4, 5));
    assert_eq!(&h[32..39], b"ivshmem");
    assert_eq!(le64(&h, 48), 0x0102_0304_0506_0708);
    assert_eq!(le64(&h, 56), 0x1122_3344_5566_7788);
    assert_eq!(le32(&h, 68), 0);
}

/// The backend section tags the inspector names are the header's (stream.rs has none: they
/// belong to the backends).
#[test]
fn backend_tags_are_below_the_common_range() {
    for tag in [
        u64::from(RUSTMIG_IVSHMEM_TAG_REGS),
        u64::from(RUSTMIG_IVSHMEM_TAG_MEM),
        u64::from(RUSTMIG_EDU_TAG_REGS),
    ] {
        assert!(tag != u64::from(RUSTMIG_TAG_END) && tag < u64::from(RUSTMIG_TAG_COMMON));
    }
    assert_ne!(
        u64::from(RUSTMIG_IVSHMEM_TAG_REGS),
        u64::from(RUSTMIG_IVSHMEM_TAG_MEM)
    );
}

/// The structs of the header, generated for userspace by the shim's build.rs as bindgen does for
/// the kernel: their sizes and offsets are the header's own statements of the layout.
#[test]
fn generated_structs_have_the_headers_layout() {
    use core::mem::{offset_of, size_of};
    assert_eq!(
        u64::from(RUSTMIG_STREAM_HEADER_LEN),
        u(size_of::<rustmig_stream_header>())
    );
    assert_eq!(
        u64::from(RUSTMIG_STREAM_HEADER_CRC_OFFSET),
        u(offset_of!(rustmig_stream_header, header_crc))
    );
    assert_eq!(offset_of!(rustmig_stream_header, backend), 32);
    assert_eq!(offset_of!(rustmig_stream_header, state_size), 48);
    assert_eq!(size_of::<rustmig_record_header>(), 16);
    assert_eq!(offset_of!(rustmig_record_header, crc), 12);
    assert_eq!(size_of::<rustmig_section_record>(), 8);
}
