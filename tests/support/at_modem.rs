//! A simulated ESP8266 running ESP-AT v2.2: a tokio task that speaks the AT
//! command set over an in-memory "UART" (a duplex pipe) and bridges
//! `AT+CIPSTART` to a real TCP connection on loopback.
//!
//! Its output reaches the host in small random pieces (a seeded RNG picks
//! each piece's size, 1 to `max_chunk` bytes, through a 64-byte pipe), so
//! the driver sees replies and data split everywhere. Faults make it
//! misbehave the ways real modems do.
//!
//! It has an EN input ([`AtSim::enable_line`]): held low for at least
//! `min_reset_pulse`, it restarts the modem, which prints a boot log
//! (noise), ignores commands for `boot_time`, then says `ready`; so does
//! `AT+RST`. A restart ends a hang (`silent_from`), which then does not
//! come back.

use std::collections::VecDeque;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader, DuplexStream};
use tokio::net::TcpStream;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::sync::{Mutex, mpsc};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// ESP-AT 2.2 for the ESP8266 starts with flow control 1: RTS only.
pub const DEFAULT_FLOW_CONTROL: u8 = 1;

/// What the ROM loader prints at 74,880 baud, as a host at 115,200 sees it.
const BOOT_LOG: &[u8] = b"\x00\xf0\x8e\x1c rl\xd8\x12\x9b\r\n\xfe\x02 ets Jan  8 2013\x0c\r\n";

/// Ways the modem misbehaves.
#[derive(Debug, Clone, Default)]
pub struct Faults {
    /// Commands starting with this are answered `ERROR`.
    pub error_on: Option<&'static str>,
    /// Commands starting with this are answered `busy p...` (and dropped).
    pub busy_on: Option<&'static str>,
    /// From the first command starting with this on, the modem says nothing.
    pub silent_from: Option<&'static str>,
    /// Commands starting with this are answered with control bytes.
    pub garbage_on: Option<&'static str>,
    /// `AT+CWJAP` fails with this `+CWJAP:<code>`.
    pub join_code: Option<u8>,
    /// Data announcements wait for the next `AT+CIPSEND` and come between
    /// its `OK` and `>`, and between `Recv` and `SEND OK`.
    pub announce_during_send: bool,
    /// `AT+CIPRECVMODE=1` is ignored: data is pushed as `+IPD,<n>:<data>`.
    pub active_mode: bool,
    /// `AT+CIPRECVDATA` replies announce (and send) this many bytes more
    /// than asked for.
    pub over_deliver: usize,
    /// The `>` prompt comes after this delay.
    pub prompt_delay: Option<Duration>,
    /// A hung modem (`silent_from`) still restarts on `AT+RST`, saying `OK`
    /// first: its command task runs while what the rest waits on is stuck.
    /// Otherwise it ignores `AT+RST` as everything else.
    pub hang_obeys_rst: bool,
}

/// The simulated modem's settings.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub ssid: String,
    pub password: String,
    /// Host names the modem's DNS knows.
    pub hosts: Vec<String>,
    /// Already associated with an IP at start (as after a warm reboot).
    pub joined: bool,
    /// Largest piece of output written at once.
    pub max_chunk: usize,
    pub seed: u64,
    pub faults: Faults,
    /// The baud rate the modem's UART runs at: `AT+UART_CUR` with another
    /// one makes it deaf and mute to the host.
    pub baud: u32,
    /// The shortest EN pulse that restarts the modem (a shorter one is
    /// ignored).
    pub min_reset_pulse: Duration,
    /// From a restart to `ready`: commands meanwhile are lost.
    pub boot_time: Duration,
}

impl SimConfig {
    /// A modem that knows `host` (resolved to 127.0.0.1), not joined yet.
    pub fn new(host: &str, seed: u64) -> Self {
        Self {
            ssid: "test-net".into(),
            password: "test-password".into(),
            hosts: vec![host.into()],
            joined: false,
            max_chunk: 7,
            seed,
            faults: Faults::default(),
            baud: 115_200,
            min_reset_pulse: Duration::from_millis(80),
            boot_time: Duration::from_millis(150),
        }
    }
}

