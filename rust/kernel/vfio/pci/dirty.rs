// SPDX-License-Identifier: GPL-2.0

//! DMA dirty logging: the ranges logged and the bitmap a report fills.

use crate::{
    bindings,
    ffi::c_ulong, //
};
use core::{
    marker::PhantomData,
    ptr::NonNull, //
};

/// The IOVA ranges given to [`Driver::log_start`].
pub struct LogRanges<'a> {
    pub(super) root: *mut bindings::rb_root_cached,
    pub(super) len: u32,
    pub(super) _p: PhantomData<&'a bindings::rb_root_cached>,
}

impl LogRanges<'_> {
    /// Returns the number of ranges.
    pub fn len(&self) -> usize {
        // CAST: `u32` fits in `usize` on every supported architecture.
        self.len as usize
    }

    /// Returns whether there is no range.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Returns the ranges as `(first, last)` IOVAs, both inclusive, in ascending order.
    pub fn iter(&self) -> impl Iterator<Item = (usize, usize)> + '_ {
        let mut node: *mut bindings::interval_tree_node = core::ptr::null_mut();
        let mut started = false;
        core::iter::from_fn(move || {
            // SAFETY: `root` is the vfio core's valid interval tree, not changed while the
            // callback runs; `node` is null or a node of it.
            node = unsafe {
                if started {
                    bindings::interval_tree_iter_next(node, 0, c_ulong::MAX)
                } else {
                    started = true;
                    bindings::interval_tree_iter_first(self.root, 0, c_ulong::MAX)
                }
            };
            // SAFETY: A non-null `node` is a valid node of the tree.
            NonNull::new(node).map(|n| unsafe { ((*n.as_ptr()).start, (*n.as_ptr()).last) })
        })
    }
}

/// The bitmap [`Driver::log_read_and_clear`] reports dirty pages into.
pub struct DirtyBitmap<'a> {
    pub(super) bitmap: *mut bindings::iova_bitmap,
    pub(super) _p: PhantomData<&'a mut bindings::iova_bitmap>,
}

impl DirtyBitmap<'_> {
    /// Marks the pages of `[iova, iova + length)` dirty.
    ///
    /// This may pin pages of the user's bitmap, taking `mmap_lock`: it must not be called with
    /// a lock held that a fault on a BAR mmap can wait for, such as a [`BarGuard`].
    #[inline(never)]
    pub fn set(&mut self, iova: usize, length: usize) {
        // SAFETY: `bitmap` is the valid bitmap of the running report.
        unsafe { bindings::iova_bitmap_set(self.bitmap, iova, length) };
    }
}
