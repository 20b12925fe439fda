// SPDX-License-Identifier: GPL-2.0

//! Access to the BARs of a vfio-pci device: the driver's own, and fencing off the user's.
//!
//! A migration driver must be able to stop a device from changing while its state is saved or
//! restored, including changes the user makes through the BARs. [`Device::fence_bars`] blocks
//! every user access to the memory and I/O BARs: a fault on a BAR mmap raises `SIGBUS` (the
//! mappings are zapped, as `vfio_pci_core` does when memory decoding is off) and a `read()` or
//! `write()` of a BAR region on the device fd fails with `EIO`. [`Device::unfence_bars`] lifts
//! the fence; mappings fault back in on the next access. Only a driver that says it fences
//! ([`Driver::FENCES_BARS`]) gets the adapter's BAR `read()`, `write()` and `mmap()`: every other
//! keeps `vfio_pci_core`'s, `huge_fault` included.
//!
//! The driver itself reads and writes the BARs through [`Device::lock_bars`], fenced or not,
//! while the device is open; an [`ARef<Device>`](crate::sync::aref::ARef) held by an object that
//! outlives a callback, such as a migration data file, may do so too.
//!
//! A driver may also trap the user's writes to some BARs ([`Driver::traps_bar`]), e.g. to see
//! the commands that make a device write memory by DMA. Such a BAR cannot be mapped by the user:
//! `VFIO_DEVICE_GET_REGION_INFO` does not offer `VFIO_REGION_INFO_FLAG_MMAP` and `mmap()` fails
//! with `EINVAL`. Each `write()` to it is split into the accesses `vfio_pci_core` would make
//! ([`IoAccess`]) and handed to [`Driver::bar_write`], which carries it out.
//!
//! # Locking
//!
//! - `vfio_pci_core`'s `memory_lock` protects the fence flag against the mmap fault handler, and
//!   the device's memory decoding while the driver accesses a BAR.
//! - `BarGate::rw` orders a fence against BAR `read()`/`write()` calls in flight; it is taken
//!   before `memory_lock` and before any user copy, never the other way round.
//! - [`Device::fence_bars`] and [`Device::lock_bars`] take `memory_lock`: they must not be
//!   called from `reset_done`, which may run under it, and no user copy may happen while a
//!   [`BarGuard`] is held (a fault on a BAR mmap takes `memory_lock`).

use super::{
    Device,
    Driver, //
};
use crate::{
    bindings,
    device,
    error::from_err_ptr,
    io::{
        io_project,
        Io,
        Mmio,
        MmioRaw,
        Region, //
    },
    page::PAGE_SIZE,
    prelude::*,
    sync::{
        atomic::{
            Acquire,
            Atomic,
            Relaxed,
            Release, //
        },
        static_lock_class, Mutex,
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
    xxhash::Xxh64, //
};
use core::{
    cell::UnsafeCell,
    ffi::c_void,
    mem::MaybeUninit, //
};

/// The number of memory and I/O BARs of a PCI function.
pub const NUM_BARS: u32 = bindings::VFIO_PCI_ROM_REGION_INDEX;

/// The shift from a region index to its offset in the device fd (`VFIO_PCI_OFFSET_SHIFT`).
const OFFSET_SHIFT: u32 = bindings::VFIO_PCI_OFFSET_SHIFT;

/// The bytes of a trapped BAR `write()` copied from userspace at a time.
const TRAP_CHUNK: usize = 64;

/// One access of a BAR `read()` or `write()`, as `vfio_pci_core` splits them: naturally aligned,
/// of 8, 4, 2 or 1 bytes, the largest that fits.
///
/// # Invariants
///
/// `size` is 1, 2, 4 or 8, and `offset` is a multiple of it.
///
/// # Examples
///
/// ```
/// use kernel::vfio::pci::IoAccess;
///
/// let data = [0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd];
/// let want = [
///     (0x96, 2, 0x2211),
///     (0x98, 8, 0xaa99_8877_6655_4433),
///     (0xa0, 2, 0xccbb),
///     (0xa2, 1, 0xdd),
/// ];
/// let mut n = 0;
/// for (a, w) in IoAccess::split(0x96, &data).zip(want) {
///     assert_eq!((a.offset(), a.size(), a.value()), w);
///     n += 1;
/// }
/// assert_eq!(n, want.len());
/// assert_eq!(IoAccess::split(0x96, &data).count(), want.len());
/// assert_eq!(IoAccess::split(0x98, &[]).count(), 0);
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IoAccess {
    offset: u64,
    size: usize,
    value: u64,
}

impl IoAccess {
    /// Splits the bytes `data` at `offset` of a BAR into accesses, in order. Each access's
    /// value is its bytes read as little endian, as the device sees them.
    pub fn split(offset: u64, data: &[u8]) -> impl Iterator<Item = IoAccess> + '_ {
        let mut done = 0usize;
        core::iter::from_fn(move || {
            let left = data.len() - done;
            if left == 0 {
                return None;
            }
            let at = offset.wrapping_add(done as u64);
            let size = [8usize, 4, 2]
                .into_iter()
                .find(|&n| left >= n && at % n as u64 == 0)
                .unwrap_or(1);
            let mut bytes = [0u8; 8];
            bytes[..size].copy_from_slice(&data[done..done + size]);
            done += size;
            // INVARIANT: `size` is 8, 4 or 2 with `at` a multiple of it, or 1.
            Some(IoAccess {
                offset: at,
                size,
                value: u64::from_le_bytes(bytes),
            })
        })
    }

    /// Returns the offset of the access in its BAR.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Returns the size of the access in bytes: 1, 2, 4 or 8.
    pub fn size(&self) -> usize {
        self.size
    }

    /// Returns the value written (the low [`IoAccess::size`] bytes are used).
    pub fn value(&self) -> u64 {
        self.value
    }
}

