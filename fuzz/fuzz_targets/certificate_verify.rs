//! Target `certificate_verify`: the server's CertificateVerify signature
//! check for every key type (P-256, P-384, Ed25519, RSA 2048/3072/4096)
//! with arbitrary schemes, hashes and signatures, against ring; see
//! `mqtts_fuzz::certificate_verify`.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mqtts_fuzz::certificate_verify::check(data);
});
