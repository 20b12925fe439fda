// SPDX-License-Identifier: GPL-2.0

//! The migration stream: a header, then records, then an end record.
//!
//! The format is defined by `include/uapi/linux/vfio_rustmig.h`: its structs (`struct
//! rustmig_stream_header`, `struct rustmig_record_header`, `struct rustmig_section_record`) give
//! every length and field offset used here, through the kernel's uAPI bindings, and its defines
//! every number. `Documentation/driver-api/vfio-pci-rustmig.rst` describes it byte by byte. All
//! integers are little endian; streams are read and written as bytes, never as the structs in
//! place, since a stream is not aligned.
//!
//! Each record is a record header (tag, flags, len, crc) and `len` bytes of payload; `crc` is its
//! check value ([`Check`]): the CRC-32C of the record header up to `crc` and the payload, or, in
//! the streams this driver saves (header flag [`FLAG_RECORD_XXH64`]), the low 32 bits of the
//! XXH64 of the record header (`crc` zero) and the payload. The device state is split into
//! sections (a backend's register block, its memory); a section travels as records of at most
//! [`CHUNK`] bytes whose payload is the offset in the section (u64) followed by the data, in
//! order. The end record has tag [`TAG_END`] and no payload.
//!
//! Both directions work in bounded memory: the saving side builds one record at a time, the
//! [`Parser`] stages at most [`STAGE`] bytes of records and one more, and checks each whole
//! before handing it on.
//!
//! This module is pure: it uses `kernel::prelude`, `kernel::crc`, `kernel::xxhash` and
//! `kernel::uapi` only, so that the userspace inspector (`tools/rustmig`) builds the very same
//! file.

use core::{
    fmt,
    mem::{offset_of, size_of},
};
use kernel::{
    crc::Crc32c,
    prelude::*,
    uapi::{
        self,
        rustmig_record_header as RecordHeader,
        rustmig_section_record as SectionRecord,
        rustmig_stream_header as StreamHeader, //
    },
    xxhash::Xxh64,
};

/// The offset of a field of `struct rustmig_stream_header`.
macro_rules! hdr {
    ($field:ident) => {
        offset_of!(StreamHeader, $field)
    };
}

/// The offset of a field of `struct rustmig_record_header`.
macro_rules! rec {
    ($field:ident) => {
        offset_of!(RecordHeader, $field)
    };
}

/// The stream's magic, as it is in a stream: "RMIG".
pub(crate) const MAGIC: [u8; 4] = uapi::RUSTMIG_STREAM_MAGIC.to_le_bytes();
/// The major version: a stream of another major version is refused.
// CAST: The header's versions are u16 fields.
pub(crate) const VERSION_MAJOR: u16 = uapi::RUSTMIG_STREAM_VERSION_MAJOR as u16;
/// The major version of a stream saved from PRE_COPY with a live section: its section records
/// come in any order and more than once, in whole pages.
// CAST: As above.
pub(crate) const VERSION_MAJOR_PRECOPY: u16 = uapi::RUSTMIG_STREAM_VERSION_MAJOR_PRECOPY as u16;
/// The page of a version 2.0 stream's section records.
pub(crate) const PAGE: usize = uapi::RUSTMIG_STREAM_PAGE_SIZE as usize;
/// The minor version: newer minor versions only lengthen the header and add optional records.
// CAST: As above.
pub(crate) const VERSION_MINOR: u16 = uapi::RUSTMIG_STREAM_VERSION_MINOR as u16;
/// Header flag (version 1.1): the records' check values are XXH64, not CRC-32C.
pub(crate) const FLAG_RECORD_XXH64: u32 = uapi::RUSTMIG_STREAM_RECORD_XXH64;
/// The header flags this reader knows.
const KNOWN_FLAGS: u32 = FLAG_RECORD_XXH64;
/// The length of the version 1.0 header.
pub(crate) const HEADER_LEN: usize = size_of::<StreamHeader>();
/// The largest header accepted (a newer minor version may have a longer one).
pub(crate) const MAX_HEADER_LEN: usize = uapi::RUSTMIG_STREAM_MAX_HEADER_LEN as usize;
/// Where the header's CRC is.
pub(crate) const HEADER_CRC_OFFSET: usize = hdr!(header_crc);
/// The length of a record header.
pub(crate) const RECORD_HEADER_LEN: usize = size_of::<RecordHeader>();
/// The bytes of a record header that its CRC covers (all but the CRC).
const RECORD_CRC_COVERS: usize = rec!(crc);
/// The length of the section offset that starts a section record's payload.
pub(crate) const OFFSET_LEN: usize = size_of::<SectionRecord>();
/// The largest record payload.
pub(crate) const MAX_RECORD: usize = uapi::RUSTMIG_RECORD_MAX_LEN as usize;
/// The largest amount of section data in one record.
pub(crate) const CHUNK: usize = MAX_RECORD - OFFSET_LEN;
/// The tag of the end record.
pub(crate) const TAG_END: u32 = uapi::RUSTMIG_TAG_END;
/// Record flag: a reader that does not know the tag must refuse the stream.
pub(crate) const FLAG_MANDATORY: u32 = uapi::RUSTMIG_RECORD_MANDATORY;
/// The most sections a backend may have.
pub(crate) const MAX_SECTIONS: usize = 4;
/// The length of a backend's name.
pub(crate) const BACKEND_NAME_LEN: usize = uapi::RUSTMIG_BACKEND_NAME_LEN as usize;

// The header's own statements of its layout, and the record size the saving side builds.
const _: () = {
    assert!(HEADER_LEN == uapi::RUSTMIG_STREAM_HEADER_LEN as usize);
    assert!(HEADER_CRC_OFFSET == uapi::RUSTMIG_STREAM_HEADER_CRC_OFFSET as usize);
    assert!(offset_of!(SectionRecord, offset) == 0);
    assert!(CHUNK == 64 * 1024);
};

/// Writes `v` at `off`.
fn put(b: &mut [u8], off: usize, v: &[u8]) {
    b[off..off + v.len()].copy_from_slice(v);
}

/// Reads a little-endian `u16` at `off`.
pub(crate) fn le16(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes([b[off], b[off + 1]])
}

/// Reads a little-endian `u32` at `off`.
pub(crate) fn le32(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

/// Reads a little-endian `u64` at `off`.
pub(crate) fn le64(b: &[u8], off: usize) -> u64 {
    u64::from(le32(b, off)) | (u64::from(le32(b, off + 4)) << 32)
}

/// What a stream says about the device it was saved from; also a device's compatibility
/// descriptor (its `migration_compat` sysfs attribute prints it).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Identity {
    pub(crate) vendor: u16,
    pub(crate) device: u16,
    pub(crate) subsystem_vendor: u16,
    pub(crate) subsystem_device: u16,
    /// The class code and revision, as in config space dword 2.
    pub(crate) class_rev: u32,
    /// The backend's name, NUL padded.
    pub(crate) backend: [u8; BACKEND_NAME_LEN],
    /// The backend's format version: another major version is incompatible, minor versions
    /// only add optional records.
    pub(crate) backend_major: u16,
    pub(crate) backend_minor: u16,
    /// The size of the device state: the sum of its sections' lengths.
    pub(crate) state_size: u64,
}

