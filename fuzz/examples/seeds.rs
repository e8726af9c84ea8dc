//! Writes the seed corpora of the fuzz targets from real data:
//!
//! - `frame`, `session`: broker byte streams captured from mosquitto
//!   (started here on 127.0.0.1, the client being mqtts itself), plus
//!   frames written by hand from the MQTT 3.1.1 specification, including
//!   the inputs known to crash mqttrs;
//! - `trust`: the committed real certificates (GlobalSign roots, the
//!   P-256 test certificate), chains generated with rcgen as
//!   tests/support/pki.rs does, chains generated with the openssl command,
//!   and a few roots of the system store;
//! - `fingerprint`: the fingerprints of those certificates in every form
//!   `Fingerprint::parse` documents, as `openssl` prints them, and mistakes;
//! - `tls`: the session recorded from rustls (`mqtts_fuzz::tls`) replayed
//!   whole, in small reads, without a record, with records changed or
//!   injected.
//!
//! The `verifier` and `certificate_verify` targets start from an empty
//! corpus: their inputs are `arbitrary` structures the fuzzer finds quickly.
//!
//! Usage: `RUSTFLAGS="--cfg fuzzing" cargo run --example seeds -- OUT_DIR`
//! (in `fuzz/`; the cfg enables insecure mode as cargo-fuzz builds do); writes
//! `OUT_DIR/<target>/<name>`. scripts/fuzz.sh merges these into the
//! committed corpora with `cargo fuzz cmin`.

use std::cell::RefCell;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::rc::Rc;
use std::time::Duration;

use embedded_io_adapters::tokio_1::FromTokio;
use mqtts::Session;
use mqtts::client::{Client, ConnectOptions, Will};
use mqtts::error::Error;
use mqtts::fingerprint::Fingerprint;
use mqtts::mqtt::QoS;
use mqtts::time::{Millis, Timer};
use mqtts::transport::{Plain, Transport};
use mqtts::trust::CertificateInfo;
use mqtts_fuzz::session::{
    self, CONNECT_SUBSCRIPTIONS, FILTERS, KEEP_ALIVES, Op, Scenario, Setup, TOPICS,
};
use mqtts_fuzz::trust::{mode, pins};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    KeyUsagePurpose,
};

fn write(dir: &Path, target: &str, name: &str, bytes: &[u8]) {
    let dir = dir.join(target);
    fs::create_dir_all(&dir).unwrap();
    fs::write(dir.join(name), bytes).unwrap();
}

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

// ---------------------------------------------------------------- frames

fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    let mut len = body.len();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            break;
        }
    }
    out.extend_from_slice(body);
    out
}

fn publish(topic: &str, payload: &[u8], qos: u8, id: u16, dup: bool, retain: bool) -> Vec<u8> {
    let mut body = (topic.len() as u16).to_be_bytes().to_vec();
    body.extend_from_slice(topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(
        0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain),
        &body,
    )
}

