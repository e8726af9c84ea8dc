//! Measurement mode (issue 17, item 6): the same firmware, chosen by the
//! semihosting word `measure=connect` or `measure=floor`, connects through
//! the same AT modem path as the application and prints one console line
//! per figure instead of running the application:
//!
//! ```text
//! MEASURE - handshake spki instructions=30043224 idle=... stack_poll=9863 stack_total=30544 heap_peak=0
//! ```
//!
//! - `measure=connect`: the TLS handshake with mqtts's verifier as `trust=`
//!   says (SPKI pin, certificate pin, CA) up to CONNACK, then three rounds
//!   of a QoS 0 publish, a QoS 1 publish until PUBACK and an idle
//!   `poll_until` 100 ms ahead with nothing arriving, then DISCONNECT.
//! - `measure=floor`: TEST-ONLY, embedded-tls's handshake with a provider
//!   that has no verifier (it checks nothing about the broker, as the floor
//!   of `benches/handshake.rs`), a raw CONNECT/CONNACK; then one ECDSA P-256
//!   verification alone (the goal is floor + one verification + 10 %).
//!
//! Instructions are read from `minstret` around each phase. QEMU 7.2 under
//! `-icount` answers `minstret` (and `mcycle`) with its virtual clock,
//! which also advances while the core sleeps in WFI (it follows the host's
//! clock then). The phases run on a `block_on` of this file that reads
//! `minstret` before and after each WFI and subtracts the time asleep:
//! `instructions` is what the core executed during the phase (interrupt
//! handlers included), `idle` what it slept. `measure` prints the check
//! (`MEASURE - clock ...`: a 100 ms sleep) that shows the difference.
//!
//! Timer: [`PolledTimer`], embassy-time's clock without its timer queue.
//! The firmware's queue is embassy-executor's (a waker of the executor is
//! required), and this mode runs without the executor, so a sleep is a
//! future that checks the clock whenever it is polled: `block_on` polls
//! after every interrupt, and the timer interrupt comes at least every
//! 500 ms (`emulated::CHECK_EVERY`). Deadlines end up to 500 ms late;
//! none of the measured phases waits for one, except the idle poll,
//! whose figure is the instructions spent, not its length. It saves the
//! few hundred instructions per wait that registering with the queue
//! costs the application.
//!
//! Stack: before each phase the stack below this file's frame is painted
//! again ([`emulated::paint_stack`]); after it, `stack_total` is the
//! deepest use from the stack's top (what a device needs for the phase,
//! the phase's future included, as it lives on this `block_on`'s frame)
//! and `stack_poll` the part below the frame that polls the future (the
//! poll chain alone, as `benches/handshake.rs` measures on the host with
//! boxed futures). The heap's peak is since boot: one connect per boot.

use core::cell::Cell;
use core::future::Future;
use core::pin::{Pin as StdPin, pin};
use core::sync::atomic::{AtomicBool, Ordering};
use core::task::{Context, Poll, RawWaker, RawWakerVTable, Waker};

use embedded_io_async::{Read as _, Write as _};
use embedded_tls::{Aes128GcmSha256, CryptoProvider, TlsConfig, TlsConnection, TlsContext};
use mqtts::client::{Buffers, Client, ConnectOptions};
use mqtts::esp_at::{AtConnector, AtModem, Timeouts, Wifi};
use mqtts::fingerprint::Fingerprint;
use mqtts::mqtt::QoS;
use mqtts::reconnect::Connector as _;
use mqtts::session::Session;
use mqtts::time::{Millis, Timer};
use mqtts::tls::{READ_BUFFER_FOR_FULL_RECORDS, TlsOptions, TlsStream};
use mqtts::trust::{Pin, Trust as Checks};
use mqtts_board_app::emulated::{self, Args, PeakHeap, RamLayout, Trust};
use mqtts_board_app::{BROKER_HOST, Memory};
use rand_core::{CryptoRng, RngCore};

