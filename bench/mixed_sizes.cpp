// mixed-sizes: batches of mixed sizes up to 128 KiB, allocated then freed.
//
// Each thread repeats: allocate a batch of 256 blocks of log-uniform sizes
// 16 B .. 128 KiB (skewed to small: as many blocks in 16-32 B as in
// 64-128 KiB), stamp each sparsely, then verify and free the whole batch:
// in reverse order one batch in three, in allocation order one in three,
// shuffled the rest. Every batch empties most pages it filled, so the
// allocator's handling of emptied pages (give back or keep) decides.
//
// Full size: 100000 batches (25.6M malloc/free pairs), split over the threads.
#include "common.hpp"

#include <utility>

int main(int argc, char** argv) {
  auto a = bench::parse_args(argc, argv,
                             "mixed-sizes: batches of log-uniform 16 B..128 KiB blocks freed in "
                             "reverse, in order or shuffled");
  constexpr std::size_t kBatch = 256;
  constexpr double kLogMin = 4.0;   // 16 B
  constexpr double kLogMax = 17.0;  // 128 KiB
  std::atomic<std::uint64_t> ops{0};

  bench::Timer timer;
  bench::run_threads(a.threads, [&](int t) {
    bench::Rng rng(0x6d697865ULL + static_cast<std::uint64_t>(t));
    std::vector<void*> blocks(kBatch);
    std::vector<std::size_t> sizes(kBatch);
    std::vector<std::uint64_t> tags(kBatch);
    std::vector<std::size_t> order(kBatch);
    const std::uint64_t batches = bench::share(bench::scaled(100000, a.scale), a.threads, t);
    for (std::uint64_t it = 0; it < batches; ++it) {
      for (std::size_t i = 0; i < kBatch; ++i) {
        const double lg = kLogMin + (kLogMax - kLogMin) * rng.unit();
        std::size_t size = static_cast<std::size_t>(std::exp2(lg));
        if (size > (std::size_t{1} << 17)) size = std::size_t{1} << 17;
        sizes[i] = size;
        tags[i] = bench::make_tag(rng);
        blocks[i] = bench::checked_malloc(size);
        bench::stamp_sparse(blocks[i], size, tags[i]);
      }
      for (std::size_t i = 0; i < kBatch; ++i) order[i] = i;
      switch (it % 3) {
        case 0:  // reverse
          for (std::size_t i = 0; i < kBatch; ++i) order[i] = kBatch - 1 - i;
          break;
        case 1:  // allocation order
          break;
        default:  // shuffled
          for (std::size_t i = kBatch; i > 1; --i) std::swap(order[i - 1], order[rng.below(i)]);
          break;
      }
      for (std::size_t k = 0; k < kBatch; ++k) {
        const std::size_t i = order[k];
        bench::check_sparse(blocks[i], sizes[i], tags[i]);
        std::free(blocks[i]);
      }
    }
    ops.fetch_add(batches * kBatch, std::memory_order_relaxed);
  });
  bench::report("mixed-sizes", a, ops.load(), timer.seconds());
  return 0;
}
