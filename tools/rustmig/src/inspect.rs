// SPDX-License-Identifier: GPL-2.0

//! `rustmig inspect`: a stream, read piece by piece through the driver's [`Parser`].
//!
//! The parser reports a unit only once it is whole and checked (the header after its CRC, a
//! record after its CRC), so every line printed for a record is a checked record. On top of the
//! parser, the inspector makes the checks that a resuming device makes without knowing its
//! layout: section records carry their offset and at least one byte, a section's records are in
//! order and all of [`CHUNK`] bytes but its last, sections do not come back, at most
//! [`MAX_SECTIONS`] of them add up to the header's `state_size`, and for a backend it knows
//! (ivshmem, edu) its sections are its own, in order; a mandatory record of an unknown tag is
//! refused, an optional one skipped.
//!
//! To say where a stream was refused, the inspector follows the record boundaries alongside the
//! parser (a [`Framer`]): the parser keeps its position to itself.

use std::collections::{BTreeMap, VecDeque};
use std::io::{self, Read, Write};

use kernel::crc::Crc32c;
use kernel::error::{code::*, Error};

use crate::descriptor::backend_name;
use crate::stream::{
    le16, le32, section_data, Check, DescriptorLine, Event, Header, Parser, CHUNK, FLAG_MANDATORY,
    FLAG_RECORD_XXH64, HEADER_CRC_OFFSET, HEADER_LEN, MAGIC, MAX_HEADER_LEN, MAX_RECORD,
    MAX_SECTIONS, PAGE, RECORD_HEADER_LEN, TAG_END, VERSION_MAJOR, VERSION_MAJOR_PRECOPY,
};
use crate::uapi;

/// How much of the stream is read at a time.
pub(crate) const READ_CHUNK: usize = 64 * 1024;

/// The bytes a record's CRC covers in its header.
const RECORD_CRC_COVERS: usize = 12;

/// The first tag that is common to all backends.
const TAG_COMMON: u32 = uapi::RUSTMIG_TAG_COMMON;

/// The most distinct tags counted one by one; the others are counted together.
const MAX_TAG_STATS: usize = 64;

/// What inspecting a stream found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// The whole stream, up to its end record and no further, was accepted.
    Complete,
    /// The stream was refused.
    Refused(Error),
    /// The input ended before the end record.
    Incomplete,
}

/// A backend whose sections the inspector knows, from the uAPI header.
struct Backend {
    name: &'static str,
    /// The sections' tags and names, in stream order.
    sections: &'static [(u32, &'static str)],
}

const BACKENDS: [Backend; 2] = [
    Backend {
        name: "ivshmem",
        sections: &[
            (uapi::RUSTMIG_IVSHMEM_TAG_REGS, "regs"),
            (uapi::RUSTMIG_IVSHMEM_TAG_MEM, "mem"),
        ],
    },
    Backend {
        name: "edu",
        sections: &[(uapi::RUSTMIG_EDU_TAG_REGS, "regs")],
    },
];

/// A record header, as found at `offset` of the stream.
#[derive(Clone, Copy, Debug)]
struct Frame {
    offset: u64,
    raw: [u8; RECORD_HEADER_LEN],
}

impl Frame {
    fn tag(&self) -> u32 {
        le32(&self.raw, 0)
    }
    fn flags(&self) -> u32 {
        le32(&self.raw, 4)
    }
    fn len(&self) -> u32 {
        le32(&self.raw, 8)
    }
    fn crc(&self) -> u32 {
        le32(&self.raw, RECORD_CRC_COVERS)
    }
}

/// Follows the stream's structure from lengths alone: keeps the first bytes (the header) and
/// the record headers that the parser has not reported yet.
#[derive(Default)]
struct Framer {
    /// The bytes seen so far.
    seen: u64,
    /// The first bytes of the stream, at most [`MAX_HEADER_LEN`].
    head: Vec<u8>,
    /// Whether the header's length was looked at.
    started: bool,
    /// Where the next record header starts, while the structure can be followed.
    next: Option<u64>,
    /// The bytes of a record header split between two pieces.
    partial: Vec<u8>,
    /// The record headers found and not yet reported by the parser.
    frames: VecDeque<Frame>,
}

