// The PostgreSQL store beyond the shared contract: several stores (nodes) on one database at once.
#include "log/log.hpp"
#include "storage/pg_test_database.hpp"
#include "storage/postgres/pg_call_store.hpp"
#include "storage/postgres/pg_conn.hpp"
#include "storage/postgres/pg_migrations.hpp"
#include "support/printers.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <memory>
#include <random>
#include <set>
#include <thread>
#include <vector>

#include <unistd.h>

namespace aipbx {
namespace {

std::string fresh(const char* name) {
  return test::pg_fresh_database(std::string("u_") + name + "_" + std::to_string(::getpid()));
}

result<ingest_outcome> ingest_sync(call_store& store, packet p) {
  std::promise<result<ingest_outcome>> promise;
  auto future = promise.get_future();
  store.ingest(std::move(p), [&promise](result<ingest_outcome> r) { promise.set_value(std::move(r)); });
  return future.get();
}

result<bool> renew_sync(job_store& store, std::int64_t job_id) {
  std::promise<result<bool>> promise;
  auto future = promise.get_future();
  store.renew(job_id, "nobody", 1, 30, [&promise](result<bool> r) { promise.set_value(std::move(r)); });
  return future.get();
}

result<call_state> end_sync(call_store& store, std::string call_id) {
  std::promise<result<call_state>> promise;
  auto future = promise.get_future();
  store.end_call(std::move(call_id), "ended by request",
                 [&promise](result<call_state> r) { promise.set_value(std::move(r)); });
  return future.get();
}

// The value of one of a store's backend_metrics (-1 when it has none of that name and path).
double metric(const call_store& store, const std::string& name, const std::string& path = "") {
  for (const auto& m : store.backend_metrics())
    if (m.name == name && (path.empty() || (!m.labels.empty() && m.labels.front().second == path))) return m.value;
  return -1;
}

// Polls `done` until it holds, for up to a minute (a loaded machine may be slow; a healthy one never waits
// that long).
template <class F>
bool eventually(F&& done) {
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  return true;
}

std::int64_t scalar(const std::string& url, const char* sql) {
  pg::connection c(url, "aipbx-tests");
  return c.exec(sql).int64(0, 0);
}

// Runs an asynchronous store call and waits for its answer.
template <class R, class Start>
R sync(Start start) {
  std::promise<R> promise;
  auto future = promise.get_future();
  start([&promise](R r) { promise.set_value(std::move(r)); });
  return future.get();
}

// The figures of count_jobs but oldest_due_at, counted over the jobs table itself.
job_counts counted(const std::string& url) {
  pg::connection c(url, "aipbx-tests");
  auto r = c.exec(
      "SELECT COUNT(*) FILTER (WHERE state = 'queued'), COUNT(*) FILTER (WHERE state = 'queued' AND attempts > 0), "
      "COUNT(*) FILTER (WHERE state = 'running'), COUNT(*) FILTER (WHERE state = 'succeeded'), "
      "COUNT(*) FILTER (WHERE state = 'dead') FROM jobs");
  job_counts out;
  out.queued = r.int64(0, 0);
  out.retrying = r.int64(0, 1);
  out.running = r.int64(0, 2);
  out.succeeded = r.int64(0, 3);
  out.dead = r.int64(0, 4);
  return out;
}

void expect_counts(const job_counts& counts, const job_counts& expected, const char* when) {
  EXPECT_EQ(counts.queued, expected.queued) << when;
  EXPECT_EQ(counts.retrying, expected.retrying) << when;
  EXPECT_EQ(counts.running, expected.running) << when;
  EXPECT_EQ(counts.succeeded, expected.succeeded) << when;
  EXPECT_EQ(counts.dead, expected.dead) << when;
}

TEST(PgCallStore, StoresStartingTogetherApplyEachMigrationOnce) {
  const std::string url = fresh("migrate");
  std::vector<std::thread> threads;
  std::atomic<int> opened{0};
  std::vector<int> versions(4);
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&, i] {
      pg_options o;
      o.url = url;
      pg_call_store s(o);
      versions[static_cast<std::size_t>(i)] = s.schema_version();
      ++opened;
    });
  for (auto& t : threads) t.join();
  EXPECT_EQ(opened.load(), 4);
  for (int v : versions) EXPECT_EQ(v, versions[0]);
  EXPECT_EQ(scalar(url, "SELECT COUNT(*) FROM schema_migrations"), versions[0]);
  EXPECT_EQ(scalar(url, "SELECT COUNT(DISTINCT version) FROM schema_migrations"), versions[0]);
}

