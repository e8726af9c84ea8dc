//! The TLS 1.3 connection: handshake with enforced trust over any
//! `embedded-io-async` socket, and the encrypted stream it yields.
//!
//! mqtts drives [embedded-tls] and adds what it lacks for a safe MQTT
//! client: a verifier that always runs (see [`Trust`]), a guard that refuses
//! a handshake in which the server skipped Certificate or CertificateVerify,
//! record sizes kept within what the server accepts whatever buffers are
//! passed, and errors that name the cause.
//!
//! Nothing here knows about executors, timers or network stacks: the socket
//! is any [`embedded_io_async::Read`] + [`embedded_io_async::Write`] that is
//! already connected (an `embassy-net` `TcpSocket`, a tokio stream through
//! `embedded-io-adapters`, a UART modem driver, ...).
//!
//! [embedded-tls]: https://docs.rs/embedded-tls

pub(crate) mod record_gate;
pub(crate) mod socket;
pub(crate) mod verifier;

pub use socket::{NoTimer, ReadDeadline};
pub use verifier::ChainObserver;

use crate::error::{ConfigError, Error};
use crate::time::{Millis, Timer, WallClock};
use crate::trust::{PresentedCertificate, Trust, ValidationTime};
use embedded_io_async::{Read, Write};
use embedded_tls::{Aes128GcmSha256, CryptoProvider, TlsConfig, TlsConnection, TlsContext};
use rand_core::{CryptoRng, RngCore};
use record_gate::Gate;
use socket::DeadlineSocket;
use verifier::TrustVerifier;

/// Bytes embedded-tls reserves in the write buffer for a record's header,
/// content type, tag and padding (`embedded_tls::TLS_RECORD_OVERHEAD`).
const WRITE_OVERHEAD: usize = embedded_tls::TLS_RECORD_OVERHEAD;

/// Header (5), content type (1) and AES-GCM tag (16) of a TLS 1.3 record,
/// plus the 256 bytes of padding a server may add (RFC 8446 §5.2).
const READ_OVERHEAD: usize = 5 + 1 + 16 + 256;

/// A read buffer of this size holds any TLS 1.3 record a server may send
/// without `max_fragment_length`: 2^14 plaintext + 256 (RFC 8446 §5.2).
pub const READ_BUFFER_FOR_FULL_RECORDS: usize = 16_640;

/// The smallest read buffer [`connect`] accepts. A handshake with a P-256
/// certificate fits in about 500 bytes, RSA-2048 about 700 and a leaf with
/// an intermediate about 950: size it for your server's chain (the read
/// buffer must hold the largest handshake record, see
/// [`MaxFragmentLength`]).
pub const MIN_READ_BUFFER: usize = 512;

/// The smallest write buffer [`connect`] accepts (the ClientHello is about
/// 190 bytes and the buffer needs room for record overhead).
pub const MIN_WRITE_BUFFER: usize = 256;

/// The TLS `max_fragment_length` extension (RFC 6066 §4): asks the server
/// to send records of at most this much plaintext, so a smaller read buffer
/// is enough. OpenSSL servers, hence mosquitto, honour it.
///
/// embedded-tls does not reassemble handshake messages split across
/// records: with 512 bytes, an RSA certificate or a two-certificate chain
/// does not fit. 1024 is a safe choice for most brokers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum MaxFragmentLength {
    /// 2^9 = 512 bytes.
    Bytes512,
    /// 2^10 = 1024 bytes.
    Bytes1024,
    /// 2^11 = 2048 bytes.
    Bytes2048,
    /// 2^12 = 4096 bytes.
    Bytes4096,
}

impl MaxFragmentLength {
    /// The plaintext bytes per record.
    pub const fn plaintext_len(self) -> usize {
        match self {
            Self::Bytes512 => 512,
            Self::Bytes1024 => 1024,
            Self::Bytes2048 => 2048,
            Self::Bytes4096 => 4096,
        }
    }

    /// The read buffer that holds any record of this size.
    pub const fn read_buffer_len(self) -> usize {
        self.plaintext_len() + READ_OVERHEAD
    }