/// The state of a device's BARs kept by the abstraction.
#[pin_data]
pub(super) struct BarGate {
    /// User access to the BARs is fenced off. Set under `memory_lock` held for writing (so no
    /// fault maps a page between the flag and the zap), read by the fault handler under
    /// `memory_lock` held for reading; cleared without a lock.
    fenced: Atomic<bool>,
    /// The device is open, so `vfio_pci_core` has its BARs mapped. Changed under `memory_lock`
    /// held for writing.
    pub(super) open: Atomic<bool>,
    /// Held across a user `read()`/`write()` of a BAR region, and by a fence.
    #[pin]
    rw: Mutex<()>,
    /// The BAR whose writes are tracked, if any (see [`super::track`]). Changed under
    /// `memory_lock` held for writing, read under it held for reading; its pages are marked
    /// with atomic bit operations.
    pub(super) written: UnsafeCell<Option<super::track::Written>>,
    /// The generation of the last tracking started, so that a stale tracker cannot stop a newer
    /// one. Changed under `memory_lock` held for writing.
    pub(super) generation: Atomic<u64>,
    /// The generation of the tracking in `written` if it is active, 0 otherwise. A tracker stops
    /// by clearing it, without a lock (it may be dropped by a reset, under `memory_lock`); the
    /// inactive `written` is freed by the next tracking, the close or the release.
    pub(super) active: Atomic<u64>,
}

// The lock's name is a static: the code that initialises it is instantiated in each driver's
// module, while its lockdep class is the kernel crate's static, and lockdep requires one name (one
// address) per class, or it warns when two drivers are loaded.
static RW_NAME: &CStr = c"vfio::pci::BarGate::rw";

impl BarGate {
    /// Creates the gate of a closed, unfenced device.
    pub(super) fn new() -> impl PinInit<Self> {
        pin_init!(BarGate {
            fenced: Atomic::new(false),
            open: Atomic::new(false),
            rw <- Mutex::new((), RW_NAME, static_lock_class!()),
            written: UnsafeCell::new(None),
            generation: Atomic::new(0),
            active: Atomic::new(0),
        })
    }
}

/// The driver's access to the BARs of an open device, from [`Device::lock_bars`].
///
/// Holds `memory_lock` for writing with memory decoding enabled; both are restored on drop.
pub struct BarGuard<'a, T: Driver> {
    dev: &'a Device<T>,
    /// Whether [`BarGuard::new`] turned memory decoding on: [`Drop`] turns it off again.
    enabled: bool,
}

impl<'a, T: Driver> BarGuard<'a, T> {
    /// Takes `memory_lock` for writing and, if the device is open, enables memory decoding, as
    /// `vfio_pci_memory_lock_and_enable` does (it is not exported). Fails with [`ENODEV`] for a
    /// closed device, whose PCI device may even be gone: it is not touched then.
    fn new(dev: &'a Device<T>) -> Result<Self> {
        let core = dev.as_raw();
        // SAFETY: `core` is a valid core device whose `memory_lock` was initialised by
        // `vfio_pci_core_init_dev`.
        unsafe { bindings::down_write(&raw mut (*core).memory_lock) };
        if !dev.bars.open.load(Relaxed) {
            // SAFETY: Taken above.
            unsafe { bindings::up_write(&raw mut (*core).memory_lock) };
            return Err(ENODEV);
        }
        let mut cmd = 0u16;
        // SAFETY: The device is open, so its driver is bound and `pdev` is alive.
        let enabled = unsafe {
            let pdev = (*core).pdev;
            bindings::pci_read_config_word(pdev, bindings::PCI_COMMAND as i32, &mut cmd);
            let off = u32::from(cmd) & bindings::PCI_COMMAND_MEMORY == 0;
            if off {
                // CAST: PCI_COMMAND_MEMORY is bit 1 of the 16-bit command register.
                let on = cmd | bindings::PCI_COMMAND_MEMORY as u16;
                bindings::pci_write_config_word(pdev, bindings::PCI_COMMAND as i32, on);
            }
            off
        };
        Ok(Self { dev, enabled })
    }

