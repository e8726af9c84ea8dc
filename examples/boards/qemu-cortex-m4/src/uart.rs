//! UART0 of `mps2-an386` (a CMSDK APB UART at 0x4000_4000, receive
//! interrupt IRQ 0 of the NVIC) as an `embedded_io_async` byte stream to
//! the AT modem.
//!
//! The CMSDK UART holds one received byte and one to send, no FIFO.
//! Receive is interrupt-driven: the handler moves the byte into a
//! [`RX_BUFFER`]-byte ring and wakes the reader, so a waiting read costs no
//! instructions. No byte is lost: when the ring is full the handler turns
//! the receive interrupt off and leaves the byte in the UART; QEMU then
//! stops reading the socket (its chardev backpressure: the UART takes a
//! byte only when its buffer is empty) until a read makes room and turns
//! the interrupt back on. Transmit waits until the byte before is gone
//! (TXFULL clear); QEMU sends each byte to the socket as it is written.

use core::cell::RefCell;
use core::convert::Infallible;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use critical_section::Mutex;

const UART0: usize = 0x4000_4000;
/// Received byte (read) / byte to send (write).
const DATA: usize = UART0;
/// TXFULL (bit 0), RXFULL (bit 1).
const STATE: usize = UART0 + 0x4;
/// TX enable, RX enable, TX interrupt enable, RX interrupt enable.
const CTRL: usize = UART0 + 0x8;
/// Interrupt status; write 1 to clear.
const INTSTATUS: usize = UART0 + 0xC;
/// The baud rate's divisor of the 25 MHz clock.
const BAUDDIV: usize = UART0 + 0x10;

const STATE_TXFULL: u32 = 1 << 0;
const STATE_RXFULL: u32 = 1 << 1;
const CTRL_TX_RX_ENABLE: u32 = 0b0011;
const CTRL_RX_INTERRUPT: u32 = 1 << 3;
const INTSTATUS_RX: u32 = 1 << 1;

/// UART0's receive interrupt on `mps2-an386` (its transmit one is 1).
pub const RX_IRQ: i16 = 0;
/// NVIC interrupt set-enable, IRQs 0 to 31.
const NVIC_ISER0: usize = 0xE000_E100;

/// Received bytes held for the reader: more than the driver asks for at
/// once (`AT+CIPRECVDATA` of 2,048 bytes plus its framing).
pub const RX_BUFFER: usize = 4096;
/// Bytes one `write` sends before it returns to the executor.
const TX_CHUNK: usize = 64;

fn reg(addr: usize) -> u32 {
    // SAFETY: a UART0 register of `mps2-an386`.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn set_reg(addr: usize, value: u32) {
    // SAFETY: a UART0 or NVIC register of `mps2-an386`.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
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
    /// Transmit and receive on, receive interrupt through the NVIC. Call
    /// once, before interrupts are on.
    pub fn init() -> Self {
        set_reg(CTRL, 0);
        // 115,200 baud from 25 MHz. QEMU's socket backend ignores the rate,
        // but its UART sends nothing until the divisor is valid (>= 16).
        set_reg(BAUDDIV, 25_000_000 / 115_200);
        set_reg(INTSTATUS, 0xF);
        set_reg(CTRL, CTRL_TX_RX_ENABLE | CTRL_RX_INTERRUPT);
        set_reg(NVIC_ISER0, 1 << RX_IRQ);
        Self { _private: () }
    }
}

/// Moves the received byte into the ring (interrupt context, or with
/// interrupts off); pauses the receive interrupt when the ring is full.
fn take_byte(rx: &mut Receiver) {
    // Cleared before the read: a byte that arrives after it raises the
    // interrupt again.
    set_reg(INTSTATUS, INTSTATUS_RX);
    if reg(STATE) & STATE_RXFULL != 0 {
        if rx.len == RX_BUFFER {
            rx.paused = true;
            set_reg(CTRL, CTRL_TX_RX_ENABLE);
        } else {
            let end = (rx.start + rx.len) % RX_BUFFER;
            rx.ring[end] = reg(DATA) as u8;
            rx.len += 1;
        }
    }
    if rx.len > 0 {
        if let Some(waker) = rx.waker.take() {
            waker.wake();
        }
    }
}

/// UART0's receive interrupt.
pub fn on_receive_interrupt() {
    critical_section::with(|cs| take_byte(&mut RX.borrow_ref_mut(cs)));
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
                    // Room again: take the byte that waited in the UART,
                    // and let the interrupt (and QEMU's reads from the
                    // socket) resume.
                    rx.paused = false;
                    take_byte(&mut rx);
                    set_reg(CTRL, CTRL_TX_RX_ENABLE | CTRL_RX_INTERRUPT);
                }
                Poll::Ready(Ok(n))
            })
        })
        .await
    }
}

impl embedded_io_async::Write for Uart {
    async fn write(&mut self, buf: &[u8]) -> Result<usize, Infallible> {
        let n = buf.len().min(TX_CHUNK);
        for &byte in &buf[..n] {
            while reg(STATE) & STATE_TXFULL != 0 {
                core::hint::spin_loop();
            }
            set_reg(DATA, u32::from(byte));
        }
        Ok(n)
    }

    async fn flush(&mut self) -> Result<(), Infallible> {
        while reg(STATE) & STATE_TXFULL != 0 {
            core::hint::spin_loop();
        }
        Ok(())
    }
}
