// thread-churn: short-lived threads whose blocks are freed after they exit.
//
// T chains. In each chain a spawner thread starts short-lived worker threads
// one after the other; each worker allocates 3000 blocks of 16..512 bytes
// (stamped) and exits. The spawner joins it (so the worker has exited, its
// thread-exit destructors included) and hands the worker's blocks to the
// chain's long-lived freeing thread through a bounded queue (at most 4
// batches waiting), which verifies and frees them while the next worker
// runs. So every block is freed by another thread, after the thread that
// allocated it has exited: the cost of thread exit, of a new thread's first
// allocations, and of frees into the memory of exited threads, and how
// promptly that memory comes back (peak RSS).
// `threads` = chains, so 3T threads exist (2T running at a time).
//
// How many batches are live at once depends on how fast the workers run
// against the freeing thread: an allocator whose threads start and allocate
// faster fills the queue (up to 6 batches live) where a slower one finds it
// empty (1-2), and its peak RSS counts the difference. With the environment
// variable THREAD_CHURN_LOCKSTEP=1 the spawner waits until the freeing
// thread has freed a batch before it starts the next worker, so one batch
// at most is live for every allocator: peak RSS then compares the
// allocators' memory for the same live set (docs/benchmarks.md).
//
// Full size: 4000 worker threads in total (split over the chains).
#include <deque>

#include "common.hpp"

namespace {

constexpr std::size_t kBlocks = 3000;
constexpr std::size_t kMaxWaiting = 4;

// A chain's count of batches freed, for the lockstep mode.
struct alignas(64) FreedCount {
  std::atomic<std::uint64_t> batches{0};
};

struct Batch {
  void* p[kBlocks];
  std::uint64_t tag[kBlocks];
  std::uint32_t size[kBlocks];
};

using Queue = bench::BoundedQueue<Batch>;

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(
      argc, argv,
      "thread-churn: short-lived threads allocate, a long-lived thread frees after they exit");
  const std::uint64_t workers = bench::scaled(4000, a.scale);
  const int chains = a.threads;
  std::deque<Queue> queues;  // a deque: queues hold a mutex and never move
  for (int i = 0; i < chains; ++i) queues.emplace_back(kMaxWaiting);
  std::atomic<std::uint64_t> freed{0};
  const char* lockstep_env = std::getenv("THREAD_CHURN_LOCKSTEP");
  const bool lockstep = lockstep_env != nullptr && std::strcmp(lockstep_env, "1") == 0;
  std::deque<FreedCount> batches_freed(static_cast<std::size_t>(chains));

  bench::Timer timer;
  bench::run_threads(2 * chains, [&](int id) {
    const int chain = id / 2;
    Queue& q = queues[static_cast<std::size_t>(chain)];
    if (id % 2 == 0) {  // spawner
      bench::Rng seeds(4242 + static_cast<std::uint64_t>(chain));
      const std::uint64_t mine = bench::share(workers, chains, chain);
      for (std::uint64_t w = 0; w < mine; ++w) {
        const std::uint64_t seed = seeds.next();
        Batch* b = nullptr;
        std::thread worker([&b, seed] {
          bench::Rng rng(seed);
          b = static_cast<Batch*>(bench::checked_malloc(sizeof(Batch)));
          for (std::size_t i = 0; i < kBlocks; ++i) {
            b->size[i] = static_cast<std::uint32_t>(rng.range(16, 512));
            b->tag[i] = bench::make_tag(rng);
            b->p[i] = bench::checked_malloc(b->size[i]);
            bench::stamp(b->p[i], b->size[i], b->tag[i]);
          }
        });
        worker.join();  // the worker has exited: its heap is given back
        q.push(b);
        if (lockstep) {
          auto& done = batches_freed[static_cast<std::size_t>(chain)].batches;
          while (done.load(std::memory_order_acquire) <= w) std::this_thread::yield();
        }
      }
      q.push(nullptr);
    } else {  // freeing thread
      std::uint64_t n = 0;
      while (Batch* b = q.pop()) {
        for (std::size_t i = 0; i < kBlocks; ++i) {
          bench::check(b->p[i], b->size[i], b->tag[i]);
          std::free(b->p[i]);
        }
        n += kBlocks;
        std::free(b);
        batches_freed[static_cast<std::size_t>(chain)].batches.fetch_add(1,
                                                                         std::memory_order_release);
      }
      freed.fetch_add(n, std::memory_order_relaxed);
    }
  });
  if (freed.load() != workers * kBlocks) bench::corrupt("lost blocks", nullptr, freed.load());
  bench::report("thread-churn", a, workers * kBlocks, timer.seconds());
  return 0;
}
