// The call lifecycle and in-order AI consumption through HTTP (issue 4): IN_PROGRESS -> PROCESSING_AI ->
// COMPLETED / FAILED, FAILED -> PROCESSING_AI -> COMPLETED after a replay, ARCHIVED; explicit end and idle
// timeout; 409s after the end; the transitions list; the reorder window (packets and time), lost ranges,
// late packets after a loss; and one call's packets from many connections at once.
#include <algorithm>
#include <barrier>
#include <boost/json/serialize.hpp>
#include <numeric>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "harness/api.hpp"
#include "harness/fixture.hpp"

namespace aipbx::itest {
namespace {

namespace json = boost::json;
using std::chrono::steady_clock;

std::string data_of(const std::string& call_id, std::int64_t sequence) {
  return call_id + "/" + std::to_string(sequence);
}

double wall_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct expected_transition {
  std::optional<std::string> from;
  std::string to;
  std::string reason;
};

class LifecycleTest : public integration_test {
 protected:
  http_response post(connection& c, const std::string& id, std::int64_t sequence) {
    return post_packet(c, id, sequence, data_of(id, sequence));
  }
  void post_ok(connection& c, const std::string& id, std::int64_t sequence, const char* arrival = nullptr) {
    const auto r = post(c, id, sequence);
    ASSERT_EQ(r.status, 202) << id << " #" << sequence << ": " << r.body;
    if (arrival != nullptr) {
      EXPECT_EQ(body_object(r).at("arrival"), arrival) << id << " #" << sequence;
    }
  }
  void post_range(connection& c, const std::string& id, std::int64_t first, std::int64_t last) {
    for (auto s = first; s <= last; ++s) post_ok(c, id, s);
  }
  http_response end(connection& c, const std::string& id) { return c.request("POST", "/v1/calls/" + id + "/end"); }
  http_response archive(connection& c, const std::string& id) {
    return c.request("POST", "/v1/calls/" + id + "/archive");
  }
  json::object call(connection& c, const std::string& id) { return get_ok(c, "/v1/calls/" + id); }

  bool wait_state(connection& c, const std::string& id, const std::string& state,
                  std::chrono::milliseconds timeout = 60s) {
    return wait_until([&] { return call_state(c, id) == state; }, timeout);
  }

  // The call's transitions are exactly `expected`, in order, with times that never go back, the first at or
  // after `not_before` and the last no later than now; the log tells the same transitions.
  void expect_transitions(const json::object& call, const std::vector<expected_transition>& expected,
                          double not_before) {
    ASSERT_TRUE(call.contains("transitions")) << json::serialize(call);
    const auto& list = call.at("transitions").as_array();
    ASSERT_EQ(list.size(), expected.size()) << json::serialize(list);
    double previous = not_before - 0.5;  // the server's clock is the test's; leave room for rounding
    for (std::size_t i = 0; i < list.size(); ++i) {
      const auto& t = list[i].as_object();
      SCOPED_TRACE("transition " + std::to_string(i) + ": " + json::serialize(t));
      if (expected[i].from) {
        EXPECT_EQ(t.at("from"), expected[i].from->c_str());
      } else {
        EXPECT_TRUE(t.at("from").is_null());
      }
      EXPECT_EQ(t.at("to"), expected[i].to.c_str());
      EXPECT_EQ(t.at("reason"), expected[i].reason.c_str());
      const double at = as_double(t.at("at"));
      EXPECT_GE(at, previous);
      previous = at;
    }
    EXPECT_LE(previous, wall_now() + 0.5);
    EXPECT_DOUBLE_EQ(as_double(call.at("state_changed_at")), as_double(list.back().at("at")));
    EXPECT_EQ(call.at("state"), expected.back().to.c_str());

    const std::string id(call.at("id").as_string());
    const auto changes = [&] {
      return server().records_of_all_runs_where([&](const json::object& r) {
        return string_field(r, "msg") == "call state changed" && string_field(r, "call_id") == id;
      });
    };
    // The first transition (creation) is logged as "call created". A transition is logged once its
    // transaction commits, through the asynchronous logger: the last may still be on its way.
    wait_until([&] { return changes().size() + 1 >= expected.size(); }, 60s);
    const auto logged = changes();
    ASSERT_EQ(logged.size() + 1, expected.size());
    for (std::size_t i = 0; i < logged.size(); ++i) {
      SCOPED_TRACE(json::serialize(logged[i]));
      EXPECT_EQ(string_field(logged[i], "from"), expected[i + 1].from.value_or(""));
      EXPECT_EQ(string_field(logged[i], "to"), expected[i + 1].to);
      EXPECT_EQ(string_field(logged[i], "reason"), expected[i + 1].reason);
    }
  }

