//! `mqtts`: look at a broker's certificates, publish and subscribe over
//! MQTT with TLS 1.3, from a PC, with the same trust code as the firmware.
//!
//! ```sh
//! cargo mqtts fingerprint mqtt.flespi.io
//! cargo mqtts pub --host broker.local --spki 7D:9F:.. --qos 1 my/topic hello
//! cargo mqtts sub --flespi --token "$FLESPI_TOKEN" --count 1 'my/#'
//! ```
//!
//! (`cargo mqtts ...` is an alias for
//! `cargo run --quiet --example mqtts --features flespi,p384,ed25519 -- ...`.)
//!
//! `fingerprint` prints every certificate the server presents with the
//! lines to paste into firmware; `pub` publishes one message and waits for
//! the broker's acknowledgement; `sub` prints each message received as one
//! line `TOPIC PAYLOAD` on stdout. Status goes to stderr. Exit status: 0 on
//! success, 1 when the connection or the broker failed (one line on stderr
//! says why), 2 for a usage error.

use embedded_io_adapters::tokio_1::FromTokio;
use mqtts::client::{Buffers, Client, ConnectOptions, Event, MAX_FILTERS};
use mqtts::fingerprint::{Fingerprint, HexColons};
use mqtts::flespi::{Credentials, Flespi};
use mqtts::mqtt::{QoS, topic};
use mqtts::time::WallClock;
use mqtts::tls::{self, TlsOptions};
use mqtts::trust::{CertificateInfo, KeyAlgorithm, Pin, Trust};
use std::ffi::OsString;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout, timeout_at};

const USAGE: &str = "\
usage:
  mqtts fingerprint HOST[:PORT] [--servername NAME]
  mqtts pub CONN TRUST [--qos 0|1|2] [--retain] TOPIC MESSAGE
  mqtts sub CONN TRUST [--qos 0|1|2] [--count N] [--timeout SECS] FILTER...

CONN:  --host HOST [--port PORT (8883)] [--servername NAME] [--client-id ID]
       [--username U] [--password P] [--keep-alive SECS (60)]
   or  --flespi --token TOKEN [--client-id ID] [--keep-alive SECS]
       (mqtt.flespi.io:8883; TRUST is then optional: the chain is checked up
       to the GlobalSign roots, which --ca replaces; pins are checked too)
TRUST: --sha1 FP | --sha256 FP | --spki FP   (each may repeat; any one match passes)
       --ca FILE      (CA certificate, PEM or DER, may repeat; with pins, both must pass)
       --insecure     (the server is NOT authenticated: only to try things out)
FP:    hex bytes as printed by `mqtts fingerprint` or openssl, e.g. AA:BB:..,
       'AA BB ..', aabb.., 'sha256 Fingerprint=AA:..', 'SHA2-256(stdin)= aabb..'

fingerprint connects without trusting the server and prints every certificate
it presents, with the pins ready to paste into firmware and into TRUST.
pub publishes MESSAGE once and waits until the broker has it.
sub prints each message as one line `TOPIC PAYLOAD` (line breaks and control
characters in the payload escaped), until --count messages arrived or
--timeout seconds passed (with --count, too few messages is a failure).
Exit status: 0 success, 1 connection or broker failure, 2 usage error.";

/// Default MQTT over TLS port.
const DEFAULT_PORT: u16 = 8883;
/// Name resolution, then each TCP connection attempt.
const TCP_TIMEOUT: Duration = Duration::from_secs(10);
/// TLS handshake and MQTT CONNECT/CONNACK together.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// CONNACK alone (inside HANDSHAKE_TIMEOUT).
const CONNACK_TIMEOUT_MS: u64 = 15_000;
/// Each wait for the broker afterwards: PUBACK/PUBCOMP, SUBACK.
const ACK_TIMEOUT: Duration = Duration::from_secs(15);
/// DISCONNECT and close_notify.
const CLOSE_TIMEOUT: Duration = Duration::from_secs(5);

/// Buffer sizes: any TLS record; MQTT messages up to 64 KiB.
const TLS_READ: usize = tls::READ_BUFFER_FOR_FULL_RECORDS;
const TLS_WRITE: usize = 4096;
const MQTT_RX: usize = 64 * 1024;
const MQTT_TX: usize = 64 * 1024;
const OUTBOX: usize = 64 * 1024;
/// QoS 1/2 messages in flight at once.
const IN_FLIGHT: usize = 8;

/// `eprintln!` that never panics (a closed stderr is not worth a crash).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

/// Why the tool stops without success.
#[derive(Debug)]
enum Failure {
    /// `--help`: the usage on stdout, exit 0.
    Help,
    /// A usage error: the message and the usage on stderr, exit 2.
    Usage(String),
    /// The connection or the broker failed: one line on stderr, exit 1.
    Failed(String),
}

fn usage(message: impl Into<String>) -> Failure {
    Failure::Usage(message.into())
}

fn failed(message: impl Into<String>) -> Failure {
    Failure::Failed(message.into())
}

fn main() -> ExitCode {
    let outcome = match arguments() {
        Ok(args) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                let outcome = runtime.block_on(run(args));
                // Without waiting for a name lookup that timed out.
                runtime.shutdown_background();
                outcome
            }
            Err(e) => Err(failed(format!("cannot start the async runtime: {e}"))),
        },
        Err(e) => Err(e),
    };
    match outcome {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure::Help) => {
            let _ = write_stdout(&format!("{USAGE}\n"));
            ExitCode::SUCCESS
        }
        Err(Failure::Usage(message)) => {
            say!("mqtts: {message}");
            say!("{USAGE}");
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            say!("mqtts: {}", one_line(&message));
            ExitCode::from(1)
        }
    }
}

