//! The checks behind the cargo-fuzz targets in `fuzz_targets/`, kept in a
//! library so the seed generator (`examples/seeds.rs`) builds the same
//! inputs the targets read. mqtts's public API is used, and its
//! `fuzzing` module (only with `--cfg fuzzing`, as cargo-fuzz builds) for
//! the verifier, CertificateVerify and record gate targets.

#[cfg(fuzzing)]
pub mod certificate_verify;
pub mod fingerprints;
pub mod frames;
pub mod keys;
// Shared with the property tests.
#[path = "../../tests/support/mqttrs_oracle.rs"]
pub mod mqttrs_oracle;
#[cfg(fuzzing)]
pub mod record_gate;
pub mod session;
pub mod tls;
pub mod trust;
pub mod trust_input;
#[cfg(fuzzing)]
pub mod verifier;
