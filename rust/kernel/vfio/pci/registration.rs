// SPDX-License-Identifier: GPL-2.0

//! The registration of a vfio-pci variant driver with the PCI core, through the driver core's
//! [`driver::Registration`], and its module macro.

use super::{
    Adapter,
    Driver, //
};
use crate::{
    bindings,
    driver,
    error::to_result,
    prelude::*,
    types::Opaque,
    ThisModule, //
};
use core::mem::offset_of;

// SAFETY: `pci_driver` is a `repr(C)` bindgen struct embedding its `struct device_driver` at
// `driver`. The bus device private data of a device bound to a variant driver is not the Rust
// driver's but `vfio_pci_core`'s (the `vfio_pci_core_device`): `DriverData` is `()`, and the
// adapter's probe and remove leave it NULL on every way out, so the driver core finds none to
// take back after unbind.
unsafe impl<T: Driver> driver::DriverLayout for Adapter<T> {
    type DriverType = bindings::pci_driver;
    type DriverData<'bound> = ();
    const DEVICE_DRIVER_OFFSET: usize = offset_of!(bindings::pci_driver, driver);
}

// SAFETY: `unregister` undoes a successful `register` of the same `pci_driver`.
unsafe impl<T: Driver> driver::RegistrationOps for Adapter<T> {
    unsafe fn register(
        pdrv: &Opaque<bindings::pci_driver>,
        name: &'static CStr,
        module: &'static ThisModule,
    ) -> Result {
        // SAFETY: An id table ends with a zeroed entry.
        if let Some((vendor, device)) = unsafe { first_auto_id(T::ID_TABLE.as_ptr()) } {
            pr_err!(
                "{}: id {vendor:04x}:{device:04x} is not override-only: a vfio-pci variant \
                 driver binds only through driver_override\n",
                name.to_str().unwrap_or("?")
            );
            return Err(EINVAL);
        }
        let groups = Attribute::<T>::alloc()?;
        let drv = pdrv.get();
        // SAFETY: The fields of a `pci_driver` being registered may be set; `drv` is valid and,
        // by the caller's guarantee, pinned until `unregister`. A vfio-pci variant driver
        // manages the DMA of its devices (through the vfio core) and takes the AER handlers
        // of `vfio_pci_core`, with its own `reset_done` if it has one.
        unsafe {
            (*drv).name = name.as_char_ptr();
            (*drv).id_table = T::ID_TABLE.as_ptr();
            (*drv).probe = Some(Self::probe_callback);
            (*drv).remove = Some(Self::remove_callback);
            (*drv).err_handler = if T::HAS_RESET_DONE {
                const { &Self::ERR_HANDLERS }
            } else {
                &raw const bindings::vfio_pci_core_err_handlers
            };
            (*drv).driver_managed_dma = true;
            (*drv).dev_groups = groups;
        }
        // SAFETY: `drv` is a valid `pci_driver`, pinned until `unregister`.
        let ret = to_result(unsafe {
            bindings::__pci_register_driver(drv, module.as_ptr(), name.as_char_ptr())
        });
        if ret.is_err() {
            // SAFETY: `groups` is what `Attribute::alloc` returned, and no device has it.
            unsafe { Attribute::<T>::free(groups) };
        }
        ret
    }

    unsafe fn unregister(pdrv: &Opaque<bindings::pci_driver>) {
        let drv = pdrv.get();
        // SAFETY: By the safety requirements `drv` is registered; unregistering unbinds every
        // device, which removes the attribute from each.
        unsafe { bindings::pci_unregister_driver(drv) };
        // SAFETY: `dev_groups` is what `Attribute::alloc` returned in `register`, and no device
        // has the attribute any more.
        unsafe { Attribute::<T>::free((*drv).dev_groups) };
    }
}

/// Returns the vendor and device of the first id of `ids` that is not override-only, if any.
///
/// # Safety
///
/// `ids` must point to an id table ending, as the PCI core expects, with an entry whose
/// `vendor`, `subvendor` and `class_mask` are zero.
unsafe fn first_auto_id(mut ids: *const bindings::pci_device_id) -> Option<(u32, u32)> {
    loop {
        // SAFETY: `ids` is in the table: the loop stops at its last entry.
        let id = unsafe { &*ids };
        if id.vendor == 0 && id.subvendor == 0 && id.class_mask == 0 {
            return None;
        }
        // SAFETY: `pci::DeviceId` is a transparent wrapper of `pci_device_id` (its
        // `RawDeviceId` implementation guarantees it) and `id` is a valid entry.
        let typed = unsafe { &*core::ptr::from_ref(id).cast::<crate::pci::DeviceId>() };
        if !typed.is_override_only() {
            return Some((id.vendor, id.device));
        }
        // SAFETY: `id` is not the last entry.
        ids = unsafe { ids.add(1) };
    }
}

