// Call stacks (stack_walk.h): libgcc's unwinder, found with dlopen (the
// library needs only libc), and on x86-64 a cache of verified stacks in
// front of it (docs/profiling.md, "Stack capture").
//
// Why a cache: a program that allocates from a loop samples the same stack
// again and again, and libgcc spends ~1,800 instructions a frame (finding
// and interpreting each frame's CFI) to find it again. What makes a cached
// stack safe to reuse: on x86-64 a call stores its return address just
// below the caller's stack pointer, so the stack of a capture is a list of
// (address, return address) pairs, the addresses at fixed distances from the
// capturing frame. An entry is keyed by capture_stack's own frame address;
// a later capture with that frame address reads each listed address of its
// own stack, outermost last, and reuses the entry only when every one still
// holds the listed return address. Frame i+1's slot is read only after
// frame i's matched, i.e. only where the same function at the same call
// site keeps its return address; a different caller anywhere in the chain
// leaves a different return address in its slot. That holds for a caller
// whose frame has a fixed size at the call site. A frame whose size varies
// (alloca, a VLA, stack realignment) is not pinned down by the key: with a
// frame below it that varies the other way (say an alloca'd buffer in each),
// its return address slot moves while the key stays, and the old slot may
// lie in memory the new layout never wrote, still holding the old return
// address (a wrong stack; above a shorter stack's top, unmapped memory).
// Such frames keep a frame pointer (the CFA is rbp + 16): the entry marks
// them, and a capture checks their slot against the frame pointer chain of
// its own stack, starting from the rbp that capture_stack itself saved at
// the key (the chain passes through frames that keep rbp, and through the
// rbp each frame-pointer frame saved at its CFA - 16). A stack with such a
// frame that the chain cannot reach, or with a realigned frame that copied
// its return address (gcc's DRAP), is not cached. What remains assumed: a
// frame whose size varies keeps rbp at its CFA - 16 (gcc's and clang's
// prologues; hand-written code may differ), and a frame seen to keep its
// caller's rbp in the register at a call site keeps it there every time.
// Entries are made only from walks whose every slot held its frame's return
// address, and never across a signal frame (the kernel's frame varies in
// size). An entry stands for the whole stack (`whole`) only when its walk
// reached the stack's end (the outermost frame's undefined return address),
// not when the unwinder gave up at a frame without unwind tables: the code
// there can change (dlclose, then a library with tables at the same address;
// a JIT that registers its tables later). Not noticed: code replaced at the
// same address by code with other frame sizes, or by code without tables
// where the walk went on (an unload count, dl_iterate_phdr's dlpi_subs, takes
// the loader's write lock, which a fork child inherits held when another
// thread held it: the child's first capture would wait forever).
#include "platform/linux/stack_walk.h"

#include <dlfcn.h>
#include <execinfo.h>
#include <link.h>
#include <sys/mman.h>

#include <atomic>
#include <cstddef>
#include <cstdint>

