//! Plain-data items: types whose values cross processes as their bytes, a batch as one
//! block copy, instead of through serde one item at a time (timely's `Abomonation`
//! idea, with the proof of plainness left to `zerocopy`).
//!
//! A type is plain if every bit pattern of its size is a value and it has no padding
//! and no pointers: `zerocopy`'s `FromBytes + IntoBytes + Immutable`. The primitive
//! integers and floats are plain without asking; a type of the user's own (say a
//! `#[repr(C)]` struct of integers deriving those traits) is made plain with
//! [`register_plain`]. Nothing else is ever copied as bytes: the cast below is sound
//! because a type enters the registry only through a function that requires the
//! traits.
//!
//! The bytes are this host's: a batch says its byte order, and a process of the other
//! order refuses it (with an error) rather than read the values swapped.

use std::any::TypeId;
use std::collections::HashMap;
use std::mem::size_of;
use std::sync::RwLock;

use zerocopy::{FromBytes, Immutable, IntoBytes};

/// The types made plain with [`register_plain`], by `TypeId`, with their sizes.
static REGISTERED: RwLock<Option<HashMap<TypeId, usize>>> = RwLock::new(None);

/// Makes values of `T` cross processes as their bytes, a batch as one block copy,
/// instead of through serde (which they must still implement, for every other use).
/// Call it before the run starts, in every process (the flow's builder is a good
/// place); registering a type twice is harmless. Zero-sized types stay with serde.
///
/// ```
/// use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};
///
/// #[derive(Clone, Copy, FromBytes, IntoBytes, Immutable, KnownLayout)]
/// #[derive(serde::Serialize, serde::Deserialize)]
/// #[repr(C)]
/// struct Tick {
///     symbol: u64,
///     price_micros: i64,
/// }
///
/// waxfast::register_plain::<Tick>();
/// ```
pub fn register_plain<T: FromBytes + IntoBytes + Immutable + Send + 'static>() {
    if size_of::<T>() == 0 {
        return;
    }
    let mut reg = REGISTERED.write().unwrap_or_else(|p| p.into_inner());
    reg.get_or_insert_with(HashMap::new)
        .insert(TypeId::of::<T>(), size_of::<T>());
}

/// Whether `T` is plain: a primitive number, or registered.
pub(crate) fn is_plain<T: 'static>() -> bool {
    let id = TypeId::of::<T>();
    if PRIMITIVES.iter().any(|p| p() == id) {
        return true;
    }
    // Types are never unregistered, so a type found once stays plain: the last one
    // found is remembered per thread, which spares the lock on the path of every batch.
    thread_local! {
        static LAST: std::cell::Cell<Option<TypeId>> = const { std::cell::Cell::new(None) };
    }
    if LAST.with(|l| l.get()) == Some(id) {
        return true;
    }
    let reg = REGISTERED.read().unwrap_or_else(|p| p.into_inner());
    let found = reg.as_ref().is_some_and(|r| r.contains_key(&id));
    if found {
        LAST.with(|l| l.set(Some(id)));
    }
    found
}

/// The primitive numbers: plain by `zerocopy`'s own impls.
const PRIMITIVES: [fn() -> TypeId; 12] = [
    TypeId::of::<u8>,
    TypeId::of::<u16>,
    TypeId::of::<u32>,
    TypeId::of::<u64>,
    TypeId::of::<u128>,
    TypeId::of::<i8>,
    TypeId::of::<i16>,
    TypeId::of::<i32>,
    TypeId::of::<i64>,
    TypeId::of::<i128>,
    TypeId::of::<f32>,
    TypeId::of::<f64>,
];

/// What a batch's first byte says about the rest.
const SERDE: u8 = 0;
const PLAIN_LE: u8 = 1;
const PLAIN_BE: u8 = 2;
const PLAIN_HERE: u8 = if cfg!(target_endian = "little") {
    PLAIN_LE
} else {
    PLAIN_BE
};
const PLAIN_THERE: u8 = PLAIN_LE + PLAIN_BE - PLAIN_HERE;

