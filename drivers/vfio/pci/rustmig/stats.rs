// SPDX-License-Identifier: GPL-2.0

//! What a device's migrations did, for people: the file `rustmig` in the vfio core's debugfs
//! directory of the device (`vfio/<device>/migration/rustmig`, with `CONFIG_VFIO_DEBUGFS`).
//!
//! The counters only grow while the driver is bound; nothing here is uAPI.

use core::fmt::{
    self,
    Write, //
};
use kernel::{
    new_mutex,
    prelude::*,
    seq_file::SeqFile,
    seq_print,
    sync::{
        atomic::{
            Atomic,
            Relaxed, //
        },
        Mutex,
    },
    time::{
        Delta,
        Instant,
        Monotonic, //
    },
    vfio::migration::State,
};

/// The longest reason kept for the last refused stream; a longer one is cut.
const REASON: usize = 120;

/// Text of at most [`REASON`] bytes, cut at a character boundary.
struct Reason {
    buf: [u8; REASON],
    len: usize,
}

impl Reason {
    const fn new() -> Self {
        Self {
            buf: [0; REASON],
            len: 0,
        }
    }

    fn as_str(&self) -> &str {
        // Only whole characters of `str`s are copied in (`write_str`).
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("?")
    }
}

impl Write for Reason {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for c in s.chars() {
            let mut b = [0u8; 4];
            let c = c.encode_utf8(&mut b).as_bytes();
            if self.len + c.len() > REASON {
                break;
            }
            self.buf[self.len..self.len + c.len()].copy_from_slice(c);
            self.len += c.len();
        }
        Ok(())
    }
}

/// What changes under [`Stats::last`].
struct Last {
    /// Why the stream being loaded is being refused, from the check that refused it.
    noted: Option<Reason>,
    /// The last refused stream: its errno and why.
    refusal: Option<(Error, Reason)>,
    /// When the device entered STOP_COPY, while it is there.
    stop_copy_since: Option<Instant<Monotonic>>,
    /// How long the last STOP_COPY lasted.
    stop_copy: Option<Delta>,
}

/// A device's migration statistics.
#[pin_data]
pub(crate) struct Stats {
    state: Atomic<u32>,
    transitions: Atomic<u64>,
    saved: Atomic<u64>,
    loaded: Atomic<u64>,
    refused: Atomic<u64>,
    passes: Atomic<u64>,
    dirty_pages: Atomic<u64>,
    #[pin]
    last: Mutex<Last>,
}

impl Stats {
    pub(crate) fn new() -> impl PinInit<Self> {
        pin_init!(Stats {
            state: Atomic::new(State::Running as u32),
            transitions: Atomic::new(0),
            saved: Atomic::new(0),
            loaded: Atomic::new(0),
            refused: Atomic::new(0),
            passes: Atomic::new(0),
            dirty_pages: Atomic::new(0),
            last <- new_mutex!(
                Last {
                    noted: None,
                    refusal: None,
                    stop_copy_since: None,
                    stop_copy: None,
                },
                "rustmig::Stats::last"
            ),
        })
    }

    /// The arc `from -> to` succeeded.
    pub(crate) fn arc(&self, from: State, to: State) {
        self.transitions.fetch_add(1, Relaxed);
        self.state.store(to as u32, Relaxed);
        // Only the arcs into and out of STOP_COPY take the lock.
        if to == State::StopCopy {
            self.last.lock().stop_copy_since = Some(Instant::now());
        } else if from == State::StopCopy {
            let mut last = self.last.lock();
            last.stop_copy = last.stop_copy_since.take().map(|t| t.elapsed());
        }
    }

    /// The device was reset or closed: it runs again.
    pub(crate) fn reset(&self) {
        self.state.store(State::Running as u32, Relaxed);
        self.last.lock().stop_copy_since = None;
    }

    /// `n` bytes of the stream were saved.
    pub(crate) fn saved(&self, n: usize) {
        // CAST: `usize` fits in `u64`.
        self.saved.fetch_add(n as u64, Relaxed);
    }