    const fn to_embedded_tls(self) -> embedded_tls::MaxFragmentLength {
        match self {
            Self::Bytes512 => embedded_tls::MaxFragmentLength::Bits9,
            Self::Bytes1024 => embedded_tls::MaxFragmentLength::Bits10,
            Self::Bytes2048 => embedded_tls::MaxFragmentLength::Bits11,
            Self::Bytes4096 => embedded_tls::MaxFragmentLength::Bits12,
        }
    }
}

/// What to connect to and how to trust it.
///
/// ```
/// use mqtts::tls::{MaxFragmentLength, TlsOptions};
/// use mqtts::trust::{Pin, Trust};
///
/// static PINS: [Pin; 1] = [mqtts::pin_public_key!(
///     "7D:9F:2C:25:8C:A4:1A:84:5F:30:46:2D:CD:28:3F:54:A1:8B:40:5C:2F:3B:96:1B:37:5E:7B:6F:CC:A3:61:0A"
/// )];
/// let options = TlsOptions::new("mqtt.flespi.io", Trust::pinned(&PINS))
///     .with_max_fragment_length(MaxFragmentLength::Bytes1024);
/// # let _ = options;
/// ```
///
/// CA mode checks certificate dates, so it needs the time: a
/// [`WallClock`] (SNTP, an RTC) read at each connect, and the firmware's
/// build time as a floor:
///
/// ```
/// use mqtts::time::WallClock;
/// use mqtts::tls::TlsOptions;
/// use mqtts::trust::Trust;
/// # struct Sntp;
/// # impl WallClock for Sntp { fn now_unix_secs(&self) -> Option<u64> { None } }
///
/// static ROOTS: [&[u8]; 1] = [include_bytes!("../../certs/globalsign-root-ca-r6.der")];
/// /// The firmware's build time (seconds since the Unix epoch), e.g. from
/// /// `SOURCE_DATE_EPOCH` through build.rs.
/// const BUILD_TIME: u64 = 1_800_000_000;
/// static SNTP: Sntp = Sntp; // answers `None` until SNTP has the time
///
/// let options = TlsOptions::new("mqtt.flespi.io", Trust::certificate_authorities(&ROOTS))
///     .with_wall_clock(&SNTP)
///     .with_minimum_time(BUILD_TIME);
/// assert_eq!(options.check(), Ok(()));
/// // Without a clock, CA mode refuses to guess unless told to.
/// let clock_less = TlsOptions::new("mqtt.flespi.io", Trust::certificate_authorities(&ROOTS));
/// assert!(clock_less.check().is_err());
/// assert_eq!(clock_less.allow_unknown_time().check(), Ok(()));
/// ```
#[derive(Debug, Clone, Copy)]
pub struct TlsOptions<'a> {
    server_name: &'a str,
    trust: Trust<'a>,
    alpn: Option<&'a [&'a [u8]]>,
    max_fragment_length: Option<MaxFragmentLength>,
    time: TimeSource<'a>,
    /// The application's floor for the current time (its build time).
    minimum_time: u64,
    /// CA mode may validate without the time (the floor stands in).
    allow_unknown_time: bool,
    handshake_timeout_ms: Millis,
}

/// Where CA mode's current time comes from.
#[derive(Clone, Copy)]
enum TimeSource<'a> {
    /// Nowhere.
    Unset,
    /// [`TlsOptions::with_unix_time`].
    Fixed(u64),
    /// [`TlsOptions::with_wall_clock`].
    Clock(&'a dyn WallClock),
}

impl core::fmt::Debug for TimeSource<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::Unset => f.write_str("Unset"),
            Self::Fixed(now) => f.debug_tuple("Fixed").field(now).finish(),
            Self::Clock(_) => f.write_str("WallClock"),
        }
    }
}

/// How long a handshake may take unless set otherwise (on streams with a
/// timer, see [`connect_with_timer`]).
pub const DEFAULT_HANDSHAKE_TIMEOUT_MS: Millis = 30_000;

/// How long one write to the socket may block (a peer that stops reading)
/// before the stream is abandoned, on streams with a timer. The time
/// counts from when the write first has to wait.
pub const WRITE_TIMEOUT_MS: Millis = 30_000;

