#include "jobs/attempt.hpp"

namespace aipbx::jobs {

job_outcome decide(const job& j, const attempt_result& r, const retry_policy& policy, double now,
                   random_source& random) {
  if (r.ok) return job_succeeded{r.text, r.engine, r.latency_ms};
  if (r.permanent) return job_dead{"permanent error: " + r.error};
  if (auto delay = policy.delay_after(j.attempts, j.max_attempts, random))
    return job_retry{r.error, now + static_cast<double>(delay->count()) / 1000.0};
  return job_dead{"failed after " + std::to_string(j.attempts) + (j.attempts == 1 ? " attempt: " : " attempts: ") +
                  r.error};
}

}  // namespace aipbx::jobs
