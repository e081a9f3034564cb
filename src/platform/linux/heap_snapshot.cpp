// Heap snapshots: every arena, slot, segment and page of a domain as
// line-based text (format: docs/introspection.md), written to a file
// descriptor or a caller's buffer without allocating; and
// SHARDALLOC_SNAPSHOT=path, a snapshot of the process heap at exit.
// Render with tools/shardalloc-heapmap.
#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>

#include "core/arena.h"
#include "core/config.h"
#include "core/print_number.h"
#include "core/domain.h"
#include "core/heap.h"
#include "core/segment.h"
#include "core/size_class.h"
#include "platform/linux/process_heap.h"
#include "shardalloc/stats.h"

#define SHARD_EXPORT extern "C" __attribute__((visibility("default")))

namespace shardalloc::platform {
namespace {

using core::addr;

// Text output to a file descriptor (through a buffer on the stack) or into a
// caller's buffer with snprintf semantics.
class SnapshotOut {
 public:
  explicit SnapshotOut(int fd) : fd_(fd) {}
  SnapshotOut(char* buf, size_t len) : dest_(buf), dest_len_(len) {}

  SnapshotOut& ch(char c) {
    if (fd_ >= 0) {
      if (n_ == sizeof tmp_) flush();
      tmp_[n_++] = c;
    } else if (dest_ != nullptr && total_ + 1 < dest_len_) {
      dest_[total_] = c;
    }
    ++total_;
    return *this;
  }
  SnapshotOut& text(const char* s) {
    while (*s != '\0') ch(*s++);
    return *this;
  }
  SnapshotOut& num(uint64_t v) {
    core::put_decimal(*this, v);
    return *this;
  }
  SnapshotOut& snum(int64_t v) {
    if (v < 0) {
      ch('-');
      return num(uint64_t(-(v + 1)) + 1);
    }
    return num(uint64_t(v));
  }
  SnapshotOut& hex(uint64_t v) {
    core::put_hex(*this, v);
    return *this;
  }
  // " key=value"
  SnapshotOut& kv(const char* key, uint64_t v) { return ch(' ').text(key).ch('=').num(v); }
  SnapshotOut& kvs(const char* key, int64_t v) { return ch(' ').text(key).ch('=').snum(v); }
  SnapshotOut& kvx(const char* key, uint64_t v) { return ch(' ').text(key).ch('=').hex(v); }
  SnapshotOut& kvt(const char* key, const char* v) { return ch(' ').text(key).ch('=').text(v); }
  SnapshotOut& eol() { return ch('\n'); }

  void flush() {
    size_t done = 0;
    while (done < n_ && !failed_) {
      const ssize_t w = write(fd_, tmp_ + done, n_ - done);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) {
        failed_ = true;
        if (w == 0) errno = EIO;
        break;
      }
      done += size_t(w);
    }
    n_ = 0;
  }
  // fd mode: 0 or -1; buffer mode: the total length.
  int finish_fd() {
    flush();
    return failed_ ? -1 : 0;
  }
  size_t finish_buffer() {
    if (dest_ != nullptr && dest_len_ > 0) dest_[total_ < dest_len_ ? total_ : dest_len_ - 1] = '\0';
    return total_;
  }

