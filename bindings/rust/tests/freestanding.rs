//! The freestanding library (no `hosted` feature) on the host: the kernel
//! API with threads as CPUs (common/mod.rs installs the CPU hook). The
//! region, byte-allocator and heap tests run against it too.
#![cfg(not(feature = "hosted"))]
mod common;

use common::{cpus, layout, leak, MIB};
use shardalloc::{set_cpu_hook, AllocError, Region, RegionAlloc};
use std::alloc::GlobalAlloc;

#[test]
fn the_cpu_hook_is_fixed_once_cpu_heaps_exist() {
    let r = unsafe { Region::new(leak(4 * MIB, 4096), 4 * MIB) }.unwrap();
    let p = r.alloc(layout(100, 8)).unwrap();
    // The same settings are accepted again, others are refused.
    assert_eq!(unsafe { set_cpu_hook(Some(cpus::current_cpu), cpus::MAX_CPUS) }, Ok(()));
    assert_eq!(unsafe { set_cpu_hook(Some(cpus::current_cpu), 4) }, Err(AllocError::InvalidParam));
    assert_eq!(unsafe { set_cpu_hook(None, 1) }, Err(AllocError::InvalidParam));
    assert!(r.check_heap() >= 1);
    unsafe { r.dealloc(p, layout(100, 8)) }.unwrap();
    assert_eq!(r.used_bytes(), 0);
}

#[test]
fn a_region_global_alloc_on_many_cpus() {
    static A: RegionAlloc = RegionAlloc::new();
    let r = unsafe { A.init(leak(128 * MIB, 4096), 128 * MIB) }.unwrap();
    let handles: Vec<_> = (0..4u8)
        .map(|t| {
            std::thread::spawn(move || unsafe {
                let mut v = Vec::new();
                for i in 0..5000usize {
                    let l = layout(1 + i % 3000, 8);
                    let p = A.alloc(l);
                    assert!(!p.is_null());
                    *p = t;
                    v.push((p as usize, l));
                }
                v
            })
        })
        .collect();
    let blocks: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    for (t, v) in blocks.into_iter().enumerate() {
        for (p, l) in v {
            assert_eq!(unsafe { *(p as *const u8) }, t as u8);
            unsafe { A.dealloc(p as *mut u8, l) }; // frees of other CPUs' blocks
        }
    }
    assert_eq!(r.used_bytes(), 0);
}
