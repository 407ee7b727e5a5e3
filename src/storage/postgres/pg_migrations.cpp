#include "storage/postgres/pg_migrations.hpp"

#include <array>
#include <stdexcept>
#include <string>

namespace aipbx::pg {
namespace {

struct migration {
  int version;
  const char* name;
  const char* sql;
};

// A calls row is updated by every batch that has packets of the call. Only its id and state are indexed
// (the sweeps find idle calls among the IN_PROGRESS ones through calls_state), and its pages keep room
// (fillfactor 50), so those updates are HOT: no index entry per update, no index bloat. The embedded
// store indexes last_packet_at; here that index would cost every packet's update more than it saves the
// sweep.
//
// Times are unix seconds (double precision) as in the embedded store; packet data is bytea (any bytes); call
// ids compare bytewise (COLLATE "C"), as in SQLite, whatever the database's locale.
constexpr const char* v1_calls_and_packets = R"sql(
CREATE TABLE calls (
  id                   text COLLATE "C" PRIMARY KEY,
  state                text NOT NULL DEFAULT 'IN_PROGRESS'
                       CHECK (state IN ('IN_PROGRESS','PROCESSING_AI','COMPLETED','FAILED','ARCHIVED')),
  last_sequence        bigint NOT NULL DEFAULT 0,
  expected_sequence    bigint NOT NULL DEFAULT 1,
  packets_received     bigint NOT NULL DEFAULT 0,
  duplicate_packets    bigint NOT NULL DEFAULT 0,
  out_of_order_packets bigint NOT NULL DEFAULT 0,
  gaps_opened          bigint NOT NULL DEFAULT 0,
  missing_packets      bigint NOT NULL DEFAULT 0,
  first_timestamp      double precision,
  last_timestamp       double precision,
  created_at           double precision NOT NULL,
  updated_at           double precision NOT NULL,
  state_changed_at     double precision NOT NULL
) WITH (fillfactor = 50);
CREATE INDEX calls_state ON calls(state, id);

CREATE TABLE packets (
  id          bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  call_id     text COLLATE "C" NOT NULL REFERENCES calls(id),
  sequence    bigint NOT NULL,
  data        bytea NOT NULL,
  timestamp   double precision NOT NULL,
  received_at double precision NOT NULL,
  UNIQUE (call_id, sequence)
);

CREATE TABLE call_gaps (
  call_id        text COLLATE "C" NOT NULL REFERENCES calls(id),
  first_sequence bigint NOT NULL,
  last_sequence  bigint NOT NULL,
  PRIMARY KEY (call_id, first_sequence)
);
)sql";

constexpr const char* v2_jobs = R"sql(
ALTER TABLE calls ADD COLUMN next_segment bigint NOT NULL DEFAULT 1;
ALTER TABLE calls ADD COLUMN last_packet_at double precision;

CREATE TABLE jobs (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  call_id          text COLLATE "C" NOT NULL REFERENCES calls(id),
  first_sequence   bigint NOT NULL,
  last_sequence    bigint NOT NULL,
  state            text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued','running','succeeded','dead')),
  attempts         integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL,
  run_at           double precision NOT NULL,
  lease_owner      text,
  lease_expires_at double precision,
  last_error       text,
  created_at       double precision NOT NULL,
  updated_at       double precision NOT NULL,
  started_at       double precision,
  finished_at      double precision,
  UNIQUE (call_id, first_sequence)
);
CREATE INDEX jobs_queued_due ON jobs(run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running_lease ON jobs(lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs(state, id);

CREATE TABLE transcript_segments (
  job_id         bigint PRIMARY KEY REFERENCES jobs(id),
  call_id        text COLLATE "C" NOT NULL REFERENCES calls(id),
  first_sequence bigint NOT NULL,
  last_sequence  bigint NOT NULL,
  text           text NOT NULL,
  engine         text NOT NULL,
  latency_ms     double precision NOT NULL,
  created_at     double precision NOT NULL
);
CREATE INDEX transcript_call ON transcript_segments(call_id, first_sequence);
)sql";

constexpr const char* v3_lifecycle = R"sql(
ALTER TABLE call_gaps ADD COLUMN opened_at double precision NOT NULL DEFAULT 0;
ALTER TABLE call_gaps ADD COLUMN lost boolean NOT NULL DEFAULT false;
CREATE INDEX call_gaps_open ON call_gaps(opened_at) WHERE NOT lost;
ALTER TABLE packets ADD COLUMN late boolean NOT NULL DEFAULT false;
ALTER TABLE calls ADD COLUMN late_packets bigint NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN lost_packets bigint NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN ended_at double precision;
ALTER TABLE calls ADD COLUMN end_reason text;
ALTER TABLE calls ADD COLUMN jobs_total bigint NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN jobs_succeeded bigint NOT NULL DEFAULT 0;
ALTER TABLE calls ADD COLUMN jobs_dead bigint NOT NULL DEFAULT 0;
UPDATE calls SET
  jobs_total = (SELECT COUNT(*) FROM jobs WHERE jobs.call_id = calls.id),
  jobs_succeeded = (SELECT COUNT(*) FROM jobs WHERE jobs.call_id = calls.id AND state = 'succeeded'),
  jobs_dead = (SELECT COUNT(*) FROM jobs WHERE jobs.call_id = calls.id AND state = 'dead');
UPDATE calls SET last_packet_at = updated_at WHERE last_packet_at IS NULL AND packets_received > 0;

CREATE TABLE call_transitions (
  id         bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  call_id    text COLLATE "C" NOT NULL REFERENCES calls(id),
  from_state text,
  to_state   text NOT NULL,
  reason     text NOT NULL,
  at         double precision NOT NULL
);
CREATE INDEX call_transitions_call ON call_transitions(call_id, id);
INSERT INTO call_transitions(call_id, from_state, to_state, reason, at)
  SELECT id, NULL, 'IN_PROGRESS', 'first packet', created_at FROM calls;
)sql";

// The embedded store's version 4 rebuilt its tables around a SQLite planner cost (CHECK ... IN lists); the
// PostgreSQL tables need no change, and the version is recorded so that both backends number alike.
constexpr const char* v4_plain_checks = "SELECT 1";

// A call's media declaration (POST /v1/calls/{id}): NULL when it declared none.
constexpr const char* v5_media = R"sql(
ALTER TABLE calls ADD COLUMN media_format text;
ALTER TABLE calls ADD COLUMN media_packet_ms bigint;
)sql";