    /// Returns the kernel mapping of BAR `bar`, valid while the guard is held.
    ///
    /// Fails with [`ENODEV`] for a BAR that is not mapped: not implemented, or not memory.
    pub fn mmio(&self, bar: u32) -> Result<Mmio<'_, Region>> {
        let (base, len) = self.base(bar)?;
        let raw = MmioRaw::<Region>::new_region(base.addr(), len)?;
        // SAFETY: `vfio_pci_core` maps each memory BAR whole (`pci_iomap` with no length limit),
        // and the mapping stays while the device is open: `memory_lock`, held by `self`, keeps
        // it from being closed for the lifetime of the returned view.
        Ok(unsafe { Mmio::from_raw(raw) })
    }

    /// Returns the kernel mapping of the `len` bytes at `offset` of memory BAR `bar`, as 8-byte
    /// words: `offset` and `len` must be multiples of 8.
    fn words(&self, bar: u32, offset: u64, len: usize) -> Result<*mut u64> {
        let (base, bar_len) = self.base(bar)?;
        let start = usize::try_from(offset).map_err(|_| EINVAL)?;
        match start.checked_add(len) {
            Some(end) if end <= bar_len && start % 8 == 0 && len % 8 == 0 => {
                // SAFETY: `[start, end)` is within the BAR's mapping, which `base` starts.
                Ok(unsafe { base.cast::<u8>().add(start) }.cast())
            }
            _ => Err(EINVAL),
        }
    }

    /// Copies the `dst.len()` bytes at `offset` of memory BAR `bar` into `dst` and feeds them to
    /// `hash`, in one pass: each 8-byte word of the device's memory is read once, with one
    /// 8-byte access, copied and hashed, so that what is hashed is what was copied even if the
    /// memory changes meanwhile. On success every byte of `dst` is initialised.
    ///
    /// A driver moving a memory BAR (not registers: the accesses are 8 bytes wide, in order)
    /// uses it to checksum the data it saves without reading it twice. Fails as
    /// [`BarGuard::read`] does, and with [`EINVAL`] if `offset` or `dst.len()` is not a multiple
    /// of 8.
    pub fn read_hashed(
        &self,
        bar: u32,
        offset: u64,
        dst: &mut [MaybeUninit<u8>],
        hash: &mut Xxh64,
    ) -> Result {
        let src = self.words(bar, offset, dst.len())?;
        let d = dst.as_mut_ptr().cast::<u8>();
        #[cfg(CONFIG_X86_64)]
        {
            // One read of each page before the copy. An emulator fills its TLB at the first
            // access to each page of the mapping, and those fills cost more inside the copy
            // loop than in a loop of their own: in a 256 MiB save under TCG, 60 ms against
            // 17 ms. On hardware it is one read more in 512.
            let page_words = PAGE_SIZE / 8;
            let mut i = 0;
            while i < dst.len() / 8 {
                // SAFETY: `i < dst.len() / 8`: a word of the range `words` checked, aligned as
                // below.
                unsafe { core::ptr::read_volatile(src.add(i)) };
                i += page_words;
            }
        }
        #[cfg(CONFIG_X86_64)]
        hash.update_words(dst.len() / 8, |i| {
            // SAFETY: `i < dst.len() / 8`: the word is in the range `words` checked, 8-byte
            // aligned since the mapping is page aligned and `offset` a multiple of 8. On x86-64
            // `readq()` is one 8-byte `mov` from the address: a volatile read of an aligned `u64`
            // is that access, inlined rather than a call per word.
            let w = unsafe { core::ptr::read_volatile(src.add(i)) };
            // SAFETY: `i < dst.len() / 8`: bytes `8 * i..8 * i + 8` of `dst`.
            unsafe { d.cast::<u64>().add(i).write_unaligned(w) };
            u64::from_le(w)
        });
        #[cfg(not(CONFIG_X86_64))]
        {
            // SAFETY: `src` is `dst.len()` bytes of the BAR's mapping and `d` is `dst`.
            unsafe { bindings::memcpy_fromio(d.cast(), src.cast(), dst.len()) };
            // SAFETY: `memcpy_fromio` initialised all of `dst`.
            hash.update(unsafe { core::slice::from_raw_parts(d, dst.len()) });
        }
        Ok(())
    }

    /// Writes `src` at `offset` of memory BAR `bar`, with 8-byte accesses in order where
    /// `offset` and `src.len()` are multiples of 8, as [`BarGuard::write`] otherwise. For the
    /// memory of a device, not its registers. Fails as [`BarGuard::write`] does.
    pub fn write_memory(&self, bar: u32, offset: u64, src: &[u8]) -> Result {
        #[cfg(CONFIG_X86_64)]
        if offset % 8 == 0 && src.len() % 8 == 0 {
            let dst = self.words(bar, offset, src.len())?;
            let s = src.as_ptr().cast::<u64>();
            let n = src.len() / 8;
            // SAFETY: `i < n`: bytes `8 * i..8 * i + 8` of `src`, read unaligned, and the word
            // `i` of the range `words` checked, 8-byte aligned. On x86-64 `writeq()` is one
            // 8-byte `mov` to the address: a volatile write of an aligned `u64` is that access.
            let put = |i: usize| unsafe {
                core::ptr::write_volatile(dst.add(i), s.add(i).read_unaligned())
            };
            // Four words an iteration, in order: fewer branches, which an emulator pays for.
            for j in 0..n / 4 {
                let i = j.wrapping_mul(4);
                put(i);
                put(i.wrapping_add(1));
                put(i.wrapping_add(2));
                put(i.wrapping_add(3));
            }
            for i in n / 4 * 4..n {
                put(i);
            }
            return Ok(());
        }
        self.write(bar, offset, src)
    }

    /// Returns the kernel mapping of memory BAR `bar` and its length, valid while the guard is
    /// held.
    fn base(&self, bar: u32) -> Result<(*mut c_void, usize)> {
        let len = usize::try_from(self.dev.bar_len(bar)).map_err(|_| ENODEV)?;
        if len == 0 {
            return Err(ENODEV);
        }
        // SAFETY: `memory_lock` is held and `lock_bars` saw the device open, so `barmap` is set
        // up and stable; `bar` < `NUM_BARS` since the BAR has a length. `pdev` is alive while
        // the device is open.
        let (base, flags) = unsafe {
            let core = self.dev.as_raw();
            (
                (*core).barmap[bar as usize],
                (*(*core).pdev).resource[bar as usize].flags,
            )
        };
        // `vfio_pci_core` stores an error pointer for a BAR it could not map. An I/O port BAR's
        // cookie is not memory.
        let base = from_err_ptr(base)?;
        if base.is_null() || flags & bindings::IORESOURCE_MEM as usize == 0 {
            return Err(ENODEV);
        }
        Ok((base, len))
    }

    /// Returns the bytes `[offset, offset + len)` of BAR `bar`.
    fn bytes(&self, bar: u32, offset: u64, len: usize) -> Result<Mmio<'_, [u8]>> {
        let bar = self.mmio(bar)?.as_bytes();
        let start = usize::try_from(offset).map_err(|_| EINVAL)?;
        match start.checked_add(len) {
            Some(end) if end <= bar.len() => Ok(io_project!(bar, [try: start..end])),
            _ => Err(EINVAL),
        }
    }

    /// Reads `buf.len()` bytes at `offset` of BAR `bar` into `buf`.
    ///
    /// Fails with [`EINVAL`] for a range outside the BAR and [`ENODEV`] for a BAR that is not
    /// mapped (not implemented, or not memory).
    pub fn read(&self, bar: u32, offset: u64, buf: &mut [u8]) -> Result {
        self.bytes(bar, offset, buf.len())?.copy_to_slice(buf);
        Ok(())
    }

    /// Writes `buf` at `offset` of BAR `bar`. Fails as [`BarGuard::read`] does.
    pub fn write(&self, bar: u32, offset: u64, buf: &[u8]) -> Result {
        self.bytes(bar, offset, buf.len())?.copy_from_slice(buf);
        Ok(())
    }

    /// Reads the 32-bit register at `offset` (4-byte aligned) of BAR `bar`.
    pub fn read32(&self, bar: u32, offset: u64) -> Result<u32> {
        self.mmio(bar)?.try_read32(io_offset(offset)?)
    }

    /// Writes the 32-bit register at `offset` (4-byte aligned) of BAR `bar`.
    pub fn write32(&self, bar: u32, offset: u64, value: u32) -> Result {
        self.mmio(bar)?.try_write32(value, io_offset(offset)?)
    }

    /// Reads the 64-bit register at `offset` (8-byte aligned) of BAR `bar`.
    pub fn read64(&self, bar: u32, offset: u64) -> Result<u64> {
        self.mmio(bar)?.try_read64(io_offset(offset)?)
    }

    /// Writes the 64-bit register at `offset` (8-byte aligned) of BAR `bar`.
    pub fn write64(&self, bar: u32, offset: u64, value: u64) -> Result {
        self.mmio(bar)?.try_write64(value, io_offset(offset)?)
    }

    /// Carries out one access of BAR `bar`, as `vfio_pci_core` would for a user `write()`.
    pub fn write_access(&self, bar: u32, access: &IoAccess) -> Result {
        let mmio = self.mmio(bar)?;
        let offset = io_offset(access.offset)?;
        // CAST: Each value is truncated to the access's size, as the device takes it.
        match access.size {
            8 => mmio.try_write64(access.value, offset),
            4 => mmio.try_write32(access.value as u32, offset),
            2 => mmio.try_write16(access.value as u16, offset),
            _ => mmio.try_write8(access.value as u8, offset),
        }
    }

    /// Returns whether the user's view of the device lets its memory BARs be accessed: memory
    /// decoding on in the virtual command register and the device powered, the test
    /// `vfio_pci_core` makes before a user BAR access.
    pub fn user_memory_enabled(&self) -> bool {
        // SAFETY: `memory_lock` is held, as the function requires.
        unsafe { bindings::__vfio_pci_memory_enabled(self.dev.as_raw()) }
    }
}

