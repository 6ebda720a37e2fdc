//! Keys of keyed streams: their canonical bytes and stable hash.
//!
//! Keyed steps route `(key, value)` items to `stable_hash(key) % worker_count`, and the
//! same hash picks a sink partition and indexes the per-worker state tables. It must be
//! identical across runs, processes and builds, so it is defined on a canonical byte
//! encoding ([`Key::encode`]) rather than through `std::hash::Hash` (whose output
//! depends on the hasher and, for some types, on the Rust version).
//!
//! The same bytes are what a keyed exchange ships for keys that own heap memory
//! ([`Key::SHIP_BYTES`]): copying a short string's bytes into a contiguous buffer is far
//! cheaper than handing the string's heap block to another core, which must then miss
//! in cache on it and free it across threads.

use std::cell::RefCell;
use std::fmt::Debug;
use std::hash::Hash;

use xxhash_rust::xxh3::xxh3_64;

use super::xxh3_words::{self, Words};

/// Build-time switch for measuring the alternative design (keys shipped as pointers):
/// `WAXFAST_EXPERIMENT_SHIP_KEY_POINTERS=1 cargo build --release`. Used only by
/// `scripts/bench_runtime.py`; never set it in a real build.
const SHIP_POINTERS_EXPERIMENT: bool =
    option_env!("WAXFAST_EXPERIMENT_SHIP_KEY_POINTERS").is_some();

thread_local! {
    static SCRATCH: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// A type that can key a stateful step.
///
/// A key has a canonical byte encoding; its *stable hash* is XXH3-64 (seed 0) of those
/// bytes, identical on every run, process and machine. Keys also need equality and an
/// order: waxfast emits end-of-stream results in key order, as Bytewax does, so output
/// is deterministic.
///
/// Implemented for `String`, `&'static str`, `Box<str>`, `Vec<u8>`, `[u8; N]`, `bool`,
/// `char`, every integer type, and tuples of keys up to four elements.
///
/// ```
/// use waxfast::Key;
/// // The documented definition: XXH3-64, seed 0, over the canonical bytes.
/// assert_eq!("abc".to_string().stable_hash(), xxhash_rust::xxh3::xxh3_64(b"abc"));
/// assert_eq!(7u32.stable_hash(), xxhash_rust::xxh3::xxh3_64(&7u32.to_le_bytes()));
/// let mut bytes = Vec::new();
/// "abc".to_string().encode(&mut bytes);
/// assert_eq!(String::decode(&bytes), Some("abc".to_string()));
/// ```
pub trait Key: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static {
    /// Whether a keyed exchange ships this key's encoded bytes (true for keys that own
    /// heap memory) or the key value itself (plain values, static references).
    const SHIP_BYTES: bool = false;

    /// Appends the key's canonical bytes to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// Rebuilds a key from exactly the bytes [`encode`](Self::encode) wrote; `None` if
    /// they are not a valid encoding.
    fn decode(bytes: &[u8]) -> Option<Self>;

    /// The length of every value's canonical bytes, for types where it never varies
    /// (integers, `bool`, `char`, `[u8; N]`, and tuples of those). A tuple of such keys
    /// is hashed from a stack buffer instead of the thread-local scratch vector (a third
    /// of a `(u64, u64)`-keyed fold's instructions went to that).
    #[doc(hidden)]
    const FIXED_LEN: Option<usize> = None;

    /// Writes the canonical bytes into `out[..FIXED_LEN]`. Only called for types whose
    /// [`FIXED_LEN`](Self::FIXED_LEN) is set; this default is correct for any type.
    #[doc(hidden)]
    fn write_fixed(&self, out: &mut [u8]) {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            self.encode(&mut s);
            out[..s.len()].copy_from_slice(&s);
        })
    }

    /// The canonical bytes as a little-endian number, for types whose
    /// [`FIXED_LEN`](Self::FIXED_LEN) is at most 16: a tuple of such keys assembles its
    /// encoding from these in registers ([`Words`]). This default is correct for any
    /// such type.
    #[doc(hidden)]
    #[inline]
    fn fixed_bits(&self) -> u128 {
        let mut buf = [0u8; 16];
        self.write_fixed(&mut buf);
        u128::from_le_bytes(buf)
    }

    /// XXH3-64 (seed 0) of the canonical bytes.
    fn stable_hash(&self) -> u64 {
        scratch_hash(self)
    }

    /// The hash that indexes a keyed step's state table when the run has one worker
    /// (with several, the table uses the stable hash the router computes anyway). For
    /// keys shipped as bytes ([`SHIP_BYTES`](Self::SHIP_BYTES)) it is the stable hash;
    /// integers, `bool`, `char` and tuples use a folded multiply of their value
    /// instead, a few instructions where XXH3 is twenty or more. It stays inside one
    /// process (it is never saved, shipped nor used for routing), so it may change
    /// between versions.
    #[doc(hidden)]
    #[inline]
    fn table_hash(&self) -> u64 {
        self.stable_hash()
    }

    /// The 64 bits a tuple folds into its table hash for this element: the value
    /// itself for integers, `bool` and `char` (a tuple mixes once, at the end), the
    /// table hash for everything else.
    #[doc(hidden)]
    #[inline]
    fn table_word(&self) -> u64 {
        self.table_hash()
    }

    /// A prefix of the key's order: `a < b` implies `a.order_prefix() <=
    /// b.order_prefix()`, so a sort compares prefixes first and whole keys only on a
    /// tie. Byte strings give their first 8 bytes, big-endian and zero-padded; others
    /// 0 (every comparison is a tie).
    #[doc(hidden)]
    #[inline]
    fn order_prefix(&self) -> u64 {
        0
    }
    /// True if [`order_prefix`](Self::order_prefix) tells keys apart (a sort uses it).
    #[doc(hidden)]
    const ORDER_PREFIX: bool = false;

    /// `self == other`; byte-string keys override it with `bytes_eq`, which compares
    /// short keys inline instead of through a `memcmp` call.
    #[inline]
    fn same(&self, other: &Self) -> bool {
        self == other
    }

    /// True if `bytes` is this key's encoding.
    fn eq_encoded(&self, bytes: &[u8]) -> bool {
        SCRATCH.with(|s| {
            let mut s = s.borrow_mut();
            s.clear();
            self.encode(&mut s);
            s.as_slice() == bytes
        })
    }
}

