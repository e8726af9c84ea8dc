//! The stack's paint (its peak use) and the guard words at its bottom.

use core::sync::atomic::{AtomicUsize, Ordering};

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

/// Paints the stack `[bottom, top)`: from `bottom` up to a little below the
/// caller's frame when it runs on that stack, or all of it when the caller
/// runs on another one (Cortex-M: `main` on the handler stack paints the
/// application's before it switches to it). Call once, early in `main`,
/// with interrupts off.
///
/// # Safety
///
/// `[bottom, top)` (4-byte aligned) must be the running stack, with nothing
/// below the caller's frame in use, or a stack nothing uses yet.
#[inline(never)]
pub unsafe fn paint_stack(bottom: usize, top: usize) {
    let marker = 0u32;
    let here = core::ptr::addr_of!(marker) as usize;
    let limit = if (bottom..top).contains(&here) {
        // Leave the frames above this one (and this one's) alone.
        here.saturating_sub(256) & !3
    } else {
        top
    };
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
