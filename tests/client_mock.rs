//! The MQTT client against a scripted broker (tests/support/mock_broker.rs)
//! on an in-memory pipe: every byte the client sends is checked against
//! MQTT 3.1.1 as written by hand in the mock, and every answer is built
//! by hand, including malformed ones.

// mqtts::Error is large by design (see src/lib.rs).
#![allow(clippy::result_large_err)]

mod support;

use std::cell::Cell;
use std::collections::HashSet;
use std::time::{Duration, Instant};

use mqtts::client::{Client, ConnectOptions, Connected, Event, MAX_FILTERS};
use mqtts::error::ConfigError;
use mqtts::mqtt::encode::Will;
use mqtts::mqtt::{ConnackCode, PacketId, PacketType, ProtocolError, QoS, TopicError};
use mqtts::transport::Plain;
use mqtts::{Error, Session};
use support::*;

type TestClient<'b, 's, const N: usize> =
    Client<'b, 's, Plain<ClientSocket, TokioTimer>, TokioTimer, N>;

/// `Client::connect` over `socket`, bounded by [`within`]. The transport
/// and the client share one timer (same epoch).
async fn connect<'b, 's, const N: usize>(
    socket: ClientSocket,
    session: &'b mut Session<'s, N>,
    rx: &'b mut [u8],
    tx: &'b mut [u8],
    options: &ConnectOptions<'_>,
) -> Result<(TestClient<'b, 's, N>, Connected), Error> {
    let timer = TokioTimer::new();
    within(
        "Client::connect",
        Client::connect(Plain::new(socket, timer), timer, session, rx, tx, options),
    )
    .await
}

/// The error of a connect that must fail (`Client` is not `Debug`).
async fn connect_error<const N: usize>(
    socket: ClientSocket,
    session: &mut Session<'_, N>,
    options: &ConnectOptions<'_>,
) -> Error {
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
    match connect(socket, session, &mut rx, &mut tx, options).await {
        Ok((_, connected)) => panic!("connect succeeded: {connected:?}"),
        Err(e) => e,
    }
}

/// A connected client and its broker, CONNECT already read and checked.
/// `$client` and `$broker` are bound in the caller's scope.
macro_rules! connected {
    ($client:ident, $broker:ident) => {
        connected!($client, $broker, n = 4, rx = 512, tx = 512, outbox = 1024);
    };
    ($client:ident, $broker:ident, n = $n:expr, rx = $rx:expr, tx = $tx:expr, outbox = $outbox:expr) => {
        connected!(
            $client,
            $broker,
            n = $n,
            rx = $rx,
            tx = $tx,
            outbox = $outbox,
            options = ConnectOptions::new("mock-client")
        );
    };
    ($client:ident, $broker:ident, n = $n:expr, rx = $rx:expr, tx = $tx:expr, outbox = $outbox:expr, options = $options:expr) => {
        let (socket, mut $broker) = mock_pair();
        let mut outbox = [0u8; $outbox];
        let mut session: Session<'_, $n> = Session::new(&mut outbox);
        let mut rx = [0u8; $rx];
        let mut tx = [0u8; $tx];
        let options = $options;
        $broker.send(&connack(false, 0)).await;
        #[allow(unused_mut)]
        let (mut $client, connected) = connect(socket, &mut session, &mut rx, &mut tx, &options)
            .await
            .expect("connect");
        assert_eq!(
            connected,
            Connected {
                session_present: false,
                resent: 0,
                discarded: 0,
                granted: None
            }
        );
        let connect_packet = $broker.expect_connect().await;
        assert_eq!(connect_packet.client_id, options.client_id);
    };
}

/// An [`Event`] with its data copied out of the client's buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Message {
        topic: String,
        payload: Vec<u8>,
        qos: QoS,
        id: Option<u16>,
        dup: bool,
        retain: bool,
    },
    Published(u16),
    TooLarge {
        size: usize,
        capacity: usize,
        qos: QoS,
        id: Option<u16>,
    },
    Subscribed {
        id: u16,
        refused: Option<usize>,
    },
    Unsubscribed(u16),
}

fn owned(event: Event<'_>) -> Ev {
    match event {
        Event::Message(p) => Ev::Message {
            topic: p.topic.to_owned(),
            payload: p.payload.to_vec(),
            qos: p.qos,
            id: p.packet_id.map(PacketId::get),
            dup: p.dup,
            retain: p.retain,
        },
        Event::Published(id) => Ev::Published(id.get()),
        Event::MessageTooLarge {
            size,
            capacity,
            qos,
            packet_id,
        } => Ev::TooLarge {
            size,
            capacity,
            qos,
            id: packet_id.map(PacketId::get),
        },
        Event::Subscribed { packet_id, refused } => Ev::Subscribed {
            id: packet_id.get(),
            refused,
        },
        Event::Unsubscribed(id) => Ev::Unsubscribed(id.get()),
        other => panic!("unexpected event {other:?}"),
    }
}

fn message(topic: &str, payload: &[u8], qos: QoS, id: Option<u16>) -> Ev {
    Ev::Message {
        topic: topic.to_owned(),
        payload: payload.to_vec(),
        qos,
        id,
        dup: false,
        retain: false,
    }
}

async fn poll<const N: usize>(client: &mut TestClient<'_, '_, N>) -> Result<Ev, Error> {
    within("poll", client.poll()).await.map(owned)
}

/// Every event `poll` reports until it has nothing for 500 ms (the
/// pending `poll` is then dropped, which is cancel-safe while it waits).
/// The next event if `poll` returns it within 2 s.
async fn poll_soon<const N: usize>(
    client: &mut TestClient<'_, '_, N>,
) -> Option<Result<Ev, Error>> {
    tokio::time::timeout(Duration::from_secs(2), client.poll())
        .await
        .map(|r| r.map(owned))
        .ok()
}

async fn drain_events<const N: usize>(client: &mut TestClient<'_, '_, N>) -> Vec<Ev> {
    let mut events = Vec::new();
    loop {
        match tokio::time::timeout(Duration::from_millis(500), client.poll()).await {
            Ok(Ok(event)) => events.push(owned(event)),
            Ok(Err(e)) => panic!("poll failed after {events:?}: {e:?}"),
            Err(_) => return events,
        }
        assert!(events.len() < 1000, "endless events: {:?}", &events[..10]);
    }
}

async fn client_publish<const N: usize>(
    client: &mut TestClient<'_, '_, N>,
    topic: &str,
    payload: &[u8],
    qos: QoS,
    retain: bool,
) -> Result<(), Error> {
    within("publish", client.publish(topic, payload, qos, retain)).await
}

async fn client_start<const N: usize>(
    client: &mut TestClient<'_, '_, N>,
    topic: &str,
    payload: &[u8],
    qos: QoS,
) -> Result<Option<u16>, Error> {
    within(
        "start_publish",
        client.start_publish(topic, payload, qos, false),
    )
    .await
    .map(|id| id.map(PacketId::get))
}

fn pid(n: u16) -> PacketId {
    PacketId::new(n).expect("non-zero")
}

fn qos_of(code: u8) -> QoS {
    match code {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        2 => QoS::ExactlyOnce,
        _ => panic!("QoS {code}"),
    }
}

fn published(topic: &str, payload: &[u8], qos: u8, id: Option<u16>, dup: bool) -> PublishPacket {
    PublishPacket {
        dup,
        qos,
        retain: false,
        topic: topic.to_owned(),
        id,
        payload: payload.to_vec(),
    }
}

// ---------------------------------------------------------------------------
// 1. CONNECT

/// Connects with `options` (CONNACK accepted) and returns the CONNECT frame.
async fn connect_frame(options: &ConnectOptions<'_>) -> Packet {
    let (socket, mut broker) = mock_pair();
    let mut outbox = [0u8; 64];
    let mut session: Session<'_, 1> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
    broker.send(&connack(false, 0)).await;
    let (_client, _) = connect(socket, &mut session, &mut rx, &mut tx, options)
        .await
        .expect("connect");
    let packet = broker.expect_packet().await;
    broker.expect_silence().await;
    packet
}

#[tokio::test]
async fn connect_carries_every_field_byte_by_byte() {
    let will = Will {
        topic: "status/dev-42",
        payload: b"gone \x00\xff",
        qos: QoS::AtLeastOnce,
        retain: true,
    };
    let options = ConnectOptions::new("dev-42")
        .with_credentials("user", b"p\x00ss")
        .with_keep_alive(2)
        .with_will(will);
    let packet = connect_frame(&options).await;
    let expected = ExpectedConnect {
        client_id: "dev-42",
        username: Some("user"),
        password: Some(b"p\x00ss"),
        keep_alive: 2,
        clean_session: true,
        will: Some(("status/dev-42", b"gone \x00\xff", 1, true)),
    };
    assert_eq!(packet.bytes(), expected.bytes());

    let fields = ConnectPacket::parse(&packet);
    assert_eq!(fields.protocol_name, "MQTT");
    assert_eq!(fields.protocol_level, 4);
    // user name, password, will retain, will QoS 1, will, clean session
    assert_eq!(fields.flags, 0b1110_1110);
    assert!(fields.clean_session() && fields.will_flag() && fields.will_retain());
    assert_eq!(fields.will_qos(), 1);
    assert_eq!(fields.keep_alive, 2);
    assert_eq!(fields.client_id, "dev-42");
    assert_eq!(fields.will_topic.as_deref(), Some("status/dev-42"));
    assert_eq!(fields.will_payload.as_deref(), Some(&b"gone \x00\xff"[..]));
    assert_eq!(fields.username.as_deref(), Some("user"));
    assert_eq!(fields.password.as_deref(), Some(&b"p\x00ss"[..]));
}

#[tokio::test]
async fn connect_minimal_persistent_session_literal_bytes() {
    let options = ConnectOptions::new("ab")
        .with_keep_alive(0)
        .with_persistent_session();
    let packet = connect_frame(&options).await;
    assert_eq!(
        packet.bytes(),
        [
            0x10, 0x0E, // CONNECT, remaining length 14
            0x00, 0x04, b'M', b'Q', b'T', b'T', // protocol name
            0x04, // level 3.1.1
            0x00, // no flags: persistent session
            0x00, 0x00, // keep-alive 0
            0x00, 0x02, b'a', b'b', // client id
        ]
    );
}

#[tokio::test]
async fn connect_flag_combinations() {
    // Username only, default keep-alive 60, clean session.
    let packet = connect_frame(&ConnectOptions::new("u").with_username("name")).await;
    let fields = ConnectPacket::parse(&packet);
    assert_eq!(fields.flags, 0b1000_0010);
    assert_eq!(fields.keep_alive, 60);
    assert_eq!(
        (fields.username.as_deref(), fields.password),
        (Some("name"), None)
    );

    // Will QoS 2 without retain.
    let will = Will {
        topic: "w",
        payload: b"",
        qos: QoS::ExactlyOnce,
        retain: false,
    };
    let options = ConnectOptions::new("w2").with_will(will);
    let packet = connect_frame(&options).await;
    assert_eq!(ConnectPacket::parse(&packet).flags, 0b0001_0110);
    let expected = ExpectedConnect {
        client_id: "w2",
        username: None,
        password: None,
        keep_alive: 60,
        clean_session: true,
        will: Some(("w", b"", 2, false)),
    };
    assert_eq!(packet.bytes(), expected.bytes());

    // Will QoS 0 retained, persistent session, a 300-byte client id (two-byte remaining length).
    let id = "x".repeat(300);
    let will = Will {
        topic: "w/0",
        payload: b"bye",
        qos: QoS::AtMostOnce,
        retain: true,
    };
    let options = ConnectOptions::new(&id)
        .with_will(will)
        .with_persistent_session()
        .with_keep_alive(65_535);
    let (socket, mut broker) = mock_pair();
    let mut outbox = [0u8; 64];
    let mut session: Session<'_, 1> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 512]);
    broker.send(&connack(false, 0)).await;
    let _client = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .expect("connect");
    let packet = broker.expect_packet().await;
    assert_eq!(ConnectPacket::parse(&packet).flags, 0b0010_0100);
    let expected = ExpectedConnect {
        client_id: &id,
        username: None,
        password: None,
        keep_alive: 65_535,
        clean_session: false,
        will: Some(("w/0", b"bye", 0, true)),
    };
    assert_eq!(packet.bytes(), expected.bytes());

    // An empty client id is allowed with a clean session (§3.1.3.1).
    let packet = connect_frame(&ConnectOptions::new("")).await;
    assert_eq!(ConnectPacket::parse(&packet).client_id, "");
}

#[tokio::test]
async fn connect_refuses_bad_options_before_sending() {
    let will_with_wildcard = Will {
        topic: "status/+",
        payload: b"",
        qos: QoS::AtMostOnce,
        retain: false,
    };
    let mut password_only = ConnectOptions::new("p");
    password_only.password = Some(b"secret");
    let bad_filters = [("ok", QoS::AtMostOnce), ("a/#/b", QoS::AtLeastOnce)];
    let too_many = [("f", QoS::AtMostOnce); MAX_FILTERS + 1];
    let cases = [
        (
            password_only,
            Error::Config(ConfigError::PasswordWithoutUserName),
        ),
        (
            ConnectOptions::new("").with_persistent_session(),
            Error::Config(ConfigError::EmptyClientIdNeedsCleanSession),
        ),
        (
            ConnectOptions::new("w").with_will(will_with_wildcard),
            Error::InvalidTopic(TopicError::Wildcard),
        ),
        (
            ConnectOptions::new("s").with_subscriptions(&bad_filters),
            Error::InvalidTopic(TopicError::MisplacedWildcard),
        ),
        (
            ConnectOptions::new("s").with_subscriptions(&too_many),
            Error::TooManyFilters { max: MAX_FILTERS },
        ),
    ];
    for (options, expected) in cases {
        let (socket, mut broker) = mock_pair();
        let mut outbox = [0u8; 64];
        let mut session: Session<'_, 1> = Session::new(&mut outbox);
        assert_eq!(
            connect_error(socket, &mut session, &options).await,
            expected
        );
        broker.expect_closed().await;
    }

    // A CONNECT larger than tx: nothing sent.
    let long_id = "i".repeat(100);
    let (socket, mut broker) = mock_pair();
    let mut outbox = [0u8; 64];
    let mut session: Session<'_, 1> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
    let result = connect(
        socket,
        &mut session,
        &mut rx,
        &mut tx,
        &ConnectOptions::new(&long_id),
    )
    .await;
    assert_eq!(
        result.err(),
        Some(Error::PacketTooLarge {
            size: 2 + 10 + 2 + 100,
            capacity: 64
        })
    );
    broker.expect_closed().await;
}

