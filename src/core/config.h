// Layout constants of the core. Every size here is a power of two unless named otherwise.
#pragma once
#include <cstddef>
#include <cstdint>

namespace shardalloc::core {

// A segment is the unit a page source hands out: aligned to its size, so the
// segment of a pointer is one mask away.
inline constexpr unsigned kSegmentShift = 19;  // 512 KiB
inline constexpr size_t kSegmentSize = size_t{1} << kSegmentShift;
inline constexpr uintptr_t kSegmentMask = kSegmentSize - 1;

// Small pages split a segment in 8; a medium page is the whole segment.
inline constexpr unsigned kSmallPageShift = 16;  // 64 KiB
inline constexpr size_t kSmallPageSize = size_t{1} << kSmallPageShift;
inline constexpr size_t kSmallPagesPerSegment = kSegmentSize / kSmallPageSize;

// Block size limits per page kind; larger requests get a segment of their own (huge).
// Small pages (64 KiB, 8 per segment) hold blocks up to 16 KiB, medium pages
// (256 KiB, 2 per segment) up to 32 KiB, a large page (the whole segment) up
// to 128 KiB: every page holds at least 4 blocks, and a thread needs little
// memory per size class it touches (16 KiB rather than 8 KiB: rptest's peak
// RSS at 8 threads -9%, level with mimalloc, which draws the same line).
inline constexpr size_t kSmallBlockMax = 16 * 1024;
inline constexpr unsigned kMediumPageShift = 18;  // 256 KiB
inline constexpr size_t kMediumBlockMax = 32 * 1024;
inline constexpr size_t kLargeBlockMax = 128 * 1024;

// Requests up to this size find their page through the heap's direct table in one load.
inline constexpr size_t kDirectSizeMax = 1024;
inline constexpr size_t kWordSize = sizeof(void*);
inline constexpr size_t kDirectSlots = kDirectSizeMax / kWordSize + 1;

// Every block is at least this aligned: every block size is a multiple of it
// (size_class.h), so malloc's fundamental alignment, alignof(max_align_t),
// holds for every request, as glibc gives it. Aligned requests up to it are
// plain allocations.
inline constexpr size_t kMinAlign = 16;

// Free pages are purged in units of this (the smallest OS page we assume).
inline constexpr size_t kPurgeGrain = 4096;

// Arenas reserved from the OS: aligned to their size so ownership is one map lookup.
inline constexpr unsigned kOsArenaShift = 26;  // 64 MiB
inline constexpr size_t kOsArenaSize = size_t{1} << kOsArenaShift;
// What of a wholly free arena stays when its tail goes back to the OS
// (Domain::give_back_tail): its slots up to the first multiple of this after
// its header. The OS source's commit chunk (platform/linux/os_source.h), so
// the chunks that stay and those that go are whole in its maps.
inline constexpr unsigned kArenaReleaseGrainShift = 22;  // 4 MiB
inline constexpr size_t kArenaReleaseGrain = size_t{1} << kArenaReleaseGrainShift;
static_assert(kArenaReleaseGrain % kSegmentSize == 0 && kOsArenaSize % kArenaReleaseGrain == 0,
              "a grain is whole slots, and an OS arena whole grains");

// Largest request the core serves: beyond it offsets no longer fit in ptrdiff_t.
inline constexpr size_t kMaxRequest = (size_t{1} << 62);

// Fresh pages get their free list built this many bytes at a time, so a page
// used for a few blocks touches (and makes resident) only a few OS pages.
inline constexpr size_t kExtendBytes = 4 * 1024;
// ...but at least this many blocks, so that a page of large blocks does not
// take the slow path on every allocation. Each extension writes one word per
// block, so for blocks of 4 KiB and more it makes this many OS pages
// resident: 4 (mimalloc's minimum too) rather than 8 keeps a class used for
// one live block at 4 pages (glibc-thread peak RSS -20%).
inline constexpr size_t kExtendMinBlocks = 4;

}  // namespace shardalloc::core