// A database of version 10 (text call ids in packets and jobs, a row per event) upgrades in place: its
// packets, jobs and events read as before, ids included, and new rows go on after the old ids.
TEST(PgCallStore, ADatabaseOfVersion10UpgradesWithItsRows) {
  const std::string url = fresh("upgrade");
  {
    pg::connection c(url, "aipbx-tests");
    ASSERT_EQ(pg::migrate(c, 1000.0, 10), 10);
    c.exec(
        "INSERT INTO calls(id, created_at, updated_at, state_changed_at, last_sequence, expected_sequence, "
        "packets_received, next_segment, jobs_total, last_packet_at) VALUES "
        "('old-a', 1000, 1000, 1000, 2, 3, 2, 3, 2, 1000), ('old-b', 1000, 1000, 1000, 1, 2, 1, 2, 1, 1000)");
    c.exec(
        "INSERT INTO packets(call_id, sequence, data, timestamp, received_at) VALUES "
        "('old-a', 1, 'a1', 1, 1000), ('old-b', 1, 'b1', 1, 1000), ('old-a', 2, 'a2', 2, 1000)");
    c.exec(
        "INSERT INTO jobs(call_id, first_sequence, last_sequence, state, max_attempts, run_at, created_at, "
        "updated_at) VALUES ('old-a', 1, 1, 'succeeded', 5, 1000, 1000, 1000), "
        "('old-b', 1, 1, 'queued', 5, 1000, 1000, 1000), ('old-a', 2, 2, 'dead', 5, 1000, 1000, 1000)");
    // 2,500 events, the first ten pruned.
    c.exec(
        "INSERT INTO events(id, at, kind, call_id, job_id, data) SELECT i, 1000, 'segment.cut', "
        "CASE WHEN i % 2 = 0 THEN 'old-a' ELSE 'old-b' END, CASE WHEN i % 3 = 0 THEN i END, '{\"n\":' || i || '}' "
        "FROM generate_series(11, 2500) i");
    c.exec("UPDATE event_log_state SET last_id = 2500, pruned_through = 10");
  }
  pg_options o;
  o.url = url;
  o.segment_idle = 3600;
  pg_call_store store(o);
  EXPECT_EQ(store.schema_version(), pg::latest_version());

  const auto packets = store.list_packets("old-a", 0, 10);
  ASSERT_TRUE(packets.has_value());
  ASSERT_EQ(packets->packets.size(), 2u);
  EXPECT_EQ(packets->packets[0].id, 1);
  EXPECT_EQ(packets->packets[0].data, "a1");
  EXPECT_EQ(packets->packets[1].id, 3);
  EXPECT_EQ(packets->packets[1].data, "a2");
  const auto job = store.get_job(3);
  ASSERT_TRUE(job.has_value());
  EXPECT_EQ(job->call_id, "old-a");
  EXPECT_EQ(job->state, job_state::dead);
  job_query of_b;
  of_b.call_id = "old-b";
  const auto jobs_b = store.list_jobs(of_b);
  ASSERT_TRUE(jobs_b.has_value());
  ASSERT_EQ(jobs_b->jobs.size(), 1u);
  EXPECT_EQ(jobs_b->jobs[0].id, 2);
  EXPECT_EQ(jobs_b->jobs[0].state, job_state::queued);

  const auto log = store.read_log(0, std::nullopt, {}, 5000);
  ASSERT_TRUE(log.has_value());
  EXPECT_EQ(log->pruned_through, 10);
  ASSERT_EQ(log->events.size(), 2490u);
  for (std::size_t i = 0; i < log->events.size(); ++i) {
    const auto& e = log->events[i];
    const std::int64_t id = 11 + static_cast<std::int64_t>(i);
    ASSERT_EQ(e.id, id);
    EXPECT_EQ(e.call_id, id % 2 == 0 ? "old-a" : "old-b");
    EXPECT_EQ(e.job_id, id % 3 == 0 ? std::optional<std::int64_t>(id) : std::nullopt);
    EXPECT_EQ(e.data, "{\"n\":" + std::to_string(id) + "}");
  }
  event_filter of_a;
  of_a.call_id = "old-a";
  const auto log_a = store.read_log(1990, 2010, of_a, 100);
  ASSERT_TRUE(log_a.has_value());
  ASSERT_EQ(log_a->events.size(), 10u);
  EXPECT_EQ(log_a->events.front().id, 1992);
  EXPECT_EQ(log_a->scanned_to, 2010);

  // New rows: the next packet id, job id and event ids.
  ASSERT_TRUE(ingest_sync(store, packet{"old-a", 3, "a3", 3.0, std::nullopt}).has_value());
  const auto after = store.list_packets("old-a", 2, 10);
  ASSERT_TRUE(after.has_value());
  ASSERT_EQ(after->packets.size(), 1u);
  EXPECT_EQ(after->packets[0].id, 4);
  job_query of_a_jobs;
  of_a_jobs.call_id = "old-a";
  const auto jobs_a = store.list_jobs(of_a_jobs);
  ASSERT_TRUE(jobs_a.has_value());
  ASSERT_EQ(jobs_a->jobs.size(), 3u);
  EXPECT_EQ(jobs_a->jobs.back().id, 4);
  const auto tail = store.read_log(2500, std::nullopt, {}, 10);
  ASSERT_TRUE(tail.has_value());
  ASSERT_EQ(tail->events.size(), 1u);  // the segment cut of packet 3
  EXPECT_EQ(tail->events[0].id, 2501);
  EXPECT_EQ(tail->events[0].kind, event_kind::segment_cut);
}

