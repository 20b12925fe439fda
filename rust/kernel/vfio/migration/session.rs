// SPDX-License-Identifier: GPL-2.0

//! Migration sessions: the data file of a saving or resuming device.
//!
//! A saving session asks its [`Saver`] for the stream one unit at a time (a unit is whatever the
//! saver builds at once, a record for instance) and copies it to the reader; a resuming session
//! copies at most [`WRITE_CHUNK`] bytes of the writer's data at a time and hands them to its
//! [`Loader`]. The file implements the uAPI's rules whatever the driver:
//!
//! - a read in PRE_COPY with nothing left to read now fails with `ENOMSG`; in STOP_COPY, the end
//!   of the stream reads 0;
//! - once the session ended (the device left the state, was reset or closed) reads, writes and
//!   `VFIO_MIG_GET_PRECOPY_INFO` fail with `ENODEV` and `poll` reports `EPOLLERR | EPOLLHUP`;
//! - a read or write whose user copy faults part way returns the bytes moved before the fault,
//!   and the stream goes on from there;
//! - a stream the loader refused stays refused: later writes fail with the same error, and so
//!   does RESUMING -> STOP;
//! - `VFIO_MIG_GET_PRECOPY_INFO` answers in the PRE_COPY states only, with the v2 flags when
//!   userspace opted in.
//!
//! # Locking
//!
//! - `Session::io` serialises reads and writes of the file. It is held across user copies and
//!   the saver's and loader's work, and is taken after the device's state lock, never before.
//! - `Session::progress` is held only briefly, never across a user copy or the driver's work.
//! - Ending a session takes no lock but the poll queue's: a reset may end it from any context.

use super::Migration;
use crate::{
    fs::File,
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Acquire,
            Atomic,
            Release, //
        },
        poll::{
            PollCondVar,
            PollTable, //
        },
        static_lock_class,
        Arc,
        ArcBorrow,
        Mutex, //
    },
    uaccess::{
        UserSliceReader,
        UserSliceWriter, //
    },
    vfio::file::{
        self as data_file,
        events,
        Access,
        DataFileOps,
        PrecopyInfo,
        VFIO_MIG_GET_PRECOPY_INFO, //
    }, //
};

// One name (one address) per lockdep class, whichever driver instantiates the code, as in
// `machine`.
static IO_NAME: &CStr = c"vfio::migration::Session::io";
static PROGRESS_NAME: &CStr = c"vfio::migration::Session::progress";
static WAIT_NAME: &CStr = c"vfio::migration::Session::wait";

/// The most bytes a [`Loader`] is given at once.
pub const WRITE_CHUNK: usize = 64 * 1024;

/// Produces the stream of a saving session.
pub trait Saver<M: Migration>: Send + Sync + Unpin + 'static {
    /// Returns the length of the whole stream.
    fn stream_len(&self) -> u64;

    /// Returns the length of the part of the stream that may be read while the device runs
    /// (PRE_COPY); the rest is read in STOP_COPY.
    fn precopy_len(&self) -> u64;

    /// Appends to `unit` the bytes of the stream that start at `pos`, the end of what the last
    /// call produced: at least one byte, since `pos` is below [`Saver::stream_len`].
    ///
    /// A call that fails is made again, at the same `pos`, by the next read; what it appended is
    /// dropped. The saver must not touch the device once `session` [ended](Session::is_ended),
    /// which it checks under the lock that keeps the device from being reset.
    fn produce(&mut self, session: &Session<M>, pos: u64, unit: &mut KVec<u8>) -> Result;
}

/// Consumes the stream of a resuming session.
pub trait Loader<M: Migration>: Send + Sync + Unpin + 'static {
    /// Consumes `bytes`, the next bytes of the stream (at most [`WRITE_CHUNK`]). An error refuses
    /// the stream: the session hands it to every later write and to RESUMING -> STOP.
    ///
    /// The loader must not touch the device once `session` [ended](Session::is_ended), which it
    /// checks under the lock that keeps the device from being reset.
    fn consume(&mut self, session: &Session<M>, bytes: &[u8]) -> Result;

    /// RESUMING -> STOP, after `written` bytes were consumed: fails unless the stream was
    /// complete.
    fn finish(&mut self, session: &Session<M>, written: u64) -> Result;
}

