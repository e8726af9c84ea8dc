//! Fault injection against a real broker: mosquitto (TLS 1.3, loopback)
//! behind proxies that cut every connection at a random point (mid-
//! handshake, mid-PUBLISH, between PUBREC and PUBREL, during SUBSCRIBE, ...,
//! see `support::fault_proxy`). Two publishers with persistent sessions
//! (QoS 1 pipelined with `start_publish`, QoS 2 one at a time with
//! `publish`) reconnect through the [`Supervisor`] after every cut; a
//! subscriber with a persistent session and a QoS 2 subscription, also cut,
//! counts what arrives. Nothing queued may be lost, and no QoS 2 message
//! may arrive twice.
//!
//! `MQTTS_FAULT_MESSAGES` (default 300) sets the messages per QoS,
//! `MQTTS_FAULT_SEED` the seed (printed; random by default).
//! `scripts/reliability.sh` runs 10,000 per QoS.

mod support;

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use embedded_io_adapters::tokio_1::FromTokio;
use mqtts::client::{ConnectOptions, Event};
use mqtts::mqtt::QoS;
use mqtts::reconnect::{Backoff, Connector, Supervisor};
use mqtts::tls::{MaxFragmentLength, TlsOptions};
use mqtts::trust::{Pin, Trust};
use mqtts::{Error, Session};
use rand::rngs::OsRng;
use support::fault_proxy::{CutStats, FaultProxy, Phase, Role};
use support::*;

const TOPIC_QOS1: &str = "fault/q1";
const TOPIC_QOS2: &str = "fault/q2";
const FILTER: &str = "fault/#";
/// QoS 1 messages the publisher keeps in flight at once.
const WINDOW: usize = 8;
/// Session sizes. The subscriber must track every QoS 2 message mosquitto
/// has in flight to it, and mosquitto 2.0.11 sends all of them again at
/// once after a reconnect, far beyond `max_inflight_messages` (hundreds
/// after a few quick cuts): with a smaller window, every reconnect ends in
/// `Qos2ReceiveWindowFull` and the subscriber never catches up. Even 1024
/// is exceeded now and then on long runs (up to 1,054 seen): that
/// connection fails the same way and the next one catches up.
const PUBLISHER_N: usize = 16;
const SUBSCRIBER_N: usize = 1024;

fn env_u64(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(value) => value
            .parse()
            .unwrap_or_else(|_| panic!("{name}={value:?} is not a number")),
        Err(_) => default,
    }
}

/// Message `seq` of a publisher: its number, then 0 to 300 filler bytes
/// (so records differ in size and many cuts fall inside a PUBLISH).
fn payload(seq: u32) -> Vec<u8> {
    let filler = (seq as usize * 7_919) % 301;
    let mut bytes = format!("{seq:08}").into_bytes();
    bytes.extend((0..filler).map(|i| b'a' + (i % 26) as u8));
    bytes
}

/// Reads back what [`payload`] made; `None` if it was altered.
fn parse_payload(bytes: &[u8]) -> Option<u32> {
    let seq: u32 = std::str::from_utf8(bytes.get(..8)?).ok()?.parse().ok()?;
    (payload(seq) == bytes).then_some(seq)
}

/// The variant name of an error, to count errors by kind.
fn kind(error: &Error) -> String {
    let text = format!("{error:?}");
    let end = text.find([' ', '(', '{']).unwrap_or(text.len());
    text[..end].to_string()
}

/// Dials a proxy on loopback.
struct ProxyConnector {
    port: u16,
}

impl Connector for ProxyConnector {
    type Socket<'a> = FromTokio<tokio::net::TcpStream>;

    async fn connect(&mut self) -> Result<Self::Socket<'_>, Error> {
        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .await
            .map(|tcp| {
                let _ = tcp.set_nodelay(true);
                FromTokio::new(tcp)
            })
            .map_err(|e| Error::Io(embedded_io::ErrorKind::from(e.kind())))
    }
}

fn supervisor(port: u16) -> Supervisor<ProxyConnector, TokioTimer> {
    // Cuts come every few messages: reconnect quickly, with a little backoff.
    let backoff = Backoff {
        initial_ms: 2,
        max_ms: 20,
    };
    Supervisor::new(ProxyConnector { port }, TokioTimer::new(), backoff)
}

