//! The date: the host's clock, for CA mode's certificate dates.

use mqtts::time::WallClock;

use super::host;

/// The host's clock (semihosting SYS_TIME, seconds since the Unix epoch)
/// as the date for CA mode's certificate checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostClock;

impl WallClock for HostClock {
    fn now_unix_secs(&self) -> Option<u64> {
        host::time()
    }
}
