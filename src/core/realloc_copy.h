// realloc's copy of a block's contents into the huge block it moves to,
// without making resident the pages a sparse block never wrote.
#pragma once
#include <cstddef>
#include <cstdint>

#include "core/bits.h"
#include "core/calloc_clear.h"
#include "core/checked.h"
#include "core/domain.h"
#include "core/segment.h"
#include "core/span_trim.h"

namespace shardalloc::core {

// Copies of fewer bytes are a plain memcpy: below this, a sparse block
// costs little memory anyway, and the residency probe costs a system call.
inline constexpr size_t kSparseCopyMin = size_t{1} << 20;

// Whether the kOsPage bytes at p all read as zero. p is 8-byte aligned
// (a huge block's start is, and the offsets are whole pages from it).
inline bool page_reads_zero(const unsigned char* p) {
  uint64_t any = 0;
  for (size_t i = 0; i < kOsPage; i += 4 * sizeof(uint64_t)) {
    uint64_t w[4];
    __builtin_memcpy(w, p + i, sizeof w);
    any |= w[0] | w[1] | w[2] | w[3];
    if (any != 0) return false;  // most pages of a dense run stop at their first words
  }
  return true;
}

// Copies the n bytes (whole pages) at p to q, skipping the pages whose
// source reads as zero: q's pages there already read as zero.
inline void copy_nonzero_pages(unsigned char* q, const unsigned char* p, size_t n) {
  size_t run = 0;  // the start of the run of non-zero pages being gathered
  for (size_t at = 0; at < n; at += kOsPage) {
    if (!page_reads_zero(p + at)) continue;
    if (at > run) __builtin_memcpy(q + run, p + run, at - run);
    run = at + kOsPage;
  }
  if (n > run) __builtin_memcpy(q + run, p + run, n - run);
}

// realloc moved a block of n or more bytes at p to q, a huge block just
// allocated: copies the first n. Where p's memory is mostly not resident
// (a sparse table: a 512 MiB block with three bytes written), a memcpy would
// write, and make resident, every page of q (glibc moves the pages with
// mremap; here a 64 GiB sparse block grown was killed for want of memory).
// Instead q's whole pages are purged (unless they are fresh, reading as
// zero already) and only the pages whose source is not all zero are copied.
// Every page of the source is read: a never-written one maps the shared
// zero page, which costs no memory but a fault (a 2 GiB block with 3 bytes
// written: about 1 s). The kernel's page map could tell such holes without
// a fault, but not that they read as zero: under a userfaultfd (CRIU's lazy
// restore) a page absent from it holds the program's bytes until its first
// touch brings them (a review: skipped unread, a moved 16 MiB block read as
// zero; api.ReallocCopyReview.PagesAUserfaultfdSuppliesOnFirstTouchAreCopied).
// Mostly resident (the common, dense case), or where q cannot be purged
// (locked pages, a region without purge): memcpy. Checked builds copy:
// their blocks' fresh bytes are not zero (the slack pattern).
inline void copy_to_moved_block(void* q, const void* p, size_t n) {
  Segment* s = segment_of(q);
  const uintptr_t start = align_up(addr(q), kOsPage);
  const uintptr_t end = align_down(addr(q) + n, kOsPage);
  if (!kChecked && n >= kSparseCopyMin && s->kind == SegmentKind::kHuge && start < end &&
      mostly_not_resident(s->domain, static_cast<const unsigned char*>(p) + (start - addr(q)),
                          end - start) &&
      (s->zeroed || purge_span_from(s, start, end))) {
    const size_t head = start - addr(q);
    __builtin_memcpy(q, p, head);
    copy_nonzero_pages(ptr<unsigned char>(start), static_cast<const unsigned char*>(p) + head,
                       end - start);
    __builtin_memcpy(ptr(end), static_cast<const unsigned char*>(p) + (end - addr(q)),
                     addr(q) + n - end);
    return;
  }
  __builtin_memcpy(q, p, n);
}

}  // namespace shardalloc::core
