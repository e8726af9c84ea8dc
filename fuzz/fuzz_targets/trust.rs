//! Target (c): certificate parsing (`CertificateInfo`) and the trust
//! decision (`Trust::verify_server_certificate` in pinned, CA, CA + pins and
//! insecure modes) fed arbitrary DER chains; see `mqtts_fuzz::trust` for
//! the input layout and the properties checked.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mqtts_fuzz::trust::check(data);
});
