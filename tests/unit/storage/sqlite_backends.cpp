// The contract suites over the embedded store (see contract_backends.hpp).
#include "storage/contract_backends.hpp"
#include "storage/sqlite/sqlite_call_store.hpp"

namespace aipbx {

namespace {

std::unique_ptr<call_store> make_sqlite(const std::string& dir, std::size_t queue_limit, std::size_t cache_limit,
                                        sqlite_sync sync = sqlite_sync::pipelined) {
  sqlite_options o;
  o.path = dir + "/aipbx.db";
  o.queue_limit = queue_limit;
  o.cache_limit = cache_limit;
  o.sync = sync;
  if (sync == sqlite_sync::commit) {
    // Checkpoints every few pages, by the checkpointer and by the writer, under every contract test.
    o.checkpoint_pages = 8;
    o.checkpoint_limit_pages = 32;
  }
  return std::make_unique<sqlite_call_store>(std::move(o));
}

}  // namespace

// "sqlite_uncached" drops the writer's in-memory call state before every batch, so every packet is
// classified by a tracker rebuilt from the database: the cache must never change an answer.
// "sqlite_sync_commit" syncs in the commit instead of in the syncer, and checkpoints all the time.
std::vector<store_backend> call_store_backends() {
  return {
      store_backend{"sqlite", [](const std::string& dir) { return make_sqlite(dir, 50'000, 100'000); },
                    [](const std::string& dir, std::size_t limit) { return make_sqlite(dir, limit, 100'000); }},
      store_backend{"sqlite_uncached", [](const std::string& dir) { return make_sqlite(dir, 50'000, 0); },
                    [](const std::string& dir, std::size_t limit) { return make_sqlite(dir, limit, 0); }},
      store_backend{"sqlite_sync_commit",
                    [](const std::string& dir) { return make_sqlite(dir, 50'000, 100'000, sqlite_sync::commit); },
                    [](const std::string& dir, std::size_t limit) {
                      return make_sqlite(dir, limit, 100'000, sqlite_sync::commit);
                    }},
  };
}

std::vector<job_backend> job_store_backends() {
  return {job_backend{"sqlite", [](const std::string& dir, const job_store_settings& s) -> std::unique_ptr<storage_backend> {
                        sqlite_options o;
                        o.path = dir + "/jobs.db";
                        o.segment_packets = s.segment_packets;
                        o.segment_idle = s.segment_idle;
                        o.sweep_interval = s.sweep_interval;
                        o.max_attempts = s.max_attempts;
                        o.clock = s.clock;
                        o.event_retention = s.event_retention;
                        o.cut_outside = s.cut_outside;
                        return std::make_unique<sqlite_call_store>(std::move(o));
                      }}};
}

}  // namespace aipbx