/// Every packet a broker sends, written from the specification (§3).
fn spec_frames() -> Vec<(&'static str, Vec<u8>)> {
    let mut frames = vec![
        ("connack-accepted", vec![0x20, 0x02, 0x00, 0x00]),
        ("connack-session-present", vec![0x20, 0x02, 0x01, 0x00]),
        ("puback", vec![0x40, 0x02, 0x00, 0x01]),
        ("pubrec", vec![0x50, 0x02, 0x00, 0x02]),
        ("pubrel", vec![0x62, 0x02, 0x00, 0x02]),
        ("pubcomp", vec![0x70, 0x02, 0xFF, 0xFF]),
        ("suback-one", vec![0x90, 0x03, 0x00, 0x01, 0x01]),
        (
            "suback-seven",
            vec![0x90, 0x09, 0x00, 0x02, 0, 1, 2, 0x80, 0, 1, 2],
        ),
        ("unsuback", vec![0xB0, 0x02, 0x00, 0x03]),
        ("pingresp", vec![0xD0, 0x00]),
        ("publish-qos0", publish("a/b", b"hello", 0, 0, false, false)),
        ("publish-qos1", publish("a", b"1", 1, 7, false, true)),
        (
            "publish-qos2-dup",
            publish("a/b/c", b"", 2, 0x1234, true, true),
        ),
        (
            "publish-sys",
            publish("$SYS/broker/uptime", b"42 seconds", 0, 0, false, true),
        ),
        (
            "publish-utf8",
            publish(
                "capteurs/température/°C",
                "21,5 °C".as_bytes(),
                1,
                9,
                false,
                false,
            ),
        ),
        (
            "publish-200",
            publish("big", &[0xA5; 200], 1, 3, false, false),
        ),
        (
            "publish-20000",
            publish("bigger", &[0x5A; 20_000], 0, 0, false, false),
        ),
        // The inputs FACTS.md lists as mqttrs panics or wrong lengths accepted.
        ("mqttrs-connack-short", vec![0x20, 0x00]),
        ("mqttrs-puback-short", vec![0x40, 0x00]),
        ("mqttrs-suback-short", vec![0x90, 0x00]),
        ("mqttrs-unsuback-short", vec![0xB0, 0x01, 0x00]),
        (
            "mqttrs-publish-topic-past-end",
            vec![0x30, 0x02, 0x00, 0x05, 0x61, 0x62, 0x63, 0x64, 0x65],
        ),
        (
            "mqttrs-publish-qos1-short",
            vec![0x32, 0x03, 0x00, 0x01, 0x61],
        ),
        ("mqttrs-connack-long", vec![0x20, 0x03, 0x00, 0x00, 0x00]),
        ("mqttrs-pingresp-long", vec![0xD0, 0x02, 0x00, 0x00]),
        // Padded remaining length (0x80 continuation, value 2).
        ("puback-padded-length", vec![0x40, 0x82, 0x00, 0x00, 0x05]),
        (
            "remaining-length-5-bytes",
            vec![0x30, 0xFF, 0xFF, 0xFF, 0xFF, 0x01],
        ),
        ("remaining-length-max", vec![0x30, 0xFF, 0xFF, 0xFF, 0x7F]),
        ("reserved-type-0", vec![0x00, 0x00]),
        ("reserved-type-15", vec![0xF0, 0x00]),
        ("connect-from-broker", vec![0x10, 0x00]),
        ("publish-qos3", publish("a", b"x", 3, 1, false, false)),
        (
            "publish-wildcard-topic",
            publish("a/+", b"x", 0, 0, false, false),
        ),
        (
            "publish-nul-topic",
            publish("a\0", b"x", 0, 0, false, false),
        ),
    ];
    let mut stream = Vec::new();
    for (_, f) in &frames[..11] {
        stream.extend_from_slice(f);
    }
    frames.push(("stream-of-every-type", stream));
    frames
}

// ------------------------------------------------------------- mosquitto

#[derive(Clone)]
struct TokioTimer(tokio::time::Instant);

impl Timer for TokioTimer {
    fn now(&self) -> Millis {
        self.0.elapsed().as_millis() as Millis
    }

    async fn sleep_until(&mut self, deadline: Millis) {
        tokio::time::sleep_until(self.0 + Duration::from_millis(deadline)).await;
    }
}

/// A transport that keeps a copy of every byte the broker sends.
struct Recorder<T> {
    inner: T,
    log: Rc<RefCell<Vec<u8>>>,
}

impl<T: Transport> Transport for Recorder<T> {
    async fn read_before(
        &mut self,
        buf: &mut [u8],
        deadline: Millis,
    ) -> Result<Option<usize>, Error> {
        let result = self.inner.read_before(buf, deadline).await;
        if let Ok(Some(n)) = result {
            self.log.borrow_mut().extend_from_slice(&buf[..n]);
        }
        result
    }

    async fn write_all(&mut self, bytes: &[u8]) -> Result<(), Error> {
        self.inner.write_all(bytes).await
    }

    async fn flush(&mut self) -> Result<(), Error> {
        self.inner.flush().await
    }
}

struct Mosquitto {
    child: Child,
    port: u16,
    _dir: PathBuf,
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn start_mosquitto(scratch: &Path) -> Option<Mosquitto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .ok()?
        .local_addr()
        .ok()?
        .port();
    let dir = scratch.join("mosquitto");
    fs::create_dir_all(&dir).ok()?;
    let config = dir.join("mosquitto.conf");
    fs::write(
        &config,
        format!("listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"),
    )
    .ok()?;
    let child = Command::new("mosquitto")
        .arg("-c")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .ok()?;
    for _ in 0..50 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Some(Mosquitto {
                child,
                port,
                _dir: dir,
            });
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    None
}

