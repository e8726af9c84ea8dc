//! Deterministic footprint figures of a connection, asserted (issue 6,
//! items 2, 4 and 5; the timed figures live in `benches/` and
//! docs/PERFORMANCE.md):
//!
//! - no heap allocation on the client's code path for a whole TLS + MQTT
//!   session, counted by a global allocator that only counts while the
//!   client's future is being polled;
//! - the flights from "TCP connected" to CONNACK, from a socket that
//!   records each change of direction;
//! - the bytes and TLS records each publish puts on the wire, against MQTT
//!   bytes + 22 (TLS 1.3 record header 5, content type 1, AES-GCM tag 16);
//! - `size_of` of the long-lived state plus the caller's buffers.
//!
//! The server is rustls 0.23 in memory (tests/support/server.rs) with a
//! small MQTT responder written from the specification.

mod support;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::{Cell, RefCell};
use std::future::{Future, poll_fn};
use std::rc::Rc;

use embedded_io_async::{ErrorType, Read, Write};
use mqtts::client::{Buffers, Client, ConnectOptions, Event};
use mqtts::mqtt::QoS;
use mqtts::session::Session;
use mqtts::time::Timer;
use mqtts::tls::{MaxFragmentLength, TlsOptions, TlsStream};
use mqtts::trust::{Pin, Trust};
use rand::rngs::OsRng;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

// ---------------------------------------------------------------------------
// Counting allocations on the client's code path only.

thread_local! {
    /// Set while this thread runs client code (see [`counted`]).
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    /// Allocations (and reallocations) made while `COUNTING` was set.
    static ALLOCATIONS: Cell<usize> = const { Cell::new(0) };
}

/// The system allocator, counting calls made from client code. The flag is
/// per thread, so tests running in parallel do not see each other, and the
/// server task (polled by tokio between the client's polls) is not counted.
struct CountingAllocator;

/// Set to `true` to print a backtrace of every counted allocation (to find
/// which code made it).
const TRACE: bool = false;

fn note_allocation() {
    // `try_with`: the thread-local may already be gone while a thread exits.
    let _ = COUNTING.try_with(|counting| {
        if counting.get() {
            let _ = ALLOCATIONS.try_with(|n| n.set(n.get() + 1));
            if TRACE {
                counting.set(false);
                eprintln!("{}", std::backtrace::Backtrace::force_capture());
                counting.set(true);
            }
        }
    });
}

// SAFETY: every call is forwarded unchanged to `System`; counting touches
// only `const` thread-locals, which never allocate.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_allocation();
        // SAFETY: same contract as ours.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

fn with_counting<R>(on: bool, f: impl FnOnce() -> R) -> R {
    let before = COUNTING.with(|c| c.replace(on));
    let result = f();
    COUNTING.with(|c| c.set(before));
    result
}

fn allocations() -> usize {
    ALLOCATIONS.with(Cell::get)
}

/// Runs `future` with counting on during each of its polls.
async fn counted<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    poll_fn(|cx| with_counting(true, || future.as_mut().poll(cx))).await
}

/// Runs harness code (the socket, the timer) called by the client with
/// counting off: what they allocate is the test's, not the library's.
async fn uncounted<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    poll_fn(|cx| with_counting(false, || future.as_mut().poll(cx))).await
}

// ---------------------------------------------------------------------------
// A socket that records what crosses it, and a timer, both uncounted.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Direction {
    Sent,
    Received,
}

/// Bytes in the order they crossed the client's socket, consecutive
/// transfers in one direction merged into one flight.
#[derive(Debug, Default)]
struct Wire {
    flights: Vec<(Direction, Vec<u8>)>,
    /// Every byte sent, and every byte received, in order.
    sent: Vec<u8>,
    received: Vec<u8>,
    /// Socket `read` calls that returned data.
    reads: usize,
}

impl Wire {
    fn record(&mut self, direction: Direction, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        match direction {
            Direction::Sent => self.sent.extend_from_slice(bytes),
            Direction::Received => self.received.extend_from_slice(bytes),
        }
        match self.flights.last_mut() {
            Some((last, data)) if *last == direction => data.extend_from_slice(bytes),
            _ => self.flights.push((direction, bytes.to_vec())),
        }
    }