use crate::uart::Uart;
// The application's modem settings.
use crate::{MODEM_BAUD, MODEM_BUFFER};

/// What `measure=` asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// mqtts's connect as `trust=` says, publishes, an idle poll.
    Connect,
    /// TEST-ONLY: embedded-tls without a verifier, and one P-256
    /// verification alone.
    Floor,
}

/// Reads the semihosting command line into `buf`, takes the `measure=`
/// word out of it (blanked, so that the application's parser never sees
/// it) and returns it with the rest of the line.
pub fn split_cmdline(
    buf: &'static mut [u8; 1024],
) -> Result<(Option<Measure>, &'static str), emulated::ArgError<'static>> {
    let len = emulated::read_cmdline(&mut *buf)?.len();
    let mut measure = None;
    let mut start = 0;
    while start < len {
        let end = buf[start..len]
            .iter()
            .position(|b| *b == b' ')
            .map_or(len, |at| start + at);
        if let Some(value) = buf[start..end].strip_prefix(b"measure=") {
            measure = Some(match value {
                b"connect" => Measure::Connect,
                b"floor" => Measure::Floor,
                _ => {
                    return Err(emulated::ArgError::BadValue {
                        word: "measure=",
                        expected: "measure=connect or measure=floor",
                    });
                }
            });
            buf[start..end].fill(b' ');
        }
        start = end + 1;
    }
    let buf: &'static [u8; 1024] = buf;
    let line = core::str::from_utf8(&buf[..len]).map_err(|_| emulated::ArgError::Unreadable)?;
    Ok((measure, line))
}

// ---------------------------------------------------------------------------
// Counting

/// `minstret`, both halves without tearing.
fn instret() -> u64 {
    loop {
        let (high, low, again): (u32, u32, u32);
        // SAFETY: reads of a machine-mode counter.
        unsafe {
            core::arch::asm!(
                "csrr {0}, minstreth",
                "csrr {1}, minstret",
                "csrr {2}, minstreth",
                out(reg) high,
                out(reg) low,
                out(reg) again,
            );
        }
        if high == again {
            return (u64::from(high) << 32) | u64::from(low);
        }
    }
}

/// embassy-time's clock; a sleep checks it at each poll (see the module's
/// documentation).
#[derive(Debug, Clone, Copy)]
pub struct PolledTimer;

impl Timer for PolledTimer {
    fn now(&self) -> Millis {
        embassy_time::Instant::now().as_millis()
    }

    async fn sleep_until(&mut self, deadline: Millis) {
        core::future::poll_fn(|_| {
            if self.now() >= deadline {
                Poll::Ready(())
            } else {
                // No waker kept: `block_on` polls after every interrupt.
                Poll::Pending
            }
        })
        .await
    }
}

/// Set by the waker; cleared before each poll.
static WOKEN: AtomicBool = AtomicBool::new(false);

fn waker() -> Waker {
    fn clone(_: *const ()) -> RawWaker {
        RawWaker::new(core::ptr::null(), &VTABLE)
    }
    fn wake(_: *const ()) {
        WOKEN.store(true, Ordering::Release);
    }
    fn drop(_: *const ()) {}
    static VTABLE: RawWakerVTable = RawWakerVTable::new(clone, wake, wake, drop);
    // SAFETY: the vtable's functions touch nothing but `WOKEN`.
    unsafe { Waker::from_raw(RawWaker::new(core::ptr::null(), &VTABLE)) }
}

/// What one phase cost.
#[derive(Debug, Clone, Copy)]
struct Figures {
    /// Executed: `minstret`'s advance minus the time asleep.
    instructions: u64,
    /// `minstret`'s advance while in WFI (virtual nanoseconds asleep).
    idle: u64,
    /// Deepest stack use from the stack's top.
    stack_total: usize,
    /// Deepest stack use below the frame that polls the phase's future.
    stack_poll: usize,
    /// The heap's peak since boot.
    heap_peak: usize,
}

/// The frame every poll of a phase's future goes through; its address is
/// the top of the poll chain.
#[inline(never)]
fn poll_measured<F: Future>(
    future: StdPin<&mut F>,
    cx: &mut Context<'_>,
    frame: &Cell<usize>,
) -> Poll<F::Output> {
    let marker = 0u8;
    frame.set(core::ptr::addr_of!(marker) as usize);
    future.poll(cx)
}

/// Runs the future `make` builds to its end, sleeping in WFI while it
/// waits, and counts. The future is built in this frame (a future passed
/// by value would be copied through every frame on the way).
#[inline(never)]
fn block_on<F: Future>(make: impl FnOnce() -> F, heap: &PeakHeap) -> (F::Output, Figures) {
    let mut future = pin!(make());
    let waker = waker();
    let mut cx = Context::from_waker(&waker);
    let frame = Cell::new(0);
    let mut idle = 0u64;
    let start = instret();
    let output = loop {
        WOKEN.store(false, Ordering::Release);
        if let Poll::Ready(output) = poll_measured(future.as_mut(), &mut cx, &frame) {
            break output;
        }
        critical_section::with(|_| {
            if !WOKEN.load(Ordering::Acquire) {
                let before = instret();
                // Wakes on a pending interrupt even with MIE off; its
                // handler runs when the critical section ends, counted.
                // SAFETY: waits for an interrupt; touches no memory.
                unsafe { core::arch::asm!("wfi", options(nomem, nostack)) };
                idle += instret() - before;
            }
        });
    };
    let total = instret() - start;
    let stack = emulated::stack_use();
    let top = stack_top();
    let poll_top = frame.get();
    let deepest = top - stack.peak;
    (
        output,
        Figures {
            instructions: total - idle,
            idle,
            stack_total: stack.peak,
            stack_poll: poll_top.saturating_sub(deepest),
            heap_peak: heap.usage().peak,
        },
    )
}

unsafe extern "C" {
    static _stack_bottom: u8;
    static _stack_start: u8;
}

fn stack_top() -> usize {
    // SAFETY: a linker symbol; only its address is used.
    core::ptr::addr_of!(_stack_start) as usize
}

/// Paints the stack below this frame and runs one phase.
#[inline(never)]
fn phase<F: Future>(make: impl FnOnce() -> F, heap: &PeakHeap) -> (F::Output, Figures) {
    emulated::feed_watchdog();
    // SAFETY: the running stack (memory.x); nothing below this frame is in
    // use, and interrupt handlers only use it while they run.
    unsafe {
        emulated::paint_stack(
            core::ptr::addr_of!(_stack_bottom) as usize,
            core::ptr::addr_of!(_stack_start) as usize,
        )
    };
    block_on(make, heap)
}

fn report(what: &str, mode: &str, figures: &Figures, extra: core::fmt::Arguments<'_>) {
    emulated::print_line(
        "MEASURE",
        format_args!(
            "{what} {mode} instructions={} idle={} stack_poll={} stack_total={} heap_peak={}{extra}",
            figures.instructions,
            figures.idle,
            figures.stack_poll,
            figures.stack_total,
            figures.heap_peak
        ),
    );
}

fn fail(what: &str, error: impl core::fmt::Display) -> ! {
    emulated::fatal(format_args!("measure: {what}: {error}"))
}

// ---------------------------------------------------------------------------
// The phases

/// The application's buffer sizes (`mqtts_board_app::Memory`).
const TLS_WRITE: usize = 2048;
const MQTT_RX: usize = 1024;
const MQTT_TX: usize = 512;
const OUTBOX: usize = 2048;
const BUFFERS: usize = READ_BUFFER_FOR_FULL_RECORDS + TLS_WRITE + MQTT_RX + MQTT_TX + OUTBOX;
const _: () = assert!(core::mem::size_of::<Memory>() >= BUFFERS);

/// A reading as the application publishes it.
const TOPIC: &str = "devices/riscv32-virt/telemetry";
const READING: &[u8] = br#"{"count":1,"uptime_s":12,"temp_c":null,"on":false}"#;

/// MQTT CONNECT (§3.1) for client "bench", clean session, keep-alive 60 s:
/// the floor's, as in benches/handshake.rs.
const CONNECT: [u8; 19] = [
    0x10, 17, 0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 60, 0, 5, b'b', b'e', b'n', b'c', b'h',
];

/// An ECDSA P-256 signature over a CertificateVerify-sized message (130
/// bytes of 0x20, as benches/handshake.rs signs), by the key whose scalar
/// is 32 bytes of 0x42 (made with Python's `cryptography`; S is the low one).
const P256_KEY: [u8; 65] = hex(
    b"043ad3861a95621392516bb593ef05583ed2e5866f5cb6260a3017237fd89b90afd0961c7e37075a6791a39c61f56295b02b6d26567b615e60aa41ee1c8e83388d",
);
const P256_SIGNATURE: [u8; 64] = hex(
    b"5548b4b746839834fc39fe3a62ed73c808b46945180815399ed509391fa4ab3949fb0627a433aab3660922ff4790c86c7965fee822c92935d7351c67db0c015b",
);

const fn nibble(c: u8) -> u8 {
    match c {
        b'0'..=b'9' => c - b'0',
        b'a'..=b'f' => c - b'a' + 10,
        _ => panic!("not lower-case hex"),
    }
}

/// `text`, lower-case hex of `N` bytes, as bytes (at compile time).
const fn hex<const N: usize>(text: &[u8]) -> [u8; N] {
    assert!(text.len() == 2 * N, "2 hex digits a byte");
    let mut out = [0; N];
    let mut i = 0;
    while i < N {
        out[i] = nibble(text[2 * i]) << 4 | nibble(text[2 * i + 1]);
        i += 1;
    }
    out
}

/// TEST-ONLY: a provider with neither verifier nor signer, so embedded-tls
/// checks nothing about the broker (the floor of benches/handshake.rs).
struct FloorProvider<'r, R>(&'r mut R);

