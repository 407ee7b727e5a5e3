// sqlite_call_store: the embedded store; implements call_store and job_store (see their headers for the
// contracts).
//
// Durability: the database runs in WAL mode. One writer thread owns the only write connection: it takes
// every write queued since its last commit (packets, call events, job claims, renewals, outcomes; up to
// `max_batch`), applies them in one transaction and commits once (group commit). No write is answered
// before the WAL holding it is on stable storage, in one of two ways (`sync`):
//
//  - pipelined (default): commits do not sync (synchronous=NORMAL); the writer hands each committed batch
//    to a syncer thread, which calls fdatasync on the WAL and only then runs the batch's handlers, while
//    the writer already applies the next batch. One fdatasync covers every batch committed before it
//    started, so the disk flush overlaps the next transaction instead of stalling it. Readers may see a
//    batch a moment before it is durable, never an answer before it is. The job queue's own operations
//    (claim, renew, finish, release) are answered right after the commit: losing them with a machine
//    only means a job runs again;
//  - commit: synchronous=FULL, the COMMIT itself syncs and the writer answers; simpler and slower.
//
// If fdatasync ever fails, the batches waiting for it are failed (`store_failure`; the client retries and
// the retry is deduplicated) and the store refuses every later write and reports not ready: after a
// failed flush the kernel may have dropped the data, so only a restart, whose recovery reads what really
// is in the WAL, can be trusted.
//
// The writer's WAL appends go through buffered_wal_vfs (one write(2) per transaction instead of two per
// page). Checkpoints (copying the WAL into the database file) run on a checkpointer thread with its own
// connection each time the WAL grows by `checkpoint_pages`; should a steady load keep that checkpoint from ever
// catching up (the WAL only restarts once fully copied), then once the WAL reaches `checkpoint_limit_pages`
// the writer asks for one more pass and copies what was appended during it itself, a short pause, so that
// the WAL starts over; at twice the limit it copies everything, waiting for readers, so the WAL's size stays
// bounded.
//
// The writer keeps each active call's sequence tracker and counters in memory (a cache loaded from the
// database on first touch and dropped after any failed transaction), so a packet costs an INSERT, and the
// call's row is written once per batch. It cuts segments of contiguous packets into jobs as packets
// arrive, and every `sweep_interval` cuts what is left of calls idle for `segment_idle` (a call cut from
// outside waits for `cut_segment` instead).
//
// Lifecycle: the writer ends calls (on request, or idle for `idle_timeout`), declares their open gaps
// lost, cuts their last segments and settles their state from their job counters (COMPLETED / FAILED),
// recording every transition in `call_transitions`.
//
// At start-up, jobs left `running` by a previous process on this file are put back in the queue (the
// embedded store has one node, so they can only be its own); their interrupted attempt is not counted.
//
// Reads use a pool of read-only connections; WAL lets them run beside the writer. Every public member is
// thread-safe. The constructor throws sqlite::sqlite_error when the database cannot be opened or migrated
// (a start-up failure); after that every failure is returned as an errc.
#pragma once

#include "domain/call_sequencer.hpp"
#include "domain/thread_annotations.hpp"
#include "storage/call_store.hpp"
#include "storage/commit_counters.hpp"
#include "storage/job_store.hpp"
#include "storage/storage_backend.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

struct sqlite3;

namespace aipbx {
struct write_op;
}  // namespace aipbx
namespace aipbx::sqlite {
class connection;
class writer;
}  // namespace aipbx::sqlite

namespace aipbx {

enum class sqlite_sync {
  pipelined,  // commit without syncing; a syncer thread fdatasyncs the WAL, then answers
  commit,     // synchronous=FULL: the commit syncs, then the writer answers
};

struct sqlite_options {
  std::string path = "aipbx.db";
  sqlite_sync sync = sqlite_sync::pipelined;
  int checkpoint_pages = 16000;        // WAL growth (pages) that starts a background checkpoint
  int checkpoint_limit_pages = 64000;  // WAL size at which the writer finishes a checkpoint itself
  std::size_t queue_limit = 50000;  // writes waiting for the writer before ingest answers `overloaded`
  std::size_t max_batch = 4096;     // writes per transaction at most
  // How long the writer may hold streamed packets to commit them together, while nothing else waits: a
  // live call's packet touches pages of its own (its index leaf, its row), so each commit's cost grows
  // with the calls it touches, not the packets; one commit per few milliseconds of all calls' frames
  // writes each page once for several packets. 0: commit as soon as the writer is free.
  std::chrono::microseconds commit_delay{0};
  std::size_t cache_limit = 100000; // calls whose state the writer keeps in memory
  std::int64_t writer_cache_kib = 65536;  // the writer connection's page cache (index pages of live calls)
  int busy_timeout_ms = 5000;       // how long a statement waits for a lock held by another process
  std::int64_t segment_packets = 1; // packets per AI job
  // Which calls are cut from outside (see call_ledger's ledger_options::cut_outside); unset: none.
  std::function<bool(const std::optional<media_declaration>&)> cut_outside;
  double segment_idle = 2.0;        // seconds without a packet before a call's remaining packets are cut
  reorder_window window;            // how long a gap may still be filled before it is declared lost
  double idle_timeout = 0;          // seconds without a packet before a call ends (0: never)
  std::chrono::milliseconds sweep_interval{250};
  int max_attempts = 5;             // attempts of each new job
  double event_retention = 3600;    // seconds the event log keeps an event (0: for ever)
  std::size_t prune_slice = 10000;  // events the sweep deletes at most, once a second
  std::function<double()> clock;    // unix seconds; the system clock when empty
  // How the syncer flushes the WAL's descriptor: 0 or an errno. ::fdatasync when empty; tests inject
  // failures here.
  std::function<int(int fd)> sync_file;
};

// What the embedded store measures of its write-ahead log (exported as backend_metrics).
struct sqlite_wal_stats {
  std::uint64_t syncs = 0;                // fdatasync calls on the WAL by the syncer (pipelined mode)
  std::uint64_t checkpoints = 0;          // background checkpoints by the checkpointer thread
  std::uint64_t writer_checkpoints = 0;   // by the writer, copying what a last pass left (the WAL's limit)
  std::uint64_t waiting_checkpoints = 0;  // by the writer, waiting for readers (twice the limit)
};

class sqlite_call_store final : public storage_backend {
 public:
  explicit sqlite_call_store(sqlite_options options);
  ~sqlite_call_store() override;

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
  // aipbx_log_syncs_total and aipbx_checkpoints_total{by}, from wal_stats.
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
  sqlite_wal_stats wal_stats() const;

