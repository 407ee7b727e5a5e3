// The read API: GET /v1/calls (keyset paging), /v1/calls/{id}, /packets (paging in sequence order), /gaps,
// /events and a call's tracks, and the JSON 404 for calls that do not exist.
#include <sqlite3.h>

#include <algorithm>
#include <boost/json/parse.hpp>
#include <filesystem>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "harness/fixture.hpp"

namespace aipbx::itest {
namespace {

namespace json = boost::json;

class ReadApiTest : public integration_test {
 protected:
  // Packets only: an open gap is not declared lost by the clock while a slow build is still reading it.
  void SetUp() override { start_server({{"--reorder-window", "50"}}); }

  void ingest(connection& c, const std::string& call_id, std::int64_t sequence) {
    const auto r = c.post_json("/v1/call/stream/" + call_id,
                               packet_json(sequence, data_of(call_id, sequence), timestamp_of(sequence)));
    ASSERT_EQ(r.status, 202) << r.body;
  }

  static std::string data_of(const std::string& call_id, std::int64_t sequence) {
    return call_id + "/" + std::to_string(sequence);
  }
  static double timestamp_of(std::int64_t sequence) {
    return 1700000000.0 + static_cast<double>(sequence) * 0.02;
  }
};

std::vector<std::string> ids_of(const json::object& page) {
  std::vector<std::string> out;
  for (const auto& c : page.at("calls").as_array()) out.emplace_back(c.as_object().at("id").as_string());
  return out;
}

TEST_F(ReadApiTest, ListCallsPagesInIdOrder) {
  auto c = connect();
  const std::vector<std::string> ids{"c05", "c01", "c07", "c03", "c02", "c06", "c04"};
  for (const auto& id : ids) ingest(c, id, 1);

  std::vector<std::string> seen;
  std::string after;
  int pages = 0;
  for (;; ++pages) {
    ASSERT_LT(pages, 10) << "paging does not end";
    const auto r = c.get("/v1/calls?limit=3" + (after.empty() ? std::string{} : "&after=" + after));
    ASSERT_EQ(r.status, 200) << r.body;
    const auto page = body_object(r);
    const auto page_ids = ids_of(page);
    EXPECT_LE(page_ids.size(), 3u);
    seen.insert(seen.end(), page_ids.begin(), page_ids.end());
    if (page.at("next_after").is_null()) break;
    after = std::string(page.at("next_after").as_string());
    EXPECT_EQ(after, page_ids.back());
  }
  EXPECT_EQ(pages + 1, 3);
  EXPECT_EQ(seen, (std::vector<std::string>{"c01", "c02", "c03", "c04", "c05", "c06", "c07"}));

  // Without a limit every call fits in the default page; a filter on the state keeps them all.
  auto all = body_object(c.get("/v1/calls"));
  EXPECT_EQ(ids_of(all).size(), 7u);
  EXPECT_TRUE(all.at("next_after").is_null());
  EXPECT_EQ(ids_of(body_object(c.get("/v1/calls?state=IN_PROGRESS"))).size(), 7u);
  EXPECT_EQ(ids_of(body_object(c.get("/v1/calls?state=COMPLETED"))).size(), 0u);
  // A cursor past the end gives an empty last page.
  const auto end = body_object(c.get("/v1/calls?after=zzz"));
  EXPECT_TRUE(ids_of(end).empty());
  EXPECT_TRUE(end.at("next_after").is_null());
  // Calls in the list carry the same fields as GET /v1/calls/{id}, but for the state history.
  const auto first = all.at("calls").as_array().front().as_object();
  auto single = body_object(c.get("/v1/calls/c01"));
  ASSERT_TRUE(single.contains("transitions"));
  single.erase("transitions");
  EXPECT_EQ(single.at("events"), json::array{});
  EXPECT_EQ(single.at("dtmf"), "");
  single.erase("events");
  single.erase("dtmf");
  EXPECT_FALSE(single.contains("tracks")) << "a call that is no track of a stream";
  EXPECT_TRUE(first.at("track").is_null());
  EXPECT_TRUE(first.at("primary_call").is_null());
  EXPECT_EQ(first, single);
}

TEST_F(ReadApiTest, BadQueryParametersAre422) {
  auto c = connect();
  ingest(c, "q1", 1);
  for (const std::string target :
       {"/v1/calls?limit=0", "/v1/calls?limit=1001", "/v1/calls?limit=abc",
        "/v1/calls?limit=", "/v1/calls?limit=1.5", "/v1/calls?state=BOGUS", "/v1/calls/q1/packets?limit=0",
        "/v1/calls/q1/packets?after=-2", "/v1/calls/q1/packets?after=x", "/v1/calls/q1/events?limit=0",
        "/v1/calls/q1/events?limit=1001", "/v1/calls/q1/events?after=-1", "/v1/calls/q1/events?after=1.5"}) {
    SCOPED_TRACE(target);
    const auto r = c.get(target);
    ASSERT_TRUE(is_json_error(r, 422));
    const auto detail = json::parse(r.body).at("detail").as_array();
    ASSERT_FALSE(detail.empty());
    EXPECT_EQ(detail[0].at("loc").as_array().at(0), "query") << r.body;
  }
}

TEST_F(ReadApiTest, GetCallDescribesTheCall) {
  auto c = connect();
  for (const std::int64_t s : {1, 2, 3, 6}) ingest(c, "desc", s);
  const auto r = c.get("/v1/calls/desc");
  ASSERT_EQ(r.status, 200) << r.body;
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  const auto o = body_object(r);
  EXPECT_EQ(o.at("id"), "desc");
  EXPECT_EQ(o.at("state"), "IN_PROGRESS");
  EXPECT_EQ(o.at("last_sequence"), 6);
  EXPECT_EQ(o.at("expected_sequence"), 4);
  EXPECT_EQ(o.at("packets_received"), 4);
  EXPECT_EQ(o.at("missing_packets"), 2);
  EXPECT_EQ(o.at("missing_ranges"), 1);
  EXPECT_DOUBLE_EQ(o.at("first_timestamp").to_number<double>(), timestamp_of(1));
  EXPECT_DOUBLE_EQ(o.at("last_timestamp").to_number<double>(), timestamp_of(6));
  // The API and the file agree.
  EXPECT_EQ(db().scalar("SELECT last_sequence FROM calls WHERE id = 'desc'"), 6);
  EXPECT_EQ(db().scalar("SELECT packets_received FROM calls WHERE id = 'desc'"), 4);
}

TEST_F(ReadApiTest, PacketsPageInSequenceOrder) {
  auto c = connect();
  std::vector<std::int64_t> order(23);
  std::iota(order.begin(), order.end(), 1);
  std::mt19937 random(42);
  std::shuffle(order.begin(), order.end(), random);
  for (const auto s : order) ingest(c, "pk", s);

  std::vector<std::int64_t> seen;
  std::string after;
  int pages = 0;
  for (;; ++pages) {
    ASSERT_LT(pages, 20) << "paging does not end";
    const auto r =
        c.get("/v1/calls/pk/packets?limit=5" + (after.empty() ? std::string{} : "&after=" + after));
    ASSERT_EQ(r.status, 200) << r.body;
    const auto page = body_object(r);
    EXPECT_EQ(page.at("call_id"), "pk");
    const auto& packets = page.at("packets").as_array();
    EXPECT_LE(packets.size(), 5u);
    for (const auto& p : packets) {
      const auto& o = p.as_object();
      const auto s = o.at("sequence").to_number<std::int64_t>();
      EXPECT_EQ(o.at("data"), json::string_view(data_of("pk", s)));
      EXPECT_DOUBLE_EQ(o.at("timestamp").to_number<double>(), timestamp_of(s));
      seen.push_back(s);
    }
    if (page.at("next_after").is_null()) break;
    after = std::to_string(page.at("next_after").to_number<std::int64_t>());
    EXPECT_EQ(page.at("next_after"), packets.back().at("sequence"));
  }
  EXPECT_EQ(pages + 1, 5);
  std::vector<std::int64_t> expected(23);
  std::iota(expected.begin(), expected.end(), 1);
  EXPECT_EQ(seen, expected);

  // `after` in the middle of the stream, and the default page size.
  const auto tail = body_object(c.get("/v1/calls/pk/packets?after=20"));
  ASSERT_EQ(tail.at("packets").as_array().size(), 3u);
  EXPECT_EQ(tail.at("packets").as_array()[0].at("sequence"), 21);
  EXPECT_EQ(body_object(c.get("/v1/calls/pk/packets")).at("packets").as_array().size(), 23u);
}

TEST_F(ReadApiTest, GapsListsTheMissingRanges) {
  auto c = connect();
  for (const std::int64_t s : {1, 4, 5, 10}) ingest(c, "gp", s);
  const auto r = c.get("/v1/calls/gp/gaps");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto o = body_object(r);
  EXPECT_EQ(o.at("call_id"), "gp");
  EXPECT_EQ(o.at("last_sequence"), 10);
  EXPECT_EQ(o.at("expected_sequence"), 2);
  EXPECT_EQ(o.at("missing_packets"), 6);
  const auto& missing = o.at("open").as_array();
  ASSERT_EQ(missing.size(), 2u);
  EXPECT_EQ(missing[0], (json::value{{"first", 2}, {"last", 3}, {"count", 2}}));
  EXPECT_EQ(missing[1], (json::value{{"first", 6}, {"last", 9}, {"count", 4}}));
}

TEST_F(ReadApiTest, UnknownCallIs404WithJsonBody) {
  auto c = connect();
  ingest(c, "known", 1);
  for (const std::string target : {"/v1/calls/unknown", "/v1/calls/unknown/packets", "/v1/calls/unknown/gaps",
                                   "/v1/calls/unknown/events"}) {
    SCOPED_TRACE(target);
    const auto r = c.get(target);
    EXPECT_TRUE(is_json_error(r, 404));
  }
  EXPECT_FALSE(db().call_exists("unknown"));
}

TEST_F(ReadApiTest, ServiceEndpointsAnswer) {
  auto c = connect();
  const auto ready = c.get("/readyz");
  EXPECT_EQ(ready.status, 200) << ready.body;
  EXPECT_EQ(body_object(ready).at("status"), "ready");

  // The dashboard: its page and the two assets the build bundled, embedded in the binary.
  const auto root = c.get("/");
  EXPECT_EQ(root.status, 200);
  EXPECT_EQ(root.header("Content-Type").rfind("text/html", 0), 0u);
  EXPECT_NE(root.body.find("/ui/dashboard.js"), std::string::npos) << root.body;
  for (const char* asset : {"/ui/dashboard.js", "/ui/dashboard.css"}) {
    const auto r = c.get(asset);
    EXPECT_EQ(r.status, 200) << asset;
    EXPECT_GT(r.body.size(), 1000u) << asset;
  }
  EXPECT_EQ(c.get("/ui/dashboard.js").header("Content-Type").rfind("application/javascript", 0), 0u);
  EXPECT_TRUE(is_json_error(c.get("/ui/nope.js"), 404));

  const auto spec = c.get("/openapi.json");
  ASSERT_EQ(spec.status, 200);
  EXPECT_EQ(spec.header("Content-Type").rfind("application/json", 0), 0u);
  const auto doc = body_object(spec);
  EXPECT_EQ(std::string(doc.at("openapi").as_string()).rfind("3.1", 0), 0u);
  const auto& paths = doc.at("paths").as_object();
  for (const char* path :
       {"/v1/call/stream/{call_id}", "/v1/calls", "/v1/calls/{call_id}", "/v1/calls/{call_id}/packets",
        "/v1/calls/{call_id}/gaps", "/v1/calls/{call_id}/events", "/healthz"})
    EXPECT_TRUE(paths.contains(path)) << path;

  const auto docs = c.get("/docs");
  EXPECT_EQ(docs.status, 200);
  EXPECT_EQ(docs.header("Content-Type").rfind("text/html", 0), 0u);
  for (const char* asset : {"/docs/swagger-ui-bundle.js", "/docs/swagger-ui.css"}) {
    const auto r = c.get(asset);
    EXPECT_EQ(r.status, 200) << asset;
    EXPECT_GT(r.body.size(), 1000u) << asset;
  }
  EXPECT_TRUE(is_json_error(c.get("/docs/nope.js"), 404));
}

// ---- call events and tracks -------------------------------------------------------------------------------

// Writes what the store records for a stream (the track links of its calls, their events) into the database
// of the stopped server, which then reads it back through the API. The stream protocols record them as they
// come; the storage contract suites check the writes themselves.
void write_db(const std::filesystem::path& db, const std::string& sql) {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(db.c_str(), &raw, SQLITE_OPEN_READWRITE, nullptr);
  std::unique_ptr<sqlite3, int (*)(sqlite3*)> handle(raw, &sqlite3_close_v2);
  ASSERT_EQ(rc, SQLITE_OK) << db;
  char* error = nullptr;
  const int exec = sqlite3_exec(raw, sql.c_str(), nullptr, nullptr, &error);
  const std::string message = error ? error : "";
  sqlite3_free(error);
  ASSERT_EQ(exec, SQLITE_OK) << message;
}

class ReadApiEventsTest : public ReadApiTest {
 protected:
  // A two-track stream: "tw" (inbound) and "tw:outbound", declared over HTTP, then stopped to record the
  // stream's links and events: a start, DTMF 1 and 2 and a text among 120 marks, DTMF # and 9 after them.
  void SetUp() override {
    ReadApiTest::SetUp();
    auto c = connect();
    for (const char* id : {"tw", "tw:outbound"}) {
      const auto r = c.post_json(std::string("/v1/calls/") + id, R"({"media": {"format": "pcmu/8000"}})");
      ASSERT_EQ(r.status, 201) << r.body;
    }
    ingest(c, "plain", 1);
    ASSERT_EQ(server().stop(10s), std::optional<int>(0));

    std::string sql =
        "BEGIN;"
        "UPDATE calls SET track = 'inbound' WHERE id = 'tw';"
        "UPDATE calls SET track = 'outbound', primary_id = 'tw' WHERE id = 'tw:outbound';"
        "INSERT INTO call_events(call_id, kind, at, sequence, data) VALUES "
        "('tw', 'stream_started', 1700000000.5, NULL, "
        "'{\"protocol\":\"twilio\",\"stream_sid\":\"MZ1\",\"tracks\":[\"inbound\",\"outbound\"]}'),"
        "('tw', 'dtmf', 1700000001.25, 12, '{\"digit\":\"1\"}'),"
        "('tw', 'dtmf', 1700000002, 30, '{\"digit\":\"2\",\"track\":\"inbound_track\"}'),"
        "('tw', 'text', 1700000003, NULL, 'not json');";
    for (int i = 0; i < 120; ++i)
      sql += "INSERT INTO call_events(call_id, kind, at, sequence, data) VALUES ('tw', 'mark', 1700000004, " +
             std::to_string(40 + i) + ", '{\"name\":\"m" + std::to_string(i) + "\"}');";
    sql +=
        "INSERT INTO call_events(call_id, kind, at, sequence, data) VALUES "
        "('tw', 'dtmf', 1700000005, NULL, '{\"digit\":\"#\"}'),"
        "('tw', 'dtmf', 1700000006, NULL, '{\"digit\":\"9\"}'),"
        "('tw', 'stream_stopped', 1700000007, NULL, '{}');"
        "COMMIT;";
    write_db(server().db_path(), sql);
    restart_server();
  }

