//! A throw-away PKI generated at test time with rcgen 0.13 (ring backend).
//!
//! EC and Ed25519 keys are generated fresh on every call. ring cannot generate
//! RSA keys, so RSA keys are fixed public test keys committed under
//! `tests/data/` (PKCS#8 DER, made with `openssl genpkey` + `openssl pkcs8 -topk8`).
//!
//! Typical use:
//!
//! ```ignore
//! let root = CertSpec::root("Test Root").self_signed();
//! let int = CertSpec::intermediate("Test Intermediate").signed_by(&root);
//! let leaf = CertSpec::leaf(&[SERVER_NAME]).signed_by(&int);
//! let config = server_config(vec![leaf.der(), int.der()], leaf.private_key_der());
//! ```

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType, SerialNumber, SignatureAlgorithm,
};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use time::{Duration, OffsetDateTime};

/// The DNS name the default leaf certificates are issued for.
pub const SERVER_NAME: &str = "broker.test";

/// RSA-2048 test key "a" (PKCS#8 DER). Also returned by `key_pair(KeyKind::Rsa2048)`.
pub const RSA2048_A_PKCS8: &[u8] = include_bytes!("../data/rsa2048-a.pk8.der");
/// RSA-2048 test key "b" (PKCS#8 DER). Also returned by `other_key_pair(KeyKind::Rsa2048)`.
pub const RSA2048_B_PKCS8: &[u8] = include_bytes!("../data/rsa2048-b.pk8.der");
/// RSA-2048 test key "c" (PKCS#8 DER), e.g. for an RSA intermediate.
pub const RSA2048_C_PKCS8: &[u8] = include_bytes!("../data/rsa2048-c.pk8.der");
/// RSA-4096 test key (PKCS#8 DER). Also returned by `key_pair(KeyKind::Rsa4096)`.
pub const RSA4096_PKCS8: &[u8] = include_bytes!("../data/rsa4096.pk8.der");
/// RSA-1024 test key (PKCS#8 DER). ring refuses to load RSA keys below 2048 bits,
/// so this can NOT become an rcgen `KeyPair` nor a rustls signing key; use
/// [`RSA1024_SPKI`] with [`CertSpec::signed_by_for_public_key`] to get a
/// certificate carrying this public key (signed by some other issuer).
pub const RSA1024_PKCS8: &[u8] = include_bytes!("../data/rsa1024.pk8.der");
/// SubjectPublicKeyInfo (DER) of [`RSA1024_PKCS8`].
pub const RSA1024_SPKI: &[u8] = include_bytes!("../data/rsa1024.spki.der");
/// SubjectPublicKeyInfo (DER) of [`RSA2048_A_PKCS8`].
pub const RSA2048_A_SPKI: &[u8] = include_bytes!("../data/rsa2048-a.spki.der");
/// SubjectPublicKeyInfo (DER) of [`RSA2048_B_PKCS8`].
pub const RSA2048_B_SPKI: &[u8] = include_bytes!("../data/rsa2048-b.spki.der");
/// SubjectPublicKeyInfo (DER) of [`RSA2048_C_PKCS8`].
pub const RSA2048_C_SPKI: &[u8] = include_bytes!("../data/rsa2048-c.spki.der");
/// SubjectPublicKeyInfo (DER) of [`RSA4096_PKCS8`].
pub const RSA4096_SPKI: &[u8] = include_bytes!("../data/rsa4096.spki.der");

/// Key types the harness can produce as rcgen key pairs (and rustls signing keys).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum KeyKind {
    P256,
    P384,
    Ed25519,
    Rsa2048,
    Rsa4096,
}

impl KeyKind {
    pub const ALL: [KeyKind; 5] = [
        KeyKind::P256,
        KeyKind::P384,
        KeyKind::Ed25519,
        KeyKind::Rsa2048,
        KeyKind::Rsa4096,
    ];

