//! XXH3-64 (seed 0) of a short byte string held in registers as little-endian words.
//!
//! A tuple key's canonical bytes are its elements' bytes, each after a 4-byte length.
//! Written to a stack buffer element by element and hashed with `xxh3_64`, the hash's
//! 8-byte loads each span two narrower stores, and the CPU cannot forward them: the
//! load waits for the stores to reach the cache. That stall was a third of a `-w2`
//! keyed router's time on `(u64, u64)` keys (`perf`, `bench_window_fold`). Here the
//! bytes are assembled in a word array with shifts ([`Words::put`]) and the hash reads
//! them back with shifts too; with the tuple's layout known at compile time all of it
//! folds into register arithmetic. The result is exactly `xxh3_64` of the same bytes
//! (a property test compares them for every length up to [`MAX`]).

/// Longest string hashed this way (the fixed-length keys' bound).
pub(crate) const MAX: usize = 64;

/// The first 80 bytes of XXH3's default secret (the specification's `kSecret`): all that
/// inputs of up to 64 bytes read.
const SECRET: [u8; 80] = [
    0xb8, 0xfe, 0x6c, 0x39, 0x23, 0xa4, 0x4b, 0xbe, 0x7c, 0x01, 0x81, 0x2c, 0xf7, 0x21, 0xad, 0x1c,
    0xde, 0xd4, 0x6d, 0xe9, 0x83, 0x90, 0x97, 0xdb, 0x72, 0x40, 0xa4, 0xa4, 0xb7, 0xb3, 0x67, 0x1f,
    0xcb, 0x79, 0xe6, 0x4e, 0xcc, 0xc0, 0xe5, 0x78, 0x82, 0x5a, 0xd0, 0x7d, 0xcc, 0xff, 0x72, 0x21,
    0xb8, 0x08, 0x46, 0x74, 0xf7, 0x43, 0x24, 0x8e, 0xe0, 0x35, 0x90, 0xe6, 0x81, 0x3a, 0x26, 0x4c,
    0x3c, 0x28, 0x52, 0xbb, 0x91, 0xc3, 0x00, 0xcb, 0x88, 0xd0, 0x65, 0x8b, 0x1b, 0x53, 0x2e, 0xa3,
];

const PRIME64_1: u64 = 0x9E37_79B1_85EB_CA87;
const PRIME64_2: u64 = 0xC2B2_AE3D_27D4_EB4F;
const PRIME64_3: u64 = 0x1656_67B1_9E37_79F9;

/// The secret's little-endian u64 at `at` (evaluated at compile time).
const fn s64(at: usize) -> u64 {
    let mut v = 0u64;
    let mut i = 0;
    while i < 8 {
        v |= (SECRET[at + i] as u64) << (8 * i);
        i += 1;
    }
    v
}

const fn s32(at: usize) -> u64 {
    s64(at) & 0xFFFF_FFFF
}

/// Up to [`MAX`] bytes as little-endian words (one spare word, so a read that starts in
/// the last word needs no bounds case).
#[derive(Clone, Copy)]
pub(crate) struct Words([u64; MAX / 8 + 1]);

impl Words {
    #[inline(always)]
    pub(crate) fn new() -> Self {
        Words([0; MAX / 8 + 1])
    }

    /// Writes the low `len` bytes (at most 8) of `v` at byte `at`; the bytes there must
    /// still be zero.
    #[inline(always)]
    pub(crate) fn put(&mut self, at: usize, v: u64, len: usize) {
        debug_assert!(len <= 8 && at + len <= MAX);
        let v = if len == 8 {
            v
        } else {
            v & ((1u64 << (8 * len)) - 1)
        };
        let (i, shift) = (at / 8, 8 * (at % 8));
        self.0[i] |= v << shift;
        if shift != 0 && shift + 8 * len > 64 {
            self.0[i + 1] |= v >> (64 - shift);
        }
    }

    /// The little-endian u64 at byte `at`.
    #[inline(always)]
    fn r64(&self, at: usize) -> u64 {
        let (i, shift) = (at / 8, 8 * (at % 8));
        if shift == 0 {
            self.0[i]
        } else {
            (self.0[i] >> shift) | (self.0[i + 1] << (64 - shift))
        }
    }

    #[inline(always)]
    fn r32(&self, at: usize) -> u64 {
        self.r64(at) & 0xFFFF_FFFF
    }

