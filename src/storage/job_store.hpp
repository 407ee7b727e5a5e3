// job_store: the persistent queue of AI work (segments of a call's packets) and its results.
//
// Jobs are created by the store itself, in the same transaction as the packets that complete a segment
// (see call_store::ingest), so an acknowledged packet's work is never lost. Workers take jobs with
// `claim`, which leases them: the job is `running`, owned by `owner` until `lease_expires_at`, and its
// `attempts` is incremented. The attempt number is the fencing token: `renew` and `finish` succeed only
// for the owner of the current attempt, so a worker whose lease expired (and whose job another worker
// took) can never record a second result. A running job whose lease expired is claimed again.
//
// Threading: every member is thread-safe. Writes (`claim`, `renew`, `finish`, `release`, `replay`) are
// queued to the store's writer and committed in a group, like ingest; their handler runs exactly once on
// a store thread. Reads block and must run off I/O threads.
//
// Errors: writes fail with `unavailable` / `store_failure` (nothing changed) or, for `replay`, with
// `not_found` or `job_not_dead`. `renew`/`finish` answer `false` (not an error) when the caller no longer
// holds the lease.
#pragma once

#include "domain/errc.hpp"
#include "domain/job.hpp"
#include "storage/call_store.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aipbx {

struct claim_result {
  std::vector<job> jobs;              // each now `running` under the caller's lease, attempts incremented
  // When the earliest job still queued becomes due, if any; only told when fewer jobs than asked for were
  // claimed (a full claim means the caller will ask again when a slot frees).
  std::optional<double> next_run_at;
};

struct transcript_segment {
  std::int64_t job_id = 0;
  std::int64_t first_sequence = 0;
  std::int64_t last_sequence = 0;
  std::string text;
  std::string engine;
  double latency_ms = 0;
  double created_at = 0;
};

struct job_query {
  std::size_t limit = 50;
  std::int64_t after = 0;              // keyset cursor on id
  std::optional<job_state> state;
  std::optional<std::string> call_id;
};

struct job_page {
  std::vector<job> jobs;
  std::optional<std::int64_t> next_after;
};

class job_store {
 public:
  using claim_handler = std::function<void(result<claim_result>)>;
  using bool_handler = std::function<void(result<bool>)>;
  using job_handler = std::function<void(result<job>)>;

  virtual ~job_store() = default;

  // Leases up to `limit` due jobs (queued and due, or running with an expired lease) to `owner`.
  virtual void claim(std::string owner, std::size_t limit, double lease_seconds, claim_handler done) = 0;
  // Extends the lease of the current attempt; `false` when the caller no longer holds it.
  virtual void renew(std::int64_t job_id, std::string owner, int attempt, double lease_seconds,
                     bool_handler done) = 0;
  // Records the outcome of the current attempt; `false` when the caller no longer holds the lease.
  virtual void finish(std::int64_t job_id, std::string owner, int attempt, job_outcome outcome,
                      bool_handler done) = 0;
  // Gives a running job back without counting the attempt (graceful shutdown).
  virtual void release(std::int64_t job_id, std::string owner, int attempt, bool_handler done) = 0;
  // Puts a dead job back in the queue with fresh attempts.
  virtual void replay(std::int64_t job_id, job_handler done) = 0;

  // Runs `listener` (on a store thread) after each commit that queued jobs due now.
  virtual void on_jobs_queued(std::function<void()> listener) = 0;

  [[nodiscard]] virtual result<job_page> list_jobs(const job_query& query) = 0;
  [[nodiscard]] virtual result<job> get_job(std::int64_t id) = 0;
  [[nodiscard]] virtual result<std::vector<transcript_segment>> transcript(std::string_view call_id) = 0;
  // The stored packets of [first, last] of a call, in sequence order (what an AI run reads): packets that
  // arrived after their gap was declared lost are left out, so a run sees the same packets whenever it
  // happens.
  [[nodiscard]] virtual result<std::vector<stored_packet>> segment_packets(std::string_view call_id,
                                                                          std::int64_t first,
                                                                          std::int64_t last) = 0;
  [[nodiscard]] virtual result<job_counts> count_jobs() = 0;
};

}  // namespace aipbx
