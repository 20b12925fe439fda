// SPDX-License-Identifier: GPL-2.0

//! rustmig: a live-migratable vfio-pci variant driver.
//!
//! rustmig binds, through `driver_override`, to PCI devices for which it has a device backend and
//! hands them to userspace through `vfio_pci_core`, exactly like `vfio-pci`, adding the VFIO
//! migration v2 uAPI with STOP_COPY, P2P and PRE_COPY.
//!
//! The generic part does not know which device it drives: [`fsm`] says what each arc of the
//! state machine does, [`session`] moves the [`stream`] through the data files, and a
//! [`backend::Backend`] does the device-specific work.
//!
//! # Locking
//!
//! `RustMigDevice::state` serialises the state machine. Its order: state lock, then a session's
//! I/O lock, then the core's `memory_lock`, then the dirty log's lock. `reset_done` may run
//! under `memory_lock`, so it only try-locks the state lock; when that fails, the reset is
//! deferred to whoever holds it, which applies it before unlocking (see [`StateGuard`]).

use core::fmt::Write;
use kernel::{
    device::{
        self,
        Core, //
    },
    fs::File,
    new_mutex,
    new_spinlock,
    pci,
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
    sync::{
        aref::ARef,
        lock::{
            mutex::MutexBackend,
            Guard, //
        },
        Arc,
        Mutex,
        SpinLock, //
    },
    vfio::{
        migration::{
            Flags,
            State, //
        },
        pci::{
            self as vfio_pci,
            AttributeWriter,
            BarGuard,
            DeviceId,
            DirtyBitmap,
            LogRanges,
            NUM_BARS, //
        }, //
    }, //
};

mod backend;
mod dirty;
mod edu;
mod fsm;
mod ivshmem;
mod ratelimit;
mod session;
mod stream;

use backend::{
    Backend,
    BarLens,
    Dma,
    Held, //
};
use dirty::DirtyLog;
use fsm::Step;
use ratelimit::Ratelimit;
use session::Session;
use stream::{
    Header,
    Identity,
    Layout, //
};

/// The backend of QEMU's ivshmem-plain.
const IVSHMEM: &dyn Backend = &ivshmem::Ivshmem;
/// The backend of QEMU's edu.
const EDU: &dyn Backend = &edu::Edu;

kernel::vfio_pci_device_table!(
    PCI_TABLE,
    &'static dyn Backend,
    [
        (DeviceId::new(0x1af4, 0x1110), IVSHMEM),
        (DeviceId::new(0x1234, 0x11e8), EDU),
    ]
);

/// The rustmig variant driver.
pub(crate) struct RustMig;

/// The driver's data of one bound device.
#[pin_data]
pub(crate) struct RustMigDevice {
    /// The backend that drives this device.
    pub(crate) backend: &'static dyn Backend,
    /// The identity written into, and required from, every stream.
    pub(crate) identity: Identity,
    /// The sections of the device's state.
    pub(crate) layout: Layout,
    /// The migration state machine.
    #[pin]
    state: Mutex<Inner>,
    /// A reset happened while the state lock was held: the holder applies it.
    #[pin]
    deferred_reset: SpinLock<bool>,
    /// The DMA dirty log while logging runs (for a backend whose DMA is known, see [`Dma`]).
    #[pin]
    log: Mutex<Option<DirtyLog>>,
    /// Limits the messages about refused streams and failed arcs: each is an errno to the user.
    pub(crate) refusals: Ratelimit,
    /// What the backend holds for the stopped device until it runs (see [`Held`]).
    pub(crate) held: Held,
    /// The resets so far, counted under `memory_lock` by `reset_done` even when it defers the
    /// rest: a session opened before a reset touches the device no more (see [`Session`]).
    pub(crate) resets: Atomic<u64>,
}

/// The state behind [`RustMigDevice::state`].
struct Inner {
    /// The migration state.
    state: State,
    /// The session (saving or resuming) of the current state, if any.
    session: Option<Arc<Session>>,
}

impl Inner {
    /// Ends the session, if any.
    fn end_session(&mut self) {
        if let Some(s) = self.session.take() {
            s.disable();
        }
    }

    /// Returns to RUNNING with no session: after a reset, or when the device is closed.
    fn reset(&mut self, dev: &vfio_pci::Device<RustMig>) {
        self.end_session();
        self.state = State::Running;
        // A reset device takes nothing of a stream loaded before.
        dev.data().held.take();
        dev.unfence_bars();
    }
}

