// SPDX-License-Identifier: GPL-2.0

//! The device backend interface: everything the generic driver needs from a device.
//!
//! The generic part (state machine, sessions, stream) calls a backend only through [`Backend`],
//! always with the device's BARs locked for it ([`Bars`]): `memory_lock` held, memory decoding
//! on. A backend never sees a user buffer, a lock or a file.

use crate::stream::Layout;
use crate::RustMig;
use kernel::{
    prelude::*,
    vfio::pci::BarGuard, //
};

/// The driver's access to a device's BARs.
pub(crate) type Bars<'a> = BarGuard<'a, RustMig>;

/// The lengths of a device's six BARs, as probed.
pub(crate) type BarLens = [u64; 6];

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

    /// Whether the device never initiates DMA, so that its DMA dirty log is truly always clean
    /// and the driver may offer DMA logging for it. A device that can do DMA without the driver
    /// tracking it must say `false` (the default): userspace then knows it has no logging.
    fn dma_free(&self) -> bool {
        false
    }

    /// Returns the sections of the device's state, or an error if the device (e.g. a BAR
    /// missing or of an unexpected size) cannot be driven by this backend.
    fn layout(&self, bars: &BarLens) -> Result<Layout>;

    /// RUNNING -> RUNNING_P2P: stop initiating DMA to peers and interrupts.
    fn quiesce(&self, _bars: &Bars<'_>) -> Result {
        Ok(())
    }

    /// RUNNING_P2P -> RUNNING: undo [`Backend::quiesce`].
    fn unquiesce(&self, _bars: &Bars<'_>) -> Result {
        Ok(())
    }

    /// RUNNING_P2P -> STOP: stop the device from changing its state (the user's BAR access is
    /// already fenced off).
    fn stop(&self, _bars: &Bars<'_>) -> Result {
        Ok(())
    }

    /// STOP -> RUNNING_P2P: let the device run again.
    fn start(&self, _bars: &Bars<'_>) -> Result {
        Ok(())
    }

    /// Reads `buf.len()` bytes at `offset` of section `tag` of the stopped device.
    fn save(&self, bars: &Bars<'_>, tag: u32, offset: u64, buf: &mut [u8]) -> Result;

    /// Writes `buf` at `offset` of section `tag` into the stopped device.
    fn load(&self, bars: &Bars<'_>, tag: u32, offset: u64, buf: &[u8]) -> Result;
}
