//! The heap: a global allocator over a static buffer that counts its peak.

use core::cell::RefCell;

use critical_section::Mutex;

use crate::app::HeapUse;

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
