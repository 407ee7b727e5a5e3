// storage_backend: one database that keeps both the calls (call_store) and the AI job queue (job_store),
// as every backend does: jobs are created in the same transaction as the packets they cover.
// Implementations: sqlite/sqlite_call_store (embedded), postgres/pg_call_store (shared by several nodes).
#pragma once

#include "storage/call_store.hpp"
#include "storage/job_store.hpp"

namespace aipbx {

class storage_backend : public call_store, public job_store {};

}  // namespace aipbx