impl<R: RngCore + CryptoRng> CryptoProvider for FloorProvider<'_, R> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = [u8; 0];

    fn rng(&mut self) -> impl embedded_tls::CryptoRngCore {
        &mut *self.0
    }
}

/// Everything the measurement needs from main.rs.
pub struct Board {
    /// The command line without `measure=`.
    pub args: Args<'static>,
    /// The DER root of `trust=ca:`.
    pub ca_root: Option<&'static [u8]>,
    /// UART0, to the modem.
    pub uart: Uart,
    /// The global allocator, for its peak.
    pub heap: &'static PeakHeap,
    /// Where the RAM goes.
    pub layout: RamLayout,
    /// The application's buffers, used as bytes here.
    pub memory: &'static mut Memory,
}

/// Runs the measurement and ends the emulation (0 when every phase ran).
pub fn run(measure: Measure, board: Board) -> ! {
    let Board {
        args,
        ca_root,
        uart,
        heap,
        layout,
        memory,
    } = board;
    emulated::print_line(
        "MEASURE",
        format_args!(
            "ram firmware total={} static={} heap={} stack={}",
            layout.total, layout.statics, layout.heap, layout.stack
        ),
    );
    // How minstret behaves across a sleep: without the idle correction the
    // 100 ms of WFI would count as 10^8 instructions.
    let (_, figures) = phase(
        || async {
            let now = PolledTimer.now();
            PolledTimer.sleep_until(now + 100).await
        },
        heap,
    );
    emulated::print_line(
        "MEASURE",
        format_args!(
            "clock sleep_100ms instructions={} idle={}",
            figures.instructions, figures.idle
        ),
    );

    // SAFETY: `Memory` is a struct of byte arrays (no padding, any value
    // valid), used only here: the application does not run.
    let bytes: &'static mut [u8] = unsafe {
        core::slice::from_raw_parts_mut(
            core::ptr::from_mut(memory).cast::<u8>(),
            core::mem::size_of::<Memory>(),
        )
    };
    let (tls_read, rest) = bytes.split_at_mut(READ_BUFFER_FOR_FULL_RECORDS);
    let (tls_write, rest) = rest.split_at_mut(TLS_WRITE);
    let (rx, rest) = rest.split_at_mut(MQTT_RX);
    let (tx, rest) = rest.split_at_mut(MQTT_TX);
    let (outbox, _) = rest.split_at_mut(OUTBOX);

    let mut rng = emulated::test_only_rng(args.seed);
    let modem: AtModem<_, _, MODEM_BUFFER> =
        AtModem::new(uart, PolledTimer, Timeouts::default()).with_flow_control(MODEM_BAUD);
    let wifi = Wifi {
        ssid: args.ssid,
        password: args.password,
    };
    let mut connector = AtConnector::new(modem, wifi, BROKER_HOST, args.port);
    let (socket, figures) = phase(|| connector.connect(), heap);
    let socket = socket.unwrap_or_else(|e| fail("opening TCP through the modem", e));
    report("tcp-open", "modem", &figures, format_args!(""));

    match measure {
        Measure::Floor => floor(socket, tls_read, tls_write, &mut rng, heap),
        Measure::Connect => connect(
            args,
            ca_root,
            socket,
            &mut rng,
            heap,
            [tls_read, tls_write, rx, tx, outbox],
        ),
    }
    emulated::print_line("MEASURE", format_args!("done"));
    emulated::exit(0)
}