    /// How many bytes went each way so far: (sent, received).
    fn mark(&self) -> (usize, usize) {
        (self.sent.len(), self.received.len())
    }

    /// The bytes sent and received since `mark`.
    fn since(&self, mark: (usize, usize)) -> (Vec<u8>, Vec<u8>) {
        (
            self.sent[mark.0..].to_vec(),
            self.received[mark.1..].to_vec(),
        )
    }
}

/// TLS records in a byte stream (RFC 8446 §5.1): (content type, length of
/// the whole record). Panics on a truncated stream: the tests only look
/// at whole exchanges.
fn records(mut bytes: &[u8]) -> Vec<(u8, usize)> {
    let mut out = Vec::new();
    while !bytes.is_empty() {
        assert!(bytes.len() >= 5, "truncated record header: {bytes:02x?}");
        let len = 5 + usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        assert!(bytes.len() >= len, "truncated record");
        out.push((bytes[0], len));
        bytes = &bytes[len..];
    }
    out
}

struct HarnessSocket {
    inner: ClientSocket,
    wire: Rc<RefCell<Wire>>,
}

impl ErrorType for HarnessSocket {
    type Error = <ClientSocket as ErrorType>::Error;
}

impl Read for HarnessSocket {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        uncounted(async {
            let n = self.inner.read(buf).await?;
            let mut wire = self.wire.borrow_mut();
            if n > 0 {
                wire.reads += 1;
            }
            wire.record(Direction::Received, &buf[..n]);
            Ok(n)
        })
        .await
    }
}

impl Write for HarnessSocket {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        uncounted(async {
            let n = self.inner.write(buf).await?;
            self.wire.borrow_mut().record(Direction::Sent, &buf[..n]);
            Ok(n)
        })
        .await
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        uncounted(self.inner.flush()).await
    }
}

#[derive(Debug, Clone, Copy, Default)]
struct HarnessTimer(TokioTimer);

impl Timer for HarnessTimer {
    fn now(&self) -> u64 {
        with_counting(false, || self.0.now())
    }

    async fn sleep_until(&mut self, deadline: u64) {
        uncounted(self.0.sleep_until(deadline)).await
    }
}

// ---------------------------------------------------------------------------
// The server: rustls + an MQTT responder.

const TOPIC: &str = "t/perf";
const PAYLOAD: [u8; 64] = [0x5a; 64];
/// A QoS 0 PUBLISH of PAYLOAD on TOPIC: header 2, topic 2 + 6, payload 64.
const QOS0_MQTT_BYTES: usize = 2 + 2 + TOPIC.len() + 64;
/// The same at QoS 1: plus the packet identifier.
const QOS1_MQTT_BYTES: usize = QOS0_MQTT_BYTES + 2;
/// TLS 1.3 with AES-128-GCM: header 5, inner content type 1, tag 16.
const RECORD_OVERHEAD: usize = 22;

/// Answers CONNECT, SUBSCRIBE (then sends one QoS 1 message to the
/// client), QoS 1 PUBLISH and PINGREQ, one flushed write per answer, until
/// DISCONNECT. Returns the packet types received, in order.
async fn responder(mut stream: ServerStream) -> Vec<u8> {
    let mut seen = Vec::new();
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let n = match tokio::time::timeout(TIMEOUT, stream.read(&mut chunk)).await {
            Ok(Ok(n)) => n,
            Ok(Err(e)) => panic!("responder read: {e}"),
            Err(_) => panic!("responder timed out"),
        };
        if n == 0 {
            return seen;
        }
        pending.extend_from_slice(&chunk[..n]);
        for packet in split_frames(&mut pending) {
            seen.push(packet.kind());
            let answers: Vec<Vec<u8>> = match packet.kind() {
                kind::CONNECT => vec![connack(false, 0)],
                kind::SUBSCRIBE => {
                    let (id, filters) = parse_subscribe(&packet);
                    let codes: Vec<u8> = filters.iter().map(|(_, qos)| *qos).collect();
                    vec![
                        suback(id, &codes),
                        publish(TOPIC, &PAYLOAD, 1, 7, false, false),
                    ]
                }
                kind::PUBLISH if packet.flags() & 0b0110 == 0b0010 => {
                    let parsed = PublishPacket::parse(&packet);
                    vec![puback(parsed.id.expect("QoS 1 has an identifier"))]
                }
                kind::PINGREQ => vec![pingresp()],
                kind::DISCONNECT => {
                    // Wait for close_notify (read returns 0).
                    vec![]
                }
                _ => vec![],
            };
            for answer in answers {
                stream.write_all(&answer).await.expect("responder write");
                stream.flush().await.expect("responder flush");
            }
        }
    }
}

