//! What the emulated boards (QEMU, feature `emulated`) share beside the
//! application: the run-time settings from the semihosting command line,
//! the console, the exit codes, a date from the host, a TEST-ONLY seeded
//! RNG, a heap that counts its peak, the stack's paint and guard, and a
//! software watchdog; [`EmulatedBoard`] puts them behind [`Board`].
//!
//! Nothing here names a machine: ARM and RISC-V semihosting are the same
//! calls (the `semihosting` crate issues the right trap), and the board
//! crate brings the timer, the UART to the modem, the interrupt controller,
//! the linker script and the stack bounds (`examples/boards/qemu-riscv32`).
//!
//! # The command line (SYS_GET_CMDLINE)
//!
//! Words `key=value`, separated by spaces (QEMU joins its
//! `-semihosting-config arg=` values with spaces):
//!
//! | word | meaning | default |
//! |---|---|---|
//! | `trust=spki:<64 hex>` | pin the broker's public key (SHA-256) | |
//! | `trust=cert:<64 hex>` | pin the broker's certificate (SHA-256) | |
//! | `trust=ca:<host path>` | CA mode with this DER root (at most [`CA_MAX`] bytes), dates from the host's clock | |
//! | `trust=flespi` | CA mode with flespi's GlobalSign roots | this |
//! | `port=<u16>` | the TCP port the AT modem dials | 8883 |
//! | `client=<id>` | MQTT client id | `riscv32-virt` (the board's [`Defaults`]) |
//! | `prefix=<topic prefix>` | topics under it | `devices/<client id>` |
//! | `interval=<seconds>` | time between readings, 1 to 86400 | 30 |
//! | `keepalive=<seconds>` | MQTT keep-alive, 1 to 65535 | 60 |
//! | `seed=<16 hex digits>` | the TEST-ONLY RNG's seed | required |
//! | `ssid=<name>`, `password=<text>` | Wi-Fi sent to the modem | `test-net`, `test-password` |
//! | `selftest=stack-overflow\|watchdog\|panic` | provoke that failure at boot, to see the board catch it ([`SelfTest`]) | none |
//!
//! A word that is not one of these, a repeated key, a bad value or a
//! missing seed stops the firmware: [`fatal`] prints the reason and exits
//! with failure, before anything dials.

use core::cell::{Cell, RefCell};
use core::fmt::{self, Write as _};
use core::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use critical_section::Mutex;
use embassy_time::{Duration, Instant};
use heapless::String;
use log::{LevelFilter, Log, Metadata, Record, info};
use mqtts::client::BrokerLimits;
use mqtts::fingerprint::{Fingerprint, FingerprintError};
use mqtts::time::WallClock;
use mqtts::trust::Pin;
use rand_chacha::ChaCha20Rng;
use rand_core::SeedableRng;

use crate::app::{Board, BrokerTrust, HeapUse, Settings};
use crate::config;
use crate::watchdog::HARDWARE_TIMEOUT;

/// The largest root certificate `trust=ca:` reads (DER).
pub const CA_MAX: usize = 2048;

/// The longest command line read from the host.
const CMDLINE_MAX: usize = 1024;

// ---------------------------------------------------------------------------
// Console and exit

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
        let _ = write!(line, "{level} - {message}\n");
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

// ---------------------------------------------------------------------------
// Command line

/// How the broker's certificate is checked (`trust=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trust<'a> {
    /// CA mode with flespi's GlobalSign roots.
    Flespi,
    /// A pin on the SHA-256 of the broker's public key (SubjectPublicKeyInfo).
    Spki([u8; 32]),
    /// A pin on the SHA-256 of the broker's certificate.
    Certificate([u8; 32]),
    /// CA mode with the DER root certificate at this path on the host.
    Ca(&'a str),
}

/// What the board's command line set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Args<'a> {
    /// How the broker is checked.
    pub trust: Trust<'a>,
    /// The TCP port the modem dials.
    pub port: u16,
    /// MQTT client id.
    pub client_id: &'a str,
    /// Topic prefix, if set (otherwise `devices/<client id>`).
    pub prefix: Option<&'a str>,
    /// Seconds between readings.
    pub interval_secs: u32,
    /// MQTT keep-alive, seconds.
    pub keep_alive_secs: u16,
    /// The TEST-ONLY RNG's seed.
    pub seed: u64,
    /// The Wi-Fi network the modem joins.
    pub ssid: &'a str,
    /// Its password.
    pub password: &'a str,
    /// A failure to provoke instead of running the application.
    pub self_test: Option<SelfTest>,
}