impl<'a> TlsOptions<'a> {
    /// Connects to `server_name` (sent as SNI, RFC 6066 §3, and checked
    /// against the certificate in CA mode), trusting it as `trust` says.
    pub const fn new(server_name: &'a str, trust: Trust<'a>) -> Self {
        Self {
            server_name,
            trust,
            alpn: None,
            max_fragment_length: None,
            time: TimeSource::Unset,
            minimum_time: 0,
            allow_unknown_time: false,
            handshake_timeout_ms: DEFAULT_HANDSHAKE_TIMEOUT_MS,
        }
    }

    /// Bounds the handshake (on streams with a timer, see
    /// [`connect_with_timer`]): a server that accepts TCP and then stays
    /// silent fails with [`TlsFailure::Timeout`](crate::error::TlsFailure::Timeout).
    pub const fn with_handshake_timeout_ms(mut self, ms: Millis) -> Self {
        self.handshake_timeout_ms = ms;
        self
    }

    /// Offers these ALPN protocol names (RFC 7301), e.g. `b"mqtt"` for
    /// brokers that multiplex port 443.
    pub const fn with_alpn(mut self, protocols: &'a [&'a [u8]]) -> Self {
        self.alpn = Some(protocols);
        self
    }

    /// Asks the server for records of at most this size (RFC 6066 §4).
    pub const fn with_max_fragment_length(mut self, length: MaxFragmentLength) -> Self {
        self.max_fragment_length = Some(length);
        self
    }

    /// A fixed current time, seconds since the Unix epoch, for certificate
    /// validity checks in CA mode (pins ignore dates; RFC 5280 §4.1.2.5).
    ///
    /// For options built right before each connect from a clock (a host
    /// tool, tests). Options kept across reconnects go stale with a fixed
    /// time: on a device, give a [`WallClock`] with
    /// [`TlsOptions::with_wall_clock`] instead. Replaces a clock given
    /// before. A time before the floor ([`TlsOptions::with_minimum_time`])
    /// counts as unknown.
    pub const fn with_unix_time(mut self, now: u64) -> Self {
        self.time = TimeSource::Fixed(now);
        self
    }

    /// The current time for CA mode's validity checks (RFC 5280
    /// §4.1.2.5), read from `clock` at each connect: SNTP or an RTC that
    /// is set later, or corrected, counts from the next connection on.
    /// Replaces a fixed time given before.
    ///
    /// While `clock` answers `None` (or a time before the floor, see
    /// [`TlsOptions::with_minimum_time`]), a connect in CA mode fails with
    /// [`Error::ClockNotSet`] before the handshake, unless
    /// [`TlsOptions::allow_unknown_time`] was chosen.
    pub const fn with_wall_clock(mut self, clock: &'a dyn WallClock) -> Self {
        self.time = TimeSource::Clock(clock);
        self
    }

    /// The earliest the current time can be, seconds since the Unix epoch:
    /// the firmware's build time (e.g. `SOURCE_DATE_EPOCH` passed in by
    /// build.rs). Raises mqtts's own floor,
    /// [`CRATE_RELEASE_TIME`](crate::time::CRATE_RELEASE_TIME), never lowers it.
    ///
    /// CA mode never validates at an earlier time: a clock reading before
    /// the floor counts as not set, and without the time a certificate that
    /// expired before the floor is refused (an old, leaked or revoked
    /// certificate of the broker that an attacker presents). Must not be in
    /// the future, or valid certificates that expire before it are refused.
    pub const fn with_minimum_time(mut self, unix_secs: u64) -> Self {
        self.minimum_time = unix_secs;
        self
    }

    /// Lets CA mode validate without the current time when none is known
    /// (no time source given, or the [`WallClock`] has no time yet): the
    /// validity dates are then checked at the later of the floor
    /// ([`TlsOptions::with_minimum_time`]) and the newest `notBefore`
    /// presented.
    ///
    /// A certificate that expired before the floor is still refused, but
    /// one that expired after it, or was revoked, passes: an attacker who
    /// holds such a certificate of the broker and its key can stand in for
    /// the broker. An explicit choice, for boards with no way to learn the
    /// time; every connect that uses it logs a warning (with the `log` or
    /// `defmt` feature). Without it, CA mode with no time source is
    /// refused with [`ConfigError::NoTimeSource`].
    pub const fn allow_unknown_time(mut self) -> Self {
        self.allow_unknown_time = true;
        self
    }

    /// Checks the configuration without connecting: the trust
    /// ([`Trust::check`]), and in CA mode a time source or
    /// [`TlsOptions::allow_unknown_time`]. [`connect`] does this too.
    pub fn check(&self) -> Result<(), ConfigError> {
        self.trust.check()?;
        let no_time_source = matches!(self.time, TimeSource::Unset);
        if self.trust.checks_validity_dates() && no_time_source && !self.allow_unknown_time {
            return Err(ConfigError::NoTimeSource);
        }
        Ok(())
    }

    /// The time to validate at, read from the clock now (CA mode only):
    /// an error if it is unknown and that was not allowed.
    fn validation_time(&self) -> Result<ValidationTime, Error> {
        if !self.trust.checks_validity_dates() {
            // Pins ignore dates: no clock read, no warning.
            return Ok(ValidationTime::new(None, self.minimum_time));
        }
        let reads = match self.time {
            TimeSource::Unset => None,
            TimeSource::Fixed(now) => Some(now),
            TimeSource::Clock(clock) => clock.now_unix_secs(),
        };
        let time = ValidationTime::new(reads, self.minimum_time);
        if time.known().is_some() {
            Ok(time)
        } else if self.allow_unknown_time {
            warn_unknown_time(self.server_name, time.minimum());
            Ok(time)
        } else if matches!(self.time, TimeSource::Unset) {
            Err(ConfigError::NoTimeSource.into())
        } else {
            Err(Error::ClockNotSet {
                reads,
                minimum: time.minimum(),
            })
        }
    }

    /// The server name.
    pub const fn server_name(&self) -> &'a str {
        self.server_name
    }

    /// The trust mode.
    pub const fn trust(&self) -> &Trust<'a> {
        &self.trust
    }

    /// The largest plaintext per record the server accepts from us.
    const fn max_plaintext(&self) -> usize {
        match self.max_fragment_length {
            Some(length) => length.plaintext_len(),
            None => 1 << 14,
        }
    }
}

