//! shardalloc for Rust: a lock-free multi-thread memory allocator (mimalloc's
//! algorithm, free-list sharding) as a `#[global_allocator]`, as first-class
//! heaps, and as a region allocator for kernels.
//!
//! `build.rs` compiles shardalloc's C++ sources from this repository with
//! the system's C++ compiler (`c++`, or `CXX`; for a cross target
//! `<arch>-linux-gnu-g++`): a path or git dependency is the whole set-up, no
//! CMake build beforehand, no crates. A library built beforehand can be
//! linked instead (`SHARDALLOC_LIB_DIR`; see `build.rs`).
//!
//! # A Linux program (feature `hosted`, the default)
//!
//! ```toml
//! [dependencies]
//! shardalloc = { path = "../shardalloc/bindings/rust" }
//! ```
//!
//! ```
//! # #[cfg(feature = "hosted")]
//! #[global_allocator]
//! static GLOBAL: shardalloc::ShardAlloc = shardalloc::ShardAlloc;
//!
//! fn main() {
//! # #[cfg(feature = "hosted")] {
//!     let v: Vec<String> = (0..1000).map(|i| i.to_string()).collect();
//!     assert_eq!(v[999], "999");
//!     // Statistics of the process heap (include/shardalloc/stats.h).
//!     let s = shardalloc::Stats::process();
//!     assert!(s.live_blocks >= 1000);
//! # }
//! }
//! ```
//!
//! Everything is available: [`ShardAlloc`] (the process heap, memory from the
//! OS), [`Heap`] (first-class heaps: [`Heap::new`] over OS memory or
//! [`Heap::new_in_region`], dropped whole), [`Region`], [`RegionAlloc`],
//! [`StaticRegionAlloc`] and [`ShardByteAllocator`] (regions over memory the
//! program hands over), and [`Stats`]. Threads may call anything at once.
//!
//! # A kernel (`default-features = false`)
//!
//! ```toml
//! [dependencies]
//! shardalloc = { path = "../shardalloc/bindings/rust", default-features = false }
//! ```
//!
//! Without `hosted` the crate links the freestanding library (no libc, no
//! libstdc++; it needs `memcpy`, `memset` and possibly the compiler runtime's
//! bit-count helpers, see `docs/kernel.md`) and has the region types and
//! region-bound heaps only: [`Region`], [`RegionAlloc`],
//! [`StaticRegionAlloc`], [`ShardByteAllocator`] (ArceOS's interface),
//! [`Heap::new_in_region`], plus `set_cpu_hook` and `set_fatal_hook` (the
//! kernel's hooks, `region.h`).
//!
//! ```ignore
//! use shardalloc::{RegionAlloc, set_cpu_hook};
//!
//! #[global_allocator]
//! static HEAP: RegionAlloc = RegionAlloc::new();
//!
//! extern "C" fn this_cpu() -> u32 { read_tp() as u32 }   // a register read
//!
//! pub fn heap_init(start: *mut u8, size: usize) {         // boot CPU, before the others start
//!     unsafe {
//!         set_cpu_hook(Some(this_cpu), MAX_CPUS).unwrap();
//!         HEAP.init(start, size).unwrap();
//!     }
//! }
//! ```
//!
//! In a kernel the freestanding library gives each CPU its own heap, found
//! through the CPU hook, and has no locks: each allocation and deallocation
//! must run on one CPU from entry to return, with no other shardalloc call
//! starting on that CPU meanwhile (disable preemption, and interrupts if
//! handlers allocate, around each call). The safe methods of this crate
//! assume that contract, as every kernel `GlobalAlloc` does.
//!
//! # Regions
//!
//! A *region* is an allocator over memory its caller hands over (a kernel's
//! heap, a static pool, a mapping): `shard_region_init` / `add_memory` /
//! `alloc` / `dealloc`, lock-free on any number of threads, with exact
//! `total / used / available` byte counts (see `include/shardalloc/region.h`).
//! Memory handed to a region must stay valid, and must not be used otherwise,
//! for as long as any thread that used the region may still run: each thread
//! keeps its heap inside the region and gives it back when it exits. In
//! practice: hand over `'static` memory (a static, a leaked allocation, a
//! mapping that is never unmapped).
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]
// The docs name the hosted items also when built without them.
#![cfg_attr(not(feature = "hosted"), allow(rustdoc::broken_intra_doc_links))]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// The C API (`include/shardalloc/region.h`, `heap.h`, `shardalloc.h`, `stats.h`).
///
/// Functions of the hosted library only (process heap, OS heaps,
/// statistics) exist with the `hosted` feature; `shard_set_cpu_hook` and
/// `shard_set_fatal_hook` exist without it (the freestanding library).
#[allow(non_camel_case_types, missing_docs)]
pub mod ffi {
    use core::ffi::c_void;
    use core::marker::{PhantomData, PhantomPinned};

