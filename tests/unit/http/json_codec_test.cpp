#include "http/json_codec.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <charconv>
#include <cmath>
#include <random>
#include <string>

#include <string>
#include <variant>

namespace aipbx::http {
namespace {

namespace json = boost::json;

packet_body parse_ok(std::string_view body) {
  auto r = parse_packet_body(body);
  if (auto* errors = std::get_if<validation_errors>(&r)) {
    ADD_FAILURE() << "expected a valid body, got " << validation_body(*errors) << " for " << body;
    return {};
  }
  return std::get<packet_body>(std::move(r));
}

validation_errors parse_bad(std::string_view body) {
  auto r = parse_packet_body(body);
  if (auto* ok = std::get_if<packet_body>(&r)) {
    ADD_FAILURE() << "expected errors, got sequence " << ok->sequence << " for " << body;
    return {};
  }
  return std::get<validation_errors>(std::move(r));
}

// The single error a body produces.
validation_error one_error(std::string_view body) {
  validation_errors errors = parse_bad(body);
  if (errors.size() != 1) {
    ADD_FAILURE() << "expected exactly one error, got " << errors.size() << ": " << validation_body(errors);
    return {};
  }
  return std::move(errors.front());
}

json::array body_loc(std::string_view field) { return json::array{"body", json::string_view(field)}; }

TEST(JsonCodec, ValidBody) {
  const packet_body b = parse_ok(R"({"sequence": 1, "data": "audio_payload", "timestamp": 1700000000.25})");
  EXPECT_EQ(b.sequence, 1);
  EXPECT_EQ(b.data, "audio_payload");
  EXPECT_DOUBLE_EQ(b.timestamp, 1700000000.25);
}

TEST(JsonCodec, KeysInAnyOrderWithWhitespace) {
  const packet_body b = parse_ok(" \n{ \"timestamp\" : 5 ,\"data\":\"\", \"sequence\":0 } \n");
  EXPECT_EQ(b.sequence, 0);
  EXPECT_EQ(b.data, "");
  EXPECT_DOUBLE_EQ(b.timestamp, 5.0);
}

TEST(JsonCodec, ExtraKeysIgnored) {
  const packet_body b =
      parse_ok(R"({"sequence": 7, "data": "x", "timestamp": 1.5, "codec": "pcmu", "nested": {"a": [1, 2]}})");
  EXPECT_EQ(b.sequence, 7);
  EXPECT_EQ(b.data, "x");
}

TEST(JsonCodec, WholeFloatIsAnInteger) {
  EXPECT_EQ(parse_ok(R"({"sequence": 5.0, "data": "x", "timestamp": 1})").sequence, 5);
  EXPECT_EQ(parse_ok(R"({"sequence": 5e0, "data": "x", "timestamp": 1})").sequence, 5);
  EXPECT_EQ(parse_ok(R"({"sequence": 1e3, "data": "x", "timestamp": 1})").sequence, 1000);
}

TEST(JsonCodec, SequenceLimits) {
  EXPECT_EQ(parse_ok(R"({"sequence": 0, "data": "x", "timestamp": 1})").sequence, 0);
  EXPECT_EQ(parse_ok(R"({"sequence": 9007199254740991, "data": "x", "timestamp": 1})").sequence, max_sequence);
}

TEST(JsonCodec, DataKeepsEscapesAndUnicode) {
  const packet_body b = parse_ok(R"({"sequence": 1, "data": "a\"b\\c\u00e9\n", "timestamp": 1})");
  EXPECT_EQ(b.data, "a\"b\\c\xc3\xa9\n");
}

TEST(JsonCodec, TimestampMayBeIntegerOrNegative) {
  EXPECT_DOUBLE_EQ(parse_ok(R"({"sequence": 1, "data": "x", "timestamp": 1700000000})").timestamp, 1700000000.0);
  EXPECT_DOUBLE_EQ(parse_ok(R"({"sequence": 1, "data": "x", "timestamp": -2.5})").timestamp, -2.5);
}

// A number too small for a double is zero, with its sign, in both parsers (Boost.JSON 1.81 made 0e999
// NaN, and std::from_chars reports underflow without a value).
TEST(JsonCodec, TimestampThatUnderflowsIsZero) {
  for (std::string_view ts : {"0e999", "-0e999", "1e-400", "-1e-400", "0.0E+99999"}) {
    SCOPED_TRACE(ts);
    const std::string body = R"({"sequence": 1, "data": "x", "timestamp": )" + std::string(ts) + "}";
    const bool negative = ts.front() == '-';
    for (const auto& r : {parse_packet_body(body), parse_packet_body_checked(body)}) {
      ASSERT_TRUE(std::holds_alternative<packet_body>(r));
      EXPECT_EQ(std::get<packet_body>(r).timestamp, 0.0);
      EXPECT_EQ(std::signbit(std::get<packet_body>(r).timestamp), negative);
    }
  }
}

TEST(JsonCodec, MalformedJsonIsJsonInvalid) {
  for (std::string_view body : {R"({"sequence": 1,)", R"({"sequence": 1, "data": "x", "timestamp": 1)", "",
                                "   ", "{", "not json", R"({'sequence': 1})", R"({"sequence": 01})",
                                R"({"sequence": 1, "data": "x", "timestamp": 1} trailing)",
                                R"({"sequence": 1, "data": "x", "timestamp": 1}{})", "\xff\xfe"}) {
    SCOPED_TRACE(body);
    const validation_error e = one_error(body);
    EXPECT_EQ(e.type, "json_invalid");
    EXPECT_EQ(e.msg, "JSON decode error");
    ASSERT_EQ(e.loc.size(), 2u);
    EXPECT_EQ(e.loc[0], "body");
    ASSERT_TRUE(e.loc[1].is_number());
    EXPECT_LE(e.loc[1].to_number<std::uint64_t>(), body.size());
    ASSERT_TRUE(e.ctx.contains("error"));
    EXPECT_TRUE(e.ctx.at("error").is_string());
  }
}

TEST(JsonCodec, JsonInvalidLocIsTheErrorPosition) {
  // The parser stops at the offending byte: pydantic reports the position there too.
  const validation_error e = one_error(R"({"sequence": x})");
  EXPECT_EQ(e.loc, (json::array{"body", 13}));
}

TEST(JsonCodec, DeepNestingIsRejectedNotOverflowed) {
  const std::string deep = R"({"sequence": 1, "data": "x", "timestamp": 1, "extra": )" + std::string(100'000, '[') +
                           std::string(100'000, ']') + "}";
  EXPECT_EQ(one_error(deep).type, "json_invalid");
}

TEST(JsonCodec, NonObjectBodyIsModelAttributesType) {
  for (std::string_view body : {"[1, 2, 3]", "[]", R"("a string")", "42", "null", "true"}) {
    SCOPED_TRACE(body);
    const validation_error e = one_error(body);
    EXPECT_EQ(e.type, "model_attributes_type");
    EXPECT_EQ(e.loc, (json::array{"body"}));
    EXPECT_EQ(e.msg, "Input should be a valid dictionary or object to extract fields from");
    EXPECT_EQ(e.input, json::parse(body));
    EXPECT_TRUE(e.ctx.empty());
  }
}

TEST(JsonCodec, MissingFieldsAreAllReported) {
  const validation_errors errors = parse_bad("{}");
  ASSERT_EQ(errors.size(), 3u);
  const char* fields[] = {"sequence", "data", "timestamp"};
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(errors[i].type, "missing");
    EXPECT_EQ(errors[i].loc, body_loc(fields[i]));
    EXPECT_EQ(errors[i].msg, "Field required");
    EXPECT_EQ(errors[i].input, json::object{});  // pydantic echoes the whole object
  }
}

TEST(JsonCodec, OneMissingField) {
  const validation_error e = one_error(R"({"sequence": 1, "timestamp": 2, "extra": true})");
  EXPECT_EQ(e.type, "missing");
  EXPECT_EQ(e.loc, body_loc("data"));
  EXPECT_EQ(e.input, json::parse(R"({"sequence": 1, "timestamp": 2, "extra": true})"));
}

TEST(JsonCodec, SequenceOfWrongTypeIsIntType) {
  for (std::string_view seq : {R"("5")", "true", "false", "null", "[5]", R"({"v": 5})"}) {
    SCOPED_TRACE(seq);
    const std::string body = R"({"sequence": )" + std::string(seq) + R"(, "data": "x", "timestamp": 1})";
    const validation_error e = one_error(body);
    EXPECT_EQ(e.type, "int_type");
    EXPECT_EQ(e.loc, body_loc("sequence"));
    EXPECT_EQ(e.msg, "Input should be a valid integer");
    EXPECT_EQ(e.input, json::parse(seq));
  }
}

TEST(JsonCodec, FractionalSequenceIsIntFromFloat) {
  for (std::string_view seq : {"1.5", "0.1", "2.000001", "-1.5"}) {
    SCOPED_TRACE(seq);
    const validation_error e =
        one_error(R"({"sequence": )" + std::string(seq) + R"(, "data": "x", "timestamp": 1})");
    EXPECT_EQ(e.type, "int_from_float");
    EXPECT_EQ(e.loc, body_loc("sequence"));
    EXPECT_EQ(e.msg, "Input should be a valid integer, got a number with a fractional part");
    EXPECT_EQ(e.input, json::parse(seq));
  }
}

TEST(JsonCodec, NegativeSequenceIsGreaterThanEqual) {
  for (std::string_view seq : {"-1", "-9223372036854775808", "-3.0"}) {
    SCOPED_TRACE(seq);
    const validation_error e =
        one_error(R"({"sequence": )" + std::string(seq) + R"(, "data": "x", "timestamp": 1})");
    EXPECT_EQ(e.type, "greater_than_equal");
    EXPECT_EQ(e.loc, body_loc("sequence"));
    EXPECT_EQ(e.msg, "Input should be greater than or equal to 0");
    EXPECT_EQ(e.ctx, (json::object{{"ge", 0}}));
    EXPECT_EQ(e.input, json::parse(seq));
  }
}

TEST(JsonCodec, SequenceAboveLimitIsLessThanEqual) {
  for (std::string_view seq : {"9007199254740992", "9223372036854775807", "18446744073709551615",
                               "100000000000000000000000", "9007199254740992.0", "1e300"}) {
    SCOPED_TRACE(seq);
    const validation_error e =
        one_error(R"({"sequence": )" + std::string(seq) + R"(, "data": "x", "timestamp": 1})");
    EXPECT_EQ(e.type, "less_than_equal");
    EXPECT_EQ(e.loc, body_loc("sequence"));
    EXPECT_EQ(e.msg, "Input should be less than or equal to 9007199254740991");
    EXPECT_EQ(e.ctx, (json::object{{"le", max_sequence}}));
  }
  // The huge unsigned value is echoed exactly, not wrapped to a negative number.
  const validation_error e = one_error(R"({"sequence": 18446744073709551615, "data": "x", "timestamp": 1})");
  ASSERT_TRUE(e.input.is_uint64());
  EXPECT_EQ(e.input.get_uint64(), 18446744073709551615ull);
}

TEST(JsonCodec, NonStringDataIsStringType) {
  for (std::string_view data : {"123", "null", "true", "[]", R"({"a": "b"})", "1.5"}) {
    SCOPED_TRACE(data);
    const validation_error e =
        one_error(R"({"sequence": 1, "data": )" + std::string(data) + R"(, "timestamp": 1})");
    EXPECT_EQ(e.type, "string_type");
    EXPECT_EQ(e.loc, body_loc("data"));
    EXPECT_EQ(e.msg, "Input should be a valid string");
    EXPECT_EQ(e.input, json::parse(data));
  }
}

TEST(JsonCodec, NonNumberTimestampIsFloatType) {
  for (std::string_view ts : {R"("1700000000.25")", "null", "true", "[1]", "{}"}) {
    SCOPED_TRACE(ts);
    const validation_error e =
        one_error(R"({"sequence": 1, "data": "x", "timestamp": )" + std::string(ts) + "}");
    EXPECT_EQ(e.type, "float_type");
    EXPECT_EQ(e.loc, body_loc("timestamp"));
    EXPECT_EQ(e.msg, "Input should be a valid number");
    EXPECT_EQ(e.input, json::parse(ts));
  }
}

TEST(JsonCodec, OverflowingTimestampIs422) {
  // Boost.JSON 1.81 reads an out-of-range exponent as infinity rather than failing to parse, so the
  // codec's finiteness check answers it.
  for (std::string_view ts : {"1e999", "-1e999", "1e400"}) {
    SCOPED_TRACE(ts);
    const validation_error e =
        one_error(R"({"sequence": 1, "data": "x", "timestamp": )" + std::string(ts) + "}");
    EXPECT_EQ(e.type, "finite_number");
    EXPECT_EQ(e.loc, body_loc("timestamp"));
    EXPECT_EQ(e.msg, "Input should be a finite number");
  }
}

TEST(JsonCodec, OverflowingSequenceIs422) {
  const validation_error e = one_error(R"({"sequence": 1e999, "data": "x", "timestamp": 1})");
  EXPECT_EQ(e.type, "finite_number");
  EXPECT_EQ(e.loc, body_loc("sequence"));
}

TEST(JsonCodec, NanAndInfinityLiteralsAreRejected) {
  for (std::string_view lit : {"NaN", "nan", "Infinity", "-Infinity", "inf"}) {
    for (const char* field : {"sequence", "timestamp"}) {
      SCOPED_TRACE(std::string(field) + "=" + std::string(lit));
      std::string body = std::string(R"({"sequence": 1, "data": "x", "timestamp": 1})");
      const std::string key = std::string("\"") + field + "\": 1";
      body.replace(body.find(key), key.size(), std::string("\"") + field + "\": " + std::string(lit));
      const validation_errors errors = parse_bad(body);
      ASSERT_FALSE(errors.empty());
      EXPECT_EQ(errors.front().type, "json_invalid");  // not JSON at all: Boost.JSON rejects the literal
    }
  }
}

TEST(JsonCodec, EveryFieldProblemReportedAtOnce) {
  const validation_errors errors = parse_bad(R"({"sequence": "1", "data": 2, "timestamp": "3"})");
  ASSERT_EQ(errors.size(), 3u);
  EXPECT_EQ(errors[0].type, "int_type");
  EXPECT_EQ(errors[1].type, "string_type");
  EXPECT_EQ(errors[2].type, "float_type");

  const validation_errors mixed = parse_bad(R"({"sequence": -1, "timestamp": 1})");
  ASSERT_EQ(mixed.size(), 2u);
  EXPECT_EQ(mixed[0].type, "greater_than_equal");
  EXPECT_EQ(mixed[1].type, "missing");
  EXPECT_EQ(mixed[1].loc, body_loc("data"));
}

TEST(JsonCodec, ValidationBodyIsFastApiShaped) {
  const validation_errors errors = parse_bad(R"({"sequence": -1})");
  ASSERT_EQ(errors.size(), 3u);
  const json::value doc = json::parse(validation_body(errors));
  ASSERT_TRUE(doc.is_object());
  ASSERT_EQ(doc.as_object().size(), 1u);
  const json::array& detail = doc.at("detail").as_array();
  ASSERT_EQ(detail.size(), 3u);
  for (const auto& item : detail) {
    const json::object& o = item.as_object();
    EXPECT_TRUE(o.at("type").is_string());
    EXPECT_TRUE(o.at("loc").is_array());
    EXPECT_TRUE(o.at("msg").is_string());
    EXPECT_TRUE(o.contains("input"));
  }
  EXPECT_EQ(detail[0].at("type"), "greater_than_equal");
  EXPECT_EQ(detail[0].at("loc"), body_loc("sequence"));
  EXPECT_EQ(detail[0].at("ctx"), (json::object{{"ge", 0}}));
  EXPECT_EQ(detail[0].at("input"), -1);
  EXPECT_EQ(detail[1].at("type"), "missing");
  EXPECT_FALSE(detail[1].as_object().contains("ctx"));  // omitted when empty
  EXPECT_EQ(detail[1].at("input"), json::parse(R"({"sequence": -1})"));
}

TEST(JsonCodec, ValidationBodyForMalformedJsonParses) {
  const json::value doc = json::parse(validation_body(parse_bad("{\"a\": \"\xff")));
  const json::array& detail = doc.at("detail").as_array();
  ASSERT_EQ(detail.size(), 1u);
  EXPECT_EQ(detail[0].at("type"), "json_invalid");
  EXPECT_TRUE(detail[0].at("ctx").at("error").is_string());
}

TEST(JsonCodec, ValidationBodyOfNoErrors) {
  EXPECT_EQ(json::parse(validation_body({})), json::parse(R"({"detail": []})"));
}

TEST(JsonCodec, CheckCallId) {
  EXPECT_FALSE(check_call_id("call-1"));
  EXPECT_FALSE(check_call_id(std::string(128, 'a')));
  for (std::string_view bad : {std::string_view(""), std::string_view(".."), std::string_view("a b"), std::string_view("a/b"),
                               std::string_view("caf\xc3\xa9"), std::string_view("a\0b", 3)}) {
    SCOPED_TRACE(bad);
    const auto e = check_call_id(bad);
    ASSERT_TRUE(e);
    EXPECT_EQ(e->type, "string_pattern_mismatch");
    EXPECT_EQ(e->loc, (json::array{"path", "call_id"}));
    EXPECT_EQ(e->msg, "String should match pattern '^(?!\\.+$)[A-Za-z0-9._:@+=-]{1,128}$'");
    EXPECT_EQ(e->input, json::string(json::string_view(bad.data(), bad.size())));
    EXPECT_EQ(e->ctx, (json::object{{"pattern", "^(?!\\.+$)[A-Za-z0-9._:@+=-]{1,128}$"}}));
  }
  const auto too_long = check_call_id(std::string(129, 'a'));
  ASSERT_TRUE(too_long);
  EXPECT_EQ(too_long->type, "string_pattern_mismatch");
}

// A percent-decoded path or query (`/v1/calls/%FF`) can hold bytes that are not UTF-8; the 422 body echoes
// them as `input` and must still be JSON a client can decode.
TEST(JsonCodec, ErrorBodyIsValidJsonEvenForNonUtf8Input) {
  const auto e = check_call_id(std::string_view("\xff\x00\x01", 3));
  ASSERT_TRUE(e);
  const json::value doc = json::parse(validation_body({*e}));
  EXPECT_EQ(doc.at("detail").as_array().size(), 1u);
  const validation_error q = invalid_query("after", "int_parsing", "Input should be a valid integer", "\xc3\x28");
  EXPECT_EQ(json::parse(validation_body({q})).at("detail").as_array().size(), 1u);
}

TEST(JsonCodec, InvalidQuery) {
  const validation_error e = invalid_query("limit", "int_parsing", "Input should be a valid integer", "ten");
  EXPECT_EQ(e.type, "int_parsing");
  EXPECT_EQ(e.loc, (json::array{"query", "limit"}));
  EXPECT_EQ(e.input, "ten");
  EXPECT_TRUE(e.ctx.empty());
}

TEST(JsonCodec, ErrorBody) {
  EXPECT_EQ(json::parse(error_body("Call not found", "not_found")),
            json::parse(R"({"detail": "Call not found", "error": "not_found"})"));
}

TEST(JsonCodec, AcceptedBodyStartsWithSeedMessage) {
  ingest_outcome o;
  o.kind = arrival::gap;
  o.expected = 3;
  o.last_sequence = 7;
  o.missing = 4;
  const std::string text = json::serialize(to_json(o, "c1", 7));
  EXPECT_EQ(text.rfind(R"({"message":"Packet accepted")", 0), 0u) << text;
  const json::value doc = json::parse(text);
  EXPECT_EQ(doc.at("call_id"), "c1");
  EXPECT_EQ(doc.at("sequence"), 7);
  EXPECT_EQ(doc.at("duplicate"), false);
  EXPECT_EQ(doc.at("status"), "stored");
  EXPECT_EQ(doc.at("arrival"), "gap");
  EXPECT_EQ(doc.at("expected_sequence"), 3);
  EXPECT_EQ(doc.at("missing_packets"), 4);

  o.duplicate = true;
  o.kind = arrival::duplicate;
  const json::value dup = to_json(o, "c1", 7);
  EXPECT_EQ(dup.at("status"), "duplicate");
  EXPECT_EQ(dup.at("duplicate"), true);
}

TEST(JsonCodec, GapJson) {
  EXPECT_EQ(json::value(to_json(seq_range{3, 5})), json::parse(R"({"first": 3, "last": 5, "count": 3})"));
}


// Every timestamp reads back as the double whose shortest text the client sent: Boost.JSON 1.81 alone
// rounds some 17-digit numbers to a neighbour (found by the packet_json fuzz target).
TEST(ParsePacketBody, TimestampsAreExactToTheLastDigit) {
  EXPECT_EQ(parse_ok(R"({"sequence": 1, "data": "x", "timestamp": 1702102422.8416727})").timestamp,
            1702102422.8416727);
  std::mt19937_64 rng(42);
  std::uniform_real_distribution<double> epoch(1.5e9, 2.0e9);
  for (int i = 0; i < 20000; ++i) {
    const double t = epoch(rng);
    char text[64];
    const auto r = std::to_chars(text, text + sizeof text, t);  // shortest text that reads back as t
    const std::string body = R"({"sequence": 1, "data": "x", "timestamp": )" + std::string(text, r.ptr) + "}";
    ASSERT_EQ(parse_ok(body).timestamp, t) << body;
  }
  // Only the top-level field counts; a nested or repeated key does not confuse it.
  EXPECT_EQ(parse_ok(R"({"meta": {"timestamp": 1.25}, "sequence": 1, "data": "x", "timestamp": 2.5})").timestamp, 2.5);
  EXPECT_EQ(parse_ok(R"({"timestamp": 7, "sequence": 1, "data": "x"})").timestamp, 7.0);
}

// parse_packet_body takes a one-pass path for ordinary bodies and the checked path for the rest; on each of
// these, valid or not, both give the same result (the packet_json fuzz target checks it on arbitrary bytes).
TEST(ParsePacketBody, OnePassAndCheckedPathsAgree) {
  const std::vector<std::string> bodies = {
      R"({"sequence": 1, "data": "x", "timestamp": 1.5})",
      R"({"data": "a\u00e9\n", "timestamp": -0.0, "sequence": 0})",
      R"({"sequence": 9007199254740991, "data": "", "timestamp": 12345678901234567})",
      R"({"sequence": 9007199254740992, "data": "", "timestamp": 1})",
      R"({"sequence": 18446744073709551615, "data": "", "timestamp": 1})",
      R"({"sequence": 5.0, "data": "x", "timestamp": 1})",
      R"({"sequence": 5.5, "data": "x", "timestamp": 1})",
      R"({"sequence": -1, "data": "x", "timestamp": 1})",
      R"({"sequence": 1, "data": 3, "timestamp": 1})",
      R"({"sequence": 1, "data": "x", "timestamp": "1"})",
      R"({"sequence": 1, "data": "x", "timestamp": 1e400})",
      R"({"sequence": 1, "data": "x", "timestamp": -0})",
      R"({"sequence": 1, "data": "x", "timestamp": 18446744073709551615})",
      R"({"sequence": 1, "data": "x", "timestamp": 4.9e-324})",
      R"({"sequence": 1, "data": "x", "timestamp": 1, "sequence": 2})",
      R"({"sequence": 1, "data": "x", "timestamp": 1, "extra": [1, {"a": null}], "more": true})",
      R"({"sequence": 1, "data": "x"})",
      R"({"sequence": 1, "data": "x", "timestamp": 1} x)",
      R"([1, 2])",
      "{\"sequence\": 1, \"data\": \"\xff\", \"timestamp\": 1}",
      "",
  };
  for (const auto& body : bodies) {
    const auto fast = parse_packet_body(body);
    const auto checked = parse_packet_body_checked(body);
    ASSERT_EQ(fast.index(), checked.index()) << body;
    if (const auto* p = std::get_if<packet_body>(&fast)) {
      const auto& q = std::get<packet_body>(checked);
      EXPECT_EQ(p->sequence, q.sequence) << body;
      EXPECT_EQ(p->data, q.data) << body;
      EXPECT_EQ(std::signbit(p->timestamp), std::signbit(q.timestamp)) << body;
      EXPECT_EQ(p->timestamp, q.timestamp) << body;
    } else {
      EXPECT_EQ(validation_body(std::get<validation_errors>(fast)), validation_body(std::get<validation_errors>(checked)))
          << body;
    }
  }
}

TEST(JsonCodec, TheIngestBodyIsTheOutcomeObjectAsText) {
  for (bool duplicate : {false, true}) {
    for (auto kind : {arrival::in_order, arrival::gap, arrival::late, arrival::before_start, arrival::after_lost}) {
      ingest_outcome o;
      o.duplicate = duplicate;
      o.kind = kind;
      o.expected = 42;
      o.last_sequence = 9007199254740991;
      o.missing = 3;
      for (std::string id : {"call-1", "weird\"id\\"}) {
        const std::string text = ingest_body(o, id, 17);
        EXPECT_EQ(boost::json::parse(text), boost::json::value(to_json(o, id, 17))) << text;
        // Seed clients read "message" first.
        EXPECT_TRUE(text.starts_with(R"({"message":"Packet accepted",)")) << text;
      }
    }
  }
}

TEST(JsonCodec, TranscriptKeepsResultsAndPartialsApart) {
  call_summary call;
  call.id = "c1";
  call.state = call_state::in_progress;
  call.jobs_total = 3;
  call.jobs_succeeded = 1;
  const call_media_format media{media::media_format::pcmu(), 20, true};
  const std::vector<transcript_segment> results{{2, 51, 100, "ten meters", "pocketsphinx", 900, 1000}};
  const std::vector<partial_segment> partials{{1, 1, 50, "go for", 600, 999}, {3, 101, 150, "now", 200, 1001}};
  const auto t = transcript_json(call, results, partials, media);
  EXPECT_EQ(t.at("text"), "ten meters") << "results alone";
  EXPECT_EQ(t.at("current_text"), "go for ten meters now") << "results and hypotheses in sequence order";
  const auto& segments = t.at("segments").as_array();
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_EQ(segments[0].at("partial"), false);
  const auto& heard = t.at("partials").as_array();
  ASSERT_EQ(heard.size(), 2u);
  EXPECT_EQ(heard[0].at("partial"), true);
  EXPECT_EQ(heard[0].at("job_id"), 1);
  EXPECT_EQ(heard[0].at("text"), "go for");
  EXPECT_EQ(heard[0].at("heard_s"), 0.6);
  EXPECT_EQ(heard[0].at("start"), 0.0);
  EXPECT_EQ(heard[0].at("end"), 1.0);
  EXPECT_EQ(heard[1].at("start"), 2.0);

  const auto none = transcript_json(call, results, {}, media);
  EXPECT_TRUE(none.at("partials").as_array().empty());
  EXPECT_EQ(none.at("current_text"), none.at("text"));
}

}  // namespace
}  // namespace aipbx::http
