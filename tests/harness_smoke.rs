//! End-to-end checks of the test harness in `tests/support`, driven by
//! embedded-tls directly (not by the mqtts client): in-memory socket, rcgen
//! PKI, rustls TLS 1.3 echo server.

mod support;

use std::sync::Arc;
use std::time::Instant;

use embedded_tls::alert::{AlertDescription, AlertLevel};
use embedded_tls::{
    Aes128GcmSha256, CertificateEntryRef, CertificateRef, CertificateVerifyRef, CryptoProvider,
    CryptoRngCore, SignatureScheme, TlsConfig, TlsConnection, TlsContext, TlsError, TlsVerifier,
    UnsecureProvider,
};
use rand::rngs::OsRng;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::ServerCertVerifier;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{CertificateError, RootCertStore};
use sha2::Digest;
use support::*;

/// Read buffer: the largest TLS 1.3 record (16 KiB plaintext + 256 bytes).
const READ_BUF: usize = 16640;
/// Write buffer: embedded-tls fills `len - TLS_RECORD_OVERHEAD` (128) bytes of
/// plaintext per record, and a record must not carry more than 16 KiB
/// (rustls: "peer sent excess record size"), so 16 KiB + 128 at most.
const WRITE_BUF: usize = 16384 + embedded_tls::TLS_RECORD_OVERHEAD;

/// Handshake with embedded-tls over `socket`, send `payload`, read the same
/// number of bytes back and close with close_notify.
async fn roundtrip<P>(
    socket: ClientSocket,
    config: &TlsConfig<'_>,
    provider: P,
    payload: &[u8],
) -> Result<Vec<u8>, TlsError>
where
    P: CryptoProvider<CipherSuite = Aes128GcmSha256>,
{
    let mut read_buf = vec![0u8; READ_BUF];
    let mut write_buf = vec![0u8; WRITE_BUF];
    let mut tls = TlsConnection::new(socket, &mut read_buf[..], &mut write_buf[..]);
    within(
        "client handshake",
        tls.open(TlsContext::new(config, provider)),
    )
    .await?;

    let mut written = 0;
    while written < payload.len() {
        written += within("client write", tls.write(&payload[written..])).await?;
    }
    within("client flush", tls.flush()).await?;

    let mut echoed = vec![0u8; payload.len()];
    let mut received = 0;
    while received < payload.len() {
        let n = within("client read", tls.read(&mut echoed[received..])).await?;
        assert!(n > 0, "client read returned 0 after {received} bytes");
        received += n;
    }
    within("client close", tls.close())
        .await
        .map_err(|(_, e)| e)?;
    Ok(echoed)
}

fn unsecure() -> UnsecureProvider<'static, Aes128GcmSha256, OsRng> {
    UnsecureProvider::new::<Aes128GcmSha256>(OsRng)
}

/// An embedded-tls provider whose verifier accepts everything but records
/// what the server presented (or aborts the handshake with an alert).
#[derive(Default)]
struct Recorder {
    rng: OsRng,
    abort_with: Option<AlertDescription>,
    chain: Vec<Vec<u8>>,
    transcript_hash: Option<Vec<u8>>,
    certificate_verify: Option<(SignatureScheme, Vec<u8>)>,
}

impl Recorder {
    /// The bytes the server's CertificateVerify signature covers (RFC 8446 4.4.3).
    fn signed_message(&self) -> Vec<u8> {
        let mut msg = vec![0x20u8; 64];
        msg.extend_from_slice(b"TLS 1.3, server CertificateVerify\x00");
        msg.extend_from_slice(
            self.transcript_hash
                .as_ref()
                .expect("no Certificate message was recorded"),
        );
        msg
    }

    /// Does the recorded ECDSA P-256 CertificateVerify verify under `key`?
    fn p256_signature_verifies_with(&self, key: &rcgen::KeyPair) -> bool {
        use p256::ecdsa::signature::Verifier;
        let (scheme, sig) = self
            .certificate_verify
            .as_ref()
            .expect("no CertificateVerify was recorded");
        assert!(
            matches!(scheme, SignatureScheme::EcdsaSecp256r1Sha256),
            "unexpected signature scheme {scheme:?}"
        );
        let verifying_key = p256::ecdsa::VerifyingKey::from_sec1_bytes(key.public_key_raw())
            .expect("P-256 public key");
        let signature = p256::ecdsa::Signature::from_der(sig).expect("DER ECDSA signature");
        verifying_key
            .verify(&self.signed_message(), &signature)
            .is_ok()
    }
}

