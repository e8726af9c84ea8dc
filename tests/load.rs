//! Load: many mqtts clients at once on one tokio runtime against one
//! mosquitto (TLS 1.3, loopback).
//!
//! Client `i` subscribes to its neighbour's topic `load/c/{i+1}` and to the
//! shared `load/all`, then publishes `MESSAGES` numbered QoS 1 messages to
//! `load/c/{i}` (up to 8 in flight). A monitor subscribed to `load/c/#`
//! receives every message of every client, and an announcer publishes a
//! few messages to `load/all`, which fan out to every client. Every count
//! is exact: each message arrives once where it should, nothing else
//! arrives. Prints throughput and memory per client.
//!
//! `MQTTS_LOAD_CLIENTS` (default 200, about 10 s in a debug build),
//! `MQTTS_LOAD_MESSAGES` (default 100).

mod support;

use std::cell::RefCell;
use std::net::Ipv4Addr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use embedded_io_adapters::tokio_1::FromTokio;
use mqtts::client::{Buffers, Client, ConnectOptions, Event};
use mqtts::mqtt::QoS;
use mqtts::tls::{MaxFragmentLength, TlsOptions, TlsStream};
use mqtts::trust::{Pin, Trust};
use mqtts::{Error, Session};
use rand::rngs::OsRng;
use support::*;

/// In-flight QoS 1 messages per client (the session's `N`).
const N: usize = 16;
/// Of those, how many a client keeps in flight while publishing.
const WINDOW: usize = 8;
/// Messages the announcer sends to every client.
const BROADCASTS: u32 = 5;
/// Buffer sizes of one client (max_fragment_length 1024).
const TLS_READ: usize = MaxFragmentLength::Bytes1024.read_buffer_len();
const TLS_WRITE: usize = 1024 + 128;
const RX: usize = 2048;
const TX: usize = 512;
const OUTBOX: usize = 4096;

type LoadClient<'b, const M: usize> =
    Client<'b, 'b, TlsStream<'b, FromTokio<tokio::net::TcpStream>, TokioTimer>, TokioTimer, M>;

fn env_u32(name: &str, default: u32) -> u32 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        Err(_) => default,
    }
}

/// This process's resident set size in KiB (Linux).
fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn payload(client: u32, seq: u32) -> Vec<u8> {
    format!("{client:04}:{seq:04}:load-test-payload").into_bytes()
}

fn parse(payload: &[u8]) -> Option<(u32, u32)> {
    let text = std::str::from_utf8(payload).ok()?;
    let mut parts = text.split(':');
    let client = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    (payload == self::payload(client, seq).as_slice()).then_some((client, seq))
}

/// Owns one connection's buffers and session storage.
struct Storage {
    tls_read: Vec<u8>,
    tls_write: Vec<u8>,
    rx: Vec<u8>,
    tx: Vec<u8>,
    outbox: Vec<u8>,
}

impl Storage {
    fn new() -> Self {
        Storage {
            tls_read: vec![0; TLS_READ],
            tls_write: vec![0; TLS_WRITE],
            rx: vec![0; RX],
            tx: vec![0; TX],
            outbox: vec![0; OUTBOX],
        }
    }
}

async fn connect<'b, const M: usize>(
    port: u16,
    pins: &'b [Pin],
    storage: &'b mut Storage,
    session: &'b mut Session<'b, M>,
    options: &ConnectOptions<'_>,
) -> Result<LoadClient<'b, M>, Error> {
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .map_err(|e| Error::Io(embedded_io::ErrorKind::from(e.kind())))?;
    let tls = TlsOptions::new(SERVER_NAME, Trust::pinned(pins))
        .with_max_fragment_length(MaxFragmentLength::Bytes1024);
    let buffers = Buffers {
        tls_read: &mut storage.tls_read,
        tls_write: &mut storage.tls_write,
        rx: &mut storage.rx,
        tx: &mut storage.tx,
    };
    let (client, _) = Client::connect_tls(
        FromTokio::new(tcp),
        &mut OsRng,
        &tls,
        TokioTimer::new(),
        session,
        buffers,
        options,
    )
    .await?;
    Ok(client)
}

