//! A scripted MQTT 3.1.1 broker for the server end of [`socket_pair`]
//! (plain bytes, no TLS): read what the client sent, check it, answer with
//! hand-built packets.
//!
//! Everything here is written from the specification
//! (<http://docs.oasis-open.org/mqtt/mqtt/v3.1.1/os/mqtt-v3.1.1-os.html>),
//! not with mqtts's encoder or decoder, so tests using it check the crate
//! against the specification rather than against itself.
//!
//! [`socket_pair`]: super::socket_pair

use std::fmt;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

/// How long the broker waits for one packet from the client before failing
/// the test (the client under test may be slow in debug builds, but never
/// this slow).
pub const PACKET_TIMEOUT: Duration = Duration::from_secs(10);

/// How long [`MockBroker::expect_silence`] listens by default.
pub const SILENCE: Duration = Duration::from_millis(150);

/// Control packet types (§2.2.1), as the high nibble of the first byte.
pub mod kind {
    pub const CONNECT: u8 = 1;
    pub const CONNACK: u8 = 2;
    pub const PUBLISH: u8 = 3;
    pub const PUBACK: u8 = 4;
    pub const PUBREC: u8 = 5;
    pub const PUBREL: u8 = 6;
    pub const PUBCOMP: u8 = 7;
    pub const SUBSCRIBE: u8 = 8;
    pub const SUBACK: u8 = 9;
    pub const UNSUBSCRIBE: u8 = 10;
    pub const UNSUBACK: u8 = 11;
    pub const PINGREQ: u8 = 12;
    pub const PINGRESP: u8 = 13;
    pub const DISCONNECT: u8 = 14;
}

use kind::*;

/// One packet as it came off the wire: the fixed header's first byte and
/// the bytes after the remaining length.
#[derive(Clone, PartialEq, Eq)]
pub struct Packet {
    /// Packet type (high nibble) and flags (low nibble).
    pub first: u8,
    /// Variable header and payload.
    pub body: Vec<u8>,
}

impl Packet {
    /// The packet type (high nibble of the first byte).
    pub fn kind(&self) -> u8 {
        self.first >> 4
    }

    /// The flags (low nibble of the first byte).
    pub fn flags(&self) -> u8 {
        self.first & 0x0F
    }

    /// The whole frame, re-encoded (fixed header with the shortest
    /// remaining length, then the body).
    pub fn bytes(&self) -> Vec<u8> {
        frame(self.first, &self.body)
    }

    /// The packet identifier of a 2-byte acknowledgement (PUBACK, PUBREC,
    /// PUBREL, PUBCOMP, UNSUBACK), checking the length.
    pub fn ack_id(&self) -> u16 {
        assert_eq!(self.body.len(), 2, "acknowledgement body of {self:?}");
        u16::from_be_bytes([self.body[0], self.body[1]])
    }
}

impl fmt::Debug for Packet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {:02x?}", type_name(self.kind()), self.bytes())
    }
}

/// The specification's name of a packet type.
pub fn type_name(kind: u8) -> &'static str {
    match kind {
        CONNECT => "CONNECT",
        CONNACK => "CONNACK",
        PUBLISH => "PUBLISH",
        PUBACK => "PUBACK",
        PUBREC => "PUBREC",
        PUBREL => "PUBREL",
        PUBCOMP => "PUBCOMP",
        SUBSCRIBE => "SUBSCRIBE",
        SUBACK => "SUBACK",
        UNSUBSCRIBE => "UNSUBSCRIBE",
        UNSUBACK => "UNSUBACK",
        PINGREQ => "PINGREQ",
        PINGRESP => "PINGRESP",
        DISCONNECT => "DISCONNECT",
        _ => "RESERVED",
    }
}

// ---------------------------------------------------------------------------
// Builders (§2.2.3, §1.5.3 and chapter 3).