    // C's int, unsigned and char (spelled out rather than core::ffi::c_int,
    // which Rust 1.63 lacks). char is unsigned on Arm, RISC-V, PowerPC, s390x.
    pub type c_int = i32;
    pub type c_uint = u32;
    #[cfg(any(
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv32",
        target_arch = "riscv64",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "s390x"
    ))]
    pub type c_char = u8;
    #[cfg(not(any(
        target_arch = "aarch64",
        target_arch = "arm",
        target_arch = "riscv32",
        target_arch = "riscv64",
        target_arch = "powerpc",
        target_arch = "powerpc64",
        target_arch = "s390x"
    )))]
    pub type c_char = i8;

    /// Opaque: the region's state lives inside the memory it manages.
    #[repr(C)]
    pub struct shard_region {
        _private: [u8; 0],
        _marker: PhantomData<(*mut u8, PhantomPinned)>,
    }

    /// Opaque: a first-class heap.
    #[repr(C)]
    pub struct shard_heap {
        _private: [u8; 0],
        _marker: PhantomData<(*mut u8, PhantomPinned)>,
    }

    /// `enum shard_status` (a C `int`).
    pub type shard_status = c_int;
    pub const SHARD_OK: shard_status = 0;
    pub const SHARD_INVALID_PARAM: shard_status = 1;
    pub const SHARD_MEMORY_OVERLAP: shard_status = 2;
    pub const SHARD_NO_MEMORY: shard_status = 3;
    pub const SHARD_NOT_ALLOCATED: shard_status = 4;

    /// Smallest size `shard_region_init` accepts.
    pub const SHARD_REGION_MIN_SIZE: usize = 1 << 20;
    /// Smallest span `shard_heap_new_in_region` takes from a region.
    pub const SHARD_HEAP_REGION_MIN_BYTES: usize = 1 << 20;
    /// Room for the size classes in [`shard_stats`].
    pub const SHARD_STATS_MAX_CLASSES: usize = 64;

    /// `shard_class_stats` (stats.h): one size class.
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
    pub struct shard_class_stats {
        pub block_size: u64,
        pub pages: u64,
        pub live_blocks: u64,
        pub live_bytes: u64,
        pub capacity_blocks: u64,
    }

    /// `shard_stats` (stats.h): statistics of the process heap, a region or a
    /// first-class heap; the crate calls it [`Stats`](crate::Stats).
    #[repr(C)]
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct shard_stats {
        pub class_count: u64,
        pub classes: [shard_class_stats; SHARD_STATS_MAX_CLASSES],
        pub live_blocks: u64,
        pub live_bytes: u64,
        pub pages: u64,
        pub segments: u64,
        pub peak_segments: u64,
        pub segment_size: u64,
        pub peak_bytes: u64,
        pub reserved_bytes: u64,
        pub arenas: u64,
        pub heaps: u64,
        pub heaps_owned: u64,
        pub heaps_abandoned: u64,
        pub remote_frees: u64,
        pub purged_bytes: u64,
        pub heaps_adopted: u64,
        pub heaps_swept: u64,
    }

    // Both libraries: regions and first-class heaps bound to a region.
    extern "C" {
        pub fn shard_region_init(out: *mut *mut shard_region, start: *mut c_void, size: usize) -> shard_status;
        pub fn shard_region_add_memory(r: *mut shard_region, start: *mut c_void, size: usize) -> shard_status;
        pub fn shard_region_alloc(r: *mut shard_region, size: usize, align: usize, out: *mut *mut c_void)
            -> shard_status;
        pub fn shard_region_dealloc(r: *mut shard_region, ptr: *mut c_void, size: usize, align: usize)
            -> shard_status;
        pub fn shard_region_total_bytes(r: *const shard_region) -> usize;
        pub fn shard_region_used_bytes(r: *const shard_region) -> usize;
        pub fn shard_region_available_bytes(r: *const shard_region) -> usize;
        pub fn shard_region_check_heap(r: *mut shard_region) -> usize;
        pub fn shard_region_collect(r: *mut shard_region) -> shard_status;

        pub fn shard_heap_new_in_region(r: *mut shard_region, bytes: usize) -> *mut shard_heap;
        pub fn shard_heap_destroy(h: *mut shard_heap);
        pub fn shard_heap_malloc(h: *mut shard_heap, size: usize) -> *mut c_void;
        pub fn shard_heap_calloc(h: *mut shard_heap, count: usize, size: usize) -> *mut c_void;
        pub fn shard_heap_malloc_aligned(h: *mut shard_heap, size: usize, align: usize) -> *mut c_void;
        pub fn shard_heap_realloc(h: *mut shard_heap, ptr: *mut c_void, size: usize) -> *mut c_void;
        pub fn shard_heap_free(h: *mut shard_heap, ptr: *mut c_void);
        pub fn shard_heap_used_bytes(h: *const shard_heap) -> usize;
    }

    // The hosted library only.
    #[cfg(feature = "hosted")]
    extern "C" {
        pub fn shard_malloc(size: usize) -> *mut c_void;
        pub fn shard_calloc(count: usize, size: usize) -> *mut c_void;
        pub fn shard_realloc(ptr: *mut c_void, size: usize) -> *mut c_void;
        pub fn shard_malloc_aligned(size: usize, align: usize) -> *mut c_void;
        pub fn shard_free(ptr: *mut c_void);
        pub fn shard_usable_size(ptr: *const c_void) -> usize;
        pub fn shard_check_heap() -> usize;
        pub fn shard_is_checked() -> c_int;

        pub fn shard_heap_new() -> *mut shard_heap;

        pub fn shard_size_class(size: usize) -> c_uint;
        pub fn shard_stats_get(out: *mut shard_stats);
        pub fn shard_region_stats(r: *const shard_region, out: *mut shard_stats) -> shard_status;
        pub fn shard_heap_stats(h: *const shard_heap, out: *mut shard_stats) -> shard_status;
        pub fn shard_stats_to_json(s: *const shard_stats, buf: *mut c_char, len: usize) -> usize;
        pub fn shard_stats_json(buf: *mut c_char, len: usize) -> usize;
        pub fn shard_region_stats_json(r: *const shard_region, buf: *mut c_char, len: usize) -> usize;
    }

    // The freestanding library only (src/platform/bare).
    #[cfg(not(feature = "hosted"))]
    extern "C" {
        pub fn shard_set_cpu_hook(current_cpu: Option<extern "C" fn() -> c_uint>, cpu_count: c_uint) -> shard_status;
        pub fn shard_set_fatal_hook(fatal: Option<extern "C" fn(what: *const c_char, ptr: *const c_void)>);
    }
}

