//! `cargo run --example demo` works: the demo is built once, run as a
//! process (bounded by a timeout), and must exit 0 with its key lines.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The features this test was built with, so the demo is built the same way
/// (`cargo test` has usually built it already, and nothing is rebuilt).
fn features() -> Vec<&'static str> {
    let mut features = Vec::new();
    macro_rules! feature {
        ($($name:literal),*) => {
            $(if cfg!(feature = $name) { features.push($name); })*
        };
    }
    feature!(
        "defmt",
        "log",
        "p384",
        "ed25519",
        "rsa",
        "flespi",
        "alloc",
        "embassy-time"
    );
    features
}

/// Waits for `child` for at most `limit`, killing it after that.
fn wait_for(child: &mut Child, limit: Duration, what: &str) -> ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().expect("wait for a child process") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{what} did not finish within {} s", limit.as_secs());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Builds the demo with cargo and returns the path of its executable.
fn build_demo() -> PathBuf {
    let mut cargo = Command::new(env!("CARGO"));
    // Without the variables cargo sets for this test: build scripts that
    // watch one (ring watches CARGO_MANIFEST_DIR) would otherwise rebuild
    // half the dependency tree here, and again in the next `cargo test`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("CARGO_PKG_")
            || name.starts_with("CARGO_BIN_")
            || [
                "CARGO_MANIFEST_DIR",
                "CARGO_MANIFEST_PATH",
                "CARGO_CRATE_NAME",
                "CARGO_PRIMARY_PACKAGE",
                "CARGO_TARGET_TMPDIR",
                "CARGO_RUSTC_CURRENT_DIR",
            ]
            .contains(&name.as_ref())
        {
            cargo.env_remove(name.as_ref());
        }
    }
    cargo
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--example", "demo"])
        .arg("--message-format=json-render-diagnostics");
    let features = features();
    if !features.is_empty() {
        cargo.arg("--features").arg(features.join(","));
    }
    let mut child = cargo
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("run cargo");
    // Read on a thread so a full pipe cannot stall cargo past the timeout.
    let mut stdout = child.stdout.take().expect("cargo's stdout");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        stdout.read_to_string(&mut text).map(|_| text)
    });
    let status = wait_for(&mut child, Duration::from_secs(900), "cargo build");
    let messages = reader
        .join()
        .expect("reader thread")
        .expect("cargo's output");
    assert!(status.success(), "cargo build --example demo: {status}");
    // The compiler-artifact message of the example names its executable.
    messages
        .lines()
        .filter(|line| line.contains(r#""reason":"compiler-artifact""#))
        .filter(|line| line.contains(r#""kind":["example"]"#) && line.contains(r#""name":"demo""#))
        .find_map(|line| {
            let start = line.find(r#""executable":""#)? + r#""executable":""#.len();
            let end = start + line[start..].find('"')?;
            Some(PathBuf::from(&line[start..end]))
        })
        .expect("cargo reported the demo's executable")
}

#[test]
fn the_demo_runs_and_tells_its_story() {
    let demo = build_demo();
    let started = Instant::now();
    let mut child = Command::new(&demo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the demo");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stdout.read_to_string(&mut text);
        text
    });
    let err = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    // The demo bounds itself at 40 s; this is the backstop.
    let status = wait_for(&mut child, Duration::from_secs(60), "the demo");
    let (out, err) = (out.join().expect("stdout"), err.join().expect("stderr"));
    let elapsed = started.elapsed();
    assert!(
        status.success(),
        "the demo failed ({status}):\n{out}\n{err}"
    );
    for line in [
        "1. Started an MQTT broker (rumqttd) on 127.0.0.1:",
        "2. Pinned the broker's certificate SHA-256",
        "Subscribed to demo/greeting (QoS 0) and demo/telemetry (QoS 1).",
        "received  demo/greeting 'hello from mqtts' at QoS 0",
        r#"received  demo/telemetry '{"temperature":21.5}' at QoS 1"#,
        "Disconnected cleanly.",
        "4. Connecting again, pinned to a certificate the broker no longer has",
        "the server's certificate matches none of the pins; it presented certificate SHA-1 ",
        "Demo finished in",
    ] {
        assert!(out.contains(line), "missing {line:?} in:\n{out}\n{err}");
    }
    // The pinned SHA-256 (the line after step 2) is what the broker
    // presented according to the mismatch error of step 4.
    let lines: Vec<&str> = out.lines().collect();
    let step2 = lines
        .iter()
        .position(|l| l.starts_with("2. Pinned"))
        .expect("step 2");
    let pinned = lines[step2 + 1].trim();
    assert_eq!(
        pinned.len(),
        32 * 3 - 1,
        "a SHA-256 as AA:BB:..: {pinned:?}"
    );
    assert!(
        out.contains(&format!("certificate SHA-256 {pinned}, public key")),
        "the mismatch error names the pinned certificate:\n{out}"
    );
    assert!(
        elapsed < Duration::from_secs(40),
        "the demo took {elapsed:?}"
    );
}
