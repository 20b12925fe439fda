// SPDX-License-Identifier: GPL-2.0

//! Migration sessions: the data file of a saving or a resuming device.
//!
//! A saving session builds the stream one unit (the header, a record, the end record) at a time
//! and copies it to the reader; a resuming session copies at most [`CHUNK`] bytes of the writer's
//! data at a time into the [`Parser`], which hands each complete record to the backend. Either
//! way the kernel memory used is a few [`CHUNK`]s, whatever the size of the device's state.
//!
//! # Locking
//!
//! - `Session::io` serialises reads and writes of the file. It is held across user copies and
//!   device access, and is taken after the device's state lock, never before.
//! - `Session::progress` is held only briefly, never across a user copy or device access.
//! - The device's BARs are only touched with them locked ([`Bars`], the core's `memory_lock`)
//!   and after checking, under that lock, that the session has not ended: a reset ends sessions
//!   under `memory_lock`, so no stale data reaches a device after its reset.

use crate::{
    backend::Bars,
    stream::{
        record_header,
        seal_record,
        section_data,
        Cursor,
        Event,
        Header,
        Parser,
        Unit,
        CHUNK,
        FLAG_MANDATORY,
        HEADER_LEN,
        MAX_RECORD,
        OFFSET_LEN,
        RECORD_HEADER_LEN,
        TAG_END, //
    },
    RustMig, //
};
use kernel::{
    fs::File,
    new_mutex,
    new_poll_condvar,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        poll::{
            PollCondVar,
            PollTable, //
        },
        Arc,
        ArcBorrow,
        Mutex, //
    },
    uaccess::{
        UserSliceReader,
        UserSliceWriter, //
    },
    vfio::{
        file::{
            self as data_file,
            events,
            Access,
            DataFileOps,
            PrecopyInfo,
            VFIO_MIG_GET_PRECOPY_INFO, //
        },
        pci::{
            Device,
            DeviceIo, //
        },
    }, //
};

/// A migration session and its data file.
#[pin_data]
pub(crate) struct Session {
    /// The device.
    dev: DeviceIo<RustMig>,
    /// The session ended: reads and writes fail with `ENODEV`. Set under the device's state lock
    /// or by a reset, checked with the BARs locked before each device access.
    disabled: Atomic<bool>,
    /// The device's reset count when the session opened: a reset since ends the session for the
    /// device at once, though the reset's holder of the state lock disables it only later.
    resets: u64,
    /// The stream, and the buffers of the I/O in progress.
    #[pin]
    io: Mutex<Io>,
    /// What PRECOPY_INFO, MIG_DATA_SIZE and poll report.
    #[pin]
    progress: Mutex<Progress>,
    /// Pollers wait here for the readiness to change.
    #[pin]
    wait: PollCondVar,
}

/// The I/O state of a session.
enum Io {
    Save(SaveStream),
    Resume(ResumeStream),
}

/// A stream being saved.
struct SaveStream {
    /// The next unit to build.
    cursor: Cursor,
    /// The unit being read: its bytes, and where it starts in the stream.
    unit: KVec<u8>,
    unit_start: u64,
}

/// A stream being resumed.
struct ResumeStream {
    parser: Parser,
    /// The writer's bytes being parsed.
    bounce: KVec<u8>,
    /// The section and offset the next record must carry.
    next_section: usize,
    next_offset: u64,
}

/// The progress of a session.
struct Progress {
    /// The bytes read or written so far.
    pos: u64,
    /// The length of the whole stream.
    total: u64,
    /// Saving: the bytes that may be read now (the pre-copy part, or everything).
    limit: u64,
    /// A saving session.
    saving: bool,
    /// Saving: the device reached STOP_COPY, the end of the stream is final.
    stop_copy: bool,
    /// Userspace opted in to the v2 PRECOPY_INFO behaviour.
    precopy_v2: bool,
}

