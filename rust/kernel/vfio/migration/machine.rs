// SPDX-License-Identifier: GPL-2.0

//! The migration state machine of a device: its state lock, the walk from state to state, the
//! ERROR state and resets.
//!
//! # Locking
//!
//! The state lock ([`StateMachine`]'s mutex) serialises requests. Its order: the state lock,
//! then a session's I/O lock, then whatever the driver's actions take (for a vfio-pci device,
//! `memory_lock`). `vfio_pci_core` reports a reset under `memory_lock`, so
//! [`StateMachine::reset_done`] never waits for the state lock: it ends the current session at
//! once (a spinlock guards which one that is) and, when the state lock is held, leaves the rest
//! to its holder, which applies it before unlocking.

use super::{
    session::{
        Loader,
        Saver,
        Session, //
    },
    State,
};
use crate::{
    fs::File,
    prelude::*,
    sync::{
        aref::ARef,
        lock::{
            mutex::MutexBackend,
            Guard, //
        },
        static_lock_class,
        Arc,
        Mutex,
        SpinLock, //
    },
    vfio, //
};

// The locks' names are statics: the code that initialises the locks is instantiated in each
// driver's module, while their lockdep classes are the kernel crate's statics, and lockdep
// requires one name (one address) per class.
static INNER_NAME: &CStr = c"vfio::migration::StateMachine::inner";
static RESET_NAME: &CStr = c"vfio::migration::StateMachine::reset";

/// What a driver does for the migration of its devices.
///
/// The driver says what each arc of the state machine does to the device; [`StateMachine`]
/// decides when, and [`Session`] moves the bytes that a [`Saver`] produces or a [`Loader`]
/// consumes. Every action runs with the state lock held; one that fails moves the device to
/// [`State::Error`], which only a reset leaves.
///
/// The actions a device needs depend on its features: a device without P2P is quiesced and
/// stopped together (RUNNING -> STOP calls [`Migration::quiesce`] then [`Migration::stop`]).
#[vtable]
pub trait Migration: Sized + Send + Sync + 'static {
    /// The device handed to the actions, e.g. [`vfio::pci::Device<Self>`].
    type Device: AsRef<vfio::Device> + Send + Sync;

    /// What produces the stream of a saving session.
    type Saver: Saver<Self>;

    /// What consumes the stream of a resuming session.
    type Loader: Loader<Self>;

    /// The name of the data files (their anonymous inode's).
    const DATA_FILE_NAME: &'static CStr;

    /// The device stops initiating peer-to-peer DMA and interrupts (entering a P2P state, or
    /// on the way to STOP).
    fn quiesce(_dev: &Self::Device) -> Result {
        Ok(())
    }

    /// Undoes [`Migration::quiesce`].
    fn unquiesce(_dev: &Self::Device) -> Result {
        Ok(())
    }

    /// The device stops: it no longer changes its state, does DMA or raises interrupts.
    fn stop(_dev: &Self::Device) -> Result {
        Ok(())
    }

    /// Undoes [`Migration::stop`].
    fn start(_dev: &Self::Device) -> Result {
        Ok(())
    }

    /// Opens a saving session: STOP -> STOP_COPY (`stop_copy`), or the device enters PRE_COPY.
    fn save(dev: &Self::Device, stop_copy: bool) -> Result<Self::Saver>;

    /// Opens a resuming session: STOP -> RESUMING.
    fn resume(dev: &Self::Device) -> Result<Self::Loader>;

    /// Returns the length of the stream the device would save now, for
    /// `VFIO_DEVICE_FEATURE_MIG_DATA_SIZE` outside a saving state.
    fn data_size(dev: &Self::Device) -> Result<u64>;

    /// An arc failed with `err`: the device is moving to [`State::Error`]. For messages, and
    /// for keeping the user away from a device whose state may be half written.
    fn failed(_dev: &Self::Device, _from: State, _to: State, _err: Error) {}

    /// The device was reset, or closed: it is back in RUNNING with no session.
    fn reset(_dev: &Self::Device) {}

    /// The arc `from -> to` succeeded, under the state lock: for statistics.
    fn arc_done(_dev: &Self::Device, _from: State, _to: State) {}
}

/// One thing the state machine does on an arc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Step {
    /// [`Migration::quiesce`].
    Quiesce,
    /// [`Migration::unquiesce`].
    Unquiesce,
    /// [`Migration::stop`].
    Stop,
    /// [`Migration::start`].
    Start,
    /// Open a saving session that hands out only the pre-copy part of the stream.
    SavePrecopy,
    /// Open a saving session that hands out the whole stream.
    SaveAll,
    /// Let the open saving session hand out the rest of the stream.
    FinishSave,
    /// Open a resuming session.
    Resume,
    /// Apply the end of the resuming session: fails unless the stream was complete and valid.
    FinishResume,
    /// End the open session: its data file returns `ENODEV` from now on.
    EndSession,
}

