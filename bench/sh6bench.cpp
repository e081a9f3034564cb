// sh6bench: batch allocation with LIFO, FIFO and interleaved frees (in the
// spirit of MicroQuill's SmartHeap sh6bench).
//
// Each thread repeats three phases on batches of 1000 blocks of 1..1000
// bytes (every block stamped on allocation and verified before its free):
//   LIFO:        allocate the batch, free it in reverse order;
//   FIFO:        allocate the batch, free it in allocation order;
//   interleaved: allocate the batch, free every other block, refill those
//                holes with new blocks, then free everything in reverse.
// All frees are local.
//
// Full size: 5000 iterations of the three phases in total (split over the
// threads), i.e. 17.5M malloc/free pairs.
#include "common.hpp"

namespace {

constexpr std::size_t kBatch = 1000;

struct Blk {
  void* p;
  std::uint64_t tag;
  std::uint32_t size;
};

void alloc_one(Blk& b, bench::Rng& rng) {
  b.size = static_cast<std::uint32_t>(rng.range(1, 1000));
  b.tag = bench::make_tag(rng);
  b.p = bench::checked_malloc(b.size);
  bench::stamp(b.p, b.size, b.tag);
}

void free_one(Blk& b) {
  bench::check(b.p, b.size, b.tag);
  std::free(b.p);
  b.p = nullptr;
}

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(argc, argv, "sh6bench: batches freed LIFO, FIFO and interleaved");
  const std::uint64_t iterations = bench::scaled(5000, a.scale);
  std::atomic<std::uint64_t> ops{0};
  bench::Timer timer;
  bench::Gate gate(a.threads);
  bench::run_threads(a.threads, [&](int t) {
    bench::Rng rng(606 + static_cast<std::uint64_t>(t));
    std::vector<Blk> batch(kBatch);
    std::uint64_t n_ops = 0;
    gate.arrive_and_wait();
    const std::uint64_t mine = bench::share(iterations, a.threads, t);
    for (std::uint64_t it = 0; it < mine; ++it) {
      for (auto& b : batch) alloc_one(b, rng);  // LIFO
      for (std::size_t i = kBatch; i-- > 0;) free_one(batch[i]);
      for (auto& b : batch) alloc_one(b, rng);  // FIFO
      for (auto& b : batch) free_one(b);
      for (auto& b : batch) alloc_one(b, rng);  // interleaved
      for (std::size_t i = 1; i < kBatch; i += 2) free_one(batch[i]);
      for (std::size_t i = 1; i < kBatch; i += 2) alloc_one(batch[i], rng);
      for (std::size_t i = kBatch; i-- > 0;) free_one(batch[i]);
      n_ops += 3 * kBatch + kBatch / 2;
    }
    ops.fetch_add(n_ops, std::memory_order_relaxed);
  });
  bench::report("sh6bench", a, ops.load(), timer.seconds());
  return 0;
}
