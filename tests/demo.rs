//! `cargo run --example demo` works: the demo is built once, run as a
//! process (bounded by a timeout), and must exit 0 with its key lines.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{build_example, reader, wait_bounded};

#[test]
fn the_demo_runs_and_tells_its_story() {
    let demo = build_example("demo", &[]);
    let started = Instant::now();
    let mut child = Command::new(&demo)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the demo");
    let out = reader(child.stdout.take().expect("stdout"));
    let err = reader(child.stderr.take().expect("stderr"));
    // The demo bounds itself at 40 s; this is the backstop.
    let status =
        wait_bounded(&mut child, Duration::from_secs(60)).expect("the demo finishes within 60 s");
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
        "the server's certificate matches none of the pins; it presented certificate SHA-256 ",
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
