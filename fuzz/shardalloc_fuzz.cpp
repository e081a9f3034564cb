// libFuzzer target: the input is a program of allocator operations, run over
// both page sources (the C API shard_* on the process heap, and the region API
// on a region inside a big buffer) against a shadow model. See docs/reliability.md.
//
// Checked after every operation:
//   - no two live blocks overlap (C API blocks: [p, p + usable_size); region
//     blocks: [p, p + max(size, 1)));
//   - alignment: the requested one, and 8 at least;
//   - contents: every block is filled with a pattern derived from its id; the
//     pattern is checked when the block is freed (here or by the helper
//     thread), across realloc (the common prefix), and by CHECK_ALL;
//   - calloc memory is zero; usable_size >= the requested size;
//   - region accounting, whenever no cross-thread free is in flight:
//     used_bytes == sum of live region sizes, total_bytes == bytes handed
//     over, used_bytes + available_bytes <= total_bytes;
//   - deallocs the region must refuse (a foreign pointer, a pointer just
//     freed) return SHARD_NOT_ALLOCATED and change nothing.
// A violation prints one line "shardfuzz: ..." and aborts (libFuzzer saves the input).
//
// Program encoding (bytes read front to back; a missing byte reads as 0):
//   op = byte % 16, then its arguments:
//    0 C_MALLOC     size(2)               shard_malloc
//    1 C_CALLOC     count(1) size(2)      shard_calloc(count % 17, size)
//    2 C_ALIGNED    size(2) align(1)      shard_malloc_aligned(size, 1 << (align % 27))
//    3 C_REALLOC    slot(1) size(2)       shard_realloc of a live C block (or of NULL)
//    4 C_FREE       slot(1)               shard_free
//    5 C_XFREE      slot(1) count(1)      hand count % 8 + 1 C blocks to the helper thread, which
//    checks and frees them 6 R_ALLOC      size(2) align(1)      shard_region_alloc(size, align % 24
//    == 23 ? 0 : 1 << (align % 24)) 7 R_DEALLOC    slot(1)               shard_region_dealloc 8
//    R_XDEALLOC   slot(1) count(1)      as 5, for region blocks 9 SYNC wait until the helper has
//    freed everything handed to it
//   10 CHECK_ALL                          check every live block's contents
//   11 R_ADD_MEMORY size(1)               shard_region_add_memory of a fresh chunk (at most 8 per
//   process) 12 R_BAD        kind(1)               a dealloc the region must refuse (see
//   bad_dealloc) 13 RESTART                            SYNC, then the helper thread exits (abandons
//   its heaps) and a new one starts 14 C_BURST      size(2) count(1)      count % 64 + 1
//   shard_malloc(size) 15 R_BURST      size(2) count(1)      count % 64 + 1
//   shard_region_alloc(size, 8) size(2) = b0 b1, decoded by decode_size (ranges from tiny to 8 MiB,
//   and edge sizes).
// At the end of an input every block is freed (alternately here and remotely)
// and the region must be back to used_bytes == 0.
#include <sys/mman.h>

#include <atomic>
#include <condition_variable>
#include <cstdarg>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <mutex>
#include <thread>
#include <vector>

#include "shardalloc/region.h"
#include "shardalloc/shardalloc.h"