/// The multiplier of [`fold_mul`] in table hashes (the golden ratio's bits).
const TABLE_MUL: u64 = 0x9E37_79B9_7F4A_7C15;
/// Mixed into every table hash, so that key 0 does not hash to 0.
const TABLE_SEED: u64 = 0x243F_6A88_85A3_08D3;

/// The 128-bit product's two halves xored: every input bit reaches every output bit
/// (the mixer of wyhash and foldhash).
#[inline(always)]
fn fold_mul(a: u64, b: u64) -> u64 {
    let p = u128::from(a) * u128::from(b);
    (p as u64) ^ ((p >> 64) as u64)
}

/// The table hash of a value of up to 64 bits: one folded multiply.
#[inline(always)]
fn table_hash_of(x: u64) -> u64 {
    fold_mul(x ^ TABLE_SEED, TABLE_MUL)
}

/// The table hash of a 128-bit value.
#[inline(always)]
fn table_hash_of_wide(x: u128) -> u64 {
    let (lo, hi) = (x as u64, (x >> 64) as u64);
    fold_mul(lo ^ TABLE_SEED, hi ^ TABLE_MUL)
}

/// The table hash of a byte string: keys of up to 16 bytes (most words and ids) by
/// two overlapping loads and one folded multiply, longer ones a multiply per 8 bytes.
#[inline(always)]
fn table_hash_of_bytes(b: &[u8]) -> u64 {
    let n = b.len();
    let word = |at: usize| u64::from_le_bytes(b[at..at + 8].try_into().expect("8 bytes"));
    let half = |at: usize| {
        u64::from(u32::from_le_bytes(
            b[at..at + 4].try_into().expect("4 bytes"),
        ))
    };
    let (x, y) = match n {
        0 => (0, 0),
        1..=3 => (
            u64::from(b[0]) | u64::from(b[n / 2]) << 8 | u64::from(b[n - 1]) << 16,
            0,
        ),
        4..=7 => (half(0), half(n - 4)),
        8..=16 => (word(0), word(n - 8)),
        _ => {
            let mut acc = TABLE_SEED;
            for at in (0..n - 8).step_by(8) {
                acc = fold_mul(acc ^ word(at), TABLE_MUL);
            }
            (acc, word(n - 8))
        }
    };
    fold_mul(x ^ TABLE_SEED ^ (n as u64).rotate_left(56), y ^ TABLE_MUL)
}

