//! The trust target's input format after its four header bytes: DER blobs
//! back to back, each one's own length saying where it ends (a blob whose
//! length does not fit takes the rest). Std only, so that
//! tests/fuzz_regressions.rs splits the committed corpus exactly as the
//! target does (it includes this file with `#[path]`).

/// The most blobs read from one input (a chain of `MAX_CHAIN_LEN` + 1, and
/// three anchors).
pub const MAX_BLOBS: usize = 12;

/// The length of the DER element at the start of `bytes`, if its header
/// is readable and it fits.
fn der_len(bytes: &[u8]) -> Option<usize> {
    let first = *bytes.get(1)?;
    let (header, len) = if first < 0x80 {
        (2, usize::from(first))
    } else {
        let count = usize::from(first & 0x7F);
        if count == 0 || count > 4 {
            return None;
        }
        let len = bytes
            .get(2..2 + count)?
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (2 + count, len)
    };
    let total = header + len;
    (total <= bytes.len()).then_some(total)
}

/// Splits the blobs (at most [`MAX_BLOBS`]; the last takes the rest).
pub fn split_blobs(mut data: &[u8]) -> Vec<&[u8]> {
    let mut blobs = Vec::new();
    while !data.is_empty() && blobs.len() < MAX_BLOBS {
        let len = match der_len(data) {
            Some(len) if blobs.len() + 1 < MAX_BLOBS => len,
            _ => data.len(),
        };
        blobs.push(&data[..len]);
        data = &data[len..];
    }
    blobs
}
