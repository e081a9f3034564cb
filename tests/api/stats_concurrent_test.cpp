// Statistics and heap snapshots taken while other threads churn (issue 12):
// reader threads loop on every entry point of include/shardalloc/stats.h
// while other threads fill and empty pages, reuse the slots those pages
// leave for 900 KiB huge blocks filled with 0x41, free blocks remotely, and
// exit (their heaps are abandoned, then adopted by new threads or swept),
// while freed slots are purged. Over the process heap, a region and a
// first-class heap. Nothing may crash, and every figure a reader gets must be
// possible: class indices in range, live <= capacity, sums that add up,
// snapshots that parse and account for every slot exactly once. When the
// threads are done, the statistics and the snapshot agree exactly.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <pthread.h>
#include <sched.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "api/stats_support.h"
#include "core/domain.h"
#include "platform/linux/process_heap.h"
#include "shardalloc/heap.h"
#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"
#include "support/snapshot_support.h"
#include "support/test_support.h"

using namespace shardtest;

namespace {

constexpr size_t kSegmentBytes = 512 * KiB;
constexpr uint64_t kPagesPerSegment = 8;
constexpr size_t kHugeBytes = 900 * KiB;
constexpr int kHugeFill = 0x41;
// 64-byte blocks for about three segments of small pages: whole segments
// empty when they are freed, so their slots go back to the arena.
constexpr size_t kSmallBlocksPerRound = 3 * 8 * 1000;

// How long each test churns: two seconds in Release, scaled like the stress
// tests (SHARDALLOC_STRESS_SCALE, less in sanitizer builds), at least one.
std::chrono::milliseconds churn_time() {
  const double ms = 2000 * stress_scale();
  return std::chrono::milliseconds(ms < 1000 ? 1000 : int64_t(ms));
}

// ---- what the allocating threads use ------------------------------------------

// The domain the churn allocates from.
class Target {
 public:
  virtual ~Target() = default;
  virtual void* alloc(size_t size) = 0;  // null when out of memory
  virtual void release(void* p, size_t size) = 0;
};

class ProcessTarget : public Target {
 public:
  void* alloc(size_t size) override { return shard_malloc(size); }
  void release(void* p, size_t) override { shard_free(p); }
};

class RegionTarget : public Target {
 public:
  explicit RegionTarget(shard_region* r) : r_(r) {}
  void* alloc(size_t size) override {
    void* p = nullptr;
    return shard_region_alloc(r_, size, 8, &p) == SHARD_OK ? p : nullptr;
  }
  void release(void* p, size_t size) override {
    if (shard_region_dealloc(r_, p, size, 8) != SHARD_OK) std::abort();
  }

 private:
  shard_region* r_;
};

class HeapTarget : public Target {
 public:
  explicit HeapTarget(shard_heap* h) : h_(h) {}
  void* alloc(size_t size) override { return shard_heap_malloc(h_, size); }
  void release(void* p, size_t) override { shard_heap_free(h_, p); }

 private:
  shard_heap* h_;
};

struct Allocation {
  void* p;
  size_t size;
};

// Blocks one thread hands to another to free (remote frees).
class Mailbox {
 public:
  void post(std::vector<Allocation>& batch) {
    std::lock_guard<std::mutex> lock(m_);
    posted_.insert(posted_.end(), batch.begin(), batch.end());
    batch.clear();
  }
  std::vector<Allocation> take() {
    std::lock_guard<std::mutex> lock(m_);
    std::vector<Allocation> out;
    out.swap(posted_);
    return out;
  }

