//! An ESP8266 (or any ESP chip) running Espressif's AT firmware as the
//! Wi-Fi modem of the microcontroller that runs mqtts (feature `esp-at`).
//!
//! Rust cannot drive the ESP8266's radio, but the ESP8266 can be a modem:
//! flashed with Espressif's AT firmware, it joins Wi-Fi and carries TCP for
//! a host MCU that sends it AT commands over a UART. TLS still ends on the
//! host, so pins and CA checks protect the whole path: the modem only ever
//! sees ciphertext.
//!
//! - [`parser`]: the modem's byte stream, parsed without I/O (lines, the
//!   `>` prompt, binary data after `+CIPRECVDATA`/`+IPD` headers).
//! - [`AtModem`]: the driver over any `embedded_io_async` UART, with a
//!   timeout (on mqtts's [`Timer`](crate::time::Timer)) on every command.
//! - [`AtSocket`]: the TCP connection as an `embedded_io_async` socket for
//!   [`tls::connect`](crate::tls::connect).
//! - [`AtConnector`]: a [`Connector`](crate::reconnect::Connector) that
//!   (re)initialises the modem, joins Wi-Fi when needed and connects by host
//!   name, for [`Supervisor`](crate::reconnect::Supervisor); it resets a
//!   modem that stopped answering (by its EN pin, or `AT+RST`).
//!
//! # Firmware: ESP-AT v2.2 for ESP8266
//!
//! Written for **ESP-AT v2.2.x.0 for ESP8266** (`ESP8266-IDF-AT`, the last
//! line Espressif released for the ESP8266; `AT+GMR` prints
//! `AT version:2.2.x.0`). Its replies used here are the same in NONOS AT
//! 1.7 (the older `ESP8266_NONOS_SDK` firmware) except for two details the
//! parser accepts in both forms: the passive-mode data header
//! (`+CIPRECVDATA:<len>,` in 2.x, `+CIPRECVDATA,<len>:` in 1.7) and the end
//! of a failed join (`ERROR` in 2.x, `FAIL` in 1.7).
//!
//! # Passive receive mode
//!
//! The driver sets `AT+CIPRECVMODE=1`: the modem keeps received TCP data
//! and only announces it (`+IPD,<len>`); the host fetches it with
//! `AT+CIPRECVDATA=<n>`, never more than its buffer has room for. In the
//! default active mode the modem pushes `+IPD,<len>:<data>` whenever data
//! arrives, and a host that is busy elsewhere (a TLS handshake computes for
//! tens of milliseconds) would overrun its UART FIFO without hardware flow
//! control. In passive mode bulk data only crosses the UART while the host
//! is reading it, the modem's TCP window slows the sender when the host is
//! slow, and nothing is lost. The parser and driver still accept an active
//! `+IPD,<len>:<data>` (kept, as long as it fits).
//!
//! # Hardware flow control
//!
//! Passive mode bounds *when* data crosses the UART, not how fast: a reply
//! to `AT+CIPRECVDATA` is up to 2 KB in one burst, and a host that stalls
//! for a few milliseconds inside it (an interrupt, a flash write) overruns
//! a 128-byte UART FIFO. RTS/CTS flow control lets the host pause the
//! modem, but ESP-AT 2.2 for the ESP8266 starts with RTS only: the modem
//! ignores its CTS input, so the host's RTS wire does nothing.
//! [`AtModem::with_flow_control`] makes every [`AtModem::init`] send
//! `AT+UART_CUR=<baud>,8,1,0,3` (RTS and CTS) after `ATE0`; the baud rate
//! stays what it is. Both wires must be connected and the host's UART
//! configured for them. Firmware that answers `ERROR` (some NONOS AT 1.x
//! builds) is tolerated, and [`AtModem::flow_control`] says `Some(false)`:
//! the modem then cannot be paused, which the firmware should log.
//! Without the opt-in nothing is sent.
//!
//! # A hung modem
//!
//! A modem can hang (after a brown-out, say) and answer nothing until it
//! restarts. After [`RESET_AFTER`] consecutive connects in which it did
//! not answer (a command timed out, or it never answered `AT`),
//! [`AtConnector`] resets it before the next one: EN held low for
//! [`RESET_PULSE_MS`] if the connector has the pin
//! ([`AtConnector::with_enable_pin`]), else `AT+RST`, which a hung modem
//! may well ignore; then it waits for the modem's `ready` (at most
//! [`BOOT_TIMEOUT_MS`]) before sending anything. Failures in which the
//! modem answered (a join refused, `DNS Fail`, ...) never reset it.
//! [`AtConnector::resets`] counts the resets.
//!
//! # Cancel safety
//!
//! mqtts stops reads at deadlines (keep-alive): [`AtSocket`]'s reads are
//! cancel-safe. Every byte taken from the UART is parsed at once into the
//! driver's state (the receive buffer, the reply of the command in
//! flight); a command whose reply was not complete when its future was
//! dropped is finished by the next operation, its data kept. A *write*
//! dropped halfway leaves the modem waiting for the rest of its
//! `AT+CIPSEND` payload: the next operation pads it and reports
//! [`ModemError::WriteAbandoned`] (the TCP stream is corrupt; reconnect),
//! exactly as a TLS stream whose write was cut short is unusable.
//!
//! # Example
//!
//! ```no_run
//! # async fn demo<U, T>(uart: U, timer: T, mut set_en: impl FnMut(bool)) -> Result<(), mqtts::Error>
//! # where U: embedded_io_async::Read + embedded_io_async::Write, T: mqtts::time::Timer {
//! use mqtts::esp_at::{AtConnector, AtModem, Timeouts, Wifi};
//! use mqtts::reconnect::Connector as _;
//!
//! // The UART runs at 115,200 baud with RTS and CTS wired and enabled.
//! let modem: AtModem<_, _, 2048> =
//!     AtModem::new(uart, timer, Timeouts::default()).with_flow_control(115_200);
//! let wifi = Wifi { ssid: "my-network", password: "secret" };
//! let mut connector = AtConnector::new(modem, wifi, "mqtt.flespi.io", 8883)
//!     // The modem's EN on a host pin (a HAL's `set_level` in a closure).
//!     .with_enable_pin(move |enabled: bool| set_en(enabled));
//! let socket = connector.connect().await?; // then tls::connect(socket, ...)
//! # let _ = socket; Ok(()) }
//! ```

