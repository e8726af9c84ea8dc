//! The few fields of an X.509 certificate (RFC 5280 §4.1) that pinning and
//! CertificateVerify need: the SubjectPublicKeyInfo and the validity period.
//!
//! Full path validation (CA mode) is done by `rustls-webpki`; this parser only
//! locates fields, so a pinned certificate is accepted or refused by its
//! hash, never by how well we understand its extensions.

use super::der::{self, DerError, Reader, tag};

/// The public-key algorithm of a certificate (RFC 5280 §4.1.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 (secp256r1), RFC 5480.
    EcdsaP256,
    /// ECDSA on NIST P-384 (secp384r1), RFC 5480.
    EcdsaP384,
    /// Ed25519, RFC 8410.
    Ed25519,
    /// RSA (`rsaEncryption`), RFC 8017.
    Rsa,
    /// Anything else (e.g. P-521, Ed448, DSA).
    Other,
}

impl KeyAlgorithm {
    /// The cargo feature of mqtts that adds support for this key type, if one does.
    pub const fn feature(self) -> Option<&'static str> {
        match self {
            Self::EcdsaP256 | Self::Other => None,
            Self::EcdsaP384 => Some("p384"),
            Self::Ed25519 => Some("ed25519"),
            Self::Rsa => Some("rsa"),
        }
    }

    /// Whether this build of mqtts can verify signatures made with this key type.
    pub const fn is_enabled(self) -> bool {
        match self {
            Self::EcdsaP256 => true,
            Self::EcdsaP384 => cfg!(feature = "p384"),
            Self::Ed25519 => cfg!(feature = "ed25519"),
            Self::Rsa => cfg!(feature = "rsa"),
            Self::Other => false,
        }
    }
}

impl core::fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            Self::EcdsaP256 => "ECDSA P-256",
            Self::EcdsaP384 => "ECDSA P-384",
            Self::Ed25519 => "Ed25519",
            Self::Rsa => "RSA",
            Self::Other => "an unsupported key algorithm",
        })
    }
}

/// DER contents of the object identifiers we recognise.
mod oid {
    /// id-ecPublicKey, 1.2.840.10045.2.1 (RFC 5480 §2.1.1).
    pub const EC_PUBLIC_KEY: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x02, 0x01];
    /// secp256r1, 1.2.840.10045.3.1.7 (RFC 5480 §2.1.1.1).
    pub const SECP256R1: &[u8] = &[0x2A, 0x86, 0x48, 0xCE, 0x3D, 0x03, 0x01, 0x07];
    /// secp384r1, 1.3.132.0.34.
    pub const SECP384R1: &[u8] = &[0x2B, 0x81, 0x04, 0x00, 0x22];
    /// id-Ed25519, 1.3.101.112 (RFC 8410 §3).
    pub const ED25519: &[u8] = &[0x2B, 0x65, 0x70];
    /// rsaEncryption, 1.2.840.113549.1.1.1 (RFC 8017 appendix C).
    pub const RSA_ENCRYPTION: &[u8] = &[0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x01, 0x01];
}

/// A parsed SubjectPublicKeyInfo (RFC 5280 §4.1.2.7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublicKeyInfo<'a> {
    pub algorithm: KeyAlgorithm,
    /// The `subjectPublicKey` bits: a SEC1 point, an Ed25519 key or a PKCS#1 RSAPublicKey.
    pub key: &'a [u8],
    /// The whole DER `SubjectPublicKeyInfo`, as SPKI pins hash it.
    pub encoded: &'a [u8],
}

impl<'a> PublicKeyInfo<'a> {
    /// Parses one DER `SubjectPublicKeyInfo` element.
    pub fn parse(spki: Tlv<'a>) -> Result<Self, DerError> {
        let mut fields = Reader::new(spki.value);
        let mut algorithm_id = Reader::new(fields.expect(tag::SEQUENCE)?.value);
        let key = der::bit_string_bytes(fields.expect(tag::BIT_STRING)?.value)?;
        fields.finish()?;

        let algorithm_oid = algorithm_id.expect(tag::OID)?.value;
        let algorithm = if algorithm_oid == oid::EC_PUBLIC_KEY {
            // RFC 5480 §2.1.1: the parameters name the curve.
            match algorithm_id.read() {
                Ok(curve) if curve.tag == tag::OID && curve.value == oid::SECP256R1 => {
                    KeyAlgorithm::EcdsaP256
                }
                Ok(curve) if curve.tag == tag::OID && curve.value == oid::SECP384R1 => {
                    KeyAlgorithm::EcdsaP384
                }
                _ => KeyAlgorithm::Other,
            }
        } else if algorithm_oid == oid::ED25519 {
            KeyAlgorithm::Ed25519
        } else if algorithm_oid == oid::RSA_ENCRYPTION {
            KeyAlgorithm::Rsa
        } else {
            KeyAlgorithm::Other
        };
        Ok(Self {
            algorithm,
            key,
            encoded: spki.encoded,
        })
    }
}

