// rptest: mixed sizes with cross-thread frees (in the spirit of rpmalloc's
// benchmark).
//
// T threads in a ring. Each keeps a working set of 2048 blocks of 8..16000
// bytes (log-uniform, so small sizes dominate). Every iteration a thread
// replaces the 256 oldest blocks (verify, free, allocate, stamp), and every
// 2 iterations it hands 64 of its blocks to the next thread in the ring,
// which verifies and frees them on its next iteration (at most 8 batches
// may wait for a thread). With one thread the hand-over goes to itself.
//
// Full size: 20000 iterations in total (split over the threads).
#include "common.hpp"

namespace {

constexpr std::size_t kWorkingSet = 2048;
constexpr std::size_t kReplace = 256;
constexpr std::size_t kCross = 64;

std::size_t pick_size(bench::Rng& rng) {
  // log-uniform in [8, 16000]
  double s = 8.0 * std::pow(2000.0, rng.unit());
  auto n = static_cast<std::size_t>(s);
  return n < 8 ? 8 : (n > 16000 ? 16000 : n);
}

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(argc, argv,
                             "rptest: sizes 8..16000, cross-thread frees every 2 iterations");
  const std::uint64_t iterations = bench::scaled(20000, a.scale);
  bench::Ring ring(a.threads, 8);
  auto free_batch = [](std::vector<void*>& batch) {
    for (void* p : batch) bench::obj_free(p);
  };
  std::atomic<std::uint64_t> ops{0};

  bench::Timer timer;
  bench::Gate gate(a.threads);
  bench::run_threads(a.threads, [&](int t) {
    bench::Rng rng(7777 + static_cast<std::uint64_t>(t));
    std::vector<void*> ws(kWorkingSet);
    for (auto& p : ws) p = bench::obj_new(pick_size(rng), bench::make_tag(rng));
    std::size_t head = 0;  // ws is a ring; head = oldest
    std::uint64_t n_ops = 0;
    gate.arrive_and_wait();
    const std::uint64_t my_iters = bench::share(iterations, a.threads, t);
    for (std::uint64_t it = 0; it < my_iters; ++it) {
      n_ops += ring.drain(t, free_batch);
      for (std::size_t k = 0; k < kReplace; ++k) {
        void*& slot = ws[head];
        head = (head + 1) % kWorkingSet;
        bench::obj_free(slot);
        slot = bench::obj_new(pick_size(rng), bench::make_tag(rng));
      }
      n_ops += kReplace;
      if (it % 2 == 1) {
        std::vector<void*> batch;
        batch.reserve(kCross);
        for (std::size_t k = 0; k < kCross; ++k) {
          void*& slot = ws[rng.below(kWorkingSet)];
          bench::obj_check(slot);
          batch.push_back(slot);
          slot = bench::obj_new(pick_size(rng), bench::make_tag(rng));
        }
        n_ops += kCross + ring.post(t, std::move(batch), free_batch);
      }
    }
    for (void* p : ws) bench::obj_free(p);
    n_ops += ring.finish(t, free_batch);
    ops.fetch_add(n_ops, std::memory_order_relaxed);
  });
  bench::report("rptest", a, ops.load(), timer.seconds());
  return 0;
}
