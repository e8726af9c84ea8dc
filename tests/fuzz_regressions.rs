//! Regressions from fuzzing (fuzz/, scripts/fuzz.sh): every input a fuzz
//! target crashed on is replayed here through the public API with the
//! typed result it must give, and the committed corpora are replayed
//! through the same API so `cargo test` alone catches a panic they reach.
//!
//! The session and tls targets' corpora need the fuzz crate's harness (a
//! scripted mock transport; a recorded rustls session re-encrypted under
//! its keys), and the record_gate, certificate_verify and verifier targets
//! reach crate-private code through `mqtts::fuzzing`, which exists only
//! with `--cfg fuzzing`: those corpora, and the inputs of their findings
//! in fuzz/regressions/, run in `scripts/fuzz.sh smoke`.

// mqtts::Error is large by design (see src/lib.rs).
#![allow(clippy::result_large_err)]

#[path = "support/mqttrs_oracle.rs"]
mod mqttrs_oracle;
#[cfg(feature = "insecure")]
#[path = "../fuzz/src/trust_input.rs"]
mod trust_input;

use std::fs;
use std::path::{Path, PathBuf};

#[cfg(feature = "insecure")]
use mqtts::Error;
use mqtts::fingerprint::{Fingerprint, FingerprintError};
use mqtts::mqtt::frame::{self, FixedHeader};
use mqtts::mqtt::{Incoming, ProtocolError};
#[cfg(feature = "insecure")]
use mqtts::trust::{CertificateInfo, Pin, Trust};

fn corpus(target: &str) -> Vec<(PathBuf, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<_> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .collect();
    files.sort();
    files
        .into_iter()
        .map(|path| {
            let bytes = fs::read(&path).unwrap();
            (path, bytes)
        })
        .collect()
}

/// Decodes `data` as consecutive frames, as the client reads its buffer;
/// returns how many decoded and the error that stopped it, if any.
fn decode_stream(data: &[u8]) -> (usize, Option<ProtocolError>) {
    let mut rest = data;
    let mut decoded = 0;
    while !rest.is_empty() {
        let header = match FixedHeader::parse(rest) {
            Ok(Some(header)) => header,
            Ok(None) => return (decoded, Some(ProtocolError::Truncated)),
            Err(e) => return (decoded, Some(e)),
        };
        let Some(frame) = rest.get(..header.frame_len()) else {
            return (decoded, Some(ProtocolError::Truncated));
        };
        match frame::decode(frame) {
            Ok(packet) => {
                // What mqtts accepts, mqttrs reads the same way.
                if let Err(why) = mqttrs_oracle::agrees(frame, &packet) {
                    panic!("{frame:02X?}: {why}");
                }
                decoded += 1;
            }
            Err(e) => return (decoded, Some(e)),
        }
        rest = &rest[frame.len()..];
    }
    (decoded, None)
}

#[test]
fn frame_corpus_decodes_without_panic_and_as_mqttrs_reads_it() {
    let files = corpus("frame");
    assert!(files.len() >= 10, "{} files", files.len());
    let mut decoded = 0;
    for (_, bytes) in &files {
        let (count, _) = decode_stream(bytes);
        decoded += count;
    }
    // Minimized for coverage, the corpus holds refusals and real streams.
    assert!(decoded > 0, "no frame decoded in {} files", files.len());
}

#[test]
fn fingerprint_corpus_parses_or_names_the_mistake() {
    let files = corpus("fingerprint");
    assert!(files.len() >= 10, "{} files", files.len());
    let mut accepted = 0;
    for (path, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        match Fingerprint::parse(&text) {
            Ok(fingerprint) => {
                accepted += 1;
                assert_eq!(
                    Fingerprint::parse(&fingerprint.to_string()),
                    Ok(fingerprint),
                    "{}",
                    path.display()
                );
            }
            Err(FingerprintError::InvalidCharacter { position, found }) => {
                assert_eq!(
                    text.as_bytes().get(position),
                    Some(&found),
                    "{}",
                    path.display()
                );
            }
            Err(FingerprintError::IncompleteByte { position }) => {
                assert!(position < text.len(), "{}", path.display());
            }
            Err(_) => {}
        }
    }
    assert!(accepted > 0);
}

/// Splits a trust-target input (fuzz/src/trust.rs): four header bytes, then
/// DER blobs back to back, as the target does.
#[cfg(feature = "insecure")]
fn blobs(data: &[u8]) -> Vec<&[u8]> {
    trust_input::split_blobs(data.get(4..).unwrap_or_default())
}

// Every decision is compared with insecure mode's.
#[cfg(feature = "insecure")]
#[test]
fn trust_corpus_gives_typed_decisions() {
    let files = corpus("trust");
    assert!(files.len() >= 10, "{} files", files.len());
    let mut parsed = 0;
    for (path, bytes) in &files {
        let chain = blobs(bytes);
        for blob in &chain {
            if let Ok(info) = CertificateInfo::parse(blob) {
                parsed += 1;
                let _ = format!("{} {}", info.subject(), info.issuer());
                assert_eq!(info.fingerprints().sha256(), Fingerprint::sha256_of(blob));
            }
        }
        let insecure = Trust::insecure_accept_any_certificate();
        let result = insecure.verify_server_certificate(&chain, "broker.test", None);
        match &result {
            Ok(presented) => {
                // Pinning that certificate accepts exactly as insecure mode does.
                let pins = [Pin::Certificate(presented.sha256())];
                let pinned =
                    Trust::pinned(&pins).verify_server_certificate(&chain, "broker.test", None);
                let pinned = pinned.map(|p| (p.sha256(), p.spki_sha256()));
                assert_eq!(
                    pinned,
                    Ok((presented.sha256(), presented.spki_sha256())),
                    "{}",
                    path.display()
                );
            }
            Err(
                Error::MissingCertificate | Error::MalformedCertificate | Error::UnsupportedKey(_),
            ) => {}
            Err(e) => panic!("{}: insecure mode refused with {e:?}", path.display()),
        }
        if chain.len() > 1 {
            let (leaf_and_intermediates, anchor) = chain.split_at(chain.len() - 1);
            let ca = Trust::certificate_authorities(anchor);
            let result = ca.verify_server_certificate(leaf_and_intermediates, "broker.test", None);
            assert!(
                matches!(
                    result,
                    Ok(_)
                        | Err(Error::CertificateRejected { .. }
                            | Error::Config(_)
                            | Error::MalformedCertificate
                            | Error::MissingCertificate
                            | Error::UnsupportedKey(_))
                ),
                "{}: {result:?}",
                path.display()
            );
        }
    }
    assert!(parsed > 0);
}

/// A frame the decoder accepts is one the encoder writes the same way.
#[test]
fn decoded_acknowledgements_are_what_the_encoder_writes() {
    use mqtts::mqtt::encode::{self, Ack};
    for (frame, kind) in [
        ([0x40, 0x02, 0x12, 0x34], Ack::Puback),
        ([0x50, 0x02, 0x12, 0x34], Ack::Pubrec),
        ([0x62, 0x02, 0x12, 0x34], Ack::Pubrel),
        ([0x70, 0x02, 0x12, 0x34], Ack::Pubcomp),
    ] {
        let id = match frame::decode(&frame).unwrap() {
            Incoming::Puback(id)
            | Incoming::Pubrec(id)
            | Incoming::Pubrel(id)
            | Incoming::Pubcomp(id) => id,
            other => panic!("{other:?}"),
        };
        assert_eq!(encode::ack(kind, id), frame);
    }
}
