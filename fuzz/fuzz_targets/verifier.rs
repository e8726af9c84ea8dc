//! Target `verifier`: sequences of Certificate / CertificateVerify
//! callbacks into the handshake's trust verifier (directly and as
//! embedded-tls makes them), then its conclusion, checked against a model;
//! see `mqtts_fuzz::verifier`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mqtts_fuzz::verifier::check(data);
});