impl<T: Driver> Drop for BarGuard<'_, T> {
    fn drop(&mut self) {
        let core = self.dev.as_raw();
        // Only the memory decoding bit `new` set is cleared, in the command register as it is
        // now: the guard may be held for a whole pass over a BAR, and the INTx handler masks
        // a level interrupt meanwhile by setting `PCI_COMMAND_INTX_DISABLE` (with no lock of
        // ours). Writing back the whole word read in `new`, as
        // `vfio_pci_memory_unlock_and_restore` does around its short accesses, would unmask
        // an interrupt the device still asserts: an interrupt storm.
        // SAFETY: `new` took `memory_lock` for writing and found the device open, which it
        // stays while the lock is held: `pdev` is alive. The lock is released last.
        unsafe {
            if self.enabled {
                let pdev = (*core).pdev;
                let mut cmd = 0u16;
                bindings::pci_read_config_word(pdev, bindings::PCI_COMMAND as i32, &mut cmd);
                // CAST: PCI_COMMAND_MEMORY is bit 1 of the 16-bit command register.
                let off = cmd & !(bindings::PCI_COMMAND_MEMORY as u16);
                bindings::pci_write_config_word(pdev, bindings::PCI_COMMAND as i32, off);
            }
            bindings::up_write(&raw mut (*core).memory_lock);
        }
    }
}

