// SPDX-License-Identifier: GPL-2.0

//! vfio-pci variant drivers.
//!
//! A variant driver binds to a PCI device only through `driver_override` (as management tools
//! bind vfio-pci), registers it with `vfio_pci_core` and may extend it, e.g. with live migration.
//! Everything a driver does not override behaves exactly like `vfio-pci`.
//!
//! The generic [`pci::Driver`](crate::pci::Driver) adapter cannot be used for this: it owns the
//! device's driver data, while `vfio_pci_core` requires the driver data to be the
//! `vfio_pci_core_device`. [`Registration`] registers a `pci_driver` that follows the C variant
//! drivers instead: an override-only id table, `driver_managed_dma`, the `vfio_pci_core` AER
//! handlers and `reset_done` routed to the driver.
//!
//! C header: [`include/linux/vfio_pci_core.h`](srctree/include/linux/vfio_pci_core.h)

use super::migration::{
    Flags,
    State, //
};
use crate::{
    bindings,
    device,
    device_id::{
        RawDeviceId,
        RawDeviceIdIndex, //
    },
    error::{
        from_err_ptr,
        from_result,
        to_result,
        VTABLE_DEFAULT_ERROR, //
    },
    fs::File,
    page::PAGE_SIZE,
    pci,
    prelude::*,
    str::as_char_ptr_in_const_context,
    sync::aref::ARef,
    types::Opaque,
    ThisModule, //
};
use core::{
    alloc::Layout,
    marker::PhantomData,
    mem::offset_of,
    ptr::NonNull, //
};

mod bar;
pub use bar::{
    BarGuard,
    DeviceIo,
    IoAccess,
    NUM_BARS, //
};

/// A PCI device id of a vfio-pci variant driver, C's `PCI_DRIVER_OVERRIDE_DEVICE_VFIO`.
///
/// Every id is "override only": the driver core binds a variant driver to a matching device only
/// when userspace names the driver in the device's `driver_override`, never by itself.
///
/// # Invariants
///
/// `self.0.override_only` is `PCI_ID_F_VFIO_DRIVER_OVERRIDE`.
#[repr(transparent)]
#[derive(Clone, Copy)]
pub struct DeviceId(bindings::pci_device_id);

impl DeviceId {
    /// Matches the device `vendor:device`, any subsystem.
    pub const fn new(vendor: u16, device: u16) -> Self {
        const ANY: u32 = !0;

        // INVARIANT: `override_only` is set to the VFIO override flag.
        Self(bindings::pci_device_id {
            vendor: vendor as u32,
            device: device as u32,
            subvendor: ANY,
            subdevice: ANY,
            class: 0,
            class_mask: 0,
            driver_data: 0,
            override_only: bindings::PCI_ID_F_VFIO_DRIVER_OVERRIDE,
        })
    }

    /// Returns the vendor id this entry matches.
    pub const fn vendor(&self) -> u16 {
        // CAST: `new` stored a `u16`.
        self.0.vendor as u16
    }

    /// Returns the device id this entry matches.
    pub const fn device(&self) -> u16 {
        // CAST: `new` stored a `u16`.
        self.0.device as u16
    }

    /// Returns whether this entry only matches through `driver_override`.
    pub const fn is_override_only(&self) -> bool {
        self.0.override_only == bindings::PCI_ID_F_VFIO_DRIVER_OVERRIDE
    }
}

// SAFETY: `DeviceId` is a `#[repr(transparent)]` wrapper of `pci_device_id` and adds no invariant
// that a `pci_device_id` read back from a table could break.
unsafe impl RawDeviceId for DeviceId {
    type RawType = bindings::pci_device_id;
}

// SAFETY: `DRIVER_DATA_OFFSET` is the offset of the `driver_data` field.
unsafe impl RawDeviceIdIndex for DeviceId {
    const DRIVER_DATA_OFFSET: usize = offset_of!(bindings::pci_device_id, driver_data);
}

/// The id table of a vfio-pci variant driver.
pub type IdTable<T> = &'static dyn crate::device_id::IdTable<DeviceId, T>;

