//! The stack's guard: a locked PMP entry makes the 4 KB under the stack
//! (`_stack_guard`..`_stack_bottom`, memory.x) inaccessible, also to
//! machine mode, so the first write past the stack's bottom traps. The trap
//! entry (`_start_trap`, which replaces riscv-rt's) checks the stack pointer
//! before it saves anything on the stack: below the stack's bottom, it
//! switches to the top of the stack (the firmware ends, its frames are not
//! needed any more) and reports `PANIC - stack overflow`. Any trap taken
//! with such a stack pointer is reported the same way, so a frame that
//! jumped over the guard is caught at the next interrupt at the latest.
//!
//! The paint under it (`emulated::stack_use`, the guard words) measures the
//! peak and is checked by the timer interrupt as a second line.

use mqtts_board_app::emulated;

unsafe extern "C" {
    static _stack_guard: u8;
}

/// PMP address mode NAPOT, locked (applies to machine mode), no R/W/X.
const PMP_LOCKED_NAPOT_NO_ACCESS: usize = 0x80 | 0x18;
/// The guard's size (memory.x).
const GUARD_SIZE: usize = 4096;

/// Locks PMP entry 0 over the guard. Until the next reset nothing, machine
/// mode included, can read, write or run it.
pub fn lock() {
    let base = core::ptr::addr_of!(_stack_guard) as usize;
    // NAPOT: the base (aligned to the size) with the low bits encoding the
    // size (RISC-V privileged spec, 3.7.1).
    let address = (base >> 2) | ((GUARD_SIZE / 2 - 1) >> 2);
    // SAFETY: PMP entry 0 is used by nothing else; the guard holds nothing.
    unsafe {
        core::arch::asm!(
            "csrw pmpaddr0, {address}",
            "csrw pmpcfg0, {config}",
            address = in(reg) address,
            config = in(reg) PMP_LOCKED_NAPOT_NO_ACCESS,
        );
    }
}

core::arch::global_asm!(
    r#"
    .section .trap.start, "ax"
    .balign 4
    .global _start_trap
_start_trap:
    csrw mscratch, t0
    la t0, _stack_bottom
    bltu sp, t0, 1f
    csrr t0, mscratch
    j _default_start_trap
1:
    mv a0, sp
    csrr a1, mepc
    la sp, _stack_start
    j qemu_riscv32_stack_overflow
"#
);

/// Called by `_start_trap` on the top of the stack.
#[unsafe(no_mangle)]
extern "C" fn qemu_riscv32_stack_overflow(sp: usize, pc: usize) -> ! {
    emulated::fatal(format_args!(
        "stack overflow (sp {sp:#010x} below the stack, at pc {pc:#010x})"
    ))
}
