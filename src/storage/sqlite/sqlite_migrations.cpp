#include "storage/sqlite/sqlite_migrations.hpp"

#include <array>
#include <string>

namespace aipbx::sqlite {
namespace {

// The seed's tables and columns (calls.id/state/last_sequence, packets.id/call_id/sequence/data/timestamp)
// are kept; everything else is added around them.
constexpr const char* v1_calls_and_packets = R"sql(
CREATE TABLE calls (
  id                   TEXT PRIMARY KEY,
  state                TEXT NOT NULL DEFAULT 'IN_PROGRESS'
                       CHECK (state IN ('IN_PROGRESS','PROCESSING_AI','COMPLETED','FAILED','ARCHIVED')),
  last_sequence        INTEGER NOT NULL DEFAULT 0,
  expected_sequence    INTEGER NOT NULL DEFAULT 1,
  packets_received     INTEGER NOT NULL DEFAULT 0,
  duplicate_packets    INTEGER NOT NULL DEFAULT 0,
  out_of_order_packets INTEGER NOT NULL DEFAULT 0,
  gaps_opened          INTEGER NOT NULL DEFAULT 0,
  missing_packets      INTEGER NOT NULL DEFAULT 0,
  first_timestamp      REAL,
  last_timestamp       REAL,
  created_at           REAL NOT NULL,
  updated_at           REAL NOT NULL,
  state_changed_at     REAL NOT NULL
);
CREATE INDEX calls_state ON calls(state, id);

CREATE TABLE packets (
  id          INTEGER PRIMARY KEY,
  call_id     TEXT NOT NULL REFERENCES calls(id),
  sequence    INTEGER NOT NULL,
  data        TEXT NOT NULL,
  timestamp   REAL NOT NULL,
  received_at REAL NOT NULL,
  UNIQUE (call_id, sequence)
);

-- The missing ranges of each call, kept in step with the writer's sequence tracker.
CREATE TABLE call_gaps (
  call_id        TEXT NOT NULL REFERENCES calls(id),
  first_sequence INTEGER NOT NULL,
  last_sequence  INTEGER NOT NULL,
  PRIMARY KEY (call_id, first_sequence)
) WITHOUT ROWID;
)sql";

constexpr std::array<migration, 1> all{{
    {1, "calls, packets and gaps", v1_calls_and_packets},
}};

}  // namespace

std::span<const migration> migrations() { return all; }

int migrate(connection& c, double now) {
  c.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)");
  int current = 0;
  {
    auto q = c.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    if (q.step()) current = static_cast<int>(q.column_int(0));
  }
  const int known = all.back().version;
  if (current > known)
    throw sqlite_error(SQLITE_ERROR, "database schema version " + std::to_string(current) +
                                         " is newer than this aipbx knows (" + std::to_string(known) + ")");
  for (const auto& m : all) {
    if (m.version <= current) continue;
    transaction tx(c);
    c.exec(m.sql);
    c.prepare("INSERT INTO schema_migrations(version, name, applied_at) VALUES (?, ?, ?)")
        .bind(1, std::int64_t{m.version})
        .bind(2, std::string_view(m.name))
        .bind(3, now)
        .run();
    tx.commit();
    current = m.version;
  }
  return current;
}

}  // namespace aipbx::sqlite
