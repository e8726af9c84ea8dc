//! Pins: the fingerprints a firmware trusts.

use super::PresentedCertificate;
use crate::fingerprint::{Fingerprint, FingerprintError, HashAlgorithm, HexColons};

/// One trusted identity of the server.
///
/// Pin the public key where you can: [`Pin::PublicKey`] keeps matching when
/// the broker renews its certificate with the same key, while both
/// certificate pins break at every renewal (about once a year for
/// `mqtt.flespi.io`). List the next pin beside the current one before a
/// rotation: any one match passes.
///
/// ```
/// use mqtts::trust::Pin;
///
/// // Pasted from an old Arduino sketch (SHA-1 of the certificate):
/// const OLD: Pin = mqtts::pin_certificate!("3B BC 95 33 2A 8C 02 6E 5A 62 9C 3B 2D 07 08 14 F2 F1 1A 6B");
/// // From `openssl x509 -noout -fingerprint -sha256`:
/// const CERT: Pin = mqtts::pin_certificate!(
///     "sha256 Fingerprint=0C:8A:E3:30:8C:AC:CE:4D:3E:2A:8B:2B:1D:75:3B:2F:30:B3:70:FF:C0:9E:67:82:CE:7E:D3:17:A7:6E:23:45"
/// );
/// // SHA-256 of the SubjectPublicKeyInfo (see the README for the openssl line):
/// const KEY: Pin = mqtts::pin_public_key!(
///     "7d:9f:2c:25:8c:a4:1a:84:5f:30:46:2d:cd:28:3f:54:a1:8b:40:5c:2f:3b:96:1b:37:5e:7b:6f:cc:a3:61:0a"
/// );
/// assert!(matches!(OLD, Pin::Certificate(f) if f.algorithm() == mqtts::fingerprint::HashAlgorithm::Sha1));
/// # let _ = (CERT, KEY);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Pin {
    /// SHA-1 or SHA-256 of the server's DER certificate (the leaf).
    Certificate(Fingerprint),
    /// SHA-256 of the DER SubjectPublicKeyInfo of the server's certificate.
    PublicKey([u8; 32]),
}

impl Pin {
    /// Parses a certificate fingerprint in any of the forms
    /// [`Fingerprint::parse`] accepts; its length decides SHA-1 or SHA-256.
    pub const fn certificate(text: &str) -> Result<Self, FingerprintError> {
        match Fingerprint::parse(text) {
            Ok(fingerprint) => Ok(Self::Certificate(fingerprint)),
            Err(e) => Err(e),
        }
    }

    /// Parses a SHA-256 SubjectPublicKeyInfo fingerprint.
    pub const fn public_key(text: &str) -> Result<Self, FingerprintError> {
        match Fingerprint::parse_sha256(text) {
            Ok(hash) => Ok(Self::PublicKey(hash)),
            Err(e) => Err(e),
        }
    }

    /// Whether the presented certificate has this fingerprint.
    pub fn matches(&self, presented: &PresentedCertificate) -> bool {
        match self {
            Self::Certificate(f) => match f.algorithm() {
                HashAlgorithm::Sha1 => presented.sha1() == Some(*f),
                HashAlgorithm::Sha256 => *f == presented.sha256(),
            },
            Self::PublicKey(hash) => *hash == presented.spki_sha256(),
        }
    }
}

impl core::fmt::Display for Pin {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Certificate(fp) => write!(f, "certificate {} {}", fp.algorithm(), fp),
            Self::PublicKey(hash) => write!(f, "public key (SPKI) SHA-256 {}", HexColons(hash)),
        }
    }
}

/// A [`Pin::Certificate`] from a fingerprint literal, checked at compile time.
///
/// Accepts every form [`Fingerprint::parse`] does; a typo is a compile error.
#[macro_export]
macro_rules! pin_certificate {
    ($text:expr) => {
        $crate::trust::Pin::Certificate($crate::fingerprint!($text))
    };
}

/// A [`Pin::PublicKey`] from a SHA-256 SubjectPublicKeyInfo fingerprint
/// literal, checked at compile time.
///
/// ```compile_fail
/// // 20 bytes: a SHA-1 value cannot pin a public key.
/// const P: mqtts::trust::Pin = mqtts::pin_public_key!("3B BC 95 33 2A 8C 02 6E 5A 62 9C 3B 2D 07 08 14 F2 F1 1A 6B");
/// ```
#[macro_export]
macro_rules! pin_public_key {
    ($text:expr) => {
        $crate::trust::Pin::PublicKey($crate::sha256_fingerprint!($text))
    };
}
