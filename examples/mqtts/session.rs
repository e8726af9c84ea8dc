//! Opening TCP, TLS and MQTT, each step bounded, and closing cleanly on
//! every exit once a connection exists: DISCONNECT (so the broker discards
//! the Will and logs no abnormal close), then TLS close_notify.
//!
//! Two wrappers watch the bytes without changing them: [`Tap`] under TLS
//! (what the server sent before a failed handshake: nothing, or something
//! that is not TLS) and [`Watched`] over it (the MQTT packets the client
//! sends, so that `sub --count` can wait for its last PUBCOMP).

use crate::args::{Connection, Endpoint};
use crate::hints::{self, Phase};
use crate::{Failure, failed, say};
use embedded_io_adapters::tokio_1::FromTokio;
use mqtts::client::{Buffers, Client, ConnectOptions, Will};
use mqtts::flespi::{Credentials, Flespi};
use mqtts::time::WallClock;
use mqtts::tls::{self, ReadDeadline, TlsOptions, TlsStream};
use mqtts::transport::Transport;
use mqtts::trust::Trust;
use std::cell::RefCell;
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, timeout};

/// Name resolution, then each TCP connection attempt.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshake and MQTT CONNECT/CONNACK together.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// CONNACK alone (inside HANDSHAKE_TIMEOUT).
const CONNACK_TIMEOUT_MS: u64 = 15_000;
/// DISCONNECT and close_notify.
pub const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Buffer sizes: any TLS record; MQTT messages received up to 64 KiB; what
/// is sent is sized to the message (see [`with_client`]).
pub const TLS_READ: usize = tls::READ_BUFFER_FOR_FULL_RECORDS;
pub const TLS_WRITE: usize = 4096;
const MQTT_RX: usize = 64 * 1024;
const MQTT_TX: usize = 4 * 1024;
/// QoS 1/2 messages in flight at once; at least mosquitto's default
/// `max_inflight_messages` (20), see `mqtts::Session`.
const IN_FLIGHT: usize = 32;

/// The socket under TLS.
pub type Socket = Tap<FromTokio<TcpStream>>;
/// The client every command gets.
pub type MqttClient<'b, 's> =
    Client<'b, 's, Watched<TlsStream<'b, Socket, TokioTimer>>, TokioTimer, IN_FLIGHT>;

// ---------------------------------------------------------------------------
// Time.

/// [`mqtts::time::Timer`] on tokio's clock: milliseconds since creation.
#[derive(Debug, Clone, Copy)]
pub struct TokioTimer {
    start: Instant,
}

impl TokioTimer {
    pub fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl mqtts::time::Timer for TokioTimer {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn sleep_until(&mut self, deadline: u64) {
        match self.start.checked_add(Duration::from_millis(deadline)) {
            Some(at) => tokio::time::sleep_until(at).await,
            // Beyond what tokio's clock represents: never.
            None => std::future::pending().await,
        }
    }
}

pub fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The host's clock, read by mqtts at each connect (CA mode's validity checks).
struct SystemClock;

impl WallClock for SystemClock {
    fn now_unix_secs(&self) -> Option<u64> {
        Some(unix_now())
    }
}

static SYSTEM_CLOCK: SystemClock = SystemClock;

// ---------------------------------------------------------------------------
// The socket, watched.

/// What the server sent on a connection, as far as [`Tap`] keeps it.
#[derive(Debug, Default)]
pub struct Received {
    /// Its first bytes (at most [`Received::KEPT`]).
    pub first: Vec<u8>,
    /// How many bytes in all.
    pub total: usize,
    /// It closed its side (a read returned 0 or failed).
    pub closed: bool,
}

impl Received {
    const KEPT: usize = 64;
}

/// A socket that keeps the first bytes the server sends. Its first read
/// asks for [`Received::KEPT`] bytes whatever the caller asked (TLS reads a
/// 5-byte record header first), and hands them over in turn.
pub struct Tap<S> {
    inner: S,
    received: Rc<RefCell<Received>>,
    /// Read ahead by the first read, not yet handed over.
    ahead: Vec<u8>,
}

impl<S> Tap<S> {
    pub fn new(inner: S) -> (Self, Rc<RefCell<Received>>) {
        let received = Rc::new(RefCell::new(Received::default()));
        let tap = Self {
            inner,
            received: Rc::clone(&received),
            ahead: Vec::new(),
        };
        (tap, received)
    }
}

impl<S: embedded_io::ErrorType> embedded_io::ErrorType for Tap<S> {
    type Error = S::Error;
}

