// Soak (issue 3): many calls stream packets at a steady rate into a server whose mock engine fails 30 % of
// the attempts; then every call is ended and the pipeline must settle: every job succeeded or dead (none
// left queued or running), as many jobs as packets accepted, dead jobs after exactly 5 attempts, each call
// COMPLETED or FAILED as its jobs say, every counter, result and log line adding up.
//
// It runs in the normal suite (about a minute); its CTest entry also carries the label "soak", so
// `ctest -L soak` runs it alone. AIPBX_IT_SOAK_SECONDS changes the streaming time (default 40),
// AIPBX_IT_SOAK_RATE the packets per second of each of the 50 calls (default 20).
#include <algorithm>
#include <atomic>
#include <boost/json/serialize.hpp>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <map>
#include <string>
#include <thread>
#include <vector>

#include "harness/api.hpp"
#include "harness/fixture.hpp"

namespace aipbx::itest {
namespace {

namespace json = boost::json;
using std::chrono::steady_clock;

constexpr int client_threads = 10;
constexpr int calls_per_thread = 5;

int env_int(const char* name, int fallback) {
  if (const char* v = std::getenv(name); v != nullptr && *v != '\0') {
    const int n = std::atoi(v);
    if (n > 0) return n;
  }
  return fallback;
}

// Streaming time, and packets per second per call (one packet per call per tick). The default rate, 20/s
// (1,000 packets/s in all, about 1,400 attempts/s with 30 % failures); whatever is still queued when the
// streaming stops must drain (a claim costs no more as the queue grows: AiPipelineTest.ABacklogOfQueuedJobs...).
std::chrono::seconds soak_duration() { return std::chrono::seconds(env_int("AIPBX_IT_SOAK_SECONDS", 40)); }
std::chrono::microseconds soak_tick() {
  return std::chrono::microseconds(1'000'000 / env_int("AIPBX_IT_SOAK_RATE", 20));
}

std::string data_of(const std::string& call_id, std::int64_t sequence) {
  return call_id + ":" + std::to_string(sequence);
}

// One client thread: its calls get one packet each per tick, in order, over one keep-alive connection.
struct soak_client {
  std::vector<std::string> calls;
  std::map<std::string, std::int64_t> acked;  // call -> highest acknowledged sequence (all below too)
  std::vector<std::string> unexpected;
  std::chrono::microseconds slowest{0};
  std::int64_t late_ticks = 0;

