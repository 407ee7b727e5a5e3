// The contract suites over the PostgreSQL store (see contract_backends.hpp), each test on a database of its
// own on the test server.
#include "storage/contract_backends.hpp"
#include "storage/pg_test_database.hpp"
#include "storage/postgres/pg_call_store.hpp"

namespace aipbx {

namespace {

std::unique_ptr<pg_call_store> make_pg(const std::string& dir, std::size_t queue_limit, std::size_t writers) {
  pg_options o;
  o.url = test::pg_database_for(dir);
  o.queue_limit = queue_limit;
  o.writers = writers;
  return std::make_unique<pg_call_store>(std::move(o));
}

}  // namespace

// Two writer threads (`--pg-writers 2`): batches of one node commit concurrently too, each writer for its
// share of the calls. The queue-limit case holds the writer inside a handler to fill the queue, so it runs
// with one writer.
std::vector<store_backend> call_store_backends() {
  return {store_backend{"postgresql", [](const std::string& dir) { return make_pg(dir, 50'000, 2); },
                        [](const std::string& dir, std::size_t limit) { return make_pg(dir, limit, 1); }}};
}

std::vector<job_backend> job_store_backends() {
  return {job_backend{"postgresql",
                      [](const std::string& dir, const job_store_settings& s) -> std::unique_ptr<storage_backend> {
                        pg_options o;
                        o.url = test::pg_database_for(dir);
                        o.segment_packets = s.segment_packets;
                        o.segment_idle = s.segment_idle;
                        o.sweep_interval = s.sweep_interval;
                        o.max_attempts = s.max_attempts;
                        o.clock = s.clock;
                        o.event_retention = s.event_retention;
                        o.writers = s.writers;
                        o.cut_outside = s.cut_outside;
                        o.node = s.node;
                        return std::make_unique<pg_call_store>(std::move(o));
                      }}};
}

}  // namespace aipbx