    /// The signature algorithm certificates signed by such a key use
    /// (RSA: PKCS#1 v1.5 with SHA-256).
    pub fn signature_algorithm(self) -> &'static SignatureAlgorithm {
        match self {
            KeyKind::P256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            KeyKind::P384 => &rcgen::PKCS_ECDSA_P384_SHA384,
            KeyKind::Ed25519 => &rcgen::PKCS_ED25519,
            KeyKind::Rsa2048 | KeyKind::Rsa4096 => &rcgen::PKCS_RSA_SHA256,
        }
    }

    pub fn is_rsa(self) -> bool {
        matches!(self, KeyKind::Rsa2048 | KeyKind::Rsa4096)
    }

    /// The kind of an existing rcgen key pair (RSA size from the SPKI length).
    pub fn of(key: &KeyPair) -> KeyKind {
        let alg = key.algorithm();
        if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            KeyKind::P256
        } else if alg == &rcgen::PKCS_ECDSA_P384_SHA384 {
            KeyKind::P384
        } else if alg == &rcgen::PKCS_ED25519 {
            KeyKind::Ed25519
        } else if key.public_key_der().len() > 400 {
            KeyKind::Rsa4096
        } else {
            KeyKind::Rsa2048
        }
    }
}

/// A key pair of the given kind: freshly generated for P-256/P-384/Ed25519;
/// the committed key "a" for RSA-2048 and the committed key for RSA-4096.
pub fn key_pair(kind: KeyKind) -> KeyPair {
    match kind {
        KeyKind::Rsa2048 => key_pair_from_pkcs8(RSA2048_A_PKCS8, &rcgen::PKCS_RSA_SHA256),
        KeyKind::Rsa4096 => key_pair_from_pkcs8(RSA4096_PKCS8, &rcgen::PKCS_RSA_SHA256),
        other => KeyPair::generate_for(other.signature_algorithm())
            .unwrap_or_else(|e| panic!("generating a {other:?} key pair: {e}")),
    }
}

/// A key pair of the same kind that is guaranteed to differ from
/// `key_pair(kind)` (RSA-2048: committed key "b"). There is only one RSA-4096
/// test key, so this panics for `Rsa4096`.
pub fn other_key_pair(kind: KeyKind) -> KeyPair {
    match kind {
        KeyKind::Rsa2048 => key_pair_from_pkcs8(RSA2048_B_PKCS8, &rcgen::PKCS_RSA_SHA256),
        KeyKind::Rsa4096 => panic!("only one RSA-4096 test key is committed under tests/data"),
        other => key_pair(other),
    }
}

/// Committed RSA-2048 key number `index` (0 = "a", 1 = "b", 2 = "c").
pub fn rsa2048_key_pair(index: usize) -> KeyPair {
    let der = [RSA2048_A_PKCS8, RSA2048_B_PKCS8, RSA2048_C_PKCS8]
        .get(index)
        .unwrap_or_else(|| panic!("there are only 3 RSA-2048 test keys, asked for #{index}"));
    key_pair_from_pkcs8(der, &rcgen::PKCS_RSA_SHA256)
}

/// Load a PKCS#8 DER private key as an rcgen key pair that signs with `alg`
/// (e.g. an RSA key with `PKCS_RSA_SHA384` instead of the default SHA-256).
pub fn key_pair_from_pkcs8(pkcs8_der: &[u8], alg: &'static SignatureAlgorithm) -> KeyPair {
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(pkcs8_der.to_vec()));
    KeyPair::from_der_and_sign_algo(&der, alg)
        .unwrap_or_else(|e| panic!("loading a PKCS#8 key for {alg:?}: {e}"))
}

/// rcgen's `KeyPair` is not `Clone`; this makes an identical copy.
pub fn clone_key_pair(key: &KeyPair) -> KeyPair {
    key_pair_from_pkcs8(key.serialized_der(), key.algorithm())
}

/// The PKCS#8 DER private key, in the form rustls wants.
pub fn private_key_der(key: &KeyPair) -> PrivateKeyDer<'static> {
    PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()))
}

/// SHA-256 (via the rustls ring provider, so no extra dependency).
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let hash = rustls::crypto::ring::cipher_suite::TLS13_AES_128_GCM_SHA256
        .tls13()
        .expect("TLS13_AES_128_GCM_SHA256 is a TLS 1.3 suite")
        .common
        .hash_provider
        .hash(data);
    hash.as_ref()
        .try_into()
        .expect("SHA-256 output is 32 bytes")
}

