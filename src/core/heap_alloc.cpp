// Allocation slow paths: page search, fresh pages, aligned and huge blocks.
#include "core/assert.h"
#include "core/bits.h"
#include "core/domain.h"
#include "core/heap.h"
#include "core/hooks.h"
#include "core/span_trim.h"

namespace shardalloc::core {
namespace {

// Blocks of a power-of-two size start naturally aligned; others on kMinAlign
// (every block size is a multiple of it, so every block of the page is).
uintptr_t area_start(uintptr_t start, size_t block) {
  return align_up(start, is_pow2(block) ? block : kMinAlign);
}

}  // namespace

// Checked mode's per-page secrets: fresh for every page init, unguessable
// without the domain's secret.
uintptr_t Heap::key_seed(const Page* page) {
  if constexpr (!kChecked) return 0;
  return domain->secret.load(std::memory_order_relaxed) ^ (addr(page) * 0x9e3779b97f4a7c15ull) ^
         ++pages_keyed;  // relaxed: written once before any segment exists
}

void Heap::answer_collect_request() {
  // relaxed: a request only asks for work that is safe at any time; a
  // request seen one slow path late costs that much delay.
  const uint32_t asked = domain->collect_requests.load(std::memory_order_relaxed);
  if (SHARD_LIKELY(asked == collect_requests_seen)) return;
  // At most one answer per kCollectRequestIntervalMs: a request left
  // unanswered here is answered at a later slow path.
  if (uint64_t(*const clock)() = domain->pacing_clock()) {
    const uint64_t now = clock();
    if (collect_answered_ms != 0 && now - collect_answered_ms < kCollectRequestIntervalMs) return;
    collect_answered_ms = now != 0 ? now : 1;
  }
  collect_requests_seen = asked;
  collect_all();
}

void* Heap::alloc_slow(size_t size) {
  // (One test for both: placeholder and sampling are adjacent bytes.)
  if (SHARD_UNLIKELY(placeholder | sampling)) {
    if (!placeholder) return alloc_slow_sampled(size);
    Heap* real = platform::current_heap(domain);
    return real != nullptr && !real->placeholder ? real->alloc_block(size) : nullptr;
  }
  drain_notified();
  answer_collect_request();
  if ((++slow_calls & 63) == 0) domain->run_due_maintenance();
  if (size > kLargeBlockMax) return alloc_huge(size, 0);
  const unsigned cls = size_class_of(size);
  Page* page = find_page<false>(cls);
  if (page == nullptr) page = fresh_page(cls);
  if (page == nullptr) return nullptr;
  return page->pop_free();
}

// alloc_slow while the domain samples its allocations (heap_sample.cpp).
SHARD_NOINLINE void* Heap::alloc_slow_sampled(size_t size) {
  drain_notified();
  answer_collect_request();
  if ((++slow_calls & 63) == 0) domain->run_due_maintenance();
  if (size > kLargeBlockMax) {
    void* p = alloc_huge(size, 0);
    return p != nullptr ? charge_huge(p, size) : nullptr;
  }
  const unsigned cls = size_class_of(size);
  if (cuts[cls].page != nullptr) {
    if (void* p = take_sample(cls, size)) return p;
  }
  Page* page = find_page<true>(cls);
  if (page == nullptr) page = fresh_page(cls);
  if (page == nullptr) return nullptr;
  charge_page(page);
  if (page->free == nullptr) return take_sample(cls, size);  // cut at its first block
  return page->pop_free();
}

// kSampling: a list that collect or extend fills is not charged to the
// sample budget yet (heap_sample.cpp).
template <bool kSampling>
Page* Heap::find_page(unsigned cls) {
  PageQueue& q = queues[cls];
  Page* page = q.first;
  while (page != nullptr) {
    // An owner that allocates has no sealed page (unseal_all ran at adoption).
    SHARD_ASSERT(page->load_thread_free(std::memory_order_relaxed).state() != NotifyState::kSealed);
    if (page->free == nullptr) {
      if constexpr (kSampling) page->sample_flags &= uint8_t(~Page::kListCharged);
      count_remote_frees(page->collect());
    }
    if (page->free == nullptr && page->capacity < page->reserved) page->extend();
    if (page->free != nullptr) {
      if (page != q.first) {
        queue_remove(q, page);
        queue_push_front(q, page);
      }
      set_direct(cls, page);
      return page;
    }
    Page* next = page->next;
    if (!move_to_full(page)) continue;  // remote frees arrived meanwhile: collect them
    page = next;
  }
  return nullptr;
}

Segment* Heap::claim_segment(size_t slots, size_t align, size_t align_offset, size_t written) {
  Segment* s = domain->claim_segment(slots, align, align_offset, written);
  if (s != nullptr) return s;
  // Out of slots: give back the empty pages this heap keeps for reuse, then retry.
  collect_all();
  s = domain->claim_segment(slots, align, align_offset, written);
  // Still none: the other heaps may keep pages that their own threads or
  // others freed; each gives them back at its next slow path.
  if (s == nullptr) collect_requests_seen = domain->request_collect();
  return s;
}

Segment* Heap::claim_owned_segment(const PageGeometry& g) {
  Segment* s = claim_segment(1, 0, 0);
  if (s == nullptr) return nullptr;
  s->heap = this;
  s->kind = g.kind;
  s->page_shift = g.shift;
  s->fill_page_table();
  s->page_count = g.count;
  s->used_pages = 0;
  s->next_partial = s->prev_partial = nullptr;
  s->in_partial_list = 0;
  // used = 0 too: the header may hold a former huge block's data, and the
  // local free fast path trusts used == 0 to reject a page not in use. Only
  // the segment's own pages: page_of maps no address past page_count, and
  // every reader of the headers stops there (a large segment then writes 2
  // lines here, not 16: mixed-sizes claims one per batch).
  Page* pages = s->pages();
  for (size_t i = 0; i < g.count; ++i) {
    pages[i].in_use = 0;
    pages[i].used = 0;
    pages[i].free_since = 0;
  }
  owner_add(segment_count, 1u);  // a hint for sweepers; the heap's ownership CAS orders the rest
  return s;
}

namespace {

void partial_push(Segment*& head, Segment* s) {
  s->prev_partial = nullptr;
  s->next_partial = head;
  if (head != nullptr) head->prev_partial = s;
  head = s;
  s->in_partial_list = 1;
}

}  // namespace

void partial_remove(Segment*& head, Segment* s) {
  if (!s->in_partial_list) return;
  if (s->prev_partial != nullptr)
    s->prev_partial->next_partial = s->next_partial;
  else
    head = s->next_partial;
  if (s->next_partial != nullptr) s->next_partial->prev_partial = s->prev_partial;
  s->next_partial = s->prev_partial = nullptr;
  s->in_partial_list = 0;
}

void partial_add(Segment*& head, Segment* s) {
  if (!s->in_partial_list) partial_push(head, s);
}

Page* Heap::fresh_page(unsigned cls) {
  const size_t block = class_block_size(cls);
  const PageGeometry g = geometry_for_block(block);
  kept_classes |= expired_classes & (uint64_t{1} << cls);  // its page went too soon
  Segment* s;
  if (g.count == 1) {
    s = claim_owned_segment(g);
    if (s == nullptr) return nullptr;
  } else {
    Segment*& list = partial[partial_index(g.kind)];
    s = list;
    if (s == nullptr) {
      s = claim_owned_segment(g);
      if (s != nullptr) {
        partial_add(list, s);
      } else {
        s = list;  // the failed claim collected this heap: a page may have come free
        if (s == nullptr) return nullptr;
      }
    }
    if (size_t(s->used_pages) + 1 == s->page_count) partial_remove(list, s);
  }
  size_t i = 0;
  while (s->pages()[i].in_use) ++i;
  if (dirty_pages != 0 && s->pages()[i].free_since == 0) {
    // A free page whose memory is still resident (not purged yet) first.
    for (size_t k = i + 1; k < s->page_count; ++k) {
      if (!s->pages()[k].in_use && s->pages()[k].free_since != 0) {
        i = k;
        break;
      }
    }
  }
  Page* page = &s->pages()[i];
  if (page->free_since != 0) --dirty_pages;  // reused before it was purged (init clears the mark)
  const size_t page_bytes = g.count == 1 ? kSegmentSize : size_t{1} << g.shift;
  const uintptr_t start = addr(s) + i * page_bytes + (i == 0 ? kSegmentHeaderSize : 0);
  const uintptr_t end = addr(s) + (i + 1) * page_bytes;
  const uintptr_t area =
      area_start(start + kFrontGuardBytes, block);  // checked: room for the front guard
  page->init(ptr<uint8_t>(area), end - area, block, cls, key_seed(page));
  ++s->used_pages;
  page->extend();
  queue_push_front(queues[cls], page);
  set_direct(cls, page);
  return page;
}

void* Heap::alloc_huge(size_t size, size_t align) {
  if (size > kMaxRequest || align > kMaxRequest) return nullptr;
  if (size == 0) size = 1;
  if (kChecked && domain->source.protect != nullptr && size > kLargeBlockMax &&
      align <= kHugeGuardAlignMax) {
    return alloc_huge_guarded(size, align);
  }
  size_t offset, slots, align_offset = 0;
  if (align <= kSegmentSize) {
    // (Checked mode: the block's trailer follows the header; else the front guard.)
    offset = align_up(kSegmentHeaderSize + kCanaryBytes + kHugeFrontGuardBytes,
                      align > kMinAlign ? align : kMinAlign);
    slots = (offset + size + kSegmentSize - 1) / kSegmentSize;
    align = 0;
  } else {
    // The block starts at the slot after the header, on an align boundary.
    offset = kSegmentSize;
    slots = 1 + (size + kSegmentSize - 1) / kSegmentSize;
    align_offset = 1;
  }
  if (slots == 0) slots = 1;
  // The inaccessible slot after the span (segment.h): one mapping change
  // here and one at free, nothing on any other path.
  const bool tail_guard = domain->source.guard != nullptr && size <= kHugeTailGuardMax;
  note_setup(slots * kSegmentSize);
  Segment* s = claim_segment(slots + tail_guard, align, align_offset, offset + size);
  if (s == nullptr) return nullptr;
  s->huge_written = offset + size;
  trim_reused_span(s, slots, offset + size);
  uint8_t* block = ptr<uint8_t>(addr(s) + offset);
  const uintptr_t span_end = addr(s) + slots * kSegmentSize;
  if (tail_guard) domain->source.guard(ptr(span_end + kOsPage), kSegmentSize - kOsPage, true);
  if constexpr (kHugeFrontGuardBytes != 0) {
    auto* guard = ptr<uintptr_t>(addr(block) - kHugeFrontGuardBytes);
    guard[0] = huge_front_guard(s->cookie, 0);
    guard[1] = huge_front_guard(s->cookie, 1);
  }
  set_up_huge(s, block, span_end - addr(block), tail_guard);
  return block;
}

void Heap::set_up_huge(Segment* s, uint8_t* block, size_t usable, bool tail_guard) {
  s->heap = nullptr;
  s->kind = SegmentKind::kHuge;
  s->page_shift = 63;
  s->fill_page_table();
  s->page_count = 1;
  s->used_pages = 1;
  s->in_partial_list = 0;
  s->tail_guard = tail_guard;
  Page* page = &s->pages()[0];
  page->init(block, usable, usable, 0, key_seed(page));
  page->set_capacity(1);
  page->used = 1;
  // relaxed: statistics; taken back in Domain::release_segment.
  domain->overhead_bytes.fetch_add(size_t(Domain::huge_overhead(s)), std::memory_order_relaxed);
}

void* Heap::alloc_aligned_block(size_t size, size_t align) {
  if (align <= kMinAlign) return alloc_block(size);
  // A zero-size block still needs a byte: the aligned pointer must stay inside it.
  if (size == 0) size = 1;
  if (placeholder) {
    Heap* real = platform::current_heap(domain);
    return real != nullptr && !real->placeholder ? real->alloc_aligned_block(size, align) : nullptr;
  }
  if (SHARD_UNLIKELY(sampling)) return alloc_aligned_sampled(size, align);
  return alloc_aligned_body(size, align);
}

// alloc_aligned_block while the domain samples: a sample may be replaced
// (platform::sampled_alloc) by a block aligned as asked, returned as it is.
SHARD_NOINLINE void* Heap::alloc_aligned_sampled(size_t size, size_t align) {
  sample_align = align;
  void* p = alloc_aligned_body(size, align);
  sample_align = 0;
  return p;
}

// alloc_aligned_block past its checks (align > kMinAlign, size > 0, a real heap).
void* Heap::alloc_aligned_body(size_t size, size_t align) {
  if (size <= kLargeBlockMax && align <= kLargeBlockMax) {
    void* p = alloc_block(size);
    // (A replacement of a sample is aligned: a misaligned p is a block of ours.)
    if (p == nullptr || (addr(p) & (align - 1)) == 0) return p;
    push_local(segment_of(p)->page_of(p), static_cast<Block*>(p));  // just popped: live, ours
    const size_t padded = size + align - kMinAlign;
    if (padded <= kLargeBlockMax) {
      // The pointer returned lies inside the block: a sample of it must stay ours.
      if (SHARD_UNLIKELY(sampling)) sample_align = platform::kSampleKeep;
      p = alloc_block(padded);
      if (p == nullptr) return nullptr;
      segment_of(p)->page_of(p)->has_interior.store(
          1, std::memory_order_relaxed);  // relaxed: see page.h
      return ptr(align_up(addr(p), align));
    }
  }
  if (size > kMaxRequest) return nullptr;
  drain_notified();
  void* p = alloc_huge(size, align);
  if (SHARD_UNLIKELY(sampling) && p != nullptr) return charge_huge(p, size);
  return p;
}

size_t usable_size(const void* p) {
  if constexpr (kChecked) return requested_size(p);
  return segment_of(p)->page_of(p)->usable_from(p);
}

}  // namespace shardalloc::core
