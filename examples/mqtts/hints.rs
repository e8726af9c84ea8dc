//! A failure in words: the library's error, and the cause where the
//! error alone does not tell it (found from what the server sent, or by a
//! second, diagnostic handshake).

use crate::output::utc;
use crate::session::{Received, Settings, show_target};
use mqtts::Error as E;
use mqtts::error::CertificateError as C;
use mqtts::fingerprint::HexColons;
use std::net::ToSocketAddrs as _;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// Where the connection failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The TLS handshake (as far as the client sees it: until it sent Finished).
    Handshake,
    /// After the handshake, until CONNACK.
    Connect,
}

/// TLS alert `certificate_required` (RFC 8446 §6.2).
const CERTIFICATE_REQUIRED: u8 = 116;

/// `e` with its cause where one can be found.
pub fn explain(e: &E, phase: Phase, received: &Received, settings: &Settings<'_>) -> String {
    let endpoint = settings.endpoint;
    let target = show_target(&endpoint.host, endpoint.port);
    if phase == Phase::Handshake
        && let Some(why) = not_tls(received)
    {
        return format!("this port does not speak TLS: {why}");
    }
    match e {
        E::PinMismatch { .. } => format!(
            "{e} (if the broker renewed its certificate, `mqtts fingerprint {target}` shows \
             the whole chain)"
        ),
        E::CertificateRejected {
            reason: C::LeafIsCa,
            presented,
        } => format!(
            "{e}: it marks itself as a CA (basicConstraints CA:TRUE), so CA mode cannot accept \
             it as the server's own, even when given with --ca (a self-signed server \
             certificate made as a CA); pin its public key instead: --spki {}",
            HexColons(&presented.spki_sha256())
        ),
        E::CertificateRejected {
            reason: C::NameMismatch { .. },
            ..
        } => format!(
            "{e} (connect by the name in the certificate, or give it with --servername; \
             `mqtts fingerprint {target}` shows the certificate)"
        ),
        E::CertificateRejected {
            reason:
                C::Expired {
                    now,
                    not_before,
                    not_after,
                }
                | C::NotYetValid {
                    now,
                    not_before,
                    not_after,
                },
            ..
        } => format!(
            "{e} (valid from {} to {}; this computer's clock says {})",
            utc(*not_before),
            utc(*not_after),
            utc(*now)
        ),
        // The server's refusal (alert certificate_required, then closing)
        // races with the client's CONNECT: any of these.
        E::ConnectionClosed
        | E::Tls(mqtts::error::TlsFailure::Internal)
        | E::Io(_)
        | E::AlertReceived(mqtts::error::Alert(CERTIFICATE_REQUIRED)) => {
            match asks_for_client_certificate(&endpoint.host, endpoint.port, &endpoint.server_name)
            {
                Some(authorities) => format!(
                    "the server asked for a client certificate (its CertificateRequest was \
                     seen in a second, diagnostic handshake{}) and mqtts sends none: this \
                     broker requires client certificates (mosquitto: require_certificate) ({e})",
                    match authorities {
                        0 => String::new(),
                        1 => ", naming 1 accepted CA".to_string(),
                        n => format!(", naming {n} accepted CAs"),
                    }
                ),
                None if phase == Phase::Handshake && received.total == 0 && received.closed => {
                    format!(
                        "this port does not speak TLS: the server closed the connection \
                         without answering the TLS ClientHello (1883 is usually plain MQTT, \
                         8883 MQTT over TLS) ({e})"
                    )
                }
                None => format!(
                    "{e} (during the TLS handshake or CONNECT: is {target} an MQTT-over-TLS 1.3 \
                     port? 1883 is usually plain MQTT)"
                ),
            }
        }
        _ => e.to_string(),
    }
}

/// Why the server's first bytes are not a TLS record (RFC 8446 §5.1:
/// content type 20 to 23, then version 3.x), or `None` if they are or if
/// it sent nothing.
fn not_tls(received: &Received) -> Option<String> {
    let first = received.first.as_slice();
    match first {
        [] => None,
        [20..=23] => None,
        [20..=23, 3, ..] => None,
        [0x20, 2, 0, _, ..] => Some(format!(
            "it answered with an MQTT CONNACK ({}): plain MQTT, without TLS",
            HexColons(first.get(..4).unwrap_or(first))
        )),
        _ => {
            let line: String = first
                .iter()
                .take_while(|b| **b != b'\r' && **b != b'\n')
                .map(|b| char::from(*b))
                .collect();
            if !line.is_empty() && line.chars().all(|c| c.is_ascii_graphic() || c == ' ') {
                Some(format!("it answered {line:?}"))
            } else {
                Some(format!(
                    "it answered bytes that are no TLS record: {}",
                    HexColons(first.get(..8).unwrap_or(first))
                ))
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The diagnostic handshake.

/// Whether the server sends a CertificateRequest, found by a TLS 1.3
/// handshake with rustls that authenticates nothing and sends no
/// certificate: `Some(n)` with the number of CA names it listed. mqtts's
/// own handshake does not report the request (it happens inside encrypted
/// records that only embedded-tls reads).
fn asks_for_client_certificate(host: &str, port: u16, server_name: &str) -> Option<usize> {
    use rustls::pki_types::ServerName;
    const LIMIT: Duration = Duration::from_secs(5);
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let seen = Arc::new(CertificateRequestSeen::default());
    let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .ok()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AnyServer(provider)))
        .with_client_cert_resolver(seen.clone());
    let name = ServerName::try_from(server_name.to_string()).ok()?;
    let mut tls = rustls::ClientConnection::new(Arc::new(config), name).ok()?;
    let address = (host, port).to_socket_addrs().ok()?.next()?;
    let mut socket = std::net::TcpStream::connect_timeout(&address, LIMIT).ok()?;
    socket.set_read_timeout(Some(LIMIT)).ok()?;
    socket.set_write_timeout(Some(LIMIT)).ok()?;
    while tls.is_handshaking() {
        if tls.complete_io(&mut socket).is_err() {
            break;
        }
    }
    *seen.0.lock().ok()?
}

/// Notes the CertificateRequest (rustls asks its resolver then) and
/// offers no certificate.
#[derive(Debug, Default)]
struct CertificateRequestSeen(Mutex<Option<usize>>);

impl rustls::client::ResolvesClientCert for CertificateRequestSeen {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        if let Ok(mut seen) = self.0.lock() {
            *seen = Some(root_hint_subjects.len());
        }
        None
    }

    fn has_certs(&self) -> bool {
        true
    }
}

/// Accepts any server: the diagnostic handshake sends nothing over the
/// connection and only looks at what the server asks.
#[derive(Debug)]
struct AnyServer(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AnyServer {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        self.verify_tls13_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &rustls::pki_types::CertificateDer<'_>,
        _dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        Ok(rustls::client::danger::HandshakeSignatureValid::assertion())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
