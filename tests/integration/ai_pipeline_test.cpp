// The durable AI pipeline through the real binary (issue 3): every accepted packet becomes a job that the
// workers run against the mock engine; failed attempts are retried with exponential backoff until the job
// is dead; dead jobs are replayed by the API; a slow engine never slows ingest; a SIGKILL with jobs in
// flight loses no job and duplicates no result. Checked over HTTP, in the log and in the SQLite file.
#include <algorithm>
#include <atomic>
#include <boost/json/serialize.hpp>
#include <csignal>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "harness/api.hpp"
#include "harness/fixture.hpp"

namespace aipbx::itest {
namespace {

namespace json = boost::json;
using std::chrono::steady_clock;

std::string data_of(const std::string& call_id, std::int64_t sequence) {
  return call_id + "-w" + std::to_string(sequence);
}

std::vector<std::string> data_range(const std::string& call_id, std::int64_t first, std::int64_t last) {
  std::vector<std::string> out;
  for (auto s = first; s <= last; ++s) out.push_back(data_of(call_id, s));
  return out;
}

std::int64_t wall_ms_now() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

class AiPipelineTest : public integration_test {
 protected:
  void post_in_order(connection& c, const std::string& call_id, std::int64_t first, std::int64_t last) {
    for (auto s = first; s <= last; ++s) {
      const auto r = post_packet(c, call_id, s, data_of(call_id, s));
      ASSERT_EQ(r.status, 202) << call_id << " #" << s << ": " << r.body;
    }
  }

  // Waits until the jobs of GET /v1/jobs?{query} number `total` and are all settled.
  ::testing::AssertionResult wait_settled(connection& c, const std::string& query, std::int64_t total,
                                          std::chrono::milliseconds timeout) {
    job_tally t;
    const bool ok = wait_until(
        [&] {
          t = tally(all_jobs(c, query));
          return t.total() == total && t.settled() == total;
        },
        timeout, 25ms);
    if (ok) return ::testing::AssertionSuccess();
    return ::testing::AssertionFailure() << "jobs of '" << query << "' after " << timeout.count()
                                         << " ms: queued " << t.queued << ", running " << t.running
                                         << ", succeeded " << t.succeeded << ", dead " << t.dead << "; expected "
                                         << total << " settled";
  }

