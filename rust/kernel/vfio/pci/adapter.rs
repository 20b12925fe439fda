// SPDX-License-Identifier: GPL-2.0

//! The C callbacks of a vfio-pci variant driver: the `vfio_device_ops`, migration and DMA logging
//! ops, and the `pci_driver` callbacks, each handing over to the driver.

use super::{
    AttributeWriter,
    Device,
    DirtyBitmap,
    Driver,
    LogRanges,
    NUM_BARS, //
};
use crate::{
    bindings,
    device,
    device_id::RawDeviceIdIndex,
    error::{
        from_result,
        to_result, //
    },
    page::PAGE_SIZE,
    pci,
    prelude::*,
    seq_file::SeqFile,
    str::as_char_ptr_in_const_context,
    sync::aref::ARef,
    vfio::migration::{
        Flags,
        State, //
    }, //
};
use core::marker::PhantomData;

/// The adapter between the PCI and vfio cores and a vfio-pci variant driver `T`: its C callbacks,
/// and its registration with the driver core ([`driver::RegistrationOps`]), which
/// [`module_vfio_pci_driver!`](crate::module_vfio_pci_driver) uses.
///
/// [`driver::RegistrationOps`]: crate::driver::RegistrationOps
pub struct Adapter<T: Driver>(PhantomData<T>);

impl<T: Driver> Adapter<T> {
    /// The device ops: `vfio_pci_core` plus the driver's hooks. A BAR `read()`, `write()` or
    /// `mmap()` goes through the adapter only for a driver that fences the BARs
    /// ([`Driver::FENCES_BARS`]) or traps writes to some ([`Driver::bar_write`]).
    pub(super) const VFIO_OPS: bindings::vfio_device_ops = bindings::vfio_device_ops {
        name: as_char_ptr_in_const_context(T::NAME).cast_mut(),
        init: Some(bindings::vfio_pci_core_init_dev),
        release: Some(Self::release_callback),
        open_device: Some(Self::open_device_callback),
        close_device: Some(Self::close_device_callback),
        ioctl: Some(bindings::vfio_pci_core_ioctl),
        get_region_info_caps: Some(bindings::vfio_pci_ioctl_get_region_info),
        device_feature: Some(bindings::vfio_pci_core_ioctl_feature),
        read: if T::FENCES_BARS {
            Some(Self::read_callback)
        } else {
            Some(bindings::vfio_pci_core_read)
        },
        write: if T::FENCES_BARS || T::HAS_BAR_WRITE {
            Some(Self::write_callback)
        } else {
            Some(bindings::vfio_pci_core_write)
        },
        mmap: if T::FENCES_BARS {
            Some(Self::mmap_callback)
        } else {
            Some(bindings::vfio_pci_core_mmap)
        },
        request: Some(bindings::vfio_pci_core_request),
        match_: Some(bindings::vfio_pci_core_match),
        match_token_uuid: Some(bindings::vfio_pci_core_match_token_uuid),
        bind_iommufd: Some(bindings::vfio_iommufd_physical_bind),
        unbind_iommufd: Some(bindings::vfio_iommufd_physical_unbind),
        attach_ioas: Some(bindings::vfio_iommufd_physical_attach_ioas),
        detach_ioas: Some(bindings::vfio_iommufd_physical_detach_ioas),
        ..pin_init::zeroed()
    };

    /// The ops of a device whose driver data is not initialised yet.
    pub(super) const VFIO_OPS_UNINIT: bindings::vfio_device_ops = bindings::vfio_device_ops {
        release: Some(bindings::vfio_pci_core_release_dev),
        ..Self::VFIO_OPS
    };

    /// Whether the driver supports migration, checked to be all or nothing at compile time.
    pub(super) const HAS_MIGRATION: bool = {
        let any = T::HAS_MIGRATION_SET_STATE
            || T::HAS_MIGRATION_GET_STATE
            || T::HAS_MIGRATION_GET_DATA_SIZE
            || T::MIGRATION_FLAGS.bits() != 0;
        let all = T::HAS_MIGRATION_SET_STATE
            && T::HAS_MIGRATION_GET_STATE
            && T::HAS_MIGRATION_GET_DATA_SIZE
            && T::MIGRATION_FLAGS.contains(Flags::STOP_COPY);
        assert!(
            !any || all,
            "migration needs all three migration_* callbacks and Flags::STOP_COPY"
        );
        all
    };

