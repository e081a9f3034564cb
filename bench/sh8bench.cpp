// sh8bench: like sh6bench, with remote frees (in the spirit of MicroQuill's
// SmartHeap sh8bench).
//
// T threads in a ring. Each iteration a thread allocates a batch of 1000
// blocks of 1..1000 bytes, frees the first half itself in reverse order
// (LIFO), and hands the second half to the next thread in the ring. Each
// iteration also starts by freeing, in reverse order, the batches the
// previous thread handed over. So half of all frees are remote (with one
// thread, the hand-over goes to itself). At most 4 batches may wait for a
// thread; a thread that gets ahead frees its own mailbox until the next one
// catches up.
//
// Full size: 12000 iterations in total (split over the threads), i.e. 12M
// malloc/free pairs.
#include "common.hpp"

namespace {
constexpr std::size_t kBatch = 1000;
}  // namespace

int main(int argc, char** argv) {
  auto a =
      bench::parse_args(argc, argv, "sh8bench: batches freed LIFO, half of them by another thread");
  const std::uint64_t iterations = bench::scaled(12000, a.scale);
  bench::Ring ring(a.threads, 4);
  auto free_reverse = [](std::vector<void*>& received) {
    for (std::size_t i = received.size(); i-- > 0;) bench::obj_free(received[i]);
  };
  std::atomic<std::uint64_t> ops{0};
  bench::Timer timer;
  bench::Gate gate(a.threads);
  bench::run_threads(a.threads, [&](int t) {
    bench::Rng rng(808 + static_cast<std::uint64_t>(t));
    std::vector<void*> batch(kBatch);
    std::uint64_t n_ops = 0;
    gate.arrive_and_wait();
    const std::uint64_t my_iters = bench::share(iterations, a.threads, t);
    for (std::uint64_t it = 0; it < my_iters; ++it) {
      ring.drain(t, free_reverse);
      for (auto& p : batch) p = bench::obj_new(rng.range(1, 1000), bench::make_tag(rng));
      for (std::size_t i = kBatch / 2; i-- > 0;) bench::obj_free(batch[i]);
      ring.post(t, std::vector<void*>(batch.begin() + kBatch / 2, batch.end()), free_reverse);
      n_ops += kBatch;
    }
    ring.finish(t, free_reverse);
    ops.fetch_add(n_ops, std::memory_order_relaxed);
  });
  bench::report("sh8bench", a, ops.load(), timer.seconds());
  return 0;
}