impl Framer {
    /// Takes the next piece of the stream (before the parser does).
    fn push(&mut self, piece: &[u8]) {
        let start = self.seen;
        if self.head.len() < MAX_HEADER_LEN {
            let n = (MAX_HEADER_LEN - self.head.len()).min(piece.len());
            self.head.extend_from_slice(&piece[..n]);
        }
        self.seen += piece.len() as u64;
        if !self.started && self.head.len() >= 12 {
            self.started = true;
            let header_len = le32(&self.head, 8) as usize;
            if (HEADER_LEN..=MAX_HEADER_LEN).contains(&header_len) {
                self.next = Some(header_len as u64);
            }
        }
        while let Some(next) = self.next {
            let from = next + self.partial.len() as u64;
            if from >= self.seen {
                break;
            }
            // `from` is in this piece: earlier pieces were followed to their end.
            let i = (from - start) as usize;
            let n = (RECORD_HEADER_LEN - self.partial.len()).min(piece.len() - i);
            self.partial.extend_from_slice(&piece[i..i + n]);
            if self.partial.len() < RECORD_HEADER_LEN {
                break;
            }
            let mut raw = [0u8; RECORD_HEADER_LEN];
            raw.copy_from_slice(&self.partial);
            self.partial.clear();
            let f = Frame { offset: next, raw };
            self.frames.push_back(f);
            // After the end record, or a record the parser refuses for its length, there is no
            // structure left to follow.
            self.next = (f.tag() != TAG_END && f.len() as usize <= MAX_RECORD)
                .then(|| next + (RECORD_HEADER_LEN as u64) + u64::from(f.len()));
        }
    }
}

/// The counts of one tag.
#[derive(Clone, Copy, Debug, Default)]
struct Stats {
    records: u64,
    /// Payload bytes.
    bytes: u64,
    /// Section data bytes (the payload without the offsets).
    data: u64,
}

/// The section checks of a resuming device that do not need its layout.
#[derive(Default)]
struct Sections {
    /// The sections' tags, in stream order.
    order: Vec<u32>,
    /// The offset the current section's next record must have.
    next_offset: u64,
    /// The current section's last record was short: it was the section's last.
    last_short: bool,
    /// The section bytes so far (version 2.0: of the pages seen at least once).
    state: u64,
    /// A version 2.0 stream: records of whole pages, in any order, the last one winning.
    v2: bool,
    /// Version 2.0: how many times each page of each section came, and its length.
    pages: std::collections::BTreeMap<(u32, u64), (u32, usize)>,
    /// Version 2.0: where each section ends, once a record shorter than whole pages said so.
    ends: std::collections::BTreeMap<u32, u64>,
}

impl Sections {
    /// Version 2.0: the most times a page came (the passes over it), and the pages that came
    /// more than once.
    fn passes(&self) -> (u32, u64) {
        let most = self.pages.values().map(|&(n, _)| n).max().unwrap_or(0);
        let again = self.pages.values().filter(|&&(n, _)| n > 1).count() as u64;
        (most, again)
    }

    fn record_v2(
        &mut self,
        tag: u32,
        offset: u64,
        data: usize,
        backend: Option<&Backend>,
    ) -> Result<(), String> {
        if let Some(b) = backend {
            if !b.sections.iter().any(|&(t, _)| t == tag) {
                return Err(format!(
                    "section {tag} is not a section of the {} backend",
                    b.name
                ));
            }
        }
        if offset % PAGE as u64 != 0 {
            return Err(format!(
                "section {tag} record at section offset {offset}, not a multiple of {PAGE}"
            ));
        }
        let end = offset + data as u64;
        if let Some(&e) = self.ends.get(&tag) {
            if end > e || (data % PAGE != 0 && end != e) {
                return Err(format!(
                    "section {tag} record up to {end}, but the section ends at {e}"
                ));
            }
        } else if data % PAGE != 0 {
            self.ends.insert(tag, end);
        }
        if !self.order.contains(&tag) {
            self.order.push(tag);
        }
        for k in 0..data.div_ceil(PAGE) {
            let len = (data - k * PAGE).min(PAGE);
            let e = self
                .pages
                .entry((tag, offset / PAGE as u64 + k as u64))
                .or_insert((0, len));
            if e.0 == 0 {
                self.state += len as u64;
            }
            e.0 += 1;
        }
        Ok(())
    }

