//! Target `tls`: the TLS record layer and handshake of `mqtts::tls::connect`
//! (embedded-tls 0.19 behind mqtts's record-tracking socket and trust
//! verifier) fed a server's byte stream, then reads on the stream if the
//! handshake completes.
//!
//! Replay design: once per process a real handshake is recorded between
//! the client (fixed RNG seed) and an in-process rustls 1.3 server made
//! deterministic here (fixed ECDHE key, RFC 6979 signatures with the P-256
//! seed key, seeded randomness, fixed clock), followed by what the server
//! sends afterwards: its NewSessionTickets, application data, a KeyUpdate,
//! more data and close_notify. The server's traffic secrets come from
//! rustls's key log, so every encrypted record is kept as plaintext and
//! encrypted again when replayed, at the sequence number it then has: an
//! injected record does not invalidate the recorded ones after it. Each
//! run replays the recording under the fuzzer's edits (input layout
//! below); the client's RNG being fixed, it sends the same ClientHello as
//! in the recording (checked in every run), so the recorded flight fits.
//! Trust stays real: the client pins the P-256 seed's public key.
//!
//! Input: byte 0 the socket's read size (0: as much as asked), byte 1
//! flags (bit 0: write and flush after the handshake; bit 1: read the
//! stream one byte at a time), then items, each an opcode byte (modulo 8)
//! and its operands (2-byte lengths are big-endian, cut to what is left):
//!
//! | op | operands | sends |
//! |---|---|---|
//! | 0 | | the next recorded record |
//! | 1 | | every recorded record left |
//! | 2 | n | nothing: skips n recorded records |
//! | 3 | at (2), mask | the next recorded record with byte `at` xor `mask` |
//! | 4 | type, len (2), bytes | a plaintext record of that outer type |
//! | 5 | type, padding, len (2), bytes | a record encrypted with the server's current keys (handshake keys until a Finished was sent), inner type `type`, `padding` zeros |
//! | 6 | len (2), bytes | raw bytes |
//! | 7 | len (2) | the next recorded record cut to `len` bytes |
//!
//! Checked: no panic, no wait (the in-memory socket never pends, so any
//! wait is a hang), a bounded number of reads before the stream ends,
//! failures only of the kinds a server's bytes can cause, a completed
//! handshake only with the pinned key, and the ClientHello unchanged.
//!
//! embedded-tls 0.19 panics (`unimplemented!()` in
//! `common/decrypted_read_handler.rs`) on a handshake message other than
//! NewSessionTicket after the handshake, encrypted or in a plaintext
//! record. mqtts's record gate refuses the plaintext ones before
//! embedded-tls sees them; an encrypted one needs the server's keys, and
//! mqtts cannot see inside it. fuzz/regressions/tls/ holds both inputs.
//! So that the target explores past it, that panic ends a run as a refusal
//! would when the run injected an encrypted handshake record after the
//! flight (op 5); any other panic, that one included otherwise, is a
//! crash. `MQTTS_FUZZ_TLS_STRICT=1` makes every panic a crash.

use std::future::Future;
use std::io::{Read as _, Write as _};
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Once, OnceLock};
use std::task::{Context, Poll, Waker};

use aes_gcm::aead::{AeadInPlace as _, KeyInit as _};
use embedded_io_async::{Read as _, Write as _};
use mqtts::Error;
use mqtts::error::ConfigError;
use mqtts::tls::{self, TlsOptions};
use mqtts::trust::{Pin, Trust};
use rustls::crypto::{ActiveKeyExchange, SharedSecret, SupportedKxGroup};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::sign::{CertifiedKey, Signer, SigningKey};
use rustls::{NamedGroup, SignatureAlgorithm, SignatureScheme};

use crate::keys::{FixedRng, SEEDS};

/// The client's RNG seed.
const CLIENT_SEED: u64 = 0x6d71_7474_735f_6675;
/// The name dialled (the seed certificates are for it).
const SERVER_NAME: &str = "broker.test";
/// Most bytes one run sends the client.
const MAX_STREAM: usize = 1 << 18;

/// Content types (RFC 8446 §5.1).
const HANDSHAKE: u8 = 22;
const APPLICATION_DATA: u8 = 23;

/// Which keys an encrypted record is under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Epoch {
    Handshake,
    Application,
}

