//! The MQTT 3.1.1 client: CONNECT, PUBLISH at QoS 0/1/2, SUBSCRIBE,
//! keep-alive and persistent sessions over any [`Transport`] (a pinned
//! [`TlsStream`](crate::tls::TlsStream) in production, a plain socket in
//! tests).
//!
//! ```no_run
//! # async fn demo<T: mqtts::transport::Transport, TM: mqtts::time::Timer>(transport: T, timer: TM)
//! # -> Result<(), mqtts::Error> {
//! use mqtts::client::{Client, ConnectOptions, Event};
//! use mqtts::mqtt::QoS;
//!
//! let mut outbox = [0u8; 2048];
//! let mut session: mqtts::Session<'_, 8> = mqtts::Session::new(&mut outbox);
//! let (mut rx, mut tx) = ([0u8; 1024], [0u8; 512]);
//! let subscriptions = [("devices/42/cmd", QoS::AtLeastOnce)];
//! let options = ConnectOptions::new("device-42")
//!     .with_credentials("FlespiToken XXXX", b"")
//!     .with_keep_alive(60)
//!     .with_subscriptions(&subscriptions);
//! let (mut client, connected) =
//!     Client::connect(transport, timer, &mut session, &mut rx, &mut tx, &options).await?;
//! client.publish("devices/42/state", b"{\"on\":true}", QoS::AtLeastOnce, false).await?;
//! loop {
//!     match client.poll().await? {
//!         Event::Message(message) => { /* message.topic, message.payload */ }
//!         Event::MessageTooLarge { size, capacity, .. } => { /* log it */ }
//!         _ => {}
//!     }
//! }
//! # }
//! ```
//!
//! # Reading and cancellation
//!
//! All waiting (for packets, for acknowledgements, for the keep-alive
//! timer) happens inside [`Client::poll`] and the `async` methods, which
//! stop reading at the keep-alive deadline without losing data. Dropping
//! one of these futures while it waits for data is safe; dropping it while
//! it writes (an acknowledgement, a PINGREQ) may leave half a packet on the
//! wire: the connection must then be abandoned.
//!
//! # Inside
//!
//! Every method encodes what it sends and describes the rest as a
//! `Program` (finish the last delivery, write, resend, flush, wait for
//! CONNACK, an acknowledgement or the next event). One loop, `drive`, is
//! the only code that awaits I/O: it asks `step`, plain code without I/O,
//! what to do next (write these bytes, flush, read until this deadline,
//! done) and reports what happened. The protocol logic thus exists once
//! and is not spread over the states of nested futures, which keeps the
//! firmware small (4.9 KB less flash than an async function per operation
//! on riscv32imc, docs/PERFORMANCE.md).

use crate::error::{ConfigError, Error};
pub use crate::mqtt::encode::Will;
use crate::mqtt::encode::{self, Ack};
use crate::mqtt::frame::{self, FixedHeader, Incoming, PacketType, Publish};

use crate::keep_alive::{Due, KeepAlive};
use crate::mqtt::{ConnackCode, PacketId, ProtocolError, QoS, topic};
use crate::session::{Resend, Session, SessionState};
use crate::time::{Millis, Timer};
use crate::transport::Transport;
use heapless::{Deque, Vec};

/// The most filters one [`Client::subscribe`] or [`Client::unsubscribe`] takes.
pub const MAX_FILTERS: usize = 16;

/// The smallest receive buffer: a CONNACK, an acknowledgement, or enough
/// of a larger PUBLISH to identify it when it must be skipped.
pub const MIN_RX_BUFFER: usize = 16;

/// How long [`Client::connect`] waits for CONNACK unless set otherwise.
pub const DEFAULT_CONNECT_TIMEOUT_MS: Millis = 30_000;

/// The maximum QoS the broker granted for each filter, in order.
pub type Granted = Vec<QoS, MAX_FILTERS>;

/// What a broker accepts beyond MQTT 3.1.1 itself, checked before sending
/// so a violation is a clear error instead of a dropped connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct BrokerLimits {
    /// The highest QoS the broker supports for PUBLISH.
    pub max_qos: QoS,
    /// Topics clients may not publish to (e.g. `flespi/`).
    pub reserved_prefix: Option<&'static str>,
}

impl BrokerLimits {
    /// No limits beyond the specification.
    pub const NONE: Self = Self {
        max_qos: QoS::ExactlyOnce,
        reserved_prefix: None,
    };

    fn check_publish(&self, topic: &str, qos: QoS) -> Result<(), Error> {
        if qos > self.max_qos {
            return Err(Error::QosNotSupported {
                requested: qos,
                max: self.max_qos,
            });
        }
        if let Some(prefix) = self.reserved_prefix
            && topic.starts_with(prefix)
        {
            return Err(Error::ReservedTopic { prefix });
        }
        Ok(())
    }
}

/// What to send in CONNECT (§3.1) and how to set the session up.
#[derive(Debug, Clone, Copy)]
pub struct ConnectOptions<'a> {
    /// Client identifier (§3.1.3.1). Two devices with the same identifier
    /// disconnect each other.
    pub client_id: &'a str,
    /// User name (flespi: the token).
    pub username: Option<&'a str>,
    /// Password (needs a user name, §3.1.2.9).
    pub password: Option<&'a [u8]>,
    /// Keep-alive in seconds; 0 disables it (§3.1.2.10).
    pub keep_alive_secs: u16,
    /// Start a new session (true) or resume the broker's (false, §3.1.2.4).
    pub clean_session: bool,
    /// Last Will (§3.1.2.5).
    pub will: Option<Will<'a>>,
    /// Subscriptions made whenever the broker has no session for this
    /// client (the first connect, a reconnect where it lost it) and on every
    /// connect until the broker has acknowledged them once: a SUBSCRIBE
    /// lost with its connection is sent again, even when the broker reports
    /// a session. Changing them later needs [`Client::subscribe`].
    pub subscriptions: &'a [(&'a str, QoS)],
    /// How long to wait for CONNACK, in milliseconds.
    pub connect_timeout_ms: Millis,
    /// What the broker accepts beyond the specification.
    pub limits: BrokerLimits,
}

impl<'a> ConnectOptions<'a> {
    /// Options with a client identifier, a 60 s keep-alive, a clean session
    /// and nothing else.
    pub const fn new(client_id: &'a str) -> Self {
        Self {
            client_id,
            username: None,
            password: None,
            keep_alive_secs: 60,
            clean_session: true,
            will: None,
            subscriptions: &[],
            connect_timeout_ms: DEFAULT_CONNECT_TIMEOUT_MS,
            limits: BrokerLimits::NONE,
        }
    }

    /// Sets the broker's limits (see [`BrokerLimits`]).
    pub const fn with_limits(mut self, limits: BrokerLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the user name and password.
    pub const fn with_credentials(mut self, username: &'a str, password: &'a [u8]) -> Self {
        self.username = Some(username);
        self.password = Some(password);
        self
    }

    /// Sets the user name only.
    pub const fn with_username(mut self, username: &'a str) -> Self {
        self.username = Some(username);
        self
    }

    /// Sets the keep-alive interval in seconds (0 disables it).
    pub const fn with_keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive_secs = secs;
        self
    }

    /// Asks the broker to keep the session (subscriptions, queued QoS 1/2
    /// messages) across connections.
    pub const fn with_persistent_session(mut self) -> Self {
        self.clean_session = false;
        self
    }

    /// Sets the Last Will.
    pub const fn with_will(mut self, will: Will<'a>) -> Self {
        self.will = Some(will);
        self
    }

