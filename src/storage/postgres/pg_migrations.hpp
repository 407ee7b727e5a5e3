// The PostgreSQL schema: the same logical tables as the embedded store (calls, packets, call_gaps, jobs,
// transcript_segments, call_transitions), as numbered migrations recorded in `schema_migrations`; versions
// 1 to 7 are numbered as the embedded store's, later ones are PostgreSQL's own.
//
// Several nodes may start at once: `migrate` holds a session advisory lock while it reads the version and
// applies what is missing, each migration in its own transaction, so exactly one node applies each.
#pragma once

#include "storage/postgres/pg_conn.hpp"

namespace aipbx::pg {

// Advisory lock keys (two-int form), in a key space of aipbx's own.
constexpr int lock_space = 0x61697062;  // "aipb"
constexpr int migrate_lock = 1;
constexpr int sweep_lock = 2;
// The job tallies' shards (pg_migrations.cpp, version 14): key k is held by the session whose writer adds
// to shard k.
constexpr int tally_space = 0x61697063;  // "aipc"

// Brings the schema up to `target` (0: the newest). Returns the version now in force. Throws pg_error, or
// std::runtime_error when the database holds a newer schema than this build knows.
int migrate(connection& c, double now, int target = 0);
// The newest version this build knows.
int latest_version();

}  // namespace aipbx::pg
