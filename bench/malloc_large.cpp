// malloc-large: churn of multi-megabyte buffers.
//
// 20 live buffers of 5..25 MiB (distributed over the threads: thread t owns
// buffers t, t+T, ...). Each step replaces one of a thread's buffers by a new
// one of random size. Buffers are stamped sparsely (head, tail and one word
// per MiB) so the run measures the allocator's handling of huge blocks
// (mapping, unmapping, caching) rather than page faults.
//
// Full size: 20000 replacements in total (split over the threads).
#include "common.hpp"

namespace {

constexpr std::size_t kBuffers = 20;
constexpr std::size_t kMiB = std::size_t{1} << 20;

struct Buf {
  void* p;
  std::uint64_t tag;
  std::size_t size;
};

void fill(Buf& b, bench::Rng& rng) {
  b.size = rng.range(5 * kMiB, 25 * kMiB);
  b.tag = bench::make_tag(rng);
  b.p = bench::checked_malloc(b.size);
  bench::stamp_sparse(b.p, b.size, b.tag);
}

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(argc, argv, "malloc-large: replace one of 20 live 5-25 MiB buffers");
  const std::uint64_t total = bench::scaled(20000, a.scale);
  bench::Timer timer;
  bench::run_threads(a.threads, [&](int t) {
    bench::Rng rng(555 + static_cast<std::uint64_t>(t));
    std::vector<Buf> mine;
    for (std::size_t i = static_cast<std::size_t>(t); i < kBuffers;
         i += static_cast<std::size_t>(a.threads)) {
      mine.push_back(Buf{});
      fill(mine.back(), rng);
    }
    if (mine.empty()) {  // more threads than buffers: keep one of our own
      mine.push_back(Buf{});
      fill(mine.back(), rng);
    }
    const std::uint64_t steps = bench::share(total, a.threads, t);
    for (std::uint64_t i = 0; i < steps; ++i) {
      Buf& b = mine[rng.below(mine.size())];
      bench::check_sparse(b.p, b.size, b.tag);
      std::free(b.p);
      fill(b, rng);
    }
    for (auto& b : mine) {
      bench::check_sparse(b.p, b.size, b.tag);
      std::free(b.p);
    }
  });
  bench::report("malloc-large", a, total, timer.seconds());
  return 0;
}
