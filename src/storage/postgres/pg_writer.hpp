// The PostgreSQL store's writer: applies a batch of queued writes in one transaction. Internal to
// storage/postgres. Not thread-safe: each writer thread owns one writer and one connection.
//
// A batch's writes are set-based: all its packets in one INSERT, all its jobs in another, one UPDATE for
// every call it changed, one DELETE and INSERT for their gaps, one for its events, and so on (rows travel
// as binary arrays, unnested by the server), sent in one pipeline with COMMIT.
//
// The node's writers keep the state of the calls they committed last (their records and their rows'
// `version`; see kept_calls). A batch of packets and call operations whose calls are all kept, and none of
// whose packets may repeat a stored one, is one round trip: BEGIN, the UPDATE of its calls (which locks them
// in id order, and fails on calls_version_kept when one's version is not the kept one: another node changed
// it, or another writer while this batch was built), the other writes, COMMIT. Any other batch first
// reads what it needs (creating, locking and reading its calls, their gaps, the stored packets its packets
// may repeat, the rows of the jobs it names) in one more round trip. A failed attempt forgets the kept state
// of its calls, so its retry reads them.
//
// A transaction that changes jobs adds what it changed to the job tallies (job_counts' figures: inserted
// jobs, and each job's move from the state it read to the state it wrote), on the writer's own row, its
// shard, which no other writer alive shares (pg_migrations.cpp, version 14).
#pragma once

#include "domain/thread_annotations.hpp"
#include "storage/call_ledger.hpp"
#include "storage/job_ledger.hpp"
#include "storage/postgres/pg_call_store.hpp"
#include "storage/postgres/pg_conn.hpp"
#include "storage/write_op.hpp"

#include <atomic>
#include <chrono>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

namespace aipbx::pg {

// What a node's writers committed last of each call: its record, its row's version then, and its key
// (calls.key, which its packets and jobs carry). Shared by the node's writers, so that what one wrote is
// kept for the next batch of another. Thread-safe.
struct kept_call {
  call_record rec;
  std::int64_t version = 0;
  std::int64_t key = 0;
};
class kept_calls {
 public:
  // Whether the call is known to exist (kept, or contended: see contend).
  bool contains(const std::string& id) const EXCLUDES(mutex_);
  // Copies of the kept calls of `ids`, or false (and nothing) when one of them is not kept.
  bool copy(const std::vector<std::string>& ids, std::vector<kept_call>& out) const EXCLUDES(mutex_);
  // Keeps `call`, unless a later version of it is kept already, or it is contended. Forgets every call
  // first when there are `limit` of them (a node's calls come and go; those still live are kept again by
  // their next batch).
  void put(const std::string& id, kept_call call) EXCLUDES(mutex_);
  void erase(const std::string& id) EXCLUDES(mutex_);
  // Another node (or writer) wrote the call while it was kept: its packets are reaching several nodes at
  // once, so a batch that started from a kept state would mostly fail its version check, after waiting
  // for the other's lock. The call is not kept for `contention_pause`: its batches read it meanwhile.
  void contend(const std::string& id) EXCLUDES(mutex_);

 private:
  static constexpr std::size_t limit = 50000;
  static constexpr std::chrono::seconds contention_pause{1};
  mutable aipbx::mutex mutex_;
  std::unordered_map<std::string, kept_call> calls_ GUARDED_BY(mutex_);
  std::unordered_map<std::string, std::chrono::steady_clock::time_point> contended_ GUARDED_BY(mutex_);
};

// NOTIFY on one channel, sent by a writer at most every `interval`: each one wakes every node's listener,
// and the commits of transactions that notify take a database-wide lock in turn. A batch with something
// to announce sooner owes one, which the writer's next transaction, or pay(), sends. Not thread-safe.
class notice {
 public:
  static constexpr std::chrono::milliseconds interval{20};
  explicit notice(const char* channel) : sql_(std::string("SELECT pg_notify('") + channel + "', $1)") {}
  // Starts an attempt: it carries no NOTIFY yet.
  void begin() { sending_ = false; }
  // Adds the NOTIFY to an attempt's writes when `wanted` (the batch has something to announce) or one is
  // owed, and one is due.
  void add(std::vector<connection::statement>& out, bool wanted, const std::string& payload);
  // The attempt committed.
  void committed(bool wanted);
  // Sends an owed NOTIFY on its own, when it is due (a writer with nothing to commit). Throws pg_error.
  void pay(connection& c, const std::string& payload);

