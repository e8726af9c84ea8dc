//! The emulated boards' harness (issue 17), shared by
//! `tests/emulated_boards.rs` (the cases) and `tests/emulated_figures.rs`
//! (the on-core figures): the firmware built once per machine
//! (`scripts/emulated.sh build`), mosquitto with a TLS 1.3 listener and a
//! plain one on loopback, the simulated ESP8266 that QEMU's UART connects
//! to, and a running QEMU whose console is collected line by line.

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader};
use std::net::{Ipv4Addr, TcpListener as StdListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tokio::net::TcpListener;

use super::at_modem::{AtSim, SimConfig};
use super::{CertSpec, Issued, KeyKind, Mosquitto, rsa2048_key_pair};

/// The host name the firmware dials (the flespi preset's).
pub const BROKER_HOST: &str = "mqtt.flespi.io";

/// The longest a boot and first connect may take under emulation (an
/// RSA-4096 chain verified by an interpreted core included).
pub const CONNECT_WITHIN: Duration = Duration::from_secs(240);

/// The emulated machines (`scripts/emulated.sh` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Machine {
    /// The ESP32-C3's ISA on `qemu-system-riscv32 -M virt`.
    Riscv32,
    /// Cortex-M4F on `qemu-system-arm -M mps2-an386`.
    CortexM4,
}

impl Machine {
    pub fn name(self) -> &'static str {
        match self {
            Machine::Riscv32 => "riscv32",
            Machine::CortexM4 => "cortex-m4",
        }
    }
}

