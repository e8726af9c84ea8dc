//! [`EmulatedBoard`]: the [`Board`] of an emulated machine, and the RAM
//! figures it reports.

use core::cell::Cell;

use log::info;

use super::heap::PeakHeap;
use super::stack::{StackUse, stack_use};
use super::watchdog::feed_watchdog;
use crate::app::{Board, HeapUse};

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