// A database of version 13 counts its jobs once, when it is migrated: count_jobs tells them from the first,
// and goes on from there.
TEST(PgCallStore, ADatabaseOfVersion13CountsItsJobsWhenMigrated) {
  const std::string url = fresh("tally_upgrade");
  {
    pg::connection c(url, "aipbx-tests");
    ASSERT_EQ(pg::migrate(c, 1000.0, 13), 13);
    c.exec("INSERT INTO calls(id, created_at, updated_at, state_changed_at, last_sequence, expected_sequence, "
           "packets_received, next_segment, jobs_total, last_packet_at) VALUES "
           "('old', 1000, 1000, 1000, 6, 7, 6, 7, 6, 1000)");
    c.exec(
        "INSERT INTO jobs(call_key, first_sequence, last_sequence, state, attempts, max_attempts, run_at, created_at, "
        "updated_at, lease_owner, lease_expires_at) SELECT (SELECT key FROM calls WHERE id = 'old'), s, s, "
        "(ARRAY['succeeded','succeeded','queued','queued','running','dead'])[s], "
        "(ARRAY[1, 2, 0, 2, 1, 5])[s], 5, 1000, 1000, 1000, CASE WHEN s = 5 THEN 'elsewhere' END, "
        "CASE WHEN s = 5 THEN 5000 END FROM generate_series(1, 6) s");
  }
  pg_options o;
  o.url = url;
  o.segment_idle = 3600;
  o.clock = [] { return 1000.0; };  // the running job's lease (to 5000) holds
  pg_call_store store(o);
  ASSERT_EQ(store.schema_version(), pg::latest_version());
  auto counts = store.count_jobs();
  ASSERT_TRUE(counts.has_value());
  EXPECT_EQ(counts->succeeded, 2);
  EXPECT_EQ(counts->queued, 2);
  EXPECT_EQ(counts->retrying, 1);
  EXPECT_EQ(counts->running, 1);
  EXPECT_EQ(counts->dead, 1);
  ASSERT_TRUE(ingest_sync(store, packet{"old", 7, "d7", 7.0, std::nullopt}).has_value());
  auto claimed = sync<result<claim_result>>([&](auto done) { store.claim("here", 10, 30, done); });
  ASSERT_TRUE(claimed.has_value());
  EXPECT_EQ(claimed->jobs.size(), 3u);
  expect_counts(store.count_jobs().value(), counted(url), "claimed after the migration");
  EXPECT_EQ(store.count_jobs()->running, 4);
}

