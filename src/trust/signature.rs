//! Signature verification with RustCrypto: the server's TLS 1.3
//! CertificateVerify (RFC 8446 §4.4.3) and, for CA mode, the signatures of
//! the certificate chain (as `rustls-webpki` algorithms).

use super::certificate::{KeyAlgorithm, PublicKeyInfo};
use crate::error::Error;
use embedded_tls::SignatureScheme;
use p256::ecdsa::signature::Verifier as _;

/// The public key of the certificate that passed the trust check, ready to
/// verify the server's CertificateVerify.
#[derive(Debug, Clone)]
pub(crate) enum ServerKey {
    P256(p256::ecdsa::VerifyingKey),
    #[cfg(feature = "p384")]
    P384(p384::ecdsa::VerifyingKey),
    #[cfg(feature = "ed25519")]
    Ed25519(ed25519_dalek::VerifyingKey),
    #[cfg(feature = "rsa")]
    Rsa(rsa::RsaPublicKey),
}

/// RSA moduli mqtts accepts, in bits: 2048 (the smallest safe size today)
/// to 4096 (the largest the `rsa` crate verifies by default).
#[cfg(feature = "rsa")]
const RSA_BITS: core::ops::RangeInclusive<usize> = 2048..=4096;

/// Whether `key`'s modulus has an accepted size, counted in bits: its
/// length in bytes × 8 would pass a 2041- to 2047-bit modulus (256 bytes)
/// as 2048 bits.
#[cfg(feature = "rsa")]
fn rsa_size_accepted(key: &rsa::RsaPublicKey) -> bool {
    use rsa::traits::PublicKeyParts as _;
    RSA_BITS.contains(&key.n().bits())
}

impl ServerKey {
    /// Decodes a SubjectPublicKeyInfo's key, refusing types this build cannot verify.
    pub fn from_public_key(info: &PublicKeyInfo<'_>) -> Result<Self, Error> {
        match info.algorithm {
            KeyAlgorithm::EcdsaP256 => p256::ecdsa::VerifyingKey::from_sec1_bytes(info.key)
                .map(Self::P256)
                .map_err(|_| Error::MalformedCertificate),
            #[cfg(feature = "p384")]
            KeyAlgorithm::EcdsaP384 => p384::ecdsa::VerifyingKey::from_sec1_bytes(info.key)
                .map(Self::P384)
                .map_err(|_| Error::MalformedCertificate),
            #[cfg(feature = "ed25519")]
            KeyAlgorithm::Ed25519 => <[u8; 32]>::try_from(info.key)
                .ok()
                .and_then(|bytes| ed25519_dalek::VerifyingKey::from_bytes(&bytes).ok())
                .map(Self::Ed25519)
                .ok_or(Error::MalformedCertificate),
            #[cfg(feature = "rsa")]
            KeyAlgorithm::Rsa => {
                use rsa::pkcs1::DecodeRsaPublicKey as _;
                let key = rsa::RsaPublicKey::from_pkcs1_der(info.key)
                    .map_err(|_| Error::MalformedCertificate)?;
                if rsa_size_accepted(&key) {
                    Ok(Self::Rsa(key))
                } else {
                    Err(Error::UnsupportedKey(KeyAlgorithm::Rsa))
                }
            }
            other => Err(Error::UnsupportedKey(other)),
        }
    }

    fn algorithm(&self) -> KeyAlgorithm {
        match self {
            Self::P256(_) => KeyAlgorithm::EcdsaP256,
            #[cfg(feature = "p384")]
            Self::P384(_) => KeyAlgorithm::EcdsaP384,
            #[cfg(feature = "ed25519")]
            Self::Ed25519(_) => KeyAlgorithm::Ed25519,
            #[cfg(feature = "rsa")]
            Self::Rsa(_) => KeyAlgorithm::Rsa,
        }
    }

