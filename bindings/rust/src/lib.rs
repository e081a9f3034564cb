//! Rust bindings for shardalloc's region allocator.
//!
//! A *region* is an allocator over memory its caller hands over (a kernel's
//! heap, a static pool, a mapping): `shard_region_init` / `add_memory` /
//! `alloc` / `dealloc`, lock-free on any number of threads, with exact
//! `total / used / available` byte counts (see `include/shardalloc/region.h`).
//! This crate wraps it three ways:
//!
//! - [`Region`]: a thread-safe handle with `Result`-returning calls.
//! - [`ShardByteAllocator`]: the ArceOS allocator interface
//!   ([`BaseAllocator`] + [`ByteAllocator`], defined here with the same
//!   shape as ArceOS's `allocator` crate, so a kernel can swap it in).
//! - [`RegionAlloc`] and [`StaticRegionAlloc`]: [`GlobalAlloc`]s over a
//!   region, the latter with its own static pool so that it can be the
//!   `#[global_allocator]` of a program from its first allocation on.
//!
//! [`ShardAlloc`] is a `GlobalAlloc` over shardalloc's process heap (memory
//! from the OS), for completeness.
//!
//! Memory handed to a region must stay valid, and must not be used otherwise,
//! for as long as any thread that used the region may still run: each thread
//! keeps its heap inside the region and gives it back when it exits. In
//! practice: hand over `'static` memory (a static, a leaked allocation, a
//! mapping that is never unmapped).
//!
//! Linking: `build.rs` links `libshardalloc_static.a` from the CMake build
//! directory named by `SHARDALLOC_BUILD_DIR` (default `../../build`).
#![cfg_attr(not(test), no_std)]
#![warn(missing_docs)]

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::fmt;
use core::mem::MaybeUninit;
use core::ptr::{self, NonNull};
use core::sync::atomic::{AtomicPtr, AtomicU8, Ordering};

/// The C API (`include/shardalloc/region.h`, `shardalloc.h`, `stats.h`).
#[allow(non_camel_case_types, missing_docs)]
pub mod ffi {
    use core::ffi::c_void;
    use core::marker::{PhantomData, PhantomPinned};

    // C's int, unsigned and char on the Linux targets this links on (spelled
    // out rather than core::ffi::c_int, which older toolchains lack).
    pub type c_int = i32;
    pub type c_uint = u32;
    pub type c_char = i8;

    /// Opaque: the region's state lives inside the memory it manages.
    #[repr(C)]
    pub struct shard_region {
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
        pub fn shard_region_stats_json(r: *const shard_region, buf: *mut c_char, len: usize) -> usize;

        pub fn shard_malloc(size: usize) -> *mut c_void;
        pub fn shard_malloc_aligned(size: usize, align: usize) -> *mut c_void;
        pub fn shard_free(ptr: *mut c_void);
        pub fn shard_usable_size(ptr: *const c_void) -> usize;
        pub fn shard_stats_json(buf: *mut c_char, len: usize) -> usize;
        pub fn shard_size_class(size: usize) -> c_uint;
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

    /// Writes the region's statistics as JSON into `buf` and returns them, or
    /// `Err(needed)` (the length the JSON needs) when `buf` is too small.
    /// Allocates nothing.
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

// ---- GlobalAlloc over the process heap -------------------------------------------------

/// A [`GlobalAlloc`] over shardalloc's process heap (memory from the OS via
/// mmap): `shard_malloc_aligned` / `shard_free`.
#[derive(Debug, Default, Clone, Copy)]
pub struct ShardAlloc;

unsafe impl GlobalAlloc for ShardAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // Every block is 16-aligned (shardalloc.h); larger alignments need the aligned call.
        if layout.align() <= 16 {
            ffi::shard_malloc(layout.size()).cast()
        } else {
            ffi::shard_malloc_aligned(layout.size(), layout.align()).cast()
        }
    }
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        ffi::shard_free(p.cast())
    }
}

impl ShardAlloc {
    /// Bytes usable at `p` (a block from this allocator), at least its size.
    ///
    /// # Safety
    /// `p` must be a live block from [`ShardAlloc`].
    pub unsafe fn usable_size(p: *const u8) -> usize {
        ffi::shard_usable_size(p.cast())
    }
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