struct Server {
    wire: Rc<RefCell<Wire>>,
    handle: tokio::task::JoinHandle<Result<Vec<u8>, ServerError>>,
}

/// Starts the server presenting `pki`'s leaf on a pipe of `capacity` bytes
/// each way.
fn start_server(pki: &TestPki, capacity: usize) -> (HarnessSocket, Server) {
    let config = server_config(pki.chain(), pki.leaf.private_key_der());
    let (client_end, server_end) = tokio::io::duplex(capacity);
    let handle = tokio::spawn(async move {
        let stream = accept(config, server_end).await?;
        Ok(responder(stream).await)
    });
    let wire = Rc::new(RefCell::new(Wire::default()));
    let socket = HarnessSocket {
        inner: embedded_io_adapters::tokio_1::FromTokio::new(client_end),
        wire: Rc::clone(&wire),
    };
    (socket, Server { wire, handle })
}

fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

fn new_session() -> &'static mut Session<'static, 8> {
    Box::leak(Box::new(Session::new(leak(2048))))
}

fn buffers() -> Buffers<'static> {
    Buffers {
        tls_read: leak(mqtts::tls::READ_BUFFER_FOR_FULL_RECORDS),
        tls_write: leak(MaxFragmentLength::Bytes1024.plaintext_len() + 128),
        rx: leak(1024),
        tx: leak(256),
    }
}

type TestClient =
    Client<'static, 'static, TlsStream<'static, HarnessSocket, HarnessTimer>, HarnessTimer, 8>;

/// Opens TLS + MQTT over `server`'s socket, counted.
/// The session and buffers are made by the caller, outside the counted
/// code: they are the application's (on a device, statics).
async fn connect(
    socket: HarnessSocket,
    tls: &TlsOptions<'_>,
    options: &ConnectOptions<'_>,
    session: &'static mut Session<'static, 8>,
    buffers: Buffers<'static>,
) -> Result<(TestClient, mqtts::client::Connected), mqtts::Error> {
    Client::connect_tls(
        socket,
        &mut OsRng,
        tls,
        HarnessTimer::default(),
        session,
        buffers,
        options,
    )
    .await
}

fn tls_options<'a>(trust: Trust<'a>) -> TlsOptions<'a> {
    TlsOptions::new(SERVER_NAME, trust).with_unix_time(1_800_000_000)
}

// ---------------------------------------------------------------------------
// Zero heap allocations.

#[tokio::test]
async fn the_counter_sees_allocations_in_client_code_only() {
    let before = allocations();
    let boxed = counted(async { Box::new(42u64) }).await;
    assert_eq!(allocations() - before, 1, "an allocation in counted code");
    let harness = counted(uncounted(async { Box::new(43u64) })).await;
    let outside = Box::new(44u64);
    assert_eq!(
        allocations() - before,
        1,
        "harness and test code are not counted"
    );
    assert_eq!(*boxed + *harness + *outside, 129);
}

