// SPDX-License-Identifier: GPL-2.0

//! The stream of a migration session, in and out of the device.
//!
//! [`Saver`] builds the stream one unit (the header, a record, the end record) at a time from
//! the device; [`Loader`] has the [`Parser`] copy the writer's bytes, checking each record as it
//! copies it, and applies the records it staged to the device, up to
//! [`STAGE`](crate::stream::STAGE) bytes of them under one lock. Either way the kernel memory used
//! is bounded (a few [`CHUNK`]s to save, a stage and a record to load), whatever the size of the
//! device's state. The data file itself, and every rule of the uAPI about it, is
//! `kernel::vfio::migration`'s [`Session`].
//!
//! The device's BARs are only touched with them locked ([`Bars`], the core's `memory_lock`) and
//! after checking, under that lock, that the session has not ended: a reset ends sessions under
//! `memory_lock`, so no stale data reaches a device after its reset.

use crate::{
    backend::Bars,
    stream::{
        record_header,
        record_len,
        seal_record,
        section_data,
        Cursor,
        Event,
        Header,
        Layout,
        Parser,
        RecordHash,
        Section,
        Source,
        Unit,
        CHUNK,
        FLAG_MANDATORY,
        HEADER_LEN,
        OFFSET_LEN,
        PAGE,
        RECORD_HEADER_LEN,
        TAG_END,
        VERSION_MAJOR_PRECOPY, //
    },
    RustMig, //
};
use kernel::{
    bitmap::{
        Bitmap,
        BitmapVec, //
    },
    prelude::*,
    sync::aref::ARef,
    vfio::{
        migration::{
            self,
            Incoming,
            Part,
            Pending,
            Session, //
        },
        pci::{
            written_pages,
            Device,
            WriteTracker, //
        },
    }, //
    xxhash::Xxh64,
};

/// Locks the BARs of `dev` for an access on behalf of session `s`, unless it ended.
fn bars<'a>(dev: &'a Device<RustMig>, s: &Session<RustMig>) -> Result<Bars<'a>> {
    let bars = dev.lock_bars()?;
    // A reset ends the session under the lock just taken: checked after taking it, so no stale
    // stream reaches, or comes from, a reset device.
    if s.is_ended() {
        return Err(ENODEV);
    }
    Ok(bars)
}

/// The writer's bytes of a resuming session's write, as the stream parser's source.
impl Source for Incoming<'_> {
    fn len(&self) -> usize {
        Incoming::len(self)
    }

    fn read(&mut self, dst: &mut [u8]) -> usize {
        Incoming::read(self, dst)
    }

    fn read_hashed(&mut self, dst: &mut [u8], hash: &mut Xxh64) -> usize {
        Incoming::read_hashed(self, dst, hash)
    }
}

/// The stream of a saving device.
pub(crate) struct Saver {
    /// The device.
    dev: ARef<Device<RustMig>>,
    mode: Mode,
}

/// How a saver builds its stream.
enum Mode {
    /// A version 1.0 stream: the header in PRE_COPY, the device's state once it stopped.
    Linear {
        /// The next unit to build.
        cursor: Cursor,
        /// Where the next unit starts in the stream.
        next: u64,
    },
    /// A version 2.0 stream, saved from PRE_COPY: the live section moves while the device runs.
    Live(Live),
}

/// A version 2.0 stream: the header, the live section read once while the device runs, then
/// the pages written since they were read, pass after pass for as long as the user reads; once
/// the device stopped, the pages still written, the other sections and the end.
struct Live {
    /// The user's writes to the live section's BAR.
    tracker: WriteTracker<RustMig>,
    /// The live section.
    section: Section,
    /// The header was built.
    header: bool,
    /// Where the first pass over the live section is.
    initial: u64,
    /// The pages of the pass being built, and the next one to look at.
    pages: BitmapVec,
    page: usize,
    /// The pages of `pages` not built yet.
    left: usize,
    /// The pages sent in a pass after the first.
    sent: BitmapVec,
    /// The pages held for the last pass: written again after a pass sent them. A guest that
    /// keeps writing a page would have it sent again in every pass, and what those passes
    /// queue is downtime at the switchover.
    deferred: BitmapVec,
    /// The device stopped and the last pass was taken: the live section is final.
    last: bool,
    /// The other sections and the end record, built once the device stopped, and the bytes of
    /// them built so far.
    rest: Layout,
    rest_cursor: Cursor,
    rest_done: u64,
}

