// Threads playing CPUs, for the bare-metal platform's tests on the host.
// Each thread says which CPU it runs on through a thread_local that the CPU
// hook reads, as a kernel's hook reads a per-CPU register. What a kernel
// guarantees (no migration inside a call, no reentry on one CPU) the tests
// guarantee by giving each CPU id to one thread at a time.
#pragma once
#include <gtest/gtest.h>

#include <cstdio>
#include <cstdlib>
#include <thread>
#include <vector>

#include "core/segment.h"
#include "shardalloc/region.h"
#include "support/test_support.h"

namespace bare_test {

inline thread_local unsigned tl_cpu = 0;  // the "CPU" this thread runs on
inline unsigned current_cpu() { return tl_cpu; }

inline void on_fatal(const char* what, const void* p) {
  std::fprintf(stderr, "shardalloc fatal: %s (%p)\n", what, p);
  std::abort();
}

// Installs the hooks before any test touches a region, as a kernel does
// before starting its CPUs: register with AddGlobalTestEnvironment.
class CpuHooks : public ::testing::Environment {
 public:
  explicit CpuHooks(unsigned cpus) : cpus_(cpus) {}
  void SetUp() override {
    shard_set_fatal_hook(on_fatal);
    ASSERT_EQ(shard_set_cpu_hook(current_cpu, cpus_), SHARD_OK);
  }

 private:
  unsigned cpus_;
};

inline shard_region* new_region(size_t bytes) {
  shard_region* r = nullptr;
  EXPECT_EQ(shard_region_init(&r, shardtest::map_memory(bytes), bytes), SHARD_OK);
  return r;
}

// Runs fn(cpu) on n threads at once, thread i on CPU first + i.
template <class Fn>
void on_cpus(unsigned first, unsigned n, Fn fn) {
  std::vector<std::thread> ts;
  for (unsigned i = 0; i < n; ++i) {
    ts.emplace_back([&fn, cpu = first + i] {
      tl_cpu = cpu;
      fn(cpu);
    });
  }
  for (auto& t : ts) t.join();
}

// The heap a block was allocated from (private header: segment layout).
inline const void* owner_heap(const void* p) { return shardalloc::core::segment_of(p)->heap; }

}  // namespace bare_test