pub mod parser;

mod modem;

pub use modem::{
    AtConnector, AtModem, AtSocket, BOOT_TIMEOUT_MS, EnablePin, MAX_COMMAND_LEN, MAX_RECEIVE,
    MAX_SEND, NoEnablePin, RESET_AFTER, RESET_PULSE_MS, Timeouts, Wifi,
};
pub use parser::ParseError;

use core::fmt;

/// The AT commands the driver sends, to say which one failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Command {
    /// `AT`: is the modem there?
    At,
    /// `ATE0`: echo off.
    EchoOff,
    /// `AT+UART_CUR=<baud>,8,1,0,3`: RTS/CTS flow control on both sides
    /// (sent only when asked for, see [`AtModem::with_flow_control`]).
    UartConfig,
    /// `AT+RST`: restart the modem (see [`AtConnector`]'s reset policy).
    Restart,
    /// `AT+SYSSTORE=0`: settings stay in RAM (no flash writes on every
    /// connect, no Wi-Fi password kept in the modem's flash).
    NoStore,
    /// `AT+CWMODE=1`: station mode.
    StationMode,
    /// `AT+CIPMUX=0`: a single connection.
    SingleConnection,
    /// `AT+CIPRECVMODE=1`: passive receive mode.
    PassiveReceive,
    /// `AT+CIPSTATUS`: is the station up?
    Status,
    /// `AT+CWJAP="ssid","password"`: join the access point.
    Join,
    /// `AT+CIPSTART="TCP","host",port`: resolve and connect.
    Connect,
    /// `AT+CIPSEND=<n>`, up to the `>` prompt.
    Send,
    /// The payload of `AT+CIPSEND`, up to `SEND OK`.
    SendData,
    /// `AT+CIPRECVDATA=<n>`: fetch received data.
    Receive,
    /// `AT+CIPCLOSE`: close the connection.
    Close,
}

