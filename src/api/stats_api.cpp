// shard_stats_* and heap snapshots of regions and first-class heaps, as a C
// struct, as JSON and as snapshot text into a buffer, from the core's checked
// walk (core/heap_walk.h): safe while other threads allocate and free.
// Freestanding: allocates nothing and calls no libc function, so a kernel can
// take statistics and snapshots too. The process heap's entry points and
// snapshots to a file descriptor: process_stats_api.cpp.
#include "shardalloc/stats.h"

#include "api/export.h"
#include "api/region_record.h"
#include "api/stats_fill.h"
#include "core/config.h"
#include "core/first_class.h"
#include "core/hooks.h"
#include "core/print_number.h"
#include "core/size_class.h"
#include "core/snapshot.h"
#include "core/stats.h"
#include "core/text_out.h"

using namespace shardalloc;

static_assert(core::kClassCount <= SHARD_STATS_MAX_CLASSES,
              "stats.h must have room for every size class");

namespace shardalloc::api {

void fill_stats(const core::Domain& d, shard_stats* out) {
  core::DomainStats ds;
  core::collect_stats(d, &ds);
  *out = shard_stats{};
  out->class_count = core::kClassCount;
  for (unsigned cls = 0; cls < core::kClassCount; ++cls) {
    const core::ClassStats& c = ds.classes[cls];
    shard_class_stats& o = out->classes[cls];
    o.block_size = cls == 0 ? 0 : core::class_block_size(cls);
    o.pages = c.pages;
    o.live_blocks = c.live_blocks;
    o.live_bytes = c.live_bytes;
    o.capacity_blocks = c.capacity_blocks;
    out->live_blocks += c.live_blocks;
    out->live_bytes += c.live_bytes;
    out->pages += c.pages;
  }
  out->segments = ds.segments_claimed;
  out->peak_segments = ds.peak_segments;
  out->segment_size = core::kSegmentSize;
  out->peak_bytes = ds.peak_segments * core::kSegmentSize;
  out->reserved_bytes = ds.total_bytes;
  out->arenas = ds.arenas;
  out->heaps = ds.heaps;
  out->heaps_owned = ds.heaps_owned;
  out->heaps_abandoned = ds.heaps - ds.heaps_owned;
  out->remote_frees = ds.remote_frees;
  out->purged_bytes = ds.purged_bytes;
  out->heaps_adopted = ds.heaps_adopted;
  out->heaps_swept = ds.heaps_swept;
}

}  // namespace shardalloc::api

namespace {

// snprintf-like output into a caller's buffer: counts everything, stores what fits.
class JsonOut {
 public:
  JsonOut(char* buf, size_t len) : buf_(buf), len_(len) {}
  JsonOut& ch(char c) {
    if (buf_ != nullptr && pos_ + 1 < len_) buf_[pos_] = c;
    ++pos_;
    return *this;
  }
  JsonOut& str(const char* s) {
    while (*s != '\0') ch(*s++);
    return *this;
  }
  JsonOut& num(uint64_t v) {
    core::put_decimal(*this, v);
    return *this;
  }
  // "name":value, with a comma before every field but the first of an object.
  JsonOut& field(const char* name, uint64_t v) {
    if (need_comma_) ch(',');
    ch('"').str(name).str("\":").num(v);
    need_comma_ = true;
    return *this;
  }
  JsonOut& open(const char* name, char bracket) {
    if (need_comma_) ch(',');
    if (name != nullptr) ch('"').str(name).str("\":");
    ch(bracket);
    need_comma_ = false;
    return *this;
  }
  JsonOut& close(char bracket) {
    ch(bracket);
    need_comma_ = true;
    return *this;
  }
  size_t finish() {
    if (buf_ != nullptr && len_ > 0) buf_[pos_ < len_ ? pos_ : len_ - 1] = '\0';
    return pos_;
  }

 private:
  char* buf_;
  size_t len_;
  size_t pos_ = 0;
  bool need_comma_ = false;
};

size_t empty_text(char* buf, size_t len) {
  if (buf != nullptr && len > 0) buf[0] = '\0';
  return 0;
}

}  // namespace

SHARD_EXPORT unsigned shard_size_class(size_t size) {
  if (size > core::kMaxRequest) return 0;
  const size_t block =
      core::kChecked ? core::checked_block_bytes(size) : size;  // checked: room for the canary
  // The largest block a page serves: the last class's.
  if (block > core::class_block_size(core::kLastClass)) return 0;
  return core::size_class_of(block == 0 ? 1 : block);
}

SHARD_EXPORT shard_status shard_region_stats(const shard_region* r, shard_stats* out) {
  if (r == nullptr || out == nullptr) return SHARD_INVALID_PARAM;
  api::fill_stats(r->domain, out);
  return SHARD_OK;
}

SHARD_EXPORT shard_status shard_heap_stats(const shard_heap* h, shard_stats* out) {
  if (h == nullptr || out == nullptr) return SHARD_INVALID_PARAM;
  const auto* fch = reinterpret_cast<const core::FirstClassHeap*>(h);
  if (!fch->is_live()) platform::fatal("use of a destroyed heap", h);
  api::fill_stats(fch->domain, out);
  return SHARD_OK;
}

SHARD_EXPORT size_t shard_stats_to_json(const shard_stats* s, char* buf, size_t len) {
  if (s == nullptr) return empty_text(buf, len);
  JsonOut j(buf, len);
  j.open(nullptr, '{');
  j.field("segment_size", s->segment_size)
      .field("segments", s->segments)
      .field("peak_segments", s->peak_segments)
      .field("peak_bytes", s->peak_bytes)
      .field("reserved_bytes", s->reserved_bytes)
      .field("arenas", s->arenas)
      .field("heaps", s->heaps)
      .field("heaps_owned", s->heaps_owned)
      .field("heaps_abandoned", s->heaps_abandoned)
      .field("remote_frees", s->remote_frees)
      .field("purged_bytes", s->purged_bytes)
      .field("heaps_adopted", s->heaps_adopted)
      .field("heaps_swept", s->heaps_swept)
      .field("pages", s->pages)
      .field("live_blocks", s->live_blocks)
      .field("live_bytes", s->live_bytes);
  j.open("classes", '[');
  const uint64_t count =
      s->class_count < SHARD_STATS_MAX_CLASSES ? s->class_count : SHARD_STATS_MAX_CLASSES;
  for (unsigned cls = 0; cls < count; ++cls) {
    const shard_class_stats& c = s->classes[cls];
    if (c.pages == 0 && c.live_blocks == 0) continue;
    j.open(nullptr, '{')
        .field("class", cls)
        .field("block_size", c.block_size)
        .field("pages", c.pages)
        .field("live_blocks", c.live_blocks)
        .field("live_bytes", c.live_bytes)
        .field("capacity_blocks", c.capacity_blocks)
        .close('}');
  }
  j.close(']');
  j.close('}');
  return j.finish();
}

SHARD_EXPORT size_t shard_region_stats_json(const shard_region* r, char* buf, size_t len) {
  if (r == nullptr) return empty_text(buf, len);
  shard_stats s;
  api::fill_stats(r->domain, &s);
  return shard_stats_to_json(&s, buf, len);
}

SHARD_EXPORT size_t shard_region_heap_snapshot(const shard_region* r, char* buf, size_t len) {
  if (r == nullptr) return empty_text(buf, len);
  core::TextOut out(buf, len);
  core::write_snapshot(out, r->domain, "region", platform::process_id());
  return out.finish();
}
