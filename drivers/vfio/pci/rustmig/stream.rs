// SPDX-License-Identifier: GPL-2.0

//! The migration stream: a header, then records, then an end record.
//!
//! All integers are little endian. The header (64 bytes in version 1.0) says what the stream is
//! and which device it belongs to:
//!
//! ```text
//!  0 magic "RMIG"          4 major u16   6 minor u16   8 header_len u32   12 flags u32
//! 16 vendor u16   18 device u16   20 subsystem_vendor u16   22 subsystem_device u16
//! 24 class_rev u32 (class << 8 | revision)   28 backend_version u32
//! 32 backend name, 16 bytes, NUL padded      48 payload_len u64 (bytes after the header)
//! 56 reserved, 8 bytes
//! ```
//!
//! Each record is a 16-byte record header (tag u32, flags u32, len u32, reserved u32) and `len`
//! bytes of payload. The device state is split into sections (a backend's register block, its
//! memory); a section travels as records of at most [`CHUNK`] bytes whose payload is the offset
//! in the section (u64) followed by the data, in order. The end record has tag [`TAG_END`] and no
//! payload.
//!
//! Both directions work in bounded memory: the saving side builds one record at a time, the
//! [`Parser`] holds at most one record.

use kernel::prelude::*;

/// The stream's magic.
pub(crate) const MAGIC: [u8; 4] = *b"RMIG";
/// The major version: a stream of another major version is refused.
pub(crate) const VERSION_MAJOR: u16 = 1;
/// The minor version: newer minor versions only add optional records or header fields.
pub(crate) const VERSION_MINOR: u16 = 0;
/// The length of the version 1.0 header.
pub(crate) const HEADER_LEN: usize = 64;
/// The largest header accepted (a newer minor version may have a longer one).
pub(crate) const MAX_HEADER_LEN: usize = 4096;
/// The length of a record header.
pub(crate) const RECORD_HEADER_LEN: usize = 16;
/// The largest amount of section data in one record.
pub(crate) const CHUNK: usize = 64 * 1024;
/// The length of the section offset that starts a section record's payload.
pub(crate) const OFFSET_LEN: usize = 8;
/// The largest record payload.
pub(crate) const MAX_RECORD: usize = OFFSET_LEN + CHUNK;
/// The tag of the end record.
pub(crate) const TAG_END: u32 = 0;
/// Record flag: a reader that does not know the tag must refuse the stream.
pub(crate) const FLAG_MANDATORY: u32 = 1;
/// The most sections a backend may have.
pub(crate) const MAX_SECTIONS: usize = 4;

/// Reads a little-endian `u16` at `off`.
fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Reads a little-endian `u32` at `off`.
fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads a little-endian `u64` at `off`.
fn le64(b: &[u8], off: usize) -> u64 {
    u64::from(le32(b, off)) | (u64::from(le32(b, off + 4)) << 32)
}

/// What a stream says about the device it was saved from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) vendor: u16,
    pub(crate) device: u16,
    pub(crate) subsystem_vendor: u16,
    pub(crate) subsystem_device: u16,
    /// The class code and revision, as in config space dword 2.
    pub(crate) class_rev: u32,
    /// The backend's name, NUL padded.
    pub(crate) backend: [u8; 16],
    /// The backend's format version.
    pub(crate) backend_version: u32,
}

/// A decoded stream header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) minor: u16,
    pub(crate) header_len: usize,
    pub(crate) identity: Identity,
    pub(crate) payload_len: u64,
}

