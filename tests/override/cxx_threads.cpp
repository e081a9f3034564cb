// A threaded C++ program run under LD_PRELOAD=libshardalloc.so: producers
// build std::string messages and hand them over a bounded queue to consumers,
// which parse them into std::map / std::unordered_map tallies. Every message
// is allocated by one thread and freed by another. The totals are known in
// advance and checked exactly. Exit 0 when all is right.
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <unordered_map>
#include <vector>

#include "override_check.h"

namespace {

constexpr int kProducers = 4;
constexpr int kConsumers = 3;
constexpr int kPerProducer = 60000;
constexpr int kKeys = 997;
constexpr size_t kQueueCap = 512;

struct Message {
  std::string key;
  std::string body;  // "<producer>:<seq>:<padding>"
  std::vector<int> extra;
};

class BoundedQueue {
 public:
  void push(std::unique_ptr<Message> m) {
    std::unique_lock<std::mutex> lock(mu_);
    not_full_.wait(lock, [&] { return q_.size() < kQueueCap; });
    q_.push_back(std::move(m));
    not_empty_.notify_one();
  }
  // nullptr once closed and drained.
  std::unique_ptr<Message> pop() {
    std::unique_lock<std::mutex> lock(mu_);
    not_empty_.wait(lock, [&] { return !q_.empty() || closed_; });
    if (q_.empty()) return nullptr;
    auto m = std::move(q_.front());
    q_.pop_front();
    not_full_.notify_one();
    return m;
  }
  void close() {
    std::lock_guard<std::mutex> lock(mu_);
    closed_ = true;
    not_empty_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable not_full_, not_empty_;
  std::deque<std::unique_ptr<Message>> q_;
  bool closed_ = false;
};

struct Tally {
  std::map<std::string, long long> sum_by_key;
  std::unordered_map<int, long long> count_by_producer;
  long long extra_sum = 0;
  long long padding_bytes = 0;
  long long bad = 0;
};

}  // namespace

int main() {
  shardtest::require_override("cxx_threads");
  BoundedQueue queue;
  std::vector<Tally> tallies(kConsumers);

  std::vector<std::thread> consumers;
  for (int c = 0; c < kConsumers; ++c) {
    consumers.emplace_back([&, c] {
      Tally& t = tallies[size_t(c)];
      while (auto m = queue.pop()) {
        const size_t a = m->body.find(':');
        const size_t b = m->body.find(':', a + 1);
        if (a == std::string::npos || b == std::string::npos) {
          ++t.bad;
          continue;
        }
        const int producer = std::stoi(m->body.substr(0, a));
        const long long seq = std::stoll(m->body.substr(a + 1, b - a - 1));
        const std::string padding = m->body.substr(b + 1);
        if (padding != std::string(padding.size(), char('a' + seq % 26))) ++t.bad;
        t.sum_by_key[m->key] += seq;
        ++t.count_by_producer[producer];
        for (int x : m->extra) t.extra_sum += x;
        t.padding_bytes += (long long)padding.size();
      }
    });
  }

  std::vector<std::thread> producers;
  for (int p = 0; p < kProducers; ++p) {
    producers.emplace_back([&, p] {
      for (int i = 0; i < kPerProducer; ++i) {
        auto m = std::make_unique<Message>();
        m->key = "key-" + std::to_string(i % kKeys);
        m->body = std::to_string(p) + ":" + std::to_string(i) + ":" +
                  std::string(size_t(i % 300), char('a' + i % 26));
        m->extra.assign(size_t(i % 7), p);
        queue.push(std::move(m));
      }
    });
  }
  for (auto& t : producers) t.join();
  queue.close();
  for (auto& t : consumers) t.join();

  // Merge and compare with the known answers.
  std::map<std::string, long long> sum_by_key;
  std::unordered_map<int, long long> count_by_producer;
  long long extra_sum = 0, padding_bytes = 0, bad = 0;
  for (auto& t : tallies) {
    for (auto& [k, v] : t.sum_by_key) sum_by_key[k] += v;
    for (auto& [k, v] : t.count_by_producer) count_by_producer[k] += v;
    extra_sum += t.extra_sum;
    padding_bytes += t.padding_bytes;
    bad += t.bad;
  }
  std::map<std::string, long long> want_by_key;
  long long want_extra = 0, want_padding = 0;
  for (int p = 0; p < kProducers; ++p) {
    for (int i = 0; i < kPerProducer; ++i) {
      want_by_key["key-" + std::to_string(i % kKeys)] += i;
      want_extra += (long long)(i % 7) * p;
      want_padding += i % 300;
    }
  }
  int failures = 0;
  auto expect = [&](bool ok, const char* what) {
    if (!ok) {
      std::fprintf(stderr, "cxx_threads: FAIL: %s\n", what);
      ++failures;
    }
  };
  expect(bad == 0, "malformed or corrupted messages");
  expect(sum_by_key == want_by_key, "per-key sums differ");
  expect(extra_sum == want_extra, "extra sum differs");
  expect(padding_bytes == want_padding, "padding bytes differ");
  expect(count_by_producer.size() == size_t(kProducers), "producer count differs");
  for (auto& [p, n] : count_by_producer) expect(n == kPerProducer, "messages lost or duplicated");
  std::printf("cxx_threads: %d producers x %d messages, %d consumers, %zu keys: %s\n", kProducers,
              kPerProducer, kConsumers, sum_by_key.size(), failures == 0 ? "OK" : "FAILED");
  return failures == 0 ? 0 : 1;
}
