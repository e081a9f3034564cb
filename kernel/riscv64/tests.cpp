// Our ArceOS allocator test ports (tests/api/region_arceos_test.cpp), reduced
// for a 256 MiB guest under QEMU, plus two cross-CPU tests, a first-class
// heap bound to the region (include/shardalloc/heap.h), and statistics and
// heap snapshots (include/shardalloc/stats.h) taken on every CPU while the
// others allocate and free. Every CPU runs
// each test at the same time; a test ends with everything it allocated freed
// (main.cpp checks used_bytes() == 0 after the last CPU is done).
#include <stddef.h>
#include <stdint.h>

#include <atomic>
#include <initializer_list>

#include "ktest.h"
#include "shardalloc/heap.h"
#include "shardalloc/stats.h"

namespace ktest {
namespace {

// ---- mi_test: the mimalloc smoke sequence, then 100 x (2 MiB, write every byte, free)

void mi_test(unsigned, Result& r) {
  auto* a = static_cast<unsigned char*>(alloc(16, 8));
  auto* b = static_cast<unsigned char*>(alloc(1000000, 8));
  if (a == nullptr || b == nullptr) return r.fail("alloc 16 / 1000000", 0);
  __builtin_memset(a, 1, 16);
  __builtin_memset(b, 2, 1000000);
  if (a[15] != 1 || b[0] != 2 || b[999999] != 2) return r.fail("contents", 0);
  if (!dealloc(a, 16, 8) || !dealloc(b, 1000000, 8)) return r.fail("dealloc", 0);

  a = static_cast<unsigned char*>(alloc(16, 8));
  b = static_cast<unsigned char*>(alloc(16, 8));
  if (a == nullptr || b == nullptr || a == b) return r.fail("two blocks of 16", 1);
  if (!dealloc(a, 16, 8) || !dealloc(b, 16, 8)) return r.fail("dealloc", 1);

  a = static_cast<unsigned char*>(alloc(64, 8));
  b = static_cast<unsigned char*>(alloc(160, 8));
  if (a == nullptr || b == nullptr) return r.fail("alloc 64 / 160", 2);
  fill(a, 64, 1);
  fill(b, 160, 2);
  if (!check(b, 160, 2) || !dealloc(b, 160, 8)) return r.fail("block of 160", 2);
  if (!check(a, 64, 1) || !dealloc(a, 64, 8)) return r.fail("block of 64", 2);
  r.count = 8;

  constexpr size_t kRounds = 100, kSize = 2 * MiB;
  for (size_t i = 0; i < kRounds; ++i) {
    auto* p = static_cast<unsigned char*>(alloc(kSize, 8));
    if (p == nullptr) return r.fail("alloc 2 MiB", i);
    __builtin_memset(p, int(i & 0xff), kSize);
    if (p[0] != (i & 0xff) || p[kSize / 2] != (i & 0xff) || p[kSize - 1] != (i & 0xff))
      return r.fail("2 MiB contents", i);
    if (!dealloc(p, kSize, 8)) return r.fail("dealloc 2 MiB", i);
    r.count += 2;
  }
}

// ---- align: random alloc (2/3) / free (1/3) steps, sizes 1 B..64 KiB,
// alignments 1..128 (ArceOS) or 1..64 KiB (extended); every block aligned,
// filled, and checked when freed. The table of live blocks comes from the
// region too (a huge block).

struct Live {
  void* p;
  size_t size;
  size_t align;
  uint64_t seed;
};

void align_steps(unsigned cpu, Result& r, uint64_t seed, bool extended, size_t steps) {
  Rng rng(seed * 1009 + cpu);
  auto* live = static_cast<Live*>(alloc(steps * sizeof(Live), alignof(Live)));
  if (live == nullptr) return r.fail("alloc of the table of live blocks", 0);
  size_t n = 0;
  for (size_t step = 0; step < steps; ++step) {
    const uint64_t x = rng.next();
    if (x % 3 != 0 || n == 0) {
      const size_t base = size_t{1} << (x & 15);
      const size_t size = base + size_t((uint64_t(base) * (x >> 32)) >> 32);
      const size_t align = extended ? size_t{1} << ((x >> 20) % 17) : size_t{1} << (x & 7);
      void* p = alloc(size, align);
      if (p == nullptr) return r.fail("alloc", step);
      if (!aligned(p, align)) return r.fail("misaligned block", step);
      fill(p, size, step);
      live[n++] = {p, size, align, step};
    } else {
      const size_t i = rng.below(n);
      const Live l = live[i];
      live[i] = live[--n];
      if (!check(l.p, l.size, l.seed)) return r.fail("block changed while live", step);
      if (!dealloc(l.p, l.size, l.align)) return r.fail("dealloc", step);
    }
    ++r.count;
  }
  while (n > 0) {
    const Live& l = live[--n];
    if (!check(l.p, l.size, l.seed)) return r.fail("block changed while live", steps + n);
    if (!dealloc(l.p, l.size, l.align)) return r.fail("dealloc", steps + n);
  }
  if (!dealloc(live, steps * sizeof(Live), alignof(Live))) r.fail("dealloc of the table", 0);
}

void align(unsigned cpu, Result& r) { align_steps(cpu, r, 5, false, 10000); }
void align_64k(unsigned cpu, Result& r) { align_steps(cpu, r, 6, true, 4000); }

// ---- glibc_bench (bench-malloc-simple), reduced 50x: sizes 16, 32, 64;
// batches n in {25, 100, 400, 1600}; 20000/n rounds of "allocate n blocks,
// write every byte, free the first half FIFO and the second half LIFO"; three
// runs per n.

unsigned char* g_batch_blocks[kMaxCpus][1600];

void glibc_bench(unsigned cpu, Result& r) {
  unsigned char** blocks = g_batch_blocks[cpu];
  constexpr size_t kTotal = 20000;
  for (size_t size : {16u, 32u, 64u}) {
    for (size_t n : {25u, 100u, 400u, 1600u}) {
      for (int run = 0; run < 3; ++run) {
        for (size_t it = 0; it < kTotal / n; ++it) {
          for (size_t i = 0; i < n; ++i) {
            blocks[i] = static_cast<unsigned char*>(alloc(size, 8));
            if (blocks[i] == nullptr) return r.fail("alloc", r.count);
            __builtin_memset(blocks[i], int((i ^ it) & 0xff), size);
          }
          auto release = [&](size_t i) {
            const unsigned char want = (i ^ it) & 0xff;
            if (blocks[i][0] != want || blocks[i][size - 1] != want)
              r.fail("blocks overlapped", r.count);
            if (!dealloc(blocks[i], size, 8)) r.fail("dealloc", r.count);
          };
          for (size_t i = 0; i < n / 2; ++i) release(i);  // first half FIFO
          for (size_t i = n; i-- > n / 2;) release(i);    // second half LIFO
          r.count += 2 * n;
          if (!r.ok) return;
        }
      }
    }
  }
}

// ---- cross-CPU stream: CPU c allocates blocks and passes them, through a
// single-producer single-consumer ring, to CPU c+1, which checks and frees
// them, while it does the same for CPU c-1. Every free is remote and races
// with the owner's allocations (the thread_free and full-page notify
// protocols). Sizes: 90% 8..256 B, 9% up to 16 KiB, 1% up to 600 KiB (huge).

struct Msg {
  void* p;
  uint32_t size;
  uint32_t align;
  uint64_t seed;
};

constexpr uint32_t kRingSlots = 512;
struct alignas(64) Ring {
  std::atomic<uint32_t> head{0};              // written by the producer
  alignas(64) std::atomic<uint32_t> tail{0};  // written by the consumer
  Msg slots[kRingSlots];
};
Ring g_rings[kMaxCpus];

size_t stream_size(Rng& rng) {
  const size_t k = rng.below(1000);
  if (k < 900) return 8 + rng.below(249);
  if (k < 990) return 257 + rng.below(16 * KiB);
  return 16 * KiB + rng.below(600 * KiB);
}

void cross_cpu_stream(unsigned cpu, Result& r) {
  constexpr size_t kBlocks = 40000;
  Ring& out = g_rings[cpu];
  Ring& in = g_rings[(cpu + g_cpus - 1) % g_cpus];
  Rng rng(77 + cpu);
  size_t produced = 0, consumed = 0;
  while (produced < kBlocks || consumed < kBlocks) {
    // relaxed: our own index; acquire: the other side's index and what it wrote before.
    const uint32_t h = out.head.load(std::memory_order_relaxed);
    for (int burst = 0; burst < 8 && produced < kBlocks &&
                        h + burst - out.tail.load(std::memory_order_acquire) < kRingSlots;
         ++burst) {
      const size_t size = stream_size(rng);
      const size_t align = size_t{8} << rng.below(4);
      void* p = alloc(size, align);
      if (p == nullptr) return r.fail("alloc", produced);
      fill(p, size, produced);
      out.slots[(h + burst) % kRingSlots] = {p, uint32_t(size), uint32_t(align), produced};
      ++produced;
      // release: the slot and the block's contents before the index.
      out.head.store(h + burst + 1, std::memory_order_release);
    }
    const uint32_t t = in.tail.load(std::memory_order_relaxed);
    const uint32_t avail = in.head.load(std::memory_order_acquire) - t;
    for (uint32_t i = 0; i < avail && i < 8; ++i) {
      const Msg m = in.slots[(t + i) % kRingSlots];
      if (!check(m.p, m.size, m.seed)) return r.fail("block changed in transit", consumed);
      if (!dealloc(m.p, m.size, m.align)) return r.fail("remote dealloc", consumed);
      ++consumed;
      // release: our reads of the slot happen before the producer reuses it.
      in.tail.store(t + i + 1, std::memory_order_release);
    }
    r.count = produced + consumed;
  }
}

// ---- cross-CPU batches: each round every CPU allocates a batch, then (after
// a barrier) frees another CPU's batch while allocating and freeing blocks of
// its own, so remote frees land in pages their owner is using right now.

constexpr size_t kBatch = 4000;
Msg g_batches[kMaxCpus][kBatch];

void cross_cpu_batch(unsigned cpu, Result& r) {
  constexpr unsigned kRounds = 10;
  Rng rng(500 + cpu);
  for (unsigned round = 0; round < kRounds; ++round) {
    Msg* mine = g_batches[cpu];
    bool ok = true;
    for (size_t i = 0; i < kBatch && ok; ++i) {
      const size_t size = 8 + rng.below(2041);
      void* p = alloc(size, 8);
      if (p == nullptr) {
        r.fail("alloc", round);
        ok = false;
        mine[i] = {nullptr, 0, 0, 0};
        continue;
      }
      fill(p, size, round * kBatch + i);
      mine[i] = {p, uint32_t(size), 8, round * kBatch + i};
    }
    g_test_barrier.wait();  // every batch is ready (the other CPUs wait here even if we failed)
    Msg* theirs = g_batches[(cpu + 1 + round) % g_cpus];
    for (size_t i = 0; i < kBatch; ++i) {
      const Msg m = theirs[i];
      if (m.p == nullptr) continue;
      if (!check(m.p, m.size, m.seed)) r.fail("block changed before its remote free", round);
      if (!dealloc(m.p, m.size, m.align)) r.fail("remote dealloc", round);
      if (i % 4 == 0) {
        void* q = alloc(64 + i % 512, 8);
        if (q == nullptr || !dealloc(q, 64 + i % 512, 8)) r.fail("local alloc/dealloc", round);
      }
      r.count += 2;
    }
    g_test_barrier.wait();  // every batch is freed before it is refilled
  }
}

// ---- first-class heap: each round CPU 0 makes a heap bound to the region;
// every CPU allocates from it, then frees half of the next CPU's blocks
// (remote frees), and CPU 0 destroys the heap with the rest still live. From
// the second round on the heap reuses the first one's record (and memory):
// each CPU's heap slot must move to the new heap, never keep the old one.

constexpr size_t kHeapBytes = 32 * MiB;  // 4 CPUs, each with its own page per size class
constexpr size_t kHeapBlocks = 600;
shard_heap* g_heap;
Msg g_heap_blocks[kMaxCpus][kHeapBlocks];

void first_class_heap(unsigned cpu, Result& r) {
  constexpr unsigned kRounds = 20;
  Rng rng(900 + cpu);
  shard_heap* first = nullptr;
  for (unsigned round = 0; round < kRounds; ++round) {
    if (cpu == 0) {
      g_heap = shard_heap_new_in_region(g_region, kHeapBytes);
      if (g_heap == nullptr) {  // let the region grow (alloc does), then retry
        if (void* p = alloc(kHeapBytes, 8)) dealloc(p, kHeapBytes, 8);
        g_heap = shard_heap_new_in_region(g_region, kHeapBytes);
      }
      if (g_heap == nullptr) r.fail("shard_heap_new_in_region", round);
      if (round == 0) first = g_heap;
      if (round > 0 && g_heap != first)
        r.fail("the record of a destroyed heap is not reused", round);
    }
    g_test_barrier.wait();  // the heap is made
    shard_heap* h = g_heap;
    Msg* mine = g_heap_blocks[cpu];
    for (size_t i = 0; i < kHeapBlocks; ++i) {
      mine[i] = {nullptr, 0, 0, 0};
      if (h == nullptr) continue;
      const size_t size = i % 100 == 7 ? 70 * KiB : 8 + rng.below(3000);
      void* p = shard_heap_malloc(h, size);
      if (p == nullptr) {
        r.fail("shard_heap_malloc", round);
        continue;
      }
      fill(p, size, round * kHeapBlocks + i);
      mine[i] = {p, uint32_t(size), 8, round * kHeapBlocks + i};
      r.count++;
    }
    g_test_barrier.wait();  // every CPU's blocks are ready
    const Msg* theirs = g_heap_blocks[(cpu + 1) % g_cpus];
    for (size_t i = 0; i < kHeapBlocks; ++i) {
      const Msg m = theirs[i];
      if (m.p == nullptr) continue;
      if (!check(m.p, m.size, m.seed)) r.fail("heap block changed", round);
      if (i % 2 == 0) {
        shard_heap_free(h, m.p);
        r.count++;
      }
    }
    g_test_barrier.wait();                                // no CPU touches the heap any more
    if (cpu == 0 && h != nullptr) shard_heap_destroy(h);  // half the blocks still live
    g_test_barrier.wait();
  }
}

// ---- stats_snapshot: every CPU allocates and frees blocks of assorted sizes
// (huge ones too) and, in between, takes the region's statistics, its JSON
// and a heap snapshot into a buffer: readers on every CPU while the other
// CPUs change the heap under them. Each result must be well-formed: class
// figures that add up, a snapshot with its header (pid=0 on bare metal) and
// its end line, a JSON object.

bool starts_with(const char* s, const char* prefix) {
  while (*prefix != '\0') {
    if (*s++ != *prefix++) return false;
  }
  return true;
}

bool stats_possible(const shard_stats& s) {
  if (s.class_count == 0 || s.class_count > SHARD_STATS_MAX_CLASSES) return false;
  uint64_t live = 0, pages = 0;
  for (uint64_t c = 0; c < s.class_count; ++c) {
    const shard_class_stats& k = s.classes[c];
    if (k.live_blocks > k.capacity_blocks) return false;
    live += k.live_blocks;
    pages += k.pages;
  }
  return live == s.live_blocks && pages == s.pages && s.heaps_owned <= s.heaps &&
         s.live_bytes <= s.reserved_bytes;
}

// The text's last line is the end record.
bool snapshot_complete(const char* text, size_t n) {
  if (n < 2 || text[n - 1] != '\n') return false;
  size_t line = n - 1;
  while (line > 0 && text[line - 1] != '\n') --line;
  return starts_with(text + line, "end heaps=");
}

void stats_snapshot(unsigned cpu, Result& r) {
  constexpr size_t kRounds = 30, kBlocks = 48, kBufBytes = 256 * KiB;
  auto* buf = static_cast<char*>(alloc(kBufBytes, 8));
  if (buf == nullptr) return r.fail("alloc of the snapshot buffer", 0);
  Rng rng(1300 + cpu);
  void* blocks[kBlocks];
  size_t sizes[kBlocks];
  for (size_t round = 0; round < kRounds; ++round) {
    for (size_t i = 0; i < kBlocks; ++i) {
      sizes[i] = i % 16 == 5 ? 600 * KiB : 8 + rng.below(20000);
      blocks[i] = alloc(sizes[i], 8);
      if (blocks[i] == nullptr) return r.fail("alloc", round);
      fill(blocks[i], sizes[i], round * kBlocks + i);
    }
    shard_stats s;
    if (shard_region_stats(g_region, &s) != SHARD_OK || !stats_possible(s))
      r.fail("statistics", round);
    const size_t n = shard_region_heap_snapshot(g_region, buf, kBufBytes);
    if (n >= kBufBytes) {
      r.fail("the snapshot does not fit its buffer", n);
    } else if (!starts_with(buf, "shardalloc-snapshot 1 domain=region pid=0 ") ||
               !snapshot_complete(buf, n)) {
      r.fail("snapshot", round);
    }
    const size_t j = shard_region_stats_json(g_region, buf, kBufBytes);
    if (j >= kBufBytes || j < 2 || buf[0] != '{' || buf[j - 1] != '}') r.fail("JSON", round);
    for (size_t i = 0; i < kBlocks; ++i) {
      if (!check(blocks[i], sizes[i], round * kBlocks + i)) r.fail("block changed", round);
      if (!dealloc(blocks[i], sizes[i], 8)) r.fail("dealloc", round);
    }
    r.count += 2 * kBlocks + 3;
  }
  if (!dealloc(buf, kBufBytes, 8)) r.fail("dealloc of the snapshot buffer", 0);
}

}  // namespace

const Test kTests[] = {
    {"mi_test", mi_test},
    {"align", align},
    {"align_64k", align_64k},
    {"glibc_bench", glibc_bench},
    {"cross_cpu_stream", cross_cpu_stream},
    {"cross_cpu_batch", cross_cpu_batch},
    {"first_class_heap", first_class_heap},
    {"stats_snapshot", stats_snapshot},
};
const unsigned kTestCount = sizeof(kTests) / sizeof(kTests[0]);

}  // namespace ktest
