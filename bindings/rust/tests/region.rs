//! Region: alloc / dealloc, exact accounting, errors, threads, JSON statistics.
//! Runs against both libraries (hosted and, without the `hosted` feature,
//! freestanding with threads as CPUs: see common/mod.rs).
mod common;

use common::{layout, leak, MIB};
use shardalloc::{AllocError, Region};
use std::collections::HashSet;
use std::ptr::NonNull;

fn region(size: usize) -> Region {
    unsafe { Region::new(leak(size, 4096), size) }.expect("Region::new")
}

#[test]
fn alloc_dealloc_round_trip_and_content() {
    let r = region(8 * MIB);
    let mut blocks = Vec::new();
    for (i, size) in [1usize, 8, 24, 100, 1000, 8192, 20_000, 200_000, 3 * MIB].into_iter().enumerate() {
        let l = layout(size, 8);
        let p = r.alloc(l).expect("alloc");
        unsafe { std::ptr::write_bytes(p.as_ptr(), i as u8 + 1, size) };
        blocks.push((p, l, i as u8 + 1));
    }
    let distinct: HashSet<usize> = blocks.iter().map(|b| b.0.as_ptr() as usize).collect();
    assert_eq!(distinct.len(), blocks.len());
    for &(p, l, fill) in &blocks {
        let s = unsafe { std::slice::from_raw_parts(p.as_ptr(), l.size()) };
        assert!(s.iter().all(|&b| b == fill), "block of {} bytes was overwritten", l.size());
    }
    for (p, l, _) in blocks {
        unsafe { r.dealloc(p, l) }.expect("dealloc");
    }
    assert_eq!(r.used_bytes(), 0);
}

#[test]
fn alignment_is_honoured() {
    let r = region(16 * MIB);
    for align in [1usize, 2, 8, 16, 64, 256, 4096, 65536, MIB] {
        for size in [1usize, 100, 5000, 300_000] {
            let l = layout(size, align);
            let p = r.alloc(l).unwrap();
            assert_eq!(p.as_ptr() as usize % align, 0, "size {size} align {align}");
            unsafe { r.dealloc(p, l) }.unwrap();
        }
    }
    assert_eq!(r.used_bytes(), 0);
}

#[test]
fn accounting_is_exact() {
    let size = 8 * MIB;
    let r = region(size);
    assert_eq!(r.total_bytes(), size);
    assert_eq!(r.used_bytes(), 0);
    // This thread's (freestanding: CPU's) first allocation makes its heap in
    // the region's metadata, which may take a segment: before measuring.
    let warm = r.alloc(layout(8, 8)).unwrap();
    unsafe { r.dealloc(warm, layout(8, 8)) }.unwrap();
    let avail0 = r.available_bytes();
    assert!(avail0 > 6 * MIB && avail0 < size, "available {avail0}");
    let sizes = [10usize, 100, 1000, 10_000, 100_000, 1_000_000];
    let mut live = Vec::new();
    let mut sum = 0;
    for &s in &sizes {
        live.push((r.alloc(layout(s, 8)).unwrap(), layout(s, 8)));
        sum += s;
        assert_eq!(r.used_bytes(), sum);
        assert!(r.available_bytes() <= avail0 - sum);
    }
    for (p, l) in live {
        unsafe { r.dealloc(p, l) }.unwrap();
    }
    assert_eq!(r.used_bytes(), 0);
    assert_eq!(r.available_bytes(), avail0, "available_bytes returns to its start value");
    assert_eq!(r.total_bytes(), size);
}