/// The command line, as UTF-8.
fn arguments() -> Result<Vec<String>, Failure> {
    std::env::args_os()
        .skip(1)
        .map(|arg: OsString| {
            arg.into_string()
                .map_err(|arg| usage(format!("argument {arg:?} is not valid UTF-8")))
        })
        .collect()
}

async fn run(args: Vec<String>) -> Result<(), Failure> {
    let mut args = Args::new(args);
    let Some(Arg::Positional(command)) = args.next()? else {
        return Err(usage("missing command: fingerprint, pub or sub"));
    };
    match command.as_str() {
        "fingerprint" => fingerprint(FingerprintArgs::parse(args)?).await,
        "pub" | "publish" => publish(PubArgs::parse(args)?).await,
        "sub" | "subscribe" => subscribe(SubArgs::parse(args)?).await,
        "help" => Err(Failure::Help),
        other => Err(usage(format!(
            "unknown command {other:?}: fingerprint, pub or sub"
        ))),
    }
}

// ---------------------------------------------------------------------------
// Argument parsing (by hand: no dependencies beyond the library's own).

/// One command-line argument.
enum Arg {
    /// `--name` or `--name=value`.
    Flag(String, Option<String>),
    /// Anything else, and everything after `--`.
    Positional(String),
}

struct Args {
    args: std::vec::IntoIter<String>,
    only_positionals: bool,
}

impl Args {
    fn new(args: Vec<String>) -> Self {
        Self {
            args: args.into_iter(),
            only_positionals: false,
        }
    }

    /// The next argument; `--help` anywhere stops with the usage.
    fn next(&mut self) -> Result<Option<Arg>, Failure> {
        let Some(arg) = self.args.next() else {
            return Ok(None);
        };
        if self.only_positionals {
            return Ok(Some(Arg::Positional(arg)));
        }
        if arg == "--" {
            self.only_positionals = true;
            return self.next();
        }
        if arg == "-h" || arg == "--help" {
            return Err(Failure::Help);
        }
        Ok(Some(match arg.strip_prefix("--") {
            Some(flag) => match flag.split_once('=') {
                Some((name, value)) => Arg::Flag(format!("--{name}"), Some(value.to_string())),
                None => Arg::Flag(arg, None),
            },
            None => Arg::Positional(arg),
        }))
    }

    /// The value of `flag`: after `=`, or the next argument.
    fn value(&mut self, flag: &str, inline: Option<String>) -> Result<String, Failure> {
        match inline.or_else(|| self.args.next()) {
            Some(value) => Ok(value),
            None => Err(usage(format!("{flag} needs a value"))),
        }
    }
}

fn no_value(flag: &str, inline: Option<String>) -> Result<(), Failure> {
    match inline {
        None => Ok(()),
        Some(_) => Err(usage(format!("{flag} takes no value"))),
    }
}

fn unknown(flag: &str) -> Failure {
    usage(format!("unknown option {flag}"))
}

fn parse_number<T: std::str::FromStr>(flag: &str, value: &str, what: &str) -> Result<T, Failure> {
    value
        .parse()
        .map_err(|_| usage(format!("{flag} {value:?}: expected {what}")))
}

fn parse_qos(flag: &str, value: &str) -> Result<QoS, Failure> {
    match value {
        "0" => Ok(QoS::AtMostOnce),
        "1" => Ok(QoS::AtLeastOnce),
        "2" => Ok(QoS::ExactlyOnce),
        _ => Err(usage(format!("{flag} {value:?}: expected 0, 1 or 2"))),
    }
}

/// `HOST`, `HOST:PORT`, `[IPv6]:PORT` or a bare IPv6 address.
fn parse_target(text: &str) -> Result<(String, u16), Failure> {
    let bad = || usage(format!("{text:?}: expected HOST or HOST:PORT"));
    let (host, port) = if let Some(rest) = text.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or_else(bad)?;
        match after {
            "" => (host, None),
            _ => (host, Some(after.strip_prefix(':').ok_or_else(bad)?)),
        }
    } else {
        match text.split_once(':') {
            // One colon: HOST:PORT; more: an IPv6 address without a port.
            Some((host, port)) if !port.contains(':') => (host, Some(port)),
            _ => (text, None),
        }
    };
    if host.is_empty() {
        return Err(bad());
    }
    let port = match port {
        Some(port) => parse_port("port", port)?,
        None => DEFAULT_PORT,
    };
    Ok((host.to_string(), port))
}

fn parse_port(flag: &str, value: &str) -> Result<u16, Failure> {
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err(usage(format!(
            "{flag} {value:?}: expected a port number (1 to 65535)"
        ))),
    }
}

struct FingerprintArgs {
    host: String,
    port: u16,
    server_name: Option<String>,
}

impl FingerprintArgs {
    fn parse(mut args: Args) -> Result<Self, Failure> {
        let mut target = None;
        let mut server_name = None;
        while let Some(arg) = args.next()? {
            match arg {
                Arg::Flag(flag, inline) => match flag.as_str() {
                    "--servername" => server_name = Some(args.value(&flag, inline)?),
                    _ => return Err(unknown(&flag)),
                },
                Arg::Positional(value) if target.is_none() => target = Some(value),
                Arg::Positional(value) => {
                    return Err(usage(format!("unexpected argument {value:?}")));
                }
            }
        }
        let target = target.ok_or_else(|| usage("fingerprint needs HOST[:PORT]"))?;
        let (host, port) = parse_target(&target)?;
        Ok(Self {
            host,
            port,
            server_name,
        })
    }
}