/// TEST-ONLY: the floor's handshake and CONNECT/CONNACK, then one P-256
/// verification alone.
#[inline(never)]
fn floor<S, R>(socket: S, tls_read: &mut [u8], tls_write: &mut [u8], rng: &mut R, heap: &PeakHeap)
where
    S: embedded_io_async::Read + embedded_io_async::Write,
    R: RngCore + CryptoRng,
{
    let (tls, figures) = phase(
        || async {
            let config = TlsConfig::new()
                .enable_rsa_signatures()
                .with_server_name(BROKER_HOST);
            let mut tls = TlsConnection::new(socket, tls_read, tls_write);
            tls.open(TlsContext::new(&config, FloorProvider(rng)))
                .await
                .unwrap_or_else(|e| fail("floor handshake", format_args!("{e:?}")));
            tls.write_all(&CONNECT)
                .await
                .unwrap_or_else(|e| fail("CONNECT", format_args!("{e:?}")));
            tls.flush()
                .await
                .unwrap_or_else(|e| fail("CONNECT", format_args!("{e:?}")));
            let mut connack = [0u8; 4];
            tls.read_exact(&mut connack)
                .await
                .unwrap_or_else(|e| fail("CONNACK", format_args!("{e:?}")));
            if connack != [0x20, 2, 0, 0] {
                fail("CONNACK", format_args!("{connack:02x?}"));
            }
            tls
        },
        heap,
    );
    report("handshake", "floor", &figures, format_args!(""));
    let _ = phase(|| tls.close(), heap);

    let key = p256::ecdsa::VerifyingKey::from_sec1_bytes(&P256_KEY)
        .unwrap_or_else(|_| fail("P-256 key", "not a point"));
    let signature = p256::ecdsa::Signature::from_slice(&P256_SIGNATURE)
        .unwrap_or_else(|_| fail("P-256 signature", "malformed"));
    let message = [0x20u8; 130];
    let (verified, figures) = phase(
        || async {
            use p256::ecdsa::signature::Verifier as _;
            key.verify(core::hint::black_box(&message), &signature)
                .is_ok()
        },
        heap,
    );
    if !verified {
        fail("P-256 verification", "the signature does not verify");
    }
    report("p256-verify", "alone", &figures, format_args!(""));
}

