//! Cost of opening a connection (TLS 1.3 handshake + CONNECT/CONNACK) by
//! trust mode, against the floor (embedded-tls with no verifier at all, raw
//! CONNECT/CONNACK bytes), and the RAM a connection needs (issue 6, items 2
//! and 3).
//!
//! The server is rustls 0.23 in memory (tests/support/server.rs) on the
//! same thread. Only the client's work is measured: every poll of the
//! client's future goes through [`measured`], and
//!
//! - without arguments, the time spent inside those polls is summed
//!   (median over iterations, microseconds: noisy, for orientation);
//! - under `valgrind --tool=callgrind --collect-atstart=no
//!   --toggle-collect='*measured*'` only instructions executed inside
//!   `measured` are counted: deterministic instruction counts of the client
//!   alone (the server runs between the client's polls, outside it).
//!   scripts/perf-runtime.sh does this per mode.
//!
//! ```sh
//! cargo bench --bench handshake                      # timing table + RAM report
//! cargo bench --bench handshake -- --mode pin-spki --iterations 5
//! cargo bench --bench handshake -- --ram             # sizes and peak stack only
//! ```
//!
//! Peak stack: the client runs on a thread of its own (1 MiB stack) under a
//! minimal `block_on`, with the server on another thread. Before each phase
//! a deep frame fills 256 KiB below the current stack pointer with a
//! pattern; after the phase the painted region is scanned from its far end
//! for the first byte that changed. The distance from the caller's frame to
//! that byte is the peak stack of the phase (poll chain of the client plus
//! the socket's and `block_on`'s few frames). The futures themselves are
//! boxed, so their state is not counted as stack.

#[path = "../tests/support/mod.rs"]
mod support;

use std::future::Future;
use std::hint::black_box;
use std::pin::Pin as StdPin;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use embedded_io_async::{Read as _, Write as _};
use embedded_tls::{Aes128GcmSha256, CryptoProvider, TlsConfig, TlsConnection, TlsContext};
use mqtts::client::{Buffers, Client, ConnectOptions};
use mqtts::mqtt::QoS;
use mqtts::session::Session;
use mqtts::tls::{MaxFragmentLength, TlsOptions};
use mqtts::trust::{Pin, Trust};
use rand::SeedableRng;
use rand::rngs::StdRng;
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Every poll of client code goes through here (the callgrind toggle).
#[inline(never)]
fn measured<F: Future>(future: StdPin<&mut F>, cx: &mut Context<'_>) -> Poll<F::Output> {
    future.poll(cx)
}

/// A synchronous call measured the same way.
#[inline(never)]
fn measured_call<R>(f: impl FnOnce() -> R) -> R {
    f()
}

thread_local! {
    static INSIDE: std::cell::Cell<Duration> = const { std::cell::Cell::new(Duration::ZERO) };
}

/// Polls `future` through [`measured`], adding the time spent to `INSIDE`.
async fn client_side<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    std::future::poll_fn(|cx| {
        let start = Instant::now();
        let poll = measured(future.as_mut(), cx);
        INSIDE.with(|t| t.set(t.get() + start.elapsed()));
        poll
    })
    .await
}

/// CONNECT for client "bench", clean session, keep-alive 60 s (§3.1),
/// what mqtts sends with `ConnectOptions::new("bench")`.
const CONNECT: [u8; 19] = [
    0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 5, b'b', b'e', b'n', b'c', b'h',
];

/// The server side: CONNACK to CONNECT, PUBACK to QoS 1 PUBLISH, until
/// the client closes.
async fn responder(mut stream: ServerStream) {
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 16 * 1024];
    loop {
        let n = match stream.read(&mut chunk).await {
            Ok(n) => n,
            Err(_) => return,
        };
        if n == 0 {
            return;
        }
        pending.extend_from_slice(&chunk[..n]);
        let mut out = Vec::new();
        for packet in split_frames(&mut pending) {
            match packet.kind() {
                kind::CONNECT => out.extend(connack(false, 0)),
                kind::PUBLISH if packet.flags() & 0b0110 == 0b0010 => {
                    out.extend(puback(PublishPacket::parse(&packet).id.expect("QoS 1 id")));
                }
                _ => {}
            }
        }
        if !out.is_empty()
            && (stream.write_all(&out).await.is_err() || stream.flush().await.is_err())
        {
            return;
        }
    }
}