    /// Sets the subscriptions made when the broker has no session (see
    /// [`ConnectOptions::subscriptions`]).
    pub const fn with_subscriptions(mut self, subscriptions: &'a [(&'a str, QoS)]) -> Self {
        self.subscriptions = subscriptions;
        self
    }

    /// Sets how long to wait for CONNACK.
    pub const fn with_connect_timeout_ms(mut self, ms: Millis) -> Self {
        self.connect_timeout_ms = ms;
        self
    }

    fn check(&self) -> Result<(), Error> {
        if self.password.is_some() && self.username.is_none() {
            return Err(ConfigError::PasswordWithoutUserName.into());
        }
        if self.client_id.is_empty() && !self.clean_session {
            return Err(ConfigError::EmptyClientIdNeedsCleanSession.into());
        }
        let too_long = |len: usize| len > usize::from(u16::MAX);
        if too_long(self.client_id.len())
            || self.username.is_some_and(|u| too_long(u.len()))
            || self.password.is_some_and(|p| too_long(p.len()))
        {
            return Err(ConfigError::FieldTooLong.into());
        }
        if let Some(will) = &self.will {
            topic::validate_name(will.topic)?;
            if too_long(will.payload.len()) {
                return Err(ConfigError::FieldTooLong.into());
            }
        }
        for (filter, _) in self.subscriptions {
            topic::validate_filter(filter)?;
        }
        if self.subscriptions.len() > MAX_FILTERS {
            return Err(Error::TooManyFilters { max: MAX_FILTERS });
        }
        Ok(())
    }
}

/// The buffers of a TLS connection and its MQTT client, all owned by the
/// caller (see [`crate::tls::connect`] and [`Client::connect`] for sizes).
#[derive(Debug)]
pub struct Buffers<'b> {
    /// TLS record read buffer.
    pub tls_read: &'b mut [u8],
    /// TLS record write buffer.
    pub tls_write: &'b mut [u8],
    /// MQTT receive buffer (the largest packet received).
    pub rx: &'b mut [u8],
    /// MQTT transmit buffer (the largest QoS 0 PUBLISH, SUBSCRIBE or CONNECT sent).
    pub tx: &'b mut [u8],
}

/// The outcome of a successful CONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Connected {
    /// The broker resumed a session it kept for this client (§3.2.2.2).
    pub session_present: bool,
    /// QoS 1/2 messages and PUBREL sent again from the session.
    pub resent: usize,
    /// QoS 1/2 messages from an earlier connection that were never
    /// acknowledged and were dropped because this connection uses a clean
    /// session (use [`ConnectOptions::with_persistent_session`] to keep them).
    pub discarded: usize,
    /// What the broker granted for [`ConnectOptions::subscriptions`], if
    /// they were sent (whenever the broker has no session, and on every
    /// connect until one SUBACK granted them in the session it keeps) and
    /// their SUBACK came before messages filled `rx`; in that last case
    /// `None`, and [`Client::poll`] reports the SUBACK as
    /// [`Event::Subscribed`] after the messages.
    pub granted: Option<Granted>,
}

/// What [`Client::poll`] reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event<'a> {
    /// An application message, borrowed from the receive buffer. It is
    /// acknowledged (QoS 1: PUBACK, QoS 2: PUBREC) when `poll` is called
    /// again; a QoS 2 message is delivered once.
    Message(Publish<'a>),
    /// A QoS 1/2 message sent with [`Client::start_publish`] is complete:
    /// the broker has it (PUBACK, or PUBCOMP for QoS 2).
    Published(PacketId),
    /// The broker acknowledged a SUBSCRIBE whose `subscribe()` call ended
    /// with [`Error::AckPending`].
    Subscribed {
        /// The SUBSCRIBE's identifier (the one in `AckPending`).
        packet_id: PacketId,
        /// The first refused filter (SUBACK 0x80), if any.
        refused: Option<usize>,
    },
    /// The broker acknowledged an UNSUBSCRIBE whose `unsubscribe()` call
    /// ended with [`Error::AckPending`].
    Unsubscribed(PacketId),
    /// A message too large for the receive buffer arrived; it was skipped,
    /// and acknowledged when its packet identifier could be read (its
    /// topic fits the buffer), so the broker does not resend it.
    MessageTooLarge {
        /// The PUBLISH packet's size.
        size: usize,
        /// The receive buffer's size.
        capacity: usize,
        /// Its QoS.
        qos: QoS,
        /// Its packet identifier, if it could be read.
        packet_id: Option<PacketId>,
    },
}

/// A message skipped for its size, kept for `poll` to report (8 bytes:
/// the client keeps [`TOO_LARGE_QUEUE`] of them for its whole life; the
/// capacity is the receive buffer's length, known when reporting).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct TooLarge {
    /// The PUBLISH frame's size: at most 5 + 268,435,455 bytes (§2.2.3).
    size: u32,
    qos: QoS,
    packet_id: Option<PacketId>,
}

impl TooLarge {
    fn event(self, capacity: usize) -> Event<'static> {
        Event::MessageTooLarge {
            size: self.size as usize,
            capacity,
            qos: self.qos,
            packet_id: self.packet_id,
        }
    }
}

/// The message the last [`Client::poll`] returned: a frame at the front of
/// the receive buffer, and the acknowledgement it is owed.
#[derive(Debug, Clone, Copy)]
struct Delivered {
    len: usize,
    ack: Option<(Ack, PacketId)>,
}

/// How many skipped-message reports wait for `poll` at most; while
/// waiting for an acknowledgement with that many, the wait stops with
/// [`Error::AckPending`] before anything more is read.
const TOO_LARGE_QUEUE: usize = 4;

/// Reads that may take what has arrived before queued packets are flushed
/// (see `Client::need_bytes`): bounds the delay a stream of incoming
/// packets can add to outgoing ones.
const MAX_READS_BEFORE_FLUSH: u8 = 16;

/// What the receive buffer holds (see `Client::frame_at_hand`).
#[derive(Debug, Clone, Copy)]
enum AtHand {
    /// A whole frame.
    Frame(FrameAt),
    /// A message too large for the buffer was skipped and queued as a
    /// report; the acknowledgement it is owed, if any.
    Skipped(Option<Reply>),
    /// Not a whole frame yet.
    Incomplete,
}

/// A packet of at most 4 bytes: an acknowledgement, PINGREQ, DISCONNECT.
#[derive(Debug, Clone, Copy)]
// Word-aligned: copied with one word load and store, not byte by byte
// (108 bytes less flash on riscv32imc).
#[repr(align(4))]
struct Reply {
    bytes: [u8; 4],
    len: u8,
}

impl Reply {
    const PINGREQ: Self = Self {
        bytes: [encode::PINGREQ[0], encode::PINGREQ[1], 0, 0],
        len: 2,
    };

    const DISCONNECT: Self = Self {
        bytes: [encode::DISCONNECT[0], encode::DISCONNECT[1], 0, 0],
        len: 2,
    };

    fn ack(kind: Ack, id: PacketId) -> Self {
        Self {
            bytes: encode::ack(kind, id),
            len: 4,
        }
    }

    fn bytes(&self) -> &[u8] {
        self.bytes.get(..usize::from(self.len)).unwrap_or_default()
    }
}

/// A SUBSCRIBE or UNSUBSCRIBE waiting for its acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Request {
    Subscribe(PacketId),
    Unsubscribe(PacketId),
}

/// The receive buffer: PUBLISH frames kept for delivery at the front,
/// then bytes not yet processed.
struct Rx<'b> {
    buf: &'b mut [u8],
    /// `buf[..queued]` holds whole PUBLISH frames waiting for `poll`.
    queued: usize,
    /// `buf[..filled]` holds data.
    filled: usize,
    /// Bytes of an oversized packet still to discard from the stream.
    skip: usize,
}

impl Rx<'_> {
    /// Removes `len` bytes at `start`.
    fn remove(&mut self, start: usize, len: usize) {
        // Callers pass frames inside `filled`; clamping keeps a mistake from
        // underflowing.
        let start = start.min(self.filled);
        let end = start.saturating_add(len).min(self.filled);
        self.buf.copy_within(end..self.filled, start);
        self.filled -= end - start;
        if start < self.queued {
            self.queued -= (end - start).min(self.queued - start);
        }
    }
}

/// Where a complete frame is in the receive buffer.
#[derive(Debug, Clone, Copy)]
struct FrameAt {
    start: usize,
    len: usize,
}

/// What a method waits for (PUBLISH frames arriving meanwhile are kept
/// for `poll`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum WaitFor {
    Completion(PacketId),
    Suback(PacketId),
    Unsuback(PacketId),
}

impl WaitFor {
    fn id(self) -> PacketId {
        match self {
            Self::Completion(id) | Self::Suback(id) | Self::Unsuback(id) => id,
        }
    }
}