/// Creates a vfio-pci variant id table with its `vfio_pci:` module alias.
///
/// # Examples
///
/// ```
/// use kernel::vfio::pci::DeviceId;
///
/// kernel::vfio_pci_device_table!(
///     TABLE,
///     u32,
///     [(DeviceId::new(0x1af4, 0x1110), 1), (DeviceId::new(0x1234, 0x11e8), 2)]
/// );
///
/// let ids: &[DeviceId] = &[DeviceId::new(0x1af4, 0x1110)];
/// assert!(ids[0].is_override_only());
/// assert_eq!((ids[0].vendor(), ids[0].device()), (0x1af4, 0x1110));
/// ```
#[macro_export]
macro_rules! vfio_pci_device_table {
    ($($tt:tt)*) => {
        $crate::module_device_table!("pci", $crate::vfio::pci::DeviceId, $($tt)*);
    };
}

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

    /// The devices the driver can be bound to.
    const ID_TABLE: IdTable<Self::IdInfo>;

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
    fn open_device(_dev: &Device<Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when the last user closes the device, before `vfio_pci_core` disables it.
    fn close_device(_dev: &Device<Self>) {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called after any reset of the PCI function (`VFIO_DEVICE_RESET`, a bus or slot reset, AER
    /// recovery). It may run while other callbacks of the device hold their locks.
    fn reset_done(_dev: &Device<Self>) {
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
    fn migration_set_state(_dev: &Device<Self>, _new: State) -> Result<Option<ARef<File>>> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Returns the current migration state.
    fn migration_get_state(_dev: &Device<Self>) -> Result<State> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Returns the number of bytes a STOP_COPY save would produce from the current state.
    fn migration_get_data_size(_dev: &Device<Self>) -> Result<usize> {
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
    fn log_start(_dev: &Device<Self>, _ranges: LogRanges<'_>, _page_size: &mut u64) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Stops DMA dirty logging.
    fn log_stop(_dev: &Device<Self>) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// The name of a read-only sysfs attribute that the driver adds to each device it is bound
    /// to, or `None`. Its contents are written by [`Driver::show_attribute`], which the driver
    /// then implements (checked when the driver is compiled).
    const ATTRIBUTE: Option<&'static CStr> = None;

    /// Writes the contents of the attribute named by [`Driver::ATTRIBUTE`]: at most a page, by
    /// sysfs rules one value, ending with a newline.
    fn show_attribute(_dev: &Device<Self>, _out: &mut AttributeWriter<'_>) -> Result {
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
        _dev: &Device<Self>,
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
        _dev: &Device<Self>,
        _iova: usize,
        _length: usize,
        _dirty: &mut DirtyBitmap<'_>,
    ) -> Result {
        build_error!(VTABLE_DEFAULT_ERROR)
    }
}

/// The page of a sysfs attribute being shown, written through [`core::fmt::Write`].
///
/// What does not fit is not written, and the write fails with [`core::fmt::Error`].
///
/// # Examples
///
/// ```
/// use core::fmt::Write;
/// use kernel::vfio::pci::AttributeWriter;
///
/// let mut page = [0u8; 16];
/// let mut w = AttributeWriter::new(&mut page);
/// assert!(writeln!(w, "state_size={}", 4096).is_ok());
/// assert_eq!(w.len(), 16);
/// assert!(write!(w, "x").is_err());
/// assert_eq!(w.len(), 16);
/// assert_eq!(&page, b"state_size=4096\n");
/// ```
pub struct AttributeWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> AttributeWriter<'a> {
    /// Creates a writer that fills `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Returns the number of bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Write for AttributeWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let dst = self
            .buf
            .get_mut(self.len..self.len + s.len())
            .ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}

/// The IOVA ranges given to [`Driver::log_start`].
pub struct LogRanges<'a> {
    root: *mut bindings::rb_root_cached,
    len: u32,
    _p: PhantomData<&'a bindings::rb_root_cached>,
}

impl LogRanges<'_> {
    /// Returns the number of ranges.
    pub fn len(&self) -> usize {
        // CAST: `u32` fits in `usize` on every supported architecture.
        self.len as usize
    }

    /// Returns whether there is no range.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the ranges as `(first, last)` IOVAs, both inclusive, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut node: *mut bindings::interval_tree_node = core::ptr::null_mut();
        let mut started = false;
        core::iter::from_fn(move || {
            // SAFETY: `root` is the vfio core's valid interval tree, not changed while the
            // callback runs; `node` is null or a node of it.
            node = unsafe {
                if started {
                    bindings::interval_tree_iter_next(node, 0, c_ulong::MAX)
                } else {
                    started = true;
                    bindings::interval_tree_iter_first(self.root, 0, c_ulong::MAX)
                }
            };
            // SAFETY: A non-null `node` is a valid node of the tree.
            NonNull::new(node).map(|n| unsafe { ((*n.as_ptr()).start, (*n.as_ptr()).last) })
        })
    }
}

/// The bitmap [`Driver::log_read_and_clear`] reports dirty pages into.
pub struct DirtyBitmap<'a> {
    bitmap: *mut bindings::iova_bitmap,
    _p: PhantomData<&'a mut bindings::iova_bitmap>,
}

impl DirtyBitmap<'_> {
    /// Marks the pages of `[iova, iova + length)` dirty.
    ///
    /// This may pin pages of the user's bitmap, taking `mmap_lock`: it must not be called with
    /// a lock held that a fault on a BAR mmap can wait for, such as a [`BarGuard`].
    #[inline(never)]
    pub fn set(&mut self, iova: usize, length: usize) {
        // SAFETY: `bitmap` is the valid bitmap of the running report.
        unsafe { bindings::iova_bitmap_set(self.bitmap, iova, length) };
    }
}

