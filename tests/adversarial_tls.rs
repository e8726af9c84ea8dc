//! Adversarial server certificates (issue 7, item 4): every case is a real
//! TLS 1.3 handshake of `mqtts::tls::connect` against a rustls server over
//! an in-memory pipe, asserting the exact typed error.
//!
//! For each case, CA mode (with the current time from
//! `TlsOptions::with_unix_time`) must give one exact outcome (mostly
//! `Error::CertificateRejected` with one [`CertificateError`] and the
//! leaf's fingerprints), and CA mode with a matching pin the same one (the
//! chain is checked before the pin). The pin modes (SHA-256
//! certificate pin, SHA-1 certificate pin, SPKI SHA-256 pin) must do what
//! `Trust::pinned` and the README document: the pin is the identity, so
//! names, dates, issuers, extensions and the rest of the chain are ignored
//! ("Only the leaf certificate is compared; intermediates the server sends
//! are ignored"), but the server must still prove it holds the leaf's key
//! (CertificateVerify, checked by replaying the same chain with another key),
//! and a pin of any certificate other than the leaf never matches.
//!
//! | case | CA mode | pin modes | test |
//! |---|---|---|---|
//! | expired leaf | `Expired { now, not_before, not_after }` (leaf's dates) | connect | CA: `tls_trust::ca_with_expired_certificate_is_refused_when_time_is_given`; pins: [`expired_leaf`] (SPKI also `tls_trust::pins_ignore_expiry_and_name`) |
//! | expired intermediate | `Expired` (intermediate's dates) | connect | [`expired_intermediate`] |
//! | leaf not yet valid | `NotYetValid { now, not_before, not_after }` | connect | CA: `tls_trust::ca_with_not_yet_valid_certificate_is_refused`; pins: [`not_yet_valid_leaf`] |
//! | wrong host | `NameMismatch { expected }` | connect | CA: `tls_trust::ca_with_wrong_server_name_is_refused_naming_the_expected_name`, `tls_trust::ca_second_anchor_and_wildcard_name_connect`; pins: [`wrong_host`] |
//! | unknown root | `UnknownIssuer` | connect | CA: `tls_trust::ca_with_unknown_or_impostor_root_is_refused`; pins: [`unknown_root`] |
//! | anchor replaced by a root of the same name | `BadSignature` | - | `tls_trust::ca_with_unknown_or_impostor_root_is_refused` |
//! | fake root with the trusted root's name and key type, sent in the chain | `BadSignature` | connect (its own leaf); the genuine leaf's pins: `PinMismatch` | [`fake_root_with_the_trusted_roots_name`] |
//! | fake intermediate with the real one's name | `BadSignature` | as above | [`fake_intermediate_with_the_real_intermediates_name`] |
//! | leaf naming the trusted CA as issuer, signed by another key | `BadSignature` | as above | [`leaf_signed_in_the_cas_name_by_another_key`] |
//! | self-signed leaf | `UnknownIssuer` | connect | CA: `tls_trust::a_self_signed_leaf_is_an_unknown_issuer`; pins: [`self_signed_leaf`] |
//! | key usage keyCertSign only (no digitalSignature) | connects: webpki ignores keyUsage | connect | [`key_usage_without_digital_signature`] |
//! | extended key usage clientAuth only | `NotForServerAuthentication` | connect | CA: `tls_trust::a_client_certificate_is_not_a_server_certificate`; pins: [`client_auth_only`] |
//! | no extended key usage extension | connects (RFC 5280: any purpose) | connect | [`no_extended_key_usage`] |
//! | issuer without the CA flag (none / cA=FALSE) | `IssuerNotCa` | connect | CA: `tls_trust::ca_chain_whose_issuer_is_not_a_ca_is_refused`; pins: [`issuer_not_ca`] |
//! | leaf with cA=TRUE | `LeafIsCa` | connect | [`leaf_is_a_ca`] |
//! | path length constraint exceeded | `ConstraintViolated` | connect | [`path_length_constraint_violated`] |
//! | name constraint violated (intermediate / trust anchor) | `ConstraintViolated` | connect | [`name_constraint_violated`] |
//! | chain of leaf + 6 intermediates (+ the root: `MAX_CHAIN_LEN` in all) | connects | connect | [`chain_of_six_intermediates`] |
//! | chain of `MAX_CHAIN_LEN` as leaf + 7 intermediates | `ChainTooLong` (the path may use 6 intermediates, as `MAX_CHAIN_LEN` documents) | connect | [`chain_at_the_limit`] |
//! | chain of `MAX_CHAIN_LEN + 1` | `ChainTooLong` | connect | CA: `tls_trust::a_chain_longer_than_the_limit_is_refused`; pins: [`chain_longer_than_the_limit`] |
//! | X.509 v1 leaf | `Malformed` (webpki accepts v3 only) | connect | [`v1_leaf`] |
//! | X.509 v1 intermediate | `Malformed` | connect | [`v1_intermediate`] |
//! | leaf signed with ecdsa-with-SHA1 | `UnsupportedSignatureAlgorithm` | connect | [`sha1_signed_leaf`] |
//! | unknown critical extension in the leaf | `Malformed` | connect | [`unknown_critical_extension`] |
//! | server name only in the CN, no subjectAltName | `NameMismatch { expected }` | connect | [`name_only_in_the_common_name`] |
//! | garbage sent as an unneeded / a needed intermediate | connects / `Malformed` | connect | [`garbage_intermediate`] |
//! | 17 certificates (embedded-tls keeps 16) | `Tls(ProtocolViolation)` | `Tls(ProtocolViolation)` | [`seventeen_certificates`] |
//! | expired trust anchor | connects (RFC 5280 §6.1: anchor dates are not checked) | - | [`expired_trust_anchor`] |
//! | self-signed leaf as its own trust anchor | connects | connect | [`self_signed_leaf_as_its_own_anchor`], [`self_signed_leaf`] |
//! | RSA-1024 leaf | `UnsupportedKey(Rsa)` (not a `CertificateRejected`) | `UnsupportedKey(Rsa)` | CA and SPKI pin: `tls_trust::an_rsa_1024_server_key_is_refused_in_every_mode` (`rsa` feature); all pins and any build: [`rsa_1024_leaf`] |
//! | RSA-1024 intermediate (`rsa` feature) | `BadSignature` | connect | [`rsa_1024_intermediate`] |
//! | pin of the intermediate or root instead of the leaf | CA mode with that pin: `PinMismatch` | `PinMismatch` (leaf's fingerprints) | CA: [`ca_mode_pins_match_the_leaf_only`]; pins: every case above with pin modes, in [`check_pins`] |
//! | the leaf replayed without its key | - | `ServerSignatureInvalid` | every case that connects, in [`check_pins`]; CA mode: `tls_trust::certificate_verify_by_another_key_is_refused_in_every_mode` |

