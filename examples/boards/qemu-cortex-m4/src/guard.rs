//! The stacks and their guard.
//!
//! Two stacks (memory.x): the application (thread mode) runs on the
//! process stack (PSP) at the bottom of the RAM; exceptions run on the main
//! stack (MSP) at its top. So a fault in the application's stack never
//! needs that stack to be handled: the core stacks the fault's frame on PSP
//! (or fails to, which is itself a fault it reports) and runs the HardFault
//! handler on MSP.
//!
//! The MPU (PMSAv7, privileged default map for everything else) makes
//! three regions inaccessible, also to privileged code:
//! - the 4 KB under the application's stack (`_stack_guard`), where its
//!   first write past the bottom lands;
//! - the 512 KB under the RAM: QEMU maps nothing there, and a write into
//!   nothing is silently ignored on `mps2-an386`, so a frame larger than
//!   the 4 KB guard would go unnoticed without it;
//! - the lowest 32 bytes of the handler stack (`_handler_stack_guard`).
//!
//! The HardFault handler (`HardFault`, which replaces cortex-m-rt's) first
//! moves MSP back to the top of the handler stack if it is below its
//! bottom, without touching the stack, then reports: `PANIC - stack
//! overflow (...)` when the application's stack pointer is below its
//! stack, the faulting address is in the guard, or stacking the fault's
//! frame failed; otherwise the fault's status registers and where it
//! happened. The SysTick handler checks the application's stack pointer
//! too, and the painted guard words (`emulated::check`), every 0.5 s.

use mqtts_board_app::emulated;

unsafe extern "C" {
    static _stack_guard: u8;
    static _app_stack_bottom: u8;
    static _app_stack_top: u8;
    static _handler_stack_guard: u8;
    static _handler_stack_bottom: u8;
}

/// MPU registers (ARMv7-M ARM, B3.5).
const MPU_CTRL: usize = 0xE000_ED94;
const MPU_RNR: usize = 0xE000_ED98;
const MPU_RBAR: usize = 0xE000_ED9C;
const MPU_RASR: usize = 0xE000_EDA0;
/// MPU_CTRL: enable, with the default memory map for privileged accesses
/// outside the regions (HardFault and NMI run without the MPU: HFNMIENA 0).
const MPU_ENABLE_PRIVDEFENA: u32 = (1 << 2) | 1;
/// MPU_RASR: execute never, AP = 0b000 (no access at any privilege),
/// enabled; the size field is added per region.
const RASR_NO_ACCESS: u32 = (1 << 28) | 1;

/// System control block: configurable fault status, HardFault status,
/// MemManage and BusFault addresses.
const CFSR: usize = 0xE000_ED28;
const HFSR: usize = 0xE000_ED2C;
const MMFAR: usize = 0xE000_ED34;
const BFAR: usize = 0xE000_ED38;
/// CFSR.MMFSR: MMFAR holds the faulting address.
const MMARVALID: u32 = 1 << 7;
/// CFSR.MMFSR: stacking for an exception entry, or the lazy FP state
/// preservation, violated the MPU.
const MSTKERR: u32 = 1 << 4;
const MLSPERR: u32 = 1 << 5;
/// CFSR.BFSR: stacking for an exception entry failed on the bus.
const BUS_STKERR: u32 = 1 << 12;
/// EXC_RETURN bit 2: the interrupted code ran on PSP.
const EXC_RETURN_PSP: usize = 1 << 2;

fn read(addr: usize) -> u32 {
    // SAFETY: a System Control Space register of the Cortex-M4.
    unsafe { core::ptr::read_volatile(addr as *const u32) }
}

fn write(addr: usize, value: u32) {
    // SAFETY: a System Control Space register of the Cortex-M4.
    unsafe { core::ptr::write_volatile(addr as *mut u32, value) }
}

fn address(s: &u8) -> usize {
    core::ptr::from_ref(s) as usize
}

/// One MPU region of `1 << log2_size` bytes at `base` (aligned to its
/// size), inaccessible.
fn forbid(region: u32, base: usize, log2_size: u32) {
    debug_assert!(base % (1 << log2_size) == 0);
    write(MPU_RNR, region);
    write(MPU_RBAR, base as u32);
    write(MPU_RASR, RASR_NO_ACCESS | ((log2_size - 1) << 1));
}

