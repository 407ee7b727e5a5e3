// The HTTP API of aipbx: routing, request checks and handlers (see docs and GET /openapi.json).
//
// `api::handle` is the business side of the transport: a request in, a response out, never an exception.
// Bad input is answered with a 4xx and a machine-readable body and never reaches the store; store errors
// map to status codes in one place (`error_response`), and a 5xx never carries internal details. Store
// reads run on the blocking pool; ingest waits for the store's group commit without holding a thread.
// Thread-safe: one api serves every connection.
#pragma once

#include "events/event_hub.hpp"
#include "http/auth.hpp"
#include "http/metrics.hpp"
#include "http/router.hpp"
#include "media/media_format.hpp"
#include "http/server.hpp"
#include "ingest/ingest_path.hpp"
#include "storage/call_store.hpp"
#include "storage/job_store.hpp"

#include <boost/asio/thread_pool.hpp>
#include <boost/json/object.hpp>
#include <boost/system/error_code.hpp>

#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>

namespace aipbx::http {

struct api_options {
  std::size_t body_limit = 1024 * 1024;  // reported in errors; enforced by the transport
  http::metrics* metrics = nullptr;      // counts requests and serves GET /metrics when set
  // The AI workers' counters for /metrics; empty on a node that runs no AI.
  std::function<std::optional<jobs::worker_stats>()> worker_stats;
  std::function<std::optional<engines::pause_cutter_stats>()> segmenter_stats;  // unset: --segmenter fixed
  std::string engine;                    // the AI engine's name, a label of the AI metrics
  unsigned workers = 0;
  // Bearer tokens: when the set in force has any, every route but /healthz, /readyz and /metrics answers
  // 401 without one of them (unknown paths too, so that a client without a token learns nothing of the API).
  const token_store* auth = nullptr;
  // Open connections for /metrics (the transport's count) and their limit; empty: not shown.
  std::function<std::size_t()> open_connections;
  // The transport's coroutine failures for /metrics; empty: not shown.
  std::function<server::failures()> transport_failures;
  std::size_t connection_limit = 0;
  // The format of calls that declare none (--media).
  media::media_format default_media = media::media_format::none();
  // The stream protocols, for /metrics; may be null.
  const streams::stream_hub* streams = nullptr;
  // The event stream (GET /v1/events); null: the route answers 503.
  events::event_hub* events = nullptr;
  std::chrono::milliseconds event_heartbeat{15'000};  // a comment (SSE) or heartbeat message when idle
  // This node, for GET /v1/nodes: its name (the lease owner of its jobs), the store's backend
  // ("sqlite", "postgresql") and when it started (unix seconds).
  std::string node_name;
  std::string backend = "sqlite";
  double started_at = 0;
};

class api final : public request_handler {
 public:
  // `ingest` is the node's one ingest path (shared with the stream protocols).
  api(call_store& store, job_store& jobs, ingest::ingest_path& ingest, boost::asio::thread_pool& blocking,
      api_options options);

  boost::asio::awaitable<response> handle(request req) override;
  // The WebSocket endpoints (/v1/media-streams, /v1/audio-fork[/{call_id}]): checks the route and the
  // credentials a stream may bring with its upgrade (see streams/stream_hub.hpp).
  upgrade_decision upgrade(const request& req) override;
  // GET /v1/events (without Upgrade): the event stream as Server-Sent Events, or why not.
  std::optional<streamed_response> stream(const request& req) override;

 private:
  boost::asio::awaitable<response> ingest(const request& req, const std::string& call_id);
  boost::asio::awaitable<response> list_calls(const request& req);
  boost::asio::awaitable<response> get_call(const std::string& call_id);
  boost::asio::awaitable<response> declare_media(const request& req, const std::string& call_id);
  boost::asio::awaitable<response> get_audio(const std::string& call_id);
  boost::asio::awaitable<response> list_packets(const request& req, const std::string& call_id);
  boost::asio::awaitable<response> get_gaps(const std::string& call_id);
  boost::asio::awaitable<response> get_transcript(const std::string& call_id);
  boost::asio::awaitable<response> list_events(const request& req, const std::string& call_id);
  // POST .../end (end == true) or .../archive.
  boost::asio::awaitable<response> change_call(const std::string& call_id, bool end);
  boost::asio::awaitable<response> list_jobs(const request& req);
  boost::asio::awaitable<response> get_job(const std::string& job_id);
  boost::asio::awaitable<response> retry_job(const std::string& job_id);
  boost::asio::awaitable<response> queue();
  boost::asio::awaitable<response> nodes();
  boost::json::object this_node() const;
  // A static file compiled into the binary (the docs, the dashboard), or 404.
  static response asset_response(std::string_view name);
  boost::asio::awaitable<response> readyz();
  boost::asio::awaitable<response> scrape();
  // The 401 answer when the route needs a token and the request has no valid one; nullopt to go on.
  std::optional<response> authorize(const request& req, const route_match& m) const;
  // The event stream's checks (its token, which may come as `?token=`, and its query) and the
  // subscription; a refusal otherwise (401, 422, 503).
  std::variant<response, std::shared_ptr<events::subscription>> subscribe_events(const request& req,
                                                                                 events::transport t);

  // Awaited operations are bound to a name first (`auto op = ...; co_await std::move(op)`): GCC 12 can
  // destroy non-trivial temporaries inside a co_await expression twice. Parameters are references into the
  // caller's frame, which outlives every handler.
  call_store& store_;
  job_store& jobs_;
  ingest::ingest_path& ingest_;
  boost::asio::thread_pool& blocking_;
  api_options options_;
};

// The one place where an error becomes an HTTP status and body.
response error_response(const boost::system::error_code& ec, std::string_view detail = {});

}  // namespace aipbx::http