/// A device of a vfio-pci variant driver: a `vfio_pci_core_device` followed by the driver's data.
///
/// # Invariants
///
/// - `core` is at offset 0 and is a `vfio_pci_core_device` initialised by `_vfio_alloc_device`
///   with [`Adapter::VFIO_OPS`] as its ops, so `vfio_device`, at offset 0 of the core device, is
///   also the address of `Self`.
/// - `bars` and `data` are initialised, pinned, and dropped only by the `release` callback of
///   the vfio device, when its last reference goes.
#[repr(C)]
pub struct Device<T: Driver> {
    core: Opaque<bindings::vfio_pci_core_device>,
    bars: bar::BarGate,
    data: T::Data,
}

// SAFETY: The C parts of the device are protected by the vfio core's own locking and `Device`
// only gives shared access to `data`, which is `Send + Sync`.
unsafe impl<T: Driver> Send for Device<T> {}
// SAFETY: See the `Send` implementation.
unsafe impl<T: Driver> Sync for Device<T> {}

impl<T: Driver> Device<T> {
    /// Returns the driver's data.
    pub fn data(&self) -> &T::Data {
        &self.data
    }

    /// Returns the driver's data, pinned.
    pub fn data_pinned(&self) -> Pin<&T::Data> {
        // SAFETY: By the type invariants, `data` is pinned: it lives in the vfio device's
        // allocation and is never moved out of it.
        unsafe { Pin::new_unchecked(&self.data) }
    }

    /// Returns the PCI device this vfio device drives.
    pub fn pci_dev(&self) -> &pci::Device<device::Bound> {
        // SAFETY: By the type invariants, `core` was initialised by `vfio_pci_core_init_dev`,
        // which set `pdev` to the probed device. A `&Device` is only handed out while the driver
        // is bound to it, and `pci::Device` is a transparent wrapper of `struct pci_dev`.
        unsafe { &*(*self.core.get()).pdev.cast() }
    }

    /// Returns the raw `struct vfio_pci_core_device`.
    fn as_raw(&self) -> *mut bindings::vfio_pci_core_device {
        self.core.get()
    }

    /// Returns the raw `struct vfio_device`.
    fn as_vfio_raw(&self) -> *mut bindings::vfio_device {
        // SAFETY: `core` points to a valid `vfio_pci_core_device`.
        unsafe { &raw mut (*self.as_raw()).vdev }
    }

    /// Borrows the device that embeds the given `vfio_device`.
    ///
    /// # Safety
    ///
    /// `vdev` must be the `vfio_device` of a live `Device<T>` whose `data` is initialised, and
    /// the returned reference must not outlive it.
    unsafe fn from_vfio_raw<'a>(vdev: *mut bindings::vfio_device) -> &'a Self {
        const_assert!(offset_of!(bindings::vfio_pci_core_device, vdev) == 0);
        // SAFETY: By the type invariants the `vfio_device` is at offset 0 of `Self`, and the
        // caller guarantees `Self` is live.
        unsafe { &*vdev.cast::<Self>() }
    }

    /// Borrows the device that is the driver data of a PCI device bound to `T`.
    ///
    /// # Safety
    ///
    /// `pdev` must be bound to the variant driver `T` (probe succeeded, remove not finished).
    unsafe fn from_pci_raw<'a>(pdev: *mut bindings::pci_dev) -> &'a Self {
        // SAFETY: `pdev` is valid, and its driver data is the `vfio_pci_core_device` that
        // `Adapter::probe_callback` set, the first field of a `Device<T>`.
        unsafe { &*bindings::dev_get_drvdata(&raw mut (*pdev).dev).cast::<Self>() }
    }

    /// Allocates the vfio device of `pdev` and initialises the driver's data in place.
    fn new(
        pdev: &pci::Device<device::Core<'_>>,
        init: impl PinInit<T::Data, Error>,
    ) -> Result<NonNull<Self>> {
        const_assert!(offset_of!(Self, core) == 0);
        // The allocation is made by `kvzalloc`, which aligns to at least this.
        const_assert!(core::mem::align_of::<Self>() <= bindings::ARCH_KMALLOC_MINALIGN);

        let size = Layout::new::<Self>().pad_to_align().size();
        let dev: &device::Device = pdev.as_ref();
        // SAFETY: `dev` is a valid, bound device; the ops table is static. Until `data` is
        // initialised, the ops' `release` only releases the core device.
        let vdev = from_err_ptr(unsafe {
            bindings::_vfio_alloc_device(
                size,
                dev.as_raw(),
                const { &Adapter::<T>::VFIO_OPS_UNINIT },
            )
        })?;
        let this = vdev.cast::<Self>();

        // SAFETY: `bars` and `data` lie inside the zeroed, suitably sized and aligned
        // allocation, are not initialised yet and will not move: the allocation is only freed by
        // `release`.
        let res = unsafe {
            match pin_init::raw_try_init(&raw mut (*this).bars, bar::BarGate::new()) {
                Ok(()) => pin_init::raw_try_init(&raw mut (*this).data, init),
                Err(infallible) => match infallible {},
            }
        };
        if let Err(e) = res {
            // SAFETY: `vdev` holds the initial reference, which this drops; the current ops drop
            // neither `bars` nor `data`, and `bars` needs no drop.
            unsafe { bindings::vfio_put_device(vdev) };
            return Err(e);
        }

        // INVARIANT: `data` is initialised; from here on `release` drops it.
        // SAFETY: The device is not registered, so nothing else reads its fields concurrently.
        unsafe {
            (*vdev).ops = const { &Adapter::<T>::VFIO_OPS };
            if Adapter::<T>::HAS_MIGRATION {
                (*vdev).mig_ops = const { &Adapter::<T>::MIG_OPS };
                (*vdev).migration_flags = T::MIGRATION_FLAGS.bits();
            }
            if Adapter::<T>::HAS_LOG && T::dma_logging(&(*this).data) {
                (*vdev).log_ops = const { &Adapter::<T>::LOG_OPS };
            }
        }

        // SAFETY: `_vfio_alloc_device` did not return an error, so `this` is not null.
        Ok(unsafe { NonNull::new_unchecked(this) })
    }
}

