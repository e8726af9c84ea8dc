//! Size harness: one TLS 1.3 connection and one MQTT session over a socket
//! stub, linked for a bare-metal target so that the ELF shows what each
//! configuration of mqtts costs in flash and static RAM (issue 6, item 1).
//!
//! The firmware is built and measured, never run. Everything that would come
//! from the outside at run time (bytes from the server, random numbers, the
//! clock, topics, payloads, the client id, the server name) passes through
//! [`black_box`], so the optimiser keeps every path a real firmware keeps.
//! The trust material (pins, anchors) stays a plain `static`, as in a real
//! firmware.
//!
//! Variants (exactly one cargo feature): `floor`, `tls-pin`, `pin`, `ca`,
//! `p384`, `rsa`, `ed25519`; see Cargo.toml.

#![no_std]
#![no_main]

#[cfg(feature = "heap")]
extern crate alloc;

use core::future::Future;
use core::hint::black_box;
use core::pin::pin;
use core::task::{Context, Poll, Waker};

#[cfg(not(any(
    feature = "floor",
    feature = "tls-pin",
    feature = "pin",
    feature = "ca"
)))]
compile_error!("choose one variant: --features floor|tls-pin|pin|ca|p384|rsa|ed25519");

#[cfg(any(
    all(
        feature = "floor",
        any(feature = "tls-pin", feature = "pin", feature = "ca")
    ),
    all(feature = "tls-pin", any(feature = "pin", feature = "ca")),
    all(feature = "pin", feature = "ca"),
))]
compile_error!("one variant per build: the features must not be combined");

/// The entry point `link.x` names. Nothing sets up a stack or copies .data:
/// the image is only measured.
#[unsafe(no_mangle)]
pub extern "C" fn _start() -> ! {
    variant::run();
    loop {
        core::hint::spin_loop();
    }
}

#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // A firmware would log and reset; the message is not formatted here so
    // that the measured code is the library's, not a logger's.
    loop {
        core::hint::spin_loop();
    }
}

/// Polls `future` to completion with a waker that does nothing: the stubs
/// below wake themselves when they are pending, so no executor is needed.
fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
    }
}

/// Pending once, or not, as a value the optimiser cannot see says: a real
/// socket or timer sometimes has to wait. With stubs that are always ready
/// the optimiser proved every wait away and dropped the code that handles
/// one (mqtts's deadline and timer paths in `tls/socket.rs`, embedded-tls's
/// resumption points), which a firmware links.
async fn may_wait() {
    struct PendingOnce(bool);
    impl Future for PendingOnce {
        type Output = ();
        fn poll(mut self: core::pin::Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
            if self.0 {
                self.0 = false;
                cx.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(())
            }
        }
    }
    PendingOnce(black_box(false)).await
}

/// What the "server" sends: opaque to the optimiser.
static SERVER_BYTES: [u8; 32] = [0x16; 32];

/// A connected socket whose reads return bytes and lengths the optimiser
/// cannot predict, and whose writes are consumed by `black_box`.
struct StubSocket {
    position: usize,
}

impl StubSocket {
    const fn new() -> Self {
        Self { position: 0 }
    }
}

impl embedded_io::ErrorType for StubSocket {
    type Error = embedded_io::ErrorKind;
}

impl embedded_io_async::Read for StubSocket {
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Self::Error> {
        may_wait().await;
        if black_box(self.position) == usize::MAX {
            return Err(embedded_io::ErrorKind::ConnectionReset);
        }
        let source = black_box(&SERVER_BYTES[..]);
        let start = self.position % source.len();
        let n = black_box(buf.len())
            .min(buf.len())
            .min(source.len() - start);
        buf[..n].copy_from_slice(&source[start..start + n]);
        self.position = self.position.wrapping_add(n);
        Ok(n)
    }
}

impl embedded_io_async::Write for StubSocket {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Self::Error> {
        may_wait().await;
        black_box(buf);
        if black_box(buf.is_empty()) {
            return Err(embedded_io::ErrorKind::BrokenPipe);
        }
        Ok(black_box(buf.len()).min(buf.len()))
    }

    async fn flush(&mut self) -> Result<(), Self::Error> {
        may_wait().await;
        black_box(&*self);
        Ok(())
    }
}

/// A generator the optimiser cannot see through (a hardware TRNG stands here).
struct StubRng(u32);

