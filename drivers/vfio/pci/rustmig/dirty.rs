// SPDX-License-Identifier: GPL-2.0

//! The DMA dirty log of a device whose DMA writes the driver sees being started.
//!
//! A backend that tracks its device's DMA ([`crate::backend::Dma::Tracked`]) tells the driver,
//! at the BAR write that starts a transfer, which device memory range the transfer writes. The
//! log keeps those ranges, page aligned, until userspace reads and clears them with
//! `VFIO_DEVICE_FEATURE_DMA_LOGGING_REPORT`.
//!
//! A transfer is recorded when it starts, but lands later. A report that clears a range while
//! its transfer is still in flight would lose the write that lands after it, so a report keeps
//! the range of the transfer in flight ([`DirtyLog::report`]'s `keep`): it is reported again by
//! the next report, after it landed.
//!
//! The log holds at most [`MAX_RANGES`] ranges. Beyond that it merges them into one range that
//! covers them all: pages are then reported dirty that may not be, never the other way round.

use core::ops::Range;
use kernel::prelude::*;

/// The most ranges the log keeps apart.
pub(crate) const MAX_RANGES: usize = 64;

/// The dirty log.
///
/// # Invariants
///
/// Each range is non-empty and page aligned (but an end saturated at `u64::MAX`); there are at
/// most [`MAX_RANGES`].
pub(crate) struct DirtyLog {
    /// The logging granule, a power of two.
    page_size: u64,
    /// The dirty ranges, in the order they were recorded.
    ranges: KVec<Range<u64>>,
}

impl DirtyLog {
    /// Creates an empty log with the given logging granule (a power of two, as the vfio core
    /// checks).
    pub(crate) fn new(page_size: u64) -> Result<Self> {
        if !page_size.is_power_of_two() {
            return Err(EINVAL);
        }
        Ok(DirtyLog {
            page_size,
            ranges: KVec::with_capacity(MAX_RANGES, GFP_KERNEL)?,
        })
    }

    /// Returns `r` widened to whole pages; an end in the last page saturates at `u64::MAX`.
    fn align(&self, r: &Range<u64>) -> Range<u64> {
        let mask = self.page_size - 1;
        let start = r.start & !mask;
        let end = match r.end.checked_add(mask) {
            Some(e) => e & !mask,
            None => u64::MAX,
        };
        start..end.max(start)
    }

    /// Records that the device writes `r`.
    pub(crate) fn record(&mut self, r: Range<u64>) {
        let r = self.align(&r);
        if r.is_empty() {
            return;
        }
        if self.ranges.len() == MAX_RANGES {
            // Cover them all with one range: a superset of what is dirty.
            let start = self.ranges.iter().map(|x| x.start).min().unwrap_or(r.start);
            let end = self.ranges.iter().map(|x| x.end).max().unwrap_or(r.end);
            self.ranges.clear();
            // INVARIANT: Page aligned, non-empty: the union of such ranges' bounds.
            if self.ranges.push(start..end, GFP_ATOMIC).is_err() {
                // The capacity is `MAX_RANGES` > 0: this push cannot allocate.
                return;
            }
        }
        let last = self.ranges.len().saturating_sub(1);
        match self.ranges.get_mut(last) {
            Some(x) if x.start <= r.end && r.start <= x.end => {
                *x = x.start.min(r.start)..x.end.max(r.end);
            }
            _ => {
                // Within the capacity reserved at creation: no allocation, cannot fail.
                let _ = self.ranges.push(r, GFP_ATOMIC);
            }
        }
    }

    /// Reports the dirty pages in `[iova, iova + len)` through `set(start, len)`, range by
    /// range, and clears them, except those of `keep` (a transfer still in flight). Stops at
    /// the first range `set` fails for, which stays in the log.
    ///
    /// Clearing only part of a range may split it; when the log is full, the range is kept
    /// whole instead (reported again, never lost).
    pub(crate) fn report(
        &mut self,
        iova: u64,
        len: u64,
        keep: Option<Range<u64>>,
        mut set: impl FnMut(u64, u64) -> Result,
    ) -> Result {
        let q = iova..iova.saturating_add(len);
        let keep = keep.map(|k| self.align(&k)).unwrap_or(0..0);
        let mut i = 0;
        while i < self.ranges.len() {
            let r = self.ranges[i].clone();
            let hit = r.start.max(q.start)..r.end.min(q.end);
            if hit.is_empty() {
                i += 1;
                continue;
            }
            // A range that could not be reported stays in the log.
            set(hit.start, hit.end - hit.start)?;
            if keep.start < hit.end && hit.start < keep.end {
                // The transfer in flight may still write any page of it.
                i += 1;
                continue;
            }
            // What is left of `r` outside the query, on each side. `set` marks every page the
            // hit touches, so those pages are cleared whole.
            let hit = self.align(&hit);
            let below = r.start..hit.start.max(r.start);
            let above = hit.end.min(r.end)..r.end;
            match (below.is_empty(), above.is_empty()) {
                (true, true) => {
                    self.ranges.remove(i).ok();
                    continue;
                }
                (false, true) => self.ranges[i] = below,
                (true, false) => self.ranges[i] = above,
                (false, false) => {
                    if self.ranges.len() < MAX_RANGES {
                        self.ranges[i] = below;
                        // Within the reserved capacity: cannot fail.
                        let _ = self.ranges.push(above, GFP_ATOMIC);
                    }
                }
            }
            i += 1;
        }
        Ok(())
    }

