//! The checks behind the cargo-fuzz targets in `fuzz_targets/`, kept in a
//! library so the seed generator (`examples/seeds.rs`) builds the same
//! inputs the targets read. Only mqtts's public API is used.

pub mod fingerprints;
pub mod frames;
// Shared with the property tests.
#[path = "../../tests/support/mqttrs_oracle.rs"]
pub mod mqttrs_oracle;
pub mod session;
pub mod trust;
pub mod trust_input;
