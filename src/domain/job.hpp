// A unit of AI work and the values that describe its life: states, outcomes, counts. Pure values.
//
// States: queued -> running -> succeeded | queued (a retry, due at run_at) | dead (attempts exhausted or a
// permanent error); running -> queued when its lease expires or it is released; dead -> queued by replay.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace aipbx {

enum class job_state { queued, running, succeeded, dead };

std::string_view to_string(job_state s);
std::optional<job_state> parse_job_state(std::string_view text);

struct job {
  std::int64_t id = 0;
  std::string call_id;
  std::int64_t first_sequence = 0;  // the segment: packets first..last of the call
  std::int64_t last_sequence = 0;
  job_state state = job_state::queued;
  int attempts = 0;                 // attempts started (the current one included while running)
  int max_attempts = 5;
  double run_at = 0;                // when it is due (unix seconds)
  std::optional<std::string> lease_owner;
  std::optional<double> lease_expires_at;
  std::optional<std::string> last_error;
  double created_at = 0;
  double updated_at = 0;
  std::optional<double> started_at;   // first attempt
  std::optional<double> finished_at;  // succeeded or dead
};

// What a worker records at the end of an attempt.
struct job_succeeded {
  std::string text;
  std::string engine;
  double latency_ms = 0;
};
struct job_retry {
  std::string error;
  double run_at = 0;
};
struct job_dead {
  std::string error;
};
using job_outcome = std::variant<job_succeeded, job_retry, job_dead>;

struct job_counts {
  std::int64_t queued = 0;
  std::int64_t retrying = 0;  // of `queued`, those with an attempt behind them (a backoff wait, or due again)
  std::int64_t running = 0;
  std::int64_t succeeded = 0;
  std::int64_t dead = 0;
  std::optional<double> oldest_due_at;  // run_at of the oldest queued job that is due
};

// The jobs in each figure of job_counts, or what a change of jobs adds to them (a figure is then negative
// when jobs left it). A job counts in its state's figure, and a queued one with an attempt behind it in
// `retrying` too.
struct job_tally {
  std::int64_t queued = 0;
  std::int64_t retrying = 0;
  std::int64_t running = 0;
  std::int64_t succeeded = 0;
  std::int64_t dead = 0;
  // Counts `n` jobs in `state` with `attempts` started (n = -1: a job that leaves them).
  void add(job_state state, int attempts, std::int64_t n);
  bool empty() const { return *this == job_tally{}; }
  friend bool operator==(const job_tally&, const job_tally&) = default;
};

}  // namespace aipbx
