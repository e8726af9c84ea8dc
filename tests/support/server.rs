//! A real TLS 1.3 server (rustls 0.23, ring provider) on the far end of an
//! in-memory `tokio::io::duplex` pipe.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use embedded_io_adapters::tokio_1::FromTokio;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{AlertDescription, ConfigBuilder, ServerConfig, WantsVerifier};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, DuplexStream, ReadBuf};
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use super::TIMEOUT;

/// Capacity of each direction of the in-memory pipe.
pub const DUPLEX_BUFFER: usize = 64 * 1024;

/// The client end of the pipe: implements `embedded_io_async::{Read, Write}`.
pub type ClientSocket = FromTokio<DuplexStream>;

/// The server end after a completed handshake.
pub type ServerStream = tokio_rustls::server::TlsStream<Tap>;

/// How many client-to-server bytes a [`Tap`] keeps (enough for any handshake).
const TAP_LIMIT: usize = 64 * 1024;

/// The server's end of the pipe, keeping a copy of the first bytes the client
/// sent so that unencrypted alerts can be reported (see [`ServerError::alert`]).
#[derive(Debug)]
pub struct Tap {
    inner: DuplexStream,
    from_client: Arc<Mutex<Vec<u8>>>,
}

impl Tap {
    fn new(inner: DuplexStream) -> Self {
        Tap {
            inner,
            from_client: Arc::new(Mutex::new(Vec::new())),
        }
    }

    /// The raw bytes received from the client so far (at most 64 KiB).
    pub fn client_bytes(&self) -> Vec<u8> {
        self.from_client.lock().expect("tap lock").clone()
    }
}

impl AsyncRead for Tap {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Poll::Ready(Ok(())) = result {
            let mut seen = self.from_client.lock().expect("tap lock");
            let room = TAP_LIMIT.saturating_sub(seen.len());
            let new = &buf.filled()[before..];
            seen.extend_from_slice(&new[..new.len().min(room)]);
        }
        result
    }
}

impl AsyncWrite for Tap {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// The description of the last unencrypted alert in raw client bytes.
/// Accepts content type Alert (21) and also ChangeCipherSpec (20) with a
/// two-byte body: embedded-tls 0.19 writes unencrypted alerts with the
/// ChangeCipherSpec content type (a real CCS body is the single byte 1).
fn plaintext_alert(mut bytes: &[u8]) -> Option<AlertDescription> {
    let mut found = None;
    while bytes.len() >= 5 {
        let content_type = bytes[0];
        let len = usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        let Some(body) = bytes.get(5..5 + len) else {
            break;
        };
        if matches!(content_type, 20 | 21) && len == 2 && matches!(body[0], 1 | 2) {
            found = Some(AlertDescription::from(body[1]));
        }
        bytes = &bytes[5 + len..];
    }
    found
}

/// A connected in-memory socket pair: (client end for embedded-io, raw server end).
/// Use the raw end directly to play a misbehaving (non-TLS) server.
pub fn socket_pair() -> (ClientSocket, DuplexStream) {
    let (client, server) = tokio::io::duplex(DUPLEX_BUFFER);
    (FromTokio::new(client), server)
}

/// The ring crypto provider rustls uses here.
pub fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// A `ServerConfig` builder restricted to TLS 1.3 with the ring provider, for
/// tests that need something the helpers below do not offer (ALPN, ...).
pub fn server_config_builder() -> ConfigBuilder<ServerConfig, WantsVerifier> {
    ServerConfig::builder_with_provider(crypto_provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("ring supports TLS 1.3")
}

/// TLS 1.3 server config presenting `chain` (leaf first, then intermediates)
/// and signing CertificateVerify with `key` (which must match the leaf;
/// rustls checks that here).
pub fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Arc<ServerConfig> {
    Arc::new(
        server_config_builder()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("building a rustls ServerConfig (does the key match the leaf?)"),
    )
}

/// Always hands out the same `CertifiedKey`, without the key/certificate
/// consistency check `with_single_cert` does.
#[derive(Debug)]
struct FixedCertResolver(Arc<CertifiedKey>);

impl ResolvesServerCert for FixedCertResolver {
    fn resolve(&self, _client_hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// TLS 1.3 server config that presents `chain` but signs CertificateVerify
/// with `signing_key`, which may belong to a different key pair (use one of
/// the same type so that a signature scheme the client offered is chosen).
/// Simulates an attacker replaying a public certificate.
///
/// `CertifiedKey::new` and the handshake path never compare the key with the
/// certificate (only `CertifiedKey::from_der` / `keys_match` do).
pub fn server_config_with_signing_key(
    chain: Vec<CertificateDer<'static>>,
    signing_key: PrivateKeyDer<'static>,
) -> Arc<ServerConfig> {
    let provider = crypto_provider();
    let key = provider
        .key_provider
        .load_private_key(signing_key)
        .expect("rustls/ring cannot load the signing key");
    let certified = Arc::new(CertifiedKey::new(chain, key));
    Arc::new(
        ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("ring supports TLS 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(FixedCertResolver(certified))),
    )
}

/// Where the server task stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// The TLS handshake failed (client alert, client hung up, no common
    /// parameters, ...).
    Handshake,
    /// After the handshake: read/write error, including the client closing
    /// the pipe without a close_notify alert.
    Io,
    /// A step took longer than [`TIMEOUT`](super::TIMEOUT).
    Timeout,
}

/// Why the server task did not finish cleanly.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    pub stage: Stage,
    /// Bytes echoed before the error (0 for handshake errors).
    pub echoed: usize,
    /// The alert the client sent, if that is what ended the connection:
    /// either received by rustls, or (for handshake errors) found
    /// unencrypted in the raw client bytes. embedded-tls 0.19 sends handshake
    /// aborts unencrypted and labelled as ChangeCipherSpec, which rustls
    /// reports as `IllegalMiddleboxChangeCipherSpec`; `message` keeps the
    /// rustls error either way.
    pub alert: Option<AlertDescription>,
    /// The rustls / I/O error, as text.
    pub message: String,
}

impl ServerError {
    fn from_io(stage: Stage, echoed: usize, error: &io::Error) -> Self {
        Self::from_io_and_tap(stage, echoed, error, &[])
    }

    fn from_io_and_tap(stage: Stage, echoed: usize, error: &io::Error, tapped: &[u8]) -> Self {
        let received = error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<rustls::Error>())
            .and_then(|e| match e {
                rustls::Error::AlertReceived(alert) => Some(*alert),
                _ => None,
            });
        let alert = received.or_else(|| plaintext_alert(tapped));
        ServerError {
            stage,
            echoed,
            alert,
            message: error.to_string(),
        }
    }

    fn timeout(what: &str, echoed: usize) -> Self {
        ServerError {
            stage: Stage::Timeout,
            echoed,
            alert: None,
            message: format!("server timed out after {TIMEOUT:?} while {what}"),
        }
    }
}

impl fmt::Display for ServerError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{:?} error after {} echoed bytes: {}",
            self.stage, self.echoed, self.message
        )?;
        if let Some(alert) = self.alert {
            write!(f, " (client alert {alert:?})")?;
        }
        Ok(())
    }
}

