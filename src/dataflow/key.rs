//! Keys of keyed streams and their stable hash.
//!
//! Keyed steps route `(key, value)` items to `stable_hash(key) % worker_count`, and the
//! same hash picks a sink partition. The hash must be identical across runs, processes
//! and builds, so it is defined here on a canonical byte encoding rather than through
//! `std::hash::Hash` (whose output depends on the hasher and, for some types, on the
//! Rust version).

use std::fmt::Debug;
use std::hash::Hash;

use xxhash_rust::xxh3::{xxh3_64, Xxh3};

/// A type that can key a stateful step.
///
/// Keys need a *stable* hash (see [`Key::stable_hash`]), equality and hashing for the
/// per-worker state tables, and an order: waxfast applies end-of-stream emissions in key
/// order, as Bytewax does, so output is deterministic.
///
/// Implemented for `String`, `&'static str`, `Box<str>`, `Vec<u8>`, `bool`, `char`, every
/// integer type, and tuples of keys up to four elements. Implement it for your own type by
/// writing its canonical bytes into an [`Xxh3`] hasher (or call one of the provided
/// implementations on a field).
///
/// ```
/// use waxfast::Key;
/// assert_eq!("user-1".to_string().stable_hash(), "user-1".stable_hash());
/// // The documented definition: XXH3-64, seed 0, over the UTF-8 bytes.
/// assert_eq!("abc".stable_hash(), xxhash_rust::xxh3::xxh3_64(b"abc"));
/// ```
pub trait Key: Clone + Eq + Hash + Ord + Debug + Send + Sync + 'static {
    /// Feeds the key's canonical bytes into `hasher`.
    fn write_stable(&self, hasher: &mut Xxh3);

    /// XXH3-64 (seed 0) of the key's canonical bytes; identical on every run, process
    /// and machine.
    fn stable_hash(&self) -> u64 {
        let mut h = Xxh3::new();
        self.write_stable(&mut h);
        h.digest()
    }
}

impl Key for String {
    fn write_stable(&self, hasher: &mut Xxh3) {
        hasher.update(self.as_bytes());
    }
    fn stable_hash(&self) -> u64 {
        xxh3_64(self.as_bytes())
    }
}

impl Key for &'static str {
    fn write_stable(&self, hasher: &mut Xxh3) {
        hasher.update(self.as_bytes());
    }
    fn stable_hash(&self) -> u64 {
        xxh3_64(self.as_bytes())
    }
}

impl Key for Box<str> {
    fn write_stable(&self, hasher: &mut Xxh3) {
        hasher.update(self.as_bytes());
    }
    fn stable_hash(&self) -> u64 {
        xxh3_64(self.as_bytes())
    }
}

impl Key for Vec<u8> {
    fn write_stable(&self, hasher: &mut Xxh3) {
        hasher.update(self);
    }
    fn stable_hash(&self) -> u64 {
        xxh3_64(self)
    }
}

macro_rules! int_key {
    ($($t:ty),*) => {$(
        impl Key for $t {
            fn write_stable(&self, hasher: &mut Xxh3) {
                hasher.update(&self.to_le_bytes());
            }
            fn stable_hash(&self) -> u64 {
                xxh3_64(&self.to_le_bytes())
            }
        }
    )*};
}
int_key!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128);

impl Key for usize {
    // Encoded as u64 so 32- and 64-bit machines agree.
    fn write_stable(&self, hasher: &mut Xxh3) {
        hasher.update(&(*self as u64).to_le_bytes());
    }
}

impl Key for isize {
    fn write_stable(&self, hasher: &mut Xxh3) {
        hasher.update(&(*self as i64).to_le_bytes());
    }
}

impl Key for bool {
    fn write_stable(&self, hasher: &mut Xxh3) {
        hasher.update(&[*self as u8]);
    }
}

impl Key for char {
    fn write_stable(&self, hasher: &mut Xxh3) {
        hasher.update(&(*self as u32).to_le_bytes());
    }
}

// Tuples: each element's canonical bytes, each prefixed by its own length so that
// ("ab", "c") and ("a", "bc") differ.
macro_rules! tuple_key {
    ($($name:ident),+) => {
        impl<$($name: Key),+> Key for ($($name,)+) {
            #[allow(non_snake_case)]
            fn write_stable(&self, hasher: &mut Xxh3) {
                let ($($name,)+) = self;
                $(
                    let mut inner = Xxh3::new();
                    $name.write_stable(&mut inner);
                    hasher.update(&inner.digest().to_le_bytes());
                )+
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

    #[test]
    fn string_forms_agree() {
        let s = "hello".to_string();
        assert_eq!(s.stable_hash(), "hello".stable_hash());
        assert_eq!(s.stable_hash(), Box::<str>::from("hello").stable_hash());
        assert_eq!(s.stable_hash(), b"hello".to_vec().stable_hash());
    }

    #[test]
    fn pinned_values_never_change() {
        // Pinned so that a change of encoding (which would re-route every key of a
        // resumed or mixed-version cluster) fails loudly.
        assert_eq!("a".stable_hash(), xxh3_64(b"a"));
        assert_eq!(7u64.stable_hash(), xxh3_64(&7u64.to_le_bytes()));
        assert_eq!(7usize.stable_hash(), 7u64.stable_hash());
        assert_eq!((-3isize).stable_hash(), (-3i64).stable_hash());
    }

    #[test]
    fn tuples_are_boundary_sensitive() {
        let a = ("ab", "c").stable_hash();
        let b = ("a", "bc").stable_hash();
        assert_ne!(a, b);
        assert_eq!(("x", 1u32).stable_hash(), ("x", 1u32).stable_hash());
    }
}
