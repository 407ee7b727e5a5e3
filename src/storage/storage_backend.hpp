// storage_backend: one database that keeps the calls (call_store), the AI job queue (job_store) and the
// event log (event_log), as every backend does: jobs are created in the same transaction as the packets
// they cover, and events in the same transaction as what they tell.
// Implementations: sqlite/sqlite_call_store (embedded), postgres/pg_call_store (shared by several nodes).
#pragma once

#include "storage/call_store.hpp"
#include "storage/event_log.hpp"
#include "storage/job_store.hpp"

namespace aipbx {

class storage_backend : public call_store, public job_store, public event_log {};

}  // namespace aipbx