/// The connect options `session::run` builds from `setup` (same tables).
fn options_for<'a>(setup: &Setup, subscriptions: &'a [(&'a str, QoS)]) -> ConnectOptions<'a> {
    let mut options = ConnectOptions::new(if setup.client_id_empty { "" } else { "fuzz" })
        .with_keep_alive(KEEP_ALIVES[usize::from(setup.keep_alive) % KEEP_ALIVES.len()])
        .with_subscriptions(subscriptions)
        .with_connect_timeout_ms(5_000);
    if !setup.clean_session {
        options = options.with_persistent_session();
    }
    if setup.will {
        options = options.with_will(Will {
            topic: "status/fuzz",
            payload: b"gone",
            qos: QoS::AtLeastOnce,
            retain: true,
        });
    }
    options
}

fn qos_of(byte: u8) -> QoS {
    match byte % 3 {
        0 => QoS::AtMostOnce,
        1 => QoS::AtLeastOnce,
        _ => QoS::ExactlyOnce,
    }
}

fn chosen(mask: u8) -> Vec<&'static str> {
    (0..8)
        .filter(|i| mask & (1 << i) != 0)
        .map(|i| FILTERS[i])
        .collect()
}

/// Runs `scenario` against mosquitto with the real client and returns what
/// the broker sent, over all its connections.
async fn capture(port: u16, scenario: &Scenario) -> Vec<u8> {
    let log = Rc::new(RefCell::new(Vec::new()));
    let setup = &scenario.setup;
    let subscriptions: Vec<(&str, QoS)> = CONNECT_SUBSCRIPTIONS
        .iter()
        .enumerate()
        .filter(|(i, _)| setup.subscriptions & (1 << i) != 0)
        .map(|(_, s)| *s)
        .collect();
    let options = options_for(setup, &subscriptions);
    let mut outbox = vec![0u8; session::OUTBOX_SIZES[usize::from(setup.outbox) % 4]];
    let mut session: Session<'_, { session::N }> = Session::new(&mut outbox);
    let mut rx = vec![0u8; session::RX_SIZES[usize::from(setup.rx) % 7]];
    let mut tx = [0u8; session::TX_SIZE];
    let payload = [0x5Au8; 3 * 255];
    let mut ops = scenario.ops.iter();
    'connections: loop {
        let timer = TokioTimer(tokio::time::Instant::now());
        let socket = tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("mosquitto listens");
        let transport = Recorder {
            inner: Plain::new(FromTokio::new(socket), timer.clone()),
            log: log.clone(),
        };
        let connect = Client::connect(transport, timer, &mut session, &mut rx, &mut tx, &options);
        let Ok((mut client, _)) = connect.await else {
            break;
        };
        for op in ops.by_ref() {
            let wait = Duration::from_millis(1500);
            match *op {
                Op::Poll => {
                    let _ = tokio::time::timeout(wait, client.poll()).await;
                }
                Op::Publish {
                    topic,
                    len,
                    qos,
                    retain,
                } => {
                    let topic = TOPICS[usize::from(topic) % TOPICS.len()];
                    let call = client.publish(
                        topic,
                        &payload[..3 * usize::from(len)],
                        qos_of(qos),
                        retain,
                    );
                    let _ = tokio::time::timeout(wait, call).await;
                }
                Op::StartPublish {
                    topic,
                    len,
                    qos,
                    retain,
                } => {
                    let topic = TOPICS[usize::from(topic) % TOPICS.len()];
                    let call = client.start_publish(
                        topic,
                        &payload[..3 * usize::from(len)],
                        qos_of(qos),
                        retain,
                    );
                    let _ = tokio::time::timeout(wait, call).await;
                }
                Op::Subscribe { filters, qos } => {
                    let list: Vec<(&str, QoS)> = chosen(filters)
                        .into_iter()
                        .map(|f| (f, qos_of(qos)))
                        .collect();
                    let _ = tokio::time::timeout(wait, client.subscribe(&list)).await;
                }
                Op::Unsubscribe { filters } => {
                    let _ = tokio::time::timeout(wait, client.unsubscribe(&chosen(filters))).await;
                }
                Op::FailNextWrite => {}
                Op::Flush => {
                    let _ = client.flush().await;
                }
                Op::Reconnect => continue 'connections,
                Op::Disconnect => {
                    let _ = client.disconnect().await;
                    continue 'connections;
                }
            }
        }
        break;
    }
    log.take()
}