/// Hands embedded-tls the RNG and the verifier; never signs (no client certificate).
struct Provider<'p, 't, R> {
    rng: &'p mut R,
    verifier: &'p mut TrustVerifier<'t>,
}

impl<R: RngCore + CryptoRng> CryptoProvider for Provider<'_, '_, R> {
    type CipherSuite = Aes128GcmSha256;
    type Signature = [u8; 0];

    fn rng(&mut self) -> impl embedded_tls::CryptoRngCore {
        &mut *self.rng
    }

    fn verifier(
        &mut self,
    ) -> Result<&mut impl embedded_tls::TlsVerifier<Self::CipherSuite>, embedded_tls::TlsError>
    {
        Ok(&mut *self.verifier)
    }
}

/// Performs a TLS 1.3 handshake over `socket` and returns the encrypted
/// stream, or the reason the server was not trusted.
///
/// - `read_buffer` must hold the largest record the server sends:
///   [`READ_BUFFER_FOR_FULL_RECORDS`], or
///   [`MaxFragmentLength::read_buffer_len`] with that option.
/// - `write_buffer` sets the size of the records mqtts sends; it is used up
///   to the record size the server accepts (larger buffers are not an
///   error, the surplus stays unused), so records never exceed the limit.
///   Its last two bytes hold the state of the record gate (below).
/// - `rng` must be a cryptographically secure generator (a hardware TRNG).
///
/// The handshake succeeds only if the server sent a certificate that
/// `options.trust()` accepts *and* a CertificateVerify signature made with
/// that certificate's key.
///
/// Records TLS 1.3 does not allow at a point of the connection (RFC 8446
/// §5: after the handshake anything but encrypted records; during it
/// unencrypted handshake messages other than ServerHello) never reach the
/// TLS engine: the handshake or the read fails with
/// [`TlsFailure::UnexpectedRecord`](crate::error::TlsFailure::UnexpectedRecord)
/// and the connection is over. Anyone on the network path can insert such
/// records without a key.
///
/// Cancel safety: dropping the future abandons the handshake; the socket
/// must then be closed.
pub async fn connect<'b, S, R>(
    socket: S,
    read_buffer: &'b mut [u8],
    write_buffer: &'b mut [u8],
    rng: &mut R,
    options: &TlsOptions<'_>,
) -> Result<TlsStream<'b, S>, Error>
where
    S: Read + Write + 'b,
    R: RngCore + CryptoRng,
{
    open(socket, None, read_buffer, write_buffer, rng, options, None).await
}

