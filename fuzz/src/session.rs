//! Target (b): the whole client session after the (TLS) handshake: a
//! [`Client`] over an in-memory transport that serves arbitrary broker
//! bytes, driven by an arbitrary sequence of calls.
//!
//! Input layout: two bytes (little endian) give the length of the script,
//! which `arbitrary` reads as a [`Scenario`]; every byte after it is what
//! the broker sends, over all connections of the scenario. Captured broker
//! streams are therefore seeds as they are.
//!
//! Checked, beyond "no panic":
//! - every call returns within a bounded number of reads: each read
//!   either takes at least one byte or passes a deadline, and at most three
//!   deadlines pass in one call (PINGREQ, then the keep-alive timeout);
//! - after the input is used up, `poll` fails within a bounded number of
//!   calls (no endless stream of events from a finite input);
//! - the futures never stay pending (the mock is always ready);
//! - errors are the ones a broker or the caller can cause (never a TLS or
//!   trust error), a connection-ending error marks the client broken and the next call is `Disconnected`;
//! - every write is one whole, well-formed MQTT 3.1.1 client packet;
//! - the client never waits for the broker with packets queued and not
//!   flushed (it may first take what has arrived), and `has_unsent` says
//!   whether some are;
//! - a delivered QoS 1/2 message is acknowledged by the client's next
//!   packet;
//! - `Published`, `Subscribed`, `Unsubscribed` name only identifiers the
//!   client issued and not yet reported; `start_publish` never hands out an
//!   identifier still waiting to be reported;
//! - on reconnect, `Connected::resent` / `discarded` count exactly the
//!   session's messages in flight.

use arbitrary::{Arbitrary, Unstructured};
use mqtts::Session;
use mqtts::client::{BrokerLimits, Client, ConnectOptions, Event, Will};
use mqtts::error::Error;
use mqtts::mqtt::frame::FixedHeader;
use mqtts::mqtt::{PacketId, QoS, topic};
use mqtts::time::{Millis, Timer};
use mqtts::transport::Transport;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::pin::pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};

/// In-flight limit of the session (small, so "full" is reachable).
pub const N: usize = 3;
/// Keep-alive intervals in seconds.
pub const KEEP_ALIVES: [u16; 5] = [0, 1, 5, 60, u16::MAX];
/// Receive buffer sizes (16 is the smallest the client accepts).
pub const RX_SIZES: [usize; 7] = [16, 17, 24, 40, 64, 256, 1024];
/// Session outbox sizes.
pub const OUTBOX_SIZES: [usize; 4] = [0, 24, 256, 2048];
/// Milliseconds that pass with each read that returns data.
pub const TICKS: [Millis; 4] = [0, 1, 700, 60_000];
/// Topics published to (some invalid, one reserved by the limits).
pub const TOPICS: [&str; 8] = [
    "a",
    "a/b",
    "sensors/1/temperature",
    "$SYS/x",
    "flespi/x",
    "bad/+",
    "",
    "t\0",
];
/// Filters subscribed to, chosen by bit mask (some invalid).
pub const FILTERS: [&str; 8] = [
    "a/#",
    "+/b",
    "#",
    "a",
    "bad#",
    "sensors/+/temperature",
    "",
    "x/y",
];
/// Subscriptions of `ConnectOptions`, chosen by bit mask.
pub const CONNECT_SUBSCRIPTIONS: [(&str, QoS); 2] =
    [("a/#", QoS::AtLeastOnce), ("x", QoS::ExactlyOnce)];
/// Transmit buffer size: QoS 0 messages larger than this are refused.
pub const TX_SIZE: usize = 256;

