// glibc-simple: glibc's bench-malloc-simple pattern.
//
// For block sizes 16, 32 and 64 bytes and batch sizes n in {25, 100, 400,
// 1600}: repeatedly allocate n blocks, write every byte of each, then free
// the first half in allocation order (FIFO) and the second half in reverse
// order (LIFO); the first and last byte of each block are verified before
// it is freed. Each thread runs its own copy of the loop.
//
// Full size: 1e6/n iterations per (size, n) pair, three runs each, i.e.
// 36M malloc/free pairs in total (split over the threads).
#include "common.hpp"

int main(int argc, char** argv) {
  auto a =
      bench::parse_args(argc, argv, "glibc-simple: batches of 16-64 B blocks freed FIFO then LIFO");
  static constexpr std::size_t kSizes[] = {16, 32, 64};
  static constexpr std::size_t kBatches[] = {25, 100, 400, 1600};
  constexpr int kRuns = 3;
  std::atomic<std::uint64_t> ops{0};

  bench::Timer timer;
  bench::run_threads(a.threads, [&](int t) {
    std::vector<unsigned char*> blocks(1600);
    std::uint64_t n_ops = 0;
    for (std::size_t size : kSizes) {
      for (std::size_t n : kBatches) {
        const std::uint64_t iters =
            bench::share(bench::scaled(1e6 / static_cast<double>(n), a.scale), a.threads, t);
        for (int run = 0; run < kRuns; ++run) {
          for (std::uint64_t it = 0; it < iters; ++it) {
            const auto fill = static_cast<unsigned char>(it + size + n);
            for (std::size_t i = 0; i < n; ++i) {
              blocks[i] = static_cast<unsigned char*>(bench::checked_malloc(size));
              std::memset(blocks[i], fill, size);
            }
            auto release = [&](std::size_t i) {
              if (blocks[i][0] != fill || blocks[i][size - 1] != fill)
                bench::corrupt("block corrupt", blocks[i], size);
              std::free(blocks[i]);
            };
            for (std::size_t i = 0; i < n / 2; ++i) release(i);  // FIFO
            for (std::size_t i = n; i-- > n / 2;) release(i);    // LIFO
            n_ops += n;
          }
        }
      }
    }
    ops.fetch_add(n_ops, std::memory_order_relaxed);
  });
  bench::report("glibc-simple", a, ops.load(), timer.seconds());
  return 0;
}
