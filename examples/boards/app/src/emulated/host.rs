//! Semihosting: the calls to the host (ARM and RISC-V semihosting are the
//! same calls; the `semihosting` crate issues the right trap).

use super::host_file::FileError;
use core::ffi::CStr;
use semihosting::fd::AsFd as _;
use semihosting::sys::arm_compat as sh;

pub fn write0(text: &CStr) {
    sh::sys_write0(text);
}

pub fn exit(code: i32) -> ! {
    semihosting::process::exit(code)
}

/// SYS_GET_CMDLINE into `buf`: the length of the line.
pub fn cmdline(buf: &mut [u8]) -> Option<usize> {
    // SAFETY: `[u8]` and `[MaybeUninit<u8>]` have the same layout, and
    // the call only writes initialised bytes.
    let uninit = unsafe {
        core::slice::from_raw_parts_mut(
            buf.as_mut_ptr().cast::<core::mem::MaybeUninit<u8>>(),
            buf.len(),
        )
    };
    sh::sys_get_cmdline_uninit(uninit)
        .ok()
        .map(|line| line.len())
}

/// SYS_OPEN, SYS_FLEN, SYS_READ (and SYS_CLOSE when the handle drops).
pub fn read_file(name: &CStr, buf: &mut [u8]) -> Result<usize, FileError> {
    let file = sh::sys_open(name, sh::OpenMode::RDONLY_BINARY).map_err(|_| FileError::Open)?;
    let size = sh::sys_flen(file.as_fd()).map_err(|_| FileError::Read)?;
    if size == 0 || size > buf.len() {
        return Err(FileError::Size(size));
    }
    let not_read =
        sh::sys_read_orig(file.as_fd(), &mut buf[..size]).map_err(|_| FileError::Read)?;
    if not_read != 0 {
        return Err(FileError::Read);
    }
    Ok(size)
}

/// SYS_TIME: the host's seconds since the Unix epoch.
pub fn time() -> Option<u64> {
    sh::sys_time().ok().map(|secs| secs as u64)
}
