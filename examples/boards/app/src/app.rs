//! The application: flespi.io over TLS 1.3 with mqtts, on any board that
//! can open a TCP connection (a [`Connector`]), has a cryptographic RNG and
//! an output pin.
//!
//! - Connects with [`mqtts::reconnect::Supervisor`]: the connector waits
//!   for the link, resolves `mqtt.flespi.io` and opens TCP to 8883; then
//!   TLS 1.3, validated up to flespi's GlobalSign roots (certificate dates
//!   checked against the board's clock, never before the firmware's build
//!   time) or against the pins chosen at build time ([`crate::config`]),
//!   MQTT with the token as user
//!   name, a persistent session and the command subscription. Every failure
//!   is logged with its typed error (a pin mismatch with the fingerprints
//!   the broker presented); the supervisor waits (exponential backoff with
//!   jitter) before the next attempt, never spinning.
//! - `<prefix>/cmd`: `on`, `off` (or `1`/`0`, `true`/`false`) set the output,
//!   anything else toggles it. The new state is echoed, retained, to
//!   `<prefix>/state` as `{"on":true}`.
//! - Every `publish_interval`, a JSON reading goes to `<prefix>/telemetry` at
//!   QoS 1: `{"count":7,"uptime_s":210,"temp_c":41.5,"on":false}`.
//! - A round trip to check the path end to end: a message on
//!   `<prefix>/echo/<q>` (`q` 0, 1 or 2) is published back, same payload, on
//!   `<prefix>/echoed/<q>` at QoS `q`.
//! - The connection is dropped as soon as the board's [`Link`] is lost
//!   (Wi-Fi gone), not when keep-alive notices 60 to 90 s later, and made
//!   again once the network is back.
//! - Every phase (a connect attempt, a wait for the broker or the next
//!   reading) feeds the board's hardware watchdog only within its time
//!   budget ([`crate::watchdog`]): a hang resets the chip.

use core::fmt::Write as _;
use core::future::Future;
use core::pin::pin;

use embassy_futures::select::{Either, select};
use embassy_time::{Duration, Instant, Timer};
use heapless::{String, Vec};
use log::{error, info, warn};
use mqtts::Error;
use mqtts::client::{BrokerLimits, Buffers, Client, Event};
use mqtts::error::UtcTime;
use mqtts::fingerprint::HexColons;
use mqtts::flespi::{Credentials, Flespi};
use mqtts::mqtt::QoS;
use mqtts::reconnect::{Backoff, Connector, Failure, Supervisor};
use mqtts::time::{EmbassyTimer, Timer as _, WallClock};
use mqtts::tls::READ_BUFFER_FOR_FULL_RECORDS;
use mqtts::transport::Transport;
use mqtts::trust::Pin;
use rand_core::{CryptoRng, RngCore};

use crate::config;
use crate::watchdog::{self, CONNECT_BUDGET, SESSION_MARGIN};

/// The broker: flespi's EU region (the connector dials it).
pub const BROKER_HOST: &str = mqtts::flespi::HOST;
/// MQTT over TLS.
pub const BROKER_PORT: u16 = mqtts::flespi::PORT;

/// What the application needs from the board.
pub trait Board {
    /// Drives the output (an LED, a relay).
    fn set_output(&mut self, on: bool);
    /// The output's state.
    fn output(&self) -> bool;
    /// The chip (or a sensor's) temperature in °C, if the board has one.
    fn temperature_c(&mut self) -> Option<f32>;
    /// Restarts the hardware watchdog's countdown (see [`crate::watchdog`]
    /// for when the application calls it).
    fn feed_watchdog(&mut self);
    /// The heap's use, if the board has a heap that counts it.
    fn heap_use(&self) -> Option<HeapUse>;
}

/// What the heap holds, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapUse {
    /// The most it held at once since boot.
    pub peak: usize,
    /// What it holds now.
    pub current: usize,
    /// Its size.
    pub size: usize,
}

/// The network under the connection, watched while connected.
pub trait Link {
    /// Completes once the link is lost: no connection can work until it is
    /// back (the connector waits for that before dialling again).
    fn lost(&self) -> impl Future<Output = ()>;
}

/// A link with no state to watch: an AT modem reports a lost network as a
/// closed connection (`CLOSED`, `WIFI DISCONNECT`), which the client sees.
#[derive(Debug, Clone, Copy, Default)]
pub struct Unwatched;

impl Link for Unwatched {
    async fn lost(&self) {
        core::future::pending::<()>().await
    }
}