impl Saver {
    /// Creates the saver of `dev`'s stream: a version 2.0 stream, whose live section is read
    /// while the device runs, when the device enters PRE_COPY, its backend has a live section
    /// and the module parameter `live_precopy` is set; otherwise version 1.0.
    pub(crate) fn new(dev: &Device<RustMig>, stop_copy: bool) -> Result<Self> {
        let data = dev.data();
        let live = match data.live_section() {
            Some((tag, bar)) if !stop_copy => {
                let idx = data.layout.find(tag).ok_or(EINVAL)?;
                let tracker = dev.track_writes(bar)?;
                let n = tracker.pages();
                let pages = BitmapVec::new(n, GFP_KERNEL)?;
                let sent = BitmapVec::new(n, GFP_KERNEL)?;
                let deferred = BitmapVec::new(n, GFP_KERNEL)?;
                let rest = data.layout.without(tag);
                // Its header is the live stream's own.
                let mut rest_cursor = Cursor::default();
                rest_cursor.next_unit(&rest);
                Some(Live {
                    tracker,
                    section: data.layout.sections()[idx],
                    header: false,
                    initial: 0,
                    pages,
                    page: 0,
                    left: 0,
                    sent,
                    deferred,
                    last: false,
                    rest,
                    rest_cursor,
                    rest_done: 0,
                })
            }
            _ => None,
        };
        Ok(Saver {
            dev: dev.into(),
            mode: match live {
                Some(l) => Mode::Live(l),
                None => Mode::Linear {
                    cursor: Cursor::default(),
                    next: 0,
                },
            },
        })
    }
}

/// Appends to `u` the record of `len` bytes at `offset` of section `tag`, read from the device.
fn build_record(
    dev: &Device<RustMig>,
    s: &Session<RustMig>,
    u: &mut KVec<u8>,
    tag: u32,
    offset: u64,
    len: usize,
) -> Result {
    append_record(dev, &bars(dev, s)?, u, tag, offset, len)
}

/// Appends to `u` the record of `len` bytes at `offset` of section `tag`, read from the device
/// through `bars`.
fn append_record(
    dev: &Device<RustMig>,
    bars: &Bars<'_>,
    u: &mut KVec<u8>,
    tag: u32,
    offset: u64,
    len: usize,
) -> Result {
    let data = dev.data();
    let start = u.len();
    // CAST: At most `MAX_RECORD`.
    let rh = record_header(tag, FLAG_MANDATORY, (OFFSET_LEN + len) as u32);
    let mut h = RecordHash::new(&rh);
    let off = offset.to_le_bytes();
    h.hash().update(&off);
    u.extend_from_slice(&rh, GFP_KERNEL)?;
    u.extend_from_slice(&off, GFP_KERNEL)?;
    match data.backend.live_section() {
        // The memory of a BAR: copied and checksummed in one pass, into bytes not zeroed first.
        Some((live, bar)) if live == tag => {
            u.reserve(len, GFP_KERNEL)?;
            bars.read_hashed(bar, offset, &mut u.spare_capacity_mut()[..len], h.hash())?;
            // SAFETY: Reserved above, and `read_hashed` initialised these `len` bytes.
            unsafe { u.inc_len(len) };
        }
        _ => {
            let at = u.len();
            u.resize(at + len, 0, GFP_KERNEL)?;
            data.backend
                .save(bars, &data.held, tag, offset, &mut u[at..])?;
            h.hash().update(&u[at..]);
        }
    }
    h.seal(&mut u[start..start + RECORD_HEADER_LEN]);
    Ok(())
}

/// Writes `bytes` at `offset` of section `tag` into the stopped device: the live section's
/// straight into its BAR, the others through the backend.
fn load_section(
    dev: &Device<RustMig>,
    bars: &Bars<'_>,
    tag: u32,
    offset: u64,
    bytes: &[u8],
) -> Result {
    let data = dev.data();
    match data.backend.live_section() {
        Some((live, bar)) if live == tag => bars.write_memory(bar, offset, bytes),
        _ => data.backend.load(bars, &data.held, tag, offset, bytes),
    }
}

/// The pages of a dirty unit: at most `CHUNK` bytes of memory.
const UNIT_PAGES: usize = CHUNK / PAGE;