impl Session {
    /// Opens a session on `dev` and returns it with its data file. `save` is `None` for a
    /// resuming session, else whether the whole stream (STOP_COPY) or only its pre-copy part may
    /// be read now.
    pub(crate) fn open(
        dev: &Device<RustMig>,
        save: Option<bool>,
        precopy_v2: bool,
    ) -> Result<(Arc<Session>, ARef<File>)> {
        let total = dev.data().layout.stream_len();
        let io = match save {
            Some(_) => Io::Save(SaveStream {
                cursor: Cursor::default(),
                unit: KVec::with_capacity(RECORD_HEADER_LEN + MAX_RECORD, GFP_KERNEL)?,
                unit_start: 0,
            }),
            None => {
                let mut bounce = KVec::with_capacity(CHUNK, GFP_KERNEL)?;
                bounce.resize(CHUNK, 0, GFP_KERNEL)?;
                Io::Resume(ResumeStream {
                    parser: Parser::new()?,
                    bounce,
                    next_section: 0,
                    next_offset: 0,
                })
            }
        };
        let this = Arc::pin_init(
            pin_init!(Session {
                dev: dev.io(),
                resets: dev.data().resets.load(Relaxed),
                disabled: Atomic::new(false),
                io <- new_mutex!(io, "rustmig::Session::io"),
                progress <- new_mutex!(Progress {
                    pos: 0,
                    total,
                    limit: match save {
                        Some(true) => total,
                        _ => HEADER_LEN as u64,
                    },
                    saving: save.is_some(),
                    stop_copy: save == Some(true),
                    precopy_v2,
                }, "rustmig::Session::progress"),
                wait <- new_poll_condvar!("rustmig::Session::wait"),
            }),
            GFP_KERNEL,
        )?;
        let access = if save.is_some() {
            Access::Read
        } else {
            Access::Write
        };
        let file = data_file::create::<Session>(c"rustmig_vfio_pci", this.clone(), access)?;
        Ok((this, file))
    }

    /// Ends the session: from now on its file's reads and writes fail with `ENODEV`, and no
    /// I/O of it touches the device. Takes no lock but the poll queue's, so a reset may call it.
    pub(crate) fn disable(&self) {
        self.disabled.store(true, Release);
        self.wait.notify_all();
    }

    /// PRE_COPY(_P2P) -> STOP_COPY: the rest of the stream may be read.
    pub(crate) fn finish_save(&self) {
        let mut p = self.progress.lock();
        p.stop_copy = true;
        p.limit = p.total;
        drop(p);
        self.wait.notify_all();
    }