/// Where to connect and how to log in (CONN).
#[derive(Default)]
struct ConnArgs {
    host: Option<String>,
    port: Option<u16>,
    server_name: Option<String>,
    client_id: Option<String>,
    username: Option<String>,
    password: Option<String>,
    keep_alive: Option<u16>,
    flespi: bool,
    token: Option<String>,
}

/// How to trust the server (TRUST).
#[derive(Default)]
struct TrustArgs {
    pins: Vec<Pin>,
    anchors: Vec<Vec<u8>>,
    insecure: bool,
}

/// CONN and TRUST, checked.
struct Connection {
    conn: ConnArgs,
    client_id: String,
    trust: TrustArgs,
}

impl ConnArgs {
    /// Takes `flag` if it belongs to CONN.
    fn take(
        &mut self,
        flag: &str,
        inline: Option<String>,
        args: &mut Args,
    ) -> Result<bool, Failure> {
        match flag {
            "--host" => self.host = Some(args.value(flag, inline)?),
            "--port" => self.port = Some(parse_port(flag, &args.value(flag, inline)?)?),
            "--servername" => self.server_name = Some(args.value(flag, inline)?),
            "--client-id" => self.client_id = Some(args.value(flag, inline)?),
            "--username" => self.username = Some(args.value(flag, inline)?),
            "--password" => self.password = Some(args.value(flag, inline)?),
            "--keep-alive" => {
                let value = args.value(flag, inline)?;
                self.keep_alive = Some(parse_number(flag, &value, "seconds (0 to 65535)")?);
            }
            "--flespi" => {
                no_value(flag, inline)?;
                self.flespi = true;
            }
            "--token" => self.token = Some(args.value(flag, inline)?),
            _ => return Ok(false),
        }
        Ok(true)
    }
}

impl TrustArgs {
    /// Takes `flag` if it belongs to TRUST.
    fn take(
        &mut self,
        flag: &str,
        inline: Option<String>,
        args: &mut Args,
    ) -> Result<bool, Failure> {
        match flag {
            "--sha1" | "--sha256" | "--spki" => {
                let value = args.value(flag, inline)?;
                self.pins.push(parse_pin(flag, &value)?);
            }
            "--ca" => {
                let path = args.value(flag, inline)?;
                self.anchors.extend(read_certificates(&path)?);
            }
            "--insecure" => {
                no_value(flag, inline)?;
                self.insecure = true;
            }
            _ => return Ok(false),
        }
        Ok(true)
    }
}

fn parse_pin(flag: &str, value: &str) -> Result<Pin, Failure> {
    let bad = |e: mqtts::FingerprintError| usage(format!("{flag} {value:?}: {e}"));
    match flag {
        "--spki" => Pin::public_key(value).map_err(bad),
        "--sha256" => Fingerprint::parse_sha256(value)
            .map(|hash| Pin::Certificate(Fingerprint::Sha256(hash)))
            .map_err(bad),
        _ => match Fingerprint::parse(value).map_err(bad)? {
            sha1 @ Fingerprint::Sha1(_) => Ok(Pin::Certificate(sha1)),
            Fingerprint::Sha256(_) => Err(usage(format!(
                "{flag} {value:?}: this is a SHA-256 fingerprint (32 bytes); pass it with --sha256"
            ))),
        },
    }
}

/// The certificates in a PEM or DER file.
fn read_certificates(path: &str) -> Result<Vec<Vec<u8>>, Failure> {
    let bytes = std::fs::read(path).map_err(|e| usage(format!("--ca {path}: {e}")))?;
    let certificates = if bytes.starts_with(b"\x30") {
        vec![bytes]
    } else {
        let pems = pem::parse_many(&bytes)
            .map_err(|e| usage(format!("--ca {path}: neither DER nor PEM ({e})")))?;
        pems.into_iter()
            .filter(|p| p.tag() == "CERTIFICATE" || p.tag() == "X509 CERTIFICATE")
            .map(pem::Pem::into_contents)
            .collect()
    };
    if certificates.is_empty() {
        return Err(usage(format!(
            "--ca {path}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\" or DER)"
        )));
    }
    for (i, der) in certificates.iter().enumerate() {
        if CertificateInfo::parse(der).is_err() {
            return Err(usage(format!(
                "--ca {path}: certificate #{} is not a valid X.509 certificate",
                i + 1
            )));
        }
    }
    Ok(certificates)
}