/// Returns the next record of a dirty unit: the run of pages marked in `pages` from page `page`
/// on, at most `room` and `left` pages long, as its first page and its page count.
fn next_run(pages: &Bitmap, page: usize, room: usize, left: usize) -> Option<(usize, usize)> {
    let first = written_pages(pages, page).next()?;
    let end = pages.next_zero_bit(first).unwrap_or(pages.len());
    Some((first, (end - first).min(room).min(left)))
}

/// Returns the bytes of the dirty units that carry `pages`, ascending pages of a section of
/// `len` bytes, as [`Live::produce`] makes them: a record per run of consecutive pages, a run cut
/// where a unit's [`UNIT_PAGES`] are used up.
fn units_len(pages: impl Iterator<Item = usize>, len: u64) -> u64 {
    let record = |run: Option<(usize, usize)>| {
        run.map_or(0, |(first, n)| {
            // CAST: Pages of the section, whose length is a `u64`; at most `CHUNK`.
            let offset = (first * PAGE) as u64;
            record_len((len - offset.min(len)).min((n * PAGE) as u64) as usize)
        })
    };
    let (mut bytes, mut run, mut room) = (0, None, 0);
    for j in pages {
        match run {
            Some((first, n)) if room > 0 && first + n == j => run = Some((first, n + 1)),
            _ => {
                bytes += record(run);
                if room == 0 {
                    room = UNIT_PAGES;
                }
                run = Some((j, 1));
            }
        }
        room -= 1;
    }
    bytes + record(run)
}

/// Tells whether ascending pages are marked in a bitmap, each in amortised constant time.
struct Probe<'a> {
    pages: &'a Bitmap,
    next: Option<usize>,
}

impl<'a> Probe<'a> {
    fn new(pages: &'a Bitmap) -> Self {
        Probe {
            pages,
            next: pages.next_bit(0),
        }
    }

    /// Whether page `j` is marked; `j` must not be below the page of the last call.
    fn has(&mut self, j: usize) -> bool {
        if self.next.is_some_and(|n| n < j) {
            self.next = self.pages.next_bit(j);
        }
        self.next == Some(j)
    }
}

/// Returns the pages marked in `a` or `b`, ascending, each once.
fn union<'a>(a: &'a Bitmap, b: &'a Bitmap) -> impl Iterator<Item = usize> + 'a {
    let (mut a, mut b) = (
        written_pages(a, 0).peekable(),
        written_pages(b, 0).peekable(),
    );
    core::iter::from_fn(move || match (a.peek().copied(), b.peek().copied()) {
        (Some(x), Some(y)) if x < y => a.next(),
        (Some(x), Some(y)) if x > y => b.next(),
        (Some(_), Some(_)) => {
            b.next();
            a.next()
        }
        (Some(_), None) => a.next(),
        (None, _) => b.next(),
    })
}

/// Appends the end record to `u`.
fn build_end(u: &mut KVec<u8>) -> Result {
    u.extend_from_slice(&record_header(TAG_END, FLAG_MANDATORY, 0), GFP_KERNEL)?;
    seal_record(u);
    Ok(())
}

/// Returns whether page `i` is marked in `b`.
fn has(b: &Bitmap, i: usize) -> bool {
    b.next_bit(i) == Some(i)
}

/// Clears every bit of `b`.
fn clear_all(b: &mut BitmapVec) {
    while let Some(i) = b.next_bit(0) {
        b.clear_bit(i);
    }
}

impl Live {
    /// Turns `pages`, the pages written since the last pass, into the pages of the next one.
    /// Once the device stopped: those and the pages held back. While it runs: those that no
    /// pass after the first sent yet; the others are held back for the last pass.
    fn new_pass(&mut self, last: bool) {
        let Live {
            pages: m,
            sent,
            deferred: d,
            ..
        } = self;
        if last {
            for j in written_pages(d, 0) {
                m.set_bit(j);
            }
            clear_all(d);
            return;
        }
        for j in written_pages(m, 0) {
            if has(sent, j) || has(d, j) {
                d.set_bit(j);
            } else {
                sent.set_bit(j);
            }
        }
        for j in written_pages(d, 0) {
            m.clear_bit(j);
        }
    }