    fn record(
        &mut self,
        tag: u32,
        offset: u64,
        data: usize,
        backend: Option<&Backend>,
    ) -> Result<(), String> {
        if data == 0 {
            return Err("a section record without data".into());
        }
        if self.v2 {
            return self.record_v2(tag, offset, data, backend);
        }
        if self.order.last() == Some(&tag) {
            if self.last_short {
                return Err(format!(
                    "section {tag} goes on after a record of less than {CHUNK} bytes of data, \
                     which must have been its last"
                ));
            }
            if offset != self.next_offset {
                return Err(format!(
                    "section {tag} record at section offset {offset}, expected {}",
                    self.next_offset
                ));
            }
        } else {
            if self.order.contains(&tag) {
                return Err(format!("section {tag} comes back after another section"));
            }
            if self.order.len() == MAX_SECTIONS {
                return Err(format!("more than {MAX_SECTIONS} sections"));
            }
            if let Some(b) = backend {
                match b.sections.get(self.order.len()) {
                    Some(&(want, name)) if want != tag => {
                        return Err(format!(
                            "section {tag} where the {} backend's section {want} ({name}) comes",
                            b.name
                        ))
                    }
                    None => {
                        return Err(format!(
                            "section {tag} after the {} backend's last section",
                            b.name
                        ))
                    }
                    _ => {}
                }
            }
            if offset != 0 {
                return Err(format!(
                    "section {tag} starts at section offset {offset}, not 0"
                ));
            }
            self.order.push(tag);
            self.next_offset = 0;
        }
        self.next_offset += data as u64;
        self.last_short = data < CHUNK;
        self.state += data as u64;
        Ok(())
    }

    fn end(&self, state_size: u64, backend: Option<&Backend>) -> Result<(), String> {
        if self.v2 {
            if let Some(b) = backend {
                if let Some((tag, name)) = b.sections.iter().find(|(t, _)| !self.order.contains(t))
                {
                    return Err(format!(
                        "the stream ends without the {} backend's section {tag} ({name})",
                        b.name
                    ));
                }
            }
            // Every page once: a missing page leaves the sections short of the state size.
            if self.state != state_size {
                return Err(format!(
                    "the pages that came hold {} bytes, the header's state_size is {state_size}: \
                     a page never came",
                    self.state
                ));
            }
            return Ok(());
        }
        if self.state != state_size {
            return Err(format!(
                "the sections hold {} bytes, the header's state_size is {state_size}",
                self.state
            ));
        }
        if let Some(b) = backend {
            if let Some((tag, name)) = b.sections.get(self.order.len()) {
                return Err(format!(
                    "the stream ends without the {} backend's section {tag} ({name})",
                    b.name
                ));
            }
        }
        Ok(())
    }
}

/// Why the inspector stopped the parser.
enum Stop {
    /// Writing the report failed.
    Io(io::Error),
    /// The stream is refused, with this errno and reason.
    Refuse(Error, String),
}

impl From<io::Error> for Stop {
    fn from(e: io::Error) -> Stop {
        Stop::Io(e)
    }
}

/// The inspector's state: what the parser reported so far.
struct Inspector<'o> {
    out: &'o mut dyn Write,
    framer: Framer,
    /// The end of the last unit the parser reported.
    pos: u64,
    /// The record header of the record being reported.
    current: Option<Frame>,
    header: Option<Header>,
    backend: Option<&'static Backend>,
    sections: Sections,
    stats: BTreeMap<u32, Stats>,
    other_stats: Stats,
    records: u64,
    ended: bool,
    /// Why the inspector refused the stream, if it did.
    reason: Option<String>,
    io_err: Option<io::Error>,
}