/// Why a region call failed (ArceOS's `AllocError`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AllocError {
    /// A null pointer, a size too small (init needs 1 MiB), a bad alignment.
    InvalidParam,
    /// `add_memory` was given memory that overlaps memory the region has.
    MemoryOverlap,
    /// The request cannot be served now: add memory and retry.
    NoMemory,
    /// `dealloc` of a pointer this region did not hand out (or already freed).
    NotAllocated,
}

impl fmt::Display for AllocError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AllocError::InvalidParam => "invalid parameter",
            AllocError::MemoryOverlap => "memory overlaps memory the allocator already has",
            AllocError::NoMemory => "out of memory",
            AllocError::NotAllocated => "pointer was not allocated by this allocator",
        })
    }
}

/// `Result` of allocator calls (ArceOS's `AllocResult`).
pub type AllocResult<T = ()> = Result<T, AllocError>;

fn check(status: ffi::shard_status) -> AllocResult {
    match status {
        ffi::SHARD_OK => Ok(()),
        ffi::SHARD_INVALID_PARAM => Err(AllocError::InvalidParam),
        ffi::SHARD_MEMORY_OVERLAP => Err(AllocError::MemoryOverlap),
        ffi::SHARD_NO_MEMORY => Err(AllocError::NoMemory),
        _ => Err(AllocError::NotAllocated),
    }
}

// ---- Region -------------------------------------------------------------------

/// A handle to a region. Copyable: a region is never destroyed, and every
/// call is safe from any number of threads at once.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Region {
    raw: NonNull<ffi::shard_region>,
}

// SAFETY: every shard_region_* function may be called from any thread at once.
unsafe impl Send for Region {}
unsafe impl Sync for Region {}

impl fmt::Debug for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Region")
            .field("at", &self.raw)
            .field("total_bytes", &self.total_bytes())
            .field("used_bytes", &self.used_bytes())
            .field("available_bytes", &self.available_bytes())
            .finish()
    }
}

impl Region {
    /// Turns `[start, start + size)` into a region (any alignment; at least
    /// [`ffi::SHARD_REGION_MIN_SIZE`] bytes).
    ///
    /// # Safety
    /// The memory must be valid for reads and writes, used by nothing else,
    /// and stay so while any thread that used the region may still run.
    pub unsafe fn new(start: *mut u8, size: usize) -> AllocResult<Region> {
        let mut out: *mut ffi::shard_region = ptr::null_mut();
        check(ffi::shard_region_init(&mut out, start.cast(), size))?;
        NonNull::new(out).map(|raw| Region { raw }).ok_or(AllocError::InvalidParam)
    }

    /// Wraps a region made by the C API.
    ///
    /// # Safety
    /// `raw` must come from `shard_region_init`.
    pub unsafe fn from_raw(raw: NonNull<ffi::shard_region>) -> Region {
        Region { raw }
    }

    /// The C handle.
    pub fn as_raw(&self) -> *mut ffi::shard_region {
        self.raw.as_ptr()
    }

    /// Hands more memory over (at least one 512 KiB segment must fit in it).
    ///
    /// # Safety
    /// As for [`Region::new`].
    pub unsafe fn add_memory(&self, start: *mut u8, size: usize) -> AllocResult {
        check(ffi::shard_region_add_memory(self.raw.as_ptr(), start.cast(), size))
    }

