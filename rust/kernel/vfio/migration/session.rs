// SPDX-License-Identifier: GPL-2.0

//! Migration sessions: the data file of a saving or resuming device.
//!
//! A saving session asks its [`Saver`] for the stream one unit at a time (a unit is whatever the
//! saver builds at once, a record for instance) and copies it to the reader; a resuming session
//! hands the writer's buffer to its [`Loader`], which copies from it what it takes, so that a
//! loader that checks what it copies does it in the same pass. The stream of a saving session
//! need not have a length known in advance: in PRE_COPY the saver hands out what it has now (the
//! initial part of the state, then what the running device changed since it was read, pass after
//! pass), and in STOP_COPY the rest. The file implements the uAPI's rules whatever the driver:
//!
//! - a read in PRE_COPY with nothing to read now fails with `ENOMSG` (a temporary end: more may
//!   come); in STOP_COPY, the end of the stream reads 0;
//! - once the session ended (the device left the state, was reset or closed) reads, writes and
//!   `VFIO_MIG_GET_PRECOPY_INFO` fail with `ENODEV` and `poll` reports `EPOLLERR | EPOLLHUP`;
//! - a read or write whose user copy faults part way returns the bytes moved before the fault,
//!   and the stream goes on from there;
//! - a stream the loader refused stays refused: later writes fail with the same error, and so
//!   does RESUMING -> STOP;
//! - `VFIO_MIG_GET_PRECOPY_INFO` answers in the PRE_COPY states only, with the v2 flags when
//!   userspace opted in: `initial_bytes` and `dirty_bytes` are what the saver reports
//!   ([`Saver::pending`]) plus what is left of the unit being read.
//!
//! # Locking
//!
//! - `Session::io` serialises reads and writes of the file and the queries of the saver
//!   (`VFIO_MIG_GET_PRECOPY_INFO`, `MIG_DATA_SIZE`). It is held across user copies and the
//!   saver's and loader's work, and is taken after the device's state lock, never before.
//! - `Session::progress` is held only briefly, never across a user copy or the driver's work.
//! - Ending a session takes no lock but the poll queue's: a reset may end it from any context.

use super::Migration;
use crate::{
    bindings,
    ffi::c_ulong,
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
    },
    xxhash::Xxh64, //
};
use core::mem::MaybeUninit;

// One name (one address) per lockdep class, whichever driver instantiates the code, as in
// `machine`.
static IO_NAME: &CStr = c"vfio::migration::Session::io";
static PROGRESS_NAME: &CStr = c"vfio::migration::Session::progress";
static WAIT_NAME: &CStr = c"vfio::migration::Session::wait";

/// What a saving session has left to hand out, in bytes, as `VFIO_MIG_GET_PRECOPY_INFO` reports
/// it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Pending {
    /// What is left of the initial part of the stream: in PRE_COPY, the state that must be read
    /// once before the switch to STOP_COPY is worth it.
    pub initial: u64,
    /// What is to be read beyond the initial part, as known now: state that changed since it was
    /// read, and, from [`Saver::pending`] with `stop_copy`, the state read only once stopped.
    pub dirty: u64,
}

impl Pending {
    /// Returns the sum of both parts.
    pub fn total(&self) -> u64 {
        self.initial.saturating_add(self.dirty)
    }
}

/// Which part of the stream a unit belongs to, for [`Pending`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Part {
    /// The initial part of the stream.
    Initial,
    /// Beyond the initial part.
    Dirty,
}

/// Produces the stream of a saving session.
pub trait Saver<M: Migration>: Send + Sync + Unpin + 'static {
    /// Returns what is left to produce. In PRE_COPY (`stop_copy` false): the initial part and
    /// what is known to be dirty now. With `stop_copy`: everything the stream still holds if
    /// the device stopped now (`MIG_DATA_SIZE`), the end included.
    fn pending(&self, stop_copy: bool) -> Pending;

    /// Appends to `unit` the next bytes of the stream (at least one) and says which part they
    /// belong to, or returns `None` when there is nothing to produce now: in PRE_COPY, until the
    /// running device changes more state or stops; in STOP_COPY (`stop_copy`), at the end of
    /// the stream.
    ///
    /// A call that fails is made again by the next read; what it appended is dropped, so a saver
    /// moves on only once a unit is built. The saver must not touch the device once `session`
    /// [ended](Session::is_ended), which it checks under the lock that keeps the device from
    /// being reset.
    fn produce(
        &mut self,
        session: &Session<M>,
        stop_copy: bool,
        unit: &mut KVec<u8>,
    ) -> Result<Option<Part>>;
}

/// The bytes of a write to a resuming session's data file, still in the writer's memory: a
/// [`Loader`] copies what it takes, and a copy that faults keeps the bytes before the fault.
pub struct Incoming<'a>(&'a mut UserSliceReader);