/// How the broker's certificate is checked.
#[derive(Debug, Clone, Copy)]
pub enum BrokerTrust<'a> {
    /// CA mode: the chain must lead to one of these roots (DER), dates
    /// checked against the board's clock ([`mqtts::flespi::ROOTS`]:
    /// flespi's GlobalSign roots).
    Roots(&'a [&'a [u8]]),
    /// The certificate (or its key) must match one of these pins; no CA
    /// check, no clock. At most 2 are kept by [`crate::config`]'s settings.
    Pins(&'a [Pin]),
}

/// Who the device is and where it publishes.
#[derive(Debug, Clone, Copy)]
pub struct Settings<'a> {
    /// MQTT client id, unique per device.
    pub client_id: &'a str,
    /// flespi token (MQTT user name).
    pub token: &'a str,
    /// Topics are `<prefix>/cmd`, `<prefix>/state`, `<prefix>/telemetry`.
    pub topic_prefix: &'a str,
    /// Time between two readings.
    pub publish_interval: Duration,
    /// What the broker accepts ([`mqtts::flespi::LIMITS`]: QoS 0 and 1, no
    /// `flespi/...` topics), checked before anything is sent.
    pub limits: BrokerLimits,
    /// MQTT keep-alive in seconds (§3.1.2.10): a silent broker is noticed
    /// after 1.5 times this. [`config::settings`] gives 60.
    pub keep_alive_secs: u16,
    /// How the broker's certificate is checked.
    pub trust: BrokerTrust<'a>,
}

/// QoS 1/2 messages in flight at once.
const IN_FLIGHT: usize = 4;
/// TLS records are written in pieces of at most this size.
const TLS_WRITE: usize = 2048;
/// Largest incoming MQTT packet (a command); larger ones are skipped.
const MQTT_RX: usize = 1024;
/// Largest CONNECT (the token is ~70 bytes), SUBSCRIBE or QoS 0 message.
const MQTT_TX: usize = 512;
/// QoS 1 messages until the broker acknowledges them.
const OUTBOX: usize = 2048;
const TOPIC_LEN: usize = 128;

/// The TLS and MQTT buffers of the connection, meant for a `static` (about
/// 22 KB): none of it lives on a stack. The socket's own buffers belong to
/// the connector. flespi does not promise to honour TLS
/// max_fragment_length, so the read buffer holds full 16 KB records.
pub struct Memory {
    tls_read: [u8; READ_BUFFER_FOR_FULL_RECORDS],
    tls_write: [u8; TLS_WRITE],
    rx: [u8; MQTT_RX],
    tx: [u8; MQTT_TX],
    outbox: [u8; OUTBOX],
}

impl Memory {
    /// Zeroed buffers (a `const fn`, so a `static` holding it is in `.bss`).
    pub const fn new() -> Self {
        Self {
            tls_read: [0; READ_BUFFER_FOR_FULL_RECORDS],
            tls_write: [0; TLS_WRITE],
            rx: [0; MQTT_RX],
            tx: [0; MQTT_TX],
            outbox: [0; OUTBOX],
        }
    }
}

impl Default for Memory {
    fn default() -> Self {
        Self::new()
    }
}

