//! Records inserted on the network path (issue 15, item 1).
//!
//! embedded-tls 0.19 hands every record that is not application_data to
//! its handler unencrypted: after the handshake a plaintext handshake
//! message other than NewSessionTicket reaches `unimplemented!()`, a
//! plaintext close_notify reads as a clean close the server never sent,
//! and during the handshake the server's encrypted flight may come in
//! plaintext. mqtts gates records by phase (RFC 8446 §5) and ends the
//! connection with `TlsFailure::UnexpectedRecord { content_type,
//! after_handshake }` instead; every later read fails the same way, and the
//! device never panics.
//!
//! A relay (`support::inject_proxy`) inserts one plaintext record between
//! two of the server's records:
//! - after the handshake, against a rustls server (in-memory pipes,
//!   `tls::connect` + `read`, `tls::connect_with_timer` + `read_before`)
//!   and against mosquitto (TCP on loopback, `Client::connect_tls`,
//!   `publish`, `poll`): change_cipher_spec, alerts, a plaintext handshake
//!   message of every type 0..=24 and 254 (empty, and with plausible bodies
//!   for the types TLS 1.3 uses), heartbeat, content types 0 and 255;
//! - during the handshake (before the ServerHello, right after it, between
//!   later server records): application_data before the ServerHello, and
//!   plaintext handshake messages, alerts and malformed change_cipher_spec
//!   records after it, all refused; a well-formed change_cipher_spec
//!   (middlebox compatibility) must still be accepted;
//! - through the reconnect supervisor: the connection ends, the device
//!   reconnects and the next publish succeeds.
//!
//! Each table runs all its cases and reports every failing one by name
//! (a panic or a hang in one case does not stop the others). The cases
//! that must be accepted (nothing inserted, change_cipher_spec 0x01 during
//! the handshake) passed before the gate too: they guard against a gate
//! that refuses too much. Both servers here send their own
//! change_cipher_spec right after the ServerHello (rustls and OpenSSL in
//! middlebox compatibility mode), so "right after the ServerHello" is
//! before that one, and the positions later in the flight are taken from
//! a control handshake (`flight`).

// mqtts::Error is large by design (see src/lib.rs).
#![allow(clippy::result_large_err)]

mod support;

use std::future::Future;
use std::net::Ipv4Addr;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use embedded_io_adapters::tokio_1::FromTokio;
use embedded_io_async::{Read, Write};
use mqtts::client::{Client, ConnectOptions, Connected};
use mqtts::error::TlsFailure;
use mqtts::mqtt::QoS;
use mqtts::reconnect::{Backoff, Connector, Supervisor};
use mqtts::time::Timer as _;
use mqtts::tls::{self, MaxFragmentLength, ReadDeadline, TlsOptions, TlsStream};
use mqtts::trust::{Pin, Trust};
use mqtts::{Error, Session};
use rand::rngs::OsRng;
use rustls::ServerConfig;
use support::inject_proxy::{InjectProxy, Injection, Point, Trace, record, spawn_relay};
use support::*;

/// Longest any one step of a case may take (a read, a handshake): a case
/// that hangs fails with the step's name instead of holding the table.
const STEP: Duration = Duration::from_secs(5);

const CHANGE_CIPHER_SPEC: u8 = 20;
const ALERT: u8 = 21;
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;
const HEARTBEAT: u8 = 24;

type TcpSocket = FromTokio<tokio::net::TcpStream>;
type TlsClient<'b, 's, const N: usize> =
    Client<'b, 's, TlsStream<'b, TcpSocket, TokioTimer>, TokioTimer, N>;

// ---------------------------------------------------------------------------
// The records.

/// A handshake message (type, 24-bit length, body) alone in a plaintext record.
fn handshake_record(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let len = u32::try_from(body.len()).expect("a short body");
    let mut message = vec![msg_type];
    message.extend_from_slice(&len.to_be_bytes()[1..]);
    message.extend_from_slice(body);
    record(HANDSHAKE, &message)
}

/// RFC 8446 §4 (and the TLS 1.2 types it reserves).
fn handshake_name(msg_type: u8) -> &'static str {
    match msg_type {
        0 => "hello_request",
        1 => "client_hello",
        2 => "server_hello",
        3 => "hello_verify_request",
        4 => "new_session_ticket",
        5 => "end_of_early_data",
        6 => "hello_retry_request",
        8 => "encrypted_extensions",
        11 => "certificate",
        12 => "server_key_exchange",
        13 => "certificate_request",
        14 => "server_hello_done",
        15 => "certificate_verify",
        16 => "client_key_exchange",
        20 => "finished",
        21 => "certificate_url",
        22 => "certificate_status",
        23 => "supplemental_data",
        24 => "key_update",
        254 => "message_hash",
        _ => "unassigned",
    }
}

/// Extensions: supported_versions (TLS 1.3) for a hello.
const SUPPORTED_VERSIONS_TLS13: [u8; 8] = [0x00, 0x06, 0x00, 0x2B, 0x00, 0x02, 0x03, 0x04];

