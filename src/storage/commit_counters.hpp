// commit_counters: the writer figures every store reports in writer_stats (transactions, their sizes and
// times), kept the same way by each backend's writer threads. Thread-safe; `committed` is lock-free.
#pragma once

#include "domain/histogram.hpp"
#include "storage/call_store.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>

namespace aipbx {

class commit_counters {
 public:
  // A transaction of `writes` writes (none: nothing is counted) committed, `took` after it began. Called
  // before anyone is answered, so that a client that got its answer finds its write in the figures.
  void committed(std::uint64_t writes, std::chrono::steady_clock::duration took) {
    if (writes == 0) return;
    batches_.fetch_add(1, std::memory_order_relaxed);
    writes_.fetch_add(writes, std::memory_order_relaxed);
    std::uint64_t largest = largest_.load(std::memory_order_relaxed);
    while (writes > largest && !largest_.compare_exchange_weak(largest, writes)) {
    }
    sizes_.observe(static_cast<double>(writes));
    seconds_.observe(std::chrono::duration<double>(took).count());
  }

  // Sets the commit figures of `s`: batches, packets, largest_batch, batch_sizes, commit_seconds.
  void fill(writer_stats& s) const {
    s.batches = batches_.load(std::memory_order_relaxed);
    s.packets = writes_.load(std::memory_order_relaxed);
    s.largest_batch = largest_.load(std::memory_order_relaxed);
    s.batch_sizes = sizes_.snapshot();
    s.commit_seconds = seconds_.snapshot();
  }

 private:
  std::atomic<std::uint64_t> batches_{0}, writes_{0}, largest_{0};
  atomic_histogram sizes_{{1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096}};
  atomic_histogram seconds_{duration_bounds()};
};

}  // namespace aipbx
