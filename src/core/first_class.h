// A first-class heap: a domain of its own (own arenas, own secret) that any
// number of threads allocate from at once, each through its own Heap in it
// (platform::current_first_class_heap), and that is destroyed at once with every block
// still in it: its memory goes back whole (OS arenas unmapped, or the span
// given back to its region).
//
// Where records live: a record (this struct) sits in the metadata of a
// permanent `host` domain (the process domain for heaps over OS memory, the
// region for heaps bound to a region) and is never freed. All records are on
// one push-only list (protocol 6 of docs/protocols.md); destroy marks a record
// free and a later heap of the same host reuses it under the next generation
// (DomainLife, protocol 7). The Domain inside is rebuilt for each incarnation.
//
// Precondition of destroy: no call on the heap is in flight, and no block of
// it is used afterwards. Threads that used the heap may still be running (or
// exiting) and keep a stale cache entry; the generation tells them.
#pragma once
#include <atomic>
#include <cstddef>
#include <cstdint>

#include "core/domain.h"
#include "core/domain_life.h"

namespace shardalloc::core {

struct FirstClassHeap {
  DomainLife life;                        // permanent: outlives every incarnation
  FirstClassHeap* next_record = nullptr;  // permanent list; immutable once published

  // One incarnation, set up by claim() and the creator before the heap is handed out:
  Domain domain;
  // True when the segment header at s may be read (s lies in memory this
  // kind of heap takes its arenas from). Null: s must lie in one of the
  // domain's arenas (a walk of the arena list).
  bool (*segment_readable)(const void* s) = nullptr;
  // Gives the domain's memory back; run by destroy once nobody touches it. Null: nothing to give
  // back.
  void (*release)(FirstClassHeap* h) = nullptr;
  // A heap bound to a region: the block it took from its region.
  void* span = nullptr;
  size_t span_bytes = 0;
  void* span_owner = nullptr;

  // A free record of `host` (claimed: LIVE) or a new one made in host's
  // metadata, with a fresh Domain whose `life` points here. The creator sets
  // the domain's source, secret and memory. Null when host has no metadata memory.
  static FirstClassHeap* claim(Domain* host);
  // The record whose domain is d (d must be a record's domain).
  static FirstClassHeap* of(Domain* d);

  bool is_live() const { return life.is_live(); }
  // True when p lies in a live segment of this heap's domain (then p's
  // header is one of ours; whether p is a live block is checked by free).
  bool owns(const void* p) const;
  // A block of `size` bytes aligned to `align` (a power of two) from the
  // calling thread's heap in the domain; null when the domain has no memory left.
  void* alloc(size_t size, size_t align);
  // Frees p (owns(p) must hold), from any thread.
  void free(void* p);
  // The same without the calling thread's heap in the domain (a thread that
  // has none, or a signal handler that interrupted a call on it): the block
  // is pushed as a remote free, the accounting goes to the domain.
  void free_heapless(void* p);
  // alloc() from a heap borrowed for this one call (Domain::alloc_borrowed).
  void* alloc_borrowed(size_t size, size_t align);
  // Sum of the block sizes of live blocks. Exact when no call is in flight.
  size_t used_bytes() const;
  // In a forked child: the threads that held pins are gone (and the forking
  // thread holds none): every record's pin count goes back to zero, so that
  // destroy does not wait for them (docs/protocols.md, "8. The fork gate").
  static void drop_pins_after_fork();
  // Ends the incarnation: LIVE -> DYING, waits for pinned threads
  // (platform::quiesce_domain), gives the memory back, -> FREE.
  // Stops with a fatal error when the heap is not live.
  void destroy();
};

}  // namespace shardalloc::core
