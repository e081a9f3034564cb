// The intent of mimalloc's test/test-stress.c, run on the malloc / operator
// new override (preloaded): many threads allocate objects whose sizes are
// spread over powers of two (with a fraction 100x, 1000x and 10000x larger),
// write a pattern into each and check it when freeing, free earlier objects
// at random, and swap objects with a shared transfer array (atomic
// exchange), so objects are freed by threads other than their allocator's.
// All threads exit at the end of every round and new ones start; half of the
// transfer array survives into the next round, so blocks of exited threads
// are freed later by others. Some threads do more work than others.
//
// Beyond test-stress.c, every object comes from one of the standard entry
// points (calloc, malloc, realloc growth, aligned_alloc, sized and aligned
// operator new) and goes back through the matching release (free, sized
// and aligned operator delete), so checked builds also check the pairs.
//
//   override_external_stress [threads] [scale] [rounds] [seconds]
// seconds > 0: repeat whole runs of `rounds` rounds until that much time has
// passed. Prints one line per run; exit 0, or abort with a message on the
// first corrupted object.
#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <new>

namespace {

int g_threads = 16;
int g_scale = 10;
int g_rounds = 20;

constexpr size_t kTransfers = 1000;
std::atomic<uintptr_t> g_transfer[kTransfers];
constexpr uintptr_t kCookie = 0xbf58476d1ce4e5b9ull;

// An object is a tagged pointer: the low 3 bits say how it was allocated
// (every block is at least 16-aligned).
enum Kind : uintptr_t { kCalloc, kMalloc, kRealloc, kAligned, kNewSized, kNewAligned, kKinds };
constexpr size_t kNewAlign = 64;

uintptr_t pick(uintptr_t* r) {
  uintptr_t x = *r;
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  x ^= x >> 31;
  *r = x;
  return x;
}
bool chance(size_t percent, uintptr_t* r) { return pick(r) % 100 <= percent; }

[[noreturn]] void corrupt(const void* p, size_t at, size_t items) {
  std::fprintf(stderr, "external_stress: memory corruption in block %p at word %zu of %zu\n", p, at,
               items);
  std::abort();
}

uintptr_t alloc_items(size_t items, uintptr_t* r) {
  if (chance(1, r)) {
    if (chance(1, r)) {
      items *= 10000;  // giant
    } else if (chance(10, r)) {
      items *= 1000;  // huge
    } else {
      items *= 100;  // large
    }
  }
  if (items == 40) items++;
  if (items == 0) items = 1;
  const size_t bytes = items * sizeof(uintptr_t);
  const auto kind = static_cast<Kind>(pick(r) % kKinds);
  uintptr_t* p = nullptr;
  switch (kind) {
    case kCalloc:
      p = static_cast<uintptr_t*>(std::calloc(items, sizeof(uintptr_t)));
      if (p != nullptr)
        for (size_t i = 0; i < items; ++i)
          if (p[i] != 0) corrupt(p, i, items);
      break;
    case kMalloc:
      p = static_cast<uintptr_t*>(std::malloc(bytes));
      break;
    case kRealloc: {  // grown in steps, the pattern of the first part kept
      size_t have = items > 4 ? items / 4 : 1;
      p = static_cast<uintptr_t*>(std::malloc(have * sizeof(uintptr_t)));
      if (p == nullptr) break;
      for (size_t i = 0; i < have; ++i) p[i] = i * 3 + 1;
      while (have < items) {
        const size_t next = have * 2 < items ? have * 2 : items;
        auto* q = static_cast<uintptr_t*>(std::realloc(p, next * sizeof(uintptr_t)));
        if (q == nullptr) {
          std::free(p);
          p = nullptr;
          break;
        }
        p = q;
        for (size_t i = 0; i < have; ++i)
          if (p[i] != i * 3 + 1) corrupt(p, i, items);
        for (size_t i = have; i < next; ++i) p[i] = i * 3 + 1;
        have = next;
      }
      break;
    }
    case kAligned: {
      const size_t align = size_t{16} << (pick(r) % 9);  // 16 .. 4096
      p = static_cast<uintptr_t*>(aligned_alloc(align, bytes));
      if (p != nullptr && reinterpret_cast<uintptr_t>(p) % align != 0) corrupt(p, 0, items);
      break;
    }
    case kNewSized:
      p = static_cast<uintptr_t*>(::operator new(bytes));
      break;
    default:
      p = static_cast<uintptr_t*>(::operator new(bytes, std::align_val_t(kNewAlign)));
      if (reinterpret_cast<uintptr_t>(p) % kNewAlign != 0) corrupt(p, 0, items);
      break;
  }
  if (p == nullptr) {
    std::fprintf(stderr, "external_stress: allocation of %zu bytes failed\n", bytes);
    std::abort();
  }
  for (size_t i = 0; i < items; ++i) p[i] = (items - i) ^ kCookie;
  return reinterpret_cast<uintptr_t>(p) | kind;
}

void free_items(uintptr_t tagged) {
  if (tagged == 0) return;
  auto* q = reinterpret_cast<uintptr_t*>(tagged & ~uintptr_t{7});
  const auto kind = static_cast<Kind>(tagged & 7);
  const size_t items = q[0] ^ kCookie;
  for (size_t i = 0; i < items; ++i)
    if ((q[i] ^ kCookie) != items - i) corrupt(q, i, items);
  const size_t bytes = items * sizeof(uintptr_t);
  switch (kind) {
    case kNewSized:
      ::operator delete(q, bytes);
      break;
    case kNewAligned:
      ::operator delete(q, bytes, std::align_val_t(kNewAlign));
      break;
    default:
      std::free(q);
      break;
  }
}

void* stress(void* arg) {
  const auto tid = reinterpret_cast<uintptr_t>(arg);
  uintptr_t r = tid * 43 + 1;
  const size_t max_shift = 5;
  size_t allocs = 100 * size_t(g_scale) * (tid % 8 + 1);
  size_t retain = allocs / 2;
  uintptr_t* data = nullptr;
  size_t data_size = 0, data_top = 0;
  auto* retained = static_cast<uintptr_t*>(std::calloc(retain + 1, sizeof(uintptr_t)));
  size_t retain_top = 0;
  while (allocs > 0 || retain > 0) {
    if (retain == 0 || (chance(50, &r) && allocs > 0)) {
      --allocs;
      if (data_top >= data_size) {
        data_size += 100000;
        data = static_cast<uintptr_t*>(std::realloc(data, data_size * sizeof(uintptr_t)));
        if (data == nullptr) std::abort();
      }
      data[data_top++] = alloc_items(size_t{1} << (pick(&r) % max_shift), &r);
    } else {
      retained[retain_top++] = alloc_items(size_t{1} << (pick(&r) % (max_shift + 2)), &r);
      --retain;
    }
    if (chance(66, &r) && data_top > 0) {
      const size_t idx = pick(&r) % data_top;
      free_items(data[idx]);
      data[idx] = 0;
    }
    if (chance(25, &r) && data_top > 0) {
      const size_t idx = pick(&r) % data_top;
      const size_t t = pick(&r) % kTransfers;
      data[idx] = g_transfer[t].exchange(data[idx], std::memory_order_acq_rel);
    }
  }
  for (size_t i = 0; i < retain_top; ++i) free_items(retained[i]);
  for (size_t i = 0; i < data_top; ++i) free_items(data[i]);
  std::free(retained);
  std::free(data);
  return nullptr;
}

void run_once(uintptr_t seed) {
  uintptr_t r = seed;
  for (int n = 0; n < g_rounds; ++n) {
    auto* threads = static_cast<pthread_t*>(std::calloc(size_t(g_threads), sizeof(pthread_t)));
    for (int i = 0; i < g_threads; ++i)
      if (pthread_create(&threads[i], nullptr, stress, reinterpret_cast<void*>(uintptr_t(i))) != 0)
        std::abort();
    for (int i = 0; i < g_threads; ++i) pthread_join(threads[i], nullptr);
    std::free(threads);
    for (auto& slot : g_transfer)
      if (chance(50, &r) || n + 1 == g_rounds) free_items(slot.exchange(0));
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc >= 2 && std::atoi(argv[1]) > 0) g_threads = std::atoi(argv[1]);
  if (argc >= 3 && std::atoi(argv[2]) > 0) g_scale = std::atoi(argv[2]);
  if (argc >= 4 && std::atoi(argv[3]) > 0) g_rounds = std::atoi(argv[3]);
  const double seconds = argc >= 5 ? std::atof(argv[4]) : 0;
  const auto start = std::chrono::steady_clock::now();
  uintptr_t seed = 0x7feb352d;
  for (int run = 1;; ++run) {
    run_once(seed++);
    const double elapsed =
        std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    std::printf("external_stress: run %d (%d threads, scale %d, %d rounds) done, %.1f s\n", run,
                g_threads, g_scale, g_rounds, elapsed);
    std::fflush(stdout);
    if (elapsed >= seconds) break;
  }
  return 0;
}
