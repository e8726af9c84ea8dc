//! The embedded-tls verifier that enforces trust, and the guard that makes
//! sure it ran.
//!
//! embedded-tls calls a verifier only for the handshake messages the server
//! actually sends: a server that skips Certificate and CertificateVerify
//! completes the handshake without any check. This verifier therefore
//! records its progress, and [`TrustVerifier::finish`] refuses the
//! connection unless both the certificate and the signature were checked.

use crate::error::Error;
use crate::trust::{Accepted, PresentedCertificate, Trust, ValidationTime};
use embedded_tls::{
    CertificateEntryRef, CertificateRef, CertificateVerifyRef, SignatureScheme, TlsCipherSuite,
    TlsError, TlsVerifier,
};
use heapless::Vec;
use sha2::Digest as _;

/// The largest transcript hash of a TLS 1.3 cipher suite (SHA-384).
const MAX_HASH_LEN: usize = 48;

/// Where the server's authentication stands.
#[derive(Debug)]
enum Progress {
    /// Nothing checked yet.
    AwaitingCertificate,
    /// The certificate is trusted; its key must now verify the signature
    /// over the transcript up to and including Certificate.
    AwaitingSignature {
        accepted: Accepted,
        transcript_hash: Vec<u8, MAX_HASH_LEN>,
    },
    /// Certificate trusted and signature verified.
    Authenticated(PresentedCertificate),
    /// A check failed; the error is kept for the caller.
    Failed(Error),
}

/// Sees the server's certificate chain (leaf first, DER) before the trust decision.
pub type ChainObserver<'o> = &'o mut dyn FnMut(&[&[u8]]);

/// Checks the server's Certificate and CertificateVerify against a [`Trust`].
pub(crate) struct TrustVerifier<'a> {
    trust: Trust<'a>,
    server_name: &'a str,
    time: ValidationTime,
    progress: Progress,
    observer: Option<ChainObserver<'a>>,
}

impl core::fmt::Debug for TrustVerifier<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TrustVerifier")
            .field("trust", &self.trust)
            .field("progress", &self.progress)
            .finish_non_exhaustive()
    }
}

impl<'a> TrustVerifier<'a> {
    /// Validates at `now_unix_secs` (if known) with mqtts's own floor,
    /// [`CRATE_RELEASE_TIME`](crate::time::CRATE_RELEASE_TIME).
    #[cfg(any(test, fuzzing))]
    pub fn new(trust: Trust<'a>, server_name: &'a str, now_unix_secs: Option<u64>) -> Self {
        Self::at(trust, server_name, ValidationTime::new(now_unix_secs, 0))
    }

    /// Validates at `time` (which carries the application's floor).
    pub fn at(trust: Trust<'a>, server_name: &'a str, time: ValidationTime) -> Self {
        Self {
            trust,
            server_name,
            time,
            progress: Progress::AwaitingCertificate,
            observer: None,
        }
    }

    /// Shows the server's chain to `observer` before deciding.
    pub fn with_observer(mut self, observer: Option<ChainObserver<'a>>) -> Self {
        self.observer = observer;
        self
    }

    /// The server's Certificate message (RFC 8446 §4.4.2): `chain` leaf
    /// first, and the transcript hash through this message.
    /// A refusal returns the error it recorded (by reference: the error is
    /// kept once, in the verifier, and never cloned; a clone of the large
    /// `Error` costs flash at every site).
    pub fn on_certificate(
        &mut self,
        chain: &[&[u8]],
        transcript_hash: &[u8],
    ) -> Result<(), &Error> {
        if let Some(observer) = self.observer.as_mut() {
            observer(chain);
        }
        let result = match self.progress {
            Progress::AwaitingCertificate => self
                .trust
                .verify_at(chain, self.server_name, self.time)
                .and_then(|accepted| {
                    let transcript_hash = Vec::from_slice(transcript_hash)
                        .map_err(|_| Error::UnexpectedHandshakeMessage)?;
                    Ok(Progress::AwaitingSignature {
                        accepted,
                        transcript_hash,
                    })
                }),
            // Refused before: stays refused, with the first error (found
            // by the verifier fuzz target; embedded-tls 0.19 stops at the
            // first refusal, another engine might not).
            Progress::Failed(_) => return self.failed(),
            // A second Certificate message.
            _ => Err(Error::UnexpectedHandshakeMessage),
        };
        self.advance(result)
    }