impl<'o> Inspector<'o> {
    fn new(out: &'o mut dyn Write) -> Self {
        Inspector {
            out,
            framer: Framer::default(),
            pos: 0,
            current: None,
            header: None,
            backend: None,
            sections: Sections::default(),
            stats: BTreeMap::new(),
            other_stats: Stats::default(),
            records: 0,
            ended: false,
            reason: None,
            io_err: None,
        }
    }

    /// The parser's sink.
    fn event(&mut self, ev: Event<'_>) -> kernel::error::Result {
        let r = match ev {
            Event::Header(h) => self.on_header(h),
            Event::Record {
                tag,
                mandatory,
                payload,
            } => self.on_record(tag, mandatory, payload),
            Event::End => self.on_end(),
        };
        match r {
            Ok(()) => Ok(()),
            Err(Stop::Io(e)) => {
                self.io_err = Some(e);
                // Any error stops the parser; `io_err` says what it was.
                Err(EINVAL)
            }
            Err(Stop::Refuse(e, reason)) => {
                self.reason = Some(reason);
                Err(e)
            }
        }
    }

    fn on_header(&mut self, h: &Header) -> Result<(), Stop> {
        let raw = &self.framer.head[..h.header_len];
        let id = &h.identity;
        let name = backend_name(id);
        writeln!(
            self.out,
            "header at 0: {} bytes, header_crc {:#010x} ok",
            h.header_len,
            le32(raw, HEADER_CRC_OFFSET)
        )?;
        writeln!(
            self.out,
            "  magic \"RMIG\" format {}.{} header_len {} flags {:#x} reserved {:#x}",
            le16(raw, 4),
            h.minor,
            h.header_len,
            le32(raw, 12),
            le32(raw, HEADER_CRC_OFFSET + 4)
        )?;
        writeln!(
            self.out,
            "  records checked by {}",
            match h.check {
                Check::Crc32c => "CRC-32C",
                Check::Xxh64 => "XXH64",
            }
        )?;
        writeln!(
            self.out,
            "  pci {:04x}:{:04x} subsystem {:04x}:{:04x} class_rev {:#010x}",
            id.vendor, id.device, id.subsystem_vendor, id.subsystem_device, id.class_rev
        )?;
        writeln!(
            self.out,
            "  backend {name} {}.{} state_size {} payload_len {}",
            id.backend_major, id.backend_minor, id.state_size, h.payload_len
        )?;
        if h.header_len > HEADER_LEN {
            writeln!(
                self.out,
                "  {} more header bytes, of a newer minor version",
                h.header_len - HEADER_LEN
            )?;
        }
        let line = DescriptorLine {
            major: h.major,
            minor: h.minor,
            loads: &[],
            identity: id,
        };
        writeln!(self.out, "  descriptor: {line}")?;
        self.backend = BACKENDS.iter().find(|b| b.name == name);
        self.sections.v2 = h.major == VERSION_MAJOR_PRECOPY;
        if self.sections.v2 {
            writeln!(
                self.out,
                "  a pre-copy stream: pages in any order, the last one of a page winning"
            )?;
        }
        self.header = Some(*h);
        self.pos = h.header_len as u64;
        Ok(())
    }

    /// Returns the header of the record the parser reported, checking that the inspector follows
    /// the stream as the parser does.
    fn take_frame(&mut self, payload: &[u8]) -> Result<Frame, Stop> {
        let f = self
            .framer
            .frames
            .pop_front()
            .filter(|f| f.offset == self.pos && f.len() as usize == payload.len());
        let f = f.ok_or_else(|| {
            Stop::Io(io::Error::other(format!(
                "internal error: lost the record boundaries at offset {}",
                self.pos
            )))
        })?;
        let check = self.header.map_or(Check::Crc32c, |h| h.check);
        self.current = Some(f);
        if check.record(&f.raw, payload) != f.crc() {
            return Err(Stop::Io(io::Error::other(format!(
                "internal error: the parser accepted the record at {} whose check value does not match",
                f.offset
            ))));
        }
        Ok(f)
    }