/// Failures the board must catch, provoked on request (`selftest=`): each
/// must end the emulation with failure and its `PANIC - ...` line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfTest {
    /// Unbounded recursion: `PANIC - stack overflow`.
    StackOverflow,
    /// A task that never yields: `PANIC - watchdog: no progress for 60 s`.
    Watchdog,
    /// `panic!`: `PANIC - self-test panic at ...`.
    Panic,
}

/// What a board uses where the command line is silent.
#[derive(Debug, Clone, Copy)]
pub struct Defaults {
    /// MQTT client id, e.g. `riscv32-virt`.
    pub client_id: &'static str,
}

/// Why the command line was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ArgError<'a> {
    /// The host gave no command line (or one longer than the buffer).
    Unreadable,
    /// A word without `=`, or with a key that is not known.
    UnknownWord(&'a str),
    /// A key given twice.
    Repeated(&'a str),
    /// A value that does not parse; the text says what was expected.
    BadValue {
        /// The whole word.
        word: &'a str,
        /// What the key takes.
        expected: &'static str,
    },
    /// `seed=` is required.
    MissingSeed,
}

impl fmt::Display for ArgError<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Unreadable => write!(
                f,
                "no semihosting command line (at most {CMDLINE_MAX} bytes; QEMU: -semihosting-config enable=on,target=native,arg=seed=...)"
            ),
            Self::UnknownWord(word) => write!(
                f,
                "unknown word `{word}`: expected key=value with key trust, port, client, prefix, interval, keepalive, seed, ssid, password or selftest"
            ),
            Self::Repeated(key) => write!(f, "`{key}=` is given twice"),
            Self::BadValue { word, expected } => write!(f, "bad `{word}`: {expected}"),
            Self::MissingSeed => write!(
                f,
                "missing seed=<16 hex digits> (the TEST-ONLY RNG's seed; this board has no entropy source)"
            ),
        }
    }
}

const TRUST_EXPECTED: &str =
    "trust=spki:<64 hex>, trust=cert:<64 hex>, trust=ca:<host path of a DER root> or trust=flespi";

/// Parses the words of the command line (see the module's table).
pub fn parse_args<'a>(cmdline: &'a str, defaults: Defaults) -> Result<Args<'a>, ArgError<'a>> {
    let mut args = Args {
        trust: Trust::Flespi,
        port: mqtts::flespi::PORT,
        client_id: defaults.client_id,
        prefix: None,
        interval_secs: config::PUBLISH_INTERVAL_SECS,
        keep_alive_secs: config::KEEP_ALIVE_SECS,
        seed: 0,
        ssid: "test-net",
        password: "test-password",
        self_test: None,
    };
    let mut seen = [false; KEYS.len()];
    let mut seed = None;
    for word in cmdline.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            return Err(ArgError::UnknownWord(word));
        };
        let Some(index) = KEYS.iter().position(|known| *known == key) else {
            return Err(ArgError::UnknownWord(word));
        };
        if core::mem::replace(&mut seen[index], true) {
            return Err(ArgError::Repeated(KEYS[index]));
        }
        let bad = |expected| ArgError::BadValue { word, expected };
        match key {
            "trust" => {
                args.trust = parse_trust(value).map_err(|()| bad(TRUST_EXPECTED))?;
            }
            "port" => {
                args.port = value
                    .parse()
                    .ok()
                    .filter(|port| *port != 0)
                    .ok_or(bad("a TCP port, 1 to 65535"))?;
            }
            "client" => {
                if value.is_empty() || value.len() > 64 {
                    return Err(bad("an MQTT client id of 1 to 64 bytes"));
                }
                args.client_id = value;
            }
            "prefix" => {
                if value.is_empty() || value.len() > 96 {
                    return Err(bad("a topic prefix of 1 to 96 bytes"));
                }
                args.prefix = Some(value);
            }
            "interval" => {
                args.interval_secs = value
                    .parse()
                    .ok()
                    .filter(|secs| (1..=86_400).contains(secs))
                    .ok_or(bad("seconds from 1 to 86400"))?;
            }
            "keepalive" => {
                args.keep_alive_secs = value
                    .parse()
                    .ok()
                    .filter(|secs| *secs != 0)
                    .ok_or(bad("seconds from 1 to 65535"))?;
            }
            "seed" => {
                let valid = value.len() == 16 && value.bytes().all(|b| b.is_ascii_hexdigit());
                seed = Some(
                    valid
                        .then(|| u64::from_str_radix(value, 16).ok())
                        .flatten()
                        .ok_or(bad("16 hex digits"))?,
                );
            }
            "selftest" => {
                args.self_test = Some(match value {
                    "stack-overflow" => SelfTest::StackOverflow,
                    "watchdog" => SelfTest::Watchdog,
                    "panic" => SelfTest::Panic,
                    _ => return Err(bad("stack-overflow, watchdog or panic")),
                });
            }
            "ssid" => {
                if value.is_empty() || value.len() > 32 {
                    return Err(bad("an SSID of 1 to 32 bytes"));
                }
                args.ssid = value;
            }
            "password" => {
                if !value.is_empty() && !(8..=64).contains(&value.len()) {
                    return Err(bad("a Wi-Fi password of 8 to 64 bytes (or empty)"));
                }
                args.password = value;
            }
            _ => unreachable!("every key of KEYS is matched"),
        }
    }
    args.seed = seed.ok_or(ArgError::MissingSeed)?;
    Ok(args)
}

