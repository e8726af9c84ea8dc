//! The command line: clap parses it, [`Command::check`] then checks what
//! clap cannot (a host or `--flespi`, a trust, sizes against MQTT's limits)
//! and reads the files, all before any connection is made.

use crate::Failure;
use clap::error::ErrorKind;
use clap::{Args, CommandFactory as _, Parser, Subcommand, ValueEnum};
use mqtts::client::MAX_FILTERS;
use mqtts::fingerprint::Fingerprint;
use mqtts::flespi::Region;
use mqtts::mqtt::{QoS, encode, frame, topic};
use mqtts::trust::{CertificateInfo, Pin};
use std::io::Read as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Default MQTT over TLS port.
pub const DEFAULT_PORT: u16 = 8883;

/// Look at a broker's certificates, publish and subscribe over MQTT with
/// TLS 1.3, with the trust code the firmware uses.
#[derive(Parser, Debug)]
#[command(
    name = "mqtts",
    version,
    after_help = "Exit status: 0 success, 1 connection or broker failure, 2 usage error, \
                  130 interrupted.\nEach command has its own help: mqtts pub --help"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Show every certificate a server presents, with the pins to paste
    /// into firmware (mqtts, or an Arduino sketch with --format arduino)
    ///
    /// Connects WITHOUT trusting the server (nothing is verified but the
    /// handshake signature) and prints each certificate of its chain, the
    /// server's own first.
    Fingerprint(FingerprintArgs),
    /// Publish one message and wait until the broker has it
    #[command(visible_alias = "publish")]
    Pub(PubArgs),
    /// Print each message received on the filters, one per line
    ///
    /// Until --count messages arrived or --timeout seconds passed (with
    /// --count, too few messages is a failure), or Ctrl-C; every end closes
    /// the connection cleanly (DISCONNECT, then TLS close_notify).
    #[command(visible_alias = "subscribe")]
    Sub(SubArgs),
}

/// `HOST`, `HOST:PORT`, `[IPv6]:PORT` or a bare IPv6 address.
#[derive(Debug, Clone)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FlespiRegion {
    /// mqtt.flespi.io
    Eu,
    /// ru-mqtt.flespi.io
    Ru,
}

/// Where to connect, besides the host: shared by every command.
#[derive(Args, Debug)]
pub struct Place {
    /// The port (8883 unless HOST:PORT gives it; both must agree)
    #[arg(long, value_parser = parse_port)]
    pub port: Option<u16>,
    /// The name to ask for and check in the certificate (default: the host)
    #[arg(long, value_name = "NAME")]
    pub servername: Option<String>,
    /// flespi.io's broker (mqtt.flespi.io:8883, or --region ru); TRUST is
    /// then optional: the chain is checked up to the GlobalSign roots, which
    /// --ca replaces; pins are checked too
    #[arg(long, conflicts_with = "servername")]
    pub flespi: bool,
    /// flespi's region (with --flespi)
    #[arg(long, value_enum)]
    pub region: Option<FlespiRegion>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CertificateFormat {
    /// Every certificate with its fingerprints and the lines for mqtts
    Text,
    /// What an Arduino sketch (ESP8266 BearSSL WiFiClientSecure) takes:
    /// setFingerprint, setKnownKey, setTrustAnchors
    Arduino,
}

#[derive(Args, Debug)]
pub struct FingerprintArgs {
    /// The server: HOST, HOST:PORT, [IPv6]:PORT
    #[arg(
        value_name = "HOST[:PORT]",
        value_parser = parse_target,
        required_unless_present = "flespi",
        conflicts_with = "flespi"
    )]
    pub target: Option<HostPort>,
    #[command(flatten)]
    pub place: Place,
    /// What to print
    #[arg(long, value_enum, default_value_t = CertificateFormat::Text)]
    pub format: CertificateFormat,
}