/// The first 8 bytes of `b` as a big-endian number, zero-padded: ordered as `b` is.
#[inline]
fn bytes_order_prefix(b: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    let n = b.len().min(8);
    word[..n].copy_from_slice(&b[..n]);
    u64::from_be_bytes(word)
}

/// [`Key::stable_hash`] through the thread-local scratch vector.
fn scratch_hash<K: Key>(k: &K) -> u64 {
    SCRATCH.with(|s| {
        let mut s = s.borrow_mut();
        s.clear();
        k.encode(&mut s);
        xxh3_64(&s)
    })
}

/// Longest fixed-length encoding hashed from a stack buffer.
const FIXED_HASH_MAX: usize = 64;

/// True if every element has a fixed length of at most 16 bytes (its
/// [`Key::fixed_bits`] holds it).
const fn all_within_16(parts: &[Option<usize>]) -> bool {
    let mut i = 0;
    while i < parts.len() {
        match parts[i] {
            Some(n) if n <= 16 => {}
            _ => return false,
        }
        i += 1;
    }
    true
}

/// A tuple's fixed encoded length: each element's plus its 4-byte length prefix.
const fn tuple_fixed_len(parts: &[Option<usize>]) -> Option<usize> {
    let mut total = 0;
    let mut i = 0;
    while i < parts.len() {
        match parts[i] {
            Some(n) => total += 4 + n,
            None => return None,
        }
        i += 1;
    }
    Some(total)
}

macro_rules! bytes_key {
    ($t:ty, $ship:expr, |$s:ident| $bytes:expr, |$b:ident| $decode:expr) => {
        impl Key for $t {
            const SHIP_BYTES: bool = $ship;
            const ORDER_PREFIX: bool = true;
            fn encode(&self, out: &mut Vec<u8>) {
                let $s = self;
                out.extend_from_slice($bytes);
            }
            fn decode($b: &[u8]) -> Option<Self> {
                $decode
            }
            #[inline]
            fn stable_hash(&self) -> u64 {
                let $s = self;
                xxh3_64($bytes)
            }
            #[inline]
            fn table_hash(&self) -> u64 {
                let $s = self;
                table_hash_of_bytes($bytes)
            }
            #[inline]
            fn order_prefix(&self) -> u64 {
                let $s = self;
                bytes_order_prefix($bytes)
            }
            #[inline]
            fn same(&self, other: &Self) -> bool {
                let $s = self;
                let a = $bytes;
                let $s = other;
                bytes_eq(a, $bytes)
            }
            #[inline]
            fn eq_encoded(&self, bytes: &[u8]) -> bool {
                let $s = self;
                bytes_eq($bytes, bytes)
            }
        }
    };
}