const KEYS: [&str; 10] = [
    "trust",
    "port",
    "client",
    "prefix",
    "interval",
    "keepalive",
    "seed",
    "ssid",
    "password",
    "selftest",
];

fn parse_trust(value: &str) -> Result<Trust<'_>, ()> {
    let sha256 = |hex: &str| match Fingerprint::parse_sha256(hex) {
        Ok(bytes) => Ok(bytes),
        Err(FingerprintError::Empty | _) => Err(()),
    };
    if value == "flespi" {
        Ok(Trust::Flespi)
    } else if let Some(hex) = value.strip_prefix("spki:") {
        sha256(hex).map(Trust::Spki)
    } else if let Some(hex) = value.strip_prefix("cert:") {
        sha256(hex).map(Trust::Certificate)
    } else if let Some(path) = value.strip_prefix("ca:") {
        if path.is_empty() {
            Err(())
        } else {
            Ok(Trust::Ca(path))
        }
    } else {
        Err(())
    }
}

/// Reads the semihosting command line into `buf`.
pub fn read_cmdline(buf: &mut [u8; CMDLINE_MAX]) -> Result<&str, ArgError<'static>> {
    let len = host::cmdline(buf).ok_or(ArgError::Unreadable)?;
    core::str::from_utf8(&buf[..len]).map_err(|_| ArgError::Unreadable)
}

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

/// Room for what [`settings`] derives: the topic prefix, the pin, the root.
#[derive(Debug)]
pub struct Names {
    topic_prefix: String<{ 8 + 64 }>,
    pins: [Pin; 1],
    roots: [&'static [u8]; 1],
}

impl Names {
    /// Empty names.
    pub const fn new() -> Self {
        Self {
            topic_prefix: String::new(),
            pins: [Pin::PublicKey([0; 32])],
            roots: [&[]],
        }
    }
}

impl Default for Names {
    fn default() -> Self {
        Self::new()
    }
}

/// The application's settings from the command line. `ca_root` is the DER
/// root read for `trust=ca:` (else unused). The token is the build's
/// (`FLESPI_TOKEN`, a placeholder in the emulated builds).
pub fn settings<'a>(
    names: &'a mut Names,
    args: &Args<'a>,
    ca_root: Option<&'static [u8]>,
) -> Settings<'a> {
    let Names {
        topic_prefix,
        pins,
        roots,
    } = names;
    let prefix: &str = match args.prefix {
        Some(prefix) => prefix,
        None => {
            topic_prefix.clear();
            // Fits: 8 + at most 64 bytes.
            let _ = write!(topic_prefix, "devices/{}", args.client_id);
            topic_prefix.as_str()
        }
    };
    let trust = match args.trust {
        Trust::Flespi => BrokerTrust::Roots(mqtts::flespi::ROOTS),
        Trust::Spki(hash) => {
            pins[0] = Pin::PublicKey(hash);
            BrokerTrust::Pins(&pins[..])
        }
        Trust::Certificate(hash) => {
            pins[0] = Pin::Certificate(Fingerprint::Sha256(hash));
            BrokerTrust::Pins(&pins[..])
        }
        Trust::Ca(_) => {
            roots[0] = ca_root.unwrap_or(&[]);
            BrokerTrust::Roots(&roots[..])
        }
    };
    Settings {
        client_id: args.client_id,
        token: config::FLESPI_TOKEN,
        topic_prefix: prefix,
        publish_interval: Duration::from_secs(u64::from(args.interval_secs)),
        // mosquitto, not flespi: QoS 2 is accepted.
        limits: BrokerLimits::NONE,
        keep_alive_secs: args.keep_alive_secs,
        trust,
    }
}

