// The heap profiler's sampling math and its table, through shard_malloc
// (the process heap of the static library; docs/profiling.md).
#include <errno.h>
#include <gtest/gtest.h>
#include <stdio.h>
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "platform/linux/heap_profile.h"
#include "shardalloc/shardalloc.h"
#include "support/address_space.h"
#include "support/test_support.h"

namespace sp = shardalloc::platform;

namespace {

// The profile written to a temporary file, and the sum of its byte counts.
std::string profile_text() {
  FILE* f = tmpfile();
  EXPECT_NE(f, nullptr);
  EXPECT_EQ(shard_profile_write(fileno(f)), 0);
  std::string text;
  rewind(f);
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, f)) > 0) text.append(buf, n);
  fclose(f);
  return text;
}

double profile_bytes(const std::string& text) {
  double total = 0;
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t end = text.find('\n', pos);
    const std::string line = text.substr(pos, end - pos);
    const size_t space = line.rfind(' ');
    EXPECT_NE(space, std::string::npos) << line;
    total += std::stod(line.substr(space + 1));
    pos = end == std::string::npos ? text.size() : end + 1;
  }
  return total;
}

}  // namespace

TEST(ProfileMath, LogMatchesLibm) {
  for (double x : {1e-300, 1e-20, 1e-5, 0.001, 0.1, 0.5, 0.7071, 0.9999, 1.0, 1.5, 2.0, 1e10}) {
    EXPECT_NEAR(sp::sample_log(x), std::log(x), 1e-12 * (1 + std::fabs(std::log(x)))) << x;
  }
}

TEST(ProfileMath, ExpNegMatchesLibm) {
  for (double x : {0.0, 1e-9, 0.01, 0.5, 1.0, 3.7, 20.0, 100.0, 745.0, 1e6}) {
    EXPECT_NEAR(sp::sample_exp_neg(x), std::exp(-x), 1e-13 * std::exp(-x) + 1e-300) << x;
  }
}

TEST(ProfileMath, WeightIsInverseSampleProbability) {
  EXPECT_NEAR(sp::sample_weight(64, 512 * 1024), 1 / (1 - std::exp(-64.0 / 524288)), 1e-6);
  EXPECT_NEAR(sp::sample_weight(4 << 20, 512 * 1024), 1.0, 1e-3);  // always sampled
  EXPECT_NEAR(sp::sample_weight(4096, 4096), 1 / (1 - std::exp(-1.0)), 1e-9);
}

// The gaps are exponential with mean `rate`: mean, and P(gap > rate) = 1/e.
TEST(ProfileMath, GapsAreExponentialWithMeanRate) {
  std::mt19937_64 rng(42);
  const uint64_t rate = 512 * 1024;
  const int n = 400000;
  double sum = 0;
  int above = 0;
  for (int i = 0; i < n; ++i) {
    const double u = (double((rng() >> 11) + 1)) / 9007199254740992.0;
    const uint64_t gap = sp::sample_gap(rate, u);
    ASSERT_GE(gap, 1u);
    sum += double(gap);
    above += gap > rate;
  }
  // Standard error of the mean: rate / sqrt(n) = 0.16% of rate.
  EXPECT_NEAR(sum / n / double(rate), 1.0, 0.01);
  EXPECT_NEAR(double(above) / n, std::exp(-1.0), 0.005);
}

// Before start: writing a profile says the profiler is off.
TEST(ProfileTable, OffUntilStarted) {
  ASSERT_FALSE(sp::heap_profile_on());
  errno = 0;
  EXPECT_EQ(shard_profile_write(1), -1);
  EXPECT_EQ(errno, ENOTSUP);
}

