// SPDX-License-Identifier: GPL-2.0

//! rustmig: a live-migratable vfio-pci variant driver.
//!
//! rustmig binds, through `driver_override`, to PCI devices for which it has a device backend and
//! hands them to userspace through `vfio_pci_core`, exactly like `vfio-pci`. Each supported device
//! is one backend; the generic part of the driver does not know which device it drives.

use kernel::{
    device::Core,
    pci,
    prelude::*,
    vfio::pci::{
        self as vfio_pci,
        DeviceId, //
    }, //
};

/// The device backends, one per supported device.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Backend {
    /// QEMU's ivshmem-plain: the state is the shared memory behind BAR2.
    Ivshmem,
    /// QEMU's edu: the state is a set of registers behind BAR0.
    Edu,
}

impl Backend {
    /// Returns the backend's name.
    fn name(self) -> &'static str {
        match self {
            Backend::Ivshmem => "ivshmem",
            Backend::Edu => "edu",
        }
    }
}

kernel::vfio_pci_device_table!(
    PCI_TABLE,
    Backend,
    [
        (DeviceId::new(0x1af4, 0x1110), Backend::Ivshmem),
        (DeviceId::new(0x1234, 0x11e8), Backend::Edu),
    ]
);

/// The rustmig variant driver.
struct RustMig;

/// The driver's data of one bound device.
struct RustMigDevice {
    /// The backend that drives this device.
    backend: Backend,
}

#[vtable]
impl vfio_pci::Driver for RustMig {
    type IdInfo = Backend;
    type Data = RustMigDevice;
    const NAME: &'static CStr = c"rustmig-vfio-pci";
    const ID_TABLE: vfio_pci::IdTable<Backend> = &PCI_TABLE;

    fn probe(
        pdev: &pci::Device<Core<'_>>,
        id_info: Option<&'static Backend>,
    ) -> impl PinInit<RustMigDevice, Error> {
        match id_info {
            Some(&backend) => {
                dev_info!(
                    pdev,
                    "{}:{:04x} uses the {} backend\n",
                    pdev.vendor_id(),
                    pdev.device_id(),
                    backend.name()
                );
                Ok(RustMigDevice { backend })
            }
            None => {
                dev_err!(
                    pdev,
                    "no rustmig backend for {}:{:04x}\n",
                    pdev.vendor_id(),
                    pdev.device_id()
                );
                Err(ENODEV)
            }
        }
    }

    fn close_device(dev: &vfio_pci::Device<Self>) {
        dev_dbg!(dev, "{} device closed\n", dev.data().backend.name());
    }
}

kernel::module_vfio_pci_driver! {
    type: RustMig,
    name: "rustmig_vfio_pci",
    authors: ["The rustmig developers"],
    description: "Live-migratable vfio-pci variant driver",
    license: "GPL",
}