// What each packet costs PostgreSQL on the ingest path. The foreign keys from packets, jobs and
// transcript_segments checked, row by row, what the writer already guarantees: it creates a call (INSERT
// ... ON CONFLICT DO NOTHING) and holds its row lock (SELECT ... FOR UPDATE) before it writes any row of the
// call, on every node; a segment is inserted from its job's row; and no call or job is ever deleted. Each
// check took a key-share lock on a row the transaction already held. The packets' surrogate key is no
// longer indexed: no query looks a packet up by id (`UNIQUE (call_id, sequence)` is the key every read
// uses), and the identity still numbers the rows.
constexpr const char* v6_ingest_keys = R"sql(
ALTER TABLE packets DROP CONSTRAINT packets_call_id_fkey;
ALTER TABLE jobs DROP CONSTRAINT jobs_call_id_fkey;
ALTER TABLE transcript_segments DROP CONSTRAINT transcript_segments_job_id_fkey;
ALTER TABLE transcript_segments DROP CONSTRAINT transcript_segments_call_id_fkey;
ALTER TABLE packets DROP CONSTRAINT packets_pkey;
)sql";

// Calls' events (DTMF, a stream's start and stop, marks, text) and the link between the calls that are the
// tracks of one stream. As for the tables of version 6, call_events has no foreign key: the writer holds
// the call's row lock when it inserts one. The index on primary_id is partial (only a stream's other tracks
// have one), and the column is set once, so the calls row's updates with each batch stay HOT.
constexpr const char* v7_events_and_tracks = R"sql(
ALTER TABLE calls ADD COLUMN track text COLLATE "C";
ALTER TABLE calls ADD COLUMN primary_id text COLLATE "C";
CREATE INDEX calls_primary ON calls(primary_id) WHERE primary_id IS NOT NULL;

CREATE TABLE call_events (
  id       bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  call_id  text COLLATE "C" NOT NULL,
  kind     text NOT NULL,
  at       double precision NOT NULL,
  sequence bigint,
  data     text NOT NULL
);
CREATE INDEX call_events_call ON call_events(call_id, id);
)sql";