/// Where to connect and how to log in (CONN).
#[derive(Args, Debug)]
#[command(next_help_heading = "Connection")]
pub struct ConnArgs {
    /// The broker: HOST, HOST:PORT, [IPv6]:PORT
    #[arg(long, value_name = "HOST[:PORT]", value_parser = parse_target, conflicts_with = "flespi")]
    pub host: Option<HostPort>,
    #[command(flatten)]
    pub place: Place,
    /// A flespi token with MQTT access (with --flespi)
    #[arg(long)]
    pub token: Option<String>,
    /// The MQTT client id (default: mqtts-cli- and 8 random hex digits)
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// MQTT user name
    #[arg(long, value_name = "U", conflicts_with = "flespi")]
    pub username: Option<String>,
    /// MQTT password (needs --username: MQTT 3.1.1 allows no password alone)
    #[arg(long, value_name = "P", requires = "username")]
    pub password: Option<String>,
    /// MQTT keep-alive
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub keep_alive: u16,
    /// Last Will: the broker publishes it to this topic if the connection
    /// ends without DISCONNECT (which this tool always sends when it can)
    #[arg(long, value_name = "TOPIC", value_parser = parse_topic_name)]
    pub will_topic: Option<String>,
    /// The Will's message
    #[arg(
        long,
        value_name = "MESSAGE",
        requires = "will_topic",
        default_value = ""
    )]
    pub will_message: String,
    /// The Will's QoS
    #[arg(long, value_name = "QOS", value_parser = parse_qos, default_value = "0", requires = "will_topic")]
    pub will_qos: QoS,
}

/// How to trust the server (TRUST). FP: hex bytes as printed by `mqtts
/// fingerprint` or openssl: AA:BB:.., 'AA BB ..', aabb.., 'sha256
/// Fingerprint=AA:..', 'SHA2-256(stdin)= aabb..'.
#[derive(Args, Debug)]
#[command(next_help_heading = "Trust (choose one; pins may repeat, any one match passes)")]
pub struct TrustArgs {
    /// The server certificate's SHA-1 (old Arduino sketches)
    #[arg(long, value_name = "FP", value_parser = parse_sha1_pin)]
    pub sha1: Vec<Pin>,
    /// The server certificate's SHA-256 (browsers, openssl)
    #[arg(long, value_name = "FP", value_parser = parse_sha256_pin)]
    pub sha256: Vec<Pin>,
    /// The server's public key (SPKI) SHA-256: survives renewals that keep the key
    #[arg(long, value_name = "FP", value_parser = parse_spki_pin)]
    pub spki: Vec<Pin>,
    /// A CA certificate, PEM or DER (may repeat; with pins, both must pass)
    #[arg(long, value_name = "FILE")]
    pub ca: Vec<PathBuf>,
    /// Do NOT authenticate the server: only to try things out
    #[arg(long, conflicts_with_all = ["sha1", "sha256", "spki", "ca"])]
    pub insecure: bool,
}

#[derive(Args, Debug)]
pub struct PubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// QoS: 0 sent, 1 acknowledged, 2 completed
    #[arg(long, value_parser = parse_qos, default_value = "0")]
    pub qos: QoS,
    /// Ask the broker to keep the message for later subscribers
    #[arg(long)]
    pub retain: bool,
    /// Read the message from this file
    #[arg(long, value_name = "PATH", conflicts_with = "message")]
    pub file: Option<PathBuf>,
    /// The topic
    #[arg(value_parser = parse_topic_name)]
    pub topic: String,
    /// The message; - reads it from stdin
    #[arg(required_unless_present = "file")]
    pub message: Option<String>,
}

