//! How a batch crosses a process boundary: its bytes in a frame's payload.
//!
//! Within a process batches move by pointer and are never encoded. Only a batch bound
//! for a worker in another process is encoded, once, by the sending worker, into the
//! frame that the network thread writes as is; the receiving worker decodes it.
//!
//! * `Vec<T>` (redistribute, sinks): a tag byte, then the items: as one block of their
//!   bytes if `T` is plain (a primitive number, or a type made plain with
//!   [`crate::register_plain`]), else in postcard (serde, varint integers).
//! * [`KeyBatch`]: `count: u32 LE`, `count` key end offsets (`u32 LE`), the keys'
//!   canonical bytes ([`Key::encode`]), then the values as a `Vec<V>` is encoded. Keys
//!   therefore arrive exactly in the layout a keyed exchange uses for byte-shipped keys,
//!   and the receiver rehashes those bytes (the stable hash is defined on them).

use super::keyed::KeyBatch;
use super::Batch;
use crate::base::codec::postcard_into;
use crate::base::key::Key;
use crate::base::plain;
use crate::base::push::ExchangeData;

pub(crate) use crate::base::codec::{Codec, Direct, Wire};

impl<T: ExchangeData> Wire for Vec<T> {
    fn codec() -> Codec<Self> {
        Codec {
            encode: |batch, out| encode_values(batch, out),
            decode: |bytes, batch| decode_values(bytes, batch),
            direct: Some(Direct {
                len: |batch| plain::plain_len(batch),
                write: |batch, out| plain::write_items(batch, out),
            }),
        }
    }
}

/// Appends `values`: as one block of bytes if their type is plain
/// ([`crate::base::plain`]), else as a postcard sequence; a tag byte says which.
fn encode_values<V: ExchangeData>(values: &[V], out: &mut Vec<u8>) -> Result<(), String> {
    plain::encode_items(values, out, |out| postcard_into(values, out))
}

/// Decodes what [`encode_values`] wrote (all of `bytes`) into the empty `values`.
fn decode_values<V: ExchangeData>(bytes: &[u8], values: &mut Vec<V>) -> Result<(), String> {
    plain::decode_items(bytes, values, |rest, values| {
        *values = postcard::from_bytes(rest).map_err(|e| e.to_string())?;
        Ok(())
    })
}

impl<K: Key, V: ExchangeData> Wire for KeyBatch<K, V> {
    fn codec() -> Codec<Self> {
        Codec {
            encode: encode_keyed::<K, V>,
            decode: decode_keyed::<K, V>,
            direct: None,
        }
    }
}

/// The codec of keyed items `(K, V)` as whole items (fixed-partitioned sinks): the same
/// layout as a [`KeyBatch`], since keys need not implement serde.
pub(crate) fn keyed_items<K: Key, V: ExchangeData>() -> Codec<Vec<(K, V)>> {
    Codec {
        encode: |items, out| {
            out.extend_from_slice(&(items.len() as u32).to_le_bytes());
            encode_keys(items.iter().map(|(k, _)| k), items.len(), out);
            encode_item_values(items.iter().map(|(_, v)| v), items.len(), out)
        },
        decode: |bytes, items| {
            let mut b = KeyBatch::<K, V>::new();
            decode_keyed_into::<K, V>(bytes, &mut b, true)?;
            let mut start = 0;
            for (end, v) in b.ends.iter().zip(b.values.drain(..)) {
                let kb = &b.bytes[start..*end as usize];
                start = *end as usize;
                let k = K::decode(kb).ok_or_else(|| format!("invalid key bytes {kb:?}"))?;
                items.push((k, v));
            }
            Ok(())
        },
        direct: None,
    }
}

/// Appends the values of `n` items as [`encode_values`] does for a column of them.
fn encode_item_values<'a, V: ExchangeData>(
    values: impl Iterator<Item = &'a V>,
    n: usize,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    if plain::is_plain::<V>() {
        let column: Vec<V> = values.cloned().collect();
        debug_assert_eq!(column.len(), n);
        return encode_values(&column, out);
    }
    let refs: Vec<&V> = values.collect();
    plain::encode_serde(out, |out| postcard_into(&refs, out))
}

/// Appends `n` key end offsets (`u32` LE) and then the keys' canonical bytes.
fn encode_keys<'a, K: Key>(keys: impl Iterator<Item = &'a K>, n: usize, out: &mut Vec<u8>) {
    let ends_at = out.len();
    out.resize(ends_at + 4 * n, 0);
    let start = out.len();
    for (i, k) in keys.enumerate() {
        k.encode(out);
        let end = (out.len() - start) as u32;
        out[ends_at + 4 * i..ends_at + 4 * i + 4].copy_from_slice(&end.to_le_bytes());
    }
}

fn encode_keyed<K: Key, V: ExchangeData>(
    b: &KeyBatch<K, V>,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let n = Batch::len(b);
    out.extend_from_slice(&(n as u32).to_le_bytes());
    if K::SHIP_BYTES {
        for e in &b.ends {
            out.extend_from_slice(&e.to_le_bytes());
        }
        out.extend_from_slice(&b.bytes);
        encode_values(&b.values, out)
    } else {
        encode_keys(b.items.iter().map(|(_, k, _)| k), n, out);
        encode_item_values(b.items.iter().map(|(_, _, v)| v), n, out)
    }
}