/// Returns the steps of the arc `from -> to`, or [`EINVAL`] when it is not an arc of the v2
/// migration state machine.
fn steps(from: State, to: State) -> Result<&'static [Step]> {
    use State::*;
    use Step as S;
    Ok(match (from, to) {
        (Running, RunningP2p) | (PreCopy, PreCopyP2p) => &[S::Quiesce],
        (RunningP2p, Running) | (PreCopyP2p, PreCopy) => &[S::Unquiesce],
        (RunningP2p, Stop) => &[S::Stop],
        (Stop, RunningP2p) => &[S::Start],
        // The arcs of a device without P2P.
        (Running, Stop) => &[S::Quiesce, S::Stop],
        (Stop, Running) => &[S::Start, S::Unquiesce],
        (PreCopy, StopCopy) => &[S::Quiesce, S::Stop, S::FinishSave],
        (Stop, StopCopy) => &[S::SaveAll],
        (Running, PreCopy) | (RunningP2p, PreCopyP2p) => &[S::SavePrecopy],
        (PreCopyP2p, StopCopy) => &[S::Stop, S::FinishSave],
        (StopCopy, Stop) | (PreCopy, Running) | (PreCopyP2p, RunningP2p) => &[S::EndSession],
        (Stop, Resuming) => &[S::Resume],
        (Resuming, Stop) => &[S::FinishResume, S::EndSession],
        _ => return Err(EINVAL),
    })
}

/// The migration state machine of one device, embedded in the driver's data of the device.
///
/// The driver's `migration_set_state`, `migration_get_state`, `migration_get_data_size`,
/// `reset_done` and `close_device` hand their calls to it.
///
/// # Examples
///
/// ```
/// use kernel::vfio::migration::{Migration, StateMachine};
///
/// #[pin_data]
/// struct MyDeviceData<M: Migration> {
///     #[pin]
///     machine: StateMachine<M>,
/// }
///
/// fn init<M: Migration>() -> impl PinInit<MyDeviceData<M>> {
///     pin_init!(MyDeviceData { machine <- StateMachine::new() })
/// }
/// ```
#[pin_data]
pub struct StateMachine<M: Migration> {
    /// The state lock.
    #[pin]
    inner: Mutex<Inner<M>>,
    /// What a reset must reach without the state lock.
    #[pin]
    reset: SpinLock<ResetSlot<M>>,
}

/// The state behind the state lock.
struct Inner<M: Migration> {
    /// The migration state.
    state: State,
    /// The session (saving or resuming) of the current state, if any.
    session: Option<Arc<Session<M>>>,
}

/// What a reset reaches under [`StateMachine::reset`].
struct ResetSlot<M: Migration> {
    /// A reset happened while the state lock was held: its holder applies it.
    pending: bool,
    /// The session of the current state, which a reset ends at once.
    session: Option<Arc<Session<M>>>,
}

/// The state lock held; dropping it applies a reset that came meanwhile, then unlocks.
struct Locked<'a, M: Migration> {
    machine: &'a StateMachine<M>,
    dev: &'a M::Device,
    guard: Option<Guard<'a, Inner<M>, MutexBackend>>,
}

impl<M: Migration> Locked<'_, M> {
    /// Returns the state.
    fn inner(&mut self) -> &mut Inner<M> {
        // INVARIANT: `guard` is `Some` until `drop`.
        self.guard.as_deref_mut().unwrap_or_else(|| unreachable!())
    }

    /// Makes `session` the session of the current state, ending the one before, if any.
    fn set_session(&mut self, session: Option<Arc<Session<M>>>) {
        let old = core::mem::replace(&mut self.inner().session, session.clone());
        let old_slot = core::mem::replace(&mut self.machine.reset.lock().session, session);
        if let Some(s) = &old {
            s.end();
        }
        // The last references may go here, with no spinlock held.
        drop((old, old_slot));
    }

    /// Returns to RUNNING with no session: after a reset, or when the device is closed.
    fn reset(&mut self) {
        self.set_session(None);
        self.inner().state = State::Running;
        M::reset(self.dev);
    }

    /// Carries out the steps of the arc `from -> to`.
    fn arc(&mut self, from: State, to: State) -> Result<Option<ARef<File>>> {
        let dev = self.dev;
        let mut file = None;
        for &step in steps(from, to)? {
            match step {
                Step::Quiesce => M::quiesce(dev)?,
                Step::Unquiesce => M::unquiesce(dev)?,
                Step::Stop => M::stop(dev)?,
                Step::Start => M::start(dev)?,
                Step::SavePrecopy | Step::SaveAll => {
                    let stop_copy = step == Step::SaveAll;
                    let saver = M::save(dev, stop_copy)?;
                    let v2 = dev.as_ref().precopy_info_v2();
                    let (s, f) = Session::save(saver, stop_copy, v2)?;
                    self.set_session(Some(s));
                    file = Some(f);
                }
                Step::Resume => {
                    let (s, f) = Session::resume(M::resume(dev)?)?;
                    self.set_session(Some(s));
                    file = Some(f);
                }
                Step::FinishSave => self.inner().session.as_ref().ok_or(EINVAL)?.finish_save(),
                Step::FinishResume => self
                    .inner()
                    .session
                    .as_ref()
                    .ok_or(EINVAL)?
                    .finish_resume()?,
                Step::EndSession => self.set_session(None),
            }
        }
        Ok(file)
    }
}

