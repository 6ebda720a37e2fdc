//! Arbitrary bytes on a new connection must never panic the handshake reader.
#![no_main]

use libfuzzer_sys::fuzz_target;
use waxfast::net::hello::Hello;

fuzz_target!(|data: &[u8]| {
    if let Ok(h) = Hello::read_from(&mut &data[..]) {
        // Whatever parsed survives a round trip.
        let again = Hello::read_from(&mut &h.to_bytes()[..]).expect("re-encoded hello parses");
        assert_eq!(again, h);
    }
});