    /// `n` bytes of a stream were loaded.
    pub(crate) fn loaded(&self, n: usize) {
        // CAST: `usize` fits in `u64`.
        self.loaded.fetch_add(n as u64, Relaxed);
    }

    /// A pre-copy pass after the first began, of `pages` written pages.
    pub(crate) fn pass(&self, pages: usize) {
        self.passes.fetch_add(1, Relaxed);
        // CAST: `usize` fits in `u64`.
        self.dirty_pages.fetch_add(pages as u64, Relaxed);
    }

    /// Notes why the stream being loaded is refused, for [`Stats::refused`].
    pub(crate) fn note(&self, why: fmt::Arguments<'_>) {
        let mut r = Reason::new();
        // `Reason` cuts what does not fit and never fails.
        let _ = r.write_fmt(why);
        self.last.lock().noted = Some(r);
    }

    /// A stream was refused with `e`: why, as noted, or what `e` means for a stream.
    pub(crate) fn refused(&self, e: Error) {
        self.refused.fetch_add(1, Relaxed);
        let mut last = self.last.lock();
        let why = last.noted.take().unwrap_or_else(|| {
            let mut r = Reason::new();
            let _ = r.write_str(meaning(e));
            r
        });
        last.refusal = Some((e, why));
    }

    /// Writes the statistics, one `name: value` a line.
    pub(crate) fn show(&self, out: &SeqFile) {
        let state = State::try_from(self.state.load(Relaxed)).unwrap_or(State::Error);
        seq_print!(out, "state: {}\n", state.name());
        seq_print!(out, "transitions: {}\n", self.transitions.load(Relaxed));
        seq_print!(out, "bytes_saved: {}\n", self.saved.load(Relaxed));
        seq_print!(out, "bytes_loaded: {}\n", self.loaded.load(Relaxed));
        seq_print!(out, "streams_refused: {}\n", self.refused.load(Relaxed));
        let last = self.last.lock();
        match &last.refusal {
            Some((e, why)) => match errno_name(*e) {
                Some(name) => seq_print!(out, "last_refusal: {name}: {}\n", why.as_str()),
                None => seq_print!(
                    out,
                    "last_refusal: errno {}: {}\n",
                    -e.to_errno(),
                    why.as_str()
                ),
            },
            None => seq_print!(out, "last_refusal: none\n"),
        }
        seq_print!(out, "precopy_passes: {}\n", self.passes.load(Relaxed));
        seq_print!(
            out,
            "precopy_dirty_pages: {}\n",
            self.dirty_pages.load(Relaxed)
        );
        match last.stop_copy {
            Some(d) => seq_print!(out, "last_stop_copy_us: {}\n", d.as_micros_ceil()),
            None => seq_print!(out, "last_stop_copy_us: none\n"),
        }
    }
}

/// The name of an errno that a refused stream gets (without `CONFIG_SYMBOLIC_ERRNAME`,
/// `Error`'s `Debug` only has the number).
fn errno_name(e: Error) -> Option<&'static str> {
    [
        (EBADMSG, "EBADMSG"),
        (EPROTO, "EPROTO"),
        (EPROTONOSUPPORT, "EPROTONOSUPPORT"),
        (EOPNOTSUPP, "EOPNOTSUPP"),
        (EINVAL, "EINVAL"),
        (EIO, "EIO"),
        (ENOMEM, "ENOMEM"),
        (EFAULT, "EFAULT"),
        (EBUSY, "EBUSY"),
        (ENODEV, "ENODEV"),
    ]
    .into_iter()
    .find(|(n, _)| *n == e)
    .map(|(_, name)| name)
}

/// What an errno means for a stream being loaded (the documentation's table).
fn meaning(e: Error) -> &'static str {
    if e == EBADMSG {
        "a header or record whose check value does not match"
    } else if e == EPROTONOSUPPORT {
        "another major version of the stream format"
    } else if e == EPROTO {
        "a stream of another device or backend"
    } else if e == EOPNOTSUPP {
        "flags or a mandatory record this driver does not know"
    } else if e == EINVAL {
        "an invalid stream"
    } else {
        "the device failed to take it"
    }
}