impl Header {
    /// Encodes a version 1.0 header.
    pub(crate) fn encode(identity: &Identity, payload_len: u64) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&MAGIC);
        b[4..6].copy_from_slice(&VERSION_MAJOR.to_le_bytes());
        b[6..8].copy_from_slice(&VERSION_MINOR.to_le_bytes());
        // CAST: 64 fits.
        b[8..12].copy_from_slice(&(HEADER_LEN as u32).to_le_bytes());
        b[16..18].copy_from_slice(&identity.vendor.to_le_bytes());
        b[18..20].copy_from_slice(&identity.device.to_le_bytes());
        b[20..22].copy_from_slice(&identity.subsystem_vendor.to_le_bytes());
        b[22..24].copy_from_slice(&identity.subsystem_device.to_le_bytes());
        b[24..28].copy_from_slice(&identity.class_rev.to_le_bytes());
        b[28..32].copy_from_slice(&identity.backend_version.to_le_bytes());
        b[32..48].copy_from_slice(&identity.backend);
        b[48..56].copy_from_slice(&payload_len.to_le_bytes());
        b
    }

    /// Decodes the first [`HEADER_LEN`] bytes of a stream.
    ///
    /// Fails with [`EINVAL`] for a bad magic, header length or flags and with
    /// [`EPROTONOSUPPORT`] for another major version.
    pub(crate) fn decode(b: &[u8; HEADER_LEN]) -> Result<Header> {
        if b[0..4] != MAGIC {
            return Err(EINVAL);
        }
        if le16(b, 4) != VERSION_MAJOR {
            return Err(EPROTONOSUPPORT);
        }
        // CAST: u32 fits usize.
        let header_len = le32(b, 8) as usize;
        if !(HEADER_LEN..=MAX_HEADER_LEN).contains(&header_len) || le32(b, 12) != 0 {
            return Err(EINVAL);
        }
        let mut backend = [0u8; 16];
        backend.copy_from_slice(&b[32..48]);
        Ok(Header {
            minor: le16(b, 6),
            header_len,
            identity: Identity {
                vendor: le16(b, 16),
                device: le16(b, 18),
                subsystem_vendor: le16(b, 20),
                subsystem_device: le16(b, 22),
                class_rev: le32(b, 24),
                backend_version: le32(b, 28),
                backend,
            },
            payload_len: le64(b, 48),
        })
    }
}

/// Encodes a record header.
pub(crate) fn record_header(tag: u32, flags: u32, len: u32) -> [u8; RECORD_HEADER_LEN] {
    let mut b = [0u8; RECORD_HEADER_LEN];
    b[0..4].copy_from_slice(&tag.to_le_bytes());
    b[4..8].copy_from_slice(&flags.to_le_bytes());
    b[8..12].copy_from_slice(&len.to_le_bytes());
    b
}

/// A part of a device's state: `len` bytes, travelling as records tagged `tag`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Section {
    pub(crate) tag: u32,
    pub(crate) len: u64,
}

impl Section {
    /// Returns the number of records of the section.
    fn records(&self) -> u64 {
        self.len.div_ceil(CHUNK as u64)
    }
}

/// The sections of a device's state, in stream order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Layout {
    sections: [Section; MAX_SECTIONS],
    count: usize,
}

impl Layout {
    /// Creates a layout: 1 to [`MAX_SECTIONS`] non-empty sections with distinct, non-end tags.
    pub(crate) fn new(sections: &[Section]) -> Result<Layout> {
        if sections.is_empty() || sections.len() > MAX_SECTIONS {
            return Err(EINVAL);
        }
        let mut l = Layout {
            sections: [Section { tag: 0, len: 0 }; MAX_SECTIONS],
            count: 0,
        };
        for s in sections {
            if s.tag == TAG_END || s.len == 0 || l.find(s.tag).is_some() {
                return Err(EINVAL);
            }
            l.sections[l.count] = *s;
            l.count += 1;
        }
        Ok(l)
    }

    /// Returns the sections.
    pub(crate) fn sections(&self) -> &[Section] {
        &self.sections[..self.count]
    }

    /// Returns the index of the section tagged `tag`.
    pub(crate) fn find(&self, tag: u32) -> Option<usize> {
        self.sections().iter().position(|s| s.tag == tag)
    }

    /// Returns the length of the stream after the header.
    pub(crate) fn payload_len(&self) -> u64 {
        let per_record = (RECORD_HEADER_LEN + OFFSET_LEN) as u64;
        let data: u64 = self
            .sections()
            .iter()
            .map(|s| s.len + s.records() * per_record)
            .sum();
        data + RECORD_HEADER_LEN as u64
    }

    /// Returns the length of the whole stream.
    pub(crate) fn stream_len(&self) -> u64 {
        HEADER_LEN as u64 + self.payload_len()
    }
}

/// One unit of a stream being saved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Unit {
    /// The header.
    Header,
    /// A record of `len` bytes at `offset` of section `tag`.
    Record { tag: u32, offset: u64, len: usize },
    /// The end record.
    End,
}

/// The position of a stream being saved, in units.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Cursor {
    /// 0 before the header, then 1 + the section being saved, then past the sections: the end.
    step: usize,
    /// The offset in the section being saved.
    offset: u64,
    /// The end record was returned.
    done: bool,
}

