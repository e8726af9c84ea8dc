//! The command line (semihosting SYS_GET_CMDLINE): words `key=value`, see
//! the table in [`super`].

use core::fmt;

use mqtts::fingerprint::{Fingerprint, FingerprintError};

use super::host;
use super::selftest::SelfTest;
use crate::config;

/// The longest command line read from the host.
pub const CMDLINE_MAX: usize = 1024;

/// How the broker's certificate is checked (`trust=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust<'a> {
    /// CA mode with flespi's GlobalSign roots.
    Flespi,
    /// A pin on the SHA-256 of the broker's public key (SubjectPublicKeyInfo).
    Spki([u8; 32]),
    /// A pin on the SHA-256 of the broker's certificate.
    Certificate([u8; 32]),
    /// CA mode with the DER root certificate at this path on the host.
    Ca(&'a str),
}

/// What the board's command line set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Args<'a> {
    /// How the broker is checked.
    pub trust: Trust<'a>,
    /// The TCP port the modem dials.
    pub port: u16,
    /// MQTT client id.
    pub client_id: &'a str,
    /// Topic prefix, if set (otherwise `devices/<client id>`).
    pub prefix: Option<&'a str>,
    /// Seconds between readings.
    pub interval_secs: u32,
    /// MQTT keep-alive, seconds.
    pub keep_alive_secs: u16,
    /// The TEST-ONLY RNG's seed.
    pub seed: u64,
    /// The Wi-Fi network the modem joins.
    pub ssid: &'a str,
    /// Its password.
    pub password: &'a str,
    /// A failure to provoke instead of running the application.
    pub self_test: Option<SelfTest>,
}

/// What a board uses where the command line is silent.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// MQTT client id, e.g. `riscv32-virt`.
    pub client_id: &'static str,
}

/// Why the command line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgError<'a> {
    /// The host gave no command line (or one longer than the buffer).
    Unreadable,
    /// A word without `=`, or with a key that is not known.
    UnknownWord(&'a str),
    /// A key given twice.
    Repeated(&'a str),
    /// A value that does not parse; the text says what was expected.
    BadValue {
        /// The whole word.
        word: &'a str,
        /// What the key takes.
        expected: &'static str,
    },
    /// `seed=` is required.
    MissingSeed,
}

impl fmt::Display for ArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable => write!(
                f,
                "no semihosting command line (at most {CMDLINE_MAX} bytes; QEMU: -semihosting-config enable=on,target=native,arg=seed=...)"
            ),
            Self::UnknownWord(word) => write!(
                f,
                "unknown word `{word}`: expected key=value with key trust, port, client, prefix, interval, keepalive, seed, ssid, password or selftest"
            ),
            Self::Repeated(key) => write!(f, "`{key}=` is given twice"),
            Self::BadValue { word, expected } => write!(f, "bad `{word}`: {expected}"),
            Self::MissingSeed => write!(
                f,
                "missing seed=<16 hex digits> (the TEST-ONLY RNG's seed; this board has no entropy source)"
            ),
        }
    }
}

const TRUST_EXPECTED: &str =
    "trust=spki:<64 hex>, trust=cert:<64 hex>, trust=ca:<host path of a DER root> or trust=flespi";