// ---------------------------------------------------------------------------
// 2. CONNACK

#[tokio::test]
async fn connack_refusal_codes_are_errors_that_name_the_cause() {
    let cases = [
        (1, ConnackCode::UnacceptableProtocolVersion, "3.1.1"),
        (2, ConnackCode::IdentifierRejected, "identifier"),
        (3, ConnackCode::ServerUnavailable, "unavailable"),
        (
            4,
            ConnackCode::BadUserNameOrPassword,
            "user name or password",
        ),
        (5, ConnackCode::NotAuthorized, "not authorized"),
    ];
    for (code, expected, cause) in cases {
        let (socket, mut broker) = mock_pair();
        let mut outbox = [0u8; 64];
        let mut session: Session<'_, 1> = Session::new(&mut outbox);
        broker.send(&connack(false, code)).await;
        let options = ConnectOptions::new("refused").with_credentials("u", b"p");
        let error = connect_error(socket, &mut session, &options).await;
        assert_eq!(error, Error::ConnectionRefused(expected), "code {code}");
        let text = error.to_string();
        assert!(text.contains("refused"), "code {code}: {text}");
        assert!(
            text.contains(cause),
            "code {code}: {text:?} should mention {cause:?}"
        );
        assert!(text.contains(&format!("code {code}")), "{text}");
        broker.expect_connect().await;
        // The client sends nothing more and lets go of the connection.
        broker.expect_closed().await;
    }
}

#[tokio::test]
async fn connack_reports_session_present() {
    for present in [false, true] {
        let (socket, mut broker) = mock_pair();
        let mut outbox = [0u8; 64];
        let mut session: Session<'_, 1> = Session::new(&mut outbox);
        let (mut rx, mut tx) = ([0u8; 64], [0u8; 64]);
        broker.send(&connack(present, 0)).await;
        let options = ConnectOptions::new("p").with_persistent_session();
        let (_client, connected) = connect(socket, &mut session, &mut rx, &mut tx, &options)
            .await
            .expect("connect");
        assert_eq!(
            connected,
            Connected {
                session_present: present,
                resent: 0,
                discarded: 0,
                granted: None
            }
        );
        assert!(!broker.expect_connect().await.clean_session());
        broker.expect_silence().await;
    }
}

#[tokio::test]
async fn anything_but_a_valid_connack_first_is_refused() {
    let cases: [(Vec<u8>, Error); 7] = [
        (
            [publish0("a", b"early"), connack(false, 0)].concat(),
            Error::Protocol(ProtocolError::UnexpectedPacket(PacketType::Publish)),
        ),
        (
            pingresp(),
            Error::Protocol(ProtocolError::UnexpectedPacket(PacketType::Pingresp)),
        ),
        (
            puback(1),
            Error::Protocol(ProtocolError::UnexpectedPacket(PacketType::Puback)),
        ),
        (
            vec![0x20, 0x00],
            Error::Protocol(ProtocolError::WrongLength {
                packet: PacketType::Connack,
                expected: 2,
                found: 0,
            }),
        ),
        (
            connack(false, 6),
            Error::Protocol(ProtocolError::InvalidConnackCode(6)),
        ),
        (
            // A refusal claiming a session (§3.2.2.2).
            connack(true, 5),
            Error::Protocol(ProtocolError::InvalidConnackFlags(1)),
        ),
        (
            vec![0x20, 0x02, 0x02, 0x00],
            Error::Protocol(ProtocolError::InvalidConnackFlags(2)),
        ),
    ];
    for (bytes, expected) in cases {
        let (socket, mut broker) = mock_pair();
        let mut outbox = [0u8; 64];
        let mut session: Session<'_, 1> = Session::new(&mut outbox);
        broker.send(&bytes).await;
        let error = connect_error(socket, &mut session, &ConnectOptions::new("c")).await;
        assert_eq!(error, expected, "{bytes:02x?}");
        broker.expect_connect().await;
        broker.expect_closed().await;
    }
}

#[tokio::test]
async fn connect_fails_when_the_broker_closes_or_stays_silent() {
    // Closed before CONNACK.
    let (socket, mut broker) = mock_pair();
    let mut outbox = [0u8; 64];
    let mut session: Session<'_, 1> = Session::new(&mut outbox);
    let options = ConnectOptions::new("c");
    let (error, ()) = tokio::join!(connect_error(socket, &mut session, &options), async {
        broker.expect_connect().await;
        drop(broker);
    });
    assert_eq!(error, Error::ConnectionClosed);

    // Silent: the connect timeout applies.
    let (socket, mut broker) = mock_pair();
    let options = ConnectOptions::new("c").with_connect_timeout_ms(300);
    let start = Instant::now();
    let error = connect_error(socket, &mut session, &options).await;
    let elapsed = start.elapsed();
    assert_eq!(error, Error::ConnackTimeout);
    assert!(
        (Duration::from_millis(250)..Duration::from_millis(2000)).contains(&elapsed),
        "{elapsed:?}"
    );
    broker.expect_connect().await;
}

// ---------------------------------------------------------------------------
// 3. Publish

#[tokio::test]
async fn publish_qos0_and_retain_literal_bytes() {
    connected!(client, broker);
    client_publish(&mut client, "a/b", b"hi", QoS::AtMostOnce, false)
        .await
        .unwrap();
    broker
        .expect_bytes(&[0x30, 0x07, 0x00, 0x03, b'a', b'/', b'b', b'h', b'i'])
        .await;
    client_publish(&mut client, "a/b", b"", QoS::AtMostOnce, true)
        .await
        .unwrap();
    broker
        .expect_bytes(&[0x31, 0x05, 0x00, 0x03, b'a', b'/', b'b'])
        .await;
    // A payload of 200 bytes: two-byte remaining length.
    let payload = [0x5Au8; 200];
    client_publish(&mut client, "t", &payload, QoS::AtMostOnce, false)
        .await
        .unwrap();
    let mut expected = vec![0x30, 0xCB, 0x01, 0x00, 0x01, b't'];
    expected.extend_from_slice(&payload);
    broker.expect_bytes(&expected).await;
    assert_eq!(
        client_start(&mut client, "t", b"x", QoS::AtMostOnce).await,
        Ok(None)
    );
    broker.expect_bytes(&publish0("t", b"x")).await;
    broker.expect_silence().await;
}

#[tokio::test]
async fn publish_qos1_returns_only_after_puback() {
    connected!(client, broker);
    let acked = Cell::new(false);
    let (result, id) = tokio::join!(
        async {
            let result = client_publish(&mut client, "t/1", b"one", QoS::AtLeastOnce, true).await;
            assert!(acked.get(), "publish() returned before PUBACK");
            result
        },
        async {
            let packet = broker.expect_kind(kind::PUBLISH).await;
            assert_eq!(packet.first, 0x33, "QoS 1, retain, no DUP");
            let p = PublishPacket::parse(&packet);
            let id = p.id.expect("QoS 1 has an identifier");
            assert_eq!(packet.bytes(), publish("t/1", b"one", 1, id, false, true));
            // Unrelated traffic first: the client must keep waiting.
            tokio::time::sleep(Duration::from_millis(100)).await;
            broker.send(&pingresp()).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            acked.set(true);
            broker.send(&puback(id)).await;
            id
        }
    );
    result.unwrap();
    assert_ne!(id, 0);
    broker.expect_silence().await;
    // The completion is not reported again by poll.
    broker.send(&publish0("next", b"")).await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("next", b"", QoS::AtMostOnce, None))
    );
}

#[tokio::test]
async fn publish_qos2_full_handshake() {
    connected!(client, broker);
    let completed = Cell::new(false);
    let (result, ()) = tokio::join!(
        async {
            let result = client_publish(&mut client, "t/2", b"two", QoS::ExactlyOnce, false).await;
            assert!(completed.get(), "publish() returned before PUBCOMP");
            result
        },
        async {
            let packet = broker.expect_kind(kind::PUBLISH).await;
            assert_eq!(packet.first, 0x34, "QoS 2, no retain, no DUP");
            let p = PublishPacket::parse(&packet);
            let id = p.id.expect("QoS 2 has an identifier");
            assert_eq!(p, published("t/2", b"two", 2, Some(id), false));
            broker.send(&pubrec(id)).await;
            // PUBREL is exactly 62 02 <id> (flags 0b0010).
            broker.expect_bytes(&pubrel(id)).await;
            tokio::time::sleep(Duration::from_millis(100)).await;
            completed.set(true);
            broker.send(&pubcomp(id)).await;
        }
    );
    result.unwrap();
    broker.expect_silence().await;
}

#[tokio::test]
async fn pipelined_publishes_complete_in_any_order_and_ids_never_collide() {
    connected!(client, broker, n = 4, rx = 256, tx = 256, outbox = 1024);
    let a = client_start(&mut client, "p/a", b"a", QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    let b = client_start(&mut client, "p/b", b"b", QoS::ExactlyOnce)
        .await
        .unwrap()
        .unwrap();
    let c = client_start(&mut client, "p/c", b"c", QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    let d = client_start(&mut client, "p/d", b"d", QoS::ExactlyOnce)
        .await
        .unwrap()
        .unwrap();
    let ids = [a, b, c, d];
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 4, "{ids:?}");
    for (id, (topic, qos)) in ids
        .iter()
        .zip([("p/a", 1), ("p/b", 2), ("p/c", 1), ("p/d", 2)])
    {
        let p = broker.expect_publish().await;
        assert_eq!(
            p,
            published(topic, &topic.as_bytes()[2..], qos, Some(*id), false)
        );
    }
    // Four in flight: a fifth is refused and nothing is sent.
    assert_eq!(
        client_start(&mut client, "p/e", b"e", QoS::AtLeastOnce).await,
        Err(Error::InFlightFull { max: 4 })
    );
    assert_eq!(
        client_start(&mut client, "p/e", b"e", QoS::ExactlyOnce).await,
        Err(Error::InFlightFull { max: 4 })
    );
    broker.expect_silence().await;
    // QoS 0 needs no slot.
    assert_eq!(
        client_start(&mut client, "p/z", b"z", QoS::AtMostOnce).await,
        Ok(None)
    );
    broker.expect_bytes(&publish0("p/z", b"z")).await;

    // Acknowledged out of order.
    broker
        .send(&[pubrec(d), puback(c), pubrec(b), puback(a)].concat())
        .await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(c)));
    assert_eq!(broker.expect_pubrel().await, d);
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(a)));
    assert_eq!(broker.expect_pubrel().await, b);

    // b and d await PUBCOMP: two more fit, with identifiers not in flight.
    let e = client_start(&mut client, "p/e", b"e", QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    let f = client_start(&mut client, "p/f", b"f", QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    assert!(
        ![b, d, e].contains(&f) && ![b, d].contains(&e),
        "{b} {d} {e} {f}"
    );
    assert_eq!(
        client_start(&mut client, "p/g", b"g", QoS::AtLeastOnce).await,
        Err(Error::InFlightFull { max: 4 })
    );
    assert_eq!(broker.expect_publish().await.id, Some(e));
    assert_eq!(broker.expect_publish().await.id, Some(f));
    broker
        .send(&[pubcomp(b), puback(f), pubcomp(d), puback(e)].concat())
        .await;
    let mut done = Vec::new();
    for _ in 0..4 {
        done.push(poll(&mut client).await.unwrap());
    }
    assert_eq!(
        done,
        [b, f, d, e].map(Ev::Published),
        "completions in the order the broker sent them"
    );
    broker.expect_silence().await;
}

/// Reads PUBLISH packets in bulk and acknowledges each at once until
/// `count` were seen; returns their identifiers in order.
async fn ack_publishes(broker: &mut MockBroker, count: usize) -> Vec<u16> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut ids = Vec::with_capacity(count);
    let mut pending = Vec::new();
    let mut chunk = vec![0u8; 64 * 1024];
    while ids.len() < count {
        let n = tokio::time::timeout(PACKET_TIMEOUT, broker.stream().read(&mut chunk))
            .await
            .expect("no PUBLISH within the timeout")
            .expect("read");
        assert_ne!(n, 0, "the client closed after {} messages", ids.len());
        pending.extend_from_slice(&chunk[..n]);
        let mut acks = Vec::new();
        for packet in split_frames(&mut pending) {
            assert_eq!(packet.first, 0x32, "QoS 1 PUBLISH expected: {packet:?}");
            let id = u16::from_be_bytes([packet.body[3], packet.body[4]]);
            ids.push(id);
            acks.extend(puback(id));
        }
        broker.stream().write_all(&acks).await.expect("write");
    }
    assert!(pending.is_empty());
    ids
}

#[tokio::test]
async fn packet_ids_wrap_from_65535_to_1_skipping_ids_in_flight() {
    // N = 8: one message stays in flight the whole time; seven cycle.
    connected!(client, broker, n = 8, rx = 256, tx = 256, outbox = 1024);
    let started = Instant::now();
    let stuck = client_start(&mut client, "w", b"", QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(stuck, 1, "identifiers start at 1");
    assert_eq!(broker.expect_publish().await.id, Some(stuck));

    // 65,534 messages take identifiers 2..=65535, then 5 more must wrap
    // past 65,535 and skip 1 (still in flight): 2, 3, 4, 5, 6.
    const TOTAL: usize = 65_534 + 5;
    let (sent, acked) = tokio::join!(
        async {
            let mut in_flight = HashSet::new();
            let mut sent = Vec::with_capacity(TOTAL);
            while sent.len() < TOTAL || !in_flight.is_empty() {
                if sent.len() < TOTAL && in_flight.len() < 7 {
                    let id = client_start(&mut client, "w", b"", QoS::AtLeastOnce)
                        .await
                        .unwrap()
                        .unwrap();
                    assert!(id != stuck && in_flight.insert(id), "id {id} is in flight");
                    sent.push(id);
                } else {
                    match poll(&mut client).await.unwrap() {
                        Ev::Published(id) => assert!(in_flight.remove(&id), "{id}"),
                        other => panic!("{other:?}"),
                    }
                }
            }
            sent
        },
        ack_publishes(&mut broker, TOTAL)
    );
    assert_eq!(sent, acked);
    let expected: Vec<u16> = (2..=65_535).chain(2..=6).collect();
    assert_eq!(sent.len(), expected.len());
    if let Some(i) = (0..sent.len()).find(|&i| sent[i] != expected[i]) {
        panic!("message #{i} got id {}, expected {}", sent[i], expected[i]);
    }
    broker.send(&puback(stuck)).await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(stuck)));
    assert_eq!(
        client_start(&mut client, "w", b"", QoS::AtLeastOnce).await,
        Ok(Some(7))
    );
    assert!(
        started.elapsed() < Duration::from_secs(20),
        "{:?}",
        started.elapsed()
    );
}

