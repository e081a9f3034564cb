// mstress: multi-round stress test (in the spirit of mimalloc's stress test).
//
// Rounds of T freshly created threads. Each thread keeps a private list of
// live objects and performs random steps:
//   * allocate (malloc, or calloc with a zero check) an object of 16..1024
//     bytes; 1 in 100 is 100x larger, 1 in 1000 is up to 4 MiB;
//   * free a random retained object (about 2/3 of the retained set churns);
//   * grow a retained object with realloc and verify the preserved prefix;
//   * swap an object with a random slot of a global transfer array (an
//     atomic exchange), so objects move between threads and rounds.
// Objects carry a header with their size and tag; every object is verified
// when it is freed or moved. At the end of its round a thread frees part of
// its objects and leaves the rest in the transfer array, so later threads
// free blocks whose owner has exited.
//
// Full size: 25 rounds, 2.4M steps in total (split over rounds and threads).
#include "common.hpp"

namespace {

constexpr std::size_t kTransfer = 1000;
constexpr std::size_t kMaxRetained = 2000;

std::atomic<void*> g_transfer[kTransfer];

std::size_t pick_size(bench::Rng& rng) {
  std::size_t n = rng.range(2, 128) * 8;  // 16..1024
  if (rng.chance(1, 100)) {
    n *= 100;  // up to ~100 KiB
    if (rng.chance(1, 10)) n = rng.range(256 * 1024, 4 * 1024 * 1024);
  }
  return n;
}

void* make_object(bench::Rng& rng) {
  std::size_t n = pick_size(rng);
  std::uint64_t tag = bench::make_tag(rng);
  if (rng.chance(1, 4)) {
    auto* p = static_cast<unsigned char*>(std::calloc(1, n));
    if (p == nullptr) bench::die(bench::kExitNoMemory, "calloc returned NULL", nullptr, n);
    // Check zeroing: all of small blocks, head, tail and one byte per page
    // of big ones.
    if (n <= 4096) {
      for (std::size_t i = 0; i < n; ++i)
        if (p[i] != 0) bench::corrupt("calloc memory not zeroed", p, n);
    } else {
      for (std::size_t i = 0; i < n; i += 4096)
        if (p[i] != 0) bench::corrupt("calloc memory not zeroed", p, n);
      if (p[n - 1] != 0) bench::corrupt("calloc memory not zeroed", p, n);
    }
    auto* h = reinterpret_cast<bench::ObjHeader*>(p);
    h->size = n;
    h->tag = tag;
    bench::stamp(h + 1, n - sizeof(bench::ObjHeader), tag);
    return p;
  }
  return bench::obj_new(n, tag);
}

// A retained object and the tag its owner expects in its header: a block
// handed out twice by the allocator shows up as a tag mismatch.
struct Item {
  void* p;
  std::uint64_t tag;
};

Item make_item(bench::Rng& rng) {
  void* p = make_object(rng);
  return Item{p, static_cast<bench::ObjHeader*>(p)->tag};
}

void grow_object(Item& it, bench::Rng& rng) {
  const std::size_t old = bench::obj_check(it.p, it.tag);
  const std::size_t add = rng.range(1, 64) * 8;
  std::size_t n = old + add;
  if (n > 8 * 1024 * 1024) return;
  auto* q = static_cast<bench::ObjHeader*>(std::realloc(it.p, n));
  if (q == nullptr) bench::die(bench::kExitNoMemory, "realloc returned NULL", nullptr, n);
  if (q->size != old || q->tag != it.tag) bench::corrupt("realloc lost the header", q, n);
  bench::check(q + 1, old - sizeof(bench::ObjHeader), it.tag);  // prefix preserved
  q->size = n;
  bench::stamp(q + 1, n - sizeof(bench::ObjHeader), it.tag);
  it.p = q;
}

// Takes an object out of the transfer array: verify it and adopt its tag.
Item adopt(void* p) {
  bench::obj_check(p);
  return Item{p, static_cast<bench::ObjHeader*>(p)->tag};
}

void worker(std::uint64_t seed, std::uint64_t steps) {
  bench::Rng rng(seed);
  std::vector<Item> mine;
  mine.reserve(kMaxRetained);
  for (std::uint64_t s = 0; s < steps; ++s) {
    const std::uint64_t r = rng.below(100);
    if (r < 45 || mine.empty()) {
      Item it = make_item(rng);
      if (mine.size() < kMaxRetained) {
        mine.push_back(it);
      } else {
        Item& victim = mine[rng.below(mine.size())];
        bench::obj_free(victim.p, victim.tag);
        victim = it;
      }
    } else if (r < 75) {
      std::size_t i = rng.below(mine.size());
      bench::obj_free(mine[i].p, mine[i].tag);
      mine[i] = mine.back();
      mine.pop_back();
    } else if (r < 80) {
      grow_object(mine[rng.below(mine.size())], rng);
    } else {
      std::size_t i = rng.below(mine.size());
      bench::obj_check(mine[i].p, mine[i].tag);
      void* got = g_transfer[rng.below(kTransfer)].exchange(mine[i].p, std::memory_order_acq_rel);
      if (got != nullptr) {
        mine[i] = adopt(got);
      } else {
        mine[i] = mine.back();
        mine.pop_back();
      }
    }
  }
  // Free two thirds of what is left, leave the rest for later threads.
  for (const Item& it : mine) {
    if (rng.chance(2, 3)) {
      bench::obj_free(it.p, it.tag);
    } else {
      bench::obj_check(it.p, it.tag);
      void* got = g_transfer[rng.below(kTransfer)].exchange(it.p, std::memory_order_acq_rel);
      if (got != nullptr) bench::obj_free(got);
    }
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(
      argc, argv, "mstress: threads re-created each round, objects moved between threads");
  std::uint64_t rounds = bench::scaled(25, a.scale);
  if (rounds < 5) rounds = 5;
  if (rounds > 25) rounds = 25;
  const std::uint64_t total_steps = bench::scaled(2.4e6, a.scale);
  const std::uint64_t per_round = total_steps / rounds + 1;

  bench::Timer timer;
  bench::Rng seeds(42);
  for (std::uint64_t round = 0; round < rounds; ++round) {
    std::vector<std::uint64_t> s(static_cast<std::size_t>(a.threads));
    for (auto& x : s) x = seeds.next();
    bench::run_threads(a.threads, [&](int t) {
      worker(s[static_cast<std::size_t>(t)], bench::share(per_round, a.threads, t));
    });
  }
  for (auto& slot : g_transfer) {
    void* p = slot.exchange(nullptr);
    if (p != nullptr) bench::obj_free(p);
  }
  bench::report("mstress", a, per_round * rounds, timer.seconds());
  return 0;
}