/// How the connections are set up.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq, Default)]
pub struct Setup {
    /// Empty client identifier (refused with a persistent session).
    pub client_id_empty: bool,
    /// Index into [`KEEP_ALIVES`].
    pub keep_alive: u8,
    /// Clean session (true) or persistent.
    pub clean_session: bool,
    /// Send a Last Will.
    pub will: bool,
    /// Bit mask over [`CONNECT_SUBSCRIPTIONS`].
    pub subscriptions: u8,
    /// Limit QoS to 1 and reserve `flespi/`.
    pub limits: bool,
    /// Serve a CONNACK (accepted) before the input's bytes at each connect,
    /// so the scenario starts after the handshake.
    pub auto_connack: bool,
    /// The automatic CONNACK's session-present flag.
    pub session_present: bool,
    /// Index into [`RX_SIZES`].
    pub rx: u8,
    /// Index into [`OUTBOX_SIZES`].
    pub outbox: u8,
    /// Most bytes one read returns (0: as many as fit).
    pub chunk: u8,
    /// Index into [`TICKS`].
    pub tick: u8,
    /// When the input is used up the broker closes (true) or goes silent.
    pub eof_closes: bool,
}

/// One call on the client.
#[derive(Arbitrary, Debug, Clone, PartialEq, Eq)]
pub enum Op {
    /// `poll()`.
    Poll,
    /// `publish()`: waits for the acknowledgement.
    Publish {
        /// Index into [`TOPICS`].
        topic: u8,
        /// Payload length (times 3).
        len: u8,
        /// QoS (modulo 3).
        qos: u8,
        /// RETAIN.
        retain: bool,
    },
    /// `start_publish()`.
    StartPublish {
        /// Index into [`TOPICS`].
        topic: u8,
        /// Payload length (times 3).
        len: u8,
        /// QoS (modulo 3).
        qos: u8,
        /// RETAIN.
        retain: bool,
    },
    /// `subscribe()`.
    Subscribe {
        /// Bit mask over [`FILTERS`] (none: an empty list).
        filters: u8,
        /// QoS of each filter (modulo 3).
        qos: u8,
    },
    /// `unsubscribe()`.
    Unsubscribe {
        /// Bit mask over [`FILTERS`].
        filters: u8,
    },
    /// The transport's next write fails.
    FailNextWrite,
    /// Drop the client and connect again with the same session.
    Reconnect,
    /// `disconnect()`, then connect again.
    Disconnect,
    /// `flush()`: sends what `start_publish` queued.
    Flush,
}

/// What the script says.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Scenario {
    /// How to connect.
    pub setup: Setup,
    /// The calls, in order (at most [`MAX_OPS`]).
    pub ops: Vec<Op>,
}

/// The most calls one input makes.
pub const MAX_OPS: usize = 64;