/// What a run connects with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// embedded-tls, provider without verifier, raw CONNECT/CONNACK.
    Floor,
    PinSha256,
    PinSpki,
    CaChain,
    /// One ECDSA P-256 verification (the server's CertificateVerify).
    P256Verify,
    /// SHA-256 of the leaf certificate (a certificate pin's hash).
    Sha256Leaf,
}

const MODES: [(&str, Mode); 6] = [
    ("floor", Mode::Floor),
    ("pin-sha256", Mode::PinSha256),
    ("pin-spki", Mode::PinSpki),
    ("ca-p256", Mode::CaChain),
    ("p256-verify", Mode::P256Verify),
    ("sha256-leaf", Mode::Sha256Leaf),
];

/// A provider with neither verifier nor signer: embedded-tls then checks
/// nothing (the issue's "floor").
struct FloorProvider<'r>(&'r mut StdRng);

impl CryptoProvider for FloorProvider<'_> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = [u8; 0];

    fn rng(&mut self) -> impl embedded_tls::CryptoRngCore {
        &mut *self.0
    }
}

/// A [`mqtts::time::Timer`] on the std clock whose sleeps never end: the
/// benches finish long before any deadline (30 s handshake, 60 s
/// keep-alive), and it needs no runtime on the client's thread.
#[derive(Debug, Clone, Copy)]
struct StdTimer(Instant);

impl mqtts::time::Timer for StdTimer {
    fn now(&self) -> u64 {
        self.0.elapsed().as_millis() as u64
    }

    async fn sleep_until(&mut self, _deadline: u64) {
        std::future::pending::<()>().await
    }
}

struct Fixture {
    pki: TestPki,
    config: Arc<rustls::ServerConfig>,
    leaf: Vec<u8>,
    root: Vec<u8>,
}

impl Fixture {
    fn new() -> Self {
        let pki = TestPki::new(KeyKind::P256);
        let config = server_config(pki.chain(), pki.leaf.private_key_der());
        let leaf = pki.leaf.der_bytes();
        let root = pki.root.der_bytes();
        Fixture {
            pki,
            config,
            leaf,
            root,
        }
    }
}

fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

/// One connection in `mode` (client side measured), then close.
async fn connect_once(fixture: &Fixture, mode: Mode, rng: &mut StdRng) {
    let (socket, server_end) = socket_pair();
    let config = Arc::clone(&fixture.config);
    let server = tokio::spawn(async move {
        if let Ok(stream) = accept(config, server_end).await {
            responder(stream).await;
        }
    });
    let mut read = vec![0u8; mqtts::tls::READ_BUFFER_FOR_FULL_RECORDS];
    let mut write = vec![0u8; 1024 + 128];
    if mode == Mode::Floor {
        client_side(async {
            let config = TlsConfig::new()
                .enable_rsa_signatures()
                .with_server_name(SERVER_NAME);
            let mut tls = TlsConnection::new(socket, &mut read, &mut write);
            tls.open(TlsContext::new(&config, FloorProvider(rng)))
                .await
                .expect("floor handshake");
            tls.write_all(&CONNECT).await.expect("CONNECT");
            tls.flush().await.expect("flush");
            let mut connack = [0u8; 4];
            tls.read_exact(&mut connack).await.expect("CONNACK");
            assert_eq!(connack, [0x20, 2, 0, 0]);
            let _ = tls.close().await;
        })
        .await;
    } else {
        let pins_sha256 = [Pin::Certificate(mqtts::Fingerprint::Sha256(
            fixture.pki.leaf.cert_sha256(),
        ))];
        let pins_spki = [Pin::PublicKey(fixture.pki.leaf.spki_sha256())];
        let anchors = [fixture.root.as_slice()];
        let trust = match mode {
            Mode::PinSha256 => Trust::pinned(&pins_sha256),
            Mode::PinSpki => Trust::pinned(&pins_spki),
            _ => Trust::certificate_authorities(&anchors),
        };
        let tls = TlsOptions::new(SERVER_NAME, trust).with_unix_time(1_800_000_000);
        let mut outbox = [0u8; 512];
        let mut session: Session<'_, 4> = Session::new(&mut outbox);
        let (mut rx, mut tx) = ([0u8; 512], [0u8; 256]);
        let buffers = Buffers {
            tls_read: &mut read,
            tls_write: &mut write,
            rx: &mut rx,
            tx: &mut tx,
        };
        let options = ConnectOptions::new("bench");
        client_side(async {
            let (client, _) = Client::connect_tls(
                socket,
                rng,
                &tls,
                StdTimer(Instant::now()),
                &mut session,
                buffers,
                &options,
            )
            .await
            .expect("connect");
            let stream = client.into_transport();
            let _ = stream.close().await;
        })
        .await;
    }
    let _ = server.await;
}