 private:
  int fd_ = -1;
  char* dest_ = nullptr;
  size_t dest_len_ = 0;
  size_t total_ = 0;
  bool failed_ = false;
  size_t n_ = 0;
  char tmp_[4096];
};

// The index of h in d's heap list, or -1 when h is not one of its heaps
// (a segment header read while its claimer was still writing it).
int64_t heap_index(const core::Domain& d, const core::Heap* h) {
  if (h == nullptr) return -1;
  int64_t i = 0;
  // acquire: heap records are published with release.
  for (const core::Heap* x = d.heaps.load(std::memory_order_acquire); x != nullptr; x = x->next_in_domain, ++i) {
    if (x == h) return i;
  }
  return -1;
}

// Unknown kinds (a header read while being written) print as their number.
const char* kind_name(core::SegmentKind k) {
  switch (k) {
    case core::SegmentKind::kSmall: return "small";
    case core::SegmentKind::kMedium: return "medium";
    case core::SegmentKind::kLarge: return "large";
    case core::SegmentKind::kHuge: return "huge";
    default: return nullptr;
  }
}

// Blocks other threads freed into the page that its owner has not collected
// yet (still counted in `used`). The walk is bounded and follows only
// pointers inside the page's area and its segment [lo, hi), which is always
// mapped: a list that changes under us gives a wrong count, never a fault.
uint64_t remote_frees(const core::Page& p, uintptr_t lo, uintptr_t hi) {
  uint64_t n = 0;
  // relaxed: statistics; the blocks' next words were written before their push.
  const core::Block* b = p.remote_head(std::memory_order_relaxed);
  while (b != nullptr && n < p.reserved && p.contains(b) && addr(b) >= lo && addr(b) + sizeof(core::Block) <= hi) {
    ++n;
    b = p.peek_next(b);
  }
  return n;
}

void write_page(SnapshotOut& o, uint64_t arena, size_t slot, unsigned index, const core::Page& p, uintptr_t lo,
                uintptr_t hi) {
  o.text("page").kv("arena", arena).kv("slot", slot).kv("index", index);
  o.kv("class", p.size_class).kv("block_size", p.block_size);
  o.kv("used", p.used).kv("remote", remote_frees(p, lo, hi)).kv("capacity", p.capacity).kv("reserved", p.reserved);
  o.kv("full", p.in_full).kvx("area", addr(p.area)).eol();
}

// Everything runs on relaxed reads of fields their owners write: exact when
// no other thread allocates, approximate (never faulting: arenas are never
// unmapped, heap pointers are checked against the domain's list) otherwise.
void write_snapshot(SnapshotOut& o, const core::Domain& d, const char* name) {
  o.text("shardalloc-snapshot 1").kvt("domain", name).kv("pid", uint64_t(getpid()));
  o.kv("segment_size", core::kSegmentSize).kv("small_page_size", core::kSmallPageSize);
  o.kv("pages_per_small_segment", core::kSmallPagesPerSegment).kv("classes", core::kClassCount);
  o.kv("reserved_bytes", d.total_bytes.load(std::memory_order_relaxed));
  o.kv("segments", d.segments_claimed.load(std::memory_order_relaxed));
  o.kv("peak_segments", d.peak_segments.load(std::memory_order_relaxed)).eol();

  uint64_t heaps = 0;
  for (const core::Heap* h = d.heaps.load(std::memory_order_acquire); h != nullptr; h = h->next_in_domain, ++heaps) {
    const bool owned = h->owned.load(std::memory_order_relaxed) != 0;
    o.text("heap").kv("id", heaps).kvx("addr", addr(h)).kv("owned", owned).kv("abandoned", !owned);
    o.kv("segments", h->segment_count.load(std::memory_order_relaxed)).eol();
  }

  uint64_t arenas = 0, slots_total = 0;
  for (const core::Arena* a = d.arenas.load(std::memory_order_acquire); a != nullptr; a = a->next, ++arenas) {
    o.text("arena").kv("id", arenas).kvx("base", a->base).kv("slots", a->slot_count);
    o.kvx("mem_start", a->mem_start).kvx("mem_end", a->mem_end).eol();
    slots_total += a->slot_count;
    size_t i = 0;
    while (i < a->slot_count) {
      if (!a->is_claimed(i)) {
        size_t j = i + 1;
        while (j < a->slot_count && !a->is_claimed(j)) ++j;
        o.text("free").kv("arena", arenas).kv("slot", i).kv("count", j - i).eol();
        i = j;
        continue;
      }
      const auto* s = core::ptr<const core::Segment>(a->slot_addr(i));
      if (s->cookie != d.cookie_of(s)) {
        // Metadata (heap records; cookie cleared) or a claim not yet set up.
        o.text("slot").kv("arena", arenas).kv("slot", i).kvt("kind", "meta").kv("span", 1).eol();
        ++i;
        continue;
      }
      size_t span = s->span_slots;
      if (span == 0 || span > a->slot_count - i) span = 1;
      const core::SegmentKind kind = s->kind;
      o.text("slot").kv("arena", arenas).kv("slot", i);
      if (const char* name = kind_name(kind)) {
        o.kvt("kind", name);
      } else {
        o.kv("kind", uint64_t(kind));
      }
      o.kv("span", span);
      if (kind == core::SegmentKind::kHuge) {
        const core::Page& p = s->pages[0];
        o.kv("block_size", p.block_size).kv("used", p.used).kvx("area", addr(p.area)).eol();
      } else {
        const core::Heap* h = s->heap;
        const int64_t id = heap_index(d, h);
        const bool abandoned = id >= 0 && h->owned.load(std::memory_order_relaxed) == 0;
        unsigned count = s->page_count;
        if (count > core::kSmallPagesPerSegment) count = core::kSmallPagesPerSegment;
        o.kvs("heap", id).kv("abandoned", abandoned).kv("page_count", count).kv("used_pages", s->used_pages);
        o.kv("page_size", s->page_shift >= core::kSegmentShift ? core::kSegmentSize : size_t{1} << s->page_shift).eol();
        for (unsigned p = 0; p < count; ++p) {
          if (s->pages[p].in_use) write_page(o, arenas, i, p, s->pages[p], addr(s), addr(s) + core::kSegmentSize);
        }
      }
      i += span;
    }
  }
  o.text("end").kv("heaps", heaps).kv("arenas", arenas).kv("slots", slots_total).eol();
}

// SHARDALLOC_SNAPSHOT=path: a snapshot of the process heap at exit. "%p" in
// the path becomes the process id (a preloaded library reaches children too).
// Priority 101: runs after the other destructors of this library and after
// the program's own (it is one of the last to run).
__attribute__((destructor(101))) void snapshot_at_exit() {
  const char* spec = getenv("SHARDALLOC_SNAPSHOT");  // getenv does not allocate
  if (spec == nullptr || spec[0] == '\0') return;
  char path[4096];
  size_t n = 0;
  for (const char* c = spec; *c != '\0' && n + 24 < sizeof path; ++c) {
    if (c[0] == '%' && c[1] == 'p') {
      char digits[20];
      int k = 0;
      for (uint64_t pid = uint64_t(getpid()); k == 0 || pid != 0; pid /= 10) digits[k++] = char('0' + pid % 10);
      while (k > 0) path[n++] = digits[--k];
      ++c;
    } else {
      path[n++] = *c;
    }
  }
  path[n] = '\0';
  const int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  SnapshotOut o(fd);
  write_snapshot(o, g_process_domain, "process");
  o.finish_fd();
  close(fd);
}

const core::Domain& domain_of(const shard_region* r) { return *reinterpret_cast<const core::Domain*>(r); }

}  // namespace
}  // namespace shardalloc::platform