/// Proof that `T` is plain (a primitive number, or registered by [`register_plain`],
/// which requires `FromBytes + IntoBytes + Immutable`) and not zero-sized: what makes
/// the casts below sound, looked up once per batch.
struct Plain<T>(std::marker::PhantomData<fn(T)>);

impl<T: 'static> Plain<T> {
    fn check() -> Option<Self> {
        (size_of::<T>() > 0 && is_plain::<T>()).then_some(Plain(std::marker::PhantomData))
    }

    /// The bytes of `items`.
    fn bytes<'a>(&self, items: &'a [T]) -> &'a [u8] {
        // SAFETY: `T` is plain (`self` proves it): `IntoBytes + Immutable`, so its
        // values have no padding and no interior mutability, and the items' memory is
        // `size_of_val(items)` initialised bytes, readable as `u8` while borrowed.
        unsafe {
            std::slice::from_raw_parts(items.as_ptr().cast::<u8>(), std::mem::size_of_val(items))
        }
    }

    /// Appends the items `bytes` holds (a whole number of them) to `out`.
    fn extend(&self, bytes: &[u8], out: &mut Vec<T>) {
        let n = bytes.len() / size_of::<T>();
        debug_assert_eq!(n * size_of::<T>(), bytes.len());
        out.reserve(n);
        // SAFETY: `T` is plain (`self` proves it): `FromBytes`, so any `size_of::<T>()`
        // bytes are a valid `T`. `reserve` made room for `n` more items after the `len`
        // initialised ones; the copy writes exactly `n * size` bytes there (byte-wise,
        // so the source needs no alignment) before `set_len` counts them.
        unsafe {
            let dst = out.as_mut_ptr().add(out.len()).cast::<u8>();
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), dst, n * size_of::<T>());
            out.set_len(out.len() + n);
        }
    }
}

/// Appends `items` to `out`: a tag byte, then their bytes if `T` is plain, or what
/// `serde` appends otherwise.
pub(crate) fn encode_items<T: 'static>(
    items: &[T],
    out: &mut Vec<u8>,
    serde: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    let Some(plain) = Plain::<T>::check() else {
        return encode_serde(out, serde);
    };
    out.reserve(1 + std::mem::size_of_val(items));
    out.push(PLAIN_HERE);
    out.extend_from_slice(plain.bytes(items));
    Ok(())
}

/// The bytes [`encode_items`] appends for `items` if `T` is plain; `None` otherwise.
pub(crate) fn plain_len<T: 'static>(items: &[T]) -> Option<usize> {
    Plain::<T>::check().map(|_| 1 + std::mem::size_of_val(items))
}

/// Writes what [`encode_items`] appends for plain `items` into `out`, which is exactly
/// [`plain_len`] bytes.
///
/// # Panics
///
/// If `T` is not plain or `out` has another length.
pub(crate) fn write_items<T: 'static>(items: &[T], out: &mut [u8]) {
    let plain = Plain::<T>::check().expect("write_items of a type that is not plain");
    assert_eq!(
        out.len(),
        1 + std::mem::size_of_val(items),
        "a plain batch's room"
    );
    out[0] = PLAIN_HERE;
    out[1..].copy_from_slice(plain.bytes(items));
}

/// Appends a serde batch: the tag byte, then what `serde` appends (for items that are
/// not at hand as a slice of `T`, and are not plain).
pub(crate) fn encode_serde(
    out: &mut Vec<u8>,
    serde: impl FnOnce(&mut Vec<u8>) -> Result<(), String>,
) -> Result<(), String> {
    out.push(SERDE);
    serde(out)
}

