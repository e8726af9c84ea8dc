//! `mqtts`: look at a broker's certificates, publish and subscribe over
//! MQTT with TLS 1.3, from a PC, with the same trust code as the firmware.
//!
//! ```sh
//! cargo mqtts fingerprint mqtt.flespi.io
//! cargo mqtts fingerprint mqtt.flespi.io --format arduino
//! cargo mqtts pub --host broker.local --spki 7D:9F:.. --qos 1 my/topic hello
//! cargo mqtts sub --flespi --token "$FLESPI_TOKEN" --count 1 'my/#'
//! ```
//!
//! (`cargo mqtts ...` is an alias for
//! `cargo run --quiet --example mqtts --features flespi,p384,ed25519,insecure -- ...`.)
//!
//! Status goes to stderr, data to stdout. Exit status: 0 on success, 1 when
//! the connection or the broker failed (one line on stderr says why), 2 for
//! a usage error, 130 when interrupted (after a clean disconnect).
//!
//! The modules, by concern: [`args`] (the command line, checked before any
//! connection), [`session`] (TCP, TLS, MQTT and the clean close on every
//! exit), [`commands`] (what each command does), [`output`] (what is
//! printed), [`hints`] (the causes of a failure, in words).

mod args;
mod commands;
mod hints;
mod output;
mod session;

use clap::Parser as _;
use std::process::ExitCode;

/// Why the tool stops without success.
#[derive(Debug)]
pub enum Failure {
    /// A usage error found after clap parsed the line (exit 2).
    Usage(clap::Error),
    /// The connection or the broker failed: one line on stderr, exit 1.
    Failed(String),
    /// Ctrl-C: the connection was closed cleanly; exit 130.
    Interrupted,
}

/// A failure of the connection or the broker.
pub fn failed(message: impl Into<String>) -> Failure {
    Failure::Failed(message.into())
}

/// `eprintln!` that never panics (a closed stderr is not worth a crash).
#[macro_export]
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr().lock(), $($arg)*);
    }};
}

fn main() -> ExitCode {
    // clap prints --help and --version on stdout (exit 0) and its errors
    // as "error: ..., Usage: ..., For more information, try '--help'" (exit 2).
    let cli = args::Cli::parse();
    let outcome = match cli.command.check() {
        Ok(command) => match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(runtime) => {
                let outcome = runtime.block_on(commands::run(command));
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
        Err(Failure::Usage(e)) => {
            let _ = e.print();
            ExitCode::from(2)
        }
        Err(Failure::Failed(message)) => {
            say!("mqtts: {}", output::one_line(&message));
            ExitCode::from(1)
        }
        Err(Failure::Interrupted) => {
            say!("mqtts: interrupted; disconnected from the broker");
            ExitCode::from(130)
        }
    }
}

#[cfg(feature = "defmt")]
#[path = "../../tests/support/defmt_logger.rs"]
mod defmt_logger;
