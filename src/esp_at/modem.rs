//! The driver: AT commands over a UART, one at a time, each with a timeout.

use super::parser::{Event, Parser};
use super::{Command, JoinFailure, ModemError};
use crate::error::Error;
use crate::time::{Millis, Timer};
use core::fmt::{self, Write as _};
use embassy_futures::select::{Either, select};
use embedded_io::{Error as _, ErrorKind, ErrorType};
use embedded_io_async::{Read, Write};
use heapless::Deque;

/// ESP-AT's limit for one `AT+CIPSEND`: longer writes are split.
pub const MAX_SEND: usize = 2048;

/// The most data asked for with one `AT+CIPRECVDATA` (the modem allocates
/// a buffer of this size for its reply).
pub const MAX_RECEIVE: usize = 2048;

/// The longest command line (with its `\r\n`): `AT+CIPSTART` with a
/// 253-byte host name fits.
pub const MAX_COMMAND_LEN: usize = 300;

/// How long the driver waits for the modem to stay silent before
/// initialising it (late replies, a boot log).
const QUIET_MS: Millis = 50;

/// How many `AT` the initialisation sends before giving up.
const SYNC_ATTEMPTS: usize = 4;

/// How many consecutive [`AtConnector::open`]s may fail without an answer
/// from the modem before the next one resets it.
///
/// An open counts when a command timed out ([`ModemError::Timeout`], any
/// command) or when the modem never answered `OK` to `AT` in
/// [`AtModem::init`]'s attempts (silence, noise, `busy p...` each time).
/// Any other failure means the modem answered (a join refused with a
/// reason, `DNS Fail`, a refused connection, a restart it reported): the
/// count starts over, as after a successful open. Three: one lost reply
/// or a modem still booting does not cost a reset, a hung one is reset
/// within a few backoff periods.
pub const RESET_AFTER: u32 = 3;

/// How long EN is held low to reset the modem. The ESP8266 resets on a
/// far shorter pulse; 100 ms is ample also where the module delays EN
/// with an RC network, and matches a board's power-on sequence.
pub const RESET_PULSE_MS: Millis = 100;

/// How long to wait, after a reset, for the modem to say `ready`.
///
/// ESP-AT accepts commands only once it has printed `ready`; before that
/// the ESP8266 runs its ROM loader (whose log at 74,880 baud is noise at
/// any other rate), the second-stage bootloader, RF calibration and the
/// AT firmware's own start-up: a few hundred milliseconds, up to a couple
/// of seconds. A command sent meanwhile is lost (older firmware could
/// even restart again on one). The wait ends at `ready`; if `ready` was
/// lost in noise, [`AtModem::init`] probes with `AT` after this time.
pub const BOOT_TIMEOUT_MS: Millis = 2_000;

/// Zeros to pad an abandoned `AT+CIPSEND` with.
const PADDING: [u8; 64] = [0; 64];

/// How long to wait for the modem's replies, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Timeouts {
    /// Commands answered at once (`AT`, `AT+CIPRECVDATA`, `AT+CIPSEND`'s prompt...).
    pub command: Millis,
    /// `AT+CWJAP` (association and DHCP; ESP-AT gives up after 15 s).
    pub join: Millis,
    /// `AT+CIPSTART` (DNS and the TCP handshake).
    pub connect: Millis,
    /// From the end of a payload to `SEND OK`.
    pub send: Millis,
}

impl Default for Timeouts {
    /// 2 s per command, 20 s to join or connect, 10 s to send.
    fn default() -> Self {
        Self {
            command: 2_000,
            join: 20_000,
            connect: 20_000,
            send: 10_000,
        }
    }
}

/// What ends a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// `OK` (or a failure).
    Ok,
    /// The `>` prompt of `AT+CIPSEND` (after its `OK`).
    Prompt,
    /// `SEND OK` (or `SEND FAIL`).
    SendOk,
}

/// What bytes that are not the AT protocol do to a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Noise {
    /// They fail it ([`ModemError::Protocol`]).
    Fails,
    /// They are skipped (a boot log).
    Skip,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Pending {
    command: Command,
    expect: Expect,
}

/// What the modem said about the command in flight, before its final result.
#[derive(Debug, Clone, Copy, Default)]
struct Reply {
    join_code: Option<u8>,
    dns_failed: bool,
    already_connected: bool,
    closed: bool,
    /// The data length announced in the reply to `AT+CIPRECVDATA`.
    data_len: Option<usize>,
}

/// The TCP connection as the driver knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Link {
    Down,
    Open,
    /// `CLOSED` came: data still held may be read, nothing can be sent.
    PeerClosed,
}

/// The ESP-AT driver over a UART `U`, with timer `T` and an `N`-byte
/// receive buffer.
///
/// It sends one command at a time and keeps everything it read in its own
/// state, so that any operation may be stopped (its future dropped) and the
/// next one picks up where it stopped.
pub struct AtModem<U, T, const N: usize> {
    uart: U,
    timer: T,
    timeouts: Timeouts,
    parser: Parser,
    /// Received socket data not yet read.
    rx: Deque<u8, N>,
    /// The command line in flight and how much of it was written.
    out: heapless::String<MAX_COMMAND_LEN>,
    out_sent: usize,
    pending: Option<Pending>,
    outcome: Option<Result<(), ModemError>>,
    reply: Reply,
    /// The size of the `AT+CIPRECVDATA` in flight.
    requested: usize,
    /// Payload bytes of an `AT+CIPSEND` the modem still waits for.
    send_left: usize,
    link: Link,
    /// The modem announced data (`+IPD`) that was not fetched yet.
    data_hint: bool,
    wifi_up: bool,
    status: Option<u8>,
    /// The first error that lost track of the modem: every socket operation
    /// returns it until the modem is initialised again.
    broken: Option<ModemError>,
    /// The baud rate for `AT+UART_CUR`, if flow control was asked for.
    flow_control_baud: Option<u32>,
    /// Whether the last `init` got flow control on (`None`: not asked, or
    /// not that far).
    flow_control: Option<bool>,
    /// Whether the last `init` got `OK` to `AT`.
    synced: bool,
    /// The modem said `ready` since this was last cleared.
    booted: bool,
}

impl<U, T, const N: usize> fmt::Debug for AtModem<U, T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtModem")
            .field("link", &self.link)
            .field("buffered", &self.rx.len())
            .field("wifi_up", &self.wifi_up)
            .field("pending", &self.pending)
            .field("broken", &self.broken)
            .finish_non_exhaustive()
    }
}

/// A parameter in double quotes, with `"`, `,` and `\` escaped as the AT
/// firmware requires; line breaks and NUL cannot be sent.
struct Quoted<'a>(&'a str);

impl fmt::Display for Quoted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_char('"')?;
        for c in self.0.chars() {
            match c {
                '\r' | '\n' | '\0' => return Err(fmt::Error),
                '"' | ',' | '\\' => {
                    f.write_char('\\')?;
                    f.write_char(c)?;
                }
                c => f.write_char(c)?,
            }
        }
        f.write_char('"')
    }
}