// A transaction that fails adds nothing to the tallies: the jobs it would have changed, and the tallies,
// stay as they were, and its write is answered with an error.
TEST(PgCallStore, ATransactionThatFailsCountsNothing) {
  const std::string url = fresh("tally_rollback");
  pg_options o;
  o.url = url;
  o.segment_idle = 3600;
  pg_call_store store(o);
  for (std::int64_t s = 1; s <= 3; ++s)
    ASSERT_TRUE(ingest_sync(store, packet{"rb", s, "d", 1.0, std::nullopt}).has_value());
  auto claimed = sync<result<claim_result>>([&](auto done) { store.claim("w", 3, 30, done); });
  ASSERT_TRUE(claimed.has_value());
  ASSERT_EQ(claimed->jobs.size(), 3u);
  {
    // A job that would succeed now fails its transaction, after the tallies were added to.
    pg::connection c(url, "aipbx-tests");
    c.exec("CREATE FUNCTION refuse() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused'; END $$");
    c.exec("CREATE TRIGGER refuse AFTER INSERT OR UPDATE ON job_tallies FOR EACH ROW EXECUTE FUNCTION refuse()");
  }
  const job& j = claimed->jobs[0];
  auto refused = sync<result<bool>>(
      [&](auto done) { store.finish(j.id, "w", j.attempts, job_succeeded{"text", "mock", 1}, done); });
  EXPECT_FALSE(refused.has_value());
  auto counts = store.count_jobs().value();
  expect_counts(counts, counted(url), "after the failed transaction");
  EXPECT_EQ(counts.running, 3);
  EXPECT_EQ(counts.succeeded, 0);
  pg::connection(url, "aipbx-tests").exec("DROP TRIGGER refuse ON job_tallies");
  auto finished = sync<result<bool>>(
      [&](auto done) { store.finish(j.id, "w", j.attempts, job_succeeded{"text", "mock", 1}, done); });
  ASSERT_TRUE(finished.has_value());
  EXPECT_TRUE(*finished);
  counts = store.count_jobs().value();
  expect_counts(counts, counted(url), "after the same write committed");
  EXPECT_EQ(counts.succeeded, 1);
}

// Two nodes of two writers each queue, claim, finish, retry, kill and replay jobs at once: count_jobs is
// what counting the table tells, and each writer added to a shard of its own.
TEST(PgCallStore, TwoNodesOfTwoWritersCountJobsExactly) {
  const std::string url = fresh("tally_nodes");
  pg_options o;
  o.url = url;
  o.writers = 2;
  o.segment_idle = 3600;
  o.max_attempts = 2;
  std::vector<std::unique_ptr<pg_call_store>> nodes;
  for (int i = 0; i < 2; ++i) nodes.push_back(std::make_unique<pg_call_store>(o));
  std::atomic<int> ingesting{4};
  std::atomic<int> failures{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < 4; ++t)
    pool.emplace_back([&, t] {
      pg_call_store& node = *nodes[static_cast<std::size_t>(t % 2)];
      for (std::int64_t s = 1; s <= 60; ++s)
        if (!ingest_sync(node, packet{"tally-" + std::to_string(t), s, "d", 1.0, std::nullopt})) ++failures;
      --ingesting;
    });
  for (int t = 0; t < 2; ++t)
    pool.emplace_back([&, t] {
      pg_call_store& node = *nodes[static_cast<std::size_t>(t)];
      const std::string owner = "worker-" + std::to_string(t);
      std::mt19937 rng(static_cast<unsigned>(t));
      // Until the packets are all in and a claim finds nothing (or for a bounded time on a slow machine).
      for (int round = 0; round < 2000; ++round) {
        const bool last = ingesting.load() == 0;
        auto claimed = sync<result<claim_result>>([&](auto done) { node.claim(owner, 8, 30, done); });
        if (!claimed) {
          ++failures;
          continue;
        }
        if (last && claimed->jobs.empty()) break;
        for (const auto& j : claimed->jobs) {
          const auto pick = rng() % 8;
          const job_outcome outcome = pick < 4   ? job_outcome{job_succeeded{"t", "mock", 1}}
                                      : pick < 6 ? job_outcome{job_retry{"busy", 0}}
                                                 : job_outcome{job_dead{"bad"}};
          auto r = sync<result<bool>>([&](auto done) { node.finish(j.id, owner, j.attempts, outcome, done); });
          if (!r || !*r) ++failures;
          if (pick == 7 && !sync<result<job>>([&](auto done) { node.replay(j.id, done); })) ++failures;
        }
      }
    });
  for (auto& t : pool) t.join();
  EXPECT_EQ(failures.load(), 0);
  const job_counts truth = counted(url);
  EXPECT_EQ(truth.queued + truth.running + truth.succeeded + truth.dead, 4 * 60);
  EXPECT_GT(truth.succeeded, 0);
  EXPECT_GT(truth.dead, 0);
  for (auto& node : nodes) expect_counts(node->count_jobs().value(), truth, "both nodes tell the same");
  // Four writers connected: four shards taken (each an advisory lock of its session), each one's row apart
  // from the migration's shard 0.
  const std::string shards =
      "SELECT COUNT(*) FROM pg_locks WHERE locktype = 'advisory' AND granted AND database = (SELECT oid FROM "
      "pg_database WHERE datname = current_database()) AND classid = " +
      std::to_string(pg::tally_space);
  EXPECT_EQ(scalar(url, shards.c_str()), 4);
  EXPECT_LE(scalar(url, "SELECT COUNT(*) FROM job_tallies WHERE shard > 0"), 4);
  EXPECT_GE(scalar(url, "SELECT COUNT(*) FROM job_tallies WHERE shard > 0"), 2);
}

