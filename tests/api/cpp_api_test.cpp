// The C++ API: stl_allocator in containers and the pmr memory resource.
#include <gtest/gtest.h>

#include <map>
#include <memory_resource>
#include <string>
#include <vector>

#include "shardalloc/shardalloc.hpp"

TEST(CppApi, StlAllocatorBacksContainers) {
  std::vector<int, shardalloc::stl_allocator<int>> v;
  for (int i = 0; i < 100000; ++i) v.push_back(i);
  EXPECT_GE(shard_usable_size(v.data()), v.size() * sizeof(int));
  long sum = 0;
  for (int x : v) sum += x;
  EXPECT_EQ(sum, 100000L * 99999 / 2);
  std::map<int, std::string, std::less<int>,
           shardalloc::stl_allocator<std::pair<const int, std::string>>>
      m;
  for (int i = 0; i < 1000; ++i) m.emplace(i, std::string(size_t(1 + i % 5), char('0' + i % 10)));
  EXPECT_EQ(m.at(777), "777");
}

TEST(CppApi, StlAllocatorHonoursOverAlignedTypes) {
  struct alignas(256) Wide {
    char bytes[256];
  };
  std::vector<Wide, shardalloc::stl_allocator<Wide>> v(10);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(v.data()) % 256, 0u);
  EXPECT_THROW(shardalloc::stl_allocator<Wide>().allocate(SIZE_MAX / 16),
               std::bad_array_new_length);
}

TEST(CppApi, PmrResourceAllocatesAlignedAndCompares) {
  std::pmr::memory_resource* r = shardalloc::heap_memory_resource();
  void* p = r->allocate(1000, 4096);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(p) % 4096, 0u);
  EXPECT_GE(shard_usable_size(p), 1000u);
  r->deallocate(p, 1000, 4096);
  shardalloc::heap_resource other;
  EXPECT_TRUE(r->is_equal(other));
  EXPECT_FALSE(r->is_equal(*std::pmr::new_delete_resource()));
  std::pmr::vector<std::pmr::string> strings(r);
  for (int i = 0; i < 1000; ++i) strings.emplace_back(size_t{100}, char('a' + i % 26));
  EXPECT_EQ(strings[27][0], 'b');
  EXPECT_THROW(
      {
        void* q = r->allocate(SIZE_MAX / 2, 8);
        (void)q;
      },
      std::bad_alloc);
}
