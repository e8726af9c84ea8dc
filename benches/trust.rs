//! Cost of the trust decision per handshake, by mode, relative to a
//! SHA-256 public-key pin (the cheapest safe mode). Ratios from one run are
//! what to compare: the machine may be noisy. For stable absolute figures use
//! `valgrind --tool=callgrind` on this bench.
//!
//! ```sh
//! cargo bench --bench trust --features p384,ed25519,rsa
//! ```
//!
//! The CertificateVerify signature check (one ECDSA P-256 verification for
//! a P-256 server) comes on top of every mode and is measured as its own row.

use mqtts::trust::{Pin, Trust};
use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
use std::hint::black_box;
use std::time::{Duration, Instant};

/// Median nanoseconds per call of `f` over `rounds` rounds of `batch` calls.
fn measure(mut f: impl FnMut(), rounds: usize, batch: usize) -> f64 {
    let mut samples: Vec<Duration> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            for _ in 0..batch {
                f();
            }
            start.elapsed()
        })
        .collect();
    samples.sort();
    samples[rounds / 2].as_nanos() as f64 / batch as f64
}

fn main() {
    let root_key = KeyPair::generate().expect("key");
    let mut root_params = CertificateParams::new(Vec::<String>::new()).expect("params");
    root_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let root = root_params.self_signed(&root_key).expect("root");
    let leaf_key = KeyPair::generate().expect("key");
    let leaf = CertificateParams::new(vec!["broker.test".to_string()])
        .expect("params")
        .signed_by(&leaf_key, &root, &root_key)
        .expect("leaf");
    let (root_der, leaf_der) = (root.der().to_vec(), leaf.der().to_vec());
    let presented = Trust::insecure_accept_any_certificate()
        .verify_server_certificate(&[&leaf_der], "broker.test", None)
        .expect("parses");
    let key_pins = [Pin::PublicKey(presented.spki_sha256())];
    let sha1_pins = [Pin::Certificate(
        presented.sha1().expect("insecure mode computes the SHA-1"),
    )];
    let rotation = [
        Pin::PublicKey([0; 32]),
        Pin::Certificate(presented.sha256()),
    ];
    let anchors = [root_der.as_slice()];

    let modes: [(&str, Trust<'_>); 5] = [
        ("public-key pin (SPKI SHA-256)", Trust::pinned(&key_pins)),
        ("certificate SHA-1 pin", Trust::pinned(&sha1_pins)),
        ("two pins, second matches", Trust::pinned(&rotation)),
        ("CA, P-256 chain", Trust::certificate_authorities(&anchors)),
        (
            "CA + public-key pin",
            Trust::certificate_authorities(&anchors).with_pins(&key_pins),
        ),
    ];
    let mut baseline = None;
    println!("{:<34} {:>12} {:>8}", "trust mode", "ns/handshake", "ratio");
    for (name, trust) in modes {
        let ns = measure(
            || {
                let result = trust.verify_server_certificate(
                    black_box(&[leaf_der.as_slice()]),
                    "broker.test",
                    Some(1_800_000_000),
                );
                assert!(result.is_ok(), "{name}: {result:?}");
            },
            15,
            20,
        );
        let base = *baseline.get_or_insert(ns);
        println!("{name:<34} {ns:>12.0} {:>8.2}", ns / base);
    }

    // The server's CertificateVerify: one ECDSA P-256 verification.
    use p256::ecdsa::signature::{Signer as _, Verifier as _};
    let signing = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("key");
    let verifying = *signing.verifying_key();
    let message = [0x20u8; 130];
    let signature: p256::ecdsa::Signature = signing.sign(&message);
    let ns = measure(
        || assert!(verifying.verify(black_box(&message), &signature).is_ok()),
        15,
        20,
    );
    let base = baseline.unwrap_or(ns);
    println!(
        "{:<34} {ns:>12.0} {:>8.2}",
        "+ CertificateVerify (P-256)",
        ns / base
    );
}
