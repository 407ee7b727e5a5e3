// The seed's ingest endpoint, POST /v1/call/stream/{call_id}: acceptance, call creation, gaps and late
// packets (log lines and /gaps), duplicates and conflicts, checked over HTTP and in the SQLite file.
#include <boost/json/serialize.hpp>
#include <string>
#include <utility>
#include <vector>

#include "harness/fixture.hpp"

namespace aipbx::itest {
namespace {

namespace json = boost::json;
using ranges = std::vector<std::pair<std::int64_t, std::int64_t>>;

class IngestTest : public integration_test {
 protected:
  // A window counted in packets only: an open gap must not be declared lost by the clock while a slow
  // (sanitizer) build is still sending the packets that fill it.
  void SetUp() override { start_server({{"--reorder-window", "50"}}); }

  http_response post(connection& c, const std::string& call_id, std::int64_t sequence,
                     std::string_view data = "x") {
    return c.post_json("/v1/call/stream/" + call_id,
                       packet_json(sequence, data, 1700000000.0 + static_cast<double>(sequence) * 0.02));
  }

  ranges gaps(connection& c, const std::string& call_id) {
    const auto r = c.get("/v1/calls/" + call_id + "/gaps");
    EXPECT_EQ(r.status, 200) << r.body;
    ranges out;
    const auto body = body_object(r);
    for (const auto& g : body.at("open").as_array()) {
      const auto& o = g.as_object();
      const auto first = o.at("first").to_number<std::int64_t>();
      const auto last = o.at("last").to_number<std::int64_t>();
      EXPECT_EQ(o.at("count").to_number<std::int64_t>(), last - first + 1);
      out.emplace_back(first, last);
    }
    return out;
  }

