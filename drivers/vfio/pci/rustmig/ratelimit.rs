// SPDX-License-Identifier: GPL-2.0

//! A rate limit for a device's messages about refused streams and failed arcs.
//!
//! A user that feeds a device thousands of bad streams gets every errno, but the kernel log gets
//! a burst of messages per interval and then one line saying how many were held back, so the log
//! stays readable and the first refusal is always there.

use kernel::{
    device,
    prelude::*,
    sync::atomic::{
        Atomic,
        Relaxed, //
    },
    time::{
        Instant,
        Monotonic, //
    }, //
};

/// What a caller may do with one message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// Print it; `held` messages were held back since the last one printed.
    Print {
        /// The messages held back before this one.
        held: u32,
    },
    /// Hold it back.
    Hold,
}

/// At most `burst` messages per `interval_ns`, counted from the first message of an interval.
///
/// Lock-free: two messages racing at the edge of an interval may both be printed, never both
/// lost.
pub(crate) struct Ratelimit {
    /// The clock's zero for `window`.
    origin: Instant<Monotonic>,
    /// The length of an interval.
    interval_ns: i64,
    /// The messages an interval may print.
    burst: u32,
    /// The start of the current interval, in nanoseconds since `origin`.
    window: Atomic<i64>,
    /// The messages of the current interval, printed or not.
    seen: Atomic<u32>,
    /// The messages held back since the last one printed.
    held: Atomic<u32>,
}

/// Adds one to `n` unless it is at its maximum; returns the value before.
fn saturating_inc(n: &Atomic<u32>) -> u32 {
    let mut old = n.load(Relaxed);
    while old != u32::MAX {
        match n.cmpxchg(old, old + 1, Relaxed) {
            Ok(v) => return v,
            Err(v) => old = v,
        }
    }
    old
}

impl Ratelimit {
    /// Returns a limit of `burst` messages per `interval_ns` nanoseconds.
    pub(crate) fn new(burst: u32, interval_ns: i64) -> Self {
        Self {
            origin: Instant::now(),
            interval_ns,
            burst,
            window: Atomic::new(0),
            seen: Atomic::new(0),
            held: Atomic::new(0),
        }
    }

    /// Returns what to do with a message at `now_ns` nanoseconds since the limit was made.
    pub(crate) fn check_at(&self, now_ns: i64) -> Verdict {
        let start = self.window.load(Relaxed);
        if now_ns - start >= self.interval_ns && self.window.cmpxchg(start, now_ns, Relaxed).is_ok()
        {
            self.seen.store(0, Relaxed);
        }
        if saturating_inc(&self.seen) < self.burst {
            Verdict::Print {
                held: self.held.xchg(0, Relaxed),
            }
        } else {
            saturating_inc(&self.held);
            Verdict::Hold
        }
    }

    /// Returns whether a message may be printed now; before the first message printed after
    /// some were held back, says how many on `dev`.
    pub(crate) fn allow(&self, dev: &device::Device) -> bool {
        match self.check_at(self.origin.elapsed().as_nanos()) {
            Verdict::Print { held } => {
                if held != 0 {
                    dev_info!(dev, "{held} messages about refused streams held back\n");
                }
                true
            }
            Verdict::Hold => false,
        }
    }
}

#[kunit_tests(rustmig_ratelimit)]
mod tests {
    use super::*;

    const SEC: i64 = 1_000_000_000;

    #[test]
    fn a_burst_is_printed_then_the_rest_held_until_the_interval_ends() {
        let r = Ratelimit::new(3, 5 * SEC);
        for t in 0..3 {
            assert_eq!(r.check_at(t), Verdict::Print { held: 0 });
        }
        for t in 3..1000 {
            assert_eq!(r.check_at(t), Verdict::Hold);
        }
        assert_eq!(r.check_at(5 * SEC - 1), Verdict::Hold);
        // The next interval: its first message says how many were held back.
        assert_eq!(r.check_at(5 * SEC), Verdict::Print { held: 998 });
        assert_eq!(r.check_at(5 * SEC + 1), Verdict::Print { held: 0 });
    }

    #[test]
    fn the_first_message_is_always_printed() {
        let r = Ratelimit::new(1, SEC);
        assert_eq!(r.check_at(0), Verdict::Print { held: 0 });
        assert_eq!(r.check_at(1), Verdict::Hold);
        // An interval starts at its first message, not on a fixed grid.
        assert_eq!(r.check_at(10 * SEC + 7), Verdict::Print { held: 1 });
        assert_eq!(r.check_at(11 * SEC + 6), Verdict::Hold);
        assert_eq!(r.check_at(11 * SEC + 7), Verdict::Print { held: 1 });
    }

    #[test]
    fn counts_saturate_instead_of_wrapping() {
        let r = Ratelimit::new(1, i64::MAX);
        r.check_at(0);
        r.held.store(u32::MAX - 1, Relaxed);
        r.seen.store(u32::MAX, Relaxed);
        assert_eq!(r.check_at(1), Verdict::Hold);
        assert_eq!(r.check_at(2), Verdict::Hold);
        assert_eq!(r.held.load(Relaxed), u32::MAX);
    }
}
