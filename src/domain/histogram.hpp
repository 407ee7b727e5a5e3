// atomic_histogram: counts observations into fixed buckets, lock-free, for metrics that the layers under
// the HTTP API record (commit batch sizes, AI latency) without depending on a metrics library. The
// /metrics endpoint turns a snapshot into a Prometheus histogram. Thread-safe; observe() is wait-free.
#pragma once

#include <atomic>
#include <cstdint>
#include <memory>
#include <vector>

namespace aipbx {

struct histogram_snapshot {
  std::vector<double> bounds;        // upper bounds, ascending; the last bucket (+Inf) is implied
  std::vector<std::uint64_t> counts; // per bucket, not cumulative; size bounds.size() + 1
  double sum = 0;
  std::uint64_t count = 0;
};

// Buckets for durations in seconds that matter around one 20 ms audio frame: commit lags, transaction and
// fdatasync times.
inline const std::vector<double>& duration_bounds() {
  static const std::vector<double> bounds{0.0005, 0.001, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.02,
                                          0.03,   0.05,  0.075, 0.1,   0.2,   0.5,    1,    2,     5};
  return bounds;
}

class atomic_histogram {
 public:
  explicit atomic_histogram(std::vector<double> bounds)
      : bounds_(std::move(bounds)), counts_(std::make_unique<std::atomic<std::uint64_t>[]>(bounds_.size() + 1)) {}

  void observe(double value) {
    std::size_t i = 0;
    while (i < bounds_.size() && value > bounds_[i]) ++i;
    counts_[i].fetch_add(1, std::memory_order_relaxed);
    double sum = sum_.load(std::memory_order_relaxed);
    while (!sum_.compare_exchange_weak(sum, sum + value, std::memory_order_relaxed)) {
    }
  }

  histogram_snapshot snapshot() const {
    histogram_snapshot s;
    s.bounds = bounds_;
    s.counts.resize(bounds_.size() + 1);
    for (std::size_t i = 0; i <= bounds_.size(); ++i) {
      s.counts[i] = counts_[i].load(std::memory_order_relaxed);
      s.count += s.counts[i];
    }
    s.sum = sum_.load(std::memory_order_relaxed);
    return s;
  }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<std::uint64_t>[]> counts_;
  std::atomic<double> sum_{0};
};

}  // namespace aipbx
