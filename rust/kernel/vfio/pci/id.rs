// SPDX-License-Identifier: GPL-2.0

//! Device ids of vfio-pci variant drivers: override-only entries of `struct pci_device_id`.

use crate::{
    bindings,
    device_id::{
        RawDeviceId,
        RawDeviceIdIndex, //
    }, //
};
use core::mem::offset_of;

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