/// The remaining length encoding (§2.2.3): 7 bits per byte, least
/// significant first, bit 7 set on every byte but the last.
pub fn remaining_length(mut len: usize) -> Vec<u8> {
    assert!(len <= 268_435_455, "remaining length {len} too large");
    let mut out = Vec::new();
    loop {
        let mut byte = (len % 128) as u8;
        len /= 128;
        if len > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if len == 0 {
            return out;
        }
    }
}

/// A whole frame: first byte, remaining length, body.
pub fn frame(first: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first];
    out.extend(remaining_length(body.len()));
    out.extend_from_slice(body);
    out
}

/// A UTF-8 string or binary field with its 2-byte length prefix (§1.5.3).
pub fn string(s: impl AsRef<[u8]>) -> Vec<u8> {
    let s = s.as_ref();
    let len = u16::try_from(s.len()).expect("field longer than 65,535 bytes");
    let mut out = len.to_be_bytes().to_vec();
    out.extend_from_slice(s);
    out
}

/// CONNACK (§3.2): `20 02 <session present> <code>`.
pub fn connack(session_present: bool, code: u8) -> Vec<u8> {
    vec![0x20, 0x02, u8::from(session_present), code]
}

/// PUBLISH (§3.3). `qos` is 0, 1 or 2; `id` is written for QoS 1 and 2.
pub fn publish(topic: &str, payload: &[u8], qos: u8, id: u16, dup: bool, retain: bool) -> Vec<u8> {
    assert!(qos <= 2, "QoS {qos}");
    let first = 0x30 | (u8::from(dup) << 3) | (qos << 1) | u8::from(retain);
    let mut body = string(topic);
    if qos > 0 {
        body.extend_from_slice(&id.to_be_bytes());
    }
    body.extend_from_slice(payload);
    frame(first, &body)
}

/// A QoS 0 PUBLISH without DUP or RETAIN.
pub fn publish0(topic: &str, payload: &[u8]) -> Vec<u8> {
    publish(topic, payload, 0, 0, false, false)
}

fn ack(first: u8, id: u16) -> Vec<u8> {
    let [hi, lo] = id.to_be_bytes();
    vec![first, 0x02, hi, lo]
}

/// PUBACK (§3.4): `40 02 <id>`.
pub fn puback(id: u16) -> Vec<u8> {
    ack(0x40, id)
}

/// PUBREC (§3.5): `50 02 <id>`.
pub fn pubrec(id: u16) -> Vec<u8> {
    ack(0x50, id)
}

/// PUBREL (§3.6): `62 02 <id>` (flags 0b0010).
pub fn pubrel(id: u16) -> Vec<u8> {
    ack(0x62, id)
}

/// PUBCOMP (§3.7): `70 02 <id>`.
pub fn pubcomp(id: u16) -> Vec<u8> {
    ack(0x70, id)
}

/// SUBACK (§3.9): `90 <len> <id> <codes>`.
pub fn suback(id: u16, codes: &[u8]) -> Vec<u8> {
    let mut body = id.to_be_bytes().to_vec();
    body.extend_from_slice(codes);
    frame(0x90, &body)
}

/// UNSUBACK (§3.11): `b0 02 <id>`.
pub fn unsuback(id: u16) -> Vec<u8> {
    ack(0xB0, id)
}

/// PINGRESP (§3.13).
pub fn pingresp() -> Vec<u8> {
    vec![0xD0, 0x00]
}

/// The CONNECT a client should send (§3.1), built field by field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedConnect<'a> {
    pub client_id: &'a str,
    pub username: Option<&'a str>,
    pub password: Option<&'a [u8]>,
    pub keep_alive: u16,
    pub clean_session: bool,
    /// Topic, payload, QoS, retain.
    pub will: Option<(&'a str, &'a [u8], u8, bool)>,
}

