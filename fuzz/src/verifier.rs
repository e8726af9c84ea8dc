//! Target `verifier`: the handshake's trust verifier (`TrustVerifier`,
//! src/tls/verifier.rs, through `mqtts::fuzzing::Verifier`) fed arbitrary
//! sequences of Certificate and CertificateVerify callbacks, each either
//! direct (`on_certificate`, `on_certificate_verify`) or as embedded-tls
//! makes them (`TlsVerifier::verify_certificate` with a transcript hasher
//! and a `CertificateRef`, `verify_signature`), then `conclude` with an
//! arbitrary handshake outcome.
//!
//! Chains are made of the seed certificates (every key type, and the CA
//! that issued them), edited copies and raw bytes; signatures are real
//! ones by the seed keys over the transcript the verifier holds (or
//! another), edited ones, or raw bytes, under any scheme.
//!
//! A model of the verifier runs alongside: the trust decision is the public
//! `Trust::verify_server_certificate`, a signature is valid when ring
//! accepts it with the key of the seed whose SubjectPublicKeyInfo the
//! accepted leaf carries (no other private key exists). Checked: every
//! callback's answer and `conclude`'s are the model's; in particular
//! `conclude` is `Ok` only if a certificate was accepted by the trust mode
//! and then a CertificateVerify made with its key over the transcript hash
//! of that Certificate verified, and a failure is reported as the first one.

// mqtts::Error is large by design (see mqtts's src/lib.rs).
#![allow(clippy::result_large_err)]

use arbitrary::{Arbitrary, Unstructured};
use embedded_tls::{
    Aes128GcmSha256, CertificateEntryRef, CertificateRef, CertificateVerifyRef, SignatureScheme,
    TlsError, TlsVerifier,
};
use mqtts::Error;
use mqtts::error::TlsFailure;
use mqtts::fuzzing::Verifier;
use mqtts::trust::{CertificateInfo, KeyAlgorithm, Pin, PresentedCertificate, Trust};
use sha2::Digest as _;

use crate::certificate_verify::{self, Edit, Scheme, apply, fixed_hashes};
use crate::keys::{self, ROOT, SEEDS};

/// A deviation from "the first failure is the one reported", fixed: a
/// Certificate callback after a refusal replaced the recorded error (with
/// `UnexpectedHandshakeMessage`, or `MalformedCertificate` for a raw public
/// key entry through `verify_certificate`). Unreachable through
/// embedded-tls 0.19, which aborts the handshake at the first refusal;
/// fuzz/regressions/verifier/ holds the input that showed it. `false`
/// checks the strict property; `true` would accept the old behaviour.
pub const A_LATER_CERTIFICATE_REPLACES_THE_ERROR: bool = false;

/// Preimages of the transcript hashes given through `verify_certificate`
/// (embedded-tls passes its SHA-256 transcript hasher): their digests are
/// `fixed_hashes()[0]` and `[1]`, so real signatures over them are cached.
const TRANSCRIPTS: [&[u8]; 2] = [b"ClientHello...Certificate", b"another transcript"];

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum TrustChoice {
    PinPublicKey(u8),
    PinCertificate(u8),
    PinCertificateSha1(u8),
    WrongPin,
    Authorities,
    AuthoritiesAndPin(u8),
    Insecure,
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Cert {
    /// A seed leaf (index modulo 7: the six leaves, then the CA).
    Seed(u8),
    Edited {
        seed: u8,
        edits: Vec<Edit>,
    },
    Raw(Vec<u8>),
    /// An RFC 7250 raw public key entry (through `verify_certificate`
    /// only; direct calls take it as DER).
    RawPublicKey(Vec<u8>),
}

fn seed_certificate(seed: u8) -> &'static [u8] {
    match usize::from(seed) % (SEEDS.len() + 1) {
        i if i < SEEDS.len() => SEEDS[i].certificate,
        _ => ROOT,
    }
}

