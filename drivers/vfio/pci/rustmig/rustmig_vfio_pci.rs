// SPDX-License-Identifier: GPL-2.0

//! rustmig: a live-migratable vfio-pci variant driver.
//!
//! rustmig binds, through `driver_override`, to PCI devices for which it has a device backend and
//! hands them to userspace through `vfio_pci_core`, exactly like `vfio-pci`, adding the VFIO
//! migration v2 uAPI with STOP_COPY, P2P and PRE_COPY.
//!
//! The state machine, its lock and reset protocol and the data files are
//! `kernel::vfio::migration`'s: this driver says what each arc does to the device
//! ([`Migration`]), and [`session`] moves the [`stream`] between the data files and the device.
//! The generic part does not know which device it drives: a [`backend::Backend`] does the
//! device-specific work.
//!
//! # Locking
//!
//! The state machine's lock, then a session's I/O lock, then the core's `memory_lock`, then the
//! dirty log's lock.

use core::fmt::{
    self,
    Write, //
};
use kernel::{
    device::{
        self,
        Bound,
        Core, //
    },
    fs::File,
    new_mutex,
    pci::{
        self,
        DeviceId,
        Vendor, //
    },
    prelude::*,
    seq_file::SeqFile,
    sync::{
        aref::ARef,
        Mutex, //
    },
    vfio::{
        migration::{
            Flags,
            Migration,
            State,
            StateMachine, //
        },
        pci::{
            self as vfio_pci,
            AttributeWriter,
            BarGuard,
            DirtyBitmap,
            LogRanges,
            NUM_BARS, //
        }, //
    }, //
};

mod backend;
mod dirty;
mod edu;
mod ivshmem;
mod ratelimit;
mod session;
mod stats;
mod stream;

use backend::{
    ArcBars,
    Backend,
    BarLens,
    Dma,
    Held, //
};
use dirty::DirtyLog;
use ratelimit::Ratelimit;
use stats::Stats;
use stream::{
    DescriptorLine,
    Header,
    Identity,
    Layout,
    LOADS,
    VERSION_MAJOR,
    VERSION_MAJOR_PRECOPY,
    VERSION_MINOR, //
};

/// The backend of QEMU's ivshmem-plain.
const IVSHMEM: &dyn Backend = &ivshmem::Ivshmem;
/// The backend of QEMU's edu.
const EDU: &dyn Backend = &edu::Edu;