fn run_mode(fixture: &Fixture, mode: Mode, iterations: usize) -> Vec<Duration> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let mut rng = StdRng::seed_from_u64(6);
    let mut samples = Vec::new();
    for _ in 0..iterations {
        INSIDE.with(|t| t.set(Duration::ZERO));
        match mode {
            Mode::P256Verify => {
                use p256::ecdsa::signature::{Signer as _, Verifier as _};
                let signing = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("key");
                let verifying = *signing.verifying_key();
                // A CertificateVerify's signed content: 64 spaces, the
                // context string, 0, the transcript hash (RFC 8446 §4.4.3).
                let message = [0x20u8; 130];
                let signature: p256::ecdsa::Signature = signing.sign(&message);
                let start = Instant::now();
                let ok =
                    measured_call(|| verifying.verify(black_box(&message), &signature).is_ok());
                INSIDE.with(|t| t.set(start.elapsed()));
                assert!(ok);
            }
            Mode::Sha256Leaf => {
                use sha2::Digest as _;
                let start = Instant::now();
                let digest = measured_call(|| sha2::Sha256::digest(black_box(&fixture.leaf)));
                INSIDE.with(|t| t.set(start.elapsed()));
                black_box(digest);
            }
            _ => runtime.block_on(connect_once(fixture, mode, &mut rng)),
        }
        samples.push(INSIDE.with(|t| t.get()));
    }
    samples
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

// ---------------------------------------------------------------------------
// RAM: sizes and peak stack.

const PAINT_LEN: usize = 256 * 1024;
const PAINT: u8 = 0xA5;

/// Fills `PAINT_LEN` bytes of stack below the caller with the pattern and
/// returns the lowest painted address.
#[inline(never)]
fn paint() -> usize {
    let mut area = [0u8; PAINT_LEN];
    for byte in area.iter_mut() {
        // SAFETY: a valid, aligned reference; volatile so it is not elided.
        unsafe { std::ptr::write_volatile(byte, PAINT) };
    }
    black_box(&mut area);
    area.as_ptr() as usize
}

/// The lowest address at or above `low` whose byte is no longer the
/// pattern.
#[inline(never)]
fn deepest_touched(low: usize) -> usize {
    let mut at = low;
    // SAFETY: the region [low, low + PAINT_LEN) is this thread's stack,
    // mapped and painted by `paint`; reading it is sound (volatile so the
    // compiler does not reason about "dead" stack).
    while at < low + PAINT_LEN && unsafe { std::ptr::read_volatile(at as *const u8) } == PAINT {
        at += 1;
    }
    at
}

/// Wakes the client thread.
struct ThreadWaker(std::thread::Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs `future` (boxed: its state is not on the stack) to completion on
/// this thread; returns its output and the peak stack its polls used.
#[inline(never)]
fn block_on_measuring<F: Future>(future: F) -> (F::Output, usize) {
    let mut future = Box::pin(future);
    let waker = Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let marker = 0u8;
    let top = black_box(&marker) as *const u8 as usize;
    let low = paint();
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            let deepest = deepest_touched(low);
            return (output, top - deepest);
        }
        std::thread::park_timeout(Duration::from_millis(10));
    }
}