// ---------------------------------------------------------------------------
// Date and randomness

/// The host's clock (semihosting SYS_TIME, seconds since the Unix epoch)
/// as the date for CA mode's certificate checks.
#[derive(Debug, Clone, Copy, Default)]
pub struct HostClock;

impl WallClock for HostClock {
    fn now_unix_secs(&self) -> Option<u64> {
        host::time()
    }
}

/// TEST-ONLY: ChaCha20 seeded with a value the host chose and knows. Every
/// key and nonce it makes is predictable by whoever knows the seed: never
/// acceptable on a device, which must seed from a hardware entropy source
/// (QEMU's `virt` has none the firmware can reach without a virtio driver).
pub fn test_only_rng(seed: u64) -> ChaCha20Rng {
    ChaCha20Rng::seed_from_u64(seed)
}

// ---------------------------------------------------------------------------
// Heap

/// A global allocator over a static buffer (first fit,
/// `linked_list_allocator`) that counts the most it held at once.
///
/// ```ignore
/// #[global_allocator]
/// static HEAP: PeakHeap = PeakHeap::empty();
/// ```
pub struct PeakHeap {
    state: Mutex<RefCell<HeapState>>,
}

struct HeapState {
    heap: linked_list_allocator::Heap,
    peak: usize,
}

impl PeakHeap {
    /// A heap with no memory yet ([`PeakHeap::init`] gives it some).
    pub const fn empty() -> Self {
        Self {
            state: Mutex::new(RefCell::new(HeapState {
                heap: linked_list_allocator::Heap::empty(),
                peak: 0,
            })),
        }
    }

    /// Gives the heap its memory (once, at boot).
    pub fn init(&self, memory: &'static mut [core::mem::MaybeUninit<u8>]) {
        critical_section::with(|cs| self.state.borrow_ref_mut(cs).heap.init_from_slice(memory));
    }

    /// What the heap holds now, its peak and its size.
    pub fn usage(&self) -> HeapUse {
        critical_section::with(|cs| {
            let state = self.state.borrow_ref(cs);
            HeapUse {
                peak: state.peak,
                current: state.heap.used(),
                size: state.heap.size(),
            }
        })
    }
}

// SAFETY: every access to the heap is inside a critical section; the
// linked-list heap returns blocks of the layout asked for, or null.
unsafe impl core::alloc::GlobalAlloc for PeakHeap {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        critical_section::with(|cs| {
            let mut state = self.state.borrow_ref_mut(cs);
            match state.heap.allocate_first_fit(layout) {
                Ok(block) => {
                    state.peak = state.peak.max(state.heap.used());
                    block.as_ptr()
                }
                Err(()) => core::ptr::null_mut(),
            }
        })
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: core::alloc::Layout) {
        if let Some(block) = core::ptr::NonNull::new(ptr) {
            critical_section::with(|cs| {
                // SAFETY: `ptr` came from `alloc` with this layout.
                unsafe { self.state.borrow_ref_mut(cs).heap.deallocate(block, layout) }
            });
        }
    }
}

// ---------------------------------------------------------------------------
// Stack

/// Painted into the free stack at boot; a word that no longer holds it was
/// used.
const PAINT: u32 = 0xC0FF_EE11;

/// Words at the bottom of the stack that a running firmware never reaches:
/// once one is written, the stack overflowed (or is about to).
pub const GUARD_WORDS: usize = 16;

/// The stack's bounds (set by [`paint_stack`]).
static STACK_BOTTOM: AtomicUsize = AtomicUsize::new(0);
static STACK_TOP: AtomicUsize = AtomicUsize::new(0);