// `Xxh64` has the layout of `struct xxh64_state` (see `kernel::xxhash`): the C functions that
// feed one feed the other.
const _: () = assert!(
    core::mem::size_of::<Xxh64>() == core::mem::size_of::<bindings::xxh64_state>()
        && core::mem::align_of::<Xxh64>() == core::mem::align_of::<bindings::xxh64_state>()
);

/// Views `b` as bytes that may be uninitialized, for a copy into it.
fn as_uninit(b: &mut [u8]) -> &mut [MaybeUninit<u8>] {
    // SAFETY: `MaybeUninit<u8>` has the layout of `u8`, and the copies this is given to write
    // only initialized bytes.
    unsafe { &mut *(core::ptr::from_mut(b) as *mut [MaybeUninit<u8>]) }
}

impl Incoming<'_> {
    /// Returns how many bytes are left.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Returns whether no byte is left.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Copies the next `dst.len()` bytes into `dst`, no more than are left and up to the first
    /// fault, moves past them and returns how many they are.
    pub fn read(&mut self, dst: &mut [u8]) -> usize {
        let n = dst.len().min(self.len());
        let dst = &mut dst[..n];
        // SAFETY: `copy_from_user` writes only to the `n` bytes at `to`, reads the user memory
        // at `from` itself, and returns how many bytes at the end of the range it did not copy.
        let res = unsafe {
            self.0.read_raw_with(as_uninit(dst), |to, from, n| {
                // CAST: `usize` and `c_ulong` are the same width on the kernel's architectures.
                bindings::copy_from_user(to, from, n as c_ulong) as usize
            })
        };
        // Only a read longer than what is left fails, and `dst` is not.
        res.unwrap_or(0)
    }

    /// As [`Incoming::read`], feeding the bytes copied to `hash` in the same pass
    /// (`xxh64_copy_from_user()`): what is hashed is what was copied, even if the writer changes
    /// its memory meanwhile.
    pub fn read_hashed(&mut self, dst: &mut [u8], hash: &mut Xxh64) -> usize {
        let n = dst.len().min(self.len());
        let dst = &mut dst[..n];
        let state = core::ptr::from_mut(hash).cast::<bindings::xxh64_state>();
        // SAFETY: `xxh64_copy_from_user` writes only to the `n` bytes at `to`, reads the user
        // memory at `from` as `copy_from_user` does, and returns how many bytes at the end of
        // the range it did not copy; `state` is a valid `struct xxh64_state` (see above) for the
        // call, borrowed from `hash`.
        let res = unsafe {
            self.0.read_raw_with(as_uninit(dst), |to, from, n| {
                bindings::xxh64_copy_from_user(state, to, from, n)
            })
        };
        res.unwrap_or(0)
    }
}

/// Consumes the stream of a resuming session.
pub trait Loader<M: Migration>: Send + Sync + Unpin + 'static {
    /// Consumes the next bytes of the stream from `src`, the writer's buffer, and returns how
    /// many it took: all of them, unless reading the buffer faults, in which case it takes the
    /// bytes before the fault and the write returns their number (`EFAULT` if none). An error
    /// refuses the stream: the session hands it to every later write and to RESUMING -> STOP.
    ///
    /// The loader must not touch the device once `session` [ended](Session::is_ended), which it
    /// checks under the lock that keeps the device from being reset, and must not read `src`
    /// with that lock held: the buffer may be a mapping of the device, whose fault takes it.
    fn consume(&mut self, session: &Session<M>, src: &mut Incoming<'_>) -> Result<usize>;

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
        /// The unit being read, the part it belongs to, and how much of it was read.
        unit: KVec<u8>,
        part: Part,
        read: usize,
    },
    Resume {
        loader: M::Loader,
        /// The loader refused the stream.
        refused: Option<Error>,
    },
}