/// Sets the three guard regions and turns the MPU on. Call once, at boot.
pub fn enable() {
    // SAFETY: linker symbols: only their addresses are used.
    let (guard, handler_guard) =
        unsafe { (address(&_stack_guard), address(&_handler_stack_guard)) };
    // 512 KB of nothing under the RAM, then the 4 KB guard.
    forbid(0, guard - (512 << 10), 19);
    forbid(1, guard, 12);
    forbid(2, handler_guard, 5);
    write(MPU_CTRL, MPU_ENABLE_PRIVDEFENA);
    cortex_m::asm::dsb();
    cortex_m::asm::isb();
}

/// Continues in `entry` on the application's stack (PSP, thread mode);
/// the caller's frames on MSP are abandoned, and MSP serves exceptions
/// from then on.
pub fn run_on_application_stack(entry: extern "C" fn() -> !) -> ! {
    // SAFETY: linker symbol: only its address is used.
    let top = unsafe { address(&_app_stack_top) };
    // SAFETY: the application's stack is free (painted, nothing on it);
    // CONTROL.SPSEL = 1 selects PSP in thread mode, and `entry` never
    // returns to this frame.
    unsafe {
        core::arch::asm!(
            "msr psp, {top}",
            "mrs {top}, control",
            "orr {top}, {top}, #2",
            "msr control, {top}",
            "isb",
            "bx {entry}",
            top = in(reg) top,
            entry = in(reg) entry,
            options(noreturn),
        )
    }
}

/// From the SysTick handler: an application stack pointer below its stack
/// (a frame that jumped over the guards without touching them) ends the
/// run.
pub fn check_application_stack_pointer() {
    let psp = cortex_m::register::psp::read() as usize;
    // SAFETY: linker symbol: only its address is used.
    let bottom = unsafe { address(&_app_stack_bottom) };
    if psp < bottom {
        emulated::fatal(format_args!(
            "stack overflow (sp {psp:#010x} below the stack at {bottom:#010x})"
        ));
    }
}

core::arch::global_asm!(
    r#"
    .section .HardFault.user, "ax"
    .global HardFault
    .type HardFault, %function
    .thumb_func
HardFault:
    mrs r0, psp
    mrs r1, msp
    mov r2, lr
    ldr r3, =_handler_stack_bottom
    cmp r1, r3
    bhs 1f
    ldr r3, =_stack_start
    msr msp, r3
1:
    b qemu_cortex_m4_fault
    .ltorg
    .size HardFault, . - HardFault
"#
);

/// Called by `HardFault` on the handler stack, with the application's and
/// the handler's stack pointers at the fault and its EXC_RETURN.
#[unsafe(no_mangle)]
extern "C" fn qemu_cortex_m4_fault(psp: usize, msp: usize, exc_return: usize) -> ! {
    // SAFETY: linker symbols: only their addresses are used.
    let (guard, bottom, top, handler_bottom) = unsafe {
        (
            address(&_stack_guard),
            address(&_app_stack_bottom),
            address(&_app_stack_top),
            address(&_handler_stack_bottom),
        )
    };
    let (cfsr, hfsr) = (read(CFSR), read(HFSR));
    let fault_address = (cfsr & MMARVALID != 0).then(|| read(MMFAR) as usize);
    if msp < handler_bottom {
        emulated::fatal(format_args!(
            "stack overflow in an exception handler (msp {msp:#010x} below {handler_bottom:#010x}, CFSR {cfsr:#010x})"
        ));
    }
    let on_psp = exc_return & EXC_RETURN_PSP != 0;
    let stacking_failed = cfsr & (MSTKERR | MLSPERR | BUS_STKERR) != 0;
    let in_guard = fault_address.is_some_and(|at| at < bottom && at >= guard - (512 << 10));
    if on_psp && (psp < bottom || in_guard || stacking_failed) {
        match fault_address {
            Some(at) => emulated::fatal(format_args!(
                "stack overflow (sp {psp:#010x}, access at {at:#010x} below the stack at {bottom:#010x})"
            )),
            None => emulated::fatal(format_args!(
                "stack overflow (sp {psp:#010x}, the exception frame did not fit above {bottom:#010x}, CFSR {cfsr:#010x})"
            )),
        }
    }
    // The exception frame: r0-r3, r12, lr, pc, xpsr.
    let frame = if on_psp { psp } else { msp };
    let pc = if on_psp && !(bottom..top).contains(&frame) {
        0
    } else {
        // SAFETY: a frame the core stacked on a stack that is mapped.
        unsafe { core::ptr::read_volatile((frame + 24) as *const u32) }
    };
    emulated::fatal(format_args!(
        "fault at pc {pc:#010x}: CFSR {cfsr:#010x}, HFSR {hfsr:#010x}, MMFAR {:#010x}, BFAR {:#010x}",
        read(MMFAR),
        read(BFAR)
    ))
}