impl CryptoProvider for Recorder {
    type CipherSuite = Aes128GcmSha256;
    type Signature = Vec<u8>;

    fn rng(&mut self) -> impl CryptoRngCore {
        &mut self.rng
    }

    fn verifier(&mut self) -> Result<&mut impl TlsVerifier<Aes128GcmSha256>, TlsError> {
        Ok(self)
    }
}

impl TlsVerifier<Aes128GcmSha256> for Recorder {
    fn set_hostname_verification(&mut self, _hostname: &str) -> Result<(), TlsError> {
        Ok(())
    }

    fn verify_certificate(
        &mut self,
        transcript: &sha2::Sha256,
        cert: CertificateRef,
    ) -> Result<(), TlsError> {
        self.transcript_hash = Some(transcript.clone().finalize().to_vec());
        self.chain = cert
            .entries
            .iter()
            .map(|entry| match entry {
                CertificateEntryRef::X509(der) | CertificateEntryRef::RawPublicKey(der) => {
                    der.to_vec()
                }
            })
            .collect();
        match self.abort_with {
            Some(alert) => Err(TlsError::AbortHandshake(AlertLevel::Fatal, alert)),
            None => Ok(()),
        }
    }

    fn verify_signature(&mut self, verify: CertificateVerifyRef) -> Result<(), TlsError> {
        self.certificate_verify = Some((verify.signature_scheme, verify.signature.to_vec()));
        Ok(())
    }
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i % 251) as u8).collect()
}

async fn echo_with_pki(pki: &TestPki, tls_config: &TlsConfig<'_>) {
    let started = Instant::now();
    let config = server_config(pki.chain(), pki.leaf.private_key_der());
    let (socket, server) = spawn_server(config);
    let data = b"hello over TLS 1.3".to_vec();
    let echoed = roundtrip(socket, tls_config, unsecure(), &data)
        .await
        .expect("embedded-tls round trip through the echo server");
    assert_eq!(echoed, data, "echoed bytes differ");
    let outcome = join_server(server).await;
    assert_eq!(outcome, Ok(data.len()), "server outcome");
    eprintln!(
        "{:?} leaf, chain of {}: {:?}",
        pki.leaf.key_kind(),
        pki.chain().len(),
        started.elapsed()
    );
}

#[tokio::test]
async fn echo_p256_leaf() {
    let pki = TestPki::new(KeyKind::P256);
    echo_with_pki(&pki, &TlsConfig::new().with_server_name(SERVER_NAME)).await;
}

#[tokio::test]
async fn echo_rsa2048_leaf() {
    let pki = TestPki::new(KeyKind::Rsa2048);
    let config = TlsConfig::new()
        .with_server_name(SERVER_NAME)
        .enable_rsa_signatures();
    echo_with_pki(&pki, &config).await;
}

#[tokio::test]
async fn echo_every_key_kind() {
    let config = TlsConfig::new()
        .with_server_name(SERVER_NAME)
        .enable_rsa_signatures();
    for kind in KeyKind::ALL {
        echo_with_pki(&TestPki::new(kind), &config).await;
    }
}

#[tokio::test]
async fn echo_leaf_and_intermediate_chain() {
    let pki = TestPki::with_intermediate(KeyKind::P256);
    let config = server_config(pki.chain(), pki.leaf.private_key_der());
    let (socket, server) = spawn_server(config);
    let mut recorder = Recorder::default();
    let data = b"chain of two".to_vec();
    let echoed = roundtrip(
        socket,
        &TlsConfig::new().with_server_name(SERVER_NAME),
        &mut recorder,
        &data,
    )
    .await
    .expect("round trip with leaf + intermediate");
    assert_eq!(echoed, data);
    assert_eq!(join_server(server).await, Ok(data.len()));

    let intermediate = pki.intermediate.as_ref().expect("intermediate");
    assert_eq!(
        recorder.chain,
        vec![pki.leaf.der_bytes(), intermediate.der_bytes()],
        "server must send leaf then intermediate"
    );
    assert!(
        recorder.p256_signature_verifies_with(&pki.leaf.key),
        "CertificateVerify must be made with the leaf key"
    );
}

