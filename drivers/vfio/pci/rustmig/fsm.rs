// SPDX-License-Identifier: GPL-2.0

//! The migration state machine: what the driver does on each arc.
//!
//! The vfio core decides the path (`vfio_mig_get_next_state`); this module says what one arc of it
//! means for the device, as a short list of [`Step`]s that the driver carries out in order. It
//! knows nothing of the hardware and is tested by KUnit against a model of the uAPI's states.

use kernel::{
    prelude::*,
    vfio::migration::State, //
};

/// One thing the driver does on an arc.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// Stop initiating peer to peer DMA and interrupts (entering a P2P state).
    Quiesce,
    /// Undo [`Step::Quiesce`].
    Unquiesce,
    /// Stop the device: fence off the user's BAR access, then let the backend stop it.
    Stop,
    /// Undo [`Step::Stop`]: let the backend start the device, then lift the fence.
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
pub(crate) fn steps(from: State, to: State) -> Result<&'static [Step]> {
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

#[kunit_tests(rustmig_fsm)]
mod tests {
    use super::*;
    use kernel::vfio::migration::State::*;

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

    const ALL: [State; 8] = [
        Error, Stop, Running, StopCopy, Resuming, RunningP2p, PreCopy, PreCopyP2p,
    ];

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
        for from in ALL {
            for to in ALL {
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
        for s in ALL {
            assert!(steps(Error, s) == Err(EINVAL));
            assert!(steps(s, Error) == Err(EINVAL));
        }
    }
}
