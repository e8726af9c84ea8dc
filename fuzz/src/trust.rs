//! Target (c): certificate parsing and trust decisions (pins, CA mode with
//! rustls-webpki, insecure mode) fed arbitrary DER and chains.
//!
//! Input layout, chosen so real certificates are seeds as they are:
//! four header bytes, then DER blobs back to back (each one's own length
//! says where it ends; a blob whose length does not fit takes the rest).
//!
//! | byte | meaning |
//! |---|---|
//! | 0 | bits 0-1 mode (pinned, CA, CA + pins, insecure); bits 2-3 how many of the last blobs are trust anchors |
//! | 1 | server name (index into [`SERVER_NAMES`]) |
//! | 2 | time (index into the instants of [`now`]) |
//! | 3 | pins: bit 0 the leaf's SHA-256, bit 1 its SHA-1, bit 2 its key, bit 3 a wrong pin |

use mqtts::Error;
use mqtts::error::{CertificateError, ConfigError};
use mqtts::fingerprint::Fingerprint;
use mqtts::trust::{CertificateInfo, KeyAlgorithm, Pin, PresentedCertificate, Trust};

use crate::trust_input::split_blobs;

/// Names dialled; the seed leaves are issued for `broker.test`.
pub const SERVER_NAMES: [&str; 10] = [
    "broker.test",
    "a.broker.test",
    "BROKER.TEST",
    "broker.test.",
    "127.0.0.1",
    "",
    "*.broker.test",
    "mqtt.flespi.io",
    "xn--bcher-kva.test",
    "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.aa.bb.cc.dd.ee.ff.gg.hh.ii.jj.kk.ll.mm.nn.oo.pp.qq.rr.ss.tt.uu.vv.ww.xx.yy.zz.broker.test",
];

/// The header byte for a mode.
pub mod mode {
    /// `Trust::pinned`.
    pub const PINNED: u8 = 0;
    /// `Trust::certificate_authorities`.
    pub const CA: u8 = 1;
    /// `Trust::certificate_authorities(..).with_pins(..)`.
    pub const CA_AND_PINS: u8 = 2;
    /// `Trust::insecure_accept_any_certificate`.
    pub const INSECURE: u8 = 3;
}

/// Pins of header byte 3.
pub mod pins {
    /// The leaf's certificate SHA-256.
    pub const SHA256: u8 = 1;
    /// The leaf's certificate SHA-1.
    pub const SHA1: u8 = 2;
    /// The leaf's public key (SPKI SHA-256).
    pub const PUBLIC_KEY: u8 = 4;
    /// A pin nothing matches.
    pub const WRONG: u8 = 8;
}

/// An input: header and blobs (the seed generator writes these).
pub fn input(mode: u8, anchors: u8, name: u8, time: u8, pins: u8, blobs: &[&[u8]]) -> Vec<u8> {
    let mut out = vec![mode | (anchors << 2), name, time, pins];
    for blob in blobs {
        out.extend_from_slice(blob);
    }
    out
}

/// The instant of header byte 2 (`None`: no clock), some relative to the
/// leaf's validity so the fuzzer reaches both sides of each bound.
fn now(choice: u8, leaf: Option<&CertificateInfo<'_>>) -> Option<u64> {
    let (not_before, not_after) = leaf.map_or((0, 0), |l| (l.not_before(), l.not_after()));
    match choice % 10 {
        0 => None,
        1 => Some(0),
        2 => Some(1_764_000_000), // 2025-11-24
        3 => Some(4_102_444_800), // 2100-01-01
        4 => Some(u64::MAX),
        5 => Some(not_before.saturating_sub(1)),
        6 => Some(not_before),
        7 => Some(not_after),
        8 => Some(not_after.saturating_add(1)),
        _ => Some(253_402_300_799), // 9999-12-31T23:59:59
    }
}