/// How much of the stack its frames have used, and whether the guard at
/// its bottom is intact.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackUse {
    /// Bytes from the top to the lowest word that lost its paint.
    pub peak: usize,
    /// The stack's size, guard included.
    pub size: usize,
}

/// Paints the stack `[bottom, top)` from `bottom` up to a little below the
/// caller's frame. Call once, early in `main`, with interrupts off.
///
/// # Safety
///
/// `[bottom, top)` must be the running stack (4-byte aligned) and nothing
/// below the caller's frame may be in use.
#[inline(never)]
pub unsafe fn paint_stack(bottom: usize, top: usize) {
    let marker = 0u32;
    // Leave the frames above this one (and this one's) alone.
    let limit = (core::ptr::addr_of!(marker) as usize).saturating_sub(256) & !3;
    let mut word = bottom;
    while word < limit {
        // SAFETY: below the live frames, inside the stack (the caller's promise).
        unsafe { core::ptr::write_volatile(word as *mut u32, PAINT) };
        word += 4;
    }
    STACK_BOTTOM.store(bottom, Ordering::Relaxed);
    STACK_TOP.store(top, Ordering::Relaxed);
}

/// The stack's peak use, from its paint.
pub fn stack_use() -> StackUse {
    let (bottom, top) = (
        STACK_BOTTOM.load(Ordering::Relaxed),
        STACK_TOP.load(Ordering::Relaxed),
    );
    let mut word = bottom;
    // SAFETY: reads inside the stack painted by `paint_stack`.
    while word < top && unsafe { core::ptr::read_volatile(word as *const u32) } == PAINT {
        word += 4;
    }
    StackUse {
        peak: top - word,
        size: top - bottom,
    }
}

/// Whether the guard words at the stack's bottom still hold their paint.
pub fn stack_guard_intact() -> bool {
    let bottom = STACK_BOTTOM.load(Ordering::Relaxed);
    if bottom == 0 {
        return true; // not painted yet
    }
    // SAFETY: reads inside the painted stack.
    (0..GUARD_WORDS)
        .all(|i| unsafe { core::ptr::read_volatile((bottom + 4 * i) as *const u32) } == PAINT)
}

// ---------------------------------------------------------------------------
// Watchdog and periodic checks

/// The last feed, in embassy-time ticks.
static LAST_FEED: Mutex<Cell<u64>> = Mutex::new(Cell::new(0));
static WATCHDOG_STARTED: AtomicBool = AtomicBool::new(false);

/// Starts the software watchdog: from now on [`check`] ends the emulation
/// [`HARDWARE_TIMEOUT`] after the last feed.
pub fn start_watchdog() {
    feed_watchdog();
    WATCHDOG_STARTED.store(true, Ordering::Relaxed);
    info!(
        "watchdog: the emulation fails {} s after the application stops making progress",
        HARDWARE_TIMEOUT.as_secs()
    );
}

/// Restarts the watchdog's countdown.
pub fn feed_watchdog() {
    let now = Instant::now().as_ticks();
    critical_section::with(|cs| LAST_FEED.borrow(cs).set(now));
}

/// How often the board's timer interrupt must call [`check`] at least.
pub const CHECK_EVERY: Duration = Duration::from_millis(500);

/// The checks the board's timer interrupt runs (at least every
/// [`CHECK_EVERY`]): the stack's guard words, and the watchdog. Either
/// failing ends the emulation with `PANIC - ...`.
pub fn check() {
    if !stack_guard_intact() {
        fatal(format_args!("stack overflow"));
    }
    if WATCHDOG_STARTED.load(Ordering::Relaxed) {
        let last = critical_section::with(|cs| LAST_FEED.borrow(cs).get());
        let now = Instant::now().as_ticks();
        if now.saturating_sub(last) >= HARDWARE_TIMEOUT.as_ticks() {
            fatal(format_args!(
                "watchdog: no progress for {} s",
                HARDWARE_TIMEOUT.as_secs()
            ));
        }
    }
}

/// Provokes `test` (from the board's main, with interrupts and the
/// watchdog running): never returns, the board's checks end the emulation.
pub fn run_self_test(test: SelfTest) -> ! {
    info!("self-test: {test:?}");
    match test {
        SelfTest::StackOverflow => {
            let depth = recurse(core::hint::black_box(1));
            fatal(format_args!(
                "self-test: recursion of {depth} frames returned"
            ))
        }
        SelfTest::Watchdog => loop {
            // Spins without feeding; the timer interrupt still runs.
            core::hint::spin_loop();
        },
        SelfTest::Panic => panic!("self-test panic"),
    }
}

