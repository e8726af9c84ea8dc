//! Target (a): the MQTT frame reader and decoder (`mqtts::mqtt::frame`)
//! fed arbitrary bytes, read as a stream of frames the way the client reads
//! its receive buffer: fixed header first, then the whole frame to `decode`.
//!
//! Beyond "no panic", every accepted frame must re-encode to the same
//! bytes (the encoder and decoder agree on the wire format), and a
//! frame with a byte missing must be refused.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mqtts_fuzz::frames::check_stream;

fuzz_target!(|data: &[u8]| {
    check_stream(data);
});