// ---------------------------------------------------------------------------
// 4. Receive

#[tokio::test]
async fn incoming_qos0_1_2_are_delivered_and_acknowledged_at_the_next_poll() {
    connected!(client, broker);
    // QoS 0, retained.
    broker
        .send(&publish("r/0", b"zero", 0, 0, false, true))
        .await;
    let mut expected = message("r/0", b"zero", QoS::AtMostOnce, None);
    if let Ev::Message { retain, .. } = &mut expected {
        *retain = true;
    }
    assert_eq!(poll(&mut client).await, Ok(expected));

    // QoS 1: PUBACK only when poll is called again.
    broker
        .send(&publish("r/1", b"one", 1, 7, false, false))
        .await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("r/1", b"one", QoS::AtLeastOnce, Some(7)))
    );
    broker.expect_silence().await;

    // QoS 2 (the PUBACK for 7 goes out first).
    broker
        .send(&publish("r/2", b"two", 2, 9, false, false))
        .await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("r/2", b"two", QoS::ExactlyOnce, Some(9)))
    );
    broker.expect_bytes(&puback(7)).await;
    broker.expect_silence().await;

    // A duplicate of 9 before PUBREL: PUBREC again, not delivered again.
    broker
        .send(&publish("r/2", b"two", 2, 9, true, false))
        .await;
    broker.send(&publish0("r/end", b"x")).await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("r/end", b"x", QoS::AtMostOnce, None))
    );
    broker.expect_bytes(&pubrec(9)).await;
    broker.expect_bytes(&pubrec(9)).await;
    broker.expect_silence().await;

    // PUBREL 9 -> PUBCOMP 9; then 9 is a new message.
    broker.send(&pubrel(9)).await;
    broker
        .send(&publish("r/2", b"again", 2, 9, false, false))
        .await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("r/2", b"again", QoS::ExactlyOnce, Some(9)))
    );
    broker.expect_bytes(&pubcomp(9)).await;
    broker.send(&publish0("r/end", b"y")).await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("r/end", b"y", QoS::AtMostOnce, None))
    );
    broker.expect_bytes(&pubrec(9)).await;
    broker.expect_silence().await;
}

#[tokio::test]
async fn incoming_dup_flags_and_qos1_redelivery() {
    connected!(client, broker);
    // QoS 1 has no duplicate detection: a redelivery is delivered, with DUP.
    broker.send(&publish("d", b"1", 1, 3, false, false)).await;
    broker.send(&publish("d", b"1", 1, 3, true, true)).await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("d", b"1", QoS::AtLeastOnce, Some(3)))
    );
    assert_eq!(
        poll(&mut client).await,
        Ok(Ev::Message {
            topic: "d".into(),
            payload: b"1".to_vec(),
            qos: QoS::AtLeastOnce,
            id: Some(3),
            dup: true,
            retain: true,
        })
    );
    broker.expect_bytes(&puback(3)).await;
    // A QoS 2 first delivery that carries DUP (the broker sent it on an
    // earlier connection) is still new to this session.
    broker.send(&publish("d2", b"2", 2, 4, true, false)).await;
    let event = poll(&mut client).await.unwrap();
    assert!(
        matches!(
            &event,
            Ev::Message {
                dup: true,
                id: Some(4),
                ..
            }
        ),
        "{event:?}"
    );
    broker.expect_bytes(&puback(3)).await;
}

#[tokio::test]
async fn frames_split_into_single_bytes_are_reassembled() {
    connected!(client, broker);
    let payload: Vec<u8> = (0..=255u8).collect();
    let stream = [
        publish("split/1", &payload, 1, 0x0102, false, false),
        pubrel(0x0A0B),
        publish0("split/2", b"second"),
    ]
    .concat();
    let (event, ()) = tokio::join!(poll(&mut client), broker.send_bytewise(&stream));
    assert_eq!(
        event,
        Ok(message("split/1", &payload, QoS::AtLeastOnce, Some(0x0102)))
    );
    assert_eq!(
        poll(&mut client).await,
        Ok(message("split/2", b"second", QoS::AtMostOnce, None))
    );
    broker.expect_bytes(&puback(0x0102)).await;
    broker.expect_bytes(&pubcomp(0x0A0B)).await;
}

// ---------------------------------------------------------------------------
// 5. Messages arriving while publish() waits

#[tokio::test]
async fn messages_arriving_during_publish_are_delivered_in_order() {
    connected!(client, broker);
    let (result, ()) = tokio::join!(
        client_publish(&mut client, "out", b"o", QoS::AtLeastOnce, false),
        async {
            let id = broker.expect_publish().await.id.unwrap();
            broker.send(&publish0("in/1", b"m1")).await;
            broker
                .send(&publish("in/2", b"m2", 1, 100, false, false))
                .await;
            broker
                .send(&publish("in/3", b"m3", 2, 101, false, false))
                .await;
            broker.send(&publish0("in/4", b"m4")).await;
            broker.send(&puback(id)).await;
        }
    );
    result.unwrap();
    // Nothing was acknowledged before delivery.
    broker.expect_silence().await;
    broker.send(&publish0("in/5", b"m5")).await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("in/1", b"m1", QoS::AtMostOnce, None))
    );
    assert_eq!(
        poll(&mut client).await,
        Ok(message("in/2", b"m2", QoS::AtLeastOnce, Some(100)))
    );
    assert_eq!(
        poll(&mut client).await,
        Ok(message("in/3", b"m3", QoS::ExactlyOnce, Some(101)))
    );
    broker.expect_bytes(&puback(100)).await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("in/4", b"m4", QoS::AtMostOnce, None))
    );
    broker.expect_bytes(&pubrec(101)).await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("in/5", b"m5", QoS::AtMostOnce, None))
    );
    broker.expect_silence().await;
}

#[tokio::test]
async fn messages_arriving_during_qos2_publish_and_subscribe_are_kept() {
    connected!(client, broker);
    let (result, ()) = tokio::join!(
        client_publish(&mut client, "out", b"o", QoS::ExactlyOnce, false),
        async {
            let id = broker.expect_publish().await.id.unwrap();
            broker.send(&publish0("q/1", b"1")).await;
            broker.send(&pubrec(id)).await;
            assert_eq!(broker.expect_pubrel().await, id);
            broker.send(&publish0("q/2", b"2")).await;
            broker.send(&pubcomp(id)).await;
        }
    );
    result.unwrap();
    let (granted, ()) = tokio::join!(
        within("subscribe", client.subscribe(&[("q/#", QoS::AtMostOnce)])),
        async {
            let (id, _) = broker.expect_subscribe().await;
            broker.send(&publish0("q/3", b"3")).await;
            broker.send(&suback(id, &[0])).await;
        }
    );
    assert_eq!(granted.unwrap().as_slice(), [QoS::AtMostOnce]);
    for (topic, payload) in [("q/1", b"1"), ("q/2", b"2"), ("q/3", b"3")] {
        assert_eq!(
            poll(&mut client).await,
            Ok(message(topic, payload, QoS::AtMostOnce, None))
        );
    }
    broker.expect_silence().await;
}

#[tokio::test]
async fn publish_reports_ack_pending_when_messages_fill_rx() {
    // rx holds two 15-byte messages, not three.
    connected!(client, broker, n = 4, rx = 40, tx = 64, outbox = 256);
    let m = |i: u8| publish0(&format!("q/{i}"), b"aaaaaaaa");
    assert_eq!(m(1).len(), 15);
    let (result, id) = tokio::join!(
        client_publish(&mut client, "out", b"o", QoS::AtLeastOnce, false),
        async {
            let id = broker.expect_publish().await.id.unwrap();
            broker.send(&[m(1), m(2), m(3)].concat()).await;
            broker.send(&puback(id)).await;
            id
        }
    );
    assert_eq!(result, Err(Error::AckPending(pid(id))));
    assert!(!client.is_broken());
    for i in 1..=3 {
        assert_eq!(
            poll(&mut client).await,
            Ok(message(
                &format!("q/{i}"),
                b"aaaaaaaa",
                QoS::AtMostOnce,
                None
            ))
        );
    }
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(id)));
    broker.expect_silence().await;
}

// ---------------------------------------------------------------------------
// 6. Oversize

fn oversized_stream() -> Vec<u8> {
    let big0 = publish("big/0", &[0xAA; 200], 0, 0, false, false);
    let big1 = publish("big/1", &[0xBB; 300], 1, 5, false, false);
    // 3-byte fixed headers: 3 + 2 + 5 + 200 and 3 + 2 + 5 + 2 + 300.
    assert_eq!((big0.len(), big1.len()), (210, 312));
    let after = publish("ok", b"intact", 1, 6, false, false);
    [big0, big1, after].concat()
}

const OVERSIZED_EVENTS: [Ev; 2] = [
    Ev::TooLarge {
        size: 210,
        capacity: 64,
        qos: QoS::AtMostOnce,
        id: None,
    },
    Ev::TooLarge {
        size: 312,
        capacity: 64,
        qos: QoS::AtLeastOnce,
        id: Some(5),
    },
];

#[tokio::test]
async fn oversized_messages_are_reported_skipped_and_acknowledged() {
    connected!(client, broker, n = 4, rx = 64, tx = 64, outbox = 256);
    broker.send(&oversized_stream()).await;
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(poll(&mut client).await.unwrap());
    }
    // The order between the reports and the next message is checked by
    // oversized_message_events_come_in_arrival_order.
    let (reports, messages): (Vec<Ev>, Vec<Ev>) = events
        .into_iter()
        .partition(|e| matches!(e, Ev::TooLarge { .. }));
    assert_eq!(reports, OVERSIZED_EVENTS);
    assert_eq!(
        messages,
        [message("ok", b"intact", QoS::AtLeastOnce, Some(6))]
    );
    assert_eq!(broker.expect_puback().await, 5);
    broker.send(&publish0("ok", b"again")).await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("ok", b"again", QoS::AtMostOnce, None))
    );
    assert_eq!(broker.expect_puback().await, 6);
    broker.expect_silence().await;
}

#[tokio::test]
async fn oversized_message_events_come_in_arrival_order() {
    connected!(client, broker, n = 4, rx = 64, tx = 64, outbox = 256);
    broker.send(&oversized_stream()).await;
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(poll(&mut client).await.unwrap());
    }
    let mut expected = OVERSIZED_EVENTS.to_vec();
    expected.push(message("ok", b"intact", QoS::AtLeastOnce, Some(6)));
    assert_eq!(events, expected, "events in the order the messages arrived");
}

#[tokio::test]
async fn oversized_messages_trickling_in_are_skipped_exactly() {
    connected!(client, broker, n = 4, rx = 64, tx = 64, outbox = 256);
    let big2 = publish("big/2", &[0xCC; 1000], 2, 0x0777, false, false);
    let after = publish0("ok", b"intact");
    let mut events = Vec::new();
    let (first, ()) = tokio::join!(poll(&mut client), async {
        // In pieces that do not line up with anything.
        for piece in [
            &big2[..1],
            &big2[1..4],
            &big2[4..30],
            &big2[30..500],
            &big2[500..],
        ] {
            broker.send(piece).await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        broker.send_bytewise(&after).await;
    });
    events.push(first.unwrap());
    events.push(poll(&mut client).await.unwrap());
    // Reports first (their order relative to messages is checked by
    // oversized_message_events_come_in_arrival_order).
    events.sort_by_key(|e| matches!(e, Ev::Message { .. }));
    assert_eq!(
        events,
        [
            Ev::TooLarge {
                size: 1012,
                capacity: 64,
                qos: QoS::ExactlyOnce,
                id: Some(0x0777)
            },
            message("ok", b"intact", QoS::AtMostOnce, None),
        ]
    );
    assert_eq!(broker.expect_pubrec().await, 0x0777);
}

#[tokio::test]
async fn a_lone_oversized_message_is_reported_without_further_traffic() {
    connected!(client, broker, n = 4, rx = 64, tx = 64, outbox = 256);
    broker
        .send(&publish("big", &[0u8; 100], 1, 9, false, false))
        .await;
    assert_eq!(
        poll_soon(&mut client).await,
        // The whole packet: 2 header bytes + 107 remaining.
        Some(Ok(Ev::TooLarge {
            size: 109,
            capacity: 64,
            qos: QoS::AtLeastOnce,
            id: Some(9)
        })),
        "poll() should report MessageTooLarge as soon as the message is skipped"
    );
    assert_eq!(broker.expect_puback().await, 9);
}

/// The same for QoS 0, which owes no acknowledgement (nothing is written
/// after the skip): the report must not wait for the rest of the message.
#[tokio::test]
async fn a_lone_oversized_qos0_message_is_reported_before_its_end_arrives() {
    connected!(client, broker, n = 4, rx = 64, tx = 64, outbox = 256);
    let big = publish("big", &[0u8; 100], 0, 0, false, false);
    let (head, rest) = big.split_at(64);
    broker.send(head).await;
    assert_eq!(
        poll_soon(&mut client).await,
        // 2 header bytes + 105 remaining (no packet identifier).
        Some(Ok(Ev::TooLarge {
            size: 107,
            capacity: 64,
            qos: QoS::AtMostOnce,
            id: None
        })),
        "poll() should report MessageTooLarge as soon as the message is skipped"
    );
    // The rest is discarded as it arrives; the stream stays intact.
    broker.send(rest).await;
    broker
        .send(&publish("ok", b"intact", 0, 0, false, false))
        .await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("ok", b"intact", QoS::AtMostOnce, None))
    );
}