impl<S: embedded_io_async::Read> embedded_io_async::Read for Tap<S> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.ahead.is_empty() && self.received.borrow().total == 0 {
            let mut first = [0u8; Received::KEPT];
            let result = self.inner.read(&mut first).await;
            let mut received = self.received.borrow_mut();
            match result {
                Ok(0) => received.closed = true,
                Ok(n) => {
                    received.first.extend_from_slice(&first[..n]);
                    received.total += n;
                    self.ahead.extend_from_slice(&first[..n]);
                }
                Err(e) => {
                    received.closed = true;
                    return Err(e);
                }
            }
        }
        if !self.ahead.is_empty() {
            let n = buf.len().min(self.ahead.len());
            buf[..n].copy_from_slice(&self.ahead[..n]);
            self.ahead.drain(..n);
            return Ok(n);
        }
        let result = self.inner.read(buf).await;
        let mut received = self.received.borrow_mut();
        match &result {
            Ok(0) | Err(_) => received.closed = true,
            Ok(n) => received.total += n,
        }
        result
    }
}

impl<S: embedded_io_async::Write> embedded_io_async::Write for Tap<S> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.inner.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        self.inner.flush().await
    }
}

// ---------------------------------------------------------------------------
// The MQTT stream, watched.

/// What [`Watched`] saw the client send.
#[derive(Debug, Default)]
pub struct Sent {
    /// PUBCOMP packet identifiers written and then flushed.
    pub pubcomp_flushed: BTreeSet<u16>,
    pubcomp_written: Vec<u16>,
    /// The fixed header of the packet being written (at most 5 bytes).
    header: Vec<u8>,
    /// Bytes of the current packet's body still to come.
    body_left: usize,
    /// The current packet's body, kept for PUBCOMP only.
    body: Option<Vec<u8>>,
}

impl Sent {
    /// Follows the packets in bytes the client writes (well-formed: the
    /// library encoded them).
    fn on_write(&mut self, mut bytes: &[u8]) {
        while !bytes.is_empty() {
            if self.body_left == 0 && self.body.is_none() {
                self.header.push(bytes[0]);
                bytes = &bytes[1..];
                // The remaining length is complete at a byte below 0x80.
                let len = self.header.len();
                if len >= 2 && self.header[len - 1] & 0x80 == 0 {
                    let mut remaining = 0usize;
                    for (i, b) in self.header[1..].iter().enumerate() {
                        remaining |= usize::from(b & 0x7f) << (7 * i);
                    }
                    let pubcomp = self.header[0] == 0x70;
                    self.header.clear();
                    self.body_left = remaining;
                    self.body = pubcomp.then(Vec::new);
                    if remaining == 0 {
                        self.end_packet();
                    }
                }
                continue;
            }
            let take = self.body_left.min(bytes.len());
            if let Some(body) = &mut self.body {
                body.extend_from_slice(&bytes[..take]);
            }
            self.body_left -= take;
            bytes = &bytes[take..];
            if self.body_left == 0 {
                self.end_packet();
            }
        }
    }

    fn end_packet(&mut self) {
        if let Some(body) = self.body.take()
            && let [hi, lo] = body[..]
        {
            self.pubcomp_written.push(u16::from_be_bytes([hi, lo]));
        }
    }
}

/// The client's transport, passing everything through to `inner` and
/// noting in [`Sent`] what was sent.
pub struct Watched<T> {
    inner: T,
    sent: Rc<RefCell<Sent>>,
    flushed: Rc<Notify>,
}

/// A handle on what [`Watched`] sees.
#[derive(Clone)]
pub struct Wire {
    pub sent: Rc<RefCell<Sent>>,
    pub flushed: Rc<Notify>,
}

impl<T> Watched<T> {
    fn new(inner: T) -> (Self, Wire) {
        let wire = Wire {
            sent: Rc::default(),
            flushed: Rc::default(),
        };
        let watched = Self {
            inner,
            sent: Rc::clone(&wire.sent),
            flushed: Rc::clone(&wire.flushed),
        };
        (watched, wire)
    }

    fn into_inner(self) -> T {
        self.inner
    }
}

impl<T: Transport> Transport for Watched<T> {
    async fn read_before(
        &mut self,
        buf: &mut [u8],
        deadline: mqtts::time::Millis,
    ) -> Result<Option<usize>, mqtts::Error> {
        self.inner.read_before(buf, deadline).await
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), mqtts::Error> {
        self.inner.write_all(bytes).await?;
        self.sent.borrow_mut().on_write(bytes);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), mqtts::Error> {
        self.inner.flush().await?;
        let mut sent = self.sent.borrow_mut();
        let written = std::mem::take(&mut sent.pubcomp_written);
        sent.pubcomp_flushed.extend(written);
        drop(sent);
        self.flushed.notify_one();
        Ok(())
    }
}