  std::vector<json::object> records_of_job(const std::string& msg, std::int64_t job_id) {
    return server().records_of_all_runs_where([&](const json::object& r) {
      return string_field(r, "msg") == msg && int_field(r, "job_id") == job_id;
    });
  }
};

TEST_F(AiPipelineTest, FailureRateZeroEveryJobSucceedsAndTheTranscriptIsComplete) {
  start_server({{"--workers", "4"}, {"--mock-failure-rate", "0"}, {"--mock-delay-ms", "0:5"}});
  auto c = connect();
  const std::vector<std::string> calls{"ok-a", "ok-b", "ok-c"};
  constexpr std::int64_t n = 30;
  // Round-robin over the calls, as a gateway interleaves its streams.
  for (std::int64_t s = 1; s <= n; ++s)
    for (const auto& id : calls) {
      const auto r = post_packet(c, id, s, data_of(id, s));
      ASSERT_EQ(r.status, 202) << r.body;
      EXPECT_EQ(body_object(r).at("status"), "stored");
    }
  ASSERT_TRUE(wait_settled(c, "", n * static_cast<std::int64_t>(calls.size()), 60s));

  for (const auto& id : calls) {
    SCOPED_TRACE(id);
    auto jobs = all_jobs(c, "call_id=" + id);
    ASSERT_EQ(jobs.size(), static_cast<std::size_t>(n));
    // One packet per job (the default segment), created in sequence order.
    for (std::size_t i = 0; i < jobs.size(); ++i) {
      const auto& j = jobs[i];
      const auto seq = static_cast<std::int64_t>(i) + 1;
      EXPECT_EQ(j.at("call_id"), id.c_str());
      EXPECT_EQ(as_int(j.at("first_sequence")), seq);
      EXPECT_EQ(as_int(j.at("last_sequence")), seq);
      EXPECT_EQ(j.at("state"), "succeeded");
      EXPECT_EQ(as_int(j.at("attempts")), 1);
      EXPECT_EQ(as_int(j.at("max_attempts")), 5);
      EXPECT_TRUE(j.at("last_error").is_null()) << json::serialize(j);
      EXPECT_TRUE(j.at("lease_owner").is_null()) << json::serialize(j);
      ASSERT_FALSE(j.at("started_at").is_null());
      ASSERT_FALSE(j.at("finished_at").is_null());
      EXPECT_LE(as_double(j.at("created_at")), as_double(j.at("started_at")));
      EXPECT_LE(as_double(j.at("started_at")), as_double(j.at("finished_at")));
    }
    const auto transcript = get_ok(c, "/v1/calls/" + id + "/transcript");
    EXPECT_EQ(transcript.at("text"), joined(data_range(id, 1, n)).c_str());
    EXPECT_EQ(transcript.at("ai_status"), "completed");
    const auto& segments = transcript.at("segments").as_array();
    ASSERT_EQ(segments.size(), static_cast<std::size_t>(n));
    for (std::size_t i = 0; i < segments.size(); ++i) {
      const auto& seg = segments[i].as_object();
      const auto seq = static_cast<std::int64_t>(i) + 1;
      EXPECT_EQ(as_int(seg.at("first_sequence")), seq);
      EXPECT_EQ(as_int(seg.at("last_sequence")), seq);
      EXPECT_EQ(seg.at("text"), data_of(id, seq).c_str());
      EXPECT_EQ(seg.at("engine"), "mock");
      EXPECT_EQ(as_int(seg.at("job_id")), as_int(jobs[i].at("id")));
    }
    const auto call = get_ok(c, "/v1/calls/" + id);
    EXPECT_EQ(call.at("state"), "IN_PROGRESS") << "no end was asked for";
    const auto& ai = call.at("ai").as_object();
    EXPECT_EQ(ai.at("status"), "completed");
    EXPECT_EQ(as_int(ai.at("next_segment")), n + 1);
    const auto& counts = ai.at("jobs").as_object();
    EXPECT_EQ(as_int(counts.at("total")), n);
    EXPECT_EQ(as_int(counts.at("succeeded")), n);
    EXPECT_EQ(as_int(counts.at("outstanding")), 0);
    EXPECT_EQ(as_int(counts.at("dead")), 0);
  }

  const auto file = db();
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM transcript_segments"), n * 3);
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded' AND attempts = 1"), n * 3);
  EXPECT_TRUE(file.rows("SELECT call_id, first_sequence FROM transcript_segments GROUP BY call_id, first_sequence "
                        "HAVING COUNT(*) > 1")
                  .empty());
  // Every success is logged once, with its latency; nothing failed.
  const auto successes = server().records_where(msg_is("ai attempt succeeded"));
  EXPECT_EQ(successes.size(), static_cast<std::size_t>(n * 3));
  std::set<std::int64_t> ids;
  for (const auto& r : successes) {
    ASSERT_TRUE(r.contains("latency_ms")) << json::serialize(r);
    EXPECT_GE(as_double(r.at("latency_ms")), 0.0);
    ids.insert(int_field(r, "job_id").value_or(-1));
  }
  EXPECT_EQ(ids.size(), static_cast<std::size_t>(n * 3));
  EXPECT_TRUE(server().records_where(msg_is("ai attempt failed, retrying")).empty());
}

TEST_F(AiPipelineTest, SegmentsOfThreePacketsAndThePartialLastOneIsCutWhenTheCallEnds) {
  // A long segment idle time: only the end cuts the last, partial segment.
  start_server({{"--segment-packets", "3"}, {"--segment-idle", "60s"}, {"--mock-delay-ms", "0:2"}});
  auto c = connect();
  const std::string id = "seg3";
  post_in_order(c, id, 1, 10);
  ASSERT_TRUE(wait_settled(c, "call_id=" + id, 3, 60s));
  {
    // Packet 10 waits for more packets or the end of the call.
    const auto call = get_ok(c, "/v1/calls/" + id);
    EXPECT_EQ(as_int(call.at("ai").at("next_segment")), 10);
    EXPECT_EQ(call.at("ai").at("status"), "pending");
    EXPECT_EQ(all_jobs(c, "call_id=" + id).size(), 3u);
  }
  const auto ended = c.request("POST", "/v1/calls/" + id + "/end");
  ASSERT_EQ(ended.status, 200) << ended.body;
  ASSERT_TRUE(wait_until([&] { return call_state(c, id) == "COMPLETED"; }, 60s));

  const auto jobs = all_jobs(c, "call_id=" + id);
  ASSERT_EQ(jobs.size(), 4u);
  const std::vector<std::pair<std::int64_t, std::int64_t>> ranges{{1, 3}, {4, 6}, {7, 9}, {10, 10}};
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    EXPECT_EQ(as_int(jobs[i].at("first_sequence")), ranges[i].first);
    EXPECT_EQ(as_int(jobs[i].at("last_sequence")), ranges[i].second);
    EXPECT_EQ(jobs[i].at("state"), "succeeded");
  }
  const auto transcript = get_ok(c, "/v1/calls/" + id + "/transcript");
  EXPECT_EQ(transcript.at("text"), joined(data_range(id, 1, 10)).c_str());
  const auto& segments = transcript.at("segments").as_array();
  ASSERT_EQ(segments.size(), 4u);
  for (std::size_t i = 0; i < ranges.size(); ++i) {
    const auto& seg = segments[i].as_object();
    EXPECT_EQ(as_int(seg.at("first_sequence")), ranges[i].first);
    EXPECT_EQ(as_int(seg.at("last_sequence")), ranges[i].second);
    EXPECT_EQ(seg.at("text"), joined(data_range(id, ranges[i].first, ranges[i].second)).c_str());
  }
}

TEST_F(AiPipelineTest, FailingEngineKillsTheJobAfterFiveAttemptsWithBackoffThenTheApiReplaysIt) {
  allow_error_log("ai job dead");
  start_server({{"--mock-failure-rate", "1"},
                {"--mock-delay-ms", "0:0"},
                {"--retry-base-delay", "20ms"},
                {"--workers", "2"}});
  auto c = connect();
  const std::string id = "doomed";
  ASSERT_EQ(post_packet(c, id, 1, data_of(id, 1)).status, 202);
  ASSERT_TRUE(wait_settled(c, "call_id=" + id, 1, 60s));
  const auto job_id = as_int(all_jobs(c, "call_id=" + id).at(0).at("id"));
  const std::string job_path = "/v1/jobs/" + std::to_string(job_id);

  auto j = get_ok(c, job_path);
  EXPECT_EQ(j.at("state"), "dead");
  EXPECT_EQ(as_int(j.at("attempts")), 5);
  EXPECT_EQ(as_int(j.at("max_attempts")), 5);
  ASSERT_TRUE(j.at("last_error").is_string()) << json::serialize(j);
  EXPECT_NE(std::string(j.at("last_error").as_string()).find("AI Service Unavailable"), std::string::npos)
      << json::serialize(j);
  EXPECT_TRUE(j.at("lease_owner").is_null());
  // Four waits of 20, 40, 80 and 160 ms lie between the first attempt and the death.
  ASSERT_FALSE(j.at("started_at").is_null());
  ASSERT_FALSE(j.at("finished_at").is_null());
  EXPECT_GE(as_double(j.at("finished_at")) - as_double(j.at("started_at")), 0.300 - 1e-6) << json::serialize(j);

  // The log tells the same story: five starts, four retries with their delays, one death. The worker
  // logs the death once the store has recorded it, through the asynchronous logger: wait for the line.
  ASSERT_TRUE(wait_until([&] { return records_of_job("ai job dead", job_id).size() == 1; }, 60s));
  const auto started = records_of_job("ai attempt started", job_id);
  const auto retried = records_of_job("ai attempt failed, retrying", job_id);
  const auto dead = records_of_job("ai job dead", job_id);
  ASSERT_EQ(started.size(), 5u);
  ASSERT_EQ(retried.size(), 4u);
  ASSERT_EQ(dead.size(), 1u);
  const std::int64_t delays[] = {20, 40, 80, 160};
  for (std::size_t k = 0; k < 5; ++k) EXPECT_EQ(int_field(started[k], "attempt"), static_cast<std::int64_t>(k + 1));
  for (std::size_t k = 0; k < 4; ++k) {
    SCOPED_TRACE(json::serialize(retried[k]));
    EXPECT_EQ(string_field(retried[k], "level"), "warning");
    EXPECT_EQ(int_field(retried[k], "attempt"), static_cast<std::int64_t>(k + 1));
    EXPECT_EQ(int_field(retried[k], "delay_ms"), delays[k]);
    EXPECT_EQ(string_field(retried[k], "error"), "AI Service Unavailable");
    // The next attempt starts no sooner than the delay allows (log times have millisecond precision).
    const auto gap = time_ms(started[k + 1]).value_or(0) - time_ms(started[k]).value_or(0);
    EXPECT_GE(gap, delays[k] - 1) << "attempt " << k + 2 << " started too soon";
  }
  EXPECT_EQ(int_field(dead[0], "attempts"), 5);
  EXPECT_GE(time_ms(dead[0]).value_or(0) - time_ms(started[0]).value_or(0), 300 - 1);
  {
    const auto call = get_ok(c, "/v1/calls/" + id);
    EXPECT_EQ(call.at("ai").at("status"), "failed");
    EXPECT_EQ(as_int(call.at("ai").at("jobs").at("dead")), 1);
    const auto transcript = get_ok(c, "/v1/calls/" + id + "/transcript");
    EXPECT_EQ(transcript.at("text"), "");
    EXPECT_TRUE(transcript.at("segments").as_array().empty());
  }

  // Replay with the engine still failing: the job goes back to the queue with fresh attempts, runs five
  // times again and dies again.
  auto r = c.request("POST", job_path + "/retry");
  ASSERT_EQ(r.status, 202) << r.body;
  auto replayed = body_object(r);
  EXPECT_EQ(as_int(replayed.at("id")), job_id);
  EXPECT_EQ(replayed.at("state"), "queued");
  EXPECT_EQ(as_int(replayed.at("attempts")), 0);
  EXPECT_TRUE(server().wait_for_record(msg_is("job replayed"), 60s));
  ASSERT_TRUE(wait_until([&] { return records_of_job("ai job dead", job_id).size() == 2; }, 60s));
  j = get_ok(c, job_path);
  EXPECT_EQ(j.at("state"), "dead");
  EXPECT_EQ(as_int(j.at("attempts")), 5);
  EXPECT_EQ(records_of_job("ai attempt started", job_id).size(), 10u);
  EXPECT_EQ(records_of_job("ai attempt failed, retrying", job_id).size(), 8u);

  // The engine recovers (a restart with failure rate 0 on the same file); a replay now succeeds, once.
  restart_server({{"--mock-failure-rate", "0"}});
  c = connect();
  EXPECT_EQ(get_ok(c, job_path).at("state"), "dead") << "a dead job stays dead across a restart";
  r = c.request("POST", job_path + "/retry");
  ASSERT_EQ(r.status, 202) << r.body;
  ASSERT_TRUE(wait_until([&] { return get_ok(c, job_path).at("state") == "succeeded"; }, 60s));
  j = get_ok(c, job_path);
  EXPECT_EQ(as_int(j.at("attempts")), 1);
  EXPECT_TRUE(wait_until([&] { return records_of_job("ai attempt succeeded", job_id).size() == 1; }, 60s));
  EXPECT_EQ(records_of_job("ai attempt succeeded", job_id).size(), 1u);
  const auto transcript = get_ok(c, "/v1/calls/" + id + "/transcript");
  EXPECT_EQ(transcript.at("text"), data_of(id, 1).c_str());
  EXPECT_EQ(get_ok(c, "/v1/calls/" + id).at("ai").at("status"), "completed");
  EXPECT_EQ(db().scalar("SELECT COUNT(*) FROM transcript_segments WHERE call_id = 'doomed'"), 1);

  // Only a dead job can be replayed; unknown and malformed ids are refused.
  r = c.request("POST", job_path + "/retry");
  EXPECT_TRUE(is_json_error(r, 409));
  EXPECT_EQ(body_object(r).at("error"), "job_not_dead");
  EXPECT_TRUE(is_json_error(c.request("POST", "/v1/jobs/999999/retry"), 404));
  EXPECT_TRUE(is_json_error(c.request("POST", "/v1/jobs/abc/retry"), 422));
  EXPECT_TRUE(is_json_error(c.get("/v1/jobs/999999"), 404));
}

TEST_F(AiPipelineTest, AThreeSecondEngineNeverSlowsTheAcknowledgements) {
  // Each job takes 3 s; were an acknowledgement to wait for its job, it would take at least that long
  // and the job would finish before its packet's 202. Order is checked, not speed: each packet's 202
  // comes before its job finishes, however long a slow build takes over the whole burst.
  start_server({{"--mock-delay-ms", "3000:3000"}, {"--workers", "100"}, {"--mock-failure-rate", "0"}});
  constexpr int threads = 4;
  constexpr std::int64_t per_thread = 25;
  std::vector<std::chrono::microseconds> slowest(threads, std::chrono::microseconds{0});
  std::vector<std::string> failures(threads);
  // When each packet's 202 arrived (wall clock, ms), by client and sequence.
  std::vector<std::vector<std::int64_t>> acked_at(threads, std::vector<std::int64_t>(per_thread + 1, 0));
  const auto burst_start = steady_clock::now();
  {
    std::vector<std::thread> clients;
    for (int t = 0; t < threads; ++t)
      clients.emplace_back([&, t] {
        try {
          connection c(server().port(), 10s);
          const std::string id = "slow-" + std::to_string(t);
          for (std::int64_t s = 1; s <= per_thread; ++s) {
            const auto before = steady_clock::now();
            const auto r = post_packet(c, id, s, data_of(id, s));
            const auto took = std::chrono::duration_cast<std::chrono::microseconds>(steady_clock::now() - before);
            acked_at[t][s] = wall_ms_now();
            slowest[t] = std::max(slowest[t], took);
            if (r.status != 202) failures[t] += std::to_string(s) + ": " + std::to_string(r.status) + " ";
          }
        } catch (const std::exception& e) {
          failures[t] += e.what();
        }
      });
    for (auto& t : clients) t.join();
  }
  const auto burst = std::chrono::duration_cast<std::chrono::milliseconds>(steady_clock::now() - burst_start);
  for (int t = 0; t < threads; ++t) {
    EXPECT_TRUE(failures[t].empty()) << "client " << t << ": " << failures[t];
    std::cerr << "client " << t << ": slowest 202 in " << slowest[t].count() << " us\n";
  }
  std::cerr << "burst of " << threads * per_thread << " packets: " << burst.count() << " ms\n";
  auto c = connect();
  ASSERT_TRUE(wait_settled(c, "", threads * per_thread, 60s));
  const auto packets = static_cast<std::size_t>(threads * per_thread);
  ASSERT_TRUE(wait_until(
      [&] { return server().records_where(msg_is("ai attempt succeeded")).size() >= packets; }, 60s));
  const auto successes = server().records_where(msg_is("ai attempt succeeded"));
  EXPECT_EQ(successes.size(), packets);
  for (const auto& r : successes) EXPECT_GE(as_double(r.at("latency_ms")), 3000.0 - 1.0) << json::serialize(r);
  const auto jobs = all_jobs(c);
  ASSERT_EQ(jobs.size(), packets);
  for (const auto& j : jobs) {
    SCOPED_TRACE(json::serialize(j));
    EXPECT_GE(as_double(j.at("finished_at")) - as_double(j.at("started_at")), 3.0 - 1e-3);
    const std::string call(j.at("call_id").as_string());
    const auto t = std::stoi(call.substr(call.find('-') + 1));
    const auto s = as_int(j.at("first_sequence"));
    ASSERT_TRUE(t >= 0 && t < threads && s >= 1 && s <= per_thread);
    // The job finished after its packet was acknowledged (1 ms for rounding).
    EXPECT_GE(static_cast<std::int64_t>(as_double(j.at("finished_at")) * 1000.0), acked_at[t][s] - 1);
  }
}

TEST_F(AiPipelineTest, SigkillWithJobsInFlightThenEveryJobFinishesExactlyOnce) {
  start_server({{"--mock-delay-ms", "300:300"}, {"--workers", "4"}, {"--mock-failure-rate", "0"}});
  const std::vector<std::string> calls{"kill-a", "kill-b", "kill-c", "kill-d"};
  constexpr std::int64_t n = 25;
  constexpr auto total = static_cast<std::int64_t>(4 * n);
  {
    auto c = connect();
    for (std::int64_t s = 1; s <= n; ++s)
      for (const auto& id : calls) ASSERT_EQ(post_packet(c, id, s, data_of(id, s)).status, 202);
  }
  // Kill once some jobs have finished and others are running (four workers, 300 ms each).
  ASSERT_TRUE(wait_until(
      [&] {
        const auto done = server().records_where(msg_is("ai attempt succeeded")).size();
        const auto begun = server().records_where(msg_is("ai attempt started")).size();
        return done >= 8 && begun > done;
      },
      60s));
  server().kill();
  const auto code = server().wait_exit(10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 128 + SIGKILL);

  std::set<std::int64_t> succeeded_before, running_before;
  {
    const auto file = db();
    for (const auto& row : file.rows("SELECT id, state FROM jobs")) {
      if (*row[1] == "succeeded") succeeded_before.insert(std::stoll(*row[0]));
      if (*row[1] == "running") running_before.insert(std::stoll(*row[0]));
    }
    EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM jobs"), total) << "every 202 recorded its job";
    EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM transcript_segments"),
              static_cast<std::int64_t>(succeeded_before.size()));
  }
  EXPECT_GE(succeeded_before.size(), 8u);
  EXPECT_GE(running_before.size(), 1u) << "no job was in flight when the server was killed";
  std::cerr << succeeded_before.size() << " jobs succeeded and " << running_before.size()
            << " were running when the server was killed\n";