/// What `Trust::verify_server_certificate` may answer.
fn check_error(error: &Error, leaf: Option<&[u8]>) {
    match error {
        Error::MissingCertificate => assert!(leaf.is_none()),
        // The certificate, or the key in it, does not parse.
        Error::MalformedCertificate => assert!(leaf.is_some()),
        Error::PinMismatch { presented } | Error::CertificateRejected { presented, .. } => {
            check_presented(presented, leaf.unwrap());
        }
        // Every key type is enabled in this build: only unknown algorithms
        // and RSA moduli outside 2048..=4096 bits are refused this way.
        Error::UnsupportedKey(algorithm) => {
            assert!(matches!(algorithm, KeyAlgorithm::Other | KeyAlgorithm::Rsa));
        }
        Error::Config(
            ConfigError::NoPins
            | ConfigError::NoTrustAnchors
            | ConfigError::TooManyTrustAnchors
            | ConfigError::InvalidTrustAnchor { .. },
        ) => {}
        other => panic!("unexpected error from verify_server_certificate: {other:?}"),
    }
    // Every error prints.
    assert!(!error.to_string().is_empty());
}

/// The fingerprints reported are those of the bytes presented.
fn check_presented(presented: &PresentedCertificate, leaf: &[u8]) {
    assert_eq!(presented.sha256(), Fingerprint::sha256_of(leaf));
    // SHA-1 is computed only where a SHA-1 pin can match.
    if let Some(sha1) = presented.sha1() {
        assert_eq!(sha1, Fingerprint::sha1_of(leaf));
    }
    if let Ok(info) = CertificateInfo::parse(leaf) {
        let parsed = info.fingerprints();
        assert_eq!(parsed.sha256(), presented.sha256());
        assert_eq!(parsed.spki_sha256(), presented.spki_sha256());
    }
}

/// Two trust decisions are the same: both accept the same certificate, or
/// both refuse with the same error (SHA-1 aside: whether it is computed
/// depends on the pins configured).
fn same_decision(
    a: &Result<PresentedCertificate, Error>,
    b: &Result<PresentedCertificate, Error>,
) -> bool {
    match (a, b) {
        (Ok(a), Ok(b)) => a.sha256() == b.sha256() && a.spki_sha256() == b.spki_sha256(),
        (Err(a), Err(b)) => a == b,
        _ => false,
    }
}

/// Parses every blob as a certificate and prints what it says.
fn check_info(blob: &[u8]) -> Option<CertificateInfo<'_>> {
    let info = CertificateInfo::parse(blob).ok()?;
    let _ = format!("{} / {} / {:?}", info.subject(), info.issuer(), info);
    assert_eq!(info.fingerprints().sha256(), Fingerprint::sha256_of(blob));
    let algorithm = info.key_algorithm();
    assert_eq!(
        algorithm.feature().is_none(),
        matches!(algorithm, KeyAlgorithm::EcdsaP256 | KeyAlgorithm::Other)
    );
    assert_eq!(algorithm.is_enabled(), algorithm != KeyAlgorithm::Other);
    Some(info)
}