/// An MQTT client on an open transport.
///
/// `N` is the session's in-flight limit (see [`Session`]).
pub struct Client<'b, 's, T, TM, const N: usize> {
    transport: T,
    timer: TM,
    session: &'b mut SessionState<'s, N>,
    rx: Rx<'b>,
    tx: &'b mut [u8],
    keep_alive: KeepAlive,
    /// Reads that took what had arrived while packets stayed queued (see
    /// `need_bytes`); reset by every flush.
    reads_before_flush: u8,
    /// A message handed to the application by the last `poll`: its frame is
    /// removed and its acknowledgement sent at the next call.
    delivered: Option<Delivered>,
    too_large: Deque<TooLarge, TOO_LARGE_QUEUE>,
    // `u8` length: this lives as long as the connection.
    requests: Vec<Request, 4, u8>,
    /// The SUBSCRIBE of `ConnectOptions::subscriptions`, if its SUBACK had
    /// not come when `connect` returned.
    connect_subscription: Option<PacketId>,
    limits: BrokerLimits,
    broken: bool,
    /// A write started and has not finished: if found set when a method
    /// starts, a future was dropped mid-write and half a packet may be on
    /// the wire.
    writing: bool,
    /// Whole packets are in the transport's write buffer and not yet
    /// flushed: they leave at the next flush, which every wait for the
    /// broker starts with (see [`Client::start_publish`]).
    unflushed: bool,
}

impl<T, TM, const N: usize> core::fmt::Debug for Client<'_, '_, T, TM, N> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Client")
            .field("in_flight", &self.session.in_flight())
            .field("queued_bytes", &self.rx.queued)
            .field("keep_alive_ms", &self.keep_alive.interval_ms())
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

