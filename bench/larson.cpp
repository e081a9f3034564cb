// larson: server simulation (after Larson & Krishnan's benchmark).
//
// T chains of threads. Each chain owns an array of 5000 slots holding objects
// of 8..1000 bytes, first filled by the main thread. A thread of the chain
// repeatedly picks a random slot, verifies and frees its object and puts a
// new random-sized object there. After its share of operations the thread
// starts a successor thread, hands it the array and exits; the successor
// joins it. So most frees are remote, many of them of objects whose
// allocating thread has already exited.
//
// Full size: 12M replacements in total, 100 generations per chain.
#include "common.hpp"

namespace {

constexpr std::size_t kSlots = 5000;
constexpr std::size_t kMinSize = 8;
constexpr std::size_t kMaxSize = 1000;

struct Slot {
  void* p;
  std::uint64_t tag;
  std::uint32_t size;
};

struct Chain {
  std::vector<Slot> slots;
  bench::Rng rng{0};
  std::uint64_t ops_per_gen = 0;
  std::uint64_t gens_left = 0;
  std::mutex mu;            // protects the two handles below
  std::thread self;         // handle of the thread just created
  std::thread predecessor;  // handle of its creator, to be joined
  std::thread last;         // the final thread, joined by main
  std::atomic<bool> done{false};
};

void fill_slot(Slot& s, bench::Rng& rng) {
  s.size = static_cast<std::uint32_t>(rng.range(kMinSize, kMaxSize));
  s.tag = bench::make_tag(rng);
  s.p = bench::checked_malloc(s.size);
  bench::stamp(s.p, s.size, s.tag);
}

void generation(Chain* c) {
  std::thread me, pred;
  {
    std::lock_guard<std::mutex> lk(c->mu);
    me = std::move(c->self);
    pred = std::move(c->predecessor);
  }
  if (pred.joinable()) pred.join();

  auto& rng = c->rng;
  for (std::uint64_t i = 0; i < c->ops_per_gen; ++i) {
    Slot& s = c->slots[rng.below(kSlots)];
    bench::check(s.p, s.size, s.tag);
    std::free(s.p);
    fill_slot(s, rng);
  }

  std::lock_guard<std::mutex> lk(c->mu);
  if (--c->gens_left > 0) {
    c->predecessor = std::move(me);
    c->self = std::thread(generation, c);
  } else {
    c->last = std::move(me);
    c->done.store(true, std::memory_order_release);
  }
}

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(argc, argv,
                             "larson: server simulation, objects handed to successor threads");
  const std::uint64_t total_ops = bench::scaled(12e6, a.scale);
  std::uint64_t gens = bench::scaled(100, a.scale);
  if (gens < 3) gens = 3;
  if (gens > 100) gens = 100;

  bench::Timer timer;
  std::vector<Chain> chains(static_cast<std::size_t>(a.threads));
  bench::Rng seed_rng(4141);
  for (int t = 0; t < a.threads; ++t) {
    Chain& c = chains[static_cast<std::size_t>(t)];
    c.rng = bench::Rng(seed_rng.next());
    c.slots.resize(kSlots);
    for (auto& s : c.slots) fill_slot(s, c.rng);
    c.gens_left = gens;
    std::uint64_t per_chain = bench::share(total_ops, a.threads, t);
    c.ops_per_gen = per_chain / gens + 1;
  }
  for (auto& c : chains) {
    std::lock_guard<std::mutex> lk(c.mu);
    c.self = std::thread(generation, &c);
  }
  std::uint64_t ops = 0;
  for (auto& c : chains) {
    while (!c.done.load(std::memory_order_acquire))
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    std::thread last;
    {
      std::lock_guard<std::mutex> lk(c.mu);
      last = std::move(c.last);
    }
    last.join();
    for (auto& s : c.slots) {
      bench::check(s.p, s.size, s.tag);
      std::free(s.p);
    }
    ops += c.ops_per_gen * gens;
  }
  bench::report("larson", a, ops, timer.seconds());
  return 0;
}