kernel::pci_device_table!(
    PCI_TABLE,
    &'static dyn Backend,
    [
        (
            DeviceId::from_id_vfio_override(Vendor::REDHAT_QUMRANET, 0x1110),
            IVSHMEM
        ),
        (DeviceId::from_id_vfio_override(Vendor::QEMU, 0x11e8), EDU),
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
    machine: StateMachine<RustMig>,
    /// The DMA dirty log while logging runs (for a backend whose DMA is known, see [`Dma`]).
    #[pin]
    log: Mutex<Option<DirtyLog>>,
    /// Limits the messages about refused streams and failed arcs: each is an errno to the user.
    pub(crate) refusals: Ratelimit,
    /// What the backend holds for the stopped device until it runs (see [`Held`]).
    pub(crate) held: Held,
    /// What its migrations did, in debugfs.
    #[pin]
    pub(crate) stats: Stats,
}

impl RustMigDevice {
    /// The section that a save starting in PRE_COPY reads while the device runs, and the BAR
    /// whose writes it tracks: the backend's live section, while `live_precopy` is set.
    pub(crate) fn live_section(&self) -> Option<(u32, u32)> {
        self.backend
            .live_section()
            .filter(|_| crate::module_parameters::live_precopy.value())
    }

    /// The major version of the stream format a save from this device uses when it starts in
    /// PRE_COPY, as QEMU's saves do: [`VERSION_MAJOR_PRECOPY`] with a live section, else
    /// [`VERSION_MAJOR`] (a save from STOP_COPY always uses the latter).
    pub(crate) fn save_major(&self) -> u16 {
        if self.live_section().is_some() {
            VERSION_MAJOR_PRECOPY
        } else {
            VERSION_MAJOR
        }
    }

    /// Refuses the stream being loaded with `e`: says why in the kernel log (rate limited) and
    /// in the statistics.
    pub(crate) fn refuse(&self, dev: &device::Device, e: Error, why: fmt::Arguments<'_>) -> Error {
        if self.refusals.allow(dev) {
            dev_err!(dev, "{why}\n");
        }
        self.stats.note(why);
        e
    }

    /// Checks the header of a stream being resumed against this device, by the rules of
    /// [`Identity::mismatch`], and that its length leaves room for the whole device state.
    pub(crate) fn check_header(&self, dev: &device::Device, h: &Header) -> Result {
        if let Some(field) = self.identity.mismatch(&h.identity) {
            return Err(self.refuse(
                dev,
                EPROTO,
                format_args!("resume: stream refused, its {field} differs from this device's"),
            ));
        }
        // A version 2.0 stream's length is not known: its end record checks it is whole.
        if h.major == VERSION_MAJOR && h.payload_len < self.layout.payload_len() {
            return Err(self.refuse(
                dev,
                EINVAL,
                format_args!(
                    "resume: stream refused, {} bytes cannot hold the {} of this device's state",
                    h.payload_len,
                    self.layout.payload_len()
                ),
            ));
        }
        Ok(())
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
    const ID_TABLE: pci::IdTable<&'static dyn Backend> = &PCI_TABLE;
    const MIGRATION_FLAGS: Flags = Flags::STOP_COPY.union(Flags::P2P).union(Flags::PRE_COPY);
    const ATTRIBUTE: Option<&'static CStr> = Some(c"migration_compat");
    // The device must not change while its state is saved or loaded (see `Migration::stop`).
    const FENCES_BARS: bool = true;

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
            machine <- StateMachine::new(),
            log <- new_mutex!(None, "rustmig::RustMigDevice::log"),
            // Ten messages per five seconds.
            refusals: Ratelimit::new(10, 5_000_000_000),
            held: Held::default(),
            stats <- Stats::new(),
        })
    }

    /// The compatibility descriptor: the identity that this device's streams carry and that it
    /// requires of the streams it loads.
    fn show_attribute(
        dev: &vfio_pci::Device<Self, Bound>,
        out: &mut AttributeWriter<'_>,
    ) -> Result {
        let data = dev.data();
        let line = DescriptorLine {
            major: data.save_major(),
            minor: VERSION_MINOR,
            loads: &LOADS,
            identity: &data.identity,
        };
        writeln!(out, "{line}").map_err(|_| EOVERFLOW)
    }

    const DEBUGFS: Option<&'static CStr> = Some(c"rustmig");

    fn show_debugfs(dev: &vfio_pci::Device<Self, Bound>, out: &SeqFile) -> Result {
        dev.data().stats.show(out);
        Ok(())
    }

    fn close_device(dev: &vfio_pci::Device<Self, Bound>) {
        *dev.data().log.lock() = None;
        dev.data().machine.close(dev);
    }

    fn reset_done(dev: &vfio_pci::Device<Self, Bound>) {
        dev.data().machine.reset_done(dev);
    }

    fn migration_set_state(
        dev: &vfio_pci::Device<Self, Bound>,
        new: State,
    ) -> Result<Option<ARef<File>>> {
        dev.data().machine.set_state(dev, new)
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
        dev: &vfio_pci::Device<Self, Bound>,
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
        dev: &vfio_pci::Device<Self, Bound>,
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

    fn log_stop(dev: &vfio_pci::Device<Self, Bound>) -> Result {
        *dev.data().log.lock() = None;
        Ok(())
    }

    /// Reports what the backend's transfers wrote (see [`dirty`]); a device that does no DMA
    /// has nothing to report.
    fn log_read_and_clear(
        dev: &vfio_pci::Device<Self, Bound>,
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

    fn migration_get_state(dev: &vfio_pci::Device<Self, Bound>) -> Result<State> {
        Ok(dev.data().machine.state(dev))
    }

    fn migration_get_data_size(dev: &vfio_pci::Device<Self, Bound>) -> Result<usize> {
        dev.data().machine.data_size(dev)
    }
}

/// What each arc of the state machine does to a rustmig device.
#[vtable]
impl Migration for RustMig {
    type Device = vfio_pci::Device<RustMig>;
    type Saver = session::Saver;
    type Loader = session::Loader;
    const DATA_FILE_NAME: &'static CStr = c"rustmig_vfio_pci";

    fn quiesce(dev: &Self::Device) -> Result {
        dev.data().backend.quiesce(&ArcBars::new(dev))
    }

    fn unquiesce(dev: &Self::Device) -> Result {
        dev.data().backend.unquiesce(&ArcBars::new(dev))
    }

    /// Fences off the user's BAR access, then lets the backend stop the device.
    fn stop(dev: &Self::Device) -> Result {
        dev.fence_bars();
        dev.data().backend.stop(&ArcBars::new(dev))
    }

    /// Lets the backend start the device, then lifts the fence.
    fn start(dev: &Self::Device) -> Result {
        let data = dev.data();
        data.backend.start(&ArcBars::new(dev), &data.held)?;
        dev.unfence_bars();
        Ok(())
    }

    fn save(dev: &Self::Device, stop_copy: bool) -> Result<session::Saver> {
        session::Saver::new(dev, stop_copy)
    }

    fn resume(dev: &Self::Device) -> Result<session::Loader> {
        session::Loader::new(dev)
    }

    fn data_size(dev: &Self::Device) -> Result<u64> {
        Ok(dev.data().layout.stream_len())
    }

    fn failed(dev: &Self::Device, from: State, to: State, err: Error) {
        if dev.data().refusals.allow(dev.as_ref()) {
            dev_err!(dev, "migration: {from:?} -> {to:?} failed: {err:?}\n");
        }
        // Its state may be half written: the user cannot reach it until the reset.
        dev.fence_bars();
    }

    fn reset(dev: &Self::Device) {
        // A reset device takes nothing of a stream loaded before.
        dev.data().held.take();
        dev.unfence_bars();
        dev.data().stats.reset();
    }

    fn arc_done(dev: &Self::Device, from: State, to: State) {
        dev.data().stats.arc(from, to);
    }
}

kernel::module_vfio_pci_driver! {
    type: RustMig,
    name: "rustmig_vfio_pci",
    authors: ["The rustmig developers"],
    description: "Live-migratable vfio-pci variant driver",
    license: "GPL",
    params: {
        live_precopy: bool {
            default: true,
            description: "Move device memory while the device runs (PRE_COPY, stream format 2.0); \
                          if false, all of it moves in STOP_COPY (format 1.0)",
        },
    },
}