impl Scenario {
    /// Reads a scenario as the target does.
    pub fn read(script: &[u8]) -> Self {
        let mut u = Unstructured::new(script);
        let setup = Setup::arbitrary(&mut u).unwrap_or_default();
        let mut ops = Vec::new();
        if let Ok(iter) = u.arbitrary_iter::<Op>() {
            for op in iter.take(MAX_OPS) {
                match op {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
        }
        Self { setup, ops }
    }

    /// The bytes [`Scenario::read`] reads back as this scenario (for seeds),
    /// following `arbitrary` 1.x: integers little endian, `bool` the low bit
    /// of a byte, an enum variant a `u32` scaled to the variant count, an
    /// iterator element preceded by a "more" byte.
    pub fn to_bytes(&self) -> Vec<u8> {
        let s = &self.setup;
        let mut out = vec![
            u8::from(s.client_id_empty),
            s.keep_alive,
            u8::from(s.clean_session),
            u8::from(s.will),
            s.subscriptions,
            u8::from(s.limits),
            u8::from(s.auto_connack),
            u8::from(s.session_present),
            s.rx,
            s.outbox,
            s.chunk,
            s.tick,
            u8::from(s.eof_closes),
        ];
        let variant = |out: &mut Vec<u8>, index: u64| {
            const COUNT: u64 = 9;
            let value = (index << 32).div_ceil(COUNT);
            out.extend_from_slice(&(value as u32).to_le_bytes());
        };
        for op in &self.ops {
            out.push(1);
            match *op {
                Op::Poll => variant(&mut out, 0),
                Op::Publish {
                    topic,
                    len,
                    qos,
                    retain,
                } => {
                    variant(&mut out, 1);
                    out.extend_from_slice(&[topic, len, qos, u8::from(retain)]);
                }
                Op::StartPublish {
                    topic,
                    len,
                    qos,
                    retain,
                } => {
                    variant(&mut out, 2);
                    out.extend_from_slice(&[topic, len, qos, u8::from(retain)]);
                }
                Op::Subscribe { filters, qos } => {
                    variant(&mut out, 3);
                    out.extend_from_slice(&[filters, qos]);
                }
                Op::Unsubscribe { filters } => {
                    variant(&mut out, 4);
                    out.push(filters);
                }
                Op::FailNextWrite => variant(&mut out, 5),
                Op::Reconnect => variant(&mut out, 6),
                Op::Disconnect => variant(&mut out, 7),
                Op::Flush => variant(&mut out, 8),
            }
        }
        out.push(0);
        out
    }
}

/// A whole input: script length, script, broker bytes.
pub fn input(scenario: &Scenario, broker: &[u8]) -> Vec<u8> {
    let script = scenario.to_bytes();
    let mut out = (script.len() as u16).to_le_bytes().to_vec();
    out.extend_from_slice(&script);
    out.extend_from_slice(broker);
    out
}

/// Splits an input into script and broker bytes.
pub fn split(data: &[u8]) -> (&[u8], &[u8]) {
    let Some((len, rest)) = data.split_first_chunk::<2>() else {
        return (&[], &[]);
    };
    let len = usize::from(u16::from_le_bytes(*len)).min(rest.len());
    rest.split_at(len)
}

/// A clock that moves only when the client waits or data arrives.
#[derive(Clone)]
pub struct VirtualTimer(Rc<Cell<Millis>>);

impl Timer for VirtualTimer {
    fn now(&self) -> Millis {
        self.0.get()
    }

    async fn sleep_until(&mut self, deadline: Millis) {
        self.0.set(self.0.get().max(deadline));
    }
}

/// Both sides of the in-memory connection.
struct Wire {
    /// Bytes served before the input's at this connection (a CONNACK).
    prefix: Vec<u8>,
    broker: Vec<u8>,
    pos: usize,
    chunk: usize,
    tick: Millis,
    eof_closes: bool,
    clock: Rc<Cell<Millis>>,
    /// Packets written since the last flush.
    unflushed: usize,
    /// Whole packets written on this connection, in order.
    sent: Vec<Vec<u8>>,
    fail_next_write: bool,
    injected_failures: usize,
    /// Reads and passed deadlines in the current call.
    reads: usize,
    timeouts: usize,
    read_limit: usize,
}

impl Wire {
    fn remaining(&self) -> usize {
        self.prefix.len() + self.broker.len() - self.pos
    }

    /// Starts counting reads for one call on the client.
    fn start_call(&mut self) {
        self.reads = 0;
        self.timeouts = 0;
        self.read_limit = self.remaining() + 4;
    }
}

/// The client's transport: serves the broker bytes, checks what is written.
struct Mock(Rc<RefCell<Wire>>);

impl Transport for Mock {
    async fn read_before(
        &mut self,
        buf: &mut [u8],
        deadline: Millis,
    ) -> Result<Option<usize>, Error> {
        let mut w = self.0.borrow_mut();
        assert!(!buf.is_empty(), "read into an empty buffer");
        // Deadline 0 (in the past): the client takes only what has
        // arrived, without waiting, before it flushes what is queued.
        let at_hand_only = deadline == 0;
        // Waiting for the broker with packets still queued would hold
        // them (and the acknowledgements among them) back.
        assert!(
            at_hand_only || w.unflushed == 0,
            "the client waits for the broker with packets unsent"
        );
        w.reads += 1;
        let (reads, limit) = (w.reads, w.read_limit);
        assert!(
            reads <= limit,
            "{reads} reads in one call with {limit} bytes left"
        );
        let limit = if w.chunk == 0 {
            buf.len()
        } else {
            w.chunk.min(buf.len())
        };
        if !w.prefix.is_empty() {
            let n = limit.min(w.prefix.len());
            buf[..n].copy_from_slice(&w.prefix[..n]);
            w.prefix.drain(..n);
            return Ok(Some(n));
        }
        if w.pos < w.broker.len() {
            let n = limit.min(w.broker.len() - w.pos);
            buf[..n].copy_from_slice(&w.broker[w.pos..w.pos + n]);
            w.pos += n;
            w.clock.set(w.clock.get().saturating_add(w.tick));
            return Ok(Some(n));
        }
        // The input is used up.
        if w.eof_closes || deadline == Millis::MAX {
            return Ok(Some(0));
        }
        if at_hand_only {
            // Nothing at hand: the client must now flush, then wait (the
            // assertion above checks the flush). Not a deadline passing.
            assert!(w.unflushed > 0, "a read at hand with nothing queued");
            w.read_limit += 1;
            return Ok(None);
        }
        w.timeouts += 1;
        assert!(
            w.timeouts <= 3,
            "{} deadlines passed in one call",
            w.timeouts
        );
        w.read_limit += 1;
        w.clock.set(w.clock.get().max(deadline));
        Ok(None)
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        let mut w = self.0.borrow_mut();
        if std::mem::take(&mut w.fail_next_write) {
            w.injected_failures += 1;
            return Err(Error::Io(embedded_io::ErrorKind::BrokenPipe));
        }
        // The client writes one whole packet at a time.
        assert_eq!(check_client_packet(bytes), bytes.len(), "{bytes:02X?}");
        w.sent.push(bytes.to_vec());
        w.unflushed += 1;
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.0.borrow_mut().unflushed = 0;
        Ok(())
    }
}

/// Checks that `bytes` starts with a whole, well-formed packet a client
/// may send (MQTT 3.1.1 §3) and returns its length.
fn check_client_packet(bytes: &[u8]) -> usize {
    let header = FixedHeader::parse(bytes)
        .expect("client wrote a bad fixed header")
        .expect("client flushed half a fixed header");
    assert_eq!(
        header.header_len,
        FixedHeader::len_for(header.remaining_len),
        "client wrote a padded remaining length"
    );
    let len = header.frame_len();
    assert!(
        bytes.len() >= len,
        "client flushed half a packet: {bytes:02X?}"
    );
    let body = &bytes[header.header_len..len];
    let id = |at: usize| u16::from_be_bytes([body[at], body[at + 1]]);
    match (bytes[0] >> 4, header.flags) {
        // CONNECT: protocol name "MQTT", level 4.
        (1, 0) => assert_eq!(body[..7], [0, 4, b'M', b'Q', b'T', b'T', 4]),
        (3, flags) => {
            let qos = (flags >> 1) & 3;
            assert!(
                qos < 3 && !(qos == 0 && flags & 8 != 0),
                "PUBLISH flags {flags:x}"
            );
            let topic_len = usize::from(id(0));
            let topic = std::str::from_utf8(&body[2..2 + topic_len]).expect("UTF-8 topic");
            topic::validate_name(topic).expect("the client published to a valid topic");
            if qos > 0 {
                assert_ne!(id(2 + topic_len), 0, "PUBLISH with packet identifier 0");
            }
        }
        // PUBACK, PUBREC, PUBCOMP; PUBREL with flags 2.
        (4 | 5 | 7, 0) | (6, 2) => {
            assert_eq!(body.len(), 2);
            assert_ne!(id(0), 0);
        }
        // SUBSCRIBE, UNSUBSCRIBE: identifier then at least one filter.
        (8 | 10, 2) => {
            assert!(body.len() > 4);
            assert_ne!(id(0), 0);
        }
        // PINGREQ, DISCONNECT.
        (12 | 14, 0) => assert!(body.is_empty()),
        (kind, flags) => panic!("client wrote packet type {kind} with flags {flags:x}"),
    }
    len
}

/// The packet identifier of a QoS 1/2 PUBLISH the client wrote, and its DUP flag.
fn publish_id(packet: &[u8]) -> Option<(u16, bool)> {
    if packet[0] >> 4 != 3 || (packet[0] >> 1) & 3 == 0 {
        return None;
    }
    let header = FixedHeader::parse(packet).ok()??;
    let body = &packet[header.header_len..];
    let at = 2 + usize::from(u16::from_be_bytes([body[0], body[1]]));
    Some((
        u16::from_be_bytes([body[at], body[at + 1]]),
        packet[0] & 8 != 0,
    ))
}

/// Runs a future that must finish without waiting: nothing the client
/// awaits (the mock transport, the virtual timer) ever pends.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    match future.as_mut().poll(&mut cx) {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the client waited on an always-ready transport"),
    }
}

