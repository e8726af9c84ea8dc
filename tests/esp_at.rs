//! The ESP-AT driver (feature `esp-at`) against a simulated ESP8266 that
//! bridges to real TCP: a full MQTT-over-TLS session to mosquitto through
//! it, and each modem failure giving its typed error.
#![cfg(feature = "esp-at")]

mod support;

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use embedded_io_adapters::tokio_1::FromTokio;
use embedded_io_async::{Read as _, Write as _};
use mqtts::client::{Buffers, ConnectOptions, Event};
use mqtts::esp_at::{
    AtConnector, AtModem, Command, EnablePin, JoinFailure, ModemError, ParseError, RESET_AFTER,
    RESET_PULSE_MS, Timeouts, Wifi,
};
use mqtts::mqtt::QoS;
use mqtts::reconnect::{Backoff, Connector as _, Supervisor};
use mqtts::time::Timer as _;
use mqtts::tls::{MaxFragmentLength, TlsOptions};
use mqtts::trust::{Pin, Trust};
use mqtts::{Error, Session};
use rand::rngs::OsRng;
use support::at_modem::{AtSim, SimConfig};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

type Uart = FromTokio<tokio::io::DuplexStream>;
type Modem<const N: usize> = AtModem<Uart, TokioTimer, N>;

const WIFI: Wifi<'static> = Wifi {
    ssid: "test-net",
    password: "test-password",
};

/// Timeouts short enough for failure tests, long enough for a debug build.
const FAST: Timeouts = Timeouts {
    command: 300,
    join: 2_000,
    connect: 2_000,
    send: 2_000,
};

fn start_modem<const N: usize>(config: SimConfig, timeouts: Timeouts) -> (AtSim, Modem<N>) {
    let (sim, uart) = AtSim::spawn(config);
    let modem = AtModem::new(FromTokio::new(uart), TokioTimer::new(), timeouts);
    (sim, modem)
}

/// A loopback TCP peer: `serve` runs on the first connection it accepts.
async fn peer<F, Fut>(serve: F) -> (u16, tokio::task::JoinHandle<Vec<u8>>)
where
    F: FnOnce(tokio::net::TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = Vec<u8>> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        serve(tcp).await
    });
    (port, task)
}