/// Runs forever: connects, serves commands and publishes readings, and
/// reconnects after any failure.
///
/// `connector` opens a TCP connection to [`BROKER_HOST`]:[`BROKER_PORT`];
/// it is responsible for waiting until the link is up (Wi-Fi joined, an
/// address leased) before dialling, so that the backoff counts real
/// attempts only. `rng` must be cryptographically secure (ESP chips:
/// `esp_hal::rng::Trng` while Wi-Fi runs, never the plain `Rng`).
///
/// `clock` tells the date for the certificate checks of CA mode (RFC 5280
/// §4.1.2.5), read at each connect: an [`SntpClock`](crate::sntp::SntpClock)
/// that the connector sets before dialling. While it has no time, a connect
/// fails with `Error::ClockNotSet` and the supervisor tries again. `None`
/// on boards that cannot learn the time (the ESP8266 AT modem): CA mode
/// then validates without it, by explicit choice and with a warning at
/// each connect; a certificate of flespi that expired before the firmware
/// was built ([`config::BUILD_TIME`]) is still refused, one that expired
/// later is not detected. Pins ignore dates.
///
/// `link` tells when the network is lost ([`Unwatched`] where the
/// connection itself says so).
pub async fn run<C, L, R, B>(
    connector: C,
    link: L,
    clock: Option<&dyn WallClock>,
    memory: &'static mut Memory,
    rng: &mut R,
    board: &mut B,
    settings: Settings<'_>,
) -> !
where
    C: Connector,
    L: Link,
    R: RngCore + CryptoRng,
    B: Board,
{
    let Memory {
        tls_read,
        tls_write,
        rx,
        tx,
        outbox,
    } = memory;

    let (Some(cmd_topic), Some(state_topic), Some(telemetry_topic), Some(echo_filter)) = (
        topic(settings.topic_prefix, "cmd"),
        topic(settings.topic_prefix, "state"),
        topic(settings.topic_prefix, "telemetry"),
        topic(settings.topic_prefix, "echo/+"),
    ) else {
        error!(
            "topic prefix of {} bytes is too long; nothing to do",
            settings.topic_prefix.len()
        );
        park(board).await
    };

    let flespi = Flespi::new(settings.client_id, Credentials::Token(settings.token));
    // CA mode survives flespi's yearly certificate renewal and checks dates
    // against `clock`; pins replace the CA check and need no clock.
    let (flespi, pinned) = match settings.trust {
        BrokerTrust::Roots(roots) => {
            if roots == mqtts::flespi::ROOTS {
                info!("trust: CA (flespi's GlobalSign roots)");
            } else {
                info!("trust: CA ({} root(s) of this build)", roots.len());
            }
            (flespi.with_roots(roots), false)
        }
        BrokerTrust::Pins(pins) => {
            for pin in pins {
                info!("trust: pinned, {pin}");
            }
            (flespi.pinned_only(pins), true)
        }
    };
    // The current time is at least the build time (CA mode's floor).
    let tls = flespi.tls_options().with_minimum_time(config::BUILD_TIME);
    let tls = match clock {
        Some(clock) => tls.with_wall_clock(clock),
        None => {
            if !pinned {
                warn!(
                    "trust: no clock on this board: a certificate that expired after the build ({}) is not detected",
                    UtcTime(config::BUILD_TIME)
                );
            }
            tls.allow_unknown_time()
        }
    };
    let subscriptions = [
        (cmd_topic.as_str(), QoS::AtLeastOnce),
        (echo_filter.as_str(), QoS::ExactlyOnce),
    ];
    let options = match flespi.connect_options() {
        Ok(options) => options
            .with_limits(settings.limits)
            .with_keep_alive(settings.keep_alive_secs)
            .with_persistent_session()
            .with_subscriptions(&subscriptions),
        Err(e) => {
            error!("MQTT settings rejected: {e}; nothing to do");
            park(board).await
        }
    };

    let backoff = Backoff {
        initial_ms: 1_000,
        max_ms: 120_000,
    };
    let mut supervisor = Supervisor::new(connector, EmbassyTimer, backoff);
    let mut session: mqtts::Session<'_, IN_FLIGHT> = mqtts::Session::new(outbox);

    info!(
        "client id {}, commands on {}, readings every {} s on {}",
        settings.client_id,
        cmd_topic,
        settings.publish_interval.as_secs(),
        telemetry_topic
    );
    let mut count: u32 = 0;
    let mut heap_reported = false;
    // A wait for the broker or the next reading may take the interval, and
    // the keep-alive exchange inside it.
    let keep_alive_exchange = Duration::from_secs(2 * u64::from(settings.keep_alive_secs));
    let session_budget = settings.publish_interval + SESSION_MARGIN.max(keep_alive_exchange);

    loop {
        let buffers = Buffers {
            tls_read: &mut tls_read[..],
            tls_write: &mut tls_write[..],
            rx: &mut rx[..],
            tx: &mut tx[..],
        };
        let started = EmbassyTimer.now();
        let attempt = pin!(supervisor.connect(rng, &tls, &mut session, buffers, &options));
        let (mut client, connected) =
            match watchdog::guarded(&mut || board.feed_watchdog(), CONNECT_BUDGET, attempt).await {
                Ok(connection) => connection,
                Err(failure) => {
                    log_failure(&failure);
                    continue; // the next connect() waits out the backoff
                }
            };
        info!(
            "connected to {} in {} ms: session present {}, {} message(s) resent, subscriptions {:?}",
            flespi.host(),
            EmbassyTimer.now().saturating_sub(started),
            connected.session_present,
            connected.resent,
            connected.granted
        );
        if !heap_reported {
            heap_reported = true;
            // The handshake (RSA chain in CA mode) is the heap's peak.
            match board.heap_use() {
                Some(heap) => info!(
                    "heap: peak {} of {} bytes since boot, {} in use",
                    heap.peak, heap.size, heap.current
                ),
                None => info!("heap: not counted on this board"),
            }
        }

        // Tell the dashboard where the output stands.
        let state = state_json(board.output());
        if !publish(
            &mut client,
            board,
            &state_topic,
            state.as_bytes(),
            QoS::AtLeastOnce,
            true,
        )
        .await
        {
            continue;
        }

        let mut next_reading = Instant::now();
        loop {
            // `poll_until` ends at the next reading only where polling is
            // cancel-safe, after its writes (an acknowledgement, a PINGREQ):
            // a timer racing `poll` cut them whenever it fired mid-write,
            // and over a slow modem a reading due at connect time did so at
            // every reconnect. A lost link may cut a write: the connection
            // is gone then anyway.
            let wake = next_wake(&mut client, &link, board, next_reading, session_budget).await;
            let action = match wake {
                Either::First(Ok(Some(Event::Message(message)))) => {
                    if message.topic == cmd_topic.as_str() {
                        Some(Action::Output(parse_command(message.payload)))
                    } else if let Some(qos) = echo_qos(settings.topic_prefix, message.topic) {
                        match Vec::from_slice(message.payload) {
                            Ok(payload) => Some(Action::Echo { qos, payload }),
                            Err(_) => {
                                warn!(
                                    "echo of {} bytes refused: at most {ECHO_LEN}",
                                    message.payload.len()
                                );
                                None
                            }
                        }
                    } else {
                        info!("message on {} ignored", message.topic);
                        None
                    }
                }
                Either::First(Ok(Some(Event::MessageTooLarge { size, capacity, .. }))) => {
                    warn!("skipped a message of {size} bytes (buffer {capacity})");
                    None
                }
                Either::First(Ok(Some(_))) => None,
                Either::First(Err(e)) => {
                    warn!("connection lost: {e}");
                    break;
                }
                Either::First(Ok(None)) => {
                    next_reading += settings.publish_interval;
                    if next_reading < Instant::now() {
                        next_reading = Instant::now() + settings.publish_interval;
                    }
                    count = count.wrapping_add(1);
                    let reading = reading_json(count, board.temperature_c(), board.output());
                    if !publish(
                        &mut client,
                        board,
                        &telemetry_topic,
                        reading.as_bytes(),
                        QoS::AtLeastOnce,
                        false,
                    )
                    .await
                    {
                        break;
                    }
                    None
                }
                Either::Second(()) => {
                    // Keep-alive would notice only after 60 to 90 s; the
                    // connector waits for the network before dialling again.
                    warn!("network lost: closing the connection until it is back");
                    break;
                }
            };
            let usable = match action {
                Some(Action::Output(command)) => {
                    let on = match command {
                        Command::Set(on) => on,
                        Command::Toggle => !board.output(),
                    };
                    board.set_output(on);
                    info!("output {}", if on { "on" } else { "off" });
                    let state = state_json(on);
                    publish(
                        &mut client,
                        board,
                        &state_topic,
                        state.as_bytes(),
                        QoS::AtLeastOnce,
                        true,
                    )
                    .await
                }
                Some(Action::Echo { qos, payload }) => {
                    let leaf = match qos {
                        QoS::AtMostOnce => "echoed/0",
                        QoS::AtLeastOnce => "echoed/1",
                        QoS::ExactlyOnce => "echoed/2",
                    };
                    match topic(settings.topic_prefix, leaf) {
                        Some(echoed) => {
                            info!("echo: {} bytes at {qos:?}", payload.len());
                            publish(&mut client, board, &echoed, &payload, qos, false).await
                        }
                        None => {
                            warn!("echo refused: the topic prefix is too long");
                            true
                        }
                    }
                }
                None => true,
            };
            if !usable {
                break;
            }
        }
        // Dropping the client closes the socket; the session keeps what was
        // in flight and resends it after the next connect.
        drop(client);
    }
}

