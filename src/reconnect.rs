//! Reconnecting: dial, TLS, MQTT, with exponential backoff, jitter and a
//! cap between attempts, resuming the session each time (MQTT 3.1.1 §4.4).
//!
//! Firmware never gives up and never spins: each failed attempt is
//! returned (to log it), and the next [`Supervisor::connect`] first sleeps
//! on the timer.
//!
//! ```no_run
//! # async fn demo<C: mqtts::reconnect::Connector, TM: mqtts::time::Timer>(
//! #     connector: C, timer: TM, rng: &mut (impl rand_core::RngCore + rand_core::CryptoRng),
//! #     tls: &mqtts::tls::TlsOptions<'_>,
//! # ) {
//! use mqtts::client::{Buffers, ConnectOptions, Event};
//! use mqtts::reconnect::{Backoff, Supervisor};
//!
//! let mut outbox = [0u8; 2048];
//! let mut session: mqtts::Session<'_, 8> = mqtts::Session::new(&mut outbox);
//! let (mut tls_read, mut tls_write) = ([0u8; 1302], [0u8; 1152]);
//! let (mut rx, mut tx) = ([0u8; 1024], [0u8; 512]);
//! let options = ConnectOptions::new("device-42").with_persistent_session();
//! let mut supervisor = Supervisor::new(connector, timer, Backoff::default());
//! loop {
//!     let buffers = Buffers { tls_read: &mut tls_read, tls_write: &mut tls_write, rx: &mut rx, tx: &mut tx };
//!     let mut client = match supervisor.connect(rng, tls, &mut session, buffers, &options).await {
//!         Ok((client, _)) => client,
//!         Err(failure) => {
//!             // e.g. defmt::warn!("{}", failure);
//!             continue;
//!         }
//!     };
//!     while let Ok(event) = client.poll().await {
//!         if let Event::Message(message) = event { /* act on it */ }
//!     }
//! }
//! # }
//! ```

use crate::client::{Buffers, Client, ConnectOptions, Connected};
use crate::error::Error;
use crate::mqtt::ConnackCode;
use crate::session::Session;
use crate::time::{Millis, Timer};
use crate::tls::{TlsOptions, TlsStream};
use embedded_io_async::{Read, Write};
use rand_core::{CryptoRng, RngCore};

/// Opens a new connected socket to the broker.
#[allow(async_fn_in_trait)] // used with concrete types only, never as `dyn`
pub trait Connector {
    /// The socket, which may borrow the connector (embassy-net's do).
    type Socket<'a>: Read + Write
    where
        Self: 'a;

    /// Resolves the broker's name and connects.
    async fn connect(&mut self) -> Result<Self::Socket<'_>, Error>;
}

/// A [`Connector`] from `embedded-nal-async` traits, which embassy-net
/// (and std adapters) implement: resolves `host` with `dns`, then connects
/// to it on `port` with `tcp`.
#[derive(Debug)]
pub struct NalConnector<'a, T, D> {
    /// The TCP client.
    pub tcp: &'a T,
    /// The resolver.
    pub dns: &'a D,
    /// The broker's host name.
    pub host: &'a str,
    /// The broker's port (8883 for MQTT over TLS).
    pub port: u16,
}

impl<T, D> Connector for NalConnector<'_, T, D>
where
    T: embedded_nal_async::TcpConnect,
    D: embedded_nal_async::Dns,
{
    type Socket<'b>
        = T::Connection<'b>
    where
        Self: 'b;

    async fn connect(&mut self) -> Result<Self::Socket<'_>, Error> {
        use embedded_io::Error as _;
        let ip = self
            .dns
            .get_host_by_name(self.host, embedded_nal_async::AddrType::Either)
            .await
            .map_err(|_| Error::NameResolution)?;
        self.tcp
            .connect(core::net::SocketAddr::new(ip, self.port))
            .await
            .map_err(|e| Error::Io(e.kind()))
    }
}

/// Delays between attempts: `initial_ms`, doubling after each failure up to
/// `max_ms`, each drawn at random from its upper half so that many devices
/// restarted together (after a broker outage) do not reconnect in lockstep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Backoff {
    /// The delay after the first failure.
    pub initial_ms: Millis,
    /// The cap.
    pub max_ms: Millis,
}

impl Default for Backoff {
    /// 1 s doubling up to 5 minutes.
    fn default() -> Self {
        Self {
            initial_ms: 1_000,
            max_ms: 300_000,
        }
    }
}

impl Backoff {
    /// The delay before attempt `failures + 1`, before jitter.
    pub fn delay_ms(&self, failures: u32) -> Millis {
        if failures == 0 {
            return 0;
        }
        let doublings = (failures - 1).min(40);
        self.initial_ms
            .saturating_mul(1 << doublings)
            .min(self.max_ms)
    }

    /// The delay with jitter: uniform in `[delay / 2, delay]`.
    pub fn jittered_ms(&self, failures: u32, random: u32) -> Millis {
        let delay = self.delay_ms(failures);
        let half = delay / 2;
        half + (Millis::from(random) % (delay - half + 1))
    }
}

/// A failed attempt, and when the next one will start.
#[derive(Debug, Clone, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Failure {
    /// Why the attempt failed.
    pub error: Error,
    /// Consecutive failed attempts, this one included.
    pub failures: u32,
    /// How long the next [`Supervisor::connect`] will wait before dialling.
    pub retry_in_ms: Millis,
}