 private:
  std::mutex m_;
  std::vector<Allocation> posted_;
};

struct Churn {
  explicit Churn(Target& t) : target(t) {}
  Target& target;
  Mailbox mail;
  std::atomic<bool> stop{false};     // allocating threads and readers stop
  std::atomic<bool> drained{false};  // the remote freer stops
  std::atomic<uint64_t> page_rounds{0};
  std::atomic<uint64_t> threads_exited{0};
  std::atomic<uint64_t> huge_filled{0};
};

// Fills whole segments with 64-byte blocks and frees them (one in sixteen
// remotely), then takes 900 KiB huge blocks, which land in the slots the
// pages left, fills them with 0x41 and frees them: a reader that trusted a
// page pointer it read before would now read 0x4141... as a page header.
void churn_pages_then_huge(Churn& c) {
  std::vector<Allocation> blocks, remote;
  blocks.reserve(kSmallBlocksPerRound);
  while (!c.stop.load(std::memory_order_relaxed)) {
    for (size_t i = 0; i < kSmallBlocksPerRound; ++i) {
      void* p = c.target.alloc(64);
      if (p == nullptr) break;
      blocks.push_back({p, 64});
    }
    for (size_t k = 0; k < blocks.size(); ++k) {
      if (k % 16 == 0) {
        remote.push_back(blocks[k]);
      } else {
        c.target.release(blocks[k].p, blocks[k].size);
      }
    }
    blocks.clear();
    c.mail.post(remote);
    void* huge[4];
    for (void*& p : huge) {
      p = c.target.alloc(kHugeBytes);
      if (p != nullptr) {
        std::memset(p, kHugeFill, kHugeBytes);
        c.huge_filled.fetch_add(1, std::memory_order_relaxed);
      }
    }
    for (void* p : huge) {
      if (p != nullptr) c.target.release(p, kHugeBytes);
    }
    c.page_rounds.fetch_add(1, std::memory_order_relaxed);
  }
}

// Threads that live for one batch: each allocates blocks of assorted sizes
// (small, medium, large and huge), frees half of them, posts the rest for the
// remote freer and exits, so its heap is abandoned holding live blocks; the
// next thread adopts an abandoned heap, or a sweep collects it.
void cycle_threads(Churn& c, uint64_t seed) {
  Rng rng(seed);
  while (!c.stop.load(std::memory_order_relaxed)) {
    std::thread([&] {
      std::vector<Allocation> mine;
      for (int i = 0; i < 200; ++i) {
        const size_t size = rng.chance(3) ? 200 * KiB + rng.below(600 * KiB)
                                          : 8 + rng.below(rng.chance(10) ? 60000 : 2000);
        void* p = c.target.alloc(size);
        if (p == nullptr) continue;
        std::memset(p, kHugeFill, std::min<size_t>(size, 4096));
        mine.push_back({p, size});
      }
      std::vector<Allocation> keep;
      for (size_t k = 0; k < mine.size(); ++k) {
        if (k % 2 == 0) {
          c.target.release(mine[k].p, mine[k].size);
        } else {
          keep.push_back(mine[k]);
        }
      }
      c.mail.post(keep);
    }).join();
    c.threads_exited.fetch_add(1, std::memory_order_relaxed);
  }
}

void free_posted(Churn& c) {
  for (;;) {
    const bool last = c.drained.load();
    std::vector<Allocation> batch = c.mail.take();
    for (const Allocation& a : batch) c.target.release(a.p, a.size);
    if (last) return;
    if (batch.empty()) std::this_thread::sleep_for(std::chrono::microseconds(200));
  }
}

// ---- what a reader may see ------------------------------------------------------

// The class table of this build, read while nothing runs.
struct ClassTable {
  uint64_t count = 0;
  uint64_t block_size[SHARD_STATS_MAX_CLASSES] = {};

