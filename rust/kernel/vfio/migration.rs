// SPDX-License-Identifier: GPL-2.0

//! VFIO migration v2: device states, migration features, and the migration core.
//!
//! A driver that supports migration advertises [`Flags`] and moves the device between
//! [`State`]s when userspace asks. The vfio core decides the path: a request from `cur` to `new`
//! is carried out one arc at a time, each arc given by
//! [`Device::mig_next_state`](super::Device::mig_next_state), which follows the uAPI's state
//! machine for the device's features (the shortest path, never through a saving state that was
//! not asked for).
//!
//! Everything the uAPI says of a migrating device that is not about the device itself is
//! implemented here, once:
//!
//! - [`StateMachine`] serialises the requests, walks the arcs, moves the device to
//!   [`State::Error`] when an arc fails, and takes resets the way `vfio_pci_core` reports them
//!   (under its `memory_lock`, so never waiting for the state lock: a reset that finds the lock
//!   held is applied by its holder before it unlocks);
//! - [`Session`] is the data file of a saving or resuming state: the end of the stream in
//!   PRE_COPY (`ENOMSG`) and in STOP_COPY (`0`), `ENODEV` once the session ended, `poll`,
//!   `VFIO_MIG_GET_PRECOPY_INFO` with the v2 flags, no position (`ESPIPE`), and a user copy that
//!   faults part way.
//!
//! A driver implements [`Migration`]: what each arc does to the device (quiesce, stop, start...)
//! and a [`Saver`] that produces the stream and a [`Loader`] that consumes it.
//!
//! C header: [`include/uapi/linux/vfio.h`](srctree/include/uapi/linux/vfio.h)

use crate::{
    bindings,
    prelude::*, //
};

mod machine;
mod session;

pub use machine::{
    Migration,
    StateMachine, //
};
pub use session::{
    Incoming,
    Loader,
    Part,
    Pending,
    Saver,
    Session, //
};

/// A migration state of a device, `enum vfio_device_mig_state`.
///
/// # Examples
///
/// ```
/// use kernel::vfio::migration::State;
///
/// assert_eq!(State::try_from(3), Ok(State::StopCopy));
/// assert_eq!(State::StopCopy as u32, 3);
/// assert_eq!(State::try_from(8), Err(EINVAL));
/// for raw in 0..8u32 {
///     assert_eq!(State::try_from(raw).map(|s| s as u32), Ok(raw));
/// }
/// ```
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum State {
    /// The device failed a transition; only `VFIO_DEVICE_RESET` leaves this state.
    Error = bindings::vfio_device_mig_state::VFIO_DEVICE_STATE_ERROR.0,
    /// The device does not run, change its state, do DMA or raise interrupts.
    Stop = bindings::vfio_device_mig_state::VFIO_DEVICE_STATE_STOP.0,
    /// The device runs normally.
    Running = bindings::vfio_device_mig_state::VFIO_DEVICE_STATE_RUNNING.0,
    /// The device is stopped and its state is read from the data file.
    StopCopy = bindings::vfio_device_mig_state::VFIO_DEVICE_STATE_STOP_COPY.0,
    /// The device is stopped and its state is written through the data file.
    Resuming = bindings::vfio_device_mig_state::VFIO_DEVICE_STATE_RESUMING.0,
    /// The device runs but does not start peer-to-peer DMA.
    RunningP2p = bindings::vfio_device_mig_state::VFIO_DEVICE_STATE_RUNNING_P2P.0,
    /// The device runs while its state is read in advance.
    PreCopy = bindings::vfio_device_mig_state::VFIO_DEVICE_STATE_PRE_COPY.0,
    /// As [`State::PreCopy`], without peer-to-peer DMA.
    PreCopyP2p = bindings::vfio_device_mig_state::VFIO_DEVICE_STATE_PRE_COPY_P2P.0,
}

// `TryFrom<u32>` indexes `State::ALL` with the uAPI's number.
const _: () = {
    let mut i = 0;
    while i < State::ALL.len() {
        assert!(State::ALL[i] as usize == i);
        i += 1;
    }
};

impl TryFrom<u32> for State {
    type Error = Error;

