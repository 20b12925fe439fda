// SPDX-License-Identifier: GPL-2.0

//! XXH64, the 64-bit xxHash.
//!
//! C header: [`include/linux/xxhash.h`](srctree/include/linux/xxhash.h)
//!
//! The function `xxh64()` of `lib/xxhash.c` computes, written in Rust so that its rounds are
//! inlined into the caller: [`Xxh64::update_words`] takes 8-byte words from a closure, so that data
//! moved a word at a time (out of device memory, say) is checksummed in the pass that moves it,
//! as the networking stack's `csum_and_copy_*()` do, instead of in a second pass over a buffer.
//! Only safe code: the userspace tools that check what the kernel checksummed build this very
//! file.

/// The first prime of XXH64.
const P1: u64 = 0x9e37_79b1_85eb_ca87;
/// The second prime.
const P2: u64 = 0xc2b2_ae3d_27d4_eb4f;
/// The third prime.
const P3: u64 = 0x1656_67b1_9e37_79f9;
/// The fourth prime.
const P4: u64 = 0x85eb_ca77_c2b2_ae63;
/// The fifth prime.
const P5: u64 = 0x27d4_eb2f_1656_67c5;

/// The bytes of a stripe: four lanes of 8 bytes.
const STRIPE: usize = 32;

#[inline(always)]
fn round(acc: u64, input: u64) -> u64 {
    acc.wrapping_add(input.wrapping_mul(P2))
        .rotate_left(31)
        .wrapping_mul(P1)
}

#[inline]
fn merge_round(acc: u64, val: u64) -> u64 {
    (acc ^ round(0, val)).wrapping_mul(P1).wrapping_add(P4)
}

/// Reads the little-endian word at the start of `b` (at least 8 bytes): one load, no call.
#[inline(always)]
fn le64(b: &[u8]) -> u64 {
    match b.first_chunk::<8>() {
        Some(w) => u64::from_le_bytes(*w),
        None => 0,
    }
}

/// Runs the four lanes `acc` over the stripe at the start of `b` (at least 32 bytes).
#[inline(always)]
fn stripe(acc: [u64; 4], b: &[u8]) -> [u64; 4] {
    [
        round(acc[0], le64(b)),
        round(acc[1], le64(&b[8..])),
        round(acc[2], le64(&b[16..])),
        round(acc[3], le64(&b[24..])),
    ]
}

/// An XXH64 computation, fed incrementally.
///
/// Its layout is that of `struct xxh64_state` (`include/linux/xxhash.h`), field for field, so that
/// C code that feeds that struct feeds this one, as `xxh64_copy_from_user()` does for a caller
/// that copies from user space and hashes in one pass.
///
/// # Examples
///
/// ```
/// use kernel::xxhash::Xxh64;
///
/// assert_eq!(Xxh64::checksum(b"", 0), 0xef46_db37_51d8_e999);
/// assert_eq!(Xxh64::checksum(b"abc", 0), 0x44bc_2cf5_ad77_0999);
/// assert_eq!(Xxh64::checksum(b"123456789", 0), 0x8cb8_41db_40e6_ae83);
///
/// // 100 bytes `i * 7 + 3`, with seeds 0 and 0x9e3779b97f4a7c15, as `xxh64()` gives them.
/// let mut data = [0u8; 100];
/// for (i, b) in data.iter_mut().enumerate() {
///     *b = (i * 7 + 3) as u8;
/// }
/// assert_eq!(Xxh64::checksum(&data, 0), 0xa61f_8d4c_170f_e531);
/// assert_eq!(Xxh64::checksum(&data, 0x9e37_79b9_7f4a_7c15), 0xf6d8_f65c_625a_bb4f);
/// assert_eq!(Xxh64::checksum(&data[..33], 0), 0x50a7_cfc7_ba58_8784);
///
/// // Fed in parts: the same.
/// let mut h = Xxh64::new(0);
/// h.update(&data[..5]);
/// h.update(&data[5..70]);
/// h.update(&data[70..]);
/// assert_eq!(h.digest(), 0xa61f_8d4c_170f_e531);
///
/// // As 8-byte words after 24 bytes, then bytes: the same.
/// let mut h = Xxh64::new(0);
/// h.update(&data[..24]);
/// h.update_words(9, |i| u64::from_le_bytes(data[24 + i * 8..32 + i * 8].try_into().unwrap()));
/// h.update(&data[96..]);
/// assert_eq!(h.digest(), 0xa61f_8d4c_170f_e531);
/// ```
#[repr(C)]
#[derive(Clone, Debug)]
pub struct Xxh64 {
    /// The bytes fed (`total_len`).
    total: u64,
    /// The four lanes (`v1` to `v4`); the third is the seed until a stripe is complete.
    acc: [u64; 4],
    /// The bytes of a stripe not complete yet (`mem64`).
    buf: [u8; STRIPE],
    /// How many bytes of `buf` are fed (`memsize`).
    buffered: u32,
}

impl Xxh64 {
    /// Starts a computation with `seed`.
    #[inline]
    pub const fn new(seed: u64) -> Self {
        Self {
            total: 0,
            acc: [
                seed.wrapping_add(P1).wrapping_add(P2),
                seed.wrapping_add(P2),
                seed,
                seed.wrapping_sub(P1),
            ],
            buf: [0; STRIPE],
            buffered: 0,
        }
    }

