// Thread churn: 10,000 short-lived threads, a few alive at a time. Each
// allocates a set of blocks, frees the set an earlier thread left in a
// mailbox (so every block is freed by a thread other than the one that
// allocated it, usually after that thread has exited), and leaves its own.
// Prints the peak RSS (ru_maxrss); with --max-rss-mib N fails above N MiB.
// --concurrent N: threads alive at a time (default 8).
// With --expect-shardalloc fails unless malloc is shardalloc's (preload run);
// without it, it reports which allocator it ran on (for the glibc baseline).
#include <sys/resource.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <mutex>
#include <thread>
#include <vector>

#include "override_check.h"
#include "support/rng.h"

namespace {

constexpr int kThreads = 10000;
constexpr int kBlocksPerThread = 100;
constexpr int kMailboxes = 16;

using shardtest::mix64;  // splitmix64 finaliser (tests/support/rng.h)

struct Set {
  uint64_t seed = 0;
  std::vector<void*> blocks;
  std::vector<size_t> sizes;
};

// Sets waiting to be freed by some later thread.
std::mutex g_mu[kMailboxes];
Set g_mailbox[kMailboxes];
std::atomic<long> g_corrupt{0};

size_t pick(uint64_t r, int i) {
  if (i == 0) return 16384 + r % 50000;                  // one medium block
  if (i == 1 && r % 8 == 0) return 200000 + r % 300000;  // sometimes a huge one
  return 16 + r % (i % 4 == 0 ? 4000 : 300);
}

void one_thread(int id) {
  Set mine;
  mine.seed = mix64(uint64_t(id) + 1);
  uint64_t r = mine.seed;
  for (int i = 0; i < kBlocksPerThread; ++i) {
    r = mix64(r);
    const size_t n = pick(r, i);
    auto* p = static_cast<unsigned char*>(std::malloc(n));
    if (p == nullptr) {
      g_corrupt.fetch_add(1);
      continue;
    }
    p[0] = static_cast<unsigned char>(r);
    p[n - 1] = static_cast<unsigned char>(r >> 8);
    std::memset(p + 1, 0x33, n > 64 ? 62 : n - 1 > 1 ? n - 2 : 0);
    mine.blocks.push_back(p);
    mine.sizes.push_back(n);
  }
  Set old;
  {
    std::lock_guard<std::mutex> lock(g_mu[id % kMailboxes]);
    std::swap(old, g_mailbox[id % kMailboxes]);
    g_mailbox[id % kMailboxes] = std::move(mine);
  }
  uint64_t q = old.seed;
  for (size_t i = 0; i < old.blocks.size(); ++i) {
    q = mix64(q);
    auto* p = static_cast<unsigned char*>(old.blocks[i]);
    const size_t n = old.sizes[i];
    if (p[0] != static_cast<unsigned char>(q) || p[n - 1] != static_cast<unsigned char>(q >> 8))
      g_corrupt.fetch_add(1);
    std::free(p);
  }
}

double rss_mib() {
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  return double(ru.ru_maxrss) / 1024.0;  // ru_maxrss is in KiB on Linux
}

}  // namespace

int main(int argc, char** argv) {
  double max_rss = 0;
  bool expect_shard = false;
  size_t concurrent = 8;
  for (int i = 1; i < argc; ++i) {
    if (std::strcmp(argv[i], "--max-rss-mib") == 0 && i + 1 < argc)
      max_rss = std::atof(argv[++i]);
    else if (std::strcmp(argv[i], "--expect-shardalloc") == 0)
      expect_shard = true;
    else if (std::strcmp(argv[i], "--concurrent") == 0 && i + 1 < argc)
      concurrent = size_t(std::atoi(argv[++i]));
  }
  if (expect_shard) shardtest::require_override("thread_churn");
  const char* allocator = shardtest::override_active() ? "shardalloc" : "glibc";

  const double rss_start = rss_mib();
  const auto start = std::chrono::steady_clock::now();
  std::vector<std::thread> live;
  for (int id = 0; id < kThreads; ++id) {
    live.emplace_back(one_thread, id);
    if (live.size() >= concurrent) {
      for (auto& t : live) t.join();
      live.clear();
    }
  }
  for (auto& t : live) t.join();
  for (auto& set : g_mailbox) {
    for (void* p : set.blocks) std::free(p);
    set.blocks.clear();
  }
  const double secs =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  const double peak = rss_mib();
  std::printf(
      "thread_churn[%s]: %d threads (%zu at a time, %d blocks each, freed by other threads) in "
      "%.2f s; "
      "peak RSS %.1f MiB (%.1f MiB at start)\n",
      allocator, kThreads, concurrent, kBlocksPerThread, secs, peak, rss_start);
  int rc = 0;
  if (g_corrupt.load() != 0) {
    std::fprintf(stderr, "thread_churn: FAIL: %ld corrupted or failed blocks\n", g_corrupt.load());
    rc = 1;
  }
  if (max_rss > 0 && peak > max_rss) {
    std::fprintf(stderr, "thread_churn: FAIL: peak RSS %.1f MiB is above the bound of %.0f MiB\n",
                 peak, max_rss);
    rc = 1;
  }
  return rc;
}