namespace {

// ---- failure reporting ---------------------------------------------------------

[[noreturn]] __attribute__((format(printf, 1, 2))) void fail(const char* fmt, ...) {
  std::fputs("shardfuzz: ", stderr);
  va_list ap;
  va_start(ap, fmt);
  std::vfprintf(stderr, fmt, ap);
  va_end(ap);
  std::fputc('\n', stderr);
  std::fflush(stderr);
  std::abort();
}

#define FUZZ_CHECK(cond, ...)       \
  do {                              \
    if (!(cond)) fail(__VA_ARGS__); \
  } while (0)

// ---- limits --------------------------------------------------------------------------

constexpr size_t KiB = size_t{1} << 10;
constexpr size_t MiB = size_t{1} << 20;
constexpr size_t kMaxLiveBytes = 96 * MiB;  // keeps RSS well under libFuzzer's 2 GiB limit
constexpr size_t kMaxLiveBlocks = 4096;
constexpr size_t kRegionInit =
    6 * MiB + 12345;  // odd size at an odd offset: edges get lost to alignment
constexpr size_t kChunkBytes = 3 * MiB;
constexpr int kMaxChunks = 8;

// ---- content patterns ------------------------------------------------------------------
//
// Blocks are 8-aligned (checked), so patterns are written a word at a time.
// The pattern code is left out of libFuzzer's coverage and compare tracing
// (the same loops for every input; traced they cost most of the time) and of
// ASan's checks (allocator memory is mmap'd by shardalloc: ASan does not track
// it, every check would pass).

#if defined(__clang__)
#define SHARDFUZZ_NO_COVERAGE __attribute__((no_sanitize("coverage", "address")))
#else
#define SHARDFUZZ_NO_COVERAGE
#endif

SHARDFUZZ_NO_COVERAGE inline uint64_t pattern_word(uint64_t seed, size_t offset) {
  uint64_t h = (seed + 1) * 0x9E3779B97F4A7C15ull + uint64_t(offset) * 0xBF58476D1CE4E5B9ull;
  h ^= h >> 29;
  return h * 0x94D049BB133111EBull;
}
SHARDFUZZ_NO_COVERAGE inline uint8_t pattern_byte(uint64_t seed, size_t i) {
  return uint8_t(pattern_word(seed, i & ~size_t{7}) >> ((i & 7) * 8));
}

// What a block of n bytes gets a pattern at: every word up to 8 KiB; beyond,
// the words of the first and last 4 KiB and one word every 512 bytes between
// (multi-MiB blocks cost little); then the n % 8 tail bytes one by one.
// plan() lists the positions that lie below `limit` as word runs and a byte run.
struct Positions {
  size_t word_start[3], word_end[3],
      word_step[3];  // words at start, start+step, ... (each fits below limit)
  size_t byte_start, byte_end;
};

SHARDFUZZ_NO_COVERAGE Positions plan(size_t n, size_t limit) {
  if (limit > n) limit = n;
  const size_t words_end = n & ~size_t{7};
  const size_t words_limit =
      limit < words_end ? limit & ~size_t{7} : words_end;  // words [o, o+8) with o+8 <= limit
  Positions p{};
  if (n <= 8 * KiB) {
    p.word_start[0] = 0, p.word_end[0] = words_limit, p.word_step[0] = 8;
    p.word_step[1] = p.word_step[2] = 8;
  } else {
    const size_t tail_start = (n - 4 * KiB) & ~size_t{7};
    auto clip = [&](size_t e) { return e < words_limit ? e : words_limit; };
    p.word_start[0] = 0, p.word_end[0] = clip(4 * KiB), p.word_step[0] = 8;
    p.word_start[1] = 4 * KiB, p.word_end[1] = clip(tail_start), p.word_step[1] = 512;
    p.word_start[2] = tail_start, p.word_end[2] = clip(words_end), p.word_step[2] = 8;
  }
  p.byte_start = words_end;
  p.byte_end = limit > words_end ? limit : words_end;
  return p;
}

SHARDFUZZ_NO_COVERAGE void fill(void* p, size_t n, uint64_t seed) {
  auto* b = static_cast<uint8_t*>(p);
  const Positions pos = plan(n, n);
  for (int r = 0; r < 3; ++r) {
    for (size_t o = pos.word_start[r]; o < pos.word_end[r]; o += pos.word_step[r]) {
      const uint64_t v = pattern_word(seed, o);
      std::memcpy(b + o, &v, 8);
    }
  }
  for (size_t i = pos.byte_start; i < pos.byte_end; ++i) b[i] = pattern_byte(seed, i);
}

// First offset below `limit` where a block filled as n bytes differs, or SIZE_MAX.
SHARDFUZZ_NO_COVERAGE size_t first_difference(const void* p, size_t n, size_t limit,
                                              uint64_t seed) {
  const auto* b = static_cast<const uint8_t*>(p);
  const Positions pos = plan(n, limit);
  for (int r = 0; r < 3; ++r) {
    for (size_t o = pos.word_start[r]; o < pos.word_end[r]; o += pos.word_step[r]) {
      uint64_t v;
      std::memcpy(&v, b + o, 8);
      if (v != pattern_word(seed, o)) {
        for (size_t k = 0;; ++k)
          if (b[o + k] != pattern_byte(seed, o + k)) return o + k;
      }
    }
  }
  for (size_t i = pos.byte_start; i < pos.byte_end; ++i)
    if (b[i] != pattern_byte(seed, i)) return i;
  return SIZE_MAX;
}

// True when the first n bytes at p that a pattern would cover are zero.
SHARDFUZZ_NO_COVERAGE bool zero_at_positions(const void* p, size_t n) {
  const auto* b = static_cast<const uint8_t*>(p);
  const Positions pos = plan(n, n);
  for (int r = 0; r < 3; ++r) {
    for (size_t o = pos.word_start[r]; o < pos.word_end[r]; o += pos.word_step[r]) {
      uint64_t v;
      std::memcpy(&v, b + o, 8);
      if (v != 0) return false;
    }
  }
  for (size_t i = pos.byte_start; i < pos.byte_end; ++i)
    if (b[i] != 0) return false;
  return true;
}

// Checks the positions a block of `n` bytes was filled at, below `limit`.
void check(const void* p, size_t n, size_t limit, uint64_t seed, const char* when) {
  const size_t i = first_difference(p, n, limit, seed);
  if (i != SIZE_MAX) {
    const auto* b = static_cast<const uint8_t*>(p);
    fail("%s: block %p (size %zu, id %llu): byte %zu is %#x, expected %#x", when, p, n,
         static_cast<unsigned long long>(seed), i, b[i], pattern_byte(seed, i));
  }
}

// ---- sizes ---------------------------------------------------------------------------------

constexpr size_t kEdgeSizes[] = {
    0,      1,       7,       8,       9,           15,          16,           17,
    63,     64,      65,      1023,    1024,        1025,        8191,         8192,
    8193,   131071,  131072,  131073,  523263,      523264,      523265,       524288,
    524289, 1048575, 1048576, 1048577, 4 * MiB - 1, 4 * MiB + 1, 65536 - 1024, 65536};

size_t decode_size(uint8_t b0, uint8_t b1) {
  const size_t hi = b0 & 31, v = hi << 8 | b1;
  switch (b0 >> 5) {
    case 0:
      return b1 % 65;  // 0..64: the exact classes
    case 1:
      return v;  // 0..8191: small pages
    case 2:
      return v * 4;  // ..32 KiB
    case 3:
      return v * 16;  // ..128 KiB: medium pages
    case 4:
      return kEdgeSizes[b1 % (sizeof kEdgeSizes / sizeof kEdgeSizes[0])];
    case 5:
      return 128 * KiB + v * 64;  // huge, ..640 KiB
    case 6:
      return v * 1024;  // ..8 MiB
    default:
      return b1;  // 0..255
  }
}

// ---- the program reader ------------------------------------------------------------------------

struct Reader {
  const uint8_t* data;
  size_t size, pos = 0;
  bool done() const { return pos >= size; }
  uint8_t byte() { return pos < size ? data[pos++] : 0; }
  size_t size2() {
    const uint8_t b0 = byte();
    return decode_size(b0, byte());
  }
};

// ---- the model
// -----------------------------------------------------------------------------------

enum class Kind : uint8_t { kC, kRegion };

struct Live {
  void* p;
  size_t size;   // requested
  size_t span;   // bytes that must not overlap another block
  size_t align;  // requested (region: as passed to dealloc)
  uint64_t seed;
  Kind kind;
};

struct Model {
  std::vector<Live> c_blocks, r_blocks;
  std::map<uintptr_t, std::pair<uintptr_t, uint64_t>> spans;  // start -> (end, seed)
  size_t live_bytes = 0;
  size_t region_used = 0;  // sum of sizes of live region blocks (not yet handed to the helper)
  uint64_t next_seed = 1;

