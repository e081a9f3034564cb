// capture_stack (src/platform/linux/stack_walk.cpp): the stacks it returns
// equal glibc's backtrace() of the same call, whether they come from a walk
// or from its cache, when different callers reach it from the same depth
// (the same cache key), from different depths, and from several threads.
#include <dlfcn.h>
#include <execinfo.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <ucontext.h>

#include <cstdint>
#include <cstdlib>

#include <thread>
#include <vector>

#include "platform/linux/stack_walk.h"

namespace sp = shardalloc::platform;

// A function called as written: not inlined, and not cloned for constant
// arguments (gcc's IPA-CP; clang does not clone at -O2).
#if defined(__clang__)
#define NOT_INLINED_NOR_CLONED __attribute__((noinline))
#else
#define NOT_INLINED_NOR_CLONED __attribute__((noinline, noclone))
#endif

namespace {

struct Stacks {
  uintptr_t take_frame = 0;  // take's frame address: capture_stack's key follows it
  void* walked[sp::kStackMaxFrames];
  void* reference[sp::kStackMaxFrames + 1];
  int walked_n = 0;
  int reference_n = 0;
};

// glibc's backtrace() itself: a sanitizer's interceptor of backtrace()
// calls it from a frame of its own, which the stack it returns then starts
// with (StackWalk's SetUpTestSuite looks it up).
using BacktraceFn = int (*)(void**, int);
BacktraceFn g_libc_backtrace = backtrace;
void find_libc_backtrace() {
  if (void* libc = dlopen("libc.so.6", RTLD_NOW | RTLD_NOLOAD))
    if (void* fn = dlsym(libc, "backtrace")) g_libc_backtrace = reinterpret_cast<BacktraceFn>(fn);
}

// Both stacks from one frame: the first frame of each is in this function
// (after either call); from the second on they must be the same.
__attribute__((noinline)) void take(Stacks& s, int max) {
  s.take_frame = reinterpret_cast<uintptr_t>(__builtin_frame_address(0));
  s.reference_n = g_libc_backtrace(s.reference, sp::kStackMaxFrames + 1);
  s.walked_n = sp::capture_stack(s.walked, max);
  asm volatile("" ::: "memory");  // keep this frame (no tail call)
}

void expect_same(const Stacks& s, int max) {
  const int expected = s.reference_n < max ? s.reference_n : max;
  ASSERT_EQ(s.walked_n, expected);
  for (int i = 1; i < s.walked_n; ++i) EXPECT_EQ(s.walked[i], s.reference[i]) << "frame " << i;
}

// Two callers with the same frame: `take` runs at the same stack address from
// either, so the cache must tell them apart by their return addresses.
// (The asm strings differ: identical functions would be folded into one.)
__attribute__((noinline)) void via_a(Stacks& s, int max) {
  take(s, max);
  asm volatile("# via a" ::: "memory");
}
__attribute__((noinline)) void via_b(Stacks& s, int max) {
  take(s, max);
  asm volatile("# via b" ::: "memory");
}

__attribute__((noinline)) void nested(Stacks& s, int depth, int max) {
  if (depth == 0)
    take(s, max);
  else
    nested(s, depth - 1, max);
  asm volatile("" ::: "memory");
}

// Frames whose size varies (alloca) and compensate each other: the outer one
// grows by what the inner one shrinks, so `take` (and capture_stack's key)
// stays where it was while the inner frame's return address slot moves.
NOT_INLINED_NOR_CLONED void alloca_leaf(Stacks& s, int max, size_t bytes) {
  void* p = __builtin_alloca(bytes);
  asm volatile("" : : "r"(p) : "memory");
  take(s, max);
  asm volatile("" ::: "memory");
}
// Calls alloca_leaf from one of two call sites, below `bytes` of alloca'd
// memory it never writes.
NOT_INLINED_NOR_CLONED void alloca_mid(Stacks& s, int max, size_t bytes, size_t leaf_bytes,
                                       bool site_b) {
  void* p = __builtin_alloca(bytes);
  asm volatile("" : : "r"(p) : "memory");
  if (site_b) {
    asm volatile("# site b" ::: "memory");
    alloca_leaf(s, max, leaf_bytes);
    asm volatile("# after site b" ::: "memory");
  } else {
    asm volatile("# site a" ::: "memory");
    alloca_leaf(s, max, leaf_bytes);
    asm volatile("# after site a" ::: "memory");
  }
}

// alloca_mid's runs back to back from one call site; the sizes and the
// count are volatile: no clones, no unrolled copies of the call.
struct AllocaRun {
  size_t mid_bytes;
  size_t leaf_bytes;
};
using MidFn = void (*)(Stacks&, int, size_t, size_t, bool);
NOT_INLINED_NOR_CLONED void alloca_runs(Stacks* const* stacks, const volatile AllocaRun* runs,
                                        MidFn mid = alloca_mid) {
  volatile int count = 2;
  for (int k = 0; k < count; ++k)
    mid(*stacks[k], sp::kStackMaxFrames, runs[k].mid_bytes, runs[k].leaf_bytes, k == 1);
  asm volatile("" ::: "memory");
}

// alloca_mid in a frame that is also realigned (a 64-byte aligned local):
// gcc saves the incoming stack pointer (DRAP), copies the return address
// above the frame pointer, and its CFA is not rbp + 16.
NOT_INLINED_NOR_CLONED void realigned_mid(Stacks& s, int max, size_t bytes, size_t leaf_bytes,
                                          bool site_b) {
  alignas(64) volatile char aligned[64];
  aligned[0] = 0;
  void* p = __builtin_alloca(bytes);
  asm volatile("" : : "r"(p), "r"(&aligned[0]) : "memory");
  if (site_b) {
    asm volatile("# realigned site b" ::: "memory");
    alloca_leaf(s, max, leaf_bytes);
    asm volatile("# after realigned site b" ::: "memory");
  } else {
    asm volatile("# realigned site a" ::: "memory");
    alloca_leaf(s, max, leaf_bytes);
    asm volatile("# after realigned site a" ::: "memory");
  }
}

#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
// A coroutine (makecontext) whose one frame, co_frame, alloca's `bytes`
// before it captures; its stack is [base, base + size).
struct CoroutineRun {
  Stacks* stacks;
  size_t bytes;
};
CoroutineRun g_coroutine_run;
ucontext_t g_coroutine_caller;

NOT_INLINED_NOR_CLONED void co_frame(Stacks& s, size_t bytes) {
  void* p = __builtin_alloca(bytes);
  asm volatile("" : : "r"(p) : "memory");
  take(s, sp::kStackMaxFrames);
  asm volatile("" ::: "memory");
}
__attribute__((noinline)) void co_entry() {
  co_frame(*g_coroutine_run.stacks, g_coroutine_run.bytes);
  asm volatile("" ::: "memory");
}
void run_coroutine(char* base, size_t size, Stacks& s, size_t bytes) {
  ucontext_t context;
  getcontext(&context);
  context.uc_stack.ss_sp = base;
  context.uc_stack.ss_size = size;
  context.uc_link = &g_coroutine_caller;
  g_coroutine_run = {&s, bytes};
  makecontext(&context, co_entry, 0);
  swapcontext(&g_coroutine_caller, &context);
}

// CoroutineOnAShorterStackAtTheSameAddress's runs: 0 when the second
// capture equals backtrace()'s.
int shorter_coroutine_stack() {
  constexpr size_t kLong = size_t{1} << 20, kShort = size_t{64} << 10;
  void* region = mmap(nullptr, kLong, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) return 2;
  char* base = static_cast<char*>(region);
  Stacks first, second;
  run_coroutine(base, kLong, first, kLong - kShort + 4096);
  munmap(base + kShort, kLong - kShort);
  run_coroutine(base, kShort, second, 4096);
  if (first.take_frame != second.take_frame) return 3;  // the keys must meet
  const int expected =
      second.reference_n < sp::kStackMaxFrames ? second.reference_n : sp::kStackMaxFrames;
  if (second.walked_n != expected) return 4;
  for (int i = 1; i < second.walked_n; ++i)
    if (second.walked[i] != second.reference[i]) return 5;
  return 0;
}
#endif

// take() as a callback of stack_walk_lib_call (stack_walk_lib.c).
struct TakeArgs {
  Stacks* stacks;
  int max;
};
void take_callback(void* arg) {
  const TakeArgs& a = *static_cast<const TakeArgs*>(arg);
  take(*a.stacks, a.max);
  asm volatile("" ::: "memory");
}
using LibCall = void (*)(void (*)(void*), void*);
// Loads `path`, captures through its stack_walk_lib_call, unloads it;
// returns the function's address (nullptr: not loaded).
NOT_INLINED_NOR_CLONED void* through_library(const char* path, Stacks& s) {
  void* lib = dlopen(path, RTLD_NOW | RTLD_LOCAL);
  if (lib == nullptr) return nullptr;
  auto call = reinterpret_cast<LibCall>(dlsym(lib, "stack_walk_lib_call"));
  if (call == nullptr) return nullptr;
  TakeArgs args{&s, sp::kStackMaxFrames};
  call(take_callback, &args);
  dlclose(lib);
  return reinterpret_cast<void*>(call);
}

#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
// SIGTRAP's handler captures; the interrupted frame stored its resume
// address just below its stack pointer, where a call would have put it.
Stacks g_trap_stacks[4];
int g_traps = 0;
void on_trap(int) {
  if (g_traps < 4) take(g_trap_stacks[g_traps], sp::kStackMaxFrames);
  ++g_traps;
}
NOT_INLINED_NOR_CLONED void trap_with_resume_address_below_sp() {
  asm volatile(
      "leaq 1f(%%rip), %%rax\n\t"
      "movq %%rax, -8(%%rsp)\n\t"
      "int3\n"
      "1:\n\t" ::
          : "rax", "memory");
}
// Traps from one of two call sites, below `bytes` of alloca'd memory it never
// writes.
NOT_INLINED_NOR_CLONED void trap_caller(size_t bytes, bool site_b) {
  void* p = __builtin_alloca(bytes);
  asm volatile("" : : "r"(p) : "memory");
  if (site_b) {
    asm volatile("# site b" ::: "memory");
    trap_with_resume_address_below_sp();
    asm volatile("# after site b" ::: "memory");
  } else {
    asm volatile("# site a" ::: "memory");
    trap_with_resume_address_below_sp();
    asm volatile("# after site a" ::: "memory");
  }
}
// trap_caller's runs back to back from one call site: site A, then site B
// 16 bytes lower.
NOT_INLINED_NOR_CLONED void trap_runs(const volatile size_t* bytes) {
  volatile int count = 2;
  for (int k = 0; k < count; ++k) trap_caller(bytes[k], k == 1);
  asm volatile("" ::: "memory");
}
#endif

class StackWalk : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    sp::stack_walk_start();
    find_libc_backtrace();
  }
};

