// pipeline: producer / consumer through a bounded queue, one message at a time.
//
// T pairs of threads (2T threads). Producer i allocates messages (70% of
// 16..128 bytes, 25% of 128..1024, 5% of 1..8 KiB), stamps them and pushes
// them one by one into a bounded single-producer single-consumer ring of 1024
// slots; consumer i pops, verifies and frees them. Every free is remote, and
// a block is freed soon after it was allocated, often while its page is
// still the one its producer allocates from (unlike xmalloc-test, which
// hands over batches of 256 equal blocks). A producer that finds its ring
// full sleeps until a quarter of it is free; a consumer that finds it empty,
// until a quarter is filled.
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

// Lamport's ring: one producer, one consumer, lock-free while neither waits.
// A side that finds the ring full (empty) sleeps on a condition variable
// until a quarter of the ring is free (filled) or the stream ends, and the
// other side wakes it when it crosses that mark: hand-overs in bursts with
// few system calls, and a run that does not depend on how the scheduler
// treats a spinning or yielding thread. (A sleeper announces itself in an
// atomic flag before its last look at the ring, and the other side reads
// the flag after it moves its counter, both seq_cst: one of them sees the
// other, so no wake-up is lost.)
class Ring {
 public:
  static constexpr std::uint32_t kMark = kRing / 4;

  void push(const Msg& m) {
    const std::uint32_t t = tail_.load(std::memory_order_relaxed);
    if (t - head_.load(std::memory_order_acquire) == kRing) {
      std::unique_lock<std::mutex> lk(mu_);
      producer_waits_.store(true, std::memory_order_seq_cst);
      cv_.wait(lk, [&] { return kRing - (t - head_.load(std::memory_order_seq_cst)) >= kMark; });
      producer_waits_.store(false, std::memory_order_relaxed);
    }
    slots_[t % kRing] = m;
    tail_.store(t + 1, std::memory_order_seq_cst);
    if (consumer_waits_.load(std::memory_order_seq_cst) &&
        t + 1 - head_.load(std::memory_order_relaxed) >= kMark)
      wake();
  }
  void close() {
    std::lock_guard<std::mutex> lk(mu_);
    closed_ = true;
    cv_.notify_all();
  }
  // False at the end of the stream.
  bool pop(Msg* out) {
    const std::uint32_t h = head_.load(std::memory_order_relaxed);
    if (tail_.load(std::memory_order_acquire) == h) {
      std::unique_lock<std::mutex> lk(mu_);
      consumer_waits_.store(true, std::memory_order_seq_cst);
      cv_.wait(lk, [&] { return tail_.load(std::memory_order_seq_cst) - h >= kMark || closed_; });
      consumer_waits_.store(false, std::memory_order_relaxed);
      if (tail_.load(std::memory_order_acquire) == h) return false;  // closed and drained
    }
    *out = slots_[h % kRing];
    head_.store(h + 1, std::memory_order_seq_cst);
    if (producer_waits_.load(std::memory_order_seq_cst) &&
        kRing - (tail_.load(std::memory_order_relaxed) - (h + 1)) >= kMark) {
      wake();
    }
    return true;
  }

 private:
  void wake() {
    std::lock_guard<std::mutex> lk(mu_);
    cv_.notify_all();
  }
  alignas(64) std::atomic<std::uint32_t> head_{0};
  alignas(64) std::atomic<std::uint32_t> tail_{0};
  alignas(64) std::atomic<bool> producer_waits_{false};
  std::atomic<bool> consumer_waits_{false};
  std::mutex mu_;
  std::condition_variable cv_;
  bool closed_ = false;  // under mu_
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
  auto a = bench::parse_args(
      argc, argv,
      "pipeline: T producers, T consumers, one message at a time through bounded rings");
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
      ring.close();
    } else {  // consumer
      std::uint64_t got = 0;
      for (Msg m; ring.pop(&m); ++got) {
        bench::check(m.p, m.size, m.tag);
        std::free(m.p);
      }
      freed.fetch_add(got, std::memory_order_relaxed);
    }
  });
  if (freed.load() != total) bench::corrupt("lost messages", nullptr, freed.load());
  bench::report("pipeline", a, total, timer.seconds());
  return 0;
}
