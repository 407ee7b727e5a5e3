// Bad input: every case gets the right 4xx with a JSON body, and nothing is stored (row counts of calls and
// packets in the SQLite file are the same before and after, and the target call does not exist).
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <string>
#include <vector>

#include "harness/fixture.hpp"

namespace aipbx::itest {
namespace {

namespace json = boost::json;

constexpr std::size_t body_limit = 1024;

// A FastAPI-shaped 422: {"detail": [{"type", "loc", "msg", "input", ...}]}, one item of which has `type`
// and a `loc` that starts with `loc_prefix`.
::testing::AssertionResult is_422(const http_response& r, const std::string& type,
                                  const json::array& loc_prefix) {
  if (auto ok = is_json_error(r, 422); !ok) return ok;
  const auto body = json::parse(r.body).as_object();
  if (!body.at("detail").is_array() || body.at("detail").as_array().empty())
    return ::testing::AssertionFailure() << "detail is not a non-empty array: " << r.body;
  for (const auto& item : body.at("detail").as_array()) {
    if (!item.is_object()) return ::testing::AssertionFailure() << "detail item is not an object: " << r.body;
    const auto& o = item.as_object();
    if (!o.contains("type") || !o.at("type").is_string() || !o.contains("loc") || !o.at("loc").is_array() ||
        o.at("loc").as_array().empty() || !o.contains("msg") || !o.at("msg").is_string() ||
        !o.contains("input"))
      return ::testing::AssertionFailure() << "detail item lacks type/loc/msg/input: " << r.body;
  }
  for (const auto& item : body.at("detail").as_array()) {
    const auto& o = item.as_object();
    const auto& loc = o.at("loc").as_array();
    if (o.at("type") != json::string_view(type) || loc.size() < loc_prefix.size()) continue;
    if (std::equal(loc_prefix.begin(), loc_prefix.end(), loc.begin())) return ::testing::AssertionSuccess();
  }
  return ::testing::AssertionFailure()
         << "no detail item of type " << type << " at " << json::serialize(loc_prefix) << ": " << r.body;
}

class ValidationTest : public integration_test {
 protected:
  void SetUp() override {
    start_server({{"--body-limit", std::to_string(body_limit)}});
    // Something stored already, so "nothing changed" is checked against a non-empty database.
    auto c = connect();
    ASSERT_EQ(c.post_json("/v1/call/stream/existing", packet_json(1, "x", 1)).status, 202);
    before_ = db().counts();
  }

  // Nothing was stored since SetUp, and the call the bad requests aimed at does not exist.
  void expect_nothing_stored(const std::string& call_id = "victim") {
    EXPECT_EQ(db().counts(), before_) << "a rejected request changed the database";
    EXPECT_FALSE(db().call_exists(call_id)) << call_id;
  }

