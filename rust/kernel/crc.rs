// SPDX-License-Identifier: GPL-2.0

//! CRC-32C, the Castagnoli CRC.
//!
//! C header: [`include/linux/crc32.h`](srctree/include/linux/crc32.h)

use crate::bindings;

/// A CRC-32C computation: the conventional CRC-32C (initial value `!0`, result inverted), fed
/// incrementally.
///
/// # Examples
///
/// ```
/// use kernel::crc::Crc32c;
///
/// assert_eq!(Crc32c::checksum(b"123456789"), 0xe306_9283);
///
/// let mut crc = Crc32c::new();
/// crc.update(b"1234");
/// crc.update(b"56789");
/// assert_eq!(crc.finish(), 0xe306_9283);
/// assert_eq!(Crc32c::checksum(b""), 0);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct Crc32c(u32);

impl Crc32c {
    /// Starts a computation.
    #[inline]
    pub const fn new() -> Self {
        Self(!0)
    }

    /// Feeds `data`.
    #[inline]
    pub fn update(&mut self, data: &[u8]) {
        // SAFETY: `crc32c` reads `data.len()` bytes from `data.as_ptr()`, all of which are valid
        // for reads for the duration of the call; it may be called in any context.
        self.0 = unsafe { bindings::crc32c(self.0, data.as_ptr().cast(), data.len()) };
    }

    /// Returns the CRC of everything fed.
    #[inline]
    pub const fn finish(self) -> u32 {
        !self.0
    }

    /// Returns the CRC of `data`.
    #[inline]
    pub fn checksum(data: &[u8]) -> u32 {
        let mut crc = Self::new();
        crc.update(data);
        crc.finish()
    }
}

impl Default for Crc32c {
    fn default() -> Self {
        Self::new()
    }
}
