//! A [`Connector`] over an embassy-net stack (feature `embassy-net`): waits
//! until the stack has an address, then resolves and connects through
//! mqtts's [`NalConnector`] with embassy-net's DNS socket and TCP client.
//!
//! ```ignore
//! static TCP: ConstStaticCell<TcpState> = ConstStaticCell::new(TcpState::new());
//! let network = Network::new(stack, TCP.take());
//! let connector = network.connector(BROKER_HOST, BROKER_PORT);
//! mqtts_board_app::run(connector, memory, &mut rng, &mut board, settings).await
//! ```

use embassy_net::Stack;
use embassy_net::dns::DnsSocket;
use embassy_net::tcp::client::{TcpClient, TcpClientState};
use embassy_time::Duration;
use log::info;
use mqtts::Error;
use mqtts::reconnect::{Connector, NalConnector};

/// Socket receive buffer: a few TCP segments of a 16 KB TLS record.
const TCP_RX: usize = 4096;
/// Socket send buffer: one TLS record piece (the app writes 2 KB at most).
const TCP_TX: usize = 2048;

/// A connect, or data left unacknowledged, gives up after this long (a
/// Wi-Fi that died without telling the stack).
pub const TCP_TIMEOUT: Duration = Duration::from_secs(20);

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
        }
    }
}

/// Waits for the stack's address (DHCP), then dials.
pub struct StackConnector<'a, 'd> {
    stack: Stack<'d>,
    nal: NalConnector<'a, Tcp<'d>, DnsSocket<'d>>,
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
        self.nal.connect().await
    }
}
