// SPDX-License-Identifier: GPL-2.0

//! The vfio-pci variant driver trait: the data of each device and the hooks on `vfio_pci_core`.

use super::{
    AttributeWriter,
    BarGuard,
    Device,
    DirtyBitmap,
    LogRanges, //
};
use crate::{
    device,
    error::VTABLE_DEFAULT_ERROR,
    fs::File,
    pci,
    prelude::*,
    seq_file::SeqFile,
    sync::aref::ARef,
    vfio::migration::{
        Flags,
        State, //
    }, //
};

/// A vfio-pci variant driver.
///
/// The driver provides the per-device data created at probe and may hook the points where it
/// extends `vfio_pci_core`. Optional callbacks not implemented keep the `vfio-pci` behaviour.
#[vtable]
pub trait Driver: Sized + 'static {
    /// Information attached to each entry of [`Driver::ID_TABLE`].
    type IdInfo: 'static;

    /// The driver's data in each device, created by [`Driver::probe`].
    type Data: Send + Sync;

    /// The name of the device's `vfio_device_ops`.
    const NAME: &'static CStr;

    /// The devices the driver can be bound to: every id is override-only
    /// ([`pci::DeviceId::from_id_vfio_override`]), or the driver fails to register with
    /// [`EINVAL`].
    const ID_TABLE: pci::IdTable<Self::IdInfo>;

    /// Creates the driver data of a device being bound.
    ///
    /// `id_info` is the matching id table entry's information, or `None` when userspace named the
    /// driver in `driver_override` of a device that is not in the table.
    fn probe(
        pdev: &pci::Device<device::Core<'_>>,
        id_info: Option<&'static Self::IdInfo>,
    ) -> impl PinInit<Self::Data, Error>;

    /// Called when userspace opens the device, after `vfio_pci_core` enabled it and before
    /// interrupts are set up. An error fails the open.
    fn open_device(_dev: &Device<Self, device::Bound>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when the last user closes the device, before `vfio_pci_core` disables it.
    fn close_device(_dev: &Device<Self, device::Bound>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called after any reset of the PCI function (`VFIO_DEVICE_RESET`, a bus or slot reset, AER
    /// recovery). It may run while other callbacks of the device hold their locks.
    fn reset_done(_dev: &Device<Self, device::Bound>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The migration features of the device's migration support.
    ///
    /// [`Flags::NONE`], the default, means no migration. Otherwise the flags include
    /// [`Flags::STOP_COPY`] and the driver implements the three `migration_*` callbacks; both are
    /// checked when the driver is compiled.
    const MIGRATION_FLAGS: Flags = Flags::NONE;

    /// Moves the device from its current state to `new`, which the vfio core checked to be a
    /// state the device supports (never [`State::Error`]).
    ///
    /// A driver hands this, [`Driver::migration_get_state`], [`Driver::migration_get_data_size`],
    /// [`Driver::reset_done`] and [`Driver::close_device`] to the
    /// [`StateMachine`](super::migration::StateMachine) in its data, which implements the uAPI's
    /// rules; the driver says what each arc does to the device through
    /// [`Migration`](super::migration::Migration). Returns the data file of an arc into a saving
    /// or resuming state, which is always the last arc of its path.
    fn migration_set_state(
        _dev: &Device<Self, device::Bound>,
        _new: State,
    ) -> Result<Option<ARef<File>>> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Returns the current migration state.
    fn migration_get_state(_dev: &Device<Self, device::Bound>) -> Result<State> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Returns the number of bytes a STOP_COPY save would produce from the current state.
    fn migration_get_data_size(_dev: &Device<Self, device::Bound>) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Whether a device has DMA dirty logging through the `log_*` callbacks, asked once after
    /// [`Driver::probe`] created its data. A driver that cannot track the DMA of some of its
    /// devices returns `false` for them, so that userspace sees no logging support rather than
    /// clean logs that are not true. Only called if the driver implements the `log_*` callbacks.
    fn dma_logging(_data: &Self::Data) -> bool {
        true
    }

    /// Starts DMA dirty logging over `ranges`; may round `page_size` (the logging granule) up.
    ///
    /// A driver with dirty logging implements the three `log_*` callbacks.
    fn log_start(
        _dev: &Device<Self, device::Bound>,
        _ranges: LogRanges<'_>,
        _page_size: &mut u64,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Stops DMA dirty logging.
    fn log_stop(_dev: &Device<Self, device::Bound>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Whether the driver fences off the user's access to the BARs with [`Device::fence_bars`],
    /// e.g. while it saves or restores the device's state.
    ///
    /// Only then does the adapter put its own `read()`, `write()` and `mmap()` of BAR regions,
    /// and the fault handlers of BAR mmaps, in front of `vfio_pci_core`'s. A driver that does not
    /// fence keeps `vfio-pci`'s own, and calling [`Device::fence_bars`] fails to compile.
    const FENCES_BARS: bool = false;

    /// The name of a read-only sysfs attribute that the driver adds to each device it is bound
    /// to, or `None`. Its contents are written by [`Driver::show_attribute`], which the driver
    /// then implements (checked when the driver is compiled).
    const ATTRIBUTE: Option<&'static CStr> = None;

    /// Writes the contents of the attribute named by [`Driver::ATTRIBUTE`]: at most a page, by
    /// sysfs rules one value, ending with a newline.
    fn show_attribute(
        _dev: &Device<Self, device::Bound>,
        _out: &mut AttributeWriter<'_>,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The name of a read-only file that the driver adds to each device's migration directory
    /// in the vfio core's debugfs (`vfio/<device>/migration/`, with `CONFIG_VFIO_DEBUGFS`), or
    /// `None`. Its contents are written by [`Driver::show_debugfs`], which the driver then
    /// implements (checked when the driver is compiled).
    const DEBUGFS: Option<&'static CStr> = None;

    /// Writes the contents of the file named by [`Driver::DEBUGFS`], each time it is read.
    fn show_debugfs(_dev: &Device<Self, device::Bound>, _out: &SeqFile) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Whether the user's writes to BAR `bar` of a device go through [`Driver::bar_write`]
    /// instead of straight to the device; asked when the device is opened and at each `write()`,
    /// and only if the driver implements [`Driver::bar_write`].
    ///
    /// A trapped BAR cannot be mapped by the user (see the [`BarGuard`] module's documentation),
    /// so that every write to it is seen. The BAR holding the MSI-X table is never trapped.
    fn traps_bar(_data: &Self::Data, _bar: u32) -> bool {
        false
    }

    /// Carries out the user's write of `data` at `offset` of BAR `bar`, which
    /// [`Driver::traps_bar`] traps, with the BARs locked.
    ///
    /// The BARs are not fenced and the user's command register enables memory decoding. The
    /// driver splits `data` into the accesses `vfio_pci_core` would make ([`IoAccess::split`])
    /// and carries them out with [`BarGuard::write_access`]; it may look at or refuse each. A
    /// `write()` is handed over in pieces of up to 64 bytes.
    fn bar_write(
        _dev: &Device<Self, device::Bound>,
        _bars: &BarGuard<'_, Self>,
        _bar: u32,
        _offset: u64,
        _data: &[u8],
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Reports into `dirty` the pages of `[iova, iova + length)` written by DMA since the last
    /// report, and forgets them.
    fn log_read_and_clear(
        _dev: &Device<Self, device::Bound>,
        _iova: usize,
        _length: usize,
        _dirty: &mut DirtyBitmap<'_>,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}
