// SPDX-License-Identifier: GPL-2.0

//! vfio-pci variant drivers.
//!
//! A variant driver binds to a PCI device only through `driver_override` (as management tools
//! bind vfio-pci), registers it with `vfio_pci_core` and may extend it, e.g. with live migration.
//! Everything a driver does not override behaves exactly like `vfio-pci`.
//!
//! The generic [`pci::Driver`](crate::pci::Driver) adapter cannot be used for this: it owns the
//! device's driver data, while `vfio_pci_core` requires the driver data to be the
//! `vfio_pci_core_device`. [`Adapter`] is the driver core's adapter for variant drivers instead
//! ([`driver::RegistrationOps`](crate::driver::RegistrationOps), registered by
//! [`module_vfio_pci_driver!`](crate::module_vfio_pci_driver) through the driver core's
//! [`module_driver!`](crate::module_driver)): its `pci_driver` follows the C variant drivers, with
//! an override-only id table, `driver_managed_dma`, the `vfio_pci_core` AER handlers and
//! `reset_done` routed to the driver.
//!
//! C header: [`include/linux/vfio_pci_core.h`](srctree/include/linux/vfio_pci_core.h)

mod adapter;
mod attribute;
mod bar;
mod device;
mod dirty;
mod driver;
mod registration;
mod track;

pub use adapter::Adapter;
pub use attribute::AttributeWriter;
pub use bar::{
    BarGuard,
    IoAccess,
    NUM_BARS, //
};
pub use device::Device;
pub use dirty::{
    DirtyBitmap,
    LogRanges, //
};
pub use driver::Driver;
pub use track::{
    written_pages,
    WriteTracker, //
};
