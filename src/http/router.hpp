// Maps a method and a decoded path to a route. Pure function, thread-safe.
//
// Routes are matched on whole path segments; `{name}` segments capture one decoded segment. A path that
// matches no route is 404; a path that matches with another method is 405, with the methods it allows.
// HEAD matches the GET routes.
#pragma once

#include <boost/beast/http/verb.hpp>

#include <ostream>

#include <string>
#include <string_view>
#include <vector>

namespace aipbx::http {

enum class route_id {
  healthz,
  readyz,
  metrics,
  openapi,
  docs,
  docs_asset,
  root,      // the dashboard's page
  ui_asset,  // the dashboard's script and style sheet
  ingest,
  list_calls,
  get_call,
  declare_media,
  get_audio,
  list_packets,
  get_gaps,
  get_transcript,
  list_events,
  end_call,
  archive_call,
  list_jobs,
  get_job,
  retry_job,
  queue,  // the AI queue's counts
  nodes,  // the nodes sharing the store
  events,           // the event stream: Server-Sent Events, or a WebSocket with Upgrade
  media_streams,    // Twilio Media Streams (WebSocket)
  audio_fork,       // the audio fork, call id in the metadata (WebSocket)
  audio_fork_call,  // the audio fork, call id in the path (WebSocket)
};

// Whether the route is a WebSocket endpoint.
inline bool is_websocket_route(route_id id) {
  return id == route_id::media_streams || id == route_id::audio_fork || id == route_id::audio_fork_call;
}

struct route_match {
  enum class kind { found, not_found, method_not_allowed } outcome = kind::not_found;
  route_id id = route_id::healthz;
  std::string_view pattern;          // e.g. "/v1/calls/{call_id}", for logs and metrics
  std::vector<std::string> params;   // captured segments, in order
  std::string allow;                 // for 405: e.g. "GET, HEAD"
};

route_match match_route(boost::beast::http::verb method, const std::vector<std::string>& segments);

}  // namespace aipbx::http