// A writer keeps the state of the calls it committed last, so that a batch of their packets need not read
// them again (pg_writer.hpp). `version` counts the writes of a calls row: every writer's UPDATE of a call
// counts it up, from the version the writer read or kept, and writes -1 instead when the row holds another
// version (another node changed the call since, or another writer while the batch was built: the UPDATE
// sees the row's latest version once it has its lock). calls_version_kept then fails the transaction, and
// the writer runs the batch again, reading its calls.
constexpr const char* v8_call_versions = R"sql(
ALTER TABLE calls ADD COLUMN version bigint NOT NULL DEFAULT 0 CONSTRAINT calls_version_kept CHECK (version >= 0);
)sql";

// The store-wide event log (storage/event_log.hpp). Ids are not drawn from a sequence: several nodes commit
// at once, and a sequence's values are taken in the order transactions ask, not the order they commit, so
// a reader could see id 12 before id 11 commits and then skip it. The transaction that inserts events adds
// their number to event_log_state.last_id instead, as its last statement before COMMIT: the row lock it
// takes orders every event-writing transaction, so committed ids are always 1..last_id, without holes
// (a rolled-back transaction's increment rolls back with it). See docs/architecture.md.
constexpr const char* v9_event_log = R"sql(
CREATE TABLE events (
  id      bigint PRIMARY KEY,
  at      double precision NOT NULL,
  kind    text NOT NULL,
  call_id text COLLATE "C" NOT NULL,
  job_id  bigint,
  data    text NOT NULL
);
CREATE TABLE event_log_state (
  one            integer PRIMARY KEY CHECK (one = 1),
  last_id        bigint NOT NULL,
  pruned_through bigint NOT NULL
);
INSERT INTO event_log_state(one, last_id, pruned_through) VALUES (1, 0, 0);
)sql";

// The current hypothesis of each running attempt that told one (see job_store.hpp, partial results): one
// row per job, replaced as the attempt goes on and deleted in the transaction that ends the attempt. Read
// only joined with the job's row (running, the same attempt, an unexpired lease). No foreign key, as for the
// tables of version 6: the writer holds the job's row lock when it writes one.
constexpr const char* v10_transcript_partials = R"sql(
CREATE TABLE transcript_partials (
  job_id     bigint PRIMARY KEY,
  call_id    text COLLATE "C" NOT NULL,
  attempt    integer NOT NULL,
  text       text NOT NULL,
  heard_ms   bigint NOT NULL,
  updated_at double precision NOT NULL
);
CREATE INDEX transcript_partials_call ON transcript_partials(call_id);
)sql";

// Every packet and job row is keyed by its call: a packet by (call, sequence), a job by (call, first
// sequence), each a B-tree entry at one of as many places as there are live calls. Text call ids made
// those the costliest entries of a packet (byte comparisons all the way down, keys as long as the ids);
// a call's number is compared in one instruction and takes 8 bytes. `calls.key` numbers the calls
// (set once, so the calls row's updates stay HOT), and packets and jobs carry it instead of the id.
// The two tables are rebuilt rather than altered, so that their rows have no dropped column: their ids
// are kept, and their identities go on from the highest. (No call is ever deleted; a row whose call were
// missing would fail the migration on its NULL key rather than be left behind.)
constexpr const char* v11_call_keys = R"sql(
ALTER TABLE calls ADD COLUMN key bigint GENERATED ALWAYS AS IDENTITY;
ALTER TABLE calls ADD CONSTRAINT calls_key UNIQUE (key);

CREATE TABLE packets_keyed (
  id          bigint GENERATED ALWAYS AS IDENTITY,
  call_key    bigint NOT NULL,
  sequence    bigint NOT NULL,
  timestamp   double precision NOT NULL,
  received_at double precision NOT NULL,
  late        boolean NOT NULL DEFAULT false,
  data        bytea NOT NULL
);
INSERT INTO packets_keyed(id, call_key, sequence, timestamp, received_at, late, data) OVERRIDING SYSTEM VALUE
  SELECT p.id, c.key, p.sequence, p.timestamp, p.received_at, p.late, p.data
  FROM packets p LEFT JOIN calls c ON c.id = p.call_id ORDER BY p.id;