/// Returns a BAR offset as an offset of its kernel mapping: [`EINVAL`] if it cannot be one.
fn io_offset(offset: u64) -> Result<usize> {
    usize::try_from(offset).map_err(|_| EINVAL)
}

/// Returns the BAR index of a device fd offset, or `None` for config space and other regions.
fn bar_of_offset(pos: i64) -> Option<u32> {
    let index = u64::try_from(pos).ok()? >> OFFSET_SHIFT;
    // CAST: Below `NUM_BARS`.
    (index < u64::from(NUM_BARS)).then_some(index as u32)
}

impl<T: Driver> Device<T> {
    /// Fences off user access to the BARs until [`Device::unfence_bars`].
    ///
    /// Waits for BAR `read()`/`write()` calls in flight, zaps every BAR mmap and makes further
    /// faults on them raise `SIGBUS` and BAR `read()`/`write()` fail with `EIO`. Must not be
    /// called from [`Driver::reset_done`] (see the module's locking rules).
    pub fn fence_bars(&self) {
        const_assert!(
            T::FENCES_BARS,
            "a driver that fences its BARs says so in Driver::FENCES_BARS"
        );
        let core = self.as_raw();
        let _rw = self.bars.rw.lock();
        // SAFETY: `core` is a valid core device; its `memory_lock` is initialised.
        unsafe { bindings::down_write(&raw mut (*core).memory_lock) };
        self.bars.fenced.store(true, Release);
        let start = 0i64;
        let len = i64::from(NUM_BARS) << OFFSET_SHIFT;
        // SAFETY: `inode` is the device's inode, set by `vfio_init_device` and alive as long as
        // the device; unmapping a range of its mapping is always allowed. `memory_lock` is held
        // for writing, so no fault can map a page back until the fence is visible.
        unsafe {
            bindings::unmap_mapping_range((*(*core).vdev.inode).i_mapping, start, len, 1);
            bindings::up_write(&raw mut (*core).memory_lock);
        }
    }

    /// Lifts the fence of [`Device::fence_bars`].
    ///
    /// Takes no lock, so it may be called from [`Driver::reset_done`].
    pub fn unfence_bars(&self) {
        self.bars.fenced.store(false, Release);
    }

    /// Returns whether user access to the BARs is fenced off.
    pub fn bars_fenced(&self) -> bool {
        self.bars.fenced.load(Acquire)
    }

    /// Returns the length of BAR `bar`, 0 if it is not implemented.
    pub fn bar_len(&self, bar: u32) -> u64 {
        if bar >= NUM_BARS {
            return 0;
        }
        // SAFETY: `pdev` is valid as long as the core device; `bar` indexes `resource`.
        let res = unsafe { &(*(*self.as_raw()).pdev).resource[bar as usize] };
        if res.end > res.start {
            res.end - res.start + 1
        } else {
            0
        }
    }

