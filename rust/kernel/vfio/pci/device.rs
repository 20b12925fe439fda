// SPDX-License-Identifier: GPL-2.0

//! The device of a vfio-pci variant driver: a `vfio_pci_core_device` followed by the driver's data.

use super::{
    Adapter,
    Driver, //
};
use crate::{
    bindings,
    device,
    error::from_err_ptr,
    pci,
    prelude::*,
    sync::aref::{
        ARef,
        AlwaysRefCounted, //
    },
    types::Opaque, //
};
use core::{
    alloc::Layout,
    marker::PhantomData,
    mem::offset_of,
    ops::Deref,
    ptr::NonNull, //
};

/// A device of a vfio-pci variant driver: a `vfio_pci_core_device` followed by the driver's data.
///
/// As [`pci::Device`], it comes in the [`device::DeviceContext`] of its use: the driver's
/// callbacks get a `&Device<T, Bound>`, while an object that outlives a callback, such as a
/// migration data file, holds an [`ARef<Device<T>>`] (made with `dev.into()`), which keeps the
/// device's memory and its driver data alive but not the binding: the PCI device it gives is no
/// longer bound, and its BAR access fails with [`ENODEV`] once the device is closed.
///
/// # Invariants
///
/// - `core` is at offset 0 and is a `vfio_pci_core_device` initialised by `_vfio_alloc_device`
///   with [`Adapter::VFIO_OPS`] as its ops, so `vfio_device`, at offset 0 of the core device, is
///   also the address of `Self`.
/// - `bars` and `data` are initialised, pinned, and dropped only by the `release` callback of
///   the vfio device, when its last reference goes.
/// - A `Device<T, Ctx>` is only handed out in a context `Ctx` that holds: `Bound` while the
///   driver is bound to the PCI device.
#[repr(C)]
pub struct Device<T: Driver, Ctx: device::DeviceContext = device::Normal> {
    pub(super) core: Opaque<bindings::vfio_pci_core_device>,
    pub(super) bars: super::bar::BarGate,
    pub(super) data: T::Data,
    _ctx: PhantomData<Ctx>,
}

// SAFETY: The C parts of the device are protected by the vfio core's own locking, `Device` only
// gives shared access to `data`, which is `Send + Sync`, and its last reference may be dropped on
// any thread.
unsafe impl<T: Driver> Send for Device<T> {}
// SAFETY: See the `Send` implementation.
unsafe impl<T: Driver> Sync for Device<T> {}
// SAFETY: As for `Device<T>`: a bound device is the same object, borrowed while bound.
unsafe impl<T: Driver> Send for Device<T, device::Bound> {}
// SAFETY: See the `Send` implementation.
unsafe impl<T: Driver> Sync for Device<T, device::Bound> {}

impl<T: Driver> Deref for Device<T, device::Bound> {
    type Target = Device<T>;

    fn deref(&self) -> &Device<T> {
        // CAST: The context is a marker of zero size: both types have the same layout.
        let ptr = core::ptr::from_ref(self).cast::<Device<T>>();
        // SAFETY: `ptr` was derived from `self`; a bound device is also a device.
        unsafe { &*ptr }
    }
}

impl<T: Driver> From<&Device<T, device::Bound>> for ARef<Device<T>> {
    fn from(dev: &Device<T, device::Bound>) -> Self {
        ARef::from(&**dev)
    }
}

// SAFETY: A `Device` lives in the `vfio_device` allocation, which its reference count frees.
// A reference holds one on the `vfio_device` and one on the PCI device: the vfio device drops
// its own reference on the PCI device, its parent, when it is unregistered, so the PCI device
// that `Device::as_ref` gives must be held separately.
unsafe impl<T: Driver> AlwaysRefCounted for Device<T> {
    fn inc_ref(&self) {
        // SAFETY: The existence of `&self` guarantees both reference counts are non-zero.
        unsafe {
            bindings::get_device(&raw mut (*self.as_vfio_raw()).device);
            bindings::get_device(&raw mut (*(*self.as_raw()).pdev).dev);
        }
    }

