// alloc-test: random allocate / free with Pareto-distributed sizes (in the
// spirit of Sergey Ignatchenko's alloc-test).
//
// Each thread owns 16384 slots. Every operation picks a random slot: a full
// slot is verified and freed, an empty one gets a new block whose size
// follows a Pareto law (x_min = 8 bytes, alpha = 1.16, the "80/20" law)
// capped at 1 KiB, so most blocks are tiny and a long tail reaches 1 KiB.
// About half of the slots are live at any time. All frees are local.
//
// Full size: 40M operations in total (split over the threads).
#include "common.hpp"

namespace {

constexpr std::size_t kSlots = 16384;

struct Slot {
  void* p;
  std::uint64_t tag;
  std::uint32_t size;
};

std::uint32_t pareto_size(bench::Rng& rng) {
  double s = 8.0 / std::pow(rng.unit(), 1.0 / 1.16);
  return s >= 1024.0 ? 1024u : static_cast<std::uint32_t>(s);
}

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(argc, argv, "alloc-test: Pareto sizes up to 1 KiB, random alloc/free");
  const std::uint64_t total = bench::scaled(40e6, a.scale);
  bench::Timer timer;
  bench::Gate gate(a.threads);
  bench::run_threads(a.threads, [&](int t) {
    bench::Rng rng(99 + static_cast<std::uint64_t>(t));
    std::vector<Slot> slots(kSlots, Slot{nullptr, 0, 0});
    gate.arrive_and_wait();
    const std::uint64_t mine = bench::share(total, a.threads, t);
    for (std::uint64_t i = 0; i < mine; ++i) {
      Slot& s = slots[rng.below(kSlots)];
      if (s.p != nullptr) {
        bench::check(s.p, s.size, s.tag);
        std::free(s.p);
        s.p = nullptr;
      } else {
        s.size = pareto_size(rng);
        s.tag = bench::make_tag(rng);
        s.p = bench::checked_malloc(s.size);
        bench::stamp(s.p, s.size, s.tag);
      }
    }
    for (auto& s : slots)
      if (s.p != nullptr) {
        bench::check(s.p, s.size, s.tag);
        std::free(s.p);
      }
  });
  bench::report("alloc-test", a, total, timer.seconds());
  return 0;
}