/// `a == b`, with keys of up to 16 bytes (most words and ids) compared by two
/// overlapping loads per side instead of a `memcmp` call, which dominates counting short
/// words (a fifth of a file wordcount's time before this).
#[inline(always)]
pub(crate) fn bytes_eq(a: &[u8], b: &[u8]) -> bool {
    let n = a.len();
    if n != b.len() {
        return false;
    }
    // Each branch compares the first and the last bytes of a window that covers `n`.
    let head_tail = |w: usize| -> (u64, u64) {
        let load = |s: &[u8], at: usize| -> u64 {
            match w {
                8 => u64::from_le_bytes(s[at..at + 8].try_into().expect("8 bytes")),
                4 => u64::from(u32::from_le_bytes(
                    s[at..at + 4].try_into().expect("4 bytes"),
                )),
                _ => u64::from(s[at]),
            }
        };
        (load(a, 0) ^ load(b, 0), load(a, n - w) ^ load(b, n - w))
    };
    match n {
        0 => true,
        1..=3 => {
            let (x, y) = head_tail(1);
            x | y | u64::from(a[n / 2] ^ b[n / 2]) == 0
        }
        4..=7 => {
            let (x, y) = head_tail(4);
            x | y == 0
        }
        8..=16 => {
            let (x, y) = head_tail(8);
            x | y == 0
        }
        _ => a == b,
    }
}
bytes_key!(String, !SHIP_POINTERS_EXPERIMENT, |s| s.as_bytes(), |b| {
    std::str::from_utf8(b).ok().map(str::to_owned)
});
bytes_key!(Box<str>, !SHIP_POINTERS_EXPERIMENT, |s| s.as_bytes(), |b| {
    std::str::from_utf8(b).ok().map(Box::from)
});
bytes_key!(Vec<u8>, !SHIP_POINTERS_EXPERIMENT, |s| s.as_slice(), |b| {
    Some(b.to_vec())
});
// Within a process a static string is shipped as the reference. Across processes it is
// rebuilt by interning: each distinct string is leaked once per process (static keys
// are literals, so the set is small and fixed).
bytes_key!(&'static str, false, |s| s.as_bytes(), |b| {
    std::str::from_utf8(b).ok().map(intern)
});

/// The process-wide copy of `s`, leaked the first time it is seen.
fn intern(s: &str) -> &'static str {
    use std::collections::HashSet;
    use std::sync::{Mutex, OnceLock};
    static SEEN: OnceLock<Mutex<HashSet<&'static str>>> = OnceLock::new();
    let mut seen = SEEN
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    if let Some(&known) = seen.get(s) {
        return known;
    }
    let leaked: &'static str = Box::leak(s.to_owned().into_boxed_str());
    seen.insert(leaked);
    leaked
}

impl<const N: usize> Key for [u8; N] {
    const FIXED_LEN: Option<usize> = Some(N);
    fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
    #[inline]
    fn write_fixed(&self, out: &mut [u8]) {
        out[..N].copy_from_slice(self);
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        bytes.try_into().ok()
    }
    #[inline]
    fn stable_hash(&self) -> u64 {
        xxh3_64(self)
    }
}

macro_rules! int_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            const FIXED_LEN: Option<usize> = Some(size_of::<$t>());
            fn encode(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
            #[inline]
            fn write_fixed(&self, out: &mut [u8]) {
                out[..size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
            }
            fn decode(bytes: &[u8]) -> Option<Self> {
                Some(<$t>::from_le_bytes(bytes.try_into().ok()?))
            }
            #[inline]
            fn fixed_bits(&self) -> u128 {
                let mut b = [0u8; 16];
                b[..size_of::<$t>()].copy_from_slice(&self.to_le_bytes());
                u128::from_le_bytes(b)
            }
            #[inline]
            fn stable_hash(&self) -> u64 {
                xxh3_64(&self.to_le_bytes())
            }
            #[inline]
            fn table_hash(&self) -> u64 {
                if size_of::<$t>() > 8 {
                    table_hash_of_wide(*self as u128)
                } else {
                    table_hash_of(*self as u64)
                }
            }
            #[inline]
            fn table_word(&self) -> u64 {
                if size_of::<$t>() > 8 {
                    table_hash_of_wide(*self as u128)
                } else {
                    *self as u64
                }
            }
        }
    )*};
}
int_key!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