TEST_F(StackWalk, SameKeyDifferentCallersAreToldApart) {
  const uint64_t hits_before = sp::stack_walk_cache_hits();
  void* first_a = nullptr;
  void* first_b = nullptr;
  for (int round = 0; round < 50; ++round) {
    Stacks a, b;
    via_a(a, sp::kStackMaxFrames);
    via_b(b, sp::kStackMaxFrames);
    expect_same(a, sp::kStackMaxFrames);
    expect_same(b, sp::kStackMaxFrames);
    ASSERT_GE(a.walked_n, 2);
    if (round == 0) {
      first_a = a.walked[1];
      first_b = b.walked[1];
      EXPECT_NE(first_a, first_b);  // the return addresses into via_a and via_b
    }
    EXPECT_EQ(a.walked[1], first_a);
    EXPECT_EQ(b.walked[1], first_b);
  }
#if defined(__x86_64__)
  // Alternating callers evict each other's entry (same key) or hit it; the
  // repeated same-caller calls below must hit.
  for (int i = 0; i < 20; ++i) {
    Stacks a;
    via_a(a, sp::kStackMaxFrames);
    expect_same(a, sp::kStackMaxFrames);
  }
  EXPECT_GE(sp::stack_walk_cache_hits() - hits_before, 19u);
#else
  (void)hits_before;
#endif
}

