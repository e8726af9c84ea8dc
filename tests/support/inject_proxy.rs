//! A relay that inserts one chosen TLS record into the server-to-client
//! direction of a connection, at a chosen record boundary: what anyone on
//! the network path can do without any key (issue 15).
//!
//! The relay reads the record layer of both directions (5-byte headers,
//! RFC 8446 §5.1) and forwards whole records only, so the inserted record
//! always lies between two of the server's records, never inside one. It
//! runs in front of a real server on loopback ([`InjectProxy`], a TCP
//! listener on 127.0.0.1) or on in-memory pipes ([`spawn_relay`], in front
//! of `support::server`'s rustls server).
//!
//! Where to insert ([`Point`]) is decided by record counts, not by time:
//! before or after the n-th server record (the ServerHello is the first),
//! or as soon as the client has sent its n-th application_data record (its
//! Finished is the first: from then on the handshake is over on the
//! server's side, and the client's later records are its data or MQTT
//! packets, each one a record because both flush per packet). The
//! [`Trace`] says where the record went in and how many records the
//! server's handshake flight took, so a test can check that an injection
//! meant for the handshake did land in it.

use std::collections::VecDeque;
use std::net::Ipv4Addr;
use std::sync::{Arc, Mutex};

use embedded_io_adapters::tokio_1::FromTokio;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::server::{ClientSocket, DUPLEX_BUFFER};

/// TLS record header: content type (1), legacy version (2), length (2).
const RECORD_HEADER: usize = 5;
/// The content type of encrypted records (RFC 8446 §5.1).
pub const APPLICATION_DATA: u8 = 23;

/// Where the record goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Point {
    /// After the server's first `n` records: 0 before its first record (in
    /// place of the ServerHello), 1 right after the ServerHello.
    AfterServerRecords(u64),
    /// As soon as the client has sent `n` application_data records (1: its
    /// Finished), between two server records.
    AfterClientAppData(u64),
}

/// A record to insert and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Injection {
    pub point: Point,
    /// The whole record, header included.
    pub record: Vec<u8>,
}

impl Injection {
    pub fn new(point: Point, record: Vec<u8>) -> Self {
        Injection { point, record }
    }
}

/// Where an injected record went in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Injected {
    /// Server records forwarded before it.
    pub after_server_records: u64,
    /// Whether the client's Finished (its first application_data record)
    /// had gone to the server: the handshake was over on its side.
    pub after_client_finished: bool,
}

/// What the relay saw on one connection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Trace {
    /// (content type, body length) of each server record forwarded, in order.
    pub server_records: Vec<(u8, usize)>,
    /// (content type, body length) of each client record forwarded, in order.
    pub client_records: Vec<(u8, usize)>,
    /// Where the record went in, once it did.
    pub injected: Option<Injected>,
    /// Server records forwarded before the client's Finished (its first
    /// application_data record): the server's handshake flight, once the
    /// client has finished.
    pub flight: Option<u64>,
}

impl Trace {
    /// Application_data records the client has sent.
    pub fn client_app_data(&self) -> u64 {
        count_app_data(&self.client_records)
    }
}

fn count_app_data(records: &[(u8, usize)]) -> u64 {
    records
        .iter()
        .filter(|(content_type, _)| *content_type == APPLICATION_DATA)
        .count() as u64
}