/// The state lock held; dropping it applies a deferred reset before unlocking.
struct StateGuard<'a> {
    dev: &'a vfio_pci::Device<RustMig>,
    guard: Option<Guard<'a, Inner, MutexBackend>>,
}

impl<'a> StateGuard<'a> {
    /// Takes the state lock of `dev`.
    fn lock(dev: &'a vfio_pci::Device<RustMig>) -> Self {
        StateGuard {
            dev,
            guard: Some(dev.data().state.lock()),
        }
    }

    /// Returns the state.
    fn inner(&mut self) -> &mut Inner {
        // INVARIANT: `guard` is `Some` until `drop`.
        self.guard.as_deref_mut().unwrap_or_else(|| unreachable!())
    }
}

impl Drop for StateGuard<'_> {
    fn drop(&mut self) {
        let dev = self.dev;
        loop {
            let mut pending = dev.data().deferred_reset.lock();
            if *pending {
                *pending = false;
                drop(pending);
                self.inner().reset(dev);
                continue;
            }
            // Unlock with the reset flag's lock held: a reset that comes later will find the
            // state lock free and apply itself.
            self.guard = None;
            return;
        }
    }
}

impl RustMigDevice {
    /// Checks the header of a stream being resumed against this device, by the rules of
    /// [`Identity::mismatch`], and that its length leaves room for the whole device state.
    pub(crate) fn check_header(&self, dev: &device::Device, h: &Header) -> Result {
        if let Some(field) = self.identity.mismatch(&h.identity) {
            if self.refusals.allow(dev) {
                dev_err!(
                    dev,
                    "resume: stream refused, its {field} differs from this device's\n"
                );
            }
            return Err(EPROTO);
        }
        if h.payload_len < self.layout.payload_len() {
            if self.refusals.allow(dev) {
                dev_err!(
                    dev,
                    "resume: stream refused, {} bytes cannot hold the {} of this device's state\n",
                    h.payload_len,
                    self.layout.payload_len()
                );
            }
            return Err(EINVAL);
        }
        Ok(())
    }

    /// Carries out one arc of the state machine.
    fn step(
        dev: &vfio_pci::Device<RustMig>,
        inner: &mut Inner,
        from: State,
        to: State,
    ) -> Result<Option<ARef<File>>> {
        let data = dev.data();
        let mut file = None;
        for &s in fsm::steps(from, to)? {
            match s {
                Step::Quiesce => data.backend.quiesce(&dev.lock_bars()?)?,
                Step::Unquiesce => data.backend.unquiesce(&dev.lock_bars()?)?,
                Step::Stop => {
                    dev.fence_bars();
                    data.backend.stop(&dev.lock_bars()?)?;
                }
                Step::Start => {
                    data.backend.start(&dev.lock_bars()?, &data.held)?;
                    dev.unfence_bars();
                }
                Step::SavePrecopy | Step::SaveAll | Step::Resume => {
                    let save = match s {
                        Step::SaveAll => Some(true),
                        Step::SavePrecopy => Some(false),
                        _ => None,
                    };
                    let (sess, f) = Session::open(dev, save, dev.precopy_info_v2())?;
                    inner.session = Some(sess);
                    file = Some(f);
                }
                Step::FinishSave => inner.session.as_ref().ok_or(EINVAL)?.finish_save(),
                Step::FinishResume => inner.session.as_ref().ok_or(EINVAL)?.finish_resume()?,
                Step::EndSession => inner.end_session(),
            }
        }
        Ok(file)
    }
}

/// Makes `log` the device's dirty log, unless logging already runs: a second
/// `DMA_LOGGING_START` without a `DMA_LOGGING_STOP` gets `EBUSY` and changes nothing.
fn install_log(slot: &Mutex<Option<DirtyLog>>, log: DirtyLog) -> Result {
    let mut slot = slot.lock();
    if slot.is_some() {
        return Err(EBUSY);
    }
    *slot = Some(log);
    Ok(())
}

/// Returns the backend name as stored in a stream's identity.
fn backend_id(name: &str) -> [u8; 16] {
    let mut b = [0u8; 16];
    let n = name.len().min(16);
    b[..n].copy_from_slice(&name.as_bytes()[..n]);
    b
}

#[vtable]
impl vfio_pci::Driver for RustMig {
    type IdInfo = &'static dyn Backend;
    type Data = RustMigDevice;
    const NAME: &'static CStr = c"rustmig-vfio-pci";
    const ID_TABLE: vfio_pci::IdTable<&'static dyn Backend> = &PCI_TABLE;
    const MIGRATION_FLAGS: Flags = Flags::STOP_COPY.union(Flags::P2P).union(Flags::PRE_COPY);
    const ATTRIBUTE: Option<&'static CStr> = Some(c"migration_compat");

