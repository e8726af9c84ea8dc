//! Target `tls`: the TLS record layer and handshake of `mqtts::tls::connect`,
//! then reads on the stream, fed a recorded rustls session under the
//! fuzzer's edits (records dropped, changed, cut, injected in plaintext or
//! encrypted under the server's keys, raw bytes); see `mqtts_fuzz::tls`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mqtts_fuzz::tls::check(data);
});