 private:
  std::string sql_;
  std::chrono::steady_clock::time_point last_{};
  bool owed_ = false;
  bool sending_ = false;
};

// Job columns in the order read_job expects.
extern const char* const job_columns;
job read_job(const result_set& r, int row);

// The statement that adds `t` to shard `shard` of the job tallies (pg_migrations.cpp, version 14).
connection::statement add_to_tallies(int shard, const job_tally& t);
// Takes the lowest shard of the job tallies that no other session holds, for `c`'s session (an advisory
// lock, held until the session ends): the writer on `c` adds to that shard's row alone. Throws pg_error.
int take_tally_shard(connection& c);

class writer {
 public:
  writer(const pg_options& options, kept_calls& kept);
  ~writer();

  // Takes a shard of the job tallies for `c` (see take_tally_shard), a connection just opened for this
  // writer, before its first commit on it. Throws pg_error.
  void connected(connection& c) { shard_ = take_tally_shard(c); }

  // Applies `batch` (and, when `sweep`, the sweep, unless another node is sweeping) in one transaction on
  // `c`, running it again after a deadlock, a serialization failure, or a change to a call it kept (read
  // then; see above). Every op then holds its result (an
  // error for all of them if the transaction failed). `token` is the NOTIFY payload. Returns whether jobs
  // were queued.
  bool commit(connection& c, std::deque<write_op>& batch, double now, bool sweep, const std::string& token);
  // Sends the NOTIFYs committed batches owe (see notice), when they are due; for a writer with nothing to
  // commit. Throws pg_error.
  void pay_notify(connection& c, const std::string& token);
  std::uint64_t failed_batches() const { return failed_batches_.load(std::memory_order_relaxed); }
  // Committed batches that took their calls from the kept state, and those that read them; attempts whose
  // kept calls another writer or node had changed (run again, reading them). Read from any thread.
  struct path_counts {
    std::uint64_t kept = 0, read = 0, stale = 0;
  };
  path_counts paths() const;
  // Whether the last commit added events to the log.
  bool wrote_events() const { return wrote_events_; }
  // Log events deleted by retention by this writer so far.
  std::uint64_t pruned_events() const { return pruned_events_.load(std::memory_order_relaxed); }

