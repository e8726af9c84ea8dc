//! Target (b): the MQTT client session after the handshake, over an
//! in-memory transport serving arbitrary broker bytes, driven by an
//! arbitrary sequence of calls; see `mqtts_fuzz::session` for the input
//! layout and the invariants checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mqtts_fuzz::session::run(data);
});