    #[inline(always)]
    fn byte(&self, at: usize) -> u64 {
        (self.0[at / 8] >> (8 * (at % 8))) & 0xFF
    }

    /// 16 bytes at `at` against 16 bytes of the secret at `s`, multiplied and folded.
    #[inline(always)]
    fn mix16(&self, at: usize, s: usize) -> u64 {
        fold(self.r64(at) ^ s64(s), self.r64(at + 8) ^ s64(s + 8))
    }

    /// XXH3-64 with seed 0 of the first `n` bytes (`n <= MAX`): `xxh3_64(&bytes[..n])`.
    #[inline(always)]
    pub(crate) fn xxh3(&self, n: usize) -> u64 {
        debug_assert!(n <= MAX);
        let len = n as u64;
        match n {
            0 => xxh64_avalanche(s64(56) ^ s64(64)),
            1..=3 => {
                let combo = (self.byte(0) << 16)
                    | (self.byte(n >> 1) << 24)
                    | self.byte(n - 1)
                    | (len << 8);
                xxh64_avalanche(combo ^ (s32(0) ^ s32(4)))
            }
            4..=8 => {
                let input64 = self.r32(n - 4).wrapping_add(self.r32(0) << 32);
                strong_avalanche(input64 ^ (s64(8) ^ s64(16)), len)
            }
            9..=16 => {
                let lo = self.r64(0) ^ (s64(24) ^ s64(32));
                let hi = self.r64(n - 8) ^ (s64(40) ^ s64(48));
                let acc = len
                    .wrapping_add(lo.swap_bytes())
                    .wrapping_add(hi)
                    .wrapping_add(fold(lo, hi));
                avalanche(acc)
            }
            _ => {
                let mut acc = len.wrapping_mul(PRIME64_1);
                if n > 32 {
                    acc = acc.wrapping_add(self.mix16(16, 32));
                    acc = acc.wrapping_add(self.mix16(n - 32, 48));
                }
                acc = acc.wrapping_add(self.mix16(0, 0));
                acc = acc.wrapping_add(self.mix16(n - 16, 16));
                avalanche(acc)
            }
        }
    }
}

#[inline(always)]
fn fold(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

#[inline(always)]
fn avalanche(mut v: u64) -> u64 {
    v ^= v >> 37;
    v = v.wrapping_mul(0x1656_6791_9E37_79F9);
    v ^ (v >> 32)
}

#[inline(always)]
fn strong_avalanche(mut v: u64, len: u64) -> u64 {
    v ^= v.rotate_left(49) ^ v.rotate_left(24);
    v = v.wrapping_mul(0x9FB2_1C65_1E98_DF25);
    v ^= (v >> 35).wrapping_add(len);
    v = v.wrapping_mul(0x9FB2_1C65_1E98_DF25);
    v ^ (v >> 28)
}

#[inline(always)]
fn xxh64_avalanche(mut v: u64) -> u64 {
    v ^= v >> 33;
    v = v.wrapping_mul(PRIME64_2);
    v ^= v >> 29;
    v = v.wrapping_mul(PRIME64_3);
    v ^ (v >> 32)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use xxhash_rust::xxh3::xxh3_64;

    fn words_of(bytes: &[u8]) -> Words {
        let mut w = Words::new();
        for (at, chunk) in bytes.chunks(3).enumerate() {
            let mut v = 0u64;
            for (i, b) in chunk.iter().enumerate() {
                v |= u64::from(*b) << (8 * i);
            }
            w.put(at * 3, v, chunk.len());
        }
        w
    }

    proptest! {
        /// Every length up to MAX, bytes put 3 at a time (so puts straddle words).
        #[test]
        fn the_hash_of_words_is_xxh3_of_the_bytes(
            bytes in proptest::collection::vec(any::<u8>(), 0..=MAX)
        ) {
            prop_assert_eq!(words_of(&bytes).xxh3(bytes.len()), xxh3_64(&bytes));
        }
    }

    #[test]
    fn every_length_and_every_byte_position() {
        for n in 0..=MAX {
            let bytes: Vec<u8> = (0..n as u8).map(|i| i.wrapping_mul(37) ^ 0xA5).collect();
            assert_eq!(words_of(&bytes).xxh3(n), xxh3_64(&bytes), "length {n}");
            for flip in 0..n {
                let mut b = bytes.clone();
                b[flip] ^= 0x80;
                assert_eq!(words_of(&b).xxh3(n), xxh3_64(&b), "length {n}, byte {flip}");
            }
        }
    }
}
