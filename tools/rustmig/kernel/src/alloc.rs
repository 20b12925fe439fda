// SPDX-License-Identifier: GPL-2.0

//! Fallible allocation as in the kernel: [`KVec`] takes allocation [`Flags`] and reports
//! failure instead of aborting.

use core::ops::{Deref, DerefMut};

/// An allocation failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AllocError;

/// Allocation flags; userspace has a single kind of memory, so they only follow the kernel's
/// signatures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Flags(u32);

/// The allocation flags.
pub mod flags {
    use super::Flags;

    /// Allocation that may sleep.
    pub const GFP_KERNEL: Flags = Flags(0);
}

/// The kernel's `KVVec` (backed by `kvmalloc`): here the same as [`KVec`].
pub type KVVec<T> = KVec<T>;

/// A vector whose growth can fail, like the kernel's `KVec`.
#[derive(Debug, Default)]
pub struct KVec<T>(Vec<T>);

impl<T> KVec<T> {
    /// Creates an empty vector; it does not allocate.
    pub const fn new() -> Self {
        KVec(Vec::new())
    }

    /// Creates an empty vector with room for `capacity` elements.
    pub fn with_capacity(capacity: usize, _flags: Flags) -> Result<Self, AllocError> {
        let mut v = Vec::new();
        v.try_reserve_exact(capacity).map_err(|_| AllocError)?;
        Ok(KVec(v))
    }

    /// Returns the number of elements.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Returns whether there is no element.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Returns how many elements fit without a new allocation.
    pub fn capacity(&self) -> usize {
        self.0.capacity()
    }

    /// Appends `v`.
    pub fn push(&mut self, v: T, _flags: Flags) -> Result<(), AllocError> {
        self.0.try_reserve(1).map_err(|_| AllocError)?;
        self.0.push(v);
        Ok(())
    }

    /// Removes every element, keeping the allocation.
    pub fn clear(&mut self) {
        self.0.clear();
    }
}

impl<T: Clone> KVec<T> {
    /// Appends the elements of `other`; within the capacity this does not allocate.
    pub fn extend_from_slice(&mut self, other: &[T], _flags: Flags) -> Result<(), AllocError> {
        self.0.try_reserve(other.len()).map_err(|_| AllocError)?;
        self.0.extend_from_slice(other);
        Ok(())
    }

    /// Resizes to `len` elements, new ones `value`, as the kernel's `Vec::resize`.
    pub fn resize(&mut self, len: usize, value: T, _flags: Flags) -> Result<(), AllocError> {
        self.0
            .try_reserve(len.saturating_sub(self.0.len()))
            .map_err(|_| AllocError)?;
        self.0.resize(len, value);
        Ok(())
    }
}

impl<T> Deref for KVec<T> {
    type Target = [T];

    fn deref(&self) -> &[T] {
        &self.0
    }
}

impl<T> DerefMut for KVec<T> {
    fn deref_mut(&mut self) -> &mut [T] {
        &mut self.0
    }
}

#[cfg(test)]
mod tests {
    use super::flags::GFP_KERNEL;
    use super::*;

    #[test]
    fn kvec_grows_within_its_capacity_without_moving() {
        let mut v = KVec::with_capacity(8, GFP_KERNEL).unwrap();
        let p = v.as_ptr();
        v.extend_from_slice(&[1u8, 2, 3], GFP_KERNEL).unwrap();
        v.push(4, GFP_KERNEL).unwrap();
        v[0] = 9;
        assert_eq!(&v[..], &[9, 2, 3, 4]);
        assert_eq!(v.as_ptr(), p);
        assert!(v.capacity() >= 8);
        v.clear();
        assert!(v.is_empty());
        assert_eq!(v.len(), 0);
    }

    #[test]
    fn an_impossible_allocation_fails() {
        assert_eq!(
            KVec::<u64>::with_capacity(usize::MAX, GFP_KERNEL).err(),
            Some(AllocError)
        );
        let mut v = KVec::<u8>::new();
        assert_eq!(v.push(1, GFP_KERNEL), Ok(()));
        assert_eq!(v.len(), 1);
    }
}
