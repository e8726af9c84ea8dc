//! Broker faults, each ending in a typed error (or a resumed session),
//! never a panic or a hang:
//!
//! - mosquitto killed (SIGKILL) and started again with persistence: the
//!   persistent sessions resume, with their subscriptions, the messages the
//!   broker queued and the messages the client still had in flight;
//! - a broker that goes silent over TLS: keep-alive gives up within 1.5
//!   keep-alive intervals, in `poll` and in `publish`;
//! - the server closing the connection at every point of a real TLS 1.3
//!   handshake (mosquitto behind a proxy that cuts after n bytes);
//! - a record the broker cannot authenticate: its fatal alert ends the
//!   connection with a typed error;
//! - a record larger than the client's read buffer.
//!
//! Covered elsewhere, not repeated here: a plaintext alert instead of a
//! ServerHello (`tls_trust::server_alert_is_reported_with_its_description`),
//! a server hanging up after refusing ALPN
//! (`tls_trust::server_hanging_up_is_a_closed_connection`), a server that
//! never answers the ClientHello
//! (`tls_deadline::a_server_that_never_answers_times_the_handshake_out`),
//! keep-alive against the scripted broker
//! (`client_mock::keep_alive_timeout_when_the_broker_is_silent`).

mod support;

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use embedded_io_adapters::tokio_1::FromTokio;
use mqtts::client::{Client, ConnectOptions, Connected, Event};
use mqtts::error::TlsFailure;
use mqtts::mqtt::QoS;
use mqtts::tls::{MaxFragmentLength, TlsOptions, TlsStream};
use mqtts::trust::{Pin, Trust};
use mqtts::{Error, Session};
use rand::rngs::OsRng;
use support::fault_proxy::{Dir, FaultProxy, Plan, Role};
use support::*;

type TlsClient<'b, 's, const N: usize> =
    Client<'b, 's, TlsStream<'b, FromTokio<tokio::net::TcpStream>, TokioTimer>, TokioTimer, N>;

fn tls_options(pins: &[Pin]) -> TlsOptions<'_> {
    TlsOptions::new(SERVER_NAME, Trust::pinned(pins))
        .with_max_fragment_length(MaxFragmentLength::Bytes1024)
        .with_handshake_timeout_ms(5_000)
}

/// Connects over TLS to `port` on loopback.
async fn connect<'b, 's, const N: usize>(
    port: u16,
    pins: &'b [Pin],
    session: &'b mut Session<'s, N>,
    buffers: &'b mut ClientBuffers,
    options: &ConnectOptions<'_>,
) -> Result<(TlsClient<'b, 's, N>, Connected), Error> {
    let tcp = tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("TCP connect");
    within(
        "connect",
        Client::connect_tls(
            FromTokio::new(tcp),
            &mut OsRng,
            &tls_options(pins),
            TokioTimer::new(),
            session,
            buffers.get(),
            options,
        ),
    )
    .await
}

fn leak<T>(value: T) -> &'static mut T {
    Box::leak(Box::new(value))
}

fn new_session<const N: usize>() -> &'static mut Session<'static, N> {
    leak(Session::new(leak(vec![0u8; 8192]).as_mut_slice()))
}

/// The next application message (topic, payload, QoS), within 10 s.
async fn next_message<const N: usize>(client: &mut TlsClient<'_, '_, N>) -> (String, Vec<u8>, QoS) {
    loop {
        let event = tokio::time::timeout(Duration::from_secs(10), client.poll())
            .await
            .expect("a message within 10 s")
            .expect("poll");
        if let Event::Message(m) = event {
            return (m.topic.to_string(), m.payload.to_vec(), m.qos);
        }
    }
}

