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

// The persistent AI queue: one job per segment of a call's packets, and the segments' results.
constexpr const char* v2_jobs = R"sql(
ALTER TABLE calls ADD COLUMN next_segment INTEGER NOT NULL DEFAULT 1;
ALTER TABLE calls ADD COLUMN last_packet_at REAL;
-- Calls with packets not yet cut into a segment: what the idle cutter scans.
CREATE INDEX calls_unsegmented ON calls(last_packet_at)
  WHERE next_segment <= last_sequence AND state = 'IN_PROGRESS';

CREATE TABLE jobs (
  id               INTEGER PRIMARY KEY,
  call_id          TEXT NOT NULL REFERENCES calls(id),
  first_sequence   INTEGER NOT NULL,
  last_sequence    INTEGER NOT NULL,
  state            TEXT NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued','running','succeeded','dead')),
  attempts         INTEGER NOT NULL DEFAULT 0,
  max_attempts     INTEGER NOT NULL,
  run_at           REAL NOT NULL,
  lease_owner      TEXT,
  lease_expires_at REAL,
  last_error       TEXT,
  created_at       REAL NOT NULL,
  updated_at       REAL NOT NULL,
  started_at       REAL,
  finished_at      REAL,
  UNIQUE (call_id, first_sequence)
);
CREATE INDEX jobs_queued_due ON jobs(run_at) WHERE state = 'queued';
CREATE INDEX jobs_running_lease ON jobs(lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs(state, id);

CREATE TABLE transcript_segments (
  job_id         INTEGER PRIMARY KEY REFERENCES jobs(id),
  call_id        TEXT NOT NULL REFERENCES calls(id),
  first_sequence INTEGER NOT NULL,
  last_sequence  INTEGER NOT NULL,
  text           TEXT NOT NULL,
  engine         TEXT NOT NULL,
  latency_ms     REAL NOT NULL,
  created_at     REAL NOT NULL
);
CREATE INDEX transcript_call ON transcript_segments(call_id, first_sequence);
)sql";

// The call lifecycle and in-order consumption: gaps get an opening time and may be declared lost,
// packets that come after their gap was lost are flagged, calls end and keep their job counts and
// their state history.
constexpr const char* v3_lifecycle = R"sql(
ALTER TABLE call_gaps ADD COLUMN opened_at REAL NOT NULL DEFAULT 0;
ALTER TABLE call_gaps ADD COLUMN lost INTEGER NOT NULL DEFAULT 0;
CREATE INDEX call_gaps_open ON call_gaps(opened_at) WHERE lost = 0;
ALTER TABLE packets ADD COLUMN late INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN late_packets INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN lost_packets INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN ended_at REAL;
ALTER TABLE calls ADD COLUMN end_reason TEXT;
ALTER TABLE calls ADD COLUMN jobs_total INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN jobs_succeeded INTEGER NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN jobs_dead INTEGER NOT NULL DEFAULT 0;
UPDATE calls SET
  jobs_total = (SELECT COUNT(*) FROM jobs WHERE jobs.call_id = calls.id),
  jobs_succeeded = (SELECT COUNT(*) FROM jobs WHERE jobs.call_id = calls.id AND state = 'succeeded'),
  jobs_dead = (SELECT COUNT(*) FROM jobs WHERE jobs.call_id = calls.id AND state = 'dead');
-- Calls stored before last_packet_at existed: their last update is the best estimate.
UPDATE calls SET last_packet_at = updated_at WHERE last_packet_at IS NULL AND packets_received > 0;
CREATE INDEX calls_active ON calls(last_packet_at) WHERE state = 'IN_PROGRESS';

CREATE TABLE call_transitions (
  id         INTEGER PRIMARY KEY,
  call_id    TEXT NOT NULL REFERENCES calls(id),
  from_state TEXT,
  to_state   TEXT NOT NULL,
  reason     TEXT NOT NULL,
  at         REAL NOT NULL
);
CREATE INDEX call_transitions_call ON call_transitions(call_id, id);
INSERT INTO call_transitions(call_id, from_state, to_state, reason, at)
  SELECT id, NULL, 'IN_PROGRESS', 'first packet', created_at FROM calls;
)sql";