/// Bodies a server (or client) could really send, for the handshake types
/// TLS 1.3 uses. `leaf` is the server's own certificate (DER).
fn plausible_bodies(leaf: &[u8]) -> Vec<(u8, &'static str, Vec<u8>)> {
    let random = [0x5Au8; 32];
    let mut client_hello = vec![0x03, 0x03];
    client_hello.extend_from_slice(&random);
    // No session id, TLS_AES_128_GCM_SHA256, null compression.
    client_hello.extend_from_slice(&[0x00, 0x00, 0x02, 0x13, 0x01, 0x01, 0x00]);
    client_hello.extend_from_slice(&SUPPORTED_VERSIONS_TLS13);

    let mut server_hello = vec![0x03, 0x03];
    server_hello.extend_from_slice(&random);
    server_hello.extend_from_slice(&[0x00, 0x13, 0x01, 0x00]);
    server_hello.extend_from_slice(&SUPPORTED_VERSIONS_TLS13);

    // Lifetime 7200 s, age_add, nonce 0, a 16-byte ticket, no extensions.
    let mut ticket = vec![
        0x00, 0x00, 0x1C, 0x20, 0x12, 0x34, 0x56, 0x78, 0x01, 0x00, 0x00, 0x10,
    ];
    ticket.extend_from_slice(&[0xAB; 16]);
    ticket.extend_from_slice(&[0x00, 0x00]);

    // Empty context, one entry (the leaf) without extensions.
    let entry_len = u32::try_from(leaf.len()).expect("a short certificate");
    let list_len = entry_len + 3 + 2;
    let mut certificate = vec![0x00];
    certificate.extend_from_slice(&list_len.to_be_bytes()[1..]);
    certificate.extend_from_slice(&entry_len.to_be_bytes()[1..]);
    certificate.extend_from_slice(leaf);
    certificate.extend_from_slice(&[0x00, 0x00]);

    // ecdsa_secp256r1_sha256 and a DER signature of the usual shape.
    let mut certificate_verify = vec![0x04, 0x03, 0x00, 0x46, 0x30, 0x44, 0x02, 0x20];
    certificate_verify.extend_from_slice(&[0x11; 32]);
    certificate_verify.extend_from_slice(&[0x02, 0x20]);
    certificate_verify.extend_from_slice(&[0x22; 32]);

    vec![
        (1, "a ClientHello", client_hello),
        (2, "a ServerHello", server_hello),
        (4, "a ticket", ticket),
        (5, "empty, as it always is", Vec::new()),
        (8, "no extensions", vec![0x00, 0x00]),
        (11, "the server's own leaf", certificate),
        // Empty context, signature_algorithms: ecdsa_secp256r1_sha256.
        (
            13,
            "signature_algorithms",
            vec![
                0x00, 0x00, 0x08, 0x00, 0x0D, 0x00, 0x04, 0x00, 0x02, 0x04, 0x03,
            ],
        ),
        (15, "an ECDSA signature", certificate_verify),
        (20, "32 bytes of verify_data", vec![0x33; 32]),
        (24, "update_not_requested", vec![0x00]),
        (24, "update_requested", vec![0x01]),
    ]
}

/// One record to insert, named for the failure messages.
struct Case {
    name: String,
    record: Vec<u8>,
}

impl Case {
    fn new(name: impl Into<String>, record: Vec<u8>) -> Self {
        Case {
            name: name.into(),
            record,
        }
    }

    /// What mqtts must answer when this record arrives.
    fn refused(&self, after_handshake: bool) -> Error {
        Error::Tls(TlsFailure::UnexpectedRecord {
            content_type: self.record[0],
            after_handshake,
        })
    }
}

/// Every record that must be refused once the handshake is over.
fn after_handshake_cases(leaf: &[u8]) -> Vec<Case> {
    let mut cases = vec![
        Case::new(
            "change_cipher_spec 14 03 03 00 01 01",
            record(CHANGE_CIPHER_SPEC, &[0x01]),
        ),
        Case::new(
            "alert close_notify 15 03 03 00 02 01 00",
            record(ALERT, &[1, 0]),
        ),
        Case::new("fatal alert unexpected_message", record(ALERT, &[2, 10])),
        Case::new("fatal alert bad_record_mac", record(ALERT, &[2, 20])),
    ];
    for msg_type in (0..=24).chain([254]) {
        cases.push(Case::new(
            format!(
                "handshake type {msg_type} ({}), empty body",
                handshake_name(msg_type)
            ),
            handshake_record(msg_type, &[]),
        ));
    }
    for (msg_type, what, body) in plausible_bodies(leaf) {
        cases.push(Case::new(
            format!(
                "handshake type {msg_type} ({}), body: {what}",
                handshake_name(msg_type)
            ),
            handshake_record(msg_type, &body),
        ));
    }
    cases.extend([
        Case::new("handshake record of length 0", record(HANDSHAKE, &[])),
        Case::new(
            "heartbeat request (content type 24)",
            record(HEARTBEAT, &[0x01, 0x00, 0x10, 0x00, 0x00, 0x00, 0x00]),
        ),
        Case::new("content type 0", record(0, &[0x00])),
        Case::new("content type 255", record(255, &[0x00, 0x00])),
    ]);
    cases
}

/// A record inserted during the handshake, and whether mqtts must accept it.
struct HandshakeCase {
    case: Case,
    /// `None`: nothing is inserted (the control case).
    point: Option<Point>,
    accepted: bool,
}