impl Identity {
    /// Returns the backend's name, up to its first NUL.
    pub(crate) fn backend_name(&self) -> &[u8] {
        let n = self
            .backend
            .iter()
            .position(|&c| c == 0)
            .unwrap_or(BACKEND_NAME_LEN);
        &self.backend[..n]
    }

    /// Returns the first field in which a stream saved with identity `src` cannot be loaded
    /// into a device of identity `self`, or `None` if it can.
    ///
    /// The rules: the same backend with the same major version, the same PCI vendor, device,
    /// subsystem ids, class code and revision, and the same state size. Minor versions (of the
    /// stream format and of the backend) do not matter.
    pub(crate) fn mismatch(&self, src: &Identity) -> Option<&'static str> {
        if src.backend != self.backend {
            Some("backend")
        } else if src.backend_major != self.backend_major {
            Some("backend major version")
        } else if (src.vendor, src.device) != (self.vendor, self.device) {
            Some("vendor/device id")
        } else if (src.subsystem_vendor, src.subsystem_device)
            != (self.subsystem_vendor, self.subsystem_device)
        {
            Some("subsystem id")
        } else if src.class_rev != self.class_rev {
            Some("class/revision")
        } else if src.state_size != self.state_size {
            Some("state size")
        } else {
            None
        }
    }
}

/// The identity's fields of a compatibility descriptor ([`DescriptorLine`]): `key=value` fields
/// separated by single spaces.
impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("backend=")?;
        for &c in self.backend_name() {
            let c = if c.is_ascii_graphic() { c } else { b'?' };
            write!(f, "{}", char::from(c))?;
        }
        write!(
            f,
            "/{}.{} pci={:04x}:{:04x} subsystem={:04x}:{:04x} class_rev={:#010x} state_size={}",
            self.backend_major,
            self.backend_minor,
            self.vendor,
            self.device,
            self.subsystem_vendor,
            self.subsystem_device,
            self.class_rev,
            self.state_size
        )
    }
}

/// The major versions of the stream format this driver loads, as a descriptor's `loads=` lists
/// them.
pub(crate) const LOADS: [u16; 2] = [VERSION_MAJOR, VERSION_MAJOR_PRECOPY];

/// A compatibility descriptor, the line a device's `migration_compat` sysfs attribute prints:
///
/// ```text
/// format=2.1 loads=1,2 backend=ivshmem/1.0 pci=1af4:1110 subsystem=1af4:1100 class_rev=0x05000001 state_size=1048584
/// ```
///
/// `format=` is the stream format a save from the device uses: 2.x where a save that starts in
/// PRE_COPY sends a live section, 1.x otherwise. `loads=` lists the major versions the device
/// loads; a descriptor read from a stream's header has none.
pub(crate) struct DescriptorLine<'a> {
    /// The format a save uses.
    pub(crate) major: u16,
    /// Its minor version.
    pub(crate) minor: u16,
    /// The major versions loaded, ascending; empty for none said.
    pub(crate) loads: &'a [u16],
    /// The device.
    pub(crate) identity: &'a Identity,
}

impl fmt::Display for DescriptorLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "format={}.{} ", self.major, self.minor)?;
        for (i, major) in self.loads.iter().enumerate() {
            let sep = if i == 0 { "loads=" } else { "," };
            write!(f, "{sep}{major}")?;
        }
        if !self.loads.is_empty() {
            f.write_str(" ")?;
        }
        write!(f, "{}", self.identity)
    }
}

/// A decoded stream header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) major: u16,
    pub(crate) minor: u16,
    pub(crate) header_len: usize,
    /// How the records are checked.
    pub(crate) check: Check,
    pub(crate) identity: Identity,
    pub(crate) payload_len: u64,
}

/// Returns the CRC of a header, its CRC field taken as zero.
fn header_crc(b: &[u8]) -> u32 {
    let mut crc = Crc32c::new();
    crc.update(&b[..HEADER_CRC_OFFSET]);
    crc.update(&[0; 4]);
    crc.update(&b[HEADER_CRC_OFFSET + 4..]);
    crc.finish()
}

impl Header {
    /// Encodes a version 1.0 header.
    pub(crate) fn encode(id: &Identity, payload_len: u64) -> [u8; HEADER_LEN] {
        Self::encode_major(id, VERSION_MAJOR, payload_len)
    }

    /// Encodes a version 2.0 header: its payload length is not known.
    pub(crate) fn encode_precopy(id: &Identity) -> [u8; HEADER_LEN] {
        Self::encode_major(id, VERSION_MAJOR_PRECOPY, 0)
    }

