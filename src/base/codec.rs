//! How bytes stand for values: a channel's batch codec (`Codec`, `Wire`; the
//! implementations are `exchange::codec`), and the encoding of saved states.

/// Encodes a batch, appending to a buffer.
pub(crate) type EncodeFn<B> = fn(&B, &mut Vec<u8>) -> Result<(), String>;
/// Decodes a batch from exactly the bytes its encoder wrote, into an empty batch.
pub(crate) type DecodeFn<B> = fn(&[u8], &mut B) -> Result<(), String>;

/// The encoder and decoder of one channel's batch type.
pub(crate) struct Codec<B> {
    pub(crate) encode: EncodeFn<B>,
    pub(crate) decode: DecodeFn<B>,
    /// For batches whose encoded length is known before encoding (plain data): the
    /// encoding written straight into the transport's buffer.
    pub(crate) direct: Option<Direct<B>>,
}

/// Encoding in place: `len` says how many bytes a batch encodes to (`None`: this one
/// cannot be written in place), `write` fills exactly that many with what `encode`
/// would append.
pub(crate) struct Direct<B> {
    pub(crate) len: fn(&B) -> Option<usize>,
    pub(crate) write: fn(&B, &mut [u8]),
}

impl<B> Clone for Direct<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for Direct<B> {}

impl<B> Clone for Codec<B> {
    fn clone(&self) -> Self {
        *self
    }
}
impl<B> Copy for Codec<B> {}

impl<B> std::fmt::Debug for Codec<B> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Codec")
    }
}

/// Batch types that can cross processes.
pub(crate) trait Wire: Sized {
    fn codec() -> Codec<Self>;
}

/// Encodes `value` with postcard, appending to `out`.
pub(crate) fn encode_into<S: serde::Serialize>(value: &S, out: &mut Vec<u8>) -> Result<(), String> {
    postcard_into(value, out).map_err(|e| format!("cannot encode the state: {e}"))
}

/// Appends `value` in postcard to `out` (postcard's error as is).
pub(crate) fn postcard_into<S: serde::Serialize + ?Sized>(
    value: &S,
    out: &mut Vec<u8>,
) -> Result<(), String> {
    let buf = std::mem::take(out);
    *out = postcard::to_extend(value, buf).map_err(|e| e.to_string())?;
    Ok(())
}

/// Decodes a state that [`encode_into`] wrote.
pub(crate) fn decode<S: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<S, String> {
    postcard::from_bytes(bytes).map_err(|e| {
        format!(
            "a saved state does not decode as this step's state type ({e}); was the flow changed?"
        )
    })
}