#[test]
fn errors() {
    // Too small, null.
    assert_eq!(unsafe { Region::new(leak(MIB / 2, 4096), MIB / 2) }.unwrap_err(), AllocError::InvalidParam);
    assert_eq!(unsafe { Region::new(std::ptr::null_mut(), 4 * MIB) }.unwrap_err(), AllocError::InvalidParam);

    let mem = leak(4 * MIB, 4096);
    let r = unsafe { Region::new(mem, 4 * MIB) }.unwrap();
    // Overlapping memory is refused; memory too small for a segment is invalid.
    assert_eq!(unsafe { r.add_memory(mem.add(MIB), MIB) }, Err(AllocError::MemoryOverlap));
    assert_eq!(unsafe { r.add_memory(leak(4096, 4096), 4096) }, Err(AllocError::InvalidParam));
    assert_eq!(unsafe { r.add_memory(std::ptr::null_mut(), MIB) }, Err(AllocError::InvalidParam));

    // More than the region has: NoMemory, then add memory and retry.
    let big = layout(6 * MIB, 8);
    assert_eq!(r.alloc(big), Err(AllocError::NoMemory));
    assert_eq!(r.used_bytes(), 0);
    unsafe { r.add_memory(leak(16 * MIB, 4096), 16 * MIB) }.unwrap();
    assert_eq!(r.total_bytes(), 20 * MIB);
    let p = r.alloc(big).expect("alloc after add_memory");

    // Pointers the region did not hand out, and double frees, change nothing.
    let mut local = 0u64;
    let foreign = NonNull::from(&mut local).cast::<u8>();
    assert_eq!(unsafe { r.dealloc(foreign, layout(8, 8)) }, Err(AllocError::NotAllocated));
    let q = r.alloc(layout(64, 8)).unwrap();
    let interior = unsafe { NonNull::new_unchecked(q.as_ptr().add(8)) };
    assert_eq!(unsafe { r.dealloc(interior, layout(8, 8)) }, Err(AllocError::NotAllocated));
    unsafe { r.dealloc(q, layout(64, 8)) }.unwrap();
    assert_eq!(unsafe { r.dealloc(q, layout(64, 8)) }, Err(AllocError::NotAllocated));
    unsafe { r.dealloc(p, big) }.unwrap();
    assert_eq!(unsafe { r.dealloc(p, big) }, Err(AllocError::NotAllocated));
    assert_eq!(r.used_bytes(), 0);
}

#[test]
fn threads_allocate_and_free_each_others_blocks() {
    let r = region(64 * MIB);
    let (tx, rx) = std::sync::mpsc::channel::<Vec<(usize, usize)>>();
    let producers: Vec<_> = (0..4)
        .map(|t| {
            let tx = tx.clone();
            std::thread::spawn(move || {
                for round in 0..20 {
                    let batch: Vec<(usize, usize)> = (0..500)
                        .map(|i| {
                            let size = 8 + (i * 37 + t * 11 + round) % 3000;
                            let p = r.alloc(layout(size, 8)).unwrap();
                            unsafe { std::ptr::write_bytes(p.as_ptr(), 0xab, size) };
                            (p.as_ptr() as usize, size)
                        })
                        .collect();
                    tx.send(batch).unwrap();
                }
            })
        })
        .collect();
    drop(tx);
    // This thread frees every block another thread allocated (remote frees).
    let mut freed = 0;
    for batch in rx {
        for (p, size) in batch {
            let p = NonNull::new(p as *mut u8).unwrap();
            assert_eq!(unsafe { *p.as_ptr().add(size - 1) }, 0xab);
            unsafe { r.dealloc(p, layout(size, 8)) }.unwrap();
            freed += 1;
        }
    }
    for p in producers {
        p.join().unwrap();
    }
    assert_eq!(freed, 4 * 20 * 500);
    assert_eq!(r.used_bytes(), 0);
}

#[cfg(feature = "hosted")]
#[test]
fn stats_json() {
    let r = region(8 * MIB);
    let p = r.alloc(layout(100, 8)).unwrap();
    let mut small = [0u8; 16];
    let needed = r.stats_json(&mut small).unwrap_err();
    assert!(needed > 100);
    let mut buf = vec![0u8; needed + 1];
    let json = r.stats_json(&mut buf).unwrap();
    assert!(json.starts_with('{') && json.ends_with('}'), "{json}");
    assert!(json.contains("\"reserved_bytes\":8388608"), "{json}");
    assert!(json.contains(",\"block_size\":112,\"pages\":1,\"live_blocks\":1,\"live_bytes\":112,"), "{json}");
    unsafe { r.dealloc(p, layout(100, 8)) }.unwrap();
}

#[cfg(feature = "hosted")]
#[test]
fn process_heap_global_alloc() {
    use shardalloc::ShardAlloc;
    use std::alloc::GlobalAlloc;
    let a = ShardAlloc;
    unsafe {
        let p = a.alloc(layout(100, 8));
        assert!(!p.is_null());
        assert_eq!(ShardAlloc::usable_size(p), 112);
        let q = a.alloc(layout(24, 4096));
        assert_eq!(q as usize % 4096, 0);
        let p2 = a.realloc(p, layout(100, 8), 5000);
        assert!(ShardAlloc::usable_size(p2) >= 5000);
        a.dealloc(p2, layout(5000, 8));
        a.dealloc(q, layout(24, 4096));
    }
}