/// The empty EncryptedExtensions of the issue: 16 03 03 00 06 08 00 00 02 00 00.
fn encrypted_extensions() -> Vec<u8> {
    handshake_record(8, &[0x00, 0x00])
}

/// Where record `point` (see [`Point::AfterServerRecords`]) lies in a
/// server flight of `flight` records.
fn place(point: u64, flight: u64) -> String {
    match point {
        0 => "before the ServerHello".to_string(),
        1 => "right after the ServerHello".to_string(),
        p if p + 1 == flight => format!("before the server's last handshake record (after {p})"),
        p => format!("after the server's first {p} records"),
    }
}

/// The during-handshake cases for a server whose flight (ServerHello to
/// Finished) takes `flight` records: rustls sends ServerHello,
/// change_cipher_spec and one record with the rest, OpenSSL one record
/// per message (6 in all).
fn during_handshake_cases(leaf: &[u8], flight: u64) -> Vec<HandshakeCase> {
    assert!(flight >= 3, "a flight of {flight} records");
    let bodies = plausible_bodies(leaf);
    let plausible = |msg_type: u8| {
        let (_, _, body) = bodies
            .iter()
            .find(|(t, _, _)| *t == msg_type)
            .expect("a plausible body of this type");
        handshake_record(msg_type, body)
    };
    let case = |what: &str, point: u64, record: Vec<u8>, accepted: bool| HandshakeCase {
        case: Case::new(format!("{what} {}", place(point, flight)), record),
        point: Some(Point::AfterServerRecords(point)),
        accepted,
    };
    let refused = |what: &str, point: u64, record: Vec<u8>| case(what, point, record, false);
    let accepted = |what: &str, point: u64, record: Vec<u8>| case(what, point, record, true);
    let ccs = || record(CHANGE_CIPHER_SPEC, &[0x01]);
    let last = flight - 1;
    let mut cases = vec![
        HandshakeCase {
            case: Case::new("nothing inserted (control)", Vec::new()),
            point: None,
            accepted: true,
        },
        refused("application_data", 0, record(APPLICATION_DATA, &[0x42; 24])),
        refused("plaintext EncryptedExtensions", 0, encrypted_extensions()),
        refused("plaintext Certificate", 0, plausible(11)),
        refused("heartbeat", 0, record(HEARTBEAT, &[0x01, 0x00, 0x00])),
        refused("content type 255", 0, record(255, &[0x00])),
        refused("plaintext EncryptedExtensions", 1, encrypted_extensions()),
        refused(
            "plaintext Certificate (the server's leaf)",
            1,
            plausible(11),
        ),
        refused("plaintext CertificateRequest", 1, plausible(13)),
        refused("plaintext CertificateVerify", 1, plausible(15)),
        refused("plaintext Finished", 1, plausible(20)),
        refused("plaintext NewSessionTicket", 1, plausible(4)),
        refused("a second plaintext ServerHello", 1, plausible(2)),
        refused("plaintext alert close_notify", 1, record(ALERT, &[1, 0])),
        refused("plaintext fatal alert", 1, record(ALERT, &[2, 10])),
        accepted(
            "change_cipher_spec 0x01 (middlebox compatibility)",
            1,
            ccs(),
        ),
        refused(
            "change_cipher_spec with body 0x02",
            1,
            record(CHANGE_CIPHER_SPEC, &[0x02]),
        ),
        refused(
            "change_cipher_spec of length 2",
            1,
            record(CHANGE_CIPHER_SPEC, &[0x01, 0x01]),
        ),
        refused(
            "change_cipher_spec of length 0",
            1,
            record(CHANGE_CIPHER_SPEC, &[]),
        ),
        refused("heartbeat", 1, record(HEARTBEAT, &[0x01, 0x00, 0x00])),
        refused("content type 0", 1, record(0, &[0x00])),
        refused("plaintext EncryptedExtensions", 2, encrypted_extensions()),
        refused("plaintext fatal alert", 2, record(ALERT, &[2, 40])),
        accepted("change_cipher_spec 0x01", 2, ccs()),
    ];
    // Between two encrypted handshake records, where the server sends
    // more than one.
    if flight > 4 {
        cases.push(refused("plaintext Certificate", 3, plausible(11)));
        cases.push(accepted("change_cipher_spec 0x01", 3, ccs()));
    }
    if last > 2 {
        cases.push(refused(
            "plaintext EncryptedExtensions",
            last,
            encrypted_extensions(),
        ));
        cases.push(accepted("change_cipher_spec 0x01", last, ccs()));
    }
    cases.push(refused("plaintext Finished", last, plausible(20)));
    cases.push(refused(
        "plaintext alert close_notify",
        last,
        record(ALERT, &[1, 0]),
    ));
    cases
}