impl Failure {
    /// Whether retrying is unlikely to help before someone changes the
    /// configuration or the broker: a pin or certificate mismatch, bad
    /// credentials, a refused client id. (A Wi-Fi join refused as "wrong
    /// password" is not: ESP modems also report a 4-way handshake lost to a
    /// weak signal that way.) The supervisor retries anyway, at
    /// the capped delay; firmware may choose to stop and report instead.
    pub fn is_permanent(&self) -> bool {
        matches!(
            self.error,
            Error::PinMismatch { .. }
                | Error::CertificateRejected { .. }
                | Error::UnsupportedKey(_)
                | Error::Config(_)
                | Error::InvalidTopic(_)
                | Error::ConnectionRefused(
                    ConnackCode::BadUserNameOrPassword
                        | ConnackCode::NotAuthorized
                        | ConnackCode::IdentifierRejected
                        | ConnackCode::UnacceptableProtocolVersion
                )
        )
    }
}

impl core::fmt::Display for Failure {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(
            f,
            "connection attempt {} failed: {}; retrying in {} ms",
            self.failures, self.error, self.retry_in_ms
        )
    }
}

/// Dials, opens TLS and MQTT, with backoff between failed attempts.
#[derive(Debug)]
pub struct Supervisor<C, TM> {
    connector: C,
    timer: TM,
    backoff: Backoff,
    failures: u32,
    next_attempt_at: Millis,
    /// When the last successful connection was made.
    connected_at: Option<Millis>,
}

/// A connection must last this long for the backoff to start over: one
/// that the broker drops right after CONNACK (a duplicate client id, an ACL)
/// must not make the device reconnect in a tight loop.
pub const STABLE_AFTER_MS: Millis = 30_000;

impl<C: Connector, TM: Timer> Supervisor<C, TM> {
    /// A supervisor whose first attempt starts at once.
    pub fn new(connector: C, timer: TM, backoff: Backoff) -> Self {
        Self {
            connector,
            timer,
            backoff,
            failures: 0,
            next_attempt_at: 0,
            connected_at: None,
        }
    }

    /// Consecutive failed attempts so far.
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// The connector.
    pub fn connector(&self) -> &C {
        &self.connector
    }

    /// One attempt: waits until the backoff delay after the previous
    /// failure has passed (on the timer, never spinning), dials, opens TLS
    /// and MQTT (resending the session's messages in flight). Call it again
    /// after a [`Failure`], or after the returned client fails.
    ///
    /// The backoff starts over once a connection lasted
    /// [`STABLE_AFTER_MS`]; one that dies sooner counts as a failure.
    pub async fn connect<'b, 's, R, const N: usize>(
        &'b mut self,
        rng: &mut R,
        tls_options: &TlsOptions<'_>,
        session: &'b mut Session<'s, N>,
        buffers: Buffers<'b>,
        options: &ConnectOptions<'_>,
    ) -> Result<
        (
            Client<'b, 's, TlsStream<'b, C::Socket<'b>, TM>, TM, N>,
            Connected,
        ),
        Failure,
    >
    where
        R: RngCore + CryptoRng,
    {
        // Disjoint borrows: the socket borrows the connector for 'b, the
        // backoff state is updated beside it.
        let Self {
            connector,
            timer,
            backoff,
            failures,
            next_attempt_at,
            connected_at,
        } = self;
        if let Some(since) = connected_at.take() {
            if timer.now().saturating_sub(since) < STABLE_AFTER_MS {
                // The last connection died young: back off as after a failure.
                *failures = failures.saturating_add(1);
                let delay = backoff.jittered_ms(*failures, rng.next_u32());
                *next_attempt_at = timer.now().saturating_add(delay);
            } else {
                *failures = 0;
            }
        }
        timer.sleep_until(*next_attempt_at).await;
        let attempt = match connector.connect().await {
            Ok(socket) => {
                let timer = timer.clone();
                Client::connect_tls(socket, rng, tls_options, timer, session, buffers, options)
                    .await
            }
            Err(e) => Err(e),
        };
        match attempt {
            Ok(connected) => {
                // The backoff starts over once this connection proves stable.
                *connected_at = Some(timer.now());
                *next_attempt_at = 0;
                Ok(connected)
            }
            Err(error) => {
                *failures = failures.saturating_add(1);
                let mut failure = Failure {
                    error,
                    failures: *failures,
                    retry_in_ms: 0,
                };
                // A permanent error is retried at the cap: the broker or
                // its certificate may be fixed, but not soon.
                failure.retry_in_ms = if failure.is_permanent() {
                    backoff.max_ms
                } else {
                    backoff.jittered_ms(*failures, rng.next_u32())
                };
                *next_attempt_at = timer.now().saturating_add(failure.retry_in_ms);
                Err(failure)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let backoff = Backoff {
            initial_ms: 1_000,
            max_ms: 60_000,
        };
        let delays: [Millis; 9] = core::array::from_fn(|i| backoff.delay_ms(i as u32));
        assert_eq!(
            delays,
            [
                0, 1_000, 2_000, 4_000, 8_000, 16_000, 32_000, 60_000, 60_000
            ]
        );
        assert_eq!(backoff.delay_ms(u32::MAX), 60_000);
    }

    #[test]
    fn jitter_stays_in_the_upper_half() {
        let backoff = Backoff::default();
        for random in [0, 1, 499, 500, 12_345, u32::MAX] {
            let delay = backoff.jittered_ms(2, random);
            assert!((1_000..=2_000).contains(&delay), "{delay}");
        }
        assert_eq!(backoff.jittered_ms(0, 7), 0);
        let spread: std::collections::BTreeSet<Millis> =
            (0..100).map(|r| backoff.jittered_ms(3, r * 7919)).collect();
        assert!(spread.len() > 50, "jitter spreads the delays");
    }
}