/// Writes once to `uart`, or `Ok(None)` once `deadline` passed.
async fn write_before<U: Write, T: Timer>(
    uart: &mut U,
    timer: &mut T,
    bytes: &[u8],
    deadline: Millis,
) -> Result<Option<usize>, ErrorKind> {
    match select(uart.write(bytes), timer.sleep_until(deadline)).await {
        Either::First(Ok(0)) => Err(ErrorKind::WriteZero),
        Either::First(result) => result.map(Some).map_err(|e| e.kind()),
        Either::Second(()) => Ok(None),
    }
}

impl<U: Read + Write, T: Timer, const N: usize> AtModem<U, T, N> {
    /// A driver for the modem on `uart`. Nothing is sent until
    /// [`AtModem::init`] (which [`AtConnector`] calls on every connect).
    pub fn new(uart: U, timer: T, timeouts: Timeouts) -> Self {
        const { assert!(N > 0, "the receive buffer needs room for data") };
        Self {
            uart,
            timer,
            timeouts,
            parser: Parser::new(),
            rx: Deque::new(),
            out: heapless::String::new(),
            out_sent: 0,
            pending: None,
            outcome: None,
            reply: Reply::default(),
            requested: 0,
            send_left: 0,
            link: Link::Down,
            data_hint: false,
            wifi_up: false,
            status: None,
            broken: None,
            flow_control_baud: None,
            flow_control: None,
            synced: false,
            booted: false,
        }
    }

    /// Turns on RTS/CTS hardware flow control on the modem's side: every
    /// [`AtModem::init`] sends `AT+UART_CUR=<baud>,8,1,0,3` right after
    /// `ATE0`.
    ///
    /// `baud` is the rate the modem's UART already runs at: it is sent
    /// unchanged, only flow control changes (8 data bits, 1 stop bit, no
    /// parity, as ESP-AT's default). Both wires must be connected, and the
    /// host's UART must use them too: the modem's RTS to the host's CTS,
    /// the host's RTS to the modem's CTS.
    ///
    /// Why: ESP-AT 2.2 for the ESP8266 starts with RTS only, ignoring its
    /// CTS input, so the host's RTS cannot pause it, and a host that stalls
    /// for a few milliseconds in a 2 KB `+CIPRECVDATA` reply overruns its
    /// UART FIFO. The setting is not stored in the modem's flash
    /// (`AT+UART_CUR`, not `AT+UART_DEF`), so it is sent again after every
    /// restart.
    ///
    /// Firmware that answers `ERROR` (some NONOS AT 1.x builds) does not
    /// fail `init`: [`AtModem::flow_control`] then says `Some(false)`, and
    /// the host must not rely on its RTS.
    #[must_use]
    pub fn with_flow_control(mut self, baud: u32) -> Self {
        self.flow_control_baud = Some(baud);
        self
    }

    /// Whether the modem took RTS/CTS flow control at the last
    /// [`AtModem::init`]: `None` if it was not asked for
    /// ([`AtModem::with_flow_control`]) or `init` did not get that far,
    /// `Some(true)` if the modem answered `OK`, `Some(false)` if it
    /// refused (`ERROR`): the modem then does not pause for the host's RTS,
    /// and the host must not rely on it (log a warning).
    pub fn flow_control(&self) -> Option<bool> {
        self.flow_control
    }

    /// The UART back.
    pub fn into_inner(self) -> U {
        self.uart
    }

    /// Whether the modem said `WIFI GOT IP` since it last said `WIFI DISCONNECT`.
    pub fn wifi_up(&self) -> bool {
        self.wifi_up
    }

    /// Received bytes waiting to be read.
    pub fn buffered(&self) -> usize {
        self.rx.len()
    }

    /// Brings the modem to a known state: waits until it is quiet, checks
    /// it answers `AT` (retrying through noise, late replies or a restart),
    /// then echo off, flow control if asked for
    /// ([`AtModem::with_flow_control`]), settings in RAM only, station
    /// mode, closes any connection left open, single connection, passive
    /// receive mode. Forgets any previous failure.
    pub async fn init(&mut self) -> Result<(), ModemError> {
        // A write abandoned mid-payload: the modem still waits for it, and
        // would take our commands as data.
        if self.send_left > 0 {
            let _ = self.pad().await;
        }
        self.forget();
        self.flow_control = None;
        self.synced = false;
        let mut last = ModemError::Timeout(Command::At);
        let mut synced = false;
        for _ in 0..SYNC_ATTEMPTS {
            self.drain_quiet().await;
            match self.command(Command::At, format_args!("AT")).await {
                Ok(()) => {
                    synced = true;
                    break;
                }
                Err(e) => {
                    last = e;
                    self.forget();
                }
            }
        }
        if !synced {
            self.broken = Some(last);
            return Err(last);
        }
        self.synced = true;
        self.command(Command::EchoOff, format_args!("ATE0")).await?;
        if let Some(baud) = self.flow_control_baud {
            // 8 data bits, 1 stop bit, no parity, flow control 3 (RTS and CTS).
            self.flow_control = match self
                .command(
                    Command::UartConfig,
                    format_args!("AT+UART_CUR={baud},8,1,0,3"),
                )
                .await
            {
                Ok(()) => Some(true),
                // Firmware that refuses it: the link still works, unpaced.
                Err(ModemError::Rejected(_)) => Some(false),
                Err(e) => return Err(e),
            };
        }
        // ESP-AT 2.x stores settings (and the Wi-Fi password) in flash by
        // default; NONOS AT 1.x has no AT+SYSSTORE and says ERROR: fine.
        match self
            .command(Command::NoStore, format_args!("AT+SYSSTORE=0"))
            .await
        {
            Ok(()) | Err(ModemError::Rejected(_)) => {}
            Err(e) => return Err(e),
        }
        self.command(Command::StationMode, format_args!("AT+CWMODE=1"))
            .await?;
        self.close().await?;
        self.command(Command::SingleConnection, format_args!("AT+CIPMUX=0"))
            .await?;
        self.command(Command::PassiveReceive, format_args!("AT+CIPRECVMODE=1"))
            .await
    }

    /// The station's state from `AT+CIPSTATUS` (`STATUS:<n>`): 2 (got an
    /// IP), 3 (a connection open) and 4 (connection closed) mean Wi-Fi is
    /// up; 5 means not associated.
    pub async fn status(&mut self) -> Result<Option<u8>, ModemError> {
        self.settle().await?;
        self.status = None;
        self.command(Command::Status, format_args!("AT+CIPSTATUS"))
            .await?;
        Ok(self.status)
    }

    /// Joins the access point `wifi.ssid` (`AT+CWJAP`).
    /// An empty password (`""`) joins an open network.
    pub async fn join(&mut self, wifi: &Wifi<'_>) -> Result<(), ModemError> {
        self.settle().await?;
        self.start(
            Command::Join,
            Expect::Ok,
            format_args!("AT+CWJAP={},{}", Quoted(wifi.ssid), Quoted(wifi.password)),
        )?;
        self.finish().await
    }

