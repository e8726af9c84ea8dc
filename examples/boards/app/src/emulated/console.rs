//! The console and the exit: each `log` record is one line on the host's
//! semihosting console, `LEVEL - message`, as esp-println prints them;
//! [`fatal`] prints `PANIC - ...` and ends the emulation with failure.

use core::fmt::{self, Write as _};

use log::{LevelFilter, Log, Metadata, Record};

use super::host;

/// The console: each `log` record is one line on the host's semihosting
/// console, `LEVEL - message`, as esp-println prints them.
pub struct Console;

static CONSOLE: Console = Console;

/// Sends `log` records of `level` and above to the console.
pub fn init_logger(level: LevelFilter) {
    // `set_logger_racy`: the target has no compare-and-swap; this runs once,
    // before interrupts are enabled.
    // SAFETY: called once at boot, with no other thread or interrupt running.
    if unsafe { log::set_logger_racy(&CONSOLE) }.is_ok() {
        // SAFETY: as above.
        unsafe { log::set_max_level_racy(level) };
    }
}

impl Log for Console {
    fn enabled(&self, _metadata: &Metadata) -> bool {
        true
    }

    fn log(&self, record: &Record) {
        print_line(record.level().as_str(), *record.args());
    }

    fn flush(&self) {}
}

/// Collects a line and hands it to the host in pieces (SYS_WRITE0 takes a
/// NUL-terminated string).
struct LineWriter {
    buf: [u8; 128],
    len: usize,
}

impl LineWriter {
    fn flush(&mut self) {
        if self.len == 0 {
            return;
        }
        self.buf[self.len] = 0;
        if let Ok(text) = core::ffi::CStr::from_bytes_until_nul(&self.buf[..=self.len]) {
            host::write0(text);
        }
        self.len = 0;
    }
}

impl fmt::Write for LineWriter {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for &byte in s.as_bytes() {
            // A NUL would end SYS_WRITE0's string early.
            let byte = if byte == 0 { b'?' } else { byte };
            if self.len == self.buf.len() - 1 {
                self.flush();
            }
            self.buf[self.len] = byte;
            self.len += 1;
        }
        Ok(())
    }
}

/// Prints `LEVEL - message` as one line; lines from the application and
/// from interrupt handlers never interleave.
pub fn print_line(level: &str, message: fmt::Arguments<'_>) {
    critical_section::with(|_| {
        let mut line = LineWriter {
            buf: [0; 128],
            len: 0,
        };
        let _ = writeln!(line, "{level} - {message}");
        line.flush();
    });
}

/// Prints `PANIC - <message>` and ends the emulation with failure: a panic,
/// a stack overflow, a watchdog that was not fed, a bad command line.
pub fn fatal(message: fmt::Arguments<'_>) -> ! {
    print_line("PANIC", message);
    exit(1)
}

/// Ends the emulation (semihosting SYS_EXIT): QEMU exits with `code`'s
/// status (0 success, anything else failure).
pub fn exit(code: i32) -> ! {
    host::exit(code)
}

/// For the board's `#[panic_handler]`: `PANIC - <message> at <file:line>`,
/// then exit with failure.
pub fn on_panic(info: &core::panic::PanicInfo<'_>) -> ! {
    match info.location() {
        Some(at) => fatal(format_args!(
            "{} at {}:{}",
            info.message(),
            at.file(),
            at.line()
        )),
        None => fatal(format_args!("{}", info.message())),
    }
}
