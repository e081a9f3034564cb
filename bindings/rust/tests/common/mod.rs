//! Memory for regions in tests: leaked on purpose. A region has no destroy
//! call and every thread that used it keeps a heap inside it until it exits,
//! so its memory must outlive the test (see the crate docs).
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};

pub const MIB: usize = 1 << 20;

/// `size` bytes aligned to `align`, from the system allocator, never freed.
pub fn leak(size: usize, align: usize) -> *mut u8 {
    let p = unsafe { System.alloc(Layout::from_size_align(size, align).unwrap()) };
    assert!(!p.is_null(), "System.alloc({size}) failed");
    p
}

pub fn layout(size: usize, align: usize) -> Layout {
    Layout::from_size_align(size, align).unwrap()
}