impl Connection {
    fn check(conn: ConnArgs, trust: TrustArgs) -> Result<Self, Failure> {
        if conn.flespi {
            for (given, flag) in [
                (conn.host.is_some(), "--host"),
                (conn.port.is_some(), "--port"),
                (conn.server_name.is_some(), "--servername"),
                (conn.username.is_some(), "--username"),
                (conn.password.is_some(), "--password"),
            ] {
                if given {
                    return Err(usage(format!(
                        "--flespi sets the broker and the login; {flag} cannot be combined with it"
                    )));
                }
            }
            if conn.token.is_none() {
                return Err(usage(
                    "--flespi needs --token TOKEN (a flespi token with MQTT access)",
                ));
            }
        } else {
            if conn.token.is_some() {
                return Err(usage(
                    "--token is for --flespi; other brokers take --username/--password",
                ));
            }
            if conn.host.is_none() {
                return Err(usage("missing --host HOST (or --flespi --token TOKEN)"));
            }
            if conn.password.is_some() && conn.username.is_none() {
                return Err(usage(
                    "--password needs --username (MQTT 3.1.1 allows no password alone)",
                ));
            }
            if !trust.insecure && trust.pins.is_empty() && trust.anchors.is_empty() {
                return Err(usage(
                    "choose how to trust the server: --sha1, --sha256, --spki, --ca or --insecure \
                     (`mqtts fingerprint HOST:PORT` shows the values)",
                ));
            }
        }
        if trust.insecure && !(trust.pins.is_empty() && trust.anchors.is_empty()) {
            return Err(usage(
                "--insecure trusts anything; it cannot be combined with pins or --ca",
            ));
        }
        if trust.anchors.len() > mqtts::trust::MAX_TRUST_ANCHORS {
            return Err(usage(format!(
                "{} CA certificates given; at most {} are supported",
                trust.anchors.len(),
                mqtts::trust::MAX_TRUST_ANCHORS
            )));
        }
        let client_id = conn.client_id.clone().unwrap_or_else(random_client_id);
        Ok(Self {
            conn,
            client_id,
            trust,
        })
    }
}

/// `mqtts-cli-` and 8 random hex digits: brokers disconnect the older of
/// two clients with the same id, so each run gets its own.
fn random_client_id() -> String {
    format!("mqtts-cli-{:08x}", rand::random::<u32>())
}

struct PubArgs {
    connection: Connection,
    qos: QoS,
    retain: bool,
    topic: String,
    message: String,
}

impl PubArgs {
    fn parse(mut args: Args) -> Result<Self, Failure> {
        let (mut conn, mut trust) = (ConnArgs::default(), TrustArgs::default());
        let mut qos = QoS::AtMostOnce;
        let mut retain = false;
        let mut positionals = Vec::new();
        while let Some(arg) = args.next()? {
            match arg {
                Arg::Flag(flag, inline) => {
                    if conn.take(&flag, inline.clone(), &mut args)?
                        || trust.take(&flag, inline.clone(), &mut args)?
                    {
                        continue;
                    }
                    match flag.as_str() {
                        "--qos" => qos = parse_qos(&flag, &args.value(&flag, inline)?)?,
                        "--retain" => {
                            no_value(&flag, inline)?;
                            retain = true;
                        }
                        _ => return Err(unknown(&flag)),
                    }
                }
                Arg::Positional(value) => positionals.push(value),
            }
        }
        let mut positionals = positionals.into_iter();
        let (Some(topic), Some(message)) = (positionals.next(), positionals.next()) else {
            return Err(usage("pub needs TOPIC and MESSAGE"));
        };
        if let Some(extra) = positionals.next() {
            return Err(usage(format!(
                "unexpected argument {extra:?} (quote a MESSAGE with spaces)"
            )));
        }
        topic::validate_name(&topic)
            .map_err(|e| usage(format!("cannot publish to {topic:?}: {e}")))?;
        if conn.flespi {
            // What the library would refuse after connecting.
            let limits = mqtts::flespi::LIMITS;
            if qos > limits.max_qos {
                return Err(usage("flespi accepts QoS 0 and 1 only"));
            }
            if let Some(prefix) = limits.reserved_prefix
                && topic.starts_with(prefix)
            {
                return Err(usage(format!(
                    "flespi does not let clients publish to {prefix}... topics"
                )));
            }
        }
        Ok(Self {
            connection: Connection::check(conn, trust)?,
            qos,
            retain,
            topic,
            message,
        })
    }
}

struct SubArgs {
    connection: Connection,
    qos: QoS,
    count: Option<u64>,
    timeout: Option<Duration>,
    filters: Vec<String>,
}

impl SubArgs {
    fn parse(mut args: Args) -> Result<Self, Failure> {
        let (mut conn, mut trust) = (ConnArgs::default(), TrustArgs::default());
        let mut qos = QoS::AtMostOnce;
        let mut count = None;
        let mut wait = None;
        let mut filters = Vec::new();
        while let Some(arg) = args.next()? {
            match arg {
                Arg::Flag(flag, inline) => {
                    if conn.take(&flag, inline.clone(), &mut args)?
                        || trust.take(&flag, inline.clone(), &mut args)?
                    {
                        continue;
                    }
                    match flag.as_str() {
                        "--qos" => qos = parse_qos(&flag, &args.value(&flag, inline)?)?,
                        "--count" => {
                            let value = args.value(&flag, inline)?;
                            match value.parse::<u64>() {
                                Ok(n) if n > 0 => count = Some(n),
                                _ => {
                                    return Err(usage(format!(
                                        "{flag} {value:?}: expected a number of messages (1 or more)"
                                    )));
                                }
                            }
                        }
                        "--timeout" => {
                            let value = args.value(&flag, inline)?;
                            let secs = value.parse::<f64>().ok();
                            match secs.and_then(|s| Duration::try_from_secs_f64(s).ok()) {
                                Some(duration) => wait = Some(duration),
                                None => {
                                    return Err(usage(format!(
                                        "{flag} {value:?}: expected seconds (e.g. 10 or 0.5)"
                                    )));
                                }
                            }
                        }
                        _ => return Err(unknown(&flag)),
                    }
                }
                Arg::Positional(value) => filters.push(value),
            }
        }
        if filters.is_empty() {
            return Err(usage("sub needs at least one FILTER (e.g. 'sensors/#')"));
        }
        if filters.len() > MAX_FILTERS {
            return Err(usage(format!(
                "{} filters given; at most {MAX_FILTERS} at once",
                filters.len()
            )));
        }
        for filter in &filters {
            topic::validate_filter(filter)
                .map_err(|e| usage(format!("cannot subscribe to {filter:?}: {e}")))?;
        }
        Ok(Self {
            connection: Connection::check(conn, trust)?,
            qos,
            count,
            timeout: wait,
            filters,
        })
    }
}