impl<T: Driver> AsRef<device::Device> for Device<T> {
    fn as_ref(&self) -> &device::Device {
        self.pci_dev().as_ref()
    }
}

impl<T: Driver> AsRef<super::Device> for Device<T> {
    fn as_ref(&self) -> &super::Device {
        // SAFETY: By the type invariants the `vfio_device` is initialised, and lives as long as
        // `self`; its migration ops and flags are set before it is registered.
        unsafe { super::Device::from_raw(self.as_vfio_raw()) }
    }
}

/// The C callbacks of a vfio-pci variant driver `T`.
struct Adapter<T: Driver>(PhantomData<T>);

impl<T: Driver> Adapter<T> {
    /// The device ops: `vfio_pci_core` plus the driver's hooks.
    const VFIO_OPS: bindings::vfio_device_ops = bindings::vfio_device_ops {
        name: as_char_ptr_in_const_context(T::NAME).cast_mut(),
        init: Some(bindings::vfio_pci_core_init_dev),
        release: Some(Self::release_callback),
        open_device: Some(Self::open_device_callback),
        close_device: Some(Self::close_device_callback),
        ioctl: Some(bindings::vfio_pci_core_ioctl),
        get_region_info_caps: Some(bindings::vfio_pci_ioctl_get_region_info),
        device_feature: Some(bindings::vfio_pci_core_ioctl_feature),
        read: Some(Self::read_callback),
        write: Some(Self::write_callback),
        mmap: Some(Self::mmap_callback),
        request: Some(bindings::vfio_pci_core_request),
        match_: Some(bindings::vfio_pci_core_match),
        match_token_uuid: Some(bindings::vfio_pci_core_match_token_uuid),
        bind_iommufd: Some(bindings::vfio_iommufd_physical_bind),
        unbind_iommufd: Some(bindings::vfio_iommufd_physical_unbind),
        attach_ioas: Some(bindings::vfio_iommufd_physical_attach_ioas),
        detach_ioas: Some(bindings::vfio_iommufd_physical_detach_ioas),
        ..pin_init::zeroed()
    };

    /// The ops of a device whose driver data is not initialised yet.
    const VFIO_OPS_UNINIT: bindings::vfio_device_ops = bindings::vfio_device_ops {
        release: Some(bindings::vfio_pci_core_release_dev),
        ..Self::VFIO_OPS
    };

    /// Whether the driver supports migration, checked to be all or nothing at compile time.
    const HAS_MIGRATION: bool = {
        let any = T::HAS_MIGRATION_SET_STATE
            || T::HAS_MIGRATION_GET_STATE
            || T::HAS_MIGRATION_GET_DATA_SIZE
            || T::MIGRATION_FLAGS.bits() != 0;
        let all = T::HAS_MIGRATION_SET_STATE
            && T::HAS_MIGRATION_GET_STATE
            && T::HAS_MIGRATION_GET_DATA_SIZE
            && T::MIGRATION_FLAGS.contains(Flags::STOP_COPY);
        assert!(
            !any || all,
            "migration needs all three migration_* callbacks and Flags::STOP_COPY"
        );
        all
    };

    /// Whether the driver supports DMA dirty logging, checked to be all or nothing.
    const HAS_LOG: bool = {
        let any = T::HAS_LOG_START || T::HAS_LOG_STOP || T::HAS_LOG_READ_AND_CLEAR;
        let all = T::HAS_LOG_START && T::HAS_LOG_STOP && T::HAS_LOG_READ_AND_CLEAR;
        assert!(!any || all, "dirty logging needs all three log_* callbacks");
        all
    };

    /// Whether the driver adds a sysfs attribute, checked to come with its show callback.
    const HAS_ATTRIBUTE: bool = {
        let named = T::ATTRIBUTE.is_some();
        assert!(
            named == T::HAS_SHOW_ATTRIBUTE,
            "ATTRIBUTE and show_attribute go together"
        );
        named
    };

