//! The zero-setup demo: a real MQTT broker in this process, mqtts connecting
//! to it over TLS 1.3 with a pinned certificate, and a wrong pin refused.
//!
//! ```sh
//! cargo run --example demo
//! ```
//!
//! Needs no network and nothing installed: the broker is
//! [rumqttd](https://crates.io/crates/rumqttd) (a dev-dependency) on a free
//! loopback port, with a P-256 certificate generated at start (rcgen),
//! written to a temporary folder that is removed at the end. Every step is
//! bounded by a timeout. Exit status 0 when everything worked, 1 (with the
//! reason) otherwise.

use embedded_io_adapters::tokio_1::FromTokio;
use mqtts::client::{Buffers, Client, ConnectOptions, Event};
use mqtts::mqtt::QoS;
use mqtts::tls::{self, TlsOptions};
use mqtts::trust::{Pin, Trust};
use mqtts::{Fingerprint, Session};
use std::collections::HashMap;
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

/// The name in the broker's certificate and the one mqtts sends (SNI). With
/// a pin the name is not checked: the pin is the identity.
const SERVER_NAME: &str = "demo.mqtts";
/// How long one step may take.
const STEP: Duration = Duration::from_secs(10);
/// How long the whole demo may take.
const WHOLE: Duration = Duration::from_secs(40);

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    println!("mqtts demo: MQTT over TLS 1.3 with a pinned certificate, against a real broker");
    println!("running inside this process (no network, nothing to install).");
    println!();
    let started = Instant::now();
    match tokio::time::timeout(WHOLE, run()).await {
        Ok(Ok(())) => {
            println!();
            println!("Demo finished in {} ms.", started.elapsed().as_millis());
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("demo failed: {e}");
            ExitCode::FAILURE
        }
        Err(_) => {
            eprintln!("demo failed: not finished within {} s", WHOLE.as_secs());
            ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), String> {
    // 1. The broker, with a certificate made now.
    let folder = TempFolder::new()?;
    let broker_cert = SelfSigned::generate()?;
    let broker = start_broker(&folder, &broker_cert)?;
    println!(
        "1. Started an MQTT broker (rumqttd) on {} with a TLS listener and a fresh",
        broker.address
    );
    println!("   P-256 certificate for {SERVER_NAME:?}.");

    // 2. Pin that certificate's SHA-256, connect, subscribe.
    let pinned = Fingerprint::sha256_of(&broker_cert.der);
    println!("2. Pinned the broker's certificate SHA-256 (what a browser or openssl shows):");
    println!("   {pinned}");
    let pins = [Pin::Certificate(pinned)];
    let tls_options = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins));

    let mut outbox = [0u8; 1024];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let mut tls_read = vec![0u8; tls::READ_BUFFER_FOR_FULL_RECORDS];
    let mut tls_write = vec![0u8; 1024];
    let (mut rx, mut tx) = ([0u8; 1024], [0u8; 512]);
    // One filter per topic: rumqttd delivers at the subscription's QoS, not
    // at the lower of the two as MQTT 3.1.1 §3.8.4 says, so a QoS 0 message
    // would come back at QoS 1 under a single QoS 1 filter.
    let subscriptions = [
        ("demo/greeting", QoS::AtMostOnce),
        ("demo/telemetry", QoS::AtLeastOnce),
    ];
    let options = ConnectOptions::new("mqtts-demo")
        .with_keep_alive(30)
        .with_connect_timeout_ms(STEP.as_millis() as u64)
        .with_subscriptions(&subscriptions);
    let socket = broker.connect().await?;
    let buffers = Buffers {
        tls_read: &mut tls_read,
        tls_write: &mut tls_write,
        rx: &mut rx,
        tx: &mut tx,
    };
    let (mut client, connected) = step(
        "TLS and MQTT connect",
        Client::connect_tls(
            socket,
            &mut rand::rngs::OsRng,
            &tls_options,
            TokioTimer::new(),
            &mut session,
            buffers,
            &options,
        ),
    )
    .await?;
    let granted = connected
        .granted
        .ok_or("the broker did not acknowledge the subscriptions")?;
    println!(
        "   Connected over TLS 1.3 (TLS_AES_128_GCM_SHA256, P-256 key exchange); the broker presented"
    );
    println!("   the pinned certificate and proved it holds its key (CertificateVerify).");
    let granted: Vec<String> = subscriptions
        .iter()
        .zip(&granted)
        .map(|((filter, _), qos)| format!("{filter} ({})", qos_name(*qos)))
        .collect();
    println!("   Subscribed to {}.", granted.join(" and "));

    // 3. Publish at QoS 0 and QoS 1; the broker sends both back to us.
    let messages: [(&str, &[u8], QoS); 2] = [
        ("demo/greeting", b"hello from mqtts", QoS::AtMostOnce),
        (
            "demo/telemetry",
            br#"{"temperature":21.5}"#,
            QoS::AtLeastOnce,
        ),
    ];
    println!(
        "3. Published {} messages and received them back:",
        messages.len()
    );
    for (topic, payload, qos) in messages {
        step("publish", client.publish(topic, payload, qos, false)).await?;
        let how = match qos {
            QoS::AtMostOnce => "fire and forget",
            _ => "the broker acknowledged it: PUBACK",
        };
        println!(
            "   published {topic} '{}' at {} ({how})",
            String::from_utf8_lossy(payload),
            qos_name(qos)
        );
    }
    let mut received = 0;
    while received < messages.len() {
        if let Event::Message(message) = step("receive", client.poll()).await? {
            received += 1;
            println!(
                "   received  {} '{}' at {}",
                message.topic,
                String::from_utf8_lossy(message.payload),
                qos_name(message.qos)
            );
        }
    }
    let stream = step("disconnect", client.disconnect()).await?;
    let presented = stream.peer_certificate().sha256();
    if presented != pinned {
        return Err(format!(
            "connected, but the broker presented {presented}, not the pinned {pinned}"
        ));
    }
    let (_socket, _closed) = step_infallible("close", stream.close()).await?;
    println!("   Disconnected cleanly.");

    // 4. The same connection with a wrong pin: last year's certificate.
    let old_cert = SelfSigned::generate()?;
    let old_pin = Fingerprint::sha256_of(&old_cert.der);
    println!("4. Connecting again, pinned to a certificate the broker no longer has:");
    println!("   {old_pin}");
    let old_pins = [Pin::Certificate(old_pin)];
    let tls_options = TlsOptions::new(SERVER_NAME, Trust::pinned(&old_pins));
    let mut outbox = [0u8; 1024];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let socket = broker.connect().await?;
    let buffers = Buffers {
        tls_read: &mut tls_read,
        tls_write: &mut tls_write,
        rx: &mut rx,
        tx: &mut tx,
    };
    let refused = step_infallible(
        "connect with the wrong pin",
        Client::connect_tls(
            socket,
            &mut rand::rngs::OsRng,
            &tls_options,
            TokioTimer::new(),
            &mut session,
            buffers,
            &options,
        ),
    )
    .await?;
    match refused {
        Err(error @ mqtts::Error::PinMismatch { presented }) => {
            if presented.sha256() != pinned {
                return Err(format!(
                    "the mismatch reports {}, not the broker's {pinned}",
                    presented.sha256()
                ));
            }
            println!("   Refused before any MQTT byte was sent. The error says:");
            println!("   {error}");
            println!(
                "   This is the line firmware logs after the broker's certificate is rotated:"
            );
            println!(
                "   it already holds the new SHA-256 to pin (or pin the public key, which survives"
            );
            println!("   renewals that keep the key), instead of a bare \"connection failed\".");
        }
        Err(other) => return Err(format!("expected a pin mismatch, got: {other}")),
        Ok(_) => return Err("the wrong pin was accepted".into()),
    }
    drop(folder);
    Ok(())
}

