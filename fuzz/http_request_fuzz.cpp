// Fuzz target: the HTTP request path, from bytes on a connection to the route and the ingest body.
//
// The bytes are one connection's input. They go through a Beast request_parser set up as
// server::serve sets it up (header and body limits of server_options' defaults, eager body) and fed the
// way serve feeds it: put() on what is buffered, consume what was used, read more only when the parser
// needs it, next request from the leftover bytes, stop on an error or a request without keep-alive.
// Every complete request is then routed as api::handle routes it (origin-form target, decoded segments,
// match_route) and, for the ingest route, its call_id and body are checked as api::ingest checks them.
//
// Beyond "no crash, no sanitizer report, no hang", it checks that
//  - the outcome does not depend on how TCP splits the bytes: the connection is replayed with reads of
//    4096 bytes (serve's read size) and with small reads, and both must give the same requests, routes
//    and errors. Two differences are Beast 1.81's and tolerated (see `benign_split_difference`);
//  - the router is consistent: a found route captures one non-empty segment per `{name}`; a 405 names
//    the methods that do match; a 404 matches with neither GET nor POST.
#include "http/json_codec.hpp"
#include "http/router.hpp"
#include "http/server.hpp"

#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/json/parse.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace {

namespace beast = boost::beast;
namespace beast_http = boost::beast::http;
using namespace aipbx::http;
using boost::beast::http::verb;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "http_request_fuzz: invariant violated: %s\n", what);
  std::abort();
}

void require(bool ok, const char* what) {
  if (!ok) fail(what);
}

// What api::handle would do with the request, as far as routing and ingest validation go.
std::string route(const request& req) {
  auto target = boost::urls::parse_origin_form(req.target());
  if (!target) return "400 bad target";
  std::vector<std::string> segments;
  for (auto s : target->segments()) segments.push_back(s);
  const route_match m = match_route(req.method(), segments);
  switch (m.outcome) {
    case route_match::kind::not_found:
      require(match_route(verb::get, segments).outcome == route_match::kind::not_found, "404 but GET matches");
      require(match_route(verb::post, segments).outcome == route_match::kind::not_found, "404 but POST matches");
      return "404";
    case route_match::kind::method_not_allowed: {
      require(!m.allow.empty(), "405 without Allow");
      const bool get_allowed = m.allow.find("GET") != std::string::npos;
      const bool post_allowed = m.allow.find("POST") != std::string::npos;
      require(get_allowed || post_allowed, "405 allows neither GET nor POST");
      require(!get_allowed || match_route(verb::get, segments).outcome == route_match::kind::found,
              "405 allows GET but GET does not match");
      require(!post_allowed || match_route(verb::post, segments).outcome == route_match::kind::found,
              "405 allows POST but POST does not match");
      return "405 " + m.allow;
    }
    case route_match::kind::found: break;
  }
  require(static_cast<std::size_t>(std::count(m.pattern.begin(), m.pattern.end(), '{')) == m.params.size(),
          "captured segments do not match the pattern");
  for (const auto& p : m.params) require(!p.empty(), "empty captured segment");
  std::string out = "found " + std::string(m.pattern);
  // The list routes read their query parameters.
  for (auto param : target->params()) out += param.has_value ? "&" + param.key + "=" + param.value : "&" + param.key;
  if (m.id == route_id::ingest) {
    validation_errors errors;
    if (auto e = check_call_id(m.params[0])) errors.push_back(std::move(*e));
    auto parsed = parse_packet_body(req.body());
    if (auto* body_errors = std::get_if<validation_errors>(&parsed)) {
      errors.insert(errors.end(), body_errors->begin(), body_errors->end());
    }
    if (errors.empty()) {
      const auto& p = std::get<packet_body>(parsed);
      out += " 202 " + std::to_string(p.sequence);
    } else {
      boost::system::error_code ec;
      boost::json::parse(validation_body(errors), ec);
      require(!ec, "422 body is not valid JSON");
      out += " 422 " + std::to_string(errors.size());
    }
  }
  return out;
}