#[tokio::test]
async fn a_frame_exactly_the_size_of_rx_is_delivered() {
    connected!(client, broker, n = 4, rx = 64, tx = 64, outbox = 256);
    let exact = publish("e", &[7u8; 59], 0, 0, false, false);
    assert_eq!(exact.len(), 64);
    let over = publish("e", &[8u8; 60], 0, 0, false, false);
    broker
        .send(&[exact, over, publish0("e", b"end")].concat())
        .await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("e", &[7u8; 59], QoS::AtMostOnce, None))
    );
    let mut rest = vec![
        poll(&mut client).await.unwrap(),
        poll(&mut client).await.unwrap(),
    ];
    // See oversized_message_events_come_in_arrival_order.
    rest.sort_by_key(|e| matches!(e, Ev::Message { .. }));
    assert_eq!(
        rest,
        [
            Ev::TooLarge {
                size: 65,
                capacity: 64,
                qos: QoS::AtMostOnce,
                id: None
            },
            message("e", b"end", QoS::AtMostOnce, None)
        ]
    );
}

#[tokio::test]
async fn an_oversized_control_packet_is_frame_too_large() {
    connected!(client, broker, n = 4, rx = 64, tx = 64, outbox = 256);
    // A SUBACK with 100 return codes: 2 + 102 bytes.
    broker.send(&suback(1, &[0u8; 100])).await;
    assert_eq!(
        poll(&mut client).await,
        Err(Error::FrameTooLarge {
            packet: PacketType::Suback,
            size: 104,
            capacity: 64
        })
    );
    assert!(client.is_broken());
}

// ---------------------------------------------------------------------------
// 7. Subscribe and unsubscribe

#[tokio::test]
async fn subscribe_seven_filters_reports_granted_qos_per_filter() {
    connected!(client, broker);
    let filters = [
        ("s/1", QoS::AtMostOnce),
        ("s/+/x", QoS::AtLeastOnce),
        ("s/#", QoS::ExactlyOnce),
        ("+", QoS::AtLeastOnce),
        ("#", QoS::ExactlyOnce),
        ("s/3", QoS::ExactlyOnce),
        ("+/+/+/#", QoS::AtLeastOnce),
    ];
    // The broker may grant less than asked.
    let codes = [0u8, 1, 1, 0, 2, 1, 1];
    let (granted, ()) = tokio::join!(within("subscribe", client.subscribe(&filters)), async {
        let (id, got) = broker.expect_subscribe().await;
        let asked: Vec<(String, u8)> = filters
            .iter()
            .map(|(f, q)| (f.to_string(), *q as u8))
            .collect();
        assert_eq!(got, asked);
        broker.send(&suback(id, &codes)).await;
    });
    assert_eq!(granted.unwrap().as_slice(), codes.map(qos_of).as_slice());

    // Literal bytes of a one-filter SUBSCRIBE.
    let (granted, ()) = tokio::join!(
        within("subscribe", client.subscribe(&[("a/+", QoS::AtLeastOnce)])),
        async {
            let packet = broker.expect_packet().await;
            let [hi, lo] = [packet.body[0], packet.body[1]];
            assert_eq!(
                packet.bytes(),
                [0x82, 0x08, hi, lo, 0x00, 0x03, b'a', b'/', b'+', 0x01]
            );
            broker
                .send(&suback(u16::from_be_bytes([hi, lo]), &[1]))
                .await;
        }
    );
    assert_eq!(granted.unwrap().as_slice(), [QoS::AtLeastOnce]);
    broker.expect_silence().await;
}

#[tokio::test]
async fn refused_subscription_names_the_filter() {
    connected!(client, broker);
    let filters = [
        ("ok/1", QoS::AtMostOnce),
        ("ok/2", QoS::AtLeastOnce),
        ("forbidden/#", QoS::AtLeastOnce),
    ];
    let (result, ()) = tokio::join!(within("subscribe", client.subscribe(&filters)), async {
        let (id, _) = broker.expect_subscribe().await;
        broker.send(&suback(id, &[0, 1, 0x80])).await;
    });
    match result {
        Err(Error::SubscriptionRefused { index, filter }) => {
            assert_eq!((index, filter.as_str()), (2, "forbidden/#"));
        }
        other => panic!("{other:?}"),
    }
    // Not a broken connection.
    client_publish(&mut client, "still/here", b"", QoS::AtMostOnce, false)
        .await
        .unwrap();
    broker.expect_bytes(&publish0("still/here", b"")).await;
}

#[tokio::test]
async fn suback_with_the_wrong_number_of_codes_is_a_protocol_error() {
    connected!(client, broker);
    let filters = [("a", QoS::AtMostOnce), ("b", QoS::AtMostOnce)];
    let (result, ()) = tokio::join!(within("subscribe", client.subscribe(&filters)), async {
        let (id, _) = broker.expect_subscribe().await;
        broker.send(&suback(id, &[0])).await;
    });
    assert_eq!(
        result,
        Err(Error::Protocol(ProtocolError::SubackCountMismatch {
            expected: 2,
            found: 1
        }))
    );
}

#[tokio::test]
async fn invalid_topics_and_filters_are_refused_and_nothing_is_sent() {
    connected!(client, broker);
    let sub = |f: &'static str| [("fine", QoS::AtMostOnce), (f, QoS::AtLeastOnce)];
    for (filter, error) in [
        ("a/#/b", TopicError::MisplacedWildcard),
        ("a#", TopicError::MisplacedWildcard),
        ("a/b+", TopicError::MisplacedWildcard),
        ("", TopicError::Empty),
        ("a\0b", TopicError::NullCharacter),
    ] {
        assert_eq!(
            within("subscribe", client.subscribe(&sub(filter))).await,
            Err(Error::InvalidTopic(error)),
            "subscribe {filter:?}"
        );
        assert_eq!(
            within("unsubscribe", client.unsubscribe(&["fine", filter])).await,
            Err(Error::InvalidTopic(error)),
            "unsubscribe {filter:?}"
        );
    }
    for (topic, error) in [
        ("a/+", TopicError::Wildcard),
        ("a/#", TopicError::Wildcard),
        ("+", TopicError::Wildcard),
        ("", TopicError::Empty),
        ("a\0", TopicError::NullCharacter),
    ] {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            assert_eq!(
                client_publish(&mut client, topic, b"p", qos, false).await,
                Err(Error::InvalidTopic(error)),
                "publish {topic:?} {qos:?}"
            );
            assert_eq!(
                client_start(&mut client, topic, b"p", qos).await,
                Err(Error::InvalidTopic(error)),
                "start_publish {topic:?} {qos:?}"
            );
        }
    }
    let too_many = [("f", QoS::AtMostOnce); MAX_FILTERS + 1];
    assert_eq!(
        within("subscribe", client.subscribe(&too_many)).await,
        Err(Error::TooManyFilters { max: MAX_FILTERS })
    );
    assert_eq!(
        within("unsubscribe", client.unsubscribe(&["f"; MAX_FILTERS + 1])).await,
        Err(Error::TooManyFilters { max: MAX_FILTERS })
    );
    broker.expect_silence().await;
    assert!(!client.is_broken());
    // The session took no identifier and no outbox room for the refused messages.
    let (result, ()) = tokio::join!(
        client_publish(&mut client, "valid", b"v", QoS::AtLeastOnce, false),
        async {
            let p = broker.expect_publish().await;
            assert_eq!(p, published("valid", b"v", 1, Some(1), false));
            broker.send(&puback(1)).await;
        }
    );
    result.unwrap();
}

#[tokio::test]
async fn unsubscribe_waits_for_unsuback() {
    connected!(client, broker);
    let done = Cell::new(false);
    let (result, ()) = tokio::join!(
        async {
            let result = within("unsubscribe", client.unsubscribe(&["s/1", "s/#"])).await;
            assert!(done.get(), "unsubscribe() returned before UNSUBACK");
            result
        },
        async {
            let packet = broker.expect_packet().await;
            let (id, filters) = parse_unsubscribe(&packet);
            assert_eq!(filters, ["s/1", "s/#"]);
            let [hi, lo] = id.to_be_bytes();
            assert_eq!(
                packet.bytes(),
                [
                    0xA2, 0x0C, hi, lo, 0, 3, b's', b'/', b'1', 0, 3, b's', b'/', b'#'
                ]
            );
            // Someone else's UNSUBACK first: ignored.
            broker.send(&unsuback(id.wrapping_add(100))).await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            done.set(true);
            broker.send(&unsuback(id)).await;
        }
    );
    result.unwrap();
    broker.expect_silence().await;
}

#[tokio::test]
async fn subscribe_ids_do_not_collide_with_messages_in_flight() {
    connected!(client, broker);
    let a = client_start(&mut client, "t", b"", QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    let b = client_start(&mut client, "t", b"", QoS::ExactlyOnce)
        .await
        .unwrap()
        .unwrap();
    broker.expect_publish().await;
    broker.expect_publish().await;
    let (granted, sub_id) = tokio::join!(
        within("subscribe", client.subscribe(&[("x", QoS::AtMostOnce)])),
        async {
            let (id, _) = broker.expect_subscribe().await;
            broker.send(&suback(id, &[0])).await;
            id
        }
    );
    granted.unwrap();
    assert!(![a, b].contains(&sub_id), "SUBSCRIBE reused id {sub_id}");
    let (result, unsub_id) =
        tokio::join!(within("unsubscribe", client.unsubscribe(&["x"])), async {
            let (id, _) = broker.expect_unsubscribe().await;
            broker.send(&unsuback(id)).await;
            id
        });
    result.unwrap();
    assert!(
        ![a, b].contains(&unsub_id),
        "UNSUBSCRIBE reused id {unsub_id}"
    );
    // A PUBACK carrying the SUBSCRIBE's id does not complete anything.
    broker.send(&[puback(sub_id), puback(a)].concat()).await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(a)));
}

// ---------------------------------------------------------------------------
// 8. Malformed frames from the broker

fn malformed_frames() -> Vec<(Vec<u8>, ProtocolError)> {
    use PacketType as P;
    vec![
        (
            vec![0x20, 0x00],
            ProtocolError::WrongLength {
                packet: P::Connack,
                expected: 2,
                found: 0,
            },
        ),
        (
            vec![0x40, 0x00],
            ProtocolError::WrongLength {
                packet: P::Puback,
                expected: 2,
                found: 0,
            },
        ),
        (
            vec![0x90, 0x00],
            ProtocolError::WrongLength {
                packet: P::Suback,
                expected: 3,
                found: 0,
            },
        ),
        (
            vec![0xB0, 0x01, 0x00],
            ProtocolError::WrongLength {
                packet: P::Unsuback,
                expected: 2,
                found: 1,
            },
        ),
        // The frame is 30 02 00 05: a topic length of 5 in a 2-byte body.
        (
            vec![0x30, 0x02, 0x00, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65],
            ProtocolError::FieldOutOfBounds(P::Publish),
        ),
        // QoS 1 without room for the packet identifier.
        (
            vec![0x32, 0x03, 0x00, 0x01, 0x61],
            ProtocolError::FieldOutOfBounds(P::Publish),
        ),
        (
            vec![0x20, 0x03, 0x00, 0x00, 0x00],
            ProtocolError::WrongLength {
                packet: P::Connack,
                expected: 2,
                found: 3,
            },
        ),
        (
            vec![0xD0, 0x02, 0x00, 0x00],
            ProtocolError::WrongLength {
                packet: P::Pingresp,
                expected: 0,
                found: 2,
            },
        ),
        (vec![0x00, 0x00], ProtocolError::ReservedPacketType(0)),
        (vec![0xF0, 0x00], ProtocolError::ReservedPacketType(15)),
        (
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
            ProtocolError::MalformedRemainingLength,
        ),
        (
            vec![0x82, 0x06, 0x00, 0x01, 0x00, 0x01, 0x61, 0x00],
            ProtocolError::UnexpectedPacket(P::Subscribe),
        ),
        (
            vec![0x40, 0x02, 0x00, 0x00],
            ProtocolError::PacketIdZero(P::Puback),
        ),
        // Beyond the list: more flags, identifiers and client-only packets.
        (
            vec![0x62, 0x02, 0x00, 0x00],
            ProtocolError::PacketIdZero(P::Pubrel),
        ),
        (
            vec![0x60, 0x02, 0x00, 0x01],
            ProtocolError::InvalidFlags {
                packet: P::Pubrel,
                flags: 0,
            },
        ),
        (
            vec![0x41, 0x02, 0x00, 0x01],
            ProtocolError::InvalidFlags {
                packet: P::Puback,
                flags: 1,
            },
        ),
        (
            vec![0x36, 0x05, 0x00, 0x01, 0x61, 0x00, 0x01],
            ProtocolError::InvalidFlags {
                packet: P::Publish,
                flags: 6,
            },
        ),
        (
            vec![0x38, 0x03, 0x00, 0x01, 0x61],
            ProtocolError::InvalidFlags {
                packet: P::Publish,
                flags: 8,
            },
        ),
        (
            vec![0x32, 0x05, 0x00, 0x01, 0x61, 0x00, 0x00],
            ProtocolError::PacketIdZero(P::Publish),
        ),
        (
            vec![0x30, 0x03, 0x00, 0x01, b'#'],
            ProtocolError::InvalidTopic(TopicError::Wildcard),
        ),
        (
            vec![0x30, 0x03, 0x00, 0x01, 0xFF],
            ProtocolError::InvalidTopic(TopicError::InvalidUtf8),
        ),
        (
            vec![0x30, 0x02, 0x00, 0x00],
            ProtocolError::InvalidTopic(TopicError::Empty),
        ),
        (
            vec![0x90, 0x03, 0x00, 0x01, 0x03],
            ProtocolError::InvalidSubackCode(3),
        ),
        (
            vec![0x20, 0x02, 0x00, 0x00],
            ProtocolError::UnexpectedPacket(P::Connack),
        ),
        (
            vec![0x10, 0x00],
            ProtocolError::UnexpectedPacket(P::Connect),
        ),
        (
            vec![0xA2, 0x05, 0x00, 0x01, 0x00, 0x01, 0x61],
            ProtocolError::UnexpectedPacket(P::Unsubscribe),
        ),
        (
            vec![0xC0, 0x00],
            ProtocolError::UnexpectedPacket(P::Pingreq),
        ),
        (
            vec![0xE0, 0x00],
            ProtocolError::UnexpectedPacket(P::Disconnect),
        ),
    ]
}