    /// Locks the BARs for the driver's own accesses: takes `memory_lock` for writing and
    /// enables memory decoding until the guard is dropped.
    ///
    /// Works whether or not the BARs are fenced. Fails with [`ENODEV`] when the device is not
    /// open and [`EIO`] when the user put it in a low power state. While the guard is held, the
    /// device cannot be reset and its mmaps cannot fault: the caller must not copy from or to
    /// user memory, which may be such an mmap.
    pub fn lock_bars(&self) -> Result<BarGuard<'_, T>> {
        let guard = BarGuard::new(self)?;
        // SAFETY: `memory_lock` is held, so `pm_runtime_engaged` is stable.
        if unsafe { (*self.as_raw()).pm_runtime_engaged } {
            return Err(EIO);
        }
        Ok(guard)
    }

    /// Marks the device open or closed for [`Device::lock_bars`].
    pub(super) fn set_bars_open(&self, open: bool) {
        let core = self.as_raw();
        // SAFETY: `core` is valid and its `memory_lock` initialised.
        unsafe { bindings::down_write(&raw mut (*core).memory_lock) };
        self.bars.open.store(open, Relaxed);
        if !open {
            self.bars.active.store(0, Release);
            // SAFETY: `memory_lock` is held for writing.
            drop(unsafe { (*self.bars.written.get()).take() });
        }
        // SAFETY: Taken above.
        unsafe { bindings::up_write(&raw mut (*core).memory_lock) };
    }

    /// Runs `rw`, a `read()` or `write()` of the device fd at `pos`, unless it is on a BAR while
    /// the BARs are fenced.
    pub(super) fn rw_gated(&self, pos: i64, rw: impl FnOnce() -> isize) -> isize {
        if bar_of_offset(pos).is_none() {
            return rw();
        }
        let _rw = self.bars.rw.lock();
        if self.bars.fenced.load(Acquire) {
            return EIO.to_errno() as isize;
        }
        rw()
    }

    /// Marks what a user `write()` of `n` bytes (its result) at device fd offset `pos` wrote,
    /// if it wrote a BAR whose writes are tracked.
    pub(super) fn wrote(&self, pos: i64, n: isize) {
        if let (Some(bar), Ok(n)) = (bar_of_offset(pos), usize::try_from(n)) {
            // CAST: `pos` is not negative: it is the offset of a BAR.
            self.mark_written(bar, pos as u64 & ((1u64 << OFFSET_SHIFT) - 1), n);
        }
    }

    /// Returns the BAR of a device fd offset if the driver traps the user's writes to it.
    pub(super) fn trapped_bar(&self, pos: i64) -> Option<u32> {
        if !T::HAS_BAR_WRITE {
            return None;
        }
        bar_of_offset(pos).filter(|&bar| self.traps(bar))
    }

    /// Returns whether the driver traps BAR `bar`. The BAR holding the MSI-X table never is:
    /// `vfio_pci_core` keeps the user away from the table.
    fn traps(&self, bar: u32) -> bool {
        // SAFETY: `msix_bar` is set when the device is enabled, before the device fd exists.
        let msix_bar = unsafe { (*self.as_raw()).msix_bar };
        bar != u32::from(msix_bar) && T::traps_bar(self.data(), bar)
    }

    /// Hides the trapped BARs from `mmap()` and from `VFIO_DEVICE_GET_REGION_INFO`'s mmap flag.
    /// Called when the device is opened, after `vfio_pci_core_finish_enable` decided which BARs
    /// can be mapped.
    pub(super) fn hide_trapped_bars(&self) {
        if !T::HAS_BAR_WRITE {
            return;
        }
        let core = self.as_raw();
        for bar in 0..NUM_BARS {
            if self.traps(bar) {
                // SAFETY: The device is being opened, so nothing reads `bar_mmap_supported`
                // concurrently (it is read by the device fd's ioctls and mmaps, which wait for
                // the open to finish). `bar` < `NUM_BARS`.
                unsafe { (*core).bar_mmap_supported[bar as usize] = false };
            }
        }
    }

    /// Handles a fault of `order` on a BAR mmap (0: one page, or a huge page the mapping may
    /// take): maps it unless the BARs are fenced.
    ///
    /// It computes the pages as `vfio_pci_core`'s own fault handlers do, and like them returns
    /// `VM_FAULT_FALLBACK` for an order that does not fit the VMA or the BAR's alignment at the
    /// faulting address, so that the fault is retried with a smaller one. A write fault maps
    /// the page writable at once; a read fault maps it as the VMA's protection says, which is
    /// read-only for a writable mapping (its VMA ops have `pfn_mkwrite`), so that the first
    /// write to the page is seen. While the BAR's writes are tracked, pages are mapped one at a
    /// time and a write marks its page.
    ///
    /// # Safety
    ///
    /// `vmf` is a fault on a VMA set up by `vfio_pci_core_mmap` for a BAR of this device.
    pub(super) unsafe fn bar_fault(
        &self,
        vmf: *mut bindings::vm_fault,
        order: u32,
    ) -> bindings::vm_fault_t {
        let core = self.as_raw();
        // SAFETY: The caller guarantees `vmf` and its VMA are valid for the fault.
        let (vm_start, vm_end, address, write) = unsafe {
            let vma = (*vmf).__bindgen_anon_1.vma;
            let range = (*vma).__bindgen_anon_1.__bindgen_anon_1;
            (
                range.vm_start,
                range.vm_end,
                (*vmf).__bindgen_anon_1.address,
                (*vmf).flags & bindings::fault_flag_FAULT_FLAG_WRITE != 0,
            )
        };
        let size = PAGE_SIZE << order;
        let addr = address & !(size - 1);
        // As `is_aligned_for_order()`: a huge mapping stays in the VMA...
        if order != 0 && (addr < vm_start || addr + size > vm_end) {
            return bindings::vm_fault_reason_VM_FAULT_FALLBACK;
        }
        // SAFETY: As above.
        let (bar, page) = unsafe { fault_page(vmf, addr) };
        // SAFETY: `vfio_pci_core_mmap` accepted the VMA, so `bar` is a BAR of `pdev`.
        let start = unsafe { (*(*core).pdev).resource[bar as usize].start };
        let pfn = (start >> bindings::PAGE_SHIFT) as usize + page;
        // ... and maps pages aligned to its size.
        if pfn & ((1 << order) - 1) != 0 {
            return bindings::vm_fault_reason_VM_FAULT_FALLBACK;
        }

        // SAFETY: `memory_lock` is initialised; the fault handler may sleep.
        unsafe { bindings::down_read(&raw mut (*core).memory_lock) };
        // SAFETY: `memory_lock` is held for reading.
        let tracked = unsafe { self.written_of(bar) };
        let ret = if self.bars.fenced.load(Acquire) {
            bindings::vm_fault_reason_VM_FAULT_SIGBUS
        } else if tracked.is_some() && order != 0 {
            // A tracked BAR is mapped, and its writes seen, a page at a time.
            bindings::vm_fault_reason_VM_FAULT_FALLBACK
        } else {
            if let (Some(w), true) = (tracked, write) {
                w.mark(page, 1);
            }
            // SAFETY: `memory_lock` is held for reading and `pfn` is the first page of the BAR
            // that `vmf` faults on, aligned to `order`, as `vfio_pci_core` computes it.
            unsafe { self.insert_pfn(vmf, pfn, order, write) }
        };
        // SAFETY: Taken above.
        unsafe { bindings::up_read(&raw mut (*core).memory_lock) };
        ret
    }

    /// Maps `pfn` for the fault `vmf` as `vfio_pci_vmf_insert_pfn()` does, but writable at once
    /// for a write fault: the VMA's own protection may be read-only (see [`Device::bar_fault`]).
    ///
    /// # Safety
    ///
    /// `memory_lock` is held for reading; `vmf` is a fault on a BAR mmap of this device and
    /// `pfn` the page of the BAR it faults on, aligned to `order`.
    unsafe fn insert_pfn(
        &self,
        vmf: *mut bindings::vm_fault,
        pfn: usize,
        order: u32,
        write: bool,
    ) -> bindings::vm_fault_t {
        let core = self.as_raw();
        // SAFETY: `memory_lock` is held for reading, as both fields require.
        if unsafe { (*core).pm_runtime_engaged || !bindings::__vfio_pci_memory_enabled(core) } {
            return bindings::vm_fault_reason_VM_FAULT_SIGBUS;
        }
        // SAFETY: The caller guarantees `vmf` is a fault on a BAR mmap and `pfn` its page, with
        // the alignment each order needs.
        unsafe {
            let vma = (*vmf).__bindgen_anon_1.vma;
            match order {
                0 => {
                    let prot = if write {
                        bindings::vfio_pci_bar_writable_prot(vma)
                    } else {
                        (*vma).vm_page_prot
                    };
                    bindings::vmf_insert_pfn_prot(vma, (*vmf).__bindgen_anon_1.address, pfn, prot)
                }
                #[cfg(CONFIG_ARCH_SUPPORTS_PMD_PFNMAP)]
                bindings::PMD_ORDER => bindings::vmf_insert_pfn_pmd(vmf, pfn, write),
                #[cfg(CONFIG_ARCH_SUPPORTS_PUD_PFNMAP)]
                bindings::PUD_ORDER => bindings::vmf_insert_pfn_pud(vmf, pfn, write),
                _ => bindings::vm_fault_reason_VM_FAULT_FALLBACK,
            }
        }
    }

    /// Handles the first write to a page mapped read-only by [`Device::bar_fault`]: marks it if
    /// its BAR's writes are tracked, and lets the write go on unless the BARs are fenced.
    ///
    /// # Safety
    ///
    /// `vmf` is a write fault on a VMA set up by `vfio_pci_core_mmap` for a BAR of this device.
    pub(super) unsafe fn bar_mkwrite(&self, vmf: *mut bindings::vm_fault) -> bindings::vm_fault_t {
        let core = self.as_raw();
        // SAFETY: The caller guarantees `vmf` is valid for the fault.
        let (bar, page) = unsafe { fault_page(vmf, (*vmf).__bindgen_anon_1.address) };
        // SAFETY: `memory_lock` is initialised; the fault handler may sleep.
        unsafe { bindings::down_read(&raw mut (*core).memory_lock) };
        let ret = if self.bars.fenced.load(Acquire) {
            bindings::vm_fault_reason_VM_FAULT_SIGBUS
        } else {
            // SAFETY: `memory_lock` is held for reading.
            if let Some(w) = unsafe { self.written_of(bar) } {
                w.mark(page, 1);
            }
            0
        };
        // SAFETY: Taken above.
        unsafe { bindings::up_read(&raw mut (*core).memory_lock) };
        ret
    }

    /// Marks the pages of `[offset, offset + len)` of BAR `bar` written, if its writes are
    /// tracked: a user `write()` of the region.
    pub(super) fn mark_written(&self, bar: u32, offset: u64, len: usize) {
        if len == 0 {
            return;
        }
        let core = self.as_raw();
        // SAFETY: `memory_lock` is initialised.
        unsafe { bindings::down_read(&raw mut (*core).memory_lock) };
        // SAFETY: `memory_lock` is held for reading.
        if let Some(w) = unsafe { self.written_of(bar) } {
            let first = offset >> bindings::PAGE_SHIFT;
            let last = (offset + len as u64 - 1) >> bindings::PAGE_SHIFT;
            // CAST: Pages of a BAR, whose length fits the address space.
            w.mark(first as usize, (last - first + 1) as usize);
        }
        // SAFETY: Taken above.
        unsafe { bindings::up_read(&raw mut (*core).memory_lock) };
    }

    /// Returns the tracking of BAR `bar`'s writes, if they are tracked.
    ///
    /// # Safety
    ///
    /// `memory_lock` is held, for reading or writing, for as long as the result is used.
    pub(super) unsafe fn written_of(&self, bar: u32) -> Option<&super::track::Written> {
        let active = self.bars.active.load(Acquire);
        // SAFETY: The caller holds `memory_lock`, under which the field only changes when it is
        // held for writing.
        unsafe { (*self.bars.written.get()).as_ref() }
            .filter(|w| w.bar() == bar && w.generation() == active)
    }
}