impl<'b, 's, T, TM, const N: usize> Client<'b, 's, T, TM, N>
where
    T: Transport,
    TM: Timer,
{
    /// Sends CONNECT over `transport`, waits for CONNACK, then resumes the
    /// session: QoS 1/2 messages in flight are sent again with DUP = 1 and
    /// PUBREL again (§4.4), and the [`ConnectOptions::subscriptions`] are
    /// made if the broker kept no session, or if they were never
    /// acknowledged.
    ///
    /// `rx` must hold the largest packet you expect to receive (larger
    /// PUBLISH packets are skipped and reported); `tx` the largest QoS 0
    /// PUBLISH, SUBSCRIBE or CONNECT you send. QoS 1/2 messages are encoded
    /// in the session's outbox.
    pub async fn connect(
        transport: T,
        timer: TM,
        session: &'b mut Session<'s, N>,
        rx: &'b mut [u8],
        tx: &'b mut [u8],
        options: &ConnectOptions<'_>,
    ) -> Result<(Self, Connected), Error> {
        let (state, _) = session.split();
        Self::connect_with_state(transport, timer, state, rx, tx, options).await
    }

    pub(crate) async fn connect_with_state(
        transport: T,
        timer: TM,
        session: &'b mut SessionState<'s, N>,
        rx: &'b mut [u8],
        tx: &'b mut [u8],
        options: &ConnectOptions<'_>,
    ) -> Result<(Self, Connected), Error> {
        options.check()?;
        if rx.len() < MIN_RX_BUFFER {
            return Err(ConfigError::BufferTooSmall {
                buffer: "rx",
                len: rx.len(),
                min: MIN_RX_BUFFER,
            }
            .into());
        }
        let now = timer.now();
        let mut client = Self {
            transport,
            timer,
            session,
            rx: Rx {
                buf: rx,
                queued: 0,
                filled: 0,
                skip: 0,
            },
            tx,
            keep_alive: KeepAlive::new(options.keep_alive_secs, now),
            reads_before_flush: 0,
            delivered: None,
            too_large: Deque::new(),
            requests: Vec::new(),
            connect_subscription: None,
            limits: options.limits,
            broken: false,
            writing: false,
            unflushed: false,
        };

        let connect = encode::Connect {
            client_id: options.client_id,
            username: options.username,
            password: options.password,
            keep_alive_secs: options.keep_alive_secs,
            clean_session: options.clean_session,
            will: options.will,
        };
        let len = encode::connect(&connect, client.tx)?;
        let deadline = now.saturating_add(options.connect_timeout_ms);
        let mut program = Program::send(Out::Tx(len), Wait::Connack(deadline));
        let Done::Connack {
            session_present,
            code,
        } = client.run(&mut program).await?
        else {
            return Err(Error::Disconnected);
        };
        if code != ConnackCode::Accepted {
            client.broken = true;
            return Err(Error::ConnectionRefused(code));
        }
        if !session_present {
            // The broker forgot us: its QoS 2 receive state is gone too.
            client.session.forget_incoming();
        }
        // Messages still in flight from before are resent with a persistent
        // session; with a clean session they are dropped (and counted in
        // `Connected`) only once this connect has succeeded, so a failed
        // attempt loses nothing.
        let resent = if options.clean_session {
            0
        } else {
            let mut resend = Program::resend();
            client.run(&mut resend).await?;
            resend.resent
        };
        // Subscribe unless this session's broker state already has the
        // subscriptions: a broker that reports a session may have created it
        // at a CONNECT whose SUBSCRIBE was cut, and would never deliver.
        let granted = if client.session.is_subscribed() || options.subscriptions.is_empty() {
            None
        } else {
            match client.subscribe(options.subscriptions).await {
                Ok(granted) => {
                    client.session.set_subscribed();
                    Some(granted)
                }
                // Messages filled `rx` before SUBACK came: the connection
                // is fine. `poll` delivers them, then reports the SUBACK as
                // `Event::Subscribed` (and marks the subscriptions made).
                Err(Error::AckPending(id)) => {
                    client.connect_subscription = Some(id);
                    None
                }
                Err(e) => return Err(e),
            }
        };
        let discarded = if options.clean_session {
            let count = client.session.in_flight();
            client.session.clear();
            count
        } else {
            0
        };
        Ok((
            client,
            Connected {
                session_present,
                resent,
                discarded,
                granted,
            },
        ))
    }

    /// Publishes a message and waits until the broker has it: returns at
    /// once for QoS 0 (once written), after PUBACK for QoS 1, after PUBCOMP
    /// for QoS 2. Messages arriving meanwhile are kept for [`Client::poll`].
    ///
    /// The topic is checked first (§4.7): a bad topic, or a message that
    /// does not fit `tx` (QoS 0) or the session outbox (QoS 1/2), is an
    /// error and nothing is sent.
    ///
    /// A QoS 1/2 message is stored in the session before it is sent. An
    /// error after that (the connection failed, [`Error::KeepAliveTimeout`],
    /// [`Error::AckPending`]) leaves it there: do not publish it again. With
    /// a persistent session it is resent after the next connect; with a
    /// clean session the next connect drops it and counts it in
    /// [`Connected::discarded`].
    pub async fn publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<(), Error> {
        self.usable()?;
        let (id, out) = self.encode_publish(topic, payload, qos, retain)?;
        let wait = match id {
            Some(id) => Wait::For(WaitFor::Completion(id)),
            None => Wait::Nothing,
        };
        let mut program = Program::send(out, wait);
        self.run(&mut program).await.map(|_| ())
    }

    /// Queues a message without waiting for its acknowledgement: up to `N`
    /// QoS 1/2 messages may be in flight, each completion is reported by
    /// [`Client::poll`] as [`Event::Published`] with the returned identifier
    /// (`None` for QoS 0, which has no acknowledgement).
    ///
    /// The message goes into the transport's write buffer (for TLS, the
    /// record being built) and leaves when that buffer is full, or when a
    /// call has to wait for the broker ([`Client::poll`],
    /// [`Client::publish`], [`Client::subscribe`], ...; `poll` first
    /// reports events that have already arrived, see there), or at
    /// [`Client::flush`]. Messages queued back to back therefore share TLS
    /// records (22 bytes of overhead and one radio burst for many), and an
    /// application that polls whenever it has nothing to send adds no
    /// latency. A QoS 1/2 message is in the session from this call on; a
    /// QoS 0 message still queued when the client is dropped (or
    /// [`Client::into_transport`] is called) is not sent.
    pub async fn start_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<Option<PacketId>, Error> {
        self.usable()?;
        let (id, out) = self.encode_publish(topic, payload, qos, retain)?;
        let mut program = Program::queue(out);
        self.run(&mut program).await?;
        Ok(id)
    }

    /// Checks and encodes a PUBLISH: QoS 0 into `tx`, QoS 1/2 into the
    /// session's outbox (from here on it is in flight).
    fn encode_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<(Option<PacketId>, Out), Error> {
        topic::validate_name(topic)?;
        self.limits.check_publish(topic, qos)?;
        if qos == QoS::AtMostOnce {
            let written = encode::publish(topic, payload, qos, None, retain, false, self.tx)?;
            return Ok((None, Out::Tx(written)));
        }
        // A completion not yet reported by `poll` still takes a place, so
        // that the completions queue can never overflow.
        if self.session.in_flight() + self.session.completed() >= N {
            return Err(Error::InFlightFull { max: N });
        }
        let len = encode::publish_len(topic, payload, qos);
        self.session.check_room(len)?;
        let id = self.request_id()?;
        let (offset, len) = self.session.store(id, qos, len, |out| {
            encode::publish(topic, payload, qos, Some(id), retain, false, out).map_err(Error::from)
        })?;
        Ok((Some(id), Out::Outbox { offset, len }))
    }

    /// Sends what [`Client::start_publish`] queued (and pending
    /// acknowledgements) now, without waiting for the broker.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.usable()?;
        let mut program = Program::flush();
        self.run(&mut program).await.map(|_| ())
    }

    /// Whether packets are queued in the transport's write buffer, waiting
    /// for a flush (see [`Client::start_publish`]).
    pub fn has_unsent(&self) -> bool {
        self.unflushed
    }

    /// Subscribes to `filters` (any number up to [`MAX_FILTERS`], each with
    /// its maximum QoS) and returns the QoS the broker granted each. A
    /// refused filter (SUBACK 0x80) is [`Error::SubscriptionRefused`].
    pub async fn subscribe(&mut self, filters: &[(&str, QoS)]) -> Result<Granted, Error> {
        let id = self.start_request(filters.iter().map(|(f, _)| *f))?;
        let len = encode::subscribe(id, filters, self.tx)?;
        let (codes, count) = self.send_request(Request::Subscribe(id), len).await?;
        if count != filters.len() {
            self.broken = true;
            return Err(ProtocolError::SubackCountMismatch {
                expected: filters.len(),
                found: count,
            }
            .into());
        }
        let mut granted = Granted::new();
        for (index, (code, (filter, _))) in codes.iter().zip(filters).enumerate() {
            match code {
                Some(qos) => {
                    let _ = granted.push(*qos);
                }
                None => {
                    return Err(Error::subscription_refused(index, filter));
                }
            }
        }
        Ok(granted)
    }

    /// Unsubscribes from `filters` and waits for UNSUBACK (§3.10).
    pub async fn unsubscribe(&mut self, filters: &[&str]) -> Result<(), Error> {
        let id = self.start_request(filters.iter().copied())?;
        let len = encode::unsubscribe(id, filters, self.tx)?;
        self.send_request(Request::Unsubscribe(id), len)
            .await
            .map(|_| ())
    }

    /// Waits for the next event: an incoming message, the completion of a
    /// message sent with [`Client::start_publish`], or a message too large
    /// for the receive buffer. Sends PINGREQ when the keep-alive interval
    /// passes without traffic and fails with [`Error::KeepAliveTimeout`]
    /// when the broker does not answer within half an interval more.
    ///
    /// Packets queued by [`Client::start_publish`] (and acknowledgements)
    /// are flushed before `poll` waits. An event that has already arrived is
    /// returned without flushing first, for at most 16 reads in a row: a
    /// publisher that refills its window from each completion then sends
    /// the new messages together. Call [`Client::flush`] to send them now.
    ///
    /// Cancel-safe while it waits for the broker: dropping the future then
    /// loses nothing.
    pub async fn poll(&mut self) -> Result<Event<'_>, Error> {
        self.usable()?;
        let mut program = Program::poll();
        let done = self.run(&mut program).await?;
        self.event(done)
    }

    /// The event a poll ended with.
    fn event(&mut self, done: Done) -> Result<Event<'_>, Error> {
        Ok(match done {
            Done::Message(frame) => {
                let bytes = self.rx.buf.get(frame.start..frame.start + frame.len);
                match frame::decode(bytes.unwrap_or_default())? {
                    Incoming::Publish(publish) => Event::Message(publish),
                    other => {
                        return Err(ProtocolError::UnexpectedPacket(packet_type(&other)).into());
                    }
                }
            }
            Done::Published(id) => Event::Published(id),
            Done::Subscribed { packet_id, refused } => Event::Subscribed { packet_id, refused },
            Done::Unsubscribed(id) => Event::Unsubscribed(id),
            Done::TooLarge(skipped) => skipped.event(self.rx.buf.len()),
            // A poll ends with an event only.
            _ => return Err(Error::Disconnected),
        })
    }

    /// [`Client::poll`] until `deadline` (in the client timer's
    /// milliseconds): `Ok(None)` once the deadline has passed while waiting
    /// for the broker, an event if one comes first.
    ///
    /// Use it instead of racing `poll` against a timer: a future dropped
    /// while `poll` writes (an acknowledgement, a PINGREQ, queued messages)
    /// leaves half a packet behind and the connection unusable
    /// ([`Error::Disconnected`]); `poll_until` only stops where `poll` is
    /// cancel-safe, after its writes. Keep-alive runs as in `poll`.
    pub async fn poll_until(&mut self, deadline: Millis) -> Result<Option<Event<'_>>, Error> {
        self.usable()?;
        let mut program = Program::poll();
        // 0 is a read of only what is at hand; a deadline of 0 has passed.
        program.until = Some(deadline.max(1));
        match self.run(&mut program).await? {
            Done::Nothing => Ok(None),
            done => self.event(done).map(Some),
        }
    }

    /// Sends DISCONNECT (§3.14) and returns the transport, to be closed by
    /// the caller (for TLS: [`TlsStream::close`](crate::tls::TlsStream::close)).
    /// The broker then discards the Last Will.
    pub async fn disconnect(mut self) -> Result<T, Error> {
        self.usable()?;
        let mut program = Program::send(Out::Small(Reply::DISCONNECT), Wait::Nothing);
        self.run(&mut program).await?;
        Ok(self.transport)
    }

    /// The transport, for a caller that abandons the connection. QoS 0
    /// messages still queued (see [`Client::has_unsent`]) are not sent.
    pub fn into_transport(self) -> T {
        self.transport
    }

    /// Whether a previous error made the connection unusable.
    pub fn is_broken(&self) -> bool {
        self.broken
    }

    fn usable(&mut self) -> Result<(), Error> {
        if self.writing {
            self.broken = true;
        }
        if self.broken {
            Err(Error::Disconnected)
        } else {
            Ok(())
        }
    }

    /// Checks the filters of a SUBSCRIBE/UNSUBSCRIBE (nothing is sent if one
    /// is wrong) and picks its packet identifier.
    // Out of line: 44 bytes less flash on riscv32imc than inlined into
    // the `subscribe` future (measured).
    #[inline(never)]
    fn start_request<'f>(
        &mut self,
        filters: impl ExactSizeIterator<Item = &'f str>,
    ) -> Result<PacketId, Error> {
        self.usable()?;
        match filters.len() {
            0 => return Err(ConfigError::NoFilters.into()),
            n if n > MAX_FILTERS => return Err(Error::TooManyFilters { max: MAX_FILTERS }),
            _ => {}
        }
        for filter in filters {
            topic::validate_filter(filter)?;
        }
        self.request_id()
    }

    /// Sends the request encoded in `tx` and waits for its acknowledgement;
    /// after [`Error::AckPending`] it stays pending for `poll` to report.
    async fn send_request(
        &mut self,
        request: Request,
        len: usize,
    ) -> Result<(SubackCodes, usize), Error> {
        self.add_request(request);
        let waiting = match request {
            Request::Subscribe(id) => WaitFor::Suback(id),
            Request::Unsubscribe(id) => WaitFor::Unsuback(id),
        };
        let mut program = Program::send(Out::Tx(len), Wait::For(waiting));
        let result = self.run(&mut program).await;
        if !matches!(result, Err(Error::AckPending(_))) {
            self.take_request(request);
        }
        match result? {
            Done::Acknowledged(codes, count) => Ok((codes, count)),
            _ => Ok((SubackCodes::new(), 0)),
        }
    }

    /// Forgets a pending request; `true` if it was pending.
    /// (At most one entry per request: identifiers of pending requests are
    /// never handed out again, see `request_id`.)
    fn take_request(&mut self, request: Request) -> bool {
        match self.requests.iter().position(|r| *r == request) {
            Some(index) => {
                self.requests.remove(index);
                true
            }
            None => false,
        }
    }

    /// Remembers a SUBSCRIBE/UNSUBSCRIBE until its acknowledgement. A full
    /// list drops the oldest: a call that was cancelled (its future
    /// dropped) never removed its entry.
    fn add_request(&mut self, request: Request) {
        if self.requests.is_full() {
            self.requests.remove(0);
        }
        let _ = self.requests.push(request);
    }

    fn request_id(&mut self) -> Result<PacketId, Error> {
        let requests = &self.requests;
        self.session
            .next_id(|id| requests.iter().any(|r| request_id(r) == id))
            .ok_or(Error::InFlightFull { max: N })
    }

    /// Carries out `program`, polled in a frame of its own (see
    /// [`crate::stack`]): every public method runs through here, so the
    /// I/O state machine exists once in the code.
    async fn run(&mut self, program: &mut Program) -> Result<Done, Error> {
        let drive = core::pin::pin!(self.drive(program));
        crate::stack::separate(drive).await
    }

    /// The only place the client awaits I/O: asks [`Client::step`] (plain
    /// code, no I/O) what to do next, does it, and reports the outcome.
    async fn drive(&mut self, program: &mut Program) -> Result<Done, Error> {
        loop {
            match self.step(program)? {
                Io::Write(out) => {
                    let bytes = out.bytes(self.tx, self.session);
                    // `writing` stays set if this future is dropped
                    // halfway (half a packet may be in the buffer or on the
                    // wire: the next call refuses).
                    self.writing = true;
                    let written = self.transport.write_all(bytes).await;
                    written.inspect_err(|_| self.broken = true)?;
                    self.writing = false;
                    self.unflushed = true;
                }
                Io::Flush => {
                    self.reads_before_flush = 0;
                    self.writing = true;
                    let flushed = self.transport.flush().await;
                    flushed.inspect_err(|_| self.broken = true)?;
                    self.writing = false;
                    self.unflushed = false;
                    program.nothing_at_hand = false;
                    self.keep_alive.on_sent(self.timer.now());
                }
                Io::Read { until } => {
                    let filled = self.rx.filled;
                    let space = self.rx.buf.get_mut(filled..).unwrap_or_default();
                    let read = self.transport.read_before(space, until).await;
                    self.on_read(program, filled, read, until)?;
                }
                Io::Done(done) => return Ok(done),
            }
        }
    }

    /// Takes the result of a read of `rx[filled..]` that could stop at
    /// `until`.
    fn on_read(
        &mut self,
        program: &mut Program,
        filled: usize,
        read: Result<Option<usize>, Error>,
        until: Millis,
    ) -> Result<(), Error> {
        match read {
            Ok(Some(0)) => {
                self.broken = true;
                Err(Error::ConnectionClosed)
            }
            Ok(Some(n)) => {
                // `Transport` is a public trait: a count beyond the space
                // offered must not index past `rx`.
                let n = n.min(self.rx.buf.len().saturating_sub(filled));
                self.keep_alive.on_received(self.timer.now());
                program.nothing_at_hand = false;
                // Discard bytes of a skipped packet.
                let drop = n.min(self.rx.skip);
                if drop > 0 {
                    self.rx.buf.copy_within(filled + drop..filled + n, filled);
                    self.rx.skip -= drop;
                }
                self.rx.filled += n - drop;
                Ok(())
            }
            // Only what was at hand was asked for, and there was nothing.
            Ok(None) if until == 0 && self.unflushed => {
                program.nothing_at_hand = true;
                Ok(())
            }
            Ok(None) => {
                program.reply = self.on_timer(program.wait)?;
                program.urgent = program.reply.is_some();
                // The caller's deadline (`poll_until`): done once a PINGREQ
                // due at the same time has left.
                if program.until.is_some_and(|until| self.timer.now() >= until) {
                    program.done = Some(Done::Nothing);
                }
                Ok(())
            }
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// The next thing `program` needs, deciding everything that needs no
    /// I/O on the way: finishing the last delivery, the packet to send,
    /// the flush, and every packet already in `rx` (its reply queued next).
    fn step(&mut self, program: &mut Program) -> Result<Io, Error> {
        if let Some(reply) = program.reply.take() {
            return Ok(Io::Write(Out::Small(reply)));
        }
        if program.urgent {
            program.urgent = false;
            return Ok(Io::Flush);
        }
        if let Some(done) = program.done.take() {
            return Ok(Io::Done(done));
        }
        if !program.started {
            program.started = true;
            // Completes the delivery of the message the last `poll`
            // returned: its frame goes, its acknowledgement is queued; it
            // leaves with the next flush, which every wait for the broker
            // starts with (§4.3.2, §4.3.3).
            if let Some(Delivered { len, ack }) = self.delivered.take() {
                self.rx.remove(0, len);
                if let Some((kind, id)) = ack {
                    return Ok(Io::Write(Out::Small(Reply::ack(kind, id))));
                }
            }
        }
        if let Some(out) = program.write.take() {
            return Ok(Io::Write(out));
        }
        if let Some(index) = program.resend {
            // Every unacknowledged message again, in order (§4.4).
            program.resend = Some(index + 1);
            let resend = self.session.resends().nth(index);
            match resend {
                Some(Resend::Publish { offset, len }) => {
                    self.session.set_dup(offset);
                    program.resent += 1;
                    return Ok(Io::Write(Out::Outbox { offset, len }));
                }
                Some(Resend::Pubrel(id)) => {
                    program.resent += 1;
                    return Ok(Io::Write(Out::Small(Reply::ack(Ack::Pubrel, id))));
                }
                None => program.resend = None,
            }
        }
        if program.flush {
            program.flush = false;
            return Ok(Io::Flush);
        }
        let waiting = match program.wait {
            Wait::Nothing => return Ok(Io::Done(Done::Nothing)),
            Wait::Event => {
                if let Some(id) = self.session.take_completed() {
                    return Ok(Io::Done(Done::Published(id)));
                }
                if let Some(skipped) = self.too_large.pop_front() {
                    return Ok(Io::Done(Done::TooLarge(skipped)));
                }
                None
            }
            Wait::For(waiting) => Some(waiting),
            Wait::Connack(_) => None,
        };
        loop {
            let frame = match self.next_frame(program.wait) {
                Ok(AtHand::Frame(frame)) => Some(frame),
                Ok(AtHand::Skipped(ack)) => {
                    if let Wait::Connack(_) = program.wait {
                        // An oversized PUBLISH before CONNACK.
                        self.broken = true;
                        return Err(ProtocolError::UnexpectedPacket(PacketType::Publish).into());
                    }
                    if let Wait::Event = program.wait {
                        // Reported now, not after the rest of it arrives.
                        program.done = self.too_large.pop_front().map(Done::TooLarge);
                    }
                    program.urgent = ack.is_some();
                    program.reply = ack;
                    None
                }
                Ok(AtHand::Incomplete) => return self.need_bytes(program),
                Err(Error::AckPending(_)) if let Some(waiting) = waiting => {
                    return Err(Error::AckPending(waiting.id()));
                }
                Err(e) => return Err(e),
            };
            match (frame, program.wait) {
                (None, _) | (_, Wait::Nothing) => {}
                (Some(frame), Wait::Connack(_)) => return self.on_connack(frame).map(Io::Done),
                (Some(frame), Wait::Event) => self.on_event_frame(program, frame)?,
                (Some(frame), Wait::For(waiting)) => {
                    self.on_frame_while_waiting(program, waiting, frame)?;
                }
            }
            // What the frame asks for goes first (as at the top).
            if let Some(reply) = program.reply.take() {
                return Ok(Io::Write(Out::Small(reply)));
            }
            if let Some(done) = program.done.take() {
                return Ok(Io::Done(done));
            }
        }
    }

    /// The frame a wait handles next: polling, the oldest message kept in
    /// `rx` while something else was awaited, else the one after them.
    fn next_frame(&mut self, wait: Wait) -> Result<AtHand, Error> {
        if let Wait::Event = wait
            && self.rx.queued > 0
        {
            let header = FixedHeader::parse(&self.rx.buf[..self.rx.queued])?
                .ok_or(ProtocolError::Truncated)?;
            return Ok(AtHand::Frame(FrameAt {
                start: 0,
                len: header.frame_len(),
            }));
        }
        self.frame_at_hand()
    }

    /// Nothing (more) in `rx`: what is at hand is read before queued
    /// packets are flushed, then they are flushed, then the read waits
    /// (until CONNACK's or the keep-alive deadline).
    #[inline(never)]
    fn need_bytes(&mut self, program: &mut Program) -> Result<Io, Error> {
        if self.rx.filled >= self.rx.buf.len() {
            // Cannot happen: a frame larger than the buffer is skipped.
            self.broken = true;
            return Err(Error::FrameTooLarge {
                packet: PacketType::Publish,
                size: self.rx.buf.len() + 1,
                capacity: self.rx.buf.len(),
            });
        }
        if self.unflushed {
            // What already arrived is taken before queued packets are
            // flushed: a pipelining publisher then refills its window from
            // every acknowledgement at hand and sends the new messages
            // together (docs/PERFORMANCE.md, "QoS 1"). A read whose
            // deadline has passed takes only what is there (nothing is
            // lost when it stops); `MAX_READS_BEFORE_FLUSH` bounds how long
            // a stream of incoming packets can hold the queued ones back.
            if !program.nothing_at_hand && self.reads_before_flush < MAX_READS_BEFORE_FLUSH {
                self.reads_before_flush += 1;
                return Ok(Io::Read { until: 0 });
            }
            // About to wait for the broker: what was queued leaves now, in
            // as few records as the write buffer allows.
            return Ok(Io::Flush);
        }
        let until = match program.wait {
            Wait::Connack(deadline) => deadline,
            _ => self
                .keep_alive
                .deadline()
                .min(program.until.unwrap_or(Millis::MAX)),
        };
        Ok(Io::Read { until })
    }

    /// The frame a connect waits for: CONNACK, and nothing before it (§3.2).
    // Out of line, like the other frame handlers below: inlined, their
    // `Result`s (an `Error` is 352 bytes on x86_64) made `step`'s frame
    // 1,256 bytes instead of 424, and the firmware 100 bytes larger.
    #[inline(never)]
    fn on_connack(&mut self, frame: FrameAt) -> Result<Done, Error> {
        let connack = match self.decode(frame)? {
            Incoming::Connack {
                session_present,
                code,
            } => Ok(Done::Connack {
                session_present,
                code,
            }),
            other => Err(ProtocolError::UnexpectedPacket(packet_type(&other))),
        };
        let done = connack.inspect_err(|_| self.broken = true)?;
        self.rx.remove(frame.start, frame.len);
        Ok(done)
    }

    /// A frame while polling: the event it makes, if any, and its reply.
    #[inline(never)]
    fn on_event_frame(&mut self, program: &mut Program, frame: FrameAt) -> Result<(), Error> {
        match self.classify(frame)? {
            Classified::Publish { qos, id } => match self.incoming_ack(qos, id)? {
                // A QoS 2 message delivered before: acknowledge, do not deliver.
                IncomingAck::Duplicate(pubrec) => {
                    self.rx.remove(frame.start, frame.len);
                    program.reply = Some(pubrec);
                }
                IncomingAck::Deliver(ack) => {
                    // Delivered frames are at the front: either the oldest
                    // kept one, or one read into an empty queue.
                    debug_assert_eq!(frame.start, 0);
                    self.delivered = Some(Delivered {
                        len: frame.len,
                        ack,
                    });
                    program.done = Some(Done::Message(frame));
                }
            },
            Classified::Suback { id, codes, .. } => {
                self.rx.remove(frame.start, frame.len);
                // Reported if a `subscribe()` gave up waiting for it
                // (AckPending); a cancelled one's is ignored.
                if self.take_request(Request::Subscribe(id)) {
                    let refused = codes.iter().position(Option::is_none);
                    if self.connect_subscription == Some(id) {
                        self.connect_subscription = None;
                        if refused.is_none() {
                            self.session.set_subscribed();
                        }
                    }
                    program.done = Some(Done::Subscribed {
                        packet_id: id,
                        refused,
                    });
                }
            }
            Classified::Control(control) => {
                self.rx.remove(frame.start, frame.len);
                let (done, reply) = self.handle_control(control)?;
                program.reply = reply;
                program.done = match done {
                    Some(Completed::Message(id)) => Some(Done::Published(id)),
                    Some(Completed::Unsubscribe(id))
                        if self.take_request(Request::Unsubscribe(id)) =>
                    {
                        Some(Done::Unsubscribed(id))
                    }
                    _ => None,
                };
            }
        }
        Ok(())
    }

    /// A frame while waiting for `waiting`: PUBLISH frames (and the
    /// acknowledgements of requests that gave up) are kept, in order, for
    /// `poll`; other completions are recorded for it.
    #[inline(never)]
    fn on_frame_while_waiting(
        &mut self,
        program: &mut Program,
        waiting: WaitFor,
        frame: FrameAt,
    ) -> Result<(), Error> {
        let end = frame.start + frame.len;
        match self.classify(frame)? {
            Classified::Publish { .. } => self.rx.queued = end,
            Classified::Suback { id, codes, count } => {
                if waiting == WaitFor::Suback(id) {
                    self.rx.remove(frame.start, frame.len);
                    program.done = Some(Done::Acknowledged(codes, count));
                } else if self.requests.contains(&Request::Subscribe(id)) {
                    self.rx.queued = end;
                } else {
                    self.rx.remove(frame.start, frame.len);
                }
            }
            Classified::Control(Control::Unsuback(id))
                if waiting != WaitFor::Unsuback(id)
                    && self.requests.contains(&Request::Unsubscribe(id)) =>
            {
                self.rx.queued = end;
            }
            Classified::Control(control) => {
                self.rx.remove(frame.start, frame.len);
                let (done, reply) = self.handle_control(control)?;
                program.reply = reply;
                match (done, waiting) {
                    (Some(Completed::Message(id)), WaitFor::Completion(w)) if id == w => {
                        program.done = Some(Done::Acknowledged(SubackCodes::new(), 0));
                    }
                    (Some(Completed::Unsubscribe(id)), WaitFor::Unsuback(w)) if id == w => {
                        program.done = Some(Done::Acknowledged(SubackCodes::new(), 0));
                    }
                    (Some(Completed::Message(id)), _) => {
                        // Someone else's: `poll` reports it. There is room:
                        // `start_publish` counts these as in flight.
                        self.session.push_completed(id);
                    }
                    _ => {}
                }
            }
        }
        Ok(())
    }

    fn incoming_ack(&mut self, qos: QoS, id: Option<PacketId>) -> Result<IncomingAck, Error> {
        Ok(match (qos, id) {
            (QoS::AtLeastOnce, Some(id)) => IncomingAck::Deliver(Some((Ack::Puback, id))),
            (QoS::ExactlyOnce, Some(id)) => {
                let is_new = self
                    .session
                    .on_incoming_qos2(id)
                    .inspect_err(|_| self.broken = true)?;
                if is_new {
                    IncomingAck::Deliver(Some((Ack::Pubrec, id)))
                } else {
                    IncomingAck::Duplicate(Reply::ack(Ack::Pubrec, id))
                }
            }
            _ => IncomingAck::Deliver(None),
        })
    }

    /// Decodes a frame into owned values, so the buffer can change.
    fn classify(&mut self, frame: FrameAt) -> Result<Classified, ProtocolError> {
        Ok(match self.decode(frame)? {
            Incoming::Publish(p) => Classified::Publish {
                qos: p.qos,
                id: p.packet_id,
            },
            Incoming::Suback { packet_id, codes } => {
                let mut granted = SubackCodes::new();
                for &code in codes {
                    let code = match frame::suback_code(code)? {
                        crate::mqtt::SubackCode::Granted(qos) => Some(qos),
                        crate::mqtt::SubackCode::Failure => None,
                    };
                    let _ = granted.push(code);
                }
                Classified::Suback {
                    id: packet_id,
                    codes: granted,
                    count: codes.len(),
                }
            }
            Incoming::Connack { .. } => Classified::Control(Control::Connack),
            Incoming::Puback(id) => Classified::Control(Control::Puback(id)),
            Incoming::Pubrec(id) => Classified::Control(Control::Pubrec(id)),
            Incoming::Pubrel(id) => Classified::Control(Control::Pubrel(id)),
            Incoming::Pubcomp(id) => Classified::Control(Control::Pubcomp(id)),
            Incoming::Unsuback(id) => Classified::Control(Control::Unsuback(id)),
            Incoming::Pingresp => Classified::Control(Control::Pingresp),
        })
    }

    /// Handles a packet other than PUBLISH and SUBACK (already removed
    /// from the buffer): what it completed, and the acknowledgement to
    /// queue in answer. Synchronous (the caller queues), so that a PUBACK
    /// builds no future.
    fn handle_control(
        &mut self,
        control: Control,
    ) -> Result<(Option<Completed>, Option<Reply>), ProtocolError> {
        Ok(match control {
            Control::Puback(id) => (
                self.session.on_puback(id).then_some(Completed::Message(id)),
                None,
            ),
            Control::Pubrec(id) => {
                // PUBREL also for an unknown identifier: the broker must be
                // able to finish its side (§4.3.3).
                self.session.on_pubrec(id);
                (None, Some(Reply::ack(Ack::Pubrel, id)))
            }
            Control::Pubcomp(id) => (
                self.session
                    .on_pubcomp(id)
                    .then_some(Completed::Message(id)),
                None,
            ),
            Control::Pubrel(id) => {
                // "MUST respond to a PUBREL packet by sending a PUBCOMP" (§4.3.3).
                self.session.on_pubrel(id);
                (None, Some(Reply::ack(Ack::Pubcomp, id)))
            }
            // Its arrival already answered the PINGREQ (`on_read`).
            Control::Pingresp => (None, None),
            Control::Unsuback(id) => (Some(Completed::Unsubscribe(id)), None),
            Control::Connack => {
                self.broken = true;
                return Err(ProtocolError::UnexpectedPacket(PacketType::Connack));
            }
        })
    }

    fn decode(&mut self, frame: FrameAt) -> Result<Incoming<'_>, ProtocolError> {
        let bytes = self
            .rx
            .buf
            .get(frame.start..frame.start + frame.len)
            .ok_or(ProtocolError::Truncated)?;
        match frame::decode(bytes) {
            Ok(packet) => Ok(packet),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// What the receive buffer holds at `rx.queued`: a whole frame, a
    /// message too large for it (skipped here, with the acknowledgement it
    /// is owed), or not enough yet.
    // Out of line: 74 bytes less flash on riscv32imc than inlined into
    // `next_frame` and `step` (measured).
    #[inline(never)]
    fn frame_at_hand(&mut self) -> Result<AtHand, Error> {
        let start = self.rx.queued;
        let available = self.rx.filled - start;
        let header = FixedHeader::parse(&self.rx.buf[start..self.rx.filled]);
        let header = match header {
            Ok(header) => header,
            Err(e) => {
                self.broken = true;
                return Err(e.into());
            }
        };
        if let Some(header) = header {
            let len = header.frame_len();
            if len <= available {
                return Ok(AtHand::Frame(FrameAt { start, len }));
            }
            if len > self.rx.buf.len() {
                if start > 0 || self.too_large.is_full() {
                    // Let `poll` deliver the queued messages and
                    // reports first; nothing was consumed.
                    return Err(Error::AckPending(QUEUE_FULL));
                }
                return self.skip_oversized(header);
            } else if len > self.rx.buf.len() - start {
                // Fits once the queued messages are delivered.
                return Err(Error::AckPending(QUEUE_FULL));
            }
        }
        if start > 0 && self.rx.filled == self.rx.buf.len() {
            // Queued messages fill the buffer: `poll` must deliver them.
            return Err(Error::AckPending(QUEUE_FULL));
        }
        Ok(AtHand::Incomplete)
    }

    /// A packet larger than the receive buffer: reads what identifies it,
    /// reports it, acknowledges it and discards the rest as it arrives.
    /// [`AtHand::Incomplete`] while more bytes are needed to identify it.
    #[inline(never)]
    fn skip_oversized(&mut self, header: FixedHeader) -> Result<AtHand, Error> {
        let capacity = self.rx.buf.len();
        let size = header.frame_len();
        if header.packet_type != PacketType::Publish {
            self.broken = true;
            return Err(Error::FrameTooLarge {
                packet: header.packet_type,
                size,
                capacity,
            });
        }
        let qos = match (header.flags >> 1) & 0b11 {
            0 => QoS::AtMostOnce,
            1 => QoS::AtLeastOnce,
            2 => QoS::ExactlyOnce,
            _ => {
                self.broken = true;
                return Err(ProtocolError::InvalidFlags {
                    packet: PacketType::Publish,
                    flags: header.flags,
                }
                .into());
            }
        };
        let data = &self.rx.buf[..self.rx.filled];
        // Topic length, topic, packet identifier (§3.3.2).
        let body = data.get(header.header_len..).unwrap_or_default();
        let packet_id = if qos == QoS::AtMostOnce || header.header_len + 2 > capacity {
            None
        } else {
            let Some(&[hi, lo]) = body.get(..2) else {
                return Ok(AtHand::Incomplete);
            };
            let id_at = 2 + usize::from(u16::from_be_bytes([hi, lo]));
            if header.header_len + id_at + 2 > capacity {
                // The topic alone is larger than the buffer: unidentifiable.
                None
            } else {
                match body.get(id_at..id_at + 2) {
                    Some(&[hi, lo]) => PacketId::new(u16::from_be_bytes([hi, lo])),
                    _ => return Ok(AtHand::Incomplete),
                }
            }
        };
        // Record QoS 2 state before anything changes: an error here leaves
        // the connection consistent (and broken).
        if let (QoS::ExactlyOnce, Some(id)) = (qos, packet_id) {
            self.session
                .on_incoming_qos2(id)
                .inspect_err(|_| self.broken = true)?;
        }
        self.rx.skip = size - self.rx.filled;
        self.rx.filled = 0;
        // `frame_at_hand` checked there is room.
        let _ = self.too_large.push_back(TooLarge {
            // `FixedHeader` caps the remaining length at 268,435,455 (§2.2.3).
            size: u32::try_from(size).unwrap_or(u32::MAX),
            qos,
            packet_id,
        });
        Ok(AtHand::Skipped(match (qos, packet_id) {
            (QoS::AtLeastOnce, Some(id)) => Some(Reply::ack(Ack::Puback, id)),
            (QoS::ExactlyOnce, Some(id)) => Some(Reply::ack(Ack::Pubrec, id)),
            _ => None,
        }))
    }

    /// A wait reached its deadline: CONNACK is late, or keep-alive wants a
    /// PINGREQ (returned, to be queued next) or gives up.
    fn on_timer(&mut self, wait: Wait) -> Result<Option<Reply>, Error> {
        let now = self.timer.now();
        if let Wait::Connack(deadline) = wait {
            if now >= deadline {
                self.broken = true;
                return Err(Error::ConnackTimeout);
            }
            return Ok(None);
        }
        match self.keep_alive.due(now) {
            Due::Nothing => Ok(None),
            Due::Dead => {
                self.broken = true;
                Err(Error::KeepAliveTimeout)
            }
            Due::Ping => {
                // Written and flushed next (`Program::urgent`).
                self.keep_alive.on_ping_sent(now);
                Ok(Some(Reply::PINGREQ))
            }
        }
    }
}

impl<'b, 's, S, TM, const N: usize> Client<'b, 's, crate::tls::TlsStream<'b, S, TM>, TM, N>
where
    S: embedded_io_async::Read + embedded_io_async::Write + 'b,
    TM: Timer + 'b,
{
    /// Opens TLS over a connected `socket` (trusting the server as
    /// `tls_options` says), then MQTT as [`Client::connect`] does.
    ///
    /// TLS reads stop at keep-alive deadlines without losing data (see
    /// [`crate::tls::connect_with_timer`]); the deadline lives in `session`.
    #[allow(clippy::too_many_arguments)]
    pub async fn connect_tls<R>(
        socket: S,
        rng: &mut R,
        tls_options: &crate::tls::TlsOptions<'_>,
        timer: TM,
        session: &'b mut Session<'s, N>,
        buffers: Buffers<'b>,
        options: &ConnectOptions<'_>,
    ) -> Result<(Self, Connected), Error>
    where
        R: rand_core::RngCore + rand_core::CryptoRng,
    {
        options.check()?;
        let (state, deadline) = session.split();
        // Each step polled in a frame of its own: inlined into one, their
        // temporaries would all be on the stack at once (crate::stack).
        let stream = {
            let tls = core::pin::pin!(crate::tls::connect_with_timer(
                socket,
                deadline,
                timer.clone(),
                buffers.tls_read,
                buffers.tls_write,
                rng,
                tls_options,
            ));
            crate::stack::separate(tls).await?
        };
        let mqtt = core::pin::pin!(Self::connect_with_state(
            stream, timer, state, buffers.rx, buffers.tx, options,
        ));
        crate::stack::separate(mqtt).await
    }
}

/// Bytes to write: where a packet is.
#[derive(Debug, Clone, Copy)]
enum Out {
    /// The first bytes of `tx` (QoS 0 PUBLISH, CONNECT, SUBSCRIBE, ...).
    Tx(usize),
    /// In the session's outbox (QoS 1/2 PUBLISH).
    Outbox { offset: usize, len: usize },
    /// A packet of at most 4 bytes, carried here.
    Small(Reply),
}

impl Out {
    /// The bytes (a function of the two fields, not of the client, so the
    /// client's other fields stay free to write them).
    fn bytes<'a, const N: usize>(
        &'a self,
        tx: &'a [u8],
        session: &'a SessionState<'_, N>,
    ) -> &'a [u8] {
        match self {
            Out::Tx(len) => tx.get(..*len).unwrap_or_default(),
            Out::Outbox { offset, len } => session.stored(*offset, *len),
            Out::Small(reply) => reply.bytes(),
        }
    }
}