    unsafe fn dec_ref(obj: NonNull<Self>) {
        // SAFETY: The caller gives up a reference taken by `inc_ref`, so both devices are alive;
        // the PCI device's is dropped while the vfio device still points to it. The last vfio
        // reference releases the device through `Adapter::release_callback`.
        unsafe {
            let this = obj.as_ref();
            bindings::put_device(&raw mut (*(*this.as_raw()).pdev).dev);
            bindings::vfio_put_device(this.as_vfio_raw());
        }
    }
}

impl<T: Driver> Device<T, device::Bound> {
    /// Returns the PCI device this vfio device drives.
    pub fn pci_dev(&self) -> &pci::Device<device::Bound> {
        // SAFETY: By the type invariants, `core` was initialised by `vfio_pci_core_init_dev`,
        // which set `pdev` to the probed device, and the driver is bound to it while a
        // `&Device<T, Bound>` exists. `pci::Device` is a transparent wrapper of `struct pci_dev`.
        unsafe { &*(*self.core.get()).pdev.cast() }
    }

    /// Borrows the device that embeds the given `vfio_device`.
    ///
    /// # Safety
    ///
    /// `vdev` must be the `vfio_device` of a live `Device<T>` whose `data` is initialised, its
    /// driver must be bound (e.g. the device is open), and the returned reference must not
    /// outlive either.
    pub(super) unsafe fn from_vfio_raw<'a>(vdev: *mut bindings::vfio_device) -> &'a Self {
        const_assert!(offset_of!(bindings::vfio_pci_core_device, vdev) == 0);
        // SAFETY: By the type invariants the `vfio_device` is at offset 0 of `Self`, and the
        // caller guarantees `Self` is live and bound.
        unsafe { &*vdev.cast::<Self>() }
    }

    /// Borrows the device that is the driver data of a PCI device bound to `T`.
    ///
    /// # Safety
    ///
    /// `pdev` must be bound to the variant driver `T` (probe succeeded, remove not finished).
    pub(super) unsafe fn from_pci_raw<'a>(pdev: *mut bindings::pci_dev) -> &'a Self {
        // SAFETY: `pdev` is valid, and its driver data is the `vfio_pci_core_device` that
        // `Adapter::probe_callback` set, the first field of a `Device<T>`.
        unsafe { &*bindings::dev_get_drvdata(&raw mut (*pdev).dev).cast::<Self>() }
    }
}

impl<T: Driver, Ctx: device::DeviceContext> Device<T, Ctx> {
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

    /// Returns the raw `struct vfio_pci_core_device`.
    pub(super) fn as_raw(&self) -> *mut bindings::vfio_pci_core_device {
        self.core.get()
    }

    /// Returns the raw `struct vfio_device`.
    pub(super) fn as_vfio_raw(&self) -> *mut bindings::vfio_device {
        // SAFETY: `core` points to a valid `vfio_pci_core_device`.
        unsafe { &raw mut (*self.as_raw()).vdev }
    }

    /// Allocates the vfio device of `pdev` and initialises the driver's data in place.
    pub(super) fn new(
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
            match pin_init::raw_try_init(&raw mut (*this).bars, super::bar::BarGate::new()) {
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

impl<T: Driver, Ctx: device::DeviceContext> AsRef<device::Device<Ctx>> for Device<T, Ctx> {
    /// The PCI device's `struct device`, in the context of `self`.
    fn as_ref(&self) -> &device::Device<Ctx> {
        // SAFETY: By the type invariants `pdev` is the probed PCI device, alive as long as
        // `self` (a callback's borrow or a counted reference, which holds a reference on it), and
        // `Ctx` holds for it.
        unsafe { device::Device::from_raw(&raw mut (*(*self.as_raw()).pdev).dev) }
    }
}

impl<T: Driver, Ctx: device::DeviceContext> AsRef<crate::vfio::Device> for Device<T, Ctx> {
    fn as_ref(&self) -> &crate::vfio::Device {
        // SAFETY: By the type invariants the `vfio_device` is initialised, and lives as long as
        // `self`; its migration ops and flags are set before it is registered.
        unsafe { crate::vfio::Device::from_raw(self.as_vfio_raw()) }
    }
}