    fn pending(&self, stop_copy: bool) -> Pending {
        let chunk = CHUNK as u64;
        let mut initial = if self.header { 0 } else { HEADER_LEN as u64 };
        let left = self.section.len - self.initial;
        initial += left + left.div_ceil(chunk) * record_len(0);
        let len = self.section.len;
        // What is left of the pass being read, then the next pass: exactly what the reads
        // return until the temporary end, while nothing is written meanwhile.
        let mut dirty = units_len(written_pages(&self.pages, self.page).take(self.left), len);
        if !self.last {
            dirty += self
                .tracker
                .peek(|marks| {
                    if stop_copy {
                        // The last pass: the pages written since and those held back.
                        return units_len(union(marks, &self.deferred), len);
                    }
                    // While the device runs, the pages that no pass after the first sent yet
                    // (`new_pass`); the others wait for the last pass.
                    let (mut sent, mut held) = (Probe::new(&self.sent), Probe::new(&self.deferred));
                    let next = written_pages(marks, 0).filter(|&j| !sent.has(j) && !held.has(j));
                    units_len(next, len)
                })
                .unwrap_or_else(|| {
                    // No tracking (the device was reset): the pages held back still move.
                    if stop_copy {
                        units_len(written_pages(&self.deferred, 0), len)
                    } else {
                        0
                    }
                });
        }
        if stop_copy {
            dirty += self.rest.payload_len() - self.rest_done;
        }
        Pending { initial, dirty }
    }

    fn produce(
        &mut self,
        dev: &Device<RustMig>,
        s: &Session<RustMig>,
        stop_copy: bool,
        u: &mut KVec<u8>,
    ) -> Result<Option<Part>> {
        let tag = self.section.tag;
        if !self.header {
            u.extend_from_slice(&Header::encode_precopy(&dev.data().identity), GFP_KERNEL)?;
            self.header = true;
            return Ok(Some(Part::Initial));
        }
        if self.initial < self.section.len {
            // CAST: At most `CHUNK`.
            let len = (self.section.len - self.initial).min(CHUNK as u64) as usize;
            build_record(dev, s, u, tag, self.initial, len)?;
            self.initial += len as u64;
            return Ok(Some(Part::Initial));
        }
        loop {
            if self.left > 0 {
                // Up to `CHUNK` bytes of written pages, a record per run of them, read under
                // one lock. The pass moves on only once the unit is built: a unit that fails
                // is built again by the next read.
                let bars = bars(dev, s)?;
                let (mut page, mut left, mut room) = (self.page, self.left, UNIT_PAGES);
                while left > 0 && room > 0 {
                    let (first, n) = next_run(&self.pages, page, room, left).ok_or(EIO)?;
                    // CAST: Pages of the section, whose length is a `u64`.
                    let offset = (first * PAGE) as u64;
                    // CAST: At most `CHUNK`.
                    let len = (self.section.len - offset).min((n * PAGE) as u64) as usize;
                    append_record(dev, &bars, u, tag, offset, len)?;
                    page = first + n;
                    left -= n;
                    room -= n;
                }
                (self.page, self.left) = (page, left);
                return Ok(Some(Part::Dirty));
            }
            if self.last {
                break;
            }
            // A new pass: the pages written since the last one. Once the device stopped (its
            // BARs fenced), the last.
            self.tracker.take(&mut self.pages)?;
            self.new_pass(stop_copy);
            self.page = 0;
            self.left = written_pages(&self.pages, 0).count();
            self.last = stop_copy;
            if self.left > 0 {
                dev.data().stats.pass(self.left);
            }
            if self.left == 0 && !stop_copy {
                return Ok(None);
            }
        }
        // The other sections and the end, as a version 1.0 stream has them; the cursor moves on
        // only once the unit is built.
        let mut c = self.rest_cursor;
        match c.next_unit(&self.rest) {
            Some(Unit::Record { tag, offset, len }) => build_record(dev, s, u, tag, offset, len)?,
            Some(Unit::End) => build_end(u)?,
            Some(Unit::Header) => return Err(EIO),
            None => return Ok(None),
        }
        self.rest_cursor = c;
        // CAST: A unit is in memory.
        self.rest_done += u.len() as u64;
        Ok(Some(Part::Dirty))
    }
}