fn pub_op(topic: u8, len: u8, qos: u8, start: bool) -> Op {
    if start {
        Op::StartPublish {
            topic,
            len,
            qos,
            retain: false,
        }
    } else {
        Op::Publish {
            topic,
            len,
            qos,
            retain: false,
        }
    }
}

/// Scenarios run against mosquitto (indices into the tables of
/// `mqtts_fuzz::session`).
fn live_scenarios() -> Vec<(&'static str, Scenario)> {
    let base = Setup {
        keep_alive: 3, // 60 s
        clean_session: true,
        rx: 5, // 256 bytes
        outbox: 3,
        eof_closes: true,
        ..Setup::default()
    };
    vec![
        (
            "mosquitto-qos-0-1-2",
            Scenario {
                setup: Setup {
                    subscriptions: 1, // a/# at QoS 1
                    ..base.clone()
                },
                ops: vec![
                    Op::Subscribe {
                        filters: 0b1000_0010, // +/b, x/y
                        qos: 2,
                    },
                    pub_op(0, 2, 1, true),
                    pub_op(1, 4, 2, false),
                    pub_op(0, 0, 0, false),
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Unsubscribe { filters: 0b1 },
                    Op::Poll,
                    Op::Disconnect,
                ],
            },
        ),
        (
            "mosquitto-persistent-qos2",
            Scenario {
                setup: Setup {
                    clean_session: false,
                    ..base.clone()
                },
                ops: vec![
                    Op::Subscribe {
                        filters: 0b1001, // a/#, a
                        qos: 2,
                    },
                    pub_op(0, 10, 2, false),
                    Op::Poll,
                    Op::Poll,
                    Op::Reconnect,
                    pub_op(1, 1, 1, false),
                    Op::Poll,
                    Op::Poll,
                    Op::Disconnect,
                ],
            },
        ),
        (
            "mosquitto-small-rx-oversized",
            Scenario {
                setup: Setup {
                    rx: 1, // 17 bytes
                    subscriptions: 1,
                    ..base.clone()
                },
                ops: vec![
                    pub_op(0, 40, 1, false),
                    pub_op(0, 1, 0, false),
                    pub_op(0, 60, 2, false),
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Disconnect,
                ],
            },
        ),
        (
            "mosquitto-keepalive-ping",
            Scenario {
                setup: Setup {
                    keep_alive: 1, // 1 s
                    ..base.clone()
                },
                ops: vec![Op::Poll, Op::Poll, Op::Disconnect],
            },
        ),
        (
            "mosquitto-many-in-flight",
            Scenario {
                setup: Setup {
                    subscriptions: 3,
                    will: true,
                    ..base
                },
                ops: vec![
                    pub_op(0, 3, 1, true),
                    pub_op(1, 3, 2, true),
                    pub_op(2, 3, 1, true),
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Subscribe {
                        filters: 0b0010_0100, // #, sensors/+/temperature
                        qos: 1,
                    },
                    Op::Poll,
                    Op::Poll,
                    Op::Disconnect,
                ],
            },
        ),
    ]
}