    /// Returns how many bytes of `buf` are fed.
    #[inline(always)]
    fn fill(&self) -> usize {
        // CAST: At most `STRIPE`.
        self.buffered as usize
    }

    /// Sets how many bytes of `buf` are fed: at most `STRIPE`.
    #[inline(always)]
    fn set_fill(&mut self, n: usize) {
        // CAST: At most `STRIPE`.
        self.buffered = n as u32;
    }

    #[inline(always)]
    fn stripe_bytes(&mut self, b: &[u8]) {
        self.acc = stripe(self.acc, b);
    }

    /// Feeds `data`.
    pub fn update(&mut self, mut data: &[u8]) {
        // CAST: A slice's length fits in a u64.
        self.total = self.total.wrapping_add(data.len() as u64);
        let fill = self.fill();
        if fill > 0 {
            let n = (STRIPE - fill).min(data.len());
            self.buf[fill..fill + n].copy_from_slice(&data[..n]);
            self.set_fill(fill + n);
            data = &data[n..];
            if fill + n < STRIPE {
                return;
            }
            let b = self.buf;
            self.stripe_bytes(&b);
            self.set_fill(0);
        }
        // The lanes in locals: nothing the loop stores can alias them.
        let mut acc = self.acc;
        let mut stripes = data.chunks_exact(STRIPE);
        for s in &mut stripes {
            acc = stripe(acc, s);
        }
        self.acc = acc;
        let rest = stripes.remainder();
        self.buf[..rest.len()].copy_from_slice(rest);
        self.set_fill(rest.len());
    }

    /// Feeds `n` 8-byte words, the `i`-th being the little-endian bytes of `word(i)`, called
    /// once for each `i` in order.
    ///
    /// The same as [`Xxh64::update`] of those bytes; when the bytes fed so far are a multiple of
    /// 8, four words make a stripe with no copy.
    #[inline]
    pub fn update_words(&mut self, n: usize, mut word: impl FnMut(usize) -> u64) {
        let mut i = 0;
        if self.fill() % 8 != 0 {
            while i < n {
                self.update(&word(i).to_le_bytes());
                i += 1;
            }
            return;
        }
        while self.fill() > 0 && i < n {
            let fill = self.fill();
            self.buf[fill..fill + 8].copy_from_slice(&word(i).to_le_bytes());
            self.set_fill(fill + 8);
            self.total = self.total.wrapping_add(8);
            i += 1;
            if fill + 8 == STRIPE {
                let b = self.buf;
                self.stripe_bytes(&b);
                self.set_fill(0);
            }
        }
        // The lanes in locals, as `word` may store anywhere; the loop has no branch but its own,
        // as none of its arithmetic can overflow (`i + 3 < n`).
        let mut acc = self.acc;
        let stripes = (n - i) / 4;
        for _ in 0..stripes {
            let w = [
                word(i),
                word(i.wrapping_add(1)),
                word(i.wrapping_add(2)),
                word(i.wrapping_add(3)),
            ];
            acc = [
                round(acc[0], w[0]),
                round(acc[1], w[1]),
                round(acc[2], w[2]),
                round(acc[3], w[3]),
            ];
            i = i.wrapping_add(4);
        }
        self.acc = acc;
        // CAST: At most `n * 8` bytes, fed from memory.
        self.total = self
            .total
            .wrapping_add((stripes as u64).wrapping_mul(STRIPE as u64));
        while i < n {
            let fill = self.fill();
            self.buf[fill..fill + 8].copy_from_slice(&word(i).to_le_bytes());
            self.set_fill(fill + 8);
            self.total = self.total.wrapping_add(8);
            i += 1;
        }
    }

    /// Returns the hash of everything fed.
    pub fn digest(&self) -> u64 {
        let [v1, v2, v3, v4] = self.acc;
        let mut h = if self.total >= STRIPE as u64 {
            let h = v1
                .rotate_left(1)
                .wrapping_add(v2.rotate_left(7))
                .wrapping_add(v3.rotate_left(12))
                .wrapping_add(v4.rotate_left(18));
            merge_round(merge_round(merge_round(merge_round(h, v1), v2), v3), v4)
        } else {
            // No stripe was complete: the third lane is still the seed.
            v3.wrapping_add(P5)
        };
        h = h.wrapping_add(self.total);
        let mut p = &self.buf[..self.fill()];
        while p.len() >= 8 {
            h ^= round(0, le64(p));
            h = h.rotate_left(27).wrapping_mul(P1).wrapping_add(P4);
            p = &p[8..];
        }
        if p.len() >= 4 {
            let w = u32::from_le_bytes([p[0], p[1], p[2], p[3]]);
            h ^= u64::from(w).wrapping_mul(P1);
            h = h.rotate_left(23).wrapping_mul(P2).wrapping_add(P3);
            p = &p[4..];
        }
        for &b in p {
            h ^= u64::from(b).wrapping_mul(P5);
            h = h.rotate_left(11).wrapping_mul(P1);
        }
        h ^= h >> 33;
        h = h.wrapping_mul(P2);
        h ^= h >> 29;
        h = h.wrapping_mul(P3);
        h ^ (h >> 32)
    }

    /// Returns the hash of `data` with `seed`.
    #[inline]
    pub fn checksum(data: &[u8], seed: u64) -> u64 {
        let mut h = Self::new(seed);
        h.update(data);
        h.digest()
    }
}
