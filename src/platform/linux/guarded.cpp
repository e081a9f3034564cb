#include "platform/linux/guarded.h"

#include <dlfcn.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mman.h>

#include <atomic>

#include "core/bits.h"
#include "core/hooks.h"
#include "core/step.h"
#include "platform/linux/line_writer.h"

namespace shardalloc::platform {
namespace {

// Slot states. kBusy: one thread is setting the slot up or tearing it down.
enum : uint32_t { kNever = 0, kLive = 1, kFreed = 2, kBusy = 3 };

struct Slot {
  std::atomic<uint32_t> state{kNever};
  // Written by the thread that holds the slot in kBusy, published by the
  // release store of the next state; the fault handler reads them racily
  // (a report, best effort).
  uintptr_t block = 0;
  size_t size = 0;
  const void* alloc_site = nullptr;
  const void* free_site = nullptr;
  // Order of frees: the oldest freed slot is reused first. Atomic (relaxed):
  // claim_slot reads it while a free may be writing it; a stale value only
  // changes which freed slot is picked.
  std::atomic<uint64_t> freed_seq{0};
};

constexpr size_t kPoolBytes = (2 * kGuardedSlots + 1) * kGuardedPage;

Slot g_slots[kGuardedSlots];
std::atomic<uintptr_t> g_pool{0};      // start of the pool, 0 until reserved
std::atomic<uint32_t> g_reserving{0};  // 1 while a thread maps the pool
std::atomic<uint64_t> g_free_seq{0};
std::atomic<uint64_t> g_rate{0};
struct sigaction g_previous_segv;
struct sigaction g_previous_bus;

uintptr_t slot_page(uintptr_t pool, size_t i) { return pool + (2 * i + 1) * kGuardedPage; }

// The index of the slot whose block p (in the pool at `pool`) may be, or
// SIZE_MAX: the slot p lies in; or, for p at the end of a slot (the start of
// the guard page after it), that slot: a zero-size block sits there, so that
// any access to it faults.
size_t slot_index_of(uintptr_t pool, uintptr_t p) {
  const size_t page = (p - pool) / kGuardedPage;
  if (page % 2 == 1) return page / 2;
  if (page > 0 && (p - pool) % kGuardedPage == 0) return page / 2 - 1;
  return SIZE_MAX;
}

// The slack pattern byte at address a (keyed by the address only: it guards
// against stray writes, not against an attacker).
uint8_t slack_byte(uintptr_t a) { return uint8_t(0xa5 ^ (a * 0x9du) ^ (a >> 7)); }

void write_site(const char* what, const void* site) {
  LineWriter line;
  line.text("shardalloc:   ").text(what).text(" at ").hex(core::addr(site));
  Dl_info info{};
  if (site != nullptr && dladdr(site, &info) != 0) {
    if (info.dli_sname != nullptr) {
      line.text(" (").text(info.dli_sname).text("+0x");
      line.hex(core::addr(site) - core::addr(info.dli_saddr)).text(")");
    }
    if (info.dli_fname != nullptr) line.text(" in ").text(info.dli_fname);
  }
  line.flush();
}

[[noreturn]] void report(const char* bug, uintptr_t at, const Slot* s) {
  LineWriter()
      .text("shardalloc: fatal: guarded: ")
      .text(bug)
      .text(" at ")
      .hex(at)
      .text(", block ")
      .hex(s->block)
      .text(" of ")
      .num(s->size)
      .text(" bytes")
      .flush();
  write_site("allocated", s->alloc_site);
  if (s->state.load(std::memory_order_relaxed) == kFreed) write_site("freed", s->free_site);
  signal(SIGABRT, SIG_DFL);
  abort();
}

// Which block a fault at `a` (in the pool) is about, and how.
[[noreturn]] void report_fault(uintptr_t pool, uintptr_t a) {
  const size_t page = (a - pool) / kGuardedPage;
  if (page % 2 == 1) {
    const Slot* s = &g_slots[page / 2];
    const uint32_t st = s->state.load(std::memory_order_relaxed);
    report(st == kFreed ? "use after free" : "access to an unused slot", a, s);
  }
  // A guard page: the nearer of the block that ends before it (overflow)
  // and the block that starts after it (underflow).
  const Slot* left = page > 0 ? &g_slots[page / 2 - 1] : nullptr;
  const Slot* right = page / 2 < kGuardedSlots ? &g_slots[page / 2] : nullptr;
  const uintptr_t guard = pool + page * kGuardedPage;
  const bool right_used =
      right != nullptr && right->state.load(std::memory_order_relaxed) != kNever;
  const bool left_used = left != nullptr && left->state.load(std::memory_order_relaxed) != kNever;
  const size_t to_left = a - guard;
  const size_t to_right = right_used ? right->block - a : SIZE_MAX;
  if (left_used && (to_left < to_right || !right_used)) {
    report(left->state.load(std::memory_order_relaxed) == kFreed ? "use after free (past the end)"
                                                                 : "heap buffer overflow",
           a, left);
  }
  if (right_used) {
    report(right->state.load(std::memory_order_relaxed) == kFreed
               ? "use after free (before the start)"
               : "heap buffer underflow",
           a, right);
  }
  LineWriter().text("shardalloc: fatal: guarded: access to a guard page at ").hex(a).flush();
  signal(SIGABRT, SIG_DFL);
  abort();
}

void chain(const struct sigaction& previous, int sig, siginfo_t* info, void* context) {
  if (previous.sa_flags & SA_SIGINFO) {
    if (previous.sa_sigaction != nullptr) return previous.sa_sigaction(sig, info, context);
  } else if (previous.sa_handler != SIG_DFL && previous.sa_handler != SIG_IGN) {
    return previous.sa_handler(sig);
  }
  // The default action: restore it and return, so the access faults again and kills.
  signal(sig, SIG_DFL);
}

void on_fault(int sig, siginfo_t* info, void* context) {
  const uintptr_t pool = g_pool.load(std::memory_order_acquire);
  const uintptr_t a = core::addr(info->si_addr);
  if (pool != 0 && a >= pool && a < pool + kPoolBytes) report_fault(pool, a);
  chain(sig == SIGBUS ? g_previous_bus : g_previous_segv, sig, info, context);
}

void install_handler() {
  // Not twice: a reservation started again in a fork child (pool() below)
  // whose parent's reserver had installed it would chain to itself.
  struct sigaction current {};
  if (sigaction(SIGSEGV, nullptr, &current) == 0 && (current.sa_flags & SA_SIGINFO) != 0 &&
      current.sa_sigaction == &on_fault)
    return;
  struct sigaction sa {};
  sa.sa_sigaction = &on_fault;
  sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGSEGV, &sa, &g_previous_segv);
  sigaction(SIGBUS, &sa, &g_previous_bus);
}

// Set while this thread reserves the pool (pool(), the winner).
constinit thread_local bool tl_reserving = false;

// The pool's start, mapping it (all inaccessible) on first use; 0 on failure.
uintptr_t pool() {
  // acquire: pairs with the release store below (the handler is installed first).
  uintptr_t p = g_pool.load(std::memory_order_acquire);
  if (p != 0) return p;
  // A signal handler on the thread that is reserving: it cannot wait for
  // itself (the sample becomes an ordinary allocation).
  if (tl_reserving) return 0;
  uint32_t expected = 0;
  // Raised before the CAS: a signal handler's fork right after a winning CAS
  // must find it (guarded_after_fork_in_child would give the reservation up
  // while this thread goes on mapping: two pools in the child; a review).
  tl_reserving = true;
  // acquire/relaxed: the winner maps; losers wait for its release store of g_pool.
  if (!g_reserving.compare_exchange_strong(expected, 1, std::memory_order_acquire,
                                           std::memory_order_relaxed)) {
    tl_reserving = false;
    while ((p = g_pool.load(std::memory_order_acquire)) == 0) {
      // relaxed: the winner gave up (mapping failed), or a fork child gave up
      // its parent's reservation (guarded_after_fork_in_child): not waited for.
      if (g_reserving.load(std::memory_order_relaxed) != 1) return 0;
    }
    return p;
  }
  // A step: a fork waits for the reservation; one that does not wait long
  // enough leaves its child g_reserving == 1 with no pool, which
  // guarded_after_fork_in_child undoes (review: the child's first guarded
  // sample spun for ever).
  core::Step step;
  void* m =
      mmap(nullptr, kPoolBytes, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) {
    tl_reserving = false;
    g_reserving.store(2, std::memory_order_relaxed);  // relaxed: only a "give up" flag
    return 0;
  }
  install_handler();
  // release: a thread that sees the pool sees the handler installed.
  g_pool.store(core::addr(m), std::memory_order_release);
  tl_reserving = false;
  return core::addr(m);
}

// Claims a slot for a new block: a never-used one, else the one freed
// longest ago. Returns its index in kBusy, or SIZE_MAX.
size_t claim_slot() {
  for (int attempt = 0; attempt < 4; ++attempt) {
    size_t best = SIZE_MAX;
    uint64_t best_seq = UINT64_MAX;
    for (size_t i = 0; i < kGuardedSlots; ++i) {
      // relaxed: a candidate only; the CAS below decides.
      const uint32_t st = g_slots[i].state.load(std::memory_order_relaxed);
      if (st == kNever) {
        best = i;
        break;
      }
      // relaxed: see Slot::freed_seq.
      const uint64_t seq = g_slots[i].freed_seq.load(std::memory_order_relaxed);
      if (st == kFreed && seq < best_seq) {
        best = i;
        best_seq = seq;
      }
    }
    if (best == SIZE_MAX) return SIZE_MAX;
    uint32_t seen = g_slots[best].state.load(std::memory_order_relaxed);
    // acquire: we see the slot fields its last owner wrote before its release store.
    if ((seen == kNever || seen == kFreed) &&
        g_slots[best].state.compare_exchange_strong(seen, kBusy, std::memory_order_acquire,
                                                    std::memory_order_relaxed)) {
      return best;
    }
  }
  return SIZE_MAX;
}

}  // namespace

