// pg_call_store: the PostgreSQL store; implements call_store and job_store (see their headers for the
// contracts). Several `aipbx serve` nodes share one database; each node is stateless.
//
// Writes: `writers` writer threads (own connections) each take the writes queued for them since their last
// transaction (up to `max_batch`) and apply them in one transaction (group commit), set-based: one
// statement per table for the whole batch, its rows travelling as binary arrays, all in one pipeline with
// COMMIT (pg_writer.hpp). A write that names a call is queued for the writer of that call (a hash of its
// id), so a call's writes keep their order and a node's writers never lock the same call for them; job
// operations and claims go to the first writer. A write is answered after COMMIT returns
// (synchronous_commit decides durability; PostgreSQL's default flushes the WAL), never before.
//
// Concurrency across nodes: a batch locks the rows of every call it touches, in id order, and works on
// their state (sequence tracker, gaps, counters) as the database holds it under that lock: either read
// then (SELECT ... FOR UPDATE, after creating missing calls with INSERT ... ON CONFLICT DO NOTHING), or
// as the node's writers kept it from their last commit of the call, which the batch's UPDATE of its calls
// checks against each row's version (another node may have written it since; the batch then runs again,
// reading). So packets of one call arriving at several nodes at once are sequenced as if by one writer. A
// deadlock or serialization failure runs the batch again.
//
// Jobs: claims take due jobs with FOR UPDATE SKIP LOCKED under a lease (expired leases are taken over the
// same way, so a dead node's jobs go to the others once their leases expire). A writer whose transactions
// queued jobs sends NOTIFY aipbx_jobs, at most every 20 ms; a listener thread per node (LISTEN) wakes that
// node's workers, which otherwise only poll slowly. A node's own workers are woken at once. `count_jobs`
// sums the job tallies, which each writer's transactions keep on a row of the writer's own (pg_writer.hpp),
// so it costs the same however many jobs the table keeps.
//
// Events: a writer whose transactions add events to the log tells its node's event stream at once, and
// sends NOTIFY aipbx_events at most every 20 ms; the same listener thread (LISTEN) tells the node's event
// stream of the other nodes' events; it reads what every node committed from the table, in id order
// (see storage/event_log.hpp for why that order is the commit order).
//
// Sweeps (idle calls' last segments, reorder windows, idle timeouts) run every `sweep_interval` on one
// writer, inside a transaction that first takes a transaction-level advisory lock with
// pg_try_advisory_xact_lock: while one node sweeps, the others skip, so each decision is taken once; the
// sweep re-checks each candidate call under its row lock.
//
// Outages: a write failing on a lost connection is answered `unavailable` (the client retries; the retry
// is deduplicated, so an ambiguous commit loses nothing). Writers reconnect at most every
// `reconnect_interval`; in between, queued writes are refused at once with `unavailable`, so ingest never
// hangs on a dead database. Reads use a pool of `pool_size` connections, re-established when lost.
//
// At start-up (before anything else) the schema is migrated under an advisory lock, and jobs still
// `running` under this node's own lease owner (`node`, if set: a previous process of the same node) are
// put back in the queue without counting the interrupted attempt; other nodes' jobs wait for their leases.
//
// Every public member is thread-safe. The constructor throws pg::pg_error or std::runtime_error when the
// database cannot be reached or migrated (a start-up failure); after that every failure is an errc.
#pragma once

#include "domain/call_sequencer.hpp"
#include "domain/thread_annotations.hpp"
#include "storage/commit_counters.hpp"
#include "storage/storage_backend.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace aipbx {
struct write_op;
}  // namespace aipbx
namespace aipbx::pg {
class connection;
class kept_calls;
class writer;
}  // namespace aipbx::pg

namespace aipbx {

struct pg_options {
  std::string url;                  // postgresql://user:pass@host:port/dbname
  std::size_t pool_size = 4;        // read connections
  std::size_t writers = 1;          // writer threads, each with its own connection
  std::size_t queue_limit = 50000;  // writes waiting before ingest answers `overloaded`
  std::size_t max_batch = 4096;     // writes per transaction at most
  std::int64_t segment_packets = 1;
  // Which calls are cut from outside (see call_ledger's ledger_options::cut_outside); unset: none.
  std::function<bool(const std::optional<media_declaration>&)> cut_outside;
  double segment_idle = 2.0;
  reorder_window window;
  double idle_timeout = 0;
  std::chrono::milliseconds sweep_interval{250};
  std::chrono::milliseconds reconnect_interval{500};
  int max_attempts = 5;
  double event_retention = 3600;    // seconds the event log keeps an event (0: for ever)
  std::size_t prune_slice = 10000;  // events one sweep deletes at most, once a second
  std::string node;                 // this node's lease owner name; its leftover leases are requeued at start
  std::function<double()> clock;    // unix seconds; the system clock when empty
};

class pg_call_store final : public storage_backend {
 public:
  explicit pg_call_store(pg_options options);
  ~pg_call_store() override;