/// Runs a whole session and returns the allocations the client made: TLS
/// handshake, CONNECT with a subscription, QoS 0 and QoS 1 publishes, one
/// incoming QoS 1 message (delivered, then acknowledged), DISCONNECT and
/// close_notify.
async fn session_allocations(pki: &TestPki, trust: Trust<'_>) -> usize {
    let (socket, server) = start_server(pki, DUPLEX_BUFFER);
    let tls = tls_options(trust);
    let subscriptions = [("cmd/#", QoS::AtLeastOnce)];
    let options = ConnectOptions::new("footprint").with_subscriptions(&subscriptions);
    let (session, buffers) = (new_session(), buffers());
    let before = allocations();
    let outcome = counted(async {
        let (mut client, connected) = connect(socket, &tls, &options, session, buffers).await?;
        let subscribed = connected.granted.is_some();
        client
            .publish(TOPIC, &PAYLOAD, QoS::AtMostOnce, false)
            .await?;
        client
            .publish(TOPIC, &PAYLOAD, QoS::AtLeastOnce, false)
            .await?;
        let received = match client.poll().await? {
            Event::Message(message) => message.payload == PAYLOAD && message.topic == TOPIC,
            _ => false,
        };
        // Acknowledges the message, then sends DISCONNECT.
        let stream = client.disconnect().await?;
        let (_, closed) = stream.close().await;
        closed?;
        Ok::<bool, mqtts::Error>(subscribed && received)
    })
    .await;
    let made = allocations() - before;
    assert_eq!(outcome, Ok(true), "subscribed and received the message");
    let seen = join_server(server.handle).await.expect("server");
    assert_eq!(
        seen,
        [
            kind::CONNECT,
            kind::SUBSCRIBE,
            kind::PUBLISH,
            kind::PUBLISH,
            kind::PUBACK,
            kind::DISCONNECT
        ]
    );
    made
}

#[tokio::test]
async fn a_session_with_a_public_key_pin_makes_no_heap_allocation() {
    let pki = TestPki::new(KeyKind::P256);
    let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
    assert_eq!(session_allocations(&pki, Trust::pinned(&pins)).await, 0);
}

#[tokio::test]
async fn a_session_with_ca_validation_makes_no_heap_allocation() {
    let pki = TestPki::new(KeyKind::P256);
    let root = pki.root.der_bytes();
    let anchors = [root.as_slice()];
    assert_eq!(
        session_allocations(&pki, Trust::certificate_authorities(&anchors)).await,
        0
    );
}

// ---------------------------------------------------------------------------
// Flights and bytes on the wire.

/// Connects with a public-key pin and no subscription; returns the client
/// and the wire as it was when CONNACK had arrived.
async fn connected(pki: &TestPki, capacity: usize) -> (TestClient, Server) {
    let pins = Box::leak(Box::new([Pin::PublicKey(pki.leaf.spki_sha256())]));
    let (socket, server) = start_server(pki, capacity);
    let tls = tls_options(Trust::pinned(&pins[..]));
    let options = ConnectOptions::new("footprint");
    let connecting = connect(socket, &tls, &options, new_session(), buffers());
    let (client, _) = within("connect", connecting).await.expect("connect");
    (client, server)
}

#[tokio::test]
async fn connect_leaves_with_the_tls_finished_two_round_trips_to_connack() {
    let pki = TestPki::new(KeyKind::P256);
    let (client, server) = connected(&pki, DUPLEX_BUFFER).await;
    let wire = server.wire.borrow();
    let directions: Vec<Direction> = wire.flights.iter().map(|(d, _)| *d).collect();
    // ClientHello | ServerHello..Finished | Finished + CONNECT | (tickets +) CONNACK
    assert_eq!(
        directions,
        [
            Direction::Sent,
            Direction::Received,
            Direction::Sent,
            Direction::Received
        ],
        "flights from TCP connected to CONNACK"
    );
    let third = records(&wire.flights[2].1);
    // Both encrypted (application_data outer type): the client's Finished,
    // then the CONNECT record.
    assert_eq!(
        third.len(),
        2,
        "Finished and CONNECT in one flight: {third:?}"
    );
    assert!(third.iter().all(|(kind, _)| *kind == 23));
    drop(wire);
    drop(client);
}