fn tls_options(pins: &[Pin]) -> TlsOptions<'_> {
    TlsOptions::new(SERVER_NAME, Trust::pinned(pins))
        .with_max_fragment_length(MaxFragmentLength::Bytes1024)
        .with_handshake_timeout_ms(10_000)
}

/// What one side saw.
#[derive(Debug, Default)]
struct Report {
    /// Successful connections (CONNACK received).
    connections: u64,
    /// Failed connection attempts.
    failed_attempts: u64,
    /// Messages sent again after a reconnect (`Connected::resent`).
    resent: usize,
    /// Errors that ended a connection or an attempt, by kind.
    errors: BTreeMap<String, u64>,
    /// Subscriber: connections where the broker had a session but the
    /// subscription had never been acknowledged.
    session_without_subscription: u64,
}

impl Report {
    fn error(&mut self, error: &Error) {
        *self.errors.entry(kind(error)).or_insert(0) += 1;
    }
}

/// Publishes `count` numbered messages at `qos` through the proxy on
/// `port`, reconnecting after every failure, until each is acknowledged.
/// QoS 1 keeps up to [`WINDOW`] in flight (`start_publish`); QoS 2 sends one
/// at a time (`publish`). Returns the report and how many messages the
/// session took (all of them, or the test fails).
async fn publish_all(port: u16, pins: &[Pin], qos: QoS, count: u32) -> (Report, u32) {
    let (client_id, topic) = match qos {
        QoS::AtLeastOnce => ("fault-pub-1", TOPIC_QOS1),
        _ => ("fault-pub-2", TOPIC_QOS2),
    };
    let mut outbox = vec![0u8; 16 * 1024];
    let mut session: Session<'_, PUBLISHER_N> = Session::new(&mut outbox);
    let mut supervisor = supervisor(port);
    let tls = tls_options(pins);
    let options = ConnectOptions::new(client_id)
        .with_persistent_session()
        .with_keep_alive(10)
        .with_connect_timeout_ms(10_000);
    let mut buffers = ClientBuffers::new();
    let mut report = Report::default();
    // Messages the session took (stored before sending): 0..next.
    let mut next = 0u32;
    // Of those, not yet completed.
    let mut outstanding = 0usize;
    let mut completed = 0u32;
    let mut ever_connected = false;
    while completed < count {
        let (mut client, connected) = match supervisor
            .connect(&mut OsRng, &tls, &mut session, buffers.get(), &options)
            .await
        {
            Ok(ok) => ok,
            Err(failure) => {
                report.failed_attempts += 1;
                report.error(&failure.error);
                // Whatever failed, the session keeps what it had.
                continue;
            }
        };
        report.connections += 1;
        report.resent += connected.resent;
        assert!(
            connected.session_present || !ever_connected,
            "{client_id}: mosquitto lost the session"
        );
        ever_connected = true;
        // Whether the connection ended in a call that may have stored a new
        // message.
        let mut publishing: bool;
        let error = loop {
            publishing = false;
            if qos == QoS::AtLeastOnce && outstanding < WINDOW && next < count {
                publishing = true;
                match client
                    .start_publish(topic, &payload(next), qos, false)
                    .await
                {
                    Ok(Some(_)) => {
                        next += 1;
                        outstanding += 1;
                        // Queued messages share a record until the next
                        // wait; flushing every other one also sends many
                        // single-message records, so cuts land between and
                        // inside both kinds.
                        if next.is_multiple_of(2) {
                            publishing = false;
                            if let Err(e) = client.flush().await {
                                break Some(e);
                            }
                        }
                        continue;
                    }
                    Ok(None) => unreachable!("QoS 1 has an identifier"),
                    Err(e) => break Some(e),
                }
            }
            if qos == QoS::ExactlyOnce && outstanding == 0 && next < count {
                publishing = true;
                match client.publish(topic, &payload(next), qos, false).await {
                    Ok(()) => {
                        next += 1;
                        completed += 1;
                        continue;
                    }
                    Err(Error::AckPending(_)) => {
                        // Stored and sent; `poll` reports the completion.
                        next += 1;
                        outstanding += 1;
                        continue;
                    }
                    Err(e) => break Some(e),
                }
            }
            if outstanding == 0 {
                // Everything was taken and acknowledged.
                assert_eq!(next, count);
                break None;
            }
            match client.poll().await {
                Ok(Event::Published(_)) => {
                    outstanding -= 1;
                    completed += 1;
                }
                Ok(other) => panic!("{client_id}: unexpected event {other:?}"),
                Err(e) => break Some(e),
            }
        };
        let Some(error) = error else {
            let _ = client.disconnect().await;
            break;
        };
        report.error(&error);
        drop(client);
        // The session says whether the failed call stored its message.
        let in_flight = session.in_flight();
        if publishing && in_flight == outstanding + 1 {
            next += 1;
            outstanding += 1;
        } else {
            assert_eq!(
                in_flight, outstanding,
                "{client_id}: the session holds {in_flight} messages, the caller counts \
                 {outstanding} (after {error:?}, publishing: {publishing})"
            );
        }
    }
    assert_eq!(session.in_flight(), 0);
    assert_eq!(session.outbox_used(), 0);
    assert_eq!((next, completed), (count, count));
    (report, next)
}

