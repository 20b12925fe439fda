// SPDX-License-Identifier: GPL-2.0

//! Rust vfio-pci variant driver sample with live migration.
//!
//! Binds, through `driver_override` only, to QEMU's edu device (1234:11e8) and implements the
//! whole VFIO migration v2 uAPI (STOP_COPY, P2P and PRE_COPY) with nothing but the safe
//! `kernel::vfio` abstractions: this file has no `unsafe`. The migrated state is a block of
//! emulated registers kept by the driver, so the device itself is never touched: the sample
//! shows the uAPI plumbing (state machine, data files, `PRECOPY_INFO`), not a device backend.

use kernel::{
    device::Core,
    fs::File,
    new_poll_condvar,
    pci,
    prelude::*,
    sync::{
        aref::ARef,
        new_mutex,
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
            PrecopyInfo, //
        },
        migration::{
            Flags,
            State, //
        },
        pci::{
            self as vfio_pci,
            DeviceId, //
        }, //
    }, //
};

/// The number of emulated registers.
const NREGS: usize = 64;
/// The stream: a magic, then the registers, little endian.
const MAGIC: [u8; 4] = *b"RVMS";
/// The length of the stream.
const STREAM_LEN: usize = MAGIC.len() + NREGS * 4;

kernel::vfio_pci_device_table!(PCI_TABLE, (), [(DeviceId::new(0x1234, 0x11e8), ())]);

/// The sample driver.
struct SampleDriver;

/// The driver data of a device.
#[pin_data]
struct SampleDevice {
    /// The migration state, the registers and the open data file.
    #[pin]
    inner: Mutex<Inner>,
}

/// The state behind [`SampleDevice::inner`].
struct Inner {
    /// The migration state.
    state: State,
    /// A failed transition left the device broken; only a reset clears it.
    broken: bool,
    /// The emulated registers: the device state that migrates.
    regs: [u32; NREGS],
    /// The data file of the saving or resuming session, if one is open.
    file: Option<Arc<MigFile>>,
}

/// A migration data file.
#[pin_data]
struct MigFile {
    /// Serialises reads and writes, held across their user copies. Taken first, never while
    /// holding another lock.
    #[pin]
    io: Mutex<()>,
    /// The stream and the position in it. Held only briefly and never across a user copy, so the
    /// device lock may take it (device -> file) even from `reset_done`, which runs under the
    /// core's `memory_lock` that a fault on a BAR mmap takes.
    #[pin]
    inner: Mutex<FileInner>,
    /// Pollers wait here for the readiness to change.
    #[pin]
    wait: PollCondVar,
}

/// The state behind [`MigFile::inner`].
struct FileInner {
    /// The stream, saved or being resumed.
    buf: [u8; STREAM_LEN],
    /// Saving: the bytes already read. Resuming: the bytes already written.
    pos: usize,
    /// The session ended: reads and writes fail with `ENODEV`.
    disabled: bool,
    /// A saving file, rather than a resuming one.
    saving: bool,
    /// Saving: the end of the stream is final (STOP_COPY) rather than temporary (PRE_COPY).
    stop_copy: bool,
    /// Userspace opted in to the v2 `PRECOPY_INFO` behaviour.
    precopy_v2: bool,
}

impl MigFile {
    /// Creates the data file of a saving session (`stream` is `Some`) or a resuming one.
    fn create(
        stream: Option<[u8; STREAM_LEN]>,
        stop_copy: bool,
        precopy_v2: bool,
    ) -> Result<(Arc<MigFile>, ARef<File>)> {
        let access = if stream.is_some() {
            Access::Read
        } else {
            Access::Write
        };
        let this = Arc::pin_init(
            pin_init!(MigFile {
                io <- new_mutex!(()),
                inner <- new_mutex!(FileInner {
                    saving: stream.is_some(),
                    buf: stream.unwrap_or([0; STREAM_LEN]),
                    pos: 0,
                    disabled: false,
                    stop_copy,
                    precopy_v2,
                }),
                wait <- new_poll_condvar!("rust_vfio_pci_mig::MigFile::wait"),
            }),
            GFP_KERNEL,
        )?;
        let file = data_file::create::<MigFile>(c"rust_vfio_pci_mig", this.clone(), access)?;
        Ok((this, file))
    }

    /// Ends the session: further reads and writes fail with `ENODEV`.
    fn disable(&self) {
        self.inner.lock().disabled = true;
        self.wait.notify_all();
    }

    /// Makes the end of the saved stream final: the device entered STOP_COPY.
    fn finish(&self) {
        self.inner.lock().stop_copy = true;
        self.wait.notify_all();
    }
}