/// Lower-case hex without separators.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The current time (UTC), which default validity periods are relative to.
pub fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn random_serial() -> SerialNumber {
    // 16 random bytes with the top bit cleared: a positive, 128-bit serial.
    let mut bytes: [u8; 16] = rand::random();
    bytes[0] &= 0x7f;
    bytes[0] |= 0x01;
    SerialNumber::from_slice(&bytes)
}

/// What kind of certificate a [`CertSpec`] was started as (only used for the
/// defaults; every field can be overridden).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    Root,
    Intermediate,
    Leaf,
}

/// Builder for one certificate. Defaults:
///
/// * key: a fresh P-256 key (`key_kind` / `key` to change);
/// * serial: 128 random bits (rcgen would otherwise derive it from the public
///   key, which makes re-issued certificates share a serial);
/// * validity: `now - 1 day .. now + 10 years` (CA) / `now + 90 days` (leaf);
/// * CA: `basicConstraints cA=TRUE` (no path length), key usage keyCertSign +
///   cRLSign + digitalSignature;
/// * leaf: no basicConstraints, key usage digitalSignature, EKU serverAuth,
///   SAN dNSName for each name, CN = first name;
/// * non-root certificates carry an authority key identifier.
pub struct CertSpec {
    params: CertificateParams,
    role: Role,
    key_kind: KeyKind,
    key: Option<KeyPair>,
}

