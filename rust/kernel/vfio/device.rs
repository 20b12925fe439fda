// SPDX-License-Identifier: GPL-2.0

//! The VFIO device: what the vfio core knows of every device it hands to userspace, whatever
//! its bus.
//!
//! C header: [`include/linux/vfio.h`](srctree/include/linux/vfio.h)

use super::migration::{
    Flags,
    State, //
};
use crate::{
    bindings,
    error::to_result,
    prelude::*,
    types::Opaque, //
};

/// A VFIO device, `struct vfio_device`.
///
/// Bus drivers embed it in their own device type (e.g. [`super::pci::Device`]), which gives it
/// out by reference: it lives at least as long as the reference.
///
/// # Invariants
///
/// `self.0` is a valid `struct vfio_device` initialised by `vfio_init_device` (through
/// `_vfio_alloc_device`), whose `mig_ops` and `migration_flags` no longer change.
#[repr(transparent)]
pub struct Device(Opaque<bindings::vfio_device>);

// SAFETY: The fields read through `Device` are either set before registration and constant
// since, or written by the vfio core under its own locking and read once.
unsafe impl Send for Device {}
// SAFETY: See the `Send` implementation.
unsafe impl Sync for Device {}

impl Device {
    /// Borrows a `struct vfio_device`.
    ///
    /// # Safety
    ///
    /// `ptr` must point to a `struct vfio_device` that satisfies the type invariants for at least
    /// `'a`.
    pub(crate) unsafe fn from_raw<'a>(ptr: *mut bindings::vfio_device) -> &'a Self {
        // SAFETY: `Device` is a transparent wrapper of `struct vfio_device`; the caller
        // guarantees it is valid for `'a`.
        unsafe { &*ptr.cast::<Self>() }
    }

    /// Returns the raw `struct vfio_device`.
    pub fn as_raw(&self) -> *mut bindings::vfio_device {
        self.0.get()
    }

    /// Returns the migration features the driver advertised for the device.
    pub fn migration_flags(&self) -> Flags {
        // SAFETY: By the type invariants the device is valid and the field no longer changes.
        Flags::from_bits_truncate(unsafe { (*self.as_raw()).migration_flags })
    }

    /// Returns the next arc on the way from `cur` to `new`, by the vfio core's state machine for
    /// the device's features (`vfio_mig_get_next_state`).
    ///
    /// Returns `new` itself when `cur -> new` is a single arc, and [`EINVAL`] when either state
    /// is not supported by the device's features, `cur` is [`State::Error`] (only a reset leaves
    /// it), or no path exists (e.g. STOP_COPY -> PRE_COPY).
    pub fn mig_next_state(&self, cur: State, new: State) -> Result<State> {
        let flags = self.migration_flags();
        // The core WARNs on a current state the device cannot be in: refuse it here.
        if !cur.is_supported(flags) || !new.is_supported(flags) {
            return Err(EINVAL);
        }
        let mut next = bindings::vfio_device_mig_state::VFIO_DEVICE_STATE_ERROR;
        // SAFETY: The device is valid and its features support both states, so the function
        // neither WARNs nor indexes out of its tables.
        to_result(unsafe {
            bindings::vfio_mig_get_next_state(
                self.as_raw(),
                bindings::vfio_device_mig_state(cur as u32),
                bindings::vfio_device_mig_state(new as u32),
                &mut next,
            )
        })?;
        State::try_from(next.0)
    }

    /// Returns whether userspace opted in to the v2 `VFIO_MIG_GET_PRECOPY_INFO` behaviour
    /// (`VFIO_DEVICE_FEATURE_MIG_PRECOPY_INFOv2`) since the device was opened.
    pub fn precopy_info_v2(&self) -> bool {
        // SAFETY: The device is valid; the core writes the byte from the feature ioctl, so it is
        // read once, without assuming it stable.
        unsafe { core::ptr::read_volatile(&raw const (*self.as_raw()).precopy_info_v2) != 0 }
    }
}
