//! Interoperability with a real broker: mosquitto (OpenSSL 3) on a loopback
//! port with a TLS 1.3 listener and generated certificates. The MQTT
//! packets are written by hand here; this tests the TLS layer only.

mod support;

use embedded_io_adapters::tokio_1::FromTokio;
use embedded_io_async::{Read, Write};
use mqtts::Error;
use mqtts::tls::{self, MaxFragmentLength, TlsOptions};
use mqtts::trust::{KeyAlgorithm, Pin, Trust};
use rand::rngs::OsRng;
use std::net::Ipv4Addr;
use support::*;

async fn tcp(port: u16) -> FromTokio<tokio::net::TcpStream> {
    let stream = within(
        "TCP connect",
        tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port)),
    )
    .await
    .expect("TCP connect to mosquitto");
    FromTokio::new(stream)
}

/// An MQTT 3.1.1 packet: fixed header byte, remaining length (§2.2.3), body.
fn packet(first: u8, body: &[u8]) -> Vec<u8> {
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

fn string(s: &str) -> Vec<u8> {
    let mut out = (s.len() as u16).to_be_bytes().to_vec();
    out.extend_from_slice(s.as_bytes());
    out
}

async fn read_exact<S: Read>(stream: &mut S, buf: &mut [u8]) {
    let mut filled = 0;
    while filled < buf.len() {
        let n = within("read", stream.read(&mut buf[filled..]))
            .await
            .unwrap_or_else(|e| panic!("read failed: {e:?}"));
        assert_ne!(n, 0, "broker closed the connection");
        filled += n;
    }
}

/// Reads one MQTT packet: (first byte, body).
async fn read_packet<S: Read>(stream: &mut S) -> (u8, Vec<u8>) {
    let mut first = [0u8; 1];
    read_exact(stream, &mut first).await;
    let mut len = 0usize;
    for shift in 0..4 {
        let mut byte = [0u8; 1];
        read_exact(stream, &mut byte).await;
        len |= usize::from(byte[0] & 0x7F) << (7 * shift);
        if byte[0] & 0x80 == 0 {
            break;
        }
    }
    let mut body = vec![0u8; len];
    read_exact(stream, &mut body).await;
    (first[0], body)
}

/// CONNECT, SUBSCRIBE, PUBLISH `payload` at QoS 0 and receive it back.
async fn mqtt_round_trip<S: Read + Write>(stream: &mut S, payload: &[u8])
where
    S::Error: std::fmt::Debug,
{
    let topic = "mqtts/interop";
    let mut connect = vec![0, 4, b'M', b'Q', b'T', b'T', 4, 0x02, 0, 30];
    connect.extend(string("mqtts-interop"));
    stream
        .write_all(&packet(0x10, &connect))
        .await
        .expect("write CONNECT");
    stream.flush().await.expect("flush");
    assert_eq!(
        read_packet(stream).await,
        (0x20, vec![0, 0]),
        "CONNACK accepted"
    );

    let mut subscribe = vec![0, 1];
    subscribe.extend(string(topic));
    subscribe.push(0);
    stream
        .write_all(&packet(0x82, &subscribe))
        .await
        .expect("write SUBSCRIBE");
    stream.flush().await.expect("flush");
    assert_eq!(
        read_packet(stream).await,
        (0x90, vec![0, 1, 0]),
        "SUBACK QoS 0"
    );

    let mut publish = string(topic);
    publish.extend_from_slice(payload);
    stream
        .write_all(&packet(0x30, &publish))
        .await
        .expect("write PUBLISH");
    stream.flush().await.expect("flush");
    let (first, body) = read_packet(stream).await;
    assert_eq!(first, 0x30);
    assert_eq!(&body[..2 + topic.len()], &string(topic)[..]);
    assert_eq!(
        &body[2 + topic.len()..],
        payload,
        "the message came back intact"
    );

    stream
        .write_all(&[0xE0, 0])
        .await
        .expect("write DISCONNECT");
    stream.flush().await.expect("flush");
}

#[tokio::test]
async fn small_buffers_with_max_fragment_length_carry_a_5000_byte_message() {
    let pki = TestPki::new(KeyKind::P256);
    let broker = Mosquitto::start(&[&pki.leaf], "");
    let pins = [Pin::PublicKey(pki.leaf.spki_sha256())];
    let options = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins))
        .with_max_fragment_length(MaxFragmentLength::Bytes1024);
    let mut read_buffer = vec![0; MaxFragmentLength::Bytes1024.read_buffer_len()];
    // Larger than one 1024-byte record: mqtts must still send records of
    // at most 1024 bytes, or OpenSSL drops the connection.
    let mut write_buffer = vec![0; 4096];
    let mut stream = within(
        "handshake",
        tls::connect(
            tcp(broker.port).await,
            &mut read_buffer,
            &mut write_buffer,
            &mut OsRng,
            &options,
        ),
    )
    .await
    .unwrap_or_else(|e| panic!("handshake failed: {e}\n{}", broker.log()));
    let payload: Vec<u8> = (0..5000u32).map(|i| b'a' + (i % 26) as u8).collect();
    mqtt_round_trip(&mut stream, &payload).await;
}

