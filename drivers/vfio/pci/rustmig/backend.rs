// SPDX-License-Identifier: GPL-2.0

//! The device backend interface: everything the generic driver needs from a device.
//!
//! The generic part (state machine, sessions, stream) calls a backend only through [`Backend`],
//! with the device's BARs locked for it ([`Bars`]: `memory_lock` held, memory decoding on), or,
//! for the arcs of the state machine, able to lock them if it needs them ([`ArcBars`]). A backend
//! never sees a user buffer or a file.

use crate::stream::Layout;
use crate::RustMig;
use core::ops::Range;
use kernel::{
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
    vfio::pci::{
        BarGuard,
        Device,
        IoAccess, //
    }, //
};

/// The driver's access to a device's BARs.
pub(crate) type Bars<'a> = BarGuard<'a, RustMig>;

/// The BARs of a device in an arc of the state machine, locked only by a backend that needs
/// them: an arc that leaves the device alone (all of ivshmem's) then costs neither
/// `memory_lock` nor the configuration space read that enabling memory decoding takes, which
/// was most of a RUNNING -> STOP -> RUNNING round trip.
pub(crate) struct ArcBars<'a>(&'a Device<RustMig>);

impl<'a> ArcBars<'a> {
    /// The BARs of `dev`, not locked yet.
    pub(crate) fn new(dev: &'a Device<RustMig>) -> Self {
        Self(dev)
    }

    /// Locks the BARs, as [`Device::lock_bars`] does.
    pub(crate) fn lock(&self) -> Result<Bars<'a>> {
        self.0.lock_bars()
    }
}

/// The lengths of a device's six BARs, as probed.
pub(crate) type BarLens = [u64; 6];

/// What the driver knows of a device's DMA writes to memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Dma {
    /// The device may write memory by DMA without the driver knowing: the driver offers no
    /// dirty logging, so that userspace knows it has none rather than trusting a clean log.
    Untracked,
    /// The device never writes memory by DMA: its dirty log is truly always clean.
    Never,
    /// The device writes memory only by transfers that a write to a trapped BAR starts, and
    /// [`Backend::bar_write`] returns the range of each; [`Backend::dma_in_flight`] tells
    /// whether one has not landed yet.
    Tracked,
}

/// Device state that the driver holds for a stopped device: loaded from a stream but not put
/// into the device yet, because putting it there would make the stopped device signal (edu:
/// its interrupt status, which only a raise can set). [`Backend::start`] puts it in; a save
/// while stopped reads it from here. A reset drops it.
pub(crate) struct Held(Atomic<u64>);

impl Default for Held {
    fn default() -> Self {
        Self(Atomic::new(0))
    }
}

impl Held {
    /// Returns the value held (0: nothing).
    pub(crate) fn get(&self) -> u64 {
        self.0.load(Relaxed)
    }

    /// Holds `v` (0: nothing).
    pub(crate) fn set(&self, v: u64) {
        self.0.store(v, Relaxed);
    }

    /// Returns the value held and holds nothing.
    pub(crate) fn take(&self) -> u64 {
        self.0.xchg(0, Relaxed)
    }
}

/// A device backend: how one kind of device is stopped, saved and restored.
///
/// The state is described by a [`Layout`] of sections; [`Backend::save`] and [`Backend::load`]
/// move a range of one section, at most [`crate::stream::CHUNK`] bytes at a time, in order.
pub(crate) trait Backend: Sync {
    /// The backend's name, at most 16 bytes: part of the stream's identity.
    fn name(&self) -> &'static str;

    /// The backend's format version, major and minor: part of the stream's identity. A change
    /// that an older backend cannot load needs a new major version; a new minor version may only
    /// add optional records.
    fn version(&self) -> (u16, u16);

    /// What the driver knows of the device's DMA writes to memory, which decides whether it
    /// offers DMA dirty logging for the device.
    fn dma(&self) -> Dma {
        Dma::Untracked
    }

    /// Whether the user's writes to BAR `bar` go through [`Backend::bar_write`]. Such a BAR
    /// cannot be mapped by the user.
    fn traps_bar(&self, _bar: u32) -> bool {
        false
    }

    /// Carries out the user's write of `data` at `offset` of a trapped BAR, and returns the
    /// device memory range (IOVAs) that a DMA transfer it started writes, if it started one.
    fn bar_write(
        &self,
        bars: &Bars<'_>,
        bar: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<Option<Range<u64>>> {
        for a in IoAccess::split(offset, data) {
            bars.write_access(bar, &a)?;
        }
        Ok(None)
    }

    /// Returns the device memory range that a DMA transfer in flight writes, if one is.
    fn dma_in_flight(&self, _bars: &Bars<'_>) -> Result<Option<Range<u64>>> {
        Ok(None)
    }

    /// The section that is the memory of a BAR, `(tag, bar)`, if the device has one that may be
    /// read while it runs: memory that only the user changes, through the BAR's mappings and
    /// region writes, whose writes the driver then tracks. A save from PRE_COPY moves it while
    /// the device runs (a version 2.0 stream), and only what was written since once stopped.
    ///
    /// The driver moves this section's bytes itself, between the BAR and the stream, 8 bytes per
    /// access, checksumming what it saves as it copies it: [`Backend::save`] and
    /// [`Backend::load`] never see them.
    fn live_section(&self) -> Option<(u32, u32)> {
        None
    }

    /// Returns the sections of the device's state, or an error if the device (e.g. a BAR
    /// missing or of an unexpected size) cannot be driven by this backend.
    fn layout(&self, bars: &BarLens) -> Result<Layout>;

    /// RUNNING -> RUNNING_P2P: stop initiating DMA to peers and interrupts.
    fn quiesce(&self, _bars: &ArcBars<'_>) -> Result {
        Ok(())
    }

    /// RUNNING_P2P -> RUNNING: undo [`Backend::quiesce`].
    fn unquiesce(&self, _bars: &ArcBars<'_>) -> Result {
        Ok(())
    }

    /// RUNNING_P2P -> STOP: stop the device from changing its state (the user's BAR access is
    /// already fenced off).
    fn stop(&self, _bars: &ArcBars<'_>) -> Result {
        Ok(())
    }

    /// STOP -> RUNNING_P2P: let the device run again, with what `held` holds put into it.
    fn start(&self, _bars: &ArcBars<'_>, _held: &Held) -> Result {
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` of section `tag` of the stopped device (and of what
    /// `held` holds for it); never of the [`Backend::live_section`].
    fn save(&self, bars: &Bars<'_>, held: &Held, tag: u32, offset: u64, buf: &mut [u8]) -> Result;

    /// Writes `buf` at `offset` of section `tag` into the stopped device, or into `held` what
    /// the device may only take once it runs; never of the [`Backend::live_section`].
    fn load(&self, bars: &Bars<'_>, held: &Held, tag: u32, offset: u64, buf: &[u8]) -> Result;
}
