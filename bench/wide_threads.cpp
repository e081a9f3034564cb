// wide-threads: many threads alive at once, each replacing blocks of up to 1 MiB.
//
// Rounds of 16*T threads started together (T = the thread argument). Each
// keeps a ring of 8 blocks and replaces the oldest, again and again, with a
// block of 16 B..1 MiB (uniform), written whole (memset) and stamped sparsely;
// each block is checked when it is freed. Whatever an allocator keeps per
// thread and size class (a page for the next block of the class) counts
// 16*T times over, and seven in eight blocks are above 128 KiB: peak RSS
// measures per-thread memory and the reuse of freed large spans.
// Reduced from the JVM's native memory preloaded (docs/benchmarks.md, "Many
// threads, blocks of 16 KiB to 1 MiB").
//
// Full size: 2 rounds of 200 replacements per thread.
#include <cstring>

#include "common.hpp"

namespace {

constexpr std::size_t kRing = 8;
constexpr std::size_t kMaxBlock = std::size_t{1} << 20;
constexpr std::uint64_t kStepsPerRound = 200;  // per thread

struct Slot {
  void* p = nullptr;
  std::size_t size = 0;
  std::uint64_t tag = 0;
};

void release(Slot& s) {
  if (s.p == nullptr) return;
  bench::check_sparse(s.p, s.size, s.tag);
  std::free(s.p);
  s.p = nullptr;
}

void replace(Slot& s, bench::Rng& rng) {
  release(s);
  s.size = 16 + rng.below(kMaxBlock - 15);  // stamp_sparse needs 16 bytes
  s.tag = bench::make_tag(rng);
  s.p = bench::checked_malloc(s.size);
  std::memset(s.p, static_cast<int>(s.tag & 0xff), s.size);
  bench::stamp_sparse(s.p, s.size, s.tag);
}

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(argc, argv,
                             "wide-threads: 16*T threads at once replace blocks of up to 1 MiB");
  const int width = 16 * a.threads;
  const std::uint64_t steps = bench::scaled(2 * kStepsPerRound, a.scale);  // per thread
  const std::uint64_t rounds = (steps + kStepsPerRound - 1) / kStepsPerRound;
  bench::Timer timer;
  for (std::uint64_t r = 0; r < rounds; ++r) {
    const std::uint64_t mine = bench::share(steps, static_cast<int>(rounds), static_cast<int>(r));
    bench::run_threads(width, [&](int t) {
      bench::Rng rng(9000 + r * 4096 + static_cast<std::uint64_t>(t));
      Slot ring[kRing];
      for (std::uint64_t i = 0; i < mine; ++i) replace(ring[i % kRing], rng);
      for (Slot& s : ring) release(s);
    });
  }
  bench::report("wide-threads", a, steps * static_cast<std::uint64_t>(width), timer.seconds());
  return 0;
}