#[tokio::test]
async fn a_killed_broker_restarted_with_persistence_resumes_the_sessions() {
    let pki = TestPki::new(KeyKind::P256);
    let mut broker = Mosquitto::start_persistent(&[&pki.leaf], "");
    let pins: &'static [Pin] = leak([Pin::PublicKey(pki.leaf.spki_sha256())]);
    let subscriptions = [("restart/#", QoS::ExactlyOnce)];
    let sub_options = ConnectOptions::new("restart-sub")
        .with_persistent_session()
        .with_subscriptions(&subscriptions);
    let pub_options = ConnectOptions::new("restart-pub").with_persistent_session();
    let sub_session = new_session::<32>();
    let pub_session = new_session::<8>();

    // The subscriber subscribes, then goes offline.
    let (subscriber, connected) = connect(
        broker.port,
        pins,
        &mut *sub_session,
        leak(ClientBuffers::new()),
        &sub_options,
    )
    .await
    .expect("subscriber connects");
    assert_eq!(connected.granted.as_deref(), Some(&[QoS::ExactlyOnce][..]));
    subscriber.disconnect().await.expect("disconnect");

    // Messages queued by the broker for the offline subscriber.
    let (mut publisher, _) = connect(
        broker.port,
        pins,
        &mut *pub_session,
        leak(ClientBuffers::new()),
        &pub_options,
    )
    .await
    .expect("publisher connects");
    publisher
        .publish("restart/queued/1", b"q1", QoS::AtLeastOnce, false)
        .await
        .expect("acknowledged");
    publisher
        .publish("restart/queued/2", b"q2", QoS::ExactlyOnce, false)
        .await
        .expect("acknowledged");
    drop(publisher);

    // Messages still in flight in the publisher's session: sent through a
    // proxy that has gone silent, so they never reach the broker.
    let proxy = FaultProxy::transparent(broker.port).await;
    let (mut publisher, _) = connect(
        proxy.port,
        pins,
        &mut *pub_session,
        leak(ClientBuffers::new()),
        &pub_options,
    )
    .await
    .expect("publisher connects through the proxy");
    proxy.go_silent();
    for (topic, payload, qos) in [
        ("restart/in-flight/1", b"f1", QoS::AtLeastOnce),
        ("restart/in-flight/2", b"f2", QoS::ExactlyOnce),
    ] {
        let id = publisher
            .start_publish(topic, payload, qos, false)
            .await
            .expect("stored and written");
        assert!(id.is_some());
    }
    drop(publisher);
    assert_eq!(pub_session.in_flight(), 2);

    // The crash, and the restart from the saved database.
    broker.kill();
    broker.start_again();

    let (publisher, connected) = connect(
        broker.port,
        pins,
        &mut *pub_session,
        leak(ClientBuffers::new()),
        &pub_options,
    )
    .await
    .expect("publisher reconnects after the restart");
    assert!(
        connected.session_present,
        "the publisher's session survived"
    );
    assert_eq!(connected.resent, 2, "both in-flight messages are resent");
    let mut publisher = publisher;
    let mut completed = 0;
    while completed < 2 {
        match within("completions", publisher.poll()).await {
            Ok(Event::Published(_)) => completed += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    publisher.disconnect().await.expect("disconnect");
    assert_eq!(pub_session.in_flight(), 0);

    let (mut subscriber, connected) = connect(
        broker.port,
        pins,
        &mut *sub_session,
        leak(ClientBuffers::new()),
        &sub_options,
    )
    .await
    .expect("subscriber reconnects after the restart");
    assert!(
        connected.session_present,
        "the subscriber's session survived"
    );
    assert_eq!(connected.granted, None, "no need to subscribe again");
    let mut received = BTreeMap::new();
    while received.len() < 4 {
        let (topic, payload, qos) = next_message(&mut subscriber).await;
        *received.entry((topic, payload, qos)).or_insert(0) += 1;
    }
    // Nothing more (a QoS 2 duplicate would show here).
    let more = tokio::time::timeout(Duration::from_millis(500), subscriber.poll()).await;
    assert!(more.is_err(), "unexpected {more:?}");
    let expected: BTreeMap<_, _> = [
        ("restart/queued/1", b"q1", QoS::AtLeastOnce),
        ("restart/queued/2", b"q2", QoS::ExactlyOnce),
        ("restart/in-flight/1", b"f1", QoS::AtLeastOnce),
        ("restart/in-flight/2", b"f2", QoS::ExactlyOnce),
    ]
    .into_iter()
    .map(|(t, p, q)| ((t.to_string(), p.to_vec(), q), 1))
    .collect();
    assert_eq!(received, expected);
}

/// Connects through a proxy with a `keep_alive_secs` keep-alive, makes the
/// proxy swallow everything, and returns the error `wait` ends with and how
/// long after the last traffic it came.
async fn silent_broker(keep_alive_secs: u16, publish_while_silent: bool) -> (Error, Duration) {
    let pki = TestPki::new(KeyKind::P256);
    let broker = Mosquitto::start(&[&pki.leaf], "");
    let pins: &'static [Pin] = leak([Pin::PublicKey(pki.leaf.spki_sha256())]);
    let proxy = FaultProxy::transparent(broker.port).await;
    let options = ConnectOptions::new("silence").with_keep_alive(keep_alive_secs);
    let (mut client, _) = connect(
        proxy.port,
        pins,
        new_session::<8>(),
        leak(ClientBuffers::new()),
        &options,
    )
    .await
    .expect("connects");
    // CONNACK was the last traffic.
    let silent_since = Instant::now();
    proxy.go_silent();
    let result = if publish_while_silent {
        tokio::time::sleep(Duration::from_millis(300)).await;
        within(
            "publish",
            client.publish("silence/x", b"?", QoS::AtLeastOnce, false),
        )
        .await
    } else {
        within("poll", client.poll()).await.map(|_| ())
    };
    let error = result.expect_err("the broker is silent");
    assert!(client.is_broken());
    assert_eq!(
        within("poll after", client.poll()).await.err(),
        Some(Error::Disconnected)
    );
    (error, silent_since.elapsed())
}

#[tokio::test]
async fn a_silent_broker_is_detected_within_one_and_a_half_keep_alive_intervals() {
    for publish_while_silent in [false, true] {
        let (error, elapsed) = silent_broker(2, publish_while_silent).await;
        println!(
            "silent broker, keep-alive 2 s, {}: {error:?} after {elapsed:.2?}",
            if publish_while_silent {
                "publish waiting"
            } else {
                "poll"
            }
        );
        assert_eq!(error, Error::KeepAliveTimeout);
        // PINGREQ after 2 s of no traffic, dead 1 s later: 3 s after the
        // CONNACK, which came a little before `silent_since`; the margin
        // is for scheduling on a loaded machine only (an early verdict,
        // without waiting for the PINGRESP, would be at 2 s).
        assert!(
            (Duration::from_millis(2_500)..Duration::from_millis(3_500)).contains(&elapsed),
            "KeepAliveTimeout after {elapsed:?} (publishing: {publish_while_silent})"
        );
    }
}

#[tokio::test]
async fn a_server_closing_anywhere_in_the_handshake_is_a_typed_error() {
    let pki = TestPki::new(KeyKind::P256);
    let broker = Mosquitto::start(&[&pki.leaf], "");
    let pins: &'static [Pin] = leak([Pin::PublicKey(pki.leaf.spki_sha256())]);
    // Cut after every 11th byte of the server's flight, and after every 7th
    // of the client's (FIN in both directions), through the whole handshake
    // and the CONNECT/CONNACK exchange.
    let mut outcomes: BTreeMap<String, u32> = BTreeMap::new();
    let cuts: Vec<Plan> = (0..1_400u64)
        .step_by(11)
        .map(|bytes| Plan::AfterBytes {
            dir: Dir::Down,
            bytes,
        })
        .chain((0..400u64).step_by(7).map(|bytes| Plan::AfterBytes {
            dir: Dir::Up,
            bytes,
        }))
        .collect();
    let script: Vec<Option<Plan>> = cuts.iter().copied().map(Some).collect();
    let proxy = FaultProxy::scripted(broker.port, Role::PublisherQos1, &script).await;
    let mut connected = 0;
    for plan in &cuts {
        let started = Instant::now();
        let result = connect(
            proxy.port,
            pins,
            new_session::<2>(),
            leak(ClientBuffers::new()),
            &ConnectOptions::new("handshake-cut").with_connect_timeout_ms(5_000),
        )
        .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{plan:?}: took {:?}",
            started.elapsed()
        );
        match result {
            // A cut after the CONNACK went through.
            Ok(_) => connected += 1,
            Err(e) => {
                assert!(
                    matches!(
                        e,
                        Error::ConnectionClosed
                            | Error::Io(
                                embedded_io::ErrorKind::ConnectionReset
                                    | embedded_io::ErrorKind::BrokenPipe
                            )
                    ),
                    "{plan:?}: {e:?}"
                );
                *outcomes.entry(format!("{e:?}")).or_insert(0) += 1;
            }
        }
    }
    println!(
        "handshake cuts: {} cut points, {connected} connected before the cut, {outcomes:?}",
        cuts.len()
    );
    assert!(
        outcomes.values().sum::<u32>() >= 100,
        "most cut points fall inside the handshake: {outcomes:?}"
    );
}

#[tokio::test]
async fn a_fatal_alert_after_the_handshake_ends_the_connection() {
    let pki = TestPki::new(KeyKind::P256);
    let broker = Mosquitto::start(&[&pki.leaf], "");
    let pins: &'static [Pin] = leak([Pin::PublicKey(pki.leaf.spki_sha256())]);
    // Client records: ClientHello (0), Finished (1), CONNECT (2), then the
    // PUBLISH (3), whose tag the proxy damages.
    let corrupt = Plan::Corrupt {
        dir: Dir::Up,
        index: 3,
    };
    let proxy = FaultProxy::scripted(broker.port, Role::PublisherQos1, &[Some(corrupt)]).await;
    let (mut client, _) = connect(
        proxy.port,
        pins,
        new_session::<8>(),
        leak(ClientBuffers::new()),
        &ConnectOptions::new("corrupt"),
    )
    .await
    .expect("connects");
    let error = within(
        "publish",
        client.publish("corrupt/x", b"damaged on the way", QoS::AtLeastOnce, false),
    )
    .await
    .expect_err("the broker cannot decrypt the PUBLISH");
    // OpenSSL answers with an encrypted fatal bad_record_mac alert (RFC 8446
    // §5.2). embedded-tls 0.19 turns any alert after the handshake other
    // than close_notify into `InternalError` (common/decrypted_read_handler.rs),
    // losing its description, so mqtts cannot report
    // `AlertReceived(Alert(20))` and says `Tls(Internal)`, whose message
    // blames the record buffers (reported). What matters here: a typed
    // error, at once, and the connection marked broken.
    assert_eq!(error, Error::Tls(TlsFailure::Internal), "{error}");
    assert!(client.is_broken());
    assert_eq!(
        within("poll after", client.poll()).await.err(),
        Some(Error::Disconnected)
    );
}

#[tokio::test]
async fn a_record_larger_than_the_read_buffer_is_record_too_large() {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    // rustls ignores max_fragment_length: after the handshake it sends a
    // CONNACK and then a 4,000-byte PUBLISH in one record, too large for a
    // read buffer sized for 1,024-byte records.
    let pki = TestPki::new(KeyKind::P256);
    let config = server_config(pki.chain(), pki.leaf.private_key_der());
    let (socket, server) = spawn_server_with(config, |mut stream| async move {
        let mut connect = [0u8; 64];
        let _ = stream.read(&mut connect).await;
        let mut packets = vec![0x20, 0x02, 0x00, 0x00];
        let topic = b"big";
        let payload = vec![b'x'; 4_000];
        let remaining = 2 + topic.len() + payload.len();
        packets.push(0x30);
        packets.push((remaining % 128) as u8 | 0x80);
        packets.push((remaining / 128) as u8);
        packets.extend_from_slice(&(topic.len() as u16).to_be_bytes());
        packets.extend_from_slice(topic);
        packets.extend_from_slice(&payload);
        stream.write_all(&packets).await.expect("write");
        stream.flush().await.expect("flush");
        let mut rest = Vec::new();
        let _ = stream.read_to_end(&mut rest).await;
    });
    let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
    let mut outbox = [0u8; 256];
    let mut session: Session<'_, 2> = Session::new(&mut outbox);
    let mut buffers = ClientBuffers::new();
    let connected = within(
        "connect",
        Client::connect_tls(
            socket,
            &mut OsRng,
            &tls_options(&pins),
            TokioTimer::new(),
            &mut session,
            buffers.get(),
            &ConnectOptions::new("small-buffer"),
        ),
    )
    .await;
    let error = match connected {
        // CONNACK and PUBLISH may come in one record: the connect fails.
        Err(e) => e,
        Ok((mut client, _)) => within("poll", client.poll())
            .await
            .expect_err("the record does not fit"),
    };
    assert_eq!(error, Error::Tls(TlsFailure::RecordTooLarge), "{error}");
    drop(buffers);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}

/// After the handshake, an authenticated server sends a handshake message
/// the client does not expect there (here a Finished; CertificateRequest,
/// EncryptedExtensions, Certificate or ServerHello would do the same). The
/// client must end with a typed error.
///
/// Fails with mqtts at 916cc47: embedded-tls 0.19 panics
/// (`unimplemented!()` in `common/decrypted_read_handler.rs`, the
/// `ServerRecord::Handshake(_)` arm for anything but NewSessionTicket), so
/// bytes from a pinned broker (buggy, or in a TLS 1.3 post-handshake
/// authentication attempt) crash the firmware. Upstream bug: embedded-tls
/// 0.19.0 is the newest release and mqtts cannot see inside encrypted
/// records to filter these; only the authenticated broker can send them.
/// Run with `--ignored` once embedded-tls is fixed.
#[tokio::test]
#[ignore = "embedded-tls 0.19 panics (unimplemented!) on post-handshake messages other than NewSessionTicket; upstream"]
async fn an_unexpected_handshake_message_after_the_handshake_is_a_typed_error() {
    use rustls::crypto::cipher::{OutboundChunks, OutboundPlainMessage};
    use rustls::{ConnectionTrafficSecrets, ContentType, ProtocolVersion};
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
    let pki = TestPki::new(KeyKind::P256);
    let mut config = server_config_builder()
        .with_no_client_auth()
        .with_single_cert(pki.chain(), pki.leaf.private_key_der())
        .expect("server config");
    // To write records rustls itself would not send.
    config.enable_secret_extraction = true;
    let (socket, server) =
        spawn_server_with(std::sync::Arc::new(config), |mut stream| async move {
            let mut connect = [0u8; 64];
            let _ = stream.read(&mut connect).await;
            stream
                .write_all(&[0x20, 0x02, 0x00, 0x00])
                .await
                .expect("CONNACK");
            stream.flush().await.expect("flush");
            let (mut raw, connection) = stream.into_inner();
            let secrets = connection.dangerous_extract_secrets().expect("secrets");
            let (seq, ConnectionTrafficSecrets::Aes128Gcm { key, iv }) = secrets.tx else {
                panic!("the client offers TLS_AES_128_GCM_SHA256 only");
            };
            let suite = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
                .tls13()
                .expect("a TLS 1.3 suite");
            let mut encrypter = suite.aead_alg.encrypter(key, iv);
            // Finished (type 20) with 32 bytes of verify data.
            let mut finished = vec![20, 0, 0, 32];
            finished.extend([0u8; 32]);
            let record = encrypter
                .encrypt(
                    OutboundPlainMessage {
                        typ: ContentType::Handshake,
                        version: ProtocolVersion::TLSv1_2,
                        payload: OutboundChunks::Single(&finished),
                    },
                    seq,
                )
                .expect("encrypt")
                .encode();
            raw.write_all(&record).await.expect("write");
            raw.flush().await.expect("flush");
            let mut rest = Vec::new();
            let _ = tokio::time::timeout(Duration::from_secs(5), raw.read_to_end(&mut rest)).await;
        });
    let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
    let mut outbox = [0u8; 256];
    let mut session: Session<'_, 2> = Session::new(&mut outbox);
    let mut buffers = ClientBuffers::new();
    let (mut client, _) = within(
        "connect",
        Client::connect_tls(
            socket,
            &mut OsRng,
            &tls_options(&pins),
            TokioTimer::new(),
            &mut session,
            buffers.get(),
            &ConnectOptions::new("late-handshake"),
        ),
    )
    .await
    .expect("connects");
    let error = within("poll", client.poll())
        .await
        .expect_err("a Finished after the handshake is refused");
    assert!(
        matches!(
            error,
            Error::Tls(TlsFailure::ProtocolViolation | TlsFailure::Unsupported)
        ),
        "{error:?}"
    );
    drop(client);
    let _ = tokio::time::timeout(Duration::from_secs(5), server).await;
}