/// The sysfs attribute of a driver with [`Driver::ATTRIBUTE`]: one read-only attribute in one
/// group, and the NULL-terminated lists that `pci_driver::dev_groups` points to.
#[repr(C)]
struct Attribute<T: Driver> {
    groups: [*const bindings::attribute_group; 2],
    group: bindings::attribute_group,
    attrs: [*mut bindings::attribute; 2],
    attr: bindings::device_attribute,
    _p: core::marker::PhantomData<T>,
}

impl<T: Driver> Attribute<T> {
    /// Allocates the attribute of `T` and returns the value of `dev_groups`: its group list, or
    /// NULL if `T` has no attribute.
    fn alloc() -> Result<*mut *const bindings::attribute_group> {
        let Some(name) = T::ATTRIBUTE else {
            return Ok(core::ptr::null_mut());
        };
        if !Adapter::<T>::HAS_ATTRIBUTE {
            return Ok(core::ptr::null_mut());
        }
        let this = KBox::new(
            Self {
                groups: [core::ptr::null(); 2],
                group: bindings::attribute_group::default(),
                attrs: [core::ptr::null_mut(); 2],
                attr: bindings::device_attribute::default(),
                _p: core::marker::PhantomData,
            },
            GFP_KERNEL,
        )?;
        let this = KBox::into_raw(this);
        // SAFETY: `this` is a valid, exclusive allocation that stays in place until `free`. An
        // attribute that is not static needs a static lockdep key, as `sysfs_attr_init()` gives
        // it in C.
        unsafe {
            (*this).attr.attr.name = name.as_char_ptr();
            (*this).attr.attr.mode = 0o444;
            #[cfg(CONFIG_DEBUG_LOCK_ALLOC)]
            {
                (*this).attr.attr.key = crate::static_lock_class!().as_ptr();
            }
            (*this).attr.__bindgen_anon_1.show = Some(Adapter::<T>::attribute_show_callback);
            (*this).attrs[0] = &raw mut (*this).attr.attr;
            (*this).group.__bindgen_anon_2.attrs = (&raw mut (*this).attrs).cast();
            (*this).groups[0] = &raw const (*this).group;
        }
        // The group list is the first field (`repr(C)`): `free` takes the allocation back from
        // it.
        Ok(this.cast())
    }

    /// Frees what [`Attribute::alloc`] returned.
    ///
    /// # Safety
    ///
    /// `groups` must come from [`Attribute::alloc`] for the same `T` and not be freed yet, and no
    /// device may have the attribute any more.
    unsafe fn free(groups: *mut *const bindings::attribute_group) {
        if !groups.is_null() {
            // SAFETY: `groups` is the first field of a boxed `Attribute<T>` (`repr(C)`), by the
            // safety requirements not freed yet and no longer used by sysfs.
            drop(unsafe { KBox::from_raw(groups.cast::<Self>()) });
        }
    }
}

/// Declares a kernel module that registers one vfio-pci variant driver.
///
/// The module's name is the driver's name, as for C variant drivers (`KBUILD_MODNAME`). The driver
/// is registered through the driver core's [`driver::Registration`], as [`module_pci_driver!`]
/// registers a PCI driver.
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
///
/// [`module_pci_driver!`]: crate::module_pci_driver
#[macro_export]
macro_rules! module_vfio_pci_driver {
    ($($f:tt)*) => {
        $crate::module_driver!(<T>, $crate::vfio::pci::Adapter<T>, { $($f)* });
    };
}

#[macros::kunit_tests(vfio_pci_ids)]
mod tests {
    use super::*;
    use crate::pci::{
        DeviceId,
        Vendor, //
    };

    /// Returns the raw id of `id`.
    fn raw(id: DeviceId) -> bindings::pci_device_id {
        // SAFETY: `DeviceId` is a transparent wrapper of `pci_device_id`.
        unsafe { core::mem::transmute::<DeviceId, bindings::pci_device_id>(id) }
    }

    #[test]
    fn only_override_only_tables_are_accepted() {
        let ivshmem = DeviceId::from_id_vfio_override(Vendor::REDHAT_QUMRANET, 0x1110);
        let edu = DeviceId::from_id_vfio_override(Vendor::QEMU, 0x11e8);
        assert!(ivshmem.is_override_only() && edu.is_override_only());
        let end = bindings::pci_device_id::default();
        let good = [raw(ivshmem), raw(edu), end];
        // SAFETY: The table ends with a zeroed entry.
        assert_eq!(unsafe { first_auto_id(good.as_ptr()) }, None);

        let auto = DeviceId::from_id(Vendor::QEMU, 0x11e9);
        assert!(!auto.is_override_only());
        let bad = [raw(ivshmem), raw(auto), raw(edu), end];
        // SAFETY: As above.
        let first = unsafe { first_auto_id(bad.as_ptr()) };
        assert_eq!(first, Some((0x1234, 0x11e9)));
        // SAFETY: As above.
        assert_eq!(unsafe { first_auto_id([end].as_ptr()) }, None);
    }
}