impl ExpectedConnect<'_> {
    /// The frame's bytes.
    pub fn bytes(&self) -> Vec<u8> {
        let mut flags = 0u8;
        if self.username.is_some() {
            flags |= 0x80;
        }
        if self.password.is_some() {
            flags |= 0x40;
        }
        if let Some((_, _, qos, retain)) = self.will {
            flags |= 0x04 | (qos << 3);
            if retain {
                flags |= 0x20;
            }
        }
        if self.clean_session {
            flags |= 0x02;
        }
        let mut body = string("MQTT");
        body.push(4); // protocol level 3.1.1
        body.push(flags);
        body.extend_from_slice(&self.keep_alive.to_be_bytes());
        body.extend(string(self.client_id));
        if let Some((topic, payload, _, _)) = self.will {
            body.extend(string(topic));
            body.extend(string(payload));
        }
        if let Some(username) = self.username {
            body.extend(string(username));
        }
        if let Some(password) = self.password {
            body.extend(string(password));
        }
        frame(0x10, &body)
    }
}

// ---------------------------------------------------------------------------
// Parsers for what the client sends.

/// Reads a length-prefixed field at `*at`.
fn field<'p>(body: &'p [u8], at: &mut usize, what: &str) -> &'p [u8] {
    let len = body
        .get(*at..*at + 2)
        .map(|b| usize::from(u16::from_be_bytes([b[0], b[1]])))
        .unwrap_or_else(|| panic!("{what}: length missing at {at} in {body:02x?}"));
    let value = body
        .get(*at + 2..*at + 2 + len)
        .unwrap_or_else(|| panic!("{what}: {len} bytes run past the end of {body:02x?}"));
    *at += 2 + len;
    value
}

fn utf8(bytes: &[u8], what: &str) -> String {
    String::from_utf8(bytes.to_vec()).unwrap_or_else(|_| panic!("{what} is not UTF-8"))
}

/// A CONNECT as received (§3.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnectPacket {
    pub protocol_name: String,
    pub protocol_level: u8,
    /// The connect flags byte (§3.1.2.3).
    pub flags: u8,
    pub keep_alive: u16,
    pub client_id: String,
    pub will_topic: Option<String>,
    pub will_payload: Option<Vec<u8>>,
    pub username: Option<String>,
    pub password: Option<Vec<u8>>,
}

impl ConnectPacket {
    /// Parses a CONNECT, checking its fixed header, the reserved flag bit
    /// (§3.1.2.3) and that nothing follows the last field.
    pub fn parse(packet: &Packet) -> Self {
        assert_eq!(packet.first, 0x10, "not a CONNECT: {packet:?}");
        let body = &packet.body;
        let mut at = 0;
        let protocol_name = utf8(field(body, &mut at, "protocol name"), "protocol name");
        let protocol_level = body[at];
        let flags = body[at + 1];
        let keep_alive = u16::from_be_bytes([body[at + 2], body[at + 3]]);
        at += 4;
        assert_eq!(flags & 0x01, 0, "reserved CONNECT flag set");
        let client_id = utf8(field(body, &mut at, "client id"), "client id");
        let (will_topic, will_payload) = if flags & 0x04 != 0 {
            let topic = utf8(field(body, &mut at, "will topic"), "will topic");
            (
                Some(topic),
                Some(field(body, &mut at, "will payload").to_vec()),
            )
        } else {
            assert_eq!(flags & 0x38, 0, "will QoS/retain without a will");
            (None, None)
        };
        let username = (flags & 0x80 != 0).then(|| utf8(field(body, &mut at, "user"), "user"));
        let password = (flags & 0x40 != 0).then(|| field(body, &mut at, "password").to_vec());
        assert_eq!(at, body.len(), "bytes after the last CONNECT field");
        Self {
            protocol_name,
            protocol_level,
            flags,
            keep_alive,
            client_id,
            will_topic,
            will_payload,
            username,
            password,
        }
    }

    /// Clean session flag (bit 1).
    pub fn clean_session(&self) -> bool {
        self.flags & 0x02 != 0
    }

