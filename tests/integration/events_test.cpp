// GET /v1/events against the real binary: Server-Sent Events read off a raw socket (harness/sse_client) and
// WebSocket messages (harness/stream_clients). What a subscriber is given is checked against the server's
// own event log in its SQLite file (the `events` table): every id once, in order, the same kinds and calls.
#include "harness/api.hpp"
#include "harness/fixture.hpp"
#include "harness/sse_client.hpp"
#include "harness/stream_clients.hpp"

#include <boost/json/parse.hpp>

#include <atomic>
#include <csignal>
#include <map>
#include <thread>

namespace aipbx::itest {
namespace {

constexpr const char* token = "events-0123456789abcdef0123456789";

// The store's log: id -> (kind, call_id).
std::map<std::int64_t, std::pair<std::string, std::string>> stored_events(const sqlite_reader& db) {
  std::map<std::int64_t, std::pair<std::string, std::string>> out;
  for (const auto& row : db.rows("SELECT id, kind, call_id FROM events ORDER BY id"))
    out.emplace(std::stoll(*row[0]), std::pair{*row[1], *row[2]});
  return out;
}

std::int64_t log_head(const sqlite_reader& db) { return db.scalar("SELECT last_id FROM event_log_state"); }

std::vector<std::int64_t> ids(std::int64_t first, std::int64_t last) {
  std::vector<std::int64_t> out;
  for (auto i = first; i <= last; ++i) out.push_back(i);
  return out;
}

class EventsTest : public integration_test {
 protected:
  // Reads log events until one with id `last` came; their ids are appended to `out`.
  void read_through(sse_client& s, std::int64_t last, std::vector<std::int64_t>& out,
                    std::vector<sse_frame>* frames = nullptr) {
    while (out.empty() || out.back() < last) {
      auto stop = s.read_events(out, 1, 10s, frames);
      ASSERT_TRUE(stop && stop->event.empty()) << "the stream ended or gave a notice before event " << last;
    }
  }
};

TEST_F(EventsTest, TheStoreThenLiveEventsWithTheirIdsAsServerSentEvents) {
  start_server({{"--workers", "0"}});
  auto c = connect();
  for (std::int64_t s : {1, 2, 4}) ASSERT_EQ(post_packet(c, "sse-a", s, "a" + std::to_string(s)).status, 202);
  sse_client sub(server().port(), "/v1/events?after=0");
  const auto& head = sub.head();
  ASSERT_EQ(head.status, 200) << head.body;
  EXPECT_EQ(head.header("Content-Type"), "text/event-stream");
  EXPECT_EQ(head.header("Cache-Control"), "no-cache");
  EXPECT_FALSE(head.has_header("Content-Length"));
  // call.created, segment 1, segment 2, gap 3 opened (4 is not cut: 3 is missing).
  std::vector<std::int64_t> got;
  std::vector<sse_frame> frames;
  read_through(sub, 4, got, &frames);
  EXPECT_EQ(sub.retry(), 1000);
  EXPECT_EQ(got, ids(1, 4));
  std::vector<std::string> kinds;
  for (const auto& f : frames) {
    const auto e = f.json();
    EXPECT_EQ(as_int(e.at("id")), *f.id);
    EXPECT_EQ(e.at("call_id").as_string(), "sse-a");
    kinds.emplace_back(e.at("kind").as_string());
  }
  EXPECT_EQ(kinds, (std::vector<std::string>{"call.created", "segment.cut", "segment.cut", "gap.opened"}));
  EXPECT_EQ(frames[3].json().at("data").as_object().at("first").as_int64(), 3);
  // Live: what happens now reaches the open stream.
  ASSERT_EQ(post_packet(c, "sse-a", 3, "a3").status, 202);  // fills the gap, cuts 3 and 4
  frames.clear();
  read_through(sub, 7, got, &frames);
  EXPECT_EQ(got, ids(1, 7));
  EXPECT_EQ(frames[0].json().at("kind").as_string(), "gap.filled");
  const auto stored = stored_events(db());
  ASSERT_EQ(stored.size(), 7u);
  EXPECT_EQ(stored.at(5).first, "gap.filled");
}

// The subscriber drops its connection three times while packets of three calls and their AI jobs go on;
// each time it reconnects with Last-Event-ID (once with ?after= as well, which the header overrides). In
// the end it has had every event of the store's log exactly once, in order.
TEST_F(EventsTest, ResumeAfterDisconnectLosesNothingAndDoublesNothing) {
  allow_error_log("ai job dead");  // 30 % failures: now and then a job fails five times
  start_server({{"--mock-delay-ms", "0:3"}, {"--mock-failure-rate", "0.3"}, {"--retry-base-delay", "10ms"}});
  std::atomic<bool> writing{true};
  std::thread writer([&] {
    auto c = connect();
    for (std::int64_t s = 1; s <= 150; ++s)
      for (const std::string call : {"r1", "r2", "r3"}) ASSERT_EQ(post_packet(c, call, s, call + "-" + std::to_string(s)).status, 202);
    writing = false;
  });
  std::vector<std::int64_t> got;
  std::optional<std::int64_t> last;
  for (int round = 0; round < 4; ++round) {
    header_list headers;
    if (last) headers.emplace_back("Last-Event-ID", std::to_string(*last));
    sse_client sub(server().port(), round == 2 ? "/v1/events?after=0" : round == 0 ? "/v1/events?after=0" : "/v1/events",
                   headers);
    ASSERT_EQ(sub.head().status, 200);
    if (round < 3) {
      auto stop = sub.read_events(got, 120 + 37 * static_cast<std::size_t>(round));
      ASSERT_TRUE(stop && stop->event.empty());
      last = got.back();
      sub.close();  // mid-stream
      continue;
    }
    writer.join();
    // The calls end, so every job settles and the log stops growing. (A call is FAILED from its first dead
    // job on, while its other jobs may still run: it is the jobs that say when the log is still.)
    auto c = connect();
    for (const std::string call : {"r1", "r2", "r3"}) ASSERT_EQ(c.post_json("/v1/calls/" + call + "/end", "").status, 200);
    ASSERT_TRUE(wait_until([&] {
      for (const std::string call : {"r1", "r2", "r3"})
        if (call_state(c, call) == "IN_PROGRESS" || call_state(c, call) == "PROCESSING_AI") return false;
      for (const std::string state : {"queued", "running"})
        if (!get_ok(c, "/v1/jobs?state=" + state + "&limit=1").at("jobs").as_array().empty()) return false;
      return true;
    }, 30s)) << server().tail();
    read_through(sub, log_head(db()), got);
  }
  const auto stored = stored_events(db());
  ASSERT_EQ(got.size(), stored.size());
  EXPECT_EQ(got, ids(1, static_cast<std::int64_t>(stored.size())));
  EXPECT_GT(stored.size(), 3u * 150u * 2u) << "each packet tells at least its segment and its job";
}

TEST_F(EventsTest, FiltersByCallAndKind) {
  start_server({{"--workers", "0"}});
  auto c = connect();
  for (std::int64_t s : {1, 3, 2}) ASSERT_EQ(post_packet(c, "f-a", s, "a").status, 202);
  for (std::int64_t s : {1, 4}) ASSERT_EQ(post_packet(c, "f-b", s, "b").status, 202);
  sse_client sub(server().port(), "/v1/events?after=0&call=f-b&kind=gap.opened,call.created");
  std::vector<sse_frame> frames;
  std::vector<std::int64_t> got;
  auto stop = sub.read_events(got, 2, 10s, &frames);
  ASSERT_TRUE(stop && stop->event.empty());
  ASSERT_EQ(frames.size(), 2u);
  EXPECT_EQ(frames[0].json().at("kind").as_string(), "call.created");
  EXPECT_EQ(frames[1].json().at("kind").as_string(), "gap.opened");
  for (const auto& f : frames) EXPECT_EQ(f.json().at("call_id").as_string(), "f-b");
  // Only what matches comes live too.
  ASSERT_EQ(post_packet(c, "f-a", 9, "a").status, 202);  // a gap of f-a: not for this subscriber
  ASSERT_EQ(c.post_json("/v1/calls/f-b/end", "").status, 200);  // not of these kinds
  ASSERT_EQ(post_packet(c, "f-c", 1, "c").status, 202);  // another call
  ASSERT_EQ(post_packet(c, "f-d", 5, "d").status, 202);
  sse_client later(server().port(), "/v1/events?after=0&kind=gap.opened");
  std::vector<std::int64_t> gaps;
  stop = later.read_events(gaps, 3);
  ASSERT_TRUE(stop && stop->event.empty());
  EXPECT_EQ(gaps.size(), 3u);  // f-a 2, f-b 2-3, f-a 4-8 (f-d's comes fourth)
  EXPECT_THROW(sub.next(500ms), std::runtime_error) << "nothing more for f-b's gap and creation";

  // Bad filters are 422 and open nothing.
  for (const std::string bad : {"/v1/events?kind=call.craeted", "/v1/events?kind=", "/v1/events?call=a%20b",
                                "/v1/events?after=-1", "/v1/events?after=x"}) {
    sse_client s(server().port(), bad);
    EXPECT_EQ(s.head().status, 422) << bad << " " << s.head().body;
    EXPECT_NE(s.head().body.find("\"detail\""), std::string::npos) << s.head().body;
  }
  sse_client bad_id(server().port(), "/v1/events", {{"Last-Event-ID", "seven"}});
  EXPECT_EQ(bad_id.head().status, 422);
  EXPECT_NE(bad_id.head().body.find("last-event-id"), std::string::npos) << bad_id.head().body;
}

// A subscriber that never reads while packets are ingested: ingest goes on (every packet answered 202),
// and the subscriber, once its queue of --event-buffer events is full, is cut. When it reads at last it
// finds its events, then the notice to resume after the last of them; resuming there gives the rest.
TEST_F(EventsTest, ASlowSubscriberIsCutAndNeverSlowsIngest) {
  start_server({{"--workers", "0"}, {"--event-buffer", "16"}, {"--request-timeout", "60s"}});
  sse_client stuck(server().port(), "/v1/events?after=0", {}, 2048);  // a small window, never read for now
  auto c = connect();
  // Wait until the server has taken the subscription (it answers as soon as the hub has it).
  ASSERT_TRUE(wait_until([&] { return c.get("/metrics").body.find("aipbx_event_subscribers{transport=\"sse\"} 1") != std::string::npos; }, 10s));
  constexpr int packets = 8000;
  for (int s = 1; s <= packets; ++s)
    ASSERT_EQ(post_packet(c, "slow-" + std::to_string(s % 30), (s - 1) / 30 + 1, "x").status, 202);
  ASSERT_TRUE(wait_until([&] {
    return c.get("/metrics").body.find("aipbx_event_subscribers_ended_total{reason=\"slow\"} 1") != std::string::npos;
  }, 20s)) << c.get("/metrics").body;
  // Reading now: the events that were queued, then the notice.
  std::vector<std::int64_t> got;
  auto notice = stuck.read_events(got, 100000, 20s);
  ASSERT_TRUE(notice && notice->event == "resume") << (notice ? notice->event : "closed");
  EXPECT_EQ(got, ids(1, static_cast<std::int64_t>(got.size())));
  ASSERT_TRUE(notice->id);
  EXPECT_EQ(*notice->id, got.back());
  EXPECT_EQ(notice->json().at("reason").as_string(), "slow_subscriber");
  EXPECT_EQ(as_int(notice->json().at("after")), got.back());
  EXPECT_LT(got.size(), static_cast<std::size_t>(packets)) << "the subscriber was never behind";
  EXPECT_FALSE(stuck.next(5s)) << "the server closes the stream after the notice";
  // Resuming there misses nothing.
  sse_client again(server().port(), "/v1/events", {{"Last-Event-ID", std::to_string(*notice->id)}});
  read_through(again, log_head(db()), got);
  EXPECT_EQ(got, ids(1, log_head(db())));
  EXPECT_EQ(db().scalar("SELECT COUNT(*) FROM packets"), packets);
}

TEST_F(EventsTest, TheSubscriberLimitRefusesWith503AndAFreedSlotIsTaken) {
  start_server({{"--max-subscribers", "2"}});
  sse_client a(server().port(), "/v1/events");
  sse_client b(server().port(), "/v1/events");
  ASSERT_EQ(a.head().status, 200);
  ASSERT_EQ(b.head().status, 200);
  sse_client c(server().port(), "/v1/events");
  EXPECT_EQ(c.head().status, 503);
  EXPECT_EQ(c.head().header("Retry-After"), "5");
  EXPECT_NE(c.head().body.find("too_many_subscribers"), std::string::npos) << c.head().body;
  ws_client refused_ws(server().port(), "/v1/events");
  ASSERT_TRUE(refused_ws.refused());
  EXPECT_EQ(refused_ws.refused()->status, 503);
  a.close();
  // The server notices the close at once (it watches the connection) and frees the slot.
  bool admitted = false;
  ASSERT_TRUE(wait_until([&] {
    sse_client d(server().port(), "/v1/events");
    admitted = d.head().status == 200;
    return admitted;
  }, 10s));
  auto conn = connect();
  const auto metrics = conn.get("/metrics").body;
  EXPECT_NE(metrics.find("aipbx_event_subscribers_ended_total{reason=\"refused\"}"), std::string::npos);
  EXPECT_NE(metrics.find("aipbx_event_subscribers{transport=\"limit\"} 2"), std::string::npos) << metrics;
}

// Bearer tokens as on every route; an EventSource cannot set a header, so ?token= (as for the streams).
TEST_F(EventsTest, TokensInTheHeaderOrTheQuery) {
  start_server({{"--api-token", token}});
  for (const auto& [target, headers, status] :
       std::vector<std::tuple<std::string, header_list, int>>{
           {"/v1/events", {}, 401},
           {"/v1/events?token=wrong-token-000000000000", {}, 401},
           {"/v1/events", {{"Authorization", "Bearer wrong-token-000000000000"}}, 401},
           {"/v1/events", {{"Authorization", std::string("Bearer ") + token}}, 200},
           {std::string("/v1/events?kind=dtmf&token=") + token, {}, 200},
       }) {
    sse_client s(server().port(), target, headers);
    EXPECT_EQ(s.head().status, status) << target << " " << s.head().body;
    if (status == 401) {
      EXPECT_TRUE(s.head().header("WWW-Authenticate").starts_with("Bearer")) << target;
    }
  }
  ws_client no_token(server().port(), "/v1/events");
  ASSERT_TRUE(no_token.refused());
  EXPECT_EQ(no_token.refused()->status, 401);
  ws_client with_token(server().port(), std::string("/v1/events?token=") + token);
  EXPECT_FALSE(with_token.refused());
}

TEST_F(EventsTest, TheSameEventsOverAWebSocketWithHeartbeats) {
  start_server({{"--workers", "0"}, {"--event-heartbeat", "200ms"}});
  auto c = connect();
  ASSERT_EQ(post_packet(c, "ws-a", 1, "a").status, 202);
  ws_client ws(server().port(), "/v1/events?after=0&call=ws-a");
  ASSERT_FALSE(ws.refused());
  std::vector<boost::json::object> events;
  bool heartbeat = false;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while ((events.size() < 2 || !heartbeat) && std::chrono::steady_clock::now() < deadline) {
    auto m = ws.read(5s);
    ASSERT_TRUE(m) << "the server closed the stream";
    auto o = boost::json::parse(m->data).as_object();
    if (o.contains("control")) heartbeat = heartbeat || o.at("control").as_string() == "heartbeat";
    else events.push_back(std::move(o));
  }
  ASSERT_EQ(events.size(), 2u);
  EXPECT_EQ(as_int(events[0].at("id")), 1);
  EXPECT_EQ(events[0].at("kind").as_string(), "call.created");
  EXPECT_EQ(events[1].at("kind").as_string(), "segment.cut");
  EXPECT_TRUE(heartbeat);
  // Live, then the client closes; the server lets it go.
  ASSERT_EQ(post_packet(c, "ws-a", 2, "a").status, 202);
  for (;;) {
    auto m = ws.read(5s);
    ASSERT_TRUE(m);
    auto o = boost::json::parse(m->data).as_object();
    if (o.contains("control")) continue;
    EXPECT_EQ(as_int(o.at("id")), 3);
    break;
  }
  ws.close();
  ASSERT_TRUE(wait_until([&] {
    return c.get("/metrics").body.find("aipbx_event_subscribers{transport=\"websocket\"} 0") != std::string::npos;
  }, 10s));
}

TEST_F(EventsTest, HeartbeatsKeepAnIdleStreamOpen) {
  start_server({{"--event-heartbeat", "100ms"}});
  sse_client sub(server().port(), "/v1/events");
  ASSERT_EQ(sub.head().status, 200);
  EXPECT_THROW(sub.next(600ms), std::runtime_error);  // nothing happens: no event...
  EXPECT_GE(sub.keep_alives(), 3);                     // ...but keep-alives
}

TEST_F(EventsTest, ShutdownTellsSubscribersWhereToResume) {
  start_server({{"--workers", "0"}});
  auto c = connect();
  ASSERT_EQ(post_packet(c, "s", 1, "a").status, 202);
  sse_client sub(server().port(), "/v1/events?after=0");
  std::vector<std::int64_t> got;
  read_through(sub, 2, got);
  ws_client ws(server().port(), "/v1/events?after=2");
  ASSERT_FALSE(ws.refused());
  server().terminate();
  auto notice = sub.read_events(got, 10);
  ASSERT_TRUE(notice && notice->event == "resume");
  EXPECT_EQ(notice->json().at("reason").as_string(), "shutdown");
  EXPECT_EQ(*notice->id, 2);
  auto m = ws.read(10s);
  ASSERT_TRUE(m);
  EXPECT_EQ(boost::json::parse(m->data).as_object().at("control").as_string(), "resume");
  EXPECT_EQ(ws.wait_close(10s).code, 1001);
  EXPECT_EQ(server().wait_exit(10s), 0);
}

// Events older than --event-retention are pruned; a subscriber that asks for them is told, then given what
// is left.
TEST_F(EventsTest, PrunedEventsAreToldNotSkipped) {
  start_server({{"--workers", "0"}, {"--event-retention", "1s"}});
  auto c = connect();
  ASSERT_EQ(post_packet(c, "old", 1, "a").status, 202);  // events 1, 2
  ASSERT_TRUE(wait_until([&] { return db().scalar("SELECT pruned_through FROM event_log_state") == 2; }, 15s));
  ASSERT_EQ(post_packet(c, "new", 1, "a").status, 202);  // events 3, 4
  sse_client sub(server().port(), "/v1/events?after=0");
  auto first = sub.next();
  ASSERT_TRUE(first);
  EXPECT_EQ(first->event, "truncated");
  EXPECT_EQ(first->id, 2);
  EXPECT_EQ(as_int(first->json().at("requested")), 0);
  std::vector<std::int64_t> got;
  read_through(sub, 4, got);
  EXPECT_EQ(got, ids(3, 4));
}

}  // namespace
}  // namespace aipbx::itest