#[tokio::test]
async fn echo_large_payload_over_several_records() {
    let pki = TestPki::new(KeyKind::P256);
    let (socket, server) = spawn_server(server_config(pki.chain(), pki.leaf.private_key_der()));
    let data = payload(40_000);
    let echoed = roundtrip(
        socket,
        &TlsConfig::new().with_server_name(SERVER_NAME),
        unsecure(),
        &data,
    )
    .await
    .expect("40 kB round trip");
    assert_eq!(echoed, data);
    assert_eq!(join_server(server).await, Ok(data.len()));
}

#[tokio::test]
async fn server_signs_with_a_foreign_key_when_asked() {
    let pki = TestPki::new(KeyKind::P256);
    let attacker = other_key_pair(KeyKind::P256);
    let config = server_config_with_signing_key(pki.chain(), private_key_der(&attacker));
    let (socket, server) = spawn_server(config);
    let mut recorder = Recorder::default();
    let data = b"replayed certificate".to_vec();
    // The recorder does not check signatures, so the handshake completes.
    let echoed = roundtrip(
        socket,
        &TlsConfig::new().with_server_name(SERVER_NAME),
        &mut recorder,
        &data,
    )
    .await
    .expect("rustls must serve a certificate with a non-matching signing key");
    assert_eq!(echoed, data);
    assert_eq!(join_server(server).await, Ok(data.len()));

    assert_eq!(recorder.chain, vec![pki.leaf.der_bytes()]);
    assert!(
        !recorder.p256_signature_verifies_with(&pki.leaf.key),
        "CertificateVerify must NOT verify under the presented certificate's key"
    );
    assert!(
        recorder.p256_signature_verifies_with(&attacker),
        "CertificateVerify must verify under the attacker's key"
    );
}

#[tokio::test]
async fn client_alert_is_reported_by_the_server() {
    let pki = TestPki::new(KeyKind::P256);
    let (socket, server) = spawn_server(server_config(pki.chain(), pki.leaf.private_key_der()));
    let mut recorder = Recorder {
        abort_with: Some(AlertDescription::BadCertificate),
        ..Recorder::default()
    };
    let err = roundtrip(
        socket,
        &TlsConfig::new().with_server_name(SERVER_NAME),
        &mut recorder,
        b"never sent",
    )
    .await
    .expect_err("the client aborts the handshake");
    assert!(
        matches!(
            err,
            TlsError::AbortHandshake(AlertLevel::Fatal, AlertDescription::BadCertificate)
        ),
        "client error: {err:?}"
    );
    let outcome = join_server(server).await.expect_err("server must fail");
    assert_eq!(outcome.stage, Stage::Handshake, "{outcome}");
    assert_eq!(
        outcome.alert,
        Some(rustls::AlertDescription::BadCertificate),
        "{outcome}"
    );
}

#[tokio::test]
async fn client_hanging_up_mid_handshake_is_reported() {
    let pki = TestPki::new(KeyKind::P256);
    let (socket, server) = spawn_server(server_config(pki.chain(), pki.leaf.private_key_der()));
    drop(socket);
    let outcome = join_server(server).await.expect_err("server must fail");
    assert_eq!(outcome.stage, Stage::Handshake, "{outcome}");
    assert_eq!(outcome.alert, None, "{outcome}");
}

#[tokio::test]
async fn client_dropping_without_close_notify_is_an_io_error() {
    let pki = TestPki::new(KeyKind::P256);
    let (socket, server) = spawn_server(server_config(pki.chain(), pki.leaf.private_key_der()));
    let mut read_buf = vec![0u8; READ_BUF];
    let mut write_buf = vec![0u8; WRITE_BUF];
    let mut tls = TlsConnection::new(socket, &mut read_buf[..], &mut write_buf[..]);
    let config = TlsConfig::new().with_server_name(SERVER_NAME);
    within(
        "client handshake",
        tls.open(TlsContext::new(&config, unsecure())),
    )
    .await
    .expect("handshake");
    within("client write", tls.write(b"abc"))
        .await
        .expect("write");
    within("client flush", tls.flush()).await.expect("flush");
    let mut buf = [0u8; 3];
    let n = within("client read", tls.read(&mut buf))
        .await
        .expect("read");
    assert_eq!(&buf[..n], &b"abc"[..n]);
    drop(tls);
    let outcome = join_server(server).await.expect_err("no close_notify");
    assert_eq!(outcome.stage, Stage::Io, "{outcome}");
    assert_eq!(outcome.echoed, 3, "{outcome}");
}