    /// Will flag (bit 2).
    pub fn will_flag(&self) -> bool {
        self.flags & 0x04 != 0
    }

    /// Will QoS (bits 3-4).
    pub fn will_qos(&self) -> u8 {
        (self.flags >> 3) & 0x03
    }

    /// Will retain (bit 5).
    pub fn will_retain(&self) -> bool {
        self.flags & 0x20 != 0
    }
}

/// A PUBLISH as received (§3.3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishPacket {
    pub dup: bool,
    pub qos: u8,
    pub retain: bool,
    pub topic: String,
    /// `None` for QoS 0.
    pub id: Option<u16>,
    pub payload: Vec<u8>,
}

impl PublishPacket {
    pub fn parse(packet: &Packet) -> Self {
        assert_eq!(packet.kind(), PUBLISH, "not a PUBLISH: {packet:?}");
        let flags = packet.flags();
        let qos = (flags >> 1) & 0x03;
        assert!(qos < 3, "PUBLISH with QoS 3: {packet:?}");
        let dup = flags & 0x08 != 0;
        assert!(!(dup && qos == 0), "DUP with QoS 0: {packet:?}");
        let body = &packet.body;
        let mut at = 0;
        let topic = utf8(field(body, &mut at, "topic"), "topic");
        let id = (qos > 0).then(|| {
            let id = u16::from_be_bytes([body[at], body[at + 1]]);
            at += 2;
            assert_ne!(id, 0, "PUBLISH with packet identifier 0");
            id
        });
        Self {
            dup,
            qos,
            retain: flags & 0x01 != 0,
            topic,
            id,
            payload: body[at..].to_vec(),
        }
    }
}

/// A SUBSCRIBE as received (§3.8): identifier, then (filter, QoS) pairs.
pub fn parse_subscribe(packet: &Packet) -> (u16, Vec<(String, u8)>) {
    assert_eq!(
        packet.first, 0x82,
        "not a SUBSCRIBE (flags 0b0010): {packet:?}"
    );
    let body = &packet.body;
    let id = u16::from_be_bytes([body[0], body[1]]);
    assert_ne!(id, 0, "SUBSCRIBE with packet identifier 0");
    let mut at = 2;
    let mut filters = Vec::new();
    while at < body.len() {
        let filter = utf8(field(body, &mut at, "filter"), "filter");
        let qos = *body.get(at).expect("requested QoS");
        assert!(qos <= 2, "requested QoS byte {qos:#x}");
        at += 1;
        filters.push((filter, qos));
    }
    assert!(!filters.is_empty(), "SUBSCRIBE without filters");
    (id, filters)
}

/// An UNSUBSCRIBE as received (§3.10): identifier, then filters.
pub fn parse_unsubscribe(packet: &Packet) -> (u16, Vec<String>) {
    assert_eq!(
        packet.first, 0xA2,
        "not an UNSUBSCRIBE (flags 0b0010): {packet:?}"
    );
    let body = &packet.body;
    let id = u16::from_be_bytes([body[0], body[1]]);
    assert_ne!(id, 0, "UNSUBSCRIBE with packet identifier 0");
    let mut at = 2;
    let mut filters = Vec::new();
    while at < body.len() {
        filters.push(utf8(field(body, &mut at, "filter"), "filter"));
    }
    assert!(!filters.is_empty(), "UNSUBSCRIBE without filters");
    (id, filters)
}

/// Splits whole frames off the front of `buf` (for brokers that read in
/// bulk), leaving an incomplete tail in place.
pub fn split_frames(buf: &mut Vec<u8>) -> Vec<Packet> {
    let mut packets = Vec::new();
    let mut at = 0;
    while let Some((header_len, remaining)) = parse_header(&buf[at..]) {
        let end = at + header_len + remaining;
        if end > buf.len() {
            break;
        }
        packets.push(Packet {
            first: buf[at],
            body: buf[at + header_len..end].to_vec(),
        });
        at = end;
    }
    buf.drain(..at);
    packets
}