impl CertSpec {
    fn base(role: Role, common_name: &str) -> Self {
        let mut params = CertificateParams::default();
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "mqtts test PKI");
        params.distinguished_name = dn;
        params.serial_number = Some(random_serial());
        let now = now();
        params.not_before = now - Duration::days(1);
        params.not_after = match role {
            Role::Leaf => now + Duration::days(90),
            _ => now + Duration::days(3650),
        };
        if role != Role::Root {
            params.use_authority_key_identifier_extension = true;
        }
        CertSpec {
            params,
            role,
            key_kind: KeyKind::P256,
            key: None,
        }
    }

    fn ca(role: Role, common_name: &str) -> Self {
        let mut spec = Self::base(role, common_name);
        spec.params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        spec.params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        spec
    }

    /// A self-signable root CA.
    pub fn root(common_name: &str) -> Self {
        Self::ca(Role::Root, common_name)
    }

    /// An intermediate CA (sign it with `signed_by`).
    pub fn intermediate(common_name: &str) -> Self {
        Self::ca(Role::Intermediate, common_name)
    }

    /// A server (end-entity) certificate for these DNS names (or IP addresses).
    pub fn leaf(dns_names: &[&str]) -> Self {
        let mut spec = Self::base(Role::Leaf, dns_names.first().copied().unwrap_or("leaf"));
        spec.params.is_ca = IsCa::NoCa;
        spec.params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        spec.params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        spec = spec.dns_names(dns_names);
        spec
    }

    /// The key type to generate (ignored if `key` was given).
    pub fn key_kind(mut self, kind: KeyKind) -> Self {
        self.key_kind = kind;
        self
    }

    /// Use exactly this key pair as the subject key.
    pub fn key(mut self, key: KeyPair) -> Self {
        self.key_kind = KeyKind::of(&key);
        self.key = Some(key);
        self
    }

    /// Replace the subject CN (the O=mqtts test PKI attribute stays).
    pub fn common_name(mut self, common_name: &str) -> Self {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::CommonName, common_name);
        dn.push(DnType::OrganizationName, "mqtts test PKI");
        self.params.distinguished_name = dn;
        self
    }

    /// Replace the subjectAltName entries (strings parsing as IP addresses become iPAddress SANs).
    pub fn dns_names(mut self, dns_names: &[&str]) -> Self {
        let names: Vec<String> = dns_names.iter().map(|s| s.to_string()).collect();
        self.params.subject_alt_names = CertificateParams::new(names)
            .unwrap_or_else(|e| panic!("invalid SAN in {dns_names:?}: {e}"))
            .subject_alt_names;
        self
    }

    /// Add one SAN of any type.
    pub fn add_san(mut self, san: SanType) -> Self {
        self.params.subject_alt_names.push(san);
        self
    }

    pub fn validity(mut self, not_before: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        self.params.not_before = not_before;
        self.params.not_after = not_after;
        self
    }

    pub fn not_before(mut self, not_before: OffsetDateTime) -> Self {
        self.params.not_before = not_before;
        self
    }

    pub fn not_after(mut self, not_after: OffsetDateTime) -> Self {
        self.params.not_after = not_after;
        self
    }

    /// Valid from 30 days ago until yesterday.
    pub fn expired(self) -> Self {
        let now = now();
        self.validity(now - Duration::days(30), now - Duration::days(1))
    }

    /// Valid from tomorrow for 30 days.
    pub fn not_yet_valid(self) -> Self {
        let now = now();
        self.validity(now + Duration::days(1), now + Duration::days(31))
    }

    /// `IsCa::NoCa` (no basicConstraints), `IsCa::ExplicitNoCa` (cA=FALSE),
    /// `IsCa::Ca(BasicConstraints::Constrained(n))`, ...
    pub fn basic_constraints(mut self, is_ca: IsCa) -> Self {
        self.params.is_ca = is_ca;
        self
    }

    pub fn key_usages(mut self, usages: Vec<KeyUsagePurpose>) -> Self {
        self.params.key_usages = usages;
        self
    }

    pub fn extended_key_usages(mut self, usages: Vec<ExtendedKeyUsagePurpose>) -> Self {
        self.params.extended_key_usages = usages;
        self
    }

    pub fn serial(mut self, serial: u64) -> Self {
        self.params.serial_number = Some(SerialNumber::from(serial));
        self
    }

    /// Escape hatch: edit the rcgen parameters directly.
    pub fn with_params(mut self, edit: impl FnOnce(&mut CertificateParams)) -> Self {
        edit(&mut self.params);
        self
    }

    fn take_key(&mut self) -> KeyPair {
        self.key.take().unwrap_or_else(|| key_pair(self.key_kind))
    }

    /// Sign the certificate with its own key.
    pub fn self_signed(mut self) -> Issued {
        let key = self.take_key();
        let cert = self
            .params
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("self-signing {:?}: {e}", self.role));
        Issued { cert, key }
    }

    /// Sign the certificate with `issuer`'s key; `issuer` can be any issued
    /// certificate, including a leaf without CA basicConstraints (rcgen does
    /// not check).
    pub fn signed_by(mut self, issuer: &Issued) -> Issued {
        let key = self.take_key();
        let cert = self
            .params
            .signed_by(&key, &issuer.cert, &issuer.key)
            .unwrap_or_else(|e| panic!("signing {:?} by issuer: {e}", self.role));
        Issued { cert, key }
    }

    /// Issue a certificate for a public key we have no usable private key for
    /// (e.g. [`RSA1024_SPKI`]), given as DER SubjectPublicKeyInfo (RSA, P-256,
    /// P-384 or Ed25519). Only the certificate DER comes back.
    pub fn signed_by_for_public_key(
        self,
        subject_spki_der: &[u8],
        issuer: &Issued,
    ) -> CertificateDer<'static> {
        let spki = ForeignPublicKey::from_spki_der(subject_spki_der);
        let cert = self
            .params
            .signed_by(&spki, &issuer.cert, &issuer.key)
            .unwrap_or_else(|e| panic!("signing {:?} for a foreign key: {e}", self.role));
        cert.der().clone()
    }
}

/// A public key from a DER SubjectPublicKeyInfo, for rcgen's `PublicKeyData`
/// (rcgen's own `SubjectPublicKeyInfo::from_der` needs its `x509-parser` feature).
struct ForeignPublicKey {
    alg: &'static SignatureAlgorithm,
    subject_public_key: Vec<u8>,
}