void* guarded_alloc_at(size_t size, size_t align, const void* site) {
  if (align < 16) align = 16;
  if (size > kGuardedMaxSize || align > kGuardedMaxSize || !core::is_pow2(align)) return nullptr;
  const uintptr_t base = pool();
  if (base == 0) return nullptr;
  const size_t i = claim_slot();
  if (i == SIZE_MAX) return nullptr;
  Slot& s = g_slots[i];
  const uintptr_t page = slot_page(base, i);
  if (mprotect(core::ptr(page), kGuardedPage, PROT_READ | PROT_WRITE) != 0) {
    // release: hands the slot back as it was (its fields unchanged).
    s.state.store(s.block == 0 ? kNever : kFreed, std::memory_order_release);
    return nullptr;
  }
  const uintptr_t end = page + kGuardedPage;
  const uintptr_t block = core::align_down(end - size, align);
  for (uintptr_t a = block + size; a < end; ++a) *core::ptr<uint8_t>(a) = slack_byte(a);
  s.block = block;
  s.size = size;
  s.alloc_site = site;
  s.free_site = nullptr;
  // release: the fields above are visible to whoever sees the block live.
  s.state.store(kLive, std::memory_order_release);
  return core::ptr(block);
}

void* guarded_alloc(size_t size, size_t align) {
  return guarded_alloc_at(size, align, __builtin_return_address(0));
}