/// mqtts's connect as `trust=` says, then the session's phases.
#[inline(never)]
fn connect<S, R>(
    args: Args<'static>,
    ca_root: Option<&'static [u8]>,
    socket: S,
    rng: &mut R,
    heap: &PeakHeap,
    [tls_read, tls_write, rx, tx, outbox]: [&mut [u8]; 5],
) where
    S: embedded_io_async::Read + embedded_io_async::Write,
    R: RngCore + CryptoRng,
{
    let pins;
    let roots;
    let (mode, trust) = match args.trust {
        Trust::Spki(hash) => {
            pins = [Pin::PublicKey(hash)];
            ("spki", Checks::pinned(&pins))
        }
        Trust::Certificate(hash) => {
            pins = [Pin::Certificate(Fingerprint::Sha256(hash))];
            ("cert", Checks::pinned(&pins))
        }
        Trust::Ca(_) => {
            roots = [ca_root.unwrap_or_else(|| fail("trust=ca", "no root read"))];
            ("ca", Checks::certificate_authorities(&roots))
        }
        Trust::Flespi => (
            "flespi",
            Checks::certificate_authorities(mqtts::flespi::ROOTS),
        ),
    };
    let clock = emulated::HostClock;
    let tls = TlsOptions::new(BROKER_HOST, trust).with_wall_clock(&clock);
    let mut session: Session<'_, 4> = Session::new(outbox);
    let buffers = Buffers {
        tls_read,
        tls_write,
        rx,
        tx,
    };
    let options = ConnectOptions::new(args.client_id);
    let (connected, figures) = phase(
        || {
            Client::connect_tls(
                socket,
                rng,
                &tls,
                PolledTimer,
                &mut session,
                buffers,
                &options,
            )
        },
        heap,
    );
    let (mut client, _) = connected.unwrap_or_else(|e| fail("connect", e));
    report("handshake", mode, &figures, format_args!(""));

    session_phases(&mut client, mode, heap);
    finish(client, heap);
}