/// Streams written by hand for the session target, after an automatic CONNACK.
fn synthetic_sessions() -> Vec<(&'static str, Scenario, Vec<u8>)> {
    let auto = Setup {
        keep_alive: 2,
        clean_session: true,
        auto_connack: true,
        rx: 3,
        outbox: 2,
        ..Setup::default()
    };
    let mut qos2 = publish("a", b"x", 2, 5, false, false);
    qos2.extend_from_slice(&publish("a", b"x", 2, 5, true, false)); // duplicate
    qos2.extend_from_slice(&[0x62, 0x02, 0x00, 0x05]); // PUBREL
    let mut acks = vec![0x40, 0x02, 0x00, 0x01]; // PUBACK 1
    acks.extend_from_slice(&[0x50, 0x02, 0x00, 0x02, 0x70, 0x02, 0x00, 0x02]); // PUBREC, PUBCOMP 2
    acks.extend_from_slice(&[0x90, 0x03, 0x00, 0x03, 0x01]); // SUBACK 3
    acks.extend_from_slice(&[0xB0, 0x02, 0x00, 0x04]); // UNSUBACK 4
    acks.extend_from_slice(&[0xD0, 0x00]);
    let mut flood = Vec::new();
    for i in 1..=6u16 {
        flood.extend_from_slice(&publish("a/b", &[0x33; 9], 1, i, false, false));
    }
    flood.extend_from_slice(&[0x40, 0x02, 0x00, 0x01, 0x90, 0x03, 0x00, 0x02, 0x80]);
    vec![
        (
            "qos2-duplicate-then-release",
            Scenario {
                setup: auto.clone(),
                ops: vec![Op::Poll, Op::Poll, Op::Poll, Op::Poll],
            },
            qos2,
        ),
        (
            "every-ack",
            Scenario {
                setup: auto.clone(),
                ops: vec![
                    pub_op(0, 1, 1, false),
                    pub_op(1, 1, 2, false),
                    Op::Subscribe { filters: 1, qos: 1 },
                    Op::Unsubscribe { filters: 1 },
                    Op::Poll,
                ],
            },
            acks,
        ),
        (
            "flood-while-waiting",
            Scenario {
                setup: Setup {
                    rx: 2,
                    ..auto.clone()
                },
                ops: vec![
                    pub_op(0, 1, 1, false),
                    Op::Subscribe { filters: 1, qos: 1 },
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                    Op::Poll,
                ],
            },
            flood,
        ),
        (
            "oversized-publish-small-rx",
            Scenario {
                setup: Setup {
                    rx: 0,
                    ..auto.clone()
                },
                ops: vec![Op::Poll, Op::Poll],
            },
            [
                publish("t/oversized", &[1; 100], 2, 9, false, false),
                vec![0x62, 0x02, 0x00, 0x09],
            ]
            .concat(),
        ),
        (
            "write-failure-during-ack",
            Scenario {
                setup: auto.clone(),
                ops: vec![
                    Op::Poll,
                    Op::FailNextWrite,
                    Op::Poll,
                    Op::Reconnect,
                    Op::Poll,
                ],
            },
            [
                publish("a", b"1", 1, 1, false, false),
                publish("a", b"2", 1, 2, false, false),
            ]
            .concat(),
        ),
        (
            "silent-broker",
            Scenario {
                setup: Setup {
                    keep_alive: 1,
                    eof_closes: false,
                    ..auto
                },
                ops: vec![Op::Poll, Op::Poll],
            },
            vec![0xD0, 0x00],
        ),
    ]
}

// ---------------------------------------------------------- certificates

fn params(cn: &str, ca: bool, dns: &[&str]) -> CertificateParams {
    let mut p =
        CertificateParams::new(dns.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, cn);
    p.distinguished_name
        .push(DnType::OrganizationName, "mqtts fuzz seeds");
    let now = time::OffsetDateTime::now_utc();
    p.not_before = now - time::Duration::days(1);
    p.not_after = now + time::Duration::days(365);
    if ca {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    } else {
        p.is_ca = IsCa::ExplicitNoCa;
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    }
    p
}

fn key(alg: &'static rcgen::SignatureAlgorithm, pkcs8: Option<&[u8]>) -> KeyPair {
    match pkcs8 {
        Some(der) => KeyPair::from_pkcs8_der_and_sign_algo(&der.into(), alg).unwrap(),
        None => KeyPair::generate_for(alg).unwrap(),
    }
}