#[test]
fn the_records_are_the_ones_of_the_issue() {
    assert_eq!(
        encrypted_extensions(),
        [
            0x16, 0x03, 0x03, 0x00, 0x06, 0x08, 0x00, 0x00, 0x02, 0x00, 0x00
        ]
    );
    let cases = after_handshake_cases(&[0x30, 0x00]);
    let bytes = |name: &str| {
        cases
            .iter()
            .find(|case| case.name.starts_with(name))
            .map(|case| case.record.clone())
    };
    assert_eq!(
        bytes("change_cipher_spec"),
        Some(vec![0x14, 0x03, 0x03, 0x00, 0x01, 0x01])
    );
    assert_eq!(
        bytes("alert close_notify"),
        Some(vec![0x15, 0x03, 0x03, 0x00, 0x02, 0x01, 0x00])
    );
    let empty_handshakes = cases
        .iter()
        .filter(|case| case.name.ends_with("empty body"))
        .count();
    assert_eq!(empty_handshakes, 26, "types 0..=24 and 254");
}

// ---------------------------------------------------------------------------
// Running cases: each one isolated, bounded, reported by name.

/// Polls a future, turning a panic into `Err(message)`.
struct CatchUnwind<F>(std::pin::Pin<Box<F>>);

impl<F: Future> Future for CatchUnwind<F> {
    type Output = Result<F::Output, String>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match catch_unwind(AssertUnwindSafe(|| self.0.as_mut().poll(cx))) {
            Ok(Poll::Pending) => Poll::Pending,
            Ok(Poll::Ready(output)) => Poll::Ready(Ok(output)),
            Err(payload) => {
                let message = payload
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| payload.downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(no message)".to_string());
                Poll::Ready(Err(format!("PANICKED: {message}")))
            }
        }
    }
}

/// Runs one case's check; a panic or a hang is its failure.
async fn isolated(check: impl Future<Output = Result<(), String>>) -> Result<(), String> {
    let limit = STEP * 4;
    match tokio::time::timeout(limit, CatchUnwind(Box::pin(check))).await {
        Err(_) => Err(format!("the case did not end within {limit:?}")),
        Ok(Err(panic)) => Err(panic),
        Ok(Ok(result)) => result,
    }
}

/// `fut`, or `Err` naming `what` after [`STEP`].
async fn step<F: Future>(what: &str, fut: F) -> Result<F::Output, String> {
    tokio::time::timeout(STEP, fut)
        .await
        .map_err(|_| format!("{what} did not return within {STEP:?} (hang)"))
}

/// `got` must be exactly `Err(expected)`.
fn expect_error<T: std::fmt::Debug>(
    what: &str,
    got: Result<T, Error>,
    expected: &Error,
) -> Result<(), String> {
    match got {
        Err(e) if e == *expected => Ok(()),
        other => Err(format!("{what}: expected Err({expected:?}), got {other:?}")),
    }
}

/// The record went in, in the phase the case meant.
fn check_inserted(trace: &Trace, after_handshake: bool) -> Result<(), String> {
    match trace.injected {
        None => Err(format!(
            "the relay never inserted the record ({} server records, {} client records)",
            trace.server_records.len(),
            trace.client_records.len()
        )),
        // During the handshake: before the last record of the server's
        // flight (the client read it before its own Finished).
        Some(at)
            if !after_handshake
                && trace
                    .flight
                    .is_some_and(|flight| at.after_server_records >= flight) =>
        {
            Err(format!(
                "the record went in after the server's whole flight ({} records)",
                at.after_server_records
            ))
        }
        Some(at) if at.after_client_finished != after_handshake => Err(format!(
            "the record went in {} the handshake (after {} server records), not {}",
            if at.after_client_finished {
                "after"
            } else {
                "during"
            },
            at.after_server_records,
            if after_handshake { "after" } else { "during" },
        )),
        Some(_) => Ok(()),
    }
}

fn trace_of(trace: &Mutex<Trace>) -> Trace {
    trace.lock().expect("trace lock").clone()
}

/// Collects the failing cases of one table and fails with all of them.
struct Table {
    name: &'static str,
    started: Instant,
    checks: usize,
    failures: Vec<String>,
}

impl Table {
    fn new(name: &'static str) -> Self {
        Table {
            name,
            started: Instant::now(),
            checks: 0,
            failures: Vec::new(),
        }
    }

    async fn check(
        &mut self,
        case: &str,
        flow: &str,
        check: impl Future<Output = Result<(), String>>,
    ) {
        self.checks += 1;
        if let Err(why) = isolated(check).await {
            self.failures.push(format!("{case} [{flow}]: {why}"));
        }
    }

    fn finish(self) {
        eprintln!(
            "{}: {} checks, {} failed, {:.1} s",
            self.name,
            self.checks,
            self.failures.len(),
            self.started.elapsed().as_secs_f64()
        );
        assert!(
            self.failures.is_empty(),
            "{}: {} of {} checks failed:\n  {}",
            self.name,
            self.failures.len(),
            self.checks,
            self.failures.join("\n  ")
        );
    }
}

// ---------------------------------------------------------------------------
// The rustls server (in-memory pipes, echo).

struct RustlsServer {
    config: Arc<ServerConfig>,
    pins: [Pin; 1],
    leaf: Vec<u8>,
}

impl RustlsServer {
    fn new() -> Self {
        let pki = TestPki::new(KeyKind::P256);
        RustlsServer {
            config: server_config(pki.chain(), pki.leaf.private_key_der()),
            pins: [Pin::PublicKey(pki.leaf.spki_sha256())],
            leaf: pki.leaf.der_bytes(),
        }
    }

