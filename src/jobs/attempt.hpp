// The result of one AI attempt on a job, and what the queue should record for it. Pure, thread-safe.
#pragma once

#include "domain/job.hpp"
#include "domain/random.hpp"
#include "jobs/retry_policy.hpp"

#include <string>

namespace aipbx::jobs {

struct attempt_result {
  bool ok = false;
  std::string text;        // the segment's transcript when ok
  std::string error;       // why it failed otherwise
  bool permanent = false;  // a failure no retry can fix (e.g. the engine rejected the input)
  std::string engine;      // which engine answered
  double latency_ms = 0;
};

// Success -> succeeded; permanent failure or no attempt left -> dead; otherwise a retry at now + delay.
job_outcome decide(const job& j, const attempt_result& r, const retry_policy& policy, double now,
                   random_source& random);

}  // namespace aipbx::jobs