    /// Opens a TCP connection to `host` (a name the modem resolves, or an
    /// address) on `port` (`AT+CIPSTART`).
    pub async fn connect(&mut self, host: &str, port: u16) -> Result<(), ModemError> {
        self.settle().await?;
        self.rx.clear();
        self.data_hint = false;
        self.start(
            Command::Connect,
            Expect::Ok,
            format_args!("AT+CIPSTART=\"TCP\",{},{port}", Quoted(host)),
        )?;
        self.finish().await
    }

    /// Closes the connection (`AT+CIPCLOSE`; none open is fine). Received
    /// data not read yet is dropped.
    pub async fn close(&mut self) -> Result<(), ModemError> {
        self.settle().await?;
        self.command(Command::Close, format_args!("AT+CIPCLOSE"))
            .await?;
        self.rx.clear();
        self.data_hint = false;
        Ok(())
    }

    /// The connection as a socket.
    pub fn socket(&mut self) -> AtSocket<'_, U, T, N> {
        AtSocket { modem: self }
    }

    /// Reads received data (cancel-safe): waits for the modem to announce
    /// data and fetches it. `Ok(0)` once the peer closed and everything was
    /// read.
    pub async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ModemError> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.rx.is_empty() {
                let mut n = 0;
                for slot in buf.iter_mut() {
                    match self.rx.pop_front() {
                        Some(byte) => {
                            *slot = byte;
                            n += 1;
                        }
                        None => break,
                    }
                }
                return Ok(n);
            }
            // Finishes a fetch a dropped read left in flight: its data comes here.
            self.settle().await?;
            if !self.rx.is_empty() {
                continue;
            }
            if self.link == Link::Down {
                return Err(ModemError::NotConnected);
            }
            if self.data_hint {
                // The buffer is empty here: ask for as much as it holds.
                let ask = N.min(MAX_RECEIVE);
                self.data_hint = false;
                self.requested = ask;
                self.start(
                    Command::Receive,
                    Expect::Ok,
                    format_args!("AT+CIPRECVDATA={ask}"),
                )?;
                self.finish().await?;
                continue;
            }
            if self.link == Link::PeerClosed {
                return Ok(0);
            }
            // Nothing announced: wait for `+IPD` or `CLOSED`, as long as
            // the caller wants (its deadline drops this future).
            if let Err(e) = self.pump(None).await {
                return Err(self.failed(e));
            }
        }
    }

    /// Sends up to [`MAX_SEND`] bytes of `data` with one `AT+CIPSEND` and
    /// waits for `SEND OK`; returns how many were sent.
    pub async fn write(&mut self, data: &[u8]) -> Result<usize, ModemError> {
        self.settle().await?;
        match self.link {
            Link::Open => {}
            Link::PeerClosed => return Err(ModemError::Closed),
            Link::Down => return Err(ModemError::NotConnected),
        }
        let n = data.len().min(MAX_SEND);
        if n == 0 {
            return Ok(0);
        }
        self.start(
            Command::Send,
            Expect::Prompt,
            format_args!("AT+CIPSEND={n}"),
        )?;
        // From here the modem waits for `n` bytes (once it has prompted).
        self.send_left = n;
        self.finish().await?;
        let deadline = self.timer.now().saturating_add(self.timeouts.send);
        while self.send_left > 0 {
            let from = n.saturating_sub(self.send_left);
            let rest = data.get(from..n).unwrap_or_default();
            match write_before(&mut self.uart, &mut self.timer, rest, deadline).await {
                Ok(Some(written)) => self.send_left = self.send_left.saturating_sub(written),
                Ok(None) => return Err(self.failed(ModemError::Timeout(Command::SendData))),
                Err(kind) => return Err(self.failed(ModemError::Uart(kind))),
            }
        }
        self.await_reply(Command::SendData, Expect::SendOk);
        self.finish().await?;
        Ok(n)
    }

    /// Completes whatever a dropped operation left in flight.
    pub async fn flush(&mut self) -> Result<(), ModemError> {
        self.settle().await
    }

    /// Forgets all state about the modem and the connection.
    fn forget(&mut self) {
        self.parser.reset();
        self.out.clear();
        self.out_sent = 0;
        self.pending = None;
        self.outcome = None;
        self.reply = Reply::default();
        self.send_left = 0;
        self.rx.clear();
        self.data_hint = false;
        self.link = Link::Down;
        self.broken = None;
    }

    /// Reads and handles what the modem says until it is silent for
    /// [`QUIET_MS`] (at most the command timeout).
    async fn drain_quiet(&mut self) {
        let limit = self.timer.now().saturating_add(self.timeouts.command);
        loop {
            let now = self.timer.now();
            if now >= limit {
                return;
            }
            match self
                .pump(Some(now.saturating_add(QUIET_MS).min(limit)))
                .await
            {
                Ok(true) => {}
                Ok(false) => return,
                // Noise or a boot log: keep listening.
                Err(_) => self.parser.reset(),
            }
        }
    }

    /// Forgets what the driver knew of the modem before it is reset:
    /// afterwards it has no connection, no association, waits for no
    /// payload and has its default UART settings.
    fn forget_before_reset(&mut self) {
        self.forget();
        self.wifi_up = false;
        self.flow_control = None;
        self.synced = false;
        self.booted = false;
    }

    /// Restarts the modem with `AT+RST`; whether it took it: answered `OK`,
    /// said `ready`, or started its boot log (noise right after `OK`, which
    /// may come in the same read and fail the command). A hung modem may
    /// ignore it (silence), a busy one refuse it.
    async fn restart(&mut self) -> bool {
        // The modem would take `AT+RST` as payload data.
        if self.send_left > 0 {
            let _ = self.pad().await;
        }
        self.forget_before_reset();
        let result = self.command(Command::Restart, format_args!("AT+RST")).await;
        self.booted
            || matches!(
                result,
                Ok(()) | Err(ModemError::Restarted | ModemError::Protocol(_) | ModemError::Uart(_))
            )
    }

    /// Listens to the modem booting until it says `ready`, at most
    /// [`BOOT_TIMEOUT_MS`]; what it prints before (its boot log, noise at
    /// our baud rate) is skipped.
    async fn await_boot(&mut self) {
        let limit = self.timer.now().saturating_add(BOOT_TIMEOUT_MS);
        while !self.booted {
            match self.read_events(Some(limit), Noise::Skip).await {
                Ok(true) => {}
                // Out of time, or the UART's stream ended (no point waiting).
                Ok(false) | Err(ModemError::Uart(ErrorKind::BrokenPipe)) => return,
                // Line errors while the modem's UART starts up: keep listening.
                Err(_) => {}
            }
        }
    }

    /// Ends an abandoned `AT+CIPSEND` with zeros.
    async fn pad(&mut self) -> Result<(), ModemError> {
        let deadline = self.timer.now().saturating_add(self.timeouts.send);
        while self.send_left > 0 {
            let len = self.send_left.min(PADDING.len());
            let zeros = PADDING.get(..len).unwrap_or_default();
            match write_before(&mut self.uart, &mut self.timer, zeros, deadline).await {
                Ok(Some(written)) => self.send_left = self.send_left.saturating_sub(written),
                Ok(None) => return Err(ModemError::Timeout(Command::SendData)),
                Err(kind) => return Err(ModemError::Uart(kind)),
            }
        }
        self.await_reply(Command::SendData, Expect::SendOk);
        // SEND OK or SEND FAIL: either way the modem is out of data mode.
        match self.finish().await {
            Ok(()) | Err(ModemError::SendFailed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Finishes what a dropped operation left: the reply of a command in
    /// flight, the payload of an abandoned send; then fails if the driver
    /// lost track of the modem earlier.
    async fn settle(&mut self) -> Result<(), ModemError> {
        if self.pending.is_some() {
            let abandoned_prompt = self.pending.is_some_and(|p| p.command == Command::Send);
            self.finish().await?;
            if abandoned_prompt && self.send_left > 0 {
                self.abandon().await?;
            }
        }
        if self.send_left > 0 {
            self.abandon().await?;
        }
        match self.broken {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// A write stopped after the prompt: pads its payload and gives the
    /// stream up.
    async fn abandon(&mut self) -> Result<(), ModemError> {
        // Recorded before the first await: if padding is itself cancelled,
        // the next operation finishes it and still reports the abandoned
        // write (the TCP stream holds zeros now).
        let abandoned = self.failed(ModemError::WriteAbandoned);
        if let Err(e) = self.pad().await {
            return Err(self.failed(e));
        }
        Err(abandoned)
    }

    /// Records a fatal error (the first one stays).
    fn failed(&mut self, e: ModemError) -> ModemError {
        if e.is_fatal() && self.broken.is_none() {
            self.broken = Some(e);
        }
        e
    }

    /// Sends a command and waits for its result.
    async fn command(
        &mut self,
        command: Command,
        text: fmt::Arguments<'_>,
    ) -> Result<(), ModemError> {
        self.start(command, Expect::Ok, text)?;
        self.finish().await
    }

    /// Queues a command line; [`AtModem::finish`] writes it.
    fn start(
        &mut self,
        command: Command,
        expect: Expect,
        text: fmt::Arguments<'_>,
    ) -> Result<(), ModemError> {
        self.out.clear();
        self.out_sent = 0;
        if self.out.write_fmt(text).is_err() || self.out.push_str("\r\n").is_err() {
            self.out.clear();
            return Err(ModemError::InvalidParameter);
        }
        self.await_reply(command, expect);
        Ok(())
    }

    /// Waits for a reply without sending anything (the payload of a send).
    fn await_reply(&mut self, command: Command, expect: Expect) {
        self.pending = Some(Pending { command, expect });
        self.outcome = None;
        self.reply = Reply::default();
    }

    fn timeout(&self, command: Command) -> Millis {
        match command {
            Command::Join => self.timeouts.join,
            Command::Connect => self.timeouts.connect,
            Command::SendData => self.timeouts.send,
            _ => self.timeouts.command,
        }
    }

    /// Writes what is left of the command in flight and waits for its
    /// result, within its timeout (counted from this call: a command
    /// resumed after a dropped operation gets its full time again).
    async fn finish(&mut self) -> Result<(), ModemError> {
        let Some(pending) = self.pending else {
            return Ok(());
        };
        let deadline = self
            .timer
            .now()
            .saturating_add(self.timeout(pending.command));
        let result = self.drive(pending.command, deadline).await;
        // Nothing below awaits: the command is over.
        self.pending = None;
        self.outcome = None;
        let reply = self.reply;
        self.reply = Reply::default();
        let result = match (pending.command, result) {
            // ERROR to AT+CIPRECVDATA: nothing held (ESP-AT answers so when
            // there is no data); wait for the next `+IPD`.
            (Command::Receive, Err(ModemError::Rejected(_))) => Ok(()),
            (Command::Receive, Ok(())) => {
                // All that was asked for came: there may be more.
                if reply.data_len == Some(self.requested) {
                    self.data_hint = true;
                }
                Ok(())
            }
            (Command::Close, Err(ModemError::Rejected(_))) => Ok(()),
            (Command::Send, Err(e)) => {
                // The modem waits for no payload only if it answered without
                // a prompt, or never got the whole command line. After a
                // timeout or garbage it may be waiting (ESP-AT waits without
                // a time limit): `send_left` stays, and the next `init`
                // pads it before probing with `AT`.
                let answered = matches!(
                    e,
                    ModemError::Rejected(_)
                        | ModemError::Busy(_)
                        | ModemError::Closed
                        | ModemError::Restarted
                        | ModemError::SendFailed
                );
                if answered || self.out_sent < self.out.len() {
                    self.send_left = 0;
                }
                Err(e)
            }
            (_, result) => result,
        };
        result.map_err(|e| self.failed(e))
    }

    async fn drive(&mut self, command: Command, deadline: Millis) -> Result<(), ModemError> {
        while self.out_sent < self.out.len() {
            let rest = self.out.as_bytes().get(self.out_sent..).unwrap_or_default();
            match write_before(&mut self.uart, &mut self.timer, rest, deadline).await {
                Ok(Some(written)) => self.out_sent += written,
                Ok(None) => return Err(ModemError::Timeout(command)),
                Err(kind) => return Err(ModemError::Uart(kind)),
            }
        }
        loop {
            if let Some(outcome) = self.outcome {
                return outcome;
            }
            if !self.pump(Some(deadline)).await? {
                return Err(ModemError::Timeout(command));
            }
        }
    }

    /// Reads once from the UART (until `deadline`, if any) and handles
    /// everything in what came. `Ok(false)` if the deadline passed first.
    async fn pump(&mut self, deadline: Option<Millis>) -> Result<bool, ModemError> {
        self.read_events(deadline, Noise::Fails).await
    }

    /// [`AtModem::pump`], with bytes that are not the protocol failing it
    /// or skipped.
    async fn read_events(
        &mut self,
        deadline: Option<Millis>,
        noise: Noise,
    ) -> Result<bool, ModemError> {
        let mut buf = [0u8; 64];
        let read = self.uart.read(&mut buf);
        let result = match deadline {
            Some(at) => match select(read, self.timer.sleep_until(at)).await {
                Either::First(result) => result,
                Either::Second(()) => return Ok(false),
            },
            None => read.await,
        };
        // No await from here on: what was read is handled before this
        // future can be dropped.
        let n = result.map_err(|e| ModemError::Uart(e.kind()))?;
        if n == 0 {
            return Err(ModemError::Uart(ErrorKind::BrokenPipe));
        }
        let mut rest = buf.get(..n).unwrap_or_default();
        while !rest.is_empty() {
            let (used, event) = self.parser.feed(rest);
            rest = rest.get(used..).unwrap_or_default();
            let handled = match event {
                Ok(Some(event)) => self.handle(event),
                Ok(None) => Ok(()),
                Err(e) => Err(ModemError::Protocol(e)),
            };
            match (handled, noise) {
                (Ok(()), _) => {}
                (Err(e), Noise::Fails) => return Err(e),
                // The parser dropped the bad line and goes on with the
                // next; an overflow must not take what follows as data.
                (Err(_), Noise::Skip) => self.parser.reset(),
            }
        }
        Ok(true)
    }

    /// Records the result of the command in flight. Its effect on the
    /// connection applies at once: events later in the same read (`+IPD`,
    /// `CLOSED` right after `CONNECT OK`) must see the new state.
    fn complete(&mut self, outcome: Result<(), ModemError>) {
        if self.outcome.is_some() {
            return;
        }
        match (self.pending.map(|p| p.command), &outcome) {
            (Some(Command::Connect), Ok(())) => self.link = Link::Open,
            // Nothing to close is fine.
            (Some(Command::Close), Ok(()) | Err(ModemError::Rejected(_))) => {
                self.link = Link::Down;
            }
            _ => {}
        }
        self.outcome = Some(outcome);
    }

    /// Why the command in flight failed, from what the modem said before
    /// `ERROR` or `FAIL`.
    fn failure(&self, command: Command) -> ModemError {
        match command {
            Command::Join => ModemError::JoinFailed(JoinFailure::from_code(self.reply.join_code)),
            Command::Connect if self.reply.dns_failed => ModemError::DnsFailed,
            Command::Connect if self.reply.already_connected => ModemError::AlreadyConnected,
            Command::Connect => ModemError::ConnectFailed,
            // "link is not valid": the connection is gone.
            Command::Send if self.link != Link::Open => ModemError::Closed,
            Command::SendData => ModemError::SendFailed,
            command => ModemError::Rejected(command),
        }
    }

    fn handle(&mut self, event: Event<'_>) -> Result<(), ModemError> {
        let expect = self.pending.map(|p| p.expect);
        let command = self.pending.map(|p| p.command);
        match event {
            Event::Data(bytes) => {
                for &byte in bytes {
                    if self.rx.push_back(byte).is_err() {
                        return Err(ModemError::Overflow {
                            len: bytes.len(),
                            room: 0,
                        });
                    }
                }
            }
            Event::DataStart(len) => {
                let room = N.saturating_sub(self.rx.len());
                let limit = match command {
                    Some(Command::Receive) if self.reply.data_len.is_none() => {
                        self.reply.data_len = Some(len);
                        self.requested.min(room)
                    }
                    // Active-mode `+IPD,<len>:` (never asked for): kept if it fits.
                    _ => room,
                };
                if len > limit {
                    return Err(ModemError::Overflow { len, room: limit });
                }
            }
            Event::DataAvailable(_) => self.data_hint = true,
            Event::Closed => {
                self.reply.closed = true;
                if self.link == Link::Open {
                    self.link = Link::PeerClosed;
                }
            }
            Event::WifiGotIp => self.wifi_up = true,
            Event::WifiDisconnect => self.wifi_up = false,
            Event::Status(status) => self.status = Some(status),
            Event::JoinFailure(code) => self.reply.join_code = Some(code),
            Event::DnsFail => self.reply.dns_failed = true,
            Event::AlreadyConnected => self.reply.already_connected = true,
            Event::Ready => {
                // Restarted: its connection and association are gone.
                self.booted = true;
                self.wifi_up = false;
                if self.link == Link::Open {
                    self.link = Link::PeerClosed;
                }
                if command.is_some_and(|c| c != Command::At) {
                    self.complete(Err(ModemError::Restarted));
                }
            }
            Event::Ok if expect == Some(Expect::Ok) => self.complete(Ok(())),
            Event::Prompt if expect == Some(Expect::Prompt) => self.complete(Ok(())),
            Event::SendOk if expect == Some(Expect::SendOk) => self.complete(Ok(())),
            Event::SendFail if expect.is_some() => self.complete(Err(ModemError::SendFailed)),
            Event::Error | Event::Fail => {
                if let Some(command) = command {
                    let failure = self.failure(command);
                    self.complete(Err(failure));
                }
            }
            Event::Busy => {
                if let Some(command) = command {
                    self.complete(Err(ModemError::Busy(command)));
                }
            }
            // `OK` before the prompt or `SEND OK`, replies nobody waits for
            // (late ones after a timeout), echoes, information lines.
            Event::Ok
            | Event::Prompt
            | Event::SendOk
            | Event::SendFail
            | Event::Connect
            | Event::WifiConnected
            | Event::Echo
            | Event::Other => {}
        }
        Ok(())
    }
}

/// The TCP connection through the modem, as an `embedded-io-async` socket.
///
/// Reads are cancel-safe; a write whose future is dropped halfway makes the
/// next operation fail with [`ModemError::WriteAbandoned`]. Dropping the
/// socket leaves the connection open until the next
/// [`AtConnector`] connect closes it (or call [`AtSocket::close`]).
pub struct AtSocket<'m, U, T, const N: usize> {
    modem: &'m mut AtModem<U, T, N>,
}

impl<U, T, const N: usize> fmt::Debug for AtSocket<'_, U, T, N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AtSocket")
            .field("modem", &self.modem)
            .finish()
    }
}

impl<U: Read + Write, T: Timer, const N: usize> AtSocket<'_, U, T, N> {
    /// Closes the connection (`AT+CIPCLOSE`).
    pub async fn close(self) -> Result<(), ModemError> {
        self.modem.close().await
    }
}

