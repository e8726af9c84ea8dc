//! On-core figures (issue 17, item 6): the riscv32imc board firmware (the
//! ESP32-C3's ISA) under `qemu-system-riscv32 -M virt -icount shift=0`, in
//! its measurement mode (`measure=floor` / `measure=connect`,
//! `examples/boards/qemu-riscv32/src/measure.rs`), against mosquitto
//! through the simulated ESP8266, as `tests/emulated_boards.rs` runs it.
//! The firmware prints one `MEASURE - ...` line per figure; this test
//! collects them and prints a table.
//!
//! Figures are a report, not assertions: the test is `#[ignore]`d.
//!
//! ```sh
//! bash scripts/emulated-figures.sh
//! cargo test --features esp-at --test emulated_figures -- --ignored --nocapture
//! ```
#![cfg(feature = "esp-at")]

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::emulated::*;
use support::*;

/// The longest one measurement run may take (boot, one connect, the
/// session's phases; the RSA-4096 chain on an interpreted core included).
const RUN_WITHIN: Duration = Duration::from_secs(600);

/// The ESP32-C3's clock.
const ESP32_C3_HZ: f64 = 160e6;

/// One `MEASURE - <what> <mode> key=value ...` line.
#[derive(Debug, Clone)]
struct Figure {
    what: String,
    mode: String,
    values: BTreeMap<String, u64>,
}

impl Figure {
    fn parse(line: &str) -> Option<Figure> {
        let rest = line.split("MEASURE - ").nth(1)?;
        let mut words = rest.split_whitespace();
        let what = words.next()?.to_string();
        let mode = words.next()?.to_string();
        let values = words
            .filter_map(|w| {
                let (k, v) = w.split_once('=')?;
                Some((k.to_string(), v.parse().ok()?))
            })
            .collect();
        Some(Figure { what, mode, values })
    }

    fn get(&self, key: &str) -> u64 {
        self.values
            .get(key)
            .copied()
            .unwrap_or_else(|| panic!("no {key}= in the figure {self:?}"))
    }
}

/// What one boot measured.
struct Run {
    label: &'static str,
    figures: Vec<Figure>,
}

impl Run {
    fn find(&self, what: &str) -> Vec<&Figure> {
        self.figures.iter().filter(|f| f.what == what).collect()
    }

    fn handshake(&self) -> &Figure {
        self.find("handshake")
            .first()
            .copied()
            .expect("a handshake figure")
    }
}

/// Boots the firmware with `measure` and `trust` against a broker with
/// `chain`, and returns its figures once it exited.
async fn measure(
    label: &'static str,
    measure: &str,
    chain: &[&Issued],
    trust: String,
    seed: u64,
) -> Run {
    let broker = Broker::start(chain, false);
    let modem = Modem::start(seed).await;
    let machine = Machine::Riscv32;
    let mut board = Board::boot(
        machine,
        &modem,
        &words(
            label,
            machine,
            trust,
            broker.mosquitto.port,
            &[&format!("measure={measure}")],
        ),
    );
    let (status, lines) = board.exited(RUN_WITHIN).await;
    assert!(
        status.success() && lines.iter().any(|l| l.contains("MEASURE - done")),
        "{label}: the measurement did not finish ({status}):\n{}",
        lines.join("\n")
    );
    let figures = lines.iter().filter_map(|l| Figure::parse(l)).collect();
    Run { label, figures }
}

fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Milliseconds at 160 MHz if every instruction took one cycle.
fn ms(instructions: u64, decimals: usize) -> String {
    format!("{:.*}", decimals, instructions as f64 / ESP32_C3_HZ * 1e3)
}

/// A table row for `figure`; `heap` says whether its heap column means
/// anything.
fn cells(name: &str, figure: &Figure, decimals: usize, heap: bool) -> Vec<String> {
    let instructions = figure.get("instructions");
    vec![
        name.to_string(),
        thousands(instructions),
        ms(instructions, decimals),
        thousands(figure.get("stack_poll")),
        thousands(figure.get("stack_total")),
        if heap {
            thousands(figure.get("heap_peak"))
        } else {
            String::new()
        },
    ]
}

/// The median of the rounds' figures (by instructions).
fn median<'a>(figures: &[&'a Figure]) -> &'a Figure {
    let mut sorted = figures.to_vec();
    sorted.sort_by_key(|f| f.get("instructions"));
    sorted[sorted.len() / 2]
}

