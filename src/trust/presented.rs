//! The fingerprints of the certificate a server presented.

use crate::fingerprint::{Fingerprint, HexColons};
use sha2::Digest as _;

/// Computes a SHA-1 digest. Passed as a pointer, so that firmware without
/// SHA-1 pins does not link SHA-1 at all (see [`super::Trust`]).
pub(crate) type Sha1Fn = fn(&[u8]) -> [u8; 20];

/// SHA-1 of `data`.
pub(crate) fn sha1_digest(data: &[u8]) -> [u8; 20] {
    sha1::Sha1::digest(data).into()
}

/// The fingerprints of the leaf certificate a server presented: what a pin
/// can match, ready to log and paste. The SHA-1 is there when SHA-1 can
/// match (a [`Trust`](super::Trust) with a SHA-1 pin, insecure mode,
/// [`CertificateInfo`](super::CertificateInfo)): other configurations do
/// not link SHA-1.
///
/// The trust decisions carry one: [`Error::PinMismatch`] and
/// [`Error::CertificateRejected`], so firmware can print the value the
/// broker really uses (after a certificate rotation, say) instead of a bare
/// "connection failed", and [`TlsStream::peer_certificate`] once connected.
/// The other refusals do not: [`Error::MalformedCertificate`] (nothing to
/// hash a key from), [`Error::UnsupportedKey`] (the fix is a cargo feature),
/// and [`Error::ServerSignatureInvalid`], [`Error::SignatureSchemeMismatch`]
/// and [`Error::MissingCertificateVerify`], where the certificate passed
/// and the server failed to prove it holds its key: its fingerprints are
/// then those of whatever public certificate was replayed, of no use for
/// a fix, and a copy in every such error costs flash.
///
/// [`Error::PinMismatch`]: crate::Error::PinMismatch
/// [`Error::CertificateRejected`]: crate::Error::CertificateRejected
/// [`Error::MalformedCertificate`]: crate::Error::MalformedCertificate
/// [`Error::UnsupportedKey`]: crate::Error::UnsupportedKey
/// [`Error::ServerSignatureInvalid`]: crate::Error::ServerSignatureInvalid
/// [`Error::SignatureSchemeMismatch`]: crate::Error::SignatureSchemeMismatch
/// [`Error::MissingCertificateVerify`]: crate::Error::MissingCertificateVerify
/// [`TlsStream::peer_certificate`]: crate::tls::TlsStream::peer_certificate
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct PresentedCertificate {
    sha1: Option<[u8; 20]>,
    sha256: [u8; 32],
    spki_sha256: [u8; 32],
}

impl PresentedCertificate {
    /// Hashes a DER certificate and its DER SubjectPublicKeyInfo (SHA-1
    /// too, with `sha1`).
    pub(crate) fn new(certificate_der: &[u8], spki_der: &[u8], sha1: Option<Sha1Fn>) -> Self {
        Self {
            sha1: sha1.map(|digest| digest(certificate_der)),
            sha256: sha2::Sha256::digest(certificate_der).into(),
            spki_sha256: sha2::Sha256::digest(spki_der).into(),
        }
    }

    /// SHA-1 of the DER certificate: what BearSSL's `setFingerprint` and the
    /// old Arduino sketches pin. Changes with every renewal. `None` unless
    /// SHA-1 could match (see the type's docs).
    pub const fn sha1(&self) -> Option<Fingerprint> {
        match self.sha1 {
            Some(hash) => Some(Fingerprint::Sha1(hash)),
            None => None,
        }
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
        if let Some(sha1) = &self.sha1 {
            write!(f, "certificate SHA-1 {}, ", HexColons(sha1))?;
        }
        write!(
            f,
            "certificate SHA-256 {}, public key (SPKI) SHA-256 {}",
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
        if let Some(sha1) = &self.sha1 {
            defmt::write!(f, "certificate SHA-1 {}, ", HexColons(sha1));
        }
        defmt::write!(
            f,
            "certificate SHA-256 {}, public key (SPKI) SHA-256 {}",
            HexColons(&self.sha256),
            HexColons(&self.spki_sha256)
        )
    }
}