// ---------------------------------------------------------------------------
// Connecting.

/// [`mqtts::time::Timer`] on tokio's clock: milliseconds since creation.
#[derive(Debug, Clone, Copy)]
struct TokioTimer {
    start: Instant,
}

impl TokioTimer {
    fn new() -> Self {
        Self {
            start: Instant::now(),
        }
    }
}

impl mqtts::time::Timer for TokioTimer {
    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    async fn sleep_until(&mut self, deadline: u64) {
        match self.start.checked_add(Duration::from_millis(deadline)) {
            Some(at) => tokio::time::sleep_until(at).await,
            // Beyond what tokio's clock represents: never.
            None => std::future::pending().await,
        }
    }
}

/// `host:port`, with brackets around an IPv6 address.
fn show_target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves `host` and opens a TCP connection to the first address that
/// answers, each step bounded.
async fn open_tcp(host: &str, port: u16) -> Result<FromTokio<TcpStream>, Failure> {
    let target = show_target(host, port);
    let addresses: Vec<SocketAddr> =
        match timeout(TCP_TIMEOUT, tokio::net::lookup_host((host, port))).await {
            Ok(Ok(addresses)) => addresses.collect(),
            Ok(Err(e)) => {
                return Err(failed(format!(
                    "cannot resolve the host name {host:?}: {e}"
                )));
            }
            Err(_) => {
                return Err(failed(format!(
                    "cannot resolve the host name {host:?}: no answer within {} s",
                    TCP_TIMEOUT.as_secs()
                )));
            }
        };
    let mut last = format!("{host:?} has no address");
    for address in addresses {
        match timeout(TCP_TIMEOUT, TcpStream::connect(address)).await {
            Ok(Ok(socket)) => {
                let _ = socket.set_nodelay(true);
                return Ok(FromTokio::new(socket));
            }
            Ok(Err(e)) if e.kind() == std::io::ErrorKind::ConnectionRefused => {
                last = format!(
                    "cannot connect to {target}: connection refused (TCP): nothing listens on \
                     {address}, or a firewall rejects it"
                );
            }
            Ok(Err(e)) => last = format!("cannot connect to {target} ({address}): {e}"),
            Err(_) => {
                last = format!(
                    "cannot connect to {target} ({address}): no TCP answer within {} s \
                     (wrong address, or a firewall drops the packets)",
                    TCP_TIMEOUT.as_secs()
                );
            }
        }
    }
    Err(failed(last))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// The host's clock, read by mqtts at each connect (CA mode's validity checks).
struct SystemClock;

impl WallClock for SystemClock {
    fn now_unix_secs(&self) -> Option<u64> {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .ok()
            .map(|d| d.as_secs())
    }
}

static SYSTEM_CLOCK: SystemClock = SystemClock;

/// An mqtts error from connecting, with a hint where the library's words
/// need context.
fn describe(e: &mqtts::Error, target: &str) -> String {
    use mqtts::Error as E;
    use mqtts::error::CertificateError as C;
    match e {
        E::PinMismatch { .. } => format!(
            "{e} (if the broker renewed its certificate, `mqtts fingerprint {target}` shows \
             the whole chain)"
        ),
        E::CertificateRejected {
            reason: C::NameMismatch { .. },
            ..
        } => format!(
            "{e} (connect by the name in the certificate, or give it with --servername; \
             `mqtts fingerprint {target}` shows the certificate)"
        ),
        E::CertificateRejected {
            reason:
                C::Expired {
                    now,
                    not_before,
                    not_after,
                }
                | C::NotYetValid {
                    now,
                    not_before,
                    not_after,
                },
            ..
        } => format!(
            "{e} (valid from {} to {}; this computer's clock says {})",
            utc(*not_before),
            utc(*not_after),
            utc(*now)
        ),
        E::ConnectionClosed | E::Io(_) => format!(
            "{e} (during the TLS handshake or CONNECT: is {target} an MQTT-over-TLS 1.3 port? \
             1883 is usually plain MQTT)"
        ),
        _ => e.to_string(),
    }
}

/// Everything a connection needs, borrowed from the parsed arguments.
struct Settings<'a> {
    host: &'a str,
    port: u16,
    tls: TlsOptions<'a>,
    mqtt: ConnectOptions<'a>,
}