#[tokio::test]
async fn every_enabled_key_type_in_ca_mode_with_an_intermediate() {
    for (kind, algorithm) in [
        (KeyKind::P256, KeyAlgorithm::EcdsaP256),
        (KeyKind::P384, KeyAlgorithm::EcdsaP384),
        (KeyKind::Ed25519, KeyAlgorithm::Ed25519),
        (KeyKind::Rsa2048, KeyAlgorithm::Rsa),
    ] {
        if !algorithm.is_enabled() {
            continue;
        }
        let pki = TestPki::with_intermediate(kind);
        let intermediate = pki.intermediate.as_ref().expect("intermediate");
        let broker = Mosquitto::start(&[&pki.leaf, intermediate], "");
        let root = pki.root.der_bytes();
        let anchors = [root.as_slice()];
        let options = TlsOptions::new(SERVER_NAME, Trust::certificate_authorities(&anchors))
            .with_unix_time(now().unix_timestamp() as u64);
        let mut read_buffer = vec![0; tls::READ_BUFFER_FOR_FULL_RECORDS];
        let mut write_buffer = vec![0; 2048];
        let mut stream = within(
            "handshake",
            tls::connect(
                tcp(broker.port).await,
                &mut read_buffer,
                &mut write_buffer,
                &mut OsRng,
                &options,
            ),
        )
        .await
        .unwrap_or_else(|e| panic!("{kind:?}: handshake failed: {e}\n{}", broker.log()));
        mqtt_round_trip(&mut stream, b"hello from mqtts").await;
    }
}

#[tokio::test]
async fn a_wrong_pin_reports_what_mosquitto_presents() {
    let pki = TestPki::new(KeyKind::P256);
    let broker = Mosquitto::start(&[&pki.leaf], "");
    let pins = [mqtts::pin_certificate!(
        "3B BC 95 33 2A 8C 02 6E 5A 62 9C 3B 2D 07 08 14 F2 F1 1A 6B"
    )];
    let options = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins));
    let mut read_buffer = vec![0; tls::READ_BUFFER_FOR_FULL_RECORDS];
    let mut write_buffer = vec![0; 1024];
    let result = within(
        "handshake",
        tls::connect(
            tcp(broker.port).await,
            &mut read_buffer,
            &mut write_buffer,
            &mut OsRng,
            &options,
        ),
    )
    .await;
    match result {
        Err(Error::PinMismatch { presented }) => {
            assert_eq!(presented.spki_sha256(), pki.leaf.spki_sha256());
            assert_eq!(
                presented.sha256(),
                mqtts::Fingerprint::Sha256(pki.leaf.cert_sha256())
            );
        }
        other => panic!("expected PinMismatch, got {other:?}"),
    }
}