// Two nodes take the packets of the same calls at once, in any order, with repeats: each call's state is
// what one writer would have made of them.
// Two nodes take packets of the same calls at once, each with `writers` writers (whose calls are apart
// within a node, but not from the other node's).
void two_nodes_sequence_the_same_calls_as_one(std::size_t writers) {
  const std::string url = fresh(("two_nodes_" + std::to_string(writers)).c_str());
  pg_options o;
  o.url = url;
  o.writers = writers;
  // Nothing is cut for being idle, however slowly a loaded machine gets through the packets.
  o.segment_idle = 3600;
  std::vector<std::unique_ptr<pg_call_store>> nodes;
  for (int i = 0; i < 2; ++i) nodes.push_back(std::make_unique<pg_call_store>(o));
  constexpr int calls = 3;
  constexpr std::int64_t per_call = 100;
  constexpr int threads = 6;
  std::atomic<int> failures{0}, duplicates{0}, created{0};
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t)
    pool.emplace_back([&, t] {
      std::mt19937 rng(static_cast<unsigned>(t));
      std::vector<std::pair<int, std::int64_t>> order;
      for (int c = 0; c < calls; ++c)
        for (std::int64_t s = 1 + t % 3; s <= per_call; s += 3) order.emplace_back(c, s);  // each twice
      std::shuffle(order.begin(), order.end(), rng);
      for (auto [c, s] : order) {
        auto r = ingest_sync(*nodes[rng() % 2], packet{"two-" + std::to_string(c), s, "d" + std::to_string(s), 1.0, std::nullopt});
        if (!r) ++failures;
        else {
          if (r->duplicate) ++duplicates;
          if (r->call_created) ++created;
        }
      }
    });
  for (auto& t : pool) t.join();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(created.load(), calls);
  EXPECT_EQ(duplicates.load(), calls * static_cast<int>(per_call));
  for (int c = 0; c < calls; ++c) {
    const std::string id = "two-" + std::to_string(c);
    auto summary = nodes[static_cast<std::size_t>(c % 2)]->get_call(id);
    ASSERT_TRUE(summary.has_value());
    EXPECT_EQ(summary->packets_received, per_call);
    EXPECT_EQ(summary->duplicate_packets, per_call);
    EXPECT_EQ(summary->last_sequence, per_call);
    EXPECT_EQ(summary->expected_sequence, per_call + 1);
    EXPECT_EQ(summary->missing_packets, 0);
    EXPECT_EQ(summary->missing_ranges, 0);
    EXPECT_EQ(summary->jobs_total, per_call);
    EXPECT_EQ(summary->next_segment, per_call + 1);
  }
  EXPECT_EQ(scalar(url, "SELECT COUNT(*) FROM packets"), calls * per_call);
  EXPECT_EQ(scalar(url, "SELECT COUNT(*) FROM jobs"), calls * per_call);
  EXPECT_EQ(scalar(url, "SELECT COUNT(*) FROM call_gaps"), 0);
}

