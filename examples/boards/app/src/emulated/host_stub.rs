//! Host builds (the application's host tests): no semihosting; the parts
//! that need none are tested.

use super::host_file::FileError;
use core::ffi::CStr;

pub fn write0(_text: &CStr) {}

pub fn exit(code: i32) -> ! {
    panic!("exit({code})")
}

pub fn cmdline(_buf: &mut [u8]) -> Option<usize> {
    None
}

pub fn read_file(_name: &CStr, _buf: &mut [u8]) -> Result<usize, FileError> {
    Err(FileError::Open)
}

pub fn time() -> Option<u64> {
    None
}
