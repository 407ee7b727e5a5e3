// What the SQLite store does beyond the call_store contract: how commits reach the disk, what happens
// when they cannot, and how the WAL is kept small.
#include "log/log.hpp"
#include "storage/sqlite/buffered_wal_vfs.hpp"
#include "storage/sqlite/sqlite_call_store.hpp"
#include "storage/sqlite/sqlite_db.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <filesystem>
#include <future>
#include <iostream>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include <unistd.h>

namespace aipbx {
namespace {

namespace fs = std::filesystem;

result<ingest_outcome> ingest_sync(call_store& store, packet p) {
  auto promise = std::make_shared<std::promise<result<ingest_outcome>>>();
  auto future = promise->get_future();
  store.ingest(std::move(p), [promise](result<ingest_outcome> r) { promise->set_value(std::move(r)); });
  return future.get();
}

packet make_packet(const std::string& call_id, std::int64_t sequence, std::size_t size = 160) {
  return packet{call_id, sequence, std::string(size, static_cast<char>('a' + sequence % 26)),
                1'700'000'000.0 + static_cast<double>(sequence) * 0.02, std::nullopt};
}

class SqliteStore : public ::testing::Test {
 protected:
  void SetUp() override { log::init(log::level::off); }
  sqlite_options options() const {
    sqlite_options o;
    o.path = (dir_ / "a.db").string();
    return o;
  }
  test::temp_dir dir_{"aipbx-sqlite-store"};
};

TEST_F(SqliteStore, PipelinedSyncAnswersAfterTheFlushThatCoversIt) {
  std::atomic<int> syncs{0};
  auto o = options();
  o.sync_file = [&](int fd) {
    ++syncs;
    return ::fdatasync(fd) == 0 ? 0 : errno;
  };
  sqlite_call_store store(o);
  for (int i = 1; i <= 20; ++i) {
    const int before = syncs.load();
    ASSERT_TRUE(ingest_sync(store, make_packet("c", i)).has_value());
    EXPECT_GT(syncs.load(), before) << "answered before any flush, packet " << i;
  }
  EXPECT_EQ(store.wal_stats().syncs, static_cast<std::uint64_t>(syncs.load()));
}

// The writer updates a call's row by the rowid it read (checked against the id): rowids that moved under
// it (a VACUUM renumbers them in a table without an INTEGER PRIMARY KEY; here two calls swap theirs) are
// looked up again, and no call is written over another.
TEST_F(SqliteStore, ACallsRowFoundAgainWhenItsRowidMoved) {
  sqlite_call_store store(options());
  ASSERT_TRUE(ingest_sync(store, make_packet("c1", 1)).has_value());
  ASSERT_TRUE(ingest_sync(store, make_packet("c2", 1)).has_value());
  ASSERT_TRUE(ingest_sync(store, make_packet("c2", 2)).has_value());
  {
    sqlite::connection other(options().path, sqlite::connection::mode::read_write);
    other.exec("PRAGMA busy_timeout = 5000");
    other.exec(
        "BEGIN IMMEDIATE;"
        "CREATE TEMP TABLE before AS SELECT id, rowid AS old FROM calls WHERE id IN ('c1', 'c2');"
        "UPDATE calls SET rowid = -rowid WHERE id IN ('c1', 'c2');"
        "UPDATE calls SET rowid = (SELECT old FROM before WHERE before.id <> calls.id) WHERE id IN ('c1', 'c2');"
        "COMMIT;");
  }
  ASSERT_TRUE(ingest_sync(store, make_packet("c1", 2)).has_value());
  ASSERT_TRUE(ingest_sync(store, make_packet("c2", 3)).has_value());
  ASSERT_TRUE(ingest_sync(store, make_packet("c1", 3)).has_value());
  const auto c1 = store.get_call("c1").value();
  const auto c2 = store.get_call("c2").value();
  EXPECT_EQ(c1.packets_received, 3);
  EXPECT_EQ(c1.last_sequence, 3);
  EXPECT_EQ(c2.packets_received, 3);
  EXPECT_EQ(c2.last_sequence, 3);
}

// Streamed packets wait for the commit delay and go in one transaction; a packet that came in between is
// not committed on its own.
TEST_F(SqliteStore, StreamedPacketsWaitForTheCommitDelayAndCommitTogether) {
  auto o = options();
  o.commit_delay = std::chrono::milliseconds(600);
  sqlite_call_store store(o);
  std::vector<std::future<result<ingest_outcome>>> answers;
  for (int i = 0; i < 3; ++i) {
    auto p = make_packet("stream-" + std::to_string(i), 1);
    p.streamed = true;
    auto promise = std::make_shared<std::promise<result<ingest_outcome>>>();
    answers.push_back(promise->get_future());
    store.ingest(std::move(p), [promise](result<ingest_outcome> r) { promise->set_value(std::move(r)); });
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  for (auto& a : answers) ASSERT_TRUE(a.get());
  EXPECT_EQ(store.stats().batches, 1u);
  EXPECT_EQ(store.stats().packets, 3u);
}

// A request's packet (or any write that is not a streamed packet) ends the wait: it and the streamed
// packets held so far commit at once.
TEST_F(SqliteStore, ARequestPacketEndsTheCommitDelayOfStreamedOnes) {
  auto o = options();
  o.commit_delay = std::chrono::seconds(60);
  sqlite_call_store store(o);
  auto streamed = make_packet("stream", 1);
  streamed.streamed = true;
  auto promise = std::make_shared<std::promise<result<ingest_outcome>>>();
  auto held = promise->get_future();
  store.ingest(std::move(streamed), [promise](result<ingest_outcome> r) { promise->set_value(std::move(r)); });
  std::this_thread::sleep_for(std::chrono::milliseconds(100));
  EXPECT_EQ(held.wait_for(std::chrono::milliseconds(0)), std::future_status::timeout);
  ASSERT_TRUE(ingest_sync(store, make_packet("request", 1)));
  ASSERT_EQ(held.wait_for(std::chrono::seconds(10)), std::future_status::ready);
  EXPECT_TRUE(held.get());
  EXPECT_EQ(store.stats().batches, 1u);
}

TEST_F(SqliteStore, AFailedFlushFailsItsBatchAndEveryLaterWrite) {
  std::atomic<bool> disk_ok{true};
  auto o = options();
  o.sync_file = [&](int fd) { return disk_ok ? (::fdatasync(fd) == 0 ? 0 : errno) : EIO; };
  sqlite_call_store store(o);
  ASSERT_TRUE(ingest_sync(store, make_packet("c", 1)).has_value());
  EXPECT_TRUE(store.ping());

  disk_ok = false;
  auto r = ingest_sync(store, make_packet("c", 2));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), make_error_code(errc::store_failure));
  EXPECT_FALSE(store.ping()) << "not ready once the log could not be flushed";

  // The disk "recovers", but what the kernel dropped cannot be known: no write is accepted any more.
  disk_ok = true;
  r = ingest_sync(store, make_packet("c", 3));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), make_error_code(errc::store_failure));
  bool ended = false;
  std::promise<void> answered;
  store.end_call("c", "test", [&](result<call_state> s) {
    ended = s.has_value();
    answered.set_value();
  });
  answered.get_future().wait();
  EXPECT_FALSE(ended);
}

