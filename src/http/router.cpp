#include "http/router.hpp"

#include <array>

namespace aipbx::http {
namespace {

using boost::beast::http::verb;

struct route {
  verb method;
  std::string_view pattern;
  route_id id;
};

constexpr std::array<route, 28> routes{{
    {verb::get, "/", route_id::root},
    {verb::get, "/healthz", route_id::healthz},
    {verb::get, "/readyz", route_id::readyz},
    {verb::get, "/metrics", route_id::metrics},
    {verb::get, "/openapi.json", route_id::openapi},
    {verb::get, "/docs", route_id::docs},
    {verb::get, "/docs/{asset}", route_id::docs_asset},
    {verb::get, "/ui/{asset}", route_id::ui_asset},
    {verb::post, "/v1/call/stream/{call_id}", route_id::ingest},
    {verb::get, "/v1/calls", route_id::list_calls},
    {verb::get, "/v1/calls/{call_id}", route_id::get_call},
    {verb::post, "/v1/calls/{call_id}", route_id::declare_media},
    {verb::get, "/v1/calls/{call_id}/audio", route_id::get_audio},
    {verb::get, "/v1/calls/{call_id}/packets", route_id::list_packets},
    {verb::get, "/v1/calls/{call_id}/gaps", route_id::get_gaps},
    {verb::get, "/v1/calls/{call_id}/transcript", route_id::get_transcript},
    {verb::get, "/v1/calls/{call_id}/events", route_id::list_events},
    {verb::post, "/v1/calls/{call_id}/end", route_id::end_call},
    {verb::post, "/v1/calls/{call_id}/archive", route_id::archive_call},
    {verb::get, "/v1/jobs", route_id::list_jobs},
    {verb::get, "/v1/jobs/{job_id}", route_id::get_job},
    {verb::post, "/v1/jobs/{job_id}/retry", route_id::retry_job},
    {verb::get, "/v1/queue", route_id::queue},
    {verb::get, "/v1/nodes", route_id::nodes},
    // Server-Sent Events, or a WebSocket with Upgrade: websocket.
    {verb::get, "/v1/events", route_id::events},
    // WebSocket upgrades (GET with Upgrade: websocket); a plain GET is answered 426.
    {verb::get, "/v1/media-streams", route_id::media_streams},
    {verb::get, "/v1/audio-fork", route_id::audio_fork},
    {verb::get, "/v1/audio-fork/{call_id}", route_id::audio_fork_call},
}};

// Matches `segments` against `pattern`; fills `params` on success.
bool matches(std::string_view pattern, const std::vector<std::string>& segments, std::vector<std::string>& params) {
  params.clear();
  std::size_t i = 0;
  pattern.remove_prefix(1);  // leading '/'
  if (pattern.empty()) return segments.empty();
  while (!pattern.empty()) {
    const auto slash = pattern.find('/');
    const std::string_view part = pattern.substr(0, slash);
    pattern = slash == std::string_view::npos ? std::string_view{} : pattern.substr(slash + 1);
    if (i >= segments.size()) return false;
    if (part.starts_with('{')) {
      if (segments[i].empty()) return false;
      params.push_back(segments[i]);
    } else if (part != segments[i]) {
      return false;
    }
    ++i;
  }
  return i == segments.size();
}

}  // namespace

route_match match_route(verb method, const std::vector<std::string>& segments) {
  route_match m;
  std::vector<std::string> params;
  // HEAD is answered by the GET route (the transport drops the body).
  const verb wanted = method == verb::head ? verb::get : method;
  for (const auto& r : routes) {
    if (!matches(r.pattern, segments, params)) continue;
    if (r.method == wanted) {
      m.outcome = route_match::kind::found;
      m.allow.clear();  // another method's route of the same path may have come first
      m.id = r.id;
      m.pattern = r.pattern;
      m.params = std::move(params);
      return m;
    }
    m.outcome = route_match::kind::method_not_allowed;
    m.pattern = r.pattern;
    if (!m.allow.empty()) m.allow += ", ";
    m.allow += r.method == verb::get ? std::string("GET, HEAD") : std::string(boost::beast::http::to_string(r.method));
  }
  return m;
}

}  // namespace aipbx::http