  static ClassTable read() {
    shard_stats s;
    shard_stats_get(&s);
    ClassTable t;
    t.count = s.class_count;
    for (uint64_t c = 0; c < SHARD_STATS_MAX_CLASSES; ++c)
      t.block_size[c] = s.classes[c].block_size;
    return t;
  }
};

std::string figure(const char* what, uint64_t value, const char* relation, uint64_t bound) {
  return std::string(what) + " = " + std::to_string(value) + ", expected " + relation + " " +
         std::to_string(bound);
}

// Empty when every figure of s is possible for a domain; else the first that is not.
std::string insane_stats(const shard_stats& s, const ClassTable& t) {
  if (s.class_count != t.count) return figure("class_count", s.class_count, "==", t.count);
  uint64_t live = 0, bytes = 0, pages = 0;
  for (uint64_t c = 0; c < SHARD_STATS_MAX_CLASSES; ++c) {
    const shard_class_stats& k = s.classes[c];
    const std::string at = "classes[" + std::to_string(c) + "].";
    if (c >= s.class_count) {
      if (k.block_size != 0 || k.pages != 0 || k.live_blocks != 0 || k.live_bytes != 0 ||
          k.capacity_blocks != 0) {
        return at + " beyond class_count is not all zero";
      }
      continue;
    }
    if (k.block_size != t.block_size[c])
      return figure((at + "block_size").c_str(), k.block_size, "==", t.block_size[c]);
    if (k.live_blocks > k.capacity_blocks) {
      return figure((at + "live_blocks").c_str(), k.live_blocks, "<= capacity_blocks",
                    k.capacity_blocks);
    }
    if (c > 0 && k.live_bytes != k.live_blocks * k.block_size) {
      return figure((at + "live_bytes").c_str(), k.live_bytes, "== live_blocks * block_size",
                    k.live_blocks * k.block_size);
    }
    if (c == 0 && k.capacity_blocks != k.pages)
      return figure("huge capacity_blocks", k.capacity_blocks, "== pages", k.pages);
    live += k.live_blocks;
    bytes += k.live_bytes;
    pages += k.pages;
  }
  if (s.live_blocks != live)
    return figure("live_blocks", s.live_blocks, "== the sum over classes", live);
  if (s.live_bytes != bytes)
    return figure("live_bytes", s.live_bytes, "== the sum over classes", bytes);
  if (s.pages != pages) return figure("pages", s.pages, "== the sum over classes", pages);
  if (s.segment_size != kSegmentBytes)
    return figure("segment_size", s.segment_size, "==", kSegmentBytes);
  if (s.peak_bytes != s.peak_segments * s.segment_size)
    return "peak_bytes != peak_segments * segment_size";
  const uint64_t slots = s.reserved_bytes / s.segment_size;
  // Every page and every huge block lies in a slot of the domain's arenas.
  if (s.pages > kPagesPerSegment * slots)
    return figure("pages", s.pages, "<= 8 per slot reserved", kPagesPerSegment * slots);
  if (s.live_bytes > s.reserved_bytes)
    return figure("live_bytes", s.live_bytes, "<= reserved_bytes", s.reserved_bytes);
  if (s.arenas == 0 && s.reserved_bytes != 0) return "no arena counted";
  if (s.heaps_owned > s.heaps) return figure("heaps_owned", s.heaps_owned, "<= heaps", s.heaps);
  if (s.heaps_abandoned != s.heaps - s.heaps_owned) return "heaps_abandoned != heaps - heaps_owned";
  return "";
}

// Pages per segment and page size of a paged kind; 0 for any other kind.
uint64_t pages_of_kind(const std::string& kind) {
  if (kind == "small") return kPagesPerSegment;
  if (kind == "medium") return 2;
  if (kind == "large") return 1;
  return 0;
}

// Checks one snapshot line by line: the header, heaps numbered in order,
// arenas whose slot and free records cover every slot exactly once, slots
// whose figures fit their kind, pages of the slot before them with figures
// that fit the class table, and the end line's totals.
class SnapshotChecker {
 public:
  SnapshotChecker(const std::string& domain, const ClassTable& t) : domain_(domain), t_(t) {}