impl Command {
    /// The command as the AT firmware documentation names it.
    pub const fn name(self) -> &'static str {
        match self {
            Self::At => "AT",
            Self::EchoOff => "ATE0",
            Self::UartConfig => "AT+UART_CUR",
            Self::Restart => "AT+RST",
            Self::NoStore => "AT+SYSSTORE",
            Self::StationMode => "AT+CWMODE",
            Self::SingleConnection => "AT+CIPMUX",
            Self::PassiveReceive => "AT+CIPRECVMODE",
            Self::Status => "AT+CIPSTATUS",
            Self::Join => "AT+CWJAP",
            Self::Connect => "AT+CIPSTART",
            Self::Send => "AT+CIPSEND",
            Self::SendData => "AT+CIPSEND data",
            Self::Receive => "AT+CIPRECVDATA",
            Self::Close => "AT+CIPCLOSE",
        }
    }
}

impl fmt::Display for Command {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Why `AT+CWJAP` failed: the `+CWJAP:<code>` the modem printed before
/// `ERROR` (or `FAIL`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum JoinFailure {
    /// Code 1: the access point did not answer in time.
    Timeout,
    /// Code 2: wrong password.
    WrongPassword,
    /// Code 3: no access point with this SSID in range.
    NoAccessPoint,
    /// Code 4: the connection failed (for another reason).
    Failed,
    /// Another code.
    Code(u8),
    /// The modem gave no code.
    Unknown,
}

impl JoinFailure {
    /// The failure for a `+CWJAP:<code>` (or its absence).
    pub const fn from_code(code: Option<u8>) -> Self {
        match code {
            Some(1) => Self::Timeout,
            Some(2) => Self::WrongPassword,
            Some(3) => Self::NoAccessPoint,
            Some(4) => Self::Failed,
            Some(code) => Self::Code(code),
            None => Self::Unknown,
        }
    }
}

impl fmt::Display for JoinFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout => f.write_str("the access point did not answer in time (code 1)"),
            Self::WrongPassword => f.write_str("wrong Wi-Fi password (code 2)"),
            Self::NoAccessPoint => f.write_str("no access point with this SSID in range (code 3)"),
            Self::Failed => f.write_str("the connection to the access point failed (code 4)"),
            Self::Code(code) => write!(f, "code {code}"),
            Self::Unknown => f.write_str("no reason given"),
        }
    }
}

/// What went wrong between the host and the AT modem, or on the modem's
/// side of the network.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum ModemError {
    /// The modem did not answer in time: not powered, not wired (TX/RX
    /// swapped?), another baud rate, or hung.
    Timeout(Command),
    /// The modem answered `ERROR`.
    Rejected(Command),
    /// The modem answered `busy p...`: it was still processing an earlier
    /// command and dropped this one.
    Busy(Command),
    /// Joining the access point failed.
    JoinFailed(JoinFailure),
    /// The modem could not resolve the host name (`DNS Fail`).
    DnsFailed,
    /// The modem could not open the TCP connection (refused, unreachable).
    ConnectFailed,
    /// `AT+CIPSTART` while a connection was open (`ALREADY CONNECTED`).
    AlreadyConnected,
    /// No connection is open.
    NotConnected,
    /// The connection was closed (by the peer, or by the modem after a
    /// Wi-Fi loss): nothing can be sent.
    Closed,
    /// The modem reported `SEND FAIL`.
    SendFailed,
    /// A write was abandoned halfway (its future dropped): the modem was
    /// given padding to end its `AT+CIPSEND`, so the stream is corrupt.
    WriteAbandoned,
    /// The modem sent more data than asked for, or than the receive
    /// buffer holds: nothing was dropped silently, the connection is given up.
    Overflow {
        /// The data length the modem announced.
        len: usize,
        /// The room there was for it.
        room: usize,
    },
    /// The bytes from the modem are not the AT protocol.
    Protocol(ParseError),
    /// The modem restarted (`ready`) while a command was in flight.
    Restarted,
    /// A parameter cannot be sent in an AT command (a line break or NUL in
    /// it, or the command longer than [`MAX_COMMAND_LEN`]).
    InvalidParameter,
    /// The UART failed (read or write error, or end of stream).
    Uart(embedded_io::ErrorKind),
}