// Encoded as 64-bit so 32- and 64-bit machines agree.
impl Key for usize {
    #[inline]
    fn table_hash(&self) -> u64 {
        table_hash_of(*self as u64)
    }
    #[inline]
    fn table_word(&self) -> u64 {
        *self as u64
    }
    const FIXED_LEN: Option<usize> = Some(8);
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as u64).encode(out)
    }
    #[inline]
    fn write_fixed(&self, out: &mut [u8]) {
        (*self as u64).write_fixed(out)
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        usize::try_from(u64::decode(bytes)?).ok()
    }
    #[inline]
    fn fixed_bits(&self) -> u128 {
        u128::from(*self as u64)
    }
}

impl Key for isize {
    #[inline]
    fn table_hash(&self) -> u64 {
        table_hash_of(*self as u64)
    }
    #[inline]
    fn table_word(&self) -> u64 {
        *self as u64
    }
    const FIXED_LEN: Option<usize> = Some(8);
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as i64).encode(out)
    }
    #[inline]
    fn write_fixed(&self, out: &mut [u8]) {
        (*self as i64).write_fixed(out)
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        isize::try_from(i64::decode(bytes)?).ok()
    }
    #[inline]
    fn fixed_bits(&self) -> u128 {
        u128::from(*self as i64 as u64)
    }
}

impl Key for bool {
    #[inline]
    fn table_hash(&self) -> u64 {
        table_hash_of(*self as u64)
    }
    #[inline]
    fn table_word(&self) -> u64 {
        *self as u64
    }
    const FIXED_LEN: Option<usize> = Some(1);
    fn encode(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
    #[inline]
    fn write_fixed(&self, out: &mut [u8]) {
        out[0] = *self as u8;
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [0] => Some(false),
            [1] => Some(true),
            _ => None,
        }
    }
    #[inline]
    fn fixed_bits(&self) -> u128 {
        u128::from(*self)
    }
}

impl Key for char {
    #[inline]
    fn table_hash(&self) -> u64 {
        table_hash_of(*self as u64)
    }
    #[inline]
    fn table_word(&self) -> u64 {
        *self as u64
    }
    const FIXED_LEN: Option<usize> = Some(4);
    fn encode(&self, out: &mut Vec<u8>) {
        (*self as u32).encode(out)
    }
    #[inline]
    fn write_fixed(&self, out: &mut [u8]) {
        (*self as u32).write_fixed(out)
    }
    fn decode(bytes: &[u8]) -> Option<Self> {
        char::from_u32(u32::decode(bytes)?)
    }
    #[inline]
    fn fixed_bits(&self) -> u128 {
        u128::from(*self as u32)
    }
}