/// Errors a broker's bytes or the caller's arguments can cause here.
fn check_error(error: &Error) {
    match error {
        Error::Io(_)
        | Error::ConnectionClosed
        | Error::Protocol(_)
        | Error::ConnectionRefused(_)
        | Error::KeepAliveTimeout
        | Error::ConnackTimeout
        | Error::InvalidTopic(_)
        | Error::PacketTooLarge { .. }
        | Error::InFlightFull { .. }
        | Error::OutboxFull { .. }
        | Error::Qos2ReceiveWindowFull { .. }
        | Error::AckPending(_)
        | Error::SubscriptionRefused { .. }
        | Error::TooManyFilters { .. }
        | Error::FrameTooLarge { .. }
        | Error::Disconnected
        | Error::Config(_)
        | Error::QosNotSupported { .. }
        | Error::ReservedTopic { .. } => {}
        other => panic!("a plain MQTT session returned {other:?}"),
    }
    assert!(!error.to_string().is_empty());
}

/// Errors after which the connection cannot continue.
fn ends_connection(error: &Error) -> bool {
    matches!(
        error,
        Error::Io(_)
            | Error::ConnectionClosed
            | Error::Protocol(_)
            | Error::KeepAliveTimeout
            | Error::FrameTooLarge { .. }
            | Error::Qos2ReceiveWindowFull { .. }
            | Error::Disconnected
    )
}