  void run(std::uint16_t port, steady_clock::time_point start, steady_clock::time_point stop,
           std::chrono::microseconds tick, std::atomic<std::int64_t>& acked_total) {
    try {
      connection c(port, 10s);
      auto next = start;
      while (steady_clock::now() < stop) {
        for (const auto& id : calls) {
          const auto seq = acked[id] + 1;
          const auto before = steady_clock::now();
          const auto r = post_packet(c, id, seq, data_of(id, seq));
          slowest = std::max(slowest, std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now() - before));
          if (r.status == 202 && !r.json().as_object().at("duplicate").as_bool()) {
            acked[id] = seq;
            acked_total.fetch_add(1);
          } else {
            unexpected.push_back(id + " #" + std::to_string(seq) + ": " + std::to_string(r.status) + " " + r.body);
            if (unexpected.size() > 20) return;
          }
        }
        next += tick;
        const auto now = steady_clock::now();
        if (now < next) {
          std::this_thread::sleep_until(next);
        } else {
          ++late_ticks;  // behind schedule: go on at once, and keep the pace from here (no catching up)
          next = now;
        }
      }
    } catch (const std::exception& e) {
      unexpected.push_back(std::string("connection failed: ") + e.what());
    }
  }
};

class SoakTest : public integration_test {};

TEST_F(SoakTest, ManyCallsAtASteadyRateWithAnUnreliableEngineEndWithEveryJobSettled) {
  allow_error_log("ai job dead");
  start_server({{"--workers", "16"},
                {"--mock-failure-rate", "0.3"},
                {"--mock-delay-ms", "0:5"},
                {"--mock-seed", "12345"},
                {"--retry-base-delay", "20ms"},
                {"--idle-timeout", "0"},
                {"--job-poll", "200ms"}});
  const auto duration = soak_duration();
  const auto tick = soak_tick();

  std::vector<soak_client> clients(client_threads);
  std::vector<std::string> all_calls;
  for (int t = 0; t < client_threads; ++t)
    for (int k = 0; k < calls_per_thread; ++k) {
      const std::string id = "soak-" + std::to_string(t) + "-" + std::to_string(k);
      clients[t].calls.push_back(id);
      clients[t].acked[id] = 0;
      all_calls.push_back(id);
    }
  std::atomic<std::int64_t> acked_total{0};
  const auto start = steady_clock::now() + 50ms;
  const auto stop = start + duration;
  std::vector<std::thread> threads;
  for (auto& client : clients)
    threads.emplace_back([&, &cl = client] { cl.run(server().port(), start, stop, tick, acked_total); });

  // Progress, every ten seconds: packets acknowledged and the queue behind them.
  for (auto report = start + 10s; report < stop; report += 10s) {
    std::this_thread::sleep_until(report);
    std::string states;
    for (const auto& row : db().rows("SELECT state, COUNT(*) FROM jobs GROUP BY state ORDER BY state"))
      states += " " + *row[0] + "=" + *row[1];
    std::error_code ec;
    const auto wal = std::filesystem::file_size(server().db_path().string() + "-wal", ec);
    std::cerr << "soak " << std::chrono::duration_cast<std::chrono::seconds>(report - start).count()
              << " s: " << acked_total.load() << " packets acknowledged; jobs" << states << "; attempts started "
              << server().records_where(msg_is("ai attempt started")).size() << "; WAL " << (ec ? 0 : wal / 1024)
              << " KiB\n";
  }
  for (auto& t : threads) t.join();
  const auto streamed = std::chrono::duration<double>(steady_clock::now() - start).count();

  std::int64_t accepted = 0;
  std::chrono::microseconds slowest{0};
  std::int64_t late_ticks = 0;
  for (int t = 0; t < client_threads; ++t) {
    for (const auto& u : clients[t].unexpected) ADD_FAILURE() << "client " << t << ": " << u;
    for (const auto& [id, n] : clients[t].acked) accepted += n;
    slowest = std::max(slowest, clients[t].slowest);
    late_ticks += clients[t].late_ticks;
  }
  const double target =
      static_cast<double>(client_threads * calls_per_thread) * 1e6 / static_cast<double>(tick.count());
  const double rate = static_cast<double>(accepted) / streamed;
  std::cerr << "soak: " << accepted << " packets in " << streamed << " s (" << rate << "/s, target " << target
            << "/s), slowest 202 " << slowest.count() / 1000 << " ms, " << late_ticks << " late ticks\n";
  // A steady stream: the server kept up with most of the schedule.
  EXPECT_GE(rate, target * 0.5) << "ingest fell far behind the schedule";

  // The end of every call cuts nothing more (one packet per job) and leaves the calls to settle.
  auto c = connect();
  for (const auto& id : all_calls) {
    const auto r = c.request("POST", "/v1/calls/" + id + "/end");
    ASSERT_EQ(r.status, 200) << id << ": " << r.body;
  }
  const auto drain_start = steady_clock::now();
  const bool drained = wait_until(
      [&] { return db().scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')") == 0; }, 60s,
      100ms);
  std::cerr << "soak: queue drained " << std::chrono::duration<double>(steady_clock::now() - drain_start).count()
            << " s after the last packet\n";
  ASSERT_TRUE(drained) << "jobs still queued or running: "
                       << db().scalar("SELECT COUNT(*) FROM jobs WHERE state IN ('queued', 'running')");
  // The connection idled past the server's keep-alive timeout while the queue drained.
  c = connect();
  // Calls settle with their last job, in the same transaction.
  ASSERT_TRUE(wait_until(
      [&] { return db().scalar("SELECT COUNT(*) FROM calls WHERE state NOT IN ('COMPLETED', 'FAILED')") == 0; },
      10s));

  const auto file = db();
  // As many jobs as packets accepted (one packet per segment), each packet in exactly one job.
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM jobs"), accepted);
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM packets"), accepted);
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM jobs WHERE first_sequence != last_sequence"), 0);
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM packets p LEFT JOIN jobs j ON j.call_id = p.call_id AND "
                        "j.first_sequence = p.sequence WHERE j.id IS NULL"),
            0)
      << "a packet without a job";
  for (const auto& [id, n] : [&] {
         std::map<std::string, std::int64_t> m;
         for (const auto& cl : clients) m.insert(cl.acked.begin(), cl.acked.end());
         return m;
       }()) {
    EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM jobs WHERE call_id = ?", {id}), n) << id;
  }
  const auto succeeded = file.scalar("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'");
  const auto dead = file.scalar("SELECT COUNT(*) FROM jobs WHERE state = 'dead'");
  EXPECT_EQ(succeeded + dead, accepted);
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM jobs WHERE state = 'dead' AND (attempts != 5 OR last_error IS NULL "
                        "OR finished_at IS NULL)"),
            0)
      << "a dead job without 5 attempts, its last error or its end";
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded' AND (attempts < 1 OR attempts > 5)"),
            0);
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM jobs WHERE lease_owner IS NOT NULL"), 0);
  // Exactly one result per succeeded job, none for a dead one.
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM transcript_segments"), succeeded);
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM transcript_segments t JOIN jobs j ON j.id = t.job_id "
                        "WHERE j.state = 'succeeded' AND t.text = t.call_id || ':' || t.first_sequence"),
            succeeded);
  // Calls agree with their jobs: FAILED exactly when one is dead, counters equal to the jobs table.
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM calls c WHERE c.state != CASE WHEN EXISTS (SELECT 1 FROM jobs j "
                        "WHERE j.call_id = c.id AND j.state = 'dead') THEN 'FAILED' ELSE 'COMPLETED' END"),
            0)
      << "a call's state disagrees with its jobs";
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM calls c WHERE jobs_total != (SELECT COUNT(*) FROM jobs j WHERE "
                        "j.call_id = c.id) OR jobs_succeeded != (SELECT COUNT(*) FROM jobs j WHERE j.call_id = c.id "
                        "AND j.state = 'succeeded') OR jobs_dead != (SELECT COUNT(*) FROM jobs j WHERE j.call_id = "
                        "c.id AND j.state = 'dead') OR lost_packets != 0 OR missing_packets != 0"),
            0)
      << "a call's counters disagree with its jobs";

  // The API says the same for each call.
  std::int64_t failed_calls = 0;
  for (const auto& id : all_calls) {
    const auto call = get_ok(c, "/v1/calls/" + id);
    const auto& jobs = call.at("ai").at("jobs").as_object();
    const auto call_dead = file.scalar("SELECT COUNT(*) FROM jobs WHERE call_id = ? AND state = 'dead'", {id});
    EXPECT_EQ(as_int(jobs.at("outstanding")), 0) << id;
    EXPECT_EQ(as_int(jobs.at("dead")), call_dead) << id;
    EXPECT_EQ(as_int(jobs.at("total")), as_int(jobs.at("succeeded")) + call_dead) << id;
    EXPECT_EQ(call.at("state"), call_dead > 0 ? "FAILED" : "COMPLETED") << id;
    EXPECT_EQ(call.at("ai").at("status"), call_dead > 0 ? "failed" : "completed") << id;
    failed_calls += call_dead > 0 ? 1 : 0;
  }

  // Every attempt, retry and outcome is in the log, and nothing lost a lease or was discarded.
  const auto attempts = file.scalar("SELECT SUM(attempts) FROM jobs");
  EXPECT_EQ(static_cast<std::int64_t>(server().records_where(msg_is("ai attempt started")).size()), attempts);
  EXPECT_EQ(static_cast<std::int64_t>(server().records_where(msg_is("ai attempt succeeded")).size()), succeeded);
  EXPECT_EQ(static_cast<std::int64_t>(server().records_where(msg_is("ai job dead")).size()), dead);
  EXPECT_EQ(static_cast<std::int64_t>(server().records_where(msg_is("ai attempt failed, retrying")).size()),
            attempts - accepted);
  EXPECT_TRUE(server().records_where(msg_is("job lease lost")).empty());
  EXPECT_TRUE(server().records_where(msg_is("job outcome discarded: lease lost")).empty());
  std::cerr << "soak: " << accepted << " jobs, " << succeeded << " succeeded, " << dead << " dead, " << attempts
            << " attempts; " << failed_calls << " of " << all_calls.size() << " calls FAILED\n";
}

}  // namespace
}  // namespace aipbx::itest