/// Returns the BAR of a fault on a BAR mmap at `addr`, and the page of the BAR it is in.
///
/// # Safety
///
/// `vmf` is a fault on a VMA set up by `vfio_pci_core_mmap` for a BAR, and `addr` in the VMA.
unsafe fn fault_page(vmf: *mut bindings::vm_fault, addr: usize) -> (u32, usize) {
    // SAFETY: The caller guarantees `vmf` and its VMA are valid for the fault.
    let (vm_start, vm_pgoff) = unsafe {
        let vma = (*vmf).__bindgen_anon_1.vma;
        (
            (*vma).__bindgen_anon_1.__bindgen_anon_1.vm_start,
            (*vma).vm_pgoff,
        )
    };
    let shift = OFFSET_SHIFT - bindings::PAGE_SHIFT;
    // CAST: Below `NUM_BARS`: `vfio_pci_core_mmap` accepted the VMA.
    let bar = (vm_pgoff >> shift) as u32;
    let page = (vm_pgoff & ((1 << shift) - 1)) + ((addr - vm_start) >> bindings::PAGE_SHIFT);
    (bar, page)
}

impl<T: Driver> Device<T, device::Bound> {
    /// A user `write()` of `count` bytes at `buf` to `*ppos`, a trapped BAR: copies the bytes
    /// in and hands their accesses to [`Driver::bar_write`], unless the BARs are fenced.
    ///
    /// # Safety
    ///
    /// `ppos` is valid for reads and writes; `buf` is a user pointer.
    pub(super) unsafe fn trapped_write(
        &self,
        bar: u32,
        buf: *const c_char,
        count: usize,
        ppos: *mut bindings::loff_t,
    ) -> Result<usize> {
        let _rw = self.bars.rw.lock();
        if self.bars.fenced.load(Acquire) {
            return Err(EIO);
        }
        // SAFETY: The caller guarantees `ppos` is valid.
        let pos = unsafe { *ppos };
        // CAST: `pos` is not negative: it is the offset of a BAR.
        let offset = pos as u64 & ((1u64 << OFFSET_SHIFT) - 1);
        let len = self.bar_len(bar);
        if offset >= len {
            return Err(EINVAL);
        }
        // CAST: At most `count`.
        let count = count.min((len - offset).min(usize::MAX as u64) as usize);
        let mut reader = UserSlice::new(UserPtr::from_ptr(buf.cast_mut().cast()), count).reader();
        let mut chunk = [0u8; TRAP_CHUNK];
        let mut done = 0usize;
        let res = (|| -> Result {
            while done < count {
                let n = (count - done).min(TRAP_CHUNK);
                // No user copy while the BARs are locked: copy first.
                reader.read_slice(&mut chunk[..n])?;
                let bars = self.lock_bars()?;
                if !bars.user_memory_enabled() {
                    return Err(EIO);
                }
                if T::HAS_BAR_WRITE {
                    T::bar_write(self, &bars, bar, offset + done as u64, &chunk[..n])?;
                }
                done += n;
            }
            Ok(())
        })();
        // SAFETY: The caller guarantees `ppos` is valid.
        unsafe { *ppos = pos + done as i64 };
        match res {
            Err(e) if done == 0 => Err(e),
            _ => Ok(done),
        }
    }
}