/// A record the server sent.
#[derive(Debug, Clone)]
enum Recorded {
    /// Unencrypted (ServerHello, ChangeCipherSpec): the bytes as sent.
    Plain(Vec<u8>),
    /// Encrypted: inner content type and plaintext, encrypted on replay.
    Encrypted {
        epoch: Epoch,
        inner_type: u8,
        plaintext: Vec<u8>,
    },
}

/// AES-128-GCM key and IV of a traffic secret.
#[derive(Debug, Clone)]
struct Keys {
    key: [u8; 16],
    iv: [u8; 12],
}

/// HKDF-Expand-Label (RFC 8446 §7.1) with SHA-256.
fn expand_label(secret: &[u8], label: &str, out: &mut [u8]) {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::from_prk(secret).expect("a SHA-256 secret");
    let full = format!("tls13 {label}");
    let mut info = Vec::new();
    info.extend_from_slice(&(out.len() as u16).to_be_bytes());
    info.push(full.len() as u8);
    info.extend_from_slice(full.as_bytes());
    info.push(0);
    hkdf.expand(&info, out).expect("short output");
}

impl Keys {
    fn of(secret: &[u8]) -> Self {
        let mut keys = Keys {
            key: [0; 16],
            iv: [0; 12],
        };
        expand_label(secret, "key", &mut keys.key);
        expand_label(secret, "iv", &mut keys.iv);
        keys
    }

    fn nonce(&self, seq: u64) -> [u8; 12] {
        let mut nonce = self.iv;
        for (n, s) in nonce[4..].iter_mut().zip(seq.to_be_bytes()) {
            *n ^= s;
        }
        nonce
    }

    /// A TLS 1.3 record (RFC 8446 §5.2) of `inner_type` holding `plaintext`.
    fn seal(&self, seq: u64, inner_type: u8, plaintext: &[u8], padding: usize) -> Vec<u8> {
        let mut body = plaintext.to_vec();
        body.push(inner_type);
        body.resize(body.len() + padding, 0);
        let len = body.len() + 16;
        let header = [APPLICATION_DATA, 3, 3, (len >> 8) as u8, len as u8];
        let cipher = aes_gcm::Aes128Gcm::new(&self.key.into());
        cipher
            .encrypt_in_place(&self.nonce(seq).into(), &header, &mut body)
            .expect("AES-GCM");
        let mut record = header.to_vec();
        record.extend_from_slice(&body);
        record
    }

    fn open(&self, seq: u64, record: &[u8]) -> Option<(u8, Vec<u8>)> {
        let cipher = aes_gcm::Aes128Gcm::new(&self.key.into());
        let mut body = record[5..].to_vec();
        cipher
            .decrypt_in_place(&self.nonce(seq).into(), &record[..5], &mut body)
            .ok()?;
        while body.last() == Some(&0) {
            body.pop();
        }
        let inner_type = body.pop()?;
        Some((inner_type, body))
    }
}

/// Everything a run replays.
#[derive(Debug)]
struct Recording {
    /// The client's first flight (its ClientHello record).
    client_hello: Vec<u8>,
    records: Vec<Recorded>,
    /// How many records the handshake flight has (the rest come after).
    flight_len: usize,
    handshake_keys: Keys,
    application_keys: Keys,
    /// The P-256 seed's public key, pinned.
    pin: Pin,
}

// ---------------------------------------------------------------------------
// A deterministic rustls server.

/// rustls's randomness: a SplitMix64 stream restarted for each recording.
#[derive(Debug)]
struct SeededRandom;

static SERVER_RANDOM: AtomicU64 = AtomicU64::new(0);

impl rustls::crypto::SecureRandom for SeededRandom {
    fn fill(&self, buf: &mut [u8]) -> Result<(), rustls::crypto::GetRandomFailed> {
        use rand_core::RngCore as _;
        let mut rng = FixedRng(SERVER_RANDOM.fetch_add(1, Ordering::Relaxed));
        rng.fill_bytes(buf);
        Ok(())
    }
}

/// The server's ECDHE share: secp256r1 (all embedded-tls offers) with a
/// fixed key.
#[derive(Debug)]
struct FixedP256;

struct FixedP256Share {
    secret: p256::SecretKey,
    public: Vec<u8>,
}

impl SupportedKxGroup for FixedP256 {
    fn start(&self) -> Result<Box<dyn ActiveKeyExchange>, rustls::Error> {
        let secret = p256::SecretKey::from_slice(&[0x42; 32]).expect("a scalar");
        let public = p256::EncodedPoint::from(secret.public_key())
            .as_bytes()
            .to_vec();
        Ok(Box::new(FixedP256Share { secret, public }))
    }

