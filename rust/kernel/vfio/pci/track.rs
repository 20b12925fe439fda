// SPDX-License-Identifier: GPL-2.0

//! Tracking the user's writes to a memory BAR, for a driver that reads the BAR while the device
//! runs (pre-copy) and must then send again what changed.
//!
//! [`Device::track_writes`] starts tracking a BAR: from then on every page the user writes is
//! marked, whether the write goes through an mmap of the BAR (a process's own stores, QEMU's
//! TCG, or KVM, which maps the pages of a `VM_PFNMAP` VMA by faulting them in and drops them on
//! the MMU notifiers a zap triggers) or through a `write()` of the BAR region on the device fd.
//! [`WriteTracker::take`] hands the marked pages over and write-protects the BAR again, so that
//! the next write to any page is seen: a page read after a `take` and written while it is read
//! is marked again, and never lost.
//!
//! The mechanism is the one of the kernel's write notifications. The VMA ops of a BAR mmap have
//! `pfn_mkwrite`, so a writable mapping maps pages read-only until they are written; a write
//! fault while the BAR is tracked marks its page before the page is mapped writable. A `take`
//! swaps the marks out and zaps the BAR's mappings under `memory_lock` held for writing, which
//! the fault handlers hold for reading: a page is either marked in the swapped-out set and
//! unmapped, or marked in the new one.
//!
//! What is not seen: writes that do not come through the device fd's mappings or region
//! writes, such as the device's own DMA or, for memory shared with other agents (ivshmem's
//! peers), the other agents' writes. While a BAR is tracked it is mapped a page at a time,
//! and the first write to each page after a `take` costs a fault.

use super::{
    Device,
    Driver,
    NUM_BARS, //
};
use crate::{
    bindings,
    bitmap::{
        Bitmap,
        BitmapVec, //
    },
    prelude::*,
    sync::{
        aref::ARef,
        atomic::{
            Acquire,
            Relaxed,
            Release, //
        },
    }, //
};

/// The pages of a tracked BAR written since they were last taken.
pub(super) struct Written {
    bar: u32,
    generation: u64,
    pages: BitmapVec,
}

impl Written {
    /// Returns the BAR tracked.
    pub(super) fn bar(&self) -> u32 {
        self.bar
    }

    /// Returns the generation of the tracking.
    pub(super) fn generation(&self) -> u64 {
        self.generation
    }

    /// Marks `count` pages written from `first`, those inside the BAR.
    pub(super) fn mark(&self, first: usize, count: usize) {
        let end = first.saturating_add(count).min(self.pages.len());
        for page in first..end {
            self.pages.set_bit_atomic(page);
        }
    }
}

/// The tracking of the user's writes to a BAR, from [`Device::track_writes`]; dropping it stops
/// the tracking.
pub struct WriteTracker<T: Driver> {
    dev: ARef<Device<T>>,
    bar: u32,
    generation: u64,
    pages: usize,
}

impl<T: Driver> Device<T> {
    /// Starts tracking the user's writes to memory BAR `bar`, replacing a tracking in place.
    ///
    /// No page counts as written at first: the caller reads the BAR once after this call, and
    /// what is written from then on is marked. Fails with [`ENODEV`] if the device is not open or
    /// `bar` is not a memory BAR the user may map, and [`ENOMEM`].
    pub fn track_writes(&self, bar: u32) -> Result<WriteTracker<T>> {
        let len = self.bar_len(bar);
        if len == 0 || !T::FENCES_BARS {
            return Err(ENODEV);
        }
        let pages = usize::try_from(len.div_ceil(1 << bindings::PAGE_SHIFT)).map_err(|_| ENODEV)?;
        let bitmap = BitmapVec::new(pages, GFP_KERNEL)?;
        let core = self.as_raw();
        // SAFETY: `core` is a valid core device whose `memory_lock` is initialised.
        unsafe { bindings::down_write(&raw mut (*core).memory_lock) };
        let res = if !self.bars.open.load(Relaxed) {
            Err(ENODEV)
        } else {
            let generation = self.bars.generation.load(Relaxed) + 1;
            self.bars.generation.store(generation, Relaxed);
            // SAFETY: `memory_lock` is held for writing.
            let old = unsafe {
                (*self.bars.written.get()).replace(Written {
                    bar,
                    generation,
                    pages: bitmap,
                })
            };
            drop(old);
            self.bars.active.store(generation, Release);
            // SAFETY: `memory_lock` is held for writing; the device is open.
            unsafe { self.zap_bar(bar) };
            Ok(generation)
        };
        // SAFETY: Taken above.
        unsafe { bindings::up_write(&raw mut (*core).memory_lock) };
        Ok(WriteTracker {
            dev: self.into(),
            bar,
            generation: res?,
            pages,
        })
    }