/// Chains made with rcgen (as tests/support/pki.rs does): leaf first, root last.
fn rcgen_chains() -> Vec<(String, Vec<Vec<u8>>)> {
    let rsa_a = fs::read(repo().join("tests/data/rsa2048-a.pk8.der")).unwrap();
    let rsa_c = fs::read(repo().join("tests/data/rsa2048-c.pk8.der")).unwrap();
    let kinds: Vec<(&str, &'static rcgen::SignatureAlgorithm, Option<&[u8]>)> = vec![
        ("p256", &rcgen::PKCS_ECDSA_P256_SHA256, None),
        ("p384", &rcgen::PKCS_ECDSA_P384_SHA384, None),
        ("ed25519", &rcgen::PKCS_ED25519, None),
        ("rsa2048", &rcgen::PKCS_RSA_SHA256, Some(&rsa_a)),
    ];
    let mut chains = Vec::new();
    for (name, alg, pkcs8) in kinds {
        let root_key = key(alg, if pkcs8.is_some() { Some(&rsa_c) } else { None });
        let root = params("Fuzz Root", true, &[])
            .self_signed(&root_key)
            .unwrap();
        let int_key = key(&rcgen::PKCS_ECDSA_P256_SHA256, None);
        let int = params("Fuzz Intermediate", true, &[])
            .signed_by(&int_key, &root, &root_key)
            .unwrap();
        let leaf_key = key(alg, pkcs8);
        let leaf = params("broker.test", false, &["broker.test", "*.broker.test"])
            .signed_by(&leaf_key, &root, &root_key)
            .unwrap();
        let leaf2 = params("broker.test", false, &["broker.test"])
            .signed_by(&leaf_key, &int, &int_key)
            .unwrap();
        let mut expired = params("broker.test", false, &["broker.test"]);
        expired.not_before = time::OffsetDateTime::UNIX_EPOCH + time::Duration::days(365 * 30);
        expired.not_after = expired.not_before + time::Duration::days(1);
        let expired = expired.signed_by(&leaf_key, &root, &root_key).unwrap();
        let mut not_ca = params("Not A CA", false, &[]);
        not_ca.is_ca = IsCa::ExplicitNoCa;
        let not_ca = not_ca.signed_by(&int_key, &root, &root_key).unwrap();
        let leaf3 = params("broker.test", false, &["broker.test"])
            .signed_by(&leaf_key, &not_ca, &int_key)
            .unwrap();
        let der = |c: &rcgen::Certificate| c.der().to_vec();
        chains.push((format!("rcgen-{name}-direct"), vec![der(&leaf), der(&root)]));
        chains.push((
            format!("rcgen-{name}-intermediate"),
            vec![der(&leaf2), der(&int), der(&root)],
        ));
        chains.push((
            format!("rcgen-{name}-expired"),
            vec![der(&expired), der(&root)],
        ));
        chains.push((
            format!("rcgen-{name}-issuer-not-ca"),
            vec![der(&leaf3), der(&not_ca), der(&root)],
        ));
    }
    chains
}

