//! Trust: deciding whether the certificate a server presents is the one the
//! firmware expects.
//!
//! There is no default: a [`Trust`] is built by choosing a mode, and
//! whatever the mode, the server must also prove it holds the certificate's
//! private key (its TLS 1.3 CertificateVerify signature is checked with that
//! certificate's key, RFC 8446 §4.4.3). A pin without that proof would be
//! worthless: anyone can replay a public certificate.
//!
//! | mode | constructor | survives renewal | checks name and dates |
//! |---|---|---|---|
//! | certificate pin (SHA-1 or SHA-256) | [`Trust::pinned`] with [`Pin::Certificate`] | no | no (the pin is the identity) |
//! | public-key pin (SPKI SHA-256) | [`Trust::pinned`] with [`Pin::PublicKey`] | if the key is kept | no |
//! | certificate authorities | [`Trust::certificate_authorities`] | yes | yes |
//! | CA and pins together | [`Trust::certificate_authorities`] + [`Trust::with_pins`] | as the pins | yes |
//! | no trust at all (feature `insecure`) | `Trust::insecure_accept_any_certificate` | - | no |
//!
//! CA mode checks validity dates, so it needs the current time: see
//! [`TlsOptions::with_wall_clock`](crate::tls::TlsOptions::with_wall_clock).

mod ca;
pub(crate) mod certificate;
pub(crate) mod der;
mod pin;
mod presented;
pub(crate) mod signature;

pub use certificate::{CertificateInfo, KeyAlgorithm, Name};
pub use pin::Pin;
pub use presented::PresentedCertificate;

use crate::error::{ConfigError, Error};
use crate::time::CRATE_RELEASE_TIME;
use certificate::CertificateFields;
use signature::ServerKey;

/// The most trust anchors one [`Trust`] may list.
pub const MAX_TRUST_ANCHORS: usize = 8;

/// The most certificates a server's chain may hold in CA mode (the leaf,
/// intermediates and possibly the root itself); a longer chain is refused
/// with [`CertificateError::ChainTooLong`](crate::error::CertificateError::ChainTooLong).
///
/// The validated path may use at most six intermediates (rustls-webpki's
/// limit), so a leaf, six intermediates and the root the server also sends
/// (eight certificates) connect, while a leaf with seven intermediates is
/// refused. Pin modes ignore everything after the leaf, within the 16
/// certificates embedded-tls keeps (more is a TLS protocol error).
pub const MAX_CHAIN_LEN: usize = 8;

/// How the server's certificate is trusted. See the [module docs](self).
///
/// ```
/// use mqtts::trust::{Pin, Trust};
///
/// // The current certificate and the next one, during a rotation:
/// static PINS: [Pin; 2] = [
///     mqtts::pin_public_key!("7D:9F:2C:25:8C:A4:1A:84:5F:30:46:2D:CD:28:3F:54:A1:8B:40:5C:2F:3B:96:1B:37:5E:7B:6F:CC:A3:61:0A"),
///     mqtts::pin_certificate!("B8 0C 7C 08 6E 8D 8B 5F 2F 59 43 E3 37 6D 3C 30 A9 0E 04 24"),
/// ];
/// let trust = Trust::pinned(&PINS);
/// assert!(trust.check().is_ok());
/// ```
#[derive(Debug, Clone, Copy)]
pub struct Trust<'a> {
    mode: Mode<'a>,
    /// SHA-1, only when a SHA-1 pin (or insecure mode) needs it. Chosen by
    /// the `const` constructors, so firmware without SHA-1 pins does not
    /// link SHA-1.
    sha1: Option<presented::Sha1Fn>,
}

/// SHA-1 if one of `pins` is a SHA-1 certificate pin.
const fn sha1_for(pins: &[Pin]) -> Option<presented::Sha1Fn> {
    let mut i = 0;
    while i < pins.len() {
        if let Pin::Certificate(crate::Fingerprint::Sha1(_)) = pins[i] {
            return Some(presented::sha1_digest);
        }
        i += 1;
    }
    None
}

#[derive(Debug, Clone, Copy)]
enum Mode<'a> {
    Pinned(&'a [Pin]),
    Authorities {
        anchors: &'a [&'a [u8]],
        /// `None` for CA mode alone; `Some` from [`Trust::with_pins`], where
        /// an empty list is a configuration error, not "no pins".
        pins: Option<&'a [Pin]>,
        /// CA validation, reached only through the constructor so that a
        /// firmware that never calls it does not link webpki.
        ca: &'static CaValidation,
    },
    #[cfg(any(feature = "insecure", fuzzing, test))]
    InsecureAcceptAnyCertificate,
}