impl Connection {
    fn settings<'a>(&'a self, anchors: &'a [&'a [u8]]) -> Result<Settings<'a>, Failure> {
        let conn = &self.conn;
        let pins = self.trust.pins.as_slice();
        let keep_alive = conn.keep_alive.unwrap_or(60);
        let (host, port, tls, mqtt) = if conn.flespi {
            let token = conn.token.as_deref().unwrap_or_default();
            let mut flespi = Flespi::new(&self.client_id, Credentials::Token(token));
            if !anchors.is_empty() {
                flespi = flespi.with_roots(anchors);
            }
            if !pins.is_empty() {
                flespi = flespi.with_pins(pins);
            }
            let mut tls = flespi.tls_options();
            if self.trust.insecure {
                tls = TlsOptions::new(flespi.host(), Trust::insecure_accept_any_certificate());
            }
            let mqtt = flespi.connect_options().map_err(|e| usage(e.to_string()))?;
            (flespi.host(), flespi.port(), tls, mqtt)
        } else {
            let host = conn.host.as_deref().unwrap_or_default();
            let trust = if self.trust.insecure {
                Trust::insecure_accept_any_certificate()
            } else if anchors.is_empty() {
                Trust::pinned(pins)
            } else if pins.is_empty() {
                Trust::certificate_authorities(anchors)
            } else {
                Trust::certificate_authorities(anchors).with_pins(pins)
            };
            let server_name = conn.server_name.as_deref().unwrap_or(host);
            let mut mqtt = ConnectOptions::new(&self.client_id);
            match (&conn.username, &conn.password) {
                (Some(user), Some(password)) => {
                    mqtt = mqtt.with_credentials(user, password.as_bytes());
                }
                (Some(user), None) => mqtt = mqtt.with_username(user),
                _ => {}
            }
            let tls = TlsOptions::new(server_name, trust);
            (host, conn.port.unwrap_or(DEFAULT_PORT), tls, mqtt)
        };
        tls.trust()
            .check()
            .map_err(|e| usage(format!("invalid trust: {e}")))?;
        Ok(Settings {
            host,
            port,
            tls: tls.with_wall_clock(&SYSTEM_CLOCK),
            mqtt: mqtt
                .with_keep_alive(keep_alive)
                .with_connect_timeout_ms(CONNACK_TIMEOUT_MS),
        })
    }

    fn anchors(&self) -> Vec<&[u8]> {
        self.trust.anchors.iter().map(Vec::as_slice).collect()
    }
}

fn warn_if_insecure(tls: &TlsOptions<'_>) {
    if tls.trust().is_insecure() {
        say!(
            "mqtts: warning: --insecure: the server is NOT authenticated; anyone on the path \
             can read and change this connection"
        );
    }
}

/// Opens TCP, TLS and MQTT, bounded, runs `session` on the client and
/// disconnects.
macro_rules! with_client {
    ($settings:expr, |$client:ident| $body:expr) => {{
        let settings: &Settings<'_> = $settings;
        let target = show_target(settings.host, settings.port);
        warn_if_insecure(&settings.tls);
        let socket = open_tcp(settings.host, settings.port).await?;
        let mut outbox = vec![0u8; OUTBOX];
        let mut session: mqtts::Session<'_, IN_FLIGHT> = mqtts::Session::new(&mut outbox);
        let (mut tls_read, mut tls_write) = (vec![0u8; TLS_READ], vec![0u8; TLS_WRITE]);
        let (mut rx, mut tx) = (vec![0u8; MQTT_RX], vec![0u8; MQTT_TX]);
        let buffers = Buffers {
            tls_read: &mut tls_read,
            tls_write: &mut tls_write,
            rx: &mut rx,
            tx: &mut tx,
        };
        let connected = timeout(
            HANDSHAKE_TIMEOUT,
            Client::connect_tls(
                socket,
                &mut rand::rngs::OsRng,
                &settings.tls,
                TokioTimer::new(),
                &mut session,
                buffers,
                &settings.mqtt,
            ),
        )
        .await;
        #[allow(unused_mut)]
        let mut $client = match connected {
            Ok(Ok((client, _))) => client,
            Ok(Err(e)) => return Err(failed(format!("{target}: {}", describe(&e, &target)))),
            Err(_) => {
                return Err(failed(format!(
                    "{target}: no answer within {} s during the TLS handshake or MQTT CONNECT \
                     (is it an MQTT-over-TLS port?)",
                    HANDSHAKE_TIMEOUT.as_secs()
                )));
            }
        };
        let outcome: Result<(), Failure> = $body;
        match outcome {
            Ok(()) => {
                match timeout(CLOSE_TIMEOUT, $client.disconnect()).await {
                    Ok(Ok(stream)) => {
                        // close_notify; the broker may already have closed.
                        let _ = timeout(CLOSE_TIMEOUT, stream.close()).await;
                        Ok(())
                    }
                    Ok(Err(e)) => Err(failed(format!("{target}: disconnecting: {e}"))),
                    Err(_) => Err(failed(format!(
                        "{target}: disconnecting: no progress within {} s",
                        CLOSE_TIMEOUT.as_secs()
                    ))),
                }
            }
            Err(e) => Err(e),
        }
    }};
}

// ---------------------------------------------------------------------------
// Commands.

async fn publish(args: PubArgs) -> Result<(), Failure> {
    let anchors = args.connection.anchors();
    let settings = args.connection.settings(&anchors)?;
    let target = show_target(settings.host, settings.port);
    with_client!(&settings, |client| {
        match timeout(
            ACK_TIMEOUT,
            client.publish(&args.topic, args.message.as_bytes(), args.qos, args.retain),
        )
        .await
        {
            Ok(Ok(())) => {
                let how = match args.qos {
                    QoS::AtMostOnce => "QoS 0, sent",
                    QoS::AtLeastOnce => "QoS 1, acknowledged by the broker",
                    QoS::ExactlyOnce => "QoS 2, completed with the broker",
                };
                let len = args.message.len();
                say!(
                    "mqtts: published {len} byte{} to {}{} ({how})",
                    if len == 1 { "" } else { "s" },
                    args.topic,
                    if args.retain { " as retained" } else { "" }
                );
                Ok(())
            }
            Ok(Err(e)) => Err(failed(format!(
                "{target}: publishing to {}: {e}",
                args.topic
            ))),
            Err(_) => Err(failed(format!(
                "{target}: publishing to {}: no acknowledgement within {} s",
                args.topic,
                ACK_TIMEOUT.as_secs()
            ))),
        }
    })
}