  void add_span(const Live& b) {
    // A zero-size block of a checked build spans nothing; it still owns its address.
    const uintptr_t s = reinterpret_cast<uintptr_t>(b.p), e = s + (b.span == 0 ? 1 : b.span);
    FUZZ_CHECK(e > s, "block %p of %zu bytes wraps", b.p, b.span);
    auto next = spans.lower_bound(s);
    if (next != spans.end()) {
      FUZZ_CHECK(next->first >= e,
                 "new block [%p, +%zu) (id %llu) overlaps live block at %#lx (id %llu)", b.p,
                 b.span, static_cast<unsigned long long>(b.seed),
                 static_cast<unsigned long>(next->first),
                 static_cast<unsigned long long>(next->second.second));
    }
    if (next != spans.begin()) {
      auto prev = std::prev(next);
      FUZZ_CHECK(prev->second.first <= s,
                 "new block [%p, +%zu) (id %llu) overlaps live block [%#lx, %#lx) (id %llu)", b.p,
                 b.span, static_cast<unsigned long long>(b.seed),
                 static_cast<unsigned long>(prev->first),
                 static_cast<unsigned long>(prev->second.first),
                 static_cast<unsigned long long>(prev->second.second));
    }
    spans.emplace(s, std::make_pair(e, b.seed));
  }
  void remove_span(const Live& b) { spans.erase(reinterpret_cast<uintptr_t>(b.p)); }
};

// ---- process-wide state (persists across inputs)
// -------------------------------------------------

struct Chunk {
  void* start;
  size_t size;
};

std::atomic<uint64_t> g_helper_failures{0};
char g_helper_message[256];

void helper_fail(const char* msg) {
  if (g_helper_failures.fetch_add(1) == 0)
    std::snprintf(g_helper_message, sizeof g_helper_message, "%s", msg);
}

class Helper {
 public:
  void start() {
    thread_ = std::thread([this] { run(); });
  }
  void stop() {
    {
      std::lock_guard<std::mutex> lock(mu_);
      stop_ = true;
    }
    cv_.notify_all();
    thread_.join();
    stop_ = false;
  }
  void push(const Live& b) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.push_back(b);
      ++pending_;
    }
    cv_.notify_all();
  }
  void sync() {
    std::unique_lock<std::mutex> lock(mu_);
    done_cv_.wait(lock, [this] { return pending_ == 0; });
  }
  bool idle() {
    std::lock_guard<std::mutex> lock(mu_);
    return pending_ == 0;
  }
  shard_region* region = nullptr;

 private:
  void run() {
    for (;;) {
      Live b;
      {
        std::unique_lock<std::mutex> lock(mu_);
        cv_.wait(lock, [this] { return stop_ || !queue_.empty(); });
        if (queue_.empty()) return;  // stop_
        b = queue_.front();
        queue_.pop_front();
      }
      free_one(b);
      {
        std::lock_guard<std::mutex> lock(mu_);
        --pending_;
      }
      done_cv_.notify_all();
    }
  }
  void free_one(const Live& b) {
    // Contents are intact until we free: nobody else may have been given this memory.
    if (first_difference(b.p, b.size, b.size, b.seed) != SIZE_MAX) {
      helper_fail("helper: block contents changed while it was handed over");
    }
    if (b.kind == Kind::kC) {
      shard_free(b.p);
    } else if (shard_region_dealloc(region, b.p, b.size, b.align) != SHARD_OK) {
      helper_fail("helper: shard_region_dealloc of a live block did not return SHARD_OK");
    }
  }

  std::thread thread_;
  std::mutex mu_;
  std::condition_variable cv_, done_cv_;
  std::deque<Live> queue_;
  size_t pending_ = 0;
  bool stop_ = false;
};