mod support;

use embedded_io_async::{Read as _, Write as _};
use mqtts::Error;
use mqtts::error::CertificateError;
use mqtts::fingerprint::Fingerprint;
use mqtts::tls::{self, TlsOptions};
use mqtts::trust::{
    CertificateInfo, KeyAlgorithm, MAX_CHAIN_LEN, Pin, PresentedCertificate, Trust,
};
use rand::rngs::OsRng;
use rcgen::NameConstraints;
use rcgen::{BasicConstraints, ExtendedKeyUsagePurpose, GeneralSubtree, IsCa, KeyUsagePurpose};
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use sha1::Digest as _;
use support::*;

/// One server: what it presents, the key it proves, what the client trusts.
struct Case {
    /// The server's Certificate message, leaf first.
    chain: Vec<CertificateDer<'static>>,
    /// The key the server signs CertificateVerify with (the leaf's own key,
    /// except for RSA-1024, which ring cannot sign with).
    key: PrivateKeyDer<'static>,
    /// The trust anchors of CA mode (DER).
    anchors: Vec<Vec<u8>>,
    /// The name the client dials.
    server_name: &'static str,
    /// The time given to the client, seconds since the Unix epoch.
    now: u64,
}

impl Case {
    /// A server presenting `chain` with the key of `leaf`, trusted through `root`.
    fn new(chain: Vec<CertificateDer<'static>>, leaf: &Issued, root: &Issued) -> Self {
        Case {
            chain,
            key: leaf.private_key_der(),
            anchors: vec![root.der_bytes()],
            server_name: SERVER_NAME,
            now: unix_now(),
        }
    }

    fn leaf(&self) -> &[u8] {
        &self.chain[0]
    }

    /// The fingerprints the client must report: computed here with sha1,
    /// ring and our own DER walk, not with mqtts.
    fn presented(&self) -> (Fingerprint, Fingerprint, [u8; 32]) {
        let leaf = self.leaf();
        (
            Fingerprint::Sha1(sha1::Sha1::digest(leaf).into()),
            Fingerprint::Sha256(sha256(leaf)),
            sha256(&spki_of(leaf)),
        )
    }

    /// CA mode with the case's anchors, name and time.
    fn ca_options<'a>(&'a self, anchors: &'a [&'a [u8]], pins: &'a [Pin]) -> TlsOptions<'a> {
        let trust = Trust::certificate_authorities(anchors);
        let trust = if pins.is_empty() {
            trust
        } else {
            trust.with_pins(pins)
        };
        TlsOptions::new(self.server_name, trust).with_unix_time(self.now)
    }
}

fn unix_now() -> u64 {
    now().unix_timestamp().try_into().expect("after 1970")
}

fn unix(t: time::OffsetDateTime) -> u64 {
    t.unix_timestamp().try_into().expect("after 1970")
}

/// The DER SubjectPublicKeyInfo of a certificate (RFC 5280 §4.1: the
/// TBSCertificate element after subject, with or without a version field).
fn spki_of(cert: &[u8]) -> Vec<u8> {
    let (certificate, _) = der_split(cert);
    let (tbs, _) = der_split(certificate.contents);
    let fields = der_elements(tbs.contents);
    let skip = usize::from(fields[0].tag == 0xA0);
    fields[skip + 5].encoded.to_vec()
}