    /// A new echo server behind a relay inserting `injection`: the
    /// client's side, and the relay's trace.
    fn connection(
        &self,
        injection: Option<Injection>,
    ) -> (RustlsConnection<'_>, Arc<Mutex<Trace>>) {
        let (server_side, server) = spawn_server(Arc::clone(&self.config));
        let (socket, trace, relay) = spawn_relay(server_side.into_inner(), injection);
        let connection = RustlsConnection {
            socket: Some(socket),
            options: TlsOptions::new(SERVER_NAME, Trust::pinned(&self.pins))
                .with_handshake_timeout_ms(5_000),
            read_buffer: vec![0; tls::READ_BUFFER_FOR_FULL_RECORDS],
            write_buffer: vec![0; 2048],
            deadline: ReadDeadline::new(),
            _tasks: Tasks(vec![server.abort_handle(), relay.abort_handle()]),
        };
        (connection, trace)
    }

    /// The records of the server's handshake flight, seen on a connection
    /// left alone.
    async fn flight(&self) -> u64 {
        let (mut connection, trace) = self.connection(None);
        let mut stream = connection
            .connect()
            .await
            .and_then(|connected| connected.map_err(|e| format!("{e:?}")))
            .expect("a handshake through the relay");
        echo(&mut stream, b"control")
            .await
            .expect("an echo through the relay");
        trace_of(&trace)
            .flight
            .expect("the client's Finished went through")
    }
}

/// The client's side of one connection to the echo server.
struct RustlsConnection<'s> {
    socket: Option<ClientSocket>,
    options: TlsOptions<'s>,
    read_buffer: Vec<u8>,
    write_buffer: Vec<u8>,
    deadline: ReadDeadline,
    _tasks: Tasks,
}

impl RustlsConnection<'_> {
    fn socket(&mut self) -> ClientSocket {
        self.socket.take().expect("one handshake per connection")
    }

    /// `tls::connect`, within [`STEP`].
    async fn connect(&mut self) -> Result<Result<TlsStream<'_, ClientSocket>, Error>, String> {
        let socket = self.socket();
        step(
            "tls::connect",
            tls::connect(
                socket,
                &mut self.read_buffer,
                &mut self.write_buffer,
                &mut OsRng,
                &self.options,
            ),
        )
        .await
    }

    /// `tls::connect_with_timer`, within [`STEP`].
    async fn connect_with_timer(
        &mut self,
        timer: TokioTimer,
    ) -> Result<Result<TlsStream<'_, ClientSocket, TokioTimer>, Error>, String> {
        let socket = self.socket();
        step(
            "tls::connect_with_timer",
            tls::connect_with_timer(
                socket,
                &self.deadline,
                timer,
                &mut self.read_buffer,
                &mut self.write_buffer,
                &mut OsRng,
                &self.options,
            ),
        )
        .await
    }
}

/// Aborts the server and relay tasks of a case when it ends.
struct Tasks(Vec<tokio::task::AbortHandle>);

impl Drop for Tasks {
    fn drop(&mut self) {
        for task in &self.0 {
            task.abort();
        }
    }
}

/// Writes and flushes `data`.
async fn send<S: Read + Write, T: mqtts::time::Timer>(
    stream: &mut TlsStream<'_, S, T>,
    data: &[u8],
) -> Result<(), String> {
    step("write", stream.write_all(data))
        .await?
        .map_err(|e| format!("write failed: {e:?}"))?;
    step("flush", stream.flush())
        .await?
        .map_err(|e| format!("flush failed: {e:?}"))
}

/// Sends `data` and reads it back from the echo server.
async fn echo<S: Read + Write, T: mqtts::time::Timer>(
    stream: &mut TlsStream<'_, S, T>,
    data: &[u8],
) -> Result<(), String> {
    send(stream, data).await?;
    let mut back = Vec::new();
    let mut buf = [0u8; 256];
    while back.len() < data.len() {
        let n = step("read of the echo", stream.read(&mut buf))
            .await?
            .map_err(|e| format!("reading the echo failed: {e:?}"))?;
        if n == 0 {
            return Err("the stream ended before the echo".into());
        }
        back.extend_from_slice(&buf[..n]);
    }
    if back != data {
        return Err(format!("the echo was {back:?}, not {data:?}"));
    }
    Ok(())
}

/// `tls::connect`; the record goes in right after the client's Finished;
/// the client sends data and reads: the first read and the next must fail.
async fn rustls_read(server: &RustlsServer, case: &Case) -> Result<(), String> {
    let injection = Injection::new(Point::AfterClientAppData(1), case.record.clone());
    let (mut connection, trace) = server.connection(Some(injection));
    let mut stream = connection
        .connect()
        .await?
        .map_err(|e| format!("the handshake failed: {e:?}"))?;
    // Data the echo server answers after the inserted record: a client
    // that skipped the record would read it.
    send(&mut stream, b"ping").await?;
    let expected = case.refused(true);
    let mut buf = [0u8; 64];
    expect_error(
        "read",
        step("read", stream.read(&mut buf)).await?,
        &expected,
    )?;
    expect_error(
        "second read",
        step("second read", stream.read(&mut buf)).await?,
        &expected,
    )?;
    check_inserted(&trace_of(&trace), true)
}