// Live samples estimate the live bytes, frees remove them (local, remote,
// huge), and the table grows past its first index (4096 bytes a sample:
// thousands of entries).
TEST(ProfileTable, EstimatesLiveBytesAndForgetsFreedBlocks) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not offer the profiler";
  sp::heap_profile_start(4096, nullptr);
  ASSERT_TRUE(sp::heap_profile_on());
  std::vector<void*> blocks;
  const size_t kBytes = 24 << 20;
  for (size_t done = 0; done < kBytes; done += 48) blocks.push_back(shard_malloc(48));
  std::vector<void*> huge;
  for (int i = 0; i < 3; ++i) huge.push_back(shard_malloc(3 << 20));
  const double live = double(kBytes) + 3.0 * (3 << 20);
  // 24 MiB / 4 KiB = 6144 samples: 1 sigma ~1.3%.
  EXPECT_NEAR(profile_bytes(profile_text()) / live, 1.0, 0.07);
  // Half the small blocks freed by another thread (seen when the owner
  // collects them: allocate the same again), the huge ones freed here.
  const size_t half = blocks.size() / 2;
  std::thread([&] {
    for (size_t i = half; i < blocks.size(); ++i) shard_free(blocks[i]);
  }).join();
  for (void* p : huge) shard_free(p);
  std::vector<void*> again;
  for (size_t i = half; i < blocks.size(); ++i) again.push_back(shard_malloc(48));
  for (void* p : again) shard_free(p);
  EXPECT_NEAR(profile_bytes(profile_text()) / (double(kBytes) / 2), 1.0, 0.1);
  for (size_t i = 0; i < half; ++i) shard_free(blocks[i]);
  // Everything freed: at most a few blocks of the test's own vectors' peers.
  EXPECT_LT(profile_bytes(profile_text()), 64 * 1024);
}

// The profiler's tables are sparse (the samples' table alone is 104 MiB of
// address space): advised MADV_NOHUGEPAGE, or where THP is "always" a
// sample's first touch made 2 MiB resident (a review: 3.4 -> 5.5 MiB peak
// RSS). After samples, a profile written (its snapshot and groups mapped
// too) and the index grown, no readable and writable anonymous mapping of
// 16 MiB or more lacks the advice (glibc's thread stacks and arenas are
// smaller or inaccessible), and the blocks' arena has it too.
TEST(ProfileTable, ItsTablesAreAdvisedNoHugePages) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not offer the profiler";
  if (!shardtest::advice_shows()) GTEST_SKIP() << "no THP advice shown here (qemu-user, no THP)";
#ifdef SHARDTEST_SANITIZED
  GTEST_SKIP() << "the sanitizer's own large mappings have no advice";
#endif
  sp::heap_profile_start(4096, nullptr);
  std::vector<void*> blocks;
  for (size_t done = 0; done < (size_t{8} << 20); done += 64) blocks.push_back(shard_malloc(64));
  EXPECT_GT(profile_bytes(profile_text()), 0);
  size_t large = 0;
  for (const shardtest::Mapping& m : shardtest::mappings()) {
    const bool rw = shardtest::has_flag(m.flags, "rd") && shardtest::has_flag(m.flags, "wr");
    if (!m.name.empty() || !rw || m.hi - m.lo < (size_t{16} << 20)) continue;
    ++large;
    EXPECT_TRUE(shardtest::has_flag(m.flags, "nh"))
        << std::hex << m.lo << "-" << m.hi << ":" << m.flags;
  }
  EXPECT_GE(large, 1u);  // at least the samples' table
  EXPECT_TRUE(shardtest::has_flag(shardtest::vm_flags_at(blocks[0]), "nh"));
  for (void* p : blocks) shard_free(p);
}

// Pages holding one to a few samples (one sample per 64 KiB, 48-byte blocks
// in 64 KiB pages) keep their samples' block indices (Page::sampled_at):
// freed in a shuffled order, every sampled block still leaves the profile.
TEST(ProfileTable, FewSamplesAPageAreForgottenInAnyFreeOrder) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not offer the profiler";
  sp::heap_profile_start(64 * 1024, nullptr);
  std::vector<void*> blocks;
  const size_t kBytes = 32 << 20;
  for (size_t done = 0; done < kBytes; done += 48) blocks.push_back(shard_malloc(48));
  // ~512 samples: 1 sigma ~4.4%; this only shows the samples are there.
  EXPECT_NEAR(profile_bytes(profile_text()) / double(kBytes), 1.0, 0.3);
  std::mt19937_64 rng(42);
  std::shuffle(blocks.begin(), blocks.end(), rng);
  for (void* p : blocks) shard_free(p);
  // One sample left behind would weigh about 64 KiB.
  EXPECT_LT(profile_bytes(profile_text()), 32 * 1024);
}