/// What the subscriber received: per message number, how many times.
#[derive(Debug, Default)]
struct Received {
    qos1: Vec<u32>,
    qos2: Vec<u32>,
    /// Messages whose topic, QoS or payload was wrong.
    corrupt: Vec<String>,
}

impl Received {
    fn record(&mut self, topic: &str, qos: QoS, payload: &[u8]) {
        let seq = parse_payload(payload);
        let counts = match (topic, qos, seq) {
            (TOPIC_QOS1, QoS::AtLeastOnce, Some(_)) => &mut self.qos1,
            (TOPIC_QOS2, QoS::ExactlyOnce, Some(_)) => &mut self.qos2,
            _ => {
                self.corrupt.push(format!(
                    "{topic} {qos:?} {:?}",
                    String::from_utf8_lossy(payload)
                ));
                return;
            }
        };
        let seq = seq.unwrap_or_default() as usize;
        if counts.len() <= seq {
            counts.resize(seq + 1, 0);
        }
        counts[seq] += 1;
    }

    fn has_all(&self, qos1: u32, qos2: u32) -> bool {
        let complete = |counts: &[u32], n: u32| {
            counts.len() >= n as usize && counts[..n as usize].iter().all(|&c| c > 0)
        };
        complete(&self.qos1, qos1) && complete(&self.qos2, qos2)
    }
}

/// How far the publishers are: `Some((qos1, qos2))` once both are done,
/// with how many messages each session took.
type Expected = Cell<Option<(u32, u32)>>;

/// Receives through the proxy on `port` until every message the publishers
/// sent has arrived, then listens for late duplicates for a while with
/// cutting off.
async fn subscribe_all(
    port: u16,
    proxy: &FaultProxy,
    pins: &[Pin],
    expected: &Expected,
    subscribed: &Cell<bool>,
    received: &RefCell<Received>,
) -> Report {
    let mut outbox = vec![0u8; 1024];
    let mut session: Session<'_, SUBSCRIBER_N> = Session::new(&mut outbox);
    let mut supervisor = supervisor(port);
    let tls = tls_options(pins);
    let subscriptions = [(FILTER, QoS::ExactlyOnce)];
    let options = ConnectOptions::new("fault-sub")
        .with_persistent_session()
        .with_keep_alive(10)
        .with_connect_timeout_ms(10_000)
        .with_subscriptions(&subscriptions);
    let mut buffers = ClientBuffers::new();
    let mut report = Report::default();
    let mut ever_connected = false;
    // Once everything arrived: listen this much longer for duplicates.
    const QUIET: Duration = Duration::from_millis(500);
    let mut draining = false;
    loop {
        let (mut client, connected) = match supervisor
            .connect(&mut OsRng, &tls, &mut session, buffers.get(), &options)
            .await
        {
            Ok(ok) => ok,
            Err(failure) => {
                report.failed_attempts += 1;
                report.error(&failure.error);
                continue;
            }
        };
        report.connections += 1;
        assert!(
            connected.session_present || !ever_connected,
            "subscriber: mosquitto lost the session"
        );
        ever_connected = true;
        match connected.granted {
            // The broker had no session: the options subscribed.
            Some(granted) => {
                assert_eq!(&granted[..], &[QoS::ExactlyOnce]);
                subscribed.set(true);
            }
            None if subscribed.get() && !resubscribe() => {}
            None => {
                if !subscribed.get() {
                    // The broker kept a session from a connection cut
                    // before its SUBACK: the options do not subscribe
                    // again (see `a_cut_before_the_first_suback_...`).
                    report.session_without_subscription += 1;
                }
                // Subscribe on every connection: it replaces the
                // subscription without interrupting the flow (MQTT 3.1.1
                // §3.8.4), and puts cuts into SUBSCRIBE too.
                match client.subscribe(&subscriptions).await {
                    Ok(granted) => {
                        assert_eq!(&granted[..], &[QoS::ExactlyOnce]);
                        subscribed.set(true);
                    }
                    // The SUBACK is behind messages: `poll` reports it.
                    Err(Error::AckPending(_)) => {}
                    Err(e) => {
                        report.error(&e);
                        continue;
                    }
                }
            }
        }
        loop {
            if !draining
                && let Some((qos1, qos2)) = expected.get()
                && received.borrow().has_all(qos1, qos2)
            {
                draining = true;
                proxy.set_cutting(false);
            }
            let wait = if draining {
                QUIET
            } else {
                Duration::from_millis(200)
            };
            // Dropping `poll` while it waits for data loses nothing.
            let event = match tokio::time::timeout(wait, client.poll()).await {
                Err(_) if draining => {
                    let _ = client.disconnect().await;
                    return report;
                }
                Err(_) => continue,
                Ok(event) => event,
            };
            match event {
                Ok(Event::Message(m)) => {
                    received.borrow_mut().record(m.topic, m.qos, m.payload);
                }
                Ok(Event::Subscribed { refused, .. }) => {
                    assert_eq!(refused, None);
                    subscribed.set(true);
                }
                Ok(other) => panic!("subscriber: unexpected event {other:?}"),
                Err(e) => {
                    report.error(&e);
                    break;
                }
            }
        }
    }
}