/// The three pins of a certificate: SHA-256 and SHA-1 of the DER, SHA-256 of the SPKI.
fn pins_of(cert: &[u8]) -> [(&'static str, Pin); 3] {
    let [sha256_pin, sha1_pin] = certificate_pins_of(cert);
    [
        sha256_pin,
        sha1_pin,
        ("SPKI SHA-256", Pin::PublicKey(sha256(&spki_of(cert)))),
    ]
}

/// The two certificate pins, which exist for any bytes (even garbage).
fn certificate_pins_of(cert: &[u8]) -> [(&'static str, Pin); 2] {
    [
        (
            "certificate SHA-256",
            Pin::Certificate(Fingerprint::Sha256(sha256(cert))),
        ),
        (
            "certificate SHA-1",
            Pin::Certificate(Fingerprint::Sha1(sha1::Sha1::digest(cert).into())),
        ),
    ]
}

/// Connects to a rustls server presenting `case.chain` and signing with
/// `key`; on success echoes a message and closes cleanly. Checks the
/// server's side too: a refused server never receives application data.
async fn handshake(
    case: &Case,
    options: &TlsOptions<'_>,
    key: PrivateKeyDer<'static>,
) -> Result<PresentedCertificate, Error> {
    let (socket, server) = spawn_server(server_config_with_signing_key(case.chain.clone(), key));
    let mut read_buffer = vec![0; 16_640];
    let mut write_buffer = vec![0; 16_640];
    let client = within("client", async {
        let mut stream = tls::connect(
            socket,
            &mut read_buffer,
            &mut write_buffer,
            &mut OsRng,
            options,
        )
        .await?;
        stream.write_all(b"ping").await?;
        stream.flush().await?;
        let mut echo = [0; 4];
        let mut received = 0;
        while received < echo.len() {
            let n = stream.read(&mut echo[received..]).await?;
            assert_ne!(n, 0, "server closed before echoing everything");
            received += n;
        }
        assert_eq!(&echo, b"ping");
        let peer = *stream.peer_certificate();
        let (_socket, closed) = stream.close().await;
        closed?;
        Ok(peer)
    })
    .await;
    let server = join_server(server).await;
    match &client {
        Ok(_) => assert_eq!(server, Ok(4), "the server did not echo cleanly"),
        Err(_) => {
            if let Ok(echoed) = server {
                assert_eq!(echoed, 0, "data reached a refused server");
            }
        }
    }
    client
}

/// Asserts the outcome: `Ok` must report the leaf's fingerprints; an error
/// must be exactly `expected`, and where it carries the presented
/// certificate, the fingerprints in it are checked against our own hashes
/// too (`expected` builds them with mqtts's `CertificateInfo`).
fn assert_outcome(
    case: &Case,
    what: &str,
    outcome: Result<PresentedCertificate, Error>,
    expected: &Result<(), Error>,
) {
    let peer = match &outcome {
        Ok(peer) => Some(peer),
        Err(Error::CertificateRejected { presented, .. } | Error::PinMismatch { presented }) => {
            Some(presented)
        }
        Err(_) => None,
    };
    if let Some(peer) = peer {
        let (sha1, sha256, spki) = case.presented();
        // The SHA-1 only where SHA-1 pins make it matter (unit tests in
        // src/trust check when).
        assert!(peer.sha1().is_none_or(|got| got == sha1), "{what}");
        assert_eq!(peer.sha256(), sha256, "{what}");
        assert_eq!(peer.spki_sha256(), spki, "{what}");
    }
    let got = outcome.map(|_| ());
    assert!(
        same_outcome(&got, expected),
        "{what}: got {got:?}, expected {expected:?}"
    );
}

/// Equal outcomes, where a presented certificate's SHA-1 is compared only
/// if both sides have one: mqtts computes it only for SHA-1 pins (which
/// `mqtts::trust`'s unit tests check), while the expected values here come
/// from `CertificateInfo`, which always has it.
fn same_outcome(got: &Result<(), Error>, want: &Result<(), Error>) -> bool {
    let same = |a: &PresentedCertificate, b: &PresentedCertificate| {
        a.sha256() == b.sha256()
            && a.spki_sha256() == b.spki_sha256()
            && (a.sha1().is_none() || b.sha1().is_none() || a.sha1() == b.sha1())
    };
    match (got, want) {
        (Err(Error::PinMismatch { presented: a }), Err(Error::PinMismatch { presented: b })) => {
            same(a, b)
        }
        (
            Err(Error::CertificateRejected {
                reason: ra,
                presented: a,
            }),
            Err(Error::CertificateRejected {
                reason: rb,
                presented: b,
            }),
        ) => ra == rb && same(a, b),
        _ => got == want,
    }
}

/// The `CertificateRejected` error CA mode must return, with the leaf's fingerprints.
fn rejected(case: &Case, reason: CertificateError) -> Error {
    Error::CertificateRejected {
        reason,
        presented: CertificateInfo::parse(case.leaf())
            .expect("the leaf parses")
            .fingerprints(),
    }
}

/// CA mode alone, and CA mode with a matching SPKI pin of the leaf, give `expected`.
async fn check_ca(case: &Case, expected: Result<(), Error>) {
    let anchors: Vec<&[u8]> = case.anchors.iter().map(Vec::as_slice).collect();
    let outcome = handshake(case, &case.ca_options(&anchors, &[]), case.key.clone_key()).await;
    assert_outcome(case, "CA mode", outcome, &expected);

    let pins = [pins_of(case.leaf())[2].1];
    let outcome = handshake(
        case,
        &case.ca_options(&anchors, &pins),
        case.key.clone_key(),
    )
    .await;
    assert_outcome(case, "CA mode with the leaf's pin", outcome, &expected);
}

/// What the pin modes must do with this server: each pin of the leaf gives
/// `expected`; pins of the other certificates (chain and anchors) give
/// `PinMismatch`; and where the leaf's pin connects, the same chain served
/// with `replay_key` (another key of the leaf's type) is refused as
/// `ServerSignatureInvalid`.
async fn check_pins(
    case: &Case,
    expected: Result<(), Error>,
    replay_key: Option<PrivateKeyDer<'static>>,
) {
    for (kind, pin) in pins_of(case.leaf()) {
        let pins = [pin];
        let outcome = handshake(case, &pinned_options(case, &pins), case.key.clone_key()).await;
        assert_outcome(case, &format!("{kind} pin of the leaf"), outcome, &expected);
    }

    let presented = CertificateInfo::parse(case.leaf())
        .expect("the leaf parses")
        .fingerprints();
    let others = case.chain[1..]
        .iter()
        .map(|der| der.to_vec())
        .chain(case.anchors.iter().cloned());
    for (index, other) in others.enumerate() {
        // Garbage has no SPKI to pin; its hashes can still be pinned.
        let pins = if CertificateInfo::parse(&other).is_ok() {
            pins_of(&other).to_vec()
        } else {
            certificate_pins_of(&other).to_vec()
        };
        for (kind, pin) in pins {
            let pins = [pin];
            let outcome = handshake(case, &pinned_options(case, &pins), case.key.clone_key()).await;
            assert_outcome(
                case,
                &format!("{kind} pin of certificate #{index} after the leaf"),
                outcome,
                &Err(Error::PinMismatch { presented }),
            );
        }
    }

    if expected.is_ok() {
        let replay_key = replay_key.expect("a replay key for a case that connects");
        let pins = [pins_of(case.leaf())[2].1];
        let outcome = handshake(case, &pinned_options(case, &pins), replay_key).await;
        assert_eq!(
            outcome.map(|_| ()),
            Err(Error::ServerSignatureInvalid),
            "the leaf replayed by a server without its key"
        );
    }
}

/// Pin mode with `pins`. Pins ignore dates: the time is given anyway, to
/// show that it is not used.
fn pinned_options<'a>(case: &'a Case, pins: &'a [Pin]) -> TlsOptions<'a> {
    TlsOptions::new(case.server_name, Trust::pinned(pins)).with_unix_time(case.now)
}

/// Another P-256 key, for the replay check.
fn other_p256() -> Option<PrivateKeyDer<'static>> {
    Some(private_key_der(&other_key_pair(KeyKind::P256)))
}

/// root -> leaf for [`SERVER_NAME`], P-256, the leaf spec changed by `edit`.
fn root_and(edit: impl FnOnce(CertSpec) -> CertSpec) -> (Issued, Issued) {
    let root = CertSpec::root("mqtts Test Root CA").self_signed();
    let leaf = edit(CertSpec::leaf(&[SERVER_NAME])).signed_by(&root);
    (root, leaf)
}

// Cases whose CA-mode refusal tls_trust.rs asserts: the pin modes here.

#[tokio::test]
async fn expired_leaf() {
    let (root, leaf) = root_and(CertSpec::expired);
    let case = Case::new(vec![leaf.der()], &leaf, &root);
    check_pins(&case, Ok(()), other_p256()).await;
}

#[tokio::test]
async fn not_yet_valid_leaf() {
    let (root, leaf) = root_and(CertSpec::not_yet_valid);
    let case = Case::new(vec![leaf.der()], &leaf, &root);
    check_pins(&case, Ok(()), other_p256()).await;
}

#[tokio::test]
async fn wrong_host() {
    let (root, leaf) = root_and(|spec| spec.dns_names(&["elsewhere.test"]));
    let case = Case::new(vec![leaf.der()], &leaf, &root);
    check_pins(&case, Ok(()), other_p256()).await;
}

#[tokio::test]
async fn unknown_root() {
    let (_, leaf) = root_and(|spec| spec);
    let trusted = CertSpec::root("Some Other Root").self_signed();
    let case = Case::new(vec![leaf.der()], &leaf, &trusted);
    check_pins(&case, Ok(()), other_p256()).await;
}

#[tokio::test]
async fn self_signed_leaf() {
    let root = CertSpec::root("mqtts Test Root CA").self_signed();
    let leaf = CertSpec::leaf(&[SERVER_NAME]).self_signed();
    let case = Case::new(vec![leaf.der()], &leaf, &root);
    check_pins(&case, Ok(()), other_p256()).await;
}

#[tokio::test]
async fn client_auth_only() {
    let (root, leaf) =
        root_and(|spec| spec.extended_key_usages(vec![ExtendedKeyUsagePurpose::ClientAuth]));
    let case = Case::new(vec![leaf.der()], &leaf, &root);
    check_pins(&case, Ok(()), other_p256()).await;
}

#[tokio::test]
async fn issuer_not_ca() {
    let root = CertSpec::root("mqtts Test Root CA").self_signed();
    for constraints in [IsCa::NoCa, IsCa::ExplicitNoCa] {
        let issuer = CertSpec::leaf(&["issuer.test"])
            .basic_constraints(constraints)
            .signed_by(&root);
        let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&issuer);
        let case = Case::new(vec![leaf.der(), issuer.der()], &leaf, &root);
        check_pins(&case, Ok(()), other_p256()).await;
    }
}