    fn name(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

impl ActiveKeyExchange for FixedP256Share {
    fn complete(self: Box<Self>, peer: &[u8]) -> Result<SharedSecret, rustls::Error> {
        let peer = p256::PublicKey::from_sec1_bytes(peer)
            .map_err(|_| rustls::Error::General("bad key share".into()))?;
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), peer.as_affine());
        Ok(SharedSecret::from(shared.raw_secret_bytes().as_slice()))
    }

    fn pub_key(&self) -> &[u8] {
        &self.public
    }

    fn group(&self) -> NamedGroup {
        NamedGroup::secp256r1
    }
}

/// The P-256 seed key, signing with RFC 6979 (deterministic) ECDSA.
#[derive(Debug)]
struct P256Signer(p256::ecdsa::SigningKey);

impl SigningKey for P256Signer {
    fn choose_scheme(&self, offered: &[SignatureScheme]) -> Option<Box<dyn Signer>> {
        offered
            .contains(&SignatureScheme::ECDSA_NISTP256_SHA256)
            .then(|| Box::new(P256Signer(self.0.clone())) as Box<dyn Signer>)
    }

    fn algorithm(&self) -> SignatureAlgorithm {
        SignatureAlgorithm::ECDSA
    }
}

impl Signer for P256Signer {
    fn sign(&self, message: &[u8]) -> Result<Vec<u8>, rustls::Error> {
        use p256::ecdsa::signature::Signer as _;
        let signature: p256::ecdsa::Signature = self.0.sign(message);
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn scheme(&self) -> SignatureScheme {
        SignatureScheme::ECDSA_NISTP256_SHA256
    }
}

#[derive(Debug)]
struct FixedTime;

impl rustls::time_provider::TimeProvider for FixedTime {
    fn current_time(&self) -> Option<UnixTime> {
        Some(UnixTime::since_unix_epoch(std::time::Duration::from_secs(
            1_900_000_000,
        )))
    }
}

#[derive(Debug)]
struct Resolver(Arc<CertifiedKey>);

impl rustls::server::ResolvesServerCert for Resolver {
    fn resolve(&self, _: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(Arc::clone(&self.0))
    }
}

/// The server's traffic secrets, from rustls's key log.
#[derive(Debug, Default)]
struct Secrets(Mutex<Vec<(String, Vec<u8>)>>);

impl rustls::KeyLog for Secrets {
    fn log(&self, label: &str, _client_random: &[u8], secret: &[u8]) {
        self.0
            .lock()
            .unwrap()
            .push((label.to_string(), secret.to_vec()));
    }

    fn will_log(&self, _label: &str) -> bool {
        true
    }
}

impl Secrets {
    fn get(&self, label: &str) -> Vec<u8> {
        let logged = self.0.lock().unwrap();
        let (_, secret) = logged
            .iter()
            .find(|(l, _)| l == label)
            .unwrap_or_else(|| panic!("{label} not logged"));
        secret.clone()
    }
}

fn server_config(secrets: Arc<Secrets>) -> Arc<rustls::ServerConfig> {
    use p256::pkcs8::DecodePrivateKey as _;
    static RANDOM: SeededRandom = SeededRandom;
    static GROUP: FixedP256 = FixedP256;
    // Its post-quantum groups are replaced here anyway.
    #[allow(deprecated)]
    let base = rustls::crypto::ring::default_provider();
    let provider = rustls::crypto::CryptoProvider {
        cipher_suites: vec![rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256],
        kx_groups: vec![&GROUP],
        secure_random: &RANDOM,
        ..base
    };
    let seed = &SEEDS[0];
    let key = p256::ecdsa::SigningKey::from_pkcs8_der(seed.pkcs8()).expect("P-256 seed key");
    let certified = CertifiedKey::new(
        vec![CertificateDer::from(seed.certificate.to_vec())],
        Arc::new(P256Signer(key)),
    );
    let mut config =
        rustls::ServerConfig::builder_with_details(Arc::new(provider), Arc::new(FixedTime))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .expect("TLS 1.3")
            .with_no_client_auth()
            .with_cert_resolver(Arc::new(Resolver(Arc::new(certified))));
    config.key_log = secrets;
    Arc::new(config)
}

// ---------------------------------------------------------------------------
// Recording.

/// The client's socket while recording: its writes go to the rustls
/// server, its reads come from what the server wrote.
struct Pump<'a> {
    server: &'a mut rustls::ServerConnection,
    from_server: &'a mut Vec<u8>,
    /// Server bytes in write_tls batches, to find the flight.
    batches: &'a mut Vec<Vec<u8>>,
    to_server: &'a mut Vec<u8>,
    client_sent: &'a mut Vec<u8>,
}