/// What one run of [`Client::drive`] does, in this order: finish the
/// delivery of the message the last `poll` returned, write `write`, resend
/// the session (from `resend`), flush if `flush`, then wait as `wait` says.
#[derive(Debug)]
struct Program {
    started: bool,
    write: Option<Out>,
    /// The next of `SessionState::resends` to send again.
    resend: Option<usize>,
    /// How many were.
    resent: usize,
    flush: bool,
    wait: Wait,
    /// A reply decided while handling a frame (or a PINGREQ), written next.
    reply: Option<Reply>,
    /// Flush right after `reply`: PINGREQ, and the acknowledgement of a
    /// skipped message, leave at once (an event returned next could leave
    /// them queued until the application's next call).
    urgent: bool,
    /// The outcome, returned once `reply` is written.
    done: Option<Done>,
    /// An at-hand read found nothing: flush, then wait.
    nothing_at_hand: bool,
    /// `poll_until`'s deadline: the wait for an event ends then.
    until: Option<Millis>,
}

impl Program {
    const fn new(write: Option<Out>, flush: bool, wait: Wait) -> Self {
        Self {
            started: false,
            write,
            resend: None,
            resent: 0,
            flush,
            wait,
            reply: None,
            urgent: false,
            done: None,
            nothing_at_hand: false,
            until: None,
        }
    }