/// `tls::connect_with_timer`; one echo goes through, then the record goes
/// in between the server's records (after the client's second data record,
/// before its echo): `read_before` and the next reads must fail.
async fn rustls_read_before(server: &RustlsServer, case: &Case) -> Result<(), String> {
    // Finished, "one", "two".
    let injection = Injection::new(Point::AfterClientAppData(3), case.record.clone());
    let (mut connection, trace) = server.connection(Some(injection));
    let timer = TokioTimer::new();
    let mut stream = connection
        .connect_with_timer(timer)
        .await?
        .map_err(|e| format!("the handshake failed: {e:?}"))?;
    echo(&mut stream, b"one").await?;
    send(&mut stream, b"two").await?;
    let expected = case.refused(true);
    let mut buf = [0u8; 64];
    for what in ["read_before", "second read_before"] {
        let stop = timer.now() + STEP.as_millis() as u64;
        expect_error(
            what,
            step(what, stream.read_before(&mut buf, stop)).await?,
            &expected,
        )?;
    }
    expect_error(
        "read after that",
        step("read after that", stream.read(&mut buf)).await?,
        &expected,
    )?;
    check_inserted(&trace_of(&trace), true)
}

/// A handshake with the record inserted: refused by `tls::connect` (or
/// `connect_with_timer`) with the exact error, or accepted with a working
/// stream.
async fn rustls_handshake(
    server: &RustlsServer,
    case: &HandshakeCase,
    with_timer: bool,
) -> Result<(), String> {
    let injection = case
        .point
        .map(|point| Injection::new(point, case.case.record.clone()));
    let (mut connection, trace) = server.connection(injection);
    let outcome = if with_timer {
        match connection.connect_with_timer(TokioTimer::new()).await? {
            Ok(mut stream) => Ok(echo(&mut stream, b"after the handshake").await),
            Err(e) => Err(e),
        }
    } else {
        match connection.connect().await? {
            Ok(mut stream) => Ok(echo(&mut stream, b"after the handshake").await),
            Err(e) => Err(e),
        }
    };
    check_handshake_outcome(case, outcome, &trace_of(&trace))
}

/// `outcome`: `Ok(what the connection did next)` or the handshake's error.
fn check_handshake_outcome(
    case: &HandshakeCase,
    outcome: Result<Result<(), String>, Error>,
    trace: &Trace,
) -> Result<(), String> {
    if case.accepted {
        match outcome {
            Ok(next) => next.map_err(|why| format!("connected, then: {why}"))?,
            Err(e) => return Err(format!("expected the handshake to complete, got {e:?}")),
        }
    } else {
        let expected = case.case.refused(false);
        match outcome {
            Err(e) if e == expected => {}
            Err(e) => return Err(format!("expected Err({expected:?}), got Err({e:?})")),
            Ok(next) => {
                return Err(format!(
                    "expected Err({expected:?}), but the handshake completed (then: {next:?})"
                ));
            }
        }
    }
    match case.point {
        Some(_) => check_inserted(trace, false),
        None if trace.injected.is_some() => Err("the control case inserted a record".into()),
        None => Ok(()),
    }
}

#[tokio::test]
async fn rustls_records_inserted_after_the_handshake_are_refused_on_every_read() {
    let server = RustlsServer::new();
    let mut table = Table::new("rustls, after the handshake");
    for case in after_handshake_cases(&server.leaf) {
        table
            .check(
                &case.name,
                "tls::connect + read",
                rustls_read(&server, &case),
            )
            .await;
        table
            .check(
                &case.name,
                "connect_with_timer + read_before",
                rustls_read_before(&server, &case),
            )
            .await;
    }
    table.finish();
}

#[tokio::test]
async fn rustls_records_inserted_during_the_handshake_are_refused() {
    let server = RustlsServer::new();
    let flight = server.flight().await;
    let mut table = Table::new("rustls, during the handshake");
    for case in during_handshake_cases(&server.leaf, flight) {
        table
            .check(
                &case.case.name,
                "tls::connect",
                rustls_handshake(&server, &case, false),
            )
            .await;
        table
            .check(
                &case.case.name,
                "connect_with_timer",
                rustls_handshake(&server, &case, true),
            )
            .await;
    }
    table.finish();
}

// ---------------------------------------------------------------------------
// mosquitto (TCP on loopback) and the MQTT client.

struct Broker {
    mosquitto: Mosquitto,
    pins: [Pin; 1],
    leaf: Vec<u8>,
}

impl Broker {
    fn start() -> Self {
        let pki = TestPki::new(KeyKind::P256);
        Broker {
            mosquitto: Mosquitto::start(&[&pki.leaf], ""),
            pins: [Pin::PublicKey(pki.leaf.spki_sha256())],
            leaf: pki.leaf.der_bytes(),
        }
    }

    /// The records of the broker's handshake flight, seen on a connection
    /// left alone.
    async fn flight(&self) -> u64 {
        let proxy = self.proxy(None).await;
        let mut outbox = vec![0u8; 1024];
        let mut session: Session<'_, 4> = Session::new(&mut outbox);
        let mut buffers = ClientBuffers::new();
        let options = ConnectOptions::new("inject-control");
        let (client, _) =
            mqtt_connect(proxy.port, &self.pins, &mut session, &mut buffers, &options)
                .await
                .and_then(|connected| connected.map_err(|e| format!("{e:?}")))
                .expect("a connection through the proxy");
        within("disconnect", client.disconnect())
            .await
            .expect("disconnect");
        proxy
            .trace(0)
            .flight
            .expect("the client's Finished went through")
    }

