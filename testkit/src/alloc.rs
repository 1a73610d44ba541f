//! A counting global allocator: the product's allocator (`surfaces::allocator`), plus the
//! bytes live on the heap while counting is on.
//!
//! It exists for benchmarks that report exact heap figures (bytes per room, say), which
//! resident memory alone cannot give. Counting is off by default, and then costs one relaxed
//! load per allocation. A binary installs it with
//!
//! ```ignore
//! #[global_allocator]
//! static ALLOC: surfaces_testkit::alloc::Counting = surfaces_testkit::alloc::Counting::new();
//! ```
//!
//! then brackets what it measures with [`Counting::set_counting`] and reads
//! [`Counting::live`].

use std::alloc::{GlobalAlloc, Layout};

use std::sync::atomic::{AtomicBool, AtomicIsize, Ordering};
use surfaces::allocator::ALLOCATOR;

/// The product's allocator, counting live heap bytes while counting is on.
pub struct Counting {
    counting: AtomicBool,
    /// Bytes allocated minus bytes freed while counting was on (negative when more was freed
    /// than allocated).
    live: AtomicIsize,
}

impl Counting {
    /// Counting off, nothing counted.
    pub const fn new() -> Counting {
        Counting {
            counting: AtomicBool::new(false),
            live: AtomicIsize::new(0),
        }
    }

    /// Turns counting on or off (what was counted is kept).
    pub fn set_counting(&self, on: bool) {
        self.counting.store(on, Ordering::SeqCst);
    }

    /// Live heap bytes counted so far.
    pub fn live(&self) -> isize {
        self.live.load(Ordering::Relaxed)
    }

    fn is_counting(&self) -> bool {
        self.counting.load(Ordering::Relaxed)
    }
}

impl Default for Counting {
    fn default() -> Self {
        Counting::new()
    }
}

// SAFETY: every call is forwarded unchanged to the product's allocator; the counters do not
// allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.is_counting() {
            self.live
                .fetch_add(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { ALLOCATOR.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if self.is_counting() {
            self.live
                .fetch_sub(layout.size() as isize, Ordering::Relaxed);
        }
        unsafe { ALLOCATOR.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if self.is_counting() {
            self.live.fetch_add(
                new_size as isize - layout.size() as isize,
                Ordering::Relaxed,
            );
        }
        unsafe { ALLOCATOR.realloc(ptr, layout, new_size) }
    }
}