/// root -> `intermediates` CAs -> leaf; the chain is leaf first.
fn long_chain(intermediates: usize) -> (Issued, Issued, Vec<CertificateDer<'static>>) {
    let root = CertSpec::root("mqtts Test Root CA").self_signed();
    let mut issuers: Vec<Issued> = Vec::new();
    for i in 0..intermediates {
        let spec = CertSpec::intermediate(&format!("Intermediate {i}"));
        let next = spec.signed_by(issuers.last().unwrap_or(&root));
        issuers.push(next);
    }
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(issuers.last().unwrap_or(&root));
    let mut chain = vec![leaf.der()];
    chain.extend(issuers.iter().rev().map(Issued::der));
    (root, leaf, chain)
}

#[tokio::test]
async fn chain_longer_than_the_limit() {
    let (root, leaf, chain) = long_chain(MAX_CHAIN_LEN);
    assert_eq!(chain.len(), MAX_CHAIN_LEN + 1);
    let case = Case::new(chain, &leaf, &root);
    check_pins(&case, Ok(()), other_p256()).await;
}

// Cases new here: CA mode and the pin modes.

#[tokio::test]
async fn expired_intermediate() {
    let root = CertSpec::root("mqtts Test Root CA").self_signed();
    let intermediate = CertSpec::intermediate("mqtts Test Intermediate CA")
        .expired()
        .signed_by(&root);
    // The leaf itself is valid now.
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&intermediate);
    let case = Case::new(vec![leaf.der(), intermediate.der()], &leaf, &root);
    let params = intermediate.params();
    let reason = CertificateError::Expired {
        now: case.now,
        not_before: unix(params.not_before),
        not_after: unix(params.not_after),
    };
    check_ca(&case, Err(rejected(&case, reason))).await;
    check_pins(&case, Ok(()), other_p256()).await;
}

