// The SQLite schema as an ordered list of versioned migrations, applied at start-up.
//
// `schema_migrations(version, name, applied_at)` records what has been applied; each pending migration runs
// in its own transaction, so a crash mid-way leaves the database at the previous version. A database whose
// version is newer than this binary knows is refused (throws sqlite_error), rather than written by old code.
#pragma once

#include "storage/sqlite/sqlite_db.hpp"

#include <span>

namespace aipbx::sqlite {

struct migration {
  int version;
  const char* name;
  const char* sql;
};

std::span<const migration> migrations();

// Applies pending migrations up to `target` (default: all); returns the resulting schema version. Foreign
// keys are on when it returns, and checked if anything was applied.
int migrate(connection& c, double now, int target = 0);

}  // namespace aipbx::sqlite
