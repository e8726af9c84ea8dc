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
/// (see `Client::read_more`): bounds the delay a stream of incoming
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

/// A control packet of at most 4 bytes the read path answers with.
#[derive(Debug, Clone, Copy)]
struct Reply {
    bytes: [u8; 4],
    len: u8,
}

impl Reply {
    const PINGREQ: Self = Self {
        bytes: [encode::PINGREQ[0], encode::PINGREQ[1], 0, 0],
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

/// What `read_frame` found.
#[derive(Debug, Clone, Copy)]
enum Read {
    /// A whole frame at this place in the receive buffer.
    Frame(FrameAt),
    /// A message too large for the buffer was skipped and queued as a report.
    Skipped,
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
    /// `read_more`); reset by every flush.
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

/// Writes one whole packet, `$bytes` (which may borrow a field of the
/// client, hence a macro rather than a method), into the transport's
/// buffer; it leaves at the next flush. `writing` stays set if the future
/// is dropped halfway (half a packet may be in the buffer or on the wire:
/// the next call refuses); `broken` is set on an error. Written out here
/// rather than as an async function, so that the publish path does not
/// build and move one more future per message.
macro_rules! queue_field {
    ($client:ident, $bytes:expr) => {{
        $client.writing = true;
        let written = $client.transport.write_all($bytes).await;
        written.inspect_err(|_| $client.broken = true)?;
        $client.writing = false;
        $client.unflushed = true;
    }};
}

/// The steps of [`Client::start_publish`], shared with [`Client::publish`]
/// as a macro: `publish` awaiting `start_publish` would build and move one
/// more future per message. Evaluates to the packet identifier.
macro_rules! queue_publish {
    ($client:ident, $topic:expr, $payload:expr, $qos:expr, $retain:expr) => {{
        $client.usable()?;
        if $client.delivered.is_some() {
            $client.finish_delivery().await?;
        }
        let (id, encoded) = $client.encode_publish($topic, $payload, $qos, $retain)?;
        let bytes = encoded.bytes($client.tx, $client.session);
        queue_field!($client, bytes);
        id
    }};
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
        client.send_tx(len).await?;

        let deadline = client
            .timer
            .now()
            .saturating_add(options.connect_timeout_ms);
        let frame = match client.read_frame(Some(deadline)).await? {
            Read::Frame(frame) => frame,
            // An oversized PUBLISH before CONNACK.
            Read::Skipped => {
                client.broken = true;
                return Err(ProtocolError::UnexpectedPacket(PacketType::Publish).into());
            }
        };
        let connack = match client.decode(frame)? {
            Incoming::Connack {
                session_present,
                code,
            } => Ok((session_present, code)),
            // Nothing may come before CONNACK (§3.2).
            other => Err(ProtocolError::UnexpectedPacket(packet_type(&other))),
        };
        let (session_present, code) = match connack {
            Ok(connack) => connack,
            Err(e) => {
                client.broken = true;
                return Err(e.into());
            }
        };
        client.rx.remove(frame.start, frame.len);
        if code != ConnackCode::Accepted {
            client.broken = true;
            return Err(Error::ConnectionRefused(code));
        }

        if !session_present {
            // The broker forgot us: its QoS 2 receive state is gone too.
            client.session.forget_incoming();
        }
        // A clean session starts from nothing [MQTT-3.1.2-6]: messages still
        // in flight from before are not resent, and are dropped (and
        // counted in `Connected`) only once this connect has succeeded, so a
        // failed attempt loses nothing.
        let resent = if options.clean_session {
            0
        } else {
            client.resend_in_flight().await?
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

    /// Sends every unacknowledged message again (§4.4).
    async fn resend_in_flight(&mut self) -> Result<usize, Error> {
        let mut count = 0;
        // Collect first: sending borrows the session's outbox.
        let mut resends: Vec<Resend, N> = Vec::new();
        for resend in self.session.resends() {
            let _ = resends.push(resend);
        }
        self.writing = true;
        for resend in resends {
            match resend {
                Resend::Publish { offset, len } => {
                    self.session.set_dup(offset);
                    let bytes = self.session.stored(offset, len);
                    self.transport
                        .write_all(bytes)
                        .await
                        .inspect_err(|_| self.broken = true)?;
                }
                Resend::Pubrel(id) => {
                    self.transport
                        .write_all(&encode::ack(Ack::Pubrel, id))
                        .await
                        .inspect_err(|_| self.broken = true)?;
                }
            }
            count += 1;
        }
        self.flush_pending().await?;
        Ok(count)
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
        let id = queue_publish!(self, topic, payload, qos, retain);
        self.flush_pending().await?;
        match id {
            None => Ok(()),
            Some(id) => {
                self.wait_for(WaitFor::Completion(id)).await?;
                Ok(())
            }
        }
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
        Ok(queue_publish!(self, topic, payload, qos, retain))
    }

    /// Checks and encodes a PUBLISH: QoS 0 into `tx`, QoS 1/2 into the
    /// session's outbox (from here on it is in flight). Synchronous, so
    /// that the publish paths await the transport only.
    fn encode_publish(
        &mut self,
        topic: &str,
        payload: &[u8],
        qos: QoS,
        retain: bool,
    ) -> Result<(Option<PacketId>, Encoded), Error> {
        topic::validate_name(topic)?;
        self.limits.check_publish(topic, qos)?;
        if qos == QoS::AtMostOnce {
            let written = encode::publish(topic, payload, qos, None, retain, false, self.tx)?;
            return Ok((None, Encoded::Tx(written)));
        }
        // A completion not yet reported by `poll` still takes a place, so
        // that the completions queue can never overflow.
        if self.session.in_flight() + self.session.completed() >= N {
            return Err(Error::InFlightFull { max: N });
        }
        let len = encode::publish_len(topic, payload, qos);
        self.session.check_room(len)?;
        let requests = &self.requests;
        let id = self
            .session
            .next_id(|id| requests.iter().any(|r| request_id(r) == id))
            .ok_or(Error::InFlightFull { max: N })?;
        let (offset, len) = self.session.store(id, qos, len, |out| {
            encode::publish(topic, payload, qos, Some(id), retain, false, out).map_err(Error::from)
        })?;
        Ok((Some(id), Encoded::Outbox { offset, len }))
    }

    /// Sends what [`Client::start_publish`] queued (and pending
    /// acknowledgements) now, without waiting for the broker.
    pub async fn flush(&mut self) -> Result<(), Error> {
        self.usable()?;
        if self.delivered.is_some() {
            self.finish_delivery().await?;
        }
        self.flush_pending().await
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
        let id = self.start_request(filters.iter().map(|(f, _)| *f)).await?;
        let len = encode::subscribe(id, filters, self.tx)?;
        let result = self.send_request(Request::Subscribe(id), len).await;
        let (codes, count) = result?;
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
                    return Err(Error::SubscriptionRefused {
                        index,
                        filter: crate::error::truncated(filter),
                    });
                }
            }
        }
        Ok(granted)
    }

    /// Unsubscribes from `filters` and waits for UNSUBACK (§3.10).
    pub async fn unsubscribe(&mut self, filters: &[&str]) -> Result<(), Error> {
        let id = self.start_request(filters.iter().copied()).await?;
        let len = encode::unsubscribe(id, filters, self.tx)?;
        let result = self.send_request(Request::Unsubscribe(id), len).await;
        result.map(|_| ())
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
        if self.delivered.is_some() {
            self.finish_delivery().await?;
        }
        if let Some(id) = self.session.take_completed() {
            return Ok(Event::Published(id));
        }
        if let Some(skipped) = self.too_large.pop_front() {
            return Ok(skipped.event(self.rx.buf.len()));
        }
        loop {
            let frame = if self.rx.queued > 0 {
                // The oldest message kept while waiting for an acknowledgement.
                let header = FixedHeader::parse(&self.rx.buf[..self.rx.queued])?
                    .ok_or(ProtocolError::Truncated)?;
                FrameAt {
                    start: 0,
                    len: header.frame_len(),
                }
            } else {
                match self.read_frame(None).await? {
                    Read::Frame(frame) => frame,
                    Read::Skipped => match self.too_large.pop_front() {
                        Some(skipped) => return Ok(skipped.event(self.rx.buf.len())),
                        None => continue,
                    },
                }
            };
            match self.classify(frame)? {
                Classified::Publish { qos, id } => match self.incoming_ack(qos, id)? {
                    // A QoS 2 message delivered before: acknowledge, do not deliver.
                    IncomingAck::Duplicate(pubrec) => {
                        self.rx.remove(frame.start, frame.len);
                        self.queue_bytes(&pubrec).await?;
                    }
                    IncomingAck::Deliver(ack) => {
                        // Delivered frames are at the front: either the
                        // oldest kept one, or one read into an empty queue.
                        debug_assert_eq!(frame.start, 0);
                        self.delivered = Some(Delivered {
                            len: frame.len,
                            ack,
                        });
                        let bytes = self.rx.buf.get(frame.start..frame.start + frame.len);
                        return match frame::decode(bytes.unwrap_or_default())? {
                            Incoming::Publish(publish) => Ok(Event::Message(publish)),
                            other => {
                                Err(ProtocolError::UnexpectedPacket(packet_type(&other)).into())
                            }
                        };
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
                        return Ok(Event::Subscribed {
                            packet_id: id,
                            refused,
                        });
                    }
                }
                Classified::Control(control) => {
                    self.rx.remove(frame.start, frame.len);
                    let (done, reply) = self.handle_control(control)?;
                    if let Some(ack) = reply {
                        queue_field!(self, &ack);
                    }
                    match done {
                        Some(Done::Completion(id)) => return Ok(Event::Published(id)),
                        Some(Done::Unsubscribed(id))
                            if self.take_request(Request::Unsubscribe(id)) =>
                        {
                            return Ok(Event::Unsubscribed(id));
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Sends DISCONNECT (§3.14) and returns the transport, to be closed by
    /// the caller (for TLS: [`TlsStream::close`](crate::tls::TlsStream::close)).
    /// The broker then discards the Last Will.
    pub async fn disconnect(mut self) -> Result<T, Error> {
        self.usable()?;
        if self.delivered.is_some() {
            self.finish_delivery().await?;
        }
        self.send_bytes(&encode::DISCONNECT).await?;
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
    async fn start_request<'f>(
        &mut self,
        filters: impl ExactSizeIterator<Item = &'f str>,
    ) -> Result<PacketId, Error> {
        self.usable()?;
        if self.delivered.is_some() {
            self.finish_delivery().await?;
        }
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
        self.send_tx(len).await?;
        let waiting = match request {
            Request::Subscribe(id) => WaitFor::Suback(id),
            Request::Unsubscribe(id) => WaitFor::Unsuback(id),
        };
        let result = self.wait_for(waiting).await;
        if !matches!(result, Err(Error::AckPending(_))) {
            self.requests.retain(|r| *r != request);
        }
        result
    }

    /// Forgets a pending request; `true` if it was pending.
    fn take_request(&mut self, request: Request) -> bool {
        let pending = self.requests.contains(&request);
        self.requests.retain(|r| *r != request);
        pending
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

    /// Completes the delivery of the message the last `poll` returned:
    /// removes its frame and acknowledges it (§4.3.2, §4.3.3).
    ///
    /// Callers test `delivered` first: building this future only when there
    /// is something to finish keeps it off the publish fast path.
    async fn finish_delivery(&mut self) -> Result<(), Error> {
        if let Some(Delivered { len, ack }) = self.delivered {
            // Acknowledge first: if this is cancelled, the message stays
            // delivered-but-unacknowledged and the connection is abandoned.
            if let Some((kind, id)) = ack {
                // Queued: it leaves with the next flush, which every wait
                // for the broker starts with.
                self.queue_bytes(&encode::ack(kind, id)).await?;
            }
            self.delivered = None;
            self.rx.remove(0, len);
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
                    IncomingAck::Duplicate(encode::ack(Ack::Pubrec, id))
                }
            }
            _ => IncomingAck::Deliver(None),
        })
    }

    /// Reads until `waiting` is satisfied; PUBLISH frames are kept for
    /// `poll`. Returns the SUBACK codes (and how many there were) when
    /// waiting for one.
    async fn wait_for(&mut self, waiting: WaitFor) -> Result<(SubackCodes, usize), Error> {
        loop {
            let frame = match self.read_frame(None).await {
                Ok(Read::Frame(frame)) => frame,
                Ok(Read::Skipped) => continue,
                Err(Error::AckPending(_)) => return Err(Error::AckPending(waiting.id())),
                Err(e) => return Err(e),
            };
            match self.classify(frame)? {
                Classified::Publish { .. } => {
                    // Keep it, in order, for `poll`.
                    self.rx.queued = frame.start + frame.len;
                }
                Classified::Suback { id, codes, count } => {
                    if waiting == WaitFor::Suback(id) {
                        self.rx.remove(frame.start, frame.len);
                        return Ok((codes, count));
                    }
                    if self.requests.contains(&Request::Subscribe(id)) {
                        // A SUBSCRIBE whose call gave up (AckPending): kept,
                        // in order, for `poll` to report.
                        self.rx.queued = frame.start + frame.len;
                    } else {
                        self.rx.remove(frame.start, frame.len);
                    }
                }
                Classified::Control(Control::Unsuback(id))
                    if waiting != WaitFor::Unsuback(id)
                        && self.requests.contains(&Request::Unsubscribe(id)) =>
                {
                    // Likewise for an UNSUBSCRIBE that gave up.
                    self.rx.queued = frame.start + frame.len;
                }
                Classified::Control(control) => {
                    self.rx.remove(frame.start, frame.len);
                    let (done, reply) = self.handle_control(control)?;
                    if let Some(ack) = reply {
                        queue_field!(self, &ack);
                    }
                    match (done, waiting) {
                        (Some(Done::Completion(id)), WaitFor::Completion(w)) if id == w => {
                            return Ok((SubackCodes::new(), 0));
                        }
                        (Some(Done::Unsubscribed(id)), WaitFor::Unsuback(w)) if id == w => {
                            return Ok((SubackCodes::new(), 0));
                        }
                        (Some(Done::Completion(id)), _) => {
                            // Someone else's: `poll` reports it. There is
                            // room: `start_publish` counts these as in flight.
                            self.session.push_completed(id);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    /// Decodes a frame into owned values, so the buffer can change.
    fn classify(&mut self, frame: FrameAt) -> Result<Classified, Error> {
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
    ) -> Result<(Option<Done>, Option<[u8; 4]>), Error> {
        Ok(match control {
            Control::Puback(id) => (
                self.session.on_puback(id).then_some(Done::Completion(id)),
                None,
            ),
            Control::Pubrec(id) => {
                // PUBREL also for an unknown identifier: the broker must be
                // able to finish its side (§4.3.3).
                self.session.on_pubrec(id);
                (None, Some(encode::ack(Ack::Pubrel, id)))
            }
            Control::Pubcomp(id) => (
                self.session.on_pubcomp(id).then_some(Done::Completion(id)),
                None,
            ),
            Control::Pubrel(id) => {
                // "MUST respond to a PUBREL packet by sending a PUBCOMP" (§4.3.3).
                self.session.on_pubrel(id);
                (None, Some(encode::ack(Ack::Pubcomp, id)))
            }
            // Its arrival already answered the PINGREQ (`read_more`).
            Control::Pingresp => (None, None),
            Control::Unsuback(id) => (Some(Done::Unsubscribed(id)), None),
            Control::Connack => {
                self.broken = true;
                return Err(ProtocolError::UnexpectedPacket(PacketType::Connack).into());
            }
        })
    }

    fn decode(&mut self, frame: FrameAt) -> Result<Incoming<'_>, Error> {
        let bytes = self
            .rx
            .buf
            .get(frame.start..frame.start + frame.len)
            .ok_or(ProtocolError::Truncated)?;
        match frame::decode(bytes) {
            Ok(packet) => Ok(packet),
            Err(e) => {
                self.broken = true;
                Err(e.into())
            }
        }
    }

    /// Reads until a whole frame sits at `rx.queued`, answering the
    /// keep-alive timer meanwhile. `connect_deadline` bounds the wait for
    /// CONNACK.
    ///
    /// One place awaits each kind of I/O (queueing a reply, and inside
    /// `read_more` the flush and the read): every `.await` is code in the
    /// state machine, so replies are decided synchronously and queued here.
    async fn read_frame(&mut self, connect_deadline: Option<Millis>) -> Result<Read, Error> {
        loop {
            let (reply, skipped) = match self.frame_at_hand()? {
                AtHand::Frame(frame) => return Ok(Read::Frame(frame)),
                AtHand::Skipped(ack) => (ack, true),
                AtHand::Incomplete => (self.read_more(connect_deadline).await?, false),
            };
            // It leaves with the flush before the next wait.
            if let Some(reply) = reply {
                queue_field!(self, reply.bytes());
            }
            if skipped {
                return Ok(Read::Skipped);
            }
        }
    }

    /// What the receive buffer holds at `rx.queued`: a whole frame, a
    /// message too large for it (skipped here, with the acknowledgement it
    /// is owed), or not enough yet.
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
        // `read_frame` checked there is room.
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

    /// Reads more bytes into the receive buffer (discarding bytes of a
    /// skipped packet), or acts on the keep-alive timer: a PINGREQ due is
    /// returned, for the caller to queue.
    async fn read_more(
        &mut self,
        connect_deadline: Option<Millis>,
    ) -> Result<Option<Reply>, Error> {
        let deadline = connect_deadline.unwrap_or_else(|| self.keep_alive.deadline());
        if self.rx.filled >= self.rx.buf.len() {
            // Cannot happen: a frame larger than the buffer is skipped.
            self.broken = true;
            return Err(Error::FrameTooLarge {
                packet: PacketType::Publish,
                size: self.rx.buf.len() + 1,
                capacity: self.rx.buf.len(),
            });
        }
        // What already arrived is taken before queued packets are flushed:
        // a pipelining publisher then refills its window from every
        // acknowledgement at hand and sends the new messages together
        // (docs/PERFORMANCE.md, "QoS 1"). A deadline in the past makes the
        // read take only what is there (nothing is lost when it stops);
        // `MAX_READS_BEFORE_FLUSH` bounds how long a stream of incoming
        // packets can hold the queued ones back.
        let mut at_hand_only = self.unflushed && self.reads_before_flush < MAX_READS_BEFORE_FLUSH;
        if at_hand_only {
            self.reads_before_flush += 1;
        }
        let filled = self.rx.filled;
        let read = loop {
            if self.unflushed && !at_hand_only {
                // About to wait for the broker: what was queued leaves
                // now, in as few records as the write buffer allows.
                self.flush_pending().await?;
            }
            {
                // Its own scope: the result (it holds an `Error`) must not
                // be kept in the future across the flush below.
                let space = self.rx.buf.get_mut(filled..).unwrap_or_default();
                let until = if at_hand_only { 0 } else { deadline };
                let read = self.transport.read_before(space, until).await;
                if !(at_hand_only && matches!(read, Ok(None))) {
                    break read;
                }
            }
            // Nothing at hand: send what is queued, then wait.
            at_hand_only = false;
        };
        match read {
            Ok(Some(0)) => {
                self.broken = true;
                Err(Error::ConnectionClosed)
            }
            Ok(Some(n)) => {
                self.keep_alive.on_received(self.timer.now());
                // Discard bytes of a skipped packet.
                let drop = n.min(self.rx.skip);
                if drop > 0 {
                    self.rx.buf.copy_within(filled + drop..filled + n, filled);
                    self.rx.skip -= drop;
                }
                self.rx.filled += n - drop;
                Ok(None)
            }
            Ok(None) => self.on_timer(connect_deadline),
            Err(e) => {
                self.broken = true;
                Err(e)
            }
        }
    }

    /// A wait reached its deadline: CONNACK is late, or keep-alive wants a
    /// PINGREQ (returned, for the caller to queue) or gives up.
    fn on_timer(&mut self, connect_deadline: Option<Millis>) -> Result<Option<Reply>, Error> {
        let now = self.timer.now();
        if let Some(deadline) = connect_deadline {
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
                // Queued by the caller, flushed before its next wait (at
                // once unless something has arrived meanwhile, which
                // answers for the broker anyway).
                self.keep_alive.on_ping_sent(now);
                Ok(Some(Reply::PINGREQ))
            }
        }
    }

    /// Sends the first `len` bytes of `tx`, and whatever was queued before.
    async fn send_tx(&mut self, len: usize) -> Result<(), Error> {
        let bytes = self.tx.get(..len).unwrap_or_default();
        queue_field!(self, bytes);
        self.flush_pending().await
    }

    /// Sends `bytes`, and whatever was queued before.
    async fn send_bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.queue_bytes(bytes).await?;
        self.flush_pending().await
    }

    /// Writes one whole packet into the transport's buffer; it leaves at
    /// the next [`Client::flush_pending`].
    async fn queue_bytes(&mut self, bytes: &[u8]) -> Result<(), Error> {
        queue_field!(self, bytes);
        Ok(())
    }

    /// Ends every write sequence: the packets are out.
    async fn flush_pending(&mut self) -> Result<(), Error> {
        self.reads_before_flush = 0;
        self.writing = true;
        let result = self.transport.flush().await;
        result.inspect_err(|_| self.broken = true)?;
        self.writing = false;
        self.unflushed = false;
        self.keep_alive.on_sent(self.timer.now());
        Ok(())
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

/// Where [`Client::encode_publish`] put a PUBLISH.
#[derive(Debug, Clone, Copy)]
enum Encoded {
    /// The first bytes of `tx` (QoS 0).
    Tx(usize),
    /// In the session's outbox (QoS 1/2).
    Outbox { offset: usize, len: usize },
}

impl Encoded {
    /// The bytes (a function of the two fields, not of the client, so the
    /// client's other fields stay free to write them).
    fn bytes<'a, const N: usize>(self, tx: &'a [u8], session: &'a SessionState<'_, N>) -> &'a [u8] {
        match self {
            Encoded::Tx(len) => tx.get(..len).unwrap_or_default(),
            Encoded::Outbox { offset, len } => session.stored(offset, len),
        }
    }
}

/// What handling a control packet completed.
#[derive(Debug, Clone, Copy)]
enum Done {
    /// A QoS 1/2 message of ours.
    Completion(PacketId),
    /// An UNSUBSCRIBE.
    Unsubscribed(PacketId),
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
    Duplicate([u8; 4]),
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
/// `read_frame`; waiting methods replace it by their own identifier.
const QUEUE_FULL: PacketId = match PacketId::new(1) {
    Some(id) => id,
    None => panic!("1 is a packet identifier"),
};
