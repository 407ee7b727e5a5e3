#include "http/router.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace aipbx::http {
namespace {

using boost::beast::http::verb;
using kind = route_match::kind;

// Splits "/a/b/" into {"a", "b", ""} as Boost.URL's segments() does (the server feeds the router that way).
std::vector<std::string> split(std::string_view path) {
  std::vector<std::string> out;
  if (path == "/") return out;
  path.remove_prefix(1);
  for (;;) {
    const auto slash = path.find('/');
    out.emplace_back(path.substr(0, slash));
    if (slash == std::string_view::npos) break;
    path.remove_prefix(slash + 1);
  }
  return out;
}

route_match get_route(std::string_view path) { return match_route(verb::get, split(path)); }

TEST(Router, SplitHelperMatchesBoostUrl) {
  EXPECT_TRUE(split("/").empty());
  EXPECT_EQ(split("/healthz"), (std::vector<std::string>{"healthz"}));
  EXPECT_EQ(split("/v1/calls/"), (std::vector<std::string>{"v1", "calls", ""}));
}

struct route_case {
  verb method;
  const char* path;
  route_id id;
  const char* pattern;
  std::vector<std::string> params;
};

TEST(Router, EveryRoute) {
  const std::vector<route_case> cases = {
      {verb::get, "/", route_id::root, "/", {}},
      {verb::get, "/healthz", route_id::healthz, "/healthz", {}},
      {verb::get, "/readyz", route_id::readyz, "/readyz", {}},
      {verb::get, "/openapi.json", route_id::openapi, "/openapi.json", {}},
      {verb::get, "/docs", route_id::docs, "/docs", {}},
      {verb::get, "/docs/swagger-ui.css", route_id::docs_asset, "/docs/{asset}", {"swagger-ui.css"}},
      {verb::get, "/ui/dashboard.js", route_id::ui_asset, "/ui/{asset}", {"dashboard.js"}},
      {verb::get, "/v1/queue", route_id::queue, "/v1/queue", {}},
      {verb::get, "/v1/nodes", route_id::nodes, "/v1/nodes", {}},
      {verb::post, "/v1/call/stream/call-1", route_id::ingest, "/v1/call/stream/{call_id}", {"call-1"}},
      {verb::get, "/v1/calls", route_id::list_calls, "/v1/calls", {}},
      {verb::get, "/v1/calls/abc@host", route_id::get_call, "/v1/calls/{call_id}", {"abc@host"}},
      {verb::post, "/v1/calls/abc", route_id::declare_media, "/v1/calls/{call_id}", {"abc"}},
      {verb::get, "/v1/calls/c9/audio", route_id::get_audio, "/v1/calls/{call_id}/audio", {"c9"}},
      {verb::get, "/v1/calls/c9/packets", route_id::list_packets, "/v1/calls/{call_id}/packets", {"c9"}},
      {verb::get, "/v1/calls/c9/gaps", route_id::get_gaps, "/v1/calls/{call_id}/gaps", {"c9"}},
      {verb::get,
       "/v1/calls/c9:outbound/events",
       route_id::list_events,
       "/v1/calls/{call_id}/events",
       {"c9:outbound"}},
      {verb::get, "/v1/events", route_id::events, "/v1/events", {}},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.path);
    const route_match m = match_route(c.method, split(c.path));
    ASSERT_EQ(m.outcome, kind::found);
    EXPECT_EQ(m.id, c.id);
    EXPECT_EQ(m.pattern, c.pattern);
    EXPECT_EQ(m.params, c.params);
    EXPECT_TRUE(m.allow.empty());
  }
}

TEST(Router, CapturesDecodedSegmentVerbatim) {
  // The server decodes %2F etc. before routing: a captured segment may hold any character, checked later.
  const route_match m = match_route(verb::get, {"v1", "calls", "a/b c", "gaps"});
  ASSERT_EQ(m.outcome, kind::found);
  EXPECT_EQ(m.id, route_id::get_gaps);
  EXPECT_EQ(m.params, (std::vector<std::string>{"a/b c"}));
}

TEST(Router, PathsTheSameAsRouteNamesAreCalls) {
  // A call named "packets", "gaps" or "events" is still a call.
  for (const char* name : {"packets", "gaps", "events"}) {
    const route_match m = get_route(std::string("/v1/calls/") + name);
    ASSERT_EQ(m.outcome, kind::found);
    EXPECT_EQ(m.id, route_id::get_call);
    EXPECT_EQ(m.params, (std::vector<std::string>{name}));
  }
}