impl ModemError {
    /// Whether the driver lost track of the modem's state (it must be
    /// initialised again; [`AtConnector`] does this on every connect).
    pub const fn is_fatal(&self) -> bool {
        matches!(
            self,
            Self::Timeout(_)
                | Self::Busy(_)
                | Self::Overflow { .. }
                | Self::Protocol(_)
                | Self::Restarted
                | Self::WriteAbandoned
                | Self::Uart(_)
        )
    }
}

impl fmt::Display for ModemError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Timeout(command) => write!(
                f,
                "the modem did not answer {command} in time (power, wiring, baud rate?)"
            ),
            Self::Rejected(command) => write!(f, "the modem answered ERROR to {command}"),
            Self::Busy(command) => write!(
                f,
                "the modem was busy with an earlier command and dropped {command}"
            ),
            Self::JoinFailed(reason) => write!(f, "joining Wi-Fi failed: {reason}"),
            Self::DnsFailed => f.write_str("the modem could not resolve the host name"),
            Self::ConnectFailed => f.write_str("the modem could not open the TCP connection"),
            Self::AlreadyConnected => f.write_str("the modem already has a connection open"),
            Self::NotConnected => f.write_str("no connection is open"),
            Self::Closed => f.write_str("the connection was closed"),
            Self::SendFailed => f.write_str("the modem could not send the data (SEND FAIL)"),
            Self::WriteAbandoned => {
                f.write_str("a write was abandoned halfway; the modem's send was padded, reconnect")
            }
            Self::Overflow { len, room } => write!(
                f,
                "the modem sent {len} bytes of data where {room} fit; connection given up"
            ),
            Self::Protocol(e) => write!(f, "unexpected bytes from the modem: {e}"),
            Self::Restarted => f.write_str("the modem restarted"),
            Self::InvalidParameter => f.write_str(
                "a parameter cannot be sent in an AT command (line break, NUL, too long)",
            ),
            Self::Uart(kind) => write!(f, "UART error: {kind:?}"),
        }
    }
}

impl core::error::Error for ModemError {}

impl embedded_io::Error for ModemError {
    fn kind(&self) -> embedded_io::ErrorKind {
        use embedded_io::ErrorKind as K;
        match self {
            Self::Timeout(_) => K::TimedOut,
            Self::DnsFailed => K::NotFound,
            Self::ConnectFailed => K::ConnectionRefused,
            Self::NotConnected => K::NotConnected,
            Self::Closed => K::BrokenPipe,
            Self::SendFailed => K::ConnectionAborted,
            Self::Restarted => K::ConnectionReset,
            Self::WriteAbandoned => K::Interrupted,
            Self::Overflow { .. } => K::OutOfMemory,
            Self::Protocol(_) => K::InvalidData,
            Self::InvalidParameter => K::InvalidInput,
            Self::Uart(kind) => *kind,
            Self::Rejected(_) | Self::Busy(_) | Self::JoinFailed(_) | Self::AlreadyConnected => {
                K::Other
            }
        }
    }
}

impl From<ModemError> for crate::Error {
    /// `DNS Fail` is [`Error::NameResolution`](crate::Error::NameResolution),
    /// as with any other resolver; the rest is [`Error::Modem`](crate::Error::Modem).
    fn from(e: ModemError) -> Self {
        match e {
            ModemError::DnsFailed => Self::NameResolution,
            e => Self::Modem(e),
        }
    }
}
