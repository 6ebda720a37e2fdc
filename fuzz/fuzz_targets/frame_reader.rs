//! Arbitrary bytes from a peer, cut at arbitrary points, must never panic the frame
//! reader, and every frame it returns must have a checked kind and length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waxfast::net::frame::{FrameReader, MAX_FRAME};

fuzz_target!(|data: &[u8]| {
    // The first byte picks the chunk size the bytes arrive in.
    let Some((&chunk, rest)) = data.split_first() else {
        return;
    };
    let chunk = usize::from(chunk).max(1);
    let mut reader = FrameReader::new();
    for piece in rest.chunks(chunk) {
        reader.extend(piece);
        loop {
            match reader.next_frame() {
                Ok(Some(f)) => {
                    assert!(f.header.kind().is_ok());
                    assert!(f.payload.len() <= MAX_FRAME);
                    assert_eq!(f.payload.len(), f.header.len.get() as usize);
                }
                Ok(None) => break,
                Err(_) => return, // the connection would be dropped here
            }
        }
    }
});