#[tokio::test]
async fn malformed_frames_while_polling_are_protocol_errors() {
    for (bytes, expected) in malformed_frames() {
        connected!(client, broker);
        broker.send(&bytes).await;
        assert_eq!(
            poll(&mut client).await,
            Err(Error::Protocol(expected)),
            "{bytes:02x?}"
        );
        assert!(client.is_broken(), "{bytes:02x?}");
        // Every later call refuses, and nothing is sent.
        assert_eq!(poll(&mut client).await, Err(Error::Disconnected));
        assert_eq!(
            client_publish(&mut client, "t", b"", QoS::AtMostOnce, false).await,
            Err(Error::Disconnected)
        );
        assert_eq!(
            within("subscribe", client.subscribe(&[("t", QoS::AtMostOnce)])).await,
            Err(Error::Disconnected)
        );
        broker.expect_silence_for(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn malformed_frames_while_publish_waits_are_protocol_errors() {
    for (bytes, expected) in malformed_frames() {
        connected!(client, broker);
        let (result, ()) = tokio::join!(
            client_publish(&mut client, "t", b"x", QoS::AtLeastOnce, false),
            async {
                broker.expect_publish().await;
                broker.send(&bytes).await;
            }
        );
        assert_eq!(result, Err(Error::Protocol(expected)), "{bytes:02x?}");
        assert!(client.is_broken());
        assert_eq!(poll(&mut client).await, Err(Error::Disconnected));
    }
}

#[tokio::test]
async fn malformed_frames_after_a_good_message_are_still_caught() {
    for (bytes, expected) in malformed_frames() {
        connected!(client, broker);
        let stream = [publish("ok", b"first", 1, 1, false, false), bytes.clone()].concat();
        broker.send(&stream).await;
        assert_eq!(
            poll(&mut client).await,
            Ok(message("ok", b"first", QoS::AtLeastOnce, Some(1)))
        );
        assert_eq!(
            poll(&mut client).await,
            Err(Error::Protocol(expected)),
            "{bytes:02x?}"
        );
        // The PUBACK for the delivered message went out before the error.
        broker.expect_bytes(&puback(1)).await;
    }
}

// ---------------------------------------------------------------------------
// 9. Unexpected but legal packets

#[tokio::test]
async fn stray_acknowledgements_are_ignored() {
    connected!(client, broker);
    // PUBACK / PUBCOMP for identifiers not in flight, and an unsolicited SUBACK.
    broker
        .send(
            &[
                puback(999),
                pubcomp(998),
                suback(997, &[0]),
                publish0("after", b"x"),
            ]
            .concat(),
        )
        .await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("after", b"x", QoS::AtMostOnce, None))
    );
    broker.expect_silence().await;

    // The connection still works: a QoS 1 publish with a stray PUBACK before its own.
    let (result, ()) = tokio::join!(
        client_publish(&mut client, "t", b"1", QoS::AtLeastOnce, false),
        async {
            let id = broker.expect_publish().await.id.unwrap();
            broker.send(&puback(id.wrapping_add(1000))).await;
            broker.send(&puback(id)).await;
        }
    );
    result.unwrap();

    // A PUBACK for a QoS 2 message does not complete it.
    let id = client_start(&mut client, "t", b"2", QoS::ExactlyOnce)
        .await
        .unwrap()
        .unwrap();
    broker.expect_publish().await;
    broker
        .send(&[puback(id), pubcomp(id), publish0("mark", b"")].concat())
        .await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("mark", b"", QoS::AtMostOnce, None))
    );
    broker.send(&pubrec(id)).await;
    broker.send(&publish0("mark", b"2")).await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("mark", b"2", QoS::AtMostOnce, None))
    );
    assert_eq!(broker.expect_pubrel().await, id);
    broker.send(&pubcomp(id)).await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(id)));
    broker.expect_silence().await;
}

#[tokio::test]
async fn pubrel_and_pubrec_for_unknown_ids_are_answered() {
    connected!(client, broker);
    let (event, ()) = tokio::join!(poll(&mut client), async {
        broker.send(&pubrel(77)).await;
        broker.expect_bytes(&pubcomp(77)).await;
        // PUBREL is answered also when its identifier is unknown (§4.3.3).
        broker.send(&pubrec(78)).await;
        broker.expect_bytes(&pubrel(78)).await;
        broker.send(&publish0("end", b"")).await;
    });
    assert_eq!(event, Ok(message("end", b"", QoS::AtMostOnce, None)));
    broker.expect_silence().await;
}

// ---------------------------------------------------------------------------
// 10. Keep-alive

#[tokio::test]
async fn keep_alive_sends_pingreq_and_accepts_pingresp() {
    connected!(
        client,
        broker,
        n = 2,
        rx = 128,
        tx = 128,
        outbox = 128,
        options = ConnectOptions::new("ka").with_keep_alive(1)
    );
    let start = Instant::now();
    let (event, ()) = tokio::join!(poll(&mut client), async {
        broker.expect_pingreq().await;
        let first = start.elapsed();
        assert!(
            (Duration::from_millis(900)..Duration::from_millis(1600)).contains(&first),
            "first PINGREQ after {first:?}"
        );
        broker.send(&pingresp()).await;
        // Still alive past 1.5 s: a second PINGREQ one interval later.
        broker.expect_pingreq().await;
        let second = start.elapsed();
        assert!(
            (Duration::from_millis(1800)..Duration::from_millis(2800)).contains(&second),
            "second PINGREQ after {second:?}"
        );
        broker.send(&pingresp()).await;
        broker.send(&publish0("ka", b"alive")).await;
    });
    assert_eq!(event, Ok(message("ka", b"alive", QoS::AtMostOnce, None)));
}

#[tokio::test]
async fn keep_alive_timeout_when_the_broker_is_silent() {
    connected!(
        client,
        broker,
        n = 2,
        rx = 128,
        tx = 128,
        outbox = 128,
        options = ConnectOptions::new("ka").with_keep_alive(1)
    );
    let start = Instant::now();
    let result = poll(&mut client).await;
    let elapsed = start.elapsed();
    assert_eq!(result, Err(Error::KeepAliveTimeout));
    assert!(
        (Duration::from_millis(1000)..Duration::from_millis(2500)).contains(&elapsed),
        "KeepAliveTimeout after {elapsed:?} of silence"
    );
    assert!(client.is_broken());
    broker.expect_pingreq().await;
    broker.expect_silence().await;
    assert_eq!(poll(&mut client).await, Err(Error::Disconnected));
}

#[tokio::test]
async fn keep_alive_runs_while_publish_waits() {
    connected!(
        client,
        broker,
        n = 2,
        rx = 128,
        tx = 128,
        outbox = 128,
        options = ConnectOptions::new("ka").with_keep_alive(1)
    );
    let (result, ()) = tokio::join!(
        client_publish(&mut client, "slow", b"ack", QoS::AtLeastOnce, false),
        async {
            let id = broker.expect_publish().await.id.unwrap();
            let start = Instant::now();
            broker.expect_pingreq().await;
            assert!(
                start.elapsed() < Duration::from_millis(1600),
                "{:?}",
                start.elapsed()
            );
            broker.send(&pingresp()).await;
            broker.send(&puback(id)).await;
        }
    );
    result.unwrap();
}

// ---------------------------------------------------------------------------
// 11. Persistent session

#[tokio::test]
async fn persistent_session_resends_after_reconnect() {
    let mut outbox = [0u8; 512];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
    let options = ConnectOptions::new("persistent").with_persistent_session();

    let (socket, mut broker) = mock_pair();
    broker.send(&connack(false, 0)).await;
    let (mut client, _) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    assert!(!broker.expect_connect().await.clean_session());
    let q1 = client_start(&mut client, "s/q1", b"one", QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    let q2 = client_start(&mut client, "s/q2", b"two", QoS::ExactlyOnce)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        broker.expect_publish().await,
        published("s/q1", b"one", 1, Some(q1), false)
    );
    assert_eq!(
        broker.expect_publish().await,
        published("s/q2", b"two", 2, Some(q2), false)
    );
    // PUBREC for q2 only; then the connection drops.
    let (result, ()) = tokio::join!(poll(&mut client), async {
        broker.send(&pubrec(q2)).await;
        assert_eq!(broker.expect_pubrel().await, q2);
        drop(broker);
    });
    assert_eq!(result, Err(Error::ConnectionClosed));
    assert_eq!(poll(&mut client).await, Err(Error::Disconnected));
    drop(client);
    assert_eq!(session.in_flight(), 2);

    let (socket, mut broker) = mock_pair();
    broker.send(&connack(true, 0)).await;
    let (mut client, connected) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    assert_eq!(
        connected,
        Connected {
            session_present: true,
            resent: 2,
            discarded: 0,
            granted: None
        }
    );
    assert!(!broker.expect_connect().await.clean_session());
    // The QoS 1 PUBLISH again, DUP = 1, same identifier; for QoS 2 only PUBREL.
    let packet = broker.expect_packet().await;
    assert_eq!(packet.first, 0x3A, "PUBLISH, DUP, QoS 1: {packet:?}");
    assert_eq!(packet.bytes(), publish("s/q1", b"one", 1, q1, true, false));
    assert_eq!(broker.expect_pubrel().await, q2);
    broker.expect_silence().await;
    broker.send(&[puback(q1), pubcomp(q2)].concat()).await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(q1)));
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(q2)));
    drop(client);
    assert_eq!((session.in_flight(), session.outbox_used()), (0, 0));
}

#[tokio::test]
async fn unacknowledged_qos2_publish_is_resent_with_dup() {
    let mut outbox = [0u8; 512];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
    let options = ConnectOptions::new("persistent").with_persistent_session();

    let (socket, mut broker) = mock_pair();
    broker.send(&connack(false, 0)).await;
    let (mut client, _) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    broker.expect_connect().await;
    let a = client_start(&mut client, "x/a", b"A", QoS::ExactlyOnce)
        .await
        .unwrap()
        .unwrap();
    let b = client_start(&mut client, "x/b", b"B", QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    let c = client_start(&mut client, "x/c", b"C", QoS::ExactlyOnce)
        .await
        .unwrap()
        .unwrap();
    for _ in 0..3 {
        broker.expect_publish().await;
    }
    // b is acknowledged, c reaches PUBREC, a nothing.
    broker.send(&[pubrec(c), puback(b)].concat()).await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(b)));
    assert_eq!(broker.expect_pubrel().await, c);
    drop(client);
    drop(broker);

    let (socket, mut broker) = mock_pair();
    broker.send(&connack(true, 0)).await;
    let (mut client, connected) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    assert_eq!(connected.resent, 2);
    broker.expect_connect().await;
    // Oldest first: a (PUBLISH, DUP, QoS 2), then c (PUBREL only). The
    // PUBREL for c that was sent on the old connection may be lost.
    let packet = broker.expect_packet().await;
    assert_eq!(packet.bytes(), publish("x/a", b"A", 2, a, true, false));
    assert_eq!(packet.first, 0x3C);
    assert_eq!(broker.expect_pubrel().await, c);
    broker.expect_silence().await;
    broker.send(&[pubrec(a), pubcomp(c)].concat()).await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(c)));
    assert_eq!(broker.expect_pubrel().await, a);
    broker.send(&pubcomp(a)).await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(a)));
    // A third connection has nothing to resend.
    drop(client);
    let (socket, mut broker) = mock_pair();
    broker.send(&connack(true, 0)).await;
    let (_client, connected) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    assert_eq!(connected.resent, 0);
    broker.expect_connect().await;
    broker.expect_silence().await;
}

#[tokio::test]
async fn incoming_qos2_is_not_delivered_twice_across_a_reconnect() {
    let mut outbox = [0u8; 128];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
    let options = ConnectOptions::new("persistent").with_persistent_session();

    let (socket, mut broker) = mock_pair();
    broker.send(&connack(false, 0)).await;
    broker
        .send(&publish("in", b"once", 2, 42, false, false))
        .await;
    let (mut client, _) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    assert_eq!(
        poll(&mut client).await,
        Ok(message("in", b"once", QoS::ExactlyOnce, Some(42)))
    );
    drop(client);
    drop(broker);

    // The broker kept the session and sends 42 again (DUP): PUBREC, no delivery.
    let (socket, mut broker) = mock_pair();
    broker.send(&connack(true, 0)).await;
    broker
        .send(&publish("in", b"once", 2, 42, true, false))
        .await;
    broker.send(&publish0("mark", b"")).await;
    let (mut client, _) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    broker.expect_connect().await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("mark", b"", QoS::AtMostOnce, None))
    );
    assert_eq!(broker.expect_pubrec().await, 42);
    drop(client);
    drop(broker);

    // A broker without the session: 42 is a new message.
    let (socket, mut broker) = mock_pair();
    broker.send(&connack(false, 0)).await;
    broker
        .send(&publish("in", b"new", 2, 42, false, false))
        .await;
    let (mut client, _) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    broker.expect_connect().await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("in", b"new", QoS::ExactlyOnce, Some(42)))
    );
}

/// The broker creates a persistent session at CONNECT; if the SUBSCRIBE
/// that follows is lost with the connection, the next connect finds a
/// session without the subscriptions: the client must subscribe again.
#[tokio::test]
async fn a_subscribe_lost_with_its_connection_is_made_again_despite_session_present() {
    let filters = [("cmd/+", QoS::AtLeastOnce)];
    let options = ConnectOptions::new("subs")
        .with_persistent_session()
        .with_subscriptions(&filters);
    let mut outbox = [0u8; 128];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);

    let (socket, mut broker) = mock_pair();
    let (result, ()) = tokio::join!(
        connect(socket, &mut session, &mut rx, &mut tx, &options),
        async {
            broker.accept(false).await;
            broker.expect_subscribe().await;
            drop(broker); // cut before SUBACK
        }
    );
    assert_eq!(result.err(), Some(Error::ConnectionClosed));

    for attempt in 0..2 {
        let (socket, mut broker) = mock_pair();
        let (result, ()) = tokio::join!(
            connect(socket, &mut session, &mut rx, &mut tx, &options),
            async {
                broker.accept(true).await;
                if attempt == 0 {
                    let (id, got) = broker.expect_subscribe().await;
                    assert_eq!(got, [("cmd/+".to_string(), 1)]);
                    broker.send(&suback(id, &[1])).await;
                }
                broker.expect_silence().await;
            }
        );
        let (_client, connected) = result.expect("connects");
        assert!(connected.session_present);
        // Subscribed once despite session_present; then never again.
        assert_eq!(
            connected.granted.is_some(),
            attempt == 0,
            "attempt {attempt}"
        );
    }
}