struct World {
  shard_region* region = nullptr;
  shard_region* other = nullptr;  // a second region, for foreign pointers
  void* other_block = nullptr;
  size_t region_total = 0;
  std::vector<Chunk> chunks;  // pre-mapped memory for R_ADD_MEMORY
  int chunks_used = 0;
  Helper helper;
};

World* g_world = nullptr;

void* map_noreserve(size_t bytes) {
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE,
                 MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (p == MAP_FAILED) fail("mmap of %zu bytes failed", bytes);
  return p;
}

World& world() {
  if (g_world != nullptr) return *g_world;
  auto* w = new World();
  // The region sits at an odd offset inside a bigger buffer; the buffer's
  // slack is where add_memory chunks come from.
  char* buffer =
      static_cast<char*>(map_noreserve(kRegionInit + kMaxChunks * kChunkBytes + 2 * MiB));
  char* start = buffer + 4096 + 24;
  FUZZ_CHECK(shard_region_init(&w->region, start, kRegionInit) == SHARD_OK,
             "shard_region_init failed");
  w->region_total = kRegionInit;
  char* next = start + kRegionInit + 64;
  for (int i = 0; i < kMaxChunks; ++i) {
    const size_t size = kChunkBytes - size_t(i) * 4096 - 8;
    w->chunks.push_back({next, size});
    next += kChunkBytes;
  }
  void* other_mem = map_noreserve(2 * MiB);
  FUZZ_CHECK(shard_region_init(&w->other, other_mem, 2 * MiB) == SHARD_OK,
             "second region init failed");
  FUZZ_CHECK(shard_region_alloc(w->other, 64, 8, &w->other_block) == SHARD_OK,
             "second region alloc failed");
  w->helper.region = w->region;
  w->helper.start();
  g_world = w;
  return *w;
}