    /// Allocates `layout.size()` bytes aligned to `layout.align()` (size 0
    /// gives a minimal block).
    pub fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        let mut out: *mut core::ffi::c_void = ptr::null_mut();
        // SAFETY: the region is valid (constructor contract); out is a valid pointer.
        check(unsafe { ffi::shard_region_alloc(self.raw.as_ptr(), layout.size(), layout.align(), &mut out) })?;
        NonNull::new(out.cast()).ok_or(AllocError::NoMemory)
    }

    /// Gives a block back. A pointer this region did not hand out (or one
    /// already given back) gives [`AllocError::NotAllocated`] and changes nothing.
    ///
    /// # Safety
    /// `layout` must be the one the block was allocated with, and nothing may
    /// use the block afterwards.
    pub unsafe fn dealloc(&self, ptr: NonNull<u8>, layout: Layout) -> AllocResult {
        check(ffi::shard_region_dealloc(self.raw.as_ptr(), ptr.as_ptr().cast(), layout.size(), layout.align()))
    }

    /// Sum of the sizes handed over by `new` and `add_memory`.
    pub fn total_bytes(&self) -> usize {
        // SAFETY: valid region.
        unsafe { ffi::shard_region_total_bytes(self.raw.as_ptr()) }
    }

    /// Sum of the sizes of live allocations.
    pub fn used_bytes(&self) -> usize {
        // SAFETY: valid region.
        unsafe { ffi::shard_region_used_bytes(self.raw.as_ptr()) }
    }

    /// An upper bound on what can still be allocated (total minus used,
    /// metadata and rounding).
    pub fn available_bytes(&self) -> usize {
        // SAFETY: valid region.
        unsafe { ffi::shard_region_available_bytes(self.raw.as_ptr()) }
    }

    /// Checks the calling thread's (in a kernel: CPU's) heap in the region;
    /// returns the number of blocks it looked at. An inconsistency is a
    /// fatal error (hosted: a line on stderr and `abort()`; freestanding: the
    /// fatal hook).
    pub fn check_heap(&self) -> usize {
        // SAFETY: valid region.
        unsafe { ffi::shard_region_check_heap(self.raw.as_ptr()) }
    }

    /// Gives back to the region what the calling thread's (in a kernel:
    /// CPU's) heap keeps: its empty pages and the pages other threads freed
    /// its blocks into (region.h, `shard_region_collect`). For an idle CPU.
    pub fn collect(&self) {
        // SAFETY: valid region; the call only returns SHARD_OK for one.
        unsafe {
            ffi::shard_region_collect(self.raw.as_ptr());
        }
    }

    /// The region's statistics (hosted library only).
    #[cfg(feature = "hosted")]
    pub fn stats(&self) -> Stats {
        let mut s = MaybeUninit::<Stats>::zeroed();
        // SAFETY: valid region; s is writable (and all-integer: zeroed is valid).
        unsafe {
            ffi::shard_region_stats(self.raw.as_ptr(), s.as_mut_ptr());
            s.assume_init()
        }
    }

    /// Writes the region's statistics as JSON into `buf` and returns them, or
    /// `Err(needed)` (the length the JSON needs) when `buf` is too small.
    /// Allocates nothing. Hosted library only.
    #[cfg(feature = "hosted")]
    pub fn stats_json<'a>(&self, buf: &'a mut [u8]) -> Result<&'a str, usize> {
        // SAFETY: valid region; buf is writable for buf.len() bytes.
        let n = unsafe { ffi::shard_region_stats_json(self.raw.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        if n >= buf.len() {
            return Err(n);
        }
        core::str::from_utf8(&buf[..n]).map_err(|_| n)
    }
}

// ---- ArceOS allocator traits ------------------------------------------------------

/// The base allocator interface of ArceOS (`allocator::BaseAllocator`).
pub trait BaseAllocator {
    /// Initializes the allocator with the memory region `[start, start + size)`.
    fn init(&mut self, start: usize, size: usize);
    /// Adds a memory region `[start, start + size)` to the allocator.
    fn add_memory(&mut self, start: usize, size: usize) -> AllocResult;
}

/// Byte-granularity allocation (ArceOS's `allocator::ByteAllocator`).
pub trait ByteAllocator: BaseAllocator {
    /// Allocates memory with the given size (in bytes) and alignment.
    fn alloc(&mut self, layout: Layout) -> AllocResult<NonNull<u8>>;
    /// Deallocates memory at the given position, size, and alignment.
    fn dealloc(&mut self, pos: NonNull<u8>, layout: Layout);
    /// Returns total memory size in bytes.
    fn total_bytes(&self) -> usize;
    /// Returns allocated memory size in bytes.
    fn used_bytes(&self) -> usize;
    /// Returns available memory size in bytes.
    fn available_bytes(&self) -> usize;
}

/// shardalloc as an ArceOS `ByteAllocator`. Starts empty; [`BaseAllocator::init`]
/// (or a first `add_memory`) gives it its memory.
///
/// `start` / `size` passed to `init` and `add_memory` must describe memory
/// that is valid, unused otherwise, and stays so for the life of the program
/// (the kernel's heap); the trait's signatures cannot mark that `unsafe`.
#[derive(Debug, Default)]
pub struct ShardByteAllocator {
    region: Option<Region>,
}

impl ShardByteAllocator {
    /// An allocator with no memory yet.
    pub const fn new() -> Self {
        ShardByteAllocator { region: None }
    }

    /// `init` that reports failure instead of panicking.
    pub fn try_init(&mut self, start: usize, size: usize) -> AllocResult {
        if self.region.is_some() {
            return Err(AllocError::InvalidParam);
        }
        // SAFETY: the caller hands the memory over (see the type's docs).
        self.region = Some(unsafe { Region::new(start as *mut u8, size)? });
        Ok(())
    }

    /// `dealloc` that reports a pointer this allocator did not hand out
    /// instead of panicking.
    pub fn try_dealloc(&mut self, pos: NonNull<u8>, layout: Layout) -> AllocResult {
        match self.region {
            // SAFETY: the region checks that pos is one of its live blocks.
            Some(r) => unsafe { r.dealloc(pos, layout) },
            None => Err(AllocError::NotAllocated),
        }
    }

    /// The region, once initialized.
    pub fn region(&self) -> Option<Region> {
        self.region
    }
}

impl BaseAllocator for ShardByteAllocator {
    /// Panics when the memory is unusable (null, under 1 MiB) or the
    /// allocator already has memory; [`ShardByteAllocator::try_init`] reports it.
    fn init(&mut self, start: usize, size: usize) {
        if let Err(e) = self.try_init(start, size) {
            panic!("ShardByteAllocator::init({:#x}, {}): {}", start, size, e);
        }
    }