async fn subscribe(args: SubArgs) -> Result<(), Failure> {
    let anchors = args.connection.anchors();
    let settings = args.connection.settings(&anchors)?;
    let target = show_target(settings.host, settings.port);
    let filters: Vec<(&str, QoS)> = args
        .filters
        .iter()
        .map(|filter| (filter.as_str(), args.qos))
        .collect();
    with_client!(&settings, |client| {
        let granted = match timeout(ACK_TIMEOUT, client.subscribe(&filters)).await {
            Ok(Ok(granted)) => granted,
            Ok(Err(e)) => return Err(failed(format!("{target}: subscribing: {e}"))),
            Err(_) => {
                return Err(failed(format!(
                    "{target}: subscribing: no SUBACK within {} s",
                    ACK_TIMEOUT.as_secs()
                )));
            }
        };
        let mut subscribed = String::new();
        for ((filter, _), qos) in filters.iter().zip(granted.iter()) {
            if !subscribed.is_empty() {
                subscribed.push_str(", ");
            }
            let _ = write!(subscribed, "{filter} (QoS {})", *qos as u8);
        }
        say!("mqtts: subscribed to {subscribed}; waiting for messages");
        receive(&mut client, &args, &target).await
    })
}

/// Prints messages until `--count` or `--timeout`.
async fn receive<T, TM, const N: usize>(
    client: &mut Client<'_, '_, T, TM, N>,
    args: &SubArgs,
    target: &str,
) -> Result<(), Failure>
where
    T: mqtts::transport::Transport,
    TM: mqtts::time::Timer,
{
    let deadline = args.timeout.map(|wait| Instant::now() + wait);
    let mut received = 0u64;
    loop {
        if args.count.is_some_and(|count| received >= count) {
            return Ok(());
        }
        let event = match deadline {
            Some(deadline) => match timeout_at(deadline, client.poll()).await {
                Ok(event) => event,
                Err(_) => {
                    return match args.count {
                        None => Ok(()),
                        Some(count) => Err(failed(format!(
                            "timed out after {} s with {received} of {count} messages",
                            args.timeout.unwrap_or_default().as_secs_f64()
                        ))),
                    };
                }
            },
            None => client.poll().await,
        };
        match event {
            Ok(Event::Message(message)) => {
                let line = format!("{} {}\n", message.topic, printable(message.payload));
                match write_stdout(&line) {
                    Ok(()) => received += 1,
                    // `mqtts sub ... | head -1`: the reader has enough.
                    Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
                    Err(e) => return Err(failed(format!("cannot write to stdout: {e}"))),
                }
            }
            Ok(Event::MessageTooLarge { size, capacity, .. }) => say!(
                "mqtts: skipped a message of {size} bytes (larger than the {capacity}-byte receive buffer)"
            ),
            Ok(_) => {}
            Err(e) => return Err(failed(format!("{target}: {e}"))),
        }
    }
}