    fn probe(
        pdev: &pci::Device<Core<'_>>,
        id_info: Option<&'static &'static dyn Backend>,
    ) -> impl PinInit<RustMigDevice, Error> {
        let vendor = pdev.vendor_id().as_raw();
        let device = pdev.device_id();
        let backend = id_info.copied().ok_or_else(|| {
            dev_err!(pdev, "no rustmig backend for {vendor:04x}:{device:04x}\n");
            ENODEV
        });
        let mut lens: BarLens = [0; NUM_BARS as usize];
        for (bar, len) in (0..NUM_BARS).zip(lens.iter_mut()) {
            *len = pdev.resource_len(bar).unwrap_or(0);
        }
        let layout = backend.and_then(|b| {
            b.layout(&lens).inspect_err(|e| {
                dev_err!(pdev, "{}: unexpected BARs {lens:?}: {e:?}\n", b.name());
            })
        });
        let identity = backend.and_then(|b| {
            Ok(Identity {
                vendor,
                device,
                subsystem_vendor: pdev.subsystem_vendor_id(),
                subsystem_device: pdev.subsystem_device_id(),
                class_rev: pdev.pci_class().as_raw() << 8 | u32::from(pdev.revision_id()),
                backend: backend_id(b.name()),
                backend_major: b.version().0,
                backend_minor: b.version().1,
                state_size: layout.as_ref().map_err(|e| *e)?.state_size(),
            })
        });
        if let (Ok(id), Ok(l)) = (&identity, &layout) {
            dev_info!(
                pdev,
                "{}, {} byte stream\n",
                format_args!("{id}"),
                l.stream_len()
            );
        }
        try_pin_init!(RustMigDevice {
            backend: backend?,
            identity: identity?,
            layout: layout?,
            state <- new_mutex!(Inner {
                state: State::Running,
                session: None,
            }, "rustmig::RustMigDevice::state"),
            deferred_reset <- new_spinlock!(false, "rustmig::RustMigDevice::deferred_reset"),
            log <- new_mutex!(None, "rustmig::RustMigDevice::log"),
            // Ten messages per five seconds.
            refusals: Ratelimit::new(10, 5_000_000_000),
            held: Held::default(),
            resets: Atomic::new(0),
        })
    }

    /// The compatibility descriptor: the identity that this device's streams carry and that it
    /// requires of the streams it loads.
    fn show_attribute(dev: &vfio_pci::Device<Self>, out: &mut AttributeWriter<'_>) -> Result {
        writeln!(out, "{}", dev.data().identity).map_err(|_| EOVERFLOW)
    }

    fn close_device(dev: &vfio_pci::Device<Self>) {
        *dev.data().log.lock() = None;
        StateGuard::lock(dev).inner().reset(dev);
    }

    fn reset_done(dev: &vfio_pci::Device<Self>) {
        // This may run under the core's `memory_lock`, which the state lock's holders take:
        // never wait for the state lock here.
        let data = dev.data();
        // Before anything else: a session's I/O, which checks the count under `memory_lock`,
        // touches the reset device no more, even while the rest of the reset is deferred.
        data.resets.add(1, Relaxed);
        let mut pending = data.deferred_reset.lock();
        *pending = true;
        let Some(guard) = data.state.try_lock() else {
            return;
        };
        drop(pending);
        // Applies the reset as it unlocks.
        drop(StateGuard {
            dev,
            guard: Some(guard),
        });
    }

    fn migration_set_state(dev: &vfio_pci::Device<Self>, new: State) -> Result<Option<ARef<File>>> {
        let mut g = StateGuard::lock(dev);
        let inner = g.inner();
        let mut cur = inner.state;
        let mut broken = false;
        let res = dev.mig_walk(&mut cur, new, |from, to| {
            RustMigDevice::step(dev, inner, from, to).inspect_err(|e| {
                if dev.data().refusals.allow(dev.as_ref()) {
                    dev_err!(dev, "migration: {from:?} -> {to:?} failed: {e:?}\n");
                }
                broken = true;
            })
        });
        inner.state = cur;
        if broken {
            // A failed arc leaves the device in an unknown state: only a reset leaves ERROR.
            // A request the state machine refuses (no arc leads there) changes nothing.
            inner.end_session();
            inner.state = State::Error;
            // Its state may be half written: the user cannot reach it until the reset.
            dev.fence_bars();
        }
        res
    }