impl ForeignPublicKey {
    fn from_spki_der(der: &[u8]) -> Self {
        fn tlv(input: &[u8]) -> (u8, &[u8], &[u8]) {
            let (element, rest) = der_split(input);
            (element.tag, element.contents, rest)
        }
        let (tag, spki, trailing) = tlv(der);
        assert!(tag == 0x30 && trailing.is_empty(), "SPKI: not one SEQUENCE");
        let (tag, alg_id, rest) = tlv(spki);
        assert_eq!(tag, 0x30, "SPKI: AlgorithmIdentifier");
        let (tag, bits, rest) = tlv(rest);
        assert!(
            tag == 0x03 && rest.is_empty(),
            "SPKI: subjectPublicKey BIT STRING"
        );
        assert_eq!(bits.first(), Some(&0), "SPKI: BIT STRING with unused bits");

        const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];
        const SECP256R1: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
        const SECP384R1: &[u8] = &[0x2b, 0x81, 0x04, 0x00, 0x22];
        const ED25519: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
        let has = |oid: &[u8]| alg_id.windows(oid.len()).any(|w| w == oid);
        let alg = if has(RSA_ENCRYPTION) {
            &rcgen::PKCS_RSA_SHA256
        } else if has(SECP256R1) {
            &rcgen::PKCS_ECDSA_P256_SHA256
        } else if has(SECP384R1) {
            &rcgen::PKCS_ECDSA_P384_SHA384
        } else if alg_id.starts_with(ED25519) {
            &rcgen::PKCS_ED25519
        } else {
            panic!("SPKI: unsupported key algorithm {}", hex(alg_id));
        };
        ForeignPublicKey {
            alg,
            subject_public_key: bits[1..].to_vec(),
        }
    }
}

impl rcgen::PublicKeyData for ForeignPublicKey {
    fn der_bytes(&self) -> &[u8] {
        &self.subject_public_key
    }

    fn algorithm(&self) -> &SignatureAlgorithm {
        self.alg
    }
}

/// An issued certificate and its subject key pair. Both fields are public so a
/// test can use rcgen directly (`cert.params()`, `key.public_key_raw()`, ...).
pub struct Issued {
    pub cert: rcgen::Certificate,
    pub key: KeyPair,
}

impl Issued {
    pub fn der(&self) -> CertificateDer<'static> {
        self.cert.der().clone()
    }

    pub fn der_bytes(&self) -> Vec<u8> {
        self.cert.der().to_vec()
    }

    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// PKCS#8 DER private key, for `server_config`.
    pub fn private_key_der(&self) -> PrivateKeyDer<'static> {
        private_key_der(&self.key)
    }

    /// The subject key as a new, identical `KeyPair`.
    pub fn clone_key(&self) -> KeyPair {
        clone_key_pair(&self.key)
    }

    pub fn key_kind(&self) -> KeyKind {
        KeyKind::of(&self.key)
    }

    /// DER SubjectPublicKeyInfo of the subject key (what SPKI pins hash).
    pub fn spki_der(&self) -> Vec<u8> {
        self.key.public_key_der()
    }

    /// SHA-256 over the whole certificate DER.
    pub fn cert_sha256(&self) -> [u8; 32] {
        sha256(self.cert.der())
    }

    /// SHA-256 over the DER SubjectPublicKeyInfo.
    pub fn spki_sha256(&self) -> [u8; 32] {
        sha256(&self.spki_der())
    }

    pub fn params(&self) -> &CertificateParams {
        self.cert.params()
    }

    /// A spec for the same subject, SANs, extensions and SAME key pair, with a
    /// new random serial and a validity starting one hour earlier. Sign it
    /// with `.signed_by(..)` / `.self_signed()` (and tweak it before if you
    /// like): the certificate SHA-256 changes, the SPKI does not.
    pub fn reissue(&self) -> CertSpec {
        let mut params = self.cert.params().clone();
        params.serial_number = Some(random_serial());
        params.not_before -= Duration::hours(1);
        let role = match params.is_ca {
            IsCa::Ca(_) => Role::Intermediate,
            _ => Role::Leaf,
        };
        let key = self.clone_key();
        CertSpec {
            params,
            role,
            key_kind: KeyKind::of(&key),
            key: Some(key),
        }
    }
}