impl embedded_io::ErrorType for Pump<'_> {
    type Error = embedded_io::ErrorKind;
}

impl Pump<'_> {
    fn exchange(&mut self) {
        if !self.to_server.is_empty() {
            let mut pending = &self.to_server[..];
            while !pending.is_empty() {
                self.server.read_tls(&mut pending).expect("read_tls");
                if let Err(e) = self.server.process_new_packets() {
                    panic!("the recording server refused the client: {e}");
                }
            }
            self.to_server.clear();
        }
        let mut batch = Vec::new();
        while self.server.wants_write() {
            self.server.write_tls(&mut batch).expect("write_tls");
        }
        if !batch.is_empty() {
            self.from_server.extend_from_slice(&batch);
            self.batches.push(batch);
        }
    }
}

impl embedded_io_async::Read for Pump<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        if self.from_server.is_empty() {
            self.exchange();
        }
        let n = buf.len().min(self.from_server.len());
        buf[..n].copy_from_slice(&self.from_server[..n]);
        self.from_server.drain(..n);
        Ok(n)
    }
}

impl embedded_io_async::Write for Pump<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        self.to_server.extend_from_slice(buf);
        self.client_sent.extend_from_slice(buf);
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Splits a byte stream into TLS records.
fn split_records(mut bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut records = Vec::new();
    while bytes.len() >= 5 {
        let len = 5 + usize::from(u16::from_be_bytes([bytes[3], bytes[4]]));
        records.push(bytes[..len].to_vec());
        bytes = &bytes[len..];
    }
    assert!(bytes.is_empty(), "a partial record from rustls");
    records
}

/// Decrypts recorded records of one epoch (following a KeyUpdate).
fn open_records(records: &[Vec<u8>], epoch: Epoch, secret: &[u8], out: &mut Vec<Recorded>) {
    let mut secret = secret.to_vec();
    let mut keys = Keys::of(&secret);
    let mut seq = 0;
    for record in records {
        if record[0] != APPLICATION_DATA {
            out.push(Recorded::Plain(record.clone()));
            continue;
        }
        let (inner_type, plaintext) = keys
            .open(seq, record)
            .expect("a record of the recording decrypts");
        seq += 1;
        let key_update = inner_type == HANDSHAKE && plaintext.first() == Some(&24);
        out.push(Recorded::Encrypted {
            epoch,
            inner_type,
            plaintext,
        });
        if key_update {
            let mut next = [0u8; 32];
            expand_label(&secret, "traffic upd", &mut next);
            secret = next.to_vec();
            keys = Keys::of(&secret);
            seq = 0;
        }
    }
}

/// Runs a future that must finish without waiting (nothing it awaits pends).
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    match future
        .as_mut()
        .poll(&mut Context::from_waker(Waker::noop()))
    {
        Poll::Ready(output) => output,
        Poll::Pending => panic!("the client waited on an always-ready socket"),
    }
}

fn pin_of_seed() -> Pin {
    let info = mqtts::trust::CertificateInfo::parse(SEEDS[0].certificate).expect("P-256 seed");
    Pin::PublicKey(info.fingerprints().spki_sha256())
}

/// Application data the recording server sends.
pub const GREETING: &[u8] = b"\x30\x0d\x00\x05hello\x00\x00world";