/// What one client received.
#[derive(Debug, Default, Clone)]
struct Tally {
    /// Per message number of the neighbour: how many times.
    neighbour: Vec<u32>,
    broadcasts: u32,
    /// Anything else (wrong topic, sender or payload).
    unexpected: Vec<String>,
    completions: u32,
}

/// Shared progress, read by the test (single-threaded runtime).
struct Progress {
    connected: u32,
    done: u32,
    tallies: Vec<Option<Tally>>,
}

#[allow(clippy::too_many_arguments)]
async fn run_client(
    index: u32,
    clients: u32,
    messages: u32,
    port: u16,
    pins: Rc<[Pin]>,
    progress: Rc<RefCell<Progress>>,
    go: Rc<tokio::sync::Notify>,
    go_flag: Rc<std::cell::Cell<bool>>,
) {
    let mut storage = Storage::new();
    let outbox = std::mem::take(&mut storage.outbox);
    let outbox = Box::leak(outbox.into_boxed_slice());
    let session = Box::leak(Box::new(Session::<N>::new(outbox)));
    let storage = Box::leak(Box::new(storage));
    let pins: &'static [Pin] = Box::leak(pins.to_vec().into_boxed_slice());
    let client_id = format!("load-{index}");
    let neighbour = (index + 1) % clients;
    let own_topic = format!("load/c/{index}");
    let neighbour_topic = format!("load/c/{neighbour}");
    let subscriptions = [
        (neighbour_topic.as_str(), QoS::AtLeastOnce),
        ("load/all", QoS::AtLeastOnce),
    ];
    let options = ConnectOptions::new(&client_id).with_subscriptions(&subscriptions);
    let mut client = connect(port, pins, storage, session, &options)
        .await
        .unwrap_or_else(|e| panic!("client {index} connects: {e:?}"));
    progress.borrow_mut().connected += 1;
    while !go_flag.get() {
        go.notified().await;
    }

    let mut tally = Tally {
        neighbour: vec![0; messages as usize],
        ..Tally::default()
    };
    let mut next = 0u32;
    let mut in_flight = 0usize;
    let complete = |tally: &Tally, next: u32, in_flight: usize| {
        next == messages
            && in_flight == 0
            && tally.broadcasts >= BROADCASTS
            && tally.neighbour.iter().all(|&c| c > 0)
    };
    loop {
        if in_flight < WINDOW && next < messages {
            client
                .start_publish(&own_topic, &payload(index, next), QoS::AtLeastOnce, false)
                .await
                .unwrap_or_else(|e| panic!("client {index} publishes: {e:?}"));
            next += 1;
            in_flight += 1;
            continue;
        }
        // Once complete, listen a little longer for anything extra.
        let wait = if complete(&tally, next, in_flight) {
            Duration::from_millis(200)
        } else {
            TIMEOUT
        };
        let event = match tokio::time::timeout(wait, client.poll()).await {
            Err(_) if complete(&tally, next, in_flight) => break,
            Err(_) => panic!("client {index}: nothing for {wait:?}: {tally:?}"),
            Ok(event) => event.unwrap_or_else(|e| panic!("client {index} polls: {e:?}")),
        };
        match event {
            Event::Published(_) => {
                in_flight -= 1;
                tally.completions += 1;
            }
            Event::Message(m) => match (m.topic, parse(m.payload)) {
                ("load/all", _) if m.payload == b"broadcast" => tally.broadcasts += 1,
                (topic, Some((from, seq)))
                    if topic == neighbour_topic && from == neighbour && seq < messages =>
                {
                    tally.neighbour[seq as usize] += 1;
                }
                (topic, _) => tally.unexpected.push(topic.to_string()),
            },
            other => tally.unexpected.push(format!("{other:?}")),
        }
    }
    let _ = client.disconnect().await;
    let mut progress = progress.borrow_mut();
    progress.tallies[index as usize] = Some(tally);
    progress.done += 1;
}