impl<U, T, const N: usize> ErrorType for AtSocket<'_, U, T, N> {
    type Error = ModemError;
}

impl<U: Read + Write, T: Timer, const N: usize> Read for AtSocket<'_, U, T, N> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ModemError> {
        self.modem.read(buf).await
    }
}

impl<U: Read + Write, T: Timer, const N: usize> Write for AtSocket<'_, U, T, N> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, ModemError> {
        self.modem.write(buf).await
    }

    async fn flush(&mut self) -> Result<(), ModemError> {
        self.modem.flush().await
    }
}

/// The access point to join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Wifi<'a> {
    /// Its SSID.
    pub ssid: &'a str,
    /// Its WPA/WPA2 passphrase (empty for an open network).
    pub password: &'a str,
}

/// The modem's EN input (`CHIP_EN`, `CH_PD` on older modules), driven by
/// the host: high runs the modem, low holds it in reset.
///
/// Any `FnMut(bool)` is one, so a HAL's output pin fits in a closure:
///
/// ```
/// # async fn demo<U, T>(modem: mqtts::esp_at::AtModem<U, T, 2048>)
/// # where U: embedded_io_async::Read + embedded_io_async::Write, T: mqtts::time::Timer {
/// # struct Output;
/// # impl Output { fn set_high(&mut self) {} fn set_low(&mut self) {} }
/// # let mut modem_enable = Output;
/// use mqtts::esp_at::{AtConnector, Wifi};
///
/// let wifi = Wifi { ssid: "my-network", password: "secret" };
/// let connector = AtConnector::new(modem, wifi, "mqtt.flespi.io", 8883)
///     .with_enable_pin(move |enabled: bool| {
///         if enabled { modem_enable.set_high() } else { modem_enable.set_low() }
///     });
/// # let _ = connector;
/// # }
/// ```
pub trait EnablePin {
    /// Whether there is a pin: `false` only for [`NoEnablePin`], with which
    /// [`AtConnector`] resets the modem by `AT+RST` instead.
    const CONNECTED: bool = true;