TEST(PgCallStore, TwoNodesSequenceTheSameCallsAsOne) { two_nodes_sequence_the_same_calls_as_one(1); }
TEST(PgCallStore, TwoNodesOfTwoWritersSequenceTheSameCallsAsOne) { two_nodes_sequence_the_same_calls_as_one(2); }

// A writer keeps the state of the calls it wrote last and skips reading them again; a call another node
// wrote since is read again, and every answer is the one a single writer would give.
TEST(PgCallStore, ANodeSeesWhatAnotherNodeWroteSinceItsLastBatch) {
  const std::string url = fresh("kept_calls");
  pg_options o;
  o.url = url;
  o.sweep_interval = std::chrono::hours(1);  // a batch that sweeps reads its calls: none may, here
  pg_call_store a(o), b(o);
  const auto at = [](pg_call_store& node, std::int64_t sequence, std::string data) {
    return ingest_sync(node, packet{"kept", sequence, std::move(data), 1.0, std::nullopt});
  };
  ASSERT_TRUE(at(a, 1, "d1"));
  ASSERT_TRUE(at(a, 2, "d2"));  // from the state a kept of 1: one round trip
  EXPECT_EQ(metric(a, "aipbx_pg_batches_total", "kept"), 1);
  ASSERT_TRUE(at(b, 3, "d3"));
  const auto gap = at(b, 5, "d5");  // 4 is missing now
  ASSERT_TRUE(gap);
  EXPECT_EQ(gap->kind, arrival::gap);

  // To a's kept state, 4 is above the highest, a new packet in order; it fills the gap b opened.
  const auto fill = at(a, 4, "d4");
  ASSERT_TRUE(fill);
  EXPECT_EQ(metric(a, "aipbx_pg_kept_stale_total"), 1);
  EXPECT_EQ(fill->kind, arrival::late);
  EXPECT_EQ(fill->last_sequence, 5);
  EXPECT_EQ(fill->missing, 0);

  ASSERT_TRUE(at(b, 6, "d6"));
  const auto repeat = at(a, 6, "d6");  // stored by b: the same packet again
  ASSERT_TRUE(repeat);
  EXPECT_TRUE(repeat->duplicate);
  ASSERT_TRUE(at(b, 7, "d7"));
  const auto conflict = at(a, 7, "other");
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error(), errc::sequence_conflict);

  ASSERT_TRUE(end_sync(b, "kept").has_value());
  const auto late = at(a, 8, "d8");  // a still keeps the call in progress
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error(), errc::call_ended);

  const auto summary = a.get_call("kept");
  ASSERT_TRUE(summary.has_value());
  EXPECT_EQ(summary->packets_received, 7);
  EXPECT_EQ(summary->duplicate_packets, 1);
  EXPECT_EQ(summary->gaps_opened, 1);
  EXPECT_EQ(summary->out_of_order_packets, 1);
  EXPECT_EQ(summary->missing_packets, 0);
  EXPECT_EQ(summary->last_sequence, 7);
  EXPECT_EQ(summary->jobs_total, 7);
  EXPECT_NE(summary->state, call_state::in_progress);
  EXPECT_EQ(scalar(url, "SELECT COUNT(*) FROM packets p JOIN calls c ON c.key = p.call_key WHERE c.id = 'kept'"), 7);
  EXPECT_EQ(scalar(url, "SELECT COUNT(*) FROM jobs j JOIN calls c ON c.key = j.call_key WHERE c.id = 'kept'"), 7);
  EXPECT_EQ(scalar(url, "SELECT COUNT(*) FROM call_gaps WHERE call_id = 'kept'"), 0);
}