    /// Sends a packet now, then waits as `wait` says.
    const fn send(out: Out, wait: Wait) -> Self {
        Self::new(Some(out), true, wait)
    }

    /// Queues a packet: it leaves with the next flush.
    const fn queue(out: Out) -> Self {
        Self::new(Some(out), false, Wait::Nothing)
    }

    /// Sends what is queued.
    const fn flush() -> Self {
        Self::new(None, true, Wait::Nothing)
    }

    /// Sends the session's unacknowledged messages again.
    const fn resend() -> Self {
        let mut program = Self::new(None, true, Wait::Nothing);
        program.resend = Some(0);
        program
    }

    /// Waits for the next event (`poll`).
    const fn poll() -> Self {
        Self::new(None, false, Wait::Event)
    }
}

/// What a [`Program`] waits for once its packets are out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    Nothing,
    /// CONNACK, until this time.
    Connack(Millis),
    /// The next event for `poll`.
    Event,
    /// An acknowledgement; PUBLISH frames are kept for `poll` meanwhile.
    For(WaitFor),
}

/// The I/O [`Client::step`] asks [`Client::drive`] for.
#[derive(Debug)]
enum Io {
    /// Queue these bytes in the transport's write buffer.
    Write(Out),
    /// Send what is queued.
    Flush,
    /// Read into `rx`, stopping at `until` (0: only what is at hand).
    Read { until: Millis },
    /// The program is done.
    Done(Done),
}

