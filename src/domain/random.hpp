// A source of randomness, injected wherever behaviour is random (retry jitter, the mock engine's delays
// and failures), so tests can seed it or script it. Implementations say whether they are thread-safe.
#pragma once

#include "domain/thread_annotations.hpp"

#include <cstdint>
#include <random>

namespace aipbx {

class random_source {
 public:
  virtual ~random_source() = default;
  // A number in [0, 1).
  virtual double uniform01() = 0;
};

// std::mt19937_64 behind a mutex: thread-safe, and reproducible for a given seed.
class seeded_random final : public random_source {
 public:
  explicit seeded_random(std::uint64_t seed) : engine_(seed) {}
  static std::uint64_t fresh_seed() { return std::random_device{}(); }

  double uniform01() override {
    lock_guard lock(mutex_);
    return std::uniform_real_distribution<double>(0.0, 1.0)(engine_);
  }

 private:
  mutex mutex_;
  std::mt19937_64 engine_ GUARDED_BY(mutex_);
};

}  // namespace aipbx