/// Logs a failed attempt with its typed error. A pin mismatch or a refused
/// chain names the fingerprints the broker presented (in the error's text)
/// and how to pin them.
fn log_failure(failure: &Failure) {
    match &failure.error {
        Error::PinMismatch { presented } => {
            error!("{failure}");
            // Either flespi renewed its certificate or someone is in the
            // way: only a check from a trusted network tells which.
            error!(
                "not the pinned certificate: if flespi renewed it (compare with `openssl s_client -connect mqtt.flespi.io:8883` from a trusted network), rebuild with FLESPI_PIN_SHA256={} or FLESPI_PIN_SPKI_SHA256={}",
                presented.sha256(),
                HexColons(&presented.spki_sha256())
            );
        }
        _ if failure.is_permanent() => {
            error!("{failure} (will not fix itself: check the token, client id and trust)")
        }
        _ => warn!("{failure}"),
    }
}

/// The next event, the next reading (`Ok(None)`) or a lost link, feeding
/// the board's watchdog for at most `budget`.
async fn next_wake<'c, T: Transport, const N: usize>(
    client: &'c mut Client<'_, '_, T, EmbassyTimer, N>,
    link: &impl Link,
    board: &mut impl Board,
    next_reading: Instant,
    budget: Duration,
) -> Either<Result<Option<Event<'c>>, Error>, ()> {
    let wake = pin!(select(
        client.poll_until(next_reading.as_millis()),
        link.lost()
    ));
    watchdog::guarded(&mut || board.feed_watchdog(), budget, wake).await
}