#[tokio::test]
async fn subscriptions_are_made_only_when_the_broker_has_no_session() {
    let filters = [("cmd/+", QoS::AtLeastOnce), ("cfg/#", QoS::ExactlyOnce)];
    let options = ConnectOptions::new("subs")
        .with_persistent_session()
        .with_subscriptions(&filters);
    let mut outbox = [0u8; 128];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);

    // session_present = 0: SUBSCRIBE follows CONNACK, and connect waits for SUBACK.
    let (socket, mut broker) = mock_pair();
    let (result, ()) = tokio::join!(
        connect(socket, &mut session, &mut rx, &mut tx, &options),
        async {
            broker.accept(false).await;
            let (id, got) = broker.expect_subscribe().await;
            assert_eq!(got, [("cmd/+".to_string(), 1), ("cfg/#".to_string(), 2)]);
            broker.send(&suback(id, &[1, 1])).await;
        }
    );
    let (client, connected) = result.unwrap();
    assert!(!connected.session_present);
    assert_eq!(
        connected.granted.as_deref(),
        Some(&[QoS::AtLeastOnce, QoS::AtLeastOnce][..])
    );
    broker.expect_silence().await;
    drop(client);

    // session_present = 1: no SUBSCRIBE.
    let (socket, mut broker) = mock_pair();
    broker.send(&connack(true, 0)).await;
    let (client, connected) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    assert_eq!(
        connected,
        Connected {
            session_present: true,
            resent: 0,
            discarded: 0,
            granted: None
        }
    );
    broker.expect_connect().await;
    broker.expect_silence().await;
    drop(client);

    // A refused subscription fails the connect.
    let (socket, mut broker) = mock_pair();
    let (result, ()) = tokio::join!(
        connect(socket, &mut session, &mut rx, &mut tx, &options),
        async {
            broker.accept(false).await;
            let (id, _) = broker.expect_subscribe().await;
            broker.send(&suback(id, &[1, 0x80])).await;
        }
    );
    match result.err() {
        Some(Error::SubscriptionRefused { index, filter }) => {
            assert_eq!((index, filter.as_str()), (1, "cfg/#"));
        }
        other => panic!("{other:?}"),
    }
}

// ---------------------------------------------------------------------------
// 12. Buffers too small

#[tokio::test]
async fn outbox_full_and_packet_too_large_send_nothing() {
    connected!(client, broker, n = 4, rx = 64, tx = 64, outbox = 64);
    let payload = [1u8; 100];
    // QoS 1: 2-byte fixed header + topic (2 + 3) + id (2) + 100.
    assert_eq!(
        client_publish(&mut client, "big", &payload, QoS::AtLeastOnce, false).await,
        Err(Error::OutboxFull {
            needed: 109,
            available: 64,
            capacity: 64
        })
    );
    assert_eq!(
        client_start(&mut client, "big", &payload, QoS::ExactlyOnce).await,
        Err(Error::OutboxFull {
            needed: 109,
            available: 64,
            capacity: 64
        })
    );
    // QoS 0 goes through tx: 2 + 2 + 3 + 100.
    assert_eq!(
        client_publish(&mut client, "big", &payload, QoS::AtMostOnce, false).await,
        Err(Error::PacketTooLarge {
            size: 107,
            capacity: 64
        })
    );
    // A SUBSCRIBE larger than tx.
    let long = "f".repeat(70);
    assert_eq!(
        within("subscribe", client.subscribe(&[(&long, QoS::AtMostOnce)])).await,
        Err(Error::PacketTooLarge {
            size: 2 + 2 + 2 + 70 + 1,
            capacity: 64
        })
    );
    broker.expect_silence().await;
    assert!(!client.is_broken());

    // Room is counted against what is in flight: 40 + 40 > 64.
    let m = [2u8; 31]; // 2 + 2 + 3 + 2 + 31 = 40 bytes
    let a = client_start(&mut client, "mid", &m, QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(broker.expect_publish().await.payload, m);
    assert_eq!(
        client_start(&mut client, "mid", &m, QoS::AtLeastOnce).await,
        Err(Error::OutboxFull {
            needed: 40,
            available: 24,
            capacity: 64
        })
    );
    broker.expect_silence().await;
    broker.send(&puback(a)).await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(a)));
    let b = client_start(&mut client, "mid", &m, QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(broker.expect_publish().await.id, Some(b));
}

// ---------------------------------------------------------------------------
// 13. Disconnect

#[tokio::test]
async fn disconnect_sends_e0_00() {
    connected!(client, broker);
    let transport = within("disconnect", client.disconnect()).await.unwrap();
    broker.expect_bytes(&[0xE0, 0x00]).await;
    broker.expect_silence().await;
    drop(transport);
    broker.expect_closed().await;
}

#[tokio::test]
async fn disconnect_after_a_delivery_acknowledges_it_first() {
    connected!(client, broker);
    broker
        .send(&publish("last", b"words", 1, 12, false, false))
        .await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("last", b"words", QoS::AtLeastOnce, Some(12)))
    );
    let _transport = within("disconnect", client.disconnect()).await.unwrap();
    broker.expect_bytes(&puback(12)).await;
    broker.expect_disconnect().await;
}

// ---------------------------------------------------------------------------
// Beyond the list: interleavings, cancellation, robustness.

#[tokio::test]
async fn completions_of_other_messages_during_publish_are_reported_by_poll() {
    connected!(client, broker);
    let a = client_start(&mut client, "o/a", b"a", QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    let b = client_start(&mut client, "o/b", b"b", QoS::ExactlyOnce)
        .await
        .unwrap()
        .unwrap();
    broker.expect_publish().await;
    broker.expect_publish().await;
    let (result, ()) = tokio::join!(
        client_publish(&mut client, "o/c", b"c", QoS::AtLeastOnce, false),
        async {
            let c = broker.expect_publish().await.id.unwrap();
            broker
                .send(&[pubrec(b), puback(a), puback(c)].concat())
                .await;
            assert_eq!(broker.expect_pubrel().await, b);
        }
    );
    result.unwrap();
    broker.send(&pubcomp(b)).await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(a)));
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(b)));
    broker.expect_silence().await;
}

#[tokio::test]
async fn oversized_messages_and_a_completion_during_publish_keep_the_connection() {
    // N = 2: a in flight, publish(b) waits; two oversized messages fill the
    // notice queue before a's PUBACK arrives.
    connected!(client, broker, n = 2, rx = 64, tx = 64, outbox = 256);
    let a = client_start(&mut client, "n/a", b"a", QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    broker.expect_publish().await;
    let (result, b) = tokio::join!(
        client_publish(&mut client, "n/b", b"b", QoS::AtLeastOnce, false),
        async {
            let b = broker.expect_publish().await.id.unwrap();
            let big = publish0("big", &[0u8; 100]);
            broker
                .send(&[big.clone(), big, puback(a), puback(b)].concat())
                .await;
            b
        }
    );
    assert!(
        matches!(result, Ok(()) | Err(Error::AckPending(_))),
        "publish(): {result:?}"
    );
    assert!(!client.is_broken(), "a legal sequence broke the connection");
    let events = drain_events(&mut client).await;
    // 2 + 2 + 3 + 100 bytes.
    let too_large = Ev::TooLarge {
        size: 107,
        capacity: 64,
        qos: QoS::AtMostOnce,
        id: None,
    };
    assert_eq!(
        events.iter().filter(|e| **e == too_large).count(),
        2,
        "{events:?}"
    );
    assert!(events.contains(&Ev::Published(a)), "{events:?}");
    if result.is_err() {
        assert!(events.contains(&Ev::Published(b)), "{events:?}");
    }
}

#[tokio::test]
async fn a_full_notice_queue_loses_neither_an_oversized_message_nor_its_puback() {
    // N = 2: while publish(b) waits, a's completion and one oversized
    // message fill the notice queue; a second oversized message (QoS 1)
    // must still be reported and acknowledged.
    connected!(client, broker, n = 2, rx = 64, tx = 64, outbox = 256);
    let a = client_start(&mut client, "n/a", b"a", QoS::AtLeastOnce)
        .await
        .unwrap()
        .unwrap();
    broker.expect_publish().await;
    let (result, b) = tokio::join!(
        client_publish(&mut client, "n/b", b"b", QoS::AtLeastOnce, false),
        async {
            let b = broker.expect_publish().await.id.unwrap();
            let big0 = publish0("big", &[0u8; 100]);
            let big1 = publish("big", &[1u8; 100], 1, 9, false, false);
            broker
                .send(&[puback(a), big0, big1, puback(b)].concat())
                .await;
            b
        }
    );
    assert!(
        matches!(result, Ok(()) | Err(Error::AckPending(_))),
        "publish(): {result:?}"
    );
    let events = drain_events(&mut client).await;
    assert!(events.contains(&Ev::Published(a)), "{events:?}");
    if result.is_err() {
        assert!(events.contains(&Ev::Published(b)), "{events:?}");
    }
    assert!(
        events.contains(&Ev::TooLarge {
            size: 109,
            capacity: 64,
            qos: QoS::AtLeastOnce,
            id: Some(9)
        }),
        "the second oversized message was not reported: {events:?}"
    );
    assert_eq!(
        broker.expect_puback().await,
        9,
        "PUBACK for the skipped QoS 1 message"
    );
}

#[tokio::test]
async fn more_unreleased_qos2_messages_than_n_is_an_error_not_a_hang() {
    connected!(client, broker, n = 2, rx = 256, tx = 64, outbox = 256);
    broker
        .send(
            &[
                publish("w", b"1", 2, 1, false, false),
                publish("w", b"2", 2, 2, false, false),
                publish("w", b"3", 2, 3, false, false),
            ]
            .concat(),
        )
        .await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("w", b"1", QoS::ExactlyOnce, Some(1)))
    );
    assert_eq!(
        poll(&mut client).await,
        Ok(message("w", b"2", QoS::ExactlyOnce, Some(2)))
    );
    assert_eq!(
        poll(&mut client).await,
        Err(Error::Qos2ReceiveWindowFull { max: 2 })
    );
    assert_eq!(broker.expect_pubrec().await, 1);
    assert_eq!(broker.expect_pubrec().await, 2);
    // Message 3 was neither delivered nor acknowledged.
    broker.expect_silence().await;
}

#[tokio::test]
async fn cancelled_publish_and_poll_lose_nothing() {
    connected!(client, broker);
    // publish() dropped while it waits for PUBACK: the message stays in
    // flight and its completion comes from poll().
    let cancelled = tokio::time::timeout(
        Duration::from_millis(100),
        client.publish("c", b"1", QoS::AtLeastOnce, false),
    )
    .await;
    assert!(cancelled.is_err(), "publish() returned without PUBACK");
    let id = broker.expect_publish().await.id.unwrap();
    broker.send(&puback(id)).await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(id)));

    // poll() dropped in the middle of a frame: the bytes read are kept.
    let frame = publish("c/half", b"0123456789", 1, 33, false, false);
    broker.send(&frame[..7]).await;
    let cancelled = tokio::time::timeout(Duration::from_millis(100), client.poll()).await;
    assert!(cancelled.is_err(), "poll() returned on half a frame");
    broker.send(&frame[7..]).await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("c/half", b"0123456789", QoS::AtLeastOnce, Some(33)))
    );
    broker.send(&publish0("c/next", b"")).await;
    assert_eq!(
        poll(&mut client).await,
        Ok(message("c/next", b"", QoS::AtMostOnce, None))
    );
    assert_eq!(broker.expect_puback().await, 33);
}

#[tokio::test]
async fn suback_with_more_codes_than_max_filters_reports_the_filter_count() {
    connected!(client, broker);
    let filters = [("a", QoS::AtMostOnce), ("b", QoS::AtMostOnce)];
    let (result, ()) = tokio::join!(within("subscribe", client.subscribe(&filters)), async {
        let (id, _) = broker.expect_subscribe().await;
        broker.send(&suback(id, &[0; MAX_FILTERS + 1])).await;
    });
    assert_eq!(
        result,
        Err(Error::Protocol(ProtocolError::SubackCountMismatch {
            expected: 2,
            found: MAX_FILTERS + 1
        }))
    );
}

#[tokio::test]
async fn subscribe_with_max_filters() {
    connected!(client, broker);
    let names: Vec<String> = (0..MAX_FILTERS).map(|i| format!("f/{i}")).collect();
    let filters: Vec<(&str, QoS)> = names
        .iter()
        .enumerate()
        .map(|(i, n)| (n.as_str(), qos_of((i % 3) as u8)))
        .collect();
    let codes: Vec<u8> = (0..MAX_FILTERS).map(|i| ((i + 1) % 3) as u8).collect();
    let (granted, ()) = tokio::join!(within("subscribe", client.subscribe(&filters)), async {
        let (id, got) = broker.expect_subscribe().await;
        assert_eq!(got.len(), MAX_FILTERS);
        broker.send(&suback(id, &codes)).await;
    });
    let expected: Vec<QoS> = codes.iter().map(|&c| qos_of(c)).collect();
    assert_eq!(granted.unwrap().as_slice(), expected.as_slice());
}