impl Cert {
    fn bytes(&self) -> Vec<u8> {
        match self {
            Self::Seed(seed) => seed_certificate(*seed).to_vec(),
            Self::Edited { seed, edits } => apply(seed_certificate(*seed).to_vec(), edits),
            Self::Raw(bytes) | Self::RawPublicKey(bytes) => bytes.clone(),
        }
    }
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Sig {
    /// A real signature over the transcript hash the verifier holds (or
    /// fixed hash 0 if none): by seed `key`, or by the key of the accepted
    /// leaf if `key` is `None`; with `signing`'s choice among the key's
    /// TLS 1.3 schemes.
    Real { key: Option<u8>, signing: u8 },
    /// The same, edited.
    Edited {
        key: Option<u8>,
        signing: u8,
        edits: Vec<Edit>,
    },
    /// A signature over a fixed hash, or raw bytes.
    Other(certificate_verify::Signature),
}

#[derive(Debug, Clone, Arbitrary)]
pub enum Step {
    Certificate {
        via_tls: bool,
        chain: Vec<Cert>,
        /// Index into the transcripts (through `verify_certificate`) or
        /// the fixed hashes (direct).
        transcript: u8,
        /// A raw hash instead (direct calls only).
        raw_hash: Option<Vec<u8>>,
    },
    CertificateVerify {
        via_tls: bool,
        signature: Sig,
        /// The scheme the message names; `None`: the one signed with.
        scheme: Option<Scheme>,
    },
}

#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Outcome {
    Completed,
    TimedOut,
    Closed,
    InvalidSignature,
    InvalidCertificate,
    InvalidHandshake,
    Io,
}