/// The common shapes in one go: root -> [intermediate ->] leaf for
/// [`SERVER_NAME`], all with keys of one kind (RSA: root = key "b",
/// intermediate = key "c", leaf = key "a").
pub struct TestPki {
    pub root: Issued,
    pub intermediate: Option<Issued>,
    pub leaf: Issued,
}

impl TestPki {
    fn ca_key(kind: KeyKind, index: usize) -> KeyPair {
        match kind {
            KeyKind::Rsa2048 => rsa2048_key_pair(index),
            // Only one RSA-4096 key: let the CAs use RSA-2048 keys.
            KeyKind::Rsa4096 => rsa2048_key_pair(index),
            other => key_pair(other),
        }
    }

    /// root -> leaf.
    pub fn new(kind: KeyKind) -> Self {
        let root = CertSpec::root("mqtts Test Root CA")
            .key(Self::ca_key(kind, 1))
            .self_signed();
        let leaf = CertSpec::leaf(&[SERVER_NAME])
            .key_kind(kind)
            .signed_by(&root);
        TestPki {
            root,
            intermediate: None,
            leaf,
        }
    }

    /// root -> intermediate -> leaf.
    pub fn with_intermediate(kind: KeyKind) -> Self {
        let root = CertSpec::root("mqtts Test Root CA")
            .key(Self::ca_key(kind, 1))
            .self_signed();
        let intermediate = CertSpec::intermediate("mqtts Test Intermediate CA")
            .key(Self::ca_key(kind, 2))
            .signed_by(&root);
        let leaf = CertSpec::leaf(&[SERVER_NAME])
            .key_kind(kind)
            .signed_by(&intermediate);
        TestPki {
            root,
            intermediate: Some(intermediate),
            leaf,
        }
    }

    /// What the server sends: leaf first, then the intermediate (if any).
    pub fn chain(&self) -> Vec<CertificateDer<'static>> {
        let mut chain = vec![self.leaf.der()];
        chain.extend(self.intermediate.iter().map(Issued::der));
        chain
    }
}

/// One DER element (X.690): its tag, its contents and its whole encoding.
#[derive(Debug, Clone, Copy)]
pub struct DerElement<'a> {
    pub tag: u8,
    pub contents: &'a [u8],
    /// Tag, length and contents, as they appear in the input.
    pub encoded: &'a [u8],
}

/// Splits one DER element (single-byte tag, definite length of up to 3
/// bytes) off the front of `input`: (element, rest). Panics on anything
/// else: the input is always a certificate this harness just made.
pub fn der_split(input: &[u8]) -> (DerElement<'_>, &[u8]) {
    let (&tag, rest) = input.split_first().expect("DER: missing tag");
    let (&first, mut rest) = rest.split_first().expect("DER: missing length");
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        assert!((1..=3).contains(&n), "DER: unsupported length form");
        let (bytes, after) = rest.split_at(n);
        rest = after;
        bytes
            .iter()
            .fold(0usize, |acc, b| (acc << 8) | usize::from(*b))
    };
    assert!(rest.len() >= len, "DER: truncated");
    let header = input.len() - rest.len();
    let element = DerElement {
        tag,
        contents: &rest[..len],
        encoded: &input[..header + len],
    };
    (element, &rest[len..])
}

/// The elements one after the other in `input` (e.g. a SEQUENCE's contents).
pub fn der_elements(mut input: &[u8]) -> Vec<DerElement<'_>> {
    let mut elements = Vec::new();
    while !input.is_empty() {
        let (element, rest) = der_split(input);
        elements.push(element);
        input = rest;
    }
    elements
}

/// Encodes one DER element (definite length, short or long form).
pub fn der_encode(tag: u8, contents: &[u8]) -> Vec<u8> {
    let mut out = vec![tag];
    let len = contents.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes: Vec<u8> = len
            .to_be_bytes()
            .into_iter()
            .skip_while(|b| *b == 0)
            .collect();
        out.push(0x80 | bytes.len() as u8);
        out.extend_from_slice(&bytes);
    }
    out.extend_from_slice(contents);
    out
}

