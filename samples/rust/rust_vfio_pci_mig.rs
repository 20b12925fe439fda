// SPDX-License-Identifier: GPL-2.0

//! Rust vfio-pci variant driver sample with live migration.
//!
//! Binds, through `driver_override` only, to QEMU's edu device (1234:11e8) and implements the
//! whole VFIO migration v2 uAPI (STOP_COPY, P2P and PRE_COPY) with nothing but the safe
//! `kernel::vfio` abstractions: this file has no `unsafe`. The migrated state is a block of
//! emulated registers kept by the driver, so the device itself is never touched: the sample
//! shows what a driver writes (a saver, a loader), and that `kernel::vfio::migration` does the
//! rest (the state machine, its locking and resets, the data files).

use kernel::{
    device::{
        Bound,
        Core, //
    },
    fs::File,
    pci::{
        self,
        DeviceId,
        Vendor, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        new_mutex,
        Mutex, //
    },
    vfio::{
        migration::{
            self,
            Flags,
            Incoming,
            Migration,
            Part,
            Pending,
            Session,
            State,
            StateMachine, //
        },
        pci as vfio_pci, //
    }, //
};

/// The number of emulated registers.
const NREGS: usize = 64;
/// The stream: a magic, then the registers, little endian.
const MAGIC: [u8; 4] = *b"RVMS";
/// The length of the stream.
const STREAM_LEN: usize = MAGIC.len() + NREGS * 4;

kernel::pci_device_table!(
    PCI_TABLE,
    (),
    [(DeviceId::from_id_vfio_override(Vendor::QEMU, 0x11e8), ())]
);

/// The sample driver.
struct SampleDriver;

/// The driver data of a device.
#[pin_data]
struct SampleDevice {
    /// The emulated registers: the device state that migrates.
    #[pin]
    regs: Mutex<[u32; NREGS]>,
    /// The migration state machine.
    #[pin]
    machine: StateMachine<SampleDriver>,
}

/// The stream of a saving device: its registers when the session opened, and how much of it
/// was handed out.
struct Saved([u8; STREAM_LEN], usize);

impl migration::Saver<SampleDriver> for Saved {
    /// The registers do not change while the device runs: all of it is initial.
    fn pending(&self, _stop_copy: bool) -> Pending {
        Pending {
            // CAST: At most `STREAM_LEN`.
            initial: (STREAM_LEN - self.1) as u64,
            dirty: 0,
        }
    }

    fn produce(
        &mut self,
        _: &Session<SampleDriver>,
        _: bool,
        unit: &mut KVec<u8>,
    ) -> Result<Option<Part>> {
        if self.1 == STREAM_LEN {
            return Ok(None);
        }
        unit.extend_from_slice(&self.0[self.1..], GFP_KERNEL)?;
        self.1 = STREAM_LEN;
        Ok(Some(Part::Initial))
    }
}

/// The stream of a resuming device, loaded into its registers at the end.
struct Loading {
    dev: ARef<vfio_pci::Device<SampleDriver>>,
    buf: [u8; STREAM_LEN],
    len: usize,
}

impl migration::Loader<SampleDriver> for Loading {
    fn consume(&mut self, _s: &Session<SampleDriver>, src: &mut Incoming<'_>) -> Result<usize> {
        let dst = self
            .buf
            .get_mut(self.len..self.len + src.len())
            .ok_or(EINVAL)?;
        // Fewer bytes only if the writer's buffer faults: the write returns those.
        let n = src.read(dst);
        self.len += n;
        Ok(n)
    }

    fn finish(&mut self, _s: &Session<SampleDriver>, _written: u64) -> Result {
        if self.len != STREAM_LEN || self.buf[..MAGIC.len()] != MAGIC {
            return Err(EINVAL);
        }
        let mut regs = self.dev.data().regs.lock();
        for (i, reg) in regs.iter_mut().enumerate() {
            let at = MAGIC.len() + 4 * i;
            *reg = u32::from_le_bytes([
                self.buf[at],
                self.buf[at + 1],
                self.buf[at + 2],
                self.buf[at + 3],
            ]);
        }
        Ok(())
    }
}

#[vtable]
impl Migration for SampleDriver {
    type Device = vfio_pci::Device<Self>;
    type Saver = Saved;
    type Loader = Loading;
    const DATA_FILE_NAME: &'static CStr = c"rust_vfio_pci_mig";

    // An emulated device has nothing to quiesce, stop or start.

    fn save(dev: &Self::Device, _stop_copy: bool) -> Result<Saved> {
        let mut buf = [0u8; STREAM_LEN];
        buf[..MAGIC.len()].copy_from_slice(&MAGIC);
        let regs = dev.data().regs.lock();
        for (i, reg) in regs.iter().enumerate() {
            let at = MAGIC.len() + 4 * i;
            buf[at..at + 4].copy_from_slice(&reg.to_le_bytes());
        }
        Ok(Saved(buf, 0))
    }

    fn resume(dev: &Self::Device) -> Result<Loading> {
        Ok(Loading {
            dev: dev.into(),
            buf: [0; STREAM_LEN],
            len: 0,
        })
    }

    fn data_size(_dev: &Self::Device) -> Result<u64> {
        Ok(STREAM_LEN as u64)
    }
}

#[vtable]
impl vfio_pci::Driver for SampleDriver {
    type IdInfo = ();
    type Data = SampleDevice;
    const NAME: &'static CStr = c"rust-vfio-pci-mig";
    const ID_TABLE: pci::IdTable<()> = &PCI_TABLE;
    const MIGRATION_FLAGS: Flags = Flags::STOP_COPY.union(Flags::P2P).union(Flags::PRE_COPY);

    fn probe(
        pdev: &pci::Device<Core<'_>>,
        _id_info: Option<&'static ()>,
    ) -> impl PinInit<SampleDevice, Error> {
        let seed = u32::from(pdev.dev_id());
        dev_info!(pdev, "rust_vfio_pci_mig sample bound\n");
        try_pin_init!(SampleDevice {
            // CAST: `i` < `NREGS`.
            regs <- new_mutex!(core::array::from_fn(|i| {
                seed ^ (i as u32).wrapping_mul(0x9e37_79b9)
            })),
            machine <- StateMachine::new(),
        })
    }

    fn close_device(dev: &vfio_pci::Device<Self, Bound>) {
        dev.data().machine.close(dev);
    }

    fn reset_done(dev: &vfio_pci::Device<Self, Bound>) {
        dev.data().machine.reset_done(dev);
    }

    fn migration_set_state(
        dev: &vfio_pci::Device<Self, Bound>,
        new: State,
    ) -> Result<Option<ARef<File>>> {
        dev.data().machine.set_state(dev, new)
    }

    fn migration_get_state(dev: &vfio_pci::Device<Self, Bound>) -> Result<State> {
        Ok(dev.data().machine.state(dev))
    }

    fn migration_get_data_size(dev: &vfio_pci::Device<Self, Bound>) -> Result<usize> {
        dev.data().machine.data_size(dev)
    }
}

kernel::module_vfio_pci_driver! {
    type: SampleDriver,
    name: "rust_vfio_pci_mig",
    authors: ["The rustmig developers"],
    description: "Rust vfio-pci variant driver sample with live migration",
    license: "GPL",
}
