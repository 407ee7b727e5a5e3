// sqlite_call_store: the embedded store; implements call_store and job_store (see their headers for the
// contracts).
//
// Durability: the database runs in WAL mode with synchronous=FULL, so a COMMIT returns only after the WAL
// is on stable storage. One writer thread owns the only write connection: it takes every write queued
// since its last commit (packets, job claims, renewals, outcomes; up to `max_batch`), applies them in one
// transaction and commits once, then runs their handlers. A 202 therefore waits for one fsync shared by
// the whole batch (group commit).
//
// The writer keeps each active call's sequence tracker and counters in memory (a cache loaded from the
// database on first touch and dropped after any failed transaction), so a packet costs an INSERT, and the
// call's row is written once per batch. It cuts segments of contiguous packets into jobs as packets
// arrive, and every `sweep_interval` cuts what is left of calls idle for `segment_idle`.
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
#include "storage/call_store.hpp"
#include "storage/job_store.hpp"

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

namespace aipbx::sqlite {
class connection;
class writer;
struct write_op;
}  // namespace aipbx::sqlite

namespace aipbx {

struct sqlite_options {
  std::string path = "aipbx.db";
  std::size_t queue_limit = 50000;  // writes waiting for the writer before ingest answers `overloaded`
  std::size_t max_batch = 4096;     // writes per transaction at most
  std::size_t cache_limit = 100000; // calls whose state the writer keeps in memory
  int busy_timeout_ms = 5000;       // how long a statement waits for a lock held by another process
  std::int64_t segment_packets = 1; // packets per AI job
  double segment_idle = 2.0;        // seconds without a packet before a call's remaining packets are cut
  reorder_window window;            // how long a gap may still be filled before it is declared lost
  double idle_timeout = 0;          // seconds without a packet before a call ends (0: never)
  std::chrono::milliseconds sweep_interval{250};
  int max_attempts = 5;             // attempts of each new job
  std::function<double()> clock;    // unix seconds; the system clock when empty
};

class sqlite_call_store final : public call_store, public job_store {
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
  [[nodiscard]] bool ping() override;
  writer_stats stats() const override;
  void stop() override;

  // job_store
  void claim(std::string owner, std::size_t limit, double lease_seconds, claim_handler done) override;
  void renew(std::int64_t job_id, std::string owner, int attempt, double lease_seconds,
             bool_handler done) override;
  void finish(std::int64_t job_id, std::string owner, int attempt, job_outcome outcome,
              bool_handler done) override;
  void release(std::int64_t job_id, std::string owner, int attempt, bool_handler done) override;
  void replay(std::int64_t job_id, job_handler done) override;
  void on_jobs_queued(std::function<void()> listener) override;
  [[nodiscard]] result<job_page> list_jobs(const job_query& query) override;
  [[nodiscard]] result<job> get_job(std::int64_t id) override;
  [[nodiscard]] result<std::vector<transcript_segment>> transcript(std::string_view call_id) override;
  [[nodiscard]] result<std::vector<stored_packet>> segment_packets(std::string_view call_id, std::int64_t first,
                                                                  std::int64_t last) override;
  [[nodiscard]] result<job_counts> count_jobs() override;

  int schema_version() const { return schema_version_; }

 private:
  template <class F>
  auto with_reader(F&& f) -> decltype(f(std::declval<sqlite::connection&>()));
  // Queues a write; when refused, fails it at once with `overloaded` (if `bounded`) or `unavailable`.
  void submit(sqlite::write_op op, bool bounded);
  void writer_loop();

  sqlite_options options_;
  int schema_version_ = 0;
  std::unique_ptr<sqlite::writer> writer_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<sqlite::write_op> queue_;
  bool stopping_ = false;
  std::thread writer_thread_;

  std::mutex readers_mutex_;
  std::vector<std::unique_ptr<sqlite::connection>> idle_readers_;

  std::atomic<std::uint64_t> batches_{0}, packets_{0}, largest_batch_{0}, failed_batches_{0};
  std::atomic<std::size_t> queued_{0};
};

}  // namespace aipbx