// ---------------------------------------------------------------------------
// Connecting.

/// `host:port`, with brackets around an IPv6 address.
pub fn show_target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves `host` and opens a TCP connection to the first address that
/// answers, each step bounded.
pub async fn open_tcp(host: &str, port: u16) -> Result<FromTokio<TcpStream>, Failure> {
    let target = show_target(host, port);
    let addresses: Vec<SocketAddr> =
        match timeout(TCP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addresses)) => addresses.collect(),
            Ok(Err(e)) => {
                return Err(failed(format!(
                    "cannot resolve the host name {host:?}: {e}"
                )));
            }
            Err(_) => {
                return Err(failed(format!(
                    "cannot resolve the host name {host:?}: no answer within {} s",
                    TCP_TIMEOUT.as_secs()
                )));
            }
        };
    let mut last = format!("{host:?} has no address");
    for address in addresses {
        match timeout(TCP_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(socket)) => {
                let _ = socket.set_nodelay(true);
                return Ok(FromTokio::new(socket));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = format!(
                    "cannot connect to {target}: connection refused (TCP): nothing listens on \
                     {address}, or a firewall rejects it"
                );
            }
            Ok(Err(e)) => last = format!("cannot connect to {target} ({address}): {e}"),
            Err(_) => {
                last = format!(
                    "cannot connect to {target} ({address}): no TCP answer within {} s \
                     (wrong address, or a firewall drops the packets)",
                    TCP_TIMEOUT.as_secs()
                );
            }
        }
    }
    Err(failed(last))
}

/// Everything a connection needs, borrowed from the checked arguments.
pub struct Settings<'a> {
    pub endpoint: &'a Endpoint,
    pub tls: TlsOptions<'a>,
    pub mqtt: ConnectOptions<'a>,
    /// Bytes one QoS 0 PUBLISH needs in `tx` / one QoS 1/2 in the outbox.
    pub largest_message: usize,
}

impl Connection {
    pub fn anchors(&self) -> Vec<&[u8]> {
        self.anchors.iter().map(Vec::as_slice).collect()
    }

    pub fn settings<'a>(&'a self, anchors: &'a [&'a [u8]]) -> Result<Settings<'a>, Failure> {
        let pins = self.pins.as_slice();
        let endpoint = &self.endpoint;
        let (tls, mut mqtt) = match endpoint.flespi {
            Some(region) => {
                let token = self.token.as_deref().unwrap_or_default();
                let mut flespi =
                    Flespi::new(&self.client_id, Credentials::Token(token)).with_region(region);
                if !anchors.is_empty() {
                    flespi = flespi.with_roots(anchors);
                }
                if !pins.is_empty() {
                    flespi = flespi.with_pins(pins);
                }
                let mut tls = flespi.tls_options();
                if self.insecure {
                    tls = TlsOptions::new(flespi.host(), Trust::insecure_accept_any_certificate());
                }
                let mqtt = flespi
                    .connect_options()
                    .map_err(|e| failed(e.to_string()))?;
                (tls, mqtt)
            }
            None => {
                let trust = if self.insecure {
                    Trust::insecure_accept_any_certificate()
                } else if anchors.is_empty() {
                    Trust::pinned(pins)
                } else if pins.is_empty() {
                    Trust::certificate_authorities(anchors)
                } else {
                    Trust::certificate_authorities(anchors).with_pins(pins)
                };
                let mut mqtt = ConnectOptions::new(&self.client_id);
                match (&self.username, &self.password) {
                    (Some(user), Some(password)) => {
                        mqtt = mqtt.with_credentials(user, password.as_bytes());
                    }
                    (Some(user), None) => mqtt = mqtt.with_username(user),
                    _ => {}
                }
                (TlsOptions::new(&endpoint.server_name, trust), mqtt)
            }
        };
        if let Some((topic, payload, qos)) = &self.will {
            mqtt = mqtt.with_will(Will {
                topic,
                payload,
                qos: *qos,
                retain: false,
            });
        }
        tls.trust()
            .check()
            .map_err(|e| failed(format!("invalid trust: {e}")))?;
        Ok(Settings {
            endpoint,
            tls: tls.with_wall_clock(&SYSTEM_CLOCK),
            mqtt: mqtt
                .with_keep_alive(self.keep_alive)
                .with_connect_timeout_ms(CONNACK_TIMEOUT_MS),
            largest_message: 0,
        })
    }
}