impl migration::Saver<RustMig> for Saver {
    fn pending(&self, stop_copy: bool) -> Pending {
        let layout = &self.dev.data().layout;
        match &self.mode {
            // In PRE_COPY only the header: the device's state is read once it is stopped.
            Mode::Linear { next, .. } => {
                let left = layout.stream_len() - next;
                let initial = if stop_copy {
                    left
                } else {
                    (HEADER_LEN as u64).saturating_sub(*next)
                };
                Pending { initial, dirty: 0 }
            }
            Mode::Live(l) => l.pending(stop_copy),
        }
    }

    fn produce(
        &mut self,
        s: &Session<RustMig>,
        stop_copy: bool,
        u: &mut KVec<u8>,
    ) -> Result<Option<Part>> {
        let r = self.produce_unit(s, stop_copy, u);
        if let Ok(Some(_)) = r {
            self.dev.data().stats.saved(u.len());
        }
        r
    }
}

impl Saver {
    /// Builds the next unit of the stream into `u` ([`migration::Saver::produce`]).
    fn produce_unit(
        &mut self,
        s: &Session<RustMig>,
        stop_copy: bool,
        u: &mut KVec<u8>,
    ) -> Result<Option<Part>> {
        if let Mode::Live(l) = &mut self.mode {
            return l.produce(&self.dev, s, stop_copy, u);
        }
        if migration::Saver::pending(self, stop_copy).total() == 0 {
            return Ok(None);
        }
        let Mode::Linear { cursor, next } = &mut self.mode else {
            return Err(EIO);
        };
        let data = self.dev.data();
        // The cursor moves on only once the unit is built: a unit that fails to build is built
        // again by the next read.
        let mut c = *cursor;
        match c.next_unit(&data.layout).ok_or(EIO)? {
            Unit::Header => {
                let h = Header::encode(&data.identity, data.layout.payload_len());
                u.extend_from_slice(&h, GFP_KERNEL)?;
            }
            Unit::Record { tag, offset, len } => build_record(&self.dev, s, u, tag, offset, len)?,
            Unit::End => build_end(u)?,
        }
        *cursor = c;
        // CAST: A unit is in memory.
        *next += u.len() as u64;
        Ok(Some(Part::Initial))
    }
}

/// The stream of a resuming device.
pub(crate) struct Loader {
    /// The device.
    dev: ARef<Device<RustMig>>,
    parser: Parser,
    /// What the records applied so far covered.
    rx: Received,
}

/// What the records applied to a resuming device covered.
struct Received {
    /// The section and offset the next record must carry (version 1.0).
    next_section: usize,
    next_offset: u64,
    /// Version 2.0: the pages of each section received at least once.
    covered: KVec<BitmapVec>,
}