/// Like [`connect`], showing `observer` every certificate the server
/// presents (leaf first, DER) before the trust decision: to print a
/// server's chain, e.g. with `Trust::insecure_accept_any_certificate` (feature `insecure`) and
/// [`crate::trust::CertificateInfo`].
pub async fn connect_observing<'b, S, R>(
    socket: S,
    read_buffer: &'b mut [u8],
    write_buffer: &'b mut [u8],
    rng: &mut R,
    options: &TlsOptions<'_>,
    observer: ChainObserver<'_>,
) -> Result<TlsStream<'b, S>, Error>
where
    S: Read + Write + 'b,
    R: RngCore + CryptoRng,
{
    open(
        socket,
        None,
        read_buffer,
        write_buffer,
        rng,
        options,
        Some(observer),
    )
    .await
}

/// Like [`connect`], returning a stream whose reads can stop at a deadline
/// without losing data ([`TlsStream::read_before`]): what an MQTT client
/// needs to send keep-alive pings while it waits for packets.
///
/// `deadline` is shared state between the stream and its socket; it must
/// outlive the stream (the MQTT session keeps one).
pub async fn connect_with_timer<'b, S, R, T>(
    socket: S,
    deadline: &'b ReadDeadline,
    timer: T,
    read_buffer: &'b mut [u8],
    write_buffer: &'b mut [u8],
    rng: &mut R,
    options: &TlsOptions<'_>,
) -> Result<TlsStream<'b, S, T>, Error>
where
    S: Read + Write + 'b,
    R: RngCore + CryptoRng,
    T: Timer + 'b,
{
    deadline.set(Some(
        timer.now().saturating_add(options.handshake_timeout_ms),
    ));
    let handshake = open(
        socket,
        Some((deadline, timer.clone())),
        read_buffer,
        write_buffer,
        rng,
        options,
        None,
    )
    .await;
    deadline.set(None);
    handshake.map(|mut stream| {
        stream.deadline = Some(deadline);
        stream.timer = Some(timer);
        stream
    })
}