#[vtable]
impl DataFileOps for MigFile {
    type Ptr = Arc<MigFile>;

    fn read(
        this: ArcBorrow<'_, MigFile>,
        _file: &File,
        buf: &mut UserSliceWriter,
    ) -> Result<usize> {
        let _io = this.io.lock();
        let mut chunk = [0u8; STREAM_LEN];
        let (pos, n) = {
            let f = this.inner.lock();
            if f.disabled {
                return Err(ENODEV);
            }
            let left = STREAM_LEN - f.pos;
            if left == 0 {
                // In PRE_COPY nothing is there *now*; in STOP_COPY the stream is over.
                return if f.stop_copy { Ok(0) } else { Err(ENOMSG) };
            }
            let n = left.min(buf.len());
            chunk[..n].copy_from_slice(&f.buf[f.pos..f.pos + n]);
            (f.pos, n)
        };
        // The user copy may fault on a BAR mmap of this very device, which takes the core's
        // `memory_lock`: no lock a reset takes after `memory_lock` may be held here.
        buf.write_slice(&chunk[..n])?;
        // `io` keeps other readers out, so `pos` has not moved; a session that ended meanwhile
        // makes the position moot.
        this.inner.lock().pos = pos + n;
        Ok(n)
    }

    fn write(
        this: ArcBorrow<'_, MigFile>,
        _file: &File,
        buf: &mut UserSliceReader,
    ) -> Result<usize> {
        let _io = this.io.lock();
        let n = buf.len();
        let mut chunk = [0u8; STREAM_LEN];
        if n > STREAM_LEN {
            return Err(EINVAL);
        }
        // Outside the state lock, as in `read`.
        buf.read_slice(&mut chunk[..n])?;
        let mut f = this.inner.lock();
        if f.disabled {
            return Err(ENODEV);
        }
        if n > STREAM_LEN - f.pos {
            return Err(EINVAL);
        }
        let pos = f.pos;
        f.buf[pos..pos + n].copy_from_slice(&chunk[..n]);
        f.pos += n;
        Ok(n)
    }

    fn poll(this: ArcBorrow<'_, MigFile>, file: &File, table: PollTable<'_>) -> u32 {
        table.register_wait(file, &this.wait);
        let f = this.inner.lock();
        if f.disabled {
            events::ENDED
        } else if f.pos < STREAM_LEN {
            // Saving: bytes to read. Resuming: room to write.
            if f.saving {
                events::READABLE
            } else {
                events::WRITABLE
            }
        } else if f.saving && f.stop_copy {
            // The end of the stream: a read returns 0 at once.
            events::READABLE
        } else {
            0
        }
    }

    fn ioctl(this: ArcBorrow<'_, MigFile>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let (info, v2) = {
            let f = this.inner.lock();
            if f.disabled {
                return Err(ENODEV);
            }
            // PRECOPY_INFO exists only in the PRE_COPY states, on a saving file.
            if !f.saving || f.stop_copy {
                return Err(EINVAL);
            }
            let info = PrecopyInfo {
                // CAST: The stream is a few hundred bytes.
                initial_bytes: (STREAM_LEN - f.pos) as u64,
                dirty_bytes: 0,
                reinit: false,
            };
            (info, f.precopy_v2)
        };
        // The user copies happen without the file's lock held.
        info.ioctl(cmd, arg, v2)
    }
}

impl Inner {
    /// Returns the stream of the current registers.
    fn stream(&self) -> [u8; STREAM_LEN] {
        let mut s = [0u8; STREAM_LEN];
        s[..MAGIC.len()].copy_from_slice(&MAGIC);
        for (chunk, reg) in s[MAGIC.len()..].chunks_exact_mut(4).zip(self.regs.iter()) {
            chunk.copy_from_slice(&reg.to_le_bytes());
        }
        s
    }

    /// Ends the saving or resuming session, if any.
    fn end_session(&mut self) {
        if let Some(f) = self.file.take() {
            f.disable();
        }
    }

    /// Returns to RUNNING with no session, as after a reset or when the device is closed.
    fn reset(&mut self) {
        self.end_session();
        self.state = State::Running;
        self.broken = false;
    }

    /// Loads the registers from a complete, valid stream.
    fn load(&mut self, f: &MigFile) -> Result {
        let g = f.inner.lock();
        if g.pos != STREAM_LEN || g.buf[..MAGIC.len()] != MAGIC {
            return Err(EINVAL);
        }
        for (reg, chunk) in self
            .regs
            .iter_mut()
            .zip(g.buf[MAGIC.len()..].chunks_exact(4))
        {
            *reg = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        }
        Ok(())
    }

