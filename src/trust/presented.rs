//! The fingerprints of the certificate a server presented.

use crate::fingerprint::{Fingerprint, HexColons};
use sha1::Digest as _;

/// The three fingerprints of the leaf certificate a server presented: what a
/// pin can match, ready to log and paste.
///
/// Every trust failure carries one, so firmware can print the value the
/// broker really uses (after a certificate rotation, say) instead of a bare
/// "connection failed".
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PresentedCertificate {
    sha1: [u8; 20],
    sha256: [u8; 32],
    spki_sha256: [u8; 32],
}

impl PresentedCertificate {
    /// Hashes a DER certificate and its DER SubjectPublicKeyInfo.
    pub(crate) fn new(certificate_der: &[u8], spki_der: &[u8]) -> Self {
        Self {
            sha1: sha1::Sha1::digest(certificate_der).into(),
            sha256: sha2::Sha256::digest(certificate_der).into(),
            spki_sha256: sha2::Sha256::digest(spki_der).into(),
        }
    }

    /// SHA-1 of the DER certificate: what BearSSL's `setFingerprint` and the
    /// old Arduino sketches pin. Changes with every renewal.
    pub const fn sha1(&self) -> Fingerprint {
        Fingerprint::Sha1(self.sha1)
    }

    /// SHA-256 of the DER certificate: what browsers show and
    /// `openssl x509 -fingerprint -sha256` prints. Changes with every renewal.
    pub const fn sha256(&self) -> Fingerprint {
        Fingerprint::Sha256(self.sha256)
    }

    /// SHA-256 of the DER SubjectPublicKeyInfo: survives renewals that keep the key.
    pub const fn spki_sha256(&self) -> [u8; 32] {
        self.spki_sha256
    }
}

impl core::fmt::Display for PresentedCertificate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "certificate SHA-1 {}, certificate SHA-256 {}, public key (SPKI) SHA-256 {}",
            HexColons(&self.sha1),
            HexColons(&self.sha256),
            HexColons(&self.spki_sha256)
        )
    }
}

impl core::fmt::Debug for PresentedCertificate {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "PresentedCertificate({self})")
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for PresentedCertificate {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "certificate SHA-1 {}, certificate SHA-256 {}, public key (SPKI) SHA-256 {}",
            HexColons(&self.sha1),
            HexColons(&self.sha256),
            HexColons(&self.spki_sha256)
        )
    }
}
