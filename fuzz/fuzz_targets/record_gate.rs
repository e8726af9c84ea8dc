//! Target `record_gate`: the TLS record gate inside the socket embedded-tls
//! reads through, fed arbitrary record streams, read sizes and phase
//! changes; nothing but application_data reaches embedded-tls after the
//! handshake; see `mqtts_fuzz::record_gate`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mqtts_fuzz::record_gate::check(data);
});
