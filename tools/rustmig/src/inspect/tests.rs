// SPDX-License-Identifier: GPL-2.0

use super::*;
use crate::sample::{self, Sample};
use crate::stream::{record_header, seal_record, OFFSET_LEN};

const C: &str = "format=1.1 backend=ivshmem/1.0 pci=1af4:1110 subsystem=1af4:1100 class_rev=0x05000001 state_size=200008";

/// An ivshmem stream: 8 bytes of registers and 200000 of memory (4 records, the last short).
fn ivshmem() -> Sample {
    sample::stream(C, &[(1, 8), (2, 200_000)], |t, o| (o as u8) ^ (t as u8)).unwrap()
}

fn run(s: &[u8], chunk: usize) -> (Outcome, String) {
    let mut out = Vec::new();
    let o = inspect(&mut &s[..], &mut out, chunk).unwrap();
    (o, String::from_utf8(out).unwrap())
}

fn record_lines(report: &str) -> usize {
    report
        .lines()
        .filter(|l| l.starts_with("record at "))
        .count()
}

fn last_line(report: &str) -> &str {
    report.lines().last().unwrap_or("")
}

/// Recomputes the CRC of the header at the start of `s`.
fn fix_header(s: &mut [u8]) {
    let len = le32(s, 8) as usize;
    s[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].fill(0);
    let crc = Crc32c::checksum(&s[..len]);
    s[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Returns a sealed record.
fn record(tag: u32, flags: u32, payload: &[u8]) -> Vec<u8> {
    let mut v = record_header(tag, flags, payload.len() as u32).to_vec();
    v.extend_from_slice(payload);
    seal_record(&mut v);
    v
}

/// Returns a section record's payload.
fn section(offset: u64, data: &[u8]) -> Vec<u8> {
    let mut v = offset.to_le_bytes().to_vec();
    v.extend_from_slice(data);
    v
}

/// Builds a stream of `descriptor`'s identity from whole records (the end record included),
/// with a header announcing their length.
fn assemble(descriptor: &str, records: &[Vec<u8>]) -> Vec<u8> {
    let id = crate::descriptor::parse(descriptor).unwrap().identity;
    let payload: Vec<u8> = records.concat();
    let mut v = Header::encode(&id, payload.len() as u64).to_vec();
    v.extend_from_slice(&payload);
    v
}

#[test]
fn a_valid_stream_reads_the_same_in_any_segmentation() {
    let s = ivshmem();
    let (o, whole) = run(&s.bytes, s.bytes.len());
    assert_eq!(o, Outcome::Complete, "{whole}");
    for chunk in [1, 7, 16, 71, 72, 4096, READ_CHUNK] {
        let (o, r) = run(&s.bytes, chunk);
        assert_eq!(o, Outcome::Complete);
        assert_eq!(r, whole, "piece size {chunk}");
    }
    assert_eq!(record_lines(&whole), 5);
    let want = [
        "header at 0: 72 bytes, header_crc ",
        "  magic \"RMIG\" format 1.1 header_len 72 flags 0x1 reserved 0x0",
        "  records checked by XXH64",
        "  pci 1af4:1110 subsystem 1af4:1100 class_rev 0x05000001",
        "  backend ivshmem 1.0 state_size 200008 payload_len 200144",
        &format!("  descriptor: {C}"),
        "record at 72: tag 1 (regs) flags 0x1 (mandatory) len 16 offset 0 crc ",
        "record at 104: tag 2 (mem) flags 0x1 (mandatory) len 65544 offset 0 crc ",
        "record at 65664: tag 2 (mem) flags 0x1 (mandatory) len 65544 offset 65536 crc ",
        "record at 131224: tag 2 (mem) flags 0x1 (mandatory) len 65544 offset 131072 crc ",
        "record at 196784: tag 2 (mem) flags 0x1 (mandatory) len 3400 offset 196608 crc ",
        "end at 200200: tag 0 flags 0x1 (mandatory) len 0 crc ",
        "tag 1 (regs): 1 record, 8 bytes of data",
        "tag 2 (mem): 4 records, 200000 bytes of data",
        "complete: 200216 bytes, 5 records and the end record, 200008 bytes of state",
    ];
    let lines: Vec<&str> = whole.lines().collect();
    assert_eq!(lines.len(), want.len(), "{whole}");
    for (l, w) in lines.iter().zip(want) {
        assert!(l.starts_with(w), "{l:?} does not start with {w:?}");
    }
    for l in lines.iter().filter(|l| l.contains(" crc ")) {
        assert!(l.ends_with(" ok"), "{l}");
    }
}

#[test]
fn the_sample_has_the_drivers_record_offsets() {
    let s = ivshmem();
    let offsets: Vec<u64> = s.records.iter().map(|r| r.offset).collect();
    assert_eq!(offsets, [72, 104, 65664, 131224, 196784, 200200]);
    assert_eq!(s.bytes.len(), 200216);
    assert_eq!(s.records.last().map(|r| (r.tag, r.len)), Some((0, 0)));
}

#[test]
fn a_flipped_payload_byte_is_refused_with_ebadmsg_at_its_record() {
    let s = ivshmem();
    for (k, rec) in s.records.iter().enumerate().take(s.records.len() - 1) {
        for at in [16, 16 + OFFSET_LEN, 16 + rec.len as usize - 1] {
            let mut v = s.bytes.clone();
            v[rec.offset as usize + at] ^= 0x04;
            let (o, r) = run(&v, 4096);
            assert_eq!(o, Outcome::Refused(EBADMSG));
            assert_eq!(record_lines(&r), k, "{r}");
            let want = format!(
                "refused: EBADMSG at offset {}: record tag {} flags 0x1 len {}: its crc ",
                rec.offset, rec.tag, rec.len
            );
            assert!(last_line(&r).starts_with(&want), "{r}");
        }
    }
    // The end record's CRC.
    let mut v = s.bytes.clone();
    let n = v.len();
    v[n - 1] ^= 1;
    let (o, r) = run(&v, 999);
    assert_eq!(o, Outcome::Refused(EBADMSG));
    assert!(last_line(&r).starts_with("refused: EBADMSG at offset 200200: record tag 0 "));
}

#[test]
fn a_truncated_stream_is_incomplete() {
    let s = ivshmem();
    let n = s.bytes.len();
    for cut in [0, 1, 11, 12, 71] {
        let (o, r) = run(&s.bytes[..cut], 4096);
        assert_eq!(o, Outcome::Incomplete);
        assert_eq!(
            last_line(&r),
            format!("incomplete: {cut} of at least 72 bytes: the stream ends in the header")
        );
    }
    for (cut, at) in [
        (72, "before the record at 72"),
        (80, "in the record at 72"),
        (104, "before the record at 104"),
        (n / 2, "in the record at 65664"),
        (n - 16, "before the record at 200200"),
        (n - 1, "in the record at 200200"),
    ] {
        let (o, r) = run(&s.bytes[..cut], 1000);
        assert_eq!(o, Outcome::Incomplete);
        assert_eq!(
            last_line(&r),
            format!("incomplete: {cut} of {n} bytes: the stream ends {at}")
        );
    }
}

#[test]
fn header_refusals_say_why() {
    let s = ivshmem();
    let cases: [(usize, u8, bool, Error, &str); 6] = [
        (
            0,
            b'X',
            false,
            EINVAL,
            "header: bad magic \"XMIG\", not \"RMIG\"",
        ),
        (
            4,
            3,
            false,
            EPROTONOSUPPORT,
            "header: format major version 3, this reader reads 1 and 2",
        ),
        (
            8,
            71,
            false,
            EINVAL,
            "header: header_len 71 is not in 72..=4096",
        ),
        (16, 0xff, false, EBADMSG, "header: header_crc 0x"),
        (
            12,
            3,
            true,
            EOPNOTSUPP,
            "header: header flags 0x3 set, of which 0x2 this reader does not know",
        ),
        (
            9,
            0x10,
            false,
            EINVAL,
            "header: header_len 4168 is not in 72..=4096",
        ),
    ];
    for (at, byte, fix, errno, want) in cases {
        let mut v = s.bytes.clone();
        v[at] = byte;
        if fix {
            fix_header(&mut v);
        }
        let (o, r) = run(&v, 50);
        assert_eq!(o, Outcome::Refused(errno));
        let want = format!("refused: {} at offset 0: {want}", errno_name(errno));
        assert!(last_line(&r).starts_with(&want), "{r}");
        assert_eq!(r.lines().count(), 1, "{r}");
    }
}

#[test]
fn a_longer_header_and_an_optional_record_are_accepted() {
    let s = ivshmem();
    let mut v = s.bytes[..HEADER_LEN].to_vec();
    v.extend_from_slice(&[0xee; 8]);
    v[8] = 80;
    v[6] = 3;
    let end = s.bytes.len() - RECORD_HEADER_LEN;
    v.extend_from_slice(&s.bytes[HEADER_LEN..end]);
    v.extend(record(0x8000_0001, 0, b"newer"));
    v.extend_from_slice(&s.bytes[end..]);
    let payload_len = (v.len() - 80) as u64;
    v[56..64].copy_from_slice(&payload_len.to_le_bytes());
    fix_header(&mut v);
    let (o, r) = run(&v, 333);
    assert_eq!(o, Outcome::Complete, "{r}");
    assert!(r.contains("format 1.3 header_len 80"));
    assert!(r.contains("  8 more header bytes, of a newer minor version\n"));
    assert!(r.contains(": tag 0x80000001 (unknown) flags 0x0 len 5 crc "));
    assert!(r.contains(" ok, skipped (optional, unknown tag)\n"));
    assert!(r.contains("tag 0x80000001 (unknown): 1 record, 5 bytes, skipped\n"));
    assert_eq!(record_lines(&r), 6);
}

#[test]
fn record_refusals_say_why() {
    let d = "format=1.0 backend=ivshmem/1.0 pci=1af4:1110 subsystem=1af4:1100 class_rev=0x05000001 state_size=12";
    let regs = record(1, 1, &section(0, &[1; 8]));
    let mem = record(2, 1, &section(0, &[2; 4]));
    let end = record(0, 1, &[]);
    let good = assemble(d, &[regs.clone(), mem.clone(), end.clone()]);
    assert_eq!(run(&good, 7).0, Outcome::Complete);

    let cases: Vec<(Vec<Vec<u8>>, Error, &str)> = vec![
        (
            vec![regs.clone(), record(2, 1, &section(4, &[2; 4])), end.clone()],
            EINVAL,
            "at offset 104: record tag 2 flags 0x1 len 12: section 2 starts at section offset 4, not 0",
        ),
        (
            vec![record(2, 1, &section(0, &[2; 4])), regs.clone(), end.clone()],
            EINVAL,
            "at offset 72: record tag 2 flags 0x1 len 12: section 2 where the ivshmem backend's section 1 (regs) comes",
        ),
        (
            vec![regs.clone(), end.clone()],
            EINVAL,
            "at offset 104: record tag 0 flags 0x1 len 0: the sections hold 8 bytes",
        ),
        (
            vec![regs.clone(), record(2, 1, &section(0, &[2; 2])), record(2, 1, &section(2, &[2; 2])), end.clone()],
            EINVAL,
            "at offset 130: record tag 2 flags 0x1 len 10: section 2 goes on after a record of less than 65536 bytes",
        ),
        (
            vec![regs.clone(), mem.clone(), regs.clone(), end.clone()],
            EINVAL,
            "record tag 1 flags 0x1 len 16: section 1 comes back after another section",
        ),
        (
            vec![regs.clone(), record(2, 1, &section(0, &[2; 4])), record(3, 1, &section(0, &[2; 4])), end.clone()],
            EOPNOTSUPP,
            "at offset 132: record tag 3 flags 0x1 len 12: a mandatory record of a tag",
        ),
        (
            vec![regs.clone(), record(2, 1, &section(0, &[2; 3])), end.clone()],
            EINVAL,
            "record tag 0 flags 0x1 len 0: the sections hold 11 bytes, the header's state_size is 12",
        ),
        (
            vec![regs.clone(), record(2, 1, &[0; 5]), end.clone()],
            EINVAL,
            "record tag 2 flags 0x1 len 5: a section record shorter than its 8-byte offset",
        ),
        (
            vec![regs.clone(), record(2, 1, &section(0, &[])), end.clone()],
            EINVAL,
            "a section record without data",
        ),
        (
            vec![regs.clone(), record(3, 1, &section(0, &[2; 4])), end.clone()],
            EOPNOTSUPP,
            "record tag 3 flags 0x1 len 12: a mandatory record of a tag this reader does not know",
        ),
        (
            vec![regs.clone(), record(2, 3, &section(0, &[2; 4])), end.clone()],
            EINVAL,
            "record tag 2 flags 0x3 len 12: unknown record flags 0x2",
        ),
        (
            vec![regs.clone(), mem.clone(), record(0, 1, &[0])],
            EINVAL,
            "record tag 0 flags 0x1 len 1: an end record with a payload",
        ),
    ];
    for (records, errno, want) in cases {
        let v = assemble(d, &records);
        let (o, r) = run(&v, 5);
        assert_eq!(o, Outcome::Refused(errno), "{r}");
        assert!(last_line(&r).contains(want), "{r}");
    }

    // All the state, but not all the backend's sections.
    let d8 = d.replace("state_size=12", "state_size=8");
    let (o, r) = run(&assemble(&d8, &[regs.clone(), end.clone()]), 64);
    assert_eq!(o, Outcome::Refused(EINVAL));
    assert!(last_line(&r).ends_with("at offset 104: record tag 0 flags 0x1 len 0: the stream ends without the ivshmem backend's section 2 (mem)"), "{r}");

    // A record that goes past payload_len, and an end before it.
    let mut v = good.clone();
    let short = (v.len() - HEADER_LEN - 20) as u64;
    v[56..64].copy_from_slice(&short.to_le_bytes());
    fix_header(&mut v);
    let (o, r) = run(&v, 64);
    assert_eq!(o, Outcome::Refused(EINVAL));
    assert!(last_line(&r).contains("at offset 104: record tag 2 flags 0x1 len 12: the record ends at 132, past the 128 bytes"), "{r}");
    let mut v = good.clone();
    let long = (v.len() - HEADER_LEN + 1) as u64;
    v[56..64].copy_from_slice(&long.to_le_bytes());
    fix_header(&mut v);
    let (o, r) = run(&v, 64);
    assert_eq!(o, Outcome::Refused(EINVAL));
    assert!(
        last_line(&r).contains("the end record ends at 148, before the 149 bytes"),
        "{r}"
    );

    // Too long a record.
    let mut v = good.clone();
    v[HEADER_LEN + 8..HEADER_LEN + 12].copy_from_slice(&(MAX_RECORD as u32 + 1).to_le_bytes());
    let (o, r) = run(&v, 64);
    assert_eq!(o, Outcome::Refused(EINVAL));
    assert!(
        last_line(&r).contains(
            "at offset 72: record tag 1 flags 0x1 len 65545: len 65545 is more than 65544"
        ),
        "{r}"
    );

    // Bytes after the end.
    let mut v = good.clone();
    v.push(0);
    let (o, r) = run(&v, 64);
    assert_eq!(o, Outcome::Refused(EINVAL));
    assert!(r.contains("\nend at 132: "));
    assert!(
        last_line(&r).contains("at offset 148: after the end record: bytes after the end record"),
        "{r}"
    );
}

#[test]
fn an_unknown_backends_sections_are_checked_generically() {
    let d = "format=1.0 backend=future/2.5 pci=1234:5678 subsystem=0000:0000 class_rev=0x00ff0000 state_size=70000";
    let s = sample::stream(d, &[(7, 69_999), (0x10, 1)], |_, _| 0).unwrap();
    let (o, r) = run(&s.bytes, 10_000);
    assert_eq!(o, Outcome::Complete, "{r}");
    assert!(r.contains("backend future 2.5 state_size 70000"));
    assert!(r.contains("tag 7 (section): 2 records, 69999 bytes of data\n"));
    assert!(r.contains("tag 16 (section): 1 record, 1 bytes of data\n"));
}

#[test]
fn tag_names_come_from_the_uapi_header() {
    assert_eq!(
        u64::from(BACKENDS[0].sections[0].0),
        u64::from(uapi::RUSTMIG_IVSHMEM_TAG_REGS)
    );
    assert_eq!(
        u64::from(BACKENDS[0].sections[1].0),
        u64::from(uapi::RUSTMIG_IVSHMEM_TAG_MEM)
    );
    assert_eq!(
        u64::from(BACKENDS[1].sections[0].0),
        u64::from(uapi::RUSTMIG_EDU_TAG_REGS)
    );
    assert_eq!(u64::from(TAG_COMMON), u64::from(uapi::RUSTMIG_TAG_COMMON));
}

/// A version 2.0 (pre-copy) stream of `C`'s identity from whole records, the end included.
fn assemble_v2(records: &[Vec<u8>]) -> Vec<u8> {
    let id = crate::descriptor::parse(C).unwrap().identity;
    let mut v = Header::encode_precopy(&id).to_vec();
    v.extend_from_slice(&records.concat());
    v
}

#[test]
fn a_pre_copy_stream_shows_its_passes() {
    let mem = |o: u64, n: usize| record(2, FLAG_MANDATORY, &section(o, &vec![0x5a; n]));
    let regs = record(1, FLAG_MANDATORY, &section(0, &[1; 8]));
    let end = record(TAG_END, FLAG_MANDATORY, &[]);
    // 200000 bytes: 48 whole pages and 3392 bytes; pages 3 and 7 again, page 3 a third time.
    let mut recs: Vec<Vec<u8>> = (0..48).map(|p| mem(p * PAGE as u64, PAGE)).collect();
    recs.push(mem(48 * PAGE as u64, 200_000 - 48 * PAGE));
    recs.extend([
        mem(3 * 4096, 4096),
        mem(7 * 4096, 4096),
        mem(3 * 4096, 4096),
    ]);
    recs.extend([regs.clone(), end.clone()]);
    let (o, r) = run(&assemble_v2(&recs), 1000);
    assert_eq!(o, Outcome::Complete, "{r}");
    assert!(r.contains("  magic \"RMIG\" format 2.1 "), "{r}");
    assert!(
        r.contains("pre-copy: 3 pass(es) at most over a page, 2 page(s) sent again"),
        "{r}"
    );

    // A page that never came.
    let mut short = recs.clone();
    short.remove(10);
    let (o, r) = run(&assemble_v2(&short), 1000);
    assert_eq!(o, Outcome::Refused(EINVAL), "{r}");
    assert!(r.contains("a page never came"), "{r}");
    // A record not at a page boundary.
    let mut odd = recs.clone();
    odd.insert(1, mem(100, 4096));
    let (o, r) = run(&assemble_v2(&odd), 1000);
    assert_eq!(o, Outcome::Refused(EINVAL), "{r}");
    assert!(r.contains("not a multiple of 4096"), "{r}");
    // Cut short: no end record.
    let cut = assemble_v2(&recs[..20]);
    let (o, r) = run(&cut, 1000);
    assert_eq!(o, Outcome::Incomplete, "{r}");
    assert!(last_line(&r).contains("and no end record"), "{r}");
}