    /// RESUMING -> STOP: returns whether the whole stream was written and accepted, waiting for
    /// a write in progress.
    pub(crate) fn finish_resume(&self) -> Result {
        let io = self.io.lock();
        let Io::Resume(r) = &*io else {
            return Err(EINVAL);
        };
        if let Some(e) = r.parser.error() {
            return Err(e);
        }
        if !r.parser.is_complete() {
            let p = self.progress.lock();
            let dev = self.dev.as_ref();
            if self.dev.data().refusals.allow(dev) {
                dev_err!(
                    dev,
                    "resume incomplete: {} of {} bytes written\n",
                    p.pos,
                    p.total
                );
            }
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Returns the bytes of the stream not read yet.
    pub(crate) fn remaining(&self) -> u64 {
        let p = self.progress.lock();
        p.total - p.pos
    }

    /// Returns whether the session ended: disabled, or the device was reset since it opened
    /// (the reset's holder of the state lock disables it a little later).
    fn is_disabled(&self) -> bool {
        self.disabled.load(Acquire) || self.dev.data().resets.load(Relaxed) != self.resets
    }

    /// Locks the device's BARs for an access on behalf of this session, unless it ended.
    fn bars(&self) -> Result<Bars<'_>> {
        let bars = self.dev.lock_bars()?;
        // A reset ends the session under the lock just taken (`reset_done` counts it there, and
        // disables the session, or has it disabled when the state lock is free): checked after
        // taking it, so no stale stream reaches, or comes from, a reset device.
        if self.is_disabled() {
            return Err(ENODEV);
        }
        Ok(bars)
    }
}

impl SaveStream {
    /// Makes `unit` the unit that starts at `pos`, the end of the current one.
    fn build_next(&mut self, s: &Session, pos: u64) -> Result {
        let end = self.unit_start + self.unit.len() as u64;
        if pos != end {
            // Reads are sequential: only a bug gets here.
            return Err(EIO);
        }
        let data = s.dev.data();
        // The cursor moves on only once the unit is built; until then the unit is empty at
        // `pos`: a unit that fails to build is built again by the next read, which never hands
        // out what a failed build left behind.
        let mut cursor = self.cursor;
        let unit = cursor.next_unit(&data.layout).ok_or(EIO)?;
        self.unit.clear();
        self.unit_start = pos;
        let u = &mut self.unit;
        match unit {
            Unit::Header => {
                let h = Header::encode(&data.identity, data.layout.payload_len());
                u.extend_from_slice(&h, GFP_KERNEL)?;
            }
            Unit::Record { tag, offset, len } => {
                // CAST: At most `MAX_RECORD`.
                let rh = record_header(tag, FLAG_MANDATORY, (OFFSET_LEN + len) as u32);
                u.extend_from_slice(&rh, GFP_KERNEL)?;
                u.extend_from_slice(&offset.to_le_bytes(), GFP_KERNEL)?;
                let at = u.len();
                u.resize(at + len, 0, GFP_KERNEL)?;
                let bars = s.bars()?;
                data.backend
                    .save(&bars, &data.held, tag, offset, &mut u[at..])?;
                seal_record(u);
            }
            Unit::End => {
                u.extend_from_slice(&record_header(TAG_END, FLAG_MANDATORY, 0), GFP_KERNEL)?;
                seal_record(u);
            }
        }
        self.cursor = cursor;
        Ok(())
    }
}

impl ResumeStream {
    /// Parses `len` bytes of `bounce`, applying complete records to the device.
    fn feed(&mut self, s: &Session, len: usize) -> Result {
        let data = s.dev.data();
        let dev = s.dev.as_ref();
        let (next_section, next_offset) = (&mut self.next_section, &mut self.next_offset);
        self.parser.feed(&self.bounce[..len], |ev| match ev {
            Event::Header(h) => data.check_header(dev, h),
            Event::Record {
                tag,
                mandatory,
                payload,
            } => {
                let Some(idx) = data.layout.find(tag) else {
                    if mandatory {
                        if data.refusals.allow(dev) {
                            dev_err!(dev, "resume: unknown mandatory record {tag}\n");
                        }
                        return Err(EOPNOTSUPP);
                    }
                    return Ok(());
                };
                let (offset, bytes) = section_data(payload)?;
                let section = data.layout.sections()[idx];
                // Only the section being received has bytes left (`next_offset` is below its
                // length); for any other the subtraction means nothing, and may not be made.
                let want = if idx == *next_section {
                    (section.len - *next_offset).min(CHUNK as u64)
                } else {
                    0
                };
                if idx != *next_section || offset != *next_offset || bytes.len() as u64 != want {
                    if data.refusals.allow(dev) {
                        dev_err!(
                            dev,
                            "resume: record {tag} at {offset}+{} out of order\n",
                            bytes.len()
                        );
                    }
                    return Err(EINVAL);
                }
                let bars = s.bars()?;
                data.backend.load(&bars, &data.held, tag, offset, bytes)?;
                *next_offset += want;
                if *next_offset == section.len {
                    *next_section += 1;
                    *next_offset = 0;
                }
                Ok(())
            }
            Event::End => {
                if *next_section != data.layout.sections().len() {
                    if data.refusals.allow(dev) {
                        dev_err!(dev, "resume: stream ended before the device's state\n");
                    }
                    return Err(EINVAL);
                }
                Ok(())
            }
        })
    }
}

#[vtable]
impl DataFileOps for Session {
    type Ptr = Arc<Session>;

