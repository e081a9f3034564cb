// shard_heap_new_in_region: a first-class heap over one block of a region.
// The block (a huge block of the region) becomes the heap's only arena; its
// record lives in the region's metadata, so it outlives destroy (and is
// reused by the next heap made in this region). Destroy gives the block back
// with one shard_region_dealloc. Freestanding.
#include "api/export.h"
#include "api/region_record.h"
#include "core/bits.h"
#include "core/first_class.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "core/step.h"
#include "shardalloc/heap.h"
#ifdef SHARDALLOC_PLATFORM_LINUX
#include "platform/linux/os_source.h"
#endif

using namespace shardalloc;

namespace {

// The heap never grows and never purges: its memory is the block it took.
constexpr core::PageSource kSpanSource{nullptr, nullptr, false, nullptr, nullptr, nullptr};

void give_span_back(core::FirstClassHeap* h) {
  auto* r = static_cast<shard_region*>(h->span_owner);
  if (shard_region_dealloc(r, h->span, h->span_bytes, 1) != SHARD_OK) {
    platform::fatal("a region heap's memory is no longer allocated in its region", h->span);
  }
}

shard_heap* fail(platform::Failure f) {
  platform::report_failure(f);
  return nullptr;
}

}  // namespace

SHARD_EXPORT shard_heap* shard_heap_new_in_region(shard_region* r, size_t bytes) {
  if (r == nullptr || bytes < SHARD_HEAP_REGION_MIN_BYTES)
    return fail(platform::Failure::kInvalidArgument);
  if (bytes > core::kMaxRequest) return fail(platform::Failure::kNoMemory);
  void* span = nullptr;
  if (shard_region_alloc(r, bytes, 1, &span) != SHARD_OK) return fail(platform::Failure::kNoMemory);
  // A block this large has a segment span of its own: it is ours up to the
  // span's end, whatever was asked for.
  core::Step step;  // no fork leaves the record claimed but the heap never handed out
  core::Domain::ArenaPlan plan;
  core::FirstClassHeap* h = nullptr;
  if (core::Domain::plan_arena(span, core::usable_size(span), 0, &plan))
    h = core::FirstClassHeap::claim(&r->domain);
  if (h == nullptr) {
    shard_region_dealloc(r, span, bytes, 1);
    return fail(platform::Failure::kNoMemory);
  }
  h->domain.source = kSpanSource;
#ifdef SHARDALLOC_PLATFORM_LINUX
  h->domain.request_clock_ms = &platform::os_now_ms;  // paces collect requests (domain.h)
#endif
  h->domain.ensure_secret(platform::entropy() ^ core::addr(h));
  h->domain.add_arena(plan);
  h->span = span;
  h->span_bytes = bytes;
  h->span_owner = r;
  h->release = &give_span_back;
  return reinterpret_cast<shard_heap*>(h);
}
