// SPDX-License-Identifier: GPL-2.0

//! The registration of a vfio-pci variant driver with the PCI core, and its module macro.

use super::{
    Adapter,
    Driver, //
};
use crate::{
    bindings,
    error::to_result,
    prelude::*,
    types::Opaque,
    ThisModule, //
};
use core::marker::PhantomData;

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