/// What the modem saw, for assertions.
#[derive(Debug, Default)]
pub struct Stats {
    /// Every command line received (payloads excluded).
    pub commands: Vec<String>,
    /// Sizes of the `AT+CIPSEND` payloads.
    pub sends: Vec<usize>,
    /// Sizes of the `AT+CIPRECVDATA` replies.
    pub receives: Vec<usize>,
    /// Data announcements made while a send was in progress.
    pub announced_during_send: usize,
    /// Bytes read from the TCP connection.
    pub from_tcp: usize,
    /// The modem's flow-control setting now (`AT+UART_CUR`; the default
    /// again after a restart).
    pub flow_control: u8,
    /// The EN pulses: how long EN was low each time, by tokio's clock.
    pub pulses: Vec<Duration>,
    /// Restarts (EN pulses long enough, `AT+RST` taken).
    pub restarts: usize,
    /// Commands received while EN was low or the modem was booting (lost).
    pub lost: Vec<String>,
}

struct Link {
    generation: u64,
    write: Option<OwnedWriteHalf>,
    reader: Option<JoinHandle<()>>,
}

struct State {
    config: SimConfig,
    echo: bool,
    passive: bool,
    joined: bool,
    silent: bool,
    /// The hang happened and a restart ended it.
    hang_spent: bool,
    /// EN is high.
    powered: bool,
    booting: bool,
    /// Restarts so far: a boot that another restart overtook never ends.
    boot: u64,
    sending: bool,
    link: Link,
    /// Data from TCP not yet handed to the host.
    rx: VecDeque<u8>,
    /// Announcements held back until the next send (`announce_during_send`).
    deferred: Vec<Vec<u8>>,
    stats: Stats,
}

/// The handle tests keep: the modem's shared state and its tasks.
pub struct AtSim {
    state: Arc<Mutex<State>>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    enable: mpsc::UnboundedSender<(bool, Instant)>,
    tasks: Vec<JoinHandle<()>>,
}

/// The modem's EN input, for the host to drive: [`EnableLine::set`] is
/// synchronous (a GPIO write), timed when called.
#[derive(Debug, Clone)]
pub struct EnableLine(mpsc::UnboundedSender<(bool, Instant)>);

impl EnableLine {
    /// Drives EN high (`true`) or low.
    pub fn set(&self, high: bool) {
        let _ = self.0.send((high, Instant::now()));
    }
}

impl Drop for AtSim {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
    }
}

/// The receive window the modem offers: TCP reads stop when it holds this much.
const MODEM_BUFFER: usize = 8192;

impl AtSim {
    /// Starts the modem; returns it and the host's end of the UART.
    pub fn spawn(config: SimConfig) -> (AtSim, DuplexStream) {
        let (host_end, modem_end) = tokio::io::duplex(64);
        let (read, mut write) = tokio::io::split(modem_end);
        let (out, mut out_rx) = mpsc::unbounded_channel::<Vec<u8>>();
        let mut rng = StdRng::seed_from_u64(config.seed);
        let max_chunk = config.max_chunk.max(1);
        let joined = config.joined;
        let state = Arc::new(Mutex::new(State {
            config,
            echo: true,
            passive: false,
            joined,
            silent: false,
            hang_spent: false,
            powered: true,
            booting: false,
            boot: 0,
            sending: false,
            link: Link {
                generation: 0,
                write: None,
                reader: None,
            },
            rx: VecDeque::new(),
            deferred: Vec::new(),
            stats: Stats {
                flow_control: DEFAULT_FLOW_CONTROL,
                ..Stats::default()
            },
        }));
        // The UART's transmit side: each message in random pieces.
        let writer = tokio::spawn(async move {
            while let Some(message) = out_rx.recv().await {
                let mut rest = &message[..];
                while !rest.is_empty() {
                    let n = rng.gen_range(1..=max_chunk).min(rest.len());
                    if write.write_all(&rest[..n]).await.is_err() {
                        return;
                    }
                    rest = &rest[n..];
                    if rng.gen_bool(0.3) {
                        tokio::task::yield_now().await;
                    }
                }
            }
        });
        let commands = tokio::spawn(run_commands(
            BufReader::new(read),
            state.clone(),
            out.clone(),
        ));
        let (enable, enable_rx) = mpsc::unbounded_channel();
        let enable_task = tokio::spawn(run_enable(enable_rx, state.clone(), out.clone()));
        (
            AtSim {
                state,
                out,
                enable,
                tasks: vec![writer, commands, enable_task],
            },
            host_end,
        )
    }

    /// The modem's EN input (high at start).
    pub fn enable_line(&self) -> EnableLine {
        EnableLine(self.enable.clone())
    }