    /// The server's CertificateVerify message (RFC 8446 §4.4.3).
    pub fn on_certificate_verify(
        &mut self,
        scheme: SignatureScheme,
        signature: &[u8],
    ) -> Result<(), &Error> {
        let result = match &self.progress {
            Progress::AwaitingSignature {
                accepted,
                transcript_hash,
            } => accepted
                .key
                .verify_certificate_verify(scheme, transcript_hash, signature)
                .map(|()| Progress::Authenticated(accepted.presented)),
            // Refused before: stays refused, with the first error.
            Progress::Failed(_) => return self.failed(),
            // Before any Certificate (embedded-tls's own verifier panics
            // here), or a second CertificateVerify.
            _ => Err(Error::UnexpectedHandshakeMessage),
        };
        self.advance(result)
    }

    // Out of line: inlined into the connect path it made firmware larger.
    #[inline(never)]
    fn advance(&mut self, result: Result<Progress, Error>) -> Result<(), &Error> {
        self.progress = match result {
            Ok(progress) => progress,
            Err(e) => Progress::Failed(e),
        };
        self.failed()
    }

    /// The error a failed check recorded, as an `Err`.
    fn failed(&self) -> Result<(), &Error> {
        match &self.progress {
            Progress::Failed(e) => Err(e),
            _ => Ok(()),
        }
    }

    /// The outcome of the handshake `handshake` (embedded-tls's result):
    /// the error a failed check recorded explains more than the `TlsError`
    /// embedded-tls got; and a handshake that completed is refused unless
    /// the certificate was trusted *and* its key verified the server's
    /// signature (the guard). One exit, so the large `Error` is moved once.
    #[inline(never)]
    pub fn conclude(self, handshake: Result<(), TlsError>) -> Result<PresentedCertificate, Error> {
        match (handshake, self.progress) {
            (_, Progress::Failed(e)) => Err(e),
            (Err(TlsError::Io(embedded_io::ErrorKind::TimedOut)), _) => {
                Err(Error::Tls(crate::error::TlsFailure::Timeout))
            }
            (Err(e), _) => Err(e.into()),
            (Ok(()), Progress::Authenticated(presented)) => Ok(presented),
            (Ok(()), Progress::AwaitingCertificate) => Err(Error::MissingCertificate),
            (Ok(()), Progress::AwaitingSignature { .. }) => Err(Error::MissingCertificateVerify),
        }
    }

    /// The guard alone (see [`TrustVerifier::conclude`]).
    #[cfg(test)]
    pub fn finish(self) -> Result<PresentedCertificate, Error> {
        self.conclude(Ok(()))
    }
}

/// What embedded-tls is told when a check fails; mqtts reports the recorded
/// [`Error`] instead.
fn to_tls_error(e: &Error) -> TlsError {
    match e {
        Error::ServerSignatureInvalid | Error::SignatureSchemeMismatch { .. } => {
            TlsError::InvalidSignature
        }
        Error::UnexpectedHandshakeMessage => TlsError::InvalidHandshake,
        _ => TlsError::InvalidCertificate,
    }
}