fn record() -> Recording {
    SERVER_RANDOM.store(0x7365_7276_6572, Ordering::Relaxed);
    let secrets = Arc::new(Secrets::default());
    let mut server =
        rustls::ServerConnection::new(server_config(Arc::clone(&secrets))).expect("server");
    let (mut from_server, mut batches, mut to_server, mut client_sent) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let pin = pin_of_seed();
    let pins = [pin];
    let options = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins));
    let mut read_buffer = vec![0; tls::READ_BUFFER_FOR_FULL_RECORDS];
    let mut write_buffer = vec![0; 4096];
    let mut rng = FixedRng(CLIENT_SEED);
    {
        let socket = Pump {
            server: &mut server,
            from_server: &mut from_server,
            batches: &mut batches,
            to_server: &mut to_server,
            client_sent: &mut client_sent,
        };
        let stream = block_on(tls::connect(
            socket,
            &mut read_buffer,
            &mut write_buffer,
            &mut rng,
            &options,
        ))
        .expect("the recorded handshake completes");
        let _ = stream;
    }
    assert!(
        from_server.is_empty(),
        "the client left server bytes unread"
    );
    // The client's Finished: the server answers with its tickets.
    if !to_server.is_empty() {
        let mut pending = &to_server[..];
        while !pending.is_empty() {
            server.read_tls(&mut pending).expect("read_tls");
            server.process_new_packets().expect("client Finished");
        }
    }
    assert!(!server.is_handshaking());
    let flight: Vec<u8> = batches.concat();
    let mut after = Vec::new();
    let drain = |server: &mut rustls::ServerConnection, after: &mut Vec<u8>| {
        while server.wants_write() {
            server.write_tls(after).expect("write_tls");
        }
    };
    drain(&mut server, &mut after);
    server.writer().write_all(GREETING).expect("write");
    drain(&mut server, &mut after);
    server.writer().write_all(&[0x5A; 3000]).expect("write");
    drain(&mut server, &mut after);
    server.refresh_traffic_keys().expect("KeyUpdate");
    drain(&mut server, &mut after);
    server
        .writer()
        .write_all(b"after the key update")
        .expect("write");
    drain(&mut server, &mut after);
    server.send_close_notify();
    drain(&mut server, &mut after);
    let _ = server.reader().read(&mut [0; 1]);

    let handshake_secret = secrets.get("SERVER_HANDSHAKE_TRAFFIC_SECRET");
    let application_secret = secrets.get("SERVER_TRAFFIC_SECRET_0");
    let mut records = Vec::new();
    let flight_records = split_records(&flight);
    open_records(
        &flight_records,
        Epoch::Handshake,
        &handshake_secret,
        &mut records,
    );
    let flight_len = records.len();
    open_records(
        &split_records(&after),
        Epoch::Application,
        &application_secret,
        &mut records,
    );
    // The ClientHello record is the client's first.
    let hello_len = 5 + usize::from(u16::from_be_bytes([client_sent[3], client_sent[4]]));
    Recording {
        client_hello: client_sent[..hello_len].to_vec(),
        records,
        flight_len,
        handshake_keys: Keys::of(&handshake_secret),
        application_keys: Keys::of(&application_secret),
        pin,
    }
}

fn recording() -> &'static Recording {
    static RECORDING: OnceLock<Recording> = OnceLock::new();
    RECORDING.get_or_init(|| {
        let first = record();
        // The replay relies on the client repeating itself with the same
        // seed: checked between two recordings here, and in each run.
        let second = record();
        assert_eq!(
            first.client_hello, second.client_hello,
            "the ClientHello differs between two handshakes with the same RNG seed"
        );
        assert_eq!(
            format!("{:?}", first.records),
            format!("{:?}", second.records),
            "the recording server is not deterministic"
        );
        first
    })
}

// ---------------------------------------------------------------------------
// Replay.

/// The server's side of one run.
struct Script<'r> {
    recording: &'r Recording,
    /// The keys the client reads the next encrypted record with.
    epoch: Epoch,
    next: usize,
    seq: [u64; 2],
    out: Vec<u8>,
}

impl Script<'_> {
    fn seal(&mut self, epoch: Epoch, inner_type: u8, plaintext: &[u8], padding: usize) -> Vec<u8> {
        let (keys, seq) = match epoch {
            Epoch::Handshake => (&self.recording.handshake_keys, &mut self.seq[0]),
            Epoch::Application => (&self.recording.application_keys, &mut self.seq[1]),
        };
        let record = keys.seal(*seq, inner_type, plaintext, padding);
        *seq += 1;
        // The server's Finished ends its flight: the client reads with the
        // application keys after it.
        if epoch == Epoch::Handshake && inner_type == HANDSHAKE && has_finished(plaintext) {
            self.epoch = Epoch::Application;
        }
        record
    }

    /// The next recorded record, encrypted at its place now.
    fn take(&mut self) -> Option<Vec<u8>> {
        let recorded = self.recording.records.get(self.next)?.clone();
        self.next += 1;
        Some(match recorded {
            Recorded::Plain(bytes) => bytes,
            Recorded::Encrypted {
                epoch,
                inner_type,
                plaintext,
            } => self.seal(epoch, inner_type, &plaintext, 0),
        })
    }
}

/// Whether handshake messages `plaintext` hold a Finished.
fn has_finished(mut plaintext: &[u8]) -> bool {
    while let [kind, l0, l1, l2, rest @ ..] = plaintext {
        if *kind == 20 {
            return true;
        }
        let len = usize::from(*l0) << 16 | usize::from(*l1) << 8 | usize::from(*l2);
        plaintext = rest.get(len..).unwrap_or_default();
    }
    false
}