    /// Whether the driver supports DMA dirty logging, checked to be all or nothing.
    pub(super) const HAS_LOG: bool = {
        let any = T::HAS_LOG_START || T::HAS_LOG_STOP || T::HAS_LOG_READ_AND_CLEAR;
        let all = T::HAS_LOG_START && T::HAS_LOG_STOP && T::HAS_LOG_READ_AND_CLEAR;
        assert!(!any || all, "dirty logging needs all three log_* callbacks");
        all
    };

    /// Whether the driver adds a sysfs attribute, checked to come with its show callback.
    pub(super) const HAS_ATTRIBUTE: bool = {
        let named = T::ATTRIBUTE.is_some();
        assert!(
            named == T::HAS_SHOW_ATTRIBUTE,
            "ATTRIBUTE and show_attribute go together"
        );
        named
    };

    /// Whether the driver adds a debugfs file, checked to come with its show callback.
    pub(super) const HAS_DEBUGFS: bool = {
        let named = T::DEBUGFS.is_some();
        assert!(
            named == T::HAS_SHOW_DEBUGFS,
            "DEBUGFS and show_debugfs go together"
        );
        named
    };

    /// The migration ops, installed when [`Self::HAS_MIGRATION`].
    pub(super) const MIG_OPS: bindings::vfio_migration_ops = bindings::vfio_migration_ops {
        migration_set_state: Some(Self::mig_set_state_callback),
        migration_get_state: Some(Self::mig_get_state_callback),
        migration_get_data_size: Some(Self::mig_get_data_size_callback),
    };

    /// The dirty logging ops, installed when [`Self::HAS_LOG`].
    pub(super) const LOG_OPS: bindings::vfio_log_ops = bindings::vfio_log_ops {
        log_start: Some(Self::log_start_callback),
        log_stop: Some(Self::log_stop_callback),
        log_read_and_clear: Some(Self::log_read_and_clear_callback),
    };

    /// The PCI error handlers when the driver wants `reset_done`.
    pub(super) const ERR_HANDLERS: bindings::pci_error_handlers = bindings::pci_error_handlers {
        error_detected: Some(bindings::vfio_pci_core_aer_err_detected),
        reset_done: Some(Self::reset_done_callback),
        ..pin_init::zeroed()
    };