/// 256 bytes of stack per frame, forever.
#[inline(never)]
#[allow(unconditional_recursion)] // the point: it ends in the stack's guard
fn recurse(depth: u32) -> u32 {
    let mut frame = [0u8; 256];
    frame[depth as usize % 256] = depth as u8;
    core::hint::black_box(&mut frame);
    recurse(depth + 1) + u32::from(frame[0])
}

// ---------------------------------------------------------------------------
// RAM figures and the board

/// Where the board's RAM goes, from its linker symbols.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamLayout {
    /// The RAM region's size.
    pub total: usize,
    /// `.data` + `.bss` (the heap's static buffer included).
    pub statics: usize,
    /// The heap's static buffer.
    pub heap: usize,
    /// The stack region (guard words included).
    pub stack: usize,
}

/// Growth of a peak that is logged again.
const REPORT_STEP: usize = 1024;

/// The [`Board`] of an emulated machine: the output is a flag, there is
/// no sensor, the watchdog is [`feed_watchdog`]'s, the heap is `heap`.
/// Its feeds also log the stack's and the heap's peaks when they grew by
/// 1 KB since they were last logged.
pub struct EmulatedBoard {
    on: bool,
    heap: &'static PeakHeap,
    layout: RamLayout,
    /// Peaks last logged; `None` before the first connect.
    logged: Cell<Option<(usize, usize)>>,
}

impl EmulatedBoard {
    /// A board with its heap and RAM layout; logs the layout.
    pub fn new(heap: &'static PeakHeap, layout: RamLayout) -> Self {
        info!(
            "RAM: {} bytes: static {} bytes (.data + .bss, heap {} included), stack {} bytes",
            layout.total, layout.statics, layout.heap, layout.stack
        );
        Self {
            on: false,
            heap,
            layout,
            logged: Cell::new(None),
        }
    }

    fn log_stack(stack: StackUse) {
        info!("stack: peak {} of {} bytes", stack.peak, stack.size);
    }

    fn log_peaks_if_grown(&self) {
        let Some((stack_logged, heap_logged)) = self.logged.get() else {
            return;
        };
        let stack = stack_use();
        let heap = self.heap.usage();
        if stack.peak >= stack_logged + REPORT_STEP {
            Self::log_stack(stack);
        }
        if heap.peak >= heap_logged + REPORT_STEP {
            info!("heap: peak {} of {} bytes", heap.peak, heap.size);
        }
        let stack_logged = if stack.peak >= stack_logged + REPORT_STEP {
            stack.peak
        } else {
            stack_logged
        };
        let heap_logged = if heap.peak >= heap_logged + REPORT_STEP {
            heap.peak
        } else {
            heap_logged
        };
        self.logged.set(Some((stack_logged, heap_logged)));
    }
}

impl Board for EmulatedBoard {
    fn set_output(&mut self, on: bool) {
        self.on = on;
    }

    fn output(&self) -> bool {
        self.on
    }

    fn temperature_c(&mut self) -> Option<f32> {
        None
    }

    fn feed_watchdog(&mut self) {
        feed_watchdog();
        self.log_peaks_if_grown();
    }

    /// Called by the application once, after the first connect (which it
    /// logs with this heap figure): also logs the static RAM and the
    /// stack's peak, and from then on the feeds log growing peaks.
    fn heap_use(&self) -> Option<HeapUse> {
        let heap = self.heap.usage();
        let stack = stack_use();
        if self.logged.get().is_none() {
            info!(
                "static RAM: {} bytes (.data + .bss, heap included) of {}",
                self.layout.statics, self.layout.total
            );
            Self::log_stack(stack);
            self.logged.set(Some((stack.peak, heap.peak)));
        }
        Some(heap)
    }
}

/// Semihosting: the calls to the host.
#[cfg(target_os = "none")]
mod host {
    use super::FileError;
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
}

/// Host builds (the application's host tests): no semihosting; the parts
/// that need none are tested.
#[cfg(not(target_os = "none"))]
mod host {
    use super::FileError;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEFAULTS: Defaults = Defaults {
        client_id: "riscv32-virt",
    };
    const HEX: &str = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad";