#[tokio::test]
async fn custom_server_handler_runs_after_the_handshake() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let pki = TestPki::new(KeyKind::P256);
    let config = server_config(pki.chain(), pki.leaf.private_key_der());
    let (socket, server) = spawn_server_with(config, |mut stream: ServerStream| async move {
        stream
            .write_all(b"server speaks first")
            .await
            .expect("server write");
        stream.flush().await.expect("server flush");
        let mut request = [0u8; 5];
        stream.read_exact(&mut request).await.expect("server read");
        let client_bytes = stream.get_ref().0.client_bytes().len();
        (request, client_bytes)
    });

    let mut read_buf = vec![0u8; READ_BUF];
    let mut write_buf = vec![0u8; WRITE_BUF];
    let mut tls = TlsConnection::new(socket, &mut read_buf[..], &mut write_buf[..]);
    let config = TlsConfig::new().with_server_name(SERVER_NAME);
    within(
        "client handshake",
        tls.open(TlsContext::new(&config, unsecure())),
    )
    .await
    .expect("handshake");
    let mut greeting = [0u8; 19];
    let mut got = 0;
    while got < greeting.len() {
        got += within("client read", tls.read(&mut greeting[got..]))
            .await
            .expect("read greeting");
    }
    assert_eq!(&greeting, b"server speaks first");
    within("client write", tls.write(b"ping!"))
        .await
        .expect("write");
    within("client flush", tls.flush()).await.expect("flush");

    let (request, client_bytes) = join_server(server).await.expect("server handshake");
    assert_eq!(&request, b"ping!");
    assert!(client_bytes > 100, "tap saw {client_bytes} client bytes");
}

// ---- PKI shapes, checked with rustls' webpki verifier (ring) ----

fn webpki_verify(
    root: &Issued,
    leaf: &CertificateDer<'static>,
    intermediates: &[CertificateDer<'static>],
    name: &str,
) -> Result<(), rustls::Error> {
    let mut roots = RootCertStore::empty();
    roots.add(root.der()).expect("root certificate parses");
    let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), crypto_provider())
        .build()
        .expect("webpki verifier");
    let name = ServerName::try_from(name.to_string()).expect("server name");
    verifier
        .verify_server_cert(leaf, intermediates, &name, &[], UnixTime::now())
        .map(|_| ())
}

fn expect_cert_error(result: Result<(), rustls::Error>, what: &str) -> CertificateError {
    match result {
        Err(rustls::Error::InvalidCertificate(e)) => e,
        other => panic!("{what}: expected an invalid-certificate error, got {other:?}"),
    }
}

#[test]
fn pki_shapes_validate_as_intended() {
    for kind in KeyKind::ALL {
        let started = Instant::now();
        let pki = TestPki::with_intermediate(kind);
        let chain = pki.chain();
        webpki_verify(&pki.root, &chain[0], &chain[1..], SERVER_NAME)
            .unwrap_or_else(|e| panic!("{kind:?} chain must validate: {e}"));
        let simple = TestPki::new(kind);
        webpki_verify(&simple.root, &simple.leaf.der(), &[], SERVER_NAME)
            .unwrap_or_else(|e| panic!("{kind:?} root->leaf must validate: {e}"));
        eprintln!(
            "{kind:?} PKIs built and verified in {:?}",
            started.elapsed()
        );
    }

    let root = CertSpec::root("Shapes Root").self_signed();

    let wrong_name = CertSpec::leaf(&["other.test"]).signed_by(&root);
    let e = expect_cert_error(
        webpki_verify(&root, &wrong_name.der(), &[], SERVER_NAME),
        "wrong name",
    );
    assert!(
        matches!(e, CertificateError::NotValidForNameContext { .. }),
        "{e:?}"
    );

    let expired = CertSpec::leaf(&[SERVER_NAME]).expired().signed_by(&root);
    let e = expect_cert_error(
        webpki_verify(&root, &expired.der(), &[], SERVER_NAME),
        "expired",
    );
    assert!(
        matches!(e, CertificateError::ExpiredContext { .. }),
        "{e:?}"
    );

    let early = CertSpec::leaf(&[SERVER_NAME])
        .not_yet_valid()
        .signed_by(&root);
    let e = expect_cert_error(
        webpki_verify(&root, &early.der(), &[], SERVER_NAME),
        "not yet valid",
    );
    assert!(
        matches!(e, CertificateError::NotValidYetContext { .. }),
        "{e:?}"
    );

    // A leaf (no basicConstraints) used as an issuer.
    let fake_ca = CertSpec::leaf(&["fake-ca.test"]).signed_by(&root);
    let victim = CertSpec::leaf(&[SERVER_NAME]).signed_by(&fake_ca);
    let e = expect_cert_error(
        webpki_verify(&root, &victim.der(), &[fake_ca.der()], SERVER_NAME),
        "issuer lacks CA flag",
    );
    eprintln!("issuer without CA flag -> {e:?}");
    assert!(
        format!("{e:?}").contains("EndEntityUsedAsCa"),
        "issuer lacks CA flag: {e:?}"
    );

    // An issuer whose basicConstraints say cA=FALSE explicitly.
    let explicit_no_ca = CertSpec::intermediate("Explicit No CA")
        .basic_constraints(rcgen::IsCa::ExplicitNoCa)
        .signed_by(&root);
    let victim = CertSpec::leaf(&[SERVER_NAME]).signed_by(&explicit_no_ca);
    let e = expect_cert_error(
        webpki_verify(&root, &victim.der(), &[explicit_no_ca.der()], SERVER_NAME),
        "issuer with cA=FALSE",
    );
    assert!(
        format!("{e:?}").contains("EndEntityUsedAsCa"),
        "issuer with cA=FALSE: {e:?}"
    );

    // Signed by an unrelated root.
    let stranger = CertSpec::root("Stranger Root").self_signed();
    let foreign = CertSpec::leaf(&[SERVER_NAME]).signed_by(&stranger);
    let e = expect_cert_error(
        webpki_verify(&root, &foreign.der(), &[], SERVER_NAME),
        "unknown issuer",
    );
    assert_eq!(e, CertificateError::UnknownIssuer);
}