SELECT setval(pg_get_serial_sequence('packets_keyed', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM packets_keyed;
DROP TABLE packets;
ALTER TABLE packets_keyed RENAME TO packets;
ALTER SEQUENCE packets_keyed_id_seq RENAME TO packets_id_seq;
ALTER TABLE packets ADD CONSTRAINT packets_call_sequence UNIQUE (call_key, sequence);

CREATE TABLE jobs_keyed (
  id               bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  call_key         bigint NOT NULL,
  first_sequence   bigint NOT NULL,
  last_sequence    bigint NOT NULL,
  state            text NOT NULL DEFAULT 'queued'
                   CHECK (state IN ('queued','running','succeeded','dead')),
  attempts         integer NOT NULL DEFAULT 0,
  max_attempts     integer NOT NULL,
  run_at           double precision NOT NULL,
  created_at       double precision NOT NULL,
  updated_at       double precision NOT NULL,
  lease_owner      text,
  lease_expires_at double precision,
  last_error       text,
  started_at       double precision,
  finished_at      double precision
);
INSERT INTO jobs_keyed(id, call_key, first_sequence, last_sequence, state, attempts, max_attempts, run_at,
                       created_at, updated_at, lease_owner, lease_expires_at, last_error, started_at, finished_at)
  OVERRIDING SYSTEM VALUE
  SELECT j.id, c.key, j.first_sequence, j.last_sequence, j.state, j.attempts, j.max_attempts, j.run_at,
         j.created_at, j.updated_at, j.lease_owner, j.lease_expires_at, j.last_error, j.started_at, j.finished_at
  FROM jobs j LEFT JOIN calls c ON c.id = j.call_id ORDER BY j.id;
SELECT setval(pg_get_serial_sequence('jobs_keyed', 'id'), COALESCE(MAX(id), 0) + 1, false) FROM jobs_keyed;
DROP TABLE jobs;
ALTER TABLE jobs_keyed RENAME TO jobs;
ALTER SEQUENCE jobs_keyed_id_seq RENAME TO jobs_id_seq;
ALTER INDEX jobs_keyed_pkey RENAME TO jobs_pkey;
ALTER TABLE jobs RENAME CONSTRAINT jobs_keyed_state_check TO jobs_state_check;
ALTER TABLE jobs ADD CONSTRAINT jobs_call_segment UNIQUE (call_key, first_sequence);
CREATE INDEX jobs_queued_due ON jobs(run_at, id) WHERE state = 'queued';
CREATE INDEX jobs_running_lease ON jobs(lease_expires_at) WHERE state = 'running';
CREATE INDEX jobs_state ON jobs(state, id);
)sql";

// A new job was an entry in four indexes: its id, its call's segment, the due queue and (state, id). The last
// served only the listing of jobs in one state (GET /v1/jobs?state=...), and every job passes through three
// states. Each state is listed now by an index that costs ingest nothing more: queued jobs by the due queue
// and running ones by the lease index (both partial: they hold that state's jobs only, which are few; the
// page is sorted by id from them), dead ones by an index of their own (dead jobs are rare), succeeded ones by
// the primary key (most jobs end so).
constexpr const char* v12_job_state_indexes = R"sql(
DROP INDEX jobs_state;
CREATE INDEX jobs_dead ON jobs(id) WHERE state = 'dead';
)sql";

// The event log, a row per transaction instead of a row per event. A batch of packets logs an event or
// more per packet (a segment cut for each job it queues), and each was a row: its heap tuple, its entry in
// the primary key, its header, its WAL record. Now the transaction that numbers its events (pg_writer.cpp,
// insert_log) stores them in one row, as arrays, under the id of its last event: event `first_id + i - 1`
// is the i-th element of each array. The ids are what they were (consecutive, in commit order; see
// version 9); a reader unnests the rows it reads (pg_call_store.cpp, read_log). `at` is the latest time
// of the row's events: retention deletes whole rows, those whose events are all past it. A row stays in
// its page up to 8,160 bytes (toast_tuple_target): a batch's arrays are written as they are, neither
// compressed nor moved out of line. Existing events are regrouped, a thousand ids to a row.
constexpr const char* v13_event_rows = R"sql(
CREATE TABLE event_batches (
  last_id  bigint PRIMARY KEY,
  first_id bigint NOT NULL,
  at       double precision NOT NULL,
  ats      double precision[] NOT NULL,
  kinds    text[] NOT NULL,
  call_ids text[] NOT NULL,
  job_ids  bigint[] NOT NULL,
  data     text[] NOT NULL
) WITH (toast_tuple_target = 8160);
INSERT INTO event_batches(last_id, first_id, at, ats, kinds, call_ids, job_ids, data)
  SELECT MAX(id), MIN(id), MAX(at), array_agg(at ORDER BY id), array_agg(kind ORDER BY id),
         array_agg(call_id ORDER BY id), array_agg(job_id ORDER BY id), array_agg(data ORDER BY id)
  FROM events GROUP BY (id - 1) / 1000;
DROP TABLE events;
)sql";