    fn try_from(raw: u32) -> Result<Self> {
        // The uAPI numbers the states 0 to 7, in the order of `ALL`.
        let i = usize::try_from(raw).map_err(|_| EINVAL)?;
        State::ALL.get(i).copied().ok_or(EINVAL)
    }
}

impl State {
    /// Every state, in uAPI order.
    pub const ALL: [State; 8] = [
        State::Error,
        State::Stop,
        State::Running,
        State::StopCopy,
        State::Resuming,
        State::RunningP2p,
        State::PreCopy,
        State::PreCopyP2p,
    ];

    /// Returns the uAPI's name of the state, without `VFIO_DEVICE_STATE_`.
    pub const fn name(self) -> &'static str {
        match self {
            State::Error => "ERROR",
            State::Stop => "STOP",
            State::Running => "RUNNING",
            State::StopCopy => "STOP_COPY",
            State::Resuming => "RESUMING",
            State::RunningP2p => "RUNNING_P2P",
            State::PreCopy => "PRE_COPY",
            State::PreCopyP2p => "PRE_COPY_P2P",
        }
    }

    /// Returns the features a device needs to support this state (`None` for
    /// [`State::Error`], which no request may name).
    pub const fn required(self) -> Option<Flags> {
        match self {
            State::Error => None,
            State::Stop | State::Running | State::StopCopy | State::Resuming => {
                Some(Flags::STOP_COPY)
            }
            State::RunningP2p => Some(Flags::STOP_COPY.union(Flags::P2P)),
            State::PreCopy => Some(Flags::STOP_COPY.union(Flags::PRE_COPY)),
            State::PreCopyP2p => Some(Flags::STOP_COPY.union(Flags::P2P).union(Flags::PRE_COPY)),
        }
    }

    /// Returns whether a device with `flags` supports this state.
    pub const fn is_supported(self, flags: Flags) -> bool {
        match self.required() {
            Some(req) => flags.contains(req),
            None => false,
        }
    }

    /// Returns whether the device's state is read through a data file in this state.
    pub const fn is_saving(self) -> bool {
        matches!(self, State::StopCopy | State::PreCopy | State::PreCopyP2p)
    }

    /// Returns whether the device runs (possibly without peer-to-peer DMA) in this state.
    pub const fn is_running(self) -> bool {
        matches!(
            self,
            State::Running | State::RunningP2p | State::PreCopy | State::PreCopyP2p
        )
    }
}

/// The migration features of a device, the `VFIO_MIGRATION_*` flags.
///
/// # Invariants
///
/// Only the bits of the three known features are set.
///
/// # Examples
///
/// ```
/// use kernel::vfio::migration::Flags;
///
/// let all = Flags::STOP_COPY.union(Flags::P2P).union(Flags::PRE_COPY);
/// assert_eq!(all.bits(), 7);
/// assert!(all.contains(Flags::P2P));
/// assert!(!Flags::STOP_COPY.contains(Flags::PRE_COPY));
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags(u32);

impl Flags {
    /// No migration support.
    pub const NONE: Flags = Flags(0);
    /// STOP, RUNNING, STOP_COPY and RESUMING: the mandatory base.
    pub const STOP_COPY: Flags = Flags(bindings::VFIO_MIGRATION_STOP_COPY);
    /// RUNNING_P2P: the device can stop peer-to-peer DMA while running.
    pub const P2P: Flags = Flags(bindings::VFIO_MIGRATION_P2P);
    /// PRE_COPY: the device's state can be read while it runs.
    pub const PRE_COPY: Flags = Flags(bindings::VFIO_MIGRATION_PRE_COPY);

    /// Returns the flags of both `self` and `other`.
    pub const fn union(self, other: Flags) -> Flags {
        // INVARIANT: Both have only known bits.
        Flags(self.0 | other.0)
    }

    /// Returns whether every flag of `other` is in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }

    /// Returns the raw `VFIO_MIGRATION_*` bits.
    pub const fn bits(self) -> u32 {
        self.0
    }

    /// Returns the known flags of the raw `bits`.
    pub const fn from_bits_truncate(bits: u32) -> Flags {
        // INVARIANT: Only the known bits are kept.
        Flags(bits & Flags::STOP_COPY.union(Flags::P2P).union(Flags::PRE_COPY).0)
    }
}