    /// Drops the TCP connection as a lost link would, and reports `CLOSED`.
    pub async fn drop_link(&self) {
        let mut state = self.state.lock().await;
        if close_link(&mut state) {
            let _ = self.out.send(b"CLOSED\r\n".to_vec());
        }
    }

    /// Says `WIFI DISCONNECT` (and closes the connection, as ESP-AT does).
    pub async fn lose_wifi(&self) {
        let mut state = self.state.lock().await;
        state.joined = false;
        if close_link(&mut state) {
            let _ = self.out.send(b"CLOSED\r\n".to_vec());
        }
        let _ = self.out.send(b"WIFI DISCONNECT\r\n".to_vec());
    }

    /// Waits until the modem has read `len` bytes from TCP.
    pub async fn until_received(&self, len: usize) {
        while self.state.lock().await.stats.from_tcp < len {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Runs `f` on the statistics.
    pub async fn stats<R>(&self, f: impl FnOnce(&Stats) -> R) -> R {
        f(&self.state.lock().await.stats)
    }
}

/// Closes the TCP connection; whether one was open.
fn close_link(state: &mut State) -> bool {
    state.link.generation += 1;
    if let Some(reader) = state.link.reader.take() {
        reader.abort();
    }
    state.rx.clear();
    state.deferred.clear();
    state.link.write.take().is_some()
}

/// Restarts the modem: everything it had is gone; it prints its boot log
/// now and `ready` after `boot_time`, ignoring commands until then.
fn restart(st: &mut State, state: &Arc<Mutex<State>>, out: &mpsc::UnboundedSender<Vec<u8>>) {
    close_link(st);
    st.echo = true;
    st.passive = false;
    st.joined = false;
    st.silent = false;
    st.hang_spent = true;
    st.sending = false;
    st.stats.flow_control = DEFAULT_FLOW_CONTROL;
    st.stats.restarts += 1;
    st.booting = true;
    st.boot += 1;
    let boot = st.boot;
    let boot_time = st.config.boot_time;
    let _ = out.send(BOOT_LOG.to_vec());
    let (state, out) = (state.clone(), out.clone());
    tokio::spawn(async move {
        tokio::time::sleep(boot_time).await;
        let mut st = state.lock().await;
        if st.boot == boot && st.powered {
            st.booting = false;
            let _ = out.send(b"\r\nready\r\n".to_vec());
        }
    });
}

/// Follows the EN input: low stops the modem (it hears nothing), high
/// after a long enough pulse restarts it.
async fn run_enable(
    mut levels: mpsc::UnboundedReceiver<(bool, Instant)>,
    state: Arc<Mutex<State>>,
    out: mpsc::UnboundedSender<Vec<u8>>,
) {
    let mut low_since = None;
    while let Some((high, at)) = levels.recv().await {
        let mut st = state.lock().await;
        match (high, low_since) {
            (false, None) => {
                low_since = Some(at);
                st.powered = false;
            }
            (true, Some(since)) => {
                low_since = None;
                let pulse = at.duration_since(since);
                st.stats.pulses.push(pulse);
                st.powered = true;
                if pulse >= st.config.min_reset_pulse {
                    restart(&mut st, &state, &out);
                }
            }
            // No change of level.
            (false, Some(_)) | (true, None) => {}
        }
    }
}

/// Parses `"a","b",123` (AT quoting: `\` escapes the next character).
fn parse_params(text: &str) -> Vec<String> {
    let mut params = Vec::new();
    let mut current = String::new();
    let mut chars = text.chars();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        match c {
            '\\' if quoted => current.extend(chars.next()),
            '"' => quoted = !quoted,
            ',' if !quoted => params.push(std::mem::take(&mut current)),
            c => current.push(c),
        }
    }
    params.push(current);
    params
}

async fn run_commands(
    mut uart: BufReader<tokio::io::ReadHalf<DuplexStream>>,
    state: Arc<Mutex<State>>,
    out: mpsc::UnboundedSender<Vec<u8>>,
) {
    let mut line = Vec::new();
    loop {
        line.clear();
        match uart.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let text = String::from_utf8_lossy(&line).trim_end().to_string();
        if text.is_empty() {
            continue;
        }
        let send = |bytes: &[u8]| {
            let _ = out.send(bytes.to_vec());
        };
        let mut st = state.lock().await;
        st.stats.commands.push(text.clone());
        if !st.powered || st.booting {
            st.stats.lost.push(text);
            continue;
        }
        let faults = st.config.faults.clone();
        if !st.hang_spent && faults.silent_from.is_some_and(|p| text.starts_with(p)) {
            st.silent = true;
        }
        if st.silent {
            if faults.hang_obeys_rst && text == "AT+RST" {
                send(b"\r\nOK\r\n");
                restart(&mut st, &state, &out);
            }
            continue;
        }
        if st.echo {
            send(format!("{text}\r\r\n").as_bytes());
        }
        if faults.busy_on.is_some_and(|p| text.starts_with(p)) {
            send(b"busy p...\r\n");
            continue;
        }
        if faults.error_on.is_some_and(|p| text.starts_with(p)) {
            send(b"\r\nERROR\r\n");
            continue;
        }
        if faults.garbage_on.is_some_and(|p| text.starts_with(p)) {
            send(b"\x00\xff\x13\x07garbage\r\n");
            continue;
        }
        let (name, args) = text.split_once('=').unwrap_or((&text, ""));
        match name {
            "AT" | "AT+CWMODE" | "AT+SYSSTORE" => send(b"\r\nOK\r\n"),
            "ATE0" => {
                st.echo = false;
                send(b"\r\nOK\r\n");
            }
            "AT+RST" => {
                send(b"\r\nOK\r\n");
                restart(&mut st, &state, &out);
            }
            "AT+UART_CUR" => {
                let params: Option<Vec<u32>> =
                    parse_params(args).iter().map(|p| p.parse().ok()).collect();
                // Only 8N1 here; flow control 0 none, 1 RTS, 2 CTS, 3 both.
                match params.as_deref() {
                    Some(&[baud, 8, 1, 0, flow @ 0..=3]) => {
                        send(b"\r\nOK\r\n");
                        st.stats.flow_control = flow as u8;
                        if baud != st.config.baud {
                            st.silent = true;
                        }
                    }
                    _ => send(b"\r\nERROR\r\n"),
                }
            }
            "AT+CIPMUX" => {
                // ESP-AT refuses to change it with a connection open.
                if st.link.write.is_some() {
                    send(b"link is builded\r\n\r\nERROR\r\n");
                } else {
                    send(b"\r\nOK\r\n");
                }
            }
            "AT+CIPRECVMODE" => {
                st.passive = args == "1" && !faults.active_mode;
                send(b"\r\nOK\r\n");
            }
            "AT+CIPSTATUS" => {
                let status = match (st.joined, st.link.write.is_some()) {
                    (false, _) => 5,
                    (true, true) => 3,
                    (true, false) => 2,
                };
                send(format!("STATUS:{status}\r\n\r\nOK\r\n").as_bytes());
            }
            "AT+CWJAP" => {
                let params = parse_params(args);
                let code = match (&params[..], faults.join_code) {
                    (_, Some(code)) => Some(code),
                    ([ssid, _], _) if *ssid != st.config.ssid => Some(3),
                    ([_, password], _) if *password != st.config.password => Some(2),
                    ([_, _], _) => None,
                    _ => {
                        send(b"\r\nERROR\r\n");
                        continue;
                    }
                };
                // Association takes a moment.
                drop(st);
                tokio::time::sleep(Duration::from_millis(5)).await;
                let mut st = state.lock().await;
                match code {
                    Some(code) => {
                        st.joined = false;
                        send(format!("+CWJAP:{code}\r\n\r\nERROR\r\n").as_bytes());
                    }
                    None => {
                        st.joined = true;
                        send(b"WIFI CONNECTED\r\nWIFI GOT IP\r\n\r\nOK\r\n");
                    }
                }
            }
            "AT+CIPSTART" => {
                let params = parse_params(args);
                let [kind, host, port] = &params[..] else {
                    send(b"\r\nERROR\r\n");
                    continue;
                };
                let Ok(port) = port.parse::<u16>() else {
                    send(b"\r\nERROR\r\n");
                    continue;
                };
                if kind != "TCP" || !st.joined {
                    send(b"\r\nERROR\r\n");
                } else if st.link.write.is_some() {
                    send(b"ALREADY CONNECTED\r\n\r\nERROR\r\n");
                } else if !st.config.hosts.contains(host) {
                    send(b"DNS Fail\r\n\r\nERROR\r\n");
                } else {
                    let addr = SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port);
                    match TcpStream::connect(addr).await {
                        Ok(tcp) => {
                            let (read, write) = tcp.into_split();
                            st.link.generation += 1;
                            st.rx.clear();
                            st.link.write = Some(write);
                            let generation = st.link.generation;
                            st.link.reader = Some(tokio::spawn(bridge_from_tcp(
                                read,
                                state.clone(),
                                out.clone(),
                                generation,
                            )));
                            send(b"CONNECT\r\n\r\nOK\r\n");
                        }
                        Err(_) => send(b"CLOSED\r\n\r\nERROR\r\n"),
                    }
                }
            }
            "AT+CIPSEND" => {
                let Ok(n) = args.parse::<usize>() else {
                    send(b"\r\nERROR\r\n");
                    continue;
                };
                if st.link.write.is_none() {
                    send(b"link is not valid\r\n\r\nERROR\r\n");
                    continue;
                }
                if n == 0 || n > 2048 {
                    send(b"\r\nERROR\r\n");
                    continue;
                }
                st.sending = true;
                send(b"\r\nOK\r\n");
                flush_deferred(&mut st, &out);
                if let Some(delay) = faults.prompt_delay {
                    drop(st);
                    tokio::time::sleep(delay).await;
                    st = state.lock().await;
                }
                send(b"\r\n> ");
                drop(st);
                let mut payload = vec![0u8; n];
                if uart.read_exact(&mut payload).await.is_err() {
                    return;
                }
                let mut st = state.lock().await;
                st.stats.sends.push(n);
                send(format!("\r\nRecv {n} bytes\r\n").as_bytes());
                let sent = match st.link.write.as_mut() {
                    Some(write) => write.write_all(&payload).await.is_ok(),
                    None => false,
                };
                flush_deferred(&mut st, &out);
                st.sending = false;
                send(if sent {
                    b"\r\nSEND OK\r\n"
                } else {
                    b"\r\nSEND FAIL\r\n"
                });
            }
            "AT+CIPRECVDATA" => {
                let Ok(asked) = args.parse::<usize>() else {
                    send(b"\r\nERROR\r\n");
                    continue;
                };
                let n = asked.min(st.rx.len());
                if n == 0 {
                    send(b"\r\nERROR\r\n");
                    continue;
                }
                let mut reply = format!("+CIPRECVDATA:{},", n + faults.over_deliver).into_bytes();
                reply.extend(st.rx.drain(..n));
                reply.extend(std::iter::repeat_n(b'!', faults.over_deliver));
                reply.extend_from_slice(b"\r\nOK\r\n");
                st.stats.receives.push(n);
                send(&reply);
            }
            "AT+CIPCLOSE" => {
                if close_link(&mut st) {
                    send(b"CLOSED\r\n\r\nOK\r\n");
                } else {
                    send(b"\r\nERROR\r\n");
                }
            }
            _ => send(b"\r\nERROR\r\n"),
        }
    }
}

