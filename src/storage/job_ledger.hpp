// job_ledger: the job queue's rules every backend's writer shares, as pure logic over plain data.
//
// A writer reads a job's row into a `job` (the domain value holds every column of the jobs table), hands it
// and the operation to the ledger, and writes back the rows the ledger decided on, in its own SQL. The
// ledger owns what a job's row means:
//  - who may renew, finish or release a job: the owner of its current attempt, and only while it runs (the
//    attempt number is the fencing token, so a worker whose lease was taken over records nothing);
//  - what a claim takes: due queued jobs first, then running jobs whose lease expired (their worker died or
//    hung; the interrupted attempt counts), and a lease that expired on the job's last attempt makes the
//    job dead instead;
//  - what an outcome does: succeeded (with its result row), queued again at the retry's time with its
//    error, or dead with its error; a release gives the attempt back; only a dead job is replayed, with
//    fresh attempts;
//  - partial results: the owner of the running attempt records its hypothesis; any change of who holds
//    the job (an outcome, a release, a new lease) deletes it in the same transaction;
//  - what each change means for the job's call: the ledger tells the call_ledger (`job_changed`), which
//    keeps the call's job counters and settles an ended call (COMPLETED, FAILED, back through
//    PROCESSING_AI after a replay);
//  - which events of the store-wide log each change tells (job claimed, failed, succeeded, dead, replayed,
//    released, a transcript segment), appended to the call ledger's rows in the order they happen.
// It runs no SQL, reads no clock (`now` arguments) and logs only in `log_committed`, which the writer calls
// once its transaction committed.
//
// Not thread-safe: one writer thread owns a ledger, the call ledger it feeds, and the rows it is given.
#pragma once

#include "domain/errc.hpp"
#include "domain/job.hpp"
#include "domain/sequence_tracker.hpp"
#include "storage/call_ledger.hpp"
#include "storage/job_store.hpp"
#include "storage/write_op.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace aipbx {

struct result_row {  // a transcript_segments row: the result of a job that succeeded
  std::int64_t job_id = 0;
  std::string call_id;
  seq_range range;
  std::string text;
  std::string engine;
  double latency_ms = 0;
  double created_at = 0;
};

struct partial_row {  // a transcript_partials row: the current hypothesis of a running attempt
  std::int64_t job_id = 0;
  std::string call_id;
  int attempt = 0;
  std::string text;
  std::int64_t heard_ms = 0;
  double updated_at = 0;
};
// What becomes of a job's transcript_partials row: written (`row`) or deleted (none).
struct partial_change {
  std::int64_t job_id = 0;
  std::optional<partial_row> row;
};

// The rows the ledger decided on since the writer last wrote them.
struct job_rows {
  std::vector<job> jobs;  // whole rows to write back by id, one per job, each in its latest state
  std::vector<result_row> results;
  std::vector<partial_change> partials;  // one per job, its latest
  bool empty() const { return jobs.empty() && results.empty() && partials.empty(); }
  void clear();
  // Lists `j` to be written, replacing an earlier version of the same job.
  void put(const job& j);
  // Lists the job's partial to be written, or (none) deleted, replacing an earlier change of it.
  void put_partial(std::int64_t job_id, std::optional<partial_row> row);
};

// What one writer transaction changes in the queue's tallies (`job_tally`): every job row it read is
// remembered as the table holds it, each row it writes back counts as a move from that state to the new one
// (and is then remembered as written), and each job it inserts counts as queued. Diffing the rows, not the
// operations, counts every path of the ledger (claims, outcomes, releases, replays, expired leases) in one
// place. The ledger changes only rows the transaction read, so every written row is known. One per writer;
// `clear` at the start of each transaction (or its retry).
class job_tally_changes {
 public:
  void clear() {
    stored_.clear();
    tally_ = {};
  }
  // A job row read from the table.
  void read(const job& j) { stored_.insert_or_assign(j.id, stored{j.state, j.attempts}); }
  // The rows about to be written back.
  void written(const job_rows& rows);
  // `n` jobs inserted (queued, no attempt yet).
  void inserted(std::int64_t n) { tally_.add(job_state::queued, 0, n); }
  // What the transaction's changes so far add to the tallies.
  const job_tally& tally() const { return tally_; }

