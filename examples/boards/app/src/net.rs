//! A [`Connector`] over an embassy-net stack (feature `embassy-net`): waits
//! until the stack has an address, sets the clock by SNTP when it has no
//! time (or a day-old one), then resolves and connects through mqtts's
//! [`NalConnector`] with embassy-net's DNS socket and TCP client.
//!
//! [`run`] puts it together for a board with an embassy-net stack:
//!
//! ```ignore
//! static TCP: ConstStaticCell<TcpState> = ConstStaticCell::new(TcpState::new());
//! mqtts_board_app::net::run(stack, TCP.take(), memory, &mut rng, &mut board, settings).await
//! ```

use embassy_futures::select::select;
use embassy_net::dns::{DnsQueryType, DnsSocket};
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_net::udp::{PacketMetadata, UdpSocket};
use embassy_net::{IpAddress, Stack};
use embassy_time::{Duration, with_timeout};
use log::{info, warn};
use mqtts::Error;
use mqtts::error::UtcTime;
use mqtts::reconnect::{Connector, NalConnector};
use rand_core::{CryptoRng, RngCore};

use crate::sntp::{self, SntpClock};
use crate::{BROKER_HOST, BROKER_PORT, Board, Link, Memory, Settings, config};

/// Runs the application ([`crate::run`]) over `stack`: TCP to the broker
/// with `tcp`'s buffers, certificate dates from SNTP
/// ([`config::SNTP_SERVER`]), asked before the first connect and daily,
/// and the connection dropped as soon as the stack loses its link or
/// address.
pub async fn run<R, B>(
    stack: Stack<'_>,
    tcp: &TcpState,
    memory: &'static mut Memory,
    rng: &mut R,
    board: &mut B,
    settings: Settings<'_>,
) -> !
where
    R: RngCore + CryptoRng,
    B: Board,
{
    let clock = SntpClock::new();
    let network = Network::new(stack, tcp);
    let connector = network.connector(BROKER_HOST, BROKER_PORT).with_time_sync(
        &clock,
        config::SNTP_SERVER,
        rng.next_u64(),
    );
    crate::run(connector, stack, Some(&clock), memory, rng, board, settings).await
}

/// The stack's link (Wi-Fi association) and address (DHCP lease): losing
/// either loses the connection.
impl Link for Stack<'_> {
    async fn lost(&self) {
        select(self.wait_link_down(), self.wait_config_down()).await;
    }
}

/// Socket receive buffer: a few TCP segments of a 16 KB TLS record.
const TCP_RX: usize = 4096;
/// Socket send buffer: one TLS record piece (the app writes 2 KB at most).
const TCP_TX: usize = 2048;

/// A connect, or data left unacknowledged, gives up after this long (a
/// Wi-Fi that died without telling the stack).
pub const TCP_TIMEOUT: Duration = Duration::from_secs(20);

/// How long an SNTP server has to answer one request.
pub const SNTP_TIMEOUT: Duration = Duration::from_secs(5);

type Tcp<'d> = TcpClient<'d, 1, TCP_TX, TCP_RX>;

/// The TCP buffers of the one connection (about 6 KB), meant for a
/// `static`.
pub struct TcpState(TcpClientState<1, TCP_TX, TCP_RX>);

impl TcpState {
    /// Zeroed buffers (a `const fn`, so a `static` holding it is in `.bss`).
    pub const fn new() -> Self {
        Self(TcpClientState::new())
    }
}

impl Default for TcpState {
    fn default() -> Self {
        Self::new()
    }
}

/// embassy-net's TCP client and resolver on one stack.
pub struct Network<'d> {
    stack: Stack<'d>,
    tcp: Tcp<'d>,
    dns: DnsSocket<'d>,
}

impl<'d> Network<'d> {
    /// The client (with [`TCP_TIMEOUT`]) and resolver.
    pub fn new(stack: Stack<'d>, state: &'d TcpState) -> Self {
        let mut tcp = TcpClient::new(stack, &state.0);
        tcp.set_timeout(Some(TCP_TIMEOUT));
        Self {
            stack,
            tcp,
            dns: DnsSocket::new(stack),
        }
    }

    /// A connector to `host`:`port`.
    pub fn connector<'a>(&'a self, host: &'a str, port: u16) -> StackConnector<'a, 'd> {
        StackConnector {
            stack: self.stack,
            nal: NalConnector {
                tcp: &self.tcp,
                dns: &self.dns,
                host,
                port,
            },
            time_sync: None,
        }
    }
}