fn openssl(args: &[&str], dir: &Path) -> bool {
    Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// A chain made with the openssl command: RSA-3072 root, P-256 leaf.
fn openssl_chain(scratch: &Path) -> Option<Vec<Vec<u8>>> {
    let dir = scratch.join("openssl");
    fs::create_dir_all(&dir).ok()?;
    fs::write(
        dir.join("leaf.ext"),
        "basicConstraints=critical,CA:FALSE\nkeyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\nsubjectAltName=DNS:broker.test,IP:127.0.0.1\n",
    )
    .ok()?;
    let steps: [&[&str]; 5] = [
        &[
            "req",
            "-x509",
            "-newkey",
            "rsa:3072",
            "-nodes",
            "-keyout",
            "root.key",
            "-out",
            "root.pem",
            "-days",
            "3650",
            "-subj",
            "/C=DE/O=mqtts fuzz/CN=OpenSSL Root",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "leaf.key",
        ],
        &[
            "req",
            "-new",
            "-key",
            "leaf.key",
            "-out",
            "leaf.csr",
            "-subj",
            "/CN=broker.test",
        ],
        &[
            "x509",
            "-req",
            "-in",
            "leaf.csr",
            "-CA",
            "root.pem",
            "-CAkey",
            "root.key",
            "-CAcreateserial",
            "-out",
            "leaf.pem",
            "-days",
            "365",
            "-sha384",
            "-extfile",
            "leaf.ext",
        ],
        &[
            "x509", "-in", "leaf.pem", "-outform", "DER", "-out", "leaf.der",
        ],
    ];
    for step in steps {
        if !openssl(step, &dir) {
            return None;
        }
    }
    if !openssl(
        &[
            "x509", "-in", "root.pem", "-outform", "DER", "-out", "root.der",
        ],
        &dir,
    ) {
        return None;
    }
    Some(vec![
        fs::read(dir.join("leaf.der")).ok()?,
        fs::read(dir.join("root.der")).ok()?,
    ])
}

/// A few roots of the system store (PEM, as Debian's ca-certificates ships them).
fn system_roots() -> Vec<(String, Vec<u8>)> {
    let names = [
        "ISRG_Root_X1.pem",
        "ISRG_Root_X2.pem",
        "DigiCert_Global_Root_G2.pem",
        "DigiCert_Global_Root_G3.pem",
        "Amazon_Root_CA_1.pem",
        "Amazon_Root_CA_3.pem",
        "GTS_Root_R1.pem",
        "GTS_Root_R4.pem",
        "Certum_EC-384_CA.pem",
        "Microsoft_ECC_Root_Certificate_Authority_2017.pem",
    ];
    let mut out = Vec::new();
    for name in names {
        let path = Path::new("/etc/ssl/certs").join(name);
        let Ok(text) = fs::read_to_string(&path) else {
            continue;
        };
        let b64: String = text.lines().filter(|l| !l.starts_with("-----")).collect();
        if let Some(der) = base64_decode(&b64) {
            out.push((name.trim_end_matches(".pem").to_lowercase(), der));
        }
    }
    out
}

fn base64_decode(text: &str) -> Option<Vec<u8>> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        })
    };
    let bytes: Vec<u8> = text.bytes().filter(|&c| c != b'=').collect();
    let mut out = Vec::new();
    for chunk in bytes.chunks(4) {
        let mut acc = 0u32;
        for &c in chunk {
            acc = (acc << 6) | value(c)?;
        }
        acc <<= 6 * (4 - chunk.len() as u32);
        let full = [(acc >> 16) as u8, (acc >> 8) as u8, acc as u8];
        out.extend_from_slice(&full[..chunk.len() - 1]);
    }
    Some(out)
}

// ------------------------------------------------------------ fingerprints