/// An attacker's root with the subject (and key type) of the trusted one.
/// The genuine server's leaf pins must not match the attacker's leaf.
#[tokio::test]
async fn fake_root_with_the_trusted_roots_name() {
    let genuine = TestPki::new(KeyKind::P256);
    let fake_root = CertSpec::root("mqtts Test Root CA").self_signed();
    assert_eq!(
        fake_root.params().distinguished_name,
        genuine.root.params().distinguished_name
    );
    assert_eq!(fake_root.key_kind(), genuine.root.key_kind());
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&fake_root);
    let case = Case::new(vec![leaf.der(), fake_root.der()], &leaf, &genuine.root);
    check_ca(&case, Err(rejected(&case, CertificateError::BadSignature))).await;
    check_pins(&case, Ok(()), other_p256()).await;
    check_genuine_pins_refuse(&case, &genuine.leaf).await;
}

/// The pins of the genuine server's leaf refuse an attacker's leaf.
async fn check_genuine_pins_refuse(case: &Case, genuine_leaf: &Issued) {
    let presented = CertificateInfo::parse(case.leaf())
        .expect("the leaf parses")
        .fingerprints();
    for (kind, pin) in pins_of(&genuine_leaf.der_bytes()) {
        let pins = [pin];
        let options = TlsOptions::new(case.server_name, Trust::pinned(&pins));
        let outcome = handshake(case, &options, case.key.clone_key()).await;
        assert_outcome(
            case,
            &format!("{kind} pin of the genuine leaf"),
            outcome,
            &Err(Error::PinMismatch { presented }),
        );
    }
}

#[tokio::test]
async fn fake_intermediate_with_the_real_intermediates_name() {
    let genuine = TestPki::with_intermediate(KeyKind::P256);
    // Issued in the real root's name, signed by the attacker's key; the
    // attacker's root is not sent.
    let fake_root = CertSpec::root("mqtts Test Root CA").self_signed();
    let fake_intermediate =
        CertSpec::intermediate("mqtts Test Intermediate CA").signed_by(&fake_root);
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&fake_intermediate);
    let case = Case::new(
        vec![leaf.der(), fake_intermediate.der()],
        &leaf,
        &genuine.root,
    );
    check_ca(&case, Err(rejected(&case, CertificateError::BadSignature))).await;
    check_pins(&case, Ok(()), other_p256()).await;
    check_genuine_pins_refuse(&case, &genuine.leaf).await;
}

/// A leaf whose issuer field names the trusted CA, signed by another key;
/// the server sends no issuer certificate at all.
#[tokio::test]
async fn leaf_signed_in_the_cas_name_by_another_key() {
    let genuine = TestPki::new(KeyKind::P256);
    let impostor = CertSpec::root("mqtts Test Root CA").self_signed();
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&impostor);
    let case = Case::new(vec![leaf.der()], &leaf, &genuine.root);
    check_ca(&case, Err(rejected(&case, CertificateError::BadSignature))).await;
    check_pins(&case, Ok(()), other_p256()).await;
    check_genuine_pins_refuse(&case, &genuine.leaf).await;
}

/// rustls-webpki ignores keyUsage ("Firefox and other common browsers do not
/// check KeyUsage for end-entities", verify_cert.rs), and mqtts documents no
/// keyUsage check: a leaf allowed only to sign certificates connects.
#[tokio::test]
async fn key_usage_without_digital_signature() {
    let (root, leaf) = root_and(|spec| spec.key_usages(vec![KeyUsagePurpose::KeyCertSign]));
    let case = Case::new(vec![leaf.der()], &leaf, &root);
    check_ca(&case, Ok(())).await;
    check_pins(&case, Ok(()), other_p256()).await;
}

