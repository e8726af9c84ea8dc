//! Entry points for the cargo-fuzz targets in `fuzz/` into crate-private
//! code: the handshake's trust verifier and the CertificateVerify check.
//!
//! Compiled only with `--cfg fuzzing` (cargo-fuzz passes it to every
//! crate); never part of a normal build, its API or its size. Each item
//! forwards to the code the handshake runs, unchanged.

use crate::error::Error;
use crate::tls::verifier::TrustVerifier;
use crate::trust::{PresentedCertificate, Trust};
use core::future::Future as _;
use embedded_tls::{
    CertificateRef, CertificateVerifyRef, SignatureScheme, TlsCipherSuite, TlsError, TlsVerifier,
};

/// The verifier [`crate::tls::connect`] hands embedded-tls.
#[derive(Debug)]
pub struct Verifier<'a>(TrustVerifier<'a>);

impl<'a> Verifier<'a> {
    /// As `connect` makes it from its options.
    pub fn new(trust: Trust<'a>, server_name: &'a str, now_unix_secs: Option<u64>) -> Self {
        Self(TrustVerifier::new(trust, server_name, now_unix_secs))
    }

    /// `TrustVerifier::on_certificate` (the refusal cloned).
    pub fn on_certificate(&mut self, chain: &[&[u8]], transcript_hash: &[u8]) -> Result<(), Error> {
        self.0
            .on_certificate(chain, transcript_hash)
            .map_err(Clone::clone)
    }

    /// `TrustVerifier::on_certificate_verify` (the refusal cloned).
    pub fn on_certificate_verify(
        &mut self,
        scheme: SignatureScheme,
        signature: &[u8],
    ) -> Result<(), Error> {
        self.0
            .on_certificate_verify(scheme, signature)
            .map_err(Clone::clone)
    }

    /// `TrustVerifier::conclude`: the outcome of a handshake that ended
    /// with `handshake`.
    pub fn conclude(self, handshake: Result<(), TlsError>) -> Result<PresentedCertificate, Error> {
        self.0.conclude(handshake)
    }
}

/// The `embedded_tls::TlsVerifier` implementation, as embedded-tls calls it.
impl<C: TlsCipherSuite> TlsVerifier<C> for Verifier<'_> {
    fn set_hostname_verification(&mut self, hostname: &str) -> Result<(), TlsError> {
        TlsVerifier::<C>::set_hostname_verification(&mut self.0, hostname)
    }

    fn verify_certificate(
        &mut self,
        transcript: &C::Hash,
        cert: CertificateRef,
    ) -> Result<(), TlsError> {
        TlsVerifier::<C>::verify_certificate(&mut self.0, transcript, cert)
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        TlsVerifier::<C>::verify_signature(&mut self.0, verify)
    }
}

/// The key of a certificate, as the verifier decodes it after the trust
/// decision, checking CertificateVerify signatures.
#[derive(Debug, Clone)]
pub struct ServerKey(crate::trust::signature::ServerKey);

impl ServerKey {
    /// The key of `certificate_der` (as insecure mode accepts it: any
    /// certificate whose key this build can use).
    pub fn of_certificate(certificate_der: &[u8]) -> Result<Self, Error> {
        Trust::insecure_accept_any_certificate()
            .verify(&[certificate_der], "fuzz.test", None)
            .map(|accepted| Self(accepted.key))
    }

    /// `ServerKey::verify_certificate_verify`: a TLS 1.3 server signature
    /// with `scheme` over `transcript_hash` (RFC 8446 §4.4.3).
    pub fn verify_certificate_verify(
        &self,
        scheme: SignatureScheme,
        transcript_hash: &[u8],
        signature: &[u8],
    ) -> Result<(), Error> {
        self.0
            .verify_certificate_verify(scheme, transcript_hash, signature)
    }
}

/// The phases of the record gate (`tls::record_gate::Phase`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// ClientHello sent, ServerHello not yet received.
    AwaitingServerHello,
    /// ServerHello received: the rest of the flight is encrypted.
    Handshake,
    /// The handshake is complete.
    Established,
}

/// An in-memory server: reads of at most `chunk` bytes, then end of stream.
#[derive(Debug)]
pub struct Chunks<'a> {
    bytes: &'a [u8],
    chunk: usize,
}

impl embedded_io::ErrorType for Chunks<'_> {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io_async::Read for Chunks<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.chunk).min(self.bytes.len());
        let (now, rest) = self.bytes.split_at(n);
        buf[..n].copy_from_slice(now);
        self.bytes = rest;
        Ok(n)
    }
}

/// The socket embedded-tls reads through (`tls::socket::DeadlineSocket`,
/// no deadline) and its record gate, over an in-memory server.
pub struct GatedSocket<'a> {
    socket: crate::tls::socket::DeadlineSocket<'a, Chunks<'a>, crate::tls::NoTimer>,
    gate: crate::tls::record_gate::Gate<'a>,
}

impl core::fmt::Debug for GatedSocket<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GatedSocket")
            .field("phase", &self.phase())
            .field("refusal", &self.refusal())
            .finish_non_exhaustive()
    }
}

impl<'a> GatedSocket<'a> {
    /// Serves `server` in reads of at most `chunk` bytes; the gate's state
    /// lives in `gate_bytes`, as `connect` keeps it in the write buffer.
    pub fn new(server: &'a [u8], chunk: usize, gate_bytes: &'a mut [u8; 2]) -> Self {
        let gate = crate::tls::record_gate::Gate::new(gate_bytes);
        let inner = Chunks {
            bytes: server,
            chunk: chunk.max(1),
        };
        Self {
            socket: crate::tls::socket::DeadlineSocket::new(inner, None, gate),
            gate,
        }
    }

    /// One read as embedded-tls makes it; `None` if it waited (the server
    /// is in memory: it never should).
    pub fn read(&mut self, buf: &mut [u8]) -> Option<Result<usize, embedded_io::ErrorKind>> {
        use embedded_io_async::Read as _;
        let mut read = core::pin::pin!(self.socket.read(buf));
        let mut cx = core::task::Context::from_waker(core::task::Waker::noop());
        match read.as_mut().poll(&mut cx) {
            core::task::Poll::Ready(result) => Some(result),
            core::task::Poll::Pending => None,
        }
    }

    /// The gate's phase.
    pub fn phase(&self) -> Phase {
        use crate::tls::record_gate::Phase as P;
        match self.gate.phase() {
            P::AwaitingServerHello => Phase::AwaitingServerHello,
            P::Handshake => Phase::Handshake,
            P::Established => Phase::Established,
        }
    }

    /// Moves the gate to `phase`, as the handshake does.
    pub fn set_phase(&self, phase: Phase) {
        use crate::tls::record_gate::Phase as P;
        self.gate.set_phase(match phase {
            Phase::AwaitingServerHello => P::AwaitingServerHello,
            Phase::Handshake => P::Handshake,
            Phase::Established => P::Established,
        });
    }

    /// `Gate::establish`: what `connect` does once the handshake completed.
    pub fn establish(&self) {
        self.gate.establish();
    }

    /// The refused record: content type, and whether after the handshake.
    pub fn refusal(&self) -> Option<(u8, bool)> {
        self.gate
            .refusal()
            .map(|r| (r.content_type, r.after_handshake))
    }

    /// `Gate::explain`: the error the caller sees for `error`.
    pub fn explain(&self, error: Error) -> Error {
        self.gate.explain(error)
    }
}