  restart_server({{"--mock-delay-ms", "0:2"}});
  const auto requeued = server().records_where(msg_is("jobs requeued"));
  ASSERT_EQ(requeued.size(), 1u);
  EXPECT_EQ(int_field(requeued[0], "jobs"), static_cast<std::int64_t>(running_before.size()));
  auto c = connect();
  ASSERT_TRUE(wait_settled(c, "", total, 60s));

  // Exactly once: one result per job, nothing run again that had finished, every job counted once.
  const auto file = db();
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM jobs"), total);
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'"), total);
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM jobs WHERE attempts != 1"), 0)
      << "an interrupted attempt was counted";
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM transcript_segments"), total);
  EXPECT_EQ(file.scalar("SELECT COUNT(DISTINCT job_id) FROM transcript_segments"), total);
  EXPECT_TRUE(file.rows("SELECT call_id, first_sequence FROM transcript_segments GROUP BY call_id, first_sequence "
                        "HAVING COUNT(*) > 1")
                  .empty())
      << "a segment has two results";
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM transcript_segments t JOIN jobs j ON j.id = t.job_id "
                        "WHERE t.call_id != j.call_id OR t.first_sequence != j.first_sequence"),
            0);
  const auto restarted = server().records_where(msg_is("ai attempt started"));
  EXPECT_EQ(restarted.size(), static_cast<std::size_t>(total) - succeeded_before.size());
  for (const auto& r : restarted)
    EXPECT_EQ(succeeded_before.count(int_field(r, "job_id").value_or(-1)), 0u)
        << "a finished job ran again: " << json::serialize(r);
  for (const auto& id : calls) {
    const auto transcript = get_ok(c, "/v1/calls/" + id + "/transcript");
    EXPECT_EQ(transcript.at("text"), joined(data_range(id, 1, n)).c_str()) << id;
    EXPECT_EQ(transcript.at("segments").as_array().size(), static_cast<std::size_t>(n));
    const auto call = get_ok(c, "/v1/calls/" + id);
    EXPECT_EQ(as_int(call.at("ai").at("jobs").at("total")), n);
    EXPECT_EQ(as_int(call.at("ai").at("jobs").at("succeeded")), n);
  }
}