impl rand_core::RngCore for StubRng {
    fn next_u32(&mut self) -> u32 {
        self.0 = black_box(self.0.wrapping_mul(1_664_525).wrapping_add(1_013_904_223));
        self.0
    }

    fn next_u64(&mut self) -> u64 {
        u64::from(self.next_u32()) << 32 | u64::from(self.next_u32())
    }

    fn fill_bytes(&mut self, dest: &mut [u8]) {
        for byte in dest {
            *byte = self.next_u32() as u8;
        }
    }

    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> Result<(), rand_core::Error> {
        self.fill_bytes(dest);
        Ok(())
    }
}

impl rand_core::CryptoRng for StubRng {}

/// Single-core critical sections (interrupts masked), which heapless 0.7
/// (mqttrs) and portable-atomic (rsa) need on riscv32imc, and the heap uses.
struct SingleCore;
critical_section::set_impl!(SingleCore);

// SAFETY: masking interrupts on a single-core MCU excludes every other
// context; `release` restores the state `acquire` found.
unsafe impl critical_section::Impl for SingleCore {
    unsafe fn acquire() -> critical_section::RawRestoreState {
        #[cfg(target_arch = "riscv32")]
        {
            let mstatus: usize;
            // SAFETY: clears MIE (bit 3) and returns the previous mstatus.
            unsafe { core::arch::asm!("csrrci {0}, mstatus, 8", out(reg) mstatus) };
            mstatus & 8 != 0
        }
        #[cfg(target_arch = "arm")]
        {
            let primask: u32;
            // SAFETY: reads PRIMASK, then masks interrupts.
            unsafe {
                core::arch::asm!("mrs {0}, PRIMASK", "cpsid i", out(reg) primask);
            }
            primask & 1 == 0
        }
        // Other architectures only ever type-check this crate (`cargo
        // clippy` on the host); the firmware is built for the two above.
        #[cfg(not(any(target_arch = "riscv32", target_arch = "arm")))]
        {
            false
        }
    }

    unsafe fn release(were_enabled: critical_section::RawRestoreState) {
        if were_enabled {
            #[cfg(target_arch = "riscv32")]
            // SAFETY: sets MIE again, as it was before `acquire`.
            unsafe {
                core::arch::asm!("csrsi mstatus, 8")
            };
            #[cfg(target_arch = "arm")]
            // SAFETY: unmasks interrupts, as they were before `acquire`.
            unsafe {
                core::arch::asm!("cpsie i")
            };
        }
    }
}

#[cfg(feature = "heap")]
mod heap {
    //! A bump heap for `rsa` (never frees; enough to link and measure).

    use core::alloc::{GlobalAlloc, Layout};
    use core::cell::{Cell, UnsafeCell};
    use critical_section::Mutex;

    /// Heap size: in .bss, reported with the sections.
    pub const HEAP_SIZE: usize = 16 * 1024;

    struct Bump {
        next: Mutex<Cell<usize>>,
        memory: UnsafeCell<[u8; HEAP_SIZE]>,
    }

    // SAFETY: `next` is only touched inside critical sections and every
    // allocation hands out a disjoint range of `memory`.
    unsafe impl Sync for Bump {}

    // SAFETY: returns null when out of memory, otherwise a block of at
    // least `layout.size()` bytes aligned to `layout.align()` that no other
    // allocation overlaps.
    unsafe impl GlobalAlloc for Bump {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            let base = self.memory.get() as *mut u8;
            critical_section::with(|cs| {
                let next = self.next.borrow(cs);
                let start =
                    (base as usize + next.get()).next_multiple_of(layout.align()) - base as usize;
                match start.checked_add(layout.size()) {
                    Some(end) if end <= HEAP_SIZE => {
                        next.set(end);
                        base.wrapping_add(start)
                    }
                    _ => core::ptr::null_mut(),
                }
            })
        }

        unsafe fn dealloc(&self, _ptr: *mut u8, _layout: Layout) {}
    }

    #[global_allocator]
    static HEAP: Bump = Bump {
        next: Mutex::new(Cell::new(0)),
        memory: UnsafeCell::new([0; HEAP_SIZE]),
    };
}