// Tuples: each element's bytes prefixed by their length (u32 LE), so ("ab", "c") and
// ("a", "bc") differ and the encoding can be split again.
macro_rules! tuple_key {
    ($($name:ident),+) => {
        impl<$($name: Key),+> Key for ($($name,)+) {
            const FIXED_LEN: Option<usize> = tuple_fixed_len(&[$($name::FIXED_LEN),+]);
            #[allow(non_snake_case)]
            #[inline]
            fn write_fixed(&self, out: &mut [u8]) {
                let ($($name,)+) = self;
                let mut at = 0;
                $(
                    let n = <$name as Key>::FIXED_LEN.unwrap_or(0);
                    out[at..at + 4].copy_from_slice(&(n as u32).to_le_bytes());
                    $name.write_fixed(&mut out[at + 4..at + 4 + n]);
                    at += 4 + n;
                )+
                let _ = at;
            }
            #[allow(non_snake_case)]
            #[inline]
            fn stable_hash(&self) -> u64 {
                match Self::FIXED_LEN {
                    Some(n) if n <= xxh3_words::MAX
                        && all_within_16(&[$($name::FIXED_LEN),+]) =>
                    {
                        // The encoding built in registers: no stack buffer for the hash
                        // to load back (see `xxh3_words`).
                        let ($($name,)+) = self;
                        let mut w = Words::new();
                        let mut at = 0;
                        $(
                            let m = <$name as Key>::FIXED_LEN.unwrap_or(0);
                            w.put(at, m as u64, 4);
                            let bits = $name.fixed_bits();
                            w.put(at + 4, bits as u64, m.min(8));
                            if m > 8 {
                                w.put(at + 12, (bits >> 64) as u64, m - 8);
                            }
                            at += 4 + m;
                        )+
                        let _ = at;
                        w.xxh3(n)
                    }
                    Some(n) if n <= FIXED_HASH_MAX => {
                        let mut buf = [0u8; FIXED_HASH_MAX];
                        self.write_fixed(&mut buf);
                        xxh3_64(&buf[..n])
                    }
                    _ => scratch_hash(self),
                }
            }
            #[allow(non_snake_case)]
            #[inline]
            fn table_hash(&self) -> u64 {
                table_hash_of(self.table_word())
            }
            #[allow(non_snake_case)]
            #[inline]
            fn table_word(&self) -> u64 {
                // Tuples ship as values (never as bytes), so any hash of the elements
                // serves: their words combined with a rotate, an xor and a multiply
                // each (FxHash's step), mixed by one folded multiply in `table_hash`.
                let ($($name,)+) = self;
                let mut h = TABLE_SEED;
                $( h = (h.rotate_left(5) ^ $name.table_word()).wrapping_mul(TABLE_MUL); )+
                h
            }
            #[allow(non_snake_case)]
            fn encode(&self, out: &mut Vec<u8>) {
                let ($($name,)+) = self;
                $(
                    let at = out.len();
                    out.extend_from_slice(&[0; 4]);
                    $name.encode(out);
                    let len = (out.len() - at - 4) as u32;
                    out[at..at + 4].copy_from_slice(&len.to_le_bytes());
                )+
            }
            #[allow(non_snake_case)]
            fn decode(mut bytes: &[u8]) -> Option<Self> {
                $(
                    let len = u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?) as usize;
                    let $name = $name::decode(bytes.get(4..4 + len)?)?;
                    bytes = &bytes[4 + len..];
                )+
                bytes.is_empty().then_some(($($name,)+))
            }
        }
    };
}
tuple_key!(A);
tuple_key!(A, B);
tuple_key!(A, B, C);
tuple_key!(A, B, C, D);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn order_prefixes_keep_the_order_of_byte_strings(
            a in proptest::collection::vec(0u8..4, 0..12),
            b in proptest::collection::vec(0u8..4, 0..12),
        ) {
            let (sa, sb) = (String::from_utf8(a).unwrap(), String::from_utf8(b).unwrap());
            if sa < sb {
                prop_assert!(sa.order_prefix() <= sb.order_prefix());
            }
            if sa.order_prefix() < sb.order_prefix() {
                prop_assert!(sa < sb);
            }
        }

        /// Every length up to past the inline cases, equal and differing in any byte.
        #[test]
        fn bytes_eq_is_slice_equality(a in proptest::collection::vec(any::<u8>(), 0..24),
                                      flip in any::<prop::sample::Index>(),
                                      other in proptest::collection::vec(any::<u8>(), 0..24)) {
            prop_assert!(bytes_eq(&a, &a.clone()));
            prop_assert_eq!(bytes_eq(&a, &other), a == other);
            if !a.is_empty() {
                let mut b = a.clone();
                let i = flip.index(b.len());
                b[i] ^= 1;
                prop_assert!(!bytes_eq(&a, &b), "differs at {} of {}", i, a.len());
                prop_assert!(!a.same(&b));
                prop_assert!(a.same(&a.clone()));
            }
        }
    }

    #[test]
    fn byte_string_table_hashes_tell_apart_short_words_and_every_byte_of_long_ones() {
        // Words of every length class (1-3, 4-7, 8-16, longer), a hundred thousand in
        // all: next to no two share a table hash.
        let words: Vec<String> = (0..100_000u64)
            .map(|i| match i % 4 {
                0 => format!("{}", i % 1000),
                1 => format!("w{i}"),
                2 => format!("word-{i:08}"),
                _ => format!("a-rather-longer-key-number-{i}"),
            })
            .collect();
        let distinct: std::collections::HashSet<u64> =
            words.iter().map(|w| w.table_hash()).collect();
        let unique: std::collections::HashSet<&String> = words.iter().collect();
        assert!(
            distinct.len() + 5 >= unique.len(),
            "{} of {}",
            distinct.len(),
            unique.len()
        );
        // A change of any one byte of a key changes its hash.
        let long = "0123456789abcdefghijklmnopqrstuvwxyz".to_string();
        for n in 1..=long.len() {
            let base = long[..n].to_string();
            for i in 0..n {
                let mut b = base.clone().into_bytes();
                b[i] ^= 0x20;
                let changed = String::from_utf8(b).unwrap();
                assert_ne!(base.table_hash(), changed.table_hash(), "byte {i} of {n}");
            }
        }
        assert_eq!("k".to_string().table_hash(), "k".to_string().table_hash());
    }

    #[test]
    fn tuple_table_hashes_tell_apart_grids_and_spread_over_buckets() {
        // (key, window) grids as windowed folds make them: every pair its own hash,
        // and the low bits (hashbrown's bucket index) and the top 7 (its tag) spread.
        let pairs: Vec<(u64, u64)> = (0..1000u64)
            .flat_map(|k| (0..100u64).map(move |w| (k, w)))
            .collect();
        let hashes: Vec<u64> = pairs.iter().map(|p| p.table_hash()).collect();
        let distinct: std::collections::HashSet<u64> = hashes.iter().copied().collect();
        assert_eq!(distinct.len(), pairs.len());
        let mut buckets = vec![0u32; 1 << 12];
        let mut tags = [0u32; 128];
        for h in &hashes {
            buckets[(h & 0xfff) as usize] += 1;
            tags[(h >> 57) as usize] += 1;
        }
        // 100 000 over 4096 buckets is 24.4 each on average.
        assert!(
            buckets.iter().all(|&n| (5..=60).contains(&n)),
            "{buckets:?}"
        );
        assert!(tags.iter().all(|&n| (500..=1100).contains(&n)), "{tags:?}");
        // Swapped elements and element boundaries hash apart.
        assert_ne!((1u64, 2u64).table_hash(), (2u64, 1u64).table_hash());
        assert_ne!(
            (1u64, 0u64, 0u64).table_hash(),
            (0u64, 1u64, 0u64).table_hash()
        );
        assert_ne!(
            ("ab".to_string(), "c".to_string()).table_hash(),
            ("a".to_string(), "bc".to_string()).table_hash()
        );
    }

    #[test]
    fn bytes_eq_each_position_of_each_short_length() {
        for n in 0..=20usize {
            let a: Vec<u8> = (0..n as u8).collect();
            assert!(bytes_eq(&a, &a.clone()));
            for i in 0..n {
                let mut b = a.clone();
                b[i] = 0xff;
                assert!(!bytes_eq(&a, &b), "length {n}, byte {i}");
            }
        }
    }

    fn roundtrip<K: Key>(k: K) {
        let mut b = Vec::new();
        k.encode(&mut b);
        assert_eq!(K::decode(&b), Some(k.clone()), "{k:?}");
        assert!(k.eq_encoded(&b));
        assert_eq!(
            k.stable_hash(),
            xxh3_64(&b),
            "{k:?}: hash is of the encoding"
        );
        if let Some(n) = K::FIXED_LEN {
            assert_eq!(n, b.len(), "{k:?}: FIXED_LEN is the encoding's length");
            let mut fixed = vec![0xaa; n];
            k.write_fixed(&mut fixed);
            assert_eq!(fixed, b, "{k:?}: write_fixed writes the encoding");
        }
    }

    proptest! {
        /// Tuples of fixed-length keys hash from a stack buffer: the same bytes, so the
        /// same hash, as the general path.
        #[test]
        fn fixed_tuples_hash_their_encoding(a in any::<u64>(), b in any::<u64>(),
                                            c in any::<i32>(), d in any::<bool>(),
                                            e in any::<char>(), f in any::<[u8; 3]>(),
                                            g in any::<u16>(), h in any::<usize>()) {
            roundtrip((a, b));
            roundtrip((c, d, e));
            roundtrip((f, (g, h)));
            roundtrip((a, (b, (c, d)), e, f));
            roundtrip(((a, b), "x".to_string()));
        }

        /// Tuples whose elements are at most 16 bytes hash from words built in
        /// registers (`xxh3_words`): every length class of XXH3 up to 64 bytes, elements
        /// of every width, signed values (no sign extension into the next element).
        #[test]
        fn tuples_hashed_from_words_hash_their_encoding(
            a in any::<u64>(), b in any::<i8>(), c in any::<u128>(), d in any::<i32>(),
            e in any::<[u8; 16]>(), f in any::<i64>(), g in any::<u16>(), h in any::<isize>()
        ) {
            roundtrip((b,));
            roundtrip((a,));
            roundtrip((d, b));
            roundtrip((c, b));
            roundtrip(((d, d), a));
            roundtrip((g, g, g, g));
            roundtrip((e, a));
            roundtrip((f, f, f));
            roundtrip((c, c, e));
            roundtrip((h, 'z', true, b));
            roundtrip((c, c, c, c));
        }
    }

    #[test]
    fn encodings_roundtrip_and_define_the_hash() {
        roundtrip("hello".to_string());
        roundtrip(Box::<str>::from("x"));
        roundtrip(vec![1u8, 2]);
        roundtrip([9u8; 16]);
        roundtrip(-5i32);
        roundtrip(u128::MAX);
        roundtrip(7usize);
        roundtrip(-3isize);
        roundtrip(true);
        roundtrip('é');
        roundtrip(("ab".to_string(), 3u64));
        roundtrip(("a".to_string(), ("b".to_string(), 'c'), 1u8, false));
        roundtrip((1u64, 2u64));
        assert_eq!(<(u64, u64)>::FIXED_LEN, Some(24));
        assert_eq!(<(u64, String)>::FIXED_LEN, None);
        // Longer than the stack buffer: the general path.
        roundtrip(([7u8; 40], [8u8; 40]));
    }

    #[test]
    fn string_forms_agree() {
        let s = "hello".to_string();
        assert_eq!(s.stable_hash(), "hello".stable_hash());
        assert_eq!(s.stable_hash(), Box::<str>::from("hello").stable_hash());
        assert_eq!(s.stable_hash(), b"hello".to_vec().stable_hash());
        assert_eq!(s.stable_hash(), xxh3_64(b"hello"));
    }

    #[test]
    fn pinned_values_never_change() {
        // Pinned so that a change of encoding (which would re-route every key of a
        // resumed or mixed-version cluster) fails loudly.
        assert_eq!("a".stable_hash(), 0xe6c632b61e964e1f);
        assert_eq!(7u64.stable_hash(), xxh3_64(&7u64.to_le_bytes()));
        assert_eq!(7usize.stable_hash(), 7u64.stable_hash());
        assert_eq!((-3isize).stable_hash(), (-3i64).stable_hash());
    }

    #[test]
    fn tuples_are_boundary_sensitive_and_reject_garbage() {
        assert_ne!(("ab", "c").stable_hash(), ("a", "bc").stable_hash());
        assert_eq!(<(String, u8)>::decode(&[1, 0, 0, 0]), None);
        assert_eq!(
            <(u8,)>::decode(&[1, 0, 0, 0, 5, 99]),
            None,
            "trailing bytes"
        );
        assert_eq!(String::decode(&[0xff]), None);
        // Static strings are interned: one leaked copy per distinct string.
        let a = <&'static str>::decode(b"abc").unwrap();
        let b = <&'static str>::decode(b"abc").unwrap();
        assert_eq!(a, "abc");
        assert!(std::ptr::eq(a, b));
    }
}