#[test]
fn reissued_leaf_keeps_its_spki() {
    let root = CertSpec::root("Reissue Root").self_signed();
    for kind in [KeyKind::P256, KeyKind::Rsa2048] {
        let leaf = CertSpec::leaf(&[SERVER_NAME])
            .key_kind(kind)
            .signed_by(&root);
        let again = leaf.reissue().signed_by(&root);
        assert_ne!(leaf.der_bytes(), again.der_bytes());
        assert_ne!(leaf.cert_sha256(), again.cert_sha256());
        assert_ne!(leaf.params().serial_number, again.params().serial_number);
        assert_eq!(leaf.spki_der(), again.spki_der());
        assert_eq!(leaf.spki_sha256(), again.spki_sha256());
        webpki_verify(&root, &again.der(), &[], SERVER_NAME).expect("re-issued leaf validates");
        // The certificate really embeds that SPKI.
        assert!(contains(&again.der_bytes(), &leaf.spki_der()));
    }
}

#[test]
fn rsa_test_keys_load() {
    for index in 0..3 {
        let key = rsa2048_key_pair(index);
        assert_eq!(KeyKind::of(&key), KeyKind::Rsa2048);
    }
    assert_eq!(
        rsa2048_key_pair(0).public_key_der(),
        RSA2048_A_SPKI,
        "rsa2048-a.spki.der matches rsa2048-a.pk8.der"
    );
    assert_eq!(rsa2048_key_pair(1).public_key_der(), RSA2048_B_SPKI);
    assert_eq!(rsa2048_key_pair(2).public_key_der(), RSA2048_C_SPKI);
    assert_eq!(key_pair(KeyKind::Rsa4096).public_key_der(), RSA4096_SPKI);
    assert_eq!(KeyKind::of(&key_pair(KeyKind::Rsa4096)), KeyKind::Rsa4096);
    assert_ne!(
        key_pair(KeyKind::Rsa2048).public_key_der(),
        other_key_pair(KeyKind::Rsa2048).public_key_der()
    );

    // RSA-1024: ring will not load it, but a certificate can carry its public key.
    assert!(
        rcgen::KeyPair::try_from(RSA1024_PKCS8).is_err(),
        "ring unexpectedly accepted an RSA-1024 key"
    );
    let root = CertSpec::root("Weak Key Root").self_signed();
    let weak = CertSpec::leaf(&[SERVER_NAME]).signed_by_for_public_key(RSA1024_SPKI, &root);
    assert!(contains(&weak, RSA1024_SPKI));
    webpki_verify(&root, &weak, &[], SERVER_NAME).expect("chain of the RSA-1024 leaf validates");
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
