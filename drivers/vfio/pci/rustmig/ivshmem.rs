// SPDX-License-Identifier: GPL-2.0

//! The backend of QEMU's ivshmem-plain (1af4:1110).
//!
//! The device's state is its shared memory, BAR2, and its two writable registers in BAR0
//! (interrupt mask and status). ivshmem-plain has no doorbell peers and never does DMA, so it
//! has nothing to quiesce: it stops changing once the user can no longer reach its BARs.

use crate::backend::{
    Backend,
    BarLens,
    Bars,
    Dma,
    Held, //
};
use crate::stream::{
    Layout,
    Section, //
};
use kernel::prelude::*;

/// The register BAR.
const REG_BAR: u32 = 0;
/// The shared memory BAR.
const MEM_BAR: u32 = 2;
/// BAR0: the interrupt mask register.
const INTR_MASK: u64 = 0;
/// BAR0: the interrupt status register (reading it clears it).
const INTR_STATUS: u64 = 4;

/// The section of the registers: mask, then status, both u32 LE.
const TAG_REGS: u32 = 1;
/// The section of the shared memory.
const TAG_MEM: u32 = 2;
/// The length of the register section.
const REGS_LEN: usize = 8;

/// The ivshmem-plain backend.
pub(crate) struct Ivshmem;

impl Backend for Ivshmem {
    fn name(&self) -> &'static str {
        "ivshmem"
    }

    fn version(&self) -> (u16, u16) {
        (1, 0)
    }

    /// ivshmem-plain has no DMA engine: its memory is its own BAR2, which only CPUs write.
    fn dma(&self) -> Dma {
        Dma::Never
    }

    /// The shared memory changes only by the user's writes (and by other peers of the same
    /// memory, which the driver cannot see: see the driver's documentation). The driver moves
    /// it: [`Backend::save`] and [`Backend::load`] only see the registers.
    fn live_section(&self) -> Option<(u32, u32)> {
        Some((TAG_MEM, MEM_BAR))
    }

    fn layout(&self, bars: &BarLens) -> Result<Layout> {
        let (regs, mem) = (bars[REG_BAR as usize], bars[MEM_BAR as usize]);
        if regs < 16 || mem == 0 {
            return Err(ENODEV);
        }
        Layout::new(&[
            Section {
                tag: TAG_REGS,
                len: REGS_LEN as u64,
            },
            Section {
                tag: TAG_MEM,
                len: mem,
            },
        ])
    }

    fn save(&self, bars: &Bars<'_>, _held: &Held, tag: u32, offset: u64, buf: &mut [u8]) -> Result {
        match tag {
            TAG_REGS if offset == 0 && buf.len() == REGS_LEN => {
                let mask = bars.read32(REG_BAR, INTR_MASK)?;
                let status = bars.read32(REG_BAR, INTR_STATUS)?;
                // The read cleared the status: put it back, the device must not change.
                bars.write32(REG_BAR, INTR_STATUS, status)?;
                buf[..4].copy_from_slice(&mask.to_le_bytes());
                buf[4..].copy_from_slice(&status.to_le_bytes());
                Ok(())
            }
            _ => Err(EINVAL),
        }
    }

    fn load(&self, bars: &Bars<'_>, _held: &Held, tag: u32, offset: u64, buf: &[u8]) -> Result {
        match tag {
            TAG_REGS if offset == 0 && buf.len() == REGS_LEN => {
                let mask = u32::from_le_bytes([buf[0], buf[1], buf[2], buf[3]]);
                let status = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
                bars.write32(REG_BAR, INTR_MASK, mask)?;
                bars.write32(REG_BAR, INTR_STATUS, status)
            }
            _ => Err(EINVAL),
        }
    }
}