/// Decodes what [`encode_items`] wrote, appending to `out`; `serde` decodes the rest of
/// a serde batch (everything after the tag).
pub(crate) fn decode_items<T: 'static>(
    bytes: &[u8],
    out: &mut Vec<T>,
    serde: impl FnOnce(&[u8], &mut Vec<T>) -> Result<(), String>,
) -> Result<(), String> {
    let (&tag, rest) = bytes
        .split_first()
        .ok_or("an empty batch (no encoding tag)")?;
    match tag {
        SERDE => serde(rest, out),
        PLAIN_HERE => {
            let size = size_of::<T>();
            let Some(plain) = Plain::<T>::check() else {
                return Err(format!(
                    "a batch of {} came as plain bytes, but this process does not have that type registered as plain (`register_plain`): do all processes run the same flow?",
                    std::any::type_name::<T>()
                ));
            };
            if rest.len() % size != 0 {
                return Err(format!(
                    "a plain batch of {} bytes is not a whole number of {}-byte {}",
                    rest.len(),
                    size,
                    std::any::type_name::<T>()
                ));
            }
            plain.extend(rest, out);
            Ok(())
        }
        PLAIN_THERE => Err(format!(
            "a batch of {} came as plain bytes of the other byte order: processes of one cluster must share theirs",
            std::any::type_name::<T>()
        )),
        other => Err(format!("unknown batch encoding tag {other}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<T: Clone + PartialEq + std::fmt::Debug + 'static>(items: &[T]) -> Vec<u8> {
        let mut bytes = Vec::new();
        encode_items(items, &mut bytes, |_| Err("serde".into())).unwrap();
        let mut back: Vec<T> = Vec::new();
        decode_items(&bytes, &mut back, |_, _| Err("serde".into())).unwrap();
        assert_eq!(back, items);
        bytes
    }

    #[derive(Debug, Clone, Copy, PartialEq, FromBytes, IntoBytes, Immutable)]
    #[repr(C)]
    struct Pair {
        a: u32,
        b: u32,
    }

    #[test]
    fn primitives_and_registered_types_cross_as_their_bytes() {
        let bytes = round_trip(&[1u64, u64::MAX, 7]);
        assert_eq!(bytes.len(), 1 + 24);
        round_trip(&[-1.5f64, 0.0]);
        register_plain::<Pair>();
        let bytes = round_trip(&[Pair { a: 1, b: 2 }, Pair { a: 3, b: 4 }]);
        assert_eq!(&bytes[1..5], &1u32.to_ne_bytes());
    }

    #[test]
    fn a_plain_batch_written_in_place_is_what_encode_appends() {
        let items = [3u32, 1, 4, 1, 5];
        let mut appended = Vec::new();
        encode_items(&items, &mut appended, |_| Err("serde".into())).unwrap();
        let mut placed = vec![0xAA; plain_len(&items).unwrap()];
        write_items(&items, &mut placed);
        assert_eq!(placed, appended);
        assert_eq!(plain_len(&["no".to_string()]), None);
    }

    #[test]
    fn other_types_go_through_serde_both_ways() {
        let mut bytes = Vec::new();
        encode_items(&["x".to_string()], &mut bytes, |out| {
            out.extend_from_slice(b"S");
            Ok(())
        })
        .unwrap();
        assert_eq!(bytes, [SERDE, b'S']);
        let mut back: Vec<String> = Vec::new();
        decode_items(&bytes, &mut back, |rest, out| {
            assert_eq!(rest, b"S");
            out.push("x".into());
            Ok(())
        })
        .unwrap();
        assert_eq!(back, ["x"]);
    }

    #[test]
    fn bad_plain_batches_are_errors() {
        #[derive(Debug, Clone, Copy, FromBytes, IntoBytes, Immutable)]
        #[repr(C)]
        struct Unregistered(u16);
        let none = |_: &[u8], _: &mut Vec<_>| Err::<(), _>("serde".to_string());
        let mut out: Vec<Unregistered> = Vec::new();
        let e = decode_items(&[PLAIN_HERE, 0, 0], &mut out, none).unwrap_err();
        assert!(e.contains("register_plain"), "{e}");
        let mut out: Vec<u32> = Vec::new();
        let none = |_: &[u8], _: &mut Vec<_>| Err::<(), _>("serde".to_string());
        let e = decode_items(&[PLAIN_HERE, 1, 2, 3], &mut out, none).unwrap_err();
        assert!(e.contains("whole number"), "{e}");
        let e = decode_items(&[PLAIN_THERE, 1, 2, 3, 4], &mut out, none).unwrap_err();
        assert!(e.contains("byte order"), "{e}");
        assert!(decode_items(&[], &mut out, none).is_err());
        assert!(decode_items(&[9], &mut out, none).is_err());
    }
}
