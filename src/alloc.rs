//! Heap in use, as the allocator sees it: the binary's global allocator is
//! [`Counting`], the system allocator with a count of the bytes allocated and not yet
//! freed, and of the highest that count has been. `pipeline.memory_limit_mib` compares
//! this figure (plus the request bytes in flight), not the resident set size, which the
//! allocator keeps after a burst — a limit on RSS would refuse forever once a burst had
//! passed. Two relaxed atomic operations per allocation; the per-span path allocates
//! nothing, so the span rate does not see them.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

static IN_USE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
static COUNTING: AtomicU64 = AtomicU64::new(0);

/// The counting global allocator (`#[global_allocator]` in the binary).
pub struct Counting;

#[inline]
fn grew(n: usize) {
    let now = IN_USE.fetch_add(n as u64, Ordering::Relaxed) + n as u64;
    if now > PEAK.load(Ordering::Relaxed) {
        PEAK.fetch_max(now, Ordering::Relaxed);
    }
}

#[inline]
fn shrank(n: usize) {
    IN_USE.fetch_sub(n as u64, Ordering::Relaxed);
}

// SAFETY: every call is forwarded unchanged to `System`; only counters are kept beside.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: the caller's contract is passed on unchanged.
        unsafe { System.dealloc(ptr, layout) };
        shrank(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the caller's contract is passed on unchanged.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            if new_size >= layout.size() {
                grew(new_size - layout.size());
            } else {
                shrank(layout.size() - new_size);
            }
        }
        p
    }
}

/// Marks that [`Counting`] is the global allocator (the binary calls it at start), so
/// [`heap`] is a real figure; without it (libraries, tests) the memory limit has
/// nothing to measure and admits.
pub fn counting_installed() {
    COUNTING.store(1, Ordering::Relaxed);
}

/// Heap bytes in use now, when [`Counting`] is installed.
pub fn heap() -> Option<u64> {
    (COUNTING.load(Ordering::Relaxed) == 1).then(|| IN_USE.load(Ordering::Relaxed))
}

/// The highest heap in use since the start, when [`Counting`] is installed.
pub fn heap_peak() -> Option<u64> {
    (COUNTING.load(Ordering::Relaxed) == 1).then(|| PEAK.load(Ordering::Relaxed))
}
/// Resident set size of this process (Linux `/proc/self/statm`).
pub fn rss_bytes() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * 4096)
}