#[derive(Args, Debug)]
pub struct SubArgs {
    #[command(flatten)]
    pub conn: ConnArgs,
    #[command(flatten)]
    pub trust: TrustArgs,
    /// The highest QoS to receive with
    #[arg(long, value_parser = parse_qos, default_value = "0")]
    pub qos: QoS,
    /// Stop after N messages (a QoS 2 delivery is completed first)
    #[arg(long, value_name = "N", value_parser = parse_count)]
    pub count: Option<u64>,
    /// Stop after SECS seconds (e.g. 10 or 0.5)
    #[arg(long, value_name = "SECS", value_parser = parse_secs, allow_negative_numbers = true)]
    pub timeout: Option<Duration>,
    /// Each line as `[QoS q, retained, dup] TOPIC PAYLOAD`
    #[arg(short, long)]
    pub verbose: bool,
    /// Each message as one JSON object per line: topic, qos, retain, dup,
    /// and payload (a string) or payload_hex (when it is not UTF-8)
    #[arg(long, conflicts_with = "verbose")]
    pub json: bool,
    /// Topic filters (e.g. 'sensors/#')
    #[arg(value_name = "FILTER", required = true, value_parser = parse_filter)]
    pub filters: Vec<String>,
}

// ---------------------------------------------------------------------------
// Value parsers: their message follows clap's "invalid value 'X' for '--flag <V>': ".

fn parse_port(value: &str) -> Result<u16, String> {
    match value.parse::<u16>() {
        Ok(port) if port > 0 => Ok(port),
        _ => Err("expected a port number (1 to 65535)".into()),
    }
}

fn parse_qos(value: &str) -> Result<QoS, String> {
    match value {
        "0" => Ok(QoS::AtMostOnce),
        "1" => Ok(QoS::AtLeastOnce),
        "2" => Ok(QoS::ExactlyOnce),
        _ => Err("expected 0, 1 or 2".into()),
    }
}

fn parse_count(value: &str) -> Result<u64, String> {
    match value.parse::<u64>() {
        Ok(n) if n > 0 => Ok(n),
        _ => Err("expected a number of messages (1 or more)".into()),
    }
}

fn parse_secs(value: &str) -> Result<Duration, String> {
    value
        .parse::<f64>()
        .ok()
        .and_then(|s| Duration::try_from_secs_f64(s).ok())
        .ok_or_else(|| "expected seconds (e.g. 10 or 0.5)".into())
}

fn parse_topic_name(value: &str) -> Result<String, String> {
    topic::validate_name(value)
        .map(|()| value.to_string())
        .map_err(|e| format!("cannot publish to it: {e}"))
}

fn parse_filter(value: &str) -> Result<String, String> {
    topic::validate_filter(value)
        .map(|()| value.to_string())
        .map_err(|e| format!("cannot subscribe to it: {e}"))
}

fn parse_sha1_pin(value: &str) -> Result<Pin, String> {
    match Fingerprint::parse(value).map_err(|e| e.to_string())? {
        sha1 @ Fingerprint::Sha1(_) => Ok(Pin::Certificate(sha1)),
        Fingerprint::Sha256(_) => {
            Err("this is a SHA-256 fingerprint (32 bytes); pass it with --sha256".into())
        }
    }
}

fn parse_sha256_pin(value: &str) -> Result<Pin, String> {
    Fingerprint::parse_sha256(value)
        .map(|hash| Pin::Certificate(Fingerprint::Sha256(hash)))
        .map_err(|e| e.to_string())
}

fn parse_spki_pin(value: &str) -> Result<Pin, String> {
    Pin::public_key(value).map_err(|e| e.to_string())
}

/// `HOST`, `HOST:PORT`, `[IPv6]:PORT` or a bare IPv6 address.
pub fn parse_target(text: &str) -> Result<HostPort, String> {
    let bad = || "expected HOST, HOST:PORT or [IPv6]:PORT".to_string();
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
    let port = port.map(parse_port).transpose()?;
    Ok(HostPort {
        host: host.to_string(),
        port,
    })
}

// ---------------------------------------------------------------------------
// Checked commands.

