// SPDX-License-Identifier: GPL-2.0

//! CRC-32C, the Castagnoli CRC, with the API of the kernel's `kernel::crc`.
//!
//! The kernel's `Crc32c` calls `crc32c()`; this one is table driven: the reflected polynomial
//! 0x82f63b78, initial value `!0`, result inverted.

/// The reflected Castagnoli polynomial.
const POLY: u32 = 0x82f6_3b78;

/// The CRC of each byte value.
const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        // CAST: i < 256.
        let mut c = i as u32;
        let mut bit = 0;
        while bit < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            bit += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

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
        let mut c = self.0;
        for &b in data {
            c = TABLE[usize::from((c as u8) ^ b)] ^ (c >> 8);
        }
        self.0 = c;
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

#[cfg(test)]
mod tests {
    use super::Crc32c;

    #[test]
    fn check_value() {
        assert_eq!(Crc32c::checksum(b"123456789"), 0xe306_9283);
        assert_eq!(Crc32c::checksum(b""), 0);
        assert_eq!(Crc32c::default().finish(), 0);
    }

    /// The CRC-32C vectors of RFC 3720 (iSCSI), appendix B.4.
    #[test]
    fn rfc3720_vectors() {
        assert_eq!(Crc32c::checksum(&[0u8; 32]), 0x8a91_36aa);
        assert_eq!(Crc32c::checksum(&[0xffu8; 32]), 0x62a8_ab43);
        let inc: Vec<u8> = (0..32).collect();
        assert_eq!(Crc32c::checksum(&inc), 0x46dd_794e);
        let dec: Vec<u8> = (0..32).rev().collect();
        assert_eq!(Crc32c::checksum(&dec), 0x113f_db5c);
    }

    #[test]
    fn any_split_gives_the_same_crc() {
        let data: Vec<u8> = (0..1000u32).map(|i| (i * 7 + i / 13) as u8).collect();
        let whole = Crc32c::checksum(&data);
        for cut in [0, 1, 3, 500, 999, 1000] {
            let mut c = Crc32c::new();
            c.update(&data[..cut]);
            c.update(&data[cut..]);
            assert_eq!(c.finish(), whole);
        }
    }
}