/// (F): embedded-tls alone; the provider gives only random numbers, so
/// nothing is verified and nothing signs.
#[cfg(feature = "floor")]
mod variant {
    use super::{StubRng, StubSocket, black_box, block_on};
    use embedded_tls::{
        Aes128GcmSha256, CryptoProvider, MaxFragmentLength, TlsConfig, TlsConnection, TlsContext,
    };

    struct Floor<'a>(&'a mut StubRng);

    impl CryptoProvider for Floor<'_> {
        type CipherSuite = Aes128GcmSha256;
        type Signature = [u8; 0];

        fn rng(&mut self) -> impl embedded_tls::CryptoRngCore {
            &mut *self.0
        }
    }

    pub fn run() {
        let mut read_buffer = [0u8; 1024 + 5 + 1 + 16 + 256];
        let mut write_buffer = [0u8; 1024 + embedded_tls::TLS_RECORD_OVERHEAD];
        let mut rng = StubRng(black_box(1));
        let config = TlsConfig::new()
            .with_server_name(black_box("broker.example"))
            .with_max_fragment_length(MaxFragmentLength::Bits10);
        let mut connection =
            TlsConnection::new(StubSocket::new(), &mut read_buffer, &mut write_buffer);
        let result = block_on(async {
            connection
                .open(TlsContext::new(&config, Floor(&mut rng)))
                .await?;
            connection
                .write(black_box(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"))
                .await?;
            connection.flush().await?;
            let mut received = [0u8; 64];
            let n = connection.read(&mut received).await?;
            black_box(&received[..n]);
            connection.close().await.map_err(|(_, e)| e)?;
            Ok::<(), embedded_tls::TlsError>(())
        });
        black_box(result.is_ok());
    }
}

/// What the mqtts variants share: trust material, options, buffers.
#[cfg(any(feature = "tls-pin", feature = "pin", feature = "ca"))]
mod common {
    use mqtts::tls::{MaxFragmentLength, TlsOptions};
    use mqtts::trust::Trust;

    /// SHA-256 of tests/data/p256-selfsigned.der (a certificate pin).
    #[cfg(not(feature = "ca"))]
    pub static PINS: [mqtts::trust::Pin; 1] = [mqtts::pin_certificate!(
        "7A:72:12:C6:40:EB:B5:2B:8E:69:72:B2:67:C6:19:04:9E:96:DE:C0:C4:FE:40:62:13:2F:18:76:AB:B4:52:A9"
    )];

    /// A P-256 trust anchor (CA mode).
    #[cfg(feature = "ca")]
    pub static ANCHORS: [&[u8]; 1] = [include_bytes!("../../../tests/data/p256-selfsigned.der")];

    pub const FRAGMENT: MaxFragmentLength = MaxFragmentLength::Bytes1024;
    pub const TLS_READ: usize = FRAGMENT.read_buffer_len();
    pub const TLS_WRITE: usize = 1024;

    pub fn trust() -> Trust<'static> {
        #[cfg(feature = "ca")]
        return Trust::certificate_authorities(&ANCHORS);
        #[cfg(not(feature = "ca"))]
        return Trust::pinned(&PINS);
    }

    pub fn tls_options() -> TlsOptions<'static> {
        // A time, so that CA mode validates dates (without one it stops at
        // ConfigError::NoTimeSource); pins ignore it.
        TlsOptions::new(super::black_box("broker.example"), trust())
            .with_max_fragment_length(FRAGMENT)
            .with_unix_time(super::black_box(1_800_000_000))
    }

    /// A clock that reads an unpredictable time and may wait.
    #[cfg(any(feature = "pin", feature = "ca"))]
    #[derive(Clone)]
    pub struct StubTimer;

    #[cfg(any(feature = "pin", feature = "ca"))]
    impl mqtts::time::Timer for StubTimer {
        fn now(&self) -> mqtts::time::Millis {
            super::black_box(0)
        }

        async fn sleep_until(&mut self, deadline: mqtts::time::Millis) {
            super::may_wait().await;
            super::black_box(deadline);
        }
    }
}

/// (T): mqtts's TLS layer alone (trust check, CertificateVerify, guard).
#[cfg(feature = "tls-pin")]
mod variant {
    use super::common::{TLS_READ, TLS_WRITE, tls_options};
    use super::{StubRng, StubSocket, black_box, block_on};
    use embedded_io_async::{Read as _, Write as _};

