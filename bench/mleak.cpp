// mleak: thread churn (watches memory that leaks with short-lived threads).
//
// Rounds of T short-lived threads. Each thread allocates 200 objects of
// 16..2048 bytes (plus one 64 KiB block), verifies and frees all but one,
// and exits, leaving that one object in a global array. The next round's
// threads verify and free the objects left by the previous round (remote
// frees of blocks whose owner thread has exited) before doing their own
// work. A good allocator keeps the peak RSS flat however many threads come
// and go; one that strands per-thread caches or pages grows with the rounds.
//
// Full size: 6000 thread lifetimes in total, i.e. 6000/T rounds of T
// threads (at least 2 rounds).
#include "common.hpp"

namespace {

constexpr int kObjects = 200;

struct Left {
  void* p = nullptr;
  std::uint64_t tag = 0;
};

}  // namespace

int main(int argc, char** argv) {
  auto a = bench::parse_args(argc, argv,
                             "mleak: short-lived threads allocate, leave one object and exit");
  const auto T = static_cast<std::size_t>(a.threads);
  std::uint64_t rounds = bench::scaled(6000, a.scale) / T;
  if (rounds < 2) rounds = 2;
  std::vector<Left> left(T);  // objects handed from round r to round r+1

  bench::Timer timer;
  bench::Rng seeds(2024);
  for (std::uint64_t r = 0; r < rounds; ++r) {
    const std::uint64_t seed = seeds.next();
    bench::run_threads(a.threads, [&](int t) {
      bench::Rng rng(seed + static_cast<std::uint64_t>(t));
      // Free what a thread of the previous round left (it has exited; the
      // slots are rotated between rounds, so it was another thread's).
      Left& mine = left[static_cast<std::size_t>(t)];
      if (mine.p != nullptr) bench::obj_free(mine.p, mine.tag);
      void* objs[kObjects + 1];
      std::uint64_t tags[kObjects + 1];
      for (int i = 0; i <= kObjects; ++i) {
        tags[i] = bench::make_tag(rng);
        objs[i] = bench::obj_new(i < kObjects ? rng.range(16, 2048) : 64 * 1024, tags[i]);
      }
      const int keep = static_cast<int>(rng.below(kObjects));
      for (int i = 0; i <= kObjects; ++i)
        if (i != keep) bench::obj_free(objs[i], tags[i]);
      mine.p = objs[keep];
      mine.tag = tags[keep];
    });
    // Rotate so that every object is freed by a different thread than the
    // one that allocated it (with T == 1 the thread is different anyway).
    if (T > 1) {
      const Left first = left[0];
      for (std::size_t i = 0; i + 1 < T; ++i) left[i] = left[i + 1];
      left[T - 1] = first;
    }
  }
  for (auto& l : left)
    if (l.p != nullptr) bench::obj_free(l.p, l.tag);
  bench::report("mleak", a, rounds * T, timer.seconds());
  return 0;
}