namespace shardalloc::platform {
namespace {

// libgcc's unwinder interface (the Itanium C++ ABI's), declared here: the
// functions are looked up, not linked.
struct UnwindContext;
using TraceFn = int (*)(UnwindContext*, void*);
using BacktraceFn = int (*)(TraceFn, void*);
using GetFn = uintptr_t (*)(UnwindContext*);
using GetGRFn = uintptr_t (*)(UnwindContext*, int);
using GetIPInfoFn = uintptr_t (*)(UnwindContext*, int*);
constexpr int kDwarfRbp = 6;  // x86-64's DWARF number of rbp
constexpr int kUnwindNoReason = 0;
constexpr int kUnwindStop = 5;  // _URC_END_OF_STACK: any other code stops the walk

BacktraceFn g_backtrace = nullptr;
GetFn g_get_ip = nullptr;
GetFn g_get_cfa = nullptr;
GetGRFn g_get_gr = nullptr;           // the cache's (x86-64)
GetIPInfoFn g_get_ip_info = nullptr;  // the cache's: tells a signal frame
std::atomic<int> g_started{0};        // 0 not yet, 1 starting, 2 done
// Our module's loaded range, [g_own_base, g_own_end); 0 when not known.
uintptr_t g_own_base = 0;
uintptr_t g_own_end = 0;

#if defined(__x86_64__)
constexpr bool kCacheStacks = true;
#else
constexpr bool kCacheStacks = false;  // the return address is not at a fixed slot
#endif

constexpr unsigned kCacheBits = 10;
// Entries of one key: a loop that allocates from several call sites at the
// same depth (say, one inlined helper called from four places) has one key
// for all of them.
constexpr unsigned kWays = 4;

// One cached stack. `busy` is a try-lock taken by a capture that reads or
// writes the entry; a capture that finds it taken walks the stack instead.
struct CachedStack {
  std::atomic<uint32_t> busy;
  uint32_t depth;  // frames listed
  bool whole;      // the walk reached the stack's end (else it stopped at depth)
  uintptr_t key;   // capture_stack's frame address when walked; 0: empty
  // Where frame i's return address lies, from key (a multiple of 8), or'd
  // with kCheckBp / kLoadBp for the frame it returns into.
  uint32_t slot[kStackMaxFrames];
  uintptr_t frame[kStackMaxFrames];
};
static_assert(std::atomic<uint32_t>::is_always_lock_free);

// The frame that frame i returns into keeps a frame pointer (its CFA is
// rbp + 16, so its size may vary): frame i+1's slot must be the frame
// pointer chain's rbp + 8.
constexpr uint32_t kCheckBp = 1;
// ... and that frame saved its caller's rbp at rbp (CFA - 16): the chain
// goes on from there. Without it, the chain goes on with the same rbp
// (the frame does not change rbp) or ends (no later frame is checked).
constexpr uint32_t kLoadBp = 2;
constexpr uint32_t kSlotFlags = 7;

CachedStack* g_cache = nullptr;  // 1 << kCacheBits entries, mmap'd at start

// Per thread: the highest stack address this thread's own walks verified.
// A cached slot is read only at or below it (and above the capturing
// frame): memory of this thread's stack, mapped. A thread's first capture
// therefore always walks.
constinit thread_local uintptr_t tl_verified_top = 0;

std::atomic<uint64_t> g_hits{0};
std::atomic<uint64_t> g_walks{0};

// The first of the kWays entries where key's stacks go.
CachedStack* set_of(uintptr_t key) {
  const uint64_t set = ((key >> 4) * 0x9E3779B97F4A7C15ull) >> (64 - kCacheBits);
  return g_cache + (set & ~uint64_t{kWays - 1});
}

// Per thread: which way of a set the next new stack replaces (round robin).
constinit thread_local unsigned tl_next_way = 0;

bool try_lock(CachedStack& e) {
  // acquire: the previous holder's writes to the entry happen-before our reads.
  return e.busy.exchange(1, std::memory_order_acquire) == 0;
}
void unlock(CachedStack& e) {
  e.busy.store(0, std::memory_order_release);  // release: our writes to the next holder
}

// Reads a word of this thread's stack that may belong to a frame other than
// ours (a sanitizer's bookkeeping never marks return-address slots).
__attribute__((no_sanitize("address"))) uintptr_t stack_word(uintptr_t at) {
  return *reinterpret_cast<const volatile uintptr_t*>(at);
}

// The entry's stack when this thread's stack still holds it, else -1.
int reuse(const CachedStack& e, uintptr_t key, void** frames, int max) {
  if (e.key != key) return -1;
  const int n = int(e.depth) < max ? int(e.depth) : max;
  if (n < max && !e.whole) return -1;  // the walk stopped short of what is asked
  const uintptr_t top = tl_verified_top;
  uintptr_t bp = stack_word(key);  // our caller's rbp, saved by our prologue
  for (int i = 0; i < n; ++i) {
    const uint32_t slot = e.slot[i];
    const uintptr_t at = key + (slot & ~kSlotFlags);
    if (at > top || stack_word(at) != e.frame[i]) return -1;
    frames[i] = reinterpret_cast<void*>(e.frame[i]);
    if ((slot & kCheckBp) != 0 && i + 1 < n) {
      // The next frame's size varies: its slot is where our stack's chain says.
      if (bp + 8 != key + (e.slot[i + 1] & ~kSlotFlags) || bp + 8 > top) return -1;
      if ((slot & kLoadBp) != 0) bp = stack_word(bp);
    }
  }
  return n;
}

struct Walk {
  void** frames;
  uintptr_t* slots;  // absolute addresses
  uintptr_t* bps;    // each frame's rbp at its call (when g_get_gr is set)
  int max;
  int count;
  bool skipped_own;   // the first context, capture_stack itself, is not reported
  bool signal_frame;  // a context after a signal frame was met: not cacheable
  bool ended;         // the walk reached the stack's end (an undefined return address)
};

int collect_frame(UnwindContext* ctx, void* arg) {
  Walk& w = *static_cast<Walk*>(arg);
  if (!w.skipped_own) {
    w.skipped_own = true;
    return kUnwindNoReason;
  }
  uintptr_t ip;
  if (g_get_ip_info != nullptr) {
    int before_insn = 0;  // set for the interrupted frame of a signal frame
    ip = g_get_ip_info(ctx, &before_insn);
    if (before_insn != 0) w.signal_frame = true;
  } else {
    ip = g_get_ip(ctx);
  }
  if (ip == 0) {  // the outermost frame's undefined return (as backtrace())
    w.ended = true;
    return kUnwindStop;
  }
  if (w.count == w.max) return kUnwindStop;
  // The context's CFA is the stack pointer of its frame after the return,
  // i.e. the callee's CFA; the call stored the return address just below.
  w.frames[w.count] = reinterpret_cast<void*>(ip);
  w.slots[w.count] = g_get_cfa(ctx) - sizeof(uintptr_t);
  if (w.bps != nullptr) w.bps[w.count] = g_get_gr(ctx, kDwarfRbp);
  ++w.count;
  return kUnwindNoReason;
}

// Enters a walk's stack in its entry when every slot holds its frame and
// every frame whose size may vary can be checked (the header comment).
void remember(uintptr_t key, void* const* frames, const uintptr_t* slots, const uintptr_t* bps,
              int n, bool whole) {
  uintptr_t top = key;
  uint32_t offsets[kStackMaxFrames];
  // What reuse will know of frame i's rbp: from our own saved rbp on.
  bool bp_known = stack_word(key) == bps[0];
  for (int i = 0; i < n; ++i) {
    if (slots[i] < key || slots[i] - key > UINT32_MAX || (slots[i] - key) % 8 != 0 ||
        stack_word(slots[i]) != reinterpret_cast<uintptr_t>(frames[i]))
      return;
    if (slots[i] > top) top = slots[i];
    uint32_t flags = 0;
    if (i + 1 < n) {
      // frames[i] returns into a frame that ends at slots[i + 1] + 8 (its CFA).
      const uintptr_t bp = bps[i];
      if (slots[i + 1] == bp + 8) {  // CFA = rbp + 16: its size may vary
        if (!bp_known) return;
        flags = kCheckBp;
        if (stack_word(bp) == bps[i + 1])
          flags |= kLoadBp;
        else
          bp_known = false;
      } else {
        // A realigned frame with a copy of its return address above its
        // rbp, its CFA elsewhere (gcc's DRAP): its size varies, unchecked.
        if (bp > slots[i] && bp < slots[i + 1] &&
            stack_word(bp + 8) == reinterpret_cast<uintptr_t>(frames[i + 1]))
          return;
        if (bps[i + 1] != bp) bp_known = false;  // the frame changed rbp
      }
    }
    offsets[i] = uint32_t(slots[i] - key) | flags;
  }
  if (top > tl_verified_top) tl_verified_top = top;
  CachedStack& e = set_of(key)[tl_next_way++ % kWays];
  if (!try_lock(e)) return;
  e.key = key;
  e.depth = uint32_t(n);
  e.whole = whole;
  for (int i = 0; i < n; ++i) {
    e.slot[i] = offsets[i];
    e.frame[i] = reinterpret_cast<uintptr_t>(frames[i]);
  }
  unlock(e);
}

}  // namespace

// The end of the loaded segments of the object loaded at `base`.
static uintptr_t module_end(uintptr_t base) {
  struct Find {
    uintptr_t base;
    uintptr_t end;
  } find{base, 0};
  dl_iterate_phdr(
      [](dl_phdr_info* info, size_t, void* arg) {
        auto& f = *static_cast<Find*>(arg);
        if (info->dlpi_addr != f.base) return 0;
        for (int i = 0; i < info->dlpi_phnum; ++i) {
          const ElfW(Phdr)& ph = info->dlpi_phdr[i];
          if (ph.p_type != PT_LOAD) continue;
          const uintptr_t end = f.base + ph.p_vaddr + ph.p_memsz;
          if (end > f.end) f.end = end;
        }
        return 1;
      },
      &find);
  return find.end;
}

// Our module's range, when we are a shared object apart from the program.
static void find_own_module() {
  Dl_info info;
  if (dladdr(reinterpret_cast<void*>(&stack_walk_start), &info) == 0 || info.dli_fbase == nullptr ||
      info.dli_fname == nullptr || __builtin_strstr(info.dli_fname, ".so") == nullptr)
    return;
  const uintptr_t base = reinterpret_cast<uintptr_t>(info.dli_fbase);
  const uintptr_t end = module_end(base);
  if (end > base) {
    g_own_base = base;
    g_own_end = end;
  }
}

void stack_walk_start() {
  int expected = 0;
  // acquire/release: a second caller waits until the first has set the pointers.
  if (!g_started.compare_exchange_strong(expected, 1, std::memory_order_acquire)) {
    while (g_started.load(std::memory_order_acquire) != 2) {
    }
    return;
  }
  // The first backtrace() loads libgcc_s for glibc's own use (the fallback).
  void* frames[4];
  backtrace(frames, 4);
  if (void* gcc = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_LOCAL)) {
    g_backtrace = reinterpret_cast<BacktraceFn>(dlsym(gcc, "_Unwind_Backtrace"));
    g_get_ip = reinterpret_cast<GetFn>(dlsym(gcc, "_Unwind_GetIP"));
    g_get_cfa = reinterpret_cast<GetFn>(dlsym(gcc, "_Unwind_GetCFA"));
    g_get_gr = reinterpret_cast<GetGRFn>(dlsym(gcc, "_Unwind_GetGR"));
    g_get_ip_info = reinterpret_cast<GetIPInfoFn>(dlsym(gcc, "_Unwind_GetIPInfo"));
    if (g_backtrace == nullptr || g_get_ip == nullptr || g_get_cfa == nullptr)
      g_backtrace = nullptr;
  }
  // The cache needs the frames' rbp and to tell signal frames.
  if (kCacheStacks && g_backtrace != nullptr && g_get_gr != nullptr && g_get_ip_info != nullptr) {
    void* p = mmap(nullptr, sizeof(CachedStack) << kCacheBits, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p != MAP_FAILED) g_cache = static_cast<CachedStack*>(p);
  }
  find_own_module();
  g_started.store(2, std::memory_order_release);  // release: the pointers above
}

