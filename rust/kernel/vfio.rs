// SPDX-License-Identifier: GPL-2.0

//! VFIO, the Virtual Function I/O framework.
//!
//! Abstractions for drivers that hand devices to userspace through VFIO: currently vfio-pci
//! variant drivers built on `vfio_pci_core`.
//!
//! C headers: [`include/linux/vfio.h`](srctree/include/linux/vfio.h),
//! [`include/linux/vfio_pci_core.h`](srctree/include/linux/vfio_pci_core.h) and
//! [`include/uapi/linux/vfio.h`](srctree/include/uapi/linux/vfio.h).

mod device;
pub mod file;
pub mod migration;
pub mod pci;

pub use device::Device;