    pub(super) extern "C" fn probe_callback(
        pdev: *mut bindings::pci_dev,
        id: *const bindings::pci_device_id,
    ) -> c_int {
        // SAFETY: The PCI core calls probe with a valid device, in the core context, and the
        // device stays valid for the duration of this call.
        let pdev_ref = unsafe { &*pdev.cast::<pci::Device<device::Core<'_>>>() };

        // SAFETY: `id` is either an entry of `T::ID_TABLE` (an `IdArray<pci::DeviceId,
        // T::IdInfo>`, whose `driver_data` points to the entry's information) or
        // `pci_device_id_any`, whose `driver_data` is 0. `pci::DeviceId` is a transparent wrapper
        // of `pci_device_id`.
        let info = unsafe { (*id.cast::<pci::DeviceId>()).info_unchecked_opt::<T::IdInfo>() };

        from_result(|| {
            let this = Device::<T>::new(pdev_ref, T::probe(pdev_ref, info))?;
            // SAFETY: `this` was just created and holds the only reference.
            let this = unsafe { this.as_ref() };

            // SAFETY: `pdev` is valid; vfio_pci_core requires its driver data to be the core
            // device.
            unsafe { bindings::dev_set_drvdata(&raw mut (*pdev).dev, this.as_raw().cast()) };

            // SAFETY: `this` is a fully initialised core device, set as the driver data.
            let ret = to_result(unsafe { bindings::vfio_pci_core_register_device(this.as_raw()) });
            if let Err(e) = ret {
                // SAFETY: `pdev` is valid. The initial reference of the vfio device is dropped
                // and nothing else holds one, as registration failed.
                unsafe {
                    bindings::dev_set_drvdata(&raw mut (*pdev).dev, core::ptr::null_mut());
                    bindings::vfio_put_device(this.as_vfio_raw());
                }
                return Err(e);
            }
            if Self::HAS_DEBUGFS {
                Self::add_debugfs(this);
            }
            Ok(0)
        })
    }

    /// Adds the driver's file ([`Driver::DEBUGFS`]) to the migration directory that the vfio
    /// core made for `this` when it registered it. Nothing is added without one (no
    /// `CONFIG_VFIO_DEBUGFS`, or debugfs failed): the file is for people, not for the uAPI.
    fn add_debugfs(this: &Device<T>) {
        let Some(name) = T::DEBUGFS else {
            return;
        };
        let vdev = this.as_vfio_raw();
        // SAFETY: `vdev` is registered: `debug_root` was set by the vfio core before, and is
        // only removed when the device is unregistered.
        let Ok(root) = crate::error::from_err_ptr(unsafe { (*vdev).debug_root }) else {
            return;
        };
        if root.is_null() {
            return;
        }
        // SAFETY: `root` is a live debugfs directory; the name is a C string.
        let dir = unsafe { bindings::debugfs_lookup(c"migration".as_char_ptr(), root) };
        if dir.is_null() {
            return;
        }
        // SAFETY: `dir` is a live directory, held by the reference `debugfs_lookup` took. The
        // file belongs to the vfio device's `struct device`: the vfio core removes its
        // directory, waiting for readers, when the device is unregistered, before `remove`
        // lets the device go; the devres that keeps the file's data is that device's.
        unsafe {
            bindings::debugfs_create_devm_seqfile(
                &raw mut (*vdev).device,
                name.as_char_ptr(),
                dir,
                Some(Self::debugfs_show_callback),
            );
            bindings::dput(dir);
        }
    }

    extern "C" fn debugfs_show_callback(seq: *mut bindings::seq_file, _v: *mut c_void) -> c_int {
        // SAFETY: The file was created by `add_debugfs` with the vfio device's `struct device`
        // as its data, which `single_open` made `seq->private`. The file exists only while the
        // device is registered, so while `T` is bound to it (see `add_debugfs`).
        let this = unsafe {
            let dev = (*seq).private.cast::<bindings::device>();
            Device::<T, device::Bound>::from_vfio_raw(crate::container_of!(
                dev,
                bindings::vfio_device,
                device
            ))
        };
        // SAFETY: `seq` is the seq_file of this read, valid for the call.
        let out = unsafe { SeqFile::from_raw(seq) };
        match T::show_debugfs(this, out) {
            Ok(()) => 0,
            Err(e) => e.to_errno(),
        }
    }

    pub(super) extern "C" fn remove_callback(pdev: *mut bindings::pci_dev) {
        // SAFETY: remove is only called for a device whose probe succeeded.
        let this = unsafe { Device::<T, device::Bound>::from_pci_raw(pdev) };
        let (core, vdev) = (this.as_raw(), this.as_vfio_raw());

        // SAFETY: The device was registered by `probe_callback`. Unregistering waits for all
        // users to close it; then nothing reads the driver data, which the driver core would
        // otherwise take back as the Rust driver's after remove (`DriverLayout::DriverData` is
        // `()`), and the probe's reference is dropped, which frees the device and drops the
        // driver data unless the vfio core still holds a reference.
        unsafe {
            bindings::vfio_pci_core_unregister_device(core);
            bindings::dev_set_drvdata(&raw mut (*pdev).dev, core::ptr::null_mut());
            bindings::vfio_put_device(vdev);
        }
    }

    pub(super) extern "C" fn attribute_show_callback(
        dev: *mut bindings::device,
        _attr: *mut bindings::device_attribute,
        buf: *mut c_char,
    ) -> isize {
        // SAFETY: The attribute is only in the `dev_groups` of `T`'s driver: the driver core
        // creates it on a PCI device once `T`'s probe succeeded and removes it (waiting for this
        // call) before `T`'s remove runs, so `dev` is embedded in a `pci_dev` bound to `T`.
        let this = unsafe {
            Device::<T, device::Bound>::from_pci_raw(crate::container_of!(
                dev,
                bindings::pci_dev,
                dev
            ))
        };
        // SAFETY: sysfs hands a show callback a buffer of a page, writable for the call.
        let page = unsafe { core::slice::from_raw_parts_mut(buf.cast::<u8>(), PAGE_SIZE) };
        let mut out = AttributeWriter::new(page);
        match T::show_attribute(this, &mut out) {
            // CAST: At most a page.
            Ok(()) => out.len() as isize,
            Err(e) => e.to_errno() as isize,
        }
    }

    pub(super) extern "C" fn reset_done_callback(pdev: *mut bindings::pci_dev) {
        // SAFETY: The PCI core calls the error handlers only for a device bound to the driver.
        let this = unsafe { Device::<T, device::Bound>::from_pci_raw(pdev) };
        T::reset_done(this);
    }

    pub(super) extern "C" fn open_device_callback(vdev: *mut bindings::vfio_device) -> c_int {
        // SAFETY: The vfio core calls `open_device` only on registered devices, whose `data` is
        // initialised, and they stay alive for the call.
        let this = unsafe { Device::<T, device::Bound>::from_vfio_raw(vdev) };
        let core = this.as_raw();

        from_result(|| {
            // SAFETY: `core` is a registered core device being opened.
            to_result(unsafe { bindings::vfio_pci_core_enable(core) })?;
            if T::HAS_OPEN_DEVICE {
                if let Err(e) = T::open_device(this) {
                    // SAFETY: `vfio_pci_core_enable` succeeded above.
                    unsafe { bindings::vfio_pci_core_disable(core) };
                    return Err(e);
                }
            }
            this.set_bars_open(true);
            // SAFETY: `vfio_pci_core_enable` succeeded above.
            unsafe { bindings::vfio_pci_core_finish_enable(core) };
            // After `vfio_pci_core_finish_enable`, which decides which BARs can be mapped.
            this.hide_trapped_bars();
            Ok(0)
        })
    }

    pub(super) extern "C" fn close_device_callback(vdev: *mut bindings::vfio_device) {
        // SAFETY: The vfio core calls `close_device` only on open, registered devices.
        let this = unsafe { Device::<T, device::Bound>::from_vfio_raw(vdev) };
        if T::HAS_CLOSE_DEVICE {
            T::close_device(this);
        }
        this.set_bars_open(false);
        this.unfence_bars();
        // SAFETY: `vdev` is an open core device.
        unsafe { bindings::vfio_pci_core_close_device(vdev) };
    }

    pub(super) extern "C" fn mig_set_state_callback(
        vdev: *mut bindings::vfio_device,
        new: bindings::vfio_device_mig_state,
    ) -> *mut bindings::file {
        // SAFETY: The vfio core calls migration ops only on registered devices.
        let this = unsafe { Device::<T, device::Bound>::from_vfio_raw(vdev) };
        // "ERROR cannot be specified as a device state" (uAPI), not even when the device is in
        // it, which a driver's transition loop would take for a request already met.
        let res = match State::try_from(new.0) {
            Ok(State::Error) | Err(_) => Err(EINVAL),
            Ok(new) => T::migration_set_state(this, new),
        };
        match res {
            Ok(Some(file)) => ARef::into_raw(file).as_ptr().cast(),
            Ok(None) => core::ptr::null_mut(),
            Err(e) => e.to_ptr(),
        }
    }

    pub(super) extern "C" fn mig_get_state_callback(
        vdev: *mut bindings::vfio_device,
        state: *mut bindings::vfio_device_mig_state,
    ) -> c_int {
        // SAFETY: The vfio core calls migration ops only on registered devices.
        let this = unsafe { Device::<T, device::Bound>::from_vfio_raw(vdev) };
        from_result(|| {
            let cur = T::migration_get_state(this)?;
            // SAFETY: `state` is valid for writes for the call.
            unsafe { state.write(bindings::vfio_device_mig_state(cur as u32)) };
            Ok(0)
        })
    }

    pub(super) extern "C" fn mig_get_data_size_callback(
        vdev: *mut bindings::vfio_device,
        len: *mut c_ulong,
    ) -> c_int {
        // SAFETY: The vfio core calls migration ops only on registered devices.
        let this = unsafe { Device::<T, device::Bound>::from_vfio_raw(vdev) };
        from_result(|| {
            let size = T::migration_get_data_size(this)?;
            // SAFETY: `len` is valid for writes for the call.
            unsafe { len.write(size as c_ulong) };
            Ok(0)
        })
    }

    pub(super) extern "C" fn log_start_callback(
        vdev: *mut bindings::vfio_device,
        ranges: *mut bindings::rb_root_cached,
        nnodes: u32,
        page_size: *mut u64,
    ) -> c_int {
        // SAFETY: The vfio core calls log ops only on registered devices.
        let this = unsafe { Device::<T, device::Bound>::from_vfio_raw(vdev) };
        let ranges = LogRanges {
            root: ranges,
            len: nnodes,
            _p: PhantomData,
        };
        from_result(|| {
            // SAFETY: `page_size` is valid for reads and writes for the call.
            let page_size = unsafe { &mut *page_size };
            T::log_start(this, ranges, page_size)?;
            Ok(0)
        })
    }

    pub(super) extern "C" fn log_stop_callback(vdev: *mut bindings::vfio_device) -> c_int {
        // SAFETY: The vfio core calls log ops only on registered devices.
        let this = unsafe { Device::<T, device::Bound>::from_vfio_raw(vdev) };
        from_result(|| {
            T::log_stop(this)?;
            Ok(0)
        })
    }

    pub(super) extern "C" fn log_read_and_clear_callback(
        vdev: *mut bindings::vfio_device,
        iova: c_ulong,
        length: c_ulong,
        dirty: *mut bindings::iova_bitmap,
    ) -> c_int {
        // SAFETY: The vfio core calls log ops only on registered devices.
        let this = unsafe { Device::<T, device::Bound>::from_vfio_raw(vdev) };
        let mut dirty = DirtyBitmap {
            bitmap: dirty,
            _p: PhantomData,
        };
        from_result(|| {
            T::log_read_and_clear(this, iova, length, &mut dirty)?;
            Ok(0)
        })
    }

    /// The VMA ops of a BAR mmap: `vfio_pci_core`'s, with the fence of [`Device::fence_bars`],
    /// huge mappings of BARs included, and the tracking of the user's writes
    /// ([`Device::track_writes`]): `pfn_mkwrite` makes the kernel map pages of a writable
    /// mapping read-only until they are written.
    pub(super) const BAR_VM_OPS: bindings::vm_operations_struct = bindings::vm_operations_struct {
        fault: Some(Self::bar_fault_callback),
        huge_fault: if cfg!(CONFIG_ARCH_SUPPORTS_HUGE_PFNMAP) {
            Some(Self::bar_huge_fault_callback)
        } else {
            None
        },
        pfn_mkwrite: Some(Self::bar_pfn_mkwrite_callback),
        ..pin_init::zeroed()
    };

    pub(super) extern "C" fn read_callback(
        vdev: *mut bindings::vfio_device,
        buf: *mut c_char,
        count: usize,
        ppos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: The vfio core calls `read` only on open devices, with a valid `ppos`.
        let (this, pos) = unsafe { (Device::<T, device::Bound>::from_vfio_raw(vdev), *ppos) };
        // SAFETY: The arguments are the vfio core's, passed on unchanged.
        this.rw_gated(pos, || unsafe {
            bindings::vfio_pci_core_read(vdev, buf, count, ppos)
        })
    }

    pub(super) extern "C" fn write_callback(
        vdev: *mut bindings::vfio_device,
        buf: *const c_char,
        count: usize,
        ppos: *mut bindings::loff_t,
    ) -> isize {
        // SAFETY: The vfio core calls `write` only on open devices, with a valid `ppos`.
        let (this, pos) = unsafe { (Device::<T, device::Bound>::from_vfio_raw(vdev), *ppos) };
        if let Some(bar) = this.trapped_bar(pos) {
            // SAFETY: `ppos` is valid and `buf` is the user's pointer, as the vfio core gives
            // them.
            return match unsafe { this.trapped_write(bar, buf, count, ppos) } {
                // CAST: At most `count`, which the vfio core bounds by `isize::MAX`.
                Ok(n) => n as isize,
                Err(e) => e.to_errno() as isize,
            };
        }
        // SAFETY: The arguments are the vfio core's, passed on unchanged.
        let write = || unsafe { bindings::vfio_pci_core_write(vdev, buf, count, ppos) };
        if T::FENCES_BARS {
            this.rw_gated(pos, || {
                let n = write();
                this.wrote(pos, n);
                n
            })
        } else {
            write()
        }
    }

    pub(super) extern "C" fn mmap_callback(
        vdev: *mut bindings::vfio_device,
        vma: *mut bindings::vm_area_struct,
    ) -> c_int {
        // SAFETY: The arguments are the vfio core's, passed on unchanged.
        let ret = unsafe { bindings::vfio_pci_core_mmap(vdev, vma) };
        if ret == 0 {
            let shift = bindings::VFIO_PCI_OFFSET_SHIFT - bindings::PAGE_SHIFT;
            // SAFETY: `vma` is the VMA being set up, not visible to faults yet.
            unsafe {
                if (*vma).vm_pgoff >> shift < NUM_BARS as usize {
                    // A BAR mapping: `vfio_pci_core` set its private data to the core device.
                    (*vma).vm_ops = const { &Self::BAR_VM_OPS };
                }
            }
        }
        ret
    }

    pub(super) extern "C" fn bar_fault_callback(
        vmf: *mut bindings::vm_fault,
    ) -> bindings::vm_fault_t {
        Self::bar_huge_fault_callback(vmf, 0)
    }

    pub(super) extern "C" fn bar_huge_fault_callback(
        vmf: *mut bindings::vm_fault,
        order: c_uint,
    ) -> bindings::vm_fault_t {
        // SAFETY: The VMA was set up by `mmap_callback`, whose private data is the core device,
        // the first field of a `Device<T>`; the device fd the VMA holds keeps it alive and open.
        let this = unsafe {
            Device::<T, device::Bound>::from_vfio_raw(
                (*(*vmf).__bindgen_anon_1.vma).vm_private_data.cast(),
            )
        };
        // SAFETY: `vmf` is a fault on a BAR mmap of `this`, as set up by `mmap_callback`.
        unsafe { this.bar_fault(vmf, order) }
    }

    pub(super) extern "C" fn bar_pfn_mkwrite_callback(
        vmf: *mut bindings::vm_fault,
    ) -> bindings::vm_fault_t {
        // SAFETY: As in `bar_huge_fault_callback`.
        let this = unsafe {
            Device::<T, device::Bound>::from_vfio_raw(
                (*(*vmf).__bindgen_anon_1.vma).vm_private_data.cast(),
            )
        };
        // SAFETY: `vmf` is a write fault on a BAR mmap of `this`, as set up by `mmap_callback`.
        unsafe { this.bar_mkwrite(vmf) }
    }

    pub(super) extern "C" fn release_callback(vdev: *mut bindings::vfio_device) {
        // The vfio device is the first field of a `Device<T>`.
        let this = vdev.cast::<Device<T>>();
        // SAFETY: `release` is called once, when the last reference to the vfio device goes, so
        // nothing can reach `bars` or `data` any more; the ops that point here are only
        // installed once both are initialised.
        unsafe {
            core::ptr::drop_in_place(&raw mut (*this).data);
            core::ptr::drop_in_place(&raw mut (*this).bars);
        }
        // SAFETY: `vdev` is a core device being released.
        unsafe { bindings::vfio_pci_core_release_dev(vdev) };
    }
}

#[macros::kunit_tests(vfio_pci_adapter)]
mod tests {
    use super::*;
    use crate::{
        device::Core,
        device_id::IdArray,
        pci::{
            DeviceId,
            Vendor, //
        },
    };