    /// A proxy in front of the broker inserting `injection` in its first
    /// connection.
    async fn proxy(&self, injection: Option<Injection>) -> InjectProxy {
        InjectProxy::start(self.mosquitto.port, vec![injection]).await
    }
}

fn mqtt_tls_options(pins: &[Pin]) -> TlsOptions<'_> {
    TlsOptions::new(SERVER_NAME, Trust::pinned(pins))
        .with_max_fragment_length(MaxFragmentLength::Bytes1024)
        .with_handshake_timeout_ms(5_000)
}

/// Dials a proxy on loopback (for `mqtt_connect` and the supervisor).
struct ProxyConnector {
    port: u16,
}

impl Connector for ProxyConnector {
    type Socket<'a> = TcpSocket;

    async fn connect(&mut self) -> Result<Self::Socket<'_>, Error> {
        let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .await
            .map_err(|e| Error::Io(e.kind().into()))?;
        let _ = tcp.set_nodelay(true);
        Ok(FromTokio::new(tcp))
    }
}

/// `Client::connect_tls` through the proxy on `port`.
async fn mqtt_connect<'b, 's, const N: usize>(
    port: u16,
    pins: &'b [Pin],
    session: &'b mut Session<'s, N>,
    buffers: &'b mut ClientBuffers,
    options: &ConnectOptions<'_>,
) -> Result<Result<(TlsClient<'b, 's, N>, Connected), Error>, String> {
    let socket = step("TCP connect", ProxyConnector { port }.connect())
        .await?
        .map_err(|e| format!("TCP connect to the proxy: {e:?}"))?;
    step(
        "Client::connect_tls",
        Client::connect_tls(
            socket,
            &mut OsRng,
            &mqtt_tls_options(pins),
            TokioTimer::new(),
            session,
            buffers.get(),
            options,
        ),
    )
    .await
}

/// The ways the MQTT client meets a record inserted after the handshake.
#[derive(Debug, Clone, Copy)]
enum MqttFlow {
    /// Right after the client's Finished, before CONNACK: `connect_tls` fails.
    Connect,
    /// After CONNACK and SUBACK, between the client's QoS 1 PUBLISH and
    /// the broker's answers (the PUBLISH back, PUBACK): `publish` fails.
    Publish,
    /// The same place, after a QoS 0 PUBLISH: `poll` fails.
    Poll,
}

impl MqttFlow {
    const ALL: [MqttFlow; 3] = [MqttFlow::Connect, MqttFlow::Publish, MqttFlow::Poll];

    fn name(self) -> &'static str {
        match self {
            MqttFlow::Connect => "Client::connect_tls",
            MqttFlow::Publish => "publish",
            MqttFlow::Poll => "poll",
        }
    }
}

/// One post-handshake case against mosquitto. `id` makes client id and
/// topic unique.
async fn mqtt_after_handshake(
    broker: &Broker,
    case: &Case,
    flow: MqttFlow,
    id: usize,
) -> Result<(), String> {
    // The client's application_data records: Finished, CONNECT, SUBSCRIBE,
    // then its PUBLISH.
    let point = match flow {
        MqttFlow::Connect => Point::AfterClientAppData(1),
        MqttFlow::Publish | MqttFlow::Poll => Point::AfterClientAppData(4),
    };
    let proxy = broker
        .proxy(Some(Injection::new(point, case.record.clone())))
        .await;
    let client_id = format!("inject-{}-{id}", flow.name());
    let topic = format!("inject/{id}");
    let subscriptions = [(topic.as_str(), QoS::AtMostOnce)];
    let options = ConnectOptions::new(&client_id)
        .with_subscriptions(&subscriptions)
        .with_connect_timeout_ms(5_000);
    let mut outbox = vec![0u8; 1024];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let mut buffers = ClientBuffers::new();
    let expected = case.refused(true);
    let connected = mqtt_connect(
        proxy.port,
        &broker.pins,
        &mut session,
        &mut buffers,
        &options,
    )
    .await?;
    if let MqttFlow::Connect = flow {
        expect_error(
            "connect_tls",
            connected.map(|(_, connected)| connected),
            &expected,
        )?;
        return check_inserted(&proxy.trace(0), true);
    }
    let (mut client, _) = connected.map_err(|e| format!("connect failed: {e:?}"))?;
    let got = match flow {
        MqttFlow::Publish => step(
            "publish",
            client.publish(&topic, b"x", QoS::AtLeastOnce, false),
        )
        .await?
        .map(|()| "published".to_string()),
        _ => {
            step(
                "start_publish",
                client.start_publish(&topic, b"x", QoS::AtMostOnce, false),
            )
            .await?
            .map_err(|e| format!("start_publish failed: {e:?}"))?;
            step("flush", client.flush())
                .await?
                .map_err(|e| format!("flush failed: {e:?}"))?;
            step("poll", client.poll())
                .await?
                .map(|event| format!("{event:?}"))
        }
    };
    expect_error(flow.name(), got, &expected)?;
    // The connection is over: the next call fails at once.
    let again = step("poll after the error", client.poll())
        .await?
        .map(|event| format!("{event:?}"));
    if let Ok(event) = again {
        return Err(format!("poll after the error returned {event}"));
    }
    check_inserted(&proxy.trace(0), true)
}