/// The progress of a session.
struct Progress {
    /// The bytes read or written so far.
    pos: u64,
    /// Saving: the bytes known to be readable now, as of the last read or query (for `poll`).
    ready: u64,
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
        let progress = Progress {
            pos: 0,
            ready: saver.pending(stop_copy).total(),
            saving: true,
            stop_copy,
            precopy_v2,
        };
        let io = Io::Save {
            saver,
            unit: KVec::new(),
            part: Part::Initial,
            read: 0,
        };
        Self::open(io, progress, Access::Read)
    }

    /// Opens a resuming session.
    pub(super) fn resume(loader: M::Loader) -> Result<(Arc<Self>, ARef<File>)> {
        let progress = Progress {
            pos: 0,
            ready: 0,
            saving: false,
            stop_copy: false,
            precopy_v2: false,
        };
        let io = Io::Resume {
            loader,
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
        self.progress.lock().stop_copy = true;
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

    /// Returns what is left to read, as [`Saver::pending`] reports it plus the rest of the unit
    /// being read: what is known now in PRE_COPY, or everything left (`stop_copy`). `None` for a
    /// resuming session.
    fn pending(&self, io: &Io<M>, stop_copy: bool) -> Option<Pending> {
        let Io::Save {
            saver,
            unit,
            part,
            read,
        } = io
        else {
            return None;
        };
        let mut pending = saver.pending(stop_copy);
        // CAST: A unit is in memory.
        let rest = (unit.len() - read) as u64;
        match part {
            Part::Initial => pending.initial = pending.initial.saturating_add(rest),
            Part::Dirty => pending.dirty = pending.dirty.saturating_add(rest),
        }
        self.progress.lock().ready = pending.total();
        Some(pending)
    }

    /// Returns the bytes of the stream a STOP_COPY would read from here (`MIG_DATA_SIZE`),
    /// waiting for a read in progress.
    pub(super) fn remaining(&self) -> u64 {
        self.pending(&self.io.lock(), true).map_or(0, |p| p.total())
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
            part,
            read,
        } = &mut *io
        else {
            return Err(EINVAL);
        };
        let mut done = 0;
        while !buf.is_empty() {
            if this.is_ended() {
                return if done > 0 { Ok(done) } else { Err(ENODEV) };
            }
            if *read == unit.len() {
                let stop_copy = this.progress.lock().stop_copy;
                unit.clear();
                *read = 0;
                let res = match saver.produce(&this, stop_copy, unit) {
                    // A saver must make progress: only a bug gets here.
                    Ok(Some(_)) if unit.is_empty() => Err(EIO),
                    Ok(None) if !unit.is_empty() => Err(EIO),
                    res => res,
                };
                match res {
                    Ok(Some(p)) => *part = p,
                    Ok(None) => {
                        if done > 0 {
                            break;
                        }
                        this.progress.lock().ready = 0;
                        // PRE_COPY: nothing to read now. STOP_COPY: the end of the stream.
                        return if stop_copy { Ok(0) } else { Err(ENOMSG) };
                    }
                    Err(e) => {
                        // Built again by the next read.
                        unit.clear();
                        return if done > 0 { Ok(done) } else { Err(e) };
                    }
                }
            }
            let n = (unit.len() - *read).min(buf.len());
            // No lock a reset takes is held here: the copy may fault on a BAR mmap. A copy that
            // faults moved nothing of this unit: the bytes before it are the read's result.
            if let Err(e) = buf.write_slice(&unit[*read..*read + n]) {
                return if done > 0 { Ok(done) } else { Err(e) };
            }
            *read += n;
            // CAST: At most a unit's length.
            this.progress.lock().pos += n as u64;
            done += n;
        }
        // For `poll`: what is known to be readable now.
        let stop_copy = this.progress.lock().stop_copy;
        this.pending(&io, stop_copy);
        Ok(done)
    }

    fn write(this: ArcBorrow<'_, Self>, _file: &File, buf: &mut UserSliceReader) -> Result<usize> {
        let mut io = this.io.lock();
        let Io::Resume { loader, refused } = &mut *io else {
            return Err(EINVAL);
        };
        // An ended session says so first, even if its stream was refused before.
        if this.is_ended() {
            return Err(ENODEV);
        }
        if let Some(e) = refused {
            return Err(*e);
        }
        if buf.is_empty() {
            return Ok(0);
        }
        match loader.consume(&this, &mut Incoming(buf)) {
            // Bytes of the stream are lost: it can only be refused from now on.
            Err(e) => {
                *refused = Some(e);
                Err(e)
            }
            // The buffer faulted at its start.
            Ok(0) => Err(EFAULT),
            Ok(n) => {
                // CAST: At most the length of a write.
                this.progress.lock().pos += n as u64;
                Ok(n)
            }
        }
    }

    fn poll(this: ArcBorrow<'_, Self>, file: &File, table: PollTable<'_>) -> u32 {
        table.register_wait(file, &this.wait);
        if this.is_ended() {
            return events::ENDED;
        }
        let p = this.progress.lock();
        if !p.saving {
            events::WRITABLE
        } else if p.ready > 0 || p.stop_copy {
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
        let (stop_copy, v2) = {
            let p = this.progress.lock();
            (p.stop_copy, p.precopy_v2)
        };
        // PRECOPY_INFO exists only in the PRE_COPY states.
        if stop_copy {
            return Err(EINVAL);
        }
        let pending = this.pending(&this.io.lock(), false).ok_or(EINVAL)?;
        let info = PrecopyInfo {
            initial_bytes: pending.initial,
            dirty_bytes: pending.dirty,
            reinit: false,
        };
        // The user copies happen without a lock held.
        info.ioctl(cmd, arg, v2)
    }
}
