//! Connects to a TLS 1.3 server (an MQTT broker) with mqtts and reports
//! whether it is trusted, with the fingerprints it presents.
//!
//! ```sh
//! cargo run --example tls_probe -- HOST[:PORT] [--sha1 FP | --sha256 FP | --spki FP | --ca FILE.der | --insecure]...
//! cargo run --example tls_probe --features insecure -- mqtt.flespi.io --insecure
//! ```
//!
//! With `--insecure` it only shows what the server presents (and says so).
//! Exit status 0 when the handshake succeeded, 1 with the reason otherwise.

use embedded_io_adapters::tokio_1::FromTokio;
use mqtts::tls::{self, TlsOptions};
use mqtts::trust::{Pin, Trust};
use std::process::ExitCode;

fn usage() -> ExitCode {
    eprintln!(
        "usage: tls_probe HOST[:PORT] [--sha1 FP | --sha256 FP | --spki FP | --ca FILE.der | --insecure]..."
    );
    ExitCode::from(2)
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let mut args = std::env::args().skip(1);
    let Some(target) = args.next() else {
        return usage();
    };
    let (host, port) = match target.rsplit_once(':') {
        Some((host, port)) => match port.parse::<u16>() {
            Ok(port) => (host.to_string(), port),
            Err(_) => return usage(),
        },
        None => (target.clone(), 8883),
    };

    let mut pins = Vec::new();
    let mut anchors = Vec::new();
    let mut insecure = false;
    while let Some(flag) = args.next() {
        let value = match flag.as_str() {
            "--insecure" => {
                insecure = true;
                continue;
            }
            "--sha1" | "--sha256" | "--spki" | "--ca" => match args.next() {
                Some(value) => value,
                None => return usage(),
            },
            _ => return usage(),
        };
        let parsed = match flag.as_str() {
            "--spki" => Pin::public_key(&value),
            "--ca" => match std::fs::read(&value) {
                Ok(der) => {
                    anchors.push(der);
                    continue;
                }
                Err(e) => {
                    eprintln!("cannot read {value}: {e}");
                    return ExitCode::from(2);
                }
            },
            _ => Pin::certificate(&value),
        };
        match parsed {
            Ok(pin) => pins.push(pin),
            Err(e) => {
                eprintln!("{flag} {value}: {e}");
                return ExitCode::from(2);
            }
        }
    }

    let anchor_refs: Vec<&[u8]> = anchors.iter().map(Vec::as_slice).collect();
    let trust = if insecure {
        #[cfg(feature = "insecure")]
        {
            eprintln!("warning: --insecure: the server is NOT authenticated");
            Trust::insecure_accept_any_certificate()
        }
        #[cfg(not(feature = "insecure"))]
        {
            eprintln!("--insecure needs mqtts's `insecure` feature (--features insecure)");
            return ExitCode::from(2);
        }
    } else if !anchor_refs.is_empty() && pins.is_empty() {
        Trust::certificate_authorities(&anchor_refs)
    } else if !anchor_refs.is_empty() {
        Trust::certificate_authorities(&anchor_refs).with_pins(&pins)
    } else if !pins.is_empty() {
        Trust::pinned(&pins)
    } else {
        eprintln!("choose a trust: --sha1, --sha256, --spki, --ca or --insecure");
        return ExitCode::from(2);
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let options = TlsOptions::new(&host, trust).with_unix_time(now);

    let socket = match tokio::net::TcpStream::connect((host.as_str(), port)).await {
        Ok(socket) => FromTokio::new(socket),
        Err(e) => {
            eprintln!("cannot connect to {host}:{port}: {e}");
            return ExitCode::from(1);
        }
    };
    let mut read_buffer = vec![0; tls::READ_BUFFER_FOR_FULL_RECORDS];
    let mut write_buffer = vec![0; 1024];
    let mut rng = rand::rngs::OsRng;
    let connected = tokio::time::timeout(
        std::time::Duration::from_secs(20),
        tls::connect(
            socket,
            &mut read_buffer,
            &mut write_buffer,
            &mut rng,
            &options,
        ),
    )
    .await;
    match connected {
        Ok(Ok(stream)) => {
            let presented = stream.peer_certificate();
            println!(
                "connected to {host}:{port} ({})",
                if stream.is_insecure() {
                    "NOT authenticated"
                } else {
                    "trusted"
                }
            );
            if let Some(sha1) = presented.sha1() {
                println!("certificate SHA-1:       {sha1}");
            }
            println!("certificate SHA-256:     {}", presented.sha256());
            println!(
                "public key SHA-256:      {}",
                mqtts::fingerprint::HexColons(&presented.spki_sha256())
            );
            ExitCode::SUCCESS
        }
        Ok(Err(e)) => {
            eprintln!("{host}:{port}: {e}");
            ExitCode::from(1)
        }
        Err(_) => {
            eprintln!("{host}:{port}: no answer within 20 s");
            ExitCode::from(1)
        }
    }
}

#[cfg(feature = "defmt")]
#[path = "../tests/support/defmt_logger.rs"]
mod defmt_logger;
