// SPDX-License-Identifier: GPL-2.0

//! Migration data files: anonymous-inode files through which device state is saved and restored.
//!
//! A migration driver returns such a file (`data_fd` to userspace) from the transitions into a
//! saving or resuming state. The file is a stream: reads and writes have no position, `pread` and
//! `pwrite` fail with `ESPIPE`. Its private data is any [`ForeignOwnable`] the driver chooses,
//! borrowed by every callback and given back to [`DataFileOps::release`].
//!
//! [`PrecopyInfo`] implements the `VFIO_MIG_GET_PRECOPY_INFO` ioctl of such files.
//!
//! C headers: [`include/linux/anon_inodes.h`](srctree/include/linux/anon_inodes.h),
//! [`include/linux/vfio.h`](srctree/include/linux/vfio.h)

use crate::{
    bindings,
    error::VTABLE_DEFAULT_ERROR,
    fs::File,
    ioctl::_IO,
    module::this_module,
    prelude::*,
    sync::{
        aref::ARef,
        poll::PollTable, //
    },
    types::ForeignOwnable,
    uaccess::{
        UserPtr,
        UserSlice,
        UserSliceReader,
        UserSliceWriter, //
    }, //
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

/// The `VFIO_MIG_GET_PRECOPY_INFO` ioctl number.
///
/// # Examples
///
/// ```
/// use kernel::vfio::file::VFIO_MIG_GET_PRECOPY_INFO;
///
/// // _IO(VFIO_TYPE = ';', VFIO_BASE + 21)
/// assert_eq!(VFIO_MIG_GET_PRECOPY_INFO, 0x3b79);
/// ```
pub const VFIO_MIG_GET_PRECOPY_INFO: u32 = _IO(bindings::VFIO_TYPE as u32, 100 + 21);

/// The readiness a [`DataFileOps::poll`] callback reports.
pub mod events {
    use crate::bindings;

    /// Data can be read (`EPOLLIN | EPOLLRDNORM`).
    pub const READABLE: u32 = bindings::POLLIN | bindings::POLLRDNORM;
    /// Data can be written (`EPOLLOUT | EPOLLWRNORM`).
    pub const WRITABLE: u32 = bindings::POLLOUT | bindings::POLLWRNORM;
    /// The session ended: reads and writes fail (`EPOLLERR | EPOLLHUP`).
    pub const ENDED: u32 = bindings::POLLERR | bindings::POLLHUP;
}

/// How the file may be used: a saving file is read, a resuming file is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Read-only (`O_RDONLY`): the device's state is read from the file.
    Read,
    /// Write-only (`O_WRONLY`): the device's state is written to the file.
    Write,
}

/// The callbacks of a migration data file.
///
/// Callbacks not implemented fail as the VFS does without them (`EINVAL` for `read`/`write`,
/// `ENOTTY` for ioctls); without `poll` the file is always ready.
#[vtable]
pub trait DataFileOps: Sized {
    /// The private data of the file.
    type Ptr: ForeignOwnable + Send + Sync;