impl Received {
    /// Checks the unit `ev` of the stream and applies it to `io`, through `locked`: its BARs,
    /// locked for session `s` at the first record that needs them.
    fn event<'a>(
        &mut self,
        io: &'a Device<RustMig>,
        s: &Session<RustMig>,
        locked: &mut Option<Bars<'a>>,
        ev: Event<'_>,
    ) -> Result {
        let data = io.data();
        let dev = io.as_ref();
        match ev {
            Event::Header(h) => {
                data.check_header(dev, h)?;
                if h.major == VERSION_MAJOR_PRECOPY {
                    for sec in data.layout.sections() {
                        let pages = usize::try_from(sec.pages()).map_err(|_| EINVAL)?;
                        self.covered
                            .push(BitmapVec::new(pages, GFP_KERNEL)?, GFP_KERNEL)?;
                    }
                }
                Ok(())
            }
            Event::Record {
                tag,
                mandatory,
                payload,
            } => {
                let Some(idx) = data.layout.find(tag) else {
                    if mandatory {
                        return Err(data.refuse(
                            dev,
                            EOPNOTSUPP,
                            format_args!("resume: unknown mandatory record {tag}"),
                        ));
                    }
                    return Ok(());
                };
                let (offset, bytes) = section_data(payload)?;
                let section = data.layout.sections()[idx];
                if let Some(pages) = self.covered.get_mut(idx) {
                    // Version 2.0: whole pages, anywhere in the section, the last one winning.
                    let Ok((first, n)) = section.page_range(offset, bytes.len()) else {
                        return Err(data.refuse(
                            dev,
                            EINVAL,
                            format_args!(
                                "resume: record {tag} at {offset}+{} is not whole pages",
                                bytes.len()
                            ),
                        ));
                    };
                    let bars = match locked {
                        Some(ref b) => b,
                        None => locked.insert(bars(io, s)?),
                    };
                    load_section(io, bars, tag, offset, bytes)?;
                    // CAST: Pages of a section whose page count fits a `usize`.
                    for page in first..first + n {
                        pages.set_bit(page as usize);
                    }
                    return Ok(());
                }
                // Only the section being received has bytes left (`next_offset` is below its
                // length); for any other the subtraction means nothing, and may not be made.
                let want = if idx == self.next_section {
                    (section.len - self.next_offset).min(crate::stream::CHUNK as u64)
                } else {
                    0
                };
                if idx != self.next_section
                    || offset != self.next_offset
                    || bytes.len() as u64 != want
                {
                    return Err(data.refuse(
                        dev,
                        EINVAL,
                        format_args!(
                            "resume: record {tag} at {offset}+{} out of order",
                            bytes.len()
                        ),
                    ));
                }
                let bars = match locked {
                    Some(ref b) => b,
                    None => locked.insert(bars(io, s)?),
                };
                load_section(io, bars, tag, offset, bytes)?;
                self.next_offset += want;
                if self.next_offset == section.len {
                    self.next_section += 1;
                    self.next_offset = 0;
                }
                Ok(())
            }
            Event::End => {
                let complete = if self.covered.is_empty() {
                    self.next_section == data.layout.sections().len()
                } else {
                    self.covered
                        .iter()
                        .all(|pages| written_pages(pages, 0).count() == pages.len())
                };
                if !complete {
                    return Err(data.refuse(
                        dev,
                        EINVAL,
                        format_args!("resume: stream ended before the device's state"),
                    ));
                }
                Ok(())
            }
        }
    }
}

impl Loader {
    /// Creates the loader of `dev`'s stream.
    pub(crate) fn new(dev: &Device<RustMig>) -> Result<Self> {
        Ok(Loader {
            dev: dev.into(),
            parser: Parser::new()?,
            rx: Received {
                next_section: 0,
                next_offset: 0,
                covered: KVec::new(),
            },
        })
    }
}

impl migration::Loader<RustMig> for Loader {
    /// Has the parser copy the writer's bytes, and applies the records it staged to the device
    /// under one lock of the BARs per [`STAGE`](crate::stream::STAGE) bytes. The lock is never
    /// held while the user's memory is read: the writer's buffer may be a BAR mmap, whose fault
    /// takes that lock.
    fn consume(&mut self, s: &Session<RustMig>, src: &mut Incoming<'_>) -> Result<usize> {
        let io = &self.dev;
        let data = io.data();
        let total = src.len();
        let res = loop {
            let filled = self.parser.fill(src);
            if self.parser.has_staged() {
                // The BARs are locked at the first record and stay locked for the others staged
                // with it: each lock of a device whose memory decoding is off (a destination
                // whose guest has not run) turns it on and off again, which an emulated
                // platform pays for dearly.
                let mut locked: Option<Bars<'_>> = None;
                let drained = self
                    .parser
                    .drain(|ev| self.rx.event(io, s, &mut locked, ev));
                drop(locked);
                if let Err(e) = drained {
                    break Err(e);
                }
            }
            match filled {
                Err(e) => break Err(e),
                // A fault: the bytes before it were taken.
                Ok(true) => break Ok(()),
                Ok(false) if src.is_empty() => break Ok(()),
                Ok(false) => {}
            }
        };
        let taken = total - src.len();
        match res {
            Ok(()) => {
                data.stats.loaded(taken);
                Ok(taken)
            }
            Err(e) => {
                data.stats.refused(e);
                Err(e)
            }
        }
    }

    /// Fails unless the whole stream was written and accepted.
    fn finish(&mut self, _s: &Session<RustMig>, written: u64) -> Result {
        if let Some(e) = self.parser.error() {
            return Err(e);
        }
        if !self.parser.is_complete() {
            let data = self.dev.data();
            let e = data.refuse(
                self.dev.as_ref(),
                EINVAL,
                format_args!(
                    "resume incomplete: {written} of {} bytes written",
                    data.layout.stream_len()
                ),
            );
            data.stats.refused(e);
            return Err(e);
        }
        Ok(())
    }
}