/// What the harness knows the client owes the application.
#[derive(Default)]
struct Ledger {
    /// QoS 1/2 messages written and not yet reported complete, by identifier.
    outstanding: HashMap<u16, usize>,
    /// Completions may have been lost with a dropped client: reports of
    /// identifiers issued before are no longer checked.
    lenient: bool,
    /// SUBSCRIBE / UNSUBSCRIBE identifiers that ended in `AckPending`.
    subscribes: Vec<u16>,
    /// The connect returned before the SUBACK of its subscriptions (messages
    /// filled `rx` first): `poll` may report it, under an identifier the
    /// harness never saw.
    connect_subscribe_pending: bool,
    unsubscribes: Vec<u16>,
}

impl Ledger {
    fn issued(&mut self, id: u16) {
        *self.outstanding.entry(id).or_default() += 1;
    }

    fn completed(&mut self, id: u16) {
        match self.outstanding.get_mut(&id) {
            Some(count) if *count > 0 => *count -= 1,
            _ => assert!(self.lenient, "completion of {id}, which is not in flight"),
        }
    }

    fn in_flight(&self) -> usize {
        self.outstanding.values().sum()
    }
}

/// Runs one input.
pub fn run(data: &[u8]) {
    let (script, broker) = split(data);
    let scenario = Scenario::read(script);
    let setup = &scenario.setup;
    let clock = Rc::new(Cell::new(1_000));
    let wire = Rc::new(RefCell::new(Wire {
        prefix: Vec::new(),
        broker: broker.to_vec(),
        pos: 0,
        chunk: usize::from(setup.chunk),
        tick: TICKS[usize::from(setup.tick) % TICKS.len()],
        eof_closes: setup.eof_closes,
        clock: clock.clone(),
        unflushed: 0,
        sent: Vec::new(),
        fail_next_write: false,
        injected_failures: 0,
        reads: 0,
        timeouts: 0,
        read_limit: 0,
    }));

    let subscriptions: Vec<(&str, QoS)> = CONNECT_SUBSCRIPTIONS
        .iter()
        .enumerate()
        .filter(|(i, _)| setup.subscriptions & (1 << i) != 0)
        .map(|(_, s)| *s)
        .collect();
    let mut options = ConnectOptions::new(if setup.client_id_empty { "" } else { "fuzz" })
        .with_keep_alive(KEEP_ALIVES[usize::from(setup.keep_alive) % KEEP_ALIVES.len()])
        .with_subscriptions(&subscriptions)
        .with_connect_timeout_ms(5_000);
    if !setup.clean_session {
        options = options.with_persistent_session();
    }
    if setup.will {
        options = options.with_will(Will {
            topic: "status/fuzz",
            payload: b"gone",
            qos: QoS::AtLeastOnce,
            retain: true,
        });
    }
    if setup.limits {
        options = options.with_limits(BrokerLimits {
            max_qos: QoS::AtLeastOnce,
            reserved_prefix: Some("flespi/"),
        });
    }

    let mut outbox = vec![0u8; OUTBOX_SIZES[usize::from(setup.outbox) % OUTBOX_SIZES.len()]];
    let mut session: Session<'_, N> = Session::new(&mut outbox);
    let mut rx = vec![0u8; RX_SIZES[usize::from(setup.rx) % RX_SIZES.len()]];
    let mut tx = [0u8; TX_SIZE];
    let payload = [0x5Au8; 3 * 255];
    let mut ledger = Ledger::default();
    let mut ops = scenario.ops.iter();

    // One connection per iteration; a failed connect ends the input only
    // when it cannot be retried (the input is used up).
    for _connection in 0..=MAX_OPS {
        let in_flight_before = session.in_flight();
        assert!(in_flight_before <= ledger.in_flight() || ledger.lenient);
        if trace() {
            eprintln!(
                "connect: {in_flight_before} in flight in the session, {} written and not reported",
                ledger.in_flight()
            );
        }
        if in_flight_before != ledger.in_flight() {
            // Completions queued in the dropped client were never
            // reported (see the report: lost with the client).
            ledger.lenient = true;
        }
        {
            let mut w = wire.borrow_mut();
            w.prefix = if setup.auto_connack {
                vec![0x20, 0x02, u8::from(setup.session_present), 0x00]
            } else {
                Vec::new()
            };
            w.unflushed = 0;
            w.sent.clear();
            w.start_call();
        }
        let timer = VirtualTimer(clock.clone());
        let connect = Client::connect(
            Mock(wire.clone()),
            timer,
            &mut session,
            &mut rx,
            &mut tx,
            &options,
        );
        let (client, connected) = match block_on(connect) {
            Ok(ok) => ok,
            Err(e) => {
                if trace() {
                    eprintln!("connect -> {e:?}");
                }
                check_error(&e);
                if wire.borrow().remaining() == 0 || matches!(e, Error::Config(_)) {
                    break;
                }
                continue;
            }
        };
        if options.clean_session {
            // Fewer if the broker acknowledged old messages while the
            // connect waited for its SUBACK (reported later by `poll`).
            assert!(connected.discarded <= in_flight_before, "{connected:?}");
            assert_eq!(connected.resent, 0);
            if connected.discarded < in_flight_before {
                ledger.lenient = true;
            }
            ledger.outstanding.clear();
        } else {
            assert_eq!(connected.resent, in_flight_before, "{connected:?}");
            assert_eq!(connected.discarded, 0);
        }
        if let Some(granted) = &connected.granted {
            assert_eq!(granted.len(), subscriptions.len());
        }
        // `granted` is also `None` when no SUBSCRIBE was needed; then no
        // report comes and the flag just stays unused.
        ledger.connect_subscribe_pending = connected.granted.is_none() && !subscriptions.is_empty();
        let mut slot = Some(client);
        let mut expect_disconnected = false;
        // The acknowledgement owed for the last message delivered.
        let mut owed_ack: Option<[u8; 4]> = None;
        let mut reconnect = false;

        for op in ops.by_ref() {
            let Some(client) = slot.as_mut() else { break };
            let (sent_before, failures_before) = {
                let mut w = wire.borrow_mut();
                w.start_call();
                (w.sent.len(), w.injected_failures)
            };
            let mut issued_by_call = None;
            // The acknowledgement owed before this call (a message this
            // call delivers owes a new one).
            let owed_before = owed_ack.take();
            let result: Result<(), Error> = match *op {
                Op::Poll => match block_on(client.poll()) {
                    Ok(event) => {
                        if trace() {
                            eprintln!("event {event:?}");
                        }
                        check_event(&event, &mut ledger, &mut owed_ack);
                        Ok(())
                    }
                    Err(e) => Err(e),
                },
                Op::Publish {
                    topic,
                    len,
                    qos,
                    retain,
                } => {
                    let topic = TOPICS[usize::from(topic) % TOPICS.len()];
                    let payload = &payload[..3 * usize::from(len)];
                    let qos = qos_of(qos);
                    issued_by_call = Some(qos);
                    block_on(client.publish(topic, payload, qos, retain))
                }
                Op::StartPublish {
                    topic,
                    len,
                    qos,
                    retain,
                } => {
                    let topic = TOPICS[usize::from(topic) % TOPICS.len()];
                    let payload = &payload[..3 * usize::from(len)];
                    let qos = qos_of(qos);
                    match block_on(client.start_publish(topic, payload, qos, retain)) {
                        Ok(id) => {
                            assert_eq!(id.is_some(), qos != QoS::AtMostOnce);
                            if let Some(id) = id {
                                let w = wire.borrow();
                                let issued = w.sent.iter().rev().find_map(|p| publish_id(p));
                                assert_eq!(issued, Some((id.get(), false)));
                                let waiting = ledger.outstanding.get(&id.get()).copied();
                                assert!(
                                    ledger.lenient || waiting.unwrap_or(0) == 0,
                                    "start_publish returned {id}, still waiting to be reported"
                                );
                            }
                            Ok(())
                        }
                        Err(e) => Err(e),
                    }
                }
                Op::Subscribe { filters, qos } => {
                    let list: Vec<(&str, QoS)> = chosen(filters)
                        .into_iter()
                        .map(|f| (f, qos_of(qos)))
                        .collect();
                    match block_on(client.subscribe(&list)) {
                        Ok(granted) => {
                            assert_eq!(granted.len(), list.len());
                            Ok(())
                        }
                        Err(Error::AckPending(id)) => {
                            ledger.subscribes.push(id.get());
                            Err(Error::AckPending(id))
                        }
                        Err(e) => Err(e),
                    }
                }
                Op::Unsubscribe { filters } => {
                    let list = chosen(filters);
                    match block_on(client.unsubscribe(&list)) {
                        Err(Error::AckPending(id)) => {
                            ledger.unsubscribes.push(id.get());
                            Err(Error::AckPending(id))
                        }
                        other => other,
                    }
                }
                Op::Flush => block_on(client.flush()),
                Op::FailNextWrite => {
                    wire.borrow_mut().fail_next_write = true;
                    owed_ack = owed_before;
                    continue;
                }
                Op::Reconnect => {
                    reconnect = true;
                    break;
                }
                Op::Disconnect => {
                    let client = slot.take().expect("checked above");
                    let result = block_on(client.disconnect()).map(drop);
                    if expect_disconnected {
                        assert_eq!(result, Err(Error::Disconnected), "call on a broken client");
                    }
                    match &result {
                        Err(e) => check_error(e),
                        Ok(()) => {
                            let w = wire.borrow();
                            assert_eq!(w.sent.last().map(Vec::as_slice), Some(&[0xE0, 0x00][..]));
                        }
                    }
                    reconnect = true;
                    break;
                }
            };
            let Some(client) = slot.as_mut() else { break };

            // Packets written during this call.
            let (new_packets, failed_write) = {
                let w = wire.borrow();
                (
                    w.sent[sent_before..].to_vec(),
                    w.injected_failures > failures_before,
                )
            };
            if trace() {
                eprintln!("{op:?} -> {result:?}, wrote {new_packets:02X?}");
            }
            if failed_write {
                // A message stored in the session may not have reached the
                // wire: its identifier is unknown here.
                ledger.lenient = true;
            }
            match (owed_before, new_packets.first()) {
                (Some(ack), Some(first)) => {
                    assert_eq!(
                        first[..],
                        ack[..],
                        "a delivered message was not acknowledged first"
                    );
                }
                (Some(ack), None) => {
                    assert!(
                        owed_ack.is_none(),
                        "a message delivered before the last was acknowledged"
                    );
                    owed_ack = Some(ack);
                }
                (None, _) => {}
            }
            for packet in &new_packets {
                if let Some((id, false)) = publish_id(packet) {
                    ledger.issued(id);
                }
            }
            if let (Ok(()), Some(qos)) = (&result, issued_by_call)
                && qos != QoS::AtMostOnce
            {
                // `publish` returned: its message is complete.
                let id = new_packets.iter().rev().find_map(|p| publish_id(p));
                ledger.completed(id.expect("publish completed without sending").0);
            }

            if expect_disconnected {
                assert_eq!(result, Err(Error::Disconnected), "call on a broken client");
            }
            assert_eq!(
                client.has_unsent(),
                wire.borrow().unflushed > 0,
                "has_unsent"
            );
            match result {
                Ok(()) => assert!(!client.is_broken()),
                Err(e) => {
                    check_error(&e);
                    if ends_connection(&e) {
                        assert!(client.is_broken(), "{e:?} left the client usable");
                    }
                    if client.is_broken() {
                        expect_disconnected = true;
                    }
                }
            }
        }

        if reconnect {
            wire.borrow_mut().fail_next_write = false;
            continue;
        }
        if let Some(client) = slot.as_mut() {
            // The script is done: poll until the input is used up. Each
            // call takes bytes or passes a deadline, so this ends.
            let limit = wire.borrow().remaining() + 2 * (N + 8);
            let mut finished = false;
            for _ in 0..limit {
                wire.borrow_mut().start_call();
                match block_on(client.poll()) {
                    Ok(event) => check_event(&event, &mut ledger, &mut owed_ack),
                    Err(e) => {
                        check_error(&e);
                        if !matches!(e, Error::AckPending(_)) {
                            finished = true;
                            break;
                        }
                    }
                }
            }
            assert!(finished, "poll kept returning events from a finite input");
        }
        break;
    }
}