impl<CipherSuite: TlsCipherSuite> TlsVerifier<CipherSuite> for TrustVerifier<'_> {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), TlsError> {
        // The name comes from `TlsOptions` directly; it is always checked
        // (CA mode) whether or not embedded-tls passes it here.
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &CipherSuite::Hash,
        cert: CertificateRef,
    ) -> Result<(), TlsError> {
        let mut chain: Vec<&[u8], 16> = Vec::new();
        for entry in &cert.entries {
            let der = match entry {
                CertificateEntryRef::X509(der) => *der,
                // Raw public keys (RFC 7250) are never negotiated by embedded-tls.
                CertificateEntryRef::RawPublicKey(_) => {
                    let result = match self.progress {
                        // The first refusal stays the one reported.
                        Progress::Failed(_) => return self.failed().map_err(to_tls_error),
                        _ => Err(Error::MalformedCertificate),
                    };
                    return self.advance(result).map_err(to_tls_error);
                }
            };
            // Cannot overflow: embedded-tls holds at most 16 entries too.
            let _ = chain.push(der);
        }
        let transcript_hash = transcript.clone().finalize();
        self.on_certificate(&chain, &transcript_hash)
            .map_err(to_tls_error)
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        self.on_certificate_verify(verify.signature_scheme, verify.signature)
            .map_err(to_tls_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trust::Pin;
    use p256::ecdsa::signature::Signer as _;

    /// A self-signed P-256 certificate and its private key (tests/data).
    const CERT: &[u8] = include_bytes!("../../tests/data/p256-selfsigned.der");
    const KEY: &[u8] = include_bytes!("../../tests/data/p256-selfsigned.key.raw");
    /// What `openssl x509 -fingerprint -sha256` prints for CERT.
    const CERT_SHA256: Pin = crate::pin_certificate!(
        "sha256 Fingerprint=7A:72:12:C6:40:EB:B5:2B:8E:69:72:B2:67:C6:19:04:9E:96:DE:C0:C4:FE:40:62:13:2F:18:76:AB:B4:52:A9"
    );
    /// `openssl x509 -pubkey | openssl pkey -pubin -outform DER | openssl dgst -sha256` for CERT.
    const CERT_SPKI: Pin =
        crate::pin_public_key!("eda94e8949ef3d22172eb9e4defa7e78d864df7be45f0322c68b10be3108a599");
    const OTHER: Pin =
        crate::pin_public_key!("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff");
    const TRANSCRIPT: [u8; 32] = [0x5A; 32];

    fn sign(key: &[u8], transcript: &[u8]) -> heapless::Vec<u8, 80> {
        let key = p256::ecdsa::SigningKey::from_slice(key).expect("key");
        let mut content = heapless::Vec::<u8, 200>::new();
        content.resize(64, 0x20).unwrap();
        content
            .extend_from_slice(b"TLS 1.3, server CertificateVerify\x00")
            .unwrap();
        content.extend_from_slice(transcript).unwrap();
        let signature: p256::ecdsa::Signature = key.sign(&content);
        heapless::Vec::from_slice(signature.to_der().as_bytes()).unwrap()
    }

    fn verifier(pins: &'static [Pin]) -> TrustVerifier<'static> {
        TrustVerifier::new(Trust::pinned(pins), "broker.test", None)
    }

    #[test]
    fn accepts_a_pinned_certificate_with_its_signature() {
        for pins in [&[CERT_SHA256][..], &[CERT_SPKI], &[OTHER, CERT_SPKI]] {
            let mut v = verifier(pins);
            v.on_certificate(&[CERT], &TRANSCRIPT).expect("certificate");
            let signature = sign(KEY, &TRANSCRIPT);
            v.on_certificate_verify(SignatureScheme::EcdsaSecp256r1Sha256, &signature)
                .expect("signature");
            let presented = v.finish().expect("authenticated");
            assert!(CERT_SHA256.matches(&presented) && CERT_SPKI.matches(&presented));
        }
    }

    #[test]
    fn guard_refuses_a_handshake_without_certificate() {
        assert_eq!(
            verifier(&[CERT_SPKI]).finish(),
            Err(Error::MissingCertificate)
        );
    }

    #[test]
    fn guard_refuses_a_certificate_without_certificate_verify() {
        let mut v = verifier(&[CERT_SPKI]);
        v.on_certificate(&[CERT], &TRANSCRIPT).expect("certificate");
        assert_eq!(v.finish(), Err(Error::MissingCertificateVerify));
    }

    #[test]
    fn refuses_certificate_verify_before_certificate() {
        let mut v = verifier(&[CERT_SPKI]);
        let signature = sign(KEY, &TRANSCRIPT);
        assert_eq!(
            v.on_certificate_verify(SignatureScheme::EcdsaSecp256r1Sha256, &signature),
            Err(&Error::UnexpectedHandshakeMessage)
        );
        // The failure sticks: a later Certificate cannot repair it.
        assert_eq!(
            v.on_certificate(&[CERT], &TRANSCRIPT),
            Err(&Error::UnexpectedHandshakeMessage)
        );
        assert_eq!(v.finish(), Err(Error::UnexpectedHandshakeMessage));
    }

    #[test]
    fn refuses_a_second_certificate_message() {
        let mut v = verifier(&[CERT_SPKI]);
        v.on_certificate(&[CERT], &TRANSCRIPT).expect("certificate");
        assert_eq!(
            v.on_certificate(&[CERT], &TRANSCRIPT),
            Err(&Error::UnexpectedHandshakeMessage)
        );
    }

    #[test]
    fn refuses_a_signature_by_another_key_or_over_another_transcript() {
        let other_key = [0x42u8; 32];
        for signature in [sign(&other_key, &TRANSCRIPT), sign(KEY, &[0x5B; 32])] {
            let mut v = verifier(&[CERT_SPKI]);
            v.on_certificate(&[CERT], &TRANSCRIPT).expect("certificate");
            assert_eq!(
                v.on_certificate_verify(SignatureScheme::EcdsaSecp256r1Sha256, &signature),
                Err(&Error::ServerSignatureInvalid)
            );
            assert_eq!(v.finish(), Err(Error::ServerSignatureInvalid));
        }
    }

    #[test]
    fn refuses_a_scheme_that_does_not_fit_the_key() {
        let mut v = verifier(&[CERT_SPKI]);
        v.on_certificate(&[CERT], &TRANSCRIPT).expect("certificate");
        let signature = sign(KEY, &TRANSCRIPT);
        for scheme in [SignatureScheme::Ed25519, SignatureScheme::RsaPkcs1Sha256] {
            assert_eq!(
                v.clone_for_test().on_certificate_verify(scheme, &signature),
                Err(&Error::SignatureSchemeMismatch {
                    scheme: scheme.as_u16(),
                    key: crate::trust::KeyAlgorithm::EcdsaP256
                })
            );
        }
    }

    #[test]
    fn pin_mismatch_carries_the_presented_fingerprints() {
        let mut v = verifier(&[OTHER]);
        let Err(&Error::PinMismatch { presented }) = v.on_certificate(&[CERT], &TRANSCRIPT) else {
            panic!("pin mismatch expected");
        };
        assert!(CERT_SHA256.matches(&presented));
        assert!(CERT_SPKI.matches(&presented));
        // A CertificateVerify after the refusal does not revive the connection.
        let signature = sign(KEY, &TRANSCRIPT);
        assert!(
            v.on_certificate_verify(SignatureScheme::EcdsaSecp256r1Sha256, &signature)
                .is_err()
        );
        assert_eq!(v.finish(), Err(Error::PinMismatch { presented }));
    }

    /// A failed handshake reports the recorded check first, then a timeout
    /// as such, then embedded-tls's error; a completed one needs both checks.
    #[test]
    fn conclude_names_the_first_cause() {
        let mut v = verifier(&[OTHER]);
        assert!(v.on_certificate(&[CERT], &TRANSCRIPT).is_err());
        let Err(Error::PinMismatch { .. }) = v.conclude(Err(TlsError::InvalidCertificate)) else {
            panic!("the recorded pin mismatch");
        };
        assert_eq!(
            verifier(&[CERT_SPKI]).conclude(Err(TlsError::Io(embedded_io::ErrorKind::TimedOut))),
            Err(Error::Tls(crate::error::TlsFailure::Timeout))
        );
        assert_eq!(
            verifier(&[CERT_SPKI]).conclude(Err(TlsError::ConnectionClosed)),
            Err(Error::ConnectionClosed)
        );
        assert_eq!(
            verifier(&[CERT_SPKI]).conclude(Ok(())),
            Err(Error::MissingCertificate)
        );
    }

    /// A Certificate after a refusal does not replace the first error
    /// (found by the verifier fuzz target).
    #[test]
    fn a_certificate_after_a_refusal_keeps_the_first_error() {
        let mut v = verifier(&[OTHER]);
        assert!(matches!(
            v.on_certificate(&[CERT], &TRANSCRIPT),
            Err(Error::PinMismatch { .. })
        ));
        assert!(matches!(
            v.on_certificate(&[CERT], &TRANSCRIPT),
            Err(Error::PinMismatch { .. })
        ));
        assert!(matches!(v.finish(), Err(Error::PinMismatch { .. })));
    }

    #[test]
    fn insecure_mode_still_requires_the_signature() {
        let mut v = TrustVerifier::new(Trust::insecure_accept_any_certificate(), "x.test", None);
        v.on_certificate(&[CERT], &TRANSCRIPT).expect("certificate");
        assert_eq!(v.finish(), Err(Error::MissingCertificateVerify));
    }

    #[test]
    fn empty_pin_list_is_a_configuration_error() {
        let mut v = verifier(&[]);
        assert_eq!(
            v.on_certificate(&[CERT], &TRANSCRIPT),
            Err(&Error::Config(crate::error::ConfigError::NoPins))
        );
    }

    impl TrustVerifier<'_> {
        fn clone_for_test(&self) -> Self {
            let progress = match &self.progress {
                Progress::AwaitingSignature {
                    accepted,
                    transcript_hash,
                } => Progress::AwaitingSignature {
                    accepted: accepted.clone(),
                    transcript_hash: transcript_hash.clone(),
                },
                _ => Progress::AwaitingCertificate,
            };
            Self {
                trust: self.trust,
                server_name: self.server_name,
                time: self.time,
                progress,
                observer: None,
            }
        }
    }
}