    fn read(
        this: ArcBorrow<'_, Session>,
        _file: &File,
        buf: &mut UserSliceWriter,
    ) -> Result<usize> {
        let mut io = this.io.lock();
        let Io::Save(save) = &mut *io else {
            return Err(EINVAL);
        };
        let mut done = 0;
        while !buf.is_empty() {
            if this.is_disabled() {
                return if done > 0 { Ok(done) } else { Err(ENODEV) };
            }
            let (pos, limit, stop_copy) = {
                let p = this.progress.lock();
                (p.pos, p.limit, p.stop_copy)
            };
            if pos == limit {
                if done > 0 {
                    break;
                }
                // PRE_COPY: nothing to read now. STOP_COPY: the end of the stream.
                return if stop_copy { Ok(0) } else { Err(ENOMSG) };
            }
            if pos >= save.unit_start + save.unit.len() as u64 {
                if let Err(e) = save.build_next(&this, pos) {
                    return if done > 0 { Ok(done) } else { Err(e) };
                }
            }
            // CAST: Offsets in a unit are below `MAX_RECORD`.
            let off = (pos - save.unit_start) as usize;
            // CAST: `limit - pos` is only used when smaller than a `usize`.
            let left = (limit - pos).min(usize::MAX as u64) as usize;
            let n = (save.unit.len() - off).min(buf.len()).min(left);
            // No lock a reset takes is held here: the copy may fault on a BAR mmap. A copy that
            // faults moved nothing of this unit: the bytes before it are the read's result.
            if let Err(e) = buf.write_slice(&save.unit[off..off + n]) {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            this.progress.lock().pos = pos + n as u64;
            done += n;
        }
        Ok(done)
    }

    fn write(
        this: ArcBorrow<'_, Session>,
        _file: &File,
        buf: &mut UserSliceReader,
    ) -> Result<usize> {
        let mut io = this.io.lock();
        let Io::Resume(r) = &mut *io else {
            return Err(EINVAL);
        };
        // An ended session says so first, even if its stream was refused before.
        if this.is_disabled() {
            return Err(ENODEV);
        }
        if let Some(e) = r.parser.error() {
            return Err(e);
        }
        let mut done = 0;
        while !buf.is_empty() {
            if this.is_disabled() {
                return Err(ENODEV);
            }
            let n = buf.len().min(CHUNK);
            // A copy that faults took nothing of this chunk: the chunks before it were written.
            if let Err(e) = buf.read_slice(&mut r.bounce[..n]) {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            r.feed(&this, n)?;
            this.progress.lock().pos += n as u64;
            done += n;
        }
        Ok(done)
    }

    fn poll(this: ArcBorrow<'_, Session>, file: &File, table: PollTable<'_>) -> u32 {
        table.register_wait(file, &this.wait);
        if this.is_disabled() {
            return events::ENDED;
        }
        let p = this.progress.lock();
        if !p.saving {
            events::WRITABLE
        } else if p.pos < p.limit || p.stop_copy {
            // Bytes to read, or the end of the stream: a read returns at once.
            events::READABLE
        } else {
            0
        }
    }

    fn ioctl(this: ArcBorrow<'_, Session>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        if cmd != VFIO_MIG_GET_PRECOPY_INFO {
            return Err(ENOTTY);
        }
        if this.is_disabled() {
            return Err(ENODEV);
        }
        let (info, v2) = {
            let p = this.progress.lock();
            // PRECOPY_INFO exists only in the PRE_COPY states.
            if !p.saving || p.stop_copy {
                return Err(EINVAL);
            }
            let info = PrecopyInfo {
                initial_bytes: p.limit - p.pos,
                // Nothing read in PRE_COPY can change: the device's state is read in STOP_COPY.
                dirty_bytes: 0,
                reinit: false,
            };
            (info, p.precopy_v2)
        };
        info.ioctl(cmd, arg, v2)
    }
}
