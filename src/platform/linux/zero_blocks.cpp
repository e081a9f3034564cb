#include "platform/linux/zero_blocks.h"

#include <sys/mman.h>

#include <atomic>
#include <cstdint>

#include "core/hooks.h"
#include "platform/linux/os_source.h"

namespace shardalloc::platform {
namespace {

constexpr size_t kBlockBytes = 16;
constexpr size_t kRegionBytes = size_t{256} << 20;  // 16 Mi zero-size blocks
constexpr size_t kBlocks = kRegionBytes / kBlockBytes;

// The region, then the live bitmap (one bit per block), mapped together on
// first use. Null: not mapped yet; kFailed: mapping failed (never retried).
std::atomic<uintptr_t> g_region{0};
std::atomic<size_t> g_next{0};  // blocks handed out so far
constexpr uintptr_t kFailed = 1;

uint64_t* bitmap(uintptr_t region) { return reinterpret_cast<uint64_t*>(region + kRegionBytes); }

uintptr_t map_region() {
  void* p = mmap(nullptr, kRegionBytes + kBlocks / 8, PROT_NONE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) return kFailed;
  const uintptr_t region = reinterpret_cast<uintptr_t>(p);
  // A sparse bitmap: a huge page under THP "always" would make 2 MiB of it
  // resident for a few words.
  os_advise_no_huge_pages(p, kRegionBytes + kBlocks / 8);
  if (mprotect(bitmap(region), kBlocks / 8, PROT_READ | PROT_WRITE) != 0) {
    munmap(p, kRegionBytes + kBlocks / 8);
    return kFailed;
  }
  return region;
}

uintptr_t region() {
  // acquire: pairs with the release CAS that published the mapping.
  uintptr_t r = g_region.load(std::memory_order_acquire);
  if (r != 0) return r;
  const uintptr_t mine = map_region();
  // acq_rel: publishes our mapping, or acquires the one that won the race.
  if (g_region.compare_exchange_strong(r, mine, std::memory_order_acq_rel,
                                       std::memory_order_acquire))
    return mine;
  if (mine != kFailed) munmap(reinterpret_cast<void*>(mine), kRegionBytes + kBlocks / 8);
  return r;
}

}  // namespace

void* zero_block_alloc() {
  const uintptr_t r = region();
  if (r == kFailed) return nullptr;
  // relaxed: only uniqueness matters; the bit below is published with the pointer.
  const size_t i = g_next.fetch_add(1, std::memory_order_relaxed);
  if (i >= kBlocks) return nullptr;
  // relaxed: whoever frees the block received the pointer through the program, after this.
  __atomic_fetch_or(&bitmap(r)[i / 64], uint64_t{1} << (i % 64), __ATOMIC_RELAXED);
  return reinterpret_cast<void*>(r + i * kBlockBytes);
}

bool zero_block_owns(const void* p) {
  // relaxed: a pointer of the region was received after its publication.
  const uintptr_t r = g_region.load(std::memory_order_relaxed);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  return r > kFailed && a >= r && a < r + kRegionBytes;
}

void zero_block_free(void* p) {
  const uintptr_t r = g_region.load(std::memory_order_relaxed);  // relaxed: as in zero_block_owns
  const uintptr_t off = reinterpret_cast<uintptr_t>(p) - r;
  if (off % kBlockBytes != 0) fatal("free of a pointer that is not allocated", p);
  const size_t i = off / kBlockBytes;
  // relaxed RMW: atomicity alone makes exactly one of two racing frees see the bit.
  const uint64_t bit = uint64_t{1} << (i % 64);
  if ((__atomic_fetch_and(&bitmap(r)[i / 64], ~bit, __ATOMIC_RELAXED) & bit) == 0) {
    // relaxed: a hint for the message only.
    if (i >= g_next.load(std::memory_order_relaxed))
      fatal("free of a pointer that is not allocated", p);
    fatal("double free detected", p);
  }
}

}  // namespace shardalloc::platform