impl<'a> Trust<'a> {
    /// Trusts a server whose leaf certificate matches any one of `pins`.
    ///
    /// Neither the server name nor the validity dates are checked: the pin
    /// is the identity, and a device without a clock keeps working. Only the
    /// leaf certificate is compared; intermediates the server sends are ignored.
    pub const fn pinned(pins: &'a [Pin]) -> Self {
        Self {
            mode: Mode::Pinned(pins),
            sha1: sha1_for(pins),
        }
    }

    /// Trusts a server whose chain leads to one of `anchors` (DER CA
    /// certificates), following RFC 5280 §6 with `rustls-webpki`.
    ///
    /// Issuers must be CAs (basicConstraints), the leaf must be valid for
    /// the server name (DNS names of the subjectAltName, with the usual
    /// `*.` wildcard rule of RFC 6125 §6.4.3) and for TLS servers (an
    /// extendedKeyUsage without serverAuth is refused; keyUsage is not
    /// checked, as in rustls-webpki), path length and name constraints hold.
    /// X.509 v1 certificates (no extensions) are refused as malformed.
    /// Anchors' own validity dates are not checked (RFC 5280 §6.1).
    ///
    /// Validity dates (RFC 5280 §4.1.2.5) are checked against the current
    /// time, which [`connect`](crate::tls::connect) needs: from a
    /// [`WallClock`](crate::time::WallClock) (SNTP, an RTC) given with
    /// [`TlsOptions::with_wall_clock`](crate::tls::TlsOptions::with_wall_clock),
    /// or, as an explicit choice,
    /// [`TlsOptions::allow_unknown_time`](crate::tls::TlsOptions::allow_unknown_time).
    /// Without the time, "now" is the later of a floor known when the
    /// firmware was built ([`CRATE_RELEASE_TIME`], or the application's
    /// [`TlsOptions::with_minimum_time`](crate::tls::TlsOptions::with_minimum_time))
    /// and the newest `notBefore` among the presented certificates: a
    /// certificate that expired before the floor is refused, one that
    /// expired after it is not detected.
    pub const fn certificate_authorities(anchors: &'a [&'a [u8]]) -> Self {
        Self {
            mode: Mode::Authorities {
                anchors,
                pins: None,
                ca: &CA_VALIDATION,
            },
            sha1: None,
        }
    }

    /// Adds pins to CA mode: the chain must validate *and* the leaf must
    /// match one of `pins`. On any other trust this replaces it with
    /// [`Trust::pinned`]`(pins)`.
    ///
    /// An empty `pins` is refused with [`ConfigError::NoPins`] (by
    /// [`Trust::check`] and at connect), as [`Trust::pinned`] refuses it:
    /// it never quietly means "CA only".
    pub const fn with_pins(self, pins: &'a [Pin]) -> Self {
        Self {
            mode: match self.mode {
                Mode::Authorities { anchors, ca, .. } => Mode::Authorities {
                    anchors,
                    pins: Some(pins),
                    ca,
                },
                _ => Mode::Pinned(pins),
            },
            sha1: sha1_for(pins),
        }
    }

    /// Accepts any certificate: the connection is encrypted but the server is
    /// not authenticated, so anyone on the path can read and change it.
    ///
    /// Only for finding out what a server presents (see
    /// [`TlsStream::peer_certificate`](crate::tls::TlsStream::peer_certificate))
    /// and for tests. The server must still send a certificate and prove it
    /// holds its key. Every connect logs a warning (with the `log` or
    /// `defmt` feature).
    ///
    /// Exists only with the `insecure` feature, so that firmware built
    /// without it cannot skip authentication, whatever its code says.
    #[cfg(any(feature = "insecure", fuzzing, test))]
    #[cfg_attr(docsrs, doc(cfg(feature = "insecure")))]
    pub const fn insecure_accept_any_certificate() -> Self {
        Self {
            mode: Mode::InsecureAcceptAnyCertificate,
            // Shows every fingerprint the server presents.
            sha1: Some(presented::sha1_digest),
        }
    }

    /// Whether this is `Trust::insecure_accept_any_certificate` (always
    /// `false` without the `insecure` feature).
    pub const fn is_insecure(&self) -> bool {
        #[cfg(any(feature = "insecure", fuzzing, test))]
        return matches!(self.mode, Mode::InsecureAcceptAnyCertificate);
        #[cfg(not(any(feature = "insecure", fuzzing, test)))]
        false
    }

    /// Whether this trust checks certificate validity dates (CA mode, with
    /// or without pins), so that connecting needs the current time (see
    /// [`TlsOptions::with_wall_clock`](crate::tls::TlsOptions::with_wall_clock)).
    /// Pins ignore dates.
    pub const fn checks_validity_dates(&self) -> bool {
        matches!(self.mode, Mode::Authorities { .. })
    }

    /// Checks the configuration without connecting: pins present (also
    /// those added with [`Trust::with_pins`]), trust anchors parse.
    /// [`connect`](crate::tls::connect) does this too.
    pub fn check(&self) -> Result<(), ConfigError> {
        match self.mode {
            Mode::Pinned([]) | Mode::Authorities { pins: Some([]), .. } => Err(ConfigError::NoPins),
            Mode::Authorities { anchors, ca, .. } => (ca.check_anchors)(anchors),
            _ => Ok(()),
        }
    }

    /// Decides whether to trust a server's certificate chain (leaf first,
    /// DER), as [`connect`](crate::tls::connect) does during the handshake.
    ///
    /// `server_name` is the name that was dialled; `now_unix_secs` the
    /// current time if known. A time before [`CRATE_RELEASE_TIME`] counts
    /// as unknown; without the time, CA mode validates at the later of
    /// [`CRATE_RELEASE_TIME`] and the newest `notBefore` presented (see
    /// [`Trust::certificate_authorities`]). This alone does not
    /// authenticate a server: the handshake must also check its
    /// CertificateVerify signature.
    pub fn verify_server_certificate(
        &self,
        chain: &[&[u8]],
        server_name: &str,
        now_unix_secs: Option<u64>,
    ) -> Result<PresentedCertificate, Error> {
        self.verify(chain, server_name, now_unix_secs)
            .map(|accepted| accepted.presented)
    }

    /// Like [`Trust::verify_server_certificate`], also decoding the leaf key
    /// that must then verify the CertificateVerify signature.
    pub(crate) fn verify(
        &self,
        chain: &[&[u8]],
        server_name: &str,
        now_unix_secs: Option<u64>,
    ) -> Result<Accepted, Error> {
        self.verify_at(chain, server_name, ValidationTime::new(now_unix_secs, 0))
    }

    /// [`Trust::verify`] at `time`, which carries the application's floor.
    // Out of line: 0.4 KB less flash on riscv32imc than inlined into the
    // verifier (measured).
    #[inline(never)]
    pub(crate) fn verify_at(
        &self,
        chain: &[&[u8]],
        server_name: &str,
        time: ValidationTime,
    ) -> Result<Accepted, Error> {
        self.check()?;
        let leaf_der = *chain.first().ok_or(Error::MissingCertificate)?;
        let leaf = CertificateFields::parse(leaf_der).map_err(|_| Error::MalformedCertificate)?;
        let presented = PresentedCertificate::new(leaf_der, leaf.public_key.encoded, self.sha1);
        let pins_match = |pins: &[Pin]| pins.iter().any(|pin| pin.matches(&presented));

        match self.mode {
            Mode::Pinned(pins) => {
                if !pins_match(pins) {
                    return Err(Error::PinMismatch { presented });
                }
            }
            Mode::Authorities { anchors, pins, ca } => {
                (ca.verify_chain)(anchors, chain, server_name, time).map_err(|e| match e {
                    ca::Failure::Config(e) => Error::Config(e),
                    ca::Failure::Certificate(reason) => {
                        Error::CertificateRejected { reason, presented }
                    }
                })?;
                // `check()` refused `Some([])` above.
                if pins.is_some_and(|pins| !pins_match(pins)) {
                    return Err(Error::PinMismatch { presented });
                }
            }
            #[cfg(any(feature = "insecure", fuzzing, test))]
            Mode::InsecureAcceptAnyCertificate => {}
        }

        let key = ServerKey::from_public_key(&leaf.public_key)?;
        Ok(Accepted { presented, key })
    }
}