/// Whether the subscriber subscribes again on every connection
/// (`MQTTS_FAULT_RESUBSCRIBE=0`: only until a SUBACK came, to check that
/// re-subscribing plays no part in what mosquitto does).
fn resubscribe() -> bool {
    env_u64("MQTTS_FAULT_RESUBSCRIBE", 1) != 0
}

/// The size of the subscriber's SUBSCRIBE packet, so the proxy knows it.
fn subscribe_len() -> usize {
    // Fixed header (2), packet identifier (2), filter (2 + len), QoS (1).
    2 + 2 + 2 + FILTER.len() + 1
}

#[tokio::test]
async fn random_cuts_lose_nothing_and_never_duplicate_qos2() {
    // Boxed: the sessions make the future large for a test thread's stack.
    Box::pin(fault_injection(true)).await;
}

/// The same with the subscriber's connection left alone: mosquitto's
/// resend-after-PUBREL (see below) needs a subscriber reconnect, so here
/// every QoS 2 duplicate would be the client's, and none is allowed.
#[tokio::test]
async fn random_cuts_of_the_publishers_never_duplicate_qos2() {
    Box::pin(fault_injection(false)).await;
}

async fn fault_injection(cut_subscriber: bool) {
    let count = u32::try_from(env_u64("MQTTS_FAULT_MESSAGES", 300)).expect("a message count");
    let seed = env_u64("MQTTS_FAULT_SEED", rand::random::<u32>() as u64);
    println!(
        "fault injection: seed {seed} (MQTTS_FAULT_SEED={seed} repeats the cut plans), \
         {count} messages per QoS, subscriber cut: {cut_subscriber}"
    );

    let pki = TestPki::new(KeyKind::P256);
    // Unlimited queue for the offline subscriber: mosquitto's default (1000)
    // would drop messages while it reconnects, which is not the client's doing.
    let broker = Mosquitto::start(
        &[&pki.leaf],
        "max_inflight_messages 20\nmax_queued_messages 0\n",
    );
    let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
    let proxy_qos1 = FaultProxy::start(broker.port, Role::PublisherQos1, seed).await;
    let proxy_qos2 = FaultProxy::start(broker.port, Role::PublisherQos2, seed ^ 0x5555).await;
    let proxy_sub = if cut_subscriber {
        FaultProxy::start(
            broker.port,
            Role::Subscriber {
                subscribe_len: subscribe_len(),
            },
            seed ^ 0xaaaa,
        )
        .await
    } else {
        FaultProxy::transparent(broker.port).await
    };

    let expected: Expected = Cell::new(None);
    let subscribed = Cell::new(false);
    let received = RefCell::new(Received::default());
    let started = Instant::now();
    // Generous: a debug build handshakes slowly, and every cut costs one.
    let limit = Duration::from_secs(30) + Duration::from_millis(20) * count;
    let run = async {
        let subscriber = Box::pin(subscribe_all(
            proxy_sub.port,
            &proxy_sub,
            &pins,
            &expected,
            &subscribed,
            &received,
        ));
        let publishers = async {
            let (qos1, qos2) = tokio::join!(
                Box::pin(publish_all(proxy_qos1.port, &pins, QoS::AtLeastOnce, count)),
                Box::pin(publish_all(proxy_qos2.port, &pins, QoS::ExactlyOnce, count)),
            );
            expected.set(Some((qos1.1, qos2.1)));
            (qos1.0, qos2.0)
        };
        // The subscriber subscribes first, so that it receives from the
        // first message on (the overall limit bounds this wait too).
        tokio::join!(subscriber, async {
            while !subscribed.get() {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            publishers.await
        })
    };
    let progress = |received: &RefCell<Received>| {
        let r = received.borrow();
        format!(
            "seed {seed}: received {} distinct QoS 1, {} distinct QoS 2 of {count} each",
            r.qos1.iter().filter(|&&c| c > 0).count(),
            r.qos2.iter().filter(|&&c| c > 0).count()
        )
    };
    let outcome = tokio::time::timeout(limit, run).await;
    // MQTTS_FAULT_LOG=path keeps mosquitto's log (every packet) to study a failure.
    if let Ok(path) = std::env::var("MQTTS_FAULT_LOG") {
        std::fs::write(&path, broker.log()).expect("write the broker log");
    }
    let (sub_report, (pub1_report, pub2_report)) = match outcome {
        Ok(reports) => reports,
        Err(_) => panic!(
            "no progress within {limit:?} ({}); cuts: QoS 1 {}; QoS 2 {}; subscriber {}",
            progress(&received),
            proxy_qos1.stats(),
            proxy_qos2.stats(),
            proxy_sub.stats()
        ),
    };
    let elapsed = started.elapsed();
    let log = broker.log();

    let received = received.into_inner();
    let (sent1, sent2) = expected.get().expect("publishers finished");
    let lost = |counts: &[u32], n: u32| {
        (0..n as usize)
            .filter(|&i| counts.get(i).copied().unwrap_or(0) == 0)
            .collect::<Vec<_>>()
    };
    let duplicated = |counts: &[u32]| {
        counts
            .iter()
            .map(|&c| c.saturating_sub(1) as u64)
            .sum::<u64>()
    };
    let lost1 = lost(&received.qos1, sent1);
    let lost2 = lost(&received.qos2, sent2);
    let dup1 = duplicated(&received.qos1);
    let dup2 = duplicated(&received.qos2);
    let stats: [(&str, CutStats); 3] = [
        ("QoS 1 publisher", proxy_qos1.stats()),
        ("QoS 2 publisher", proxy_qos2.stats()),
        ("subscriber", proxy_sub.stats()),
    ];
    println!("fault injection: seed {seed}, {count} messages per QoS, {elapsed:.1?}");
    println!(
        "  QoS 1: sent {sent1}, received {} distinct, lost {}, duplicated {dup1}",
        received.qos1.iter().filter(|&&c| c > 0).count(),
        lost1.len()
    );
    println!(
        "  QoS 2: sent {sent2}, received {} distinct, lost {}, duplicated {dup2}",
        received.qos2.iter().filter(|&&c| c > 0).count(),
        lost2.len()
    );
    for (name, report) in [
        ("QoS 1 publisher", &pub1_report),
        ("QoS 2 publisher", &pub2_report),
        ("subscriber", &sub_report),
    ] {
        println!(
            "  {name}: {} connections, {} failed attempts, {} resent; errors {:?}",
            report.connections, report.failed_attempts, report.resent, report.errors
        );
        if report.session_without_subscription > 0 {
            println!(
                "  {name}: {} connections resumed a session whose first SUBSCRIBE was cut",
                report.session_without_subscription
            );
        }
    }
    for (name, stats) in &stats {
        println!("  cuts, {name}: {stats}");
    }

    assert!(
        received.corrupt.is_empty(),
        "corrupted: {:?}",
        received.corrupt
    );
    assert_eq!(
        lost1,
        Vec::<usize>::new(),
        "QoS 1 messages lost (seed {seed})"
    );
    assert_eq!(
        lost2,
        Vec::<usize>::new(),
        "QoS 2 messages lost (seed {seed})"
    );
    // mosquitto 2.0.11 sometimes sends a QoS 2 PUBLISH again after it sent
    // its PUBREL (forbidden by MQTT 3.1.1 §4.3.3); the client released the
    // identifier at that PUBREL, so the message is new to it. Each such
    // resend explains one duplicate of a message of that size, no more.
    let mut violations = broker_qos2_violations(&log, "fault-sub");
    let resent_after_pubrel = violations.len();
    let mut unexplained = Vec::new();
    for (seq, &times) in received.qos2.iter().enumerate() {
        for _ in 1..times {
            let len = payload(seq as u32).len();
            match violations.iter().position(|&(_, l)| l == len) {
                Some(i) => {
                    violations.swap_remove(i);
                }
                None => unexplained.push(seq),
            }
        }
    }
    println!(
        "  mosquitto sent {resent_after_pubrel} QoS 2 PUBLISH again after their PUBREL; \
         {} of the {dup2} QoS 2 duplicates match one of them by size",
        dup2 - unexplained.len() as u64
    );
    if !cut_subscriber {
        assert_eq!(dup2, 0, "QoS 2 messages duplicated (seed {seed})");
    }
    assert_eq!(
        unexplained,
        Vec::<usize>::new(),
        "QoS 2 messages duplicated by the client (seed {seed}): message numbers"
    );
    assert_eq!(
        (received.qos1.len(), received.qos2.len()),
        (sent1 as usize, sent2 as usize),
        "messages never sent arrived (seed {seed})"
    );
    // The proxies did cut, often; on long runs, in every phase aimed at.
    let total_cuts: u64 = stats.iter().map(|(_, s)| s.total()).sum();
    // (Queued QoS 1 messages share records, so a run may need fewer
    // connections than messages / 20; seeds vary.)
    assert!(
        total_cuts >= (u64::from(count) / 40).max(5),
        "only {total_cuts} cuts for {count} messages"
    );
    if count >= 2_000 {
        let phases = [
            (
                &stats[0].1,
                &[
                    Phase::Handshake,
                    Phase::Connect,
                    Phase::MidPublish,
                    Phase::AwaitingAck,
                ][..],
            ),
            (
                &stats[1].1,
                &[Phase::PubrecToPubrel, Phase::PubrelToPubcomp][..],
            ),
        ];
        for (cuts, phases) in phases {
            for phase in phases {
                assert!(
                    cuts.cuts.get(phase).is_some_and(|&n| n > 0),
                    "no cut in {phase:?}: {cuts}"
                );
            }
        }
        if cut_subscriber && resubscribe() {
            assert!(
                stats[2]
                    .1
                    .cuts
                    .get(&Phase::Subscribe)
                    .is_some_and(|&n| n > 0)
            );
        }
    }
}

/// The QoS 2 PUBLISH packets mosquitto sent `client` again after it had
/// sent their PUBREL and before their PUBCOMP (MQTT 3.1.1 §4.3.3 forbids
/// it), as (packet identifier, payload length), read from its log.
fn broker_qos2_violations(log: &str, client: &str) -> Vec<(u16, usize)> {
    let mut released = std::collections::BTreeSet::new();
    let mut violations = Vec::new();
    let pubrel = format!("Sending PUBREL to {client} (m");
    let pubcomp = format!("Received PUBCOMP from {client} (Mid: ");
    let publish = format!("Sending PUBLISH to {client} (d");
    let number = |text: &str| -> Option<u16> {
        let end = text.find(|c: char| !c.is_ascii_digit())?;
        text[..end].parse().ok()
    };
    for line in log.lines() {
        if let Some(at) = line.find(&pubrel) {
            released.extend(number(&line[at + pubrel.len()..]));
        } else if let Some(at) = line.find(&pubcomp) {
            if let Some(mid) = number(&line[at + pubcomp.len()..]) {
                released.remove(&mid);
            }
        } else if let Some(at) = line.find(&publish) {
            // "(d1, q2, r0, m32, 'fault/q2', ... (292 bytes))"
            let rest = &line[at + publish.len()..];
            let Some(m) = rest.find(", q2, r0, m").or(rest.find(", q2, r1, m")) else {
                continue;
            };
            let Some(mid) = number(&rest[m + ", q2, r0, m".len()..]) else {
                continue;
            };
            let Some(open) = rest.rfind("... (") else {
                continue;
            };
            let len = number(&rest[open + "... (".len()..]).map(usize::from);
            if let (true, Some(len)) = (released.remove(&mid), len) {
                violations.push((mid, len));
            }
        }
    }
    violations
}

/// A cut between CONNACK and SUBACK on the very first connection leaves the
/// broker with a session but without the subscription. The next connection
/// finds `session_present` and, as documented, does not subscribe: the
/// client then waits forever for messages that never come. The
/// subscriptions should count as made only once acknowledged (e.g. a flag
/// in the `Session`, cleared when the broker reports no session).
///
/// Fails with mqtts at 916cc47 (library bug, reported; `src/` not changed
/// by this test's author).
#[tokio::test]
async fn a_cut_before_the_first_suback_must_not_leave_the_session_unsubscribed() {
    use support::fault_proxy::Plan;
    let pki = TestPki::new(KeyKind::P256);
    let broker = Mosquitto::start(&[&pki.leaf], "");
    let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
    // The first connection is cut in the middle of its SUBSCRIBE.
    let cut_in_subscribe = Plan::AtPhase {
        phase: Phase::Subscribe,
        nth: 1,
        fraction: 0.5,
    };
    let proxy = FaultProxy::scripted(
        broker.port,
        Role::Subscriber {
            subscribe_len: subscribe_len(),
        },
        &[Some(cut_in_subscribe)],
    )
    .await;

    let mut outbox = vec![0u8; 1024];
    let mut session: Session<'_, 8> = Session::new(&mut outbox);
    let mut subscriber_supervisor = supervisor(proxy.port);
    let tls = tls_options(&pins);
    let subscriptions = [(FILTER, QoS::AtLeastOnce)];
    let options = ConnectOptions::new("first-subscribe-cut")
        .with_persistent_session()
        .with_subscriptions(&subscriptions);
    let mut buffers = ClientBuffers::new();
    let first = within(
        "first connection",
        subscriber_supervisor.connect(&mut OsRng, &tls, &mut session, buffers.get(), &options),
    )
    .await;
    let Err(failure) = first else {
        panic!("the cut ends the first connection");
    };
    assert!(
        matches!(
            failure.error,
            Error::ConnectionClosed | Error::Io(_) | Error::Tls(_)
        ),
        "{failure:?}"
    );
    assert_eq!(proxy.stats().cuts.get(&Phase::Subscribe), Some(&1));

    let (mut subscriber, connected) = within(
        "second connection",
        subscriber_supervisor.connect(&mut OsRng, &tls, &mut session, buffers.get(), &options),
    )
    .await
    .expect("the second connection is not cut");
    assert!(connected.session_present, "mosquitto kept the session");

    // Publish straight to the broker.
    let mut publisher_outbox = vec![0u8; 1024];
    let mut publisher_session: Session<'_, 8> = Session::new(&mut publisher_outbox);
    // Dials the broker itself, not the proxy.
    let mut publisher_supervisor = supervisor(broker.port);
    let mut publisher_buffers = ClientBuffers::new();
    let (mut publisher, _) = within(
        "publisher",
        publisher_supervisor.connect(
            &mut OsRng,
            &tls,
            &mut publisher_session,
            publisher_buffers.get(),
            &ConnectOptions::new("first-subscribe-cut-pub"),
        ),
    )
    .await
    .expect("publisher connects");
    within(
        "publish",
        publisher.publish("fault/q1", &payload(1), QoS::AtLeastOnce, false),
    )
    .await
    .expect("published");

    let received = tokio::time::timeout(Duration::from_secs(3), subscriber.poll()).await;
    let message = match received {
        Ok(Ok(Event::Message(m))) => Some((
            m.topic.to_string(),
            String::from_utf8_lossy(m.payload).into_owned(),
        )),
        Ok(other) => panic!("unexpected {other:?}"),
        Err(_) => None,
    };
    assert_eq!(
        message,
        Some((
            "fault/q1".to_string(),
            String::from_utf8_lossy(&payload(1)).into_owned()
        )),
        "the subscriber is not subscribed: the connection that resumed the session \
         (granted: {:?}) did not make the subscription whose SUBSCRIBE was cut",
        connected.granted
    );
}