  std::string check(const std::string& text) {
    if (text.empty() || text.back() != '\n') return "does not end with a newline";
    const std::vector<Record> recs = parse_snapshot(text);
    if (recs.front().type != "shardalloc-snapshot") return "no header";
    if (recs.front().kv.count("domain") == 0 || recs.front().kv.at("domain") != domain_)
      return "wrong domain";
    if (recs.front().num("classes") != t_.count) return "classes in the header";
    if (recs.back().type != "end") return "no end line";
    for (size_t i = 1; i + 1 < recs.size(); ++i) {
      std::string what = record(recs[i]);
      if (!what.empty())
        return "line " + std::to_string(i + 1) + " (" + recs[i].type + "): " + what;
    }
    std::string what = close_arena();
    if (!what.empty()) return what;
    const Record& end = recs.back();
    if (end.num("heaps") != heaps_ || end.num("arenas") != arenas_ || end.num("slots") != slots_) {
      return "end line totals differ from the records";
    }
    return "";
  }

 private:
  std::string record(const Record& r) {
    if (r.type == "heap") return heap(r);
    if (r.type == "arena") return arena(r);
    if (r.type == "free") return free_run(r);
    if (r.type == "slot") return slot(r);
    if (r.type == "page") return page(r);
    return "unknown record";
  }
  std::string heap(const Record& r) {
    if (r.num("id") != heaps_++) return "heap ids out of order";
    if (r.num("owned") + r.num("abandoned") != 1) return "owned + abandoned != 1";
    return "";
  }
  std::string arena(const Record& r) {
    std::string what = close_arena();
    if (!what.empty()) return what;
    if (r.num("id") != arenas_++) return "arena ids out of order";
    arena_slots_ = r.num("slots");
    slots_ += arena_slots_;
    next_slot_ = 0;
    in_arena_ = true;
    return "";
  }
  std::string close_arena() {
    if (in_arena_ && next_slot_ != arena_slots_) {
      return "arena " + std::to_string(arenas_ - 1) + ": records cover " +
             std::to_string(next_slot_) + " of " + std::to_string(arena_slots_) + " slots";
    }
    return "";
  }
  // A run of slots starting where the previous record ended.
  std::string take_slots(const Record& r, uint64_t count) {
    page_slot_ = UINT64_MAX;
    if (!in_arena_ || r.num("arena") != arenas_ - 1) return "outside its arena";
    if (r.num("slot") != next_slot_)
      return "starts at slot " + r.kv.at("slot") + ", not " + std::to_string(next_slot_);
    if (count == 0 || count > arena_slots_ - next_slot_)
      return "covers " + std::to_string(count) + " slots";
    next_slot_ += count;
    return "";
  }
  std::string free_run(const Record& r) { return take_slots(r, r.num("count")); }
  std::string slot(const Record& r) {
    std::string what = take_slots(r, r.num("span"));
    if (!what.empty()) return what;
    const std::string kind = r.kv.count("kind") ? r.kv.at("kind") : "";
    if (kind == "meta") return r.num("span") == 1 ? "" : "meta slot spans several";
    if (kind == "huge") {
      if (r.num("used") > 1) return "huge used > 1";
      if (r.num("block_size") == 0 || r.num("block_size") > r.num("span") * kSegmentBytes)
        return "huge block_size";
      return "";
    }
    const uint64_t count = pages_of_kind(kind);
    if (count == 0) return "kind " + kind;
    if (r.num("span") != 1) return "a paged slot spans several";
    const int64_t heap = std::strtoll(r.kv.at("heap").c_str(), nullptr, 10);
    if (heap < -1 || heap >= int64_t(heaps_))
      return "heap " + r.kv.at("heap") + " of " + std::to_string(heaps_);
    if (r.num("abandoned") > 1) return "abandoned";
    if (r.num("page_count") != count)
      return "page_count " + r.kv.at("page_count") + " for kind " + kind;
    if (r.num("used_pages") > count) return "used_pages > page_count";
    if (r.num("page_size") * count != kSegmentBytes) return "page_size";
    page_slot_ = r.num("slot");
    page_count_ = count;
    page_size_ = r.num("page_size");
    next_page_ = 0;
    return "";
  }
  std::string page(const Record& r) {
    if (page_slot_ == UINT64_MAX || r.num("slot") != page_slot_ || r.num("arena") != arenas_ - 1) {
      return "not after its paged slot";
    }
    const uint64_t index = r.num("index"), cls = r.num("class");
    if (index < next_page_ || index >= page_count_) return "index " + r.kv.at("index");
    next_page_ = index + 1;
    if (cls == 0 || cls >= t_.count) return "class " + r.kv.at("class") + " out of range";
    if (r.num("block_size") != t_.block_size[cls]) return "block_size differs from the class table";
    const uint64_t used = r.num("used"), remote = r.num("remote"), capacity = r.num("capacity");
    const uint64_t reserved = r.num("reserved");
    if (remote > used || used > capacity || capacity > reserved)
      return "remote <= used <= capacity <= reserved fails";
    if (reserved * r.num("block_size") > page_size_) return "reserved blocks do not fit the page";
    if (r.num("full") > 1) return "full";
    return "";
  }