/// A command with everything checked and read, ready to connect.
pub enum Checked {
    Fingerprint {
        endpoint: Endpoint,
        format: CertificateFormat,
    },
    Pub(Publication),
    Sub(Subscription),
}

/// Where to connect.
#[derive(Debug, Clone)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    /// The name for SNI and the certificate check.
    pub server_name: String,
    /// flespi's preset, by region.
    pub flespi: Option<Region>,
}

/// CONN and TRUST, checked and read.
pub struct Connection {
    pub endpoint: Endpoint,
    pub token: Option<String>,
    pub client_id: String,
    pub username: Option<String>,
    pub password: Option<String>,
    pub keep_alive: u16,
    pub will: Option<(String, Vec<u8>, QoS)>,
    pub pins: Vec<Pin>,
    pub anchors: Vec<Vec<u8>>,
    pub insecure: bool,
}

pub struct Publication {
    pub connection: Connection,
    pub qos: QoS,
    pub retain: bool,
    pub topic: String,
    pub payload: Vec<u8>,
}

pub struct Subscription {
    pub connection: Connection,
    pub qos: QoS,
    pub count: Option<u64>,
    pub timeout: Option<Duration>,
    pub format: MessageFormat,
    pub filters: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MessageFormat {
    Plain,
    Verbose,
    Json,
}

/// A usage error found after parsing, formatted as clap's own (with the
/// subcommand's usage line), exit 2.
pub fn usage(subcommand: &str, kind: ErrorKind, message: impl std::fmt::Display) -> Failure {
    let mut cli = Cli::command();
    cli.build();
    let mut command = match cli.find_subcommand_mut(subcommand) {
        Some(sub) => sub.clone(),
        None => cli,
    };
    Failure::Usage(command.error(kind, message))
}

/// MQTT's limit on a packet's remaining length (§2.2.3).
const MAX_REMAINING_LENGTH: usize = frame::MAX_REMAINING_LENGTH;

impl Command {
    pub fn check(self) -> Result<Checked, Failure> {
        match self {
            Command::Fingerprint(args) => Ok(Checked::Fingerprint {
                endpoint: endpoint("fingerprint", args.target, &args.place)?,
                format: args.format,
            }),
            Command::Pub(args) => check_pub(args).map(Checked::Pub),
            Command::Sub(args) => check_sub(args).map(Checked::Sub),
        }
    }
}

/// HOST[:PORT], --port and --flespi/--region, reconciled.
fn endpoint(command: &str, target: Option<HostPort>, place: &Place) -> Result<Endpoint, Failure> {
    let conflict = |message: String| usage(command, ErrorKind::ArgumentConflict, message);
    // (clap's `requires` counts a flag's default as present.)
    if place.region.is_some() && !place.flespi {
        return Err(usage(
            command,
            ErrorKind::MissingRequiredArgument,
            "--region is for --flespi",
        ));
    }
    if place.flespi {
        let region = match place.region {
            Some(FlespiRegion::Ru) => Region::Ru,
            _ => Region::Eu,
        };
        let host = match region {
            Region::Ru => mqtts::flespi::HOST_RU,
            _ => mqtts::flespi::HOST,
        };
        match place.port {
            None | Some(mqtts::flespi::PORT) => {}
            Some(443) => {
                return Err(conflict(
                    "flespi's port 443 is MQTT over secure WebSocket, which mqtts does not \
                     speak; its MQTT-over-TLS port is 8883"
                        .into(),
                ));
            }
            Some(other) => {
                return Err(conflict(format!(
                    "flespi takes MQTT over TLS on port 8883, not {other}"
                )));
            }
        }
        return Ok(Endpoint {
            host: host.to_string(),
            port: mqtts::flespi::PORT,
            server_name: host.to_string(),
            flespi: Some(region),
        });
    }
    let Some(target) = target else {
        return Err(usage(
            command,
            ErrorKind::MissingRequiredArgument,
            "missing --host HOST[:PORT] (or --flespi)",
        ));
    };
    let port = match (target.port, place.port) {
        (Some(a), Some(b)) if a != b => {
            return Err(conflict(format!(
                "the port is given twice: {a} in HOST:PORT and {b} with --port"
            )));
        }
        (Some(port), _) | (None, Some(port)) => port,
        (None, None) => DEFAULT_PORT,
    };
    let server_name = place
        .servername
        .clone()
        .unwrap_or_else(|| target.host.clone());
    Ok(Endpoint {
        host: target.host,
        port,
        server_name,
        flespi: None,
    })
}

fn connection(command: &str, conn: ConnArgs, trust: TrustArgs) -> Result<Connection, Failure> {
    let endpoint = endpoint(command, conn.host, &conn.place)?;
    if conn.token.is_some() && endpoint.flespi.is_none() {
        return Err(usage(
            command,
            ErrorKind::ArgumentConflict,
            "--token is for --flespi; other brokers take --username/--password",
        ));
    }
    if endpoint.flespi.is_some() {
        if conn.token.is_none() {
            return Err(usage(
                command,
                ErrorKind::MissingRequiredArgument,
                "--flespi needs --token TOKEN (a flespi token with MQTT access)",
            ));
        }
    } else if !trust.insecure
        && trust.sha1.is_empty()
        && trust.sha256.is_empty()
        && trust.spki.is_empty()
        && trust.ca.is_empty()
    {
        return Err(usage(
            command,
            ErrorKind::MissingRequiredArgument,
            "choose how to trust the server: --sha1, --sha256, --spki, --ca or --insecure \
             (`mqtts fingerprint HOST:PORT` shows the values)",
        ));
    }
    let mut anchors = Vec::new();
    for path in &trust.ca {
        anchors.extend(read_certificates(command, path)?);
    }
    if anchors.len() > mqtts::trust::MAX_TRUST_ANCHORS {
        return Err(usage(
            command,
            ErrorKind::TooManyValues,
            format!(
                "{} CA certificates given; at most {} are supported",
                anchors.len(),
                mqtts::trust::MAX_TRUST_ANCHORS
            ),
        ));
    }
    let pins = [trust.sha1, trust.sha256, trust.spki].concat();
    let client_id = conn.client_id.unwrap_or_else(random_client_id);
    let will = conn
        .will_topic
        .map(|topic| (topic, conn.will_message.into_bytes(), conn.will_qos));
    Ok(Connection {
        endpoint,
        token: conn.token,
        client_id,
        username: conn.username,
        password: conn.password,
        keep_alive: conn.keep_alive,
        will,
        pins,
        anchors,
        insecure: trust.insecure,
    })
}

/// `mqtts-cli-` and 8 random hex digits: brokers disconnect the older of
/// two clients with the same id, so each run gets its own.
fn random_client_id() -> String {
    format!("mqtts-cli-{:08x}", rand::random::<u32>())
}

/// The certificates in a PEM or DER file.
fn read_certificates(command: &str, path: &Path) -> Result<Vec<Vec<u8>>, Failure> {
    let shown = path.display();
    let bad = |message: String| usage(command, ErrorKind::ValueValidation, message);
    let bytes = std::fs::read(path).map_err(|e| bad(format!("--ca {shown}: {e}")))?;
    let certificates = if bytes.starts_with(b"\x30") {
        vec![bytes]
    } else {
        let pems = pem::parse_many(&bytes)
            .map_err(|e| bad(format!("--ca {shown}: neither DER nor PEM ({e})")))?;
        pems.into_iter()
            .filter(|p| p.tag() == "CERTIFICATE" || p.tag() == "X509 CERTIFICATE")
            .map(pem::Pem::into_contents)
            .collect()
    };
    if certificates.is_empty() {
        return Err(bad(format!(
            "--ca {shown}: no certificate in it (expected PEM \"BEGIN CERTIFICATE\" or DER)"
        )));
    }
    for (i, der) in certificates.iter().enumerate() {
        if CertificateInfo::parse(der).is_err() {
            return Err(bad(format!(
                "--ca {shown}: certificate #{} is not a valid X.509 certificate",
                i + 1
            )));
        }
    }
    Ok(certificates)
}

/// The largest payload a PUBLISH to `topic` can carry (§2.2.3).
fn max_payload(topic: &str, qos: QoS) -> usize {
    let id = if qos == QoS::AtMostOnce { 0 } else { 2 };
    MAX_REMAINING_LENGTH - 2 - topic.len() - id
}

fn too_large(size: u64, topic: &str, qos: QoS) -> Failure {
    usage(
        "pub",
        ErrorKind::ValueValidation,
        format!(
            "the message has {size} bytes; an MQTT message to {topic:?} holds at most {} \
             (a packet's remaining length is at most {MAX_REMAINING_LENGTH} bytes, §2.2.3)",
            max_payload(topic, qos)
        ),
    )
}

fn check_pub(args: PubArgs) -> Result<Publication, Failure> {
    let (topic, qos) = (args.topic, args.qos);
    let limit = max_payload(&topic, qos);
    let payload = match (&args.file, args.message) {
        (Some(path), _) => {
            let shown = path.display();
            let bad = |e: std::io::Error| {
                usage(
                    "pub",
                    ErrorKind::ValueValidation,
                    format!("--file {shown}: {e}"),
                )
            };
            // The size first: a file too large is refused without reading it.
            let size = std::fs::metadata(path).map_err(bad)?.len();
            if size > limit as u64 {
                return Err(too_large(size, &topic, qos));
            }
            std::fs::read(path).map_err(bad)?
        }
        (None, Some(message)) if message == "-" => {
            let mut payload = Vec::new();
            std::io::stdin()
                .take(limit as u64 + 1)
                .read_to_end(&mut payload)
                .map_err(|e| usage("pub", ErrorKind::Io, format!("reading stdin: {e}")))?;
            payload
        }
        (None, Some(message)) => message.into_bytes(),
        (None, None) => Vec::new(),
    };
    if payload.len() > limit {
        return Err(too_large(payload.len() as u64, &topic, qos));
    }
    debug_assert!(encode::publish_len(&topic, &payload, qos) <= MAX_REMAINING_LENGTH + 5);
    if args.conn.place.flespi {
        // What the library would refuse after connecting.
        let limits = mqtts::flespi::LIMITS;
        if qos > limits.max_qos {
            return Err(usage(
                "pub",
                ErrorKind::ValueValidation,
                "flespi accepts QoS 0 and 1 only",
            ));
        }
        if let Some(prefix) = limits.reserved_prefix
            && topic.starts_with(prefix)
        {
            return Err(usage(
                "pub",
                ErrorKind::ValueValidation,
                format!("flespi does not let clients publish to {prefix}... topics"),
            ));
        }
    }
    Ok(Publication {
        connection: connection("pub", args.conn, args.trust)?,
        qos,
        retain: args.retain,
        topic,
        payload,
    })
}

fn check_sub(args: SubArgs) -> Result<Subscription, Failure> {
    if args.filters.len() > MAX_FILTERS {
        return Err(usage(
            "sub",
            ErrorKind::TooManyValues,
            format!(
                "{} filters given; at most {MAX_FILTERS} at once",
                args.filters.len()
            ),
        ));
    }
    let format = match (args.json, args.verbose) {
        (true, _) => MessageFormat::Json,
        (_, true) => MessageFormat::Verbose,
        _ => MessageFormat::Plain,
    };
    Ok(Subscription {
        connection: connection("sub", args.conn, args.trust)?,
        qos: args.qos,
        count: args.count,
        timeout: args.timeout,
        format,
        filters: args.filters,
    })
}