/// One during-handshake case against mosquitto: `connect_tls` refuses with
/// the exact error, or connects and a QoS 1 publish goes through.
async fn mqtt_handshake(broker: &Broker, case: &HandshakeCase, id: usize) -> Result<(), String> {
    let injection = case
        .point
        .map(|point| Injection::new(point, case.case.record.clone()));
    let proxy = broker.proxy(injection).await;
    let client_id = format!("inject-handshake-{id}");
    let options = ConnectOptions::new(&client_id).with_connect_timeout_ms(5_000);
    let mut outbox = vec![0u8; 1024];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let mut buffers = ClientBuffers::new();
    let outcome = match mqtt_connect(
        proxy.port,
        &broker.pins,
        &mut session,
        &mut buffers,
        &options,
    )
    .await?
    {
        Ok((mut client, _)) => Ok(step(
            "publish",
            client.publish("inject/handshake", b"x", QoS::AtLeastOnce, false),
        )
        .await
        .and_then(|published| published.map_err(|e| format!("publish failed: {e:?}")))),
        Err(e) => Err(e),
    };
    check_handshake_outcome(case, outcome, &proxy.trace(0))
}

#[tokio::test]
async fn mosquitto_records_inserted_after_the_handshake_end_the_mqtt_connection() {
    let broker = Broker::start();
    let mut table = Table::new("mosquitto, after the handshake");
    for (index, case) in after_handshake_cases(&broker.leaf).iter().enumerate() {
        for flow in MqttFlow::ALL {
            table
                .check(
                    &case.name,
                    flow.name(),
                    mqtt_after_handshake(&broker, case, flow, index),
                )
                .await;
        }
    }
    table.finish();
}

#[tokio::test]
async fn mosquitto_records_inserted_during_the_handshake_are_refused() {
    let broker = Broker::start();
    let flight = broker.flight().await;
    let mut table = Table::new("mosquitto, during the handshake");
    for (index, case) in during_handshake_cases(&broker.leaf, flight)
        .iter()
        .enumerate()
    {
        table
            .check(
                &case.case.name,
                "Client::connect_tls",
                mqtt_handshake(&broker, case, index),
            )
            .await;
    }
    table.finish();
}

// ---------------------------------------------------------------------------
// The device-level promise: the connection ends, the device does not.

#[tokio::test]
async fn after_an_inserted_record_the_supervisor_reconnects_and_the_next_publish_succeeds() {
    let broker = Broker::start();
    // The first connection gets an empty EncryptedExtensions between
    // CONNACK and PUBACK (client records: Finished, CONNECT, PUBLISH); the
    // second is left alone.
    let record = encrypted_extensions();
    let proxy = InjectProxy::start(
        broker.mosquitto.port,
        vec![
            Some(Injection::new(Point::AfterClientAppData(3), record)),
            None,
        ],
    )
    .await;
    let backoff = Backoff {
        initial_ms: 2,
        max_ms: 20,
    };
    let mut supervisor = Supervisor::new(
        ProxyConnector { port: proxy.port },
        TokioTimer::new(),
        backoff,
    );
    let tls = mqtt_tls_options(&broker.pins);
    let options = ConnectOptions::new("inject-supervised")
        .with_persistent_session()
        .with_connect_timeout_ms(5_000);
    let mut outbox = vec![0u8; 2048];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let mut buffers = ClientBuffers::new();

    let expected = Error::Tls(TlsFailure::UnexpectedRecord {
        content_type: HANDSHAKE,
        after_handshake: true,
    });
    {
        let (mut client, _) = within(
            "first connection",
            supervisor.connect(&mut OsRng, &tls, &mut session, buffers.get(), &options),
        )
        .await
        .unwrap_or_else(|failure| panic!("first connection: {failure}"));
        let published = within(
            "publish on the first connection",
            client.publish("inject/supervised", b"first", QoS::AtLeastOnce, false),
        )
        .await;
        assert_eq!(
            published,
            Err(expected),
            "the inserted record must end the connection with UnexpectedRecord"
        );
    }
    let trace = proxy.trace(0);
    assert!(
        trace.injected.is_some_and(|at| at.after_client_finished),
        "the record went in after the handshake: {trace:?}"
    );
    // The message stayed in the session.
    assert_eq!(session.in_flight(), 1);

    let (mut client, connected) = within(
        "reconnection",
        supervisor.connect(&mut OsRng, &tls, &mut session, buffers.get(), &options),
    )
    .await
    .unwrap_or_else(|failure| panic!("reconnection: {failure}"));
    assert_eq!(proxy.connections(), 2, "the supervisor dialled again");
    assert_eq!(connected.resent, 1, "the interrupted message is sent again");
    within(
        "publish after reconnecting",
        client.publish("inject/supervised", b"second", QoS::AtLeastOnce, false),
    )
    .await
    .expect("the next publish succeeds");
    assert_eq!(proxy.trace(1).injected, None);
    client.disconnect().await.expect("disconnect");
}