/// A saving or resuming session and its data file.
#[pin_data]
pub struct Session<M: Migration> {
    /// The session ended: reads and writes fail with `ENODEV`.
    ended: Atomic<bool>,
    /// The saver or loader, and the buffers of the I/O in progress.
    #[pin]
    io: Mutex<Io<M>>,
    /// What `VFIO_MIG_GET_PRECOPY_INFO`, `MIG_DATA_SIZE` and `poll` report.
    #[pin]
    progress: Mutex<Progress>,
    /// Pollers wait here for the readiness to change.
    #[pin]
    wait: PollCondVar,
}

/// The I/O side of a session.
enum Io<M: Migration> {
    Save {
        saver: M::Saver,
        /// The unit being read, and where it starts in the stream.
        unit: KVec<u8>,
        unit_start: u64,
    },
    Resume {
        loader: M::Loader,
        /// The writer's bytes being consumed.
        bounce: KVec<u8>,
        /// The loader refused the stream.
        refused: Option<Error>,
    },
}

/// The progress of a session.
struct Progress {
    /// The bytes read or written so far.
    pos: u64,
    /// Saving: the length of the whole stream.
    total: u64,
    /// Saving: the bytes that may be read now (the pre-copy part, or everything).
    limit: u64,
    /// A saving session.
    saving: bool,
    /// Saving: the device reached STOP_COPY, the end of the stream is final.
    stop_copy: bool,
    /// Userspace opted in to the v2 `VFIO_MIG_GET_PRECOPY_INFO` behaviour.
    precopy_v2: bool,
}

impl<M: Migration> Session<M> {
    fn open(io: Io<M>, progress: Progress, access: Access) -> Result<(Arc<Self>, ARef<File>)> {
        let this = Arc::pin_init(
            pin_init!(Session {
                ended: Atomic::new(false),
                io <- Mutex::new(io, IO_NAME, static_lock_class!()),
                progress <- Mutex::new(progress, PROGRESS_NAME, static_lock_class!()),
                wait <- PollCondVar::new(WAIT_NAME, static_lock_class!()),
            }),
            GFP_KERNEL,
        )?;
        let file = data_file::create::<Self>(M::DATA_FILE_NAME, this.clone(), access)?;
        Ok((this, file))
    }

    /// Opens a saving session; `stop_copy` lets the whole stream be read at once.
    pub(super) fn save(
        saver: M::Saver,
        stop_copy: bool,
        precopy_v2: bool,
    ) -> Result<(Arc<Self>, ARef<File>)> {
        let total = saver.stream_len();
        let progress = Progress {
            pos: 0,
            total,
            limit: if stop_copy {
                total
            } else {
                saver.precopy_len().min(total)
            },
            saving: true,
            stop_copy,
            precopy_v2,
        };
        let io = Io::Save {
            saver,
            unit: KVec::new(),
            unit_start: 0,
        };
        Self::open(io, progress, Access::Read)
    }

    /// Opens a resuming session.
    pub(super) fn resume(loader: M::Loader) -> Result<(Arc<Self>, ARef<File>)> {
        let mut bounce = KVec::with_capacity(WRITE_CHUNK, GFP_KERNEL)?;
        bounce.resize(WRITE_CHUNK, 0, GFP_KERNEL)?;
        let progress = Progress {
            pos: 0,
            total: 0,
            limit: 0,
            saving: false,
            stop_copy: false,
            precopy_v2: false,
        };
        let io = Io::Resume {
            loader,
            bounce,
            refused: None,
        };
        Self::open(io, progress, Access::Write)
    }

    /// Returns whether the session ended: the device left its state, or was reset or closed.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Acquire)
    }

    /// Ends the session. Takes no lock but the poll queue's.
    pub(super) fn end(&self) {
        self.ended.store(true, Release);
        self.wait.notify_all();
    }

    /// PRE_COPY(_P2P) -> STOP_COPY: the rest of the stream may be read.
    pub(super) fn finish_save(&self) {
        let mut p = self.progress.lock();
        p.stop_copy = true;
        p.limit = p.total;
        drop(p);
        self.wait.notify_all();
    }

    /// RESUMING -> STOP: fails unless the whole stream was written and accepted, waiting for a
    /// write in progress.
    pub(super) fn finish_resume(&self) -> Result {
        let mut io = self.io.lock();
        let Io::Resume {
            loader, refused, ..
        } = &mut *io
        else {
            return Err(EINVAL);
        };
        if let Some(e) = refused {
            return Err(*e);
        }
        let written = self.progress.lock().pos;
        loader.finish(self, written)
    }

    /// Returns the bytes of the stream not read yet.
    pub(super) fn remaining(&self) -> u64 {
        let p = self.progress.lock();
        p.total.saturating_sub(p.pos)
    }
}