/// The server on a thread of its own (the client's thread has no runtime).
fn server_thread(config: Arc<rustls::ServerConfig>) -> (ClientSocket, std::thread::JoinHandle<()>) {
    let (socket, server_end) = socket_pair();
    let handle = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            if let Ok(stream) = accept(config, server_end).await {
                responder(stream).await;
            }
        });
    });
    (socket, handle)
}

/// Peak stack of one connection (handshake + CONNECT/CONNACK) in `mode`
/// (floor, or mqtts with a trust mode), on a painted 1 MiB thread.
fn connect_stack(fixture: &Fixture, mode: Mode) -> usize {
    let (socket, server) = server_thread(Arc::clone(&fixture.config));
    let trust: Trust<'static> = match mode {
        Mode::PinSha256 => Trust::pinned(Box::leak(Box::new([Pin::Certificate(
            mqtts::Fingerprint::Sha256(fixture.pki.leaf.cert_sha256()),
        )]))),
        Mode::PinSpki => Trust::pinned(Box::leak(Box::new([Pin::PublicKey(
            fixture.pki.leaf.spki_sha256(),
        )]))),
        _ => Trust::certificate_authorities(Box::leak(Box::new([&*fixture.root.clone().leak()]))),
    };
    let stack = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            let rng: &'static mut StdRng = Box::leak(Box::new(StdRng::seed_from_u64(8)));
            let read = leak(mqtts::tls::READ_BUFFER_FOR_FULL_RECORDS);
            let write = leak(1024 + 128);
            if mode == Mode::Floor {
                let config: &'static TlsConfig<'static> = Box::leak(Box::new(
                    TlsConfig::new()
                        .enable_rsa_signatures()
                        .with_server_name(SERVER_NAME),
                ));
                let (_, stack) = block_on_measuring(async move {
                    let mut tls = TlsConnection::new(socket, read, write);
                    tls.open(TlsContext::new(config, FloorProvider(rng)))
                        .await
                        .expect("floor handshake");
                    tls.write_all(&CONNECT).await.expect("CONNECT");
                    tls.flush().await.expect("flush");
                    let mut connack = [0u8; 4];
                    tls.read_exact(&mut connack).await.expect("CONNACK");
                    let _ = tls.close().await;
                });
                stack
            } else {
                let tls: &'static TlsOptions<'static> = Box::leak(Box::new(
                    TlsOptions::new(SERVER_NAME, trust).with_unix_time(1_800_000_000),
                ));
                let session: &'static mut Session<'static, 4> =
                    Box::leak(Box::new(Session::new(leak(512))));
                let buffers = Buffers {
                    tls_read: read,
                    tls_write: write,
                    rx: leak(512),
                    tx: leak(256),
                };
                let options: &'static ConnectOptions<'static> =
                    Box::leak(Box::new(ConnectOptions::new("bench")));
                let (_, stack) = block_on_measuring(async move {
                    let (client, _) = Client::connect_tls(
                        socket,
                        rng,
                        tls,
                        StdTimer(Instant::now()),
                        session,
                        buffers,
                        options,
                    )
                    .await
                    .expect("connect");
                    let _ = client.into_transport().close().await;
                });
                stack
            }
        })
        .expect("client thread")
        .join()
        .expect("client thread");
    server.join().expect("server thread");
    stack
}

/// Peak stack of a synchronous call, on a painted 1 MiB thread.
fn call_stack<F: FnOnce() + Send + 'static>(f: F) -> usize {
    std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            let marker = 0u8;
            let top = black_box(&marker) as *const u8 as usize;
            let low = paint();
            f();
            top - deepest_touched(low)
        })
        .expect("thread")
        .join()
        .expect("thread")
}