/// [`ca::verify_chain`]: (anchors, chain, server name, time) -> verdict.
type VerifyChain = fn(&[&[u8]], &[&[u8]], &str, ValidationTime) -> Result<(), ca::Failure>;

/// The time CA mode validates certificates at (RFC 5280 §4.1.2.5 and
/// §6.1.3 (a)(2): every certificate of the path must be valid then).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ValidationTime {
    /// The current time, if known and not before `minimum`.
    now: Option<u64>,
    /// The earliest the current time can be: [`CRATE_RELEASE_TIME`], or
    /// the application's own floor (its build time) if later.
    minimum: u64,
}

impl ValidationTime {
    /// `now` (seconds since the Unix epoch, if known) with the floor
    /// `minimum` (raised to [`CRATE_RELEASE_TIME`]).
    pub(crate) const fn new(now: Option<u64>, minimum: u64) -> Self {
        let minimum = if minimum > CRATE_RELEASE_TIME {
            minimum
        } else {
            CRATE_RELEASE_TIME
        };
        // A clock behind the floor was never set (or lost its time): it is
        // no evidence of the current time, and using it would let an old
        // certificate pass.
        let now = match now {
            Some(now) if now >= minimum => Some(now),
            _ => None,
        };
        Self { now, minimum }
    }