impl Cursor {
    /// Returns the next unit of the stream of `layout`, or `None` after the end record.
    pub(crate) fn next_unit(&mut self, layout: &Layout) -> Option<Unit> {
        if self.done {
            return None;
        }
        if self.step == 0 {
            self.step = 1;
            return Some(Unit::Header);
        }
        match layout.sections().get(self.step - 1) {
            Some(s) => {
                let offset = self.offset;
                // CAST: At most `CHUNK`.
                let len = (s.len - offset).min(CHUNK as u64) as usize;
                self.offset += len as u64;
                if self.offset == s.len {
                    self.step += 1;
                    self.offset = 0;
                }
                Some(Unit::Record {
                    tag: s.tag,
                    offset,
                    len,
                })
            }
            None => {
                self.done = true;
                Some(Unit::End)
            }
        }
    }
}

/// What the [`Parser`] found in a stream.
pub(crate) enum Event<'a> {
    /// The header: the receiver checks it before any record is applied.
    Header(&'a Header),
    /// A complete record other than the end record.
    Record {
        tag: u32,
        mandatory: bool,
        payload: &'a [u8],
    },
    /// The end record: the stream is complete.
    End,
}

/// Splits a section record's payload into the offset in the section and the data.
pub(crate) fn section_data(payload: &[u8]) -> Result<(u64, &[u8])> {
    if payload.len() < OFFSET_LEN {
        return Err(EINVAL);
    }
    Ok((le64(payload, 0), &payload[OFFSET_LEN..]))
}

/// Where the [`Parser`] is in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Collecting the first [`HEADER_LEN`] bytes.
    Header,
    /// Skipping the rest of a longer header.
    HeaderRest,
    /// Collecting a record header.
    RecordHeader,
    /// Collecting a record's payload.
    Payload,
    /// The end record was seen.
    Done,
    /// The stream was refused with this error; it stays refused.
    Failed(Error),
}

/// An incremental, bounded stream parser: it accepts the stream in pieces of any size and reports
/// each complete unit through a sink.
pub(crate) struct Parser {
    phase: Phase,
    /// The bytes of the unit being collected.
    buf: KVec<u8>,
    /// The length of the unit being collected (or of the header bytes to skip).
    need: usize,
    /// The record header being collected or whose payload is being collected.
    rec: [u8; RECORD_HEADER_LEN],
    /// The header's `payload_len`, once known.
    payload_len: u64,
    /// The bytes after the header consumed so far.
    consumed: u64,
}

impl Parser {
    /// Creates a parser; it allocates its one-record buffer now.
    pub(crate) fn new() -> Result<Parser> {
        Ok(Parser {
            phase: Phase::Header,
            buf: KVec::with_capacity(MAX_RECORD, GFP_KERNEL)?,
            need: HEADER_LEN,
            rec: [0; RECORD_HEADER_LEN],
            payload_len: 0,
            consumed: 0,
        })
    }

    /// Returns whether the whole stream, up to its end record, was accepted.
    pub(crate) fn is_complete(&self) -> bool {
        self.phase == Phase::Done
    }

