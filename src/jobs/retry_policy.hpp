// When a failed AI attempt is tried again. A value type; pure, thread-safe (the random source is the
// caller's).
//
// After failed attempt k (counting from 0) the job waits base * 2^k, capped at max_delay: with the
// defaults (the seed's: base 1 s, 5 attempts) that is 1, 2, 4 and 8 s between the five attempts. After the
// last attempt there is no wait: the job is dead at once. With jitter j in [0, 1], the wait is drawn
// uniformly from [d * (1 - j), d], so retries of many jobs that failed together spread out, and a wait is
// never longer than without jitter.
#pragma once

#include "domain/random.hpp"

#include <chrono>
#include <optional>

namespace aipbx::jobs {

struct retry_policy {
  std::chrono::milliseconds base{1000};
  std::chrono::milliseconds max_delay{std::chrono::minutes(10)};
  int max_attempts = 5;
  double jitter = 0;

  // The wait after the attempt numbered `attempt` (1 for the first) failed, or nullopt when it was the
  // last one allowed by `max_attempts_of_job`.
  std::optional<std::chrono::milliseconds> delay_after(int attempt, int max_attempts_of_job,
                                                       random_source& random) const;
  // The sum of the waits of a job that fails every attempt, without jitter: the least time it takes to die.
  std::chrono::milliseconds total_backoff() const;
};

}  // namespace aipbx::jobs