#[tokio::test]
async fn outbox_compaction_keeps_resent_messages_intact() {
    let mut outbox = [0u8; 512];
    let mut session: Session<'_, 8> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 128], [0u8; 64]);
    let options = ConnectOptions::new("compact").with_persistent_session();
    let (socket, mut broker) = mock_pair();
    broker.send(&connack(false, 0)).await;
    let (mut client, _) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    broker.expect_connect().await;
    // Sizes differ, and QoS 1 messages larger than tx go through the outbox.
    let payloads: Vec<Vec<u8>> = [10usize, 150, 30, 90, 5]
        .iter()
        .enumerate()
        .map(|(i, &n)| vec![b'a' + i as u8; n])
        .collect();
    let qos = [
        QoS::AtLeastOnce,
        QoS::ExactlyOnce,
        QoS::AtLeastOnce,
        QoS::ExactlyOnce,
        QoS::AtLeastOnce,
    ];
    let mut ids = Vec::new();
    for (p, q) in payloads.iter().zip(qos) {
        ids.push(
            client_start(&mut client, "c/x", p, q)
                .await
                .unwrap()
                .unwrap(),
        );
    }
    for (i, p) in payloads.iter().enumerate() {
        assert_eq!(&broker.expect_publish().await.payload, p, "message {i}");
    }
    // Complete #2 (middle), PUBREC #1 (its bytes freed), leave #0, #3, #4.
    broker
        .send(&[pubrec(ids[1]), puback(ids[2])].concat())
        .await;
    assert_eq!(poll(&mut client).await, Ok(Ev::Published(ids[2])));
    assert_eq!(broker.expect_pubrel().await, ids[1]);
    drop(client);
    drop(broker);
    assert_eq!(session.in_flight(), 4);
    let expected_used: usize = [0usize, 3, 4]
        .iter()
        .map(|&i| 2 + 2 + 3 + 2 + payloads[i].len())
        .sum();
    assert_eq!(session.outbox_used(), expected_used);

    let (socket, mut broker) = mock_pair();
    broker.send(&connack(true, 0)).await;
    let (_client, connected) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    assert_eq!(connected.resent, 4);
    broker.expect_connect().await;
    assert_eq!(
        broker.expect_packet().await.bytes(),
        publish("c/x", &payloads[0], 1, ids[0], true, false)
    );
    assert_eq!(broker.expect_pubrel().await, ids[1]);
    assert_eq!(
        broker.expect_packet().await.bytes(),
        publish("c/x", &payloads[3], 2, ids[3], true, false)
    );
    assert_eq!(
        broker.expect_packet().await.bytes(),
        publish("c/x", &payloads[4], 1, ids[4], true, false)
    );
    broker.expect_silence().await;
}

#[tokio::test]
async fn retained_messages_before_the_connect_suback_are_delivered_after_connect() {
    let filters = [("r/#", QoS::AtLeastOnce)];
    let options = ConnectOptions::new("r").with_subscriptions(&filters);
    let mut outbox = [0u8; 128];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
    let (socket, mut broker) = mock_pair();
    let (result, ()) = tokio::join!(
        connect(socket, &mut session, &mut rx, &mut tx, &options),
        async {
            broker.accept(false).await;
            let (id, _) = broker.expect_subscribe().await;
            broker
                .send(&publish("r/1", b"kept", 1, 5, false, true))
                .await;
            broker.send(&suback(id, &[1])).await;
        }
    );
    let (mut client, connected) = result.unwrap();
    assert_eq!(connected.granted.as_deref(), Some(&[QoS::AtLeastOnce][..]));
    let event = poll(&mut client).await.unwrap();
    assert_eq!(
        event,
        Ev::Message {
            topic: "r/1".into(),
            payload: b"kept".to_vec(),
            qos: QoS::AtLeastOnce,
            id: Some(5),
            dup: false,
            retain: true
        }
    );
}

#[tokio::test]
async fn keep_alive_zero_never_pings() {
    connected!(
        client,
        broker,
        n = 2,
        rx = 128,
        tx = 128,
        outbox = 128,
        options = ConnectOptions::new("ka0").with_keep_alive(0)
    );
    let (event, ()) = tokio::join!(poll(&mut client), async {
        broker.expect_silence_for(Duration::from_millis(300)).await;
        broker.send(&publish0("late", b"")).await;
    });
    assert_eq!(event, Ok(message("late", b"", QoS::AtMostOnce, None)));
}

#[tokio::test]
async fn tiny_buffers_fail_cleanly() {
    // Below the minimum: refused before anything is sent.
    for rx_len in [0, 1, 2, 4, mqtts::client::MIN_RX_BUFFER - 1] {
        let (socket, mut broker) = mock_pair();
        let mut outbox = [0u8; 16];
        let mut session: Session<'_, 1> = Session::new(&mut outbox);
        let mut rx = vec![0u8; rx_len];
        let mut tx = [0u8; 64];
        let result = connect(
            socket,
            &mut session,
            &mut rx,
            &mut tx,
            &ConnectOptions::new("t"),
        )
        .await;
        assert_eq!(
            result.err(),
            Some(Error::Config(mqtts::error::ConfigError::BufferTooSmall {
                buffer: "rx",
                len: rx_len,
                min: mqtts::client::MIN_RX_BUFFER
            }))
        );
        // Nothing was sent before the socket was dropped.
        broker.expect_closed().await;
    }
    // The minimum works.
    {
        let (socket, mut broker) = mock_pair();
        let mut outbox = [0u8; 16];
        let mut session: Session<'_, 1> = Session::new(&mut outbox);
        let mut rx = vec![0u8; mqtts::client::MIN_RX_BUFFER];
        let mut tx = [0u8; 64];
        broker.send(&connack(false, 0)).await;
        let result = connect(
            socket,
            &mut session,
            &mut rx,
            &mut tx,
            &ConnectOptions::new("t"),
        )
        .await;
        assert!(result.is_ok(), "{:?}", result.err());
    }
    for tx_len in 0..3 {
        let (socket, mut broker) = mock_pair();
        let mut outbox = [0u8; 16];
        let mut session: Session<'_, 1> = Session::new(&mut outbox);
        let mut rx = [0u8; 64];
        let mut tx = vec![0u8; tx_len];
        let result = connect(
            socket,
            &mut session,
            &mut rx,
            &mut tx,
            &ConnectOptions::new("t"),
        )
        .await;
        assert!(
            matches!(result, Err(Error::PacketTooLarge { capacity, .. }) if capacity == tx_len),
            "tx of {tx_len}"
        );
        broker.expect_closed().await;
    }
}

#[tokio::test]
async fn random_bytes_from_the_broker_never_panic() {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x6d71_7474);
    for case in 0..3000 {
        let len = rng.gen_range(1..48);
        let mut bytes: Vec<u8> = (0..len).map(|_| rng.r#gen()).collect();
        // Bias towards plausible fixed headers.
        bytes[0] = match case % 4 {
            0 => bytes[0],
            _ => (bytes[0] & 0xF0) | [0x0, 0x2, 0x0, 0x3][case % 4],
        };
        // Half the frames have a remaining length that matches what follows.
        if bytes.len() > 1 && case % 2 == 0 {
            bytes[1] = (bytes.len() as u8 - 2).min(0x7F);
        }
        connected!(client, broker, n = 2, rx = 40, tx = 64, outbox = 128);
        broker.send(&bytes).await;
        drop(broker);
        let mut outcome = None;
        for _ in 0..64 {
            match within("poll", client.poll()).await {
                Ok(_) => continue,
                Err(e) => {
                    outcome = Some(e);
                    break;
                }
            }
        }
        let error = outcome.unwrap_or_else(|| panic!("{bytes:02x?}: no end"));
        assert!(
            client.is_broken() || matches!(error, Error::Qos2ReceiveWindowFull { .. }),
            "{bytes:02x?}: {error:?} without breaking the connection"
        );
    }
}

#[tokio::test]
async fn clean_session_reconnect_discards_the_previous_session() {
    let mut outbox = [0u8; 256];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 128], [0u8; 128]);
    let options = ConnectOptions::new("clean");
    let (socket, mut broker) = mock_pair();
    broker.send(&connack(false, 0)).await;
    let (mut client, _) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    broker.expect_connect().await;
    client_start(&mut client, "c", b"1", QoS::AtLeastOnce)
        .await
        .unwrap();
    broker.expect_publish().await;
    drop(client);
    drop(broker);

    // CleanSession = 1: "the Client and Server MUST discard any previous
    // Session and start a new one" [MQTT-3.1.2-6]; resending is for
    // CleanSession = 0 only [MQTT-4.4.0-1].
    let (socket, mut broker) = mock_pair();
    broker.send(&connack(false, 0)).await;
    let (_client, connected) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .unwrap();
    assert!(broker.expect_connect().await.clean_session());
    broker.expect_silence().await;
    assert_eq!(connected.resent, 0);
}

// Regressions from the review.

#[tokio::test]
async fn a_receive_buffer_exactly_full_of_queued_messages_is_ack_pending() {
    // rx 64: two 32-byte QoS 0 messages arrive while publish() waits.
    connected!(client, broker, n = 4, rx = 64, tx = 256, outbox = 1024);
    let message = publish0("t", &[7u8; 27]);
    assert_eq!(message.len(), 32);
    let (publish, ()) = tokio::join!(
        client.publish("out", b"x", QoS::AtLeastOnce, false),
        async {
            let id = broker.expect_publish().await.id.expect("QoS 1 has an id");
            broker.send(&message).await;
            broker.send(&message).await;
            broker.send(&puback(id)).await;
        }
    );
    let Err(Error::AckPending(id)) = publish else {
        panic!("expected AckPending, got {publish:?}");
    };
    // Not a failure: poll delivers both messages, then the completion.
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(owned(within("poll", client.poll()).await.expect("poll")));
    }
    assert_eq!(
        events,
        [
            message_ev("t", &[7u8; 27]),
            message_ev("t", &[7u8; 27]),
            Ev::Published(id.get())
        ]
    );
}

fn message_ev(topic: &str, payload: &[u8]) -> Ev {
    Ev::Message {
        topic: topic.to_owned(),
        payload: payload.to_vec(),
        qos: QoS::AtMostOnce,
        id: None,
        dup: false,
        retain: false,
    }
}

#[tokio::test]
async fn a_subscribe_that_gave_up_waiting_is_reported_by_poll() {
    connected!(client, broker, n = 4, rx = 64, tx = 256, outbox = 1024);
    let message = publish0("t", &[1u8; 27]);
    let (result, ()) = tokio::join!(
        client.subscribe(&[("a", QoS::AtLeastOnce), ("b", QoS::AtLeastOnce)]),
        async {
            let (id, _) = broker.expect_subscribe().await;
            broker.send(&message).await;
            broker.send(&message).await;
            broker.send(&suback(id, &[1, 0x80])).await;
        }
    );
    let Err(Error::AckPending(id)) = result else {
        panic!("expected AckPending, got {result:?}");
    };
    let mut events = Vec::new();
    for _ in 0..3 {
        events.push(owned(within("poll", client.poll()).await.expect("poll")));
    }
    assert_eq!(
        events[2],
        Ev::Subscribed {
            id: id.get(),
            refused: Some(1)
        }
    );
}

#[tokio::test]
async fn cancelled_subscribes_do_not_exhaust_request_slots() {
    connected!(client, broker, n = 4, rx = 256, tx = 256, outbox = 1024);
    for _ in 0..6 {
        let _ = tokio::time::timeout(
            Duration::from_millis(20),
            client.subscribe(&[("a", QoS::AtMostOnce)]),
        )
        .await;
        broker.expect_subscribe().await;
    }
    let (granted, ()) = tokio::join!(client.subscribe(&[("b", QoS::AtMostOnce)]), async {
        let (id, _) = broker.expect_subscribe().await;
        broker.send(&suback(id, &[0])).await;
    });
    assert_eq!(granted.expect("subscribed").as_slice(), &[QoS::AtMostOnce]);
}

#[tokio::test]
async fn empty_filter_lists_are_refused_before_sending() {
    connected!(client, broker, n = 4, rx = 256, tx = 256, outbox = 1024);
    assert_eq!(
        client.subscribe(&[]).await.err(),
        Some(Error::Config(mqtts::error::ConfigError::NoFilters))
    );
    assert_eq!(
        client.unsubscribe(&[]).await.err(),
        Some(Error::Config(mqtts::error::ConfigError::NoFilters))
    );
    broker.expect_silence().await;
}

#[tokio::test]
async fn a_write_cut_short_abandons_the_connection() {
    // The broker stops reading: a 200 kB message cannot be written into the
    // 64 KiB pipe, and the caller gives up waiting.
    connected!(
        client,
        broker,
        n = 4,
        rx = 256,
        tx = 256 * 1024,
        outbox = 1024
    );
    let big = vec![0u8; 200_000];
    let cut = tokio::time::timeout(
        Duration::from_millis(100),
        client.publish("big", &big, QoS::AtMostOnce, false),
    )
    .await;
    assert!(cut.is_err(), "the write should still be blocked");
    // Half a packet may be on the wire: nothing else may be sent.
    assert_eq!(client.poll().await.err(), Some(Error::Disconnected));
    assert!(client.is_broken());
    drop(broker);
}

/// A transport that holds writes until `flush`, as TLS does (one record per
/// flush), and counts the flushes that carried bytes.
struct Buffered<TM = TokioTimer> {
    inner: Plain<ClientSocket, TM>,
    pending: Vec<u8>,
    flushes: std::rc::Rc<Cell<usize>>,
}

impl<TM: mqtts::time::Timer> mqtts::transport::Transport for Buffered<TM> {
    async fn read_before(
        &mut self,
        buf: &mut [u8],
        deadline: mqtts::time::Millis,
    ) -> Result<Option<usize>, Error> {
        self.inner.read_before(buf, deadline).await
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.pending.extend_from_slice(bytes);
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), Error> {
        if !self.pending.is_empty() {
            self.inner.write_all(&self.pending).await?;
            self.pending.clear();
            self.flushes.set(self.flushes.get() + 1);
        }
        self.inner.flush().await
    }
}

/// A client over [`Buffered`] (CONNECT answered and checked), and its
/// flush counter.
async fn buffered_client<'b>(
    socket: ClientSocket,
    broker: &mut MockBroker,
    session: &'b mut Session<'b, 4>,
    rx: &'b mut [u8],
    tx: &'b mut [u8],
    client_id: &str,
) -> (
    Client<'b, 'b, Buffered, TokioTimer, 4>,
    std::rc::Rc<Cell<usize>>,
) {
    let flushes = std::rc::Rc::new(Cell::new(0));
    let timer = TokioTimer::new();
    let transport = Buffered {
        inner: Plain::new(socket, timer),
        pending: Vec::new(),
        flushes: flushes.clone(),
    };
    broker.send(&connack(false, 0)).await;
    let options = ConnectOptions::new(client_id);
    let (client, _) = within(
        "connect",
        Client::connect(transport, timer, session, rx, tx, &options),
    )
    .await
    .expect("connect");
    broker.expect_connect().await;
    (client, flushes)
}