    /// Reads up to `buf.len()` bytes into `buf`; returns how many were read, 0 at the end.
    fn read(
        _this: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _buf: &mut UserSliceWriter,
    ) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Writes up to `buf.len()` bytes from `buf`; returns how many were consumed.
    fn write(
        _this: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _buf: &mut UserSliceReader,
    ) -> Result<usize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Handles an ioctl on the file.
    fn ioctl(
        _this: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _cmd: u32,
        _arg: usize,
    ) -> Result<isize> {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Registers with `table` the wait queues of the file's events and returns the events that
    /// are ready now (see [`events`]).
    fn poll(
        _this: <Self::Ptr as ForeignOwnable>::Borrowed<'_>,
        _file: &File,
        _table: PollTable<'_>,
    ) -> u32 {
        build_error!(VTABLE_DEFAULT_ERROR)
    }

    /// Called when the last reference to the file goes.
    fn release(this: Self::Ptr, _file: &File) {
        drop(this);
    }
}

/// Creates a migration data file named `name` holding `data`.
///
/// The file is a stream (`stream_open`), owned by the module of `T`, and opened for `access`.
/// On error `data` is dropped.
pub fn create<T: DataFileOps>(name: &CStr, data: T::Ptr, access: Access) -> Result<ARef<File>> {
    let flags = match access {
        Access::Read => bindings::O_RDONLY,
        Access::Write => bindings::O_WRONLY,
    };
    let ptr = data.into_foreign();

    // SAFETY: `name` is a valid string, the ops table is static, and `ptr` is a valid private
    // data pointer that the file's `release` hands back to `from_foreign`.
    let file = unsafe {
        bindings::anon_inode_getfile(
            name.as_char_ptr(),
            const { &Vtable::<T>::FOPS },
            ptr.cast(),
            flags as c_int,
        )
    };
    let file = match crate::error::from_err_ptr(file) {
        Ok(file) => file,
        Err(e) => {
            // SAFETY: The file was not created, so `ptr` is still owned here.
            drop(unsafe { T::Ptr::from_foreign(ptr) });
            return Err(e);
        }
    };

    // SAFETY: `file` is a newly created file; a stream has no position.
    unsafe { bindings::stream_open((*file).f_inode, file) };

    // SAFETY: `anon_inode_getfile` returned a file with one reference, which is handed over.
    Ok(unsafe { ARef::from_raw(NonNull::new_unchecked(file.cast::<File>())) })
}

/// The `file_operations` of a data file with callbacks `T`.
struct Vtable<T: DataFileOps>(PhantomData<T>);

impl<T: DataFileOps> Vtable<T> {
    const FOPS: bindings::file_operations = bindings::file_operations {
        owner: this_module::<T::OwnerModule>().as_ptr(),
        read: if T::HAS_READ { Some(Self::read) } else { None },
        write: if T::HAS_WRITE {
            Some(Self::write)
        } else {
            None
        },
        unlocked_ioctl: if T::HAS_IOCTL {
            Some(Self::ioctl)
        } else {
            None
        },
        #[cfg(CONFIG_COMPAT)]
        compat_ioctl: if T::HAS_IOCTL {
            bindings::compat_ptr_ioctl
        } else {
            None
        },
        poll: if T::HAS_POLL { Some(Self::poll) } else { None },
        release: Some(Self::release),
        ..pin_init::zeroed()
    };

    /// Borrows the private data of `file`.
    ///
    /// # Safety
    ///
    /// `file` must be a data file created by [`create::<T>`] that is not released, and the
    /// borrow must end before it is.
    unsafe fn data<'a>(file: *mut bindings::file) -> <T::Ptr as ForeignOwnable>::Borrowed<'a> {
        // SAFETY: `private_data` was set by `create` from `into_foreign` and is only given back
        // by `release`, after every other callback returned.
        unsafe { T::Ptr::borrow((*file).private_data.cast()) }
    }