fn warn_if_insecure(tls: &TlsOptions<'_>) {
    if tls.trust().is_insecure() {
        say!(
            "mqtts: warning: --insecure: the server is NOT authenticated; anyone on the path \
             can read and change this connection"
        );
    }
}

/// Opens TCP, TLS and MQTT (bounded), runs `body` on the client, and then,
/// whatever `body` returned, closes: DISCONNECT and TLS close_notify, unless
/// the connection is already broken. `body`'s failure wins over the close's.
pub async fn with_client(
    settings: &Settings<'_>,
    body: impl AsyncFnOnce(&mut MqttClient<'_, '_>, &Wire) -> Result<(), Failure>,
) -> Result<(), Failure> {
    let endpoint = settings.endpoint;
    let target = show_target(&endpoint.host, endpoint.port);
    warn_if_insecure(&settings.tls);
    let (socket, received) = Tap::new(open_tcp(&endpoint.host, endpoint.port).await?);
    // Sized to the largest message to send, so that any MQTT message fits.
    let sending = settings.largest_message + 16;
    let mut outbox = vec![0u8; sending.max(MQTT_TX)];
    let mut session: mqtts::Session<'_, IN_FLIGHT> = mqtts::Session::new(&mut outbox);
    let (mut tls_read, mut tls_write) = (vec![0u8; TLS_READ], vec![0u8; TLS_WRITE]);
    let (mut rx, mut tx) = (vec![0u8; MQTT_RX], vec![0u8; sending.max(MQTT_TX)]);
    let buffers = Buffers {
        tls_read: &mut tls_read,
        tls_write: &mut tls_write,
        rx: &mut rx,
        tx: &mut tx,
    };
    let deadline = ReadDeadline::new();
    let timer = TokioTimer::new();
    let mut rng = rand::rngs::OsRng;
    let handshake = tls::connect_with_timer(
        socket,
        &deadline,
        timer,
        buffers.tls_read,
        buffers.tls_write,
        &mut rng,
        &settings.tls,
    );
    let started = Instant::now();
    let stream = match timeout(HANDSHAKE_TIMEOUT, handshake).await {
        Ok(Ok(stream)) => stream,
        Ok(Err(e)) => {
            let why = hints::explain(&e, Phase::Handshake, &received.borrow(), settings);
            return Err(failed(format!("{target}: {why}")));
        }
        Err(_) => {
            return Err(failed(format!(
                "{target}: no answer within {} s during the TLS handshake (is it an \
                 MQTT-over-TLS port?)",
                HANDSHAKE_TIMEOUT.as_secs()
            )));
        }
    };
    let (transport, wire) = Watched::new(stream);
    let left = HANDSHAKE_TIMEOUT.saturating_sub(started.elapsed());
    let connected = timeout(
        left,
        Client::connect(
            transport,
            timer,
            &mut session,
            buffers.rx,
            buffers.tx,
            &settings.mqtt,
        ),
    )
    .await;
    let mut client = match connected {
        Ok(Ok((client, _))) => client,
        Ok(Err(e)) => {
            let why = hints::explain(&e, Phase::Connect, &received.borrow(), settings);
            return Err(failed(format!("{target}: {why}")));
        }
        Err(_) => {
            return Err(failed(format!(
                "{target}: no CONNACK within {} s after the TLS handshake (is it an MQTT \
                 broker?)",
                HANDSHAKE_TIMEOUT.as_secs()
            )));
        }
    };
    let outcome = body(&mut client, &wire).await;
    let closed = close(client, &target).await;
    outcome.and(closed)
}

/// DISCONNECT, then close_notify; nothing to send on a broken connection.
async fn close(client: MqttClient<'_, '_>, target: &str) -> Result<(), Failure> {
    if client.is_broken() {
        return Ok(());
    }
    match timeout(CLOSE_TIMEOUT, client.disconnect()).await {
        Ok(Ok(transport)) => {
            // The broker may close first when it reads DISCONNECT.
            let _ = timeout(CLOSE_TIMEOUT, transport.into_inner().close()).await;
            Ok(())
        }
        Ok(Err(e)) => Err(failed(format!("{target}: disconnecting: {e}"))),
        Err(_) => Err(failed(format!(
            "{target}: disconnecting: no progress within {} s",
            CLOSE_TIMEOUT.as_secs()
        ))),
    }
}