#[vtable]
impl<M: Migration> DataFileOps for Session<M> {
    type Ptr = Arc<Session<M>>;
    // The driver's module owns the file: it holds the driver's saver or loader.
    type OwnerModule = M::OwnerModule;

    fn read(this: ArcBorrow<'_, Self>, _file: &File, buf: &mut UserSliceWriter) -> Result<usize> {
        let mut io = this.io.lock();
        let Io::Save {
            saver,
            unit,
            unit_start,
        } = &mut *io
        else {
            return Err(EINVAL);
        };
        let mut done = 0;
        while !buf.is_empty() {
            if this.is_ended() {
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
            // CAST: A unit is in memory: its length fits in a `u64`.
            if pos >= *unit_start + unit.len() as u64 {
                unit.clear();
                *unit_start = pos;
                let res = match saver.produce(&this, pos, unit) {
                    // A saver must make progress: only a bug gets here.
                    Ok(()) if unit.is_empty() => Err(EIO),
                    res => res,
                };
                if let Err(e) = res {
                    // Built again, at `pos`, by the next read.
                    unit.clear();
                    return if done > 0 { Ok(done) } else { Err(e) };
                }
            }
            // CAST: Below the unit's length.
            let off = (pos - *unit_start) as usize;
            // CAST: `limit - pos` is only used when smaller than a `usize`.
            let left = (limit - pos).min(usize::MAX as u64) as usize;
            let n = (unit.len() - off).min(buf.len()).min(left);
            // No lock a reset takes is held here: the copy may fault on a BAR mmap. A copy that
            // faults moved nothing of this unit: the bytes before it are the read's result.
            if let Err(e) = buf.write_slice(&unit[off..off + n]) {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            // CAST: At most a unit's length.
            this.progress.lock().pos = pos + n as u64;
            done += n;
        }
        Ok(done)
    }

    fn write(this: ArcBorrow<'_, Self>, _file: &File, buf: &mut UserSliceReader) -> Result<usize> {
        let mut io = this.io.lock();
        let Io::Resume {
            loader,
            bounce,
            refused,
        } = &mut *io
        else {
            return Err(EINVAL);
        };
        // An ended session says so first, even if its stream was refused before.
        if this.is_ended() {
            return Err(ENODEV);
        }
        if let Some(e) = refused {
            return Err(*e);
        }
        let mut done = 0;
        while !buf.is_empty() {
            if this.is_ended() {
                return Err(ENODEV);
            }
            let n = buf.len().min(WRITE_CHUNK);
            // A copy that faults took nothing of this chunk: the chunks before it were written.
            if let Err(e) = buf.read_slice(&mut bounce[..n]) {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            if let Err(e) = loader.consume(&this, &bounce[..n]) {
                // Bytes of the stream are lost: it can only be refused from now on.
                *refused = Some(e);
                return Err(e);
            }
            // CAST: At most `WRITE_CHUNK`.
            this.progress.lock().pos += n as u64;
            done += n;
        }
        Ok(done)
    }

    fn poll(this: ArcBorrow<'_, Self>, file: &File, table: PollTable<'_>) -> u32 {
        table.register_wait(file, &this.wait);
        if this.is_ended() {
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

    fn ioctl(this: ArcBorrow<'_, Self>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        if cmd != VFIO_MIG_GET_PRECOPY_INFO {
            return Err(ENOTTY);
        }
        if this.is_ended() {
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
                // What was read in PRE_COPY does not change: the rest is read in STOP_COPY.
                dirty_bytes: 0,
                reinit: false,
            };
            (info, p.precopy_v2)
        };
        // The user copies happen without the progress lock held.
        info.ioctl(cmd, arg, v2)
    }
}