    /// Verifies a TLS 1.3 server CertificateVerify signature over
    /// `transcript_hash` (RFC 8446 §4.4.3).
    pub fn verify_certificate_verify(
        &self,
        scheme: SignatureScheme,
        transcript_hash: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        // The signed content: 64 spaces, the context string, a zero byte and
        // the transcript hash (at most SHA-384's 48 bytes).
        const CONTEXT: &[u8] = b"TLS 1.3, server CertificateVerify\x00";
        let mut content = [0x20u8; 64 + CONTEXT.len() + 48];
        let content_len = 64 + CONTEXT.len() + transcript_hash.len();
        let content = content
            .get_mut(..content_len)
            .ok_or(Error::ServerSignatureInvalid)?;
        let (_, tail) = content.split_at_mut(64);
        let (context, hash) = tail.split_at_mut(CONTEXT.len());
        context.copy_from_slice(CONTEXT);
        hash.copy_from_slice(transcript_hash);
        let content = &*content;

        let mismatch = || Error::SignatureSchemeMismatch {
            scheme: scheme.as_u16(),
            key: self.algorithm(),
        };
        let verified = match (self, scheme) {
            (Self::P256(key), SignatureScheme::EcdsaSecp256r1Sha256) => {
                p256_signature(signature).is_some_and(|sig| key.verify(content, &sig).is_ok())
            }
            #[cfg(feature = "p384")]
            (Self::P384(key), SignatureScheme::EcdsaSecp384r1Sha384) => {
                p384_signature(signature).is_some_and(|sig| key.verify(content, &sig).is_ok())
            }
            #[cfg(feature = "ed25519")]
            (Self::Ed25519(key), SignatureScheme::Ed25519) => {
                ed25519_dalek::Signature::from_slice(signature)
                    .is_ok_and(|sig| key.verify_strict(content, &sig).is_ok())
            }
            // TLS 1.3 allows only PSS with RSA keys here; PKCS#1 v1.5 is
            // for certificates only (RFC 8446 §4.2.3).
            #[cfg(feature = "rsa")]
            (Self::Rsa(key), SignatureScheme::RsaPssRsaeSha256) => {
                rsa_pss::<sha2::Sha256>(key, content, signature)
            }
            #[cfg(feature = "rsa")]
            (Self::Rsa(key), SignatureScheme::RsaPssRsaeSha384) => {
                rsa_pss::<sha2::Sha384>(key, content, signature)
            }
            #[cfg(feature = "rsa")]
            (Self::Rsa(key), SignatureScheme::RsaPssRsaeSha512) => {
                rsa_pss::<sha2::Sha512>(key, content, signature)
            }
            _ => return Err(mismatch()),
        };
        if verified {
            Ok(())
        } else {
            Err(Error::ServerSignatureInvalid)
        }
    }
}

#[cfg(feature = "rsa")]
fn rsa_pss<D>(key: &rsa::RsaPublicKey, message: &[u8], signature: &[u8]) -> bool
where
    D: sha2::Digest + sha2::digest::DynDigest + Send + Sync + 'static,
{
    // `Pss` holds the digest as `dyn DynDigest`: one copy of the PSS code
    // serves SHA-256, SHA-384 and SHA-512 (salt length = hash length, as
    // TLS 1.3 requires, RFC 8446 §4.2.3).
    key.verify(rsa::Pss::new::<D>(), &D::digest(message), signature)
        .is_ok()
}

#[cfg(feature = "rsa")]
fn rsa_pkcs1<D>(key: &[u8], message: &[u8], signature: &[u8]) -> bool
where
    D: sha2::Digest + rsa::pkcs8::AssociatedOid,
{
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    let Ok(key) = rsa::RsaPublicKey::from_pkcs1_der(key) else {
        return false;
    };
    rsa_size_accepted(&key)
        && rsa::pkcs1v15::Signature::try_from(signature).is_ok_and(|sig| {
            rsa::pkcs1v15::VerifyingKey::<D>::new(key)
                .verify(message, &sig)
                .is_ok()
        })
}

#[cfg(feature = "rsa")]
fn rsa_pss_cert<D>(key: &[u8], message: &[u8], signature: &[u8]) -> bool
where
    D: sha2::Digest + sha2::digest::DynDigest + Send + Sync + 'static,
{
    use rsa::pkcs1::DecodeRsaPublicKey as _;
    rsa::RsaPublicKey::from_pkcs1_der(key)
        .is_ok_and(|key| rsa_size_accepted(&key) && rsa_pss::<D>(&key, message, signature))
}