    /// Returns whether nothing is dirty.
    #[cfg(CONFIG_KUNIT = "y")]
    pub(crate) fn is_clean(&self) -> bool {
        self.ranges.is_empty()
    }
}

#[kunit_tests(rustmig_dirty)]
mod tests {
    use super::*;

    /// Reports `[iova, iova + len)` and returns what was set.
    fn report(
        log: &mut DirtyLog,
        iova: u64,
        len: u64,
        keep: Option<Range<u64>>,
    ) -> Result<KVec<(u64, u64)>> {
        let mut out = KVec::new();
        log.report(iova, len, keep, |s, l| Ok(out.push((s, l), GFP_KERNEL)?))?;
        Ok(out)
    }

    #[test]
    fn a_recorded_transfer_is_reported_once_by_whole_pages() -> Result {
        let mut log = DirtyLog::new(4096)?;
        log.record(3 * 4096 + 2048..3 * 4096 + 2048 + 4096);
        assert_eq!(
            &report(&mut log, 0, 1 << 20, None)?[..],
            &[(3 * 4096, 2 * 4096)]
        );
        assert!(report(&mut log, 0, 1 << 20, None)?.is_empty());
        assert!(log.is_clean());
        Ok(())
    }

    #[test]
    fn a_report_outside_the_query_keeps_the_range() -> Result {
        let mut log = DirtyLog::new(4096)?;
        log.record(0x10000..0x10001);
        assert!(report(&mut log, 0, 0x10000, None)?.is_empty());
        assert_eq!(
            &report(&mut log, 0x10000, 0x1000, None)?[..],
            &[(0x10000, 0x1000)]
        );
        assert!(log.is_clean());
        Ok(())
    }

    #[test]
    fn a_partial_query_splits_and_keeps_the_rest() -> Result {
        let mut log = DirtyLog::new(4096)?;
        log.record(0..0x10000);
        assert_eq!(
            &report(&mut log, 0x4000, 0x2000, None)?[..],
            &[(0x4000, 0x2000)]
        );
        let rest = report(&mut log, 0, 0x10000, None)?;
        assert_eq!(&rest[..], &[(0, 0x4000), (0x6000, 0xa000)]);
        assert!(log.is_clean());
        Ok(())
    }

    #[test]
    fn a_transfer_in_flight_is_reported_again() -> Result {
        let mut log = DirtyLog::new(4096)?;
        log.record(0x8000..0x9000);
        let keep = Some(0x8000..0x9000);
        assert_eq!(
            &report(&mut log, 0, 1 << 20, keep.clone())?[..],
            &[(0x8000, 0x1000)]
        );
        assert_eq!(
            &report(&mut log, 0, 1 << 20, keep)?[..],
            &[(0x8000, 0x1000)]
        );
        assert_eq!(
            &report(&mut log, 0, 1 << 20, None)?[..],
            &[(0x8000, 0x1000)]
        );
        assert!(log.is_clean());
        Ok(())
    }

    #[test]
    fn a_full_log_merges_into_a_superset() -> Result {
        let mut log = DirtyLog::new(4096)?;
        for i in 0..(MAX_RANGES as u64 + 1) {
            log.record(i * 0x2000..i * 0x2000 + 1);
        }
        let all = report(&mut log, 0, 1 << 30, None)?;
        let last = MAX_RANGES as u64 * 0x2000;
        // Every recorded page is covered; the ranges are fewer than what was recorded.
        for i in 0..(MAX_RANGES as u64 + 1) {
            let p = i * 0x2000;
            assert!(all.iter().any(|&(s, l)| s <= p && p < s + l));
        }
        assert!(all.len() <= MAX_RANGES);
        assert!(all.iter().all(|&(s, l)| s + l <= last + 0x1000));
        assert!(log.is_clean());
        Ok(())
    }

    #[test]
    fn a_range_that_could_not_be_reported_stays() -> Result {
        let mut log = DirtyLog::new(4096)?;
        log.record(0x1000..0x2000);
        log.record(0x8000..0x9000);
        let mut calls = 0;
        let res = log.report(0, 1 << 20, None, |_, _| {
            calls += 1;
            if calls == 2 {
                Err(ENOMEM)
            } else {
                Ok(())
            }
        });
        assert_eq!(res, Err(ENOMEM));
        assert_eq!(
            &report(&mut log, 0, 1 << 20, None)?[..],
            &[(0x8000, 0x1000)]
        );
        assert!(log.is_clean());
        Ok(())
    }

    #[test]
    fn ranges_saturate_at_the_top_of_the_address_space() -> Result {
        let mut log = DirtyLog::new(4096)?;
        log.record(u64::MAX - 10..u64::MAX);
        let r = report(&mut log, u64::MAX - 0x10000, 0x10000, None)?;
        assert_eq!(&r[..], &[(u64::MAX & !0xfff, 0xfff)]);
        assert!(DirtyLog::new(4095).is_err());
        Ok(())
    }
}