    #[test]
    fn defaults_and_every_key() {
        let args = parse_args("seed=0123456789abcdef", DEFAULTS).unwrap();
        assert_eq!(args.trust, Trust::Flespi);
        assert_eq!(args.port, 8883);
        assert_eq!(args.client_id, "riscv32-virt");
        assert_eq!((args.ssid, args.password), ("test-net", "test-password"));
        assert_eq!(args.seed, 0x0123_4567_89ab_cdef);

        let line = std::format!(
            "trust=spki:{HEX} port=18883 client=c1 prefix=t/p interval=5 keepalive=7 seed=FFFFFFFFFFFFFFFF ssid=lab password="
        );
        let args = parse_args(&line, DEFAULTS).unwrap();
        assert!(matches!(args.trust, Trust::Spki(hash) if hash[0] == 0xba));
        assert_eq!(
            (args.port, args.client_id, args.prefix, args.interval_secs),
            (18883, "c1", Some("t/p"), 5)
        );
        assert_eq!((args.ssid, args.password), ("lab", ""));
        assert_eq!(args.keep_alive_secs, 7);
        let mut names = Names::new();
        let built = settings(&mut names, &args, None);
        assert_eq!((built.topic_prefix, built.keep_alive_secs), ("t/p", 7));
        let settings = built;
        assert!(matches!(
            settings.trust,
            BrokerTrust::Pins([Pin::PublicKey(_)])
        ));

        let line = std::format!("trust=cert:{HEX} seed=0000000000000001");
        let args = parse_args(&line, DEFAULTS).unwrap();
        let mut names = Names::new();
        let built = super::settings(&mut names, &args, None);
        assert_eq!(built.topic_prefix, "devices/riscv32-virt");
        assert!(matches!(
            built.trust,
            BrokerTrust::Pins([Pin::Certificate(Fingerprint::Sha256(_))])
        ));

        let args = parse_args("trust=ca:/tmp/root.der seed=0000000000000001", DEFAULTS).unwrap();
        assert_eq!(args.trust, Trust::Ca("/tmp/root.der"));
        let mut names = Names::new();
        let built = super::settings(&mut names, &args, Some(b"der"));
        assert!(matches!(built.trust, BrokerTrust::Roots([b"der"])));
    }

    #[test]
    fn refusals_name_the_word() {
        let refused = |line: &'static str| parse_args(line, DEFAULTS).unwrap_err();
        assert_eq!(refused(""), ArgError::MissingSeed);
        assert_eq!(refused("trust=flespi"), ArgError::MissingSeed);
        assert_eq!(
            refused("seed=12 "),
            ArgError::BadValue {
                word: "seed=12",
                expected: "16 hex digits"
            }
        );
        assert_eq!(
            refused("/path/fw.elf"),
            ArgError::UnknownWord("/path/fw.elf")
        );
        assert_eq!(refused("colour=red"), ArgError::UnknownWord("colour=red"));
        assert_eq!(
            refused("port=1 port=2 seed=0000000000000001"),
            ArgError::Repeated("port")
        );
        assert!(matches!(refused("port=0"), ArgError::BadValue { .. }));
        assert!(matches!(refused("port=65536"), ArgError::BadValue { .. }));
        assert!(matches!(refused("interval=0"), ArgError::BadValue { .. }));
        assert!(matches!(refused("keepalive=0"), ArgError::BadValue { .. }));
        assert!(matches!(
            refused("trust=spki:abcd"),
            ArgError::BadValue { .. }
        ));
        assert!(matches!(refused("trust=ca:"), ArgError::BadValue { .. }));
        assert!(matches!(refused("trust=pin"), ArgError::BadValue { .. }));
        assert!(matches!(
            refused("password=short"),
            ArgError::BadValue { .. }
        ));
        let text = std::format!("{}", refused("colour=red"));
        assert!(text.contains("unknown word `colour=red`"), "{text}");
    }

    #[test]
    fn the_test_only_rng_repeats_its_seed() {
        use rand_core::RngCore;
        let (mut a, mut b) = (test_only_rng(7), test_only_rng(7));
        assert_eq!(a.next_u64(), b.next_u64());
        assert_ne!(test_only_rng(8).next_u64(), test_only_rng(7).next_u64());
    }
}