    /// The migration ops, installed when [`Self::HAS_MIGRATION`].
    const MIG_OPS: bindings::vfio_migration_ops = bindings::vfio_migration_ops {
        migration_set_state: Some(Self::mig_set_state_callback),
        migration_get_state: Some(Self::mig_get_state_callback),
        migration_get_data_size: Some(Self::mig_get_data_size_callback),
    };

    /// The dirty logging ops, installed when [`Self::HAS_LOG`].
    const LOG_OPS: bindings::vfio_log_ops = bindings::vfio_log_ops {
        log_start: Some(Self::log_start_callback),
        log_stop: Some(Self::log_stop_callback),
        log_read_and_clear: Some(Self::log_read_and_clear_callback),
    };

    /// The PCI error handlers when the driver wants `reset_done`.
    const ERR_HANDLERS: bindings::pci_error_handlers = bindings::pci_error_handlers {
        error_detected: Some(bindings::vfio_pci_core_aer_err_detected),
        reset_done: Some(Self::reset_done_callback),
        ..pin_init::zeroed()
    };

    extern "C" fn probe_callback(
        pdev: *mut bindings::pci_dev,
        id: *const bindings::pci_device_id,
    ) -> c_int {
        // SAFETY: The PCI core calls probe with a valid device, in the core context, and the
        // device stays valid for the duration of this call.
        let pdev_ref = unsafe { &*pdev.cast::<pci::Device<device::Core<'_>>>() };

        // SAFETY: `id` is either an entry of `T::ID_TABLE` (an `IdArray<DeviceId, T::IdInfo>`,
        // whose `driver_data` points to the entry's information) or `pci_device_id_any`, whose
        // `driver_data` is 0. `DeviceId` is a transparent wrapper of `pci_device_id`.
        let info = unsafe { (*id.cast::<DeviceId>()).info_unchecked_opt::<T::IdInfo>() };

        from_result(|| {
            let this = Device::<T>::new(pdev_ref, T::probe(pdev_ref, info))?;
            // SAFETY: `this` was just created and holds the only reference.
            let this = unsafe { this.as_ref() };

            // SAFETY: `pdev` is valid; vfio_pci_core requires its driver data to be the core
            // device.
            unsafe { bindings::dev_set_drvdata(&raw mut (*pdev).dev, this.as_raw().cast()) };

            // SAFETY: `this` is a fully initialised core device, set as the driver data.
            let ret = to_result(unsafe { bindings::vfio_pci_core_register_device(this.as_raw()) });
            if let Err(e) = ret {
                // SAFETY: `pdev` is valid. The initial reference of the vfio device is dropped
                // and nothing else holds one, as registration failed.
                unsafe {
                    bindings::dev_set_drvdata(&raw mut (*pdev).dev, core::ptr::null_mut());
                    bindings::vfio_put_device(this.as_vfio_raw());
                }
                return Err(e);
            }
            Ok(0)
        })
    }

    extern "C" fn remove_callback(pdev: *mut bindings::pci_dev) {
        // SAFETY: remove is only called for a device whose probe succeeded.
        let this = unsafe { Device::<T>::from_pci_raw(pdev) };
        let (core, vdev) = (this.as_raw(), this.as_vfio_raw());

        // SAFETY: The device was registered by `probe_callback`. Unregistering waits for all
        // users to close it; then the probe's reference is dropped, which frees the device and
        // drops the driver data unless the vfio core still holds a reference.
        unsafe {
            bindings::vfio_pci_core_unregister_device(core);
            bindings::vfio_put_device(vdev);
        }
    }

    extern "C" fn attribute_show_callback(
        dev: *mut bindings::device,
        _attr: *mut bindings::device_attribute,
        buf: *mut c_char,
    ) -> isize {
        // SAFETY: The attribute is only in the `dev_groups` of `T`'s driver: the driver core
        // creates it on a PCI device once `T`'s probe succeeded and removes it (waiting for this
        // call) before `T`'s remove runs, so `dev` is embedded in a `pci_dev` bound to `T`.
        let this =
            unsafe { Device::<T>::from_pci_raw(crate::container_of!(dev, bindings::pci_dev, dev)) };
        // SAFETY: sysfs hands a show callback a buffer of a page, writable for the call.
        let page = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), PAGE_SIZE) };
        let mut out = AttributeWriter::new(page);
        match T::show_attribute(this, &mut out) {
            // CAST: At most a page.
            Ok(()) => out.len() as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    extern "C" fn reset_done_callback(pdev: *mut bindings::pci_dev) {
        // SAFETY: The PCI core calls the error handlers only for a device bound to the driver.
        let this = unsafe { Device::<T>::from_pci_raw(pdev) };
        T::reset_done(this);
    }

    extern "C" fn open_device_callback(vdev: *mut bindings::vfio_device) -> c_int {
        // SAFETY: The vfio core calls `open_device` only on registered devices, whose `data` is
        // initialised, and they stay alive for the call.
        let this = unsafe { Device::<T>::from_vfio_raw(vdev) };
        let core = this.as_raw();

        from_result(|| {
            // SAFETY: `core` is a registered core device being opened.
            to_result(unsafe { bindings::vfio_pci_core_enable(core) })?;
            if T::HAS_OPEN_DEVICE {
                if let Err(e) = T::open_device(this) {
                    // SAFETY: `vfio_pci_core_enable` succeeded above.
                    unsafe { bindings::vfio_pci_core_disable(core) };
                    return Err(e);
                }
            }
            this.set_bars_open(true);
            // SAFETY: `vfio_pci_core_enable` succeeded above.
            unsafe { bindings::vfio_pci_core_finish_enable(core) };
            // After `vfio_pci_core_finish_enable`, which decides which BARs can be mapped.
            this.hide_trapped_bars();
            Ok(0)
        })
    }

    extern "C" fn close_device_callback(vdev: *mut bindings::vfio_device) {
        // SAFETY: The vfio core calls `close_device` only on open, registered devices.
        let this = unsafe { Device::<T>::from_vfio_raw(vdev) };
        if T::HAS_CLOSE_DEVICE {
            T::close_device(this);
        }
        this.set_bars_open(false);
        this.unfence_bars();
        // SAFETY: `vdev` is an open core device.
        unsafe { bindings::vfio_pci_core_close_device(vdev) };
    }

    extern "C" fn mig_set_state_callback(
        vdev: *mut bindings::vfio_device,
        new: bindings::vfio_device_mig_state,
    ) -> *mut bindings::file {
        // SAFETY: The vfio core calls migration ops only on registered devices.
        let this = unsafe { Device::<T>::from_vfio_raw(vdev) };
        // "ERROR cannot be specified as a device state" (uAPI), not even when the device is in
        // it, which a driver's transition loop would take for a request already met.
        let res = match State::try_from(new.0) {
            Ok(State::Error) | Err(_) => Err(EINVAL),
            Ok(new) => T::migration_set_state(this, new),
        };
        match res {
            Ok(Some(file)) => ARef::into_raw(file).as_ptr().cast(),
            Ok(None) => core::ptr::null_mut(),
            Err(e) => e.to_ptr(),
        }
    }

    extern "C" fn mig_get_state_callback(
        vdev: *mut bindings::vfio_device,
        state: *mut bindings::vfio_device_mig_state,
    ) -> c_int {
        // SAFETY: The vfio core calls migration ops only on registered devices.
        let this = unsafe { Device::<T>::from_vfio_raw(vdev) };
        from_result(|| {
            let cur = T::migration_get_state(this)?;
            // SAFETY: `state` is valid for writes for the call.
            unsafe { state.write(bindings::vfio_device_mig_state(cur as u32)) };
            Ok(0)
        })
    }

    extern "C" fn mig_get_data_size_callback(
        vdev: *mut bindings::vfio_device,
        len: *mut c_ulong,
    ) -> c_int {
        // SAFETY: The vfio core calls migration ops only on registered devices.
        let this = unsafe { Device::<T>::from_vfio_raw(vdev) };
        from_result(|| {
            let size = T::migration_get_data_size(this)?;
            // SAFETY: `len` is valid for writes for the call.
            unsafe { len.write(size as c_ulong) };
            Ok(0)
        })
    }

    extern "C" fn log_start_callback(
        vdev: *mut bindings::vfio_device,
        ranges: *mut bindings::rb_root_cached,
        nnodes: u32,
        page_size: *mut u64,
    ) -> c_int {
        // SAFETY: The vfio core calls log ops only on registered devices.
        let this = unsafe { Device::<T>::from_vfio_raw(vdev) };
        let ranges = LogRanges {
            root: ranges,
            len: nnodes,
            _p: PhantomData,
        };
        from_result(|| {
            // SAFETY: `page_size` is valid for reads and writes for the call.
            let page_size = unsafe { &mut *page_size };
            T::log_start(this, ranges, page_size)?;
            Ok(0)
        })
    }

    extern "C" fn log_stop_callback(vdev: *mut bindings::vfio_device) -> c_int {
        // SAFETY: The vfio core calls log ops only on registered devices.
        let this = unsafe { Device::<T>::from_vfio_raw(vdev) };
        from_result(|| {
            T::log_stop(this)?;
            Ok(0)
        })
    }

    extern "C" fn log_read_and_clear_callback(
        vdev: *mut bindings::vfio_device,
        iova: c_ulong,
        length: c_ulong,
        dirty: *mut bindings::iova_bitmap,
    ) -> c_int {
        // SAFETY: The vfio core calls log ops only on registered devices.
        let this = unsafe { Device::<T>::from_vfio_raw(vdev) };
        let mut dirty = DirtyBitmap {
            bitmap: dirty,
            _p: PhantomData,
        };
        from_result(|| {
            T::log_read_and_clear(this, iova, length, &mut dirty)?;
            Ok(0)
        })
    }

    /// The VMA ops of a BAR mmap: `vfio_pci_core`'s, with the fence of [`Device::fence_bars`].
    const BAR_VM_OPS: bindings::vm_operations_struct = bindings::vm_operations_struct {
        fault: Some(Self::bar_fault_callback),
        ..pin_init::zeroed()
    };

    extern "C" fn read_callback(
        vdev: *mut bindings::vfio_device,
        buf: *mut c_char,
        count: usize,
        ppos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: The vfio core calls `read` only on open devices, with a valid `ppos`.
        let (this, pos) = unsafe { (Device::<T>::from_vfio_raw(vdev), *ppos) };
        // SAFETY: The arguments are the vfio core's, passed on unchanged.
        this.rw_gated(pos, || unsafe {
            bindings::vfio_pci_core_read(vdev, buf, count, ppos)
        })
    }

    extern "C" fn write_callback(
        vdev: *mut bindings::vfio_device,
        buf: *const c_char,
        count: usize,
        ppos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: The vfio core calls `write` only on open devices, with a valid `ppos`.
        let (this, pos) = unsafe { (Device::<T>::from_vfio_raw(vdev), *ppos) };
        if let Some(bar) = this.trapped_bar(pos) {
            // SAFETY: `ppos` is valid and `buf` is the user's pointer, as the vfio core gives
            // them.
            return match unsafe { this.trapped_write(bar, buf, count, ppos) } {
                // CAST: At most `count`, which the vfio core bounds by `isize::MAX`.
                Ok(n) => n as isize,
                Err(e) => e.to_errno() as isize,
            };
        }
        // SAFETY: The arguments are the vfio core's, passed on unchanged.
        this.rw_gated(pos, || unsafe {
            bindings::vfio_pci_core_write(vdev, buf, count, ppos)
        })
    }

    extern "C" fn mmap_callback(
        vdev: *mut bindings::vfio_device,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: The arguments are the vfio core's, passed on unchanged.
        let ret = unsafe { bindings::vfio_pci_core_mmap(vdev, vma) };
        if ret == 0 {
            let shift = bindings::VFIO_PCI_OFFSET_SHIFT - bindings::PAGE_SHIFT;
            // SAFETY: `vma` is the VMA being set up, not visible to faults yet.
            unsafe {
                if (*vma).vm_pgoff >> shift < NUM_BARS as usize {
                    // A BAR mapping: `vfio_pci_core` set its private data to the core device.
                    (*vma).vm_ops = const { &Self::BAR_VM_OPS };
                }
            }
        }
        ret
    }

    extern "C" fn bar_fault_callback(vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        // SAFETY: The VMA was set up by `mmap_callback`, whose private data is the core device,
        // the first field of a `Device<T>`; the device fd the VMA holds keeps it alive and open.
        let this = unsafe {
            Device::<T>::from_vfio_raw((*(*vmf).__bindgen_anon_1.vma).vm_private_data.cast())
        };
        // SAFETY: `vmf` is a fault on a BAR mmap of `this`, as set up by `mmap_callback`.
        unsafe { this.bar_fault(vmf) }
    }

    extern "C" fn release_callback(vdev: *mut bindings::vfio_device) {
        // The vfio device is the first field of a `Device<T>`.
        let this = vdev.cast::<Device<T>>();
        // SAFETY: `release` is called once, when the last reference to the vfio device goes, so
        // nothing can reach `bars` or `data` any more; the ops that point here are only
        // installed once both are initialised.
        unsafe {
            core::ptr::drop_in_place(&raw mut (*this).data);
            core::ptr::drop_in_place(&raw mut (*this).bars);
        }
        // SAFETY: `vdev` is a core device being released.
        unsafe { bindings::vfio_pci_core_release_dev(vdev) };
    }
}