/// How a [`Program`] ended.
#[derive(Debug)]
enum Done {
    /// It waited for nothing.
    Nothing,
    /// CONNACK.
    Connack {
        session_present: bool,
        code: ConnackCode,
    },
    /// The acknowledgement awaited (with the SUBACK codes and their count,
    /// for a SUBSCRIBE).
    Acknowledged(SubackCodes, usize),
    /// Polling: a message, delivered from this frame.
    Message(FrameAt),
    /// Polling: a QoS 1/2 message of ours is complete.
    Published(PacketId),
    /// Polling: the SUBACK of a SUBSCRIBE that gave up waiting.
    Subscribed {
        packet_id: PacketId,
        refused: Option<usize>,
    },
    /// Polling: the UNSUBACK of an UNSUBSCRIBE that gave up waiting.
    Unsubscribed(PacketId),
    /// Polling: a message too large for the receive buffer was skipped.
    TooLarge(TooLarge),
}

/// What handling a control packet completed.
#[derive(Debug, Clone, Copy)]
enum Completed {
    /// A QoS 1/2 message of ours.
    Message(PacketId),
    /// An UNSUBSCRIBE.
    Unsubscribe(PacketId),
}

/// SUBACK return codes: `None` for a refusal (0x80).
type SubackCodes = Vec<Option<QoS>, MAX_FILTERS>;