/// Runs `future` for at most [`STEP`], naming the step in the error.
async fn step<T, E: std::fmt::Display>(
    what: &str,
    future: impl Future<Output = Result<T, E>>,
) -> Result<T, String> {
    match tokio::time::timeout(STEP, future).await {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(e)) => Err(format!("{what}: {e}")),
        Err(_) => Err(format!("{what}: no answer within {} s", STEP.as_secs())),
    }
}

/// Runs `future` for at most [`STEP`], keeping its output as it is.
async fn step_infallible<T>(what: &str, future: impl Future<Output = T>) -> Result<T, String> {
    tokio::time::timeout(STEP, future)
        .await
        .map_err(|_| format!("{what}: no answer within {} s", STEP.as_secs()))
}

fn qos_name(qos: QoS) -> &'static str {
    match qos {
        QoS::AtMostOnce => "QoS 0",
        QoS::AtLeastOnce => "QoS 1",
        QoS::ExactlyOnce => "QoS 2",
    }
}

/// The broker running in this process.
struct Broker {
    address: SocketAddr,
    thread: std::thread::JoinHandle<()>,
}

impl Broker {
    /// Connects to the broker, waiting (bounded) until its listener is up.
    ///
    /// No probe connections: rumqttd does the TLS handshake inside its
    /// accept loop, so an idle connection would stall the clients after it.
    async fn connect(&self) -> Result<FromTokio<tokio::net::TcpStream>, String> {
        let deadline = tokio::time::Instant::now() + STEP;
        loop {
            match tokio::net::TcpStream::connect(self.address).await {
                Ok(tcp) => return Ok(FromTokio::new(tcp)),
                Err(e) if self.thread.is_finished() => {
                    return Err(format!(
                        "the broker stopped: could it not listen on {}? ({e})",
                        self.address
                    ));
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::ConnectionRefused
                        && tokio::time::Instant::now() < deadline =>
                {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => {
                    return Err(format!(
                        "cannot connect to the broker on {}: {e}",
                        self.address
                    ));
                }
            }
        }
    }
}

/// Starts rumqttd with one MQTT 3.1.1 TLS listener on a free loopback port.
fn start_broker(folder: &TempFolder, cert: &SelfSigned) -> Result<Broker, String> {
    let certpath = folder.write("broker.cert.pem", &cert.cert_pem)?;
    let keypath = folder.write("broker.key.pem", &cert.key_pem)?;
    // A free port: the OS picks one, rumqttd binds it again right after.
    let listen = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map_err(|e| format!("no free loopback port: {e}"))?;

    let server = rumqttd::ServerSettings {
        name: "mqtts-demo-tls".into(),
        listen,
        // rustls (TLS 1.2 and 1.3, TLS_AES_128_GCM_SHA256 and P-256 among
        // them); mqtts only speaks TLS 1.3, so that is what is negotiated.
        tls: Some(rumqttd::TlsConfig::Rustls {
            capath: None, // no client certificates
            certpath,
            keypath,
        }),
        next_connection_delay_ms: 1,
        connections: rumqttd::ConnectionSettings {
            connection_timeout_ms: 5_000,
            max_payload_size: 16 * 1024,
            max_inflight_count: 16,
            auth: None,
            external_auth: None,
            dynamic_filters: true,
        },
    };
    let config = rumqttd::Config {
        router: rumqttd::RouterConfig {
            max_connections: 16,
            max_outgoing_packet_count: 200,
            max_segment_size: 1024 * 1024,
            max_segment_count: 4,
            ..Default::default()
        },
        v4: Some(HashMap::from([("1".to_string(), server)])),
        ..Default::default()
    };
    // The broker runs its own threads and runtimes; they end with the process.
    let thread = std::thread::Builder::new()
        .name("rumqttd".into())
        .spawn(move || {
            let mut broker = rumqttd::Broker::new(config);
            if let Err(e) = broker.start() {
                eprintln!("broker: {e}");
            }
        })
        .map_err(|e| format!("cannot start the broker thread: {e}"))?;
    Ok(Broker {
        address: listen,
        thread,
    })
}

/// A self-signed P-256 certificate for [`SERVER_NAME`].
struct SelfSigned {
    der: Vec<u8>,
    cert_pem: String,
    key_pem: String,
}

impl SelfSigned {
    fn generate() -> Result<Self, String> {
        let failed = |e: rcgen::Error| format!("cannot generate a certificate: {e}");
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(failed)?;
        let mut params =
            rcgen::CertificateParams::new(vec![SERVER_NAME.to_string()]).map_err(failed)?;
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, SERVER_NAME);
        let cert = params.self_signed(&key).map_err(failed)?;
        Ok(Self {
            der: cert.der().to_vec(),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }
}

/// A folder for the broker's certificate and key files, removed on drop.
struct TempFolder(PathBuf);

impl TempFolder {
    fn new() -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = std::env::temp_dir().join(format!("mqtts-demo-{}-{nanos}", std::process::id()));
        std::fs::create_dir(&path).map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    /// Writes `contents` to `name` in the folder and returns its path.
    fn write(&self, name: &str, contents: &str) -> Result<String, String> {
        let path: &Path = &self.0.join(name);
        std::fs::write(path, contents)
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        path.to_str()
            .map(str::to_string)
            .ok_or_else(|| format!("{} is not UTF-8", path.display()))
    }
}

impl Drop for TempFolder {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// mqtts's [`Timer`](mqtts::time::Timer) on tokio's clock.
#[derive(Clone)]
struct TokioTimer {
    start: tokio::time::Instant,
}

impl TokioTimer {
    fn new() -> Self {
        Self {
            start: tokio::time::Instant::now(),
        }
    }
}

impl mqtts::time::Timer for TokioTimer {
    fn now(&self) -> mqtts::time::Millis {
        self.start.elapsed().as_millis() as u64
    }

    async fn sleep_until(&mut self, deadline: mqtts::time::Millis) {
        tokio::time::sleep_until(self.start + Duration::from_millis(deadline)).await;
    }
}

#[cfg(feature = "defmt")]
#[path = "../tests/support/defmt_logger.rs"]
mod defmt_logger;