bool guarded_owns(const void* p) {
  // relaxed: a pointer into the pool was handed out after the pool was published.
  const uintptr_t base = g_pool.load(std::memory_order_relaxed);
  return base != 0 && core::addr(p) >= base && core::addr(p) < base + kPoolBytes;
}

void guarded_free(void* p) { guarded_free_at(p, __builtin_return_address(0)); }

void guarded_free_at(void* p, const void* site) {
  const uintptr_t base = g_pool.load(std::memory_order_relaxed);  // relaxed: as in guarded_owns
  const size_t i = slot_index_of(base, core::addr(p));
  Slot* s = i != SIZE_MAX ? &g_slots[i] : nullptr;
  uint32_t seen = kLive;
  // acquire: we see the fields of the allocation. A loser of two racing frees sees kBusy/kFreed.
  if (s == nullptr || s->block != core::addr(p) ||
      !s->state.compare_exchange_strong(seen, kBusy, std::memory_order_acquire,
                                        std::memory_order_relaxed)) {
    if (s != nullptr && s->block == core::addr(p) && seen == kFreed) {
      report("double free", core::addr(p), s);
    }
    fatal("free of a pointer that is not allocated", p);
  }
  const uintptr_t end = slot_page(base, i) + kGuardedPage;
  for (uintptr_t a = s->block + s->size; a < end; ++a) {
    if (*core::ptr<uint8_t>(a) != slack_byte(a)) {
      s->state.store(kLive, std::memory_order_relaxed);
      report("heap buffer overflow (into the alignment slack, found at free)", a, s);
    }
  }
  s->free_site = site;
  // A fresh inaccessible mapping in place: the page is dropped with it.
  mmap(core::ptr(end - kGuardedPage), kGuardedPage, PROT_NONE,
       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_FIXED, -1, 0);
  // relaxed: an order among frees; the release store below publishes it.
  s->freed_seq.store(g_free_seq.fetch_add(1, std::memory_order_relaxed), std::memory_order_relaxed);
  s->state.store(kFreed, std::memory_order_release);  // release: see claim_slot's acquire
}

size_t guarded_usable_size(const void* p) {
  const uintptr_t base = g_pool.load(std::memory_order_relaxed);  // relaxed: as in guarded_owns
  const size_t i = slot_index_of(base, core::addr(p));
  const Slot* s = i != SIZE_MAX ? &g_slots[i] : nullptr;
  // acquire: see the fields of the allocation.
  if (s == nullptr || s->block != core::addr(p) ||
      s->state.load(std::memory_order_acquire) != kLive) {
    fatal("usable size of a pointer that is not allocated", p);
  }
  return s->size;
}

void guarded_after_fork_in_child() {
  // relaxed: only this thread runs. A reservation the fork cut in another
  // thread (gone with it): started again by the next sample. The mapping it
  // may have made stays reserved, unused (2 MiB of address space, nothing
  // resident). Slots another thread held busy stay so: lost to the child.
  if (!tl_reserving && g_pool.load(std::memory_order_relaxed) == 0 &&
      g_reserving.load(std::memory_order_relaxed) == 1)
    g_reserving.store(0, std::memory_order_relaxed);
}

uint64_t guarded_rate() { return g_rate.load(std::memory_order_relaxed); }  // relaxed: a setting
void set_guarded_rate(uint64_t rate) { g_rate.store(rate, std::memory_order_relaxed); }

}  // namespace shardalloc::platform
