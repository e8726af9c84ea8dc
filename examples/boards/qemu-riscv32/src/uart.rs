//! UART0 of QEMU's `virt` (an NS16550A at 0x1000_0000, interrupt source 10
//! of the PLIC) as an `embedded_io_async` byte stream to the AT modem.
//!
//! Receive is interrupt-driven: the handler moves the 16-byte FIFO into a
//! [`RX_BUFFER`]-byte ring and wakes the reader, so a waiting read costs no
//! instructions. No byte is lost: when the ring is full the handler turns
//! the receive interrupt off and leaves the bytes in the FIFO; QEMU then
//! stops reading the socket (its chardev backpressure) until a read makes
//! room and turns the interrupt back on. Transmit waits for the FIFO to be
//! empty (THRE) and writes up to 16 bytes at a time; QEMU sends them to the
//! socket at once, so the wait is short.

use core::cell::RefCell;
use core::convert::Infallible;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use critical_section::Mutex;

const UART0: usize = 0x1000_0000;
/// Receive buffer / transmit holding register.
const RBR_THR: usize = UART0;
/// Interrupt enable.
const IER: usize = UART0 + 1;
/// FIFO control (write).
const FCR: usize = UART0 + 2;
/// Line control.
const LCR: usize = UART0 + 3;
/// Modem control.
const MCR: usize = UART0 + 4;
/// Line status.
const LSR: usize = UART0 + 5;

const IER_RX_AVAILABLE: u8 = 0x01;
const LSR_DATA_READY: u8 = 0x01;
const LSR_THR_EMPTY: u8 = 0x20;
const LSR_TX_IDLE: u8 = 0x40;
/// The 16550's transmit FIFO.
const TX_FIFO: usize = 16;

/// The PLIC on `virt`; context 0 is hart 0 in machine mode.
const PLIC: usize = 0x0C00_0000;
const PLIC_ENABLE_CONTEXT0: usize = PLIC + 0x2000;
const PLIC_THRESHOLD_CONTEXT0: usize = PLIC + 0x20_0000;
const PLIC_CLAIM_CONTEXT0: usize = PLIC + 0x20_0004;
/// UART0's interrupt source on `virt`.
const UART0_IRQ: usize = 10;

/// Received bytes held for the reader: more than the driver asks for at
/// once (`AT+CIPRECVDATA` of 2,048 bytes plus its framing).
pub const RX_BUFFER: usize = 4096;

fn reg(addr: usize) -> u8 {
    // SAFETY: a UART0 register of the `virt` machine.
    unsafe { core::ptr::read_volatile(addr as *const u8) }
}

fn set_reg(addr: usize, value: u8) {
    // SAFETY: a UART0 register of the `virt` machine.
    unsafe { core::ptr::write_volatile(addr as *mut u8, value) }
}

fn set_word(addr: usize, value: u32) {
    // SAFETY: a PLIC register of the `virt` machine.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

fn word(addr: usize) -> u32 {
    // SAFETY: a PLIC register of the `virt` machine.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

struct Receiver {
    ring: [u8; RX_BUFFER],
    start: usize,
    len: usize,
    /// The receive interrupt is off because the ring was full.
    paused: bool,
    waker: Option<Waker>,
}

static RX: Mutex<RefCell<Receiver>> = Mutex::new(RefCell::new(Receiver {
    ring: [0; RX_BUFFER],
    start: 0,
    len: 0,
    paused: false,
    waker: None,
}));

/// UART0, once [`Uart::init`] set it up.
pub struct Uart {
    _private: (),
}

impl Uart {
    /// 8N1 with FIFOs, receive interrupt through the PLIC to this hart's
    /// machine external interrupt. Call once, before interrupts are on.
    pub fn init() -> Self {
        set_reg(IER, 0);
        // 8 data bits, no parity, 1 stop bit. The divisor (baud rate) means
        // nothing to QEMU's socket backend.
        set_reg(LCR, 0x03);
        // FIFOs on and cleared; interrupt at the first byte.
        set_reg(FCR, 0x07);
        // DTR, RTS, OUT2 (the interrupt line on PC-style boards).
        set_reg(MCR, 0x0B);
        set_word(PLIC + 4 * UART0_IRQ, 1);
        set_word(PLIC_THRESHOLD_CONTEXT0, 0);
        set_word(PLIC_ENABLE_CONTEXT0, 1 << UART0_IRQ);
        set_reg(IER, IER_RX_AVAILABLE);
        // SAFETY: the handler below is ready.
        unsafe { riscv::register::mie::set_mext() };
        Self { _private: () }
    }
}

/// Moves what the FIFO holds into the ring (interrupt context, or with
/// interrupts off); pauses the receive interrupt when the ring is full.
fn drain_fifo(rx: &mut Receiver) {
    while reg(LSR) & LSR_DATA_READY != 0 {
        if rx.len == RX_BUFFER {
            rx.paused = true;
            set_reg(IER, 0);
            break;
        }
        let end = (rx.start + rx.len) % RX_BUFFER;
        rx.ring[end] = reg(RBR_THR);
        rx.len += 1;
    }
    if rx.len > 0 {
        if let Some(waker) = rx.waker.take() {
            waker.wake();
        }
    }
}

#[riscv_rt::core_interrupt(riscv::interrupt::Interrupt::MachineExternal)]
fn machine_external() {
    loop {
        let source = word(PLIC_CLAIM_CONTEXT0);
        if source == 0 {
            break;
        }
        if source as usize == UART0_IRQ {
            critical_section::with(|cs| drain_fifo(&mut RX.borrow_ref_mut(cs)));
        }
        set_word(PLIC_CLAIM_CONTEXT0, source);
    }
}

impl embedded_io::ErrorType for Uart {
    type Error = Infallible;
}

impl embedded_io_async::Read for Uart {
    /// Cancel-safe: bytes stay in the ring until a read returns them.
    async fn read(&mut self, buf: &mut [u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        poll_fn(|cx| {
            critical_section::with(|cs| {
                let mut rx = RX.borrow_ref_mut(cs);
                if rx.len == 0 {
                    rx.waker = Some(cx.waker().clone());
                    return Poll::Pending;
                }
                let mut n = 0;
                while n < buf.len() && rx.len > 0 {
                    buf[n] = rx.ring[rx.start];
                    rx.start = (rx.start + 1) % RX_BUFFER;
                    rx.len -= 1;
                    n += 1;
                }
                if rx.paused {
                    // Room again: take what waited in the FIFO, and let the
                    // interrupt (and QEMU's reads from the socket) resume.
                    rx.paused = false;
                    drain_fifo(&mut rx);
                    if !rx.paused {
                        set_reg(IER, IER_RX_AVAILABLE);
                    }
                }
                Poll::Ready(Ok(n))
            })
        })
        .await
    }
}

impl embedded_io_async::Write for Uart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        if buf.is_empty() {
            return Ok(0);
        }
        while reg(LSR) & LSR_THR_EMPTY == 0 {
            core::hint::spin_loop();
        }
        let n = buf.len().min(TX_FIFO);
        for &byte in &buf[..n] {
            set_reg(RBR_THR, byte);
        }
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        while reg(LSR) & LSR_TX_IDLE == 0 {
            core::hint::spin_loop();
        }
        Ok(())
    }
}
