//! The board firmware on emulated microcontroller cores (issue 17): the
//! application every ESP board runs (`examples/boards/app`), built for the
//! ESP32-C3's ISA (riscv32imc, `qemu-system-riscv32 -M virt`) and for a
//! Cortex-M4F (`qemu-system-arm -M mps2-an386`), against a real mosquitto.
//!
//! The firmware reaches the broker as the ESP8266-AT board does: through the
//! `esp_at` driver over the machine's UART. QEMU connects that UART to a TCP
//! socket on 127.0.0.1, where this test runs the simulated ESP8266 of
//! `support::at_modem`, which opens a TCP connection to 127.0.0.1 at each
//! `AT+CIPSTART` (mosquitto's TLS 1.3 port, or a fault proxy in front of
//! it). No guest networking, nothing outside 127.0.0.0/8. The firmware's
//! console is semihosting; each case reads it line by line, and checks from
//! the host side with an MQTT client of its own (rumqttc on a plain
//! loopback listener of the same mosquitto) that every message arrives
//! exactly once with its exact payload.
//!
//! `scripts/emulated.sh` builds the firmware (Debian's Rust toolchain) and
//! starts QEMU; `bash scripts/run-emulated.sh riscv32` runs this test for
//! one machine. Without QEMU or the toolchain the test fails and says what
//! to install (CI installs both).
#![cfg(feature = "esp-at")]

mod support;

use std::process::Command;
use std::time::{Duration, Instant};

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};
use support::emulated::*;
use support::fault_proxy::FaultProxy;
use support::*;
use tokio::sync::mpsc;

/// How long a message from the host may take to come back.
const ROUND_TRIP_WITHIN: Duration = Duration::from_secs(60);

/// A message the observer received.
#[derive(Clone, PartialEq, Eq)]
struct Received {
    topic: String,
    payload: Vec<u8>,
    qos: QoS,
    retain: bool,
}

impl std::fmt::Debug for Received {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {:?}{} {:?}",
            self.topic,
            self.qos,
            if self.retain { " retained" } else { "" },
            String::from_utf8_lossy(&self.payload)
        )
    }
}

/// The host's MQTT client on the broker's plain listener: subscribed to
/// `filter` at QoS 2, every message forwarded in arrival order.
struct Observer {
    client: AsyncClient,
    messages: mpsc::UnboundedReceiver<Received>,
    seen: Vec<Received>,
    task: tokio::task::JoinHandle<()>,
}