TEST(Router, UnknownPathsAre404) {
  for (const char* path :
       {"/nope", "/v1", "/v1/call", "/v1/call/stream", "/v1/calls/c1/packets/extra", "/v1/calls/c1/events/1",
        "/v1/calls/c1/unknown", "/V1/calls", "/HEALTHZ", "/healthz.json", "/v2/calls", "/docs/a/b"}) {
    SCOPED_TRACE(path);
    const route_match m = get_route(path);
    EXPECT_EQ(m.outcome, kind::not_found);
    EXPECT_TRUE(m.allow.empty());
    EXPECT_TRUE(m.params.empty());
  }
}

TEST(Router, TrailingSlashIs404) {
  for (const char* path : {"/healthz/", "/v1/calls/", "/v1/calls/c1/", "/v1/calls/c1/gaps/", "/docs/",
                           "/v1/call/stream/"}) {
    SCOPED_TRACE(path);
    EXPECT_EQ(get_route(path).outcome, kind::not_found);
    EXPECT_EQ(match_route(verb::post, split(path)).outcome, kind::not_found);
  }
}

TEST(Router, EmptyCaptureIs404) {
  EXPECT_EQ(match_route(verb::post, {"v1", "call", "stream", ""}).outcome, kind::not_found);
  EXPECT_EQ(match_route(verb::get, {"v1", "calls", "", "gaps"}).outcome, kind::not_found);
  EXPECT_EQ(get_route("//").outcome, kind::not_found);
}

TEST(Router, WrongMethodIs405WithAllow) {
  struct wrong {
    verb method;
    const char* path;
    const char* allow;
  };
  for (const auto& w : std::vector<wrong>{
           {verb::get, "/v1/call/stream/c1", "POST"},
           {verb::put, "/v1/call/stream/c1", "POST"},
           {verb::post, "/v1/calls", "GET, HEAD"},
           {verb::delete_, "/v1/calls/c1", "GET, HEAD, POST"},
           {verb::post, "/v1/calls/c1/audio", "GET, HEAD"},
           {verb::post, "/v1/calls/c1/packets", "GET, HEAD"},
           {verb::patch, "/v1/calls/c1/gaps", "GET, HEAD"},
           {verb::post, "/v1/calls/c1/events", "GET, HEAD"},
           {verb::post, "/healthz", "GET, HEAD"},
           {verb::post, "/readyz", "GET, HEAD"},
           {verb::post, "/", "GET, HEAD"},
           {verb::delete_, "/openapi.json", "GET, HEAD"},
           {verb::post, "/docs", "GET, HEAD"},
           {verb::post, "/docs/swagger-ui.css", "GET, HEAD"},
           {verb::get, "/v1/jobs/7/retry", "POST"},
           {verb::delete_, "/v1/jobs/7", "GET, HEAD"},
       }) {
    SCOPED_TRACE(w.path);
    const route_match m = match_route(w.method, split(w.path));
    EXPECT_EQ(m.outcome, kind::method_not_allowed);
    EXPECT_EQ(m.allow, w.allow);
    EXPECT_FALSE(m.pattern.empty());
  }
}

TEST(Router, HeadIsServedByTheGetRoute) {
  // The transport sends the GET's headers without the body.
  const route_match m = match_route(verb::head, split("/v1/calls/c1"));
  EXPECT_EQ(m.outcome, kind::found);
  EXPECT_EQ(m.id, route_id::get_call);
  ASSERT_EQ(m.params.size(), 1u);
  EXPECT_EQ(m.params[0], "c1");
  EXPECT_EQ(match_route(verb::head, split("/v1/call/stream/c1")).outcome, kind::method_not_allowed);
}

TEST(Router, JobRoutes) {
  auto m = match_route(verb::get, split("/v1/jobs"));
  EXPECT_EQ(m.id, route_id::list_jobs);
  m = match_route(verb::get, split("/v1/jobs/42"));
  EXPECT_EQ(m.id, route_id::get_job);
  EXPECT_EQ(m.params.at(0), "42");
  m = match_route(verb::post, split("/v1/jobs/42/retry"));
  EXPECT_EQ(m.id, route_id::retry_job);
  m = match_route(verb::get, split("/v1/calls/c1/transcript"));
  EXPECT_EQ(m.id, route_id::get_transcript);
  EXPECT_EQ(m.params.at(0), "c1");
}

}  // namespace
}  // namespace aipbx::http