/// Signature algorithms for certificate chains (CA mode), implemented with
/// RustCrypto for `rustls-webpki`.
pub(crate) mod chain {
    use super::p256_signature;
    #[cfg(feature = "p384")]
    use super::p384_signature;
    use p256::ecdsa::signature::Verifier as _;
    #[cfg(feature = "p384")]
    use p256::ecdsa::signature::hazmat::PrehashVerifier as _;
    use rustls_pki_types::{
        AlgorithmIdentifier, InvalidSignature, SignatureVerificationAlgorithm, alg_id,
    };
    #[cfg(feature = "p384")]
    use sha2::Digest as _;

    /// One (public key algorithm, signature algorithm) pair.
    struct Algorithm {
        public_key: AlgorithmIdentifier,
        signature: AlgorithmIdentifier,
        /// Verifies `signature` over `message` with the `subjectPublicKey` bits.
        verify: fn(&[u8], &[u8], &[u8]) -> bool,
    }

    impl core::fmt::Debug for Algorithm {
        fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
            f.debug_struct("Algorithm").finish_non_exhaustive()
        }
    }

    impl SignatureVerificationAlgorithm for Algorithm {
        fn verify_signature(
            &self,
            public_key: &[u8],
            message: &[u8],
            signature: &[u8],
        ) -> Result<(), InvalidSignature> {
            if (self.verify)(public_key, message, signature) {
                Ok(())
            } else {
                Err(InvalidSignature)
            }
        }

        fn public_key_alg_id(&self) -> AlgorithmIdentifier {
            self.public_key
        }

        fn signature_alg_id(&self) -> AlgorithmIdentifier {
            self.signature
        }
    }

    fn p256_sha256(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let (Ok(key), Some(sig)) = (
            p256::ecdsa::VerifyingKey::from_sec1_bytes(key),
            p256_signature(signature),
        ) else {
            return false;
        };
        key.verify(message, &sig).is_ok()
    }

    #[cfg(feature = "p384")]
    fn p256_sha384(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let (Ok(key), Some(sig)) = (
            p256::ecdsa::VerifyingKey::from_sec1_bytes(key),
            p256_signature(signature),
        ) else {
            return false;
        };
        key.verify_prehash(&sha2::Sha384::digest(message), &sig)
            .is_ok()
    }

    #[cfg(feature = "p384")]
    fn p384_sha384(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let (Ok(key), Some(sig)) = (
            p384::ecdsa::VerifyingKey::from_sec1_bytes(key),
            p384_signature(signature),
        ) else {
            return false;
        };
        key.verify(message, &sig).is_ok()
    }

    #[cfg(feature = "p384")]
    fn p384_sha256(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let (Ok(key), Some(sig)) = (
            p384::ecdsa::VerifyingKey::from_sec1_bytes(key),
            p384_signature(signature),
        ) else {
            return false;
        };
        key.verify_prehash(&sha2::Sha256::digest(message), &sig)
            .is_ok()
    }

    #[cfg(feature = "ed25519")]
    fn ed25519(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
        let (Ok(key), Ok(sig)) = (
            <[u8; 32]>::try_from(key),
            ed25519_dalek::Signature::from_slice(signature),
        ) else {
            return false;
        };
        ed25519_dalek::VerifyingKey::from_bytes(&key)
            .is_ok_and(|k| k.verify_strict(message, &sig).is_ok())
    }

    static ECDSA_P256_SHA256: Algorithm = Algorithm {
        public_key: alg_id::ECDSA_P256,
        signature: alg_id::ECDSA_SHA256,
        verify: p256_sha256,
    };
    #[cfg(feature = "p384")]
    static ECDSA_P256_SHA384: Algorithm = Algorithm {
        public_key: alg_id::ECDSA_P256,
        signature: alg_id::ECDSA_SHA384,
        verify: p256_sha384,
    };
    #[cfg(feature = "p384")]
    static ECDSA_P384_SHA384: Algorithm = Algorithm {
        public_key: alg_id::ECDSA_P384,
        signature: alg_id::ECDSA_SHA384,
        verify: p384_sha384,
    };
    #[cfg(feature = "p384")]
    static ECDSA_P384_SHA256: Algorithm = Algorithm {
        public_key: alg_id::ECDSA_P384,
        signature: alg_id::ECDSA_SHA256,
        verify: p384_sha256,
    };
    #[cfg(feature = "ed25519")]
    static ED25519: Algorithm = Algorithm {
        public_key: alg_id::ED25519,
        signature: alg_id::ED25519,
        verify: ed25519,
    };
    #[cfg(feature = "rsa")]
    static RSA_PKCS1_SHA256: Algorithm = Algorithm {
        public_key: alg_id::RSA_ENCRYPTION,
        signature: alg_id::RSA_PKCS1_SHA256,
        verify: super::rsa_pkcs1::<sha2::Sha256>,
    };
    #[cfg(feature = "rsa")]
    static RSA_PKCS1_SHA384: Algorithm = Algorithm {
        public_key: alg_id::RSA_ENCRYPTION,
        signature: alg_id::RSA_PKCS1_SHA384,
        verify: super::rsa_pkcs1::<sha2::Sha384>,
    };
    #[cfg(feature = "rsa")]
    static RSA_PKCS1_SHA512: Algorithm = Algorithm {
        public_key: alg_id::RSA_ENCRYPTION,
        signature: alg_id::RSA_PKCS1_SHA512,
        verify: super::rsa_pkcs1::<sha2::Sha512>,
    };
    #[cfg(feature = "rsa")]
    static RSA_PSS_SHA256: Algorithm = Algorithm {
        public_key: alg_id::RSA_ENCRYPTION,
        signature: alg_id::RSA_PSS_SHA256,
        verify: super::rsa_pss_cert::<sha2::Sha256>,
    };
    #[cfg(feature = "rsa")]
    static RSA_PSS_SHA384: Algorithm = Algorithm {
        public_key: alg_id::RSA_ENCRYPTION,
        signature: alg_id::RSA_PSS_SHA384,
        verify: super::rsa_pss_cert::<sha2::Sha384>,
    };
    #[cfg(feature = "rsa")]
    static RSA_PSS_SHA512: Algorithm = Algorithm {
        public_key: alg_id::RSA_ENCRYPTION,
        signature: alg_id::RSA_PSS_SHA512,
        verify: super::rsa_pss_cert::<sha2::Sha512>,
    };

    /// Every chain signature algorithm this build supports.
    pub(crate) static SUPPORTED: &[&dyn SignatureVerificationAlgorithm] = &[
        &ECDSA_P256_SHA256,
        // SHA-384 is 48 KB of code on riscv32imc (sha2's unrolled SHA-512
        // core); linked anyway with p384, and P-256 CAs sign with SHA-256.
        #[cfg(feature = "p384")]
        &ECDSA_P256_SHA384,
        #[cfg(feature = "p384")]
        &ECDSA_P384_SHA384,
        #[cfg(feature = "p384")]
        &ECDSA_P384_SHA256,
        #[cfg(feature = "ed25519")]
        &ED25519,
        #[cfg(feature = "rsa")]
        &RSA_PKCS1_SHA256,
        #[cfg(feature = "rsa")]
        &RSA_PKCS1_SHA384,
        #[cfg(feature = "rsa")]
        &RSA_PKCS1_SHA512,
        #[cfg(feature = "rsa")]
        &RSA_PSS_SHA256,
        #[cfg(feature = "rsa")]
        &RSA_PSS_SHA384,
        #[cfg(feature = "rsa")]
        &RSA_PSS_SHA512,
    ];
}
/// A DER ECDSA signature over P-256 (`r || s`, 32 bytes each), read by
/// [`der::ecdsa_signature`](super::der::ecdsa_signature).
fn p256_signature(der: &[u8]) -> Option<p256::ecdsa::Signature> {
    let mut fixed = [0u8; 64];
    super::der::ecdsa_signature(der, &mut fixed).ok()?;
    p256::ecdsa::Signature::from_slice(&fixed).ok()
}