 private:
  struct stored {
    job_state state = job_state::queued;
    int attempts = 0;
  };
  std::unordered_map<std::int64_t, stored> stored_;
  job_tally tally_;
};

// When a claim that found the queue short should come back: the earliest run_at of a queued job and the
// earliest lease expiry of a running one, as the backend read them.
struct queue_times {
  std::optional<double> next_due;
  std::optional<double> next_expiry;
};

// What a claim reads, each in the backend's SQL. The rows returned are current (the writer wrote the rows
// this ledger changed before reading) and the writer's: they stay valid until its batch ends, and the
// ledger changes them in place.
struct claim_reads {
  std::function<std::vector<job*>(std::size_t limit)> due;  // queued, run_at <= now; oldest run_at first
  std::function<std::vector<job*>(std::size_t limit)>
      expired;  // running, lease_expires_at < now; first expired first
  std::function<queue_times()> next;
};

class job_ledger {
 public:
  // The record of a job's call, loaded (and, where the backend locks, locked) by the writer; null when the
  // call is unknown.
  using call_lookup = std::function<call_record*(const std::string& call_id)>;

  job_ledger(call_ledger& calls, call_lookup lookup) : calls_(calls), lookup_(std::move(lookup)) {}

  // Starts a batch (or its retry): no rows, nothing to log, nothing queued.
  void begin();

  // Leases up to `limit` jobs to `owner` for `lease` seconds: due jobs first, then expired leases.
  claim_result claim(const claim_reads& reads, const std::string& owner, std::size_t limit, double lease,
                     double now);
  // Each of these takes the job's current row (null: there is no such job) and answers false when the
  // caller does not hold the current attempt.
  bool renew(job* j, const std::string& owner, int attempt, double lease, double now);
  bool finish(job* j, const std::string& owner, int attempt, const job_outcome& outcome, double now);
  // Gives the attempt back: the job is queued, due now, and the attempt is not counted.
  bool release(job* j, const std::string& owner, int attempt, double now);
  // Records the running attempt's current hypothesis.
  bool hear(job* j, const partial_op& op, double now);
  // Puts a dead job back in the queue with fresh attempts; `not_found` or `job_not_dead` otherwise.
  result<job> replay(job* j, double now);
  // Applies `op` when it is one of the operations above that name a job by id (renew, finish, release,
  // replay, partial), to the row `find(id)` returns, and sets its result; returns whether it was one.
  bool apply(write_op& op, const std::function<job*(std::int64_t id)>& find, double now);

  // Whether `owner` holds the current attempt `attempt` of `j`.
  static bool holds(const job& j, const std::string& owner, int attempt);
  // The earlier of two optional times.
  static std::optional<double> earliest(std::optional<double> a, std::optional<double> b);

  job_rows& rows() { return rows_; }
  // Whether a job became due now in this batch (released, replayed): the writer wakes the workers.
  bool queued_now() const { return queued_now_; }
  // Logs what the batch did to jobs (jobs dead because their lease expired). Call once the batch committed.
  void log_committed() const;

 private:
  void lease(job& j, const std::string& owner, double seconds, double now);
  // `j` changed hands (a new lease, an outcome, a release): its partial goes.
  void drop_partial(const job& j) { rows_.put_partial(j.id, std::nullopt); }
  void kill(job& j, const std::string& error, double now);
  // The log events of an attempt's end (see storage/event_log.hpp), told to the call ledger's list.
  void log_failed(const job& j, const std::string& error, std::optional<double> next_run_at, double now);
  void log_succeeded(const job& j, const job_succeeded& ok, double now);
  // The job moved from `from` to its current state: its call's counters and state follow.
  void call_changed(const job& j, job_state from, double now);

  call_ledger& calls_;
  call_lookup lookup_;
  job_rows rows_;
  bool queued_now_ = false;
  std::vector<std::int64_t> expired_dead_;
};

}  // namespace aipbx