using shardalloc::platform::SnapshotOut;

SHARD_EXPORT int shard_heap_snapshot_write(int fd) {
  if (fd < 0) {
    errno = EBADF;
    return -1;
  }
  SnapshotOut o(fd);
  shardalloc::platform::write_snapshot(o, shardalloc::platform::g_process_domain, "process");
  return o.finish_fd();
}

SHARD_EXPORT size_t shard_heap_snapshot(char* buf, size_t len) {
  SnapshotOut o(buf, len);
  shardalloc::platform::write_snapshot(o, shardalloc::platform::g_process_domain, "process");
  return o.finish_buffer();
}

SHARD_EXPORT int shard_region_heap_snapshot_write(const shard_region* r, int fd) {
  if (r == nullptr || fd < 0) {
    errno = r == nullptr ? EINVAL : EBADF;
    return -1;
  }
  SnapshotOut o(fd);
  shardalloc::platform::write_snapshot(o, shardalloc::platform::domain_of(r), "region");
  return o.finish_fd();
}

SHARD_EXPORT size_t shard_region_heap_snapshot(const shard_region* r, char* buf, size_t len) {
  if (r == nullptr) {
    if (buf != nullptr && len > 0) buf[0] = '\0';
    return 0;
  }
  SnapshotOut o(buf, len);
  shardalloc::platform::write_snapshot(o, shardalloc::platform::domain_of(r), "region");
  return o.finish_buffer();
}
