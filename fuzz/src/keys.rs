//! Seed certificates and keys of every type mqtts verifies (fuzz/data/,
//! made once with openssl: a P-256 root and six leaves for `broker.test`
//! it issued), real TLS 1.3 CertificateVerify signatures made with them,
//! and an independent reference verifier (ring) for those signatures.
//!
//! Signatures are deterministic (RFC 6979 ECDSA, Ed25519, RSA-PSS with a
//! fixed salt generator), so an input reproduces in another process, and
//! cached: RSA-4096 signing would otherwise dominate a run.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use embedded_tls::SignatureScheme;
use mqtts::trust::KeyAlgorithm;
use ring::signature::{self as ring_sig, KeyPair as _};

/// The CA that issued every seed leaf.
pub const ROOT: &[u8] = include_bytes!("../data/root.der");

/// One seed: a certificate for `broker.test` and its PKCS#8 key.
pub struct Seed {
    pub name: &'static str,
    pub algorithm: KeyAlgorithm,
    pub certificate: &'static [u8],
    pkcs8: &'static [u8],
}

macro_rules! seed {
    ($name:literal, $algorithm:expr) => {
        Seed {
            name: $name,
            algorithm: $algorithm,
            certificate: include_bytes!(concat!("../data/", $name, ".der")),
            pkcs8: include_bytes!(concat!("../data/", $name, ".pk8.der")),
        }
    };
}

impl Seed {
    /// The private key (PKCS#8 DER).
    pub fn pkcs8(&self) -> &'static [u8] {
        self.pkcs8
    }
}

/// Every key type: P-256, P-384, Ed25519, RSA 2048/3072/4096.
pub static SEEDS: [Seed; 6] = [
    seed!("p256", KeyAlgorithm::EcdsaP256),
    seed!("p384", KeyAlgorithm::EcdsaP384),
    seed!("ed25519", KeyAlgorithm::Ed25519),
    seed!("rsa2048", KeyAlgorithm::Rsa),
    seed!("rsa3072", KeyAlgorithm::Rsa),
    seed!("rsa4096", KeyAlgorithm::Rsa),
];

/// The schemes a server with this key may use in TLS 1.3 (RFC 8446 §4.2.3).
pub fn schemes_for(algorithm: KeyAlgorithm) -> &'static [SignatureScheme] {
    match algorithm {
        KeyAlgorithm::EcdsaP256 => &[SignatureScheme::EcdsaSecp256r1Sha256],
        KeyAlgorithm::EcdsaP384 => &[SignatureScheme::EcdsaSecp384r1Sha384],
        KeyAlgorithm::Ed25519 => &[SignatureScheme::Ed25519],
        KeyAlgorithm::Rsa => &[
            SignatureScheme::RsaPssRsaeSha256,
            SignatureScheme::RsaPssRsaeSha384,
            SignatureScheme::RsaPssRsaeSha512,
        ],
        _ => &[],
    }
}

/// Every scheme embedded-tls 0.19 parses (a code point outside this list
/// is refused before the verifier is called).
pub const ALL_SCHEMES: [SignatureScheme; 25] = [
    SignatureScheme::RsaPkcs1Sha256,
    SignatureScheme::RsaPkcs1Sha384,
    SignatureScheme::RsaPkcs1Sha512,
    SignatureScheme::EcdsaSecp256r1Sha256,
    SignatureScheme::EcdsaSecp384r1Sha384,
    SignatureScheme::EcdsaSecp521r1Sha512,
    SignatureScheme::RsaPssRsaeSha256,
    SignatureScheme::RsaPssRsaeSha384,
    SignatureScheme::RsaPssRsaeSha512,
    SignatureScheme::Ed25519,
    SignatureScheme::Ed448,
    SignatureScheme::RsaPssPssSha256,
    SignatureScheme::RsaPssPssSha384,
    SignatureScheme::RsaPssPssSha512,
    SignatureScheme::Sha224Ecdsa,
    SignatureScheme::Sha224Rsa,
    SignatureScheme::Sha224Dsa,
    SignatureScheme::RsaPkcs1Sha1,
    SignatureScheme::EcdsaSha1,
    SignatureScheme::Sha256BrainpoolP256r1,
    SignatureScheme::Sha384BrainpoolP384r1,
    SignatureScheme::Sha512BrainpoolP512r1,
    SignatureScheme::MlDsa44,
    SignatureScheme::MlDsa65,
    SignatureScheme::MlDsa87,
];