impl std::error::Error for ServerError {}

/// `Ok(bytes echoed)` when the client ended with close_notify (or the pipe
/// closed cleanly after it), otherwise what went wrong.
pub type ServerOutcome = Result<usize, ServerError>;

/// Accept one TLS 1.3 connection over a fresh in-memory pipe and echo every
/// byte back until the client sends close_notify. The returned socket is the
/// client's end.
pub fn spawn_server(config: Arc<ServerConfig>) -> (ClientSocket, JoinHandle<ServerOutcome>) {
    let (client, server_end) = socket_pair();
    let handle = tokio::spawn(async move {
        let stream = accept(config, server_end).await?;
        echo(stream).await
    });
    (client, handle)
}

/// Like [`spawn_server`], but after the handshake runs `handler` on the TLS
/// stream (e.g. a scripted MQTT broker). The task yields the handler's
/// result, or the handshake error.
pub fn spawn_server_with<T, F, Fut>(
    config: Arc<ServerConfig>,
    handler: F,
) -> (ClientSocket, JoinHandle<Result<T, ServerError>>)
where
    T: Send + 'static,
    F: FnOnce(ServerStream) -> Fut + Send + 'static,
    Fut: Future<Output = T> + Send + 'static,
{
    let (client, server_end) = socket_pair();
    let handle = tokio::spawn(async move {
        let stream = accept(config, server_end).await?;
        Ok(handler(stream).await)
    });
    (client, handle)
}

/// Run the server side of the TLS 1.3 handshake on `server_end`. Note that
/// tokio-rustls may already process records the client sent right after its
/// Finished, so an early application-data error can surface here (as
/// `Stage::Handshake`).
pub async fn accept(
    config: Arc<ServerConfig>,
    server_end: DuplexStream,
) -> Result<ServerStream, ServerError> {
    let acceptor = TlsAcceptor::from(config);
    let tap = Tap::new(server_end);
    let from_client = Arc::clone(&tap.from_client);
    match tokio::time::timeout(TIMEOUT, acceptor.accept(tap)).await {
        Err(_) => Err(ServerError::timeout("handshaking", 0)),
        Ok(Err(e)) => {
            let tapped = from_client.lock().expect("tap lock").clone();
            Err(ServerError::from_io_and_tap(
                Stage::Handshake,
                0,
                &e,
                &tapped,
            ))
        }
        Ok(Ok(stream)) => Ok(stream),
    }
}

/// The echo handler used by [`spawn_server`]. Each read and write is bounded
/// by [`TIMEOUT`](super::TIMEOUT).
pub async fn echo(mut stream: ServerStream) -> ServerOutcome {
    let mut buf = vec![0u8; 16 * 1024];
    let mut echoed = 0usize;
    loop {
        let n = match tokio::time::timeout(TIMEOUT, stream.read(&mut buf)).await {
            Err(_) => return Err(ServerError::timeout("reading", echoed)),
            Ok(Err(e)) => return Err(ServerError::from_io(Stage::Io, echoed, &e)),
            // close_notify received.
            Ok(Ok(0)) => break,
            Ok(Ok(n)) => n,
        };
        let write = async {
            stream.write_all(&buf[..n]).await?;
            stream.flush().await
        };
        match tokio::time::timeout(TIMEOUT, write).await {
            Err(_) => return Err(ServerError::timeout("writing", echoed)),
            Ok(Err(e)) => return Err(ServerError::from_io(Stage::Io, echoed, &e)),
            Ok(Ok(())) => echoed += n,
        }
    }
    // Answer with our own close_notify; the client may already be gone.
    let _ = tokio::time::timeout(TIMEOUT, stream.shutdown()).await;
    Ok(echoed)
}