// CHECK (state IN (...)) with more than two values makes SQLite build a temporary index for the list on
// every INSERT or UPDATE that sets the state, which the packet's job insert and the per-batch call update
// paid on every write. The same constraints as OR chains are plain comparisons. SQLite cannot alter a
// constraint, so both tables are rebuilt (the documented create-copy-drop-rename procedure; migrate() runs
// it with foreign keys off) with the columns of v1-v3 in their final order.
constexpr const char* v4_plain_checks = R"sql(
CREATE TABLE calls_v4 (
  id                   TEXT PRIMARY KEY,
  state                TEXT NOT NULL DEFAULT 'IN_PROGRESS'
                       CHECK (state = 'IN_PROGRESS' OR state = 'PROCESSING_AI' OR state = 'COMPLETED'
                              OR state = 'FAILED' OR state = 'ARCHIVED'),
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
  state_changed_at     REAL NOT NULL,
  next_segment         INTEGER NOT NULL DEFAULT 1,
  last_packet_at       REAL,
  late_packets         INTEGER NOT NULL DEFAULT 0,
  lost_packets         INTEGER NOT NULL DEFAULT 0,
  ended_at             REAL,
  end_reason           TEXT,
  jobs_total           INTEGER NOT NULL DEFAULT 0,
  jobs_succeeded       INTEGER NOT NULL DEFAULT 0,
  jobs_dead            INTEGER NOT NULL DEFAULT 0
);
INSERT INTO calls_v4 SELECT id, state, last_sequence, expected_sequence, packets_received, duplicate_packets,
  out_of_order_packets, gaps_opened, missing_packets, first_timestamp, last_timestamp, created_at, updated_at,
  state_changed_at, next_segment, last_packet_at, late_packets, lost_packets, ended_at, end_reason, jobs_total,
  jobs_succeeded, jobs_dead FROM calls;
DROP TABLE calls;
ALTER TABLE calls_v4 RENAME TO calls;
CREATE INDEX calls_state ON calls(state, id);
CREATE INDEX calls_unsegmented ON calls(last_packet_at)
  WHERE next_segment <= last_sequence AND state = 'IN_PROGRESS';
CREATE INDEX calls_active ON calls(last_packet_at) WHERE state = 'IN_PROGRESS';

CREATE TABLE jobs_v4 (
  id               INTEGER PRIMARY KEY,
  call_id          TEXT NOT NULL REFERENCES calls(id),
  first_sequence   INTEGER NOT NULL,
  last_sequence    INTEGER NOT NULL,
  state            TEXT NOT NULL DEFAULT 'queued'
                   CHECK (state = 'queued' OR state = 'running' OR state = 'succeeded' OR state = 'dead'),
  attempts         INTEGER NOT NULL DEFAULT 0,
  max_attempts     INTEGER NOT NULL,
  run_at           REAL NOT NULL,
  lease_owner      TEXT,
  lease_expires_at REAL,
  last_error       TEXT,
  created_at       REAL NOT NULL,
  updated_at       REAL NOT NULL,
  started_at       REAL,
  finished_at      REAL,
  UNIQUE (call_id, first_sequence)
);
INSERT INTO jobs_v4 SELECT id, call_id, first_sequence, last_sequence, state, attempts, max_attempts, run_at,
  lease_owner, lease_expires_at, last_error, created_at, updated_at, started_at, finished_at FROM jobs;
DROP TABLE jobs;
ALTER TABLE jobs_v4 RENAME TO jobs;
CREATE INDEX jobs_queued_due ON jobs(run_at) WHERE state = 'queued';
CREATE INDEX jobs_running_lease ON jobs(lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs(state, id);
)sql";

// A call's media declaration (POST /v1/calls/{id}): NULL when it declared none.
constexpr const char* v5_media = R"sql(
ALTER TABLE calls ADD COLUMN media_format TEXT;
ALTER TABLE calls ADD COLUMN media_packet_ms INTEGER;
)sql";

// PostgreSQL's version 6 dropped the foreign keys and the packets' surrogate key index its writer made
// redundant; the embedded tables need no change, and the version is recorded so both backends number alike.
constexpr const char* v6_ingest_keys = "SELECT 1";

// Calls' events (DTMF, a stream's start and stop, marks, text) and the link between the calls that are the
// tracks of one stream. AUTOINCREMENT: an id once committed is never given again, whatever becomes of its
// row (a plain rowid may reuse the largest one), so a reader's cursor stays valid. The primary is no foreign
// key: a track may name the call of its stream's first track before that call exists.
constexpr const char* v7_events_and_tracks = R"sql(
ALTER TABLE calls ADD COLUMN track TEXT;
ALTER TABLE calls ADD COLUMN primary_id TEXT;
CREATE INDEX calls_primary ON calls(primary_id) WHERE primary_id IS NOT NULL;

CREATE TABLE call_events (
  id       INTEGER PRIMARY KEY AUTOINCREMENT,
  call_id  TEXT NOT NULL REFERENCES calls(id),
  kind     TEXT NOT NULL,
  at       REAL NOT NULL,
  sequence INTEGER,
  data     TEXT NOT NULL
);
CREATE INDEX call_events_call ON call_events(call_id, id);
)sql";

