// mock_engine: the seed's stand-in for an unreliable AI service. Each call waits a random delay drawn
// uniformly from [min_delay, max_delay], then fails with probability `failure_rate` ("AI Service
// Unavailable", retryable), or returns a transcript derived deterministically from the packets: their
// `data`, in sequence order, joined by spaces. Defaults reproduce the seed: 1-3 s, 25 % failures.
// Randomness comes from the injected source (seed it for reproducible runs). Thread-safe.
#pragma once

#include "domain/random.hpp"
#include "engines/ai_engine.hpp"

#include <chrono>

namespace aipbx::engines {

struct mock_options {
  std::chrono::milliseconds min_delay{1000};
  std::chrono::milliseconds max_delay{3000};
  double failure_rate = 0.25;
};

class mock_engine final : public ai_engine {
 public:
  mock_engine(mock_options options, random_source& random) : options_(options), random_(random) {}

  std::string_view name() const override { return "mock"; }
  boost::asio::awaitable<jobs::attempt_result> transcribe(audio_segment segment) override;

  // The text the mock returns for `segment`.
  static std::string transcript_of(const audio_segment& segment);

 private:
  mock_options options_;
  random_source& random_;
};

}  // namespace aipbx::engines
