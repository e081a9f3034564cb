// Second review of the remote-free batches (commit 96a8c31): the records a
// thread claims at its first remote free (remote_batches.cpp) and the
// sentinel g_no_remote_batch taken when all 256 are claimed.
#include <gtest/gtest.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "shardalloc/shardalloc.h"
#include "shardalloc/stats.h"
#include "support/test_support.h"

namespace {

constexpr size_t kSize = 48;
constexpr int kRecords = 256;  // remote_batches.cpp

int64_t live_blocks() {
  shard_stats s;
  shard_stats_get(&s);  // also pushes the calling thread's own chains
  return int64_t(s.classes[shard_size_class(kSize)].live_blocks);
}

// True when a fresh thread's remote frees wait in a chain (the thread got a
// record), false when they are pushed at once (it got g_no_remote_batch).
// An owner allocates 10 blocks and stays; a thread that never allocated
// frees them and waits; the owner exits (its page is sealed). A chain keeps
// the page's 10 blocks counted live; frees pushed at once complete the page.
bool fresh_thread_batches() {
  constexpr int kN = 10;
  void* blocks[kN];
  std::atomic<int> stage{0};
  const int64_t before = live_blocks();
  std::thread owner([&] {
    for (auto& p : blocks) p = shard_malloc(kSize);
    stage.store(1);
    while (stage.load() != 2) std::this_thread::yield();
  });
  while (stage.load() != 1) std::this_thread::yield();
  std::thread freer([&] {
    for (void* p : blocks) shard_free(p);
    stage.store(2);
    while (stage.load() != 3) std::this_thread::yield();
  });
  while (stage.load() != 2) std::this_thread::yield();
  owner.join();
  const int64_t during = live_blocks();
  stage.store(3);
  freer.join();
  return during - before > 0;
}

// n threads that each make one remote free (of a block of a thread that
// exited: pushed at once, but the thread claims a record at its first remote
// free all the same) and then wait until released.
struct RecordHolders {
  std::mutex m;
  std::condition_variable cv;
  int started = 0;
  bool quit = false;
  std::vector<std::thread> threads;
  std::vector<void*> blocks;

  explicit RecordHolders(int n) : blocks(n) {
    std::thread([this] {
      for (auto& p : blocks) p = shard_malloc(kSize);
    }).join();
    for (int i = 0; i < n; ++i) {
      threads.emplace_back([this, i] {
        shard_free(blocks[i]);
        shard_stats st;
        shard_stats_get(&st);  // pushes the thread's chains: the sentinel's too (read only)
        std::unique_lock<std::mutex> lock(m);
        ++started;
        cv.notify_all();
        cv.wait(lock, [&] { return quit; });
      });
    }
    std::unique_lock<std::mutex> lock(m);
    cv.wait(lock, [&] { return started == n; });
  }
  void release() {
    {
      std::lock_guard<std::mutex> lock(m);
      quit = true;
    }
    cv.notify_all();
    for (auto& t : threads) t.join();
    threads.clear();
  }
  ~RecordHolders() {
    if (!threads.empty()) release();
  }
};

}  // namespace

// Baseline and the sentinel: with every record claimed a fresh thread's
// frees are pushed at once (and complete the sealed page); once the holders
// exit their records are free again.
TEST(RemoteBatchRev2, RecordsRunOutAndComeBackInOneProcess) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not batch";
  ASSERT_TRUE(fresh_thread_batches());
  {
    RecordHolders holders(kRecords);
    EXPECT_FALSE(fresh_thread_batches()) << "more than 256 records?";
    holders.release();
  }
  EXPECT_TRUE(fresh_thread_batches()) << "records not given back at thread exit";
}

// Many threads at once with the records exhausted: every remote free must
// still reach its page (the sentinel's path), and nothing is kept.
TEST(RemoteBatchRev2, ThreadsBeyondTheRecordsFreeCorrectly) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not batch";
  const int64_t before = live_blocks();
  {
    RecordHolders holders(kRecords + 64);
    holders.release();
  }
  EXPECT_EQ(live_blocks(), before);
}

// A fork child has only the forking thread, but every record the parent's
// other threads held stays claimed in the child for ever (nothing releases
// them: after_fork_in_child does not touch the records). A child of a
// process with 256 threads that freed remotely never batches again, nor do
// its own children; fewer threads in the parent leak fewer records per fork
// generation.
int child_batches() {
  const pid_t pid = fork();
  if (pid == 0) _exit(fresh_thread_batches() ? 0 : 3);
  int status = 0;
  if (pid < 0 || waitpid(pid, &status, 0) != pid || !WIFEXITED(status)) return -1;
  return WEXITSTATUS(status);
}

TEST(RemoteBatchRev2, AForkChildGetsBackTheRecordsOfThreadsItLacks) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not batch";
#if defined(SHARDTEST_TSAN)
  GTEST_SKIP() << "TSan does not support starting threads in the child of a multi-threaded fork";
#endif
  // qemu-user's own assertions stop a child forked with 256 threads alive.
  if (std::getenv("SHARDALLOC_UNDER_QEMU") != nullptr) GTEST_SKIP() << "qemu-user";
  ASSERT_TRUE(fresh_thread_batches());
  ASSERT_EQ(child_batches(), 0) << "control: a child of a process without holders batches";
  RecordHolders holders(kRecords);
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    // Only this thread exists: the holders' records should be free.
    _exit(fresh_thread_batches() ? 0 : 3);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  holders.release();
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0)
      << "the child's threads never batch: 256 records leaked by fork";
}

// The sealed check races the owner's exit: owners exit while a thread
// chains frees into their pages (some plain when checked, sealed at once
// after). After the freeing thread exits, every page must be back.
TEST(RemoteBatchRev2, OwnersExitingWhileTheirPagesAreChainedComeBack) {
  if (shard_is_checked()) GTEST_SKIP() << "checked builds do not batch";
  static constexpr size_t kSizes[] = {16, 48, 128, 512, 2048};
  auto totals = [] {
    shard_stats s;
    shard_stats_get(&s);
    uint64_t live = 0, pages = 0;
    for (size_t size : kSizes) {
      live += s.classes[shard_size_class(size)].live_blocks;
      pages += s.classes[shard_size_class(size)].pages;
    }
    return std::pair<uint64_t, uint64_t>(live, pages);
  };
  const auto before = totals();
  for (int round = 0; round < 100; ++round) {
    std::vector<void*> blocks;
    blocks.reserve(3000);
    std::atomic<int> stage{0};
    std::thread owner([&] {
      for (int i = 0; i < 600; ++i)
        for (size_t size : kSizes) blocks.push_back(shard_malloc(size));
      stage.store(1);
      while (stage.load() != 2) {
      }
      // exits now, while the freer chains
    });
    std::thread freer([&] {
      while (stage.load() != 1) {
      }
      size_t half = blocks.size() / 2;
      for (size_t i = 0; i < blocks.size(); ++i) {
        if (i == half) stage.store(2);
        shard_free(blocks[i]);
      }
    });
    owner.join();
    freer.join();
  }
  const auto after = totals();
  EXPECT_EQ(after.first, before.first);
  EXPECT_EQ(after.second, before.second);
}