    /// Returns the error that refused the stream, if any.
    pub(crate) fn error(&self) -> Option<Error> {
        match self.phase {
            Phase::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// Feeds the next bytes of the stream, reporting complete units to `sink`.
    ///
    /// The first error, from the parser or from `sink`, refuses the stream: this and every later
    /// call return it.
    pub(crate) fn feed(
        &mut self,
        data: &[u8],
        mut sink: impl FnMut(Event<'_>) -> Result,
    ) -> Result {
        if let Phase::Failed(e) = self.phase {
            return Err(e);
        }
        let res = self.feed_inner(data, &mut sink);
        if let Err(e) = res {
            self.phase = Phase::Failed(e);
        }
        res
    }

    fn feed_inner(
        &mut self,
        mut data: &[u8],
        sink: &mut impl FnMut(Event<'_>) -> Result,
    ) -> Result {
        while !data.is_empty() {
            if self.phase == Phase::Done {
                // Bytes after the end record.
                return Err(EINVAL);
            }
            let n = (self.need - self.buf.len()).min(data.len());
            if self.phase == Phase::HeaderRest {
                self.need -= n;
            } else {
                self.buf.extend_from_slice(&data[..n], GFP_KERNEL)?;
            }
            data = &data[n..];
            if self.phase != Phase::HeaderRest && self.buf.len() < self.need {
                continue;
            }
            if self.phase == Phase::HeaderRest && self.need > 0 {
                continue;
            }
            self.unit_done(sink)?;
        }
        Ok(())
    }

    /// Handles the unit collected in `buf`.
    fn unit_done(&mut self, sink: &mut impl FnMut(Event<'_>) -> Result) -> Result {
        match self.phase {
            Phase::Header => {
                let mut b = [0u8; HEADER_LEN];
                b.copy_from_slice(&self.buf);
                let h = Header::decode(&b)?;
                sink(Event::Header(&h))?;
                self.payload_len = h.payload_len;
                self.buf.clear();
                if h.header_len > HEADER_LEN {
                    self.phase = Phase::HeaderRest;
                    self.need = h.header_len - HEADER_LEN;
                } else {
                    self.record_header_next();
                }
            }
            Phase::HeaderRest => self.record_header_next(),
            Phase::RecordHeader => {
                self.rec.copy_from_slice(&self.buf);
                self.buf.clear();
                let (tag, flags) = (le32(&self.rec, 0), le32(&self.rec, 4));
                // CAST: u32 fits usize.
                let len = le32(&self.rec, 8) as usize;
                if flags & !FLAG_MANDATORY != 0 || len > MAX_RECORD {
                    return Err(EINVAL);
                }
                self.consume(RECORD_HEADER_LEN + len)?;
                if tag == TAG_END {
                    if len != 0 || self.consumed != self.payload_len {
                        return Err(EINVAL);
                    }
                    sink(Event::End)?;
                    self.phase = Phase::Done;
                } else if len == 0 {
                    self.payload_done(sink)?;
                } else {
                    self.phase = Phase::Payload;
                    self.need = len;
                }
            }
            Phase::Payload => self.payload_done(sink)?,
            Phase::Done | Phase::Failed(_) => return Err(EINVAL),
        }
        Ok(())
    }

    /// Hands the complete record in `rec` and `buf` to `sink`.
    fn payload_done(&mut self, sink: &mut impl FnMut(Event<'_>) -> Result) -> Result {
        sink(Event::Record {
            tag: le32(&self.rec, 0),
            mandatory: le32(&self.rec, 4) & FLAG_MANDATORY != 0,
            payload: &self.buf,
        })?;
        self.buf.clear();
        self.record_header_next();
        Ok(())
    }

    /// Expects a record header next.
    fn record_header_next(&mut self) {
        self.phase = Phase::RecordHeader;
        self.need = RECORD_HEADER_LEN;
    }

    /// Accounts for `n` bytes after the header: more than the header announced is refused.
    fn consume(&mut self, n: usize) -> Result {
        let c = self.consumed.checked_add(n as u64).ok_or(EINVAL)?;
        if c > self.payload_len {
            return Err(EINVAL);
        }
        self.consumed = c;
        Ok(())
    }
}

#[kunit_tests(rustmig_stream)]
mod tests {
    use super::*;

    const ID: Identity = Identity {
        vendor: 0x1af4,
        device: 0x1110,
        subsystem_vendor: 0x1af4,
        subsystem_device: 0x1100,
        class_rev: 0x0500_0001,
        backend: *b"ivshmem\0\0\0\0\0\0\0\0\0",
        backend_version: 1,
    };

    /// Builds the stream of `layout` whose section bytes are `f(tag, offset)`.
    fn build(layout: &Layout, f: impl Fn(u32, u64) -> u8) -> Result<KVec<u8>> {
        let mut v = KVec::new();
        let mut c = Cursor::default();
        while let Some(u) = c.next_unit(layout) {
            match u {
                Unit::Header => {
                    v.extend_from_slice(&Header::encode(&ID, layout.payload_len()), GFP_KERNEL)?
                }
                Unit::Record { tag, offset, len } => {
                    // CAST: At most `MAX_RECORD`.
                    let h = record_header(tag, FLAG_MANDATORY, (OFFSET_LEN + len) as u32);
                    v.extend_from_slice(&h, GFP_KERNEL)?;
                    v.extend_from_slice(&offset.to_le_bytes(), GFP_KERNEL)?;
                    for i in 0..len as u64 {
                        v.push(f(tag, offset + i), GFP_KERNEL)?;
                    }
                }
                Unit::End => {
                    v.extend_from_slice(&record_header(TAG_END, FLAG_MANDATORY, 0), GFP_KERNEL)?
                }
            }
        }
        Ok(v)
    }

    /// Parses `s` fed in pieces of `step` bytes; returns (records, data bytes, complete, error).
    fn parse(s: &[u8], step: usize) -> Result<(u32, u64, bool, Option<Error>)> {
        let mut p = Parser::new()?;
        let (mut records, mut bytes) = (0u32, 0u64);
        for piece in s.chunks(step) {
            let r = p.feed(piece, |ev| {
                match ev {
                    Event::Header(h) => {
                        if h.identity != ID {
                            return Err(EPROTO);
                        }
                    }
                    Event::Record { payload, .. } => {
                        let (_, data) = section_data(payload)?;
                        records += 1;
                        bytes += data.len() as u64;
                    }
                    Event::End => {}
                }
                Ok(())
            });
            if r.is_err() {
                break;
            }
        }
        Ok((records, bytes, p.is_complete(), p.error()))
    }

    fn layout() -> Result<Layout> {
        Layout::new(&[
            Section { tag: 1, len: 8 },
            Section {
                tag: 2,
                len: 2 * CHUNK as u64 + 3,
            },
        ])
    }

    #[test]
    fn header_round_trips() {
        let b = Header::encode(&ID, 1234);
        let h = Header::decode(&b);
        assert!(h.is_ok());
        if let Ok(h) = h {
            assert!(h.identity == ID);
            assert_eq!(h.payload_len, 1234);
            assert_eq!(h.header_len, HEADER_LEN);
        }
    }

    #[test]
    fn header_refuses_bad_magic_major_and_length() {
        let mut b = Header::encode(&ID, 0);
        b[0] ^= 1;
        assert!(Header::decode(&b) == Err(EINVAL));
        let mut b = Header::encode(&ID, 0);
        b[4] = 2;
        assert!(Header::decode(&b) == Err(EPROTONOSUPPORT));
        let mut b = Header::encode(&ID, 0);
        b[8] = 63;
        assert!(Header::decode(&b) == Err(EINVAL));
        let mut b = Header::encode(&ID, 0);
        b[12] = 1;
        assert!(Header::decode(&b) == Err(EINVAL));
    }

    #[test]
    fn layout_length_matches_the_built_stream() -> Result {
        let l = layout()?;
        let s = build(&l, |_, o| o as u8)?;
        assert_eq!(s.len() as u64, l.stream_len());
        Ok(())
    }

    #[test]
    fn stream_parses_the_same_in_any_segmentation() -> Result {
        let l = layout()?;
        let s = build(&l, |t, o| (o as u8) ^ (t as u8))?;
        for step in [1, 7, 16, 4096, s.len()] {
            let (records, bytes, complete, err) = parse(&s, step)?;
            assert_eq!(records, 4);
            assert_eq!(bytes, 2 * CHUNK as u64 + 11);
            assert!(complete);
            assert!(err.is_none());
        }
        Ok(())
    }

    #[test]
    fn truncated_stream_is_incomplete_but_not_refused() -> Result {
        let l = layout()?;
        let s = build(&l, |_, _| 0)?;
        for cut in [
            0,
            1,
            HEADER_LEN - 1,
            HEADER_LEN,
            HEADER_LEN + 5,
            s.len() - 1,
        ] {
            let (_, _, complete, err) = parse(&s[..cut], 13)?;
            assert!(!complete);
            assert!(err.is_none());
        }
        Ok(())
    }

    #[test]
    fn bytes_after_the_end_are_refused() -> Result {
        let l = layout()?;
        let mut s = build(&l, |_, _| 0)?;
        s.push(0, GFP_KERNEL)?;
        let (_, _, _, err) = parse(&s, 100)?;
        assert!(err == Some(EINVAL));
        Ok(())
    }

    #[test]
    fn oversized_record_and_wrong_total_are_refused() -> Result {
        let l = layout()?;
        let s = build(&l, |_, _| 0)?;
        let copy = |s: &KVec<u8>| -> Result<KVec<u8>> {
            let mut v = KVec::new();
            v.extend_from_slice(s, GFP_KERNEL)?;
            Ok(v)
        };
        let mut big = copy(&s)?;
        // The first record's length.
        big[HEADER_LEN + 8..HEADER_LEN + 12]
            .copy_from_slice(&(MAX_RECORD as u32 + 1).to_le_bytes());
        assert!(parse(&big, 64)?.3 == Some(EINVAL));
        let mut total = copy(&s)?;
        total[48] ^= 1;
        assert!(parse(&total, 64)?.3 == Some(EINVAL));
        let mut flags = s;
        flags[HEADER_LEN + 4] = 2;
        assert!(parse(&flags, 64)?.3 == Some(EINVAL));
        Ok(())
    }

    #[test]
    fn identity_refusal_stops_before_any_record() -> Result {
        let l = layout()?;
        let mut s = build(&l, |_, _| 0)?;
        s[16] ^= 1;
        let (records, _, complete, err) = parse(&s, 4096)?;
        assert_eq!(records, 0);
        assert!(!complete);
        assert!(err == Some(EPROTO));
        Ok(())
    }
}