    /// The first memory an uninitialized allocator gets initializes it.
    fn add_memory(&mut self, start: usize, size: usize) -> AllocResult {
        match self.region {
            // SAFETY: the caller hands the memory over (see the type's docs).
            Some(r) => unsafe { r.add_memory(start as *mut u8, size) },
            None => self.try_init(start, size),
        }
    }
}

impl ByteAllocator for ShardByteAllocator {
    fn alloc(&mut self, layout: Layout) -> AllocResult<NonNull<u8>> {
        self.region.ok_or(AllocError::NoMemory)?.alloc(layout)
    }

    /// Panics on a pointer this allocator did not hand out (or a double
    /// free); [`ShardByteAllocator::try_dealloc`] reports it instead.
    fn dealloc(&mut self, pos: NonNull<u8>, layout: Layout) {
        if let Err(e) = self.try_dealloc(pos, layout) {
            panic!("ShardByteAllocator::dealloc({:p}, {:?}): {}", pos, layout, e);
        }
    }

    fn total_bytes(&self) -> usize {
        self.region.map_or(0, |r| r.total_bytes())
    }

    fn used_bytes(&self) -> usize {
        self.region.map_or(0, |r| r.used_bytes())
    }

    fn available_bytes(&self) -> usize {
        self.region.map_or(0, |r| r.available_bytes())
    }
}

// ---- GlobalAlloc over a region ------------------------------------------------------

/// A [`GlobalAlloc`] over a region the program sets up itself (a kernel at
/// boot, before its first allocation). Allocations before [`RegionAlloc::init`]
/// fail (return null).
pub struct RegionAlloc {
    region: AtomicPtr<ffi::shard_region>,
}

impl RegionAlloc {
    /// No memory yet.
    pub const fn new() -> Self {
        RegionAlloc { region: AtomicPtr::new(ptr::null_mut()) }
    }

    /// Gives the allocator its first memory. `Err(InvalidParam)` when it
    /// already has a region.
    ///
    /// # Safety
    /// As for [`Region::new`].
    pub unsafe fn init(&self, start: *mut u8, size: usize) -> AllocResult<Region> {
        if !self.region.load(Ordering::Acquire).is_null() {
            return Err(AllocError::InvalidParam);
        }
        let r = Region::new(start, size)?;
        // Release: allocating threads (Acquire) see the initialized region.
        match self.region.compare_exchange(ptr::null_mut(), r.as_raw(), Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => Ok(r),
            Err(_) => Err(AllocError::InvalidParam), // lost a race: the memory stays unused
        }
    }

    /// The region, once initialized.
    pub fn region(&self) -> Option<Region> {
        NonNull::new(self.region.load(Ordering::Acquire)).map(|raw| Region { raw })
    }
}

impl Default for RegionAlloc {
    fn default() -> Self {
        Self::new()
    }
}

fn region_alloc(r: Option<Region>, layout: Layout) -> *mut u8 {
    match r {
        Some(r) => r.alloc(layout).map_or(ptr::null_mut(), NonNull::as_ptr),
        None => ptr::null_mut(),
    }
}

unsafe fn region_dealloc(r: Option<Region>, p: *mut u8, layout: Layout) {
    if let (Some(r), Some(p)) = (r, NonNull::new(p)) {
        // A GlobalAlloc must not unwind; an unknown pointer changes nothing.
        let _ = r.dealloc(p, layout);
    }
}

unsafe impl GlobalAlloc for RegionAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        region_alloc(self.region(), layout)
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        region_dealloc(self.region(), p, layout)
    }
}

/// A [`GlobalAlloc`] over a region in its own `N`-byte static pool, set up
/// on the first allocation: usable as a program's `#[global_allocator]`.
/// The pool is zero-initialized static memory (`.bss`): pages the allocator
/// never touches cost nothing.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: shardalloc::StaticRegionAlloc<{ 64 << 20 }> = shardalloc::StaticRegionAlloc::new();
///
/// fn main() {
///     let v: Vec<u32> = (0..1000).collect();
///     let region = GLOBAL.region().unwrap();
///     assert!(region.used_bytes() >= 4000);
///     assert_eq!(v[999], 999);
/// }
/// ```
pub struct StaticRegionAlloc<const N: usize> {
    pool: UnsafeCell<MaybeUninit<[u8; N]>>,
    region: AtomicPtr<ffi::shard_region>,
    state: AtomicU8, // UNINIT -> INITIALIZING -> READY (or FAILED)
}

const UNINIT: u8 = 0;
const INITIALIZING: u8 = 1;
const READY: u8 = 2;
const FAILED: u8 = 3;

// SAFETY: the pool is only touched through the region, which is thread-safe;
// initialization is serialized by `state`.
unsafe impl<const N: usize> Sync for StaticRegionAlloc<N> {}

impl<const N: usize> StaticRegionAlloc<N> {
    /// An allocator whose region is made on first use.
    pub const fn new() -> Self {
        StaticRegionAlloc {
            pool: UnsafeCell::new(MaybeUninit::uninit()),
            region: AtomicPtr::new(ptr::null_mut()),
            state: AtomicU8::new(UNINIT),
        }
    }