/// A record header followed by `body`, with legacy version 0x0303.
pub fn record(content_type: u8, body: &[u8]) -> Vec<u8> {
    let len = u16::try_from(body.len()).expect("a record body fits in 16 bits");
    let mut out = vec![content_type, 0x03, 0x03];
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Whole records taken from a byte stream.
#[derive(Default)]
struct Records {
    buf: Vec<u8>,
}

impl Records {
    fn push(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete record, header included.
    fn next(&mut self) -> Option<Vec<u8>> {
        let header = self.buf.get(..RECORD_HEADER)?;
        let len = RECORD_HEADER + usize::from(u16::from_be_bytes([header[3], header[4]]));
        (self.buf.len() >= len).then(|| self.buf.drain(..len).collect())
    }
}

/// Relays between `client` and `server` until either side closes, inserting
/// `injection` (if any) and recording what passed in `trace`.
pub async fn relay<C, S>(
    client: C,
    server: S,
    injection: Option<Injection>,
    trace: Arc<Mutex<Trace>>,
) where
    C: AsyncRead + AsyncWrite + Unpin,
    S: AsyncRead + AsyncWrite + Unpin,
{
    let (mut client_read, mut client_write) = tokio::io::split(client);
    let (mut server_read, mut server_write) = tokio::io::split(server);
    let mut pending = injection;
    let (mut up, mut down) = (Records::default(), Records::default());
    let (mut up_buf, mut down_buf) = (vec![0u8; 16 * 1024], vec![0u8; 16 * 1024]);
    loop {
        tokio::select! {
            read = client_read.read(&mut up_buf) => {
                let Ok(n @ 1..) = read else { return };
                up.push(&up_buf[..n]);
                while let Some(record) = up.next() {
                    if server_write.write_all(&record).await.is_err() {
                        return;
                    }
                    {
                        let mut seen = trace.lock().expect("trace lock");
                        if record[0] == APPLICATION_DATA && seen.flight.is_none() {
                            seen.flight = Some(seen.server_records.len() as u64);
                        }
                        seen.client_records
                            .push((record[0], record.len() - RECORD_HEADER));
                    }
                    if let Some(injected) = take_if_due(&mut pending, &trace)
                        && client_write.write_all(&injected).await.is_err()
                    {
                        return;
                    }
                }
            }
            read = server_read.read(&mut down_buf) => {
                let Ok(n @ 1..) = read else { return };
                down.push(&down_buf[..n]);
                while let Some(record) = down.next() {
                    // Before the server's first record (point 0) here,
                    // right after the n-th below.
                    if let Some(injected) = take_if_due(&mut pending, &trace)
                        && client_write.write_all(&injected).await.is_err()
                    {
                        return;
                    }
                    if client_write.write_all(&record).await.is_err() {
                        return;
                    }
                    trace
                        .lock()
                        .expect("trace lock")
                        .server_records
                        .push((record[0], record.len() - RECORD_HEADER));
                    if let Some(injected) = take_if_due(&mut pending, &trace)
                        && client_write.write_all(&injected).await.is_err()
                    {
                        return;
                    }
                }
            }
        }
    }
    // Returning drops both ends: each side sees end of stream.
}

/// The pending record, taken and noted in `trace`, if its point has come
/// (called only between whole records).
fn take_if_due(pending: &mut Option<Injection>, trace: &Mutex<Trace>) -> Option<Vec<u8>> {
    let mut seen = trace.lock().expect("trace lock");
    let due = match pending.as_ref()?.point {
        Point::AfterServerRecords(n) => seen.server_records.len() as u64 == n,
        Point::AfterClientAppData(n) => seen.client_app_data() == n,
    };
    if !due {
        return None;
    }
    seen.injected = Some(Injected {
        after_server_records: seen.server_records.len() as u64,
        after_client_finished: seen.client_app_data() > 0,
    });
    pending.take().map(|injection| injection.record)
}

/// A relay on in-memory pipes in front of `server` (e.g. the client end
/// returned by `support::spawn_server`, unwrapped): returns the client's end
/// and the connection's trace.
pub fn spawn_relay<S>(
    server: S,
    injection: Option<Injection>,
) -> (ClientSocket, Arc<Mutex<Trace>>, JoinHandle<()>)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (client, relay_end) = tokio::io::duplex(DUPLEX_BUFFER);
    let trace = Arc::new(Mutex::new(Trace::default()));
    let handle = tokio::spawn(relay(relay_end, server, injection, Arc::clone(&trace)));
    (FromTokio::new(client), trace, handle)
}

/// A TCP proxy on a free loopback port in front of `127.0.0.1:upstream`:
/// the n-th connection it accepts gets the n-th injection given to
/// [`InjectProxy::start`] (`None`: forwarded unchanged), later ones none.
/// Stops accepting when dropped.
pub struct InjectProxy {
    /// The loopback port clients dial.
    pub port: u16,
    traces: Arc<Mutex<Vec<Arc<Mutex<Trace>>>>>,
    accept: JoinHandle<()>,
}

impl InjectProxy {
    pub async fn start(upstream: u16, injections: Vec<Option<Injection>>) -> InjectProxy {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        let traces = Arc::new(Mutex::new(Vec::new()));
        let accept = tokio::spawn(accept_loop(
            listener,
            upstream,
            VecDeque::from(injections),
            Arc::clone(&traces),
        ));
        InjectProxy {
            port,
            traces,
            accept,
        }
    }

    /// What connection `index` (0-based, in order of acceptance) saw so far.
    pub fn trace(&self, index: usize) -> Trace {
        let traces = self.traces.lock().expect("traces lock");
        let trace = traces
            .get(index)
            .unwrap_or_else(|| panic!("the proxy accepted {} connections", traces.len()));
        trace.lock().expect("trace lock").clone()
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.traces.lock().expect("traces lock").len()
    }
}

impl Drop for InjectProxy {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn accept_loop(
    listener: TcpListener,
    upstream: u16,
    mut injections: VecDeque<Option<Injection>>,
    traces: Arc<Mutex<Vec<Arc<Mutex<Trace>>>>>,
) {
    loop {
        let Ok((client, _)) = listener.accept().await else {
            continue;
        };
        let injection = injections.pop_front().flatten();
        let trace = Arc::new(Mutex::new(Trace::default()));
        traces.lock().expect("traces lock").push(Arc::clone(&trace));
        tokio::spawn(async move {
            let Ok(server) = TcpStream::connect((Ipv4Addr::LOCALHOST, upstream)).await else {
                return;
            };
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            relay(client, server, injection, trace).await;
        });
    }
}