/// No extendedKeyUsage extension: valid for any purpose (RFC 5280 §4.2.1.12).
#[tokio::test]
async fn no_extended_key_usage() {
    let (root, leaf) = root_and(|spec| spec.extended_key_usages(Vec::new()));
    let case = Case::new(vec![leaf.der()], &leaf, &root);
    check_ca(&case, Ok(())).await;
    check_pins(&case, Ok(()), other_p256()).await;
}

#[tokio::test]
async fn leaf_is_a_ca() {
    let (root, leaf) = root_and(|spec| {
        spec.basic_constraints(IsCa::Ca(BasicConstraints::Unconstrained))
            .key_usages(vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::DigitalSignature,
            ])
    });
    let case = Case::new(vec![leaf.der()], &leaf, &root);
    check_ca(&case, Err(rejected(&case, CertificateError::LeafIsCa))).await;
    check_pins(&case, Ok(()), other_p256()).await;
}

/// root -> CA with pathLenConstraint 0 -> CA -> leaf.
#[tokio::test]
async fn path_length_constraint_violated() {
    let root = CertSpec::root("mqtts Test Root CA").self_signed();
    let constrained = CertSpec::intermediate("Constrained CA")
        .basic_constraints(IsCa::Ca(BasicConstraints::Constrained(0)))
        .signed_by(&root);
    let below = CertSpec::intermediate("Sub CA").signed_by(&constrained);
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&below);
    let case = Case::new(
        vec![leaf.der(), below.der(), constrained.der()],
        &leaf,
        &root,
    );
    check_ca(
        &case,
        Err(rejected(&case, CertificateError::ConstraintViolated)),
    )
    .await;
    check_pins(&case, Ok(()), other_p256()).await;
}

/// A CA allowed to issue for `allowed.test` only, issuing for `broker.test`:
/// once as an intermediate, once as the trust anchor itself.
#[tokio::test]
async fn name_constraint_violated() {
    let only_allowed = |params: &mut rcgen::CertificateParams| {
        params.name_constraints = Some(NameConstraints {
            permitted_subtrees: vec![GeneralSubtree::DnsName("allowed.test".into())],
            excluded_subtrees: Vec::new(),
        });
    };

    let root = CertSpec::root("mqtts Test Root CA").self_signed();
    let intermediate = CertSpec::intermediate("Constrained CA")
        .with_params(only_allowed)
        .signed_by(&root);
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&intermediate);
    let case = Case::new(vec![leaf.der(), intermediate.der()], &leaf, &root);
    check_ca(
        &case,
        Err(rejected(&case, CertificateError::ConstraintViolated)),
    )
    .await;
    check_pins(&case, Ok(()), other_p256()).await;

    // The constraint is honoured; a name inside it connects.
    let allowed = CertSpec::leaf(&["mqtt.allowed.test"]).signed_by(&intermediate);
    let mut inside = Case::new(vec![allowed.der(), intermediate.der()], &allowed, &root);
    inside.server_name = "mqtt.allowed.test";
    check_ca(&inside, Ok(())).await;

    let constrained_root = CertSpec::root("mqtts Test Root CA")
        .with_params(only_allowed)
        .self_signed();
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&constrained_root);
    let case = Case::new(vec![leaf.der()], &leaf, &constrained_root);
    check_ca(
        &case,
        Err(rejected(&case, CertificateError::ConstraintViolated)),
    )
    .await;
}

/// `MAX_CHAIN_LEN` certificates made of a leaf and seven intermediates:
/// refused in CA mode, because the path may use at most six intermediates
/// (as documented); the pins look at the leaf only.
#[tokio::test]
async fn chain_at_the_limit() {
    let (root, leaf, chain) = long_chain(MAX_CHAIN_LEN - 1);
    assert_eq!(chain.len(), MAX_CHAIN_LEN);
    let case = Case::new(chain, &leaf, &root);
    check_ca(&case, Err(rejected(&case, CertificateError::ChainTooLong))).await;
    check_pins(&case, Ok(()), other_p256()).await;
}

/// The longest chain CA mode accepts: the leaf and six intermediates
/// (rustls-webpki's `MAX_SUB_CA_COUNT` is 6), as `MAX_CHAIN_LEN` documents.
#[tokio::test]
async fn chain_of_six_intermediates() {
    let (root, leaf, chain) = long_chain(6);
    let case = Case::new(chain.clone(), &leaf, &root);
    check_ca(&case, Ok(())).await;
    check_pins(&case, Ok(()), other_p256()).await;

    // Servers often send their root too: `MAX_CHAIN_LEN` certificates in
    // all, of which the path uses six intermediates.
    let mut with_root = chain;
    with_root.push(root.der());
    assert_eq!(with_root.len(), MAX_CHAIN_LEN);
    check_ca(&Case::new(with_root, &leaf, &root), Ok(())).await;
}

/// An X.509 v1 leaf (no version field, no extensions, so no subjectAltName).
#[tokio::test]
async fn v1_leaf() {
    let (root, leaf) = root_and(|spec| spec);
    let v1 = to_v1(&leaf.der_bytes(), &root);
    assert!(
        !der_elements(der_split(der_split(&v1).0.contents).0.contents)
            .iter()
            .any(|field| field.tag == 0xA0),
        "the v1 certificate has no version field"
    );
    let case = Case::new(vec![v1], &leaf, &root);
    check_ca(&case, Err(rejected(&case, CertificateError::Malformed))).await;
    check_pins(&case, Ok(()), other_p256()).await;
}

