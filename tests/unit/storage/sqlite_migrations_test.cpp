// The SQLite migrations upgrade a database that holds data: nothing is lost, references stay whole, and
// the rebuilt tables keep their constraints.
#include "storage/sqlite/sqlite_migrations.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <string>

namespace aipbx::sqlite {
namespace {

class SqliteMigrations : public ::testing::Test {
 protected:
  std::string path() const { return (dir_ / "a.db").string(); }

  static std::int64_t count(connection& c, const char* sql) {
    auto q = c.prepare(sql);
    EXPECT_TRUE(q.step()) << sql;
    return q.column_int(0);
  }

  test::temp_dir dir_{"aipbx-migrations"};
};

TEST_F(SqliteMigrations, UpgradeFromVersion3KeepsEveryRowAndReference) {
  connection c(path(), connection::mode::read_write);
  c.exec("PRAGMA foreign_keys = ON");
  ASSERT_EQ(migrate(c, 1.0, 3), 3);
  c.exec(R"sql(
    INSERT INTO calls(id, state, last_sequence, packets_received, created_at, updated_at, state_changed_at,
                      next_segment, last_packet_at, jobs_total, jobs_succeeded, jobs_dead, ended_at, end_reason)
      VALUES ('a', 'COMPLETED', 2, 2, 1, 2, 3, 3, 2.5, 2, 1, 1, 4, 'ended by request'),
             ('b', 'IN_PROGRESS', 1, 1, 1, 1, 1, 1, 1.5, 1, 0, 0, NULL, NULL);
    INSERT INTO packets(call_id, sequence, data, timestamp, received_at) VALUES
      ('a', 1, 'x', 1, 1), ('a', 2, 'y', 2, 2), ('b', 1, 'z', 1, 1);
    INSERT INTO jobs(call_id, first_sequence, last_sequence, state, attempts, max_attempts, run_at, last_error,
                     created_at, updated_at) VALUES
      ('a', 1, 1, 'succeeded', 1, 5, 1, NULL, 1, 1), ('a', 2, 2, 'dead', 5, 5, 1, 'boom', 1, 1),
      ('b', 1, 1, 'queued', 0, 5, 1, NULL, 1, 1);
    INSERT INTO transcript_segments(job_id, call_id, first_sequence, last_sequence, text, engine, latency_ms,
                                    created_at) VALUES (1, 'a', 1, 1, 'x', 'mock', 1, 1);
    INSERT INTO call_transitions(call_id, from_state, to_state, reason, at) VALUES ('a', NULL, 'IN_PROGRESS', 'first packet', 1);
  )sql");

  ASSERT_EQ(migrate(c, 5.0), static_cast<int>(migrations().size()));

  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM calls"), 2);
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM packets"), 3);
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM jobs"), 3);
  EXPECT_EQ(count(c, "SELECT jobs_dead FROM calls WHERE id = 'a'"), 1);
  EXPECT_EQ(count(c, "SELECT next_segment FROM calls WHERE id = 'a'"), 3);
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM jobs WHERE state = 'dead' AND last_error = 'boom' AND attempts = 5"), 1);
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM calls WHERE end_reason = 'ended by request' AND state = 'COMPLETED'"), 1);
  // The partial indexes came back and are used; those on calls' activity went at version 10.
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name IN ('calls_state', "
                     "'jobs_queued_due', 'jobs_running_lease', 'jobs_state')"),
            4);
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM sqlite_schema WHERE type = 'index' AND name IN ('calls_unsegmented', "
                     "'calls_active')"),
            0);
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM jobs INDEXED BY jobs_queued_due WHERE state = 'queued' AND run_at <= 9"), 1);
  // The job tallies start from the jobs there were: one of each of queued, succeeded and dead.
  EXPECT_EQ(count(c, "SELECT queued * 10000 + retrying * 1000 + running * 100 + succeeded * 10 + dead FROM job_tallies"),
            10011);
  // References are whole and still enforced.
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM pragma_foreign_key_check"), 0);
  EXPECT_THROW(c.exec("INSERT INTO packets(call_id, sequence, data, timestamp, received_at) VALUES ('nope', 1, 'x', 1, 1)"),
               sqlite_error);
  // The state checks still refuse what is not a state.
  EXPECT_THROW(c.exec("UPDATE calls SET state = 'LOST' WHERE id = 'a'"), sqlite_error);
  EXPECT_THROW(c.exec("UPDATE jobs SET state = 'lost' WHERE id = 1"), sqlite_error);
  c.exec("UPDATE calls SET state = 'ARCHIVED' WHERE id = 'a'");
  c.exec("UPDATE jobs SET state = 'running' WHERE id = 3");
}

TEST_F(SqliteMigrations, AFreshDatabaseAndAReopenedOneAgree) {
  connection c(path(), connection::mode::read_write);
  const int v = migrate(c, 1.0);
  EXPECT_EQ(v, static_cast<int>(migrations().size()));
  EXPECT_EQ(migrate(c, 2.0), v);
  EXPECT_EQ(count(c, "SELECT COUNT(*) FROM schema_migrations"), v);
}

}  // namespace
}  // namespace aipbx::sqlite