/// The pieces of the trust decision alone, to attribute the handshake's
/// stack.
fn piece_stacks(fixture: &Fixture) {
    println!("\n| peak stack of one piece, called alone | bytes |");
    println!("|---|---|");
    let signing = p256::ecdsa::SigningKey::from_slice(&[0x42; 32]).expect("key");
    let verifying = *signing.verifying_key();
    let message = [0x20u8; 130];
    let signature: p256::ecdsa::Signature =
        p256::ecdsa::signature::Signer::sign(&signing, &message);
    let verify = call_stack(move || {
        let ok =
            p256::ecdsa::signature::Verifier::verify(&verifying, black_box(&message), &signature);
        assert!(ok.is_ok());
    });
    println!("| p256 0.13 ECDSA verification | {verify} |");
    let leaf: &'static [u8] = fixture.leaf.clone().leak();
    let root: &'static [u8] = fixture.root.clone().leak();
    let spki = fixture.pki.leaf.spki_sha256();
    let pin = call_stack(move || {
        let pins = [Pin::PublicKey(spki)];
        let result =
            Trust::pinned(&pins).verify_server_certificate(black_box(&[leaf]), SERVER_NAME, None);
        assert!(result.is_ok());
    });
    println!("| `Trust::verify_server_certificate`, SPKI pin | {pin} |");
    let ca = call_stack(move || {
        let anchors = [root];
        let result = Trust::certificate_authorities(&anchors).verify_server_certificate(
            black_box(&[leaf]),
            SERVER_NAME,
            Some(1_800_000_000),
        );
        assert!(result.is_ok());
    });
    println!("| `Trust::verify_server_certificate`, CA (P-256 chain) | {ca} |");
}

/// Sizes of the futures a connect nests (created, never polled): each is
/// built on the stack before being moved into its parent's state.
fn future_sizes(fixture: &Fixture) {
    println!("\n| future (never polled) | bytes |");
    println!("|---|---|");
    let pins = [Pin::PublicKey(fixture.pki.leaf.spki_sha256())];
    let options = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins));
    let (mut read, mut write) = (vec![0u8; 2048], vec![0u8; 2048]);
    let mut rng = StdRng::seed_from_u64(9);
    let (socket, _server_end) = socket_pair();
    let connect = mqtts::tls::connect(socket, &mut read, &mut write, &mut rng, &options);
    println!("| `mqtts::tls::connect` | {} |", size_of_val(&connect));
    drop(connect);
    let (socket, _server_end) = socket_pair();
    let config = TlsConfig::new().with_server_name(SERVER_NAME);
    let mut tls = TlsConnection::new(socket, &mut read, &mut write);
    let open = tls.open(TlsContext::new(&config, FloorProvider(&mut rng)));
    println!(
        "| embedded-tls `TlsConnection::open` (provider without verifier) | {} |",
        size_of_val(&open)
    );
    drop(open);
    let flush = tls.flush();
    println!(
        "| embedded-tls `TlsConnection::flush` | {} |",
        size_of_val(&flush)
    );
    drop(flush);
    let mut byte = [0u8; 1];
    let read_future = tls.read(&mut byte);
    println!(
        "| embedded-tls `TlsConnection::read` | {} |",
        size_of_val(&read_future)
    );
}