/// `start_publish` queues; everything queued leaves in one flush, made by
/// `flush()` or by the next call that waits for the broker; `publish()`
/// flushes before it returns. Acknowledgements of received messages ride
/// along with the next flush.
#[tokio::test]
async fn queued_packets_leave_together_at_the_next_wait_or_flush() {
    let (socket, mut broker) = mock_pair();
    let mut outbox = [0u8; 1024];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
    let (mut client, flushes) = buffered_client(
        socket,
        &mut broker,
        &mut session,
        &mut rx,
        &mut tx,
        "batcher",
    )
    .await;
    assert_eq!(flushes.get(), 1, "CONNECT is flushed at once");

    // Five packets queued: nothing reaches the broker.
    for i in 0..3u8 {
        let id = within(
            "start",
            client.start_publish("t/0", &[i], QoS::AtMostOnce, false),
        )
        .await
        .expect("queued");
        assert_eq!(id, None);
    }
    let first = within(
        "start",
        client.start_publish("t/1", b"a", QoS::AtLeastOnce, false),
    )
    .await
    .expect("queued")
    .expect("an id");
    let second = within(
        "start",
        client.start_publish("t/1", b"b", QoS::AtLeastOnce, false),
    )
    .await
    .expect("queued")
    .expect("an id");
    assert!(client.has_unsent());
    assert_eq!(
        broker.read_packet_within(Duration::from_millis(100)).await,
        None
    );
    assert_eq!(flushes.get(), 1);

    // One flush carries all five, in order.
    within("flush", client.flush()).await.expect("flush");
    assert!(!client.has_unsent());
    assert_eq!(flushes.get(), 2);
    for i in 0..3u8 {
        let p = PublishPacket::parse(&broker.expect_kind(3).await);
        assert_eq!((p.topic.as_str(), p.payload.as_slice()), ("t/0", &[i][..]));
    }
    for (id, payload) in [(first, b"a"), (second, b"b")] {
        let p = PublishPacket::parse(&broker.expect_kind(3).await);
        assert_eq!((p.id, p.payload.as_slice()), (Some(id.get()), &payload[..]));
    }

    // poll() reports what has already arrived without flushing first (a
    // pipelining publisher refills its window from every acknowledgement
    // at hand, and the new messages share a record); what is queued leaves
    // as soon as a poll has to wait.
    within(
        "start",
        client.start_publish("t/0", b"late", QoS::AtMostOnce, false),
    )
    .await
    .expect("queued");
    broker.send(&puback(first.get())).await;
    broker.send(&puback(second.get())).await;
    broker.send(&publish("in", b"x", 1, 9, false, false)).await;
    assert_eq!(
        within("poll", client.poll()).await.map(owned),
        Ok(Ev::Published(first.get()))
    );
    assert_eq!(
        within("poll", client.poll()).await.map(owned),
        Ok(Ev::Published(second.get()))
    );
    assert!(matches!(
        within("poll", client.poll()).await.map(owned),
        Ok(Ev::Message { id: Some(9), .. })
    ));
    assert_eq!(
        flushes.get(),
        2,
        "events at hand are reported without a flush"
    );
    assert!(client.has_unsent());
    assert_eq!(
        broker.read_packet_within(Duration::from_millis(100)).await,
        None
    );
    // The next poll finds nothing at hand: "late" and the PUBACK for 9
    // (queued by this call) leave together before it waits.
    let (polled, (late, ack)) = tokio::join!(
        tokio::time::timeout(Duration::from_millis(300), client.poll()),
        async { (broker.expect_kind(3).await, broker.expect_kind(4).await) }
    );
    assert!(polled.is_err(), "nothing more to report");
    assert_eq!(PublishPacket::parse(&late).payload, b"late");
    assert_eq!(ack.ack_id(), 9);
    assert_eq!(flushes.get(), 3, "one flush for both");
    assert!(
        !client.is_broken(),
        "a poll cancelled while it waits is harmless"
    );
}

/// Events at hand hold a queued packet back for at most 16 reads: a broker
/// that keeps sending cannot delay what the client queued for longer.
#[tokio::test]
async fn a_stream_of_incoming_packets_holds_queued_ones_back_for_16_reads_at_most() {
    let (socket, mut broker) = mock_pair();
    let mut outbox = [0u8; 256];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    // Each read takes one whole 16-byte frame at most.
    let (mut rx, mut tx) = ([0u8; 16], [0u8; 64]);
    let (mut client, flushes) =
        buffered_client(socket, &mut broker, &mut session, &mut rx, &mut tx, "s").await;
    within(
        "start",
        client.start_publish("out", b"q", QoS::AtMostOnce, false),
    )
    .await
    .expect("queued");
    let frame = publish0("t", b"0123456789A");
    assert_eq!(frame.len(), 16);
    for _ in 0..20 {
        broker.send(&frame).await;
    }
    for read in 1..=17 {
        let event = within("poll", client.poll()).await.map(owned);
        assert!(matches!(event, Ok(Ev::Message { .. })), "{event:?}");
        // 16 reads take what is at hand; the 17th flushes first.
        let expected = if read <= 16 { 1 } else { 2 };
        assert_eq!(flushes.get(), expected, "read {read}");
    }
    let p = PublishPacket::parse(&broker.expect_kind(3).await);
    assert_eq!(p.payload, b"q");
}

/// With a timer that never fires (`NoTimer`, keep-alive 0), `poll` still
/// sends what is queued before it waits: taking what is at hand must not
/// depend on the timer waking for a deadline that has passed (found in
/// review; the broker would wait for the PUBLISH, the client for its
/// PUBACK).
#[tokio::test]
async fn a_queued_publish_leaves_when_poll_waits_with_a_timer_that_never_fires() {
    use mqtts::tls::NoTimer;
    let (socket, mut broker) = mock_pair();
    let mut outbox = [0u8; 256];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
    broker.send(&connack(false, 0)).await;
    let options = ConnectOptions::new("no-timer").with_keep_alive(0);
    let transport = Buffered {
        inner: Plain::new(socket, NoTimer),
        pending: Vec::new(),
        flushes: std::rc::Rc::new(Cell::new(0)),
    };
    let (mut client, _) = within(
        "connect",
        Client::connect(transport, NoTimer, &mut session, &mut rx, &mut tx, &options),
    )
    .await
    .expect("connect");
    broker.expect_connect().await;
    let id = within(
        "start",
        client.start_publish("t", b"m", QoS::AtLeastOnce, false),
    )
    .await
    .expect("queued")
    .expect("QoS 1 id");
    let (polled, seen) = tokio::join!(
        tokio::time::timeout(Duration::from_millis(1_000), client.poll()),
        broker.read_packet_within(Duration::from_millis(800))
    );
    assert!(polled.is_err(), "nothing to report yet");
    let seen = seen
        .expect("the queued PUBLISH never left: poll waits with it queued")
        .expect("connection open");
    assert_eq!(PublishPacket::parse(&seen).id, Some(id.get()));
}

/// A completion seen while `publish` waited for another message, then the
/// connection lost before `poll` reported it: the report is kept in the
/// session and given by the next connection's `poll` (found by fuzzing).
#[tokio::test]
async fn a_completion_not_yet_reported_survives_the_connection() {
    let mut outbox = [0u8; 256];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 256], [0u8; 256]);
    let options = ConnectOptions::new("c").with_persistent_session();

    let (socket, mut broker) = mock_pair();
    broker.send(&connack(false, 0)).await;
    let (mut client, _) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .expect("connect");
    broker.expect_connect().await;
    let first = client_start(&mut client, "t", b"1", QoS::AtLeastOnce)
        .await
        .expect("queued")
        .expect("an id");
    let (result, ()) = tokio::join!(
        client_publish(&mut client, "t", b"2", QoS::AtLeastOnce, false),
        async {
            broker.expect_publish().await;
            broker.expect_publish().await;
            broker.send(&puback(first)).await;
            drop(broker); // PUBACK for the second never comes
        }
    );
    assert_eq!(result, Err(Error::ConnectionClosed));
    drop(client);
    assert_eq!(
        session.in_flight(),
        1,
        "the second message is still in flight"
    );

    let (socket, mut broker) = mock_pair();
    broker.send(&connack(true, 0)).await;
    let (mut client, connected) = connect(socket, &mut session, &mut rx, &mut tx, &options)
        .await
        .expect("reconnect");
    assert_eq!(connected.resent, 1);
    broker.expect_connect().await;
    assert_eq!(
        within("poll", client.poll()).await.map(owned),
        Ok(Ev::Published(first)),
        "the first message's completion is reported after all"
    );
}

/// A SUBACK for a SUBSCRIBE that gave up (AckPending) that arrives while
/// `publish` waits for its PUBACK is kept and reported by `poll`, not
/// dropped.
#[tokio::test]
async fn a_late_suback_seen_while_publishing_is_reported_by_poll() {
    connected!(client, broker, n = 4, rx = 26, tx = 128, outbox = 256);
    let message = publish0("a", b"12345678");
    assert_eq!(message.len(), 13);
    let (result, ()) = tokio::join!(
        within("subscribe", client.subscribe(&[("s", QoS::AtMostOnce)])),
        async {
            broker.expect_subscribe().await;
            broker
                .send(&[message.clone(), message.clone()].concat())
                .await;
        }
    );
    let Err(Error::AckPending(sub_id)) = result else {
        panic!("expected AckPending, got {result:?}");
    };
    for _ in 0..2 {
        assert!(matches!(
            within("poll", client.poll()).await.map(owned),
            Ok(Ev::Message { .. })
        ));
    }
    let (result, ()) = tokio::join!(
        client_publish(&mut client, "p", b"x", QoS::AtLeastOnce, false),
        async {
            let p = broker.expect_publish().await;
            broker
                .send(&[suback(sub_id.get(), &[0]), puback(p.id.expect("QoS 1"))].concat())
                .await;
        }
    );
    assert_eq!(result, Ok(()));
    assert_eq!(
        within("poll", client.poll()).await.map(owned),
        Ok(Ev::Subscribed {
            id: sub_id.get(),
            refused: None
        })
    );
}

/// Retained messages that fill `rx` before the SUBACK of the connect's
/// subscriptions: `connect` succeeds, `poll` delivers them and then reports
/// the SUBACK, and the subscriptions count as made (found by fuzzing: this
/// used to fail the connect with an AckPending nobody could act on).
#[tokio::test]
async fn messages_before_the_connect_suback_do_not_fail_the_connect() {
    let filters = [("r/#", QoS::AtMostOnce)];
    let options = ConnectOptions::new("r")
        .with_persistent_session()
        .with_subscriptions(&filters);
    let mut outbox = [0u8; 64];
    let mut session: Session<'_, 4> = Session::new(&mut outbox);
    let (mut rx, mut tx) = ([0u8; 16], [0u8; 64]);
    let message = publish0("a", b"12345");
    assert_eq!(message.len(), 10);

    let (socket, mut broker) = mock_pair();
    let (result, ()) = tokio::join!(
        connect(socket, &mut session, &mut rx, &mut tx, &options),
        async {
            broker.accept(false).await;
            let (id, _) = broker.expect_subscribe().await;
            broker
                .send(&[message.clone(), message.clone(), suback(id, &[0])].concat())
                .await;
        }
    );
    let (mut client, connected) = result.expect("connects");
    assert_eq!(connected.granted, None);
    for _ in 0..2 {
        assert!(matches!(
            within("poll", client.poll()).await.map(owned),
            Ok(Ev::Message { .. })
        ));
    }
    assert!(matches!(
        within("poll", client.poll()).await.map(owned),
        Ok(Ev::Subscribed { refused: None, .. })
    ));
    drop(client);

    // Made: the next connect with a session does not subscribe again.
    let (socket, mut broker) = mock_pair();
    let (result, ()) = tokio::join!(
        connect(socket, &mut session, &mut rx, &mut tx, &options),
        async {
            broker.accept(true).await;
            broker.expect_silence().await;
        }
    );
    assert_eq!(result.expect("reconnects").1.granted, None);
}

/// `poll_until`'s deadline on the client's clock: `ms` from now (the
/// client's timer started a moment before this one, so its deadline comes
/// slightly earlier, never later).
fn from_now(ms: u64) -> u64 {
    use mqtts::time::Timer as _;
    TokioTimer::new().now() + ms
}

#[tokio::test]
async fn poll_until_ends_at_its_deadline_with_nothing_and_the_client_stays_usable() {
    connected!(client, broker);
    let started = Instant::now();
    let polled = within("poll_until", client.poll_until(from_now(300))).await;
    assert!(
        matches!(polled, Ok(None)),
        "{:?}",
        polled.map(|e| e.map(owned))
    );
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "{:?}",
        started.elapsed()
    );
    assert!(!client.is_broken());
    broker.expect_silence().await;
    // An event before the deadline is returned at once.
    broker.send(&publish0("u/1", b"before")).await;
    let polled = within("poll_until", client.poll_until(from_now(60_000))).await;
    assert_eq!(
        polled.map(|e| e.map(owned)),
        Ok(Some(message("u/1", b"before", QoS::AtMostOnce, None)))
    );
}

#[tokio::test]
async fn poll_until_a_passed_deadline_still_sends_the_acknowledgement_it_owes() {
    connected!(client, broker);
    broker
        .send(&publish("u/q1", b"one", 1, 7, false, false))
        .await;
    let polled = within("poll_until", client.poll_until(from_now(60_000))).await;
    assert_eq!(
        polled.map(|e| e.map(owned)),
        Ok(Some(message("u/q1", b"one", QoS::AtLeastOnce, Some(7))))
    );
    // The deadline has passed already: the PUBACK for 7 still leaves whole,
    // then the call ends with nothing, and the connection is usable (a
    // timer racing `poll` here could cut the PUBACK and break it).
    let polled = within("poll_until", client.poll_until(1)).await;
    assert!(
        matches!(polled, Ok(None)),
        "{:?}",
        polled.map(|e| e.map(owned))
    );
    broker.expect_bytes(&puback(7)).await;
    assert!(!client.is_broken());
    client_publish(&mut client, "u/after", b"x", QoS::AtMostOnce, false)
        .await
        .expect("publish after the deadline");
    broker.expect_bytes(&publish0("u/after", b"x")).await;
}