  std::vector<std::pair<std::int64_t, std::int64_t>> ranges(const json::object& gaps, const char* which) {
    std::vector<std::pair<std::int64_t, std::int64_t>> out;
    for (const auto& g : gaps.at(which).as_array()) {
      const auto& o = g.as_object();
      EXPECT_EQ(as_int(o.at("count")), as_int(o.at("last")) - as_int(o.at("first")) + 1);
      out.emplace_back(as_int(o.at("first")), as_int(o.at("last")));
    }
    return out;
  }

  static std::string error_code_of(const http_response& r) {
    const auto v = r.json();
    if (!v.is_object() || !v.as_object().contains("error")) return {};
    return std::string(v.as_object().at("error").as_string());
  }
};

using range_list = std::vector<std::pair<std::int64_t, std::int64_t>>;

TEST_F(LifecycleTest, EndTakesTheCallThroughProcessingAiToCompletedAndRefusesNewPacketsAfterIt) {
  // Slow jobs on one worker: the call is still PROCESSING_AI when the end is answered.
  start_server({{"--mock-delay-ms", "400:400"}, {"--workers", "1"}});
  const double t0 = wall_now();
  auto c = connect();
  const std::string id = "life-ok";
  post_range(c, id, 1, 4);
  {
    const auto o = call(c, id);
    EXPECT_EQ(o.at("state"), "IN_PROGRESS");
    EXPECT_TRUE(o.at("ended_at").is_null());
    EXPECT_TRUE(o.at("end_reason").is_null());
    expect_transitions(o, {{std::nullopt, "IN_PROGRESS", "first packet"}}, t0);
  }
  auto r = end(c, id);
  ASSERT_EQ(r.status, 200) << r.body;
  {
    const auto o = body_object(r);
    EXPECT_EQ(o.at("state"), "PROCESSING_AI");
    EXPECT_EQ(o.at("end_reason"), "ended by request");
    ASSERT_FALSE(o.at("ended_at").is_null());
    EXPECT_GT(as_int(o.at("ai").at("jobs").at("outstanding")), 0);
    EXPECT_EQ(o.at("ai").at("status"), "processing");
  }

  // After the end: a second end and new packets are refused; a repeat of a stored packet is still the
  // idempotent success a retrying sender expects.
  r = end(c, id);
  EXPECT_TRUE(is_json_error(r, 409));
  EXPECT_EQ(error_code_of(r), "invalid_transition");
  r = post(c, id, 5);
  EXPECT_TRUE(is_json_error(r, 409));
  EXPECT_EQ(error_code_of(r), "call_ended");
  r = post(c, id, 2);
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(body_object(r).at("duplicate"), true);
  EXPECT_EQ(body_object(r).at("status"), "duplicate");
  r = post_packet(c, id, 3, "other data");
  EXPECT_EQ(r.status, 409) << r.body;

  ASSERT_TRUE(wait_state(c, id, "COMPLETED"));
  const auto o = call(c, id);
  EXPECT_EQ(o.at("ai").at("status"), "completed");
  EXPECT_EQ(as_int(o.at("ai").at("jobs").at("total")), 4);
  EXPECT_EQ(as_int(o.at("ai").at("jobs").at("succeeded")), 4);
  EXPECT_EQ(as_int(o.at("packets_received")), 4);
  EXPECT_EQ(as_int(o.at("duplicate_packets")), 1);
  expect_transitions(o,
                     {{std::nullopt, "IN_PROGRESS", "first packet"},
                      {"IN_PROGRESS", "PROCESSING_AI", "ended by request"},
                      {"PROCESSING_AI", "COMPLETED", "ai jobs settled"}},
                     t0);
  EXPECT_DOUBLE_EQ(as_double(o.at("ended_at")), as_double(o.at("transitions").at(1).at("at")));
  // Still closed once completed.
  r = post(c, id, 5);
  EXPECT_EQ(error_code_of(r), "call_ended");
  EXPECT_EQ(post(c, id, 4).status, 202);
  EXPECT_TRUE(is_json_error(end(c, "no-such-call"), 404));
  EXPECT_EQ(db().packet_count(id), 4);
  EXPECT_EQ(get_ok(c, "/v1/calls/" + id + "/transcript").at("text"),
            joined({data_of(id, 1), data_of(id, 2), data_of(id, 3), data_of(id, 4)}).c_str());
}

TEST_F(LifecycleTest, ADeadJobFailsTheCallAndAReplayThatSucceedsCompletesIt) {
  allow_error_log("ai job dead");
  start_server({{"--mock-failure-rate", "1"}, {"--mock-delay-ms", "0:0"}, {"--retry-base-delay", "20ms"}});
  const double t0 = wall_now();
  auto c = connect();
  const std::string id = "life-fail";
  post_range(c, id, 1, 3);
  auto r = end(c, id);
  ASSERT_EQ(r.status, 200) << r.body;
  ASSERT_TRUE(wait_state(c, id, "FAILED"));
  // Every job dies; the call stays FAILED (no transition per dead job).
  ASSERT_TRUE(wait_until([&] { return tally(all_jobs(c, "call_id=" + id)).dead == 3; }, 10s));
  auto o = call(c, id);
  EXPECT_EQ(o.at("state"), "FAILED");
  EXPECT_EQ(o.at("ai").at("status"), "failed");
  EXPECT_EQ(as_int(o.at("ai").at("jobs").at("dead")), 3);
  const std::vector<expected_transition> failed{{std::nullopt, "IN_PROGRESS", "first packet"},
                                                {"IN_PROGRESS", "PROCESSING_AI", "ended by request"},
                                                {"PROCESSING_AI", "FAILED", "an ai job is dead"}};
  expect_transitions(o, failed, t0);
  // A failed call takes no packets either.
  EXPECT_EQ(error_code_of(post(c, id, 4)), "call_ended");

  // The engine recovers (restart with failure rate 0, slow enough to watch PROCESSING_AI); the dead jobs
  // are replayed; the last replay takes the call back to PROCESSING_AI, their success to COMPLETED.
  restart_server({{"--mock-failure-rate", "0"}, {"--mock-delay-ms", "300:300"}, {"--workers", "1"}});
  c = connect();
  EXPECT_EQ(call_state(c, id), "FAILED") << "the state survives a restart";
  for (const auto& j : all_jobs(c, "call_id=" + id)) {
    r = c.request("POST", "/v1/jobs/" + std::to_string(as_int(j.at("id"))) + "/retry");
    ASSERT_EQ(r.status, 202) << r.body;
  }
  o = call(c, id);
  EXPECT_EQ(o.at("state"), "PROCESSING_AI");
  EXPECT_EQ(o.at("ai").at("status"), "processing");
  ASSERT_TRUE(wait_state(c, id, "COMPLETED"));
  o = call(c, id);
  auto completed = failed;
  completed.push_back({"FAILED", "PROCESSING_AI", "a dead job was replayed"});
  completed.push_back({"PROCESSING_AI", "COMPLETED", "ai jobs settled"});
  expect_transitions(o, completed, t0);
  EXPECT_EQ(o.at("ai").at("status"), "completed");
  EXPECT_EQ(as_int(o.at("ai").at("jobs").at("succeeded")), 3);
  EXPECT_EQ(as_int(o.at("ai").at("jobs").at("dead")), 0);
  EXPECT_EQ(get_ok(c, "/v1/calls/" + id + "/transcript").at("text"),
            joined({data_of(id, 1), data_of(id, 2), data_of(id, 3)}).c_str());
}

TEST_F(LifecycleTest, FailedCallsCanBeArchived) {
  allow_error_log("ai job dead");
  start_server({{"--mock-failure-rate", "1"}, {"--retry-max-attempts", "1"}});
  auto c = connect();
  post_ok(c, "arch-failed", 1);
  ASSERT_EQ(end(c, "arch-failed").status, 200);
  ASSERT_TRUE(wait_state(c, "arch-failed", "FAILED"));
  const auto r = archive(c, "arch-failed");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_object(r).at("state"), "ARCHIVED");
  const auto o = call(c, "arch-failed");
  const auto& t = o.at("transitions").as_array();
  EXPECT_EQ(t.back().at("from"), "FAILED");
  EXPECT_EQ(t.back().at("to"), "ARCHIVED");
  EXPECT_EQ(t.back().at("reason"), "archived by request");
}

TEST_F(LifecycleTest, ArchiveOnlyFromASettledStateAndArchivedCallsLeaveTheDefaultListing) {
  start_server({{"--mock-delay-ms", "500:500"}, {"--workers", "1"}});
  const double t0 = wall_now();
  auto c = connect();
  const std::string id = "arch-1";
  post_range(c, id, 1, 2);
  post_ok(c, "arch-2", 1);

  auto r = archive(c, id);
  EXPECT_TRUE(is_json_error(r, 409));
  EXPECT_EQ(error_code_of(r), "invalid_transition") << "IN_PROGRESS cannot be archived";
  ASSERT_EQ(end(c, id).status, 200);
  r = archive(c, id);
  EXPECT_TRUE(is_json_error(r, 409));
  EXPECT_EQ(error_code_of(r), "invalid_transition") << "PROCESSING_AI cannot be archived";
  EXPECT_EQ(call_state(c, id), "PROCESSING_AI");
  ASSERT_TRUE(wait_state(c, id, "COMPLETED"));

  r = archive(c, id);
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(body_object(r).at("state"), "ARCHIVED");
  r = archive(c, id);
  EXPECT_EQ(error_code_of(r), "invalid_transition") << "archived twice";
  r = end(c, id);
  EXPECT_EQ(error_code_of(r), "invalid_transition");
  r = post(c, id, 3);
  EXPECT_EQ(error_code_of(r), "call_ended");
  EXPECT_TRUE(is_json_error(archive(c, "no-such-call"), 404));

  const auto ids = [&](const std::string& target) {
    std::set<std::string> out;
    const auto page = get_ok(c, target);
    for (const auto& x : page.at("calls").as_array()) out.emplace(x.at("id").as_string());
    return out;
  };
  EXPECT_EQ(ids("/v1/calls"), std::set<std::string>{"arch-2"});
  EXPECT_EQ(ids("/v1/calls?state=ARCHIVED"), std::set<std::string>{id});
  EXPECT_TRUE(ids("/v1/calls?state=COMPLETED").empty());
  EXPECT_EQ(ids("/v1/calls?state=IN_PROGRESS"), std::set<std::string>{"arch-2"});
  const auto o = call(c, id);
  EXPECT_EQ(o.at("state"), "ARCHIVED");
  expect_transitions(o,
                     {{std::nullopt, "IN_PROGRESS", "first packet"},
                      {"IN_PROGRESS", "PROCESSING_AI", "ended by request"},
                      {"PROCESSING_AI", "COMPLETED", "ai jobs settled"},
                      {"COMPLETED", "ARCHIVED", "archived by request"}},
                     t0);
  EXPECT_EQ(db().text("SELECT state FROM calls WHERE id = 'arch-1'"), "ARCHIVED");
}

TEST_F(LifecycleTest, IdleTimeoutEndsACallByItself) {
  start_server({{"--idle-timeout", "1500ms"}});
  const double t0 = wall_now();
  auto c = connect();
  const std::string id = "idle-1";
  post_range(c, id, 1, 3);
  const auto last_packet = steady_clock::now();
  // Another call kept alive by a packet every 100 ms outlives the first's idle timeout (with room for
  // a slow sanitizer build: a packet would have to wait 1.4 s for its answer to let the call idle out).
  const std::string busy = "idle-busy";
  std::int64_t busy_seq = 0;
  ASSERT_TRUE(wait_until(
      [&] {
        post_ok(c, busy, ++busy_seq);
        return call_state(c, id) != "IN_PROGRESS";
      },
      30s, 100ms));
  EXPECT_GE(steady_clock::now() - last_packet, 1500ms);
  EXPECT_EQ(call_state(c, busy), "IN_PROGRESS") << "a call with recent packets was ended";
  ASSERT_TRUE(wait_state(c, id, "COMPLETED"));
  const auto o = call(c, id);
  EXPECT_EQ(o.at("end_reason"), "idle timeout");
  ASSERT_FALSE(o.at("ended_at").is_null());
  EXPECT_GE(as_double(o.at("ended_at")) - as_double(o.at("last_packet_at")), 1.5 - 1e-3);
  expect_transitions(o,
                     {{std::nullopt, "IN_PROGRESS", "first packet"},
                      {"IN_PROGRESS", "PROCESSING_AI", "idle timeout"},
                      {"PROCESSING_AI", "COMPLETED", "ai jobs settled"}},
                     t0);
  EXPECT_EQ(as_int(o.at("ai").at("jobs").at("succeeded")), 3);
  auto r = post(c, id, 4);
  EXPECT_TRUE(is_json_error(r, 409));
  EXPECT_EQ(error_code_of(r), "call_ended");
  EXPECT_EQ(error_code_of(end(c, id)), "invalid_transition");
  // The busy call times out too once its packets stop.
  ASSERT_TRUE(wait_state(c, busy, "COMPLETED"));
  EXPECT_EQ(call(c, busy).at("end_reason"), "idle timeout");
}

TEST_F(LifecycleTest, PacketsShuffledWithinTheReorderWindowLoseNothingAndAreTranscribedInOrder) {
  start_server({{"--reorder-window", "10"}});
  auto c = connect();
  const std::string id = "shuffled";
  constexpr std::int64_t n = 60;
  std::vector<std::int64_t> order(n);
  std::iota(order.begin(), order.end(), 1);
  std::mt19937 rng(42);
  // Blocks of 5 shuffled: no packet is more than 4 places from its own, inside the window of 10.
  for (std::size_t b = 0; b < order.size(); b += 5) std::shuffle(order.begin() + b, order.begin() + b + 5, rng);
  for (const auto s : order) post_ok(c, id, s);

  const auto gaps = get_ok(c, "/v1/calls/" + id + "/gaps");
  EXPECT_TRUE(ranges(gaps, "open").empty()) << json::serialize(gaps);
  EXPECT_TRUE(ranges(gaps, "lost").empty()) << json::serialize(gaps);
  ASSERT_EQ(end(c, id).status, 200);
  ASSERT_TRUE(wait_state(c, id, "COMPLETED"));
  const auto o = call(c, id);
  EXPECT_EQ(as_int(o.at("lost_packets")), 0);
  EXPECT_EQ(as_int(o.at("lost_ranges")), 0);
  EXPECT_EQ(as_int(o.at("missing_packets")), 0);
  EXPECT_EQ(as_int(o.at("late_packets")), 0);
  EXPECT_GT(as_int(o.at("out_of_order_packets")), 0);
  EXPECT_EQ(as_int(o.at("packets_received")), n);

  // AI consumption in order: jobs created in sequence order, one per packet.
  const auto jobs = all_jobs(c, "call_id=" + id);
  ASSERT_EQ(jobs.size(), static_cast<std::size_t>(n));
  for (std::size_t i = 0; i < jobs.size(); ++i)
    EXPECT_EQ(as_int(jobs[i].at("first_sequence")), static_cast<std::int64_t>(i) + 1);
  std::vector<std::string> expected;
  for (std::int64_t s = 1; s <= n; ++s) expected.push_back(data_of(id, s));
  EXPECT_EQ(get_ok(c, "/v1/calls/" + id + "/transcript").at("text"), joined(expected).c_str());
  EXPECT_TRUE(server().records_where(msg_is("packets declared lost")).empty());
}

TEST_F(LifecycleTest, ADroppedPacketIsDeclaredLostAfterThePacketWindowAndALateArrivalIsOnlyFlagged) {
  start_server({{"--reorder-window", "5"}});
  auto c = connect();
  const std::string id = "lost-p";
  post_range(c, id, 1, 6);
  post_range(c, id, 8, 11);  // 7 is missing; 11 is 4 past it: still inside the window
  auto gaps = get_ok(c, "/v1/calls/" + id + "/gaps");
  EXPECT_EQ(ranges(gaps, "open"), (range_list{{7, 7}}));
  EXPECT_TRUE(ranges(gaps, "lost").empty());
  EXPECT_TRUE(wait_until([&] { return all_jobs(c, "call_id=" + id).size() == 6; }, 5s)) << "jobs for 1..6 only";

  post_ok(c, id, 12);  // 5 past the gap: declared lost
  gaps = get_ok(c, "/v1/calls/" + id + "/gaps");
  EXPECT_TRUE(ranges(gaps, "open").empty()) << json::serialize(gaps);
  EXPECT_EQ(ranges(gaps, "lost"), (range_list{{7, 7}}));
  EXPECT_TRUE(ranges(gaps, "late").empty());
  EXPECT_EQ(as_int(gaps.at("lost_packets")), 1);
  EXPECT_TRUE(server().wait_for_record(
      [&](const json::object& r) {
        return string_field(r, "msg") == "packets declared lost" && string_field(r, "call_id") == id &&
               int_field(r, "missing_first") == 7 && int_field(r, "missing_last") == 7;
      },
      5s));
  auto o = call(c, id);
  EXPECT_EQ(as_int(o.at("lost_packets")), 1);
  EXPECT_EQ(as_int(o.at("lost_ranges")), 1);
  EXPECT_EQ(as_int(o.at("missing_packets")), 0);
  post_range(c, id, 13, 15);
  ASSERT_TRUE(wait_until([&] { return tally(all_jobs(c, "call_id=" + id)).succeeded == 14; }, 10s));

  // The lost packet arrives after all: stored, flagged late, counted, not run.
  auto r = post(c, id, 7);
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(body_object(r).at("arrival"), "late_after_lost");
  EXPECT_EQ(body_object(r).at("duplicate"), false);
  EXPECT_TRUE(server().wait_for_record(
      [&](const json::object& r2) {
        return string_field(r2, "msg") == "packet after its gap was declared lost" &&
               string_field(r2, "call_id") == id && int_field(r2, "sequence") == 7;
      },
      5s));
  r = post(c, id, 7);  // and its repeat is a duplicate
  EXPECT_EQ(body_object(r).at("duplicate"), true);
  EXPECT_EQ(db().scalar("SELECT late FROM packets WHERE call_id = 'lost-p' AND sequence = 7"), 1);
  EXPECT_EQ(db().scalar("SELECT COUNT(*) FROM packets WHERE call_id = 'lost-p' AND late != 0"), 1);
  o = call(c, id);
  EXPECT_EQ(as_int(o.at("late_packets")), 1);
  EXPECT_EQ(as_int(o.at("lost_packets")), 1) << "the range stays lost";

  ASSERT_EQ(end(c, id).status, 200);
  ASSERT_TRUE(wait_state(c, id, "COMPLETED"));
  const auto jobs = all_jobs(c, "call_id=" + id);
  EXPECT_EQ(jobs.size(), 14u) << "the late packet created a job";
  for (const auto& j : jobs) EXPECT_NE(as_int(j.at("first_sequence")), 7);
  std::vector<std::string> expected;
  for (std::int64_t s = 1; s <= 15; ++s)
    if (s != 7) expected.push_back(data_of(id, s));
  EXPECT_EQ(get_ok(c, "/v1/calls/" + id + "/transcript").at("text"), joined(expected).c_str());
  gaps = get_ok(c, "/v1/calls/" + id + "/gaps");
  EXPECT_EQ(ranges(gaps, "lost"), (range_list{{7, 7}}));
  EXPECT_EQ(ranges(gaps, "late"), (range_list{{7, 7}})) << "the late packet is listed where it fell";
}

TEST_F(LifecycleTest, ADroppedPacketIsDeclaredLostAfterTheTimeWindowAndALateArrivalIsOnlyFlagged) {
  start_server({{"--reorder-window", "1s"}});
  auto c = connect();
  const std::string id = "lost-t";
  post_range(c, id, 1, 3);
  const auto gap_opened = steady_clock::now();
  post_range(c, id, 5, 10);
  auto gaps = get_ok(c, "/v1/calls/" + id + "/gaps");
  if (steady_clock::now() - gap_opened < 700ms) {  // (a very slow machine could be past the window already)
    EXPECT_EQ(ranges(gaps, "open"), (range_list{{4, 4}}));
    EXPECT_TRUE(ranges(gaps, "lost").empty());
    EXPECT_EQ(all_jobs(c, "call_id=" + id).size(), 3u) << "a segment was cut across the open gap";
  }
  ASSERT_TRUE(wait_until(
      [&] {
        gaps = get_ok(c, "/v1/calls/" + id + "/gaps");
        return !gaps.at("lost").as_array().empty();
      },
      5s));
  EXPECT_GE(steady_clock::now() - gap_opened, 1000ms) << "declared lost before the window passed";
  EXPECT_EQ(ranges(gaps, "lost"), (range_list{{4, 4}}));
  EXPECT_TRUE(ranges(gaps, "open").empty());
  ASSERT_TRUE(wait_until([&] { return tally(all_jobs(c, "call_id=" + id)).succeeded == 9; }, 10s));

  const auto r = post(c, id, 4);
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(body_object(r).at("arrival"), "late_after_lost");
  EXPECT_EQ(db().scalar("SELECT late FROM packets WHERE call_id = 'lost-t' AND sequence = 4"), 1);
  EXPECT_EQ(as_int(call(c, id).at("late_packets")), 1);
  ASSERT_EQ(end(c, id).status, 200);
  ASSERT_TRUE(wait_state(c, id, "COMPLETED"));
  EXPECT_EQ(all_jobs(c, "call_id=" + id).size(), 9u) << "the late packet created a job";
  std::vector<std::string> expected;
  for (std::int64_t s = 1; s <= 10; ++s)
    if (s != 4) expected.push_back(data_of(id, s));
  EXPECT_EQ(get_ok(c, "/v1/calls/" + id + "/transcript").at("text"), joined(expected).c_str());
}

TEST_F(LifecycleTest, AWindowInPacketsAndTimeDeclaresAGapLostByWhicheverComesFirst) {
  start_server({{"--reorder-window", "5,300ms"}});
  auto c = connect();
  const std::string id = "lost-both";
  // Gap at 4 with only two packets past it: the time bound (300 ms) declares it lost.
  post_range(c, id, 1, 3);
  const auto opened = steady_clock::now();
  post_range(c, id, 5, 6);
  json::object gaps;
  ASSERT_TRUE(wait_until(
      [&] {
        gaps = get_ok(c, "/v1/calls/" + id + "/gaps");
        return !gaps.at("lost").as_array().empty();
      },
      5s));
  EXPECT_GE(steady_clock::now() - opened, 300ms);
  EXPECT_EQ(ranges(gaps, "lost"), (range_list{{4, 4}}));
  // Gap at 8 with five packets past it: the packet bound declares it lost at once, long before 300 ms.
  post_ok(c, id, 7);
  const auto before = steady_clock::now();
  post_range(c, id, 9, 13);
  gaps = get_ok(c, "/v1/calls/" + id + "/gaps");
  if (steady_clock::now() - before < 250ms) {  // (a very slow machine could be past the time bound)
    EXPECT_EQ(ranges(gaps, "lost"), (range_list{{4, 4}, {8, 8}})) << "the packet bound did not apply";
  }
  ASSERT_EQ(end(c, id).status, 200);
  ASSERT_TRUE(wait_state(c, id, "COMPLETED"));
  const auto o = call(c, id);
  EXPECT_EQ(as_int(o.at("lost_packets")), 2);
  EXPECT_EQ(as_int(o.at("lost_ranges")), 2);
  std::vector<std::string> expected;
  for (std::int64_t s = 1; s <= 13; ++s)
    if (s != 4 && s != 8) expected.push_back(data_of(id, s));
  EXPECT_EQ(get_ok(c, "/v1/calls/" + id + "/transcript").at("text"), joined(expected).c_str());
  EXPECT_EQ(all_jobs(c, "call_id=" + id).size(), 11u);
}

TEST_F(LifecycleTest, OneCallsPacketsFromEightConnectionsAtOnceKeepItsSequenceStateExact) {
  // The window (128 packets) is wider than the shuffle (blocks of 32), so nothing may be declared lost.
  start_server({{"--reorder-window", "128"}, {"--segment-packets", "5"}, {"--segment-idle", "60s"},
                {"--workers", "4"}});
  const std::string id = "crowd";
  constexpr int connections = 8;
  constexpr std::int64_t block = 32;
  constexpr std::int64_t blocks = 12;
  constexpr std::int64_t n = block * blocks;  // 384
  // Each block is shuffled and split across the connections, which send their shares at once; a barrier
  // closes each block. Each connection also re-sends one packet of the previous block (a duplicate).
  std::mt19937 rng(7);
  std::vector<std::vector<std::int64_t>> plan(blocks);
  for (std::int64_t b = 0; b < blocks; ++b) {
    plan[b].resize(block);
    std::iota(plan[b].begin(), plan[b].end(), b * block + 1);
    std::shuffle(plan[b].begin(), plan[b].end(), rng);
  }
  std::barrier sync(connections);
  std::vector<std::string> failures(connections);
  std::vector<int> duplicates(connections, 0), dup_sent(connections, 0);
  std::vector<std::thread> threads;
  for (int t = 0; t < connections; ++t)
    threads.emplace_back([&, t] {
      try {
        connection c(server().port(), 10s);
        const auto per = block / connections;
        for (std::int64_t b = 0; b < blocks; ++b) {
          for (std::int64_t k = 0; k < per; ++k) {
            const auto s = plan[b][static_cast<std::size_t>(t * per + k)];
            const auto r = post_packet(c, id, s, data_of(id, s));
            if (r.status != 202) failures[t] += "#" + std::to_string(s) + ": " + r.body + "\n";
            else if (body_object(r).at("duplicate").as_bool()) failures[t] += "#" + std::to_string(s) + " dup?\n";
          }
          if (b > 0) {
            const auto s = plan[b - 1][static_cast<std::size_t>((t * 5 + b) % block)];
            const auto r = post_packet(c, id, s, data_of(id, s));
            ++dup_sent[t];
            if (r.status == 202 && body_object(r).at("duplicate").as_bool()) ++duplicates[t];
            else failures[t] += "repeat of #" + std::to_string(s) + ": " + r.body + "\n";
          }
          sync.arrive_and_wait();
        }
      } catch (const std::exception& e) {
        failures[t] += e.what();
        // Never leave the others waiting at the barrier.
        sync.arrive_and_drop();
      }
    });
  for (auto& t : threads) t.join();
  int dups = 0;
  for (int t = 0; t < connections; ++t) {
    EXPECT_TRUE(failures[t].empty()) << "connection " << t << ":\n" << failures[t];
    EXPECT_EQ(duplicates[t], dup_sent[t]);
    dups += duplicates[t];
  }

  auto c = connect();
  auto o = call(c, id);
  EXPECT_EQ(o.at("state"), "IN_PROGRESS");
  EXPECT_EQ(as_int(o.at("last_sequence")), n);
  EXPECT_EQ(as_int(o.at("expected_sequence")), n + 1);
  EXPECT_EQ(as_int(o.at("packets_received")), n);
  EXPECT_EQ(as_int(o.at("duplicate_packets")), dups);
  EXPECT_EQ(as_int(o.at("missing_packets")), 0);
  EXPECT_EQ(as_int(o.at("lost_packets")), 0);
  EXPECT_EQ(as_int(o.at("lost_ranges")), 0);
  EXPECT_EQ(as_int(o.at("late_packets")), 0);
  const auto gaps = get_ok(c, "/v1/calls/" + id + "/gaps");
  EXPECT_TRUE(ranges(gaps, "open").empty()) << json::serialize(gaps);
  EXPECT_TRUE(ranges(gaps, "lost").empty()) << json::serialize(gaps);
  // Whole segments of 5 only, until the end cuts the last 4.
  EXPECT_EQ(all_jobs(c, "call_id=" + id).size(), static_cast<std::size_t>(n / 5));
  ASSERT_EQ(end(c, id).status, 200);
  ASSERT_TRUE(wait_state(c, id, "COMPLETED"));

  const auto jobs = all_jobs(c, "call_id=" + id);
  ASSERT_EQ(jobs.size(), static_cast<std::size_t>((n + 4) / 5));
  for (std::size_t i = 0; i < jobs.size(); ++i) {
    const auto first = static_cast<std::int64_t>(i) * 5 + 1;
    EXPECT_EQ(as_int(jobs[i].at("first_sequence")), first);
    EXPECT_EQ(as_int(jobs[i].at("last_sequence")), std::min(first + 4, n));
    EXPECT_EQ(jobs[i].at("state"), "succeeded");
  }
  std::vector<std::string> expected;
  for (std::int64_t s = 1; s <= n; ++s) expected.push_back(data_of(id, s));
  EXPECT_EQ(get_ok(c, "/v1/calls/" + id + "/transcript").at("text"), joined(expected).c_str());
  const auto file = db();
  EXPECT_EQ(file.packet_count(id), n);
  EXPECT_EQ(file.scalar("SELECT COUNT(DISTINCT sequence) FROM packets WHERE call_id = 'crowd'"), n);
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM packets WHERE call_id = 'crowd' AND data != 'crowd/' || sequence"), 0);
  EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM call_gaps WHERE call_id = 'crowd'"), 0);
  EXPECT_TRUE(server().records_where(msg_is("packets declared lost")).empty());
}

}  // namespace
}  // namespace aipbx::itest