    /// The current time, if known (at or after the floor).
    pub(crate) const fn known(&self) -> Option<u64> {
        self.now
    }

    /// The floor.
    pub(crate) const fn minimum(&self) -> u64 {
        self.minimum
    }
}

/// The CA-mode entry points, behind pointers (see `Mode::Authorities`).
#[derive(Debug)]
struct CaValidation {
    check_anchors: fn(&[&[u8]]) -> Result<(), ConfigError>,
    verify_chain: VerifyChain,
}

static CA_VALIDATION: CaValidation = CaValidation {
    check_anchors: ca::check_anchors,
    verify_chain: ca::verify_chain,
};

/// A certificate that passed the trust check, and the key it binds.
#[derive(Debug, Clone)]
pub(crate) struct Accepted {
    pub presented: PresentedCertificate,
    pub key: ServerKey,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// GlobalSign Root CA (R1) and Root CA - R6, from Debian's ca-certificates.
    const R1: &[u8] = include_bytes!("../../tests/data/globalsign-root-r1.der");
    const R6: &[u8] = include_bytes!("../../tests/data/globalsign-root-r6.der");

    /// SHA-1 is computed (and linked) only when a SHA-1 pin needs it; the
    /// error then shows it, and otherwise leaves it out.
    #[test]
    fn sha1_is_computed_only_for_sha1_pins() {
        use crate::Fingerprint;
        let other_sha256 = Pin::Certificate(Fingerprint::Sha256([0; 32]));
        let other_sha1 = Pin::Certificate(Fingerprint::Sha1([0; 20]));
        let mismatch = |trust: Trust<'_>| match trust.verify_server_certificate(&[R1], "x", None) {
            Err(Error::PinMismatch { presented }) => presented,
            other => panic!("expected a pin mismatch, got {other:?}"),
        };
        let sha256_only = mismatch(Trust::pinned(&[other_sha256]));
        assert_eq!(sha256_only.sha1(), None);
        assert!(!std::format!("{sha256_only}").contains("SHA-1"));
        assert_eq!(sha256_only.sha256(), Fingerprint::sha256_of(R1));

        let with_sha1 = mismatch(Trust::pinned(&[other_sha256, other_sha1]));
        assert_eq!(with_sha1.sha1(), Some(Fingerprint::sha1_of(R1)));
        assert!(std::format!("{with_sha1}").starts_with("certificate SHA-1 "));

        let (anchors, pins) = ([R1], [other_sha1]);
        let ca_with_sha1_pin = Trust::certificate_authorities(&anchors).with_pins(&pins);
        assert!(ca_with_sha1_pin.sha1.is_some());
        assert!(Trust::certificate_authorities(&anchors).sha1.is_none());
        assert!(Trust::insecure_accept_any_certificate().sha1.is_some());

