//! Target `certificate_verify`: the TLS 1.3 CertificateVerify check
//! (`ServerKey::verify_certificate_verify`, src/trust/signature.rs, through
//! `mqtts::fuzzing`) for every key type, with arbitrary schemes, transcript
//! hashes and signatures: real ones made by the seed keys, edited ones, and
//! raw bytes.
//!
//! Checked beyond "no panic": a scheme that does not fit the key is
//! `SignatureSchemeMismatch` naming both; otherwise the answer is `Ok`
//! exactly when ring (an independent implementation) accepts the signature
//! over the same content, and `ServerSignatureInvalid` when it does not; a
//! transcript hash longer than SHA-384's is `ServerSignatureInvalid`.

use std::sync::OnceLock;

use arbitrary::{Arbitrary, Unstructured};
use mqtts::Error;
use mqtts::fuzzing::ServerKey;

use crate::keys::{self, ALL_SCHEMES, SEEDS};

/// Transcript hashes real signatures are made over (SHA-256 and SHA-384
/// sizes, and a short one a TLS 1.3 suite never produces).
pub fn fixed_hashes() -> &'static [Vec<u8>] {
    static HASHES: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    HASHES.get_or_init(|| {
        use sha2::Digest as _;
        vec![
            sha2::Sha256::digest(b"ClientHello...Certificate").to_vec(),
            sha2::Sha256::digest(b"another transcript").to_vec(),
            sha2::Sha384::digest(b"ClientHello...Certificate").to_vec(),
            vec![0; 32],
            vec![0xFF; 48],
            vec![0x5A; 20],
        ]
    })
}

/// A signature scheme: one embedded-tls parses (by position) or any code
/// point (those it does not parse never reach mqtts).
#[derive(Debug, Clone, Copy, Arbitrary)]
pub enum Scheme {
    Known(u8),
    Code(u16),
}

impl Scheme {
    pub fn get(self) -> Option<embedded_tls::SignatureScheme> {
        match self {
            Self::Known(i) => Some(ALL_SCHEMES[usize::from(i) % ALL_SCHEMES.len()]),
            Self::Code(code) => keys::scheme_of(code),
        }
    }
}

/// A transcript hash.
#[derive(Debug, Clone, Arbitrary)]
pub enum Hash {
    Fixed(u8),
    Raw(Vec<u8>),
}

impl Hash {
    pub fn get(&self) -> Vec<u8> {
        match self {
            Self::Fixed(i) => fixed_hashes()[usize::from(*i) % fixed_hashes().len()].clone(),
            Self::Raw(bytes) => bytes.clone(),
        }
    }
}

/// One change to a signature's bytes.
#[derive(Debug, Clone, Copy, Arbitrary)]
pub struct Edit {
    at: u16,
    op: u8,
    byte: u8,
}

/// Applies `edits` (set, remove, insert, flip a bit, truncate).
pub fn apply(mut bytes: Vec<u8>, edits: &[Edit]) -> Vec<u8> {
    for edit in edits.iter().take(8) {
        let len = bytes.len();
        let at = usize::from(edit.at) % (len + 1);
        match edit.op % 5 {
            0 if at < len => bytes[at] = edit.byte,
            1 if at < len => {
                bytes.remove(at);
            }
            2 => bytes.insert(at, edit.byte),
            3 if at < len => bytes[at] ^= 1 << (edit.byte % 8),
            4 => bytes.truncate(at),
            _ => {}
        }
    }
    bytes
}

/// A CertificateVerify signature.
#[derive(Debug, Clone, Arbitrary)]
pub enum Signature {
    /// Seed `key`'s signature with `scheme` over fixed hash `hash`.
    Real {
        key: u8,
        scheme: Scheme,
        hash: u8,
    },
    /// The same, edited.
    Edited {
        key: u8,
        scheme: Scheme,
        hash: u8,
        edits: Vec<Edit>,
    },
    Raw(Vec<u8>),
}

impl Signature {
    /// The bytes.
    pub fn get(&self) -> Vec<u8> {
        let real = |key: u8, scheme: Scheme, hash: u8| {
            let key = usize::from(key) % SEEDS.len();
            let hash = &fixed_hashes()[usize::from(hash) % fixed_hashes().len()];
            scheme
                .get()
                .and_then(|scheme| keys::sign(key, scheme, hash))
                .unwrap_or_default()
        };
        match self {
            Self::Real { key, scheme, hash } => real(*key, *scheme, *hash),
            Self::Edited {
                key,
                scheme,
                hash,
                edits,
            } => apply(real(*key, *scheme, *hash), edits),
            Self::Raw(bytes) => bytes.clone(),
        }
    }
}

#[derive(Debug, Arbitrary)]
pub struct Input {
    /// The seed whose key verifies.
    pub key: u8,
    pub scheme: Scheme,
    pub hash: Hash,
    pub signature: Signature,
}

/// Each seed's key, as the verifier decodes it.
fn server_keys() -> &'static [ServerKey] {
    static KEYS: OnceLock<Vec<ServerKey>> = OnceLock::new();
    KEYS.get_or_init(|| {
        let keys = SEEDS
            .iter()
            .map(|s| ServerKey::of_certificate(s.certificate).expect(s.name))
            .collect();
        // The oracle's own check: every seed's real signature over every
        // fixed hash is one ring accepts.
        for (index, seed) in SEEDS.iter().enumerate() {
            for &scheme in keys::schemes_for(seed.algorithm) {
                for hash in fixed_hashes() {
                    let signature = keys::sign(index, scheme, hash).expect(seed.name);
                    assert_eq!(
                        keys::reference_verify(index, scheme, hash, &signature),
                        Some(true),
                        "{} {scheme:?}",
                        seed.name
                    );
                }
            }
        }
        keys
    })
}

pub fn check(data: &[u8]) {
    let Ok(input) = Input::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    let index = usize::from(input.key) % SEEDS.len();
    // An unknown code point: embedded-tls refuses the message itself.
    let Some(scheme) = input.scheme.get() else {
        return;
    };
    let hash = input.hash.get();
    let signature = input.signature.get();
    let result = server_keys()[index].verify_certificate_verify(scheme, &hash, &signature);
    check_result(index, scheme, &hash, &signature, &result);
}

/// What `verify_certificate_verify` must answer for seed `index`'s key.
pub fn check_result(
    index: usize,
    scheme: embedded_tls::SignatureScheme,
    hash: &[u8],
    signature: &[u8],
    result: &Result<(), Error>,
) {
    let seed = &SEEDS[index];
    // RFC 8446 suites hash with SHA-256 or SHA-384: nothing longer is
    // signed (refused before the scheme is looked at; embedded-tls's
    // transcript hash is always SHA-256's 32 bytes).
    if hash.len() > 48 {
        assert_eq!(*result, Err(Error::ServerSignatureInvalid));
        return;
    }
    match keys::reference_verify(index, scheme, hash, signature) {
        None => assert_eq!(
            *result,
            Err(Error::SignatureSchemeMismatch {
                scheme: scheme.as_u16(),
                key: seed.algorithm
            }),
            "{} {scheme:?}",
            seed.name
        ),
        Some(true) => assert_eq!(*result, Ok(()), "{} {scheme:?}", seed.name),
        Some(false) => assert_eq!(
            *result,
            Err(Error::ServerSignatureInvalid),
            "{} {scheme:?} {signature:02X?}",
            seed.name
        ),
    }
}