  static constexpr std::size_t total_events = 4 + 120 + 3;
};

TEST_F(ReadApiEventsTest, CallShowsItsTracksEventsAndDigits) {
  auto c = connect();
  const auto r = c.get("/v1/calls/tw");
  ASSERT_EQ(r.status, 200) << r.body;
  const auto o = body_object(r);
  EXPECT_EQ(o.at("track"), "inbound");
  EXPECT_TRUE(o.at("primary_call").is_null());
  EXPECT_EQ(o.at("tracks"), (json::value{{"inbound", "tw"}, {"outbound", "tw:outbound"}}));
  // The first 100 events; the digits of all of them.
  const auto& events = o.at("events").as_array();
  ASSERT_EQ(events.size(), 100u);
  EXPECT_EQ(o.at("dtmf"), "12#9");
  const auto& started = events[0].as_object();
  EXPECT_EQ(started.size(), 5u) << started;
  EXPECT_GT(started.at("id").to_number<std::int64_t>(), 0);
  EXPECT_EQ(started.at("kind"), "stream_started");
  EXPECT_DOUBLE_EQ(started.at("at").to_number<double>(), 1700000000.5);
  EXPECT_TRUE(started.at("sequence").is_null());
  EXPECT_EQ(started.at("data"), (json::value{{"protocol", "twilio"},
                                             {"stream_sid", "MZ1"},
                                             {"tracks", json::array{"inbound", "outbound"}}}));
  const auto& digit = events[1].as_object();
  EXPECT_EQ(digit.at("kind"), "dtmf");
  EXPECT_EQ(digit.at("sequence"), 12);
  EXPECT_EQ(digit.at("data"), (json::value{{"digit", "1"}}));
  // Data that is no JSON object is shown under "value".
  EXPECT_EQ(events[3].at("data"), (json::value{{"value", "not json"}}));
  for (std::size_t i = 1; i < events.size(); ++i)
    EXPECT_GT(events[i].at("id").to_number<std::int64_t>(), events[i - 1].at("id").to_number<std::int64_t>());

  // The other track names the first; it has no events of its own.
  const auto out = body_object(c.get("/v1/calls/tw:outbound"));
  EXPECT_EQ(out.at("track"), "outbound");
  EXPECT_EQ(out.at("primary_call"), "tw");
  EXPECT_EQ(out.at("tracks"), (json::value{{"outbound", "tw:outbound"}}));
  EXPECT_EQ(out.at("events"), json::array{});
  EXPECT_EQ(out.at("dtmf"), "");

  // Listings carry each call's link, not the views' tracks and events.
  const auto page = body_object(c.get("/v1/calls"));
  for (const auto& v : page.at("calls").as_array()) {
    const auto& call = v.as_object();
    EXPECT_FALSE(call.contains("tracks"));
    EXPECT_FALSE(call.contains("events"));
    if (call.at("id") == "tw:outbound") {
      EXPECT_EQ(call.at("track"), "outbound");
      EXPECT_EQ(call.at("primary_call"), "tw");
    } else if (call.at("id") == "plain") {
      EXPECT_TRUE(call.at("track").is_null());
    }
  }
}

TEST_F(ReadApiEventsTest, EventsPageInTheOrderRecorded) {
  auto c = connect();
  std::vector<std::int64_t> ids;
  std::string dtmf;
  std::string after;
  int pages = 0;
  for (;; ++pages) {
    ASSERT_LT(pages, 20) << "paging does not end";
    const auto r =
        c.get("/v1/calls/tw/events?limit=50" + (after.empty() ? std::string{} : "&after=" + after));
    ASSERT_EQ(r.status, 200) << r.body;
    const auto page = body_object(r);
    EXPECT_EQ(page.at("call_id"), "tw");
    const auto& events = page.at("events").as_array();
    EXPECT_LE(events.size(), 50u);
    for (const auto& e : events) {
      ids.push_back(e.at("id").to_number<std::int64_t>());
      if (e.at("kind") == "dtmf") dtmf += std::string(e.at("data").at("digit").as_string());
    }
    if (page.at("next_after").is_null()) break;
    EXPECT_EQ(page.at("next_after").to_number<std::int64_t>(), ids.back());
    after = std::to_string(ids.back());
  }
  EXPECT_EQ(pages + 1, 3);
  EXPECT_EQ(ids.size(), total_events);
  EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
  EXPECT_EQ(std::adjacent_find(ids.begin(), ids.end()), ids.end());
  EXPECT_EQ(dtmf, "12#9");

  // The default page is 100 events, from the first; a cursor past the end gives an empty last page.
  const auto first = body_object(c.get("/v1/calls/tw/events"));
  EXPECT_EQ(first.at("events").as_array().size(), 100u);
  EXPECT_EQ(first.at("next_after").to_number<std::int64_t>(), ids[99]);
  const auto end = body_object(c.get("/v1/calls/tw/events?after=" + std::to_string(ids.back())));
  EXPECT_TRUE(end.at("events").as_array().empty());
  EXPECT_TRUE(end.at("next_after").is_null());
  // A call without events lists none; an unknown call is a 404, a bad id a 422.
  const auto none = body_object(c.get("/v1/calls/tw:outbound/events"));
  EXPECT_TRUE(none.at("events").as_array().empty());
  EXPECT_TRUE(is_json_error(c.get("/v1/calls/nobody/events"), 404));
  EXPECT_TRUE(is_json_error(c.get("/v1/calls/bad%20id/events"), 422));
  EXPECT_TRUE(is_json_error(c.post_json("/v1/calls/tw/events", "{}"), 405));
}

}  // namespace
}  // namespace aipbx::itest