    /// Returns the name of a tag, and whether it is a section the inspector checks.
    fn tag_kind(&self, tag: u32) -> (&'static str, bool) {
        if tag >= TAG_COMMON {
            return ("unknown", false);
        }
        match self.backend {
            None => ("section", true),
            Some(b) => match b.sections.iter().find(|s| s.0 == tag) {
                Some(s) => (s.1, true),
                None => ("unknown", false),
            },
        }
    }

    fn count(&mut self, tag: u32, bytes: usize, data: usize) {
        let n = self.stats.len();
        let s = match self.stats.get_mut(&tag) {
            Some(s) => s,
            None if n < MAX_TAG_STATS => self.stats.entry(tag).or_default(),
            None => &mut self.other_stats,
        };
        s.records += 1;
        s.bytes += bytes as u64;
        s.data += data as u64;
    }

    fn on_record(&mut self, tag: u32, mandatory: bool, payload: &[u8]) -> Result<(), Stop> {
        let f = self.take_frame(payload)?;
        let (name, section) = self.tag_kind(tag);
        let mut line = format!(
            "record at {}: tag {} ({name}) flags {:#x}{} len {}",
            f.offset,
            tag_str(tag),
            f.flags(),
            if mandatory { " (mandatory)" } else { "" },
            f.len()
        );
        let mut data = 0;
        if section {
            let (offset, d) = section_data(payload).map_err(|e| {
                Stop::Refuse(e, "a section record shorter than its 8-byte offset".into())
            })?;
            self.sections
                .record(tag, offset, d.len(), self.backend)
                .map_err(|r| Stop::Refuse(EINVAL, r))?;
            data = d.len();
            line += &format!(" offset {offset}");
        } else if mandatory {
            return Err(Stop::Refuse(
                EOPNOTSUPP,
                format!("a mandatory record of a tag this reader does not know ({name})"),
            ));
        }
        line += &format!(" crc {:#010x} ok", f.crc());
        if !section {
            line += ", skipped (optional, unknown tag)";
        }
        writeln!(self.out, "{line}")?;
        self.count(tag, payload.len(), data);
        self.records += 1;
        self.pos += (RECORD_HEADER_LEN + payload.len()) as u64;
        Ok(())
    }

    fn on_end(&mut self) -> Result<(), Stop> {
        let f = self.take_frame(&[])?;
        let h = self.header.as_ref().ok_or_else(|| {
            Stop::Io(io::Error::other("internal error: an end before the header"))
        })?;
        self.sections
            .end(h.identity.state_size, self.backend)
            .map_err(|r| Stop::Refuse(EINVAL, r))?;
        writeln!(
            self.out,
            "end at {}: tag 0 flags {:#x}{} len 0 crc {:#010x} ok",
            f.offset,
            f.flags(),
            if f.flags() & FLAG_MANDATORY != 0 {
                " (mandatory)"
            } else {
                ""
            },
            f.crc()
        )?;
        self.ended = true;
        self.pos += RECORD_HEADER_LEN as u64;
        Ok(())
    }

    /// Prints the counts per tag.
    fn totals(&mut self) -> io::Result<()> {
        let mut lines = Vec::new();
        for (&tag, s) in &self.stats {
            let (name, section) = self.tag_kind(tag);
            lines.push(stats_line(
                &format!("tag {} ({name})", tag_str(tag)),
                s,
                section,
            ));
        }
        if self.other_stats.records != 0 {
            lines.push(stats_line("other tags", &self.other_stats, false));
        }
        if self.sections.v2 {
            let (passes, again) = self.sections.passes();
            lines.push(format!(
                "pre-copy: {passes} pass(es) at most over a page, {again} page(s) sent again"
            ));
        }
        for l in lines {
            writeln!(self.out, "{l}")?;
        }
        Ok(())
    }