/// The registration of a vfio-pci variant driver with the PCI core.
///
/// The driver is unregistered when the registration is dropped.
///
/// # Invariants
///
/// `drv` was registered with `__pci_register_driver` and stays registered until `drop`.
#[pin_data(PinnedDrop)]
pub struct Registration<T: Driver> {
    /// The driver's sysfs attribute ([`Driver::ATTRIBUTE`]), its group and the NULL-terminated
    /// lists that `drv.dev_groups` points to; unused without an attribute.
    #[pin]
    attr: Opaque<bindings::device_attribute>,
    #[pin]
    attrs: Opaque<[*mut bindings::attribute; 2]>,
    #[pin]
    group: Opaque<bindings::attribute_group>,
    #[pin]
    groups: Opaque<[*const bindings::attribute_group; 2]>,
    #[pin]
    drv: Opaque<bindings::pci_driver>,
    _p: PhantomData<T>,
}

// SAFETY: `Registration` exposes nothing through a shared reference.
unsafe impl<T: Driver> Sync for Registration<T> {}
// SAFETY: Registration and unregistration may run on any thread.
unsafe impl<T: Driver> Send for Registration<T> {}

impl<T: Driver> Registration<T> {
    /// Registers the variant driver `T` under `name`, the driver name userspace writes to
    /// `driver_override`.
    pub fn new(name: &'static CStr, module: &'static ThisModule) -> impl PinInit<Self, Error> {
        try_pin_init!(&this in Self {
            attr: Opaque::uninit(),
            attrs: Opaque::uninit(),
            group: Opaque::uninit(),
            groups: Opaque::uninit(),
            drv <- Opaque::try_ffi_init(move |drv: *mut bindings::pci_driver| {
                // SAFETY: `this` points to the registration being initialised, pinned until
                // drop; the attribute fields are not used by anyone before the registration.
                let groups = unsafe { Self::init_attribute(this.as_ptr()) };
                // SAFETY: `try_ffi_init` hands out memory valid for writes, pinned until drop.
                unsafe {
                    drv.write(bindings::pci_driver::default());
                    (*drv).name = name.as_char_ptr();
                    (*drv).id_table = T::ID_TABLE.as_ptr();
                    (*drv).probe = Some(Adapter::<T>::probe_callback);
                    (*drv).remove = Some(Adapter::<T>::remove_callback);
                    (*drv).err_handler = if T::HAS_RESET_DONE {
                        const { &Adapter::<T>::ERR_HANDLERS }
                    } else {
                        &raw const bindings::vfio_pci_core_err_handlers
                    };
                    (*drv).driver_managed_dma = true;
                    (*drv).dev_groups = groups;
                }
                // SAFETY: `drv` is initialised and stays pinned until unregistered in `drop`.
                to_result(unsafe {
                    bindings::__pci_register_driver(drv, module.as_ptr(), name.as_char_ptr())
                })
            }),
            _p: PhantomData,
        })
    }
}