    /// # Safety
    ///
    /// Called by the VFS with a valid data file of `T`.
    unsafe extern "C" fn read(
        file: *mut bindings::file,
        buf: *mut c_char,
        len: usize,
        ppos: *mut bindings::loff_t,
    ) -> isize {
        if !ppos.is_null() {
            return ESPIPE.to_errno() as isize;
        }
        // SAFETY: The VFS holds a reference to `file` for the call.
        let (this, f) = unsafe { (Self::data(file), File::from_raw_file(file)) };
        let mut writer = UserSlice::new(UserPtr::from_ptr(buf.cast()), len).writer();
        match T::read(this, f, &mut writer) {
            // CAST: A read returns at most `len`, which the VFS caps at `MAX_RW_COUNT`.
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// Called by the VFS with a valid data file of `T`.
    unsafe extern "C" fn write(
        file: *mut bindings::file,
        buf: *const c_char,
        len: usize,
        ppos: *mut bindings::loff_t,
    ) -> isize {
        if !ppos.is_null() {
            return ESPIPE.to_errno() as isize;
        }
        // SAFETY: The VFS holds a reference to `file` for the call.
        let (this, f) = unsafe { (Self::data(file), File::from_raw_file(file)) };
        let mut reader = UserSlice::new(UserPtr::from_ptr(buf.cast_mut().cast()), len).reader();
        match T::write(this, f, &mut reader) {
            // CAST: A write consumes at most `len`, which the VFS caps at `MAX_RW_COUNT`.
            Ok(n) => n as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    /// # Safety
    ///
    /// Called by the VFS with a valid data file of `T`.
    unsafe extern "C" fn ioctl(file: *mut bindings::file, cmd: c_uint, arg: c_ulong) -> c_long {
        // SAFETY: The VFS holds a reference to `file` for the call.
        let (this, f) = unsafe { (Self::data(file), File::from_raw_file(file)) };
        match T::ioctl(this, f, cmd, arg) {
            // CAST: `isize` and `long` have the same size in the kernel.
            Ok(ret) => ret as c_long,
            Err(e) => e.to_errno() as c_long,
        }
    }

    /// # Safety
    ///
    /// Called by the VFS with a valid data file of `T` and a null or valid poll table.
    unsafe extern "C" fn poll(
        file: *mut bindings::file,
        table: *mut bindings::poll_table,
    ) -> bindings::__poll_t {
        // SAFETY: The VFS holds a reference to `file` and keeps `table` valid for the call.
        let (this, f, table) = unsafe {
            (
                Self::data(file),
                File::from_raw_file(file),
                PollTable::from_raw(table),
            )
        };
        T::poll(this, f, table)
    }

    /// # Safety
    ///
    /// Called by the VFS once, when the last reference to a data file of `T` goes.
    unsafe extern "C" fn release(_inode: *mut bindings::inode, file: *mut bindings::file) -> c_int {
        // SAFETY: No other callback runs any more; `private_data` came from `into_foreign`.
        let (this, f) = unsafe {
            (
                T::Ptr::from_foreign((*file).private_data.cast()),
                File::from_raw_file(file),
            )
        };
        T::release(this, f);
        0
    }
}

/// The answer to `VFIO_MIG_GET_PRECOPY_INFO`: how much saved state is waiting to be read.
///
/// # Examples
///
/// ```
/// use kernel::vfio::file::{PrecopyInfo, VFIO_MIG_GET_PRECOPY_INFO};
///
/// let info = PrecopyInfo { initial_bytes: 4096, dirty_bytes: 0, reinit: false };
/// assert!(!info.is_drained());
/// // Another command is not this ioctl.
/// assert_eq!(info.ioctl(VFIO_MIG_GET_PRECOPY_INFO + 1, 0, true), Err(ENOTTY));
/// // A bad user pointer faults.
/// assert_eq!(info.ioctl(VFIO_MIG_GET_PRECOPY_INFO, 8, true), Err(EFAULT));
///
/// // What the ioctl writes back into `struct vfio_precopy_info` (argsz 24, flags 0xff).
/// let user = |flags: u32| {
///     let mut raw = [0u8; 24];
///     raw[..4].copy_from_slice(&24u32.to_ne_bytes());
///     raw[4..8].copy_from_slice(&flags.to_ne_bytes());
///     raw
/// };
/// let flags = |raw: &[u8; 24]| u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
/// let reinit = PrecopyInfo { initial_bytes: 16, dirty_bytes: 8, reinit: true };
/// let mut raw = user(0xff);
/// assert_eq!(reinit.encode(&mut raw, true), Ok(()));
/// // v2: the flags are the driver's, VFIO_PRECOPY_INFO_REINIT (1) among them.
/// assert_eq!(flags(&raw), 1);
/// assert_eq!(&raw[8..16], &16u64.to_ne_bytes());
/// assert_eq!(&raw[16..24], &8u64.to_ne_bytes());
/// // Without the opt-in, the user's flags are left alone and REINIT is not reported.
/// let mut raw = user(0xff);
/// assert_eq!(reinit.encode(&mut raw, false), Ok(()));
/// assert_eq!(flags(&raw), 0xff);
/// let mut raw = user(0xff);
/// assert_eq!(info.encode(&mut raw, true), Ok(()));
/// assert_eq!(flags(&raw), 0);
/// // An argsz below the structure's size is refused.
/// let mut raw = user(0);
/// raw[..4].copy_from_slice(&23u32.to_ne_bytes());
/// assert_eq!(info.encode(&mut raw, true), Err(EINVAL));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PrecopyInfo {
    /// Bytes of initial data not read yet; they shrink as the stream is read.
    pub initial_bytes: u64,
    /// Bytes of state that changed since it was read (an estimate).
    pub dirty_bytes: u64,
    /// New initial data is present (`VFIO_PRECOPY_INFO_REINIT`); reported only after userspace
    /// opted in with `VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2`.
    pub reinit: bool,
}

/// The size of the part of `struct vfio_precopy_info` both sides know.
pub const PRECOPY_INFO_MINSZ: usize = 24;

impl PrecopyInfo {
    /// Returns whether there is nothing to read now (a read would fail with `ENOMSG`).
    pub const fn is_drained(&self) -> bool {
        self.initial_bytes == 0 && self.dirty_bytes == 0
    }

    /// Answers `VFIO_MIG_GET_PRECOPY_INFO` at user address `arg`, as `vfio_check_precopy_ioctl`
    /// and the C drivers do: `ENOTTY` for another `cmd`, `EFAULT` for a bad pointer, `EINVAL` when
    /// `argsz` is too small. `v2` is whether the device's user opted in to the v2 behaviour:
    /// without it the caller's `flags` are left as they were and `reinit` is not reported.
    pub fn ioctl(&self, cmd: u32, arg: usize, v2: bool) -> Result<isize> {
        if cmd != VFIO_MIG_GET_PRECOPY_INFO {
            return Err(ENOTTY);
        }
        let mut raw = [0u8; PRECOPY_INFO_MINSZ];
        UserSlice::new(UserPtr::from_addr(arg), PRECOPY_INFO_MINSZ)
            .reader()
            .read_slice(&mut raw)?;
        self.encode(&mut raw, v2)?;
        UserSlice::new(UserPtr::from_addr(arg), PRECOPY_INFO_MINSZ)
            .writer()
            .write_slice(&raw)?;
        Ok(0)
    }

    /// Fills `raw`, the `struct vfio_precopy_info` the user passed (native endian), with the
    /// answer, as [`PrecopyInfo::ioctl`] writes it back: `EINVAL` when its `argsz` is too
    /// small; the flags are replaced only with `v2`.
    pub fn encode(&self, raw: &mut [u8; PRECOPY_INFO_MINSZ], v2: bool) -> Result {
        let argsz = u32::from_ne_bytes([raw[0], raw[1], raw[2], raw[3]]);
        // CAST: `PRECOPY_INFO_MINSZ` fits in a `u32`.
        if argsz < PRECOPY_INFO_MINSZ as u32 {
            return Err(EINVAL);
        }
        let mut flags = u32::from_ne_bytes([raw[4], raw[5], raw[6], raw[7]]);
        if v2 {
            flags = 0;
            if self.reinit {
                flags |= bindings::VFIO_PRECOPY_INFO_REINIT;
            }
        }
        raw[4..8].copy_from_slice(&flags.to_ne_bytes());
        raw[8..16].copy_from_slice(&self.initial_bytes.to_ne_bytes());
        raw[16..24].copy_from_slice(&self.dirty_bytes.to_ne_bytes());
        Ok(())
    }
}