/// A frame decoded into owned values.
enum Classified {
    Publish {
        qos: QoS,
        id: Option<PacketId>,
    },
    Suback {
        id: PacketId,
        codes: SubackCodes,
        count: usize,
    },
    Control(Control),
}

/// Packets other than PUBLISH and SUBACK.
#[derive(Debug, Clone, Copy)]
enum Control {
    Connack,
    Puback(PacketId),
    Pubrec(PacketId),
    Pubrel(PacketId),
    Pubcomp(PacketId),
    Unsuback(PacketId),
    Pingresp,
}

enum IncomingAck {
    Deliver(Option<(Ack, PacketId)>),
    Duplicate(Reply),
}

fn request_id(request: &Request) -> PacketId {
    match request {
        Request::Subscribe(id) | Request::Unsubscribe(id) => *id,
    }
}

fn packet_type(packet: &Incoming<'_>) -> PacketType {
    match packet {
        Incoming::Connack { .. } => PacketType::Connack,
        Incoming::Publish(_) => PacketType::Publish,
        Incoming::Puback(_) => PacketType::Puback,
        Incoming::Pubrec(_) => PacketType::Pubrec,
        Incoming::Pubrel(_) => PacketType::Pubrel,
        Incoming::Pubcomp(_) => PacketType::Pubcomp,
        Incoming::Suback { .. } => PacketType::Suback,
        Incoming::Unsuback(_) => PacketType::Unsuback,
        Incoming::Pingresp => PacketType::Pingresp,
    }
}

/// Stands for "the receive buffer is full of messages for `poll`" inside
/// `frame_at_hand`; waiting methods replace it by their own identifier.
const QUEUE_FULL: PacketId = match PacketId::new(1) {
    Some(id) => id,
    None => panic!("1 is a packet identifier"),
};
