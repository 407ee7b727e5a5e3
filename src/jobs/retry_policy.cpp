#include "jobs/retry_policy.hpp"

#include <algorithm>
#include <cmath>

namespace aipbx::jobs {

std::optional<std::chrono::milliseconds> retry_policy::delay_after(int attempt, int max_attempts_of_job,
                                                                   random_source& random) const {
  if (attempt >= max_attempts_of_job) return std::nullopt;
  const int k = std::max(0, attempt - 1);
  // 2^k overflows nothing below the cap: stop doubling once the cap is reached.
  double ms = static_cast<double>(base.count());
  for (int i = 0; i < k && ms < static_cast<double>(max_delay.count()); ++i) ms *= 2;
  ms = std::min(ms, static_cast<double>(max_delay.count()));
  if (jitter > 0) ms *= 1.0 - std::clamp(jitter, 0.0, 1.0) * random.uniform01();
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(ms)));
}

std::chrono::milliseconds retry_policy::total_backoff() const {
  struct no_jitter final : random_source {
    double uniform01() override { return 0; }
  } zero;
  retry_policy plain = *this;
  plain.jitter = 0;
  std::chrono::milliseconds sum{0};
  for (int attempt = 1; attempt < max_attempts; ++attempt) sum += *plain.delay_after(attempt, max_attempts, zero);
  return sum;
}

}  // namespace aipbx::jobs