    /// Drives EN high (`true`: the modem runs) or low (`false`: held in
    /// reset).
    fn set_enabled(&mut self, enabled: bool);
}

impl<F: FnMut(bool)> EnablePin for F {
    fn set_enabled(&mut self, enabled: bool) {
        self(enabled);
    }
}

/// No EN pin under the host's control (the default of [`AtConnector`]):
/// a hung modem gets `AT+RST`, which it may ignore.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoEnablePin;

impl EnablePin for NoEnablePin {
    const CONNECTED: bool = false;

    fn set_enabled(&mut self, _enabled: bool) {}
}

/// A [`Connector`](crate::reconnect::Connector) through an AT modem.
///
/// Each connect initialises the modem again (so a modem that restarted,
/// or a stream left broken, starts clean), joins the access point unless
/// the station already has an IP address, then opens TCP to the host by
/// name. `DNS Fail` is [`Error::NameResolution`]; other modem failures are
/// [`Error::Modem`].
///
/// # Resetting a hung modem
///
/// A modem can hang (after a brown-out, say) and answer nothing until it
/// restarts; initialising it again does not help. After [`RESET_AFTER`]
/// consecutive opens in which it did not answer (see there), the next open
/// first resets it:
///
/// - with an EN pin ([`AtConnector::with_enable_pin`]): EN low for
///   [`RESET_PULSE_MS`] (on the modem's timer), then high: a hardware
///   reset, which works whatever state the modem is in;
/// - without one: `AT+RST`, a best effort: a modem hung hard enough to
///   ignore `AT` ignores it too. Wire EN to a host pin where you can.
///
/// Then it waits for the modem to boot (its `ready`, at most
/// [`BOOT_TIMEOUT_MS`]; not after an `AT+RST` that went unanswered or was
/// refused) and opens as usual. The count starts over after each reset, so a modem that
/// stays silent is reset every [`RESET_AFTER`] opens, paced by the
/// supervisor's backoff. [`AtConnector::resets`] counts the resets for
/// the firmware's log.
///
/// An `open` dropped during the reset leaves EN low until the next `open`,
/// which resets again from the start.
pub struct AtConnector<'a, U, T, const N: usize, E = NoEnablePin> {
    modem: AtModem<U, T, N>,
    wifi: Wifi<'a>,
    host: &'a str,
    port: u16,
    enable: E,
    /// Consecutive opens that failed without an answer from the modem.
    unanswered: u32,
    resets: u32,
}

