//! A file on the host (semihosting SYS_OPEN, SYS_FLEN, SYS_READ): the DER
//! root of `trust=ca:`.

use core::fmt;

use super::host;

/// The largest root certificate `trust=ca:` reads (DER).
pub const CA_MAX: usize = 2048;

/// Why a host file could not be read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileError {
    /// The path does not fit the buffer for it (255 bytes).
    PathTooLong,
    /// SYS_OPEN failed (no such file, no permission).
    Open,
    /// Empty, or larger than the buffer.
    Size(usize),
    /// SYS_READ failed or returned less.
    Read,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::PathTooLong => f.write_str("the path is longer than 255 bytes"),
            Self::Open => f.write_str("the host could not open it"),
            Self::Size(size) => write!(f, "{size} bytes (expected 1 to {CA_MAX})"),
            Self::Read => f.write_str("the host could not read it"),
        }
    }
}

/// Reads the host file at `path` into `buf` (SYS_OPEN, SYS_FLEN, SYS_READ).
pub fn read_host_file<'b>(path: &str, buf: &'b mut [u8]) -> Result<&'b [u8], FileError> {
    let mut name = [0u8; 256];
    if path.len() >= name.len() || path.as_bytes().contains(&0) {
        return Err(FileError::PathTooLong);
    }
    name[..path.len()].copy_from_slice(path.as_bytes());
    let name = core::ffi::CStr::from_bytes_until_nul(&name).map_err(|_| FileError::PathTooLong)?;
    let size = host::read_file(name, buf)?;
    Ok(&buf[..size])
}