 private:
  using packet_key = std::pair<std::string_view, std::int64_t>;
  // The columns of a calls row that packets in sequence leave as they are. A batch whose calls all keep them
  // writes only the others (update_calls).
  struct still_columns {
    call_state state = call_state::in_progress;
    std::int64_t duplicate = 0, out_of_order = 0, gaps_opened = 0, missing = 0, late = 0, lost = 0, succeeded = 0,
                 dead = 0;
    std::optional<double> ended_at;
    std::optional<std::string> end_reason;
    double state_changed_at = 0;
    static still_columns of(const call_record& rec);
    friend bool operator==(const still_columns&, const still_columns&) = default;
  };
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
  // Loads the batch's calls from the kept state when it can go in one round trip (see above); returns
  // whether it did.
  bool load_kept(const batch_plan& plan, const std::deque<write_op>& batch);
  // After COMMIT: the calls the batch locked, as committed, are kept.
  void keep_calls();
  // After a failed attempt: its calls may have changed under it.
  void forget_calls();
  // The versions the written calls' rows got (RETURNING of the calls' UPDATE).
  void read_versions(const result_set& r);
  // Notes the still columns of the calls the attempt holds that it has not noted yet (as read or kept).
  void note_still();
  // The UPDATE of the calls the batch changed (see the definition); its index in `out`, if any.
  std::optional<std::size_t> update_calls(std::vector<connection::statement>& out, double now) const;
  // After the read that follows a failed version check: the calls whose version had moved are contended.
  void find_contended();
  // Looks up the calls that claims (of jobs they may find dead) and the sweep will touch, in one round trip
  // that opens the transaction, when there are any; returns whether it did open it.
  bool find_calls(connection& c, batch_plan& plan, double now, bool sweep);
  // The sweep's queries for the round trip of find_calls: the advisory lock, then each candidate query.
  void sweep_queries(std::vector<connection::statement>& out, double now) const;
  // Keeps the candidates when the lock (the result at `at`) was taken; the candidates' results follow it.
  void collect_sweep(const std::vector<result_set>& results, std::size_t at, batch_plan& plan);
  // The last id of the log's oldest slice whose events are past the retention, once a second at most.
  void collect_prune(connection& c, double now);
  // Creates only the calls this writer has not seen committed; every call is locked in id order.
  void order_locks(batch_plan& plan) const;
  // Opens the transaction unless `begun`, creates the calls to create that do not exist, locks the calls
  // to lock and those of the jobs whose outcome changes their call (in id order) and reads them, their
  // gaps, the stored packets the batch's packets may repeat, and the rows of the jobs it names.
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
  // Appends the batch's writes to `out`, the pipeline that commits them.
  void flush(std::vector<connection::statement>& out, double now, const std::string& token);

  const pg_options& options_;
  call_ledger ledger_;
  job_ledger jobs_;
  // The calls the node's writers committed last (see above). They exist for good, so a batch that must
  // read them locks them without first trying to create them.
  kept_calls& kept_;

  // The state of the transaction being built; reset before each attempt.
  connection* conn_ = nullptr;  // the connection of the batch being applied
  call_map calls_;              // locked by this transaction
  std::unordered_map<std::string, std::int64_t> versions_;  // the version of each call it locked, as read
  std::unordered_map<std::string, std::int64_t> keys_;      // the key of each call it locked or created
  std::unordered_map<std::string, still_columns> still_;    // of each call it holds, as read or kept
  // The kept versions an attempt that failed its version check started from; kept across the retry.
  std::unordered_map<std::string, std::int64_t> suspects_;
  std::unordered_map<std::int64_t, job>
      job_rows_;                                // read (and locked) by it; node-based: pointers stay valid
  job_tally_changes tallies_;  // what its job changes add to the tallies, written with its last writes
  std::set<std::string, std::less<>> created_;  // created by it; the first packet reports it
  std::map<std::pair<std::string, std::int64_t>, std::string> existing_;  // stored before, for this batch
  std::map<packet_key, std::string_view> inserted_;  // stored by this batch
  std::vector<event_op*> event_ops_;      // the operations of the ledger's event rows, in the same order
  std::optional<std::size_t> events_at_;    // the statement of flush() that inserts them
  std::optional<std::size_t> versions_at_;  // the statement of flush() that updates calls
  struct sweep_candidates {
    std::vector<std::string> expired_gaps, timed_out, idle;
    std::optional<std::int64_t> prune_through;  // the log's events up to this id are past the retention
  } sweep_;
  std::optional<std::size_t> prune_at_;  // the statement of flush() that deletes them
  double last_prune_ = 0;
  bool wrote_events_ = false;
  std::atomic<std::uint64_t> pruned_events_{0};
  bool sweeping_ = false;
  bool jobs_queued_ = false;
  bool kept_attempt_ = false;  // this attempt took its calls from the kept state
  // Other nodes hear of new jobs and events by NOTIFY (see notice); this node's own workers and event hub
  // are told at once, in-process.
  notice jobs_notice_{"aipbx_jobs"};
  notice events_notice_{"aipbx_events"};
  std::atomic<std::uint64_t> failed_batches_{0};
  std::atomic<std::uint64_t> kept_batches_{0}, read_batches_{0}, stale_attempts_{0};
  int shard_ = 0;  // its shard of the job tallies on its connection (see connected)
};

}  // namespace aipbx::pg