// (Read after stack_walk_start, which published them: see capture_stack.)
bool own_module_known() { return g_own_end != 0; }
bool own_frame(uintptr_t pc) { return pc >= g_own_base && pc < g_own_end; }

// Not inlined and not cloned: its frame address is the cache key, and its
// caller's return address sits at a fixed distance from it.
__attribute__((noinline)) int capture_stack(void** frames, int max) {
  if (max > kStackMaxFrames) max = kStackMaxFrames;
  if (max <= 0) return 0;
  // relaxed is enough below: stack_walk_start ran before any capture (the
  // callers start it before they turn sampling on).
  if (g_backtrace == nullptr) {
    // backtrace()'s first frame is ours: drop it.
    void* all[kStackMaxFrames + 1];
    const int n = backtrace(all, max + 1);
    for (int i = 1; i < n; ++i) frames[i - 1] = all[i];
    return n > 0 ? n - 1 : 0;
  }
  const uintptr_t key = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  if (g_cache != nullptr) {
    CachedStack* set = set_of(key);
    for (unsigned way = 0; way < kWays; ++way) {
      CachedStack& e = set[way];
      if (!try_lock(e)) continue;
      const int n = reuse(e, key, frames, max);
      unlock(e);
      if (n >= 0) {
        g_hits.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
        return n;
      }
    }
  }
  uintptr_t slots[kStackMaxFrames];
  uintptr_t bps[kStackMaxFrames];
  Walk w{frames, slots, g_cache != nullptr ? bps : nullptr, max, 0, false, false, false};
  g_backtrace(collect_frame, &w);
  g_walks.fetch_add(1, std::memory_order_relaxed);  // relaxed: a statistic
  // Whole: the walk reached the stack's end (before max, or just at it).
  if (g_cache != nullptr && !w.signal_frame && w.count > 0)
    remember(key, frames, slots, bps, w.count, w.ended);
  return w.count;
}

uint64_t stack_walk_cache_hits() { return g_hits.load(std::memory_order_relaxed); }
uint64_t stack_walk_full_walks() { return g_walks.load(std::memory_order_relaxed); }

}  // namespace shardalloc::platform