/// An X.509 v1 CA certificate as intermediate (v1 has no basicConstraints:
/// old validators treated such certificates as CAs).
#[tokio::test]
async fn v1_intermediate() {
    let root = CertSpec::root("mqtts Test Root CA").self_signed();
    let intermediate = CertSpec::intermediate("mqtts Test Intermediate CA").signed_by(&root);
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&intermediate);
    let v1 = to_v1(&intermediate.der_bytes(), &root);
    let case = Case::new(vec![leaf.der(), v1], &leaf, &root);
    check_ca(&case, Err(rejected(&case, CertificateError::Malformed))).await;
    check_pins(&case, Ok(()), other_p256()).await;
}

/// An RSA-1024 leaf under a P-256 CA, so that every build validates the
/// chain. ring cannot sign with RSA-1024, so the server signs
/// CertificateVerify with an RSA-2048 key: the client must refuse the
/// 1024-bit key before it gets there, in every mode.
#[tokio::test]
async fn rsa_1024_leaf() {
    let root = CertSpec::root("mqtts Test Root CA").self_signed();
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by_for_public_key(RSA1024_SPKI, &root);
    assert_eq!(spki_of(&leaf), RSA1024_SPKI);
    let case = Case {
        chain: vec![leaf],
        key: private_key_der(&rsa2048_key_pair(0)),
        anchors: vec![root.der_bytes()],
        server_name: SERVER_NAME,
        now: unix_now(),
    };
    let expected = Err(Error::UnsupportedKey(KeyAlgorithm::Rsa));
    check_ca(&case, expected.clone()).await;
    check_pins(&case, expected, None).await;

    // The message tells the two causes apart: a build without RSA support,
    // or an RSA key of the wrong size.
    let message = Error::UnsupportedKey(KeyAlgorithm::Rsa).to_string();
    let hint = if cfg!(feature = "rsa") {
        "2048 to 4096 bits"
    } else {
        "enable the `rsa` feature"
    };
    assert!(message.contains(hint), "{message}");
}

/// An RSA-1024 intermediate (RSA-2048 root and leaf): the leaf's signature
/// by the 1024-bit key is refused.
#[cfg(feature = "rsa")]
#[tokio::test]
async fn rsa_1024_intermediate() {
    use rsa::pkcs8::DecodePrivateKey as _;
    use rsa::signature::{SignatureEncoding as _, Signer as _};

    let root = CertSpec::root("mqtts Test Root CA")
        .key(rsa2048_key_pair(1))
        .self_signed();
    let intermediate_spec = || CertSpec::intermediate("mqtts Test Intermediate CA");
    let intermediate = intermediate_spec().signed_by_for_public_key(RSA1024_SPKI, &root);
    // rcgen signs the leaf with a stand-in of the same name and algorithm
    // (RSA-2048 key "c"); the signature is then replaced by one made with
    // the RSA-1024 key.
    let stand_in = intermediate_spec()
        .key(rsa2048_key_pair(2))
        .signed_by(&root);
    let leaf = CertSpec::leaf(&[SERVER_NAME])
        .key(rsa2048_key_pair(0))
        .signed_by(&stand_in);
    let rsa1024 = rsa::RsaPrivateKey::from_pkcs8_der(RSA1024_PKCS8).expect("RSA-1024 key");
    let signer = rsa::pkcs1v15::SigningKey::<sha2::Sha256>::new(rsa1024);
    let leaf_der = resign_with(&leaf.der_bytes(), |tbs| signer.sign(tbs).to_vec(), |_| {});
    let case = Case::new(vec![leaf_der, intermediate], &leaf, &root);
    check_ca(&case, Err(rejected(&case, CertificateError::BadSignature))).await;
    check_pins(&case, Ok(()), Some(private_key_der(&rsa2048_key_pair(1)))).await;
}

/// A certificate signed with ecdsa-with-SHA1 (1.2.840.10045.4.1): refused
/// for its algorithm, whatever the signature bytes.
#[tokio::test]
async fn sha1_signed_leaf() {
    const ECDSA_WITH_SHA1: &[u8] = &[
        0x30, 0x09, 0x06, 0x07, 0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x04, 0x01,
    ];
    let (root, leaf) = root_and(|spec| spec);
    let sha1_leaf = resign(&leaf.der_bytes(), &root, |fields| {
        // [0] version, serial, signature: replace the signature algorithm.
        assert_eq!(fields[0][0], 0xA0, "a v3 certificate");
        fields[2] = ECDSA_WITH_SHA1.to_vec();
    });
    let case = Case::new(vec![sha1_leaf], &leaf, &root);
    check_ca(
        &case,
        Err(rejected(
            &case,
            CertificateError::UnsupportedSignatureAlgorithm,
        )),
    )
    .await;
    check_pins(&case, Ok(()), other_p256()).await;
}