    /// Carries out the arc `from -> to`.
    fn step(&mut self, from: State, to: State, precopy_v2: bool) -> Result<Option<ARef<File>>> {
        use State::*;
        match (from, to) {
            // An emulated device has nothing to quiesce or start.
            (Running, RunningP2p)
            | (RunningP2p, Running)
            | (RunningP2p, Stop)
            | (Stop, RunningP2p)
            | (Running, Stop)
            | (Stop, Running)
            | (PreCopy, PreCopyP2p)
            | (PreCopyP2p, PreCopy) => Ok(None),
            (Stop, StopCopy) | (Running, PreCopy) | (RunningP2p, PreCopyP2p) => {
                let (f, file) = MigFile::create(Some(self.stream()), to == StopCopy, precopy_v2)?;
                self.file = Some(f);
                Ok(Some(file))
            }
            // The registers do not change while running: no final data to add.
            (PreCopy, StopCopy) | (PreCopyP2p, StopCopy) => {
                if let Some(f) = &self.file {
                    f.finish();
                }
                Ok(None)
            }
            (PreCopy, Running) | (PreCopyP2p, RunningP2p) | (StopCopy, Stop) => {
                self.end_session();
                Ok(None)
            }
            (Stop, Resuming) => {
                let (f, file) = MigFile::create(None, false, false)?;
                self.file = Some(f);
                Ok(Some(file))
            }
            (Resuming, Stop) => {
                let f = self.file.take().ok_or(EINVAL)?;
                f.disable();
                // An incomplete or invalid stream leaves the registers undefined.
                self.load(&f).inspect_err(|_| self.broken = true)?;
                Ok(None)
            }
            _ => Err(EINVAL),
        }
    }
}

#[vtable]
impl vfio_pci::Driver for SampleDriver {
    type IdInfo = ();
    type Data = SampleDevice;
    const NAME: &'static CStr = c"rust-vfio-pci-mig";
    const ID_TABLE: vfio_pci::IdTable<()> = &PCI_TABLE;
    const MIGRATION_FLAGS: Flags = Flags::STOP_COPY.union(Flags::P2P).union(Flags::PRE_COPY);

    fn probe(
        pdev: &pci::Device<Core<'_>>,
        _id_info: Option<&'static ()>,
    ) -> impl PinInit<SampleDevice, Error> {
        let seed = u32::from(pdev.dev_id());
        dev_info!(pdev, "rust_vfio_pci_mig sample bound\n");
        try_pin_init!(SampleDevice {
            inner <- new_mutex!(Inner {
                state: State::Running,
                broken: false,
                // CAST: `i` < `NREGS`.
                regs: core::array::from_fn(|i| seed ^ (i as u32).wrapping_mul(0x9e37_79b9)),
                file: None,
            }),
        })
    }

    fn close_device(dev: &vfio_pci::Device<Self>) {
        dev.data().inner.lock().reset();
    }

    fn reset_done(dev: &vfio_pci::Device<Self>) {
        // This runs under the core's `memory_lock`. The device and file locks are never held
        // across a user copy (which may fault on a BAR mmap and take `memory_lock`), nor while
        // taking `memory_lock`, so they can be taken here: no deferred reset is needed.
        dev.data().inner.lock().reset();
    }

    fn migration_set_state(dev: &vfio_pci::Device<Self>, new: State) -> Result<Option<ARef<File>>> {
        let v2 = dev.precopy_info_v2();
        let mut inner = dev.data().inner.lock();
        let mut cur = inner.state;
        let res = dev.mig_walk(&mut cur, new, |from, to| inner.step(from, to, v2));
        inner.state = if inner.broken { State::Error } else { cur };
        res
    }

    fn migration_get_state(dev: &vfio_pci::Device<Self>) -> Result<State> {
        Ok(dev.data().inner.lock().state)
    }

    fn migration_get_data_size(dev: &vfio_pci::Device<Self>) -> Result<usize> {
        let inner = dev.data().inner.lock();
        match (&inner.file, inner.state.is_saving()) {
            // What is left of the session's stream.
            (Some(f), true) => Ok(STREAM_LEN - f.inner.lock().pos),
            _ => Ok(STREAM_LEN),
        }
    }
}

kernel::module_vfio_pci_driver! {
    type: SampleDriver,
    name: "rust_vfio_pci_mig",
    authors: ["The rustmig developers"],
    description: "Rust vfio-pci variant driver sample with live migration",
    license: "GPL",
}