    /// Unmaps every user mapping of BAR `bar`, so that the next access to it faults.
    ///
    /// # Safety
    ///
    /// `memory_lock` is held for writing, and `bar` < [`NUM_BARS`].
    unsafe fn zap_bar(&self, bar: u32) {
        let start = i64::from(bar) << bindings::VFIO_PCI_OFFSET_SHIFT;
        // CAST: A BAR's length is below the region size, `1 << VFIO_PCI_OFFSET_SHIFT`.
        let len = self.bar_len(bar) as i64;
        // SAFETY: `inode` is the device's inode, alive as long as the device; unmapping a range
        // of its mapping is always allowed.
        unsafe {
            bindings::unmap_mapping_range((*(*self.as_raw()).vdev.inode).i_mapping, start, len, 1)
        };
    }
}

impl<T: Driver> WriteTracker<T> {
    /// Returns the number of pages of the BAR, the length of the bitmaps of [`WriteTracker::take`].
    pub fn pages(&self) -> usize {
        self.pages
    }

    /// Returns the BAR tracked.
    pub fn bar(&self) -> u32 {
        self.bar
    }

    /// Moves the marks of the pages written since the last call (or since the tracking started)
    /// into `into`, which is cleared first, and write-protects the BAR again.
    ///
    /// Fails with [`EINVAL`] if `into` does not have [`WriteTracker::pages`] bits, and with
    /// [`ENODEV`] once the tracking stopped (the device was closed, or another tracking
    /// replaced this one).
    pub fn take(&self, into: &mut BitmapVec) -> Result {
        if into.len() != self.pages {
            return Err(EINVAL);
        }
        clear(into);
        let core = self.dev.as_raw();
        // SAFETY: `core` is a valid core device whose `memory_lock` is initialised.
        unsafe { bindings::down_write(&raw mut (*core).memory_lock) };
        // SAFETY: `memory_lock` is held for writing.
        let res = match unsafe { (*self.dev.bars.written.get()).as_mut() } {
            Some(w) if self.is_active(w) => {
                core::mem::swap(&mut w.pages, into);
                // SAFETY: `memory_lock` is held for writing; the tracking exists, so the device
                // is open; `bar` has a length, so it is below `NUM_BARS`.
                unsafe { self.dev.zap_bar(self.bar) };
                Ok(())
            }
            _ => Err(ENODEV),
        };
        // SAFETY: Taken above.
        unsafe { bindings::up_write(&raw mut (*core).memory_lock) };
        res
    }

    /// Returns the number of pages written since the last [`WriteTracker::take`] (0 once the
    /// tracking stopped).
    pub fn count(&self) -> usize {
        self.peek(count).unwrap_or(0)
    }

    /// Calls `f` with the marks of the pages written since the last [`WriteTracker::take`], as
    /// they are at that moment (writes go on marking pages), and returns its result; `None` once
    /// the tracking stopped. `f` runs under `memory_lock` held for reading: it must not fault on
    /// a BAR mapping or take the lock.
    pub fn peek<R>(&self, f: impl FnOnce(&Bitmap) -> R) -> Option<R> {
        let core = self.dev.as_raw();
        // SAFETY: `core` is a valid core device whose `memory_lock` is initialised.
        unsafe { bindings::down_read(&raw mut (*core).memory_lock) };
        // SAFETY: `memory_lock` is held for reading.
        let r = match unsafe { (*self.dev.bars.written.get()).as_ref() } {
            Some(w) if self.is_active(w) => Some(f(&w.pages)),
            _ => None,
        };
        // SAFETY: Taken above.
        unsafe { bindings::up_read(&raw mut (*core).memory_lock) };
        r
    }
}

impl<T: Driver> WriteTracker<T> {
    /// Returns whether `w`, the tracking in place, is this tracker's and still active.
    fn is_active(&self, w: &Written) -> bool {
        w.generation == self.generation && self.dev.bars.active.load(Acquire) == self.generation
    }
}

impl<T: Driver> Drop for WriteTracker<T> {
    /// Stops the tracking without a lock: a tracker may be dropped by a reset, which runs under
    /// `memory_lock`. The fault handlers see the tracking inactive from then on; its marks are
    /// freed by the next tracking of the device, its close or its release.
    fn drop(&mut self) {
        let _ = self.dev.bars.active.cmpxchg(self.generation, 0, Release);
    }
}

/// Returns the pages marked in `pages`, a bitmap of [`WriteTracker::take`], in order from page
/// `from` on.
pub fn written_pages(pages: &Bitmap, from: usize) -> impl Iterator<Item = usize> + '_ {
    let next = |start: usize| {
        if start < pages.len() {
            pages.next_bit(start)
        } else {
            None
        }
    };
    core::iter::successors(next(from), move |&i| next(i + 1))
}

/// Returns the number of pages marked in `pages`.
fn count(pages: &Bitmap) -> usize {
    written_pages(pages, 0).count()
}

/// Clears every bit of `bits`.
fn clear(bits: &mut BitmapVec) {
    let mut start = 0;
    while start < bits.len() {
        let Some(i) = bits.next_bit(start) else {
            break;
        };
        bits.clear_bit(i);
        start = i + 1;
    }
}

// A BAR index fits the bitmaps' arithmetic.
const _: () = assert!(NUM_BARS < 8);
