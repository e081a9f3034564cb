// cache-thrash: active false sharing (after Hoard's cache-thrash).
//
// All workers start together and each repeatedly allocates its own small
// (8-byte) object, writes each of its bytes many times, verifies it and
// frees it. No object is ever shared, so any slowdown with more threads
// comes from the allocator placing different threads' objects in the same
// cache line.
//
// Full size: 1000 allocate/write/free iterations in total (split over the
// workers), 500000 write passes over the 8-byte object per iteration.
#include "common.hpp"

int main(int argc, char** argv) {
  auto a = bench::parse_args(argc, argv,
                             "cache-thrash: active false sharing between threads' own objects");
  constexpr std::size_t kObjSize = 8;
  const std::uint64_t iterations = bench::scaled(1000, a.scale);
  const std::uint64_t reps = 500000;

  bench::Timer timer;
  bench::Gate gate(a.threads);
  bench::run_threads(a.threads, [&](int t) {
    gate.arrive_and_wait();
    const std::uint64_t mine = bench::share(iterations, a.threads, t);
    for (std::uint64_t i = 0; i < mine; ++i) {
      auto* obj = static_cast<volatile unsigned char*>(bench::checked_malloc(kObjSize));
      for (std::size_t k = 0; k < kObjSize; ++k) obj[k] = static_cast<unsigned char>(t * 3 + k);
      for (std::uint64_t r = 0; r < reps; ++r)
        for (std::size_t k = 0; k < kObjSize; ++k) obj[k] = static_cast<unsigned char>(obj[k] + 1);
      for (std::size_t k = 0; k < kObjSize; ++k)
        if (obj[k] != static_cast<unsigned char>(t * 3 + k + reps))
          bench::corrupt("object changed under the writer", const_cast<unsigned char*>(obj),
                         kObjSize);
      std::free(const_cast<unsigned char*>(obj));
    }
  });
  bench::report("cache-thrash", a, iterations * reps * kObjSize, timer.seconds());
  return 0;
}
