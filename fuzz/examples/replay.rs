//! Runs one input through a target's checks without libFuzzer, for reading
//! a crash with a debugger or with `MQTTS_FUZZ_TRACE=1` (session target:
//! prints every call, its result and the packets it wrote):
//!
//! `RUSTFLAGS="--cfg fuzzing" cargo run --example replay -- TARGET FILE...`
//! (in `fuzz/`; `--cfg fuzzing`, as cargo-fuzz builds, gives the
//! `verifier` and `certificate_verify` targets their hook into mqtts).

fn main() {
    let mut args = std::env::args().skip(1);
    let target = args.next().expect("usage: replay TARGET FILE...");
    let check: fn(&[u8]) = match target.as_str() {
        "frame" => mqtts_fuzz::frames::check_stream,
        "fingerprint" => mqtts_fuzz::fingerprints::check,
        "session" => mqtts_fuzz::session::run,
        "trust" => mqtts_fuzz::trust::check,
        "tls" => mqtts_fuzz::tls::check,
        #[cfg(fuzzing)]
        "record_gate" => mqtts_fuzz::record_gate::check,
        #[cfg(fuzzing)]
        "verifier" => mqtts_fuzz::verifier::check,
        #[cfg(fuzzing)]
        "certificate_verify" => mqtts_fuzz::certificate_verify::check,
        other => panic!("unknown target {other}"),
    };
    for path in args {
        let data = std::fs::read(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
        check(&data);
        eprintln!("{path}: ok");
    }
}