// ---- checks
// --------------------------------------------------------------------------------------

void check_helper() {
  if (g_helper_failures.load() != 0) fail("%s", g_helper_message);
}

void check_region_accounting(World& w, const Model& m, const char* when) {
  if (!w.helper.idle()) return;  // a remote dealloc is in flight: counters are exact only at rest
  check_helper();
  const size_t total = shard_region_total_bytes(w.region);
  const size_t used = shard_region_used_bytes(w.region);
  const size_t avail = shard_region_available_bytes(w.region);
  FUZZ_CHECK(total == w.region_total, "%s: total_bytes %zu, handed over %zu", when, total,
             w.region_total);
  FUZZ_CHECK(used == m.region_used, "%s: used_bytes %zu, live region blocks sum to %zu", when, used,
             m.region_used);
  FUZZ_CHECK(used <= total && avail <= total - used, "%s: used %zu + available %zu > total %zu",
             when, used, avail, total);
}

void check_aligned(const void* p, size_t align, const char* what) {
  const size_t a = align < 8 ? 8 : align;
  FUZZ_CHECK((reinterpret_cast<uintptr_t>(p) & (a - 1)) == 0, "%s returned %p, not aligned to %zu",
             what, p, a);
}

// ---- operations
// ------------------------------------------------------------------------------------

bool room_for(const Model& m, size_t size) {
  return m.live_bytes + size <= kMaxLiveBytes &&
         m.c_blocks.size() + m.r_blocks.size() < kMaxLiveBlocks;
}