// The idle timeout is decided by one node: each call ends once, with one transition.
TEST(PgCallStore, AnIdleCallIsEndedOnceWhateverTheNodes) {
  const std::string url = fresh("idle_once");
  std::atomic<double> now{1000.0};
  pg_options o;
  o.url = url;
  o.idle_timeout = 5;
  o.sweep_interval = std::chrono::milliseconds(5);
  o.clock = [&now] { return now.load(); };
  std::vector<std::unique_ptr<pg_call_store>> nodes;
  for (int i = 0; i < 3; ++i) nodes.push_back(std::make_unique<pg_call_store>(o));
  for (int c = 0; c < 10; ++c)
    ASSERT_TRUE(ingest_sync(*nodes[static_cast<std::size_t>(c % 3)], packet{"idle-" + std::to_string(c), 1, "d", 1.0, std::nullopt}));
  now = 1010.0;
  ASSERT_TRUE(
      eventually([&] { return scalar(url, "SELECT COUNT(*) FROM calls WHERE state = 'IN_PROGRESS'") == 0; }));
  // A node whose sweep was under way while another ended the calls could end them again: let every
  // node's writer finish what it was doing (a write queued to it now is answered after that).
  for (auto& node : nodes) {
    const auto renewed = renew_sync(*node, -1);
    ASSERT_TRUE(renewed.has_value());
    EXPECT_FALSE(*renewed);
  }
  EXPECT_EQ(scalar(url, "SELECT COUNT(*) FROM calls WHERE state = 'IN_PROGRESS'"), 0);
  EXPECT_EQ(scalar(url, "SELECT COUNT(*) FROM call_transitions WHERE reason = 'idle timeout'"), 10);
  EXPECT_EQ(scalar(url, "SELECT COUNT(*) FROM call_transitions WHERE reason = 'idle timeout' AND to_state = "
                        "'PROCESSING_AI'"),
            10);
}

// A node hears of jobs another node queued (LISTEN/NOTIFY), without polling; not of its own twice.
TEST(PgCallStore, OtherNodesHearOfNewJobs) {
  const std::string url = fresh("notify");
  pg_options o;
  o.url = url;
  std::atomic<int> heard_a{0}, heard_b{0};  // before the stores: they outlive every call of the listeners
  pg_call_store a(o), b(o);
  // The listener threads connect and LISTEN in the background.
  ASSERT_TRUE(eventually([&] { return a.listening() && b.listening(); }));
  b.on_jobs_queued([&] { ++heard_b; });
  a.on_jobs_queued([&] { ++heard_a; });
  const int b_before = heard_b.load(), a_before = heard_a.load();
  ASSERT_TRUE(ingest_sync(a, packet{"notify-1", 1, "d", 1.0, std::nullopt}));
  EXPECT_TRUE(eventually([&] { return heard_b.load() > b_before; })) << "b heard nothing of a's job";
  // PostgreSQL delivers notifications in commit order: once a has heard of b's next job, its listener has
  // read its own notification before it (and must have let it pass).
  const int a_after_own = heard_a.load();
  ASSERT_TRUE(ingest_sync(b, packet{"notify-2", 1, "d", 1.0, std::nullopt}));
  EXPECT_TRUE(eventually([&] { return heard_a.load() > a_after_own; })) << "a heard nothing of b's job";
  EXPECT_EQ(heard_a.load(), a_before + 2)
      << "a is told of its own job once, by its own writer, not again by NOTIFY; and once of b's";
}

// A writer notifies other nodes at most every few milliseconds; jobs it queued sooner after the last NOTIFY
// are announced later, by its next transaction or, with nothing more to write, on its own.
TEST(PgCallStore, JobsQueuedRightAfterANotificationAreAnnouncedToo) {
  const std::string url = fresh("notify_owed");
  pg_options o;
  o.url = url;
  std::atomic<int> heard_b{0};  // before the stores: it outlives every call of the listener
  pg_call_store a(o), b(o);
  ASSERT_TRUE(eventually([&] { return a.listening() && b.listening(); }));
  b.on_jobs_queued([&] { ++heard_b; });
  ASSERT_TRUE(ingest_sync(a, packet{"owed-1", 1, "d", 1.0, std::nullopt}));
  ASSERT_TRUE(eventually([&] { return heard_b.load() >= 1; }));
  const int before = heard_b.load();
  ASSERT_TRUE(ingest_sync(a, packet{"owed-2", 1, "d", 1.0, std::nullopt}));
  ASSERT_TRUE(ingest_sync(a, packet{"owed-3", 1, "d", 1.0, std::nullopt}));
  EXPECT_TRUE(eventually([&] { return heard_b.load() > before; })) << "b heard nothing of a's later jobs";
}

TEST(PgCallStore, AnUnreachableServerFailsStartUp) {
  pg_options o;
  o.url = "postgresql://postgres@127.0.0.1:1/none?connect_timeout=2";
  EXPECT_THROW(pg_call_store s(o), pg::pg_error);
}

}  // namespace
}  // namespace aipbx