use super::der::Tlv;

/// The fields of a certificate that mqtts reads itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CertificateFields<'a> {
    pub public_key: PublicKeyInfo<'a>,
    /// The content of `validity`, decoded on demand by
    /// [`CertificateFields::validity`]: a pin never looks at the dates, so
    /// pin-only firmware does not link the date arithmetic (1.6 KB).
    validity: &'a [u8],
}

impl<'a> CertificateFields<'a> {
    /// Locates the validity and the SubjectPublicKeyInfo of a DER certificate.
    pub fn parse(certificate_der: &'a [u8]) -> Result<Self, DerError> {
        let mut outer = Reader::new(certificate_der);
        let certificate = outer.expect(tag::SEQUENCE)?;
        outer.finish()?;

        let mut certificate = Reader::new(certificate.value);
        let mut tbs = Reader::new(certificate.expect(tag::SEQUENCE)?.value);
        certificate.expect(tag::SEQUENCE)?; // signatureAlgorithm
        certificate.expect(tag::BIT_STRING)?; // signatureValue
        certificate.finish()?;

        // TBSCertificate (RFC 5280 §4.1): version is optional (v1 has none).
        tbs.optional(tag::CONTEXT_0)?;
        tbs.expect(tag::INTEGER)?; // serialNumber
        tbs.expect(tag::SEQUENCE)?; // signature
        tbs.expect(tag::SEQUENCE)?; // issuer
        let validity = tbs.expect(tag::SEQUENCE)?.value;
        tbs.expect(tag::SEQUENCE)?; // subject
        let public_key = PublicKeyInfo::parse(tbs.expect(tag::SEQUENCE)?)?;
        Ok(Self {
            public_key,
            validity,
        })
    }

    /// `notBefore` and `notAfter`, seconds since the Unix epoch (RFC 5280
    /// §4.1.2.5).
    pub fn validity(&self) -> Result<(u64, u64), DerError> {
        let mut validity = Reader::new(self.validity);
        let not_before = der::time_to_unix(&validity.read()?)?;
        let not_after = der::time_to_unix(&validity.read()?)?;
        validity.finish()?;
        Ok((not_before, not_after))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A P-256 self-signed certificate made with
    /// `openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -subj /CN=broker.test -days 3650 -nodes -outform DER`.
    pub const P256_CERT: &[u8] = include_bytes!("../../tests/data/p256-selfsigned.der");

    #[test]
    fn parses_a_real_certificate() {
        let fields = CertificateFields::parse(P256_CERT).expect("parse");
        assert_eq!(fields.public_key.algorithm, KeyAlgorithm::EcdsaP256);
        assert_eq!(fields.public_key.key.len(), 65);
        assert_eq!(fields.public_key.key.first(), Some(&0x04));
        let (not_before, not_after) = fields.validity().expect("dates");
        assert!(not_before < not_after);
        // The SPKI element is found inside the certificate, tag included.
        assert_eq!(fields.public_key.encoded.first(), Some(&0x30));
        assert!(
            P256_CERT
                .windows(fields.public_key.encoded.len())
                .any(|w| w == fields.public_key.encoded)
        );
    }

    #[test]
    fn never_panics_on_truncations_or_corruptions() {
        for len in 0..P256_CERT.len() {
            assert!(CertificateFields::parse(&P256_CERT[..len]).is_err());
        }
        let mut copy = [0u8; 1024];
        let copy = &mut copy[..P256_CERT.len()];
        for i in 0..P256_CERT.len() {
            for flip in [0x01u8, 0x80, 0xFF] {
                copy.copy_from_slice(P256_CERT);
                copy[i] ^= flip;
                let _ = CertificateFields::parse(copy);
            }
        }
    }
}

/// A distinguished name (RFC 5280 §4.1.2.4), as the DER `Name` contents.
///
/// `Display` prints its attributes in the order stored, e.g.
/// `C=BE, O=GlobalSign nv-sa, CN=GlobalSign Root CA` (known types by their
/// short names, others by dotted OID; values that are not text as hex).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Name<'a>(&'a [u8]);

impl core::fmt::Debug for Name<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "Name({self})")
    }
}

impl core::fmt::Display for Name<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        let mut first = true;
        let mut rdns = Reader::new(self.0);
        while let Ok(rdn) = rdns.expect(tag::SET) {
            let mut attributes = Reader::new(rdn.value);
            while let Ok(attribute) = attributes.expect(tag::SEQUENCE) {
                let mut parts = Reader::new(attribute.value);
                let (Ok(oid), Ok(value)) = (parts.expect(tag::OID), parts.read()) else {
                    continue;
                };
                if !first {
                    f.write_str(", ")?;
                }
                first = false;
                write_attribute_type(f, oid.value)?;
                f.write_str("=")?;
                write_attribute_value(f, &value)?;
            }
        }
        Ok(())
    }
}

