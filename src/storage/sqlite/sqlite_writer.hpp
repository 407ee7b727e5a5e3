// The SQLite store's writer: the operations it applies and the state only its thread touches.
// Internal to storage/sqlite. Not thread-safe: one writer thread calls `commit`.
#pragma once

#include "storage/call_ledger.hpp"
#include "storage/call_store.hpp"
#include "storage/job_ledger.hpp"
#include "storage/job_store.hpp"
#include "storage/sqlite/sqlite_call_store.hpp"
#include "storage/sqlite/sqlite_db.hpp"
#include "storage/write_op.hpp"

#include <atomic>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <variant>
#include <vector>

namespace aipbx::sqlite {

// The queued writes are the backend-neutral ones of storage/write_op.hpp.
using aipbx::archive_op;
using aipbx::claim_op;
using aipbx::cut_op;
using aipbx::declare_op;
using aipbx::end_op;
using aipbx::event_op;
using aipbx::finish_op;
using aipbx::ingest_op;
using aipbx::partial_op;
using aipbx::release_op;
using aipbx::renew_op;
using aipbx::replay_op;
using aipbx::write_op;

// Job columns in the order read_job expects.
extern const char* const job_columns;
job read_job(const statement& s);

class writer {
 public:
  writer(const sqlite_options& options, std::unique_ptr<connection> db);
  ~writer();

  // Applies `batch` (and, when `sweep`, the idle cut) in one transaction and commits; every op now holds
  // its result (an error for all of them if the transaction failed). Returns whether jobs were queued.
  bool commit(std::deque<write_op>& batch, double now, bool sweep);
  // Tells the listener about new jobs (when `jobs_queued`), then runs every op's handler. May run on
  // another thread than `commit` (the store's syncer), for a batch whose commit has returned.
  void answer(std::deque<write_op>& batch, bool jobs_queued) const;
  // Tells the listener that jobs were queued (answer does when asked to).
  void notify_jobs_queued() const;

  void set_listener(std::function<void()> listener) { listener_ = std::move(listener); }
  // The writer's connection, for the checkpoints it runs between transactions.
  sqlite3* handle() const { return db_->handle(); }
  // The id of the last event of the log committed so far (durable or not).
  std::int64_t last_event_id() const { return last_event_id_; }
  // Log events deleted by retention so far.
  std::uint64_t pruned_events() const { return pruned_events_; }
  std::uint64_t failed_batches() const { return failed_batches_; }

 private:
  using cache_map = std::unordered_map<std::string, std::unique_ptr<call_record>>;

  void apply(write_op& op, double now);
  result<ingest_outcome> apply_ingest(const packet& p, double now);
  result<claim_result> apply_claim(const claim_op& op, double now);
  result<bool> apply_cut(const cut_op& op, double now);
  result<call_state> apply_end(const std::string& call_id, const std::string& reason, double now);
  result<call_state> apply_archive(const archive_op& op, double now);
  result<declare_outcome> apply_declare(const declare_op& op, double now);
  result<std::int64_t> apply_event(event_op& op, double now);
  void sweep(double now);
  // Deletes (a slice of) the log's events older than the retention.
  void prune_events(double now);
  void write_log_rows();

  call_record& load_or_create(const std::string& id, double now, bool& created, std::string_view reason);
  call_record* load(const std::string& id);
  // Writes the rows the ledgers decided on since the last call, in order.
  void write_rows(double now);
  void write_job_rows();
  void write_call(call_record& rec, double now);

  // The current row of job `id` (null if there is none), kept until the batch ends.
  job* load_job(std::int64_t id);
  // Runs `query` (bound) and keeps the job rows it returns; what the job ledger changed is written first,
  // so the query sees it.
  std::vector<job*> read_jobs(statement& query);
  // Keeps a job row read from the database.
  job* keep_job(job j);
  queue_times read_queue_times();

  const sqlite_options& options_;
  call_ledger ledger_;
  job_ledger jobs_;
  std::unique_ptr<connection> db_;
  statement insert_packet_, select_packet_data_, select_call_, select_gaps_, insert_call_, update_call_,
      update_call_state_, select_call_row_, insert_gap_, delete_gap_, insert_job_, select_job_, select_due_,
      select_expired_, next_due_, next_lease_, update_job_, insert_result_, select_idle_, select_expired_gaps_,
      select_timed_out_, mark_lost_, insert_transition_, flag_late_, set_media_, set_track_, insert_event_,
      insert_log_, set_log_head_, prune_cutoff_, prune_log_, set_pruned_, upsert_partial_, delete_partial_,
      add_to_tallies_;
  cache_map cache_;
  // The job rows this batch read; the job ledger changes them in place (node-based: pointers stay valid).
  std::unordered_map<std::int64_t, job> job_rows_;
  // What this batch changes in the job_tallies row (written once, before the commit).
  job_tally_changes tallies_;
  bool jobs_queued_ = false;
  std::function<void()> listener_;
  std::uint64_t failed_batches_ = 0;
  std::int64_t last_event_id_ = 0;  // event_log_state.last_id as this writer's transaction holds it
  double last_prune_ = 0;
  std::uint64_t pruned_events_ = 0;
  std::uint64_t pruning_ = 0;  // deleted by the batch being written
};

}  // namespace aipbx::sqlite
