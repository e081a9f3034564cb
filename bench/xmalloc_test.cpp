// xmalloc-test: producer / consumer (after Lever & Boreham's xmalloc test).
//
// T producer threads and T consumer threads (2T threads in all). Producer i
// allocates 64-byte objects, stamps them and passes them in batches of 256
// to consumer i through a bounded queue; the consumer verifies and frees
// them. Every free is therefore a remote free, and the producer's pages only
// come back to it through cross-thread frees.
//
// Full size: 16M objects in total. At most 64 batches are in flight per pair.
#include <deque>

#include "common.hpp"

namespace {

constexpr std::size_t kObjSize = 64;
constexpr std::size_t kBatch = 256;
constexpr std::size_t kMaxInFlight = 64;

struct Batch {
  void* obj[kBatch];
  std::uint64_t tag[kBatch];
  std::size_t n;
};

using Queue = bench::BoundedQueue<Batch>;

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(argc, argv, "xmalloc-test: T producers allocate, T consumers free");
  const std::uint64_t total = bench::scaled(16e6, a.scale);
  const int pairs = a.threads;
  std::deque<Queue> queues;  // a deque: queues hold a mutex and never move
  for (int i = 0; i < pairs; ++i) queues.emplace_back(kMaxInFlight);
  std::atomic<std::uint64_t> freed{0};

  bench::Timer timer;
  bench::run_threads(2 * pairs, [&](int id) {
    const int pair = id / 2;
    Queue& q = queues[static_cast<std::size_t>(pair)];
    if (id % 2 == 0) {  // producer
      bench::Rng rng(1000 + static_cast<std::uint64_t>(pair));
      std::uint64_t todo = bench::share(total, pairs, pair);
      while (todo > 0) {
        auto* b = new Batch;
        b->n = todo < kBatch ? todo : kBatch;
        for (std::size_t i = 0; i < b->n; ++i) {
          b->tag[i] = bench::make_tag(rng);
          b->obj[i] = bench::checked_malloc(kObjSize);
          bench::stamp(b->obj[i], kObjSize, b->tag[i]);
        }
        todo -= b->n;
        q.push(b);
      }
      q.push(nullptr);
    } else {  // consumer
      std::uint64_t n = 0;
      while (Batch* b = q.pop()) {
        for (std::size_t i = 0; i < b->n; ++i) {
          bench::check(b->obj[i], kObjSize, b->tag[i]);
          std::free(b->obj[i]);
        }
        n += b->n;
        delete b;
      }
      freed.fetch_add(n, std::memory_order_relaxed);
    }
  });
  if (freed.load() != total) bench::corrupt("lost objects", nullptr, freed.load());
  bench::report("xmalloc-test", a, total, timer.seconds());
  return 0;
}