    /// The region (made now if this is the first use); `None` when `N` is
    /// too small for a region (under 1 MiB).
    pub fn region(&self) -> Option<Region> {
        if self.state.load(Ordering::Acquire) != READY {
            self.init_slow();
        }
        NonNull::new(self.region.load(Ordering::Acquire)).map(|raw| Region { raw })
    }

    /// Hands more memory to the region.
    ///
    /// # Safety
    /// As for [`Region::add_memory`].
    pub unsafe fn add_memory(&self, start: *mut u8, size: usize) -> AllocResult {
        self.region().ok_or(AllocError::NoMemory)?.add_memory(start, size)
    }

    #[cold]
    fn init_slow(&self) {
        match self.state.compare_exchange(UNINIT, INITIALIZING, Ordering::Acquire, Ordering::Acquire) {
            Ok(_) => {
                // SAFETY: the pool is ours alone and lives as long as the program (a static).
                let made = unsafe { Region::new(self.pool.get().cast::<u8>(), N) };
                let state = match made {
                    Ok(r) => {
                        self.region.store(r.as_raw(), Ordering::Release);
                        READY
                    }
                    Err(_) => FAILED,
                };
                self.state.store(state, Ordering::Release);
            }
            Err(_) => {
                // Another thread is making the region: wait for it (a few microseconds).
                while self.state.load(Ordering::Acquire) == INITIALIZING {
                    core::hint::spin_loop();
                }
            }
        }
    }
}

impl<const N: usize> Default for StaticRegionAlloc<N> {
    fn default() -> Self {
        Self::new()
    }
}

unsafe impl<const N: usize> GlobalAlloc for StaticRegionAlloc<N> {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        region_alloc(self.region(), layout)
    }
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        region_dealloc(self.region(), p, layout)
    }
}

// ---- GlobalAlloc over the process heap (hosted) ------------------------------------------

/// Every block is at least 16-aligned (alignof(max_align_t), shardalloc.h); larger alignments take the aligned calls.
const MIN_ALIGN: usize = 16;

/// The process heap as a [`GlobalAlloc`]: `shard_malloc` / `shard_free`
/// (memory from the OS via mmap), what `libshardalloc.so` gives C programs.
/// Lock-free on any number of threads; each thread allocates from its own
/// heap, and a block may be freed by any thread.
///
/// ```
/// #[global_allocator]
/// static GLOBAL: shardalloc::ShardAlloc = shardalloc::ShardAlloc;
/// # fn main() { let b = Box::new(5); assert_eq!(*b, 5); }
/// ```
#[cfg(feature = "hosted")]
#[derive(Debug, Default, Clone, Copy)]
pub struct ShardAlloc;

#[cfg(feature = "hosted")]
unsafe impl GlobalAlloc for ShardAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Every block is 16-aligned (shardalloc.h); larger alignments need the aligned call.
        if layout.align() <= MIN_ALIGN {
            ffi::shard_malloc(layout.size()).cast()
        } else {
            ffi::shard_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }
    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            return ffi::shard_calloc(1, layout.size()).cast();
        }
        let p = self.alloc(layout);
        if !p.is_null() {
            ptr::write_bytes(p, 0, layout.size());
        }
        p
    }
    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        ffi::shard_free(p.cast())
    }
    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if layout.align() <= MIN_ALIGN {
            return ffi::shard_realloc(p.cast(), new_size).cast();
        }
        let q = ffi::shard_malloc_aligned(new_size, layout.align()).cast::<u8>();
        if !q.is_null() {
            ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
            ffi::shard_free(p.cast());
        }
        q
    }
}

#[cfg(feature = "hosted")]
impl ShardAlloc {
    /// Bytes usable at `p` (a block from this allocator), at least its size.
    ///
    /// # Safety
    /// `p` must be a live block from [`ShardAlloc`] (or an OS [`Heap`]).
    pub unsafe fn usable_size(p: *const u8) -> usize {
        ffi::shard_usable_size(p.cast())
    }

    /// Checks the calling thread's heap (pages, free lists, block counts;
    /// every canary in a checked build) and returns the number of blocks it
    /// looked at. An inconsistency prints one line and aborts.
    pub fn check_heap() -> usize {
        // SAFETY: no preconditions.
        unsafe { ffi::shard_check_heap() }
    }

    /// Whether the linked library was built in checked mode.
    pub fn is_checked() -> bool {
        // SAFETY: no preconditions.
        unsafe { ffi::shard_is_checked() != 0 }
    }
}

// ---- First-class heaps --------------------------------------------------------------------

/// A first-class heap (`include/shardalloc/heap.h`, `docs/heaps.md`): an
/// allocator instance that any number of threads allocate from and free
/// into at once, and that is destroyed whole when dropped, with every block
/// still in it (arena style).
///
/// - [`Heap::new`] (hosted): memory from the OS, in arenas mapped as needed
///   and unmapped on drop.
/// - [`Heap::new_in_region`] (both libraries): one block of a region, given
///   back to the region on drop; the heap never grows.
///
/// Dropping the heap frees every block in it: a pointer into the heap must
/// not be used (read, written or freed) afterwards. Freeing a pointer that
/// is not a live block of this heap is a fatal error (hosted: a line on
/// stderr and `abort()`; freestanding: the fatal hook).
///
/// ```
/// # #[cfg(feature = "hosted")] {
/// use std::alloc::Layout;
/// let heap = shardalloc::Heap::new().unwrap();
/// let p = heap.alloc(Layout::new::<[u64; 4]>()).unwrap();
/// assert!(heap.used_bytes() >= 32);
/// drop(heap); // p is gone with it
/// # let _ = p; }
/// ```
pub struct Heap {
    raw: NonNull<ffi::shard_heap>,
}