/// The scheme of a code point, if embedded-tls knows it.
pub fn scheme_of(code: u16) -> Option<SignatureScheme> {
    ALL_SCHEMES.into_iter().find(|s| s.as_u16() == code)
}

/// What a TLS 1.3 server signs: 64 spaces, the context string, a zero
/// byte and the transcript hash (RFC 8446 §4.4.3), written out here
/// independently of mqtts.
pub fn signed_content(transcript_hash: &[u8]) -> Vec<u8> {
    let mut content = vec![0x20; 64];
    content.extend_from_slice(b"TLS 1.3, server CertificateVerify");
    content.push(0);
    content.extend_from_slice(transcript_hash);
    content
}

/// The raw public key ring verifies with (SEC1 point, Ed25519 key, or
/// PKCS#1 RSAPublicKey), from each seed's private key.
fn public_keys() -> &'static [Vec<u8>; 6] {
    static KEYS: OnceLock<[Vec<u8>; 6]> = OnceLock::new();
    KEYS.get_or_init(|| {
        let rng = ring::rand::SystemRandom::new();
        std::array::from_fn(|i| {
            let seed = &SEEDS[i];
            match seed.algorithm {
                KeyAlgorithm::EcdsaP256 | KeyAlgorithm::EcdsaP384 => {
                    let alg = if seed.algorithm == KeyAlgorithm::EcdsaP256 {
                        &ring_sig::ECDSA_P256_SHA256_ASN1_SIGNING
                    } else {
                        &ring_sig::ECDSA_P384_SHA384_ASN1_SIGNING
                    };
                    ring_sig::EcdsaKeyPair::from_pkcs8(alg, seed.pkcs8, &rng)
                        .expect(seed.name)
                        .public_key()
                        .as_ref()
                        .to_vec()
                }
                KeyAlgorithm::Ed25519 => {
                    ring_sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(seed.pkcs8)
                        .expect(seed.name)
                        .public_key()
                        .as_ref()
                        .to_vec()
                }
                _ => ring_sig::RsaKeyPair::from_pkcs8(seed.pkcs8)
                    .expect(seed.name)
                    .public_key()
                    .as_ref()
                    .to_vec(),
            }
        })
    })
}

/// Whether ring accepts `signature` as seed `index`'s CertificateVerify
/// with `scheme` over `transcript_hash`; `None` when the scheme does not
/// fit the key (a TLS 1.3 client must refuse it whatever the bytes).
pub fn reference_verify(
    index: usize,
    scheme: SignatureScheme,
    transcript_hash: &[u8],
    signature: &[u8],
) -> Option<bool> {
    let seed = &SEEDS[index];
    if !schemes_for(seed.algorithm).contains(&scheme) {
        return None;
    }
    let algorithm: &dyn ring_sig::VerificationAlgorithm = match scheme {
        SignatureScheme::EcdsaSecp256r1Sha256 => &ring_sig::ECDSA_P256_SHA256_ASN1,
        SignatureScheme::EcdsaSecp384r1Sha384 => &ring_sig::ECDSA_P384_SHA384_ASN1,
        SignatureScheme::Ed25519 => &ring_sig::ED25519,
        SignatureScheme::RsaPssRsaeSha256 => &ring_sig::RSA_PSS_2048_8192_SHA256,
        SignatureScheme::RsaPssRsaeSha384 => &ring_sig::RSA_PSS_2048_8192_SHA384,
        SignatureScheme::RsaPssRsaeSha512 => &ring_sig::RSA_PSS_2048_8192_SHA512,
        _ => unreachable!("schemes_for"),
    };
    let key = ring_sig::UnparsedPublicKey::new(algorithm, &public_keys()[index]);
    Some(
        key.verify(&signed_content(transcript_hash), signature)
            .is_ok(),
    )
}

/// A deterministic generator (SplitMix64) for RSA-PSS salts and the
/// client's randomness in the tls target.
#[derive(Debug, Clone)]
pub struct FixedRng(pub u64);