TEST_F(StackWalk, DepthsAndShortRequests) {
  for (int round = 0; round < 20; ++round) {
    for (int depth : {0, 3, 7, 3, 60}) {
      for (int max : {sp::kStackMaxFrames, 4, 1}) {
        Stacks s;
        nested(s, depth, max);
        expect_same(s, max);
      }
    }
  }
}

TEST_F(StackWalk, ThreadsWithTheirOwnStacks) {
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([t] {
      for (int round = 0; round < 200; ++round) {
        Stacks s;
        if ((round + t) % 3 == 0)
          via_a(s, sp::kStackMaxFrames);
        else if ((round + t) % 3 == 1)
          via_b(s, sp::kStackMaxFrames);
        else
          nested(s, round % 5, sp::kStackMaxFrames);
        expect_same(s, sp::kStackMaxFrames);
      }
    });
  }
  for (auto& t : threads) t.join();
}

// Site A with a small outer and a large inner alloca, then at once (nothing
// in between writes the stack below this frame) site B with the sizes moved
// by 256 bytes: the same key, and the slot where site A's return address lay
// is now inside alloca_mid's unwritten memory, still holding it. The capture
// must report site B.
TEST_F(StackWalk, AllocaFramesThatCompensateEachOther) {
  const volatile AllocaRun runs[2] = {{64, 512}, {64 + 256, 512 - 256}};
  const uint64_t hits_before = sp::stack_walk_cache_hits();
  for (int round = 0; round < 4; ++round) {
    Stacks a, b;
    Stacks* both[2] = {&a, &b};
    alloca_runs(both, runs);
    ASSERT_EQ(a.take_frame, b.take_frame) << "the layouts must meet at the same key";
    expect_same(a, sp::kStackMaxFrames);
    expect_same(b, sp::kStackMaxFrames);
    ASSERT_GE(b.walked_n, 4);
    EXPECT_NE(a.walked[2], b.walked[2]);  // the return addresses into alloca_mid (sites A, B)
  }
#if defined(__x86_64__)
  // Frames that keep a frame pointer are still cached: rounds 2 to 4 hit.
  EXPECT_GE(sp::stack_walk_cache_hits() - hits_before, 6u);
#else
  (void)hits_before;
#endif
}

