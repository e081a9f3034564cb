//! Memory for regions in tests: leaked on purpose. A region has no destroy
//! call and every thread that used it keeps a heap inside it until it exits,
//! so its memory must outlive the test (see the crate docs).
//!
//! Without the `hosted` feature the crate links the freestanding library,
//! which tells CPUs apart through a hook: here each thread plays a CPU of its
//! own (the tests/bare approach of the C++ suite). `leak` installs the hook,
//! so every test that makes a region has it before its first allocation.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};

pub const MIB: usize = 1 << 20;

/// `size` bytes aligned to `align`, from the system allocator, never freed.
pub fn leak(size: usize, align: usize) -> *mut u8 {
    threads_are_cpus();
    let p = unsafe { System.alloc(Layout::from_size_align(size, align).unwrap()) };
    assert!(!p.is_null(), "System.alloc({size}) failed");
    p
}

pub fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}

/// Freestanding library: installs a CPU hook that gives each thread a CPU id
/// of its own, once. Hosted: nothing (the library tells threads apart).
pub fn threads_are_cpus() {
    #[cfg(not(feature = "hosted"))]
    cpus::install();
}

#[cfg(not(feature = "hosted"))]
pub mod cpus {
    use std::cell::Cell;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Once;

    /// Ids are never reused: every thread of a test binary gets one.
    pub const MAX_CPUS: u32 = 256;
    static NEXT: AtomicU32 = AtomicU32::new(0);
    thread_local! {
        static ID: Cell<u32> = const { Cell::new(u32::MAX) };
    }

    /// The hook: a thread-local read after the first call (no allocation).
    pub extern "C" fn current_cpu() -> u32 {
        ID.with(|id| {
            if id.get() == u32::MAX {
                id.set(NEXT.fetch_add(1, Ordering::Relaxed));
            }
            id.get()
        })
    }

    pub fn install() {
        static ONCE: Once = Once::new();
        ONCE.call_once(|| unsafe { shardalloc::set_cpu_hook(Some(current_cpu), MAX_CPUS) }.expect("set_cpu_hook"));
    }
}