#[tokio::test]
async fn a_publish_costs_its_mqtt_bytes_plus_one_record() {
    let pki = TestPki::new(KeyKind::P256);
    let (mut client, server) = connected(&pki, DUPLEX_BUFFER).await;
    let mark = server.wire.borrow().mark();
    client
        .publish(TOPIC, &PAYLOAD, QoS::AtMostOnce, false)
        .await
        .expect("QoS 0");
    let (sent, _) = server.wire.borrow().since(mark);
    assert_eq!(records(&sent), [(23, QOS0_MQTT_BYTES + RECORD_OVERHEAD)]);
    assert_eq!(sent.len(), 96, "64-byte payload at QoS 0");

    let mark = server.wire.borrow().mark();
    client
        .publish(TOPIC, &PAYLOAD, QoS::AtLeastOnce, false)
        .await
        .expect("QoS 1");
    let (sent, received) = server.wire.borrow().since(mark);
    assert_eq!(records(&sent), [(23, QOS1_MQTT_BYTES + RECORD_OVERHEAD)]);
    // PUBACK: 4 bytes of MQTT in one record.
    assert_eq!(records(&received), [(23, 4 + RECORD_OVERHEAD)]);
    assert_eq!(sent.len() + received.len(), 98 + 26);
}

/// How many socket reads the client makes per incoming record (each read
/// is a system call on a device's network stack). Measured: 2 (header,
/// then body), i.e. the minimum without reading ahead.
#[tokio::test]
async fn an_incoming_record_takes_two_socket_reads() {
    let pki = TestPki::new(KeyKind::P256);
    let (mut client, server) = connected(&pki, DUPLEX_BUFFER).await;
    let before = server.wire.borrow().reads;
    for _ in 0..10 {
        client
            .publish(TOPIC, &PAYLOAD, QoS::AtLeastOnce, false)
            .await
            .expect("QoS 1");
    }
    assert_eq!(server.wire.borrow().reads - before, 2 * 10);
}

/// Messages queued with `start_publish` leave together at the next flush:
/// 20 QoS 0 messages of 74 bytes (1,480 bytes of MQTT) in the records the
/// 1,152-byte write buffer allows: its last 2 bytes hold the record gate's
/// state, and embedded-tls puts up to (the rest - 133) bytes of data in a
/// record, here 1,017.
#[tokio::test]
async fn queued_messages_share_records() {
    const MESSAGES: usize = 20;
    let pki = TestPki::new(KeyKind::P256);
    let (mut client, server) = connected(&pki, DUPLEX_BUFFER).await;
    let mark = server.wire.borrow().mark();
    for _ in 0..MESSAGES {
        client
            .start_publish(TOPIC, &PAYLOAD, QoS::AtMostOnce, false)
            .await
            .expect("queue");
    }
    client.flush().await.expect("flush");
    let (sent, _) = server.wire.borrow().since(mark);
    let mqtt = MESSAGES * QOS0_MQTT_BYTES;
    let per_record = 1024 + 128 - 2 - 133;
    assert_eq!(
        records(&sent),
        [
            (23, per_record + RECORD_OVERHEAD),
            (23, mqtt - per_record + RECORD_OVERHEAD)
        ]
    );
}

/// Goal (issue 6, item 5): when the application publishes faster than the
/// link carries, messages leave together, several per TLS record. The link
/// here is a pipe that holds 512 bytes: the client's writes wait while the
/// server has not read. `start_publish` is the call for that: it queues,
/// and the queue leaves when the record is full or at the next wait
/// (`publish` instead promises the message is sent when it returns, so it
/// flushes: one record each, see `a_publish_costs_its_mqtt_bytes_plus_one_record`).
#[tokio::test]
async fn messages_published_faster_than_the_link_share_records() {
    const MESSAGES: usize = 100;
    let pki = TestPki::new(KeyKind::P256);
    let (mut client, server) = connected(&pki, 512).await;
    let mark = server.wire.borrow().mark();
    for _ in 0..MESSAGES {
        within(
            "start_publish",
            client.start_publish(TOPIC, &PAYLOAD, QoS::AtMostOnce, false),
        )
        .await
        .expect("QoS 0");
    }
    let stream = client.disconnect().await.expect("disconnect");
    let _ = stream.close().await;
    let (mut sent, _) = server.wire.borrow().since(mark);
    // Leave out DISCONNECT and close_notify.
    let all = records(&sent);
    let tail: usize = all[all.len() - 2..].iter().map(|(_, len)| len).sum();
    sent.truncate(sent.len() - tail);
    let count = records(&sent).len();
    assert!(
        count * 4 <= MESSAGES,
        "{count} records for {MESSAGES} messages: at least 4 messages per record expected"
    );
}