impl Outcome {
    fn get(self) -> Result<(), TlsError> {
        match self {
            Self::Completed => Ok(()),
            Self::TimedOut => Err(TlsError::Io(embedded_io::ErrorKind::TimedOut)),
            Self::Closed => Err(TlsError::ConnectionClosed),
            Self::InvalidSignature => Err(TlsError::InvalidSignature),
            Self::InvalidCertificate => Err(TlsError::InvalidCertificate),
            Self::InvalidHandshake => Err(TlsError::InvalidHandshake),
            Self::Io => Err(TlsError::Io(embedded_io::ErrorKind::BrokenPipe)),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub struct Input {
    pub trust: TrustChoice,
    pub other_name: bool,
    pub time: u8,
    pub steps: Vec<Step>,
    pub outcome: Outcome,
}

/// The verifier's state, as the model sees it.
#[derive(Debug, Clone)]
enum Model {
    AwaitingCertificate,
    AwaitingSignature {
        presented: PresentedCertificate,
        algorithm: KeyAlgorithm,
        /// The seed holding the key, if any (else nobody can sign).
        seed: Option<usize>,
        hash: Vec<u8>,
    },
    Authenticated(PresentedCertificate),
    Failed(Error),
}

impl Model {
    fn error(&self) -> Result<(), Error> {
        match self {
            Self::Failed(e) => Err(e.clone()),
            _ => Ok(()),
        }
    }
}

/// What the verifier tells embedded-tls for a recorded error.
fn tls_error(e: &Error) -> TlsError {
    match e {
        Error::ServerSignatureInvalid | Error::SignatureSchemeMismatch { .. } => {
            TlsError::InvalidSignature
        }
        Error::UnexpectedHandshakeMessage => TlsError::InvalidHandshake,
        _ => TlsError::InvalidCertificate,
    }
}

fn same_tls_error(a: &Result<(), TlsError>, b: &Result<(), TlsError>) -> bool {
    format!("{a:?}") == format!("{b:?}")
}

fn same_presented(a: &PresentedCertificate, b: &PresentedCertificate) -> bool {
    a.sha256() == b.sha256() && a.spki_sha256() == b.spki_sha256()
}

/// The pins of a trust choice.
fn pins(choice: TrustChoice) -> Vec<Pin> {
    let fingerprints = |seed: u8| {
        CertificateInfo::parse(seed_certificate(seed))
            .expect("seed")
            .fingerprints()
    };
    match choice {
        TrustChoice::PinPublicKey(seed) | TrustChoice::AuthoritiesAndPin(seed) => {
            vec![Pin::PublicKey(fingerprints(seed).spki_sha256())]
        }
        TrustChoice::PinCertificate(seed) => vec![Pin::Certificate(fingerprints(seed).sha256())],
        TrustChoice::PinCertificateSha1(seed) => {
            vec![Pin::Certificate(fingerprints(seed).sha1().expect("sha1"))]
        }
        TrustChoice::WrongPin => vec![Pin::PublicKey([0x5A; 32])],
        TrustChoice::Authorities | TrustChoice::Insecure => Vec::new(),
    }
}

pub fn check(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let pins = pins(input.trust);
    let anchors: [&[u8]; 1] = [ROOT];
    let trust = match input.trust {
        TrustChoice::Authorities => Trust::certificate_authorities(&anchors),
        TrustChoice::AuthoritiesAndPin(_) => {
            Trust::certificate_authorities(&anchors).with_pins(&pins)
        }
        TrustChoice::Insecure => Trust::insecure_accept_any_certificate(),
        _ => Trust::pinned(&pins),
    };
    let name = if input.other_name {
        "other.test"
    } else {
        "broker.test"
    };
    let now = match input.time % 3 {
        0 => None,
        1 => Some(1_900_000_000), // 2030: the seeds are valid
        _ => Some(1_000_000_000), // 2001: not yet valid
    };

    let mut verifier = Verifier::new(trust, name, now);
    let mut model = Model::AwaitingCertificate;
    for step in input.steps.iter().take(8) {
        match step {
            Step::Certificate {
                via_tls,
                chain,
                transcript,
                raw_hash,
            } => {
                let ders: Vec<Vec<u8>> = chain.iter().take(16).map(Cert::bytes).collect();
                let refs: Vec<&[u8]> = ders.iter().map(Vec::as_slice).collect();
                let raw_key = *via_tls
                    && chain
                        .iter()
                        .take(16)
                        .any(|c| matches!(c, Cert::RawPublicKey(_)));
                let hash = if *via_tls {
                    sha2::Sha256::digest(TRANSCRIPTS[usize::from(*transcript) % 2]).to_vec()
                } else if let Some(raw) = raw_hash {
                    raw.clone()
                } else {
                    fixed_hashes()[usize::from(*transcript) % fixed_hashes().len()].clone()
                };

                model = next_on_certificate(model, &trust, &refs, name, now, &hash, raw_key);

                if *via_tls {
                    let mut certificate = CertificateRef::with_context(&[]);
                    for (cert, der) in chain.iter().zip(&ders) {
                        let entry = match cert {
                            Cert::RawPublicKey(_) => CertificateEntryRef::RawPublicKey(der),
                            _ => CertificateEntryRef::X509(der),
                        };
                        certificate.add(entry).expect("16 entries at most");
                    }
                    let mut transcript_hasher = sha2::Sha256::new();
                    transcript_hasher.update(TRANSCRIPTS[usize::from(*transcript) % 2]);
                    let result = TlsVerifier::<Aes128GcmSha256>::verify_certificate(
                        &mut verifier,
                        &transcript_hasher,
                        certificate,
                    );
                    let expected = model.error().map_err(|e| tls_error(&e));
                    assert!(
                        same_tls_error(&result, &expected),
                        "verify_certificate: {result:?}, model {model:?}"
                    );
                } else {
                    let result = verifier.on_certificate(&refs, &hash);
                    assert_eq!(result, model.error(), "on_certificate, model {model:?}");
                }
            }
            Step::CertificateVerify {
                via_tls,
                signature,
                scheme,
            } => {
                let (signed_with, bytes) = signature_bytes(signature, &model);
                let Some(scheme) = scheme.map_or(signed_with, Scheme::get) else {
                    // A code point embedded-tls refuses itself.
                    continue;
                };
                model = next_on_certificate_verify(model, scheme, &bytes);
                if *via_tls {
                    let result = TlsVerifier::<Aes128GcmSha256>::verify_signature(
                        &mut verifier,
                        CertificateVerifyRef {
                            signature_scheme: scheme,
                            signature: &bytes,
                        },
                    );
                    let expected = model.error().map_err(|e| tls_error(&e));
                    assert!(
                        same_tls_error(&result, &expected),
                        "verify_signature: {result:?}, model {model:?}"
                    );
                } else {
                    let result = verifier.on_certificate_verify(scheme, &bytes);
                    assert_eq!(
                        result,
                        model.error(),
                        "on_certificate_verify, model {model:?}"
                    );
                }
            }
        }
    }

    let outcome = input.outcome.get();
    let result = verifier.conclude(outcome);
    match (&model, outcome) {
        (Model::Failed(e), _) => assert_eq!(result.as_ref(), Err(e)),
        (_, Err(TlsError::Io(embedded_io::ErrorKind::TimedOut))) => {
            assert_eq!(result, Err(Error::Tls(TlsFailure::Timeout)));
        }
        (_, Err(e)) => assert_eq!(result, Err(Error::from(e))),
        (Model::Authenticated(presented), Ok(())) => {
            let accepted = result.as_ref().expect("authenticated");
            assert!(same_presented(accepted, presented));
        }
        (Model::AwaitingCertificate, Ok(())) => assert_eq!(result, Err(Error::MissingCertificate)),
        (Model::AwaitingSignature { .. }, Ok(())) => {
            assert_eq!(result, Err(Error::MissingCertificateVerify));
        }
    }
    if let Err(e) = &result {
        assert!(!e.to_string().is_empty());
    }
}

fn next_on_certificate(
    model: Model,
    trust: &Trust<'_>,
    chain: &[&[u8]],
    name: &str,
    now: Option<u64>,
    hash: &[u8],
    raw_key: bool,
) -> Model {
    match model {
        Model::Failed(e) if !A_LATER_CERTIFICATE_REPLACES_THE_ERROR => Model::Failed(e),
        // embedded-tls never negotiates raw public keys: refused whatever
        // came before.
        _ if raw_key => Model::Failed(Error::MalformedCertificate),
        Model::AwaitingCertificate => match trust.verify_server_certificate(chain, name, now) {
            Err(e) => Model::Failed(e),
            // Longer than any TLS 1.3 transcript hash.
            Ok(_) if hash.len() > 48 => Model::Failed(Error::UnexpectedHandshakeMessage),
            Ok(presented) => Model::AwaitingSignature {
                algorithm: key_algorithm(chain[0], keys::seed_of(presented.spki_sha256())),
                seed: keys::seed_of(presented.spki_sha256()),
                presented,
                hash: hash.to_vec(),
            },
        },
        // A second Certificate, or one after the signature.
        _ => Model::Failed(Error::UnexpectedHandshakeMessage),
    }
}

/// The key type of an accepted leaf: a seed's, or what `CertificateInfo`
/// reads. An edited leaf that pins accept but `CertificateInfo` does not
/// parse (e.g. a broken date) is probed: the one key type whose scheme the
/// verifier does not call a mismatch.
fn key_algorithm(leaf: &[u8], seed: Option<usize>) -> KeyAlgorithm {
    if let Some(seed) = seed {
        return SEEDS[seed].algorithm;
    }
    if let Ok(info) = CertificateInfo::parse(leaf) {
        return info.key_algorithm();
    }
    let key = mqtts::fuzzing::ServerKey::of_certificate(leaf).expect("accepted, so usable");
    [
        KeyAlgorithm::EcdsaP256,
        KeyAlgorithm::EcdsaP384,
        KeyAlgorithm::Ed25519,
        KeyAlgorithm::Rsa,
    ]
    .into_iter()
    .find(|&algorithm| {
        let scheme = keys::schemes_for(algorithm)[0];
        !matches!(
            key.verify_certificate_verify(scheme, &[0; 32], &[]),
            Err(Error::SignatureSchemeMismatch { .. })
        )
    })
    .expect("a key type")
}

fn next_on_certificate_verify(model: Model, scheme: SignatureScheme, signature: &[u8]) -> Model {
    match model {
        Model::AwaitingSignature {
            presented,
            algorithm,
            seed,
            hash,
        } => {
            if !keys::schemes_for(algorithm).contains(&scheme) {
                return Model::Failed(Error::SignatureSchemeMismatch {
                    scheme: scheme.as_u16(),
                    key: algorithm,
                });
            }
            let valid = hash.len() <= 48
                && seed.is_some_and(|seed| {
                    keys::reference_verify(seed, scheme, &hash, signature) == Some(true)
                });
            if valid {
                Model::Authenticated(presented)
            } else {
                Model::Failed(Error::ServerSignatureInvalid)
            }
        }
        // Refused before: stays refused with the first error.
        Model::Failed(e) => Model::Failed(e),
        // Before any Certificate, or a second CertificateVerify.
        _ => Model::Failed(Error::UnexpectedHandshakeMessage),
    }
}

/// A signature's bytes and the scheme it was made with (if real).
fn signature_bytes(signature: &Sig, model: &Model) -> (Option<SignatureScheme>, Vec<u8>) {
    let real = |key: Option<u8>, signing: u8| {
        let (held_seed, hash) = match model {
            Model::AwaitingSignature { seed, hash, .. } => (*seed, hash.as_slice()),
            _ => (None, fixed_hashes()[0].as_slice()),
        };
        let index = match key {
            Some(key) => usize::from(key) % SEEDS.len(),
            None => held_seed.unwrap_or(0),
        };
        // Only fixed hashes are signed (RSA-4096 signing per run would
        // dominate); another one is signed as hash 0, a wrong signature.
        let hash = if fixed_hashes().iter().any(|h| h == hash) {
            hash
        } else {
            fixed_hashes()[0].as_slice()
        };
        let schemes = keys::schemes_for(SEEDS[index].algorithm);
        let scheme = schemes[usize::from(signing) % schemes.len()];
        let bytes = keys::sign(index, scheme, hash).expect("a scheme of the key");
        (Some(scheme), bytes)
    };
    match signature {
        Sig::Real { key, signing } => real(*key, *signing),
        Sig::Edited {
            key,
            signing,
            edits,
        } => {
            let (scheme, bytes) = real(*key, *signing);
            (scheme, apply(bytes, edits))
        }
        Sig::Other(signature) => (None, signature.get()),
    }
}