impl rand_core::RngCore for FixedRng {
    fn next_u32(&mut self) -> u32 {
        self.next_u64() as u32
    }

    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for chunk in dest.chunks_mut(8) {
            let bytes = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&bytes[..chunk.len()]);
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for FixedRng {}

/// Seed `index`'s signature with `scheme` over `transcript_hash` (any
/// scheme of its key type, PKCS#1 v1.5 included for RSA, which a TLS 1.3
/// client must refuse); `None` for a scheme the key cannot make.
pub fn sign(index: usize, scheme: SignatureScheme, transcript_hash: &[u8]) -> Option<Vec<u8>> {
    type Cache = Mutex<HashMap<(usize, u16, Vec<u8>), Option<Vec<u8>>>>;
    static CACHE: OnceLock<Cache> = OnceLock::new();
    let cache = CACHE.get_or_init(Default::default);
    let key = (index, scheme.as_u16(), transcript_hash.to_vec());
    if let Some(signature) = cache.lock().unwrap().get(&key) {
        return signature.clone();
    }
    let signature = make_signature(index, scheme, &signed_content(transcript_hash));
    cache.lock().unwrap().insert(key, signature.clone());
    signature
}

fn make_signature(index: usize, scheme: SignatureScheme, content: &[u8]) -> Option<Vec<u8>> {
    use p256::pkcs8::DecodePrivateKey as _;
    use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
    let seed = &SEEDS[index];
    match (seed.algorithm, scheme) {
        (KeyAlgorithm::EcdsaP256, SignatureScheme::EcdsaSecp256r1Sha256) => {
            let key = p256::ecdsa::SigningKey::from_pkcs8_der(seed.pkcs8).unwrap();
            let signature: p256::ecdsa::Signature = key.sign(content);
            Some(signature.to_der().as_bytes().to_vec())
        }
        (KeyAlgorithm::EcdsaP384, SignatureScheme::EcdsaSecp384r1Sha384) => {
            let key = p384::ecdsa::SigningKey::from_pkcs8_der(seed.pkcs8).unwrap();
            let signature: p384::ecdsa::Signature = key.sign(content);
            Some(signature.to_der().as_bytes().to_vec())
        }
        (KeyAlgorithm::Ed25519, SignatureScheme::Ed25519) => {
            let key = ed25519_dalek::SigningKey::from_pkcs8_der(seed.pkcs8).unwrap();
            Some(key.sign(content).to_bytes().to_vec())
        }
        (KeyAlgorithm::Rsa, scheme) => {
            let key = rsa::RsaPrivateKey::from_pkcs8_der(seed.pkcs8).unwrap();
            let mut rng = FixedRng(u64::from(scheme.as_u16()));
            let signature = match scheme {
                SignatureScheme::RsaPssRsaeSha256 => rsa::pss::SigningKey::<sha2::Sha256>::new(key)
                    .sign_with_rng(&mut rng, content)
                    .to_vec(),
                SignatureScheme::RsaPssRsaeSha384 => rsa::pss::SigningKey::<sha2::Sha384>::new(key)
                    .sign_with_rng(&mut rng, content)
                    .to_vec(),
                SignatureScheme::RsaPssRsaeSha512 => rsa::pss::SigningKey::<sha2::Sha512>::new(key)
                    .sign_with_rng(&mut rng, content)
                    .to_vec(),
                SignatureScheme::RsaPkcs1Sha256 => {
                    rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(key)
                        .sign(content)
                        .to_vec()
                }
                SignatureScheme::RsaPkcs1Sha384 => {
                    rsa::pkcs1v15::SigningKey::<sha2::Sha384>::new(key)
                        .sign(content)
                        .to_vec()
                }
                SignatureScheme::RsaPkcs1Sha512 => {
                    rsa::pkcs1v15::SigningKey::<sha2::Sha512>::new(key)
                        .sign(content)
                        .to_vec()
                }
                _ => return None,
            };
            Some(signature)
        }
        _ => None,
    }
}

/// The SPKI SHA-256 of each seed's key.
pub fn seed_spkis() -> &'static [[u8; 32]] {
    static SPKIS: OnceLock<Vec<[u8; 32]>> = OnceLock::new();
    SPKIS.get_or_init(|| {
        SEEDS
            .iter()
            .map(|s| {
                mqtts::trust::CertificateInfo::parse(s.certificate)
                    .expect(s.name)
                    .fingerprints()
                    .spki_sha256()
            })
            .collect()
    })
}

/// Which seed holds the key whose SubjectPublicKeyInfo hashes to `spki_sha256`.
pub fn seed_of(spki_sha256: [u8; 32]) -> Option<usize> {
    seed_spkis().iter().position(|s| *s == spki_sha256)
}
