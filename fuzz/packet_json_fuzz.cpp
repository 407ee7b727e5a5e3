// Fuzz target: the ingest body parser (parse_packet_body) and the call_id check, on untrusted bytes.
//
// parse_packet_body's one-pass path must give exactly what the checked path gives (same acceptance, same
// packet to the last bit of the timestamp); the errors come from the checked path in both cases.
// The input is used twice: as a request body and as a call_id from the path. Beyond "no crash, no
// sanitizer report", it checks what the API promises about both:
//  - an accepted body holds a sequence in [0, 2^53-1], a finite timestamp, and data that is valid UTF-8;
//    written back as JSON and parsed again, it gives the same packet, the timestamp to the last bit;
//  - a rejected body has at least one error, every error located under "body", and the 422 body built
//    from them is valid JSON (bytes echoed back are sanitized);
//  - check_call_id rejects exactly what is_valid_call_id rejects, and is_valid_call_id agrees with the
//    documented rule (1 to 128 of [A-Za-z0-9._:@+=-], not dots alone), checked here independently.
#include "domain/call_id.hpp"
#include "domain/call_state.hpp"
#include "http/json_codec.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <variant>

namespace {

namespace json = boost::json;
using namespace aipbx;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "packet_json_fuzz: invariant violated: %s\n", what);
  std::abort();
}

void require(bool ok, const char* what) {
  if (!ok) fail(what);
}

// The documented call_id rule, written from the README rather than from call_id.cpp.
bool documented_call_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  bool only_dots = true;
  for (unsigned char c : id) {
    const bool alnum = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && std::string_view("._:@+=-").find(static_cast<char>(c)) == std::string_view::npos) return false;
    if (c != '.') only_dots = false;
  }
  return !only_dots;
}

void check_body(std::string_view input) {
  auto parsed = http::parse_packet_body(input);
  // The one-pass parser and the checked, document-building one agree on every input.
  const auto checked = http::parse_packet_body_checked(input);
  require(parsed.index() == checked.index(), "one-pass and checked parsers disagree on acceptance");
  if (auto* body = std::get_if<http::packet_body>(&parsed)) {
    const auto& other = std::get<http::packet_body>(checked);
    require(body->sequence == other.sequence && body->data == other.data, "one-pass and checked packets differ");
    require(std::signbit(body->timestamp) == std::signbit(other.timestamp) && body->timestamp == other.timestamp,
            "one-pass and checked timestamps differ");
    require(body->sequence >= 0 && body->sequence <= max_sequence, "accepted sequence out of range");
    require(std::isfinite(body->timestamp), "accepted timestamp not finite");
    // Round trip: what was accepted, written as the canonical body, is accepted again unchanged.
    json::object again;
    again["sequence"] = body->sequence;
    again["data"] = json::string_view(body->data.data(), body->data.size());  // parse fails on bad UTF-8
    again["timestamp"] = body->timestamp;
    const std::string text = json::serialize(again);
    auto reparsed = http::parse_packet_body(text);
    auto* second = std::get_if<http::packet_body>(&reparsed);
    require(second != nullptr, "re-serialized packet rejected");
    require(second->sequence == body->sequence, "sequence changed on round trip");
    require(second->data == body->data, "data changed on round trip");
    require(second->timestamp == body->timestamp, "timestamp changed on round trip");
    return;
  }
  const auto& errors = std::get<http::validation_errors>(parsed);
  require(!errors.empty(), "rejected body without errors");
  for (const auto& e : errors) {
    require(!e.type.empty() && !e.msg.empty(), "error without type or message");
    require(!e.loc.empty() && e.loc[0] == "body", "body error not located under body");
  }
  boost::system::error_code ec;
  const json::value doc = json::parse(http::validation_body(errors), ec);
  require(!ec, "422 body is not valid JSON");
  require(doc.is_object() && doc.as_object().contains("detail"), "422 body without detail");
  require(doc.at("detail").as_array().size() == errors.size(), "422 body lost errors");
}

void check_call_id(std::string_view input) {
  const bool valid = is_valid_call_id(input);
  require(valid == documented_call_id(input), "is_valid_call_id disagrees with the documented rule");
  const auto error = http::check_call_id(input);
  require(valid == !error.has_value(), "check_call_id disagrees with is_valid_call_id");
  if (error) {
    require(error->type == "string_pattern_mismatch", "call_id error of an unexpected type");
    boost::system::error_code ec;
    json::parse(http::validation_body({*error}), ec);
    require(!ec, "call_id 422 body is not valid JSON");
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  check_body(input);
  check_call_id(input);
  return 0;
}