// AllocaFramesThatCompensateEachOther with a realigned outer frame.
TEST_F(StackWalk, RealignedAllocaFramesThatCompensateEachOther) {
  const volatile AllocaRun runs[2] = {{64, 512}, {64 + 256, 512 - 256}};
  for (int round = 0; round < 4; ++round) {
    Stacks a, b;
    Stacks* both[2] = {&a, &b};
    alloca_runs(both, runs, realigned_mid);
    ASSERT_EQ(a.take_frame, b.take_frame) << "the layouts must meet at the same key";
    expect_same(a, sp::kStackMaxFrames);
    expect_same(b, sp::kStackMaxFrames);
    ASSERT_GE(b.walked_n, 4);
    EXPECT_NE(a.walked[2], b.walked[2]);  // the return addresses into realigned_mid
  }
}

// Coroutines on stacks at the same address, the second shorter (the top of
// the first unmapped): co_frame's alloca shrinks by what the stack lost, so
// the key is the same and co_frame's return address slot of the first
// lies above the second stack's top. The capture must not read it (nor
// return the first's stack). Sanitizers do not follow makecontext stacks.
#if !defined(__SANITIZE_ADDRESS__) && !defined(__SANITIZE_THREAD__)
TEST_F(StackWalk, CoroutineOnAShorterStackAtTheSameAddress) {
  EXPECT_EXIT(std::_Exit(shorter_coroutine_stack()), ::testing::ExitedWithCode(0), "");
}
#endif

// A library without unwind tables ends the walk at its frame (backtrace()
// stops there too); unloaded and replaced by the same code with unwind
// tables at the same address, the walk goes on to the callers. The cached
// short stack must not be served for the second.
TEST_F(StackWalk, UnloadedLibraryReplacedAtTheSameAddress) {
  Stacks without, with;
  void* first = through_library(STACK_WALK_LIB_NOCFI, without);
  void* second = through_library(STACK_WALK_LIB_CFI, with);
  ASSERT_NE(first, nullptr) << dlerror();
  ASSERT_NE(second, nullptr) << dlerror();
  expect_same(without, sp::kStackMaxFrames);
  if (first != second) GTEST_SKIP() << "the second library was loaded elsewhere";
  expect_same(with, sp::kStackMaxFrames);
  EXPECT_GT(with.walked_n, without.walked_n);
}

// A signal frame's size varies: the kernel aligns it to 64 bytes below the
// interrupted stack pointer. Traps at stack pointers 16 bytes apart (site A,
// then site B) can run the handler at the same address, the same key, while
// the interrupted frame's slot moves. The slot the cache's check reads for
// the interrupted frame (its stack pointer - 8) holds the resume address
// here on purpose (after a return it holds the return address anyway), and
// site A's slots lie in trap_caller's unwritten alloca'd memory at site B,
// still holding site A's stack. The captures must report site B.
#if defined(__x86_64__) && !defined(__SANITIZE_THREAD__)
TEST_F(StackWalk, SignalFramesOfDifferentSizes) {
  struct sigaction action {
  }, old{};
  action.sa_handler = on_trap;
  sigemptyset(&action.sa_mask);
  ASSERT_EQ(sigaction(SIGTRAP, &action, &old), 0);
  int same_key = 0;
  // The four alignments of the first trap's stack pointer to 64 bytes: in
  // three, both traps' signal frames (and handlers) lie at the same address.
  for (size_t shift = 0; shift < 64; shift += 16) {
    const volatile size_t bytes[2] = {32 + shift, 48 + shift};
    g_traps = 0;
    trap_runs(bytes);
    ASSERT_EQ(g_traps, 2);
    expect_same(g_trap_stacks[0], sp::kStackMaxFrames);
    expect_same(g_trap_stacks[1], sp::kStackMaxFrames);
    if (g_trap_stacks[0].take_frame == g_trap_stacks[1].take_frame) ++same_key;
  }
  sigaction(SIGTRAP, &old, nullptr);
  EXPECT_GE(same_key, 1);  // else the test shows nothing
}
#endif

}  // namespace