/// `MQTTS_FUZZ_TRACE=1` prints every call, its result and what it wrote
/// (for reading a crash input with `cargo fuzz run TARGET FILE`).
fn trace() -> bool {
    static TRACE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *TRACE.get_or_init(|| std::env::var_os("MQTTS_FUZZ_TRACE").is_some())
}

fn qos_of(byte: u8) -> QoS {
    match byte % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn chosen(mask: u8) -> Vec<&'static str> {
    FILTERS
        .iter()
        .enumerate()
        .filter(|(i, _)| mask & (1 << i) != 0)
        .map(|(_, f)| *f)
        .collect()
}

/// Checks an event against what the client owes.
fn check_event(event: &Event<'_>, ledger: &mut Ledger, owed_ack: &mut Option<[u8; 4]>) {
    match *event {
        Event::Message(message) => {
            topic::validate_name(message.topic).expect("delivered topic is valid");
            assert_eq!(message.packet_id.is_some(), message.qos != QoS::AtMostOnce);
            *owed_ack = message.packet_id.map(|id| {
                let kind = if message.qos == QoS::AtLeastOnce {
                    0x40
                } else {
                    0x50
                };
                let [hi, lo] = id.get().to_be_bytes();
                [kind, 0x02, hi, lo]
            });
        }
        Event::Published(id) => ledger.completed(id.get()),
        Event::Subscribed { packet_id, refused } => {
            if ledger.connect_subscribe_pending && !ledger.subscribes.contains(&packet_id.get()) {
                ledger.connect_subscribe_pending = false;
            } else {
                take(&mut ledger.subscribes, packet_id, "Subscribed");
            }
            if let Some(index) = refused {
                assert!(index < 8);
            }
        }
        Event::Unsubscribed(id) => take(&mut ledger.unsubscribes, id, "Unsubscribed"),
        Event::MessageTooLarge {
            size,
            capacity,
            qos,
            packet_id,
        } => {
            assert!(size > capacity);
            if qos == QoS::AtMostOnce {
                assert_eq!(packet_id, None);
            }
        }
        _ => {}
    }
}

fn take(pending: &mut Vec<u16>, id: PacketId, what: &str) {
    let at = pending
        .iter()
        .position(|&p| p == id.get())
        .unwrap_or_else(|| panic!("{what}({id}) for no pending request"));
    pending.remove(at);
}