TEST_F(SqliteStore, CommitSyncAnswersWithoutASyncer) {
  auto o = options();
  o.sync = sqlite_sync::commit;
  o.sync_file = [](int) { return EIO; };  // never called in this mode
  sqlite_call_store store(o);
  for (int i = 1; i <= 5; ++i) ASSERT_TRUE(ingest_sync(store, make_packet("c", i)).has_value());
  EXPECT_EQ(store.wal_stats().syncs, 0u);
  EXPECT_TRUE(store.ping());
}

// Writes never pause and readers keep reading: background checkpoints alone could never catch up (the WAL
// only starts over once fully copied), so the writer finishes them past the limit and the WAL stays small.
TEST_F(SqliteStore, TheWalStaysBoundedUnderWritesThatNeverPause) {
  auto o = options();
  o.checkpoint_pages = 64;
  o.checkpoint_limit_pages = 256;
  const fs::path wal = dir_ / "a.db-wal";
  constexpr int calls = 50, per_call = 200, in_flight = 64;
  std::uintmax_t largest_wal = 0;
  {
    sqlite_call_store store(o);
    std::mutex m;
    std::condition_variable cv;
    int outstanding = 0, failures = 0, answered = 0;
    std::atomic<bool> done{false};
    std::thread reader([&] {
      while (!done) {
        (void)store.list_packets("call-7", 0, 100);
        std::error_code ec;
        const auto size = fs::file_size(wal, ec);
        if (!ec) largest_wal = std::max(largest_wal, size);
      }
    });
    for (int s = 1; s <= per_call; ++s) {
      for (int c = 0; c < calls; ++c) {
        std::unique_lock lock(m);
        cv.wait(lock, [&] { return outstanding < in_flight; });
        ++outstanding;
        lock.unlock();
        store.ingest(make_packet("call-" + std::to_string(c), s, 400), [&](result<ingest_outcome> r) {
          std::lock_guard l(m);
          --outstanding;
          ++answered;
          if (!r) ++failures;
          cv.notify_all();
        });
      }
    }
    {
      std::unique_lock lock(m);
      cv.wait(lock, [&] { return outstanding == 0; });
    }
    done = true;
    reader.join();
    EXPECT_EQ(failures, 0);
    EXPECT_EQ(answered, calls * per_call);
    const auto stats = store.wal_stats();
    EXPECT_GT(stats.checkpoints, 0u);
    // The background passes alone cannot let the WAL start over: the writer stepped in, by copying what a
    // last pass left (without waiting) or, when the reader held an old snapshot, by waiting for it.
    EXPECT_GT(stats.writer_checkpoints + stats.waiting_checkpoints, 0u);
    std::cerr << "checkpoints: " << stats.checkpoints << " by the checkpointer, " << stats.writer_checkpoints
              << " by the writer after a pass, " << stats.waiting_checkpoints << " waiting for readers\n";
    auto page = store.list_packets("call-49", 0, 1000);
    ASSERT_TRUE(page.has_value());
    EXPECT_EQ(page->packets.size(), static_cast<std::size_t>(per_call));
  }
  // Without the writer's own checkpoint the log grows to about 50 MiB in this run (the whole load). With
  // it, the log never holds more than a few times the 1 MiB limit: a batch may carry it past the limit
  // before it is copied, and a loaded machine makes batches (and so that overshoot) larger.
  EXPECT_LT(largest_wal, std::uintmax_t{12} << 20) << "largest WAL " << largest_wal;
  EXPECT_GT(largest_wal, 0u);
}

// The schema version is recorded and stays on reopen.
TEST(SqliteCallStore, SchemaVersionIsStable) {
  const test::temp_dir dir("aipbx-schema");
  sqlite_options o;
  o.path = (dir / "a.db").string();
  int v1 = 0;
  {
    sqlite_call_store s(o);
    v1 = s.schema_version();
    EXPECT_GE(v1, 1);
  }
  {
    sqlite_call_store s(o);
    EXPECT_EQ(s.schema_version(), v1);
    EXPECT_TRUE(s.ping());
  }
}

}  // namespace
}  // namespace aipbx
