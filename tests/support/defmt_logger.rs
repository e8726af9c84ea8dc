//! With the `defmt` feature, host binaries need a global defmt logger to
//! link; this one discards everything (tests and tools use `Display`).

#[defmt::global_logger]
struct NoopLogger;

// SAFETY: the logger keeps no state, so there is nothing to guard.
unsafe impl defmt::Logger for NoopLogger {
    fn acquire() {}
    unsafe fn flush() {}
    unsafe fn release() {}
    unsafe fn write(_bytes: &[u8]) {}
}

defmt::timestamp!("");

#[defmt::panic_handler]
fn defmt_panic() -> ! {
    panic!("defmt panic")
}