impl<M: Migration> Drop for Locked<'_, M> {
    fn drop(&mut self) {
        loop {
            let mut slot = self.machine.reset.lock();
            if slot.pending {
                slot.pending = false;
                drop(slot);
                self.reset();
                continue;
            }
            // Unlock with the slot's lock held: a reset that comes later finds the state lock
            // free and applies itself.
            self.guard = None;
            return;
        }
    }
}

impl<M: Migration> StateMachine<M> {
    /// Creates the state machine of a device in RUNNING, the state of a device just opened.
    pub fn new() -> impl PinInit<Self> {
        pin_init!(StateMachine {
            inner <- Mutex::new(
                Inner {
                    state: State::Running,
                    session: None,
                },
                INNER_NAME,
                static_lock_class!(),
            ),
            reset <- SpinLock::new(
                ResetSlot {
                    pending: false,
                    session: None,
                },
                RESET_NAME,
                static_lock_class!(),
            ),
        })
    }

    /// Takes the state lock.
    fn lock<'a>(&'a self, dev: &'a M::Device) -> Locked<'a, M> {
        Locked {
            machine: self,
            dev,
            guard: Some(self.inner.lock()),
        }
    }

    /// Moves the device to `new`, arc by arc (`VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`).
    ///
    /// Returns the data file of a saving or resuming `new`. A request the state machine refuses
    /// (no path, a state the device does not support, or the device in ERROR) fails with
    /// [`EINVAL`] and changes nothing; an arc that fails moves the device to [`State::Error`]
    /// and fails the request with the arc's error.
    pub fn set_state(&self, dev: &M::Device, new: State) -> Result<Option<ARef<File>>> {
        let mut g = self.lock(dev);
        let mut cur = g.inner().state;
        let mut file = None;
        while cur != new {
            // The shortest path never passes through a state that hands out a file.
            if file.is_some() {
                return Err(EINVAL);
            }
            let next = dev.as_ref().mig_next_state(cur, new)?;
            match g.arc(cur, next) {
                Ok(f) => {
                    file = f;
                    M::arc_done(dev, cur, next);
                    cur = next;
                    g.inner().state = cur;
                }
                Err(e) => {
                    // A failed arc leaves the device in an unknown state.
                    M::failed(dev, cur, next, e);
                    g.set_session(None);
                    g.inner().state = State::Error;
                    return Err(e);
                }
            }
        }
        Ok(file)
    }

    /// Returns the device's migration state (`VFIO_DEVICE_FEATURE_MIG_DEVICE_STATE`).
    pub fn state(&self, dev: &M::Device) -> State {
        self.lock(dev).inner().state
    }

    /// Returns the bytes left to read in a saving state, else the length of the stream the
    /// device would save now (`VFIO_DEVICE_FEATURE_MIG_DATA_SIZE`).
    pub fn data_size(&self, dev: &M::Device) -> Result<usize> {
        let mut g = self.lock(dev);
        let inner = g.inner();
        let size = match &inner.session {
            Some(s) if inner.state.is_saving() => s.remaining(),
            _ => M::data_size(dev)?,
        };
        usize::try_from(size).map_err(|_| EOVERFLOW)
    }

    /// The device was reset (`reset_done`): it returns to RUNNING and its session ends.
    ///
    /// May be called under locks the state lock's holders take (a vfio-pci device's
    /// `memory_lock`): never waits for the state lock. The session ends at once; the rest is
    /// done now if the state lock is free, else by its holder before it unlocks.
    pub fn reset_done(&self, dev: &M::Device) {
        let mut slot = self.reset.lock();
        slot.pending = true;
        if let Some(s) = &slot.session {
            s.end();
        }
        let Some(guard) = self.inner.try_lock() else {
            return;
        };
        drop(slot);
        // Applies the reset as it unlocks.
        drop(Locked {
            machine: self,
            dev,
            guard: Some(guard),
        });
    }