impl<T: Driver> Registration<T> {
    /// Fills in the attribute fields of the registration at `this` if the driver has an
    /// attribute, and returns the value of `dev_groups`: the group list, or NULL.
    ///
    /// # Safety
    ///
    /// `this` must point to a registration whose attribute fields are writable and stay pinned
    /// as long as the driver is registered.
    unsafe fn init_attribute(this: *mut Self) -> *mut *const bindings::attribute_group {
        let Some(name) = T::ATTRIBUTE else {
            return core::ptr::null_mut();
        };
        if !Adapter::<T>::HAS_ATTRIBUTE {
            return core::ptr::null_mut();
        }
        // SAFETY: The caller guarantees the fields are valid for writes and pinned; they live
        // in the registration, so in the module's static data, as lockdep requires of the
        // attribute's key.
        unsafe {
            let attr = Opaque::cast_into(&raw const (*this).attr);
            let attrs = Opaque::cast_into(&raw const (*this).attrs);
            let group = Opaque::cast_into(&raw const (*this).group);
            let groups = Opaque::cast_into(&raw const (*this).groups);
            attr.write(bindings::device_attribute::default());
            (*attr).attr.name = name.as_char_ptr();
            (*attr).attr.mode = 0o444;
            (*attr).__bindgen_anon_1.show = Some(Adapter::<T>::attribute_show_callback);
            attrs.write([&raw mut (*attr).attr, core::ptr::null_mut()]);
            group.write(bindings::attribute_group::default());
            (*group).__bindgen_anon_2.attrs = attrs.cast();
            groups.write([group.cast_const(), core::ptr::null()]);
            groups.cast::<*const bindings::attribute_group>()
        }
    }
}

