//! Target (d): the fingerprint parser (`Fingerprint::parse`,
//! `Fingerprint::parse_sha256`, `Pin::certificate`, `Pin::public_key`) fed
//! arbitrary text, with the round trip `parse(display(parse(x))) ==
//! parse(x)` and agreement between the four entry points.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    mqtts_fuzz::fingerprints::check(data);
});