  row_counts before_;
};

struct bad_body {
  std::string body;
  std::string type;
  json::array loc;
};

void check_bad_bodies(connection& c, const std::vector<bad_body>& cases) {
  for (const auto& bad : cases) {
    SCOPED_TRACE("body: " + bad.body);
    const auto r = c.post_json("/v1/call/stream/victim", bad.body);
    EXPECT_TRUE(is_422(r, bad.type, bad.loc));
    // A rejected request leaves the connection usable.
    EXPECT_TRUE(r.keep_alive);
  }
}

TEST_F(ValidationTest, MalformedJsonIs422) {
  auto c = connect();
  check_bad_bodies(c, {{R"({"sequence":1,)", "json_invalid", {"body"}},
                       {R"({"sequence":1 "data":"x","timestamp":1})", "json_invalid", {"body"}},
                       {"not json", "json_invalid", {"body"}},
                       {"", "json_invalid", {"body"}},
                       {R"({"sequence":1,"data":"x","timestamp":1} trailing)", "json_invalid", {"body"}},
                       {R"({"sequence":1,"data":"\x","timestamp":1})", "json_invalid", {"body"}},
                       {"{\"sequence\":1,\"data\":\"\xff\xfe\",\"timestamp\":1}", "json_invalid", {"body"}}});
  expect_nothing_stored();
}

TEST_F(ValidationTest, MissingFieldsAre422) {
  auto c = connect();
  check_bad_bodies(c, {{R"({"data":"x","timestamp":1})", "missing", {"body", "sequence"}},
                       {R"({"sequence":1,"timestamp":1})", "missing", {"body", "data"}},
                       {R"({"sequence":1,"data":"x"})", "missing", {"body", "timestamp"}},
                       {R"({"seq":1,"payload":"x","ts":1})", "missing", {"body", "sequence"}}});
  // An empty object lacks all three, and says so in three items.
  const auto r = c.post_json("/v1/call/stream/victim", "{}");
  ASSERT_TRUE(is_422(r, "missing", {"body", "sequence"}));
  EXPECT_TRUE(is_422(r, "missing", {"body", "data"}));
  EXPECT_TRUE(is_422(r, "missing", {"body", "timestamp"}));
  EXPECT_EQ(json::parse(r.body).at("detail").as_array().size(), 3u);
  expect_nothing_stored();
}

TEST_F(ValidationTest, MistypedSequenceIs422) {
  auto c = connect();
  auto with_sequence = [](std::string s) { return R"({"sequence":)" + s + R"(,"data":"x","timestamp":1})"; };
  check_bad_bodies(c, {{with_sequence(R"("5")"), "int_type", {"body", "sequence"}},
                       {with_sequence("true"), "int_type", {"body", "sequence"}},
                       {with_sequence("null"), "int_type", {"body", "sequence"}},
                       {with_sequence("[1]"), "int_type", {"body", "sequence"}},
                       {with_sequence(R"({"n":1})"), "int_type", {"body", "sequence"}},
                       {with_sequence("1.5"), "int_from_float", {"body", "sequence"}},
                       {with_sequence("-1"), "greater_than_equal", {"body", "sequence"}},
                       {with_sequence("-9223372036854775808"), "greater_than_equal", {"body", "sequence"}},
                       {with_sequence("9007199254740992"), "less_than_equal", {"body", "sequence"}},  // 2^53
                       {with_sequence("18446744073709551615"), "less_than_equal", {"body", "sequence"}},
                       {with_sequence("1e300"), "less_than_equal", {"body", "sequence"}}});
  expect_nothing_stored();
}

TEST_F(ValidationTest, InfiniteSequenceIs422WithValidJson) {
  auto c = connect();
  const auto r = c.post_json("/v1/call/stream/victim", R"({"sequence":1e999,"data":"x","timestamp":1})");
  EXPECT_TRUE(is_422(r, "finite_number", {"body", "sequence"}));
  expect_nothing_stored();
}

TEST_F(ValidationTest, MistypedDataIs422) {
  auto c = connect();
  auto with_data = [](std::string d) { return R"({"sequence":1,"data":)" + d + R"(,"timestamp":1})"; };
  check_bad_bodies(c, {{with_data("5"), "string_type", {"body", "data"}},
                       {with_data("null"), "string_type", {"body", "data"}},
                       {with_data("false"), "string_type", {"body", "data"}},
                       {with_data(R"(["x"])"), "string_type", {"body", "data"}},
                       {with_data(R"({"x":1})"), "string_type", {"body", "data"}}});
  expect_nothing_stored();
}

TEST_F(ValidationTest, MistypedOrNonFiniteTimestampIs422) {
  auto c = connect();
  auto with_ts = [](std::string t) { return R"({"sequence":1,"data":"x","timestamp":)" + t + "}"; };
  check_bad_bodies(c, {{with_ts(R"("x")"), "float_type", {"body", "timestamp"}},
                       {with_ts("null"), "float_type", {"body", "timestamp"}},
                       {with_ts("true"), "float_type", {"body", "timestamp"}},
                       {with_ts("[1]"), "float_type", {"body", "timestamp"}},
                       {with_ts("1e999"), "finite_number", {"body", "timestamp"}},
                       {with_ts("-1e999"), "finite_number", {"body", "timestamp"}}});
  expect_nothing_stored();
}

TEST_F(ValidationTest, EveryBadFieldIsReportedAtOnce) {
  auto c = connect();
  const auto r = c.post_json("/v1/call/stream/victim", R"({"sequence":"5","data":5,"timestamp":"x"})");
  EXPECT_TRUE(is_422(r, "int_type", {"body", "sequence"}));
  EXPECT_TRUE(is_422(r, "string_type", {"body", "data"}));
  EXPECT_TRUE(is_422(r, "float_type", {"body", "timestamp"}));
  expect_nothing_stored();
}

TEST_F(ValidationTest, NonObjectBodyIs422) {
  auto c = connect();
  check_bad_bodies(c, {{"[1,2,3]", "model_attributes_type", {"body"}},
                       {R"("a string")", "model_attributes_type", {"body"}},
                       {"42", "model_attributes_type", {"body"}},
                       {"null", "model_attributes_type", {"body"}},
                       {"true", "model_attributes_type", {"body"}}});
  expect_nothing_stored();
}

// A valid packet body of exactly `size` bytes (padded with spaces inside the object).
std::string padded_packet(std::size_t size) {
  std::string body = packet_json(1, "x", 1);
  body.insert(1, size - body.size(), ' ');
  return body;
}

TEST_F(ValidationTest, BodyAtTheLimitIsAccepted) {
  auto c = connect();
  const auto r = c.post_json("/v1/call/stream/at-limit", padded_packet(body_limit));
  EXPECT_EQ(r.status, 202) << r.body;
}

TEST_F(ValidationTest, OversizedBodyWithContentLengthIs413) {
  for (const std::size_t size : {body_limit + 1, body_limit * 4}) {
    SCOPED_TRACE(size);
    auto c = connect();
    const auto r = c.post_json("/v1/call/stream/victim", padded_packet(size));
    EXPECT_TRUE(is_json_error(r, 413));
  }
  // Declared, not sent: the server answers from the header alone.
  auto c = connect();
  c.send_raw(
      "POST /v1/call/stream/victim HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Content-Length: 100000000\r\n\r\n");
  EXPECT_TRUE(is_json_error(c.read_response(), 413));
  expect_nothing_stored();
}

// Sends `body` chunked, in chunks of at most `chunk` bytes, in one write.
std::string chunked_request(const std::string& target, const std::string& body, std::size_t chunk) {
  std::string out =
      "POST " + target +
      " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (std::size_t i = 0; i < body.size(); i += chunk) {
    const std::string part = body.substr(i, chunk);
    char size[32];
    std::snprintf(size, sizeof size, "%zx\r\n", part.size());
    out += size;
    out += part;
    out += "\r\n";
  }
  out += "0\r\n\r\n";
  return out;
}

TEST_F(ValidationTest, ChunkedBodyWithinTheLimitIsAccepted) {
  auto c = connect();
  c.send_raw(chunked_request("/v1/call/stream/chunked", padded_packet(body_limit), 100));
  const auto r = c.read_response();
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(db().packet_count("chunked"), 1);
}

TEST_F(ValidationTest, OversizedChunkedBodyIs413) {
  for (const std::size_t chunk : {std::size_t{100}, body_limit + 100}) {
    SCOPED_TRACE(chunk);
    auto c = connect();
    c.send_raw(chunked_request("/v1/call/stream/victim", padded_packet(body_limit + 200), chunk));
    EXPECT_TRUE(is_json_error(c.read_response(), 413));
    EXPECT_TRUE(c.closed_by_peer(5s));
  }
  expect_nothing_stored();
}

TEST_F(ValidationTest, NonJsonContentTypeIs415) {
  auto c = connect();
  for (const std::string type :
       {"text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x",
        "application/xml", "text/json", "application/jsonp"}) {
    SCOPED_TRACE(type);
    const auto r =
        c.request("POST", "/v1/call/stream/victim", packet_json(1, "x", 1), {{"Content-Type", type}});
    EXPECT_TRUE(is_json_error(r, 415));
  }
  expect_nothing_stored();
}

TEST_F(ValidationTest, CallIdOutsideTheCharsetIs422) {
  auto c = connect();
  const std::vector<std::pair<std::string, std::string>> ids{{"a%2Fb", "a/b"},
                                                             {"a%20b", "a b"},
                                                             {"%25", "%"},
                                                             {std::string(129, 'x'), std::string(129, 'x')},
                                                             {"a!b", "a!b"},
                                                             {"caf%C3%A9", "caf\xc3\xa9"},
                                                             {"a%00b", std::string("a\0b", 3)},
                                                             {"a'b", "a'b"}};
  for (const auto& [encoded, id] : ids) {
    SCOPED_TRACE(encoded);
    auto r = c.post_json("/v1/call/stream/" + encoded, packet_json(1, "x", 1));
    EXPECT_TRUE(is_422(r, "string_pattern_mismatch", {"path", "call_id"}));
    // Only the call_id is wrong: exactly one item.
    if (r.status == 422) {
      EXPECT_EQ(json::parse(r.body).at("detail").as_array().size(), 1u) << r.body;
    }
    EXPECT_FALSE(db().call_exists(id));
    for (const std::string suffix : {"", "/packets", "/gaps"}) {
      r = c.get("/v1/calls/" + encoded + suffix);
      EXPECT_TRUE(is_422(r, "string_pattern_mismatch", {"path", "call_id"})) << suffix;
    }
  }
  // A bad call_id and a bad body: both reported.
  const auto r = c.post_json("/v1/call/stream/a%20b", "{}");
  EXPECT_TRUE(is_422(r, "string_pattern_mismatch", {"path", "call_id"}));
  EXPECT_TRUE(is_422(r, "missing", {"body", "sequence"}));
  expect_nothing_stored();
}

TEST_F(ValidationTest, UnknownPathIs404) {
  auto c = connect();
  const std::vector<std::pair<std::string, std::string>> requests{
      {"GET", "/nope"},
      {"GET", "/v1"},
      {"GET", "/v1/call"},
      {"POST", "/v1/call/stream"},
      {"POST", "/v1/call/stream/"},
      {"POST", "/v1/call/stream/victim/extra"},
      {"POST", "/v1/call/stream/victim/"},
      {"GET", "/v1/calls/victim/unknown"},
      {"GET", "/v2/calls"},
      {"POST", "/V1/CALL/STREAM/victim"},
  };
  for (const auto& [method, target] : requests) {
    SCOPED_TRACE(method + " " + target);
    const auto body = method == "POST" ? packet_json(1, "x", 1) : std::string{};
    EXPECT_TRUE(is_json_error(c.request(method, target, body, {{"Content-Type", "application/json"}}), 404));
  }
  expect_nothing_stored();
}

TEST_F(ValidationTest, WrongMethodIs405WithAllow) {
  auto c = connect();
  struct wrong {
    std::string method, target, allow;
  };
  const std::vector<wrong> requests{
      {"GET", "/v1/call/stream/victim", "POST"},
      {"PUT", "/v1/call/stream/victim", "POST"},
      {"DELETE", "/v1/call/stream/victim", "POST"},
      {"PATCH", "/v1/call/stream/victim", "POST"},
      {"POST", "/v1/calls", "GET"},
      {"DELETE", "/v1/calls/victim", "GET"},
      {"POST", "/v1/calls/victim/packets", "GET"},
      {"PUT", "/v1/calls/victim/gaps", "GET"},
      {"POST", "/healthz", "GET"},
  };
  for (const auto& w : requests) {
    SCOPED_TRACE(w.method + " " + w.target);
    const auto r =
        w.method == "GET" || w.method == "DELETE"
            ? c.request(w.method, w.target)
            : c.request(w.method, w.target, packet_json(1, "x", 1), {{"Content-Type", "application/json"}});
    EXPECT_TRUE(is_json_error(r, 405));
    EXPECT_NE(r.header("Allow").find(w.allow), std::string::npos) << "Allow: " << r.header("Allow");
  }
  expect_nothing_stored();
}

}  // namespace
}  // namespace aipbx::itest
