// glibc-thread: glibc's bench-malloc-thread pattern.
//
// Each thread keeps a working set of 1024 blocks and repeatedly replaces a
// random one (verify, free, allocate, stamp) by a block whose size follows
// an inverse-square law between 4 bytes and 32 KiB (P(size) ~ 1/size^2, so
// half of the blocks are under 8 bytes and a few reach 32 KiB). glibc runs
// it for a fixed time; here the number of replacements is fixed instead so
// that wall time compares allocators.
//
// Full size: 24M replacements in total (split over the threads).
#include "common.hpp"

namespace {

constexpr std::size_t kWorkingSet = 1024;

struct Slot {
  void* p;
  std::uint64_t tag;
  std::uint32_t size;
};

std::uint32_t inverse_square_size(bench::Rng& rng) {
  // Inverse CDF of p(s) ~ 1/s^2 on [4, 32768].
  constexpr double lo = 1.0 / 4.0, hi = 1.0 / 32768.0;
  double s = 1.0 / (lo - rng.unit() * (lo - hi));
  return s >= 32768.0 ? 32768u : static_cast<std::uint32_t>(s);
}

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(
      argc, argv, "glibc-thread: 1024-block working sets, inverse-square sizes 4 B..32 KiB");
  const std::uint64_t total = bench::scaled(24e6, a.scale);
  bench::Timer timer;
  bench::Gate gate(a.threads);
  bench::run_threads(a.threads, [&](int t) {
    bench::Rng rng(31337 + static_cast<std::uint64_t>(t));
    std::vector<Slot> ws(kWorkingSet);
    for (auto& s : ws) {
      s.size = inverse_square_size(rng);
      s.tag = bench::make_tag(rng);
      s.p = bench::checked_malloc(s.size);
      bench::stamp(s.p, s.size, s.tag);
    }
    gate.arrive_and_wait();
    const std::uint64_t mine = bench::share(total, a.threads, t);
    for (std::uint64_t i = 0; i < mine; ++i) {
      Slot& s = ws[rng.below(kWorkingSet)];
      bench::check(s.p, s.size, s.tag);
      std::free(s.p);
      s.size = inverse_square_size(rng);
      s.tag = bench::make_tag(rng);
      s.p = bench::checked_malloc(s.size);
      bench::stamp(s.p, s.size, s.tag);
    }
    for (auto& s : ws) {
      bench::check(s.p, s.size, s.tag);
      std::free(s.p);
    }
  });
  bench::report("glibc-thread", a, total, timer.seconds());
  return 0;
}