// The store-wide event log (storage/event_log.hpp). The writer numbers the events itself from
// event_log_state.last_id, which it advances in the transaction that inserts them; pruning deletes old rows
// and moves pruned_through, never the counter, so an id is given once.
constexpr const char* v8_event_log = R"sql(
CREATE TABLE events (
  id      INTEGER PRIMARY KEY,
  at      REAL NOT NULL,
  kind    TEXT NOT NULL,
  call_id TEXT NOT NULL,
  job_id  INTEGER,
  data    TEXT NOT NULL
);
CREATE TABLE event_log_state (
  one            INTEGER PRIMARY KEY CHECK (one = 1),
  last_id        INTEGER NOT NULL,
  pruned_through INTEGER NOT NULL
);
INSERT INTO event_log_state(one, last_id, pruned_through) VALUES (1, 0, 0);
)sql";

// The current hypothesis of each running attempt that told one (see job_store.hpp, partial results): one
// row per job, replaced as the attempt goes on and deleted in the transaction that ends the attempt. Read
// only joined with the job's row (running, the same attempt, an unexpired lease).
constexpr const char* v9_transcript_partials = R"sql(
CREATE TABLE transcript_partials (
  job_id     INTEGER PRIMARY KEY,
  call_id    TEXT NOT NULL,
  attempt    INTEGER NOT NULL,
  text       TEXT NOT NULL,
  heard_ms   INTEGER NOT NULL,
  updated_at REAL NOT NULL
);
CREATE INDEX transcript_partials_call ON transcript_partials(call_id);
)sql";

// A calls row is updated by every commit that has packets of the call, and last_packet_at changes with each
// packet: the two indexes on it made each of those updates delete and insert two index entries (a quarter
// of the writer's work per streamed frame). The sweeps that used them (idle calls, calls left uncut) find
// the same calls among the IN_PROGRESS ones through calls_state, as the PostgreSQL store does: a few
// hundred or thousand rows four times a second instead of two index updates per packet.
constexpr const char* v10_unindexed_activity = R"sql(
DROP INDEX calls_unsegmented;
DROP INDEX calls_active;
)sql";

// The queue's figures (GET /v1/queue, the dashboard, /metrics) counted the jobs table by state, every job
// ever run included: a read that grew with the history. The writer now adds what each transaction changed
// to one row, and the figures are that row. Filled here from the jobs there are.
constexpr const char* v11_job_tallies = R"sql(
CREATE TABLE job_tallies (
  id        INTEGER PRIMARY KEY CHECK (id = 1),
  queued    INTEGER NOT NULL,
  retrying  INTEGER NOT NULL,
  running   INTEGER NOT NULL,
  succeeded INTEGER NOT NULL,
  dead      INTEGER NOT NULL
);
INSERT INTO job_tallies(id, queued, retrying, running, succeeded, dead)
SELECT 1, COALESCE(SUM(state = 'queued'), 0), COALESCE(SUM(state = 'queued' AND attempts > 0), 0),
       COALESCE(SUM(state = 'running'), 0), COALESCE(SUM(state = 'succeeded'), 0), COALESCE(SUM(state = 'dead'), 0)
FROM jobs;
)sql";

constexpr std::array<migration, 11> all{{
    {1, "calls, packets and gaps", v1_calls_and_packets},
    {2, "jobs and transcript segments", v2_jobs},
    {3, "call lifecycle, lost ranges and late packets", v3_lifecycle},
    {4, "state checks as plain comparisons", v4_plain_checks},
    {5, "media declarations", v5_media},
    {6, "ingest without redundant keys", v6_ingest_keys},
    {7, "call events and tracks", v7_events_and_tracks},
    {8, "event log", v8_event_log},
    {9, "transcript partials", v9_transcript_partials},
    {10, "calls' activity without indexes", v10_unindexed_activity},
    {11, "job tallies", v11_job_tallies},
}};

}  // namespace

std::span<const migration> migrations() { return all; }

int migrate(connection& c, double now, int target) {
  c.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at REAL NOT NULL)");
  int current = 0;
  {
    auto q = c.prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
    if (q.step()) current = static_cast<int>(q.column_int(0));
  }
  const int known = all.back().version;
  if (target <= 0 || target > known) target = known;
  if (current > known)
    throw sqlite_error(SQLITE_ERROR, "database schema version " + std::to_string(current) +
                                         " is newer than this aipbx knows (" + std::to_string(known) + ")");
  // Rebuilding a table drops and recreates what other tables reference: foreign keys are checked once the
  // migrations are done instead (the pragma cannot change inside a transaction).
  const bool pending = current < target;
  if (pending) c.exec("PRAGMA foreign_keys = OFF");
  for (const auto& m : all) {
    if (m.version <= current || m.version > target) continue;
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
  if (pending) {
    c.exec("PRAGMA foreign_keys = ON");
    auto check = c.prepare("PRAGMA foreign_key_check");
    if (check.step())
      throw sqlite_error(SQLITE_CONSTRAINT, "migration left a row whose reference is missing, in table " +
                                                check.column_text(0));
  }
  return current;
}

}  // namespace aipbx::sqlite
