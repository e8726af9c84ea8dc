//! The MQTT client against a real broker: mosquitto on a loopback port with
//! a TLS 1.3 listener and generated certificates, clients pinned to its key.

mod support;

use embedded_io_adapters::tokio_1::FromTokio;
use mqtts::client::{Buffers, Client, ConnectOptions, Event};
use mqtts::mqtt::QoS;
use mqtts::mqtt::encode::Will;
use mqtts::tls::{MaxFragmentLength, TlsOptions};
use mqtts::trust::{Pin, Trust};
use mqtts::{Error, Session};
use rand::rngs::OsRng;
use std::net::Ipv4Addr;
use support::*;

type TlsClient = Client<
    'static,
    'static,
    mqtts::tls::TlsStream<'static, FromTokio<tokio::net::TcpStream>, TokioTimer>,
    TokioTimer,
    8,
>;

fn leak(len: usize) -> &'static mut [u8] {
    Box::leak(vec![0u8; len].into_boxed_slice())
}

fn new_session() -> &'static mut Session<'static, 8> {
    Box::leak(Box::new(Session::new(leak(8192))))
}

struct Broker {
    mosquitto: Mosquitto,
    pins: &'static [Pin],
}

impl Broker {
    fn start() -> Broker {
        let pki = TestPki::new(KeyKind::P256);
        let mosquitto = Mosquitto::start(&[&pki.leaf], "max_inflight_messages 20\n");
        let pins = Box::leak(Box::new([Pin::PublicKey(pki.leaf.spki_sha256())]));
        Broker { mosquitto, pins }
    }

    /// Connects over TLS (max_fragment_length 1024) with the session given.
    async fn connect(
        &self,
        session: &'static mut Session<'static, 8>,
        options: &ConnectOptions<'_>,
    ) -> Result<(TlsClient, mqtts::client::Connected), Error> {
        let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.mosquitto.port))
            .await
            .expect("TCP connect");
        let tls = TlsOptions::new(SERVER_NAME, Trust::pinned(self.pins))
            .with_max_fragment_length(MaxFragmentLength::Bytes1024);
        let buffers = Buffers {
            tls_read: leak(MaxFragmentLength::Bytes1024.read_buffer_len()),
            tls_write: leak(1024 + 128),
            rx: leak(4096),
            tx: leak(2048),
        };
        within(
            "connect",
            Client::connect_tls(
                FromTokio::new(tcp),
                &mut OsRng,
                &tls,
                TokioTimer::new(),
                session,
                buffers,
                options,
            ),
        )
        .await
    }
}

/// The next application message (topic, payload, qos, retain), skipping other events.
async fn next_message(client: &mut TlsClient) -> (String, Vec<u8>, QoS, bool) {
    loop {
        match within("poll", client.poll()).await.expect("poll") {
            Event::Message(m) => {
                return (m.topic.to_string(), m.payload.to_vec(), m.qos, m.retain);
            }
            _ => continue,
        }
    }
}

#[tokio::test]
async fn publish_and_receive_at_every_qos_between_two_clients() {
    let broker = Broker::start();
    let subs = [("qos/#", QoS::ExactlyOnce)];
    let (mut subscriber, connected) = broker
        .connect(
            new_session(),
            &ConnectOptions::new("sub").with_subscriptions(&subs),
        )
        .await
        .expect("subscriber connects");
    assert!(!connected.session_present);
    assert_eq!(connected.granted.as_deref(), Some(&[QoS::ExactlyOnce][..]));

    let (mut publisher, _) = broker
        .connect(new_session(), &ConnectOptions::new("pub"))
        .await
        .expect("publisher connects");
    // 3000 bytes: several TLS records of 1024 bytes.
    let big: Vec<u8> = (0..3000u32).map(|i| b'a' + (i % 26) as u8).collect();
    for (i, qos) in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce]
        .into_iter()
        .enumerate()
    {
        let topic = format!("qos/{i}");
        within(
            "publish",
            publisher.publish(&topic, &big[..1000 * (i + 1)], qos, false),
        )
        .await
        .expect("publish acknowledged");
        let (t, payload, received_qos, retain) = next_message(&mut subscriber).await;
        assert_eq!(
            (t.as_str(), received_qos, retain),
            (topic.as_str(), qos, false)
        );
        assert_eq!(payload, &big[..1000 * (i + 1)]);
    }
    publisher.disconnect().await.expect("disconnect");
    subscriber.disconnect().await.expect("disconnect");
}