void track(Model& m, Live b) {
  m.add_span(b);
  fill(b.p, b.size, b.seed);
  m.live_bytes += b.size;
  if (b.kind == Kind::kRegion) {
    m.region_used += b.size;
    m.r_blocks.push_back(b);
  } else {
    m.c_blocks.push_back(b);
  }
}

Live untrack(Model& m, std::vector<Live>& v, size_t i) {
  Live b = v[i];
  v[i] = v.back();
  v.pop_back();
  m.remove_span(b);
  m.live_bytes -= b.size;
  if (b.kind == Kind::kRegion) m.region_used -= b.size;
  return b;
}

void c_new(Model& m, void* p, size_t size, size_t align, const char* what) {
  // NULL is legitimate only when the OS refuses memory; under the live-byte cap it does not.
  FUZZ_CHECK(p != nullptr, "%s(%zu, align %zu) returned NULL", what, size, align);
  check_aligned(p, align, what);
  const size_t usable = shard_usable_size(p);
  FUZZ_CHECK(usable >= size, "%s(%zu): usable_size %zu", what, size, usable);
  // Checked builds report the size asked for: 0 for a zero-size block (docs/override.md).
  FUZZ_CHECK(usable >= 1 || (size == 0 && shard_is_checked()), "%s(%zu): usable_size 0", what,
             size);
  track(m, Live{p, size, usable, align, m.next_seed++, Kind::kC});
}

void c_malloc(Model& m, size_t size) {
  if (!room_for(m, size)) return;
  c_new(m, shard_malloc(size), size, 1, "shard_malloc");
}

void c_calloc(Model& m, size_t count, size_t size) {
  const size_t total = count * size;
  if (!room_for(m, total)) return;
  auto* p = static_cast<uint8_t*>(shard_calloc(count, size));
  FUZZ_CHECK(p != nullptr, "shard_calloc(%zu, %zu) returned NULL", count, size);
  FUZZ_CHECK(zero_at_positions(p, total), "shard_calloc(%zu, %zu) = %p: memory not zero", count,
             size, static_cast<void*>(p));
  c_new(m, p, total, 1, "shard_calloc");
}

void c_aligned(Model& m, size_t size, size_t align) {
  if (!room_for(m, size + align)) return;
  c_new(m, shard_malloc_aligned(size, align), size, align, "shard_malloc_aligned");
}

void c_free_local(Model& m, size_t i) {
  Live b = untrack(m, m.c_blocks, i);
  check(b.p, b.size, b.size, b.seed, "shard_free");
  shard_free(b.p);
}

void c_realloc(Model& m, uint8_t slot, size_t size) {
  if (m.c_blocks.empty() || slot % 8 == 7) {  // realloc(NULL, size) is malloc
    if (!room_for(m, size)) return;
    c_new(m, shard_realloc(nullptr, size), size, 1, "shard_realloc(NULL)");
    return;
  }
  const size_t i = slot % m.c_blocks.size();
  if (!room_for(m, size)) return;
  Live old = untrack(m, m.c_blocks, i);
  check(old.p, old.size, old.size, old.seed, "shard_realloc (before)");
  void* p = shard_realloc(old.p, size);
  if (size == 0) {
    FUZZ_CHECK(p == nullptr, "shard_realloc(p, 0) returned %p, expected NULL (frees p)", p);
    return;
  }
  FUZZ_CHECK(p != nullptr, "shard_realloc(%p, %zu) returned NULL", old.p, size);
  // The common prefix moved with the block.
  check(p, old.size, size, old.seed, "shard_realloc (prefix)");
  const size_t usable = shard_usable_size(p);
  FUZZ_CHECK(usable >= size, "shard_realloc(%zu): usable_size %zu", size, usable);
  check_aligned(p, 1, "shard_realloc");
  Live b{p, size, usable, 1, old.seed, Kind::kC};
  m.add_span(b);
  fill(p, size, b.seed);  // same seed: the prefix is rewritten with the bytes it already has
  m.live_bytes += size;
  m.c_blocks.push_back(b);
}