/// Publishes ([`publish_once`]), feeding the board's watchdog for at most
/// [`SESSION_MARGIN`].
async fn publish<T: Transport, const N: usize>(
    client: &mut Client<'_, '_, T, EmbassyTimer, N>,
    board: &mut impl Board,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
) -> bool {
    let sent = pin!(publish_once(client, topic, payload, qos, retain));
    watchdog::guarded(&mut || board.feed_watchdog(), SESSION_MARGIN, sent).await
}

/// Publishes at `qos`; at QoS 1 and 2 the acknowledgements come through
/// `poll()`. Returns whether the connection is still usable; every error
/// is logged.
async fn publish_once<T: Transport, const N: usize>(
    client: &mut Client<'_, '_, T, EmbassyTimer, N>,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
) -> bool {
    match client.publish(topic, payload, qos, retain).await {
        Ok(()) => true,
        // Stored and sent; PUBACK will come through poll().
        Err(Error::AckPending(_)) => true,
        Err(e) => {
            warn!("publish to {topic} failed: {e}");
            // e.g. OutboxFull keeps the connection; I/O errors do not. A
            // QoS 1 message already stored stays in the session either way.
            !client.is_broken()
        }
    }
}

/// The largest echo payload (copied out of the receive buffer before it is
/// published back).
const ECHO_LEN: usize = 256;

/// What a received message asks for.
// Lives for one loop turn on the stack; the echo's copy is the point.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
enum Action {
    Output(Command),
    Echo {
        qos: QoS,
        payload: Vec<u8, ECHO_LEN>,
    },
}

/// The QoS an echo request on `topic` asks for: `<prefix>/echo/<0|1|2>`.
fn echo_qos(prefix: &str, topic: &str) -> Option<QoS> {
    let leaf = topic.strip_prefix(prefix)?.strip_prefix("/echo/")?;
    match leaf {
        "0" => Some(QoS::AtMostOnce),
        "1" => Some(QoS::AtLeastOnce),
        "2" => Some(QoS::ExactlyOnce),
        _ => None,
    }
}

/// What a command asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Command {
    Set(bool),
    Toggle,
}

fn parse_command(payload: &[u8]) -> Command {
    let text = payload.trim_ascii();
    let is = |word: &str| text.eq_ignore_ascii_case(word.as_bytes());
    if is("on") || is("1") || is("true") {
        Command::Set(true)
    } else if is("off") || is("0") || is("false") {
        Command::Set(false)
    } else {
        Command::Toggle
    }
}

fn topic(prefix: &str, leaf: &str) -> Option<String<TOPIC_LEN>> {
    let mut topic = String::new();
    write!(topic, "{prefix}/{leaf}").ok()?;
    Some(topic)
}

fn state_json(on: bool) -> String<16> {
    let mut json = String::new();
    // Fits: `{"on":false}` is 12 bytes.
    let _ = write!(json, "{{\"on\":{on}}}");
    json
}