fn flush_deferred(st: &mut State, out: &mpsc::UnboundedSender<Vec<u8>>) {
    for message in st.deferred.drain(..) {
        st.stats.announced_during_send += 1;
        let _ = out.send(message);
    }
}

/// Reads the TCP connection into the modem's buffer and announces the data.
async fn bridge_from_tcp(
    mut tcp: tokio::net::tcp::OwnedReadHalf,
    state: Arc<Mutex<State>>,
    out: mpsc::UnboundedSender<Vec<u8>>,
    generation: u64,
) {
    let mut buf = vec![0u8; 1460];
    loop {
        // A full buffer closes the TCP window, as on the real modem.
        loop {
            let st = state.lock().await;
            if st.link.generation != generation {
                return;
            }
            if st.rx.len() < MODEM_BUFFER {
                break;
            }
            drop(st);
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        let n = tcp.read(&mut buf).await.unwrap_or(0);
        let mut st = state.lock().await;
        if st.link.generation != generation {
            return;
        }
        if n == 0 {
            st.link.write = None;
            st.link.reader = None;
            let _ = out.send(b"CLOSED\r\n".to_vec());
            return;
        }
        st.stats.from_tcp += n;
        let message = if st.passive {
            st.rx.extend(&buf[..n]);
            format!("+IPD,{n}\r\n").into_bytes()
        } else {
            let mut message = format!("+IPD,{n}:").into_bytes();
            message.extend_from_slice(&buf[..n]);
            message.extend_from_slice(b"\r\n");
            message
        };
        if st.config.faults.announce_during_send && !st.sending {
            st.deferred.push(message);
        } else {
            if st.sending {
                st.stats.announced_during_send += 1;
            }
            let _ = out.send(message);
        }
    }
}