        // A matching SHA-1 pin passes the pin check (R1 is RSA: without the
        // `rsa` feature the key is then refused, which is not a mismatch).
        let good = [Pin::Certificate(Fingerprint::sha1_of(R1))];
        let result = Trust::pinned(&good).verify_server_certificate(&[R1], "x", None);
        assert!(
            !matches!(result, Err(Error::PinMismatch { .. })),
            "{result:?}"
        );
    }

    #[test]
    fn real_roots_are_valid_trust_anchors() {
        assert_eq!(Trust::certificate_authorities(&[R1, R6]).check(), Ok(()));
        let r1 = CertificateFields::parse(R1).expect("R1 parses");
        assert_eq!(r1.public_key.algorithm, KeyAlgorithm::Rsa);
        // `openssl x509 -noout -dates`: notAfter=Jan 28 12:00:00 2028 GMT
        assert_eq!(r1.validity().map(|(_, after)| after), Ok(1_832_673_600));
        let key = ServerKey::from_public_key(&r1.public_key);
        if cfg!(feature = "rsa") {
            assert!(key.is_ok());
        } else {
            assert!(matches!(key, Err(Error::UnsupportedKey(KeyAlgorithm::Rsa))));
        }
    }

    #[test]
    fn bad_configurations_are_named() {
        assert_eq!(
            Trust::certificate_authorities(&[R1, b"not a certificate"]).check(),
            Err(ConfigError::InvalidTrustAnchor { index: 1 })
        );
        assert_eq!(
            Trust::certificate_authorities(&[]).check(),
            Err(ConfigError::NoTrustAnchors)
        );
        assert_eq!(
            Trust::certificate_authorities(&[R1; MAX_TRUST_ANCHORS + 1]).check(),
            Err(ConfigError::TooManyTrustAnchors)
        );
        assert_eq!(Trust::pinned(&[]).check(), Err(ConfigError::NoPins));
        assert_eq!(
            Trust::insecure_accept_any_certificate()
                .with_pins(&[])
                .check(),
            Err(ConfigError::NoPins)
        );
    }

    /// Issue 15.3: an empty list added to CA mode was read as "no pins",
    /// silently leaving CA validation alone. It is refused as
    /// `Trust::pinned(&[])` is, by `check()` and by every decision.
    #[test]
    fn with_pins_of_an_empty_list_is_no_pins() {
        let ca = Trust::certificate_authorities(&[R6]);
        assert_eq!(ca.check(), Ok(()));
        let emptied = ca.with_pins(&[]);
        assert_eq!(emptied.check(), Err(ConfigError::NoPins));
        assert_eq!(
            emptied.verify_server_certificate(&[R6], "mqtt.flespi.io", None),
            Err(Error::Config(ConfigError::NoPins))
        );
        assert!(emptied.checks_validity_dates());
        assert!(!Trust::pinned(&[]).checks_validity_dates());
    }

    /// "Now" for CA validation never falls below the floor: a time before
    /// it counts as unknown, and the floor is at least mqtts's own.
    #[test]
    fn validation_time_never_falls_below_the_floor() {
        let crate_floor = CRATE_RELEASE_TIME;
        let unknown = ValidationTime::new(None, 0);
        assert_eq!((unknown.known(), unknown.minimum()), (None, crate_floor));
        // A clock that was never set (1970, 2000) is no evidence of the time.
        for behind in [0, 946_684_800, crate_floor - 1] {
            assert_eq!(ValidationTime::new(Some(behind), 0).known(), None);
        }
        assert_eq!(
            ValidationTime::new(Some(crate_floor), 0).known(),
            Some(crate_floor)
        );
        // The application's floor (its build time) raises it, never lowers it.
        let build = crate_floor + 1_000;
        let raised = ValidationTime::new(Some(build - 1), build);
        assert_eq!((raised.known(), raised.minimum()), (None, build));
        assert_eq!(ValidationTime::new(None, 5).minimum(), crate_floor);
    }

    /// `CRATE_RELEASE_TIME` is the date its docs give, and not in the future.
    #[test]
    fn the_crate_floor_is_its_documented_date() {
        use std::string::ToString as _;
        assert_eq!(
            crate::error::UtcTime(CRATE_RELEASE_TIME).to_string(),
            "2026-12-07 00:00:00 UTC"
        );
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs());
        assert!(now.is_ok_and(|now| now >= CRATE_RELEASE_TIME));
    }

    #[test]
    fn an_empty_chain_is_a_missing_certificate() {
        let trust = Trust::insecure_accept_any_certificate();
        assert_eq!(
            trust.verify_server_certificate(&[], "x.test", None),
            Err(Error::MissingCertificate)
        );
        assert_eq!(
            trust.verify_server_certificate(&[b"\x30\x00"], "x.test", None),
            Err(Error::MalformedCertificate)
        );
    }

    #[test]
    fn a_root_is_not_accepted_as_a_server_certificate() {
        // The anchor itself, presented as a leaf: webpki refuses a CA as end entity.
        let trust = Trust::certificate_authorities(&[R6]);
        let result = trust.verify_server_certificate(&[R6], "mqtt.flespi.io", None);
        assert!(
            matches!(result, Err(Error::CertificateRejected { .. })),
            "{result:?}"
        );
    }
}