    /// Returns where the stream was refused, what was being parsed there, and why.
    fn refusal(&mut self, e: Error) -> (u64, String, String) {
        let Some(h) = self.header else {
            return (0, "header".into(), header_refusal(&self.framer.head, e));
        };
        if self.ended {
            return (
                self.pos,
                "after the end record".into(),
                "bytes after the end record".into(),
            );
        }
        // The record being reported when the inspector refused it, or the next one.
        let frame = self.current.iter().chain(self.framer.frames.front());
        let Some(f) = frame.copied().find(|f| f.offset == self.pos) else {
            let reason = self
                .reason
                .take()
                .unwrap_or_else(|| errno_meaning(e).into());
            return (self.pos, "record".into(), reason);
        };
        let what = format!(
            "record tag {} flags {:#x} len {}",
            tag_str(f.tag()),
            f.flags(),
            f.len()
        );
        if let Some(reason) = self.reason.take() {
            return (f.offset, what, reason);
        }
        let stream_len = if h.major == VERSION_MAJOR_PRECOPY {
            u64::MAX
        } else {
            h.header_len as u64 + h.payload_len
        };
        let rec_end = f.offset + RECORD_HEADER_LEN as u64 + u64::from(f.len());
        let reason = if e == EBADMSG {
            format!("its crc {:#010x} does not match its bytes", f.crc())
        } else if e != EINVAL {
            errno_meaning(e).into()
        } else if f.flags() & !FLAG_MANDATORY != 0 {
            format!("unknown record flags {:#x}", f.flags() & !FLAG_MANDATORY)
        } else if f.len() as usize > MAX_RECORD {
            format!(
                "len {} is more than {MAX_RECORD}, the longest record",
                f.len()
            )
        } else if f.tag() == TAG_END && f.len() != 0 {
            "an end record with a payload".into()
        } else if rec_end > stream_len {
            format!(
                "the record ends at {rec_end}, past the {stream_len} bytes of the stream that the \
                 header's payload_len makes"
            )
        } else if f.tag() == TAG_END && stream_len != u64::MAX {
            format!(
                "the end record ends at {rec_end}, before the {stream_len} bytes of the stream \
                 that the header's payload_len makes"
            )
        } else {
            errno_meaning(e).into()
        };
        (f.offset, what, reason)
    }

    /// Describes where an incomplete stream ends.
    fn incomplete(&self, total: u64) -> String {
        match self.header {
            Some(h) if h.major == VERSION_MAJOR_PRECOPY => {
                format!("incomplete: {total} bytes, and no end record")
            }
            Some(h) => {
                let len = h.header_len as u64 + h.payload_len;
                let at = if total == self.pos {
                    format!("before the record at {}", self.pos)
                } else {
                    format!("in the record at {}", self.pos)
                };
                format!("incomplete: {total} of {len} bytes: the stream ends {at}")
            }
            None => {
                let head = &self.framer.head;
                let header_len = if head.len() >= 12 {
                    le32(head, 8) as usize
                } else {
                    0
                };
                let len = if (HEADER_LEN..=MAX_HEADER_LEN).contains(&header_len) {
                    header_len
                } else {
                    HEADER_LEN
                };
                format!(
                    "incomplete: {total} of at least {len} bytes: the stream ends in the header"
                )
            }
        }
    }
}

fn stats_line(what: &str, s: &Stats, section: bool) -> String {
    let records = if s.records == 1 { "record" } else { "records" };
    if section {
        format!("{what}: {} {records}, {} bytes of data", s.records, s.data)
    } else {
        format!(
            "{what}: {} {records}, {} bytes, skipped",
            s.records, s.bytes
        )
    }
}

/// Formats a tag: decimal for a section's, hex for the common ones.
fn tag_str(tag: u32) -> String {
    if tag >= TAG_COMMON {
        format!("{tag:#x}")
    } else {
        tag.to_string()
    }
}

/// Returns the name of an errno, as the kernel spells it.
pub(crate) fn errno_name(e: Error) -> String {
    match e.name() {
        Some(n) => n.into(),
        None => format!("errno {}", -e.to_errno()),
    }
}