#[pinned_drop]
impl<T: Driver> PinnedDrop for Registration<T> {
    fn drop(self: Pin<&mut Self>) {
        // SAFETY: By the type invariants `drv` is registered.
        unsafe { bindings::pci_unregister_driver(self.drv.get()) };
    }
}

/// Declares a kernel module that registers one vfio-pci variant driver.
///
/// The module's name is the driver's name, as for C variant drivers (`KBUILD_MODNAME`).
///
/// # Examples
///
/// ```ignore
/// kernel::module_vfio_pci_driver! {
///     type: MyVariant,
///     name: "my_vfio_pci",
///     authors: ["Author name"],
///     description: "Description",
///     license: "GPL",
/// }
/// ```
#[macro_export]
macro_rules! module_vfio_pci_driver {
    (type: $type:ty, $($f:tt)*) => {
        #[$crate::prelude::pin_data]
        struct VfioPciDriverModule {
            #[pin]
            _driver: $crate::vfio::pci::Registration<$type>,
        }

        impl $crate::InPlaceModule for VfioPciDriverModule {
            fn init(
                module: &'static $crate::ThisModule,
            ) -> impl ::pin_init::PinInit<Self, $crate::error::Error> {
                $crate::try_pin_init!(Self {
                    _driver <- $crate::vfio::pci::Registration::new(
                        <Self as $crate::ModuleMetadata>::NAME,
                        module,
                    ),
                })
            }
        }

        $crate::prelude::module! {
            type: VfioPciDriverModule,
            $($f)*
        }
    };
}