    fn encode_major(id: &Identity, major: u16, payload_len: u64) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        put(&mut b, hdr!(magic), &MAGIC);
        put(&mut b, hdr!(version_major), &major.to_le_bytes());
        put(&mut b, hdr!(version_minor), &VERSION_MINOR.to_le_bytes());
        // CAST: 72 fits.
        put(&mut b, hdr!(header_len), &(HEADER_LEN as u32).to_le_bytes());
        put(&mut b, hdr!(flags), &FLAG_RECORD_XXH64.to_le_bytes());
        put(&mut b, hdr!(vendor), &id.vendor.to_le_bytes());
        put(&mut b, hdr!(device), &id.device.to_le_bytes());
        put(
            &mut b,
            hdr!(subsystem_vendor),
            &id.subsystem_vendor.to_le_bytes(),
        );
        put(
            &mut b,
            hdr!(subsystem_device),
            &id.subsystem_device.to_le_bytes(),
        );
        put(&mut b, hdr!(class_rev), &id.class_rev.to_le_bytes());
        put(&mut b, hdr!(backend_major), &id.backend_major.to_le_bytes());
        put(&mut b, hdr!(backend_minor), &id.backend_minor.to_le_bytes());
        put(&mut b, hdr!(backend), &id.backend);
        put(&mut b, hdr!(state_size), &id.state_size.to_le_bytes());
        put(&mut b, hdr!(payload_len), &payload_len.to_le_bytes());
        let crc = header_crc(&b);
        put(&mut b, HEADER_CRC_OFFSET, &crc.to_le_bytes());
        b
    }

    /// Checks the first [`HEADER_LEN`] bytes of a header and returns the whole header's length.
    ///
    /// Fails with [`EINVAL`] for a bad magic or header length and with [`EPROTONOSUPPORT`] for
    /// a major version other than 1 and 2.
    pub(crate) fn check_start(b: &[u8]) -> Result<usize> {
        if b.len() < HEADER_LEN || b[hdr!(magic)..hdr!(magic) + MAGIC.len()] != MAGIC {
            return Err(EINVAL);
        }
        if ![VERSION_MAJOR, VERSION_MAJOR_PRECOPY].contains(&le16(b, hdr!(version_major))) {
            return Err(EPROTONOSUPPORT);
        }
        // CAST: u32 fits usize.
        let header_len = le32(b, hdr!(header_len)) as usize;
        if !(HEADER_LEN..=MAX_HEADER_LEN).contains(&header_len) {
            return Err(EINVAL);
        }
        Ok(header_len)
    }

    /// Decodes a whole header (`b` is `header_len` bytes long).
    ///
    /// Fails as [`Header::check_start`] does, with [`EINVAL`] if `b` is not the whole header,
    /// with [`EBADMSG`] if its CRC does not match and with [`EOPNOTSUPP`] if it has a flag set
    /// that this reader does not know.
    pub(crate) fn decode(b: &[u8]) -> Result<Header> {
        let header_len = Self::check_start(b)?;
        if b.len() != header_len {
            return Err(EINVAL);
        }
        if le32(b, HEADER_CRC_OFFSET) != header_crc(b) {
            return Err(EBADMSG);
        }
        let flags = le32(b, hdr!(flags));
        if flags & !KNOWN_FLAGS != 0 {
            return Err(EOPNOTSUPP);
        }
        let major = le16(b, hdr!(version_major));
        // A version 2.0 stream's length is not known in advance.
        if major == VERSION_MAJOR_PRECOPY && le64(b, hdr!(payload_len)) != 0 {
            return Err(EINVAL);
        }
        let mut backend = [0u8; BACKEND_NAME_LEN];
        backend.copy_from_slice(&b[hdr!(backend)..hdr!(backend) + BACKEND_NAME_LEN]);
        Ok(Header {
            major,
            minor: le16(b, hdr!(version_minor)),
            header_len,
            check: if flags & FLAG_RECORD_XXH64 != 0 {
                Check::Xxh64
            } else {
                Check::Crc32c
            },
            identity: Identity {
                vendor: le16(b, hdr!(vendor)),
                device: le16(b, hdr!(device)),
                subsystem_vendor: le16(b, hdr!(subsystem_vendor)),
                subsystem_device: le16(b, hdr!(subsystem_device)),
                class_rev: le32(b, hdr!(class_rev)),
                backend_major: le16(b, hdr!(backend_major)),
                backend_minor: le16(b, hdr!(backend_minor)),
                backend,
                state_size: le64(b, hdr!(state_size)),
            },
            payload_len: le64(b, hdr!(payload_len)),
        })
    }
}

/// Encodes a record header; its check value is filled in by [`seal_record`] or
/// [`RecordHash::seal`].
pub(crate) fn record_header(tag: u32, flags: u32, len: u32) -> [u8; RECORD_HEADER_LEN] {
    let mut b = [0u8; RECORD_HEADER_LEN];
    put(&mut b, rec!(tag), &tag.to_le_bytes());
    put(&mut b, rec!(flags), &flags.to_le_bytes());
    put(&mut b, rec!(len), &len.to_le_bytes());
    b
}

/// How a stream's records are checked, as its header's flags say.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Check {
    /// CRC-32C of the record header up to its check value, then the payload (version 1.0).
    Crc32c,
    /// The low 32 bits of the XXH64 of the record header with its check value zero, then the
    /// payload ([`FLAG_RECORD_XXH64`], the streams this driver saves).
    Xxh64,
}

impl Check {
    /// Returns the check value of a record: its header `rec` and its payload.
    pub(crate) fn record(self, rec: &[u8], payload: &[u8]) -> u32 {
        match self {
            Check::Crc32c => {
                let mut crc = Crc32c::new();
                crc.update(&rec[..RECORD_CRC_COVERS]);
                crc.update(payload);
                crc.finish()
            }
            Check::Xxh64 => {
                let mut h = RecordHash::new(rec);
                h.hash().update(payload);
                h.value()
            }
        }
    }
}

/// The XXH64 check value of a record being built, fed its payload as it is made.
pub(crate) struct RecordHash(Xxh64);

impl RecordHash {
    /// Starts the check value of the record whose header is `rec`.
    pub(crate) fn new(rec: &[u8]) -> Self {
        let mut h = Xxh64::new(0);
        h.update(&rec[..RECORD_CRC_COVERS]);
        h.update(&[0; RECORD_HEADER_LEN - RECORD_CRC_COVERS]);
        Self(h)
    }

    /// Returns the hash, to feed the payload to.
    pub(crate) fn hash(&mut self) -> &mut Xxh64 {
        &mut self.0
    }

    /// Returns the check value of what was fed.
    pub(crate) fn value(&self) -> u32 {
        // CAST: The check value is the hash's low 32 bits.
        self.0.digest() as u32
    }

    /// Writes the check value into the record header `rec`.
    pub(crate) fn seal(&self, rec: &mut [u8]) {
        put(rec, rec!(crc), &self.value().to_le_bytes());
    }
}

/// Fills in the check value of `record`, a record header followed by its whole payload, as this
/// driver saves it ([`Check::Xxh64`]).
pub(crate) fn seal_record(record: &mut [u8]) {
    seal_record_with(Check::Xxh64, record);
}

/// Fills in the check value of `record` as `check` computes it.
pub(crate) fn seal_record_with(check: Check, record: &mut [u8]) {
    let (rec, payload) = record.split_at_mut(RECORD_HEADER_LEN);
    let v = check.record(rec, payload);
    put(rec, rec!(crc), &v.to_le_bytes());
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

    /// Returns the number of pages of the section, as version 2.0's records cover it.
    pub(crate) fn pages(&self) -> u64 {
        self.len.div_ceil(PAGE as u64)
    }

    /// Checks where a version 2.0 record of `len` bytes at `offset` goes: whole pages from a
    /// page boundary, or up to the section's end, at most [`CHUNK`] bytes. Returns its first
    /// page and its number of pages.
    pub(crate) fn page_range(&self, offset: u64, len: usize) -> Result<(u64, u64)> {
        let end = offset.checked_add(len as u64).ok_or(EINVAL)?;
        if len == 0
            || len > CHUNK
            || offset % PAGE as u64 != 0
            || end > self.len
            || (len % PAGE != 0 && end != self.len)
        {
            return Err(EINVAL);
        }
        Ok((offset / PAGE as u64, (len as u64).div_ceil(PAGE as u64)))
    }
}