/// Reads the items of an input.
struct Items<'d>(&'d [u8]);

impl<'d> Items<'d> {
    fn byte(&mut self) -> u8 {
        let (&b, rest) = self.0.split_first().unwrap_or((&0, &[]));
        self.0 = rest;
        b
    }

    fn len(&mut self) -> usize {
        usize::from(u16::from_be_bytes([self.byte(), self.byte()]))
    }

    fn bytes(&mut self, len: usize) -> &'d [u8] {
        let (bytes, rest) = self.0.split_at(len.min(self.0.len()));
        self.0 = rest;
        bytes
    }
}

/// The server's bytes for an input's items.
fn script(recording: &Recording, items: &[u8]) -> Vec<u8> {
    let mut items = Items(items);
    let mut script = Script {
        recording,
        epoch: Epoch::Handshake,
        next: 0,
        seq: [0, 0],
        out: Vec::new(),
    };
    while !items.0.is_empty() && script.out.len() < MAX_STREAM {
        let bytes = match items.byte() % 8 {
            0 => script.take().unwrap_or_default(),
            1 => {
                let mut rest = Vec::new();
                while let Some(record) = script.take() {
                    rest.extend_from_slice(&record);
                }
                rest
            }
            2 => {
                let n = usize::from(items.byte());
                script.next = (script.next + n).min(recording.records.len());
                Vec::new()
            }
            3 => {
                let at = items.len();
                let mask = items.byte();
                let mut record = script.take().unwrap_or_default();
                if let Some(b) = record.get_mut(at) {
                    *b ^= mask;
                }
                record
            }
            4 => {
                let content_type = items.byte();
                let len = items.len();
                let body = items.bytes(len);
                let len = body.len();
                let mut record = vec![content_type, 3, 3, (len >> 8) as u8, len as u8];
                record.extend_from_slice(body);
                record
            }
            5 => {
                let inner_type = items.byte();
                let padding = usize::from(items.byte());
                let len = items.len();
                let body = items.bytes(len);
                let epoch = script.epoch;
                if epoch == Epoch::Application && content_type(body, inner_type) == Some(HANDSHAKE)
                {
                    ENCRYPTED_HANDSHAKE_AFTER_FLIGHT.store(true, Ordering::Relaxed);
                }
                script.seal(epoch, inner_type, body, padding)
            }
            6 => {
                let len = items.len();
                items.bytes(len).to_vec()
            }
            _ => {
                let len = items.len();
                let mut record = script.take().unwrap_or_default();
                record.truncate(len);
                record
            }
        };
        script.out.extend_from_slice(&bytes);
    }
    script.out
}

/// The content type a receiver finds in an encrypted record whose inner
/// plaintext is `body`, `inner_type` and zeros: the last byte that is not
/// zero (RFC 8446 §5.4), so an `inner_type` of 0 makes the body's last
/// non-zero byte the type; `None` when all are zero (the receiver must
/// refuse the record).
fn content_type(body: &[u8], inner_type: u8) -> Option<u8> {
    std::iter::once(inner_type)
        .chain(body.iter().rev().copied())
        .find(|&byte| byte != 0)
}

/// The client's socket in a run: serves the script in reads of at most
/// `chunk` bytes, keeps what the client writes.
struct Replay<'a> {
    server: &'a [u8],
    chunk: usize,
    client_sent: &'a mut Vec<u8>,
}

impl embedded_io::ErrorType for Replay<'_> {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io_async::Read for Replay<'_> {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        let n = buf.len().min(self.server.len()).min(self.chunk);
        buf[..n].copy_from_slice(&self.server[..n]);
        self.server = &self.server[n..];
        Ok(n)
    }
}

impl embedded_io_async::Write for Replay<'_> {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        // Enough to compare the ClientHello; the rest is dropped.
        if self.client_sent.len() < 4096 {
            self.client_sent.extend_from_slice(buf);
        }
        Ok(buf.len())
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Failures a server's bytes can cause (none is a configuration error or a
/// timeout: there is no timer).
fn check_error(error: &Error, pinned: bool) {
    assert!(
        !matches!(
            error,
            Error::Config(_) | Error::Tls(mqtts::error::TlsFailure::Timeout)
        ),
        "{error:?}"
    );
    if !pinned {
        assert!(!matches!(error, Error::Config(ConfigError::NoPins)));
    }
    assert!(!error.to_string().is_empty());
}

