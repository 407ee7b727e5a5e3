// GET /metrics (issue 7): every figure moves when its event happens, read through the real binary.
#include <cstdlib>
#include <map>
#include <sstream>
#include <string>

#include "harness/api.hpp"
#include "harness/fixture.hpp"

namespace aipbx::itest {
namespace {

// The samples of a Prometheus text exposition, keyed by name with its labels as written
// (e.g. `aipbx_jobs{state="queued"}`).
std::map<std::string, double> parse_samples(const std::string& text) {
  std::map<std::string, double> out;
  std::istringstream in(text);
  std::string line;
  while (std::getline(in, line)) {
    if (line.empty() || line[0] == '#') continue;
    const auto space = line.rfind(' ');
    if (space == std::string::npos) continue;
    out[line.substr(0, space)] = std::strtod(line.c_str() + space + 1, nullptr);
  }
  return out;
}

class MetricsTest : public integration_test {
 protected:
  std::map<std::string, double> scrape(connection& c) {
    const auto r = c.get("/metrics");
    EXPECT_EQ(r.status, 200);
    EXPECT_NE(r.header("Content-Type").find("text/plain; version=0.0.4"), std::string::npos);
    return parse_samples(r.body);
  }
  static double at(const std::map<std::string, double>& m, const std::string& key) {
    auto it = m.find(key);
    return it == m.end() ? -1 : it->second;
  }
};

TEST_F(MetricsTest, IngestOutcomesArrivalsAndRequestsAreCounted) {
  // Packets only: the gap left open below must not be declared lost by the clock on a slow build.
  start_server({{"--workers", "0"}, {"--reorder-window", "50"}});
  auto c = connect();
  auto before = scrape(c);
  EXPECT_EQ(at(before, R"(aipbx_packets_total{result="accepted"})"), 0);
  EXPECT_EQ(at(before, R"(aipbx_calls{state="IN_PROGRESS"})"), 0);

  ASSERT_EQ(post_packet(c, "m1", 1, "a").status, 202);  // in order
  ASSERT_EQ(post_packet(c, "m1", 2, "b").status, 202);  // in order
  ASSERT_EQ(post_packet(c, "m1", 5, "e").status, 202);  // gap 3-4
  ASSERT_EQ(post_packet(c, "m1", 3, "c").status, 202);  // late
  ASSERT_EQ(post_packet(c, "m1", 3, "c").status, 202);  // duplicate
  ASSERT_EQ(post_packet(c, "m1", 3, "X").status, 409);  // conflict
  ASSERT_EQ(c.post_json("/v1/call/stream/m1", R"({"sequence": -1, "data": "x", "timestamp": 1})").status, 422);
  ASSERT_EQ(c.request("POST", "/v1/call/stream/m1", "x", {{"Content-Type", "text/plain"}}).status, 415);
  ASSERT_EQ(c.get("/nowhere").status, 404);
  // A header above the limit is refused by the transport, which closes the connection.
  {
    auto other = connect();
    const auto r = other.request("GET", "/healthz", {}, {{"X-Big", std::string(20 * 1024, 'a')}});
    EXPECT_EQ(r.status, 431);
  }

  const auto m = scrape(c);
  EXPECT_EQ(at(m, R"(aipbx_packets_total{result="accepted"})"), 4);
  EXPECT_EQ(at(m, R"(aipbx_packets_total{result="duplicate"})"), 1);
  EXPECT_EQ(at(m, R"(aipbx_packets_total{result="conflict"})"), 1);
  EXPECT_EQ(at(m, R"(aipbx_packets_total{result="invalid"})"), 1);
  EXPECT_EQ(at(m, R"(aipbx_packets_total{result="unsupported_media_type"})"), 1);
  EXPECT_EQ(at(m, R"(aipbx_packet_arrivals_total{kind="in_order"})"), 2);
  EXPECT_EQ(at(m, R"(aipbx_packet_arrivals_total{kind="gap"})"), 1);
  EXPECT_EQ(at(m, R"(aipbx_packet_arrivals_total{kind="late"})"), 1);
  EXPECT_EQ(at(m, "aipbx_ingest_latency_seconds_count"), 8);
  EXPECT_EQ(at(m, R"(aipbx_http_requests_total{route="/v1/call/stream/{call_id}",status="202"})"), 5);
  EXPECT_EQ(at(m, R"(aipbx_http_requests_total{route="/v1/call/stream/{call_id}",status="409"})"), 1);
  EXPECT_EQ(at(m, R"(aipbx_http_requests_total{route="/v1/call/stream/{call_id}",status="422"})"), 1);
  EXPECT_EQ(at(m, R"(aipbx_http_requests_total{route="unmatched",status="404"})"), 1);
  EXPECT_EQ(at(m, R"(aipbx_http_refused_total{reason="header_too_large"})"), 1);
  // State read from the store when scraped.
  EXPECT_EQ(at(m, R"(aipbx_calls{state="IN_PROGRESS"})"), 1);
  EXPECT_EQ(at(m, R"(aipbx_call_packets_total{kind="received"})"), 4);
  EXPECT_EQ(at(m, R"(aipbx_call_packets_total{kind="duplicate"})"), 1);
  EXPECT_EQ(at(m, R"(aipbx_call_packets_total{kind="out_of_order"})"), 1);
  EXPECT_EQ(at(m, "aipbx_call_gaps_total"), 1);
  EXPECT_EQ(at(m, R"(aipbx_jobs{state="queued"})"), 3);  // 1, 2, 3 are contiguous; 5 waits for 4
  EXPECT_GE(at(m, "aipbx_commits_total"), 1);
  EXPECT_GE(at(m, "aipbx_commit_batch_size_count"), 1);
  EXPECT_GE(at(m, "aipbx_log_syncs_total"), 1);
  EXPECT_GE(at(m, "aipbx_log_pages_total"), at(m, "aipbx_log_syncs_total"));  // a commit appends a page at least
  // Each commit and each sync is timed: as many observations as there were of them.
  EXPECT_EQ(at(m, "aipbx_commit_seconds_count"), at(m, "aipbx_commits_total"));
  EXPECT_EQ(at(m, R"(aipbx_commit_seconds_bucket{le="+Inf"})"), at(m, "aipbx_commits_total"));
  EXPECT_EQ(at(m, "aipbx_log_sync_seconds_count"), at(m, "aipbx_log_syncs_total"));
  for (const char* by : {"checkpointer", "writer", "writer_waiting"})
    EXPECT_EQ(m.count(std::string("aipbx_checkpoints_total{by=\"") + by + "\"}"), 1u) << by;
  for (const char* by : {"checkpointer", "writer"})
    EXPECT_EQ(m.count(std::string("aipbx_checkpoint_seconds_count{by=\"") + by + "\"}"), 1u) << by;
  EXPECT_EQ(at(m, R"(aipbx_writer_queue{kind="limit"})"), 50000);
  // A node without workers has no AI figures.
  EXPECT_EQ(m.count(R"(aipbx_ai_attempts_total{engine="mock",outcome="started"})"), 0u);
}

TEST_F(MetricsTest, AiAttemptsRetriesDeadJobsAndLostPacketsAreCounted) {
  allow_error_log("ai job dead");
  start_server({{"--workers", "2"},
                {"--mock-failure-rate", "1"},
                {"--mock-delay-ms", "0:0"},
                {"--retry-base-delay", "10ms"},
                {"--retry-max-attempts", "3"},
                {"--reorder-window", "2"}});
  auto c = connect();
  ASSERT_EQ(post_packet(c, "m2", 1, "a").status, 202);
  ASSERT_EQ(post_packet(c, "m2", 4, "d").status, 202);  // 2-3 missing
  ASSERT_EQ(post_packet(c, "m2", 5, "e").status, 202);
  ASSERT_EQ(post_packet(c, "m2", 6, "f").status, 202);  // the window of 2 packets passed: 2-3 lost
  ASSERT_EQ(c.request("POST", "/v1/calls/m2/end").status, 200);
  // The call is FAILED from its first dead job on; the figures are final once every job is dead.
  std::map<std::string, double> m;
  ASSERT_TRUE(wait_until(
      [&] {
        m = scrape(c);
        return at(m, R"(aipbx_jobs{state="dead"})") == 4 && at(m, R"(aipbx_jobs{state="queued"})") == 0 &&
               at(m, R"(aipbx_jobs{state="running"})") == 0 &&
               at(m, R"(aipbx_ai_attempts_total{engine="mock",outcome="dead"})") == 4;
      },
      30s));
  EXPECT_EQ(call_state(c, "m2"), "FAILED");
  // Four jobs (1, 4, 5, 6), three attempts each, all failing.
  EXPECT_EQ(at(m, R"(aipbx_jobs{state="dead"})"), 4);
  EXPECT_EQ(at(m, R"(aipbx_ai_attempts_total{engine="mock",outcome="started"})"), 12);
  EXPECT_EQ(at(m, R"(aipbx_ai_attempts_total{engine="mock",outcome="retried"})"), 8);
  EXPECT_EQ(at(m, R"(aipbx_ai_attempts_total{engine="mock",outcome="dead"})"), 4);
  EXPECT_EQ(at(m, R"(aipbx_ai_attempts_total{engine="mock",outcome="succeeded"})"), 0);
  EXPECT_EQ(at(m, R"(aipbx_ai_latency_seconds_count{engine="mock"})"), 12);
  EXPECT_EQ(at(m, R"(aipbx_ai_running{engine="mock",kind="workers"})"), 2);
  // Failed attempts are values, not exceptions: no unit of work ended by one.
  for (const char* unit : {"ai_dispatcher", "ai_attempt", "ai_lease_renewal"})
    EXPECT_EQ(at(m, std::string("aipbx_coroutine_failures_total{unit=\"") + unit + "\"}"), 0) << unit;
  EXPECT_EQ(at(m, R"(aipbx_calls{state="FAILED"})"), 1);
  EXPECT_EQ(at(m, R"(aipbx_call_packets_total{kind="lost"})"), 2);
  EXPECT_EQ(at(m, "aipbx_job_queue_oldest_due_seconds"), 0);
}

}  // namespace
}  // namespace aipbx::itest