#[test]
fn many_clients_publish_and_receive_everything_exactly_once() {
    let clients = env_u32("MQTTS_LOAD_CLIENTS", 200);
    let messages = env_u32("MQTTS_LOAD_MESSAGES", 100);
    assert!(clients >= 2, "at least two clients");
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let pki = TestPki::new(KeyKind::P256);
        // The monitor may fall behind: no limit on its queue.
        let broker = Mosquitto::start(&[&pki.leaf], "max_queued_messages 0\n");
        let pins: Rc<[Pin]> = Rc::from(vec![Pin::PublicKey(pki.leaf.spki_sha256())]);
        let static_pins: &'static [Pin] = Box::leak(pins.to_vec().into_boxed_slice());

        // The monitor: every message of every client.
        let mut monitor_storage = Storage::new();
        let monitor_outbox = Box::leak(std::mem::take(&mut monitor_storage.outbox).into_boxed_slice());
        let monitor_session = Box::leak(Box::new(Session::<64>::new(monitor_outbox)));
        let monitor_storage = Box::leak(Box::new(monitor_storage));
        let monitor_subs = [("load/c/#", QoS::AtLeastOnce)];
        let mut monitor = within(
            "monitor connects",
            connect(
                broker.port,
                static_pins,
                monitor_storage,
                monitor_session,
                &ConnectOptions::new("load-monitor").with_subscriptions(&monitor_subs),
            ),
        )
        .await
        .expect("monitor connects");

        let rss_before = rss_kib();
        let progress = Rc::new(RefCell::new(Progress {
            connected: 0,
            done: 0,
            tallies: vec![None; clients as usize],
        }));
        let go = Rc::new(tokio::sync::Notify::new());
        let go_flag = Rc::new(std::cell::Cell::new(false));
        let connect_started = Instant::now();
        let mut tasks = Vec::new();
        for index in 0..clients {
            tasks.push(tokio::task::spawn_local(run_client(
                index,
                clients,
                messages,
                broker.port,
                Rc::clone(&pins),
                Rc::clone(&progress),
                Rc::clone(&go),
                Rc::clone(&go_flag),
            )));
        }
        let limit = Duration::from_secs(60) + Duration::from_millis(200) * clients;
        within("all clients connect", async {
            while progress.borrow().connected < clients {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        })
        .await;
        let connect_time = connect_started.elapsed();
        let rss_connected = rss_kib();

        // Go: everyone publishes; the announcer fans out to everyone.
        let started = Instant::now();
        go_flag.set(true);
        go.notify_waiters();
        let mut announcer_storage = Storage::new();
        let announcer_outbox =
            Box::leak(std::mem::take(&mut announcer_storage.outbox).into_boxed_slice());
        let announcer_session = Box::leak(Box::new(Session::<8>::new(announcer_outbox)));
        let announcer_storage = Box::leak(Box::new(announcer_storage));
        let mut announcer = connect(
            broker.port,
            static_pins,
            announcer_storage,
            announcer_session,
            &ConnectOptions::new("load-announcer"),
        )
        .await
        .expect("announcer connects");
        for _ in 0..BROADCASTS {
            announcer
                .publish("load/all", b"broadcast", QoS::AtLeastOnce, false)
                .await
                .expect("broadcast");
        }
        let _ = announcer.disconnect().await;

        // The monitor counts until it has everything, then listens 200 ms more.
        let expected_total = u64::from(clients) * u64::from(messages);
        let mut seen = vec![0u32; (clients * messages) as usize];
        let mut monitor_unexpected = Vec::new();
        let mut monitor_received = 0u64;
        let outcome = tokio::time::timeout(limit, async {
            loop {
                let wait = if monitor_received >= expected_total {
                    Duration::from_millis(200)
                } else {
                    TIMEOUT
                };
                match tokio::time::timeout(wait, monitor.poll()).await {
                    Err(_) if monitor_received >= expected_total => break,
                    Err(_) => panic!("monitor: nothing for {wait:?} ({monitor_received} of {expected_total})"),
                    Ok(Ok(Event::Message(m))) => match parse(m.payload) {
                        Some((from, seq))
                            if from < clients
                                && seq < messages
                                && m.topic == format!("load/c/{from}") =>
                        {
                            seen[(from * messages + seq) as usize] += 1;
                            monitor_received += 1;
                        }
                        _ => monitor_unexpected.push(m.topic.to_string()),
                    },
                    Ok(Ok(other)) => monitor_unexpected.push(format!("{other:?}")),
                    Ok(Err(e)) => panic!("monitor polls: {e:?}"),
                }
            }
            for task in tasks {
                task.await.expect("client task");
            }
        })
        .await;
        let elapsed = started.elapsed();
        if outcome.is_err() {
            let p = progress.borrow();
            panic!(
                "not done within {limit:?}: {} of {clients} clients done, monitor {monitor_received} of {expected_total}",
                p.done
            );
        }
        let _ = monitor.disconnect().await;

        // Exact accounting.
        let progress = progress.borrow();
        for (index, tally) in progress.tallies.iter().enumerate() {
            let tally = tally.as_ref().expect("every client finished");
            assert_eq!(tally.completions, messages, "client {index}: acknowledgements");
            assert_eq!(tally.broadcasts, BROADCASTS, "client {index}: broadcasts");
            assert!(
                tally.neighbour.iter().all(|&c| c == 1),
                "client {index}: neighbour's messages {:?}",
                tally.neighbour
            );
            assert!(tally.unexpected.is_empty(), "client {index}: {:?}", tally.unexpected);
        }
        assert!(seen.iter().all(|&c| c == 1), "monitor: some message not exactly once");
        assert!(monitor_unexpected.is_empty(), "monitor: {monitor_unexpected:?}");
        assert_eq!(monitor_received, expected_total);

        let published = expected_total + u64::from(BROADCASTS);
        let delivered = 2 * expected_total + u64::from(BROADCASTS) * u64::from(clients);
        let secs = elapsed.as_secs_f64();
        let state = std::mem::size_of::<LoadClient<'static, N>>() + std::mem::size_of::<Session<'static, N>>();
        let buffers = TLS_READ + TLS_WRITE + RX + TX + OUTBOX;
        println!(
            "load: {clients} clients x {messages} QoS 1 messages, {BROADCASTS} broadcasts to all, 1 monitor"
        );
        println!(
            "  connect (TLS 1.3 + MQTT, all at once): {connect_time:.2?}, {:.0} connections/s",
            f64::from(clients) / connect_time.as_secs_f64()
        );
        println!(
            "  exchange: {elapsed:.2?}; {published} published ({:.0}/s), {delivered} delivered ({:.0}/s), all exactly once",
            published as f64 / secs,
            delivered as f64 / secs
        );
        println!(
            "  per client: {state} bytes of client + session state, {buffers} bytes of buffers \
             (TLS read {TLS_READ}, TLS write {TLS_WRITE}, rx {RX}, tx {TX}, outbox {OUTBOX}) = {} bytes",
            state + buffers
        );
        if let (Some(before), Some(after)) = (rss_before, rss_connected) {
            println!(
                "  process RSS: {before} KiB before, {after} KiB with {clients} clients connected: \
                 {:.1} KiB per client (tokio task, socket and allocator overhead included)",
                after.saturating_sub(before) as f64 / f64::from(clients)
            );
        }
        drop(broker);
    });
}