#[test]
#[ignore = "a report, not a check: run with --ignored (scripts/emulated-figures.sh)"]
fn riscv32_figures_on_the_core() {
    if skipped(Machine::Riscv32) {
        return;
    }
    runtime().block_on(async {
        let (_root, p256_leaf) = p256_broker();
        let (p256_root, p256_ca_leaf) = p256_broker();
        let (rsa_root, rsa_intermediate, rsa_leaf) = flespi_shaped();
        let dir = std::env::temp_dir();
        let root_file = |name: &str, der: Vec<u8>| {
            let path = dir.join(format!("mqtts-figures-{}-{name}.der", std::process::id()));
            std::fs::write(&path, der).expect("write a root certificate");
            path
        };
        let p256_root_file = root_file("p256", p256_root.der_bytes());
        let rsa_root_file = root_file("rsa", rsa_root.der_bytes());
        let spki = format!("spki:{}", hex(&p256_leaf.spki_sha256()));
        let cert = format!("cert:{}", hex(&p256_leaf.cert_sha256()));

        let runs = vec![
            measure("floor", "floor", &[&p256_leaf], spki.clone(), 11).await,
            measure("spki", "connect", &[&p256_leaf], spki, 12).await,
            measure("cert", "connect", &[&p256_leaf], cert, 13).await,
            measure(
                "ca-p256",
                "connect",
                &[&p256_ca_leaf],
                format!("ca:{}", p256_root_file.display()),
                14,
            )
            .await,
            measure(
                "ca-rsa",
                "connect",
                &[&rsa_leaf, &rsa_intermediate],
                format!("ca:{}", rsa_root_file.display()),
                15,
            )
            .await,
        ];
        let _ = std::fs::remove_file(&p256_root_file);
        let _ = std::fs::remove_file(&rsa_root_file);

        let mut table = String::new();
        let mut row = |cells: &[String]| {
            table.push_str(&format!("| {} |\n", cells.join(" | ")));
        };
        row(&[
            "phase".into(),
            "instructions".into(),
            "ms at 160 MHz, 1 instruction per cycle".into(),
            "stack below the poll, B".into(),
            "stack from the top, B".into(),
            "heap peak, B".into(),
        ]);
        row(&vec!["---".to_string(); 6]);
        let names = [
            ("floor", "handshake + CONNECT/CONNACK: floor (embedded-tls, no verifier)"),
            ("spki", "handshake + CONNECT/CONNACK: SPKI pin"),
            ("cert", "handshake + CONNECT/CONNACK: certificate pin"),
            ("ca-p256", "handshake + CONNECT/CONNACK: CA, P-256 root → leaf"),
            ("ca-rsa", "handshake + CONNECT/CONNACK: CA, RSA-4096 → RSA-2048 → RSA-2048 (flespi-shaped)"),
        ];
        for run in &runs {
            let name = names.iter().find(|(l, _)| *l == run.label).map_or(run.label, |n| n.1);
            row(&cells(name, run.handshake(), 1, true));
        }
        let floor = &runs[0];
        let p256 = *floor.find("p256-verify").first().expect("the P-256 figure");
        row(&cells("one ECDSA P-256 verification alone", p256, 1, false));
        let spki = &runs[1];
        for (what, name) in [
            ("publish-qos0", "`publish` QoS 0 (50-byte reading), median of 3"),
            ("publish-qos1", "`publish` QoS 1 until PUBACK, median of 3"),
            ("idle-poll", "idle `poll_until` 100 ms ahead, nothing arrives, median of 3"),
        ] {
            row(&cells(name, median(&spki.find(what)), 3, true));
        }
        let tcp = *spki.find("tcp-open").first().expect("the TCP open figure");
        row(&cells(
            "TCP open through the AT modem (AT+CIPSTART ...), not in the handshake",
            tcp,
            1,
            false,
        ));

        let ram = spki.find("ram");
        let ram = ram.first().expect("the RAM figure");
        let clock = spki.find("clock");
        let clock = clock.first().expect("the clock check");
        let goal = (floor.handshake().get("instructions") + p256.get("instructions")) as f64;
        let mut summary = String::new();
        for run in &runs[1..3] {
            let i = run.handshake().get("instructions") as f64;
            summary.push_str(&format!(
                "{}: {} = {:.3} x (floor + one P-256 verification) -> goal <= 1.10: {}\n",
                run.label,
                thousands(i as u64),
                i / goal,
                if i <= 1.10 * goal { "met" } else { "MISSED" }
            ));
        }
        summary.push_str(&format!(
            "RAM: {} of {} bytes static (.data + .bss, heap {} included), stack {}\n",
            thousands(ram.get("static")),
            thousands(ram.get("total")),
            thousands(ram.get("heap")),
            thousands(ram.get("stack")),
        ));
        summary.push_str(&format!(
            "minstret across a 100 ms sleep: {} executed, {} asleep (the virtual clock, subtracted)\n",
            thousands(clock.get("instructions")),
            thousands(clock.get("idle")),
        ));
        println!("\nOn-core figures, riscv32imc under qemu-system-riscv32 -M virt -icount shift=0:\n\n{table}\n{summary}");
        println!("Every figure line:");
        for run in &runs {
            for f in &run.figures {
                println!("  {}: {} {} {:?}", run.label, f.what, f.mode, f.values);
            }
        }
    });
}