impl<U, T, const N: usize, E> fmt::Debug for AtConnector<'_, U, T, N, E> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Not the password.
        f.debug_struct("AtConnector")
            .field("modem", &self.modem)
            .field("ssid", &self.wifi.ssid)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("unanswered", &self.unanswered)
            .field("resets", &self.resets)
            .finish_non_exhaustive()
    }
}

impl<'a, U: Read + Write, T: Timer, const N: usize> AtConnector<'a, U, T, N> {
    /// A connector to `host:port` through `modem`, joining `wifi`. It has no
    /// EN pin: see [`AtConnector::with_enable_pin`].
    pub fn new(modem: AtModem<U, T, N>, wifi: Wifi<'a>, host: &'a str, port: u16) -> Self {
        Self {
            modem,
            wifi,
            host,
            port,
            enable: NoEnablePin,
            unanswered: 0,
            resets: 0,
        }
    }

    /// Gives the connector the modem's EN pin, to reset a hung modem by
    /// hardware (see [Resetting a hung modem](AtConnector#resetting-a-hung-modem)).
    /// The connector only drives it for a reset; EN must already be high
    /// (the modem running) when the connector is first used.
    pub fn with_enable_pin<P: EnablePin>(self, pin: P) -> AtConnector<'a, U, T, N, P> {
        AtConnector {
            modem: self.modem,
            wifi: self.wifi,
            host: self.host,
            port: self.port,
            enable: pin,
            unanswered: self.unanswered,
            resets: self.resets,
        }
    }
}

impl<'a, U: Read + Write, T: Timer, const N: usize, E: EnablePin> AtConnector<'a, U, T, N, E> {
    /// The modem.
    pub fn modem(&mut self) -> &mut AtModem<U, T, N> {
        &mut self.modem
    }

    /// The modem back.
    pub fn into_modem(self) -> AtModem<U, T, N> {
        self.modem
    }

    /// How many times the connector reset the modem (EN pulses, or `AT+RST`
    /// sent), whether or not the modem came back.
    pub fn resets(&self) -> u32 {
        self.resets
    }

    /// Resets the modem first if it did not answer the last
    /// [`RESET_AFTER`] opens, then initialises it, joins Wi-Fi if needed
    /// and connects.
    pub async fn open(&mut self) -> Result<AtSocket<'_, U, T, N>, ModemError> {
        if self.unanswered >= RESET_AFTER {
            self.reset().await;
        }
        match self.establish().await {
            Ok(()) => {
                self.unanswered = 0;
                Ok(self.modem.socket())
            }
            Err(e) => {
                if matches!(e, ModemError::Timeout(_)) || !self.modem.synced {
                    self.unanswered = self.unanswered.saturating_add(1);
                } else {
                    self.unanswered = 0;
                }
                Err(e)
            }
        }
    }

    async fn establish(&mut self) -> Result<(), ModemError> {
        self.modem.init().await?;
        let status = self.modem.status().await?;
        if !matches!(status, Some(2..=4)) {
            self.modem.join(&self.wifi).await?;
        }
        self.modem.connect(self.host, self.port).await
    }

    /// Resets the modem: EN pulsed low, or `AT+RST`; then waits for it to
    /// boot. The counters change once the reset was done: a reset dropped
    /// halfway (EN still low) is done again, from the start, by the next
    /// open.
    async fn reset(&mut self) {
        let boots = if E::CONNECTED {
            self.modem.forget_before_reset();
            self.enable.set_enabled(false);
            let release = self.modem.timer.now().saturating_add(RESET_PULSE_MS);
            self.modem.timer.sleep_until(release).await;
            self.enable.set_enabled(true);
            true
        } else {
            self.modem.restart().await
        };
        self.resets = self.resets.saturating_add(1);
        self.unanswered = 0;
        if boots {
            self.modem.await_boot().await;
        }
    }
}