    /// The device was closed: it returns to RUNNING and its session ends.
    pub fn close(&self, dev: &M::Device) {
        self.lock(dev).reset();
    }
}

#[macros::kunit_tests(vfio_migration_steps)]
mod tests {
    use super::*;
    use State::*;

    /// What the uAPI says holds in each state.
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    struct Model {
        quiesced: bool,
        stopped: bool,
        /// 0: no session, 1: saving (pre-copy part), 2: saving (whole), 3: resuming.
        session: u8,
    }

    fn model(s: State) -> Model {
        let (quiesced, stopped, session) = match s {
            Running => (false, false, 0),
            RunningP2p => (true, false, 0),
            Stop => (true, true, 0),
            StopCopy => (true, true, 2),
            Resuming => (true, true, 3),
            PreCopy => (false, false, 1),
            PreCopyP2p => (true, false, 1),
            Error => (true, true, 0),
        };
        Model {
            quiesced,
            stopped,
            session,
        }
    }

    /// Applies a step to the model, checking its precondition.
    fn apply(m: &mut Model, s: Step) -> bool {
        let ok = match s {
            Step::Quiesce => !m.quiesced && !m.stopped,
            Step::Unquiesce => m.quiesced && !m.stopped,
            Step::Stop => m.quiesced && !m.stopped,
            Step::Start => m.stopped && m.session == 0,
            Step::SavePrecopy => m.session == 0 && !m.stopped,
            Step::SaveAll => m.session == 0 && m.stopped,
            Step::FinishSave => m.session == 1 && m.stopped,
            Step::Resume => m.session == 0 && m.stopped,
            Step::FinishResume => m.session == 3,
            Step::EndSession => m.session != 0,
        };
        match s {
            Step::Quiesce => m.quiesced = true,
            Step::Unquiesce => m.quiesced = false,
            Step::Stop => m.stopped = true,
            Step::Start => m.stopped = false,
            Step::SavePrecopy => m.session = 1,
            Step::SaveAll | Step::FinishSave => m.session = 2,
            Step::Resume => m.session = 3,
            Step::FinishResume => {}
            Step::EndSession => m.session = 0,
        }
        ok
    }

    /// The arcs of the uAPI's state machine (include/uapi/linux/vfio.h).
    const ARCS: [(State, State); 18] = [
        (Running, Stop),
        (Stop, Running),
        (Stop, StopCopy),
        (StopCopy, Stop),
        (Stop, Resuming),
        (Resuming, Stop),
        (Running, RunningP2p),
        (RunningP2p, Running),
        (RunningP2p, Stop),
        (Stop, RunningP2p),
        (Running, PreCopy),
        (PreCopy, Running),
        (PreCopy, PreCopyP2p),
        (PreCopyP2p, PreCopy),
        (PreCopyP2p, RunningP2p),
        (RunningP2p, PreCopyP2p),
        (PreCopyP2p, StopCopy),
        (PreCopy, StopCopy),
    ];

    #[test]
    fn every_uapi_arc_leads_from_its_state_to_the_next() -> Result {
        for (from, to) in ARCS {
            let mut m = model(from);
            for &s in steps(from, to)? {
                let before = m;
                let allowed = apply(&mut m, s);
                if !allowed {
                    pr_err!("{from:?} -> {to:?}: {s:?} is not allowed in {before:?}\n");
                }
                assert!(allowed);
            }
            if m != model(to) {
                pr_err!("{from:?} -> {to:?} ends in {m:?}\n");
            }
            assert!(m == model(to));
        }
        Ok(())
    }

    #[test]
    fn pairs_that_are_not_arcs_are_refused() {
        let mut refused = 0;
        for from in State::ALL {
            for to in State::ALL {
                if !ARCS.contains(&(from, to)) {
                    if steps(from, to).is_ok() {
                        pr_err!("{from:?} -> {to:?} is not an arc but has steps\n");
                    }
                    assert!(steps(from, to) == Err(EINVAL));
                    refused += 1;
                }
            }
        }
        assert_eq!(refused, 64 - ARCS.len());
    }

    #[test]
    fn error_is_neither_left_nor_entered_by_an_arc() {
        for s in State::ALL {
            assert!(steps(Error, s) == Err(EINVAL));
            assert!(steps(s, Error) == Err(EINVAL));
        }
    }
}
