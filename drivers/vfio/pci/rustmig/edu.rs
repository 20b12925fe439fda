// SPDX-License-Identifier: GPL-2.0

//! The backend of QEMU's edu device (1234:11e8).
//!
//! The device's state is its register file in BAR0: the liveness register, the factorial
//! register, the status and interrupt status, and the DMA engine's registers. Stopping waits for
//! a factorial computation or a DMA transfer in flight to finish.
//!
//! The factorial register cannot be written directly: a write of `n` starts computing `n!`
//! (mod 2^32). Every value it holds after a computation is `k!` mod 2^32 for some `k` <= 34
//! (34! is a multiple of 2^32), so the value is restored by computing `k!` again.
//!
//! The DMA command register is saved but not restored: edu only accepts a write that starts a
//! transfer. Its direction and interrupt bits keep the destination's values.
//!
//! edu writes memory only by a transfer to memory, which a write of the command register with
//! the run and direction bits starts (unless one is running) and which lands about 100 ms
//! later. BAR0 is trapped, so the driver sees every such write and logs the destination range
//! for DMA dirty logging; [`Backend::dma_in_flight`] keeps it dirty until it lands.
//!
//! The interrupt status can only be set by raising an interrupt, which a stopped device must
//! not do: a load holds it ([`Held`]) and [`Backend::start`] raises it once the device runs.
//! The interrupt was already signalled on the source; the destination signals it once more,
//! as a device whose interrupt is pending would when its driver enables it.
//!
//! The device's 4 KiB DMA buffer is not in the saved state: edu gives no way to read it but a
//! transfer to memory, which would change the guest's memory.