// ---------------------------------------------------------------------------
// RAM per connection: state and buffers.

/// A socket and a timer of size 0, standing for a device's (an
/// embassy-net socket is a pointer-sized handle; its buffers are the
/// network stack's, counted there).
struct NullSocket;

impl ErrorType for NullSocket {
    type Error = embedded_io::ErrorKind;
}

impl Read for NullSocket {
    async fn read(&mut self, _: &mut [u8]) -> Result<usize, Self::Error> {
        Ok(0)
    }
}

impl Write for NullSocket {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct NullTimer;

impl Timer for NullTimer {
    fn now(&self) -> u64 {
        0
    }

    async fn sleep_until(&mut self, _: u64) {}
}

/// In-flight limit and outbox of the reference configuration: four QoS 1
/// messages of 64 bytes on a short topic (78 bytes each) fit in 512.
const REFERENCE_N: usize = 4;
const REFERENCE_OUTBOX: usize = 512;
/// Receive and transmit buffers of the reference configuration: incoming
/// commands up to 512 bytes, QoS 0 telemetry up to 256.
const REFERENCE_RX: usize = 512;
const REFERENCE_TX: usize = 256;

type DeviceClient =
    Client<'static, 'static, TlsStream<'static, NullSocket, NullTimer>, NullTimer, REFERENCE_N>;

/// Everything a connection keeps besides the TLS read buffer: the client
/// (which owns the TLS stream and its key schedule), the session, the
/// write buffer and the MQTT buffers. On this 64-bit host; a 32-bit
/// device's pointers and `usize` fields are half as large.
fn state_and_buffers_except_read(tls_write: usize) -> usize {
    size_of::<DeviceClient>()
        + size_of::<Session<'static, REFERENCE_N>>()
        + tls_write
        + REFERENCE_RX
        + REFERENCE_TX
        + REFERENCE_OUTBOX
}

/// Every `Result` the client moves between its steps is as large as
/// `Error`: at 352 bytes (a whole 253-byte DNS name kept in
/// `CertificateError::NameMismatch`) each was a `memcpy`, about 550
/// instructions of a pipelined QoS 1 message on x86_64. The largest variants
/// now are the certificate errors with the presented fingerprints (85
/// bytes) and a name or filter of at most 64 bytes.
#[test]
fn an_error_stays_small() {
    let size = size_of::<mqtts::Error>();
    println!("size_of::<mqtts::Error>() = {size}");
    assert!(size <= 168, "mqtts::Error grew to {size} bytes");
}

/// Goal (issue 6, item 2): with max_fragment_length 1024, at most 6 KB of
/// buffers and state per connection.
#[test]
fn a_connection_with_1024_byte_records_fits_6_kb() {
    let read = MaxFragmentLength::Bytes1024.read_buffer_len();
    let write = MaxFragmentLength::Bytes1024.plaintext_len() + 128;
    let total = read + state_and_buffers_except_read(write);
    assert!(
        total <= 6 * 1024,
        "{total} bytes: client {} + session {} + TLS read {read} + TLS write {write} \
         + rx {REFERENCE_RX} + tx {REFERENCE_TX} + outbox {REFERENCE_OUTBOX}",
        size_of::<DeviceClient>(),
        size_of::<Session<'static, REFERENCE_N>>(),
    );
}

/// Goal (issue 6, item 2): with full 16 KB records, the read buffer plus at
/// most 4 KB. Our records can stay small (the write buffer sets their
/// size), so the write buffer is the same as above.
#[test]
#[ignore = "met on the 32-bit devices the goal is about (4,088 B on riscv32imc, asserted at compile time by perf/size); 64-bit pointers make it 4,304 B here (docs/PERFORMANCE.md, RAM per connection)"]
fn a_connection_with_full_records_is_the_read_buffer_plus_4_kb() {
    let write = MaxFragmentLength::Bytes1024.plaintext_len() + 128;
    let rest = state_and_buffers_except_read(write);
    assert!(
        rest <= 4 * 1024,
        "{rest} bytes besides the {} byte read buffer",
        mqtts::tls::READ_BUFFER_FOR_FULL_RECORDS
    );
}