fn write_attribute_type(f: &mut core::fmt::Formatter<'_>, oid: &[u8]) -> core::fmt::Result {
    // id-at (2.5.4.x, RFC 4519) and emailAddress (PKCS #9).
    let short = match oid {
        [0x55, 0x04, 0x03] => "CN",
        [0x55, 0x04, 0x05] => "serialNumber",
        [0x55, 0x04, 0x06] => "C",
        [0x55, 0x04, 0x07] => "L",
        [0x55, 0x04, 0x08] => "ST",
        [0x55, 0x04, 0x0A] => "O",
        [0x55, 0x04, 0x0B] => "OU",
        [0x2A, 0x86, 0x48, 0x86, 0xF7, 0x0D, 0x01, 0x09, 0x01] => "emailAddress",
        _ => return write_oid(f, oid),
    };
    f.write_str(short)
}

/// Dotted form of a DER OBJECT IDENTIFIER's contents (X.690 §8.19).
fn write_oid(f: &mut core::fmt::Formatter<'_>, oid: &[u8]) -> core::fmt::Result {
    let mut arc: u64 = 0;
    let mut first = true;
    for &byte in oid {
        arc = (arc << 7) | u64::from(byte & 0x7F);
        if byte & 0x80 == 0 {
            if first {
                let (a, b) = if arc < 80 {
                    (arc / 40, arc % 40)
                } else {
                    (2, arc - 80)
                };
                write!(f, "{a}.{b}")?;
                first = false;
            } else {
                write!(f, ".{arc}")?;
            }
            arc = 0;
        }
    }
    Ok(())
}

fn write_attribute_value(f: &mut core::fmt::Formatter<'_>, value: &Tlv<'_>) -> core::fmt::Result {
    // UTF8String, PrintableString, T61String, IA5String: text.
    const TEXT: [u8; 4] = [0x0C, 0x13, 0x14, 0x16];
    if TEXT.contains(&value.tag)
        && let Ok(text) = core::str::from_utf8(value.value)
    {
        return f.write_str(text);
    }
    f.write_str("#")?;
    for byte in value.value {
        write!(f, "{byte:02x}")?;
    }
    Ok(())
}

/// What a certificate says about itself, for logging and for choosing a pin.
///
/// ```
/// use mqtts::trust::CertificateInfo;
/// # let der: &[u8] = include_bytes!("../../tests/data/globalsign-root-r1.der");
/// let info = CertificateInfo::parse(der).unwrap();
/// assert_eq!(info.subject().to_string(), "C=BE, O=GlobalSign nv-sa, OU=Root CA, CN=GlobalSign Root CA");
/// assert_eq!(info.not_after(), 1_832_673_600); // 2028-01-28 12:00:00 UTC
/// ```
#[derive(Debug, Clone, Copy)]
pub struct CertificateInfo<'a> {
    fields: CertificateFields<'a>,
    not_before: u64,
    not_after: u64,
    der: &'a [u8],
    subject: &'a [u8],
    issuer: &'a [u8],
}

impl<'a> CertificateInfo<'a> {
    /// Parses a DER certificate.
    pub fn parse(der: &'a [u8]) -> Result<Self, crate::Error> {
        let malformed = |_| crate::Error::MalformedCertificate;
        let fields = CertificateFields::parse(der).map_err(malformed)?;
        let (not_before, not_after) = fields.validity().map_err(malformed)?;
        // Certificate -> TBSCertificate -> issuer and subject (RFC 5280 §4.1).
        let mut outer = Reader::new(der);
        let mut certificate = Reader::new(outer.expect(tag::SEQUENCE).map_err(malformed)?.value);
        let mut tbs = Reader::new(certificate.expect(tag::SEQUENCE).map_err(malformed)?.value);
        tbs.optional(tag::CONTEXT_0).map_err(malformed)?;
        tbs.expect(tag::INTEGER).map_err(malformed)?;
        tbs.expect(tag::SEQUENCE).map_err(malformed)?;
        let issuer = tbs.expect(tag::SEQUENCE).map_err(malformed)?.value;
        tbs.expect(tag::SEQUENCE).map_err(malformed)?;
        let subject = tbs.expect(tag::SEQUENCE).map_err(malformed)?.value;
        Ok(Self {
            fields,
            not_before,
            not_after,
            der,
            subject,
            issuer,
        })
    }

    /// The subject.
    pub fn subject(&self) -> Name<'a> {
        Name(self.subject)
    }

    /// The issuer.
    pub fn issuer(&self) -> Name<'a> {
        Name(self.issuer)
    }

    /// `notBefore`, seconds since the Unix epoch.
    pub fn not_before(&self) -> u64 {
        self.not_before
    }

    /// `notAfter`, seconds since the Unix epoch.
    pub fn not_after(&self) -> u64 {
        self.not_after
    }

    /// The public key's algorithm.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.fields.public_key.algorithm
    }

    /// The fingerprints a pin can match.
    pub fn fingerprints(&self) -> super::PresentedCertificate {
        super::PresentedCertificate::new(
            self.der,
            self.fields.public_key.encoded,
            Some(super::presented::sha1_digest),
        )
    }
}
