//! CA mode: certificate path validation (RFC 5280 §6) with `rustls-webpki`,
//! using the RustCrypto algorithms of [`super::signature::chain`].

use super::certificate::CertificateFields;
use super::signature::chain::SUPPORTED;
use super::{MAX_CHAIN_LEN, MAX_TRUST_ANCHORS, ValidationTime};
use crate::error::{CertificateError, ConfigError, ServerName as NameBuf};
use core::time::Duration;
use heapless::Vec;
use rustls_pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};

pub(super) enum Failure {
    Config(ConfigError),
    Certificate(CertificateError),
}

impl From<CertificateError> for Failure {
    fn from(e: CertificateError) -> Self {
        Self::Certificate(e)
    }
}

pub(super) fn check_anchors(anchors: &[&[u8]]) -> Result<(), ConfigError> {
    parse_anchors(anchors, &mut Vec::new(), |_| Ok(()))
}

/// Parses the anchors, then calls `use_anchors` with them.
///
/// webpki borrows a `CertificateDer` for as long as the anchor it yields,
/// so both live in this stack frame.
fn parse_anchors<'d, R>(
    anchors: &[&'d [u8]],
    ders: &mut Vec<CertificateDer<'d>, MAX_TRUST_ANCHORS>,
    use_anchors: impl FnOnce(&[TrustAnchor<'_>]) -> Result<R, ConfigError>,
) -> Result<R, ConfigError> {
    if anchors.is_empty() {
        return Err(ConfigError::NoTrustAnchors);
    }
    for der in anchors {
        ders.push(CertificateDer::from_slice(der))
            .map_err(|_| ConfigError::TooManyTrustAnchors)?;
    }
    let mut parsed: Vec<TrustAnchor<'_>, MAX_TRUST_ANCHORS> = Vec::new();
    for (index, der) in ders.iter().enumerate() {
        let anchor = webpki::anchor_from_trusted_cert(der)
            .map_err(|_| ConfigError::InvalidTrustAnchor { index })?;
        // Cannot fail: `ders` has the same capacity.
        parsed
            .push(anchor)
            .map_err(|_| ConfigError::TooManyTrustAnchors)?;
    }
    use_anchors(&parsed)
}

pub(super) fn verify_chain(
    anchors: &[&[u8]],
    chain: &[&[u8]],
    server_name: &str,
    time: ValidationTime,
) -> Result<(), Failure> {
    if chain.len() > MAX_CHAIN_LEN {
        return Err(CertificateError::ChainTooLong.into());
    }
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or(Failure::Certificate(CertificateError::Malformed))?;
    let leaf = CertificateDer::from_slice(leaf);
    let end_entity = webpki::EndEntityCert::try_from(&leaf).map_err(|e| map_error(&e, chain))?;
    let intermediates: Vec<CertificateDer<'_>, MAX_CHAIN_LEN> = intermediates
        .iter()
        .map(|der| CertificateDer::from_slice(der))
        .collect();

    let now = match time.known() {
        Some(now) => now,
        // Without the time: the earliest instant that can be now. The
        // current time is at least the floor (it was known when the
        // firmware was built), and at least every notBefore of a chain
        // that is valid at all (RFC 5280 §6.1.3 (a)(2)). The notBefore
        // values are the server's choice, so they may only push "now"
        // later, never below the floor: a certificate that expired before
        // the floor is refused whatever the server presents.
        None => chain
            .iter()
            .filter_map(|der| CertificateFields::parse(der).ok()?.validity().ok())
            .map(|(not_before, _)| not_before)
            .fold(time.minimum(), u64::max),
    };
    let time = UnixTime::since_unix_epoch(Duration::from_secs(now));

    let mut ders = Vec::new();
    let chain_result = parse_anchors(anchors, &mut ders, |anchors| {
        Ok(end_entity
            .verify_for_usage(
                SUPPORTED,
                anchors,
                &intermediates,
                time,
                webpki::KeyUsage::server_auth(),
                None,
                None,
            )
            .map(|_| ()))
    })
    .map_err(Failure::Config)?;
    chain_result.map_err(|e| map_error(&e, chain))?;

    let valid_for_name = ServerName::try_from(server_name)
        .is_ok_and(|name| end_entity.verify_is_valid_for_subject_name(&name).is_ok());
    if valid_for_name {
        Ok(())
    } else {
        Err(Failure::Certificate(CertificateError::NameMismatch {
            expected: crate::error::truncated(server_name),
        }))
    }
}

/// Translates webpki's verdict into the cause a person can act on.
fn map_error(e: &webpki::Error, chain: &[&[u8]]) -> Failure {
    use webpki::Error as W;
    // The bounds of the certificate whose validity failed, found by the bound webpki reports.
    let bounds_with = |pick: fn(&(u64, u64)) -> u64, value: u64| {
        chain
            .iter()
            .filter_map(|der| CertificateFields::parse(der).ok()?.validity().ok())
            .find(|bounds| pick(bounds) == value)
    };
    #[allow(deprecated)] // webpki still returns the old variants in some paths
    let reason = match e {
        W::UnknownIssuer => CertificateError::UnknownIssuer,
        W::CertExpired { time, not_after } => {
            let not_after = not_after.as_secs();
            let (not_before, _) =
                bounds_with(|&(_, not_after)| not_after, not_after).unwrap_or((0, not_after));
            CertificateError::Expired {
                now: time.as_secs(),
                not_before,
                not_after,
            }
        }
        W::CertNotValidYet { time, not_before } => {
            let not_before = not_before.as_secs();
            let (_, not_after) =
                bounds_with(|&(not_before, _)| not_before, not_before).unwrap_or((not_before, 0));
            CertificateError::NotYetValid {
                now: time.as_secs(),
                not_before,
                not_after,
            }
        }
        W::EndEntityUsedAsCa => CertificateError::IssuerNotCa,
        W::CaUsedAsEndEntity => CertificateError::LeafIsCa,
        W::InvalidSignatureForPublicKey => CertificateError::BadSignature,
        W::UnsupportedSignatureAlgorithm
        | W::UnsupportedSignatureAlgorithmContext(_)
        | W::UnsupportedSignatureAlgorithmForPublicKey
        | W::UnsupportedSignatureAlgorithmForPublicKeyContext(_) => {
            CertificateError::UnsupportedSignatureAlgorithm
        }
        W::RequiredEkuNotFound | W::RequiredEkuNotFoundContext(_) => {
            CertificateError::NotForServerAuthentication
        }
        W::MaximumPathDepthExceeded
        | W::MaximumPathBuildCallsExceeded
        | W::MaximumSignatureChecksExceeded => CertificateError::ChainTooLong,
        W::NameConstraintViolation | W::PathLenConstraintViolated => {
            CertificateError::ConstraintViolated
        }
        W::CertNotValidForName(_) => CertificateError::NameMismatch {
            expected: NameBuf::new(),
        },
        _ => CertificateError::Malformed,
    };
    Failure::Certificate(reason)
}
