// pipeline: producer / consumer through a bounded queue, one message at a time.
//
// T pairs of threads (2T threads). Producer i allocates messages (70% of
// 16..128 bytes, 25% of 128..1024, 5% of 1..8 KiB), stamps them and pushes
// them one by one into a bounded single-producer single-consumer ring of 1024
// slots; consumer i pops, verifies and frees them. Every free is remote, and
// a block is freed soon after it was allocated, often while its page is
// still the one its producer allocates from (unlike xmalloc-test, which
// hands over batches of 256 equal blocks). Producers wait (yield) when the
// ring is full, consumers when it is empty.
//
// Full size: 8M messages in total (split over the pairs).
#include "common.hpp"

namespace {

constexpr std::size_t kRing = 1024;

struct Msg {
  void* p;
  std::uint64_t tag;
  std::size_t size;
};

// Lamport's ring: one producer, one consumer.
class Ring {
 public:
  void push(const Msg& m) {
    const std::size_t t = tail_.load(std::memory_order_relaxed);
    while (t - head_.load(std::memory_order_acquire) == kRing) std::this_thread::yield();
    slots_[t % kRing] = m;
    tail_.store(t + 1, std::memory_order_release);
  }
  Msg pop() {
    const std::size_t h = head_.load(std::memory_order_relaxed);
    while (tail_.load(std::memory_order_acquire) == h) std::this_thread::yield();
    const Msg m = slots_[h % kRing];
    head_.store(h + 1, std::memory_order_release);
    return m;
  }

 private:
  alignas(64) std::atomic<std::size_t> head_{0};
  alignas(64) std::atomic<std::size_t> tail_{0};
  alignas(64) Msg slots_[kRing];
};

std::size_t pick_size(bench::Rng& rng) {
  const std::uint64_t r = rng.below(100);
  if (r < 70) return rng.range(16, 128);
  if (r < 95) return rng.range(129, 1024);
  return rng.range(1025, 8192);
}

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(argc, argv, "pipeline: T producers, T consumers, one message at a time through bounded rings");
  const std::uint64_t total = bench::scaled(8e6, a.scale);
  const int pairs = a.threads;
  std::vector<Ring> rings(static_cast<std::size_t>(pairs));
  std::atomic<std::uint64_t> freed{0};

  bench::Timer timer;
  bench::run_threads(2 * pairs, [&](int id) {
    const int pair = id / 2;
    Ring& ring = rings[static_cast<std::size_t>(pair)];
    const std::uint64_t n = bench::share(total, pairs, pair);
    if (id % 2 == 0) {  // producer
      bench::Rng rng(9000 + static_cast<std::uint64_t>(pair));
      for (std::uint64_t i = 0; i < n; ++i) {
        Msg m;
        m.size = pick_size(rng);
        m.tag = bench::make_tag(rng);
        m.p = bench::checked_malloc(m.size);
        bench::stamp(m.p, m.size, m.tag);
        ring.push(m);
      }
    } else {  // consumer
      for (std::uint64_t i = 0; i < n; ++i) {
        const Msg m = ring.pop();
        bench::check(m.p, m.size, m.tag);
        std::free(m.p);
      }
      freed.fetch_add(n, std::memory_order_relaxed);
    }
  });
  if (freed.load() != total) bench::corrupt("lost messages", nullptr, freed.load());
  bench::report("pipeline", a, total, timer.seconds());
  return 0;
}
