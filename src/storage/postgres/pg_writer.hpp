// The PostgreSQL store's writer: applies a batch of queued writes in one transaction. Internal to
// storage/postgres. Not thread-safe: each writer thread owns one writer and one connection.
#pragma once

#include "storage/call_ledger.hpp"
#include "storage/postgres/pg_call_store.hpp"
#include "storage/postgres/pg_conn.hpp"
#include "storage/write_op.hpp"

#include <atomic>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <unordered_set>
#include <string>
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

  void reset();
  void run(connection& c, std::deque<write_op>& batch, double now, bool sweep, const std::string& token);
  // Opens the transaction unless `begun`, creates the calls of `new_ids` that do not exist, locks the calls
  // of `lock_ids` (sorted) and reads them, their gaps and the stored packets the batch's packets may repeat.
  void load_calls(connection& c, bool begun, const std::vector<std::string>& new_ids,
                  const std::vector<std::string>& lock_ids, const std::deque<write_op>& batch, double now);
  void read_records(const result_set& calls, const result_set& gaps);
  void lock_call(connection& c, const std::string& id);
  // The locked call `id`, locking it now if the batch had not.
  call_record* locked(connection& c, const std::string& id);

  result<ingest_outcome> apply_ingest(const packet& p, double now);
  result<claim_result> apply_claim(connection& c, const claim_op& op, double now);
  result<bool> apply_renew(connection& c, const renew_op& op, double now);
  result<bool> apply_finish(connection& c, const finish_op& op, double now);
  result<bool> apply_release(connection& c, const release_op& op, double now);
  result<job> apply_replay(connection& c, const replay_op& op, double now);
  result<call_state> apply_end(const std::string& call_id, const std::string& reason, double now);
  result<call_state> apply_archive(const std::string& call_id, double now);
  result<declare_outcome> apply_declare(const declare_op& op);
  void sweep(double now);

  // A job of the call changed state: counters, and the state of an ended call settles.
  void job_changed(connection& c, const std::string& call_id, job_state from, job_state to, double now);
  // The batch's writes, for the pipeline that commits them.
  std::vector<connection::statement> flush(double now, const std::string& token);

  const pg_options& options_;
  call_ledger ledger_;
  // Calls this writer has seen committed: they exist for good, so a batch locks them without first
  // trying to create them. Cleared when it grows past known_limit.
  static constexpr std::size_t known_limit = 100000;
  std::unordered_set<std::string> known_;

  // The state of the transaction being built; reset before each attempt.
  std::map<std::string, std::unique_ptr<call_record>, std::less<>> calls_;  // locked by this transaction
  std::set<std::string, std::less<>> created_;  // created by it; the first packet reports it
  std::map<std::pair<std::string, std::int64_t>, std::string> existing_;  // stored before, for this batch
  std::map<packet_key, std::string_view> inserted_;  // stored by this batch
  struct sweep_candidates {
    std::vector<std::string> expired_gaps, timed_out, idle;
  } sweep_;
  bool sweeping_ = false;
  bool jobs_queued_ = false;
  std::atomic<std::uint64_t> failed_batches_{0};
};

}  // namespace aipbx::pg