/// A payload on one line: UTF-8 (invalid bytes replaced), line breaks and
/// other control characters escaped.
fn printable(payload: &[u8]) -> String {
    let mut out = String::with_capacity(payload.len());
    for c in String::from_utf8_lossy(payload).chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push('\t'),
            c if c.is_control() => {
                let _ = write!(out, "\\x{:02x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out
}

/// Writes to stdout at once (a line of `sub` is seen as it arrives), with
/// an error instead of `println!`'s panic when stdout is closed.
fn write_stdout(text: &str) -> std::io::Result<()> {
    use std::io::Write as _;
    let mut stdout = std::io::stdout().lock();
    stdout.write_all(text.as_bytes())?;
    stdout.flush()
}

/// Collapses a message to one line.
fn one_line(message: &str) -> String {
    message.replace(['\n', '\r'], " ")
}

async fn fingerprint(args: FingerprintArgs) -> Result<(), Failure> {
    let target = show_target(&args.host, args.port);
    let server_name = args.server_name.as_deref().unwrap_or(&args.host);
    say!(
        "mqtts: connecting to {target} WITHOUT trusting it, to show what it presents \
         (name {server_name:?}); nothing is verified but the handshake signature"
    );
    let options = TlsOptions::new(server_name, Trust::insecure_accept_any_certificate());
    let socket = open_tcp(&args.host, args.port).await?;
    let mut read_buffer = vec![0u8; TLS_READ];
    let mut write_buffer = vec![0u8; TLS_WRITE];
    let mut chain: Vec<Vec<u8>> = Vec::new();
    let mut observe = |certificates: &[&[u8]]| {
        chain = certificates.iter().map(|der| der.to_vec()).collect();
    };
    let connected = timeout(
        HANDSHAKE_TIMEOUT,
        tls::connect_observing(
            socket,
            &mut read_buffer,
            &mut write_buffer,
            &mut rand::rngs::OsRng,
            &options,
            &mut observe,
        ),
    )
    .await;
    let outcome = match connected {
        Ok(Ok(stream)) => {
            let _ = timeout(CLOSE_TIMEOUT, stream.close()).await;
            Ok(())
        }
        Ok(Err(e)) => Err(failed(format!("{target}: {}", describe(&e, &target)))),
        Err(_) => Err(failed(format!(
            "{target}: no answer within {} s during the TLS handshake (is it a TLS port?)",
            HANDSHAKE_TIMEOUT.as_secs()
        ))),
    };
    if chain.is_empty() {
        return match outcome {
            Ok(()) => Err(failed(format!(
                "{target}: the server presented no certificate"
            ))),
            Err(e) => Err(e),
        };
    }
    if let Err(e) = write_stdout(&report(&target, &chain, unix_now()))
        && e.kind() != std::io::ErrorKind::BrokenPipe
    {
        return Err(failed(format!("cannot write to stdout: {e}")));
    }
    // The certificates were seen, but the handshake failed after them.
    outcome
}

/// What `fingerprint` prints for a chain (leaf first).
fn report(target: &str, chain: &[Vec<u8>], now: u64) -> String {
    let mut out = String::new();
    let count = chain.len();
    let _ = writeln!(
        out,
        "{target} presented {count} certificate{} (the server's own first):",
        if count == 1 { "" } else { "s" }
    );
    for (index, der) in chain.iter().enumerate() {
        let _ = writeln!(out);
        let parsed = CertificateInfo::parse(der);
        let role = match (index, &parsed) {
            (0, _) => "the server's certificate".to_string(),
            (i, Ok(info)) => {
                let issued = chain
                    .get(i - 1)
                    .and_then(|below| CertificateInfo::parse(below).ok())
                    .is_some_and(|below| below.issuer() == info.subject());
                let mut role = String::from("CA certificate");
                if issued {
                    let _ = write!(role, ", issuer of [{i}]");
                }
                if info.issuer() == info.subject() {
                    role.push_str(", self-signed (a root)");
                }
                role
            }
            (_, Err(_)) => "another certificate".to_string(),
        };
        let _ = writeln!(out, "[{}] {role}", index + 1);
        let Ok(info) = parsed else {
            let _ = writeln!(
                out,
                "    (not a certificate mqtts can parse; {} bytes)",
                der.len()
            );
            let _ = writeln!(out, "    SHA-256:       {}", Fingerprint::sha256_of(der));
            continue;
        };
        let fingerprints = info.fingerprints();
        // CertificateInfo always computes the SHA-1 (it is for showing).
        let sha1 = Fingerprint::sha1_of(der);
        debug_assert_eq!(fingerprints.sha1(), Some(sha1));
        let sha256 = fingerprints.sha256();
        let spki = HexColons(&fingerprints.spki_sha256()).to_string();
        let _ = writeln!(out, "    subject:       {}", info.subject());
        let _ = writeln!(out, "    issuer:        {}", info.issuer());
        let _ = writeln!(out, "    valid from:    {}", utc(info.not_before()));
        let _ = writeln!(
            out,
            "    valid until:   {} ({})",
            utc(info.not_after()),
            validity(info.not_before(), info.not_after(), now)
        );
        let _ = writeln!(
            out,
            "    key:           {}",
            key_line(info.key_algorithm(), index == 0)
        );
        let _ = writeln!(out, "    SHA-1:         {sha1}");
        let _ = writeln!(out, "    SHA-256:       {sha256}");
        let _ = writeln!(out, "    SPKI SHA-256:  {spki}");
        let _ = writeln!(
            out,
            "    firmware pins (the public key survives renewals that keep it; certificate \
             pins change at every renewal):"
        );
        let _ = writeln!(out, "      mqtts::pin_public_key!(\"{spki}\")");
        let _ = writeln!(out, "      mqtts::pin_certificate!(\"{sha256}\")");
        let _ = writeln!(out, "      mqtts::pin_certificate!(\"{sha1}\")");
        let _ = writeln!(out, "    this tool:");
        let _ = writeln!(out, "      --spki {spki}");
        let _ = writeln!(out, "      --sha256 {sha256}");
        let _ = writeln!(out, "      --sha1 {sha1}");
        if index > 0 {
            let _ = writeln!(
                out,
                "    note: pins match only the server's certificate [1]; to trust this CA, \
                 give its certificate to --ca (firmware: Trust::certificate_authorities)"
            );
        }
    }
    out
}

fn key_line(algorithm: KeyAlgorithm, leaf: bool) -> String {
    match algorithm.feature() {
        Some(feature) if leaf => {
            format!("{algorithm} (firmware needs the mqtts feature `{feature}`)")
        }
        Some(feature) => {
            format!("{algorithm} (CA mode needs the mqtts feature `{feature}` to check it)")
        }
        None if algorithm == KeyAlgorithm::Other => {
            format!("{algorithm} (mqtts cannot verify it)")
        }
        None => algorithm.to_string(),
    }
}

/// Where `now` is in a validity period, in days.
fn validity(not_before: u64, not_after: u64, now: u64) -> String {
    const DAY: u64 = 86_400;
    let days = |n: u64| format!("{n} day{}", if n == 1 { "" } else { "s" });
    if now < not_before {
        format!(
            "NOT VALID YET: starts in {}",
            days((not_before - now).div_ceil(DAY))
        )
    } else if now > not_after {
        format!("EXPIRED {} ago", days((now - not_after) / DAY))
    } else {
        format!("valid now, expires in {}", days((not_after - now) / DAY))
    }
}

/// Seconds since the Unix epoch as `YYYY-MM-DD HH:MM:SS UTC`.
fn utc(secs: u64) -> String {
    let days = i64::try_from(secs / 86_400).unwrap_or(i64::MAX / 2);
    let rem = secs % 86_400;
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02} UTC",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to a proleptic Gregorian date (H. Hinnant's
/// `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

#[cfg(feature = "defmt")]
#[path = "../tests/support/defmt_logger.rs"]
mod defmt_logger;
