// Databases for the PostgreSQL tests, on the throwaway server that scripts/pg-cluster.sh starts (the CTest
// fixture `postgres` does, and passes its directory in AIPBX_TEST_PG_DIR; AIPBX_TEST_PG_URL names a server
// directly). No server configured is a failure, never a skip.
#pragma once

#include <string>

namespace aipbx::test {

// The server's URL (its `postgres` database); throws std::runtime_error when no server is configured.
std::string pg_admin_url();
// The URL of database `name` on that server.
std::string pg_url(const std::string& name);
// Drops database `name` if it exists and creates it empty; returns its URL.
std::string pg_fresh_database(const std::string& name);
// The database kept for directory `dir`: created empty on the first call for `dir` (a marker file in `dir`
// says so), the same one on later calls (a store reopened on the same data).
std::string pg_database_for(const std::string& dir);

}  // namespace aipbx::test
