//! Test-only: the unit tests' allocator, which counts the allocations each thread makes and the
//! bytes they hold, so a test can hold the per-request path to the allocations it is allowed
//! and a cache's bound to the memory it keeps.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    // `const` and without a destructor: reading it never allocates.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
    // The memory this thread's live allocations take (each as the allocator's chunk; frees
    // from this thread subtract), which may dip below zero when another thread's are freed here.
    static HELD: Cell<i64> = const { Cell::new(0) };
}

fn held(delta: i64) {
    HELD.with(|n| n.set(n.get() + delta));
}

/// The chunk of an allocation of `size` bytes, as `crate::model::chunk` counts it.
fn chunk(size: usize) -> i64 {
    (size + 8).next_multiple_of(16).max(32) as i64
}

// SAFETY: every call is passed on to `System` unchanged; the count is a thread-local `Cell`.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        held(chunk(layout.size()));
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        held(-chunk(layout.size()));
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        held(chunk(layout.size()));
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|n| n.set(n.get() + 1));
        held(chunk(new_size) - chunk(layout.size()));
        // SAFETY: the caller's contract is `System`'s.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static COUNTING: Counting = Counting;

/// What `f` returns, and how many allocations (and reallocations) this thread made in it.
pub(crate) fn allocations_in<T>(f: impl FnOnce() -> T) -> (T, u64) {
    let before = ALLOCATIONS.with(Cell::get);
    let value = f();
    (value, ALLOCATIONS.with(Cell::get) - before)
}

/// What `f` returns, and how much more memory this thread's allocations hold after it than
/// before (what `f` kept, in allocator chunks).
pub(crate) fn memory_kept_by<T>(f: impl FnOnce() -> T) -> (T, i64) {
    let before = HELD.with(Cell::get);
    let value = f();
    (value, HELD.with(Cell::get) - before)
}