use crate::backend::{
    ArcBars,
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
use core::ops::Range;
use kernel::{
    prelude::*,
    time::{
        delay::fsleep,
        Delta, //
    },
    vfio::pci::IoAccess, //
};

/// The register BAR.
const BAR: u32 = 0;
const LIVENESS: u64 = 0x04;
const FACTORIAL: u64 = 0x08;
const STATUS: u64 = 0x20;
const IRQ_STATUS: u64 = 0x24;
const IRQ_RAISE: u64 = 0x60;
const IRQ_ACK: u64 = 0x64;
const DMA_SRC: u64 = 0x80;
const DMA_DST: u64 = 0x88;
const DMA_COUNT: u64 = 0x90;
const DMA_CMD: u64 = 0x98;
/// STATUS: a factorial computation is running (read only).
const STATUS_COMPUTING: u32 = 0x01;
/// STATUS: raise an interrupt when a computation ends.
const STATUS_IRQ: u32 = 0x80;
/// DMA_CMD: a transfer is running.
const DMA_RUN: u64 = 0x01;
/// DMA_CMD: the transfer goes from the device's buffer to memory.
const DMA_TO_RAM: u64 = 0x02;
/// The bus addresses edu drives: it masks the memory address of a transfer to 28 bits (the
/// default of QEMU's `dma_mask` property).
const DMA_MASK: u64 = (1 << 28) - 1;

/// The register section: liveness, factorial, status, irq status (u32 each), then the DMA
/// source, destination, count and command (u64 each), little endian.
const TAG_REGS: u32 = 1;
/// The length of the register section.
const REGS_LEN: usize = 4 * 4 + 4 * 8;

/// The edu backend.
pub(crate) struct Edu;

/// Returns `k` such that `k!` mod 2^32 is `value`, if there is one.
fn factorial_arg(value: u32) -> Option<u32> {
    let mut f = 1u32;
    for k in 0..=34u32 {
        if k > 0 {
            f = f.wrapping_mul(k);
        }
        if f == value {
            return Some(k);
        }
    }
    None
}

/// Returns the memory range the programmed transfer writes, if it goes to memory.
fn dma_range(bars: &Bars<'_>) -> Result<Range<u64>> {
    let dst = bars.read64(BAR, DMA_DST)? & DMA_MASK;
    let count = bars.read64(BAR, DMA_COUNT)?;
    Ok(dst..dst.saturating_add(count))
}

/// Waits until the device is idle: no computation and no DMA in flight.
fn wait_idle(bars: &Bars<'_>) -> Result {
    for _ in 0..1000 {
        let computing = bars.read32(BAR, STATUS)? & STATUS_COMPUTING != 0;
        let dma = bars.read64(BAR, DMA_CMD)? & DMA_RUN != 0;
        if !computing && !dma {
            return Ok(());
        }
        fsleep(Delta::from_millis(1));
    }
    Err(EBUSY)
}

impl Backend for Edu {
    fn name(&self) -> &'static str {
        "edu"
    }

    fn version(&self) -> (u16, u16) {
        (1, 0)
    }

    fn dma(&self) -> Dma {
        Dma::Tracked
    }

    fn traps_bar(&self, bar: u32) -> bool {
        bar == BAR
    }

    fn bar_write(
        &self,
        bars: &Bars<'_>,
        bar: u32,
        offset: u64,
        data: &[u8],
    ) -> Result<Option<Range<u64>>> {
        let mut started = None;
        for a in IoAccess::split(offset, data) {
            // edu takes 4 and 8-byte accesses of the command register, and ignores a write
            // while a transfer runs: the source, destination and count stay as they are read
            // here until the transfer lands.
            if bar == BAR && a.offset() == DMA_CMD && a.size() >= 4 && a.value() & DMA_RUN != 0 {
                let idle = bars.read64(BAR, DMA_CMD)? & DMA_RUN == 0;
                if idle && a.value() & DMA_TO_RAM != 0 {
                    started = Some(dma_range(bars)?);
                }
            }
            bars.write_access(bar, &a)?;
        }
        Ok(started)
    }

    fn dma_in_flight(&self, bars: &Bars<'_>) -> Result<Option<Range<u64>>> {
        let cmd = bars.read64(BAR, DMA_CMD)?;
        if cmd & DMA_RUN != 0 && cmd & DMA_TO_RAM != 0 {
            return Ok(Some(dma_range(bars)?));
        }
        Ok(None)
    }

    fn layout(&self, bars: &BarLens) -> Result<Layout> {
        if bars[BAR as usize] < 0x100 {
            return Err(ENODEV);
        }
        Layout::new(&[Section {
            tag: TAG_REGS,
            len: REGS_LEN as u64,
        }])
    }

    fn stop(&self, bars: &ArcBars<'_>) -> Result {
        wait_idle(&bars.lock()?)
    }

    fn start(&self, bars: &ArcBars<'_>, held: &Held) -> Result {
        if held.get() == 0 {
            return Ok(());
        }
        let bars = bars.lock()?;
        // CAST: `Held` holds a 32-bit interrupt status.
        let irq = held.take() as u32;
        if irq != 0 {
            bars.write32(BAR, IRQ_RAISE, irq)?;
        }
        Ok(())
    }

    fn save(&self, bars: &Bars<'_>, held: &Held, tag: u32, offset: u64, buf: &mut [u8]) -> Result {
        if tag != TAG_REGS || offset != 0 || buf.len() != REGS_LEN {
            return Err(EINVAL);
        }
        let regs32 = [LIVENESS, FACTORIAL, STATUS, IRQ_STATUS];
        for (i, reg) in regs32.into_iter().enumerate() {
            let mut v = bars.read32(BAR, reg)?;
            if reg == IRQ_STATUS {
                // CAST: `Held` holds a 32-bit interrupt status.
                v |= held.get() as u32;
            }
            buf[i * 4..i * 4 + 4].copy_from_slice(&v.to_le_bytes());
        }
        let regs64 = [DMA_SRC, DMA_DST, DMA_COUNT, DMA_CMD];
        for (i, reg) in regs64.into_iter().enumerate() {
            let o = 16 + i * 8;
            buf[o..o + 8].copy_from_slice(&bars.read64(BAR, reg)?.to_le_bytes());
        }
        Ok(())
    }

    fn load(&self, bars: &Bars<'_>, held: &Held, tag: u32, offset: u64, buf: &[u8]) -> Result {
        if tag != TAG_REGS || offset != 0 || buf.len() != REGS_LEN {
            return Err(EINVAL);
        }
        let r32 = |i: usize| u32::from_le_bytes([buf[i], buf[i + 1], buf[i + 2], buf[i + 3]]);
        let r64 = |i: usize| u64::from(r32(i)) | (u64::from(r32(i + 4)) << 32);
        let (liveness, fact, status, irq) = (r32(0), r32(4), r32(8), r32(12));
        let k = factorial_arg(fact).ok_or(EINVAL)?;
        if r64(40) & DMA_RUN != 0 || status & STATUS_COMPUTING != 0 {
            // A saved device is idle.
            return Err(EINVAL);
        }
        // Recompute the factorial with its interrupt off.
        wait_idle(bars)?;
        bars.write32(BAR, STATUS, 0)?;
        bars.write32(BAR, FACTORIAL, k)?;
        wait_idle(bars)?;
        // The register reads back the complement of what is written.
        bars.write32(BAR, LIVENESS, !liveness)?;
        bars.write64(BAR, DMA_SRC, r64(16))?;
        bars.write64(BAR, DMA_DST, r64(24))?;
        bars.write64(BAR, DMA_COUNT, r64(32))?;
        bars.write32(BAR, STATUS, status & STATUS_IRQ)?;
        bars.write32(BAR, IRQ_ACK, u32::MAX)?;
        // Raised by `start`: a raise now would signal while the device is stopped.
        held.set(u64::from(irq));
        Ok(())
    }
}