/// What an errno means for a stream (Documentation/driver-api/vfio-pci-rustmig.rst).
fn errno_meaning(e: Error) -> &'static str {
    if e == EINVAL {
        "an invalid stream"
    } else if e == EPROTONOSUPPORT {
        "another major version of the format"
    } else if e == EBADMSG {
        "a check value does not match"
    } else if e == EOPNOTSUPP {
        "header flags, or a mandatory record of an unknown tag"
    } else if e == ENOMEM {
        "out of memory"
    } else {
        "refused"
    }
}

/// Says why a stream's header, whose first bytes are `raw`, was refused with `e`.
pub(crate) fn header_refusal(raw: &[u8], e: Error) -> String {
    if raw.len() < HEADER_LEN {
        return format!("the header is cut short: {} bytes", raw.len());
    }
    let header_len = le32(raw, 8) as usize;
    if e == EINVAL {
        if raw[..4] != MAGIC {
            format!("bad magic {}, not \"RMIG\"", escape(&raw[..4]))
        } else if !(HEADER_LEN..=MAX_HEADER_LEN).contains(&header_len) {
            format!("header_len {header_len} is not in {HEADER_LEN}..={MAX_HEADER_LEN}")
        } else {
            errno_meaning(e).into()
        }
    } else if e == EPROTONOSUPPORT {
        format!(
            "format major version {}, this reader reads {VERSION_MAJOR} and {VERSION_MAJOR_PRECOPY}",
            le16(raw, 4)
        )
    } else if e == EBADMSG && raw.len() >= header_len {
        let mut crc = Crc32c::new();
        crc.update(&raw[..HEADER_CRC_OFFSET]);
        crc.update(&[0; 4]);
        crc.update(&raw[HEADER_CRC_OFFSET + 4..header_len]);
        format!(
            "header_crc {:#010x} does not match the header's CRC, {:#010x}",
            le32(raw, HEADER_CRC_OFFSET),
            crc.finish()
        )
    } else if e == EOPNOTSUPP {
        format!(
            "header flags {:#x} set, of which {:#x} this reader does not know",
            le32(raw, 12),
            le32(raw, 12) & !FLAG_RECORD_XXH64
        )
    } else {
        errno_meaning(e).into()
    }
}

/// Quotes bytes, escaping those that are not printable ASCII.
fn escape(b: &[u8]) -> String {
    let mut s = String::from("\"");
    for &c in b {
        if c.is_ascii_graphic() && c != b'"' && c != b'\\' {
            s.push(char::from(c));
        } else {
            s += &format!("\\x{c:02x}");
        }
    }
    s.push('"');
    s
}

/// Inspects the stream read from `input`, `chunk` bytes at a time, writing the report to `out`.
///
/// Fails only if reading or writing fails.
pub(crate) fn inspect(
    input: &mut dyn Read,
    out: &mut dyn Write,
    chunk: usize,
) -> io::Result<Outcome> {
    let mut parser =
        Parser::new().map_err(|e| io::Error::other(format!("cannot set up the parser: {e:?}")))?;
    let mut ins = Inspector::new(out);
    let mut buf = vec![0u8; chunk.max(1)];
    let mut total = 0u64;
    loop {
        let n = match input.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        total += n as u64;
        ins.framer.push(&buf[..n]);
        if parser.feed(&buf[..n], |ev| ins.event(ev)).is_err() {
            if let Some(io) = ins.io_err.take() {
                return Err(io);
            }
            break;
        }
    }
    ins.totals()?;
    if let Some(e) = parser.error() {
        let (offset, what, reason) = ins.refusal(e);
        writeln!(
            ins.out,
            "refused: {} at offset {offset}: {what}: {reason}",
            errno_name(e)
        )?;
        return Ok(Outcome::Refused(e));
    }
    if parser.is_complete() {
        let state = ins.header.map_or(0, |h| h.identity.state_size);
        writeln!(
            ins.out,
            "complete: {total} bytes, {} records and the end record, {state} bytes of state",
            ins.records
        )?;
        return Ok(Outcome::Complete);
    }
    let line = ins.incomplete(total);
    writeln!(ins.out, "{line}")?;
    Ok(Outcome::Incomplete)
}

#[cfg(test)]
mod tests;