/// Returns the length in a stream of a section record of `len` bytes of data.
pub(crate) const fn record_len(len: usize) -> u64 {
    (RECORD_HEADER_LEN + OFFSET_LEN + len) as u64
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

    /// Returns the layout of the sections other than `tag`'s, which may be none: a stream of it
    /// is a header, their records and the end record.
    pub(crate) fn without(&self, tag: u32) -> Layout {
        let mut l = Layout {
            sections: [Section { tag: 0, len: 0 }; MAX_SECTIONS],
            count: 0,
        };
        for s in self.sections().iter().filter(|s| s.tag != tag) {
            l.sections[l.count] = *s;
            l.count += 1;
        }
        l
    }

    /// Returns the sections.
    pub(crate) fn sections(&self) -> &[Section] {
        &self.sections[..self.count]
    }

    /// Returns the index of the section tagged `tag`.
    pub(crate) fn find(&self, tag: u32) -> Option<usize> {
        self.sections().iter().position(|s| s.tag == tag)
    }

    /// Returns the size of the device state: the sum of the sections' lengths.
    pub(crate) fn state_size(&self) -> u64 {
        self.sections().iter().map(|s| s.len).sum()
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
    /// A complete record other than the end record, its CRC checked.
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
    Ok((
        le64(payload, offset_of!(SectionRecord, offset)),
        &payload[OFFSET_LEN..],
    ))
}

/// Where the [`Parser`] is in the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Collecting the first [`HEADER_LEN`] bytes.
    Header,
    /// Collecting the rest of a longer header.
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

/// The bytes of complete units a [`Parser`] stages before they are handed on: it stops taking
/// bytes at the end of the unit that reaches this many.
pub(crate) const STAGE: usize = 1024 * 1024;
/// The most units a [`Parser`] stages before they are handed on.
const MAX_STAGED: usize = 64;
/// The longest unit: a record with the largest payload, or the longest header.
const MAX_UNIT: usize = if RECORD_HEADER_LEN + MAX_RECORD > MAX_HEADER_LEN {
    RECORD_HEADER_LEN + MAX_RECORD
} else {
    MAX_HEADER_LEN
};

/// Where the bytes a [`Parser`] takes come from: a slice, or the user's buffer of a write.
pub(crate) trait Source {
    /// Returns how many bytes are left.
    fn len(&self) -> usize;

    /// Copies the next `dst.len()` bytes (at most [`Source::len`]) into `dst` and moves past
    /// them; returns how many it copied, fewer only when the next one cannot be read (a fault).
    fn read(&mut self, dst: &mut [u8]) -> usize;

    /// As [`Source::read`], feeding the bytes copied to `hash`: each is read from the source
    /// once, so what is hashed is what was copied.
    fn read_hashed(&mut self, dst: &mut [u8], hash: &mut Xxh64) -> usize;
}

impl Source for &[u8] {
    fn len(&self) -> usize {
        <[u8]>::len(self)
    }

    fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(<[u8]>::len(self));
        let (head, rest) = self.split_at(n);
        dst[..n].copy_from_slice(head);
        *self = rest;
        n
    }

    fn read_hashed(&mut self, dst: &mut [u8], hash: &mut Xxh64) -> usize {
        let n = self.read(dst);
        hash.update(&dst[..n]);
        n
    }
}

/// A complete, checked unit staged in a [`Parser`]'s buffer.
#[derive(Clone, Copy, Debug)]
enum Staged {
    /// The header, at `start..end` of the buffer.
    Header { start: usize, end: usize },
    /// A record other than the end record, its payload at `start..end` of the buffer.
    Record {
        tag: u32,
        mandatory: bool,
        start: usize,
        end: usize,
    },
    /// The end record.
    End,
}

/// An incremental, bounded stream parser: it takes the stream in pieces of any size from a
/// [`Source`], stages each unit once it is complete and checked ([`Parser::fill`]), and hands the
/// staged units to a sink ([`Parser::drain`]), up to [`STAGE`] bytes of them at a time, so that a
/// receiver applies them under one lock taken after the copy. A record checked with XXH64 is
/// hashed as it is copied from the source, in one pass.
///
/// It refuses, with the errno of the first problem found:
/// - [`EINVAL`]: a bad magic or header length, unknown record flags, a record longer than
///   [`MAX_RECORD`], an end record with a payload, more or fewer bytes than the header's
///   `payload_len`, bytes after the end record;
/// - [`EPROTONOSUPPORT`]: another major version;
/// - [`EBADMSG`]: a header whose CRC or a record whose check value does not match, before it is
///   reported;
/// - [`EOPNOTSUPP`]: header flags it does not know;
/// - whatever the sink returns.
pub(crate) struct Parser {
    phase: Phase,
    /// The staged units, then the bytes of the unit being collected; its length grows up to
    /// [`STAGE`] and a unit.
    buf: KVVec<u8>,
    /// The bytes of `buf` in use.
    len: usize,
    /// Where the unit being collected starts in `buf`.
    start: usize,
    /// The length of the unit being collected (a record's includes its header).
    need: usize,
    /// The staged units, in stream order.
    staged: KVec<Staged>,
    /// The record header of the record being collected.
    rec: [u8; RECORD_HEADER_LEN],
    /// The XXH64 check value of the record being collected, fed as its payload is copied.
    hash: RecordHash,
    /// The header's `payload_len`, once known.
    payload_len: u64,
    /// The header's major version, once known: 2 has no `payload_len`.
    major: u16,
    /// How the records are checked, once the header is known.
    check: Check,
    /// The bytes after the header consumed so far.
    consumed: u64,
}