/// An extension marked critical that nobody understands must not be
/// skipped (RFC 5280 §4.2).
#[tokio::test]
async fn unknown_critical_extension() {
    let (root, leaf) = root_and(|spec| {
        spec.with_params(|params| {
            // 1.3.6.1.4.1.55555.1 (a private arc), value NULL.
            let mut extension =
                rcgen::CustomExtension::from_oid_content(&[1, 3, 6, 1, 4, 1, 55555, 1], vec![5, 0]);
            extension.set_criticality(true);
            params.custom_extensions.push(extension);
        })
    });
    let case = Case::new(vec![leaf.der()], &leaf, &root);
    check_ca(&case, Err(rejected(&case, CertificateError::Malformed))).await;
    check_pins(&case, Ok(()), other_p256()).await;
}

/// The server name only in the subject's CN, no subjectAltName: webpki
/// (like browsers, RFC 9525) ignores the CN.
#[tokio::test]
async fn name_only_in_the_common_name() {
    let (root, leaf) = root_and(|spec| spec.dns_names(&[]).common_name(SERVER_NAME));
    assert!(leaf.params().subject_alt_names.is_empty());
    let case = Case::new(vec![leaf.der()], &leaf, &root);
    let expected = CertificateError::NameMismatch {
        expected: SERVER_NAME.try_into().expect("short name"),
    };
    check_ca(&case, Err(rejected(&case, expected))).await;
    check_pins(&case, Ok(()), other_p256()).await;
}

/// Bytes that are no certificate, sent as the intermediate. webpki tries
/// the trust anchors first and parses an intermediate only when it needs
/// one: extra garbage after a leaf the root issued is ignored (as extra
/// certificates may be, RFC 8446 §4.4.2), while garbage where the issuer
/// is needed is refused as malformed.
#[tokio::test]
async fn garbage_intermediate() {
    let garbage = || CertificateDer::from(vec![0x30, 0x03, 0x02, 0x01, 0x00]);

    let (root, leaf) = root_and(|spec| spec);
    let case = Case::new(vec![leaf.der(), garbage()], &leaf, &root);
    check_ca(&case, Ok(())).await;
    check_pins(&case, Ok(()), other_p256()).await;

    let intermediate = CertSpec::intermediate("mqtts Test Intermediate CA").signed_by(&root);
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&intermediate);
    let case = Case::new(vec![leaf.der(), garbage()], &leaf, &root);
    check_ca(&case, Err(rejected(&case, CertificateError::Malformed))).await;
    check_pins(&case, Ok(()), other_p256()).await;
}

/// 17 certificates, one more than embedded-tls keeps (16): refused in every
/// mode before any trust check, as a protocol violation.
#[tokio::test]
async fn seventeen_certificates() {
    let (root, leaf) = root_and(|spec| spec);
    let mut chain = vec![leaf.der()];
    chain.extend((0..16).map(|_| root.der()));
    let case = Case::new(chain, &leaf, &root);
    let expected = Err(Error::Tls(mqtts::error::TlsFailure::ProtocolViolation));
    check_ca(&case, expected.clone()).await;
    for (kind, pin) in pins_of(case.leaf()) {
        let pins = [pin];
        let outcome = handshake(&case, &pinned_options(&case, &pins), case.key.clone_key()).await;
        assert_outcome(
            &case,
            &format!("{kind} pin of the leaf"),
            outcome,
            &expected,
        );
    }
}

/// An expired trust anchor: RFC 5280 §6.1 takes the anchor as given (its
/// dates are not part of the path), and so does webpki.
#[tokio::test]
async fn expired_trust_anchor() {
    let root = CertSpec::root("mqtts Test Root CA").expired().self_signed();
    let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&root);
    let case = Case::new(vec![leaf.der()], &leaf, &root);
    check_ca(&case, Ok(())).await;
}

/// A self-signed server certificate given as its own trust anchor (how a
/// self-signed broker is often configured): webpki accepts any certificate
/// as an anchor, and the leaf's signature verifies with the anchor's (its
/// own) key, so CA mode connects, checking name and dates.
#[tokio::test]
async fn self_signed_leaf_as_its_own_anchor() {
    let leaf = CertSpec::leaf(&[SERVER_NAME]).self_signed();
    let case = Case::new(vec![leaf.der()], &leaf, &leaf);
    check_ca(&case, Ok(())).await;
}

/// CA mode with pins compares the pins with the leaf only (`with_pins`:
/// "the leaf must match one of `pins`"): a valid chain with a pin of its
/// intermediate or of its root is refused, with the leaf's pin it connects.
#[tokio::test]
async fn ca_mode_pins_match_the_leaf_only() {
    let pki = TestPki::with_intermediate(KeyKind::P256);
    let case = Case::new(pki.chain(), &pki.leaf, &pki.root);
    check_ca(&case, Ok(())).await;

    let anchors: Vec<&[u8]> = case.anchors.iter().map(Vec::as_slice).collect();
    let presented = CertificateInfo::parse(case.leaf())
        .expect("the leaf parses")
        .fingerprints();
    let intermediate = pki.intermediate.as_ref().expect("an intermediate");
    for (name, cert) in [("intermediate", intermediate), ("root", &pki.root)] {
        for (kind, pin) in pins_of(&cert.der_bytes()) {
            let pins = [pin];
            let outcome = handshake(
                &case,
                &case.ca_options(&anchors, &pins),
                case.key.clone_key(),
            )
            .await;
            assert_outcome(
                &case,
                &format!("CA mode with a {kind} pin of the {name}"),
                outcome,
                &Err(Error::PinMismatch { presented }),
            );
        }
    }
}