pub fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Whether this run is limited to other machines (`MQTTS_EMULATED=riscv32`,
/// as `scripts/run-emulated.sh` sets it).
pub fn skipped(machine: Machine) -> bool {
    std::env::var("MQTTS_EMULATED")
        .map(|only| !only.split(',').any(|m| m.trim() == machine.name()))
        .unwrap_or(false)
}

/// The firmware ELF, built once per machine and test run.
pub fn firmware(machine: Machine) -> PathBuf {
    static BUILT: OnceLock<Mutex<BTreeMap<Machine, PathBuf>>> = OnceLock::new();
    let built = BUILT.get_or_init(|| Mutex::new(BTreeMap::new()));
    let mut built = built.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(elf) = built.get(&machine) {
        return elf.clone();
    }
    let output = Command::new("bash")
        .arg(repo().join("scripts/emulated.sh"))
        .args(["build", machine.name()])
        .current_dir(repo())
        .stderr(Stdio::inherit())
        .output()
        .expect("run scripts/emulated.sh");
    assert!(
        output.status.success(),
        "building the {} firmware failed ({}); scripts/emulated.sh says what is missing above",
        machine.name(),
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let elf = PathBuf::from(stdout.lines().last().unwrap_or_default().trim());
    assert!(
        elf.is_file(),
        "scripts/emulated.sh build printed no ELF path: {stdout}"
    );
    built.insert(machine, elf.clone());
    elf
}

/// A port that was free a moment ago on 127.0.0.1.
pub fn free_port() -> u16 {
    StdListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind an ephemeral port")
}

/// mosquitto with the TLS 1.3 listener the firmware dials and a plain one
/// on loopback for the host's observer.
pub struct Broker {
    pub mosquitto: Mosquitto,
    pub plain_port: u16,
}

impl Broker {
    pub fn start(chain: &[&Issued], persistent: bool) -> Broker {
        let plain_port = free_port();
        let extra = format!("listener {plain_port} 127.0.0.1\n");
        let mosquitto = if persistent {
            Mosquitto::start_persistent(chain, &extra)
        } else {
            Mosquitto::start(chain, &extra)
        };
        Broker {
            mosquitto,
            plain_port,
        }
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // A failing case shows what the broker saw.
        if std::thread::panicking() {
            eprintln!("mosquitto's log:\n{}", self.mosquitto.log());
        }
    }
}

/// The simulated ESP8266 on the socket QEMU's UART connects to.
pub struct Modem {
    pub port: u16,
    sim: Arc<Mutex<Option<AtSim>>>,
    task: tokio::task::JoinHandle<()>,
}

impl Modem {
    pub async fn start(seed: u64) -> Modem {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("bind the modem's socket");
        let port = listener.local_addr().expect("address").port();
        let sim = Arc::new(Mutex::new(None));
        let slot = sim.clone();
        let task = tokio::spawn(async move {
            // One UART connection per QEMU; the modem lives as long as it.
            let Ok((mut uart, _)) = listener.accept().await else {
                return;
            };
            let mut config = SimConfig::new(BROKER_HOST, seed);
            // QEMU's UART takes whole writes: no need to split them more
            // than a real UART's FIFO does.
            config.max_chunk = 64;
            let (modem, mut host_end) = AtSim::spawn(config);
            *slot.lock().unwrap_or_else(|e| e.into_inner()) = Some(modem);
            let _ = tokio::io::copy_bidirectional(&mut uart, &mut host_end).await;
        });
        Modem { port, sim, task }
    }
}

impl Drop for Modem {
    fn drop(&mut self) {
        self.task.abort();
        drop(self.sim.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// A firmware running under QEMU, its console collected line by line.
pub struct Board {
    pub machine: Machine,
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
    /// The threads that read QEMU's stdout and stderr.
    readers: Vec<std::thread::JoinHandle<()>>,
}

impl Board {
    pub fn boot(machine: Machine, modem: &Modem, words: &[String]) -> Board {
        let elf = firmware(machine);
        let mut child = Command::new("bash")
            .arg(repo().join("scripts/emulated.sh"))
            .args(["qemu", machine.name(), "--elf"])
            .arg(&elf)
            .args(["--modem-port", &modem.port.to_string(), "--"])
            .args(words)
            .current_dir(repo())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start QEMU through scripts/emulated.sh");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let mut readers = Vec::new();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            let tag = machine.name();
            readers.push(std::thread::spawn(move || {
                for line in BufReader::new(stream).lines() {
                    let Ok(line) = line else { break };
                    eprintln!("[{tag}] {line}");
                    lines.lock().unwrap_or_else(|e| e.into_inner()).push(line);
                }
            }));
        }
        Board {
            machine,
            child,
            lines,
            readers,
        }
    }

    /// Waits until QEMU exits by itself (the firmware's SYS_EXIT), at most
    /// `within`, and returns its status with every console line.
    pub async fn exited(&mut self, within: Duration) -> (std::process::ExitStatus, Vec<String>) {
        let deadline = Instant::now() + within;
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("QEMU's status") {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "{}: QEMU still runs after {within:?}:\n{}",
                self.machine.name(),
                self.console()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        // QEMU is gone, so its pipes end: the readers have seen every line.
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
        let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner()).clone();
        (status, lines)
    }

    pub fn console(&self) -> String {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .join("\n")
    }

    /// The first line from index `from` on that contains `needle`, and the
    /// index after it; panics with the console after `within`, or if the
    /// firmware panicked or QEMU exited.
    pub async fn line_after(
        &mut self,
        from: usize,
        needle: &str,
        within: Duration,
    ) -> (String, usize) {
        let deadline = Instant::now() + within;
        loop {
            {
                let lines = self.lines.lock().unwrap_or_else(|e| e.into_inner());
                if let Some((i, line)) = lines
                    .iter()
                    .enumerate()
                    .skip(from)
                    .find(|(_, line)| line.contains(needle))
                {
                    return (line.clone(), i + 1);
                }
                if let Some(panic) = lines.iter().find(|l| l.contains("PANIC")) {
                    panic!(
                        "{}: the firmware panicked ({panic}) before `{needle}`:\n{}",
                        self.machine.name(),
                        lines.join("\n")
                    );
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the console readers catch up once more.
                tokio::time::sleep(Duration::from_millis(200)).await;
                panic!(
                    "{}: QEMU exited ({status}) before `{needle}`:\n{}",
                    self.machine.name(),
                    self.console()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{}: no `{needle}` on the console within {within:?}:\n{}",
                self.machine.name(),
                self.console()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn line(&mut self, needle: &str, within: Duration) -> String {
        self.line_after(0, needle, within).await.0
    }

    pub fn count(&self, needle: &str) -> usize {
        self.lines
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .filter(|l| l.contains(needle))
            .count()
    }
}

impl Drop for Board {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A P-256 root and a leaf for the flespi host name (and 127.0.0.1, for
/// nothing but completeness: the observer uses the plain listener).
pub fn p256_broker() -> (Issued, Issued) {
    let root = CertSpec::root("mqtts Emulated Test Root")
        .key_kind(KeyKind::P256)
        .self_signed();
    let leaf = CertSpec::leaf(&[BROKER_HOST])
        .key_kind(KeyKind::P256)
        .signed_by(&root);
    (root, leaf)
}

/// The shape of flespi's chain: an RSA-4096 root (in place of GlobalSign's
/// R6), an RSA-2048 intermediate, an RSA-2048 leaf for the flespi host.
pub fn flespi_shaped() -> (Issued, Issued, Issued) {
    let root = CertSpec::root("mqtts Emulated GlobalSign-shaped Root R6")
        .key_kind(KeyKind::Rsa4096)
        .self_signed();
    let intermediate = CertSpec::intermediate("mqtts Emulated AlphaSSL-shaped CA")
        .key(rsa2048_key_pair(2))
        .signed_by(&root);
    let leaf = CertSpec::leaf(&[BROKER_HOST])
        .key(rsa2048_key_pair(0))
        .signed_by(&intermediate);
    (root, intermediate, leaf)
}

/// The firmware's arguments for one case.
pub fn words(
    case: &str,
    machine: Machine,
    trust: String,
    port: u16,
    extra: &[&str],
) -> Vec<String> {
    let client = format!("{}-{case}", machine.name());
    let mut words = vec![
        format!("trust={trust}"),
        format!("port={port}"),
        format!("client={client}"),
        format!("prefix=emu/{client}"),
        // Test-only: a fixed seed, so a failing run can be replayed.
        format!("seed={:016x}", 0x6d71_7474_7300_0000_u64 + u64::from(port)),
    ];
    words.extend(extra.iter().map(|w| w.to_string()));
    words
}

pub fn prefix(case: &str, machine: Machine) -> String {
    format!("emu/{}-{case}", machine.name())
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}