/// Waits for the stack's address (DHCP), sets the clock if asked to, then
/// dials.
pub struct StackConnector<'a, 'd> {
    stack: Stack<'d>,
    nal: NalConnector<'a, Tcp<'d>, DnsSocket<'d>>,
    time_sync: Option<TimeSync<'a>>,
}

/// The clock the connector sets by SNTP, and from where.
struct TimeSync<'a> {
    clock: &'a SntpClock,
    server: &'a str,
    /// The next request's transmit timestamp (see [`sntp::request`]).
    nonce: u64,
}

impl<'a, 'd> StackConnector<'a, 'd> {
    /// Before dialling, sets `clock` by SNTP from `server` (a host name or
    /// an address) when it has no time or a day-old one. `seed` comes from
    /// the TRNG: the requests carry values derived from it that a reply
    /// must echo. A failed query is logged; the TLS connect then fails with
    /// `Error::ClockNotSet` if the clock has no time at all.
    pub fn with_time_sync(mut self, clock: &'a SntpClock, server: &'a str, seed: u64) -> Self {
        self.time_sync = Some(TimeSync {
            clock,
            server,
            nonce: seed,
        });
        self
    }
}

impl TimeSync<'_> {
    /// Asks the server once; sets the clock on a valid reply.
    async fn sync(&mut self, stack: Stack<'_>) -> Result<u64, &'static str> {
        // Each request its own value (an LCG step: Knuth's MMIX constants).
        self.nonce = self
            .nonce
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        let nonce = self.nonce;
        let server: IpAddress = *stack
            .dns_query(self.server, DnsQueryType::A)
            .await
            .map_err(|_| "name not resolved")?
            .first()
            .ok_or("name not resolved")?;

        let (mut rx_meta, mut tx_meta) = ([PacketMetadata::EMPTY; 1], [PacketMetadata::EMPTY; 1]);
        let (mut rx, mut tx) = ([0u8; 2 * sntp::PACKET_LEN], [0u8; sntp::PACKET_LEN]);
        let mut socket = UdpSocket::new(stack, &mut rx_meta, &mut rx, &mut tx_meta, &mut tx);
        socket.bind(0).map_err(|_| "no UDP port")?;
        socket
            .send_to(&sntp::request(nonce), (server, sntp::PORT))
            .await
            .map_err(|_| "request not sent")?;
        let mut reply = [0u8; 2 * sntp::PACKET_LEN];
        let unix_secs = loop {
            let (len, from) = with_timeout(SNTP_TIMEOUT, socket.recv_from(&mut reply))
                .await
                .map_err(|_| "no answer")?
                .map_err(|_| "reply too large")?;
            // Datagrams from elsewhere are not replies.
            if from.endpoint.addr != server || from.endpoint.port != sntp::PORT {
                continue;
            }
            let datagram = reply.get(..len).unwrap_or_default();
            break sntp::parse_reply(datagram, nonce).map_err(|e| match e {
                sntp::SntpError::KissOfDeath => "the server refused (kiss-o'-death)",
                sntp::SntpError::ServerUnsynchronized => "the server's clock is not set",
                _ => "not a reply to the request",
            })?;
        };
        self.clock.set(unix_secs);
        Ok(unix_secs)
    }
}

impl<'a, 'd> Connector for StackConnector<'a, 'd> {
    type Socket<'s>
        = <NalConnector<'a, Tcp<'d>, DnsSocket<'d>> as Connector>::Socket<'s>
    where
        Self: 's;

    async fn connect(&mut self) -> Result<Self::Socket<'_>, Error> {
        if !self.stack.is_config_up() {
            // No backoff while the link is down: the Wi-Fi task reconnects,
            // DHCP leases, and this returns as soon as there is an address.
            info!("waiting for an IP address");
            self.stack.wait_config_up().await;
            if let Some(config) = self.stack.config_v4() {
                info!("IP address {}", config.address);
            }
        }
        if let Some(time_sync) = self
            .time_sync
            .as_mut()
            .filter(|sync| sync.clock.needs_sync())
        {
            match time_sync.sync(self.stack).await {
                Ok(unix_secs) => info!("SNTP {}: {}", time_sync.server, UtcTime(unix_secs)),
                Err(reason) => warn!("SNTP {}: {reason}", time_sync.server),
            }
        }
        self.nal.connect().await
    }
}