// What GET /v1/queue, the dashboard and /metrics count (job_counts), without counting the jobs table, which
// keeps every job ever run. Each writer adds what its transaction changed (the jobs it inserted, and each
// job's move from the state it read to the state it wrote: job_tally_changes in job_ledger.hpp) to a row of its
// own, its shard, in the same transaction, so the tallies are exact whatever commits or rolls back; a
// reader sums the rows. A writer's shard is the lowest number whose advisory lock (tally_space) its
// session could take: two writers alive at once, on any nodes, never share a row, so they never wait on
// each other for it, and there are as many rows as writers were ever connected at once. Shard 0 holds
// what was counted here and what a node's start changes (pg_call_store.cpp: its leftover leases requeued).
// The jobs table is locked against writes while it is counted: what a transaction committed after the
// count is added by that transaction, on a node of this version. A node of an earlier version, still
// running, would change jobs without counting them: stop those first (docs/operations.md).
constexpr const char* v14_job_tallies = R"sql(
CREATE TABLE job_tallies (
  shard     integer PRIMARY KEY,
  queued    bigint NOT NULL DEFAULT 0,
  retrying  bigint NOT NULL DEFAULT 0,
  running   bigint NOT NULL DEFAULT 0,
  succeeded bigint NOT NULL DEFAULT 0,
  dead      bigint NOT NULL DEFAULT 0
);
LOCK TABLE jobs IN SHARE MODE;
INSERT INTO job_tallies(shard, queued, retrying, running, succeeded, dead)
  SELECT 0, COUNT(*) FILTER (WHERE state = 'queued'), COUNT(*) FILTER (WHERE state = 'queued' AND attempts > 0),
         COUNT(*) FILTER (WHERE state = 'running'), COUNT(*) FILTER (WHERE state = 'succeeded'),
         COUNT(*) FILTER (WHERE state = 'dead')
  FROM jobs;
)sql";

constexpr std::array<migration, 14> all{{
    {1, "calls, packets and gaps", v1_calls_and_packets},
    {2, "jobs and transcript segments", v2_jobs},
    {3, "call lifecycle, lost ranges and late packets", v3_lifecycle},
    {4, "state checks as plain comparisons", v4_plain_checks},
    {5, "media declarations", v5_media},
    {6, "ingest without redundant keys", v6_ingest_keys},
    {7, "call events and tracks", v7_events_and_tracks},
    {8, "call versions", v8_call_versions},
    {9, "event log", v9_event_log},
    {10, "transcript partials", v10_transcript_partials},
    {11, "numeric call keys for packets and jobs", v11_call_keys},
    {12, "job listings by state without a state index", v12_job_state_indexes},
    {13, "the event log in a row per transaction", v13_event_rows},
    {14, "job tallies", v14_job_tallies},
}};

}  // namespace

int latest_version() { return all.back().version; }

int migrate(connection& c, double now, int target) {
  // Session lock, held across the per-migration transactions: a node starting beside another waits here
  // and then finds the schema done.
  c.exec("SELECT pg_advisory_lock(" + std::to_string(lock_space) + ", " + std::to_string(migrate_lock) + ")",
         params{});
  struct unlock {
    connection& c;
    ~unlock() {
      try {
        if (c.ok())
          c.exec("SELECT pg_advisory_unlock(" + std::to_string(lock_space) + ", " + std::to_string(migrate_lock) +
                     ")",
                 params{});
      } catch (const pg_error&) {
      }
    }
  } guard{c};
  c.exec(
      "CREATE TABLE IF NOT EXISTS schema_migrations ("
      " version integer PRIMARY KEY, name text NOT NULL, applied_at double precision NOT NULL)");
  int current = static_cast<int>(c.exec("SELECT COALESCE(MAX(version), 0) FROM schema_migrations").int64(0, 0));
  const int known = latest_version();
  if (target <= 0 || target > known) target = known;
  if (current > known)
    throw std::runtime_error("database schema version " + std::to_string(current) +
                             " is newer than this aipbx knows (" + std::to_string(known) + ")");
  for (const auto& m : all) {
    if (m.version <= current || m.version > target) continue;
    in_transaction(c, [&] {
      c.exec(m.sql);
      c.exec("INSERT INTO schema_migrations(version, name, applied_at) VALUES ($1, $2, $3)",
             params{}.add(std::int64_t{m.version}).add(std::string_view(m.name)).add(now));
    });
    current = m.version;
  }
  return current;
}

}  // namespace aipbx::pg
