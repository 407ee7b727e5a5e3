// sqlite_call_store: the embedded call_store (see storage/call_store.hpp for the contract).
//
// Durability: the database runs in WAL mode with synchronous=FULL, so a COMMIT returns only after the WAL
// is on stable storage. One writer thread owns the only write connection: it takes every packet queued
// since its last commit (up to `max_batch`), applies them in one transaction and commits once, then runs
// their handlers. A 202 therefore waits for one fsync shared by the whole batch (group commit).
//
// The writer keeps each active call's sequence tracker and counters in memory (a cache loaded from the
// database on first touch and dropped after any failed transaction), so a packet costs an INSERT, and the
// call's row is written once per batch, not once per packet.
//
// Reads use a small pool of read-only connections; WAL lets them run beside the writer. Every public
// member is thread-safe. The constructor throws sqlite_error when the database cannot be opened or
// migrated (a start-up failure); after that every failure is returned as an errc.
#pragma once

#include "storage/call_store.hpp"

#include <atomic>
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
}

namespace aipbx {

struct sqlite_options {
  std::string path = "aipbx.db";
  std::size_t queue_limit = 50000;  // packets waiting for the writer before ingest answers `overloaded`
  std::size_t max_batch = 4096;     // packets per transaction at most
  std::size_t cache_limit = 100000; // calls whose state the writer keeps in memory
  int busy_timeout_ms = 5000;       // how long a statement waits for a lock held by another process
  std::function<double()> clock;    // unix seconds; the system clock when empty
};

class sqlite_call_store final : public call_store {
 public:
  explicit sqlite_call_store(sqlite_options options);
  ~sqlite_call_store() override;

  void ingest(packet p, ingest_handler done) override;
  [[nodiscard]] result<call_page> list_calls(const call_query& query) override;
  [[nodiscard]] result<call_summary> get_call(std::string_view call_id) override;
  [[nodiscard]] result<packet_page> list_packets(std::string_view call_id, std::int64_t after,
                                                 std::size_t limit) override;
  [[nodiscard]] result<std::vector<seq_range>> missing_ranges(std::string_view call_id) override;
  [[nodiscard]] bool ping() override;
  writer_stats stats() const override;
  void stop() override;

  int schema_version() const { return schema_version_; }

 private:
  struct pending {
    packet p;
    ingest_handler done;
  };
  class writer;

  template <class F>
  auto with_reader(F&& f) -> decltype(f(std::declval<sqlite::connection&>()));
  void writer_loop();

  sqlite_options options_;
  int schema_version_ = 0;
  std::unique_ptr<writer> writer_;

  std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<pending> queue_;
  bool stopping_ = false;
  std::thread writer_thread_;

  std::mutex readers_mutex_;
  std::vector<std::unique_ptr<sqlite::connection>> idle_readers_;

  std::atomic<std::uint64_t> batches_{0}, packets_{0}, largest_batch_{0}, failed_batches_{0};
  std::atomic<std::size_t> queued_{0};
};

}  // namespace aipbx