fn decode_keyed<K: Key, V: ExchangeData>(
    bytes: &[u8],
    b: &mut KeyBatch<K, V>,
) -> Result<(), String> {
    decode_keyed_into(bytes, b, K::SHIP_BYTES)
}

/// Decodes the keyed layout into `b`, keeping keys as bytes (`as_bytes`) or decoding them.
fn decode_keyed_into<K: Key, V: ExchangeData>(
    bytes: &[u8],
    b: &mut KeyBatch<K, V>,
    as_bytes: bool,
) -> Result<(), String> {
    let short = || format!("keyed batch truncated ({} bytes)", bytes.len());
    let n = u32::from_le_bytes(
        bytes
            .get(..4)
            .ok_or_else(short)?
            .try_into()
            .expect("4 bytes"),
    ) as usize;
    let ends_len = n.checked_mul(4).ok_or_else(short)?;
    let ends = bytes.get(4..4 + ends_len).ok_or_else(short)?;
    let keys_start = 4 + ends_len;
    let mut prev = 0usize;
    let mut key_ends = Vec::with_capacity(n);
    for c in ends.chunks_exact(4) {
        let e = u32::from_le_bytes(c.try_into().expect("4 bytes")) as usize;
        if e < prev || keys_start + e > bytes.len() {
            return Err(format!(
                "keyed batch: key end offset {e} out of order or out of range"
            ));
        }
        key_ends.push(e);
        prev = e;
    }
    let key_bytes = &bytes[keys_start..keys_start + prev];
    let mut values: Vec<V> = Vec::new();
    decode_values(&bytes[keys_start + prev..], &mut values)?;
    if values.len() != n {
        return Err(format!("keyed batch: {n} keys but {} values", values.len()));
    }
    if as_bytes {
        b.ends.extend(key_ends.iter().map(|&e| e as u32));
        b.bytes.extend_from_slice(key_bytes);
        b.values = values;
    } else {
        let mut start = 0;
        b.items.reserve(n);
        for (e, v) in key_ends.into_iter().zip(values) {
            let kb = &key_bytes[start..e];
            start = e;
            let k =
                K::decode(kb).ok_or_else(|| format!("keyed batch: invalid key bytes {kb:?}"))?;
            b.items.push((k.stable_hash(), k, v));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip<K: Key, V: ExchangeData + PartialEq + std::fmt::Debug>(items: Vec<(K, V)>) {
        let mut b = KeyBatch::<K, V>::fresh();
        for (k, v) in items.clone() {
            b.push(k.stable_hash(), k, v);
        }
        let mut bytes = Vec::new();
        (KeyBatch::<K, V>::codec().encode)(&b, &mut bytes).unwrap();
        let mut back = KeyBatch::<K, V>::fresh();
        (KeyBatch::<K, V>::codec().decode)(&bytes, &mut back).unwrap();
        assert_eq!(back.len(), items.len());
        let mut start = 0;
        for (i, (k, v)) in items.iter().enumerate() {
            if K::SHIP_BYTES {
                let e = back.ends[i] as usize;
                assert_eq!(K::decode(&back.bytes[start..e]).as_ref(), Some(k));
                assert_eq!(&back.values[i], v);
                start = e;
            } else {
                assert_eq!(&back.items[i], &(k.stable_hash(), k.clone(), v.clone()));
            }
        }
        // Truncations are errors, never panics.
        for cut in 0..bytes.len() {
            let mut junk = KeyBatch::<K, V>::fresh();
            let _ = (KeyBatch::<K, V>::codec().decode)(&bytes[..cut], &mut junk);
        }
    }

    #[test]
    fn keyed_batches_round_trip() {
        round_trip::<String, u64>((0..50).map(|i| (format!("k{i}"), i * 1000)).collect());
        round_trip::<u32, String>((0..50).map(|i| (i, format!("v{i}"))).collect());
        round_trip::<(String, u8), Option<i64>>(vec![
            (("a".into(), 1), Some(-5)),
            (("".into(), 0), None),
        ]);
        round_trip::<&'static str, ()>(vec![("x", ()), ("y", ())]);
        round_trip::<String, u8>(vec![]);
    }

    #[test]
    fn keyed_items_round_trip() {
        let items: Vec<(u32, String)> = (0..20).map(|i| (i, format!("v{i}"))).collect();
        let codec = keyed_items::<u32, String>();
        let mut bytes = Vec::new();
        (codec.encode)(&items, &mut bytes).unwrap();
        let mut back = Vec::new();
        (codec.decode)(&bytes, &mut back).unwrap();
        assert_eq!(back, items);
    }

    #[test]
    fn item_batches_round_trip() {
        let v: Vec<(String, f64)> = vec![("a".into(), 1.5), ("b".into(), -0.0)];
        let mut bytes = Vec::new();
        (Vec::codec().encode)(&v, &mut bytes).unwrap();
        let mut back = Vec::new();
        (Vec::<(String, f64)>::codec().decode)(&bytes, &mut back).unwrap();
        assert_eq!(back, v);
    }
}