// SAFETY: every shard_heap_* call but destroy may run on any thread at once;
// destroy runs in drop, when no reference is left.
unsafe impl Send for Heap {}
unsafe impl Sync for Heap {}

impl Heap {
    /// A heap over OS memory (hosted library only).
    #[cfg(feature = "hosted")]
    pub fn new() -> AllocResult<Heap> {
        // SAFETY: no preconditions.
        NonNull::new(unsafe { ffi::shard_heap_new() }).map(|raw| Heap { raw }).ok_or(AllocError::NoMemory)
    }

    /// A heap over `bytes` bytes taken from `region` as one block (at least
    /// [`ffi::SHARD_HEAP_REGION_MIN_BYTES`], 1 MiB, else `InvalidParam`;
    /// `NoMemory` when the region cannot serve it).
    pub fn new_in_region(region: Region, bytes: usize) -> AllocResult<Heap> {
        if bytes < ffi::SHARD_HEAP_REGION_MIN_BYTES {
            return Err(AllocError::InvalidParam);
        }
        // SAFETY: a valid region.
        NonNull::new(unsafe { ffi::shard_heap_new_in_region(region.as_raw(), bytes) })
            .map(|raw| Heap { raw })
            .ok_or(AllocError::NoMemory)
    }

    /// The C handle (valid until the heap is dropped).
    pub fn as_raw(&self) -> *mut ffi::shard_heap {
        self.raw.as_ptr()
    }

    /// Allocates `layout.size()` bytes aligned to `layout.align()` (size 0
    /// gives a unique minimal block).
    pub fn alloc(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        // SAFETY: a live heap.
        let p = unsafe {
            if layout.align() <= MIN_ALIGN {
                ffi::shard_heap_malloc(self.as_raw(), layout.size())
            } else {
                ffi::shard_heap_malloc_aligned(self.as_raw(), layout.size(), layout.align())
            }
        };
        NonNull::new(p.cast()).ok_or(AllocError::NoMemory)
    }

    /// As [`Heap::alloc`], with the block zeroed.
    pub fn alloc_zeroed(&self, layout: Layout) -> AllocResult<NonNull<u8>> {
        if layout.align() <= MIN_ALIGN {
            // SAFETY: a live heap.
            let p = unsafe { ffi::shard_heap_calloc(self.as_raw(), 1, layout.size()) };
            return NonNull::new(p.cast()).ok_or(AllocError::NoMemory);
        }
        let p = self.alloc(layout)?;
        // SAFETY: a fresh block of layout.size() bytes.
        unsafe { ptr::write_bytes(p.as_ptr(), 0, layout.size()) };
        Ok(p)
    }

    /// Frees a block of this heap, from any thread.
    ///
    /// # Safety
    /// `p` must be a live block of this heap, not used afterwards.
    pub unsafe fn dealloc(&self, p: NonNull<u8>) {
        ffi::shard_heap_free(self.as_raw(), p.as_ptr().cast())
    }

    /// Resizes a block of this heap to `new_size` bytes (> 0), keeping
    /// `old.align()`; on failure the block is untouched.
    ///
    /// # Safety
    /// `p` must be a live block of this heap allocated with `old`.
    pub unsafe fn realloc(&self, p: NonNull<u8>, old: Layout, new_size: usize) -> AllocResult<NonNull<u8>> {
        if old.align() <= MIN_ALIGN && new_size > 0 {
            let q = ffi::shard_heap_realloc(self.as_raw(), p.as_ptr().cast(), new_size);
            return NonNull::new(q.cast()).ok_or(AllocError::NoMemory);
        }
        let new = Layout::from_size_align(new_size, old.align()).map_err(|_| AllocError::InvalidParam)?;
        let q = self.alloc(new)?;
        ptr::copy_nonoverlapping(p.as_ptr(), q.as_ptr(), old.size().min(new_size));
        self.dealloc(p);
        Ok(q)
    }

    /// Sum of the block sizes of the live blocks (each at least the size
    /// asked for).
    pub fn used_bytes(&self) -> usize {
        // SAFETY: a live heap.
        unsafe { ffi::shard_heap_used_bytes(self.as_raw()) }
    }

    /// The heap's statistics (hosted library only).
    #[cfg(feature = "hosted")]
    pub fn stats(&self) -> Stats {
        let mut s = MaybeUninit::<Stats>::zeroed();
        // SAFETY: a live heap; s is writable (all-integer: zeroed is valid).
        unsafe {
            ffi::shard_heap_stats(self.as_raw(), s.as_mut_ptr());
            s.assume_init()
        }
    }
}

impl Drop for Heap {
    /// Destroys the heap: every block in it is freed at once.
    fn drop(&mut self) {
        // SAFETY: no reference is left, so no call on the heap is in flight.
        unsafe { ffi::shard_heap_destroy(self.raw.as_ptr()) }
    }
}

impl fmt::Debug for Heap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Heap").field("at", &self.raw).field("used_bytes", &self.used_bytes()).finish()
    }
}