void r_alloc(World& w, Model& m, size_t size, size_t align) {
  if (!room_for(m, size + align)) return;
  void* p = reinterpret_cast<void*>(uintptr_t{0xdead});
  const shard_status s = shard_region_alloc(w.region, size, align, &p);
  if (s == SHARD_NO_MEMORY) {
    FUZZ_CHECK(p == reinterpret_cast<void*>(uintptr_t{0xdead}),
               "region alloc failed but wrote *out");
    return;  // the region is finite
  }
  FUZZ_CHECK(s == SHARD_OK, "shard_region_alloc(%zu, %zu) returned status %d", size, align, int(s));
  check_aligned(p, align, "shard_region_alloc");
  track(m, Live{p, size, size == 0 ? 1 : size, align, m.next_seed++, Kind::kRegion});
}

void r_dealloc_local(World& w, Model& m, size_t i, bool twice) {
  Live b = untrack(m, m.r_blocks, i);
  check(b.p, b.size, b.size, b.seed, "shard_region_dealloc");
  const shard_status s = shard_region_dealloc(w.region, b.p, b.size, b.align);
  FUZZ_CHECK(s == SHARD_OK, "shard_region_dealloc(%p, %zu, %zu) of a live block returned %d", b.p,
             b.size, b.align, int(s));
  if (twice) {
    // The pointer just freed is not a block of the region any more. (The
    // helper is idle first: its deallocs would change used_bytes meanwhile.)
    w.helper.sync();
    const size_t used = shard_region_used_bytes(w.region);
    const shard_status again = shard_region_dealloc(w.region, b.p, b.size, b.align);
    FUZZ_CHECK(again == SHARD_NOT_ALLOCATED, "second dealloc in a row of %p returned %d", b.p,
               int(again));
    FUZZ_CHECK(shard_region_used_bytes(w.region) == used, "second dealloc of %p changed used_bytes",
               b.p);
  }
}

void r_bad(World& w, Model& m, uint8_t kind) {
  uint64_t on_stack[2] = {1, 2};
  void* libc = nullptr;
  void* p = nullptr;
  switch (kind % 5) {
    case 0:
      p = on_stack;
      break;
    case 1:
      p = libc = std::malloc(32);
      break;
    case 2:
      p = w.other_block;
      break;
    case 3:
      if (m.c_blocks.empty()) return;
      p = m.c_blocks[kind % m.c_blocks.size()].p;  // a live block of the process heap
      break;
    default:
      if (m.r_blocks.empty()) return;
      r_dealloc_local(w, m, kind % m.r_blocks.size(), /*twice=*/true);
      return;
  }
  w.helper.sync();  // used_bytes is compared: no dealloc may be in flight
  const size_t used = shard_region_used_bytes(w.region);
  const shard_status s = shard_region_dealloc(w.region, p, 8, 8);
  FUZZ_CHECK(s == SHARD_NOT_ALLOCATED, "dealloc of a foreign pointer %p (kind %d) returned %d", p,
             kind % 5, int(s));
  FUZZ_CHECK(shard_region_used_bytes(w.region) == used,
             "dealloc of a foreign pointer changed used_bytes");
  std::free(libc);
}

void r_add_memory(World& w, uint8_t b) {
  if (w.chunks_used >= kMaxChunks) return;
  Chunk c = w.chunks[size_t(w.chunks_used++)];
  const size_t size = c.size - (b % 4) * 512 * KiB;  // 1.5 .. 3 MiB
  const shard_status s = shard_region_add_memory(w.region, c.start, size);
  FUZZ_CHECK(s == SHARD_OK, "add_memory of %zu fresh bytes returned %d", size, int(s));
  w.region_total += size;
  // The same range again overlaps.
  FUZZ_CHECK(shard_region_add_memory(w.region, c.start, size) == SHARD_MEMORY_OVERLAP,
             "add_memory twice not refused");
}