fn pattern(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

/// Reads exactly `len` bytes from the socket.
async fn read_exact<S: embedded_io_async::Read>(socket: &mut S, len: usize) -> Vec<u8>
where
    S::Error: std::fmt::Debug,
{
    let mut got = Vec::new();
    let mut buf = [0u8; 333];
    while got.len() < len {
        let n = socket.read(&mut buf).await.expect("read");
        assert!(n > 0, "end of stream after {} of {len} bytes", got.len());
        got.extend_from_slice(&buf[..n]);
    }
    got
}

#[tokio::test]
async fn mqtt_over_tls_13_through_the_modem_to_mosquitto_and_back_after_a_dropped_link() {
    let started = Instant::now();
    let pki = TestPki::new(KeyKind::P256);
    let mosquitto = Mosquitto::start(&[&pki.leaf], "");
    let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
    let (sim, modem) = start_modem::<2048>(SimConfig::new(SERVER_NAME, 1), Timeouts::default());
    let connector = AtConnector::new(modem, WIFI, SERVER_NAME, mosquitto.port);
    let backoff = Backoff {
        initial_ms: 50,
        max_ms: 200,
    };
    let mut supervisor = Supervisor::new(connector, TokioTimer::new(), backoff);
    let tls = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins))
        .with_max_fragment_length(MaxFragmentLength::Bytes1024);
    let subs = [("at/#", QoS::AtLeastOnce)];
    let options = ConnectOptions::new("through-esp-at")
        .with_subscriptions(&subs)
        .with_keep_alive(10);
    let mut outbox = vec![0u8; 8192];
    let mut session: Session<'_, 8> = Session::new(&mut outbox);
    let mut tls_read = vec![0u8; MaxFragmentLength::Bytes1024.read_buffer_len()];
    let mut tls_write = vec![0u8; 1024 + 128];
    let (mut rx, mut tx) = (vec![0u8; 4096], vec![0u8; 4096]);
    let payloads: Vec<Vec<u8>> = [5usize, 1_500, 3_000].iter().map(|&n| pattern(n)).collect();

    let mut received = Vec::new();
    for round in 0..2 {
        let buffers = Buffers {
            tls_read: &mut tls_read,
            tls_write: &mut tls_write,
            rx: &mut rx,
            tx: &mut tx,
        };
        let (mut client, connected) = within(
            "connect through the modem",
            supervisor.connect(&mut OsRng, &tls, &mut session, buffers, &options),
        )
        .await
        .unwrap_or_else(|failure| panic!("round {round}: {failure}"));
        assert!(connected.granted.is_some(), "subscribed");
        for payload in &payloads {
            let topic = format!("at/{round}/{}", payload.len());
            within(
                "publish",
                client.publish(&topic, payload, QoS::AtLeastOnce, false),
            )
            .await
            .expect("publish acknowledged");
            loop {
                match within("poll", client.poll()).await.expect("poll") {
                    Event::Message(m) => {
                        assert_eq!(m.topic, topic);
                        assert_eq!(m.payload, &payload[..]);
                        received.push(topic);
                        break;
                    }
                    _ => continue,
                }
            }
        }
        if round == 0 {
            // The modem loses the TCP connection: the client sees the end
            // of the stream, and the supervisor reconnects through the modem.
            sim.drop_link().await;
            let error = within("poll after the link dropped", client.poll())
                .await
                .expect_err("connection lost");
            assert!(
                matches!(error, Error::ConnectionClosed | Error::Io(_)),
                "{error:?}"
            );
        } else {
            within("disconnect", client.disconnect())
                .await
                .expect("disconnect");
        }
    }
    assert_eq!(received.len(), 6);
    let (joins, starts, max_send, received_chunks) = sim
        .stats(|s| {
            (
                s.commands
                    .iter()
                    .filter(|c| c.starts_with("AT+CWJAP"))
                    .count(),
                s.commands
                    .iter()
                    .filter(|c| c.starts_with("AT+CIPSTART"))
                    .count(),
                s.sends.iter().copied().max().unwrap_or(0),
                s.receives.len(),
            )
        })
        .await;
    // Joined once: on reconnect the station still had its IP.
    assert_eq!((joins, starts), (1, 2));
    assert!(max_send <= 2048, "sends are split at ESP-AT's limit");
    assert!(received_chunks > 6, "{received_chunks} AT+CIPRECVDATA");
    eprintln!(
        "TLS 1.3 + MQTT through the simulated modem: {:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn data_announced_during_a_send_and_split_across_reads_is_kept() {
    let sent_first = pattern(5_000);
    let expected = sent_first.clone();
    // The peer sends 5000 bytes at once, then echoes what it receives.
    let (port, task) = peer(move |mut tcp| async move {
        tcp.write_all(&sent_first).await.expect("peer write");
        let mut got = vec![0u8; 4];
        tcp.read_exact(&mut got).await.expect("peer read");
        got
    })
    .await;
    let mut config = SimConfig::new("peer.test", 2);
    config.faults.announce_during_send = true;
    let (sim, modem) = start_modem::<512>(config, FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    let mut socket = within("open", connector.open()).await.expect("open");
    // All the data reaches the modem before the send; its announcements
    // come during the send.
    within("data at the modem", sim.until_received(5_000)).await;
    within("write", socket.write_all(b"ping"))
        .await
        .expect("write");
    let got = within("read", read_exact(&mut socket, expected.len())).await;
    assert_eq!(got, expected);
    assert_eq!(join_server(task).await, b"ping");
    let (during, receives) = sim
        .stats(|s| (s.announced_during_send, s.receives.clone()))
        .await;
    assert!(during > 0, "announcements came during the send");
    // A 512-byte buffer: never asked for more.
    assert!(receives.iter().all(|&n| n <= 512), "{receives:?}");
    assert_eq!(receives.iter().sum::<usize>(), 5_000);
}

#[tokio::test]
async fn active_mode_data_arriving_during_a_send_is_kept() {
    let sent_first = pattern(700);
    let expected = sent_first.clone();
    let (port, task) = peer(move |mut tcp| async move {
        tcp.write_all(&sent_first).await.expect("peer write");
        let mut got = vec![0u8; 3];
        tcp.read_exact(&mut got).await.expect("peer read");
        got
    })
    .await;
    let mut config = SimConfig::new("peer.test", 3);
    config.faults.announce_during_send = true;
    config.faults.active_mode = true;
    let (sim, modem) = start_modem::<1024>(config, FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    let mut socket = within("open", connector.open()).await.expect("open");
    within("data at the modem", sim.until_received(700)).await;
    within("write", socket.write_all(b"abc"))
        .await
        .expect("write");
    let got = within("read", read_exact(&mut socket, expected.len())).await;
    assert_eq!(got, expected);
    assert_eq!(join_server(task).await, b"abc");
    assert!(sim.stats(|s| s.announced_during_send).await > 0);
}

async fn yields(turns: u64) {
    for _ in 0..turns {
        tokio::task::yield_now().await;
    }
}

#[tokio::test]
async fn reads_cut_short_by_deadlines_lose_no_byte() {
    const LEN: usize = 40_000;
    let data = pattern(LEN);
    let expected = data.clone();
    let (port, _task) = peer(move |mut tcp| async move {
        for piece in data.chunks(997) {
            tcp.write_all(piece).await.expect("peer write");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Keep the connection open until the test ends.
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        rest
    })
    .await;
    let (_sim, modem) = start_modem::<700>(SimConfig::new("peer.test", 4), FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    let mut socket = within("open", connector.open()).await.expect("open");
    let mut got = Vec::new();
    let mut cancelled = 0;
    let mut buf = [0u8; 256];
    within("read under deadlines", async {
        let mut step = 0u64;
        while got.len() < LEN {
            step += 1;
            // A "deadline" after 1 to 40 turns of the scheduler: reads are
            // dropped at every stage (writing AT+CIPRECVDATA, inside its
            // reply, waiting for +IPD).
            let turns = step * 7919 % 40 + 1;
            tokio::select! {
                biased;
                result = socket.read(&mut buf) => {
                    let n = result.expect("read");
                    assert!(n > 0);
                    got.extend_from_slice(&buf[..n]);
                }
                () = yields(turns) => cancelled += 1,
            }
        }
    })
    .await;
    assert_eq!(got.len(), LEN);
    assert!(got == expected, "the stream arrived intact");
    assert!(cancelled > 200, "only {cancelled} reads were cut short");
    eprintln!("{cancelled} reads cut short, {LEN} bytes intact");
}

#[tokio::test]
async fn the_peer_closing_ends_the_stream_after_its_last_data() {
    let (port, _task) = peer(|mut tcp| async move {
        tcp.write_all(b"last words").await.expect("peer write");
        Vec::new() // dropped: closed
    })
    .await;
    let (_sim, modem) = start_modem::<256>(SimConfig::new("peer.test", 5), FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    let mut socket = within("open", connector.open()).await.expect("open");
    let got = within("read", read_exact(&mut socket, 10)).await;
    assert_eq!(got, b"last words");
    let mut buf = [0u8; 16];
    assert_eq!(within("eof", socket.read(&mut buf)).await, Ok(0));
    assert_eq!(
        within("write", socket.write(b"x")).await,
        Err(ModemError::Closed)
    );
}

#[tokio::test]
async fn a_link_dropped_by_the_modem_mid_session_ends_reads_and_fails_writes() {
    let (port, _task) = peer(|mut tcp| async move {
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        rest
    })
    .await;
    let (sim, modem) = start_modem::<256>(SimConfig::new("peer.test", 6), FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    let mut socket = within("open", connector.open()).await.expect("open");
    within("write", socket.write_all(b"hello"))
        .await
        .expect("write");
    sim.lose_wifi().await;
    let mut buf = [0u8; 16];
    assert_eq!(within("eof", socket.read(&mut buf)).await, Ok(0));
    assert_eq!(
        within("write", socket.write(b"x")).await,
        Err(ModemError::Closed)
    );
    // The next command reads the rest of what the modem said.
    assert_eq!(
        within("status", connector.modem().status()).await,
        Ok(Some(5))
    );
    assert!(!connector.modem().wifi_up(), "WIFI DISCONNECT was seen");
}

#[tokio::test]
async fn an_error_reply_names_the_command() {
    let mut config = SimConfig::new("peer.test", 7);
    config.faults.error_on = Some("AT+CWMODE");
    let (_sim, modem) = start_modem::<256>(config, FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", 1);
    assert_eq!(
        within("open", connector.open()).await.err(),
        Some(ModemError::Rejected(Command::StationMode))
    );

    // Firmware without AT+SYSSTORE (NONOS AT 1.x) answers ERROR: tolerated.
    let (port, _task) = peer(|mut tcp| async move {
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        rest
    })
    .await;
    let mut config = SimConfig::new("peer.test", 8);
    config.faults.error_on = Some("AT+SYSSTORE");
    let (_sim, modem) = start_modem::<256>(config, FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    within("open", connector.open()).await.expect("open");
}

#[tokio::test]
async fn join_failures_carry_their_reason() {
    let cases = [
        (Some(1), WIFI, JoinFailure::Timeout),
        (Some(4), WIFI, JoinFailure::Failed),
        (Some(9), WIFI, JoinFailure::Code(9)),
        (
            None,
            Wifi {
                ssid: "test-net",
                password: "wrong",
            },
            JoinFailure::WrongPassword,
        ),
        (
            None,
            Wifi {
                ssid: "other-net",
                password: "test-password",
            },
            JoinFailure::NoAccessPoint,
        ),
    ];
    for (i, (code, wifi, expected)) in cases.into_iter().enumerate() {
        let mut config = SimConfig::new("peer.test", 10 + i as u64);
        config.faults.join_code = code;
        let (_sim, modem) = start_modem::<256>(config, FAST);
        let mut connector = AtConnector::new(modem, wifi, "peer.test", 1);
        // Through the Connector trait, as the supervisor sees it.
        let error = within("connect", connector.connect()).await.err();
        assert_eq!(
            error,
            Some(Error::Modem(ModemError::JoinFailed(expected))),
            "case {i}"
        );
    }
}

#[tokio::test]
async fn an_unknown_host_is_a_name_resolution_error() {
    let mut config = SimConfig::new("peer.test", 20);
    config.joined = true;
    let (sim, modem) = start_modem::<256>(config, FAST);
    let mut connector = AtConnector::new(modem, WIFI, "nowhere.test", 1);
    assert_eq!(
        within("open", connector.open()).await.err(),
        Some(ModemError::DnsFailed)
    );
    assert_eq!(
        within("connect", connector.connect()).await.err(),
        Some(Error::NameResolution)
    );
    let joins = sim
        .stats(|s| {
            s.commands
                .iter()
                .filter(|c| c.starts_with("AT+CWJAP"))
                .count()
        })
        .await;
    assert_eq!(joins, 0, "already joined: no AT+CWJAP");
}

#[tokio::test]
async fn a_refused_connection_and_a_second_connect_are_typed() {
    // A port nobody listens on.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.local_addr().expect("addr").port()
    };
    let (_sim, modem) = start_modem::<256>(SimConfig::new("peer.test", 21), FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    assert_eq!(
        within("open", connector.open()).await.err(),
        Some(ModemError::ConnectFailed)
    );

    let (port, _task) = peer(|mut tcp| async move {
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        rest
    })
    .await;
    let (_sim, modem) = start_modem::<256>(SimConfig::new("peer.test", 22), FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    within("open", connector.open()).await.expect("open");
    assert_eq!(
        within(
            "second connect",
            connector.modem().connect("peer.test", port)
        )
        .await
        .err(),
        Some(ModemError::AlreadyConnected)
    );
}

#[tokio::test]
async fn a_busy_modem_is_typed() {
    let mut config = SimConfig::new("peer.test", 30);
    config.faults.busy_on = Some("AT+CIPSTATUS");
    let (_sim, modem) = start_modem::<256>(config, FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", 1);
    assert_eq!(
        within("open", connector.open()).await.err(),
        Some(ModemError::Busy(Command::Status))
    );
}

#[tokio::test]
async fn a_silent_modem_times_out_within_the_bound() {
    for (silent_from, command) in [
        ("AT", Command::At),
        ("AT+CIPMUX", Command::SingleConnection),
    ] {
        let mut config = SimConfig::new("peer.test", 31);
        config.faults.silent_from = Some(silent_from);
        let (_sim, modem) = start_modem::<256>(config, FAST);
        let mut connector = AtConnector::new(modem, WIFI, "peer.test", 1);
        let started = Instant::now();
        assert_eq!(
            within("open", connector.open()).await.err(),
            Some(ModemError::Timeout(command))
        );
        // Four AT attempts of 300 ms after 50 ms of quiet each, at most.
        assert!(
            started.elapsed() < Duration::from_secs(3),
            "{:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn garbage_from_the_modem_is_typed() {
    let mut config = SimConfig::new("peer.test", 32);
    config.faults.garbage_on = Some("AT+CIPSTATUS");
    let (_sim, modem) = start_modem::<256>(config, FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", 1);
    assert_eq!(
        within("open", connector.open()).await.err(),
        Some(ModemError::Protocol(ParseError::Garbage(0)))
    );
}

#[tokio::test]
async fn more_data_than_asked_for_is_an_overflow_and_sticks() {
    let (port, _task) = peer(|mut tcp| async move {
        tcp.write_all(&[7u8; 100]).await.expect("peer write");
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        rest
    })
    .await;
    let mut config = SimConfig::new("peer.test", 33);
    config.faults.over_deliver = 100;
    let (_sim, modem) = start_modem::<64>(config, FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    let mut socket = within("open", connector.open()).await.expect("open");
    let mut buf = [0u8; 64];
    // Asked for 64 (the buffer), announced 100 more than the modem had.
    let overflow = within("read", socket.read(&mut buf))
        .await
        .expect_err("overflow");
    let ModemError::Overflow { len, room: 64 } = overflow else {
        panic!("{overflow:?}");
    };
    assert!((101..=164).contains(&len), "{len}");
    // The stream cannot be trusted any more: every operation says so.
    assert_eq!(within("read", socket.read(&mut buf)).await, Err(overflow));
    assert_eq!(within("write", socket.write(b"x")).await, Err(overflow));
}

#[tokio::test]
async fn an_abandoned_write_is_padded_and_reported_then_a_reconnect_works() {
    let (port, task) = peer(|mut tcp| async move {
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        rest
    })
    .await;
    let mut config = SimConfig::new("peer.test", 34);
    config.faults.prompt_delay = Some(Duration::from_millis(100));
    let (_sim, modem) = start_modem::<256>(config, FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    let mut socket = within("open", connector.open()).await.expect("open");
    // Dropped while the modem has not prompted yet.
    let data = [0xAAu8; 300];
    assert!(
        tokio::time::timeout(Duration::from_millis(20), socket.write(&data))
            .await
            .is_err()
    );
    assert_eq!(
        within("flush", socket.flush()).await,
        Err(ModemError::WriteAbandoned)
    );
    let mut buf = [0u8; 8];
    assert_eq!(
        within("read", socket.read(&mut buf)).await,
        Err(ModemError::WriteAbandoned)
    );
    // The peer will have got 300 zeros, not the application's bytes.
    within("close", connector.modem().close())
        .await
        .expect_err("still broken until initialised again");
    let (port, second) = peer(|mut tcp| async move {
        let mut got = vec![0u8; 2];
        tcp.read_exact(&mut got).await.expect("peer read");
        got
    })
    .await;
    // A new connect initialises the modem again, closing the old link.
    let mut connector = AtConnector::new(connector.into_modem(), WIFI, "peer.test", port);
    let mut socket = within("reopen", connector.open()).await.expect("reopen");
    assert_eq!(join_server(task).await, vec![0u8; 300]);
    within("write", socket.write_all(b"ok"))
        .await
        .expect("write");
    assert_eq!(join_server(second).await, b"ok");
}

#[tokio::test]
async fn credentials_are_quoted_for_the_modem_and_line_breaks_refused() {
    let (port, _task) = peer(|mut tcp| async move {
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        rest
    })
    .await;
    let mut config = SimConfig::new("peer.test", 40);
    config.ssid = r#"my "net", 2\4"#.into();
    config.password = r#"pa,ss"wo\rd"#.into();
    let (sim, modem) = start_modem::<256>(config, FAST);
    let wifi = Wifi {
        ssid: r#"my "net", 2\4"#,
        password: r#"pa,ss"wo\rd"#,
    };
    let mut connector = AtConnector::new(modem, wifi, "peer.test", port);
    within("open", connector.open()).await.expect("open");
    let join = sim
        .stats(|s| {
            s.commands
                .iter()
                .find(|c| c.starts_with("AT+CWJAP"))
                .cloned()
        })
        .await;
    assert_eq!(
        join.as_deref(),
        Some(r#"AT+CWJAP="my \"net\"\, 2\\4","pa\,ss\"wo\\rd""#)
    );

    let (_sim, modem) = start_modem::<256>(SimConfig::new("peer.test", 41), FAST);
    let wifi = Wifi {
        ssid: "test-net",
        password: "line\r\nAT+RST",
    };
    let mut connector = AtConnector::new(modem, wifi, "peer.test", port);
    assert_eq!(
        within("open", connector.open()).await.err(),
        Some(ModemError::InvalidParameter)
    );
}

#[tokio::test]
async fn an_idle_session_pings_through_the_modem_and_still_receives() {
    let pki = TestPki::new(KeyKind::P256);
    let mosquitto = Mosquitto::start(&[&pki.leaf], "");
    let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
    let tls = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins))
        .with_max_fragment_length(MaxFragmentLength::Bytes1024);
    let (sim, modem) = start_modem::<1024>(SimConfig::new(SERVER_NAME, 50), Timeouts::default());
    let mut connector = AtConnector::new(modem, WIFI, SERVER_NAME, mosquitto.port);
    let mut outbox = vec![0u8; 4096];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let mut tls_read = vec![0u8; MaxFragmentLength::Bytes1024.read_buffer_len()];
    let mut tls_write = vec![0u8; 1024 + 128];
    let (mut rx, mut tx) = (vec![0u8; 2048], vec![0u8; 1024]);
    let buffers = Buffers {
        tls_read: &mut tls_read,
        tls_write: &mut tls_write,
        rx: &mut rx,
        tx: &mut tx,
    };
    let subs = [("idle/#", QoS::AtLeastOnce)];
    // Keep-alive 1 s: the client stops its reads at each deadline to ping.
    let options = ConnectOptions::new("idle-through-esp-at")
        .with_subscriptions(&subs)
        .with_keep_alive(1);
    let socket = within("open", connector.open()).await.expect("open");
    let (mut client, _) = within(
        "connect",
        mqtts::client::Client::connect_tls(
            socket,
            &mut OsRng,
            &tls,
            TokioTimer::new(),
            &mut session,
            buffers,
            &options,
        ),
    )
    .await
    .expect("connects");
    let sends_before = sim.stats(|s| s.sends.len()).await;

    // Another client, straight over TCP, publishes after 3.5 s of silence.
    let port = mosquitto.port;
    let publisher = async move {
        tokio::time::sleep(Duration::from_millis(3_500)).await;
        let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("TCP");
        let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
        let tls = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins));
        let mut outbox = vec![0u8; 4096];
        let mut session: Session<'_, 4> = Session::new(&mut outbox);
        let (mut tls_read, mut tls_write) = (vec![0u8; 16_640], vec![0u8; 2048]);
        let (mut rx, mut tx) = (vec![0u8; 2048], vec![0u8; 1024]);
        let buffers = Buffers {
            tls_read: &mut tls_read,
            tls_write: &mut tls_write,
            rx: &mut rx,
            tx: &mut tx,
        };
        let (mut client, _) = mqtts::client::Client::connect_tls(
            FromTokio::new(tcp),
            &mut OsRng,
            &tls,
            TokioTimer::new(),
            &mut session,
            buffers,
            &ConnectOptions::new("idle-publisher"),
        )
        .await
        .expect("publisher connects");
        client
            .publish("idle/wake", b"after the pings", QoS::AtLeastOnce, false)
            .await
            .expect("publish");
        client.disconnect().await.expect("disconnect");
    };

    let started = Instant::now();
    let receiver = async {
        loop {
            match within("poll", client.poll()).await.expect("poll") {
                Event::Message(m) => {
                    assert_eq!((m.topic, m.payload), ("idle/wake", &b"after the pings"[..]));
                    break;
                }
                _ => continue,
            }
        }
    };
    // One task: mqtts's futures are not Send (nor need to be).
    within("idle session", async { tokio::join!(receiver, publisher) }).await;
    assert!(started.elapsed() >= Duration::from_millis(3_000));
    // PINGREQ records went out through AT+CIPSEND meanwhile (about one a
    // second; 3 measured here, 2 leaves room for a slow machine).
    let pings = sim.stats(|s| s.sends.len()).await - sends_before;
    assert!(pings >= 2, "{pings} sends while idle");
    eprintln!(
        "{pings} records sent through AT+CIPSEND while idle for {:?}",
        started.elapsed()
    );
    within("disconnect", client.disconnect())
        .await
        .expect("disconnect");
}

/// A listening peer that keeps what it is sent until the test ends.
async fn sink() -> u16 {
    let (port, _task) = peer(|mut tcp| async move {
        let mut rest = Vec::new();
        let _ = tcp.read_to_end(&mut rest).await;
        rest
    })
    .await;
    port
}

/// The commands the simulated modem received, in order.
async fn commands(sim: &AtSim) -> Vec<String> {
    sim.stats(|s| s.commands.clone()).await
}

fn count(commands: &[String], command: &str) -> usize {
    commands.iter().filter(|c| *c == command).count()
}

#[tokio::test]
async fn flow_control_is_sent_after_echo_off_and_a_refusal_is_tolerated() {
    let port = sink().await;
    let (sim, modem) = start_modem::<256>(SimConfig::new("peer.test", 60), FAST);
    let mut connector = AtConnector::new(modem.with_flow_control(115_200), WIFI, "peer.test", port);
    assert_eq!(connector.modem().flow_control(), None, "before init");
    within("open", connector.open()).await.expect("open");
    assert_eq!(connector.modem().flow_control(), Some(true));
    let sent = commands(&sim).await;
    let echo_off = sent.iter().position(|c| c == "ATE0").expect("ATE0");
    assert_eq!(sent[echo_off + 1], "AT+UART_CUR=115200,8,1,0,3");
    assert_eq!(sim.stats(|s| s.flow_control).await, 3, "RTS and CTS");

    // Firmware that refuses it: the open goes on, and the board can tell.
    let port = sink().await;
    let mut config = SimConfig::new("peer.test", 61);
    config.faults.error_on = Some("AT+UART_CUR");
    let (sim, modem) = start_modem::<256>(config, FAST);
    let mut connector = AtConnector::new(modem.with_flow_control(115_200), WIFI, "peer.test", port);
    within("open", connector.open()).await.expect("open");
    assert_eq!(connector.modem().flow_control(), Some(false));
    assert_eq!(
        count(&commands(&sim).await, "AT+UART_CUR=115200,8,1,0,3"),
        1
    );
    assert_eq!(
        sim.stats(|s| s.flow_control).await,
        support::at_modem::DEFAULT_FLOW_CONTROL
    );

    // Not asked for: not sent.
    let port = sink().await;
    let (sim, modem) = start_modem::<256>(SimConfig::new("peer.test", 62), FAST);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    within("open", connector.open()).await.expect("open");
    assert_eq!(connector.modem().flow_control(), None);
    assert!(
        !commands(&sim)
            .await
            .iter()
            .any(|c| c.starts_with("AT+UART_CUR"))
    );
}

/// Short enough that a hung modem costs about a second an open (four `AT`
/// of 200 ms after 50 ms of quiet), long enough for a debug build.
const HUNG: Timeouts = Timeouts {
    command: 200,
    join: 2_000,
    connect: 2_000,
    send: 2_000,
};

/// A modem hung from the start: it answers nothing, `AT` included.
fn hung_modem(seed: u64) -> SimConfig {
    let mut config = SimConfig::new("peer.test", seed);
    config.faults.silent_from = Some("AT");
    config
}

/// Opens [`RESET_AFTER`] times, each failing for want of an answer.
async fn fail_unanswered<U, T, const N: usize, E>(connector: &mut AtConnector<'_, U, T, N, E>)
where
    U: embedded_io_async::Read + embedded_io_async::Write,
    T: mqtts::time::Timer,
    E: EnablePin,
{
    for attempt in 1..=RESET_AFTER {
        assert_eq!(
            within("open", connector.open()).await.err(),
            Some(ModemError::Timeout(Command::At)),
            "open {attempt}"
        );
        assert_eq!(connector.resets(), 0, "open {attempt}");
    }
}

#[tokio::test]
async fn a_hung_modem_is_reset_by_its_enable_pin_after_three_unanswered_opens() {
    let port = sink().await;
    let (sim, uart) = AtSim::spawn(hung_modem(63));
    let timer = TokioTimer::new();
    let modem: Modem<256> = AtModem::new(FromTokio::new(uart), timer, HUNG);
    // The board's EN pin: drives the simulated modem's EN, and logs each
    // level with the time on the modem's own timer.
    let en = sim.enable_line();
    let levels = Rc::new(RefCell::new(Vec::new()));
    let log = levels.clone();
    let mut connector =
        AtConnector::new(modem, WIFI, "peer.test", port).with_enable_pin(move |enabled: bool| {
            en.set(enabled);
            log.borrow_mut().push((enabled, timer.now()));
        });
    fail_unanswered(&mut connector).await;
    assert!(levels.borrow().is_empty(), "EN not touched yet");

    within("open after the reset", connector.open())
        .await
        .expect("the modem answers again");
    assert_eq!(connector.resets(), 1);
    let pulse = levels.borrow().clone();
    let [(false, low), (true, high)] = pulse[..] else {
        panic!("one pulse: {pulse:?}");
    };
    assert!(high - low >= RESET_PULSE_MS, "EN low for {} ms", high - low);
    let (pulses, restarts, lost) = sim
        .stats(|s| (s.pulses.clone(), s.restarts, s.lost.clone()))
        .await;
    assert_eq!(pulses.len(), 1);
    assert_eq!(restarts, 1, "the pulse restarted the modem");
    // The driver waited for `ready`: nothing was sent while it booted.
    assert!(lost.is_empty(), "lost while booting: {lost:?}");
}

#[tokio::test]
async fn without_an_enable_pin_a_hung_modem_gets_at_rst() {
    // A modem whose hang AT+RST ends.
    let port = sink().await;
    let mut config = hung_modem(64);
    config.faults.hang_obeys_rst = true;
    let (sim, modem) = start_modem::<256>(config, HUNG);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", port);
    fail_unanswered(&mut connector).await;
    assert_eq!(count(&commands(&sim).await, "AT+RST"), 0);
    within("open after AT+RST", connector.open())
        .await
        .expect("the modem answers again");
    assert_eq!(connector.resets(), 1);
    let (sent, restarts, lost) = sim
        .stats(|s| (s.commands.clone(), s.restarts, s.lost.clone()))
        .await;
    assert_eq!(count(&sent, "AT+RST"), 1);
    assert_eq!(restarts, 1);
    assert!(lost.is_empty(), "lost while booting: {lost:?}");
}

#[tokio::test]
async fn at_rst_is_a_best_effort_a_modem_may_ignore() {
    let mut config = hung_modem(65);
    config.faults.hang_obeys_rst = false;
    let (sim, modem) = start_modem::<256>(config, HUNG);
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", 1);
    fail_unanswered(&mut connector).await;
    assert_eq!(
        within("open with AT+RST", connector.open()).await.err(),
        Some(ModemError::Timeout(Command::At))
    );
    assert_eq!(connector.resets(), 1);
    assert_eq!(count(&commands(&sim).await, "AT+RST"), 1);
    // The count starts over after a reset: the next open does not reset.
    assert_eq!(
        within("open", connector.open()).await.err(),
        Some(ModemError::Timeout(Command::At))
    );
    assert_eq!(connector.resets(), 1);
    assert_eq!(count(&commands(&sim).await, "AT+RST"), 1);
    assert_eq!(sim.stats(|s| s.restarts).await, 0);
}

#[tokio::test]
async fn no_reset_while_the_modem_answers() {
    let mut config = SimConfig::new("peer.test", 66);
    config.faults.join_code = Some(2);
    let (sim, modem) = start_modem::<256>(config, HUNG);
    let levels = Rc::new(RefCell::new(Vec::new()));
    let log = levels.clone();
    let mut connector = AtConnector::new(modem, WIFI, "peer.test", 1)
        .with_enable_pin(move |enabled: bool| log.borrow_mut().push(enabled));
    for attempt in 0..=RESET_AFTER + 1 {
        assert_eq!(
            within("open", connector.open()).await.err(),
            Some(ModemError::JoinFailed(JoinFailure::WrongPassword)),
            "open {attempt}"
        );
    }
    assert!(levels.borrow().is_empty(), "EN untouched");
    assert_eq!(connector.resets(), 0);
    assert_eq!(count(&commands(&sim).await, "AT+RST"), 0);
}