// One connection, its input delivered `read_size` bytes per read; returns what happened, in order.
std::vector<std::string> serve(std::string_view input, std::size_t read_size) {
  const server_options options;  // the defaults of `aipbx serve`
  std::vector<std::string> events;
  beast::flat_buffer buffer;
  for (;;) {
    beast_http::request_parser<beast_http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(options.header_limit));
    parser.body_limit(options.body_limit);
    parser.eager(true);
    for (;;) {
      if (buffer.size() > 0) {
        boost::system::error_code pec;
        const auto used = parser.put(buffer.data(), pec);
        buffer.consume(used);
        if (pec && pec != beast_http::error::need_more) {
          if (pec == beast_http::error::header_limit) {
            events.emplace_back("431");
          } else if (pec == beast_http::error::body_limit) {
            events.emplace_back("413");
          } else {
            events.emplace_back("400 " + pec.message());
          }
          return events;
        }
        if (parser.is_done()) break;
        if (!pec && used > 0 && buffer.size() > 0) continue;
      }
      if (parser.is_header_done()) {
        // serve() answers 100 Continue here; whether it does depends on the split, so it is not an event.
        (void)beast::iequals(parser.get()[beast_http::field::expect], "100-continue");
      }
      if (input.empty()) {
        if (parser.got_some() || buffer.size() > 0) events.emplace_back("closed mid-request");
        return events;
      }
      const std::size_t n = std::min(read_size, input.size());
      auto space = buffer.prepare(n);
      std::copy_n(input.data(), n, static_cast<char*>(space.data()));
      buffer.commit(n);
      input.remove_prefix(n);
    }
    request req = parser.release();
    std::string event = std::string(req.method_string()) + " " + std::string(req.target()) + " HTTP/" +
                        std::to_string(req.version()) + " body " + std::to_string(req.body().size()) + " -> " +
                        route(req);
    const bool keep_alive = req.keep_alive();
    events.push_back(std::move(event));
    if (!keep_alive) return events;
  }
}

// Where two replays of one connection may differ because of how Beast's parser works, not because of
// how the server drives it. Either way no request is answered differently: one replay refuses it, or
// waits for more, where the other, which saw more bytes at once, refuses it otherwise or goes on.
//  - A request both malformed and too large, or malformed in a way Beast sees only with enough bytes at
//    hand, is refused with another status (400, 413, 431) or left waiting for more bytes (the server
//    then drops it at request_timeout). For instance a header ended by a bare LF LF (not CRLF) is seen
//    as ended, and refused as malformed, only when both LFs arrive in one read.
//  - header_limit is checked when a read leaves the header unfinished, so a header a little over the
//    limit (with 4 KiB reads, up to about 8 KiB over) is accepted when its end arrives soon enough, and
//    refused (431) when it arrives in smaller pieces. fuzz/crashes/http_request-header-limit-split shows it.
bool is_request(const std::string& event) { return event.find(" -> ") != std::string::npos; }

bool benign_split_difference(const std::vector<std::string>& a, const std::vector<std::string>& b) {
  const auto [ia, ib] = std::mismatch(a.begin(), a.end(), b.begin(), b.end());
  if (ia == a.end() || ib == b.end()) return false;
  const bool a_ends = ia + 1 == a.end();
  const bool b_ends = ib + 1 == b.end();
  if (a_ends && b_ends && !is_request(*ia) && !is_request(*ib)) return true;
  return a_ends && *ia == "431" && is_request(*ib);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  const auto whole = serve(input, 4096);
  // Small reads of a size chosen by the input, so that every split gets explored.
  const std::size_t small = 1 + size % 31;
  const auto split = serve(input, small);
  if (whole != split && !benign_split_difference(whole, split) && !benign_split_difference(split, whole)) {
    std::fprintf(stderr, "reads of 4096 bytes:\n");
    for (const auto& e : whole) std::fprintf(stderr, "  %s\n", e.c_str());
    std::fprintf(stderr, "reads of %zu bytes:\n", small);
    for (const auto& e : split) std::fprintf(stderr, "  %s\n", e.c_str());
    fail("outcome depends on how the bytes are split");
  }
  return 0;
}