 private:
  template <class F>
  auto with_reader(F&& f) -> decltype(f(std::declval<sqlite::connection&>()));
  // Queues a write; when refused, fails it at once with `overloaded` (if `bounded`) or `unavailable`.
  void submit(write_op op, bool bounded);
  void writer_loop();
  void syncer_loop();
  void checkpointer_loop();
  // The writer connection's WAL hook: after each commit, with the WAL's size in pages.
  static int on_wal_commit(void* self, sqlite3* db, const char* name, int pages);
  // The checkpoint that the hook found due on the writer's connection `db`, if any (writer thread).
  void writer_checkpoint(sqlite3* db);
  // Fails `batch` with store_failure and runs its handlers.
  void fail_batch(std::deque<write_op>& batch);
  void gather(std::unique_lock<std::mutex>& lock);
  // Hands a committed batch to the syncer, or, in commit mode, answers it; its events are published then.
  void after_commit(std::deque<write_op>& batch, bool jobs_queued);
  // The log's events up to `id` are durable: readers may see them, and the listener hears of it.
  void publish_events(std::int64_t id);

  sqlite_options options_;
  int schema_version_ = 0;
  std::unique_ptr<sqlite::writer> writer_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<write_op> queue_;
  // When the first write of queue_ came, and how many of queue_ may not wait for the commit delay.
  std::chrono::steady_clock::time_point first_queued_at_;
  std::size_t urgent_queued_ = 0;
  bool stopping_ = false;
  std::thread writer_thread_;

  // Committed writes waiting for the syncer's fdatasync (pipelined mode), one entry per batch, with the id
  // of the batch's last log event (a batch of the job queue's own writes alone comes for its events).
  struct unsynced_batch {
    std::deque<write_op> ops;
    std::int64_t last_event = 0;
  };
  std::mutex sync_mutex_;
  std::condition_variable sync_wake_;
  std::deque<unsynced_batch> unsynced_;
  bool writer_done_ = false;
  int wal_fd_ = -1;
  std::thread syncer_thread_;
  std::atomic<bool> broken_{false};  // an fdatasync failed: no further writes

  std::mutex checkpoint_mutex_;
  std::condition_variable checkpoint_wake_;
  bool checkpoint_wanted_ = false;
  bool restart_pass_wanted_ = false;  // the writer waits for this pass to copy the rest itself
  std::atomic<bool> restart_pass_done_{false};
  int checkpoint_base_ = 0;     // WAL size at the last checkpoint request (writer thread only)
  bool restart_asked_ = false;  // a pass for the restart is asked for (writer thread only)
  std::optional<int> writer_checkpoint_;  // the writer's own checkpoint due, by mode (writer thread only)
  std::atomic<int> wal_pages_{0};  // the WAL's size after the last commit
  std::atomic<std::uint64_t> log_pages_{0};  // pages the commits appended to it, all told
  bool checkpoint_stop_ = false;
  std::unique_ptr<sqlite::connection> checkpoint_db_;
  std::thread checkpointer_thread_;
  std::atomic<std::uint64_t> checkpoints_{0}, writer_checkpoints_{0}, waiting_checkpoints_{0}, syncs_{0};
  atomic_histogram sync_seconds_{duration_bounds()};                // each fdatasync of the WAL
  atomic_histogram checkpointer_seconds_{duration_bounds()};        // each background pass
  atomic_histogram writer_checkpoint_seconds_{duration_bounds()};   // each pass by the writer, in a commit

  aipbx::mutex readers_mutex_;
  std::vector<std::unique_ptr<sqlite::connection>> idle_readers_ GUARDED_BY(readers_mutex_);

  // The last event of the log that is durable (readers see no further), and who hears when it moves.
  std::atomic<std::int64_t> durable_event_{0};
  std::int64_t handed_event_ = 0;  // the last event id handed to the syncer (writer thread only)
  aipbx::mutex events_mutex_;
  std::function<void()> events_listener_ GUARDED_BY(events_mutex_);

  std::atomic<std::uint64_t> failed_batches_{0}, pruned_{0};
  std::atomic<std::size_t> queued_{0};
  commit_counters commits_;
};

}  // namespace aipbx