unsafe impl GlobalAlloc for Heap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        Heap::alloc(self, layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        Heap::alloc_zeroed(self, layout).map_or(ptr::null_mut(), NonNull::as_ptr)
    }
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        if let Some(p) = NonNull::new(p) {
            Heap::dealloc(self, p)
        }
    }
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        match NonNull::new(p) {
            Some(p) => Heap::realloc(self, p, layout, new_size).map_or(ptr::null_mut(), NonNull::as_ptr),
            None => ptr::null_mut(),
        }
    }
}

// ---- Statistics (hosted) ---------------------------------------------------------------------

/// Statistics of the process heap, a region or a first-class heap
/// (`include/shardalloc/stats.h`, `docs/introspection.md`): per size class
/// and in total, exact when no other thread allocates or frees. Hosted
/// library only.
///
/// "Live" blocks are handed out and not yet collected back by their page's
/// owner: a block freed by another thread stays live until the owner
/// collects it (its next allocation slow path, or when its thread exits);
/// `remote_frees` counts such blocks once collected.
#[cfg(feature = "hosted")]
pub type Stats = ffi::shard_stats;

#[cfg(feature = "hosted")]
impl ffi::shard_stats {
    /// Statistics of the process heap (what [`ShardAlloc`] and
    /// `libshardalloc.so` allocate from). Allocates nothing.
    pub fn process() -> Stats {
        let mut s = MaybeUninit::<Stats>::zeroed();
        // SAFETY: s is writable (all-integer: zeroed is valid).
        unsafe {
            ffi::shard_stats_get(s.as_mut_ptr());
            s.assume_init()
        }
    }

    /// The index into `classes` of the size class a request of `size` bytes
    /// is served from (0: huge blocks).
    pub fn class_index(size: usize) -> usize {
        // SAFETY: no preconditions.
        unsafe { ffi::shard_size_class(size) as usize }
    }

    /// The statistics of the size class a request of `size` bytes is served from.
    pub fn class_of(&self, size: usize) -> &ffi::shard_class_stats {
        &self.classes[Self::class_index(size)]
    }

    /// The statistics as one JSON object (`docs/introspection.md`) in `buf`,
    /// or `Err(needed)` when `buf` is too small. Allocates nothing.
    pub fn to_json<'a>(&self, buf: &'a mut [u8]) -> Result<&'a str, usize> {
        // SAFETY: buf is writable for buf.len() bytes.
        let n = unsafe { ffi::shard_stats_to_json(self, buf.as_mut_ptr().cast(), buf.len()) };
        if n >= buf.len() {
            return Err(n);
        }
        core::str::from_utf8(&buf[..n]).map_err(|_| n)
    }
}

// ---- Kernel hooks (freestanding) ---------------------------------------------------------------

/// Tells the freestanding library how to find the current CPU (`region.h`,
/// `docs/kernel.md`): `current_cpu` returns an id in `[0, cpu_count)` and
/// runs on every alloc and dealloc (a register read); `None` means one CPU.
/// Call it once, on the boot CPU, before the first alloc or dealloc on any
/// region. `InvalidParam` for `cpu_count` 0, `None` with `cpu_count > 1`,
/// and new settings once CPU heaps exist. Freestanding library only: hosted,
/// threads are told apart by the library itself.
///
/// # Safety
/// Each CPU's heap has no lock: for every later alloc and dealloc the kernel
/// guarantees no migration (the call runs on one CPU from entry to return)
/// and no reentry (no other shardalloc call starts on that CPU before it
/// returns: disable preemption, and interrupts if their handlers allocate).
/// `current_cpu` must not call shardalloc.
#[cfg(not(feature = "hosted"))]
pub unsafe fn set_cpu_hook(current_cpu: Option<extern "C" fn() -> u32>, cpu_count: u32) -> AllocResult {
    check(ffi::shard_set_cpu_hook(current_cpu, cpu_count))
}

/// Sets what the freestanding library calls on a fatal error (a corrupted
/// heap, a CPU id out of range): `what` is a NUL-terminated description,
/// `ptr` the pointer concerned. It must not return (panic or halt); without
/// a hook, or if it returns, the CPU executes a trap instruction.
/// Freestanding library only: hosted, fatal errors print a line and abort.
#[cfg(not(feature = "hosted"))]
pub fn set_fatal_hook(hook: Option<extern "C" fn(what: *const ffi::c_char, ptr: *const core::ffi::c_void)>) {
    // SAFETY: storing a function pointer.
    unsafe { ffi::shard_set_fatal_hook(hook) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_codes_map_to_errors() {
        assert_eq!(check(ffi::SHARD_OK), Ok(()));
        assert_eq!(check(ffi::SHARD_INVALID_PARAM), Err(AllocError::InvalidParam));
        assert_eq!(check(ffi::SHARD_MEMORY_OVERLAP), Err(AllocError::MemoryOverlap));
        assert_eq!(check(ffi::SHARD_NO_MEMORY), Err(AllocError::NoMemory));
        assert_eq!(check(ffi::SHARD_NOT_ALLOCATED), Err(AllocError::NotAllocated));
    }

    #[test]
    fn a_too_small_static_pool_gives_no_region() {
        static SMALL: StaticRegionAlloc<4096> = StaticRegionAlloc::new();
        assert!(SMALL.region().is_none());
        assert!(unsafe { SMALL.alloc(Layout::from_size_align(8, 8).unwrap()) }.is_null());
    }
}