fn fingerprint_forms(fp: &Fingerprint) -> Vec<String> {
    let bytes = fp.as_bytes();
    let hex = |upper: bool| -> Vec<String> {
        bytes
            .iter()
            .map(|b| {
                if upper {
                    format!("{b:02X}")
                } else {
                    format!("{b:02x}")
                }
            })
            .collect()
    };
    let label = if bytes.len() == 20 { "SHA1" } else { "sha256" };
    vec![
        fp.to_string(),
        hex(true).join(" "),
        hex(false).join("-"),
        hex(false).concat(),
        format!("{label} Fingerprint={fp}"),
        format!(
            "const uint8_t fingerprint[{}] = {{0x{}}};",
            bytes.len(),
            hex(true).join(", 0x")
        ),
        format!("[0x{}]", hex(false).join(", 0x")),
        format!("0x{}", hex(true).join(",0x")),
    ]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let out: PathBuf = std::env::args()
        .nth(1)
        .expect("usage: seeds OUT_DIR")
        .into();
    let scratch = std::env::temp_dir().join(format!("mqtts-seeds-{}", std::process::id()));
    fs::create_dir_all(&scratch).unwrap();

    // frame target
    for (name, bytes) in spec_frames() {
        write(&out, "frame", name, &bytes);
    }

    // session target: live captures, then hand-written streams.
    match start_mosquitto(&scratch) {
        Some(broker) => {
            for (name, scenario) in live_scenarios() {
                let stream = capture(broker.port, &scenario).await;
                assert!(!stream.is_empty(), "{name}: mosquitto sent nothing");
                assert_eq!(Scenario::read(&scenario.to_bytes()), scenario, "{name}");
                write(&out, "session", name, &session::input(&scenario, &stream));
                write(&out, "frame", name, &stream);
                eprintln!("captured {name}: {} bytes from mosquitto", stream.len());
            }
        }
        None => eprintln!("mosquitto not available: no live captures"),
    }
    for (name, scenario, stream) in synthetic_sessions() {
        assert_eq!(Scenario::read(&scenario.to_bytes()), scenario, "{name}");
        write(&out, "session", name, &session::input(&scenario, &stream));
    }

    // trust target
    let mut chains: Vec<(String, Vec<Vec<u8>>)> = Vec::new();
    for (name, path) in [
        ("globalsign-r1", "certs/globalsign-root-ca.der"),
        ("globalsign-r6", "certs/globalsign-root-ca-r6.der"),
        ("p256-selfsigned", "tests/data/p256-selfsigned.der"),
    ] {
        chains.push((name.into(), vec![fs::read(repo().join(path)).unwrap()]));
    }
    chains.extend(rcgen_chains());
    match openssl_chain(&scratch) {
        Some(chain) => chains.push(("openssl-rsa-root-p256-leaf".into(), chain)),
        None => eprintln!("openssl chain not generated"),
    }
    for (name, der) in system_roots() {
        chains.push((format!("system-{name}"), vec![der]));
    }
    let mut fingerprints = Vec::new();
    for (name, chain) in &chains {
        let blobs: Vec<&[u8]> = chain.iter().map(Vec::as_slice).collect();
        let anchored = blobs.len() > 1;
        let variants: &[(&str, u8, u8, u8, u8)] = if anchored {
            &[
                ("ca", mode::CA, 1, 0, 0),
                ("ca-time", mode::CA, 1, 2, 0),
                (
                    "ca-pins",
                    mode::CA_AND_PINS,
                    1,
                    0,
                    pins::PUBLIC_KEY | pins::WRONG,
                ),
                ("pinned", mode::PINNED, 0, 0, pins::SHA256),
            ]
        } else {
            &[
                ("pinned-sha1", mode::PINNED, 0, 0, pins::SHA1),
                ("self-anchored", mode::CA, 1, 0, 0),
                ("insecure", mode::INSECURE, 0, 0, 0),
            ]
        };
        for &(variant, m, anchors, time, pin_bits) in variants {
            let input = mqtts_fuzz::trust::input(m, anchors, 0, time, pin_bits, &blobs);
            write(&out, "trust", &format!("{name}-{variant}"), &input);
        }
        if let Ok(info) = CertificateInfo::parse(chain[0].as_slice()) {
            let presented = info.fingerprints();
            if let Some(sha1) = presented.sha1() {
                fingerprints.push((name.clone(), sha1));
            }
            fingerprints.push((name.clone(), presented.sha256()));
        }
    }

    // fingerprint target: real fingerprints in every form, openssl's own
    // output, and mistakes.
    for (name, fp) in &fingerprints {
        for (i, form) in fingerprint_forms(fp).into_iter().enumerate() {
            let alg = if fp.as_bytes().len() == 20 {
                "sha1"
            } else {
                "sha256"
            };
            write(
                &out,
                "fingerprint",
                &format!("{name}-{alg}-{i}"),
                form.as_bytes(),
            );
        }
    }
    for alg in ["-sha1", "-sha256"] {
        let output = Command::new("openssl")
            .args([
                "x509",
                "-inform",
                "DER",
                "-noout",
                "-fingerprint",
                alg,
                "-in",
            ])
            .arg(repo().join("certs/globalsign-root-ca.der"))
            .output();
        if let Ok(output) = output {
            write(
                &out,
                "fingerprint",
                &format!("openssl-output{alg}"),
                &output.stdout,
            );
        }
    }
    let mistakes: [(&str, &str); 8] = [
        ("empty", ""),
        ("label-only", "SHA1 Fingerprint="),
        (
            "odd-digit",
            "A9:99:3E:36:47:06:81:6A:BA:3E:25:71:78:50:C2:6C:9C:D0:D8:9",
        ),
        ("invalid-char", "A9:99:3G"),
        ("wrong-length", "A9:99:3E:36"),
        ("unclosed-array", "{0xA9, 0x99, 0x3E"),
        ("prefix-only", "0x"),
        ("after-close", "[0xA9]; 00"),
    ];
    for (name, text) in mistakes {
        write(&out, "fingerprint", name, text.as_bytes());
    }
    // tls target
    for (name, bytes) in mqtts_fuzz::tls::seeds() {
        write(&out, "tls", &name, &bytes);
    }
    let _ = fs::remove_dir_all(&scratch);
    eprintln!("seeds written to {}", out.display());
}