/// Whether a panic is the known embedded-tls 0.19 one (see the module doc).
static KNOWN_UPSTREAM_PANIC: AtomicBool = AtomicBool::new(false);
/// Whether the run's script injected an encrypted handshake record under
/// the application keys: the only way left to that panic with the record
/// gate (a plaintext one is refused before embedded-tls sees it, and
/// still crashes this target if it is not).
static ENCRYPTED_HANDSHAKE_AFTER_FLIGHT: AtomicBool = AtomicBool::new(false);

fn skip_known_upstream_panic() {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        if std::env::var_os("MQTTS_FUZZ_TLS_STRICT").is_some() {
            return;
        }
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let known = info
                .location()
                .is_some_and(|l| l.file().ends_with("common/decrypted_read_handler.rs"));
            if known {
                KNOWN_UPSTREAM_PANIC.store(true, Ordering::Relaxed);
            } else {
                previous(info);
            }
        }));
    });
}

pub fn check(data: &[u8]) {
    let recording = recording();
    if std::env::var_os("MQTTS_FUZZ_TRACE").is_some() {
        for (i, record) in recording.records.iter().enumerate() {
            match record {
                Recorded::Plain(bytes) => eprintln!("record {i}: plain {bytes:02X?}"),
                Recorded::Encrypted {
                    epoch,
                    inner_type,
                    plaintext,
                } => eprintln!(
                    "record {i}: {epoch:?} type {inner_type} {} bytes {:02X?}",
                    plaintext.len(),
                    &plaintext[..plaintext.len().min(8)]
                ),
            }
        }
    }
    skip_known_upstream_panic();
    KNOWN_UPSTREAM_PANIC.store(false, Ordering::Relaxed);
    ENCRYPTED_HANDSHAKE_AFTER_FLIGHT.store(false, Ordering::Relaxed);
    let outcome = std::panic::catch_unwind(AssertUnwindSafe(|| run(recording, data)));
    if outcome.is_err() {
        assert!(
            KNOWN_UPSTREAM_PANIC.load(Ordering::Relaxed)
                && ENCRYPTED_HANDSHAKE_AFTER_FLIGHT.load(Ordering::Relaxed),
            "a panic other than the known embedded-tls one"
        );
    }
}

fn run(recording: &Recording, data: &[u8]) {
    let [chunk, flags, items @ ..] = data else {
        return;
    };
    let server = script(recording, items);
    let chunk = if *chunk == 0 {
        usize::MAX
    } else {
        usize::from(*chunk)
    };
    let mut client_sent = Vec::new();
    let socket = Replay {
        server: &server,
        chunk,
        client_sent: &mut client_sent,
    };
    let pins = [recording.pin];
    let options = TlsOptions::new(SERVER_NAME, Trust::pinned(&pins));
    let mut read_buffer = vec![0; tls::READ_BUFFER_FOR_FULL_RECORDS];
    let mut write_buffer = vec![0; 1024];
    let mut rng = FixedRng(CLIENT_SEED);
    let connected = block_on(tls::connect(
        socket,
        &mut read_buffer,
        &mut write_buffer,
        &mut rng,
        &options,
    ));
    let trace = std::env::var_os("MQTTS_FUZZ_TRACE").is_some();
    if trace {
        eprintln!(
            "server stream {} bytes; connect: {:?}",
            server.len(),
            connected.as_ref().map(|s| s.peer_certificate())
        );
    }
    match connected {
        Err(e) => check_error(&e, true),
        Ok(mut stream) => {
            assert!(recording.pin.matches(stream.peer_certificate()));
            assert!(!stream.is_insecure());
            if flags & 1 != 0 {
                let written = block_on(async {
                    stream.write_all(b"\xC0\x00").await?;
                    stream.flush().await
                });
                if let Err(e) = written {
                    check_error(&e, true);
                }
            }
            let mut buf = [0u8; 512];
            let len = if flags & 2 != 0 { 1 } else { buf.len() };
            // Each read takes at least one record, or a byte of one.
            let bound = server.len() + 2;
            let mut reads = 0;
            loop {
                reads += 1;
                assert!(reads <= bound, "reads do not end");
                let read = block_on(stream.read(&mut buf[..len]));
                if trace {
                    eprintln!("read: {read:?}");
                }
                match read {
                    Ok(_) => {}
                    Err(e) => {
                        check_error(&e, true);
                        // A caller may read again after an error: it must
                        // fail or return data, not panic.
                        if let Err(e) = block_on(stream.read(&mut buf[..len])) {
                            check_error(&e, true);
                        }
                        break;
                    }
                }
            }
        }
    }
    // The client must have said what it said when the flight was recorded.
    let hello = &recording.client_hello;
    assert_eq!(
        client_sent.get(..hello.len()),
        Some(hello.as_slice()),
        "the ClientHello differs from the recorded one"
    );
}