#[tokio::test]
async fn pipelined_qos1_and_qos2_complete_as_events() {
    let broker = Broker::start();
    let (mut client, _) = broker
        .connect(new_session(), &ConnectOptions::new("pipeline"))
        .await
        .expect("connects");
    let mut ids = Vec::new();
    for i in 0..8u8 {
        let qos = if i % 2 == 0 {
            QoS::AtLeastOnce
        } else {
            QoS::ExactlyOnce
        };
        let id = client
            .start_publish("pipe/x", &[i; 100], qos, false)
            .await
            .expect("sent")
            .expect("an identifier");
        ids.push(id);
    }
    assert!(matches!(
        client
            .start_publish("pipe/x", b"one too many", QoS::AtLeastOnce, false)
            .await,
        Err(Error::InFlightFull { max: 8 })
    ));
    let mut completed = Vec::new();
    while completed.len() < ids.len() {
        if let Event::Published(id) = within("poll", client.poll()).await.expect("poll") {
            completed.push(id);
        }
    }
    completed.sort();
    ids.sort();
    assert_eq!(completed, ids);
}

#[tokio::test]
async fn a_retained_message_reaches_a_late_subscriber() {
    let broker = Broker::start();
    let (mut publisher, _) = broker
        .connect(new_session(), &ConnectOptions::new("retainer"))
        .await
        .expect("connects");
    publisher
        .publish("retained/state", b"on", QoS::AtLeastOnce, true)
        .await
        .expect("published");
    let (mut late, _) = broker
        .connect(new_session(), &ConnectOptions::new("late"))
        .await
        .expect("connects");
    let granted = late
        .subscribe(&[("retained/#", QoS::AtLeastOnce)])
        .await
        .expect("subscribed");
    assert_eq!(&granted[..], &[QoS::AtLeastOnce]);
    let (topic, payload, _, retain) = next_message(&mut late).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice(), retain),
        ("retained/state", &b"on"[..], true)
    );
}

#[tokio::test]
async fn the_last_will_is_published_when_a_client_vanishes() {
    let broker = Broker::start();
    let subs = [("will/#", QoS::AtLeastOnce)];
    let (mut watcher, _) = broker
        .connect(
            new_session(),
            &ConnectOptions::new("watcher").with_subscriptions(&subs),
        )
        .await
        .expect("connects");
    let will = Will {
        topic: "will/device-7",
        payload: b"offline",
        qos: QoS::AtLeastOnce,
        retain: false,
    };
    let (device, _) = broker
        .connect(
            new_session(),
            &ConnectOptions::new("device-7").with_will(will),
        )
        .await
        .expect("connects");
    // No DISCONNECT: the TCP connection just goes away.
    drop(device.into_transport());
    let (topic, payload, qos, _) = next_message(&mut watcher).await;
    assert_eq!(
        (topic.as_str(), payload.as_slice(), qos),
        ("will/device-7", &b"offline"[..], QoS::AtLeastOnce)
    );
}

#[tokio::test]
async fn a_persistent_session_receives_what_was_queued_while_offline() {
    let broker = Broker::start();
    let subs = [("queued/#", QoS::AtLeastOnce)];
    let options = ConnectOptions::new("sleeper")
        .with_persistent_session()
        .with_subscriptions(&subs);
    let (sleeper, connected) = broker
        .connect(new_session(), &options)
        .await
        .expect("connects");
    assert!(connected.granted.is_some(), "first connect subscribes");
    sleeper.disconnect().await.expect("disconnect");

    let (mut publisher, _) = broker
        .connect(new_session(), &ConnectOptions::new("waker"))
        .await
        .expect("connects");
    for i in 0..5u8 {
        publisher
            .publish(&format!("queued/{i}"), &[i], QoS::AtLeastOnce, false)
            .await
            .expect("published");
    }

    // A new `Session` (the device rebooted): mqtts cannot know that the
    // broker's session has the subscriptions, so it makes them again, which
    // keeps what the broker queued.
    let (mut sleeper, connected) = broker
        .connect(new_session(), &options)
        .await
        .expect("reconnects");
    assert!(connected.session_present, "the broker kept the session");
    assert!(
        connected.granted.is_some(),
        "a new Session subscribes again"
    );
    for i in 0..5u8 {
        let (topic, payload, qos, _) = next_message(&mut sleeper).await;
        assert_eq!(
            (topic, payload, qos),
            (format!("queued/{i}"), vec![i], QoS::AtLeastOnce)
        );
    }
}