/// Signs `message` with `key` the way rcgen signs certificates for that key
/// type (ECDSA: DER signature; RSA: PKCS#1 v1.5 with SHA-256), using the
/// rustls/ring signer so that no extra crypto dependency is needed.
pub fn sign_like_rcgen(key: &KeyPair, message: &[u8]) -> Vec<u8> {
    use rustls::SignatureScheme;
    let scheme = match KeyKind::of(key) {
        KeyKind::P256 => SignatureScheme::ECDSA_NISTP256_SHA256,
        KeyKind::P384 => SignatureScheme::ECDSA_NISTP384_SHA384,
        KeyKind::Ed25519 => SignatureScheme::ED25519,
        KeyKind::Rsa2048 | KeyKind::Rsa4096 => SignatureScheme::RSA_PKCS1_SHA256,
    };
    let signing_key = rustls::crypto::ring::default_provider()
        .key_provider
        .load_private_key(private_key_der(key))
        .expect("ring loads the issuer key");
    signing_key
        .choose_scheme(&[scheme])
        .unwrap_or_else(|| panic!("ring cannot sign with {scheme:?}"))
        .sign(message)
        .expect("signing")
}

/// Re-issues `cert` (issued by `issuer`) after `edit` changed the list of
/// its TBSCertificate elements (RFC 5280 §4.1: `[0]` version, serial,
/// signature, issuer, validity, subject, SPKI, `[3]` extensions), signing
/// the new TBSCertificate with `issuer`'s key. The outer
/// signatureAlgorithm is copied from the (edited) `signature` field. For certificates rcgen
/// cannot make, e.g. X.509 v1 ([`to_v1`]).
pub fn resign(
    cert: &[u8],
    issuer: &Issued,
    edit: impl FnOnce(&mut Vec<Vec<u8>>),
) -> CertificateDer<'static> {
    resign_with(cert, |tbs| sign_like_rcgen(&issuer.key, tbs), edit)
}

/// [`resign`] with any signer: `sign` gets the DER TBSCertificate and
/// returns the signature value, e.g. made with a key ring cannot load
/// (RSA-1024), or for a signature algorithm the `edit` put in.
pub fn resign_with(
    cert: &[u8],
    sign: impl FnOnce(&[u8]) -> Vec<u8>,
    edit: impl FnOnce(&mut Vec<Vec<u8>>),
) -> CertificateDer<'static> {
    let (certificate, rest) = der_split(cert);
    assert!(
        certificate.tag == 0x30 && rest.is_empty(),
        "not one certificate"
    );
    let parts = der_elements(certificate.contents);
    let [tbs, _signature_algorithm, _signature] = parts.as_slice() else {
        panic!("a certificate has three elements, found {}", parts.len());
    };
    let mut fields: Vec<Vec<u8>> = der_elements(tbs.contents)
        .iter()
        .map(|element| element.encoded.to_vec())
        .collect();
    edit(&mut fields);
    // The outer signatureAlgorithm must equal the TBSCertificate's
    // `signature` field (RFC 5280 §4.1.1.2): the field after the serial.
    let serial = usize::from(fields.first().and_then(|f| f.first()) == Some(&0xA0));
    let signature_algorithm = fields
        .get(serial + 1)
        .expect("TBSCertificate: signature field")
        .clone();
    let tbs = der_encode(0x30, &fields.concat());
    let mut bits = vec![0u8]; // no unused bits
    bits.extend(sign(&tbs));
    let body = [tbs, signature_algorithm, der_encode(0x03, &bits)].concat();
    CertificateDer::from(der_encode(0x30, &body))
}

/// The same certificate as X.509 v1: no version field (so v1, its DEFAULT)
/// and no extensions (v1 has none, RFC 5280 §4.1.2.1), re-signed by `issuer`.
/// A v1 certificate has no subjectAltName and no basicConstraints.
pub fn to_v1(cert: &[u8], issuer: &Issued) -> CertificateDer<'static> {
    resign(cert, issuer, |fields| {
        // Context-specific constructed [0] (version) and [3] (extensions).
        fields.retain(|field| !matches!(field.first(), Some(0xA0 | 0xA3)));
        assert_eq!(fields.len(), 6, "v1 TBSCertificate: serial .. SPKI");
    })
}