    pub fn run() {
        let mut read_buffer = [0u8; TLS_READ];
        let mut write_buffer = [0u8; TLS_WRITE];
        let mut rng = StubRng(black_box(1));
        let options = tls_options();
        let result = block_on(async {
            let mut stream = mqtts::tls::connect(
                StubSocket::new(),
                &mut read_buffer,
                &mut write_buffer,
                &mut rng,
                &options,
            )
            .await?;
            stream
                .write_all(black_box(b"\x10\x0c\x00\x04MQTT\x04\x02\x00\x3c\x00\x00"))
                .await?;
            stream.flush().await?;
            let mut received = [0u8; 64];
            let n = stream.read(&mut received).await?;
            black_box(&received[..n]);
            stream.close().await.1
        });
        black_box(result.is_ok());
    }
}

/// (P), (C) and the extra key types: a whole MQTT session over TLS.
#[cfg(any(feature = "pin", feature = "ca"))]
mod variant {
    use super::common::{StubTimer, TLS_READ, TLS_WRITE, tls_options};
    use super::{StubRng, StubSocket, black_box, block_on};
    use mqtts::Session;
    use mqtts::client::{Buffers, Client, ConnectOptions, Event};
    use mqtts::mqtt::QoS;

    /// QoS 1 messages in flight at once.
    const IN_FLIGHT: usize = 4;

    /// Issue 6, item 2, checked on the 32-bit targets it is about: with
    /// full 16 KB records, everything a connection keeps besides the TLS
    /// read buffer fits 4 KiB. The client (which owns the TLS stream and
    /// its key schedule) and the session, plus the reference buffers of
    /// tests/footprint.rs: TLS write 1,152 (1,024 + 128), rx 512, tx 256,
    /// outbox 512, four messages in flight. A change that grows past it
    /// fails this build (the host test of the same sum, with 64-bit
    /// pointers, cannot check it).
    const STATE_AND_BUFFERS_EXCEPT_READ: usize = size_of::<
        Client<'static, 'static, mqtts::tls::TlsStream<'static, StubSocket, StubTimer>, StubTimer, 4>,
    >() + size_of::<Session<'static, 4>>()
        + (1024 + 128)
        + 512
        + 256
        + 512;
    const _: () = assert!(
        STATE_AND_BUFFERS_EXCEPT_READ <= 4096,
        "issue 6: a connection with full records needs more than the read buffer + 4 KiB"
    );

    pub fn run() {
        let mut tls_read = [0u8; TLS_READ];
        let mut tls_write = [0u8; TLS_WRITE];
        let mut rx = [0u8; 512];
        let mut tx = [0u8; 256];
        let mut outbox = [0u8; 1024];
        let mut session: Session<'_, IN_FLIGHT> = Session::new(&mut outbox);
        let mut rng = StubRng(black_box(1));
        let tls_options = tls_options();
        let subscriptions = [(black_box("devices/42/cmd"), QoS::AtLeastOnce)];
        let options = ConnectOptions::new(black_box("device-42"))
            .with_credentials(black_box("user"), black_box(b"password"))
            .with_keep_alive(60);
        let result = block_on(async {
            let (mut client, connected) = Client::connect_tls(
                StubSocket::new(),
                &mut rng,
                &tls_options,
                StubTimer,
                &mut session,
                Buffers {
                    tls_read: &mut tls_read,
                    tls_write: &mut tls_write,
                    rx: &mut rx,
                    tx: &mut tx,
                },
                &options,
            )
            .await?;
            black_box(&connected);
            let topic = black_box("devices/42/telemetry");
            client
                .publish(topic, black_box(b"{\"t\":21.5}"), QoS::AtMostOnce, false)
                .await?;
            client
                .publish(topic, black_box(b"{\"t\":21.6}"), QoS::AtLeastOnce, false)
                .await?;
            let granted = client.subscribe(&subscriptions).await?;
            black_box(&granted);
            // Messages and keep-alive pings until the server stops.
            for _ in 0..black_box(8u32) {
                match client.poll().await? {
                    Event::Message(message) => {
                        black_box((message.topic, message.payload));
                    }
                    other => {
                        black_box(&other);
                    }
                }
            }
            let transport = client.disconnect().await?;
            transport.close().await.1
        });
        black_box(result.is_ok());
    }
}
