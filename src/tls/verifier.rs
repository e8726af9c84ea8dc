//! The embedded-tls verifier that enforces trust, and the guard that makes
//! sure it ran.
//!
//! embedded-tls calls a verifier only for the handshake messages the server
//! actually sends: a server that skips Certificate and CertificateVerify
//! completes the handshake without any check. This verifier therefore
//! records its progress, and [`TrustVerifier::finish`] refuses the
//! connection unless both the certificate and the signature were checked.

use crate::error::Error;
use crate::trust::{Accepted, PresentedCertificate, Trust};
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

/// Checks the server's Certificate and CertificateVerify against a [`Trust`].
#[derive(Debug)]
pub(crate) struct TrustVerifier<'a> {
    trust: Trust<'a>,
    server_name: &'a str,
    now_unix_secs: Option<u64>,
    progress: Progress,
}

impl<'a> TrustVerifier<'a> {
    pub fn new(trust: Trust<'a>, server_name: &'a str, now_unix_secs: Option<u64>) -> Self {
        Self {
            trust,
            server_name,
            now_unix_secs,
            progress: Progress::AwaitingCertificate,
        }
    }

    /// The server's Certificate message (RFC 8446 §4.4.2): `chain` leaf
    /// first, and the transcript hash through this message.
    pub fn on_certificate(&mut self, chain: &[&[u8]], transcript_hash: &[u8]) -> Result<(), Error> {
        let result = match self.progress {
            Progress::AwaitingCertificate => self
                .trust
                .verify(chain, self.server_name, self.now_unix_secs)
                .and_then(|accepted| {
                    let transcript_hash = Vec::from_slice(transcript_hash)
                        .map_err(|_| Error::UnexpectedHandshakeMessage)?;
                    Ok(Progress::AwaitingSignature {
                        accepted,
                        transcript_hash,
                    })
                }),
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
    ) -> Result<(), Error> {
        let result = match &self.progress {
            Progress::AwaitingSignature {
                accepted,
                transcript_hash,
            } => accepted
                .key
                .verify_certificate_verify(scheme, transcript_hash, signature)
                .map(|()| Progress::Authenticated(accepted.presented)),
            Progress::Failed(e) => Err(e.clone()),
            // Before any Certificate (embedded-tls's own verifier panics
            // here), or a second CertificateVerify.
            _ => Err(Error::UnexpectedHandshakeMessage),
        };
        self.advance(result)
    }

    fn advance(&mut self, result: Result<Progress, Error>) -> Result<(), Error> {
        match result {
            Ok(progress) => {
                self.progress = progress;
                Ok(())
            }
            Err(e) => {
                self.progress = Progress::Failed(e.clone());
                Err(e)
            }
        }
    }

    /// The error a failed check recorded, if any.
    pub fn failure(&self) -> Option<&Error> {
        match &self.progress {
            Progress::Failed(e) => Some(e),
            _ => None,
        }
    }

    /// The guard: after the handshake, succeeds only if the certificate was
    /// trusted *and* its key verified the server's signature.
    pub fn finish(self) -> Result<PresentedCertificate, Error> {
        match self.progress {
            Progress::Authenticated(presented) => Ok(presented),
            Progress::AwaitingCertificate => Err(Error::MissingCertificate),
            Progress::AwaitingSignature { .. } => Err(Error::MissingCertificateVerify),
            Progress::Failed(e) => Err(e),
        }
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
                    let e = Error::MalformedCertificate;
                    let tls = to_tls_error(&e);
                    self.progress = Progress::Failed(e);
                    return Err(tls);
                }
            };
            // Cannot overflow: embedded-tls holds at most 16 entries too.
            let _ = chain.push(der);
        }
        let transcript_hash = transcript.clone().finalize();
        self.on_certificate(&chain, &transcript_hash)
            .map_err(|e| to_tls_error(&e))
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        self.on_certificate_verify(verify.signature_scheme, verify.signature)
            .map_err(|e| to_tls_error(&e))
    }
}