  // A warning about `call_id`/`sequence`, with the expected sequence the server reported.
  bool warned(const std::string& msg, const std::string& call_id, std::int64_t sequence,
              std::int64_t expected) {
    return server().wait_for_record(
        [&](const json::object& r) {
          return string_field(r, "level") == "warning" && string_field(r, "msg") == msg &&
                 string_field(r, "call_id") == call_id && int_field(r, "sequence") == sequence &&
                 int_field(r, "expected") == expected;
        },
        5s);
  }
};

TEST_F(IngestTest, SeedPacketIsAcceptedAndCreatesTheCall) {
  auto c = connect();
  const auto r =
      c.post_json("/v1/call/stream/c1", R"({"sequence":1,"data":"audio_payload","timestamp":1700000000.25})");
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(r.header("Content-Type"), "application/json");
  // Seed clients read "message"; it comes first, as the seed sends it.
  EXPECT_EQ(r.body.rfind(R"({"message":"Packet accepted")", 0), 0u) << r.body;
  const auto body = body_object(r);
  EXPECT_EQ(body.at("message"), "Packet accepted");
  EXPECT_EQ(body.at("duplicate"), false);

  const auto call = c.get("/v1/calls/c1");
  ASSERT_EQ(call.status, 200) << call.body;
  const auto o = body_object(call);
  EXPECT_EQ(o.at("id"), "c1");
  EXPECT_EQ(o.at("state"), "IN_PROGRESS");
  EXPECT_EQ(o.at("last_sequence"), 1);
  EXPECT_EQ(o.at("packets_received"), 1);

  const auto stored = db().rows(
      "SELECT c.state, c.last_sequence, p.sequence, p.data, p.timestamp "
      "FROM calls c JOIN packets p ON p.call_id = c.id WHERE c.id = 'c1'");
  ASSERT_EQ(stored.size(), 1u);
  EXPECT_EQ(stored[0][0], "IN_PROGRESS");
  EXPECT_EQ(stored[0][1], "1");
  EXPECT_EQ(stored[0][2], "1");
  EXPECT_EQ(stored[0][3], "audio_payload");
  EXPECT_EQ(db().scalar("SELECT timestamp = 1700000000.25 FROM packets WHERE call_id = 'c1'"), 1);
  EXPECT_TRUE(server().wait_for_record(
      [](const json::object& rec) {
        return string_field(rec, "msg") == "call created" && string_field(rec, "call_id") == "c1";
      },
      5s));
}

TEST_F(IngestTest, HealthzAnswersOk) {
  auto c = connect();
  const auto r = c.get("/healthz");
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(body_object(r).at("status"), "ok");
}

TEST_F(IngestTest, SeedClientsWithoutOrWithCharsetContentTypeAreAccepted) {
  auto c = connect();
  // FastAPI parses a body without Content-Type as JSON; so does aipbx.
  auto r = c.request("POST", "/v1/call/stream/c2", packet_json(1, "a", 1.5));
  EXPECT_EQ(r.status, 202) << r.body;
  r = c.request("POST", "/v1/call/stream/c2", packet_json(2, "b", 1.5),
                {{"Content-Type", "application/json; charset=utf-8"}});
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(db().packet_count("c2"), 2);
}

TEST_F(IngestTest, KeepAliveConnectionCarriesManyPacketsAndEchoesRequestIds) {
  auto c = connect();
  for (int i = 1; i <= 50; ++i) {
    const auto r =
        c.request("POST", "/v1/call/stream/keep", packet_json(i, "frame-" + std::to_string(i), i),
                  {{"Content-Type", "application/json"}, {"X-Request-ID", "req-" + std::to_string(i)}});
    ASSERT_EQ(r.status, 202) << r.body;
    EXPECT_TRUE(r.keep_alive);
    EXPECT_EQ(r.header("X-Request-ID"), "req-" + std::to_string(i));
    EXPECT_EQ(body_object(r).at("arrival"), "in_order");
  }
  EXPECT_EQ(db().packet_count("keep"), 50);
  EXPECT_EQ(db().scalar("SELECT last_sequence FROM calls WHERE id = 'keep'"), 50);
}

TEST_F(IngestTest, SequenceBoundsAreAccepted) {
  auto c = connect();
  // Sequence 0 lies before the first (1) but is a valid sequence; 2^53 - 1 is the largest JSON-safe integer.
  auto r = post(c, "bounds", 0);
  EXPECT_EQ(r.status, 202) << r.body;
  r = c.post_json("/v1/call/stream/bounds", R"({"sequence":9007199254740991,"data":"x","timestamp":1})");
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(db().packet_count("bounds"), 2);
  EXPECT_EQ(db().scalar("SELECT MAX(sequence) FROM packets WHERE call_id = 'bounds'"), 9007199254740991);
}

TEST_F(IngestTest, DataIsStoredExactlyAsSent) {
  auto c = connect();
  const std::vector<std::string> payloads{
      "", std::string("nul\0inside", 10), "h\xc3\xa9llo \xf0\x9f\x98\x80 \"quoted\" \\ back\nslash",
      std::string(512 * 1024, 'a'),  // half the default body limit
  };
  for (std::size_t i = 0; i < payloads.size(); ++i) {
    const auto s = static_cast<std::int64_t>(i + 1);
    ASSERT_EQ(post(c, "bytes", s, payloads[i]).status, 202) << i;
    EXPECT_EQ(db().text("SELECT data FROM packets WHERE call_id = 'bytes' AND sequence = ?", {s}),
              payloads[i])
        << i;
    // The same packet again is a duplicate, not a conflict.
    const auto again = post(c, "bytes", s, payloads[i]);
    EXPECT_EQ(again.status, 202) << i << ": " << again.body;
  }
  const auto page = body_object(c.get("/v1/calls/bytes/packets"));
  const auto& packets = page.at("packets").as_array();
  ASSERT_EQ(packets.size(), payloads.size());
  for (std::size_t i = 0; i < payloads.size(); ++i)
    EXPECT_EQ(packets[i].at("data").as_string(), json::string_view(payloads[i])) << i;
}

TEST_F(IngestTest, GapsAndLatePacketsAreLoggedAndTracked) {
  auto c = connect();
  for (const std::int64_t s : {1, 2}) ASSERT_EQ(post(c, "g1", s).status, 202);
  EXPECT_EQ(gaps(c, "g1"), ranges{});

  // 5 skips 3-4, 9 skips 6-8: two gaps, each a warning with the sequence and the one expected.
  auto r = post(c, "g1", 5);
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(body_object(r).at("arrival"), "gap");
  EXPECT_TRUE(warned("packet gap", "g1", 5, 3));
  ASSERT_EQ(post(c, "g1", 9).status, 202);
  EXPECT_TRUE(warned("packet gap", "g1", 9, 3));
  EXPECT_EQ(gaps(c, "g1"), (ranges{{3, 4}, {6, 8}}));

  auto call = body_object(c.get("/v1/calls/g1"));
  EXPECT_EQ(call.at("last_sequence"), 9);
  EXPECT_EQ(call.at("expected_sequence"), 3);
  EXPECT_EQ(call.at("missing_packets"), 5);
  EXPECT_EQ(call.at("missing_ranges"), 2);
  EXPECT_EQ(call.at("gaps_opened"), 2);

  // Late packets shrink the ranges: 3 trims the first, 7 splits the second.
  r = post(c, "g1", 3);
  ASSERT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(body_object(r).at("arrival"), "late");
  EXPECT_TRUE(warned("late packet", "g1", 3, 3));
  EXPECT_EQ(gaps(c, "g1"), (ranges{{4, 4}, {6, 8}}));
  ASSERT_EQ(post(c, "g1", 7).status, 202);
  EXPECT_TRUE(warned("late packet", "g1", 7, 4));
  EXPECT_EQ(gaps(c, "g1"), (ranges{{4, 4}, {6, 6}, {8, 8}}));
  EXPECT_EQ(db().scalar("SELECT COUNT(*) FROM call_gaps WHERE call_id = 'g1'"), 3);

  for (const std::int64_t s : {8, 4, 6}) ASSERT_EQ(post(c, "g1", s).status, 202);
  EXPECT_EQ(gaps(c, "g1"), ranges{});
  const auto g = body_object(c.get("/v1/calls/g1/gaps"));
  EXPECT_EQ(g.at("expected_sequence"), 10);
  EXPECT_EQ(g.at("missing_packets"), 0);
  call = body_object(c.get("/v1/calls/g1"));
  EXPECT_EQ(call.at("out_of_order_packets"), 5);
  EXPECT_EQ(call.at("packets_received"), 9);
  EXPECT_EQ(db().packet_count("g1"), 9);
  EXPECT_EQ(db().scalar("SELECT COUNT(*) FROM call_gaps WHERE call_id = 'g1'"), 0);
}

TEST_F(IngestTest, FirstPacketAboveOneOpensAGap) {
  auto c = connect();
  ASSERT_EQ(post(c, "late-join", 4).status, 202);
  EXPECT_TRUE(warned("packet gap", "late-join", 4, 1));
  EXPECT_EQ(gaps(c, "late-join"), (ranges{{1, 3}}));
}

TEST_F(IngestTest, SameDataTwiceIsAnIdempotentDuplicate) {
  auto c = connect();
  auto first = post(c, "d1", 1, "same");
  ASSERT_EQ(first.status, 202) << first.body;
  for (int i = 0; i < 2; ++i) {
    const auto again = post(c, "d1", 1, "same");
    EXPECT_GE(again.status, 200);
    EXPECT_LT(again.status, 300) << again.body;
    const auto body = body_object(again);
    EXPECT_EQ(body.at("duplicate"), true) << again.body;
    EXPECT_EQ(body.at("message"), "Packet accepted");
  }
  EXPECT_EQ(db().scalar("SELECT COUNT(*) FROM packets WHERE call_id = 'd1' AND sequence = 1"), 1);
  EXPECT_EQ(db().scalar("SELECT packets_received FROM calls WHERE id = 'd1'"), 1);
  EXPECT_EQ(db().scalar("SELECT duplicate_packets FROM calls WHERE id = 'd1'"), 2);
  // A duplicate is not a gap or a late packet.
  EXPECT_EQ(gaps(c, "d1"), ranges{});
  EXPECT_EQ(body_object(c.get("/v1/calls/d1")).at("out_of_order_packets"), 0);
}

TEST_F(IngestTest, SameSequenceWithDifferentDataIsAConflict) {
  auto c = connect();
  ASSERT_EQ(post(c, "d2", 1, "original").status, 202);
  ASSERT_EQ(post(c, "d2", 2, "second").status, 202);
  const auto r = post(c, "d2", 1, "changed");
  EXPECT_TRUE(is_json_error(r, 409));
  EXPECT_EQ(db().text("SELECT data FROM packets WHERE call_id = 'd2' AND sequence = 1"), "original");
  EXPECT_EQ(db().packet_count("d2"), 2);
  EXPECT_EQ(db().scalar("SELECT packets_received FROM calls WHERE id = 'd2'"), 2);
  // The connection and the call go on.
  EXPECT_EQ(post(c, "d2", 3, "third").status, 202);
}

TEST_F(IngestTest, CallIdsFromTheDocumentedCharsetAreAccepted) {
  auto c = connect();
  const std::vector<std::string> ids{
      "a84b4c76e66710@pc33.example.com",       // SIP Call-ID
      "+15551234567",                          // E.164
      "3f2504e0-4f89-11d3-9a0c-0305e82c3301",  // UUID
      "MZ18ad3ab5a668481ce02b83e7395059f0",    // CPaaS stream id
      "a.b_c:d=e",
      std::string(128, 'x'),
  };
  for (const auto& id : ids) {
    const auto r = c.post_json("/v1/call/stream/" + url_encode(id), packet_json(1, "x", 1));
    EXPECT_EQ(r.status, 202) << id << ": " << r.body;
    EXPECT_TRUE(db().call_exists(id)) << id;
    EXPECT_EQ(c.get("/v1/calls/" + url_encode(id)).status, 200) << id;
  }
}

}  // namespace
}  // namespace aipbx::itest
