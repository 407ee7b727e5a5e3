// The PostgreSQL store's writer: applies a batch of queued writes in one transaction. Internal to
// storage/postgres. Not thread-safe: each writer thread owns one writer and one connection.
#pragma once

#include "storage/call_ledger.hpp"
#include "storage/job_ledger.hpp"
#include "storage/postgres/pg_call_store.hpp"
#include "storage/postgres/pg_conn.hpp"
#include "storage/write_op.hpp"

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

namespace aipbx::pg {

// Job columns in the order read_job expects.
extern const char* const job_columns;
job read_job(const result_set& r, int row);

class writer {
 public:
  explicit writer(const pg_options& options);
  ~writer();

  // Applies `batch` (and, when `sweep`, the sweep, unless another node is sweeping) in one transaction on
  // `c`, running it again after a deadlock or serialization failure. Every op then holds its result (an
  // error for all of them if the transaction failed). `token` is the NOTIFY payload. Returns whether jobs
  // were queued.
  bool commit(connection& c, std::deque<write_op>& batch, double now, bool sweep, const std::string& token);
  std::uint64_t failed_batches() const { return failed_batches_.load(std::memory_order_relaxed); }

 private:
  using packet_key = std::pair<std::string_view, std::int64_t>;
  using call_map = std::map<std::string, std::unique_ptr<call_record>, std::less<>>;

  // What a batch names, gathered before its transaction reads anything.
  struct batch_plan {
    std::vector<std::string> new_ids;   // calls it may create
    std::vector<std::string> lock_ids;  // calls it locks (and reads)
    std::vector<std::int64_t> job_ids;  // jobs whose rows it locks and reads (renew, finish, release, replay)
    std::vector<std::int64_t> job_call_ids;  // jobs whose call it locks (finish, replay)
    bool claims = false;
  };

  void reset();
  void run(connection& c, std::deque<write_op>& batch, double now, bool sweep, const std::string& token);
  static batch_plan plan(const std::deque<write_op>& batch);
  // Looks up the calls that job operations, claims and the sweep will touch (opening the transaction
  // first, when there are any); returns whether it did open it.
  bool find_calls(connection& c, batch_plan& plan, double now, bool sweep);
  void collect_sweep(connection& c, batch_plan& plan, double now);
  // Creates only the calls this writer has not seen committed; every call is locked in id order.
  void order_locks(batch_plan& plan) const;
  // Opens the transaction unless `begun`, creates the calls to create that do not exist, locks the calls
  // to lock (sorted) and reads them, their gaps, the stored packets the batch's packets may repeat, and
  // the rows of the jobs it names.
  void load(connection& c, bool begun, const batch_plan& plan, const std::deque<write_op>& batch, double now);
  void read_created(const result_set& created, const std::deque<write_op>& batch, double now);
  void read_records(const result_set& calls, const result_set& gaps);
  void read_existing(const result_set& packets);
  void lock_call(connection& c, const std::string& id);
  // The locked call `id`, locking it now if the batch had not.
  call_record* locked(connection& c, const std::string& id);

  void apply(connection& c, write_op& op, double now);
  result<ingest_outcome> apply_ingest(const packet& p, double now);
  result<claim_result> apply_claim(connection& c, const claim_op& op, double now);
  result<bool> apply_cut(const cut_op& op, double now);
  result<call_state> apply_end(const std::string& call_id, const std::string& reason, double now);
  result<call_state> apply_archive(const std::string& call_id, double now);
  result<declare_outcome> apply_declare(const declare_op& op);
  // Sets `op.r` when the event is refused; otherwise the id its row gets answers it (assign_event_ids).
  void apply_event(event_op& op, double now);
  // The ids the batch's event rows got (RETURNING), to their operations.
  void assign_event_ids(const result_set& ids);
  void sweep(double now);

  // The row of job `id` as this transaction holds it (null if the batch did not read one).
  job* find_job(std::int64_t id);
  // Keeps the job rows of `r` (current, and locked by this transaction).
  std::vector<job*> keep_jobs(const result_set& r);
  // Runs `read` after writing what the job ledger changed so far (one round trip), so it sees it.
  result_set read_jobs_table(connection& c, connection::statement read);
  queue_times read_queue_times(connection& c);
  // The batch's writes, for the pipeline that commits them.
  std::vector<connection::statement> flush(double now, const std::string& token);

  const pg_options& options_;
  call_ledger ledger_;
  job_ledger jobs_;
  // Calls this writer has seen committed: they exist for good, so a batch locks them without first
  // trying to create them. Cleared when it grows past known_limit.
  static constexpr std::size_t known_limit = 100000;
  std::unordered_set<std::string> known_;

  // The state of the transaction being built; reset before each attempt.
  connection* conn_ = nullptr;  // the connection of the batch being applied
  call_map calls_;              // locked by this transaction
  std::unordered_map<std::int64_t, job>
      job_rows_;                                // read (and locked) by it; node-based: pointers stay valid
  std::set<std::string, std::less<>> created_;  // created by it; the first packet reports it
  std::map<std::pair<std::string, std::int64_t>, std::string> existing_;  // stored before, for this batch
  std::map<packet_key, std::string_view> inserted_;  // stored by this batch
  std::vector<event_op*> event_ops_;      // the operations of the ledger's event rows, in the same order
  std::optional<std::size_t> events_at_;  // the statement of flush() that inserts them
  struct sweep_candidates {
    std::vector<std::string> expired_gaps, timed_out, idle;
  } sweep_;
  bool sweeping_ = false;
  bool jobs_queued_ = false;
  std::atomic<std::uint64_t> failed_batches_{0};
};

}  // namespace aipbx::pg