/// QoS 0 and QoS 1 publishes and an idle poll, three rounds. Out of line,
/// so that their temporaries do not add to the handshake's stack.
#[inline(never)]
fn session_phases<'b, S>(
    client: &mut Client<'b, '_, TlsStream<'b, S, PolledTimer>, PolledTimer, 4>,
    mode: &str,
    heap: &PeakHeap,
) where
    S: embedded_io_async::Read + embedded_io_async::Write + 'b,
{
    for round in 1..=3 {
        let (sent, figures) = phase(
            || client.publish(TOPIC, READING, QoS::AtMostOnce, false),
            heap,
        );
        sent.unwrap_or_else(|e| fail("QoS 0 publish", e));
        report(
            "publish-qos0",
            mode,
            &figures,
            format_args!(" round={round}"),
        );

        let (sent, figures) = phase(
            || client.publish(TOPIC, READING, QoS::AtLeastOnce, false),
            heap,
        );
        sent.unwrap_or_else(|e| fail("QoS 1 publish", e));
        report(
            "publish-qos1",
            mode,
            &figures,
            format_args!(" round={round}"),
        );

        let deadline = PolledTimer.now() + 100;
        let (event, figures) = phase(
            || async {
                client
                    .poll_until(deadline)
                    .await
                    .map(|event| event.is_none())
            },
            heap,
        );
        match event {
            Ok(true) => {}
            Ok(false) => fail("idle poll", "an event arrived"),
            Err(e) => fail("idle poll", e),
        }
        report("idle-poll", mode, &figures, format_args!(" round={round}"));
    }
}

/// DISCONNECT and close_notify.
#[inline(never)]
fn finish<'b, S>(
    client: Client<'b, '_, TlsStream<'b, S, PolledTimer>, PolledTimer, 4>,
    heap: &PeakHeap,
) where
    S: embedded_io_async::Read + embedded_io_async::Write + 'b,
{
    let (stream, _) = phase(|| client.disconnect(), heap);
    let stream = stream.unwrap_or_else(|e| fail("DISCONNECT", e));
    let _ = phase(|| stream.close(), heap);
}