/// Seed inputs: the whole recording, in several read sizes and modes.
pub fn seeds() -> Vec<(String, Vec<u8>)> {
    let recording = recording();
    let n = recording.records.len() as u8;
    let f = recording.flight_len as u8;
    let mut seeds = vec![
        ("whole".to_string(), vec![0, 0, 1]),
        ("whole-chunk1".to_string(), vec![1, 0, 1]),
        ("whole-chunk7-write-bytewise".to_string(), vec![7, 3, 1]),
        // The flight only: reads then hit the end of the stream.
        ("flight".to_string(), {
            let mut s = vec![0, 0];
            s.extend(std::iter::repeat_n(0, usize::from(f)));
            s
        }),
        // The flight, then records of each content type in plaintext (a
        // handshake one is the known upstream panic).
        ("flight-plain-alert".to_string(), {
            let mut s = vec![0, 0];
            s.extend(std::iter::repeat_n(0, usize::from(f)));
            s.extend_from_slice(&[4, 21, 0, 2, 2, 0]);
            s
        }),
        // Encrypted: a NewSessionTicket, a KeyUpdate, an alert.
        ("flight-encrypted-key-update".to_string(), {
            let mut s = vec![0, 0];
            s.extend(std::iter::repeat_n(0, usize::from(f)));
            s.extend_from_slice(&[5, HANDSHAKE, 0, 0, 5, 24, 0, 0, 1, 0]);
            s
        }),
        ("flight-encrypted-close-notify-padded".to_string(), {
            let mut s = vec![0, 0];
            s.extend(std::iter::repeat_n(0, usize::from(f)));
            s.extend_from_slice(&[5, 21, 40, 0, 2, 1, 0]);
            s
        }),
        // Skip the KeyUpdate: data, then close_notify.
        ("skip-key-update".to_string(), {
            let mut s = vec![0, 0];
            for (i, record) in recording.records.iter().enumerate() {
                let key_update = matches!(record, Recorded::Encrypted { inner_type, plaintext, .. }
                    if *inner_type == HANDSHAKE && plaintext.first() == Some(&24));
                s.extend_from_slice(if key_update { &[2, 1] } else { &[0] });
                let _ = i;
            }
            s
        }),
    ];
    // The encrypted flight (one record from rustls) as one record per
    // handshake message, and without its CertificateVerify (then the
    // Finished no longer matches the transcript).
    let flight = recording.records[..usize::from(f)]
        .iter()
        .position(|r| matches!(r, Recorded::Encrypted { .. }));
    if let Some(at) = flight {
        let Recorded::Encrypted { plaintext, .. } = &recording.records[at] else {
            unreachable!()
        };
        let mut messages = Vec::new();
        let mut rest = plaintext.as_slice();
        while rest.len() >= 4 {
            let len =
                4 + (usize::from(rest[1]) << 16 | usize::from(rest[2]) << 8 | usize::from(rest[3]));
            let len = len.min(rest.len());
            messages.push(&rest[..len]);
            rest = &rest[len..];
        }
        for (name, keep_verify) in [
            ("flight-one-message-per-record", true),
            ("no-certificate-verify", false),
        ] {
            let mut s = vec![0, 0];
            s.extend(std::iter::repeat_n(0, at));
            s.extend_from_slice(&[2, 1]);
            for message in &messages {
                if message[0] == 15 && !keep_verify {
                    continue;
                }
                s.extend_from_slice(&[5, HANDSHAKE, 0]);
                s.extend_from_slice(&(message.len() as u16).to_be_bytes());
                s.extend_from_slice(message);
            }
            s.push(1);
            seeds.push((name.to_string(), s));
        }
    }
    // Each recorded record with its first body byte changed.
    for i in 0..n {
        let mut s = vec![0, 0];
        s.extend(std::iter::repeat_n(0, usize::from(i)));
        s.extend_from_slice(&[3, 0, 5, 0x80, 1]);
        seeds.push((format!("flip-record-{i}"), s));
    }
    seeds
}