impl<U: Read + Write, T: Timer, const N: usize, E: EnablePin> crate::reconnect::Connector
    for AtConnector<'_, U, T, N, E>
{
    type Socket<'b>
        = AtSocket<'b, U, T, N>
    where
        Self: 'b;

    async fn connect(&mut self) -> Result<Self::Socket<'_>, Error> {
        self.open().await.map_err(Error::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::vec::Vec;

    /// A UART that answers each command line (or payload) with the next
    /// scripted reply; reads with nothing to give end the stream.
    struct Scripted {
        replies: VecDeque<&'static [u8]>,
        pending: VecDeque<u8>,
        written: Vec<u8>,
        /// Payload bytes expected after a prompt.
        payload: usize,
        /// With nothing to give, wait (as a quiet modem does) instead of
        /// ending the stream.
        stall_when_empty: bool,
    }

    impl Scripted {
        fn new(replies: &[&'static [u8]]) -> Self {
            Self {
                replies: replies.iter().copied().collect(),
                pending: VecDeque::new(),
                written: Vec::new(),
                payload: 0,
                stall_when_empty: false,
            }
        }

        fn next_reply(&mut self) {
            if let Some(reply) = self.replies.pop_front() {
                self.pending.extend(reply);
            }
        }
    }

    impl ErrorType for Scripted {
        type Error = ErrorKind;
    }

    impl Read for Scripted {
        async fn read(&mut self, buf: &mut [u8]) -> Result<usize, ErrorKind> {
            if self.pending.is_empty() && self.stall_when_empty {
                core::future::pending::<()>().await;
            }
            // Three bytes at a time: replies arrive split.
            let n = buf.len().min(self.pending.len()).min(3);
            for slot in buf.iter_mut().take(n) {
                *slot = self.pending.pop_front().unwrap_or_default();
            }
            Ok(n)
        }
    }

    impl Write for Scripted {
        async fn write(&mut self, buf: &[u8]) -> Result<usize, ErrorKind> {
            for &byte in buf {
                self.written.push(byte);
                if self.payload > 0 {
                    self.payload -= 1;
                    if self.payload == 0 {
                        self.next_reply();
                    }
                } else if byte == b'\n' {
                    let line = self
                        .written
                        .rsplit(|&b| b == b'\r')
                        .nth(1)
                        .unwrap_or_default();
                    let line = line.rsplit(|&b| b == b'\n').next().unwrap_or_default();
                    if let Some(n) = line.strip_prefix(b"AT+CIPSEND=") {
                        self.payload = core::str::from_utf8(n).unwrap().parse().unwrap();
                    }
                    self.next_reply();
                }
            }
            Ok(buf.len())
        }

        async fn flush(&mut self) -> Result<(), ErrorKind> {
            Ok(())
        }
    }

    /// A clock that advances 1 ms on every look, so deadlines pass. Its
    /// sleeps never end, or with `jumps` end at once with the clock at
    /// their deadline (virtual time).
    #[derive(Clone)]
    struct Ticking {
        clock: std::rc::Rc<core::cell::Cell<Millis>>,
        jumps: bool,
    }

    impl Timer for Ticking {
        fn now(&self) -> Millis {
            self.clock.set(self.clock.get() + 1);
            self.clock.get()
        }

        async fn sleep_until(&mut self, deadline: Millis) {
            if !self.jumps {
                core::future::pending::<()>().await;
            }
            self.clock.set(self.clock.get().max(deadline));
        }
    }

    fn modem(replies: &[&'static [u8]]) -> AtModem<Scripted, Ticking, 64> {
        let timer = Ticking {
            clock: std::rc::Rc::new(core::cell::Cell::new(0)),
            jumps: false,
        };
        AtModem::new(Scripted::new(replies), timer, Timeouts::default())
    }

    fn block_on<F: core::future::Future>(future: F) -> F::Output {
        embassy_futures::block_on(future)
    }

    #[test]
    fn send_fail_is_typed_and_the_payload_went_out_whole() {
        let mut m = modem(&[
            b"CONNECT\r\n\r\nOK\r\n",
            b"\r\nOK\r\n> ",
            b"\r\nSEND FAIL\r\n",
        ]);
        block_on(m.connect("broker.test", 8883)).unwrap();
        assert_eq!(block_on(m.write(b"hello")), Err(ModemError::SendFailed));
        assert!(m.uart.written.ends_with(b"AT+CIPSEND=5\r\nhello"));
        // Not fatal: the modem is in sync, the next write is tried.
        assert_eq!(m.broken, None);
    }

    /// A write dropped mid-payload, then the read that pads it dropped
    /// while it waits for SEND OK: the next operation finishes the send and
    /// still reports the abandoned write (the stream holds zeros now).
    #[test]
    fn a_cancelled_pad_still_reports_the_abandoned_write() {
        use core::task::{Context, Poll, Waker};
        let mut m = modem(&[b"CONNECT\r\n\r\nOK\r\n"]);
        block_on(m.connect("broker.test", 8883)).unwrap();
        // What a write dropped after the prompt leaves: 5 bytes owed.
        m.send_left = 5;
        m.uart.payload = 5;
        m.uart.stall_when_empty = true;
        let mut cx = Context::from_waker(Waker::noop());
        let mut buf = [0u8; 8];
        {
            let mut read = core::pin::pin!(m.read(&mut buf));
            assert!(
                read.as_mut().poll(&mut cx).is_pending(),
                "waits for SEND OK"
            );
        }
        assert!(m.uart.written.ends_with(&[0; 5]), "the payload was padded");
        m.uart.pending.extend(b"\r\nSEND OK\r\n");
        let mut read = core::pin::pin!(m.read(&mut buf));
        assert_eq!(
            read.as_mut().poll(&mut cx),
            Poll::Ready(Err(ModemError::WriteAbandoned))
        );
    }

    #[test]
    fn ready_mid_command_means_restarted() {
        let mut m = modem(&[b"CONNECT\r\n\r\nOK\r\n", b"\r\nready\r\n"]);
        block_on(m.connect("broker.test", 8883)).unwrap();
        let mut buf = [0u8; 8];
        // An announced fetch meets the restart.
        m.data_hint = true;
        assert_eq!(block_on(m.read(&mut buf)), Err(ModemError::Restarted));
        assert_eq!(block_on(m.read(&mut buf)), Err(ModemError::Restarted));
    }

    #[test]
    fn a_uart_at_end_of_stream_is_an_error_not_a_hang() {
        let mut m = modem(&[]);
        assert_eq!(
            block_on(m.status()),
            Err(ModemError::Uart(ErrorKind::BrokenPipe))
        );
    }

    #[test]
    fn writes_are_split_at_the_firmware_limit() {
        let mut m = modem(&[
            b"CONNECT\r\n\r\nOK\r\n",
            b"\r\nOK\r\n> ",
            b"\r\nSEND OK\r\n",
        ]);
        block_on(m.connect("broker.test", 8883)).unwrap();
        let data = [0x5Au8; MAX_SEND + 100];
        assert_eq!(block_on(m.write(&data)), Ok(MAX_SEND));
        assert!(m.uart.written.windows(15).any(|w| w == b"AT+CIPSEND=2048"));
    }

    const OK: &[u8] = b"\r\nOK\r\n";
    const ERROR: &[u8] = b"\r\nERROR\r\n";

    #[test]
    fn flow_control_is_asked_for_right_after_echo_off() {
        let mut m = modem(&[OK; 8]).with_flow_control(115_200);
        assert_eq!(m.flow_control(), None, "not before init");
        block_on(m.init()).unwrap();
        assert!(
            m.uart
                .written
                .starts_with(b"AT\r\nATE0\r\nAT+UART_CUR=115200,8,1,0,3\r\nAT+SYSSTORE=0\r\n"),
            "{}",
            std::string::String::from_utf8_lossy(&m.uart.written)
        );
        assert_eq!(m.flow_control(), Some(true));
    }

    #[test]
    fn flow_control_refused_by_older_firmware_is_reported_not_fatal() {
        let mut m = modem(&[OK, OK, ERROR, OK, OK, OK, OK, OK]).with_flow_control(9_600);
        block_on(m.init()).unwrap();
        assert!(
            m.uart
                .written
                .starts_with(b"AT\r\nATE0\r\nAT+UART_CUR=9600,8,1,0,3\r\n")
        );
        assert_eq!(m.flow_control(), Some(false));
    }

    #[test]
    fn without_the_opt_in_no_uart_command_is_sent() {
        let mut m = modem(&[OK; 7]);
        block_on(m.init()).unwrap();
        assert!(
            m.uart
                .written
                .starts_with(b"AT\r\nATE0\r\nAT+SYSSTORE=0\r\n")
        );
        assert!(!m.uart.written.windows(11).any(|w| w == b"AT+UART_CUR"));
        assert_eq!(m.flow_control(), None);
    }

    /// Replies to an `open` that sync fails in: nothing to each `AT`.
    const SILENT_OPEN: [&[u8]; SYNC_ATTEMPTS] = [b""; SYNC_ATTEMPTS];
    /// Replies to an `open` in which the modem answers `busy p...` to `AT`.
    const BUSY_OPEN: [&[u8]; SYNC_ATTEMPTS] = [b"busy p...\r\n"; SYNC_ATTEMPTS];
    /// Replies to an `open` in which the modem answers, and refuses the join.
    const REFUSED_OPEN: [&[u8]; 9] = [
        OK,
        OK,
        OK,
        OK,
        ERROR,
        OK,
        OK,
        b"STATUS:5\r\n\r\nOK\r\n",
        b"+CWJAP:2\r\n\r\nERROR\r\n",
    ];

    /// The levels an EN pin was set to, with the time of each.
    type PinLog = std::rc::Rc<core::cell::RefCell<Vec<(bool, Millis)>>>;

    /// A connector whose EN pin logs `(level, virtual time)`, over a modem
    /// that answers `replies` and is silent after them.
    fn connector_with_pin(
        replies: &[&'static [u8]],
    ) -> (
        AtConnector<'static, Scripted, Ticking, 64, impl EnablePin>,
        PinLog,
    ) {
        let clock = std::rc::Rc::new(core::cell::Cell::new(0));
        let mut uart = Scripted::new(replies);
        uart.stall_when_empty = true;
        let timer = Ticking {
            clock: clock.clone(),
            jumps: true,
        };
        let modem = AtModem::new(uart, timer, Timeouts::default());
        let wifi = Wifi {
            ssid: "net",
            password: "secret",
        };
        let log = std::rc::Rc::new(core::cell::RefCell::new(Vec::new()));
        let pin_log = log.clone();
        let connector = AtConnector::new(modem, wifi, "broker.test", 8883).with_enable_pin(
            move |enabled: bool| pin_log.borrow_mut().push((enabled, clock.get())),
        );
        (connector, log)
    }

    /// The streak counts opens the modem did not answer (timeouts, or a
    /// sync that failed on `busy`); an open it answered ends the streak.
    #[test]
    fn only_consecutive_unanswered_opens_lead_to_an_enable_pulse() {
        let replies: Vec<&'static [u8]> = [
            &SILENT_OPEN[..],
            &SILENT_OPEN,
            &REFUSED_OPEN,
            &SILENT_OPEN,
            &BUSY_OPEN,
            &SILENT_OPEN,
        ]
        .concat();
        let (mut connector, log) = connector_with_pin(&replies);
        let expected = [
            ModemError::Timeout(Command::At),
            ModemError::Timeout(Command::At),
            ModemError::JoinFailed(JoinFailure::WrongPassword),
            ModemError::Timeout(Command::At),
            ModemError::Busy(Command::At),
            ModemError::Timeout(Command::At),
        ];
        for (i, expected) in expected.into_iter().enumerate() {
            assert_eq!(block_on(connector.open()).err(), Some(expected), "open {i}");
            assert!(log.borrow().is_empty(), "no reset at open {i}");
        }
        assert_eq!(connector.resets(), 0);
        // The seventh open follows three unanswered ones: EN low for
        // RESET_PULSE_MS of the modem's time, then high.
        let written = connector.modem.uart.written.len();
        assert!(
            block_on(connector.open()).is_err(),
            "the modem stays silent"
        );
        let pulse = log.borrow().clone();
        let [(false, low), (true, high)] = pulse[..] else {
            panic!("{pulse:?}");
        };
        assert!(high - low >= RESET_PULSE_MS, "{pulse:?}");
        assert_eq!(connector.resets(), 1);
        // Nothing was sent while EN was low: the first line after is `AT`.
        assert!(connector.modem.uart.written[written..].starts_with(b"AT\r\n"));
    }

    #[test]
    fn without_a_pin_the_reset_is_at_rst() {
        let clock = std::rc::Rc::new(core::cell::Cell::new(0));
        let replies = [&SILENT_OPEN[..], &SILENT_OPEN, &SILENT_OPEN].concat();
        let mut uart = Scripted::new(&replies);
        uart.stall_when_empty = true;
        let timer = Ticking { clock, jumps: true };
        let modem: AtModem<_, _, 64> = AtModem::new(uart, timer, Timeouts::default());
        let wifi = Wifi {
            ssid: "net",
            password: "secret",
        };
        let mut connector = AtConnector::new(modem, wifi, "broker.test", 8883);
        for _ in 0..RESET_AFTER {
            assert_eq!(
                block_on(connector.open()).err(),
                Some(ModemError::Timeout(Command::At))
            );
        }
        assert!(
            !connector
                .modem
                .uart
                .written
                .windows(6)
                .any(|w| w == b"AT+RST")
        );
        let written = connector.modem.uart.written.len();
        // Ignored, as a hung modem may: the open goes on and fails.
        assert_eq!(
            block_on(connector.open()).err(),
            Some(ModemError::Timeout(Command::At))
        );
        assert!(connector.modem.uart.written[written..].starts_with(b"AT+RST\r\nAT\r\n"));
        assert_eq!(connector.resets(), 1);
    }
}