impl Observer {
    async fn start(port: u16, id: &str, filter: &str, clean_session: bool) -> Observer {
        let mut options = MqttOptions::new(id, "127.0.0.1", port);
        options.set_keep_alive(Duration::from_secs(30));
        options.set_clean_session(clean_session);
        let (client, mut events) = AsyncClient::new(options, 64);
        let (subscribed_tx, mut subscribed) = mpsc::unbounded_channel();
        let (tx, messages) = mpsc::unbounded_channel();
        let resubscriber = client.clone();
        let topic_filter = filter.to_string();
        let task = tokio::spawn(async move {
            let mut connects = 0;
            loop {
                match events.poll().await {
                    // After a reconnect (the broker restarted, or this task
                    // was not polled for a keep-alive interval) a clean
                    // session has no subscription left: make it again.
                    Ok(Event::Incoming(Packet::ConnAck(_))) => {
                        connects += 1;
                        if connects > 1 {
                            let _ = resubscriber.try_subscribe(&topic_filter, QoS::ExactlyOnce);
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(_))) => {
                        let _ = subscribed_tx.send(());
                    }
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let _ = tx.send(Received {
                            topic: p.topic.clone(),
                            payload: p.payload.to_vec(),
                            qos: p.qos,
                            retain: p.retain,
                        });
                    }
                    Ok(_) => {}
                    // The broker restarted: rumqttc reconnects on the next poll.
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        });
        client
            .subscribe(filter, QoS::ExactlyOnce)
            .await
            .expect("queue the observer's SUBSCRIBE");
        within("the observer's SUBACK", subscribed.recv()).await;
        Observer {
            client,
            messages,
            seen: Vec::new(),
            task,
        }
    }

    async fn publish(&self, topic: &str, qos: QoS, payload: &[u8]) {
        self.client
            .publish(topic, qos, false, payload.to_vec())
            .await
            .expect("queue the observer's PUBLISH");
    }

    /// Waits for a message on `topic` that `matches`, keeping every message.
    async fn expect(
        &mut self,
        topic: &str,
        within: Duration,
        matches: impl Fn(&Received) -> bool,
    ) -> Received {
        if let Some(found) = self.seen.iter().find(|m| m.topic == topic && matches(m)) {
            return found.clone();
        }
        let deadline = tokio::time::Instant::now() + within;
        loop {
            match tokio::time::timeout_at(deadline, self.messages.recv()).await {
                Ok(Some(message)) => {
                    self.seen.push(message.clone());
                    if message.topic == topic && matches(&message) {
                        return message;
                    }
                }
                Ok(None) => panic!("the observer stopped"),
                Err(_) => panic!(
                    "no matching message on {topic} within {within:?}; seen: {:#?}",
                    self.seen
                ),
            }
        }
    }

    /// Collects whatever else arrives during `quiet`.
    async fn drain(&mut self, quiet: Duration) {
        let deadline = tokio::time::Instant::now() + quiet;
        while let Ok(Some(message)) = tokio::time::timeout_at(deadline, self.messages.recv()).await
        {
            self.seen.push(message);
        }
    }

    fn on(&self, topic: &str) -> Vec<&Received> {
        self.seen.iter().filter(|m| m.topic == topic).collect()
    }
}

impl Drop for Observer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Connect, the retained state, a command, echoes at QoS 0, 1 and 2 and a
/// reading, each received exactly once with its exact payload.
async fn pinned_round_trip(machine: Machine, pin: &str) {
    let (_root, leaf) = p256_broker();
    let broker = Broker::start(&[&leaf], false);
    let case = format!("pin-{pin}");
    let prefix = prefix(&case, machine);
    let mut observer = Observer::start(
        broker.plain_port,
        &format!("observer-{}-{case}", machine.name()),
        &format!("{prefix}/#"),
        true,
    )
    .await;
    let trust = match pin {
        "spki" => format!("spki:{}", hex(&leaf.spki_sha256())),
        _ => format!("cert:{}", hex(&leaf.cert_sha256())),
    };
    let modem = Modem::start(1).await;
    let mut board = Board::boot(
        machine,
        &modem,
        &words(
            &case,
            machine,
            trust,
            broker.mosquitto.port,
            &["interval=5"],
        ),
    );
    let connected = board
        .line("connected to mqtt.flespi.io", CONNECT_WITHIN)
        .await;
    assert!(connected.contains("session present false"), "{connected}");

    let state = format!("{prefix}/state");
    observer
        .expect(&state, ROUND_TRIP_WITHIN, |m| {
            m.payload == b"{\"on\":false}"
        })
        .await;
    observer
        .publish(&format!("{prefix}/cmd"), QoS::AtLeastOnce, b"on")
        .await;
    let on = observer
        .expect(&state, ROUND_TRIP_WITHIN, |m| m.payload == b"{\"on\":true}")
        .await;
    assert_eq!(on.qos, QoS::AtLeastOnce);
    board.line("output on", ROUND_TRIP_WITHIN).await;

    let echoes = [
        (0u8, QoS::AtMostOnce),
        (1, QoS::AtLeastOnce),
        (2, QoS::ExactlyOnce),
    ];
    for (q, qos) in echoes {
        let payload = format!(
            "{} echo at QoS {q}: {}",
            machine.name(),
            "x".repeat(40 * q as usize)
        );
        // The host sends at QoS 2 so that its own leg cannot lose or double it.
        observer
            .publish(
                &format!("{prefix}/echo/{q}"),
                QoS::ExactlyOnce,
                payload.as_bytes(),
            )
            .await;
        let echoed = observer
            .expect(&format!("{prefix}/echoed/{q}"), ROUND_TRIP_WITHIN, |m| {
                m.payload == payload.as_bytes()
            })
            .await;
        assert_eq!(echoed.qos, qos, "QoS of echoed/{q}");
    }
    // The first reading leaves at connect; a later one shows the output on.
    let first = observer
        .expect(&format!("{prefix}/telemetry"), ROUND_TRIP_WITHIN, |m| {
            reading_count(&m.payload) == Some(1)
        })
        .await;
    let text = String::from_utf8_lossy(&first.payload).to_string();
    assert!(text.starts_with("{\"count\":1,\"uptime_s\":"), "{text}");
    observer
        .expect(&format!("{prefix}/telemetry"), ROUND_TRIP_WITHIN, |m| {
            m.payload.ends_with(b",\"on\":true}")
        })
        .await;

    // Nothing arrives twice (QoS 1 could, if something were resent).
    observer.drain(Duration::from_secs(3)).await;
    for q in 0..3 {
        let echoed = observer.on(&format!("{prefix}/echoed/{q}"));
        assert_eq!(echoed.len(), 1, "echoed/{q}: {echoed:#?}");
    }
    let states = observer.on(&state);
    assert_eq!(states.len(), 2, "{states:#?}");
    let mut counts: Vec<u64> = observer
        .on(&format!("{prefix}/telemetry"))
        .iter()
        .filter_map(|m| reading_count(&m.payload))
        .collect();
    let received = counts.len();
    counts.dedup();
    assert_eq!(
        counts.len(),
        received,
        "a reading arrived twice: {counts:?}"
    );
    assert_eq!(board.count("PANIC"), 0);
}

/// The `count` of a reading `{"count":N,...}`.
fn reading_count(payload: &[u8]) -> Option<u64> {
    let text = std::str::from_utf8(payload).ok()?;
    let rest = text.strip_prefix("{\"count\":")?;
    rest.split(',').next()?.parse().ok()
}

#[test]
fn riscv32_public_key_pin_connect_command_and_echo_at_every_qos() {
    if skipped(Machine::Riscv32) {
        return;
    }
    // Built before the broker and observer start: a build inside the case
    // starves their tasks on this thread for minutes.
    firmware(Machine::Riscv32);
    runtime().block_on(pinned_round_trip(Machine::Riscv32, "spki"));
}

#[test]
fn riscv32_certificate_pin_connect_command_and_echo_at_every_qos() {
    if skipped(Machine::Riscv32) {
        return;
    }
    // Built before the broker and observer start: a build inside the case
    // starves their tasks on this thread for minutes.
    firmware(Machine::Riscv32);
    runtime().block_on(pinned_round_trip(Machine::Riscv32, "cert"));
}

#[test]
fn riscv32_flespi_shaped_rsa_chain_in_ca_mode_within_the_ram_budget() {
    if skipped(Machine::Riscv32) {
        return;
    }
    // Built before the broker and observer start: a build inside the case
    // starves their tasks on this thread for minutes.
    firmware(Machine::Riscv32);
    runtime().block_on(async {
        let machine = Machine::Riscv32;
        let (root, intermediate, leaf) = flespi_shaped();
        let broker = Broker::start(&[&leaf, &intermediate], false);
        let root_file = std::env::temp_dir().join(format!(
            "mqtts-emulated-root-{}-{}.der",
            std::process::id(),
            broker.mosquitto.port
        ));
        std::fs::write(&root_file, root.der_bytes()).expect("write the root certificate");
        let prefix = prefix("ca", machine);
        let mut observer = Observer::start(
            broker.plain_port,
            "observer-ca",
            &format!("{prefix}/#"),
            true,
        )
        .await;
        let modem = Modem::start(2).await;
        let mut board = Board::boot(
            machine,
            &modem,
            &words(
                "ca",
                machine,
                format!("ca:{}", root_file.display()),
                broker.mosquitto.port,
                &["interval=30"],
            ),
        );
        board.line("trust: CA (1 root(s)", CONNECT_WITHIN).await;
        board
            .line("connected to mqtt.flespi.io", CONNECT_WITHIN)
            .await;
        let heap = board.line("heap: peak", ROUND_TRIP_WITHIN).await;
        let (peak, size) = heap_figures(&heap).unwrap_or_else(|| panic!("heap line: {heap}"));
        assert!(peak > 0 && peak <= size, "{heap}");
        observer
            .publish(
                &format!("{prefix}/echo/2"),
                QoS::ExactlyOnce,
                b"through the RSA chain",
            )
            .await;
        observer
            .expect(&format!("{prefix}/echoed/2"), ROUND_TRIP_WITHIN, |m| {
                m.payload == b"through the RSA chain"
            })
            .await;
        let _ = std::fs::remove_file(&root_file);
    });
}

/// `heap: peak N of M bytes ...` as (N, M).
fn heap_figures(line: &str) -> Option<(u64, u64)> {
    let rest = line.split("heap: peak ").nth(1)?;
    let mut words = rest.split_whitespace();
    let peak = words.next()?.parse().ok()?;
    let _of = words.next()?;
    let size = words.next()?.parse().ok()?;
    Some((peak, size))
}

#[test]
fn riscv32_wrong_pin_shows_the_fingerprints_the_host_computes() {
    if skipped(Machine::Riscv32) {
        return;
    }
    // Built before the broker and observer start: a build inside the case
    // starves their tasks on this thread for minutes.
    firmware(Machine::Riscv32);
    runtime().block_on(async {
        let machine = Machine::Riscv32;
        let (_root, leaf) = p256_broker();
        let broker = Broker::start(&[&leaf], false);
        let modem = Modem::start(3).await;
        let wrong = [0x5a_u8; 32];
        let mut board = Board::boot(
            machine,
            &modem,
            &words(
                "wrong-pin",
                machine,
                format!("spki:{}", hex(&wrong)),
                broker.mosquitto.port,
                &[],
            ),
        );
        let failure = board
            .line("matches none of the pins", CONNECT_WITHIN)
            .await
            .to_ascii_lowercase()
            .replace(':', "");
        for (what, fingerprint) in [
            ("certificate SHA-256", leaf.cert_sha256()),
            ("public key SHA-256", leaf.spki_sha256()),
        ] {
            assert!(
                failure.contains(&hex(&fingerprint)),
                "the {what} {} is not in: {failure}",
                hex(&fingerprint)
            );
        }
        // And the attempt is retried, not the end of the firmware.
        board.line("retrying in", ROUND_TRIP_WITHIN).await;
        assert_eq!(board.count("connected to"), 0);
    });
}

#[test]
fn riscv32_broker_restart_resends_the_message_in_flight_and_loses_nothing() {
    if skipped(Machine::Riscv32) {
        return;
    }
    // Built before the broker and observer start: a build inside the case
    // starves their tasks on this thread for minutes.
    firmware(Machine::Riscv32);
    runtime().block_on(async {
        let machine = Machine::Riscv32;
        let (_root, leaf) = p256_broker();
        let mut broker = Broker::start(&[&leaf], true);
        let prefix = prefix("restart", machine);
        let telemetry = format!("{prefix}/telemetry");
        // A persistent subscription: what arrives while the observer is
        // away comes after it reconnects.
        let mut observer =
            Observer::start(broker.plain_port, "observer-restart", &telemetry, false).await;
        let modem = Modem::start(4).await;
        let mut board = Board::boot(
            machine,
            &modem,
            &words(
                "restart",
                machine,
                format!("spki:{}", hex(&leaf.spki_sha256())),
                broker.mosquitto.port,
                &["interval=2"],
            ),
        );
        let (_, after_connect) = board
            .line_after(0, "connected to mqtt.flespi.io", CONNECT_WITHIN)
            .await;
        observer
            .expect(&telemetry, ROUND_TRIP_WITHIN, |m| {
                reading_count(&m.payload) == Some(2)
            })
            .await;
        // Freeze the broker, so the next reading is sent but never
        // acknowledged: in flight when the broker dies.
        let pid = broker.mosquitto.pid().to_string();
        let stopped = Command::new("kill").args(["-STOP", &pid]).status();
        assert!(stopped.is_ok_and(|s| s.success()), "SIGSTOP mosquitto");
        tokio::time::sleep(Duration::from_secs(5)).await;
        broker.mosquitto.kill();
        tokio::time::sleep(Duration::from_secs(2)).await;
        broker.mosquitto.start_again();
        let (reconnected, _) = board
            .line_after(after_connect, "connected to mqtt.flespi.io", CONNECT_WITHIN)
            .await;
        assert!(
            reconnected.contains("session present true"),
            "the persistent session was kept: {reconnected}"
        );
        let resent: u64 = reconnected
            .split(", ")
            .find_map(|part| part.strip_suffix(" message(s) resent")?.parse().ok())
            .unwrap_or_else(|| panic!("no resent count in: {reconnected}"));
        assert!(
            resent >= 1,
            "the reading in flight was resent: {reconnected}"
        );
        // Readings go on; none is missing between the first and the last.
        let last = observer
            .expect(&telemetry, ROUND_TRIP_WITHIN, |m| {
                reading_count(&m.payload).is_some_and(|n| n >= 6)
            })
            .await;
        let last = reading_count(&last.payload).unwrap_or_default();
        let mut counts: Vec<u64> = observer
            .on(&telemetry)
            .iter()
            .filter_map(|m| reading_count(&m.payload))
            .collect();
        counts.sort_unstable();
        counts.dedup();
        let expected: Vec<u64> = (1..=last).collect();
        assert_eq!(counts, expected, "a reading was lost");
    });
}

#[test]
fn riscv32_silent_broker_is_noticed_by_keep_alive_and_the_board_reconnects() {
    if skipped(Machine::Riscv32) {
        return;
    }
    // Built before the broker and observer start: a build inside the case
    // starves their tasks on this thread for minutes.
    firmware(Machine::Riscv32);
    runtime().block_on(async {
        let machine = Machine::Riscv32;
        let (_root, leaf) = p256_broker();
        let broker = Broker::start(&[&leaf], false);
        let proxy = FaultProxy::transparent(broker.mosquitto.port).await;
        let modem = Modem::start(5).await;
        let mut board = Board::boot(
            machine,
            &modem,
            &words(
                "silent",
                machine,
                format!("spki:{}", hex(&leaf.spki_sha256())),
                proxy.port,
                // Idle between readings; keep-alive 5 s: a PINGREQ after 5 s
                // of silence, the broker dead 2.5 s later.
                &["interval=3600", "keepalive=5"],
            ),
        );
        let (_, after_connect) = board
            .line_after(0, "connected to mqtt.flespi.io", CONNECT_WITHIN)
            .await;
        // The retained state and the first reading go out at connect: let
        // them be acknowledged before the broker falls silent.
        tokio::time::sleep(Duration::from_secs(3)).await;
        let silenced = Instant::now();
        proxy.set_silent(true);
        // Noticed by `poll` (`connection lost: ...`) or by a publish waiting
        // for its acknowledgement (`publish to ... failed: ...`), both with
        // the keep-alive timeout.
        let (lost, after_lost) = board
            .line_after(after_connect, "keep-alive deadline", ROUND_TRIP_WITHIN)
            .await;
        let noticed = silenced.elapsed();
        // The last traffic was up to 3 s before the silence: PINGREQ 5 s
        // after it, the broker dead 2.5 s after that.
        assert!(
            noticed >= Duration::from_millis(4_500) - Duration::from_secs(3)
                && noticed < Duration::from_secs(30),
            "noticed after {noticed:?}: {lost}"
        );
        proxy.set_silent(false);
        board
            .line_after(after_lost, "connected to mqtt.flespi.io", CONNECT_WITHIN)
            .await;
    });
}

#[test]
fn cortex_m4_public_key_pin_connect_command_and_echo_at_every_qos() {
    if skipped(Machine::CortexM4) {
        return;
    }
    // Built before the broker and observer start: a build inside the case
    // starves their tasks on this thread for minutes.
    firmware(Machine::CortexM4);
    runtime().block_on(pinned_round_trip(Machine::CortexM4, "spki"));
}