fn ram_report(fixture: &Fixture) {
    type Stream = mqtts::tls::TlsStream<'static, ClientSocket, StdTimer>;
    type DeviceClient = Client<'static, 'static, Stream, StdTimer, 4>;
    println!("\n## RAM (x86_64, release; a 32-bit device's pointers are half as large)\n");
    println!("| item | bytes |");
    println!("|---|---|");
    let rows: [(&str, usize); 6] = [
        (
            "Client<TlsStream, N = 4> (owns the TLS stream)",
            size_of::<DeviceClient>(),
        ),
        ("  of which TlsStream", size_of::<Stream>()),
        (
            "  of which embedded-tls TlsConnection",
            size_of::<TlsConnection<'static, ClientSocket, Aes128GcmSha256>>(),
        ),
        ("Session<N = 4>", size_of::<Session<'static, 4>>()),
        (
            "mqtts::Error (the size of every Result the client moves)",
            size_of::<mqtts::Error>(),
        ),
        (
            "ClientSocket (tokio duplex adapter, host only)",
            size_of::<ClientSocket>(),
        ),
    ];
    for (name, size) in rows {
        println!("| {name} | {size} |");
    }

    // The server on its own thread; the client on a painted thread.
    let (socket, server_end) = socket_pair();
    let config = Arc::clone(&fixture.config);
    let server = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async move {
            if let Ok(stream) = accept(config, server_end).await {
                responder(stream).await;
            }
        });
    });
    let pins: &'static [Pin] =
        Box::leak(Box::new([Pin::PublicKey(fixture.pki.leaf.spki_sha256())]));
    let client = std::thread::Builder::new()
        .stack_size(1024 * 1024)
        .spawn(move || {
            let tls: &'static TlsOptions<'static> = Box::leak(Box::new(
                TlsOptions::new(SERVER_NAME, Trust::pinned(pins))
                    .with_max_fragment_length(MaxFragmentLength::Bytes1024),
            ));
            let session: &'static mut Session<'static, 4> =
                Box::leak(Box::new(Session::new(leak(512))));
            let buffers = Buffers {
                tls_read: leak(mqtts::tls::READ_BUFFER_FOR_FULL_RECORDS),
                tls_write: leak(1024 + 128),
                rx: leak(512),
                tx: leak(256),
            };
            let options: &'static ConnectOptions<'static> =
                Box::leak(Box::new(ConnectOptions::new("bench")));
            let rng: &'static mut StdRng = Box::leak(Box::new(StdRng::seed_from_u64(7)));
            let connect = Client::connect_tls(
                socket,
                rng,
                tls,
                StdTimer(Instant::now()),
                session,
                buffers,
                options,
            );
            let connect_future = size_of_val(&connect);
            let (connected, handshake_stack) = block_on_measuring(connect);
            let mut client: Box<DeviceClient> = Box::new(connected.expect("connect").0);
            let publish0 = client.publish("t/perf", &[0x5a; 64], QoS::AtMostOnce, false);
            let publish_future = size_of_val(&publish0);
            let (result, publish0_stack) = block_on_measuring(publish0);
            result.expect("QoS 0");
            let publish1 = client.publish("t/perf", &[0x5a; 64], QoS::AtLeastOnce, false);
            let (result, publish1_stack) = block_on_measuring(publish1);
            result.expect("QoS 1");
            let poll_future = size_of_val(&client.poll());
            let close = async move {
                let stream = client.into_transport();
                let _ = stream.close().await;
            };
            block_on_measuring(close);
            (
                connect_future,
                publish_future,
                poll_future,
                handshake_stack,
                publish0_stack,
                publish1_stack,
            )
        })
        .expect("client thread")
        .join()
        .expect("client thread");
    server.join().expect("server thread");
    let (connect_future, publish_future, poll_future, handshake, publish0, publish1) = client;
    println!("| `Client::connect_tls` future (pin, held until CONNACK) | {connect_future} |");
    println!("| `Client::publish` future | {publish_future} |");
    println!("| `Client::poll` future | {poll_future} |");
    println!("\n| peak stack (pin mode, P-256) | bytes |");
    println!("|---|---|");
    println!("| handshake + CONNECT/CONNACK | {handshake} |");
    println!("| publish QoS 0 | {publish0} |");
    println!("| publish QoS 1 (until PUBACK) | {publish1} |");
    println!("\n| peak stack, connect incl. close (handshake + CONNECT/CONNACK) | bytes |");
    println!("|---|---|");
    for (name, mode) in &MODES[..4] {
        println!("| {name} | {} |", connect_stack(fixture, *mode));
    }
    piece_stacks(fixture);
    future_sizes(fixture);
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let fixture = Fixture::new();
    if args.iter().any(|a| a == "--ram") {
        ram_report(&fixture);
        return;
    }
    let iterations: usize =
        value("--iterations").map_or(21, |n| n.parse().expect("--iterations N"));
    let modes: Vec<(&str, Mode)> = match value("--mode") {
        Some(name) => MODES.iter().copied().filter(|(n, _)| *n == name).collect(),
        None => MODES.to_vec(),
    };
    assert!(
        !modes.is_empty(),
        "--mode: one of {:?}",
        MODES.map(|(n, _)| n)
    );
    println!("| mode | client time per connection (median of {iterations}) |");
    println!("|---|---|");
    for (name, mode) in modes {
        let median = median(run_mode(&fixture, mode, iterations));
        println!("| {name} | {:.0} us |", median.as_secs_f64() * 1e6);
    }
    if value("--mode").is_none() {
        ram_report(&fixture);
    }
}