  std::string domain_;
  const ClassTable& t_;
  uint64_t heaps_ = 0, arenas_ = 0, slots_ = 0;
  bool in_arena_ = false;
  uint64_t arena_slots_ = 0, next_slot_ = 0;
  uint64_t page_slot_ = UINT64_MAX, page_count_ = 0, page_size_ = 0, next_page_ = 0;
};

// ---- readers ----------------------------------------------------------------------

// What a reader thread keeps between calls: buffers and files to write to.
struct Scratch {
  std::vector<char> buf = std::vector<char>(256 * KiB);  // grows when a text needs more
  int memfd = memfd_create("shardalloc-snapshot", 0);
  int devnull = open("/dev/null", O_WRONLY);
  ~Scratch() {
    close(memfd);
    close(devnull);
  }
  std::string memfd_text() const {
    const off_t size = lseek(memfd, 0, SEEK_END);
    std::string text(size_t(size > 0 ? size : 0), '\0');
    if (pread(memfd, text.data(), text.size(), 0) != ssize_t(text.size())) return "";
    return text;
  }
};

// One statistics or snapshot entry point: calls it once and returns what is
// wrong with its result (empty: nothing).
struct Probe {
  std::string name;
  std::function<std::string(Scratch&)> run;
};

// Calls `text_into(buf, len)` (snprintf semantics) with a buffer large enough,
// checking what it wrote while it was too small. Returns the text's length,
// or SIZE_MAX with *what set.
template <class TextInto>
size_t fill_buffer(Scratch& s, TextInto text_into, std::string* what) {
  for (;;) {
    const size_t n = text_into(s.buf.data(), s.buf.size());
    if (n < s.buf.size()) {
      if (std::strlen(s.buf.data()) != n)
        *what = "length " + std::to_string(n) + " differs from the text's";
      return what->empty() ? n : SIZE_MAX;
    }
    if (std::strlen(s.buf.data()) != s.buf.size() - 1) {
      *what = "a text cut short is not NUL-terminated at the end of the buffer";
      return SIZE_MAX;
    }
    s.buf.resize(2 * n);
  }
}

template <class TextInto>
std::string check_buffer_snapshot(Scratch& s, TextInto text_into, const std::string& domain,
                                  const ClassTable& t) {
  std::string what;
  const size_t n = fill_buffer(s, text_into, &what);
  if (n == SIZE_MAX) return what;
  return SnapshotChecker(domain, t).check(std::string(s.buf.data(), n));
}

template <class TextInto>
std::string check_json(Scratch& s, TextInto text_into) {
  std::string what;
  const size_t n = fill_buffer(s, text_into, &what);
  if (n == SIZE_MAX) return what;
  return Json::valid(s.buf.data())
             ? ""
             : "invalid JSON: " + std::string(s.buf.data(), std::min<size_t>(n, 300));
}

std::string check_fd_snapshot(Scratch& s, int rc, const std::string& domain, const ClassTable& t) {
  if (rc != 0) return "write to a memfd failed: " + std::string(std::strerror(errno));
  return SnapshotChecker(domain, t).check(s.memfd_text());
}

void empty_memfd(Scratch& s) {
  if (ftruncate(s.memfd, 0) != 0 || lseek(s.memfd, 0, SEEK_SET) != 0) std::abort();
}

std::vector<Probe> process_probes(const ClassTable& t) {
  return {
      {"shard_stats_get",
       [&t](Scratch&) {
         shard_stats s;
         shard_stats_get(&s);
         return insane_stats(s, t);
       }},
      {"shard_stats_json", [](Scratch& s) { return check_json(s, shard_stats_json); }},
      {"shard_heap_snapshot",
       [&t](Scratch& s) { return check_buffer_snapshot(s, shard_heap_snapshot, "process", t); }},
      {"shard_heap_snapshot_write(memfd)",
       [&t](Scratch& s) {
         empty_memfd(s);
         return check_fd_snapshot(s, shard_heap_snapshot_write(s.memfd), "process", t);
       }},
      {"shard_heap_snapshot_write(/dev/null)",
       [](Scratch& s) {
         return shard_heap_snapshot_write(s.devnull) == 0 ? "" : "write to /dev/null failed";
       }},
  };
}

std::vector<Probe> region_probes(const shard_region* r, const ClassTable& t) {
  return {
      {"shard_region_stats",
       [r, &t](Scratch&) {
         shard_stats s;
         if (shard_region_stats(r, &s) != SHARD_OK) return std::string("not SHARD_OK");
         return insane_stats(s, t);
       }},
      {"shard_region_stats_json",
       [r](Scratch& s) {
         return check_json(
             s, [r](char* buf, size_t len) { return shard_region_stats_json(r, buf, len); });
       }},
      {"shard_region_heap_snapshot",
       [r, &t](Scratch& s) {
         return check_buffer_snapshot(
             s, [r](char* buf, size_t len) { return shard_region_heap_snapshot(r, buf, len); },
             "region", t);
       }},
      {"shard_region_heap_snapshot_write(memfd)",
       [r, &t](Scratch& s) {
         empty_memfd(s);
         return check_fd_snapshot(s, shard_region_heap_snapshot_write(r, s.memfd), "region", t);
       }},
      {"shard_region_heap_snapshot_write(/dev/null)",
       [r](Scratch& s) {
         return shard_region_heap_snapshot_write(r, s.devnull) == 0 ? ""
                                                                    : "write to /dev/null failed";
       }},
  };
}

std::vector<Probe> heap_probes(const shard_heap* h, const ClassTable& t) {
  return {
      {"shard_heap_stats",
       [h, &t](Scratch&) {
         shard_stats s;
         if (shard_heap_stats(h, &s) != SHARD_OK) return std::string("not SHARD_OK");
         return insane_stats(s, t);
       }},
      {"shard_heap_stats + shard_stats_to_json",
       [h](Scratch& s) {
         shard_stats st;
         if (shard_heap_stats(h, &st) != SHARD_OK) return std::string("not SHARD_OK");
         return check_json(
             s, [&st](char* buf, size_t len) { return shard_stats_to_json(&st, buf, len); });
       }},
  };
}

// The first insane figure any reader saw, and how many there were.
class Verdict {
 public:
  void record(const std::string& probe, const std::string& what) {
    std::lock_guard<std::mutex> lock(m_);
    if (count_++ == 0) first_ = probe + ": " + what;
  }
  uint64_t count() {
    std::lock_guard<std::mutex> lock(m_);
    return count_;
  }
  std::string first() {
    std::lock_guard<std::mutex> lock(m_);
    return first_;
  }