/// Parses the words of the command line (see the module's table).
pub fn parse_args<'a>(cmdline: &'a str, defaults: Defaults) -> Result<Args<'a>, ArgError<'a>> {
    let mut args = Args {
        trust: Trust::Flespi,
        port: mqtts::flespi::PORT,
        client_id: defaults.client_id,
        prefix: None,
        interval_secs: config::PUBLISH_INTERVAL_SECS,
        keep_alive_secs: config::KEEP_ALIVE_SECS,
        seed: 0,
        ssid: "test-net",
        password: "test-password",
        self_test: None,
    };
    let mut seen = [false; KEYS.len()];
    let mut seed = None;
    for word in cmdline.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ArgError::UnknownWord(word));
        };
        let Some(index) = KEYS.iter().position(|known| *known == key) else {
            return Err(ArgError::UnknownWord(word));
        };
        if core::mem::replace(&mut seen[index], true) {
            return Err(ArgError::Repeated(KEYS[index]));
        }
        let bad = |expected| ArgError::BadValue { word, expected };
        match key {
            "trust" => {
                args.trust = parse_trust(value).map_err(|()| bad(TRUST_EXPECTED))?;
            }
            "port" => {
                args.port = value
                    .parse()
                    .ok()
                    .filter(|port| *port != 0)
                    .ok_or(bad("a TCP port, 1 to 65535"))?;
            }
            "client" => {
                if value.is_empty() || value.len() > 64 {
                    return Err(bad("an MQTT client id of 1 to 64 bytes"));
                }
                args.client_id = value;
            }
            "prefix" => {
                if value.is_empty() || value.len() > 96 {
                    return Err(bad("a topic prefix of 1 to 96 bytes"));
                }
                args.prefix = Some(value);
            }
            "interval" => {
                args.interval_secs = value
                    .parse()
                    .ok()
                    .filter(|secs| (1..=86_400).contains(secs))
                    .ok_or(bad("seconds from 1 to 86400"))?;
            }
            "keepalive" => {
                args.keep_alive_secs = value
                    .parse()
                    .ok()
                    .filter(|secs| *secs != 0)
                    .ok_or(bad("seconds from 1 to 65535"))?;
            }
            "seed" => {
                let valid = value.len() == 16 && value.bytes().all(|b| b.is_ascii_hexdigit());
                seed = Some(
                    valid
                        .then(|| u64::from_str_radix(value, 16).ok())
                        .flatten()
                        .ok_or(bad("16 hex digits"))?,
                );
            }
            "selftest" => {
                args.self_test = Some(match value {
                    "stack-overflow" => SelfTest::StackOverflow,
                    "watchdog" => SelfTest::Watchdog,
                    "panic" => SelfTest::Panic,
                    _ => return Err(bad("stack-overflow, watchdog or panic")),
                });
            }
            "ssid" => {
                if value.is_empty() || value.len() > 32 {
                    return Err(bad("an SSID of 1 to 32 bytes"));
                }
                args.ssid = value;
            }
            "password" => {
                if !value.is_empty() && !(8..=64).contains(&value.len()) {
                    return Err(bad("a Wi-Fi password of 8 to 64 bytes (or empty)"));
                }
                args.password = value;
            }
            _ => unreachable!("every key of KEYS is matched"),
        }
    }
    args.seed = seed.ok_or(ArgError::MissingSeed)?;
    Ok(args)
}

const KEYS: [&str; 10] = [
    "trust",
    "port",
    "client",
    "prefix",
    "interval",
    "keepalive",
    "seed",
    "ssid",
    "password",
    "selftest",
];

fn parse_trust(value: &str) -> Result<Trust<'_>, ()> {
    let sha256 = |hex: &str| match Fingerprint::parse_sha256(hex) {
        Ok(bytes) => Ok(bytes),
        Err(FingerprintError::Empty | _) => Err(()),
    };
    if value == "flespi" {
        Ok(Trust::Flespi)
    } else if let Some(hex) = value.strip_prefix("spki:") {
        sha256(hex).map(Trust::Spki)
    } else if let Some(hex) = value.strip_prefix("cert:") {
        sha256(hex).map(Trust::Certificate)
    } else if let Some(path) = value.strip_prefix("ca:") {
        if path.is_empty() {
            Err(())
        } else {
            Ok(Trust::Ca(path))
        }
    } else {
        Err(())
    }
}

/// Reads the semihosting command line into `buf`.
pub fn read_cmdline(buf: &mut [u8; CMDLINE_MAX]) -> Result<&str, ArgError<'static>> {
    let len = host::cmdline(buf).ok_or(ArgError::Unreadable)?;
    core::str::from_utf8(&buf[..len]).map_err(|_| ArgError::Unreadable)
}
