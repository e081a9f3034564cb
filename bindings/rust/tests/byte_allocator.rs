//! ShardByteAllocator through the ArceOS traits, as a kernel would use it.
//! Runs against both libraries (see common/mod.rs).
mod common;

use common::{layout, leak, MIB};
use shardalloc::{AllocError, BaseAllocator, ByteAllocator, ShardByteAllocator};
use std::ptr::NonNull;

/// Generic over the trait, like ArceOS's allocator tests.
fn exercise<A: ByteAllocator>(a: &mut A) {
    // The first allocation of a thread (freestanding: of a CPU) makes its heap
    // in the region's metadata, which may take a segment: before measuring.
    let warm = a.alloc(layout(8, 8)).unwrap();
    a.dealloc(warm, layout(8, 8));
    let total = a.total_bytes();
    let avail = a.available_bytes();
    let mut blocks = Vec::new();
    for i in 0..1000usize {
        let l = layout(1 + i % 500, 1 << (i % 7));
        let p = a.alloc(l).unwrap();
        assert_eq!(p.as_ptr() as usize % l.align(), 0);
        blocks.push((p, l));
    }
    let used: usize = blocks.iter().map(|b| b.1.size()).sum();
    assert_eq!(a.used_bytes(), used);
    assert!(a.available_bytes() < avail - used);
    for (p, l) in blocks {
        a.dealloc(p, l);
    }
    assert_eq!(a.used_bytes(), 0);
    assert_eq!(a.available_bytes(), avail);
    assert_eq!(a.total_bytes(), total);
}

#[test]
fn init_alloc_dealloc_accounting() {
    let mut a = ShardByteAllocator::new();
    assert_eq!(a.total_bytes(), 0);
    assert_eq!(a.alloc(layout(8, 8)), Err(AllocError::NoMemory), "no memory before init");
    a.init(leak(16 * MIB, 4096) as usize, 16 * MIB);
    assert_eq!(a.total_bytes(), 16 * MIB);
    exercise(&mut a);
}

#[test]
fn add_memory_grows_the_allocator() {
    let mut a = ShardByteAllocator::new();
    let first = leak(2 * MIB, 4096) as usize;
    // The first add_memory of an empty allocator initializes it.
    a.add_memory(first, 2 * MIB).unwrap();
    assert_eq!(a.total_bytes(), 2 * MIB);
    let big = layout(4 * MIB, 16);
    assert_eq!(a.alloc(big), Err(AllocError::NoMemory));
    assert_eq!(a.add_memory(first + 4096, MIB), Err(AllocError::MemoryOverlap));
    a.add_memory(leak(8 * MIB, 4096) as usize, 8 * MIB).unwrap();
    assert_eq!(a.total_bytes(), 10 * MIB);
    let p = a.alloc(big).unwrap();
    assert_eq!(a.used_bytes(), 4 * MIB);
    a.dealloc(p, big);
    exercise(&mut a);
}

#[test]
fn errors() {
    let mut a = ShardByteAllocator::new();
    assert_eq!(a.try_init(0, 16 * MIB), Err(AllocError::InvalidParam));
    assert_eq!(a.try_init(leak(4096, 4096) as usize, 4096), Err(AllocError::InvalidParam));
    a.try_init(leak(4 * MIB, 4096) as usize, 4 * MIB).unwrap();
    assert_eq!(a.try_init(leak(4 * MIB, 4096) as usize, 4 * MIB), Err(AllocError::InvalidParam), "init twice");
    let mut x = 0u64;
    let foreign = NonNull::from(&mut x).cast::<u8>();
    assert_eq!(a.try_dealloc(foreign, layout(8, 8)), Err(AllocError::NotAllocated));
    let p = a.alloc(layout(40, 8)).unwrap();
    assert_eq!(a.try_dealloc(p, layout(40, 8)), Ok(()));
    assert_eq!(a.try_dealloc(p, layout(40, 8)), Err(AllocError::NotAllocated), "double free");
    assert_eq!(a.alloc(layout(1 << 40, 8)), Err(AllocError::NoMemory));
    assert_eq!(a.used_bytes(), 0);
    assert_eq!(format!("{}", AllocError::NotAllocated), "pointer was not allocated by this allocator");
}

#[test]
#[should_panic(expected = "not allocated")]
fn dealloc_of_a_foreign_pointer_panics() {
    let mut a = ShardByteAllocator::new();
    a.init(leak(2 * MIB, 4096) as usize, 2 * MIB);
    let mut x = 0u64;
    a.dealloc(NonNull::from(&mut x).cast(), layout(8, 8));
}

#[test]
#[should_panic(expected = "invalid parameter")]
fn init_with_too_little_memory_panics() {
    let mut a = ShardByteAllocator::new();
    a.init(leak(64 * 1024, 4096) as usize, 64 * 1024);
}