/// The fixed header at the start of `bytes`: (its length, the remaining
/// length), or `None` if incomplete.
fn parse_header(bytes: &[u8]) -> Option<(usize, usize)> {
    bytes.first()?;
    let mut len = 0usize;
    for i in 0..4 {
        let byte = *bytes.get(1 + i)?;
        len |= usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((2 + i, len));
        }
    }
    panic!("client sent a remaining length longer than 4 bytes: {bytes:02x?}");
}

// ---------------------------------------------------------------------------
// The broker end of the pipe.

/// The server end of an in-memory connection, speaking raw MQTT.
pub struct MockBroker {
    stream: DuplexStream,
}

impl MockBroker {
    pub fn new(stream: DuplexStream) -> Self {
        Self { stream }
    }

    /// Writes `bytes` to the client.
    pub async fn send(&mut self, bytes: &[u8]) {
        tokio::time::timeout(PACKET_TIMEOUT, async {
            self.stream.write_all(bytes).await?;
            self.stream.flush().await
        })
        .await
        .expect("broker write timed out (the client does not read?)")
        .expect("broker write failed");
    }

    /// Writes `bytes` one byte at a time, yielding between bytes, so the
    /// client sees every split of the frames.
    pub async fn send_bytewise(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.send(&[*byte]).await;
            tokio::task::yield_now().await;
        }
    }

    async fn read_exact(&mut self, buf: &mut [u8]) -> std::io::Result<()> {
        self.stream.read_exact(buf).await.map(|_| ())
    }

    /// The next packet, `None` if the client closed the connection before
    /// its first byte. Panics after [`PACKET_TIMEOUT`].
    pub async fn read_packet(&mut self) -> Option<Packet> {
        self.read_packet_within(PACKET_TIMEOUT)
            .await
            .unwrap_or_else(|| panic!("no packet from the client within {PACKET_TIMEOUT:?}"))
    }

    /// The next packet within `limit`: `None` on timeout, `Some(None)` if
    /// the client closed the connection.
    pub async fn read_packet_within(&mut self, limit: Duration) -> Option<Option<Packet>> {
        let mut first = [0u8; 1];
        match tokio::time::timeout(limit, self.stream.read(&mut first)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(None),
            Ok(Ok(_)) => {}
        }
        let rest = async {
            let mut remaining = 0usize;
            let mut header = vec![first[0]];
            for i in 0..4 {
                let mut byte = [0u8; 1];
                self.read_exact(&mut byte).await?;
                header.push(byte[0]);
                remaining |= usize::from(byte[0] & 0x7F) << (7 * i);
                if byte[0] & 0x80 == 0 {
                    let mut body = vec![0u8; remaining];
                    self.read_exact(&mut body).await?;
                    return Ok::<_, std::io::Error>(body);
                }
            }
            panic!("client sent a remaining length longer than 4 bytes: {header:02x?}");
        };
        let body = tokio::time::timeout(PACKET_TIMEOUT, rest)
            .await
            .expect("the client stopped in the middle of a packet")
            .expect("the connection broke in the middle of a packet");
        Some(Some(Packet {
            first: first[0],
            body,
        }))
    }

    /// The next packet; panics on timeout or a closed connection.
    pub async fn expect_packet(&mut self) -> Packet {
        self.read_packet()
            .await
            .expect("the client closed the connection; a packet was expected")
    }

    /// The next packet, which must be of type `kind`.
    pub async fn expect_kind(&mut self, kind: u8) -> Packet {
        let packet = self.expect_packet().await;
        assert_eq!(
            packet.kind(),
            kind,
            "expected {}, got {packet:?}",
            type_name(kind)
        );
        packet
    }

    /// The next packet must be exactly `bytes`.
    pub async fn expect_bytes(&mut self, bytes: &[u8]) {
        let packet = self.expect_packet().await;
        assert_eq!(
            packet.bytes(),
            bytes,
            "expected {:02x?}, got {packet:?}",
            bytes
        );
    }

    /// The next packet must be a CONNECT; parsed.
    pub async fn expect_connect(&mut self) -> ConnectPacket {
        ConnectPacket::parse(&self.expect_kind(CONNECT).await)
    }

    /// Reads the CONNECT, checks the protocol name and level, and answers
    /// with CONNACK.
    pub async fn accept(&mut self, session_present: bool) -> ConnectPacket {
        let connect = self.expect_connect().await;
        assert_eq!(
            (connect.protocol_name.as_str(), connect.protocol_level),
            ("MQTT", 4)
        );
        self.send(&connack(session_present, 0)).await;
        connect
    }

    /// The next packet must be a PUBLISH; parsed.
    pub async fn expect_publish(&mut self) -> PublishPacket {
        PublishPacket::parse(&self.expect_kind(PUBLISH).await)
    }

    /// The next packet must be the 4-byte acknowledgement `first 02 id`;
    /// returns the identifier.
    async fn expect_ack(&mut self, first: u8) -> u16 {
        let packet = self.expect_packet().await;
        assert_eq!(
            packet.first,
            first,
            "expected {} ({first:#04x}), got {packet:?}",
            type_name(first >> 4)
        );
        packet.ack_id()
    }

    pub async fn expect_puback(&mut self) -> u16 {
        self.expect_ack(0x40).await
    }

    pub async fn expect_pubrec(&mut self) -> u16 {
        self.expect_ack(0x50).await
    }

    pub async fn expect_pubrel(&mut self) -> u16 {
        self.expect_ack(0x62).await
    }

    pub async fn expect_pubcomp(&mut self) -> u16 {
        self.expect_ack(0x70).await
    }

    /// The next packet must be a SUBSCRIBE; parsed.
    pub async fn expect_subscribe(&mut self) -> (u16, Vec<(String, u8)>) {
        parse_subscribe(&self.expect_packet().await)
    }

    /// The next packet must be an UNSUBSCRIBE; parsed.
    pub async fn expect_unsubscribe(&mut self) -> (u16, Vec<String>) {
        parse_unsubscribe(&self.expect_packet().await)
    }

    /// The next packet must be PINGREQ (`c0 00`).
    pub async fn expect_pingreq(&mut self) {
        self.expect_bytes(&[0xC0, 0x00]).await;
    }

    /// The next packet must be DISCONNECT (`e0 00`).
    pub async fn expect_disconnect(&mut self) {
        self.expect_bytes(&[0xE0, 0x00]).await;
    }

    /// Nothing arrives for [`SILENCE`].
    pub async fn expect_silence(&mut self) {
        self.expect_silence_for(SILENCE).await;
    }

    /// Nothing arrives for `limit`.
    pub async fn expect_silence_for(&mut self, limit: Duration) {
        if let Some(packet) = self.read_packet_within(limit).await {
            panic!("expected silence, got {packet:?}");
        }
    }

    /// The client closes the connection (end of stream) without sending
    /// anything else.
    pub async fn expect_closed(&mut self) {
        match self.read_packet().await {
            None => {}
            Some(packet) => panic!("expected the connection to close, got {packet:?}"),
        }
    }

    /// The raw stream, for scripts the helpers do not cover.
    pub fn stream(&mut self) -> &mut DuplexStream {
        &mut self.stream
    }

    /// The raw stream back (dropping it closes the connection).
    pub fn into_inner(self) -> DuplexStream {
        self.stream
    }
}

/// A connected pair: the client's socket and a [`MockBroker`] on the other end.
pub fn mock_pair() -> (super::ClientSocket, MockBroker) {
    let (client, server) = super::socket_pair();
    (client, MockBroker::new(server))
}
