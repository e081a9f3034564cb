// Allocation sampling for the heap profiler (docs/profiling.md, "Trigger").
//
// The fast path pops blocks from a page's free list without counting them.
// So the slow path counts for it: when it hands a page's free list to the
// fast path it charges the list's bytes to the heap's sample budget
// (sample_left), and when the budget runs out inside the list it cuts the
// list just before that block (the heap keeps the rest aside in `cuts`). The
// fast path then runs dry exactly at the allocation to sample and falls into
// alloc_slow, which serves it from the cut (take_sample), reports it to the
// platform and hands the rest back. The fast paths gain no instruction; the
// cost is on the slow path, and only while sampling is on.
#include "core/heap.h"
#include "core/hooks.h"

namespace shardalloc::core {
namespace {

int64_t draw() {
  const long long d = platform::sample_interval();
  return d < 1 ? 1 : d;
}

// A sample point lies in a block of `bytes` (sample_left <= bytes): moves
// the budget to the next point, counted from the block's end. Further points
// inside the same block are skipped: a block is sampled or not (the
// profiler's weight, 1 / (1 - e^(-bytes/rate)), accounts for that).
void advance_past(Heap& h, int64_t bytes) {
  int64_t left = h.sample_left - bytes;
  do left += draw();
  while (left <= 0);
  h.sample_left = left;
}

// Charges the `count` blocks from `first` on (the end of page's free list;
// `before` is the block listed before first, null when first heads the
// list), cutting at the block that holds the next sample point. The list is
// walked only when a point falls in it, up to that block.
void charge_list(Heap& h, Page* page, Block* first, Block* before, uint32_t count) {
  if (h.sample_left <= 0) h.sample_left = draw();
  const int64_t bytes = int64_t(page->block_size);
  if (int64_t(count) * bytes < h.sample_left) {
    h.sample_left -= int64_t(count) * bytes;
    return;
  }
  // The block that crosses the point: index k, (k + 1) * bytes >= sample_left.
  const uint32_t k = uint32_t((h.sample_left + bytes - 1) / bytes - 1);
  Block* prev = before;
  Block* b = first;
  for (uint32_t i = 0; i < k; ++i) {
    prev = b;
    b = page->next_of(b);
  }
  h.sample_left -= int64_t(k) * bytes;
  advance_past(h, bytes);
  h.cuts[page->size_class] = SampleCut{page, b, prev, count - k};
  if (prev == nullptr)
    page->free = nullptr;
  else
    page->set_next(prev, nullptr);
}

// Hands p, block of page, to the platform as a sampled allocation.
void* report_sample(Heap& h, Page* page, void* p, size_t size, size_t block_bytes) {
  bool tracked = false;
  void* r = platform::sampled_alloc(&h, p, size, h.sample_align, block_bytes, &tracked);
  if (tracked) {
    page->in_full |= Page::kHoldsSampled;
    page->sampled_block_added(p);
  }
  return r;
}

}  // namespace

void Heap::charge_page_slow(Page* page) {
  // Just filled by collect or extend (local_free is empty then): every block
  // not in use is on the list.
  uint32_t count = page->capacity - page->used;
  if (page->local_free != nullptr) {  // (not expected; counted the slow way)
    count = 0;
    for (Block* b = page->free; b != nullptr; b = page->next_of(b)) ++count;
  }
  charge_list(*this, page, page->free, nullptr, count);
}

void* Heap::take_sample(unsigned cls, size_t size) {
  const SampleCut c = cuts[cls];
  if (c.page == nullptr) return nullptr;
  cuts[cls] = SampleCut{};
  Page* page = c.page;
  Block* b = c.rest;
  Block* after = page->next_of(b);
  // While the page's list is not empty its last block is still c.tail.
  Block* before = page->free != nullptr ? c.tail : nullptr;
  if (before != nullptr)
    page->set_next(before, after);
  else
    page->free = after;
  ++page->used;
  if (after != nullptr) charge_list(*this, page, after, before, c.rest_count - 1);
  void* r = report_sample(*this, page, b, size, page->block_size);
  if (r != b) push_local(page, b);  // replaced: the block goes back
  return r;
}

void* Heap::charge_huge(void* p, size_t size) {
  if (sample_left <= 0) sample_left = draw();
  const int64_t bytes = int64_t(size);
  if (bytes < sample_left) {
    sample_left -= bytes;
    return p;
  }
  advance_past(*this, bytes);
  Segment* s = segment_of(p);
  void* r = report_sample(*this, &s->pages()[0], p, size, size);
  if (r != p) free_remote(domain, s, p);  // replaced: the block goes back
  return r;
}

void Heap::forget_page_samples(Page* page) {
  if (page->sample_flags & Page::kListCharged) {
    int64_t n = 0;
    for (Block* b = page->free; b != nullptr; b = page->next_of(b)) ++n;
    sample_left += n * int64_t(page->block_size);
    page->sample_flags &= uint8_t(~Page::kListCharged);
  }
  SampleCut& c = cuts[page->size_class];
  if (c.page != page) return;
  // Its sample point is skipped; the blocks go back on the list, uncharged.
  if (page->free != nullptr)
    page->set_next(c.tail, c.rest);
  else
    page->free = c.rest;
  c = SampleCut{};
}

const SampleCut* Heap::cut_of(const Page* page) const {
  const SampleCut& c = cuts[page->size_class];
  return c.page == page ? &c : nullptr;
}

}  // namespace shardalloc::core