async fn open<'b, 'v, S, R, T>(
    socket: S,
    deadline: Option<(&'b ReadDeadline, T)>,
    read_buffer: &'b mut [u8],
    write_buffer: &'b mut [u8],
    rng: &mut R,
    options: &'v TlsOptions<'v>,
    observer: Option<ChainObserver<'v>>,
) -> Result<TlsStream<'b, S, T>, Error>
where
    S: Read + Write + 'b,
    R: RngCore + CryptoRng,
    T: Timer + 'b,
{
    let is_ip_address = matches!(
        rustls_pki_types::ServerName::try_from(options.server_name)
            .map_err(|_| ConfigError::InvalidServerName)?,
        rustls_pki_types::ServerName::IpAddress(_)
    );
    options.check()?;
    if read_buffer.len() < MIN_READ_BUFFER {
        return Err(ConfigError::BufferTooSmall {
            buffer: "read",
            len: read_buffer.len(),
            min: MIN_READ_BUFFER,
        }
        .into());
    }
    if write_buffer.len() < MIN_WRITE_BUFFER {
        return Err(ConfigError::BufferTooSmall {
            buffer: "write",
            len: write_buffer.len(),
            min: MIN_WRITE_BUFFER,
        }
        .into());
    }
    // The record gate's state, shared by the socket inside embedded-tls and
    // the stream: two bytes of the write buffer, whose last bytes are
    // surplus or cost the records two bytes of plaintext (nothing more).
    let Some((write_buffer, gate_bytes)) = write_buffer.split_last_chunk_mut::<2>() else {
        // MIN_WRITE_BUFFER was checked above.
        return Err(Error::Tls(crate::error::TlsFailure::Internal));
    };
    let gate = Gate::new(gate_bytes);
    let socket = DeadlineSocket::new(socket, deadline, gate);
    // embedded-tls fills a record up to (write buffer - overhead): a larger
    // buffer would make records the server must refuse (RFC 8446 §5.1,
    // RFC 6066 §4), so only that much of it is handed over.
    let write_len = write_buffer
        .len()
        .min(options.max_plaintext() + WRITE_OVERHEAD);
    let write_buffer = &mut write_buffer[..write_len];

    if options.trust.is_insecure() {
        warn_insecure(options.server_name);
    }

    // RSA schemes are offered even without the `rsa` feature: an RSA server
    // then presents its certificate and is refused with
    // `Error::UnsupportedKey(Rsa)`, naming the feature to enable, instead of
    // hanging up on a ClientHello it has nothing in common with.
    let mut config = TlsConfig::new().enable_rsa_signatures();
    // SNI carries host names only (RFC 6066 §3): not for an IP address,
    // which the verifier still checks in CA mode.
    if !is_ip_address {
        config = config.with_server_name(options.server_name);
    }
    if let Some(protocols) = options.alpn {
        config = config.with_alpn(protocols);
    }
    if let Some(length) = options.max_fragment_length {
        config = config.with_max_fragment_length(length.to_embedded_tls());
    }

    // The clock is read once per connect, before anything is sent.
    let time = options.validation_time()?;
    let mut verifier =
        TrustVerifier::at(options.trust, options.server_name, time).with_observer(observer);
    let mut connection = TlsConnection::new(socket, read_buffer, write_buffer);
    // The handshake in a frame of its own (crate::stack).
    let opened = {
        let handshake = core::pin::pin!(connection.open(TlsContext::new(
            &config,
            Provider {
                rng,
                verifier: &mut verifier,
            },
        )));
        crate::stack::separate(handshake).await
    };
    let peer = verifier.conclude(opened).map_err(|e| gate.explain(e))?;
    gate.establish();
    Ok(TlsStream {
        connection,
        peer,
        insecure: options.trust.is_insecure(),
        deadline: None,
        timer: None,
        writing: false,
        gate,
    })
}

/// The warning of [`TlsOptions::allow_unknown_time`], at each connect that uses it.
fn warn_unknown_time(_server_name: &str, _minimum: u64) {
    #[cfg(feature = "log")]
    log::warn!(
        "mqtts: validating {_server_name}'s certificate WITHOUT the current time: \
         a certificate that expired after {} is not detected (allow_unknown_time)",
        crate::error::UtcTime(_minimum)
    );
    #[cfg(feature = "defmt")]
    defmt::warn!(
        "mqtts: validating {}'s certificate WITHOUT the current time: a certificate \
         that expired after {} (Unix time) is not detected (allow_unknown_time)",
        _server_name,
        _minimum
    );
}

fn warn_insecure(_server_name: &str) {
    #[cfg(feature = "log")]
    log::warn!(
        "mqtts: connecting to {_server_name} WITHOUT certificate verification (insecure mode)"
    );
    #[cfg(feature = "defmt")]
    defmt::warn!(
        "mqtts: connecting to {} WITHOUT certificate verification (insecure mode)",
        _server_name
    );
}

/// An open, authenticated TLS 1.3 connection.
///
/// Writes are buffered until [`Write::flush`]; a buffer that fills is sent
/// as a full record. Reads return decrypted application data.
pub struct TlsStream<'b, S, T = NoTimer>
where
    S: Read + Write + 'b,
    T: Timer + 'b,
{
    connection: TlsConnection<'b, DeadlineSocket<'b, S, T>, Aes128GcmSha256>,
    peer: PresentedCertificate,
    insecure: bool,
    deadline: Option<&'b ReadDeadline>,
    timer: Option<T>,
    /// A write or flush started and did not finish (its future was dropped,
    /// or it failed): embedded-tls 0.19 would then reuse the record's
    /// nonce, so the stream refuses to write again.
    writing: bool,
    /// Names a record the socket refused (see `record_gate`).
    gate: Gate<'b>,
}

impl<'b, S, T> TlsStream<'b, S, T>
where
    S: Read + Write + 'b,
    T: Timer + 'b,
{
    /// The fingerprints of the certificate the server presented.
    pub fn peer_certificate(&self) -> &PresentedCertificate {
        &self.peer
    }

    /// Whether the server was accepted without authentication
    /// (`Trust::insecure_accept_any_certificate`, feature `insecure`).
    pub fn is_insecure(&self) -> bool {
        self.insecure
    }

    /// Whether the stream came from [`connect_with_timer`] (reads can stop
    /// at a deadline).
    pub fn has_timer(&self) -> bool {
        self.deadline.is_some()
    }

    /// Marks a write as started; refuses if an earlier one never finished.
    fn start_writing(&mut self) -> Result<(), Error> {
        if self.writing {
            return Err(Error::Disconnected);
        }
        self.writing = true;
        if let Some(cell) = self.deadline {
            cell.set_timeout(WRITE_TIMEOUT_MS);
        }
        Ok(())
    }

    /// A failed write may have sent part of a record: stays marked.
    fn end_writing(&mut self, ok: bool) {
        if let Some(cell) = self.deadline {
            cell.set(None);
        }
        if ok {
            self.writing = false;
        }
    }

    /// Sends close_notify and returns the socket.
    pub async fn close(self) -> (S, Result<(), Error>) {
        match self.connection.close().await {
            Ok(socket) => (socket.into_inner(), Ok(())),
            Err((socket, e)) => (socket.into_inner(), Err(e.into())),
        }
    }

    /// Reads decrypted data, or returns `Ok(None)` once `deadline` (on the
    /// timer given to [`connect_with_timer`]) has passed; nothing is lost
    /// either way. A stream from [`connect`] has no timer and waits for data.
    pub async fn read_before(
        &mut self,
        buf: &mut [u8],
        deadline: Millis,
    ) -> Result<Option<usize>, Error> {
        if let Some(cell) = self.deadline {
            cell.set(Some(deadline));
        }
        let result = self.connection.read(buf).await;
        if let Some(cell) = self.deadline {
            cell.set(None);
        }
        match result {
            Ok(n) => Ok(Some(n)),
            Err(embedded_tls::TlsError::Io(embedded_io::ErrorKind::TimedOut))
                if self.deadline.is_some() =>
            {
                Ok(None)
            }
            Err(e) => Err(self.gate.explain(e.into())),
        }
    }
}

impl<'b, S, T> core::fmt::Debug for TlsStream<'b, S, T>
where
    S: Read + Write + 'b,
    T: Timer + 'b,
{
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TlsStream")
            .field("peer", &self.peer)
            .field("insecure", &self.insecure)
            .finish_non_exhaustive()
    }
}

impl<'b, S, T> embedded_io::ErrorType for TlsStream<'b, S, T>
where
    S: Read + Write + 'b,
    T: Timer + 'b,
{
    type Error = Error;
}

impl<'b, S, T> Read for TlsStream<'b, S, T>
where
    S: Read + Write + 'b,
    T: Timer + 'b,
{
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Error> {
        let gate = self.gate;
        self.connection
            .read(buf)
            .await
            .map_err(|e| gate.explain(e.into()))
    }
}

impl<'b, S, T> Write for TlsStream<'b, S, T>
where
    S: Read + Write + 'b,
    T: Timer + 'b,
{
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Error> {
        self.start_writing()?;
        let written = self.connection.write(buf).await;
        self.end_writing(written.is_ok());
        written.map_err(Error::from)
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.start_writing()?;
        let flushed = self.connection.flush().await;
        self.end_writing(flushed.is_ok());
        flushed.map_err(Error::from)
    }
}