void hand_over(World& w, Model& m, std::vector<Live>& v, uint8_t slot, uint8_t count) {
  for (int k = 0; k < count % 8 + 1 && !v.empty(); ++k) {
    Live b = untrack(m, v, (slot + size_t(k) * 7) % v.size());
    w.helper.push(b);
  }
}

void check_all(const Model& m) {
  for (const Live& b : m.c_blocks) check(b.p, b.size, b.size, b.seed, "CHECK_ALL");
  for (const Live& b : m.r_blocks) check(b.p, b.size, b.size, b.seed, "CHECK_ALL");
}

void run(World& w, Reader& in) {
  Model m;
  int ops = 0;
  while (!in.done() && ops++ < 2000) {
    const uint8_t op = in.byte() % 16;
    switch (op) {
      case 0:
        c_malloc(m, in.size2());
        break;
      case 1: {
        const size_t count = in.byte() % 17;
        c_calloc(m, count, in.size2());
        break;
      }
      case 2: {
        const size_t size = in.size2();
        c_aligned(m, size, size_t{1} << (in.byte() % 27));
        break;
      }
      case 3: {
        const uint8_t slot = in.byte();
        c_realloc(m, slot, in.size2());
        break;
      }
      case 4: {
        const uint8_t slot = in.byte();
        if (!m.c_blocks.empty()) c_free_local(m, slot % m.c_blocks.size());
        break;
      }
      case 5: {
        const uint8_t slot = in.byte();
        hand_over(w, m, m.c_blocks, slot, in.byte());
        break;
      }
      case 6: {
        const size_t size = in.size2();
        const uint8_t a = in.byte() % 24;
        r_alloc(w, m, size, a == 23 ? 0 : size_t{1} << a);
        break;
      }
      case 7: {
        const uint8_t slot = in.byte();
        if (!m.r_blocks.empty()) r_dealloc_local(w, m, slot % m.r_blocks.size(), false);
        break;
      }
      case 8: {
        const uint8_t slot = in.byte();
        hand_over(w, m, m.r_blocks, slot, in.byte());
        break;
      }
      case 9:
        w.helper.sync();
        break;
      case 10:
        check_all(m);
        break;
      case 11:
        r_add_memory(w, in.byte());
        break;
      case 12:
        r_bad(w, m, in.byte());
        break;
      case 13:
        w.helper.sync();
        w.helper.stop();
        w.helper.start();
        break;
      case 14: {
        const size_t size = in.size2();
        for (int k = in.byte() % 64 + 1; k > 0; --k) c_malloc(m, size);
        break;
      }
      default: {
        const size_t size = in.size2();
        for (int k = in.byte() % 64 + 1; k > 0; --k) r_alloc(w, m, size, 8);
        break;
      }
    }
    check_region_accounting(w, m, "after an operation");
  }
  // Free everything: odd blocks here, even ones by the helper.
  while (!m.c_blocks.empty()) {
    if (m.c_blocks.size() % 2)
      c_free_local(m, m.c_blocks.size() - 1);
    else
      hand_over(w, m, m.c_blocks, uint8_t(m.c_blocks.size() - 1), 0);
  }
  while (!m.r_blocks.empty()) {
    if (m.r_blocks.size() % 2)
      r_dealloc_local(w, m, m.r_blocks.size() - 1, false);
    else
      hand_over(w, m, m.r_blocks, uint8_t(m.r_blocks.size() - 1), 0);
  }
  w.helper.sync();
  check_region_accounting(w, m, "at the end");
  FUZZ_CHECK(shard_region_used_bytes(w.region) == 0, "used_bytes %zu after everything was freed",
             shard_region_used_bytes(w.region));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  World& w = world();
  Reader in{data, size};
  run(w, in);
  return 0;
}