pub fn check(data: &[u8]) {
    let Some((header, rest)) = data.split_first_chunk::<4>() else {
        return;
    };
    let [flags, name, time, pin_bits] = *header;
    let blobs = split_blobs(rest);
    let infos: Vec<_> = blobs.iter().map(|b| check_info(b)).collect();

    let anchor_count = usize::from((flags >> 2) & 3).min(blobs.len());
    let (chain, anchors) = blobs.split_at(blobs.len() - anchor_count);
    let leaf = chain.first().copied();
    let leaf_info = infos
        .first()
        .and_then(Option::as_ref)
        .filter(|_| !chain.is_empty());
    let server_name = SERVER_NAMES[usize::from(name) % SERVER_NAMES.len()];
    let now = now(time, leaf_info);

    // Pins of the leaf as a user would copy them, and one nothing matches.
    let presented = leaf_info.map(CertificateInfo::fingerprints);
    let mut pins = Vec::new();
    if let Some(presented) = presented {
        if pin_bits & pins::SHA256 != 0 {
            pins.push(Pin::Certificate(presented.sha256()));
        }
        if pin_bits & pins::SHA1 != 0 {
            // CertificateInfo always computes the SHA-1.
            pins.push(Pin::Certificate(
                presented.sha1().expect("SHA-1 of CertificateInfo"),
            ));
        }
        if pin_bits & pins::PUBLIC_KEY != 0 {
            pins.push(Pin::PublicKey(presented.spki_sha256()));
        }
    }
    if pin_bits & pins::WRONG != 0 {
        pins.push(Pin::PublicKey([0x5A; 32]));
    }
    let has_right_pin = pins
        .iter()
        .any(|p| presented.is_some_and(|c| p.matches(&c)));

    let insecure = Trust::insecure_accept_any_certificate();
    let insecure_result = insecure.verify_server_certificate(chain, server_name, now);
    check_result(&insecure_result, leaf);
    if let Ok(presented) = &insecure_result {
        // What insecure mode accepts is logged to choose a pin: SHA-1 included.
        assert!(presented.sha1().is_some());
    }
    // Insecure mode refuses only what cannot be parsed or used.
    if let Err(e) = &insecure_result {
        assert!(
            matches!(
                e,
                Error::MissingCertificate | Error::MalformedCertificate | Error::UnsupportedKey(_)
            ),
            "{e:?}"
        );
    }

    let result = match flags & 3 {
        mode::PINNED => {
            let result = Trust::pinned(&pins).verify_server_certificate(chain, server_name, now);
            // The pin is the identity: with a matching pin, pinning decides
            // exactly as insecure mode (no name, no dates, no chain).
            if has_right_pin {
                assert!(
                    same_decision(&result, &insecure_result),
                    "{result:?} / {insecure_result:?}"
                );
            } else if pins.is_empty() {
                assert_eq!(result, Err(Error::Config(ConfigError::NoPins)));
            } else if insecure_result.is_ok() {
                assert!(
                    matches!(result, Err(Error::PinMismatch { .. })),
                    "{result:?}"
                );
            }
            result
        }
        mode::CA | mode::CA_AND_PINS => {
            let ca = Trust::certificate_authorities(anchors);
            let ca_result = ca.verify_server_certificate(chain, server_name, now);
            check_result(&ca_result, leaf);
            if ca_result.is_ok() {
                assert!(insecure_result.is_ok());
                assert_eq!(ca.check(), Ok(()));
            }
            if flags & 3 == mode::CA_AND_PINS && !pins.is_empty() {
                let result = ca
                    .with_pins(&pins)
                    .verify_server_certificate(chain, server_name, now);
                match (&ca_result, has_right_pin) {
                    (Ok(_), true) => assert!(same_decision(&result, &ca_result), "{result:?}"),
                    (Ok(_), false) => assert!(matches!(result, Err(Error::PinMismatch { .. }))),
                    (Err(_), _) => assert!(result.is_err()),
                }
                result
            } else {
                if let Err(Error::CertificateRejected { reason, .. }) = &ca_result {
                    check_reason(reason);
                }
                ca_result
            }
        }
        _ => insecure_result.clone(),
    };
    check_result(&result, leaf);
}

fn check_result(result: &Result<PresentedCertificate, Error>, leaf: Option<&[u8]>) {
    match result {
        Ok(presented) => check_presented(presented, leaf.expect("accepted without a leaf")),
        Err(e) => check_error(e, leaf),
    }
}

fn check_reason(reason: &CertificateError) {
    if let CertificateError::Expired { now, not_after, .. } = reason {
        assert!(now > not_after, "{reason:?}");
    }
    if let CertificateError::NotYetValid {
        now, not_before, ..
    } = reason
    {
        assert!(now < not_before, "{reason:?}");
    }
}