fn reading_json(count: u32, temperature_c: Option<f32>, on: bool) -> String<96> {
    let mut json = String::new();
    let uptime_s = Instant::now().as_secs();
    // At most ~75 bytes: the writes cannot overflow 96.
    let _ = write!(json, "{{\"count\":{count},\"uptime_s\":{uptime_s}");
    if let Some(celsius) = temperature_c.filter(|t| t.is_finite() && t.abs() < 1000.0) {
        // Tenths of a degree as integers: no float formatting code in flash.
        let tenths = (celsius * 10.0 + if celsius < 0.0 { -0.5 } else { 0.5 }) as i32;
        let sign = if tenths < 0 { "-" } else { "" };
        let tenths = tenths.unsigned_abs();
        let _ = write!(json, ",\"temp_c\":{sign}{}.{}", tenths / 10, tenths % 10);
    }
    let _ = write!(json, ",\"on\":{on}}}");
    json
}

/// Waits forever (a configuration error that only a new build fixes),
/// feeding the watchdog: a reset would not fix it either.
async fn park(board: &mut impl Board) -> ! {
    loop {
        board.feed_watchdog();
        Timer::after(watchdog::FEED_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands() {
        let cases: [(&[u8], Command); 9] = [
            (b"on", Command::Set(true)),
            (b" ON\r\n", Command::Set(true)),
            (b"1", Command::Set(true)),
            (b"True", Command::Set(true)),
            (b"off", Command::Set(false)),
            (b"0", Command::Set(false)),
            (b"false", Command::Set(false)),
            (b"toggle", Command::Toggle),
            (b"", Command::Toggle),
        ];
        for (payload, expected) in cases {
            assert_eq!(parse_command(payload), expected, "{payload:?}");
        }
    }

    #[test]
    fn state_and_reading_json() {
        assert_eq!(state_json(true).as_str(), "{\"on\":true}");
        assert_eq!(state_json(false).as_str(), "{\"on\":false}");
        // Uptime comes from embassy-time's clock (the tests' mock clock).
        let _clock = crate::test_clock();
        let before = Instant::now().as_secs();
        let with = reading_json(7, Some(41.46), false);
        let after = Instant::now().as_secs();
        let expected = |uptime: u64| {
            std::format!("{{\"count\":7,\"uptime_s\":{uptime},\"temp_c\":41.5,\"on\":false}}")
        };
        assert!(
            with.as_str() == expected(before) || with.as_str() == expected(after),
            "{with}"
        );
        // Rounds to the nearest tenth; no "-0.0".
        let zero = reading_json(u32::MAX, Some(-0.04), true);
        assert!(zero.ends_with(",\"temp_c\":0.0,\"on\":true}"), "{zero}");
        let cold = reading_json(1, Some(-12.36), true);
        assert!(cold.ends_with(",\"temp_c\":-12.4,\"on\":true}"), "{cold}");
        // No sensor, or a nonsense value: the field is left out.
        for temperature in [None, Some(f32::NAN), Some(f32::INFINITY), Some(5000.0)] {
            let json = reading_json(2, temperature, true);
            assert!(!json.contains("temp_c"), "{json}");
            assert!(json.ends_with(",\"on\":true}"), "{json}");
        }
        // The longest reading fits its buffer.
        let longest = reading_json(u32::MAX, Some(-999.9), false);
        assert!(longest.contains("\"count\":4294967295"), "{longest}");
        assert!(
            longest.ends_with("\"temp_c\":-999.9,\"on\":false}"),
            "{longest}"
        );
    }

    #[test]
    fn echo_requests() {
        let prefix = "devices/esp32c3-a0b1";
        let cases = [
            ("devices/esp32c3-a0b1/echo/0", Some(QoS::AtMostOnce)),
            ("devices/esp32c3-a0b1/echo/1", Some(QoS::AtLeastOnce)),
            ("devices/esp32c3-a0b1/echo/2", Some(QoS::ExactlyOnce)),
            ("devices/esp32c3-a0b1/echo/3", None),
            ("devices/esp32c3-a0b1/echo/", None),
            ("devices/esp32c3-a0b1/echo/1/x", None),
            ("devices/esp32c3-a0b1/echoed/1", None),
            ("devices/esp32c3-a0b1x/echo/1", None),
            ("devices/other/echo/1", None),
        ];
        for (topic, expected) in cases {
            assert_eq!(echo_qos(prefix, topic), expected, "{topic}");
        }
    }

    #[test]
    fn topics() {
        assert_eq!(
            topic("devices/esp32c3-a0b1", "cmd").as_deref(),
            Some("devices/esp32c3-a0b1/cmd")
        );
        let prefix = "p".repeat(TOPIC_LEN - 4);
        assert_eq!(topic(&prefix, "cmd").map(|t| t.len()), Some(TOPIC_LEN));
        assert_eq!(topic(&prefix, "state"), None);
    }
}