impl Parser {
    /// Creates a parser; it allocates room for its longest unit now, and more as it stages.
    pub(crate) fn new() -> Result<Parser> {
        let mut buf = KVVec::new();
        buf.resize(MAX_UNIT, 0, GFP_KERNEL)?;
        Ok(Parser {
            phase: Phase::Header,
            buf,
            len: 0,
            start: 0,
            need: HEADER_LEN,
            staged: KVec::with_capacity(MAX_STAGED, GFP_KERNEL)?,
            rec: [0; RECORD_HEADER_LEN],
            hash: RecordHash::new(&[0; RECORD_HEADER_LEN]),
            payload_len: 0,
            major: VERSION_MAJOR,
            check: Check::Crc32c,
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

    /// Returns whether units are staged, for [`Parser::drain`].
    pub(crate) fn has_staged(&self) -> bool {
        !self.staged.is_empty()
    }

    /// Feeds `data`, the next bytes of the stream, reporting complete units to `sink`.
    ///
    /// The first error, from the parser or from `sink`, refuses the stream: this and every later
    /// call return it.
    // The driver fills and drains; the KUnit tests and the inspector feed slices.
    #[allow(dead_code)]
    pub(crate) fn feed(
        &mut self,
        data: &[u8],
        mut sink: impl FnMut(Event<'_>) -> Result,
    ) -> Result {
        let mut src = data;
        loop {
            let filled = self.fill(&mut src);
            self.drain(&mut sink)?;
            filled?;
            if src.is_empty() {
                return Ok(());
            }
        }
    }

    /// Takes the next bytes of the stream from `src` and stages the units they complete, until
    /// `src` is empty, a fault stops it (`Ok(true)`), or [`STAGE`] bytes of units are staged.
    ///
    /// An error refuses the stream; the units staged before it stay staged, for
    /// [`Parser::drain`] to hand on first.
    pub(crate) fn fill(&mut self, src: &mut impl Source) -> Result<bool> {
        if let Phase::Failed(e) = self.phase {
            return Err(e);
        }
        let res = self.fill_inner(src);
        if let Err(e) = res {
            self.phase = Phase::Failed(e);
        }
        res
    }

    fn fill_inner(&mut self, src: &mut impl Source) -> Result<bool> {
        while src.len() > 0 {
            if self.phase == Phase::Done {
                // Bytes after the end record.
                return Err(EINVAL);
            }
            let have = self.len - self.start;
            if have == 0 && (self.len >= STAGE || self.staged.len() == MAX_STAGED) {
                break;
            }
            let want = (self.need - have).min(src.len());
            if !self.room(want) {
                if self.staged.is_empty() {
                    // The buffer always holds the longest unit.
                    return Err(ENOMEM);
                }
                break;
            }
            let dst = &mut self.buf[self.len..self.len + want];
            let n = if self.phase == Phase::Payload && self.check == Check::Xxh64 {
                src.read_hashed(dst, self.hash.hash())
            } else {
                src.read(dst)
            };
            self.len += n;
            if n < want {
                return Ok(true);
            }
            if have + n == self.need {
                self.unit_done()?;
            }
        }
        Ok(false)
    }

    /// Makes room for `want` more bytes in `buf`, growing it up to [`STAGE`] and a unit; false
    /// if it cannot grow.
    fn room(&mut self, want: usize) -> bool {
        let end = self.len + want;
        if end <= self.buf.len() {
            return true;
        }
        let grown = end.max(2 * self.buf.len()).min(STAGE + MAX_UNIT).max(end);
        self.buf.resize(grown, 0, GFP_KERNEL).is_ok()
    }

    /// Hands the staged units to `sink` in stream order and keeps the unit being collected.
    ///
    /// An error, from `sink` or from the header, refuses the stream. It comes before any error
    /// [`Parser::fill`] found after these units.
    pub(crate) fn drain(&mut self, mut sink: impl FnMut(Event<'_>) -> Result) -> Result {
        let res = self.drain_inner(&mut sink);
        self.staged.clear();
        // The unit being collected moves to the front.
        self.buf.copy_within(self.start..self.len, 0);
        self.len -= self.start;
        self.start = 0;
        if let Err(e) = res {
            self.phase = Phase::Failed(e);
        }
        res
    }

    fn drain_inner(&self, sink: &mut impl FnMut(Event<'_>) -> Result) -> Result {
        for u in self.staged.iter() {
            match *u {
                Staged::Header { start, end } => {
                    let h = Header::decode(&self.buf[start..end])?;
                    sink(Event::Header(&h))?;
                }
                Staged::Record {
                    tag,
                    mandatory,
                    start,
                    end,
                } => sink(Event::Record {
                    tag,
                    mandatory,
                    payload: &self.buf[start..end],
                })?,
                Staged::End => sink(Event::End)?,
            }
        }
        Ok(())
    }

    /// Handles the unit just completed, at `start..len` of `buf`.
    fn unit_done(&mut self) -> Result {
        match self.phase {
            Phase::Header => {
                let header_len = Header::check_start(&self.buf[self.start..self.len])?;
                if header_len > HEADER_LEN {
                    self.phase = Phase::HeaderRest;
                    self.need = header_len;
                } else {
                    self.whole_header()?;
                }
            }
            Phase::HeaderRest => self.whole_header()?,
            Phase::RecordHeader => {
                self.rec.copy_from_slice(&self.buf[self.start..self.len]);
                let (tag, flags) = (le32(&self.rec, rec!(tag)), le32(&self.rec, rec!(flags)));
                // CAST: u32 fits usize.
                let len = le32(&self.rec, rec!(len)) as usize;
                if flags & !FLAG_MANDATORY != 0 || len > MAX_RECORD || (tag == TAG_END && len != 0)
                {
                    return Err(EINVAL);
                }
                self.consume(RECORD_HEADER_LEN + len)?;
                if self.check == Check::Xxh64 {
                    self.hash = RecordHash::new(&self.rec);
                }
                if len == 0 {
                    self.record_done()?;
                } else {
                    self.phase = Phase::Payload;
                    self.need = RECORD_HEADER_LEN + len;
                }
            }
            Phase::Payload => self.record_done()?,
            Phase::Done | Phase::Failed(_) => return Err(EINVAL),
        }
        Ok(())
    }

    /// Checks the whole header, at `start..len` of `buf`, and stages it.
    fn whole_header(&mut self) -> Result {
        let h = Header::decode(&self.buf[self.start..self.len])?;
        self.payload_len = h.payload_len;
        self.major = h.major;
        self.check = h.check;
        self.stage(Staged::Header {
            start: self.start,
            end: self.len,
        })?;
        self.record_header_next();
        Ok(())
    }

    /// Checks the record whose header is in `rec` and whose payload ends `buf`, and stages it.
    fn record_done(&mut self) -> Result {
        let (start, end) = (self.start + RECORD_HEADER_LEN, self.len);
        let value = match self.check {
            // Fed as the payload was copied.
            Check::Xxh64 => self.hash.value(),
            c => c.record(&self.rec, &self.buf[start..end]),
        };
        if le32(&self.rec, RECORD_CRC_COVERS) != value {
            return Err(EBADMSG);
        }
        let tag = le32(&self.rec, rec!(tag));
        if tag == TAG_END {
            if self.major == VERSION_MAJOR && self.consumed != self.payload_len {
                return Err(EINVAL);
            }
            self.stage(Staged::End)?;
            self.start = self.len;
            self.phase = Phase::Done;
            return Ok(());
        }
        self.stage(Staged::Record {
            tag,
            mandatory: le32(&self.rec, rec!(flags)) & FLAG_MANDATORY != 0,
            start,
            end,
        })?;
        self.record_header_next();
        Ok(())
    }

    /// Stages `unit`. `fill` stops before `staged` is full, so this does not allocate.
    fn stage(&mut self, unit: Staged) -> Result {
        Ok(self.staged.push(unit, GFP_KERNEL)?)
    }

    /// Expects a record header next, after the unit just completed.
    fn record_header_next(&mut self) {
        self.start = self.len;
        self.phase = Phase::RecordHeader;
        self.need = RECORD_HEADER_LEN;
    }

    /// Accounts for `n` bytes after the header: more than the header announced is refused.
    fn consume(&mut self, n: usize) -> Result {
        let c = self.consumed.checked_add(n as u64).ok_or(EINVAL)?;
        if self.major == VERSION_MAJOR && c > self.payload_len {
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
        backend_major: 1,
        backend_minor: 0,
        state_size: 2 * CHUNK as u64 + 11,
    };

    /// A record tag the test's receiver does not know.
    const TAG_UNKNOWN: u32 = 0x8000_0001;

    /// Appends a sealed record to `v`.
    fn push_record(v: &mut KVec<u8>, tag: u32, flags: u32, payload: &[u8]) -> Result {
        let at = v.len();
        // CAST: The tests' payloads fit u32.
        v.extend_from_slice(&record_header(tag, flags, payload.len() as u32), GFP_KERNEL)?;
        v.extend_from_slice(payload, GFP_KERNEL)?;
        seal_record(&mut v[at..]);
        Ok(())
    }

    /// Builds the stream of `layout` whose section bytes are `f(tag, offset)`.
    fn build(layout: &Layout, f: impl Fn(u32, u64) -> u8) -> Result<KVec<u8>> {
        let mut v = KVec::new();
        let mut c = Cursor::default();
        let mut payload = KVec::new();
        while let Some(u) = c.next_unit(layout) {
            match u {
                Unit::Header => {
                    v.extend_from_slice(&Header::encode(&ID, layout.payload_len()), GFP_KERNEL)?
                }
                Unit::Record { tag, offset, len } => {
                    payload.clear();
                    payload.extend_from_slice(&offset.to_le_bytes(), GFP_KERNEL)?;
                    for i in 0..len as u64 {
                        payload.push(f(tag, offset + i), GFP_KERNEL)?;
                    }
                    push_record(&mut v, tag, FLAG_MANDATORY, &payload)?;
                }
                Unit::End => push_record(&mut v, TAG_END, FLAG_MANDATORY, &[])?,
            }
        }
        Ok(v)
    }

    /// Recomputes the CRC of the header at the start of `s`.
    fn fix_header(s: &mut [u8]) {
        // CAST: The tests' headers are short.
        let len = le32(s, 8) as usize;
        let crc = header_crc(&s[..len]);
        s[HEADER_CRC_OFFSET..HEADER_CRC_OFFSET + 4].copy_from_slice(&crc.to_le_bytes());
    }

    /// What parsing a stream gave.
    struct Parsed {
        records: u32,
        bytes: u64,
        skipped: u32,
        complete: bool,
        err: Option<Error>,
    }

    /// Parses `s` fed in pieces of `step` bytes, with a receiver that knows the tags of
    /// [`layout`] and checks the identity.
    fn parse(s: &[u8], step: usize) -> Result<Parsed> {
        let mut p = Parser::new()?;
        let (mut records, mut bytes, mut skipped) = (0u32, 0u64, 0u32);
        for piece in s.chunks(step) {
            let r = p.feed(piece, |ev| {
                match ev {
                    Event::Header(h) => {
                        if ID.mismatch(&h.identity).is_some() {
                            return Err(EPROTO);
                        }
                    }
                    Event::Record {
                        tag,
                        mandatory,
                        payload,
                    } => {
                        if tag != 1 && tag != 2 {
                            if mandatory {
                                return Err(EOPNOTSUPP);
                            }
                            skipped += 1;
                            return Ok(());
                        }
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
        Ok(Parsed {
            records,
            bytes,
            skipped,
            complete: p.is_complete(),
            err: p.error(),
        })
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

    fn copy(s: &[u8]) -> Result<KVec<u8>> {
        let mut v = KVec::new();
        v.extend_from_slice(s, GFP_KERNEL)?;
        Ok(v)
    }

    #[test]
    fn crc32c_is_the_castagnoli_crc() {
        assert_eq!(Crc32c::checksum(b"123456789"), 0xe306_9283);
    }

    #[test]
    fn header_round_trips() {
        let b = Header::encode(&ID, 1234);
        let h = Header::decode(&b);
        assert!(h.is_ok());
        if let Ok(h) = h {
            assert!(h.identity == ID);
            assert!(ID.mismatch(&h.identity).is_none());
            assert_eq!(h.payload_len, 1234);
            assert_eq!(h.header_len, HEADER_LEN);
            assert_eq!((h.minor, h.check), (1, Check::Xxh64));
        }
    }

    #[test]
    fn header_refusals_come_in_their_documented_order() {
        let good = Header::encode(&ID, 0);
        let mut b = good;
        b[0] ^= 1;
        assert!(Header::decode(&b) == Err(EINVAL));
        // The major version is checked before the CRC: a future layout may move the CRC.
        let mut b = good;
        b[4] = 3;
        assert!(Header::decode(&b) == Err(EPROTONOSUPPORT));
        // Version 2.0 has no length: a header that gives one is refused.
        let v2 = Header::encode_precopy(&ID);
        assert!(matches!(Header::decode(&v2), Ok(h) if h.major == 2 && h.payload_len == 0));
        let mut b = v2;
        b[56] = 1;
        fix_header(&mut b);
        assert!(Header::decode(&b) == Err(EINVAL));
        let mut b = good;
        b[8] = 71;
        assert!(Header::decode(&b) == Err(EINVAL));
        for byte in [6, 12, 16, 28, 32, 48, 56, 64, 68, 71] {
            let mut b = good;
            b[byte] ^= 0x10;
            assert!(Header::decode(&b) == Err(EBADMSG));
        }
        // A flag this reader does not know, beside the one it does.
        for bit in 1..32 {
            let mut b = good;
            b[12..16].copy_from_slice(&(FLAG_RECORD_XXH64 | 1 << bit).to_le_bytes());
            fix_header(&mut b);
            assert!(Header::decode(&b) == Err(EOPNOTSUPP));
        }
        // Without the flag the records are CRC-32C's.
        let mut b = good;
        b[12] = 0;
        fix_header(&mut b);
        assert!(matches!(Header::decode(&b), Ok(h) if h.check == Check::Crc32c));
        // Another minor version is accepted.
        let mut b = good;
        b[6] = 7;
        fix_header(&mut b);
        assert!(matches!(Header::decode(&b), Ok(h) if h.minor == 7));
    }

    /// Turns the stream `s` this driver saved into the same stream as version 1.0 has it: no
    /// header flag, its records' check values CRC-32C.
    fn to_crc32c(s: &mut [u8]) {
        s[hdr!(version_minor)..hdr!(version_minor) + 2].copy_from_slice(&0u16.to_le_bytes());
        s[hdr!(flags)..hdr!(flags) + 4].copy_from_slice(&0u32.to_le_bytes());
        fix_header(s);
        let mut at = HEADER_LEN;
        while at < s.len() {
            // CAST: u32 fits usize.
            let end = at + RECORD_HEADER_LEN + le32(s, at + rec!(len)) as usize;
            seal_record_with(Check::Crc32c, &mut s[at..end]);
            at = end;
        }
    }

    #[test]
    fn record_check_values_follow_the_header_flag() -> Result {
        let l = layout()?;
        let s = build(&l, |tag, off| (off as u8) ^ (tag as u8))?;
        let p = parse(&s, 4096)?;
        assert!(p.complete && p.err.is_none());
        // The XXH64 check value: the record header with the field zero, then the payload.
        let at = HEADER_LEN;
        let mut rec = [0u8; RECORD_HEADER_LEN];
        rec.copy_from_slice(&s[at..at + RECORD_HEADER_LEN]);
        rec[RECORD_CRC_COVERS..].fill(0);
        let mut h = Xxh64::new(0);
        h.update(&rec);
        h.update(&s[at + RECORD_HEADER_LEN..at + RECORD_HEADER_LEN + OFFSET_LEN + 8]);
        assert_eq!(le32(&s, at + RECORD_CRC_COVERS), h.digest() as u32);
        // A version 1.0 stream, CRC-32C throughout, loads as it did.
        let mut v1 = copy(&s)?;
        to_crc32c(&mut v1);
        assert_eq!(le16(&v1, hdr!(version_minor)), 0);
        for step in [1, 7, 4096, v1.len()] {
            let p = parse(&v1, step)?;
            assert!(p.complete && p.err.is_none() && p.bytes == l.state_size());
        }
        // The header's flag and the records' check values must agree.
        let mut mixed = copy(&v1)?;
        mixed[hdr!(flags)] = 1;
        fix_header(&mut mixed);
        assert!(parse(&mixed, 4096)?.err == Some(EBADMSG));
        let mut mixed = copy(&s)?;
        mixed[hdr!(flags)] = 0;
        fix_header(&mut mixed);
        assert!(parse(&mixed, 4096)?.err == Some(EBADMSG));
        // A record's RecordHash, fed in words, seals as seal_record does.
        let mut r = copy(&s[at..at + RECORD_HEADER_LEN + OFFSET_LEN + 8])?;
        let mut rh = RecordHash::new(&r);
        rh.hash()
            .update(&r[RECORD_HEADER_LEN..RECORD_HEADER_LEN + OFFSET_LEN]);
        let data = &s[at + RECORD_HEADER_LEN + OFFSET_LEN..at + RECORD_HEADER_LEN + OFFSET_LEN + 8];
        rh.hash().update_words(1, |_| le64(data, 0));
        r[RECORD_CRC_COVERS..RECORD_HEADER_LEN].fill(0);
        rh.seal(&mut r);
        assert_eq!(&r[..RECORD_HEADER_LEN], &s[at..at + RECORD_HEADER_LEN]);
        Ok(())
    }

    #[test]
    fn version_2_records_are_whole_pages() {
        let s = Section {
            tag: 2,
            len: 5 * PAGE as u64 + 100,
        };
        assert_eq!(s.pages(), 6);
        assert_eq!(s.page_range(0, PAGE), Ok((0, 1)));
        assert_eq!(s.page_range(PAGE as u64, 4 * PAGE), Ok((1, 4)));
        // The last page runs to the section's end.
        assert_eq!(s.page_range(5 * PAGE as u64, 100), Ok((5, 1)));
        assert_eq!(s.page_range(4 * PAGE as u64, PAGE + 100), Ok((4, 2)));
        // Not from a page boundary, not whole pages, past the end, empty.
        assert_eq!(s.page_range(1, PAGE), Err(EINVAL));
        assert_eq!(s.page_range(0, PAGE - 1), Err(EINVAL));
        assert_eq!(s.page_range(5 * PAGE as u64, 101), Err(EINVAL));
        assert_eq!(s.page_range(6 * PAGE as u64, 0), Err(EINVAL));
        assert_eq!(s.page_range(0, 0), Err(EINVAL));
        let big = Section {
            tag: 2,
            len: 64 * PAGE as u64,
        };
        assert_eq!(big.page_range(0, CHUNK), Ok((0, 16)));
        assert_eq!(big.page_range(0, CHUNK + PAGE), Err(EINVAL));
    }

    #[test]
    fn version_2_streams_have_no_length() -> Result {
        let l = layout()?;
        // A version 2.0 stream: records out of order and repeated, no length in the header.
        let mut v = KVec::new();
        v.extend_from_slice(&Header::encode_precopy(&ID), GFP_KERNEL)?;
        let mut payload = KVec::new();
        for (tag, offset, len) in [
            (2, CHUNK as u64, PAGE),
            (1, 0, 8),
            (2, 0, PAGE),
            (2, 0, PAGE),
        ] {
            payload.clear();
            payload.extend_from_slice(&u64::to_le_bytes(offset), GFP_KERNEL)?;
            payload.resize(OFFSET_LEN + len, 0x5a, GFP_KERNEL)?;
            push_record(&mut v, tag, FLAG_MANDATORY, &payload)?;
        }
        push_record(&mut v, TAG_END, FLAG_MANDATORY, &[])?;
        let p = parse(&v, 1000)?;
        assert!(p.complete && p.err.is_none());
        assert_eq!(p.records, 4);
        // A version 1.0 stream with the same records is refused: its header gives no room.
        let mut v1 = copy(&v)?;
        v1[..HEADER_LEN].copy_from_slice(&Header::encode(&ID, 0));
        assert_eq!(parse(&v1, 1000)?.err, Some(EINVAL));
        // And a version 1.0 stream still parses.
        assert!(parse(&build(&l, |_, _| 1)?, 4096)?.complete);
        Ok(())
    }

    #[test]
    fn identity_rules() {
        let mut other = ID;
        other.backend_minor = 3;
        assert!(ID.mismatch(&other).is_none());
        other.backend_major = 2;
        assert_eq!(ID.mismatch(&other), Some("backend major version"));
        let mut other = ID;
        other.backend[0] = b'e';
        assert_eq!(ID.mismatch(&other), Some("backend"));
        let mut other = ID;
        other.device += 1;
        assert_eq!(ID.mismatch(&other), Some("vendor/device id"));
        let mut other = ID;
        other.subsystem_device += 1;
        assert_eq!(ID.mismatch(&other), Some("subsystem id"));
        let mut other = ID;
        other.class_rev += 1;
        assert_eq!(ID.mismatch(&other), Some("class/revision"));
        let mut other = ID;
        other.state_size += 1;
        assert_eq!(ID.mismatch(&other), Some("state size"));
    }

    #[test]
    fn layout_length_matches_the_built_stream() -> Result {
        let l = layout()?;
        let s = build(&l, |_, o| o as u8)?;
        assert_eq!(s.len() as u64, l.stream_len());
        assert_eq!(l.state_size(), ID.state_size);
        Ok(())
    }

    #[test]
    fn stream_parses_the_same_in_any_segmentation() -> Result {
        let l = layout()?;
        let s = build(&l, |t, o| (o as u8) ^ (t as u8))?;
        for step in [1, 7, 16, 4096, s.len()] {
            let p = parse(&s, step)?;
            assert_eq!(p.records, 4);
            assert_eq!(p.bytes, 2 * CHUNK as u64 + 11);
            assert!(p.complete);
            assert!(p.err.is_none());
        }
        Ok(())
    }

    #[test]
    fn longer_header_and_optional_records_are_accepted() -> Result {
        let l = layout()?;
        let s = build(&l, |_, _| 0)?;
        // A header of 80 bytes, as a newer minor version may write, and an optional record of
        // an unknown tag before the end record.
        let mut v = KVec::new();
        v.extend_from_slice(&s[..HEADER_LEN], GFP_KERNEL)?;
        v.extend_from_slice(&[0xee; 8], GFP_KERNEL)?;
        v[8] = 80;
        v[6] = 1;
        let end = s.len() - RECORD_HEADER_LEN;
        v.extend_from_slice(&s[HEADER_LEN..end], GFP_KERNEL)?;
        push_record(&mut v, TAG_UNKNOWN, 0, b"from a newer minor version")?;
        v.extend_from_slice(&s[end..], GFP_KERNEL)?;
        let payload_len = l.payload_len() + (RECORD_HEADER_LEN + 26) as u64;
        v[56..64].copy_from_slice(&payload_len.to_le_bytes());
        fix_header(&mut v);
        for step in [1, 50, 4096] {
            let p = parse(&v, step)?;
            assert!(p.err.is_none());
            assert!(p.complete);
            assert_eq!(p.records, 4);
            assert_eq!(p.skipped, 1);
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
            let p = parse(&s[..cut], 13)?;
            assert!(!p.complete);
            assert!(p.err.is_none());
        }
        Ok(())
    }

    #[test]
    fn bytes_after_the_end_are_refused() -> Result {
        let l = layout()?;
        let mut s = build(&l, |_, _| 0)?;
        s.push(0, GFP_KERNEL)?;
        assert!(parse(&s, 100)?.err == Some(EINVAL));
        Ok(())
    }

    #[test]
    fn bad_record_headers_and_totals_are_refused() -> Result {
        let l = layout()?;
        let s = build(&l, |_, _| 0)?;
        // The first record's length.
        let mut big = copy(&s)?;
        big[HEADER_LEN + 8..HEADER_LEN + 12]
            .copy_from_slice(&(MAX_RECORD as u32 + 1).to_le_bytes());
        assert!(parse(&big, 64)?.err == Some(EINVAL));
        let mut total = copy(&s)?;
        total[56] ^= 1;
        fix_header(&mut total);
        assert!(parse(&total, 64)?.err == Some(EINVAL));
        let mut flags = copy(&s)?;
        flags[HEADER_LEN + 4] = 2;
        assert!(parse(&flags, 64)?.err == Some(EINVAL));
        // A mandatory record of an unknown tag, in place of the end record (as long).
        let mut v = copy(&s[..s.len() - RECORD_HEADER_LEN])?;
        push_record(&mut v, TAG_UNKNOWN, FLAG_MANDATORY, &[])?;
        assert!(parse(&v, 64)?.err == Some(EOPNOTSUPP));
        Ok(())
    }

    #[test]
    fn a_corrupt_record_is_refused_before_it_is_reported() -> Result {
        let l = layout()?;
        let s = build(&l, |_, _| 0x5a)?;
        // A byte of the second record's data (the first of section 2).
        let at = HEADER_LEN + RECORD_HEADER_LEN + OFFSET_LEN + 8 + RECORD_HEADER_LEN + 100;
        for bit in 0..8 {
            let mut v = copy(&s)?;
            v[at] ^= 1 << bit;
            let p = parse(&v, 4096)?;
            assert!(p.err == Some(EBADMSG));
            assert_eq!(p.records, 1);
        }
        // The CRC field itself, and the end record's.
        let mut v = copy(&s)?;
        v[HEADER_LEN + 12] ^= 1;
        assert!(parse(&v, 4096)?.err == Some(EBADMSG));
        let mut v = copy(&s)?;
        let n = v.len();
        v[n - 1] ^= 0x80;
        let p = parse(&v, 4096)?;
        assert!(p.err == Some(EBADMSG));
        assert!(!p.complete);
        Ok(())
    }

    #[test]
    fn identity_refusal_stops_before_any_record() -> Result {
        let l = layout()?;
        let mut s = build(&l, |_, _| 0)?;
        s[16] ^= 1;
        fix_header(&mut s);
        let p = parse(&s, 4096)?;
        assert_eq!(p.records, 0);
        assert!(!p.complete);
        assert!(p.err == Some(EPROTO));
        Ok(())
    }

    /// A source that gives at most `step` bytes a call, as if the byte after them faulted.
    struct Faulting<'a> {
        data: &'a [u8],
        step: usize,
    }

    impl Source for Faulting<'_> {
        fn len(&self) -> usize {
            self.data.len()
        }

        fn read(&mut self, dst: &mut [u8]) -> usize {
            let n = dst.len().min(self.step);
            self.data.read(&mut dst[..n])
        }

        fn read_hashed(&mut self, dst: &mut [u8], hash: &mut Xxh64) -> usize {
            let n = dst.len().min(self.step);
            self.data.read_hashed(&mut dst[..n], hash)
        }
    }

    /// Parses `s` through fill and drain from a source that faults every `step` bytes: returns
    /// the records, their section bytes, the faults and whether the stream was complete.
    fn parse_faulting(s: &[u8], step: usize) -> Result<(u32, u64, u32, bool)> {
        let mut p = Parser::new()?;
        let mut src = Faulting { data: s, step };
        let (mut records, mut bytes, mut faults) = (0u32, 0u64, 0u32);
        while src.len() > 0 {
            let filled = p.fill(&mut src);
            p.drain(|ev| {
                if let Event::Record { payload, .. } = ev {
                    records += 1;
                    bytes += section_data(payload)?.1.len() as u64;
                }
                Ok(())
            })?;
            if filled? {
                faults += 1;
            }
        }
        Ok((records, bytes, faults, p.is_complete()))
    }

    #[test]
    fn a_source_that_faults_part_way_loses_nothing() -> Result {
        let l = layout()?;
        let s = build(&l, |t, o| (o as u8) ^ (t as u8))?;
        // Steps that end a copy inside a header, a record header, an XXH64 stripe and a payload.
        for step in [1, 7, 31, 33, 4096 + 5, 70_000] {
            let (records, bytes, faults, complete) = parse_faulting(&s, step)?;
            assert_eq!(records, 4);
            assert_eq!(bytes, 2 * CHUNK as u64 + 11);
            assert!(complete);
            // Only a step shorter than a record makes a copy fault.
            let (faulted, short) = (faults > 0, step < MAX_RECORD);
            assert_eq!(faulted, short);
        }
        // A corrupt byte is still found.
        let mut v = copy(&s)?;
        let at = HEADER_LEN + 2 * RECORD_HEADER_LEN + 2 * OFFSET_LEN + 8 + 1000;
        v[at] ^= 4;
        assert!(parse_faulting(&v, 33).err() == Some(EBADMSG));
        Ok(())
    }

    #[test]
    fn staging_stops_at_stage_and_hands_units_on_in_order() -> Result {
        // A section of 20 records: more than `STAGE` bytes of them.
        let l = Layout::new(&[Section {
            tag: 2,
            len: 20 * CHUNK as u64,
        }])?;
        let s = build(&l, |_, o| (o >> 16) as u8)?;
        let mut p = Parser::new()?;
        let mut src = &s[..];
        let (mut fills, mut next) = (0u32, 0u64);
        while !src.is_empty() {
            let before = src.len();
            assert!(!p.fill(&mut src)?);
            fills += 1;
            // At most `STAGE` bytes and one record taken.
            assert!(before - src.len() <= STAGE + RECORD_HEADER_LEN + MAX_RECORD);
            p.drain(|ev| {
                if let Event::Record { payload, .. } = ev {
                    let (offset, data) = section_data(payload)?;
                    assert_eq!(offset, next);
                    assert!(data.iter().all(|&b| b == (offset >> 16) as u8));
                    next += data.len() as u64;
                }
                Ok(())
            })?;
        }
        assert!(fills > 1);
        assert_eq!(next, 20 * CHUNK as u64);
        assert!(p.is_complete());
        Ok(())
    }
}
