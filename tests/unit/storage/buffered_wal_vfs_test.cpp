// buffered_wal_vfs: SQLite through it reads back exactly what it wrote, other connections see every
// committed transaction at once, and a process that dies mid-transaction leaves the committed ones.
#include "storage/sqlite/buffered_wal_vfs.hpp"
#include "storage/sqlite/sqlite_db.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <string>

#include <sys/wait.h>
#include <unistd.h>

namespace aipbx::sqlite {
namespace {

class BufferedWalVfs : public ::testing::Test {
 protected:
  std::string path() const { return (dir_ / "a.db").string(); }

  static std::unique_ptr<connection> open_writer(const std::string& p) {
    auto c = std::make_unique<connection>(p, connection::mode::read_write, buffered_wal_vfs());
    c->exec("PRAGMA journal_mode = WAL");
    c->exec("PRAGMA synchronous = NORMAL");
    c->exec("PRAGMA wal_autocheckpoint = 0");
    c->exec("CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, k INTEGER, v TEXT)");
    c->exec("CREATE INDEX IF NOT EXISTS t_k ON t(k)");
    return c;
  }
  static void insert(connection& c, int first, int n, int size) {
    transaction tx(c);
    auto s = c.prepare("INSERT INTO t(k, v) VALUES (?, ?)");
    for (int i = first; i < first + n; ++i) {
      const std::string value(static_cast<std::size_t>(size), char('a' + i % 26));
      s.bind(1, std::int64_t{(i * 7919) % 1000}).bind(2, std::string_view(value)).run();
    }
    tx.commit();
  }
  static std::int64_t count(connection& c, const char* sql = "SELECT COUNT(*) FROM t") {
    auto q = c.prepare(sql);
    return q.step() ? q.column_int(0) : -1;
  }

  test::temp_dir dir_{"aipbx-vfs"};
};

TEST_F(BufferedWalVfs, OtherConnectionsSeeEveryCommitAtOnce) {
  auto w = open_writer(path());
  connection r(path(), connection::mode::read_only);
  const auto before = buffered_wal_stats();
  int total = 0;
  for (int round = 0; round < 200; ++round) {
    const int n = 1 + round % 37;
    insert(*w, total, n, 100 + round * 3);
    total += n;
    // The reader opens a new snapshot each time: it must find every row, readable.
    ASSERT_EQ(count(r), total) << "round " << round;
    ASSERT_EQ(count(r, "SELECT COUNT(*) FROM t WHERE length(v) >= 100"), total);
  }
  auto check = r.prepare("PRAGMA integrity_check");
  ASSERT_TRUE(check.step());
  EXPECT_EQ(check.column_text(0), "ok");
  const auto after = buffered_wal_stats();
  // Two writes per page asked for, about one per transaction done.
  EXPECT_GT(after.requested - before.requested, 4 * (after.written - before.written));
}

TEST_F(BufferedWalVfs, TransactionsLargerThanTheBufferAndRollbacks) {
  auto w = open_writer(path());
  insert(*w, 0, 3000, 1000);  // about 3 MiB of pages: the buffer fills and is written in parts
  {
    transaction tx(*w);
    auto s = w->prepare("INSERT INTO t(k, v) VALUES (1, 'never')");
    s.run();
    // rolled back by the destructor
  }
  insert(*w, 3000, 10, 10);
  connection r(path(), connection::mode::read_only);
  EXPECT_EQ(count(r), 3010);
  EXPECT_EQ(count(r, "SELECT COUNT(*) FROM t WHERE v = 'never'"), 0);
  auto check = r.prepare("PRAGMA integrity_check");
  ASSERT_TRUE(check.step());
  EXPECT_EQ(check.column_text(0), "ok");
  // A checkpoint reads the WAL back through the writer's own file.
  w->exec("PRAGMA wal_checkpoint(TRUNCATE)");
  EXPECT_EQ(count(*w), 3010);
}

TEST_F(BufferedWalVfs, AProcessKilledMidTransactionKeepsItsCommits) {
  const std::string p = path();
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    auto w = open_writer(p);
    for (int i = 0; i < 50; ++i) insert(*w, i * 20, 20, 200);
    // An open transaction with more than a buffer of pages written, then death without any cleanup.
    w->exec("BEGIN IMMEDIATE");
    auto s = w->prepare("INSERT INTO t(k, v) VALUES (?, ?)");
    for (int i = 0; i < 2000; ++i) s.bind(1, std::int64_t{i}).bind(2, std::string_view(std::string(900, 'Q'))).run();
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  auto w = open_writer(p);  // recovery reads the WAL left behind
  EXPECT_EQ(count(*w), 1000);
  EXPECT_EQ(count(*w, "SELECT COUNT(*) FROM t WHERE v GLOB 'QQQ*'"), 0);
  auto check = w->prepare("PRAGMA integrity_check");
  ASSERT_TRUE(check.step());
  EXPECT_EQ(check.column_text(0), "ok");
}

}  // namespace
}  // namespace aipbx::sqlite