// The queue's speed must not depend on its length: a claim looks at the due end of the queue only, so a
// backlog (after an engine outage, or a burst) drains as fast as a short queue. A backlog is built behind
// one worker held by a minute-long attempt; then the server restarts with eight workers and a fast engine,
// and the first jobs of the backlog must run about as fast as the last ones.
TEST_F(AiPipelineTest, ABacklogOfQueuedJobsDrainsAsFastAsAShortQueue) {
  start_server({{"--workers", "1"}, {"--mock-delay-ms", "60000:60000"}});
  constexpr int threads = 8;
  // Under a sanitizer the server is several times slower (GCC defines these macros for ASan and TSan):
  // a smaller backlog keeps the test within its time limit and measures the same ratio.
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
  constexpr std::int64_t per_thread = 600;
#else
  constexpr std::int64_t per_thread = 2000;
#endif
  constexpr std::int64_t total = threads * per_thread;
  {
    std::vector<std::string> failures(threads);
    std::vector<std::thread> clients;
    for (int t = 0; t < threads; ++t)
      clients.emplace_back([&, t] {
        try {
          connection c(server().port(), 10s);
          const std::string id = "backlog-" + std::to_string(t);
          for (std::int64_t s = 1; s <= per_thread; ++s) {
            const auto r = post_packet(c, id, s, data_of(id, s));
            if (r.status != 202) failures[t] += std::to_string(s) + ": " + r.body + " ";
          }
        } catch (const std::exception& e) {
          failures[t] += e.what();
        }
      });
    for (auto& t : clients) t.join();
    for (const auto& f : failures) ASSERT_TRUE(f.empty()) << f;
  }
  ASSERT_EQ(db().scalar("SELECT COUNT(*) FROM jobs WHERE state = 'queued'"), total - 1);

  restart_server({{"--workers", "8"}, {"--mock-delay-ms", "0:0"}});
  const auto start = steady_clock::now();
  std::optional<steady_clock::time_point> first_part, last_part_start;
  constexpr std::int64_t part = total / 6;
  const bool drained = wait_until(
      [&] {
        const auto done = db().scalar("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'");
        const auto now = steady_clock::now();
        if (!first_part && done >= part) first_part = now;
        if (!last_part_start && done >= total - part) last_part_start = now;
        return done == total;
      },
      40s, 10ms);
  const auto end = steady_clock::now();
  const auto ms = [](auto d) { return std::chrono::duration_cast<std::chrono::milliseconds>(d).count(); };
  ASSERT_TRUE(drained) << "a backlog of " << total << " jobs did not drain within 40 s; "
                       << db().scalar("SELECT COUNT(*) FROM jobs WHERE state = 'succeeded'") << " done";
  ASSERT_TRUE(first_part && last_part_start);
  const auto first_ms = ms(*first_part - start);
  const auto last_ms = ms(end - *last_part_start);
  std::cerr << "backlog of " << total << ": drained in " << ms(end - start) << " ms; first " << part << " jobs in "
            << first_ms << " ms, last " << part << " in " << last_ms << " ms\n";
  // Generous: the first sixth may take up to twice as long as the last sixth (plus scheduling noise).
  EXPECT_LE(first_ms, 2 * last_ms + 500) << "jobs run slower while many wait";
}

}  // namespace
}  // namespace aipbx::itest