/// Dials the broker on loopback; fails the first `fail_first` attempts.
struct LoopbackConnector {
    port: u16,
    fail_first: usize,
    attempts: Vec<u64>,
    timer: TokioTimer,
}

impl mqtts::reconnect::Connector for LoopbackConnector {
    type Socket<'a> = FromTokio<tokio::net::TcpStream>;

    async fn connect(&mut self) -> Result<Self::Socket<'_>, Error> {
        use mqtts::time::Timer as _;
        self.attempts.push(self.timer.now());
        if self.attempts.len() <= self.fail_first {
            return Err(Error::Io(embedded_io::ErrorKind::ConnectionRefused));
        }
        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, self.port))
            .await
            .map(FromTokio::new)
            .map_err(|e| Error::Io(embedded_io::ErrorKind::from(e.kind())))
    }
}

#[tokio::test]
async fn the_supervisor_backs_off_then_resubscribes_after_a_broker_restart() {
    use mqtts::reconnect::{Backoff, Supervisor};
    let mut broker = Broker::start();
    let timer = TokioTimer::new();
    let connector = LoopbackConnector {
        port: broker.mosquitto.port,
        fail_first: 2,
        attempts: Vec::new(),
        timer,
    };
    let backoff = Backoff {
        initial_ms: 100,
        max_ms: 400,
    };
    let mut supervisor = Supervisor::new(connector, timer, backoff);
    let tls = TlsOptions::new(SERVER_NAME, Trust::pinned(broker.pins));
    let subs = [("restart/#", QoS::AtLeastOnce)];
    let options = ConnectOptions::new("supervised")
        .with_subscriptions(&subs)
        .with_keep_alive(5);
    let session = new_session();
    let (mut tls_read, mut tls_write) = (vec![0u8; 16_640], vec![0u8; 2048]);
    let (mut rx, mut tx) = (vec![0u8; 4096], vec![0u8; 2048]);

    let mut connections = 0;
    let mut failures = Vec::new();
    let mut received = Vec::new();
    within("supervised session", async {
        while received.len() < 2 {
            let buffers = Buffers {
                tls_read: &mut tls_read,
                tls_write: &mut tls_write,
                rx: &mut rx,
                tx: &mut tx,
            };
            let (mut client, connected) = match supervisor
                .connect(&mut OsRng, &tls, &mut *session, buffers, &options)
                .await
            {
                Ok(ok) => ok,
                Err(failure) => {
                    failures.push(failure);
                    continue;
                }
            };
            connections += 1;
            assert!(
                connected.granted.is_some(),
                "subscribed on every new session"
            );
            // Publish to ourselves, receive it, then (the first time) crash the broker.
            client
                .publish(
                    &format!("restart/{connections}"),
                    b"ping",
                    QoS::AtLeastOnce,
                    false,
                )
                .await
                .expect("publish");
            loop {
                match client.poll().await {
                    Ok(Event::Message(m)) => {
                        received.push(m.topic.to_string());
                        break;
                    }
                    Ok(_) => {}
                    Err(e) => panic!("unexpected {e}"),
                }
            }
            if connections == 1 {
                broker.mosquitto.start_again();
                // The old connection is dead: the next poll says so.
                let error = within("poll after restart", client.poll())
                    .await
                    .expect_err("connection lost");
                assert!(
                    matches!(
                        error,
                        Error::ConnectionClosed | Error::Io(_) | Error::Tls(_)
                    ),
                    "{error:?}"
                );
            }
        }
    })
    .await;
    assert_eq!(received, ["restart/1", "restart/2"]);
    assert_eq!(connections, 2);
    // Two refused dials, with growing delays (jitter keeps each in the upper half).
    assert_eq!(failures.len(), 2, "{failures:?}");
    assert_eq!((failures[0].failures, failures[1].failures), (1, 2));
    assert!(
        (50..=100).contains(&failures[0].retry_in_ms),
        "{:?}",
        failures[0]
    );
    assert!(
        (100..=200).contains(&failures[1].retry_in_ms),
        "{:?}",
        failures[1]
    );
    let attempts = supervisor.connector().attempts.clone();
    assert!(
        attempts[1] - attempts[0] >= 50 && attempts[2] - attempts[1] >= 100,
        "{attempts:?}"
    );
}