// The leak report lists what is live, largest first.
TEST(ProfileTable, LeakReportCountsLiveSamples) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not offer the profiler";
  sp::heap_profile_start(4096, nullptr);  // (each test may run in a process of its own)
  std::vector<void*> blocks;
  for (int i = 0; i < 2000; ++i) blocks.push_back(shard_malloc(1000));
  FILE* f = tmpfile();
  ASSERT_NE(f, nullptr);
  ASSERT_EQ(shard_profile_leaks_write(fileno(f)), 0);
  rewind(f);
  char line[512];
  ASSERT_NE(fgets(line, sizeof line, f), nullptr);
  EXPECT_EQ(std::string(line).rfind("shardalloc leak report: pid ", 0), 0u) << line;
  ASSERT_NE(fgets(line, sizeof line, f), nullptr);
  unsigned long samples = 0, bytes = 0;
  ASSERT_EQ(sscanf(line, "live: %lu sampled blocks, about %lu bytes", &samples, &bytes), 2) << line;
  // 2 MB at one sample per 4 KiB: ~490 samples.
  EXPECT_GT(samples, 350u);
  EXPECT_NEAR(double(bytes) / 2e6, 1.0, 0.2);
  fclose(f);
  for (void* p : blocks) shard_free(p);
}

// Review of the remote-free batches (protocol 10): this thread frees every
// block an exited thread allocated. Its last chain holds a sealed page's
// last blocks, so that page never completes and is never collected: the
// samples of every block freed into it stay in the profile (and in the leak
// report written at exit, which does not push the exiting thread's chains).
TEST(ProfileTable, BlocksAThreadFreesOfAnExitedThreadLeaveTheProfile) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not offer the profiler";
  sp::heap_profile_start(512, nullptr);
  std::vector<void*> blocks;
  std::thread([&] {
    for (int i = 0; i < 4000; ++i) blocks.push_back(shard_malloc(100));
  }).join();
  for (void* p : blocks) shard_free(p);
  // Without the batches: a few hundred bytes (the vector's own samples).
  EXPECT_LT(profile_bytes(profile_text()), 8 * 1024);
}

// Review (review-sampling): the same, but one block of every 64 stays live:
// the exited thread's pages (sealed, protocol 3) then never complete, and
// nobody adopts or sweeps its heap before the profile is written, so the
// samples of the blocks freed into them stayed in the profile and in the
// leak report (a program whose worker thread's blocks the main thread freed
// but one got a leak report of 62 blocks from the worker's site).
TEST(ProfileTable, FreedBlocksInPagesOfAnExitedThreadThatKeepALiveBlockLeaveTheProfile) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not offer the profiler";
  sp::heap_profile_start(512, nullptr);
  std::vector<void*> blocks;
  std::thread([&] {
    for (int i = 0; i < 4000; ++i) blocks.push_back(shard_malloc(1000));
  }).join();
  std::vector<void*> kept;
  for (size_t i = 0; i < blocks.size(); ++i) {
    if (i % 64 == 0)
      kept.push_back(blocks[i]);
    else
      shard_free(blocks[i]);
  }
  // 63 blocks of 1000 bytes live (every one sampled at this rate), plus the
  // vectors' own samples; without the fix about 3.9 MB.
  const double live = double(kept.size()) * 1000;
  EXPECT_LT(profile_bytes(profile_text()), live + 64 * 1024);
  for (void* p : kept) shard_free(p);
}