    static IDS: IdArray<DeviceId, (), 1> =
        IdArray::new([(DeviceId::from_id_vfio_override(Vendor::QEMU, 0x11e8), &())]);

    /// A driver that leaves the BARs to `vfio_pci_core`.
    struct Plain;

    #[vtable]
    impl Driver for Plain {
        type IdInfo = ();
        type Data = ();
        const NAME: &'static CStr = c"plain";
        const ID_TABLE: pci::IdTable<()> = &IDS;

        fn probe(_: &pci::Device<Core<'_>>, _: Option<&'static ()>) -> impl PinInit<(), Error> {
            Ok(())
        }
    }

    /// A driver that fences its BARs.
    struct Fencing;

    #[vtable]
    impl Driver for Fencing {
        type IdInfo = ();
        type Data = ();
        const NAME: &'static CStr = c"fencing";
        const ID_TABLE: pci::IdTable<()> = &IDS;
        const FENCES_BARS: bool = true;

        fn probe(_: &pci::Device<Core<'_>>, _: Option<&'static ()>) -> impl PinInit<(), Error> {
            Ok(())
        }
    }

    #[test]
    fn bar_access_is_vfio_pci_s_unless_the_driver_fences() {
        // Functions compared by address: the ops are constants, so each is the function itself.
        let plain = Adapter::<Plain>::VFIO_OPS;
        let addr = |op: Option<usize>| op.unwrap_or(0);
        assert_eq!(
            addr(plain.read.map(|f| f as usize)),
            bindings::vfio_pci_core_read as usize
        );
        assert_eq!(
            addr(plain.write.map(|f| f as usize)),
            bindings::vfio_pci_core_write as usize
        );
        assert_eq!(
            addr(plain.mmap.map(|f| f as usize)),
            bindings::vfio_pci_core_mmap as usize
        );

        let fencing = Adapter::<Fencing>::VFIO_OPS;
        assert_eq!(
            addr(fencing.read.map(|f| f as usize)),
            Adapter::<Fencing>::read_callback as usize
        );
        assert_eq!(
            addr(fencing.write.map(|f| f as usize)),
            Adapter::<Fencing>::write_callback as usize
        );
        assert_eq!(
            addr(fencing.mmap.map(|f| f as usize)),
            Adapter::<Fencing>::mmap_callback as usize
        );
    }
}