 private:
  std::mutex m_;
  uint64_t count_ = 0;
  std::string first_;
};

// Calls the probes round robin until told to stop. At idle priority
// (SCHED_IDLE) a reader is preempted in the middle of its walks whenever an
// allocating thread can run, which widens every race it has with them.
void read_until_stopped(const std::vector<Probe>& probes, std::vector<std::atomic<uint64_t>>& calls,
                        size_t start, bool idle_priority, const std::atomic<bool>& stop,
                        Verdict& verdict) {
  if (idle_priority) {
    sched_param param{};
    pthread_setschedparam(pthread_self(), SCHED_IDLE, &param);
  }
  Scratch scratch;
  if (scratch.memfd < 0 || scratch.devnull < 0) std::abort();
  for (size_t k = start; !stop.load(std::memory_order_relaxed); ++k) {
    const size_t i = k % probes.size();
    const std::string what = probes[i].run(scratch);
    calls[i].fetch_add(1, std::memory_order_relaxed);
    if (!what.empty()) verdict.record(probes[i].name, what);
  }
}

// Runs the churn on `target` and readers on `probes` for churn_time(); then
// checks that no reader saw an insane figure and that every probe ran.
void churn_while_reading(Target& target, const std::vector<Probe>& probes) {
  Churn churn(target);
  Verdict verdict;
  std::vector<std::atomic<uint64_t>> calls(probes.size());
  std::vector<std::thread> threads;
  std::thread freer(free_posted, std::ref(churn));
  threads.emplace_back(churn_pages_then_huge, std::ref(churn));
  threads.emplace_back(churn_pages_then_huge, std::ref(churn));
  threads.emplace_back(cycle_threads, std::ref(churn), 1);
  const size_t kReaders = 3;
  for (size_t r = 0; r < kReaders; ++r) {
    threads.emplace_back(read_until_stopped, std::cref(probes), std::ref(calls), r, r == 0,
                         std::cref(churn.stop), std::ref(verdict));
  }
  std::this_thread::sleep_for(churn_time());
  // And until every probe has run while the churn goes on: on a loaded
  // machine (sanitizers, ctest -j2 next to another churn) the readers, one
  // of them at idle priority, may not get round all probes in churn_time().
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
  auto all_ran = [&] {
    for (const auto& c : calls)
      if (c.load(std::memory_order_relaxed) == 0) return false;
    return true;
  };
  while (!all_ran() && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  churn.stop = true;
  for (auto& t : threads) t.join();
  churn.drained = true;
  freer.join();

  EXPECT_EQ(verdict.count(), 0u) << "first insane result: " << verdict.first();
  std::printf("churn: %llu page rounds, %llu huge blocks filled with 0x41, %llu threads exited\n",
              (unsigned long long)churn.page_rounds.load(),
              (unsigned long long)churn.huge_filled.load(),
              (unsigned long long)churn.threads_exited.load());
  for (size_t i = 0; i < probes.size(); ++i) {
    std::printf("  %-45s %8llu calls\n", probes[i].name.c_str(),
                (unsigned long long)calls[i].load());
    EXPECT_GT(calls[i].load(), 0u) << probes[i].name << " never ran";
  }
  EXPECT_GT(churn.page_rounds.load(), 0u);
  EXPECT_GT(churn.huge_filled.load(), 0u);
  EXPECT_GT(churn.threads_exited.load(), 0u);
}

// With every thread joined the figures are exact: the snapshot's live blocks
// (page `used`, live huge blocks) and abandoned heaps are the statistics'.
void expect_snapshot_matches_stats(const std::string& text, const shard_stats& s) {
  uint64_t live = 0, pages = 0, abandoned = 0;
  for (const Record& rec : parse_snapshot(text)) {
    if (rec.type == "page") {
      live += rec.num("used");
      ++pages;
    }
    if (rec.type == "slot" && rec.kv.at("kind") == "huge") {
      live += rec.num("used");
      ++pages;
    }
    if (rec.type == "heap") abandoned += rec.num("abandoned");
  }
  EXPECT_EQ(live, s.live_blocks);
  EXPECT_EQ(pages, s.pages);
  EXPECT_EQ(abandoned, s.heaps_abandoned);
}

}  // namespace

TEST(StatsConcurrent, ProcessHeap) {
  shard_free(shard_malloc(64));  // this thread has its heap: it adopts none of the churn's
  // Every segment release purges the free dirty slots at once, so purges
  // certainly race the readers. With the default delay a slot must stay
  // free for a whole tick, and freed slots are reused first (a one-slot
  // claim takes a dirty slot before a fresh one): under TSan, at two churn
  // rounds a run, 1 run in 3 purged nothing. (Set before any thread starts.)
  auto& domain = shardalloc::platform::g_process_domain;
  const uint64_t purge_delay = domain.purge_delay_ms;
  domain.purge_delay_ms = 0;
  const ClassTable table = ClassTable::read();
  shard_stats before;
  shard_stats_get(&before);
  ProcessTarget target;
  const std::vector<Probe> probes = process_probes(table);
  churn_while_reading(target, probes);

  shard_stats after;
  shard_stats_get(&after);
  EXPECT_EQ(insane_stats(after, table), "");
  EXPECT_EQ(SnapshotChecker("process", table).check(process_snapshot()), "");
  expect_snapshot_matches_stats(process_snapshot(), after);
  std::printf("heaps adopted %llu, swept %llu; purged %llu MiB\n",
              (unsigned long long)(after.heaps_adopted - before.heaps_adopted),
              (unsigned long long)(after.heaps_swept - before.heaps_swept),
              (unsigned long long)((after.purged_bytes - before.purged_bytes) / MiB));
  EXPECT_GT(after.heaps_adopted, before.heaps_adopted) << "no thread adopted an abandoned heap";
  EXPECT_GT(after.purged_bytes, before.purged_bytes) << "no slot was purged";
  domain.purge_delay_ms = purge_delay;
}

TEST(StatsConcurrent, Region) {
  const size_t bytes = 96 * MiB;
  shard_region* r = nullptr;
  ASSERT_EQ(shard_region_init(&r, map_memory(bytes), bytes), SHARD_OK);
  const ClassTable table = ClassTable::read();
  RegionTarget target(r);
  const std::vector<Probe> probes = region_probes(r, table);
  churn_while_reading(target, probes);

  shard_stats after;
  ASSERT_EQ(shard_region_stats(r, &after), SHARD_OK);
  EXPECT_EQ(insane_stats(after, table), "");
  EXPECT_EQ(after.reserved_bytes, bytes);
  EXPECT_EQ(SnapshotChecker("region", table).check(region_snapshot(r)), "");
  expect_snapshot_matches_stats(region_snapshot(r), after);
  EXPECT_GT(after.heaps_adopted, 0u) << "no thread adopted an abandoned heap";
  std::printf("heaps adopted %llu, swept %llu\n", (unsigned long long)after.heaps_adopted,
              (unsigned long long)after.heaps_swept);
}

TEST(StatsConcurrent, FirstClassHeapWhileItLives) {
  shard_heap* h = shard_heap_new();
  ASSERT_NE(h, nullptr);
  const ClassTable table = ClassTable::read();
  HeapTarget target(h);
  const std::vector<Probe> probes = heap_probes(h, table);
  churn_while_reading(target, probes);

  shard_stats after;
  ASSERT_EQ(shard_heap_stats(h, &after), SHARD_OK);
  EXPECT_EQ(insane_stats(after, table), "");
  shard_heap_destroy(h);  // every reader has stopped: no call on h is in flight
}