  // call_store
  void ingest(packet p, ingest_handler done) override;
  [[nodiscard]] result<call_page> list_calls(const call_query& query) override;
  [[nodiscard]] result<call_summary> get_call(std::string_view call_id) override;
  [[nodiscard]] result<packet_page> list_packets(std::string_view call_id, std::int64_t after,
                                                 std::size_t limit) override;
  [[nodiscard]] result<gap_ranges> gaps(std::string_view call_id) override;
  void end_call(std::string call_id, std::string reason, state_handler done) override;
  void archive_call(std::string call_id, state_handler done) override;
  using call_store::declare_media;
  void declare_media(std::string call_id, media_declaration media, std::optional<track_link> track,
                     declare_handler done) override;
  [[nodiscard]] result<std::optional<media_declaration>> call_media(std::string_view call_id) override;
  void record_event(call_event e, event_handler done) override;
  [[nodiscard]] result<event_page> list_events(std::string_view call_id, std::int64_t after,
                                               std::size_t limit) override;
  [[nodiscard]] result<call_counts> count_calls() override;
  [[nodiscard]] bool ping() override;
  writer_stats stats() const override;
  // aipbx_pg_batches_total{path="kept"|"read"} and aipbx_pg_kept_stale_total (see pg_writer.hpp).
  std::vector<backend_metric> backend_metrics() const override;
  void stop() override;

  // job_store
  void claim(std::string owner, std::size_t limit, double lease_seconds, claim_handler done) override;
  void renew(std::int64_t job_id, std::string owner, int attempt, double lease_seconds,
             bool_handler done) override;
  void finish(std::int64_t job_id, std::string owner, int attempt, job_outcome outcome,
              bool_handler done) override;
  void release(std::int64_t job_id, std::string owner, int attempt, bool_handler done) override;
  void replay(std::int64_t job_id, job_handler done) override;
  void record_partial(std::int64_t job_id, std::string owner, int attempt, std::string text, std::int64_t heard_ms,
                      bool_handler done) override;
  [[nodiscard]] result<std::vector<partial_segment>> partials(std::string_view call_id) override;
  void cut_segment(std::string call_id, seq_range range, bool_handler done) override;
  [[nodiscard]] result<std::vector<uncut_call>> uncut_calls(std::string_view after, std::size_t limit) override;
  void on_jobs_queued(std::function<void()> listener) override;
  [[nodiscard]] result<job_page> list_jobs(const job_query& query) override;
  [[nodiscard]] result<job> get_job(std::int64_t id) override;
  [[nodiscard]] result<std::vector<transcript_segment>> transcript(std::string_view call_id) override;
  [[nodiscard]] result<std::vector<stored_packet>> segment_packets(std::string_view call_id, std::int64_t first,
                                                                  std::int64_t last) override;
  [[nodiscard]] result<job_counts> count_jobs() override;
  [[nodiscard]] result<std::vector<node_presence>> nodes() override;

  // event_log
  [[nodiscard]] result<log_page> read_log(std::int64_t after, std::optional<std::int64_t> up_to,
                                          const event_filter& filter, std::size_t limit) override;
  [[nodiscard]] result<std::int64_t> log_head() override;
  void on_events(std::function<void()> listener) override;

  int schema_version() const { return schema_version_; }
  // True while the listener's connection is LISTENing for other nodes' jobs.
  bool listening() const { return listening_.load(); }

 private:
  template <class F>
  auto with_reader(F&& f) -> decltype(f(std::declval<pg::connection&>()));
  void submit(write_op op, bool bounded);
  // Puts back in the queue the jobs a previous process of this node left running (at start-up).
  void requeue_own(pg::connection& c);
  void writer_loop(std::size_t index);
  void listener_loop();
  void notify_listener() const;
  void notify_events() const;

  pg_options options_;
  std::string token_;  // this store's NOTIFY payload: its own notifications are not heard twice
  int schema_version_ = 0;

  // Which writer applies `op`: every write that names a call goes to the writer of that call (so a call's
  // writes are applied in the order they came, and two writers never lock the same call for them); job
  // operations and claims to the first.
  std::size_t writer_for(const write_op& op) const;

  // The writers' queues, each guarded by mutex_.
  struct writer_queue {
    std::condition_variable wake;
    std::deque<write_op> ops;
  };
  std::mutex mutex_;
  std::vector<std::unique_ptr<writer_queue>> queues_;
  std::size_t queued_total_ = 0;
  bool stopping_ = false;
  std::chrono::steady_clock::time_point next_sweep_;
  std::vector<std::thread> writer_threads_;
  std::unique_ptr<pg::kept_calls> kept_;
  std::vector<std::unique_ptr<pg::writer>> writers_;

  mutable aipbx::mutex listener_mutex_;
  std::function<void()> listener_ GUARDED_BY(listener_mutex_);
  std::function<void()> events_listener_ GUARDED_BY(listener_mutex_);
  std::atomic<bool> listener_stop_{false};
  std::atomic<bool> listening_{false};
  std::thread listener_thread_;

  std::mutex readers_mutex_;
  std::condition_variable reader_free_;
  std::vector<std::unique_ptr<pg::connection>> idle_readers_;
  std::size_t readers_out_ = 0;

  std::atomic<bool> reachable_{true};
  std::atomic<std::uint64_t> failed_batches_{0};
  std::atomic<std::size_t> queued_{0};
  commit_counters commits_;
};

}  // namespace aipbx