    /// DMA logging is offered for devices whose every DMA write to memory the backend knows of:
    /// devices that do none, and devices whose transfers a trapped BAR write starts.
    fn dma_logging(data: &RustMigDevice) -> bool {
        data.backend.dma() != Dma::Untracked
    }

    fn traps_bar(data: &RustMigDevice, bar: u32) -> bool {
        data.backend.traps_bar(bar)
    }

    fn bar_write(
        dev: &vfio_pci::Device<Self>,
        bars: &BarGuard<'_, Self>,
        bar: u32,
        offset: u64,
        data: &[u8],
    ) -> Result {
        let d = dev.data();
        if let Some(r) = d.backend.bar_write(bars, bar, offset, data)? {
            let mut log = d.log.lock();
            if let Some(log) = Option::as_mut(&mut log) {
                dev_dbg!(dev, "DMA to [{:#x}, {:#x}) started\n", r.start, r.end);
                log.record(r);
            }
        }
        Ok(())
    }

    fn log_start(
        dev: &vfio_pci::Device<Self>,
        ranges: LogRanges<'_>,
        page_size: &mut u64,
    ) -> Result {
        let data = dev.data();
        let mut log = DirtyLog::new(*page_size)?;
        // CAST: `usize` fits in `u64`.
        let bytes = ranges.iter().fold(0u64, |n, (first, last)| {
            n.saturating_add((last - first) as u64 + 1)
        });
        match data.backend.dma() {
            Dma::Untracked => return Err(EOPNOTSUPP),
            Dma::Never => {
                dev_dbg!(
                    dev,
                    "DMA logging of {bytes} bytes: the device does no DMA\n"
                );
                install_log(&data.log, log)?;
            }
            Dma::Tracked => {
                // A transfer started before logging may land after it started.
                let bars = dev.lock_bars()?;
                if let Some(r) = data.backend.dma_in_flight(&bars)? {
                    log.record(r);
                }
                dev_dbg!(
                    dev,
                    "DMA logging of {bytes} bytes, {} ranges\n",
                    ranges.len()
                );
                install_log(&data.log, log)?;
            }
        }
        Ok(())
    }

    fn log_stop(dev: &vfio_pci::Device<Self>) -> Result {
        *dev.data().log.lock() = None;
        Ok(())
    }

    /// Reports what the backend's transfers wrote (see [`dirty`]); a device that does no DMA
    /// has nothing to report.
    fn log_read_and_clear(
        dev: &vfio_pci::Device<Self>,
        iova: usize,
        length: usize,
        dirty: &mut DirtyBitmap<'_>,
    ) -> Result {
        let data = dev.data();
        // Marking the user's bitmap may pin its pages (`mmap_lock`, then maybe a fault on a BAR
        // mmap and `memory_lock`): the ranges are taken out of the log first, and marked with
        // no lock held.
        let mut hits = KVec::with_capacity(dirty::MAX_RANGES, GFP_KERNEL)?;
        {
            // The BARs stay locked until the log is cleared: no transfer can start between
            // asking which one is in flight and clearing the log.
            let bars = match data.backend.dma() {
                Dma::Tracked => Some(dev.lock_bars()?),
                _ => None,
            };
            let keep = match &bars {
                Some(b) => data.backend.dma_in_flight(b)?,
                None => None,
            };
            let mut log = data.log.lock();
            let log = Option::as_mut(&mut log).ok_or(EINVAL)?;
            // CAST: `usize` and `u64` have the same size on the architectures vfio supports.
            // No allocation: the log holds at most `MAX_RANGES` ranges, so a report has as
            // many hits at most.
            log.report(iova as u64, length as u64, keep, |start, len| {
                Ok(hits.push((start as usize, len as usize), GFP_NOWAIT)?)
            })?;
        }
        for (start, len) in hits {
            dirty.set(start, len);
        }
        Ok(())
    }

    fn migration_get_state(dev: &vfio_pci::Device<Self>) -> Result<State> {
        Ok(StateGuard::lock(dev).inner().state)
    }

    fn migration_get_data_size(dev: &vfio_pci::Device<Self>) -> Result<usize> {
        let mut g = StateGuard::lock(dev);
        let inner = g.inner();
        let size = match (&inner.session, inner.state) {
            (Some(s), State::PreCopy | State::PreCopyP2p | State::StopCopy) => s.remaining(),
            _ => dev.data().layout.stream_len(),
        };
        usize::try_from(size).map_err(|_| EOVERFLOW)
    }
}

kernel::module_vfio_pci_driver! {
    type: RustMig,
    name: "rustmig_vfio_pci",
    authors: ["The rustmig developers"],
    description: "Live-migratable vfio-pci variant driver",
    license: "GPL",
}
