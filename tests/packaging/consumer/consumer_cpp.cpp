// A C++ program against the installed shardalloc.hpp: the STL allocator and
// the pmr resource over the process heap. Prints "consumer_cpp: OK".
#include <cstdio>
#include <memory_resource>
#include <string>
#include <vector>

#include <shardalloc/stats.h>
#include <shardalloc/shardalloc.hpp>

int main() {
  shard_stats before, during;
  shard_stats_get(&before);
  std::vector<int, shardalloc::stl_allocator<int>> v;
  for (int i = 0; i < 1000; ++i) v.push_back(i);
  std::pmr::vector<std::pmr::string> strings(shardalloc::heap_memory_resource());
  for (int i = 0; i < 100; ++i) strings.emplace_back(std::string(50, char('a' + i % 26)));
  shard_stats_get(&during);
  if (during.live_blocks < before.live_blocks + 101) {
    std::fprintf(stderr, "consumer_cpp: FAIL: live blocks %llu -> %llu\n",
                 (unsigned long long)before.live_blocks, (unsigned long long)during.live_blocks);
    return 1;
  }
  long sum = 0;
  for (int x : v) sum += x;
  if (sum != 999 * 1000 / 2 || strings[27][0] != 'b') return 1;
  std::printf("consumer_cpp: OK\n");
  return 0;
}