/// The same over P-384 (48 bytes each).
#[cfg(feature = "p384")]
fn p384_signature(der: &[u8]) -> Option<p384::ecdsa::Signature> {
    let mut fixed = [0u8; 96];
    super::der::ecdsa_signature(der, &mut fixed).ok()?;
    p384::ecdsa::Signature::from_slice(&fixed).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::signature::Signer as _;
    use proptest::prelude::*;
    use std::vec::Vec;

    /// A real DER signature of `message` by a key made from `seed`.
    fn signed(seed: [u8; 32], message: &[u8]) -> Option<Vec<u8>> {
        let key = p256::ecdsa::SigningKey::from_slice(&seed).ok()?;
        let signature: p256::ecdsa::Signature = key.sign(message);
        Some(signature.to_der().as_bytes().to_vec())
    }

    /// A real 2047-bit RSA key (`openssl genpkey -algorithm RSA -pkeyopt
    /// rsa_keygen_bits:2047`) is refused everywhere an RSA key is used: as
    /// the server's key and as an issuer's in a chain; the same checks
    /// with a 2048-bit key and signatures made the same way pass, so the
    /// size alone refuses it. Its modulus has 256 bytes: counted as
    /// bytes × 8 it passed as 2048 bits.
    #[cfg(feature = "rsa")]
    #[test]
    fn rsa_key_sizes_are_counted_in_bits() {
        use super::super::der::Reader;
        use rsa::pkcs8::DecodePrivateKey as _;
        use rsa::signature::{RandomizedSigner as _, SignatureEncoding as _, Signer as _};
        use rsa::traits::PublicKeyParts as _;

        let message = b"tbsCertificate";
        let check = |private_pkcs8: &[u8], spki: &[u8]| {
            let private = rsa::RsaPrivateKey::from_pkcs8_der(private_pkcs8).expect("PKCS#8 key");
            let info = PublicKeyInfo::parse(Reader::new(spki).read().expect("SPKI")).expect("SPKI");
            let pkcs1 = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(private.clone())
                .sign(message)
                .to_vec();
            let pss = rsa::pss::SigningKey::<sha2::Sha256>::new(private.clone())
                .sign_with_rng(&mut rand::thread_rng(), message)
                .to_vec();
            let server_key = ServerKey::from_public_key(&info).map(|_| ());
            let as_issuer = (
                rsa_pkcs1::<sha2::Sha256>(info.key, message, &pkcs1),
                rsa_pss_cert::<sha2::Sha256>(info.key, message, &pss),
            );
            (private.size(), server_key, as_issuer)
        };

        let (bytes, server_key, as_issuer) = check(
            include_bytes!("../../tests/data/rsa2047.pk8.der"),
            include_bytes!("../../tests/data/rsa2047.spki.der"),
        );
        assert_eq!(bytes * 8, 2048, "the size in bytes hides the missing bit");
        assert_eq!(server_key, Err(Error::UnsupportedKey(KeyAlgorithm::Rsa)));
        assert_eq!(as_issuer, (false, false));

        let (_, server_key, as_issuer) = check(
            include_bytes!("../../tests/data/rsa2048-a.pk8.der"),
            include_bytes!("../../tests/data/rsa2048-a.spki.der"),
        );
        assert_eq!(server_key, Ok(()));
        assert_eq!(as_issuer, (true, true));
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        /// Our DER reader plus `from_slice` accepts exactly what the `der`
        /// crate's `from_der` accepts, with the same value: on real
        /// signatures, and on each of them with a byte changed, removed or
        /// added.
        #[test]
        fn ecdsa_signatures_read_as_from_der_reads_them(
            seed in any::<[u8; 32]>(),
            message in proptest::collection::vec(any::<u8>(), 0..64),
            at in any::<usize>(),
            byte in any::<u8>(),
            edit in 0..4u8,
        ) {
            let Some(der) = signed(seed, &message) else { return Ok(()) };
            let mut mutated = der.clone();
            let at = at % der.len();
            match edit {
                0 => mutated[at] = byte,
                1 => { mutated.remove(at); }
                2 => mutated.insert(at, byte),
                _ => {}
            }
            for input in [&der, &mutated] {
                prop_assert_eq!(
                    p256_signature(input),
                    p256::ecdsa::Signature::from_der(input).ok(),
                    "{:02X?}", input
                );
            }
        }
    }
}
