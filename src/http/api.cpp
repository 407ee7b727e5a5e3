#include "http/api.hpp"

#include "domain/call_id.hpp"
#include "domain/clock.hpp"
#include "http/assets.hpp"
#include "http/event_stream.hpp"
#include "http/json_codec.hpp"
#include "http/router.hpp"
#include "log/json_text.hpp"
#include "log/log.hpp"
#include "media/audio_codec.hpp"
#include "media/wav.hpp"
#include "storage/async_store.hpp"

#include <boost/json/serialize.hpp>
#include <boost/url/parse.hpp>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdio>
#include <limits>

namespace aipbx::http {

namespace asio = boost::asio;
namespace json = boost::json;
using beast_http::status;

namespace {

std::atomic<std::uint64_t> request_counter{0};

// Events shown in the view of a call (GET /v1/calls/{call_id}); the rest are paged at .../events.
constexpr std::size_t first_events = 100;

response json_response(status s, std::string body) {
  response res{s, 11};
  res.set(beast_http::field::content_type, "application/json");
  res.body() = std::move(body);
  return res;
}

response json_response(status s, const json::value& v) { return json_response(s, to_json_text(v)); }

// {"<name>": [items as JSON], "next_after": cursor or null}: the shape of every paged listing.
template <class Items, class Cursor>
response page_response(std::string_view name, const Items& items, const std::optional<Cursor>& next_after,
                       json::object extra = {}) {
  json::array out;
  for (const auto& item : items) out.push_back(to_json(item));
  extra[name] = std::move(out);
  extra["next_after"] = next_after ? json::value(*next_after) : json::value(nullptr);
  return json_response(status::ok, json::value(std::move(extra)));
}

response unprocessable(const validation_errors& errors) {
  return json_response(status::unprocessable_entity, validation_body(errors));
}

// Reads an integer query parameter within [min, max]; on failure adds a FastAPI-shaped error.
std::int64_t query_int(const boost::urls::params_view& params, std::string_view name, std::int64_t fallback,
                       std::int64_t min, std::int64_t max, validation_errors& errors) {
  auto it = params.find(name);
  if (it == params.end()) return fallback;
  const std::string value = (*it).value;
  std::int64_t parsed = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), parsed);
  if (ec != std::errc{} || end != value.data() + value.size() || value.empty()) {
    errors.push_back(invalid_query(name, "int_parsing",
                                   "Input should be a valid integer, unable to parse string as an integer", value));
  } else if (parsed < min) {
    errors.push_back(invalid_query(name, "greater_than_equal",
                                   "Input should be greater than or equal to " + std::to_string(min), value,
                                   {{"ge", min}}));
  } else if (parsed > max) {
    errors.push_back(invalid_query(name, "less_than_equal",
                                   "Input should be less than or equal to " + std::to_string(max), value,
                                   {{"le", max}}));
  } else {
    return parsed;
  }
  return fallback;
}

// A job id from the path: a positive integer.
std::optional<std::int64_t> parse_job_id(const std::string& text, validation_errors& errors) {
  std::int64_t id = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), id);
  if (ec != std::errc{} || end != text.data() + text.size()) {
    errors.push_back({"int_parsing", json::array{"path", "job_id"},
                      "Input should be a valid integer, unable to parse string as an integer", sanitized(text), {}});
  } else if (id <= 0) {
    errors.push_back({"greater_than", json::array{"path", "job_id"}, "Input should be greater than 0",
                      sanitized(text), {{"gt", 0}}});
  } else {
    return id;
  }
  return std::nullopt;
}

response unsupported_media_type() {
  return json_response(status::unsupported_media_type,
                       error_body("Unsupported Media Type: the body must be application/json", "unsupported_media_type"));
}

bool is_json_content_type(std::string_view value) {
  const auto semicolon = value.find(';');
  std::string_view type = value.substr(0, semicolon);
  while (!type.empty() && (type.back() == ' ' || type.back() == '\t')) type.remove_suffix(1);
  while (!type.empty() && (type.front() == ' ' || type.front() == '\t')) type.remove_prefix(1);
  if (boost::beast::iequals(type, "application/json")) return true;
  return type.size() > 5 && boost::beast::iequals(type.substr(type.size() - 5), "+json") &&
         boost::beast::iequals(type.substr(0, 12), "application/");
}

// The request's X-Request-ID, or one made up (r<counter>) when it has none or one too long.
std::string request_id(const request& req) {
  std::string rid(req["X-Request-ID"]);
  if (rid.empty() || rid.size() > 128) {
    char buf[24];
    std::snprintf(buf, sizeof buf, "r%llx",
                  static_cast<unsigned long long>(request_counter.fetch_add(1, std::memory_order_relaxed)));
    rid = buf;
  }
  return rid;
}

// 401 for a request without a valid token (RFC 6750: no error code when credentials are absent,
// invalid_token when they do not match).
response unauthorized(bool missing, std::string_view what = "bearer token") {
  auto res = json_response(status::unauthorized,
                           error_body(missing ? "Not authenticated" : "Invalid or unknown " + std::string(what), "unauthorized"));
  res.set(beast_http::field::www_authenticate,
          missing ? "Bearer realm=\"aipbx\"" : "Bearer realm=\"aipbx\", error=\"invalid_token\"");
  return res;
}

// The event stream's query: ?call=, ?kind= (a comma list), ?after=, and the Last-Event-ID header, which
// wins over ?after= (an EventSource reconnects to the URL it opened, ?after= included, with the header).
struct event_query {
  event_filter filter;
  std::optional<std::int64_t> after;
};

std::string kind_names() {
  std::string out;
  for (std::size_t i = 0; i < event_kind_count; ++i) {
    if (i > 0) out += ", ";
    out += to_string(static_cast<event_kind>(i));
  }
  return out;
}

void parse_kinds(std::string_view value, event_filter& filter, validation_errors& errors) {
  std::string_view rest = value;
  for (;;) {
    const auto comma = rest.find(',');
    std::string_view item = rest.substr(0, comma);
    while (!item.empty() && item.front() == ' ') item.remove_prefix(1);
    while (!item.empty() && item.back() == ' ') item.remove_suffix(1);
    if (auto k = parse_event_kind(item)) {
      if (std::find(filter.kinds.begin(), filter.kinds.end(), *k) == filter.kinds.end()) filter.kinds.push_back(*k);
    } else {
      errors.push_back(invalid_query("kind", "enum", "Input should be a comma-separated list of: " + kind_names(), value));
      return;
    }
    if (comma == std::string_view::npos) return;
    rest.remove_prefix(comma + 1);
  }
}

std::optional<std::int64_t> parse_last_event_id(std::string_view value, validation_errors& errors) {
  std::int64_t id = 0;
  auto [end, ec] = std::from_chars(value.data(), value.data() + value.size(), id);
  if (ec == std::errc{} && end == value.data() + value.size() && id >= 0) return id;
  errors.push_back({"int_parsing", json::array{"header", "last-event-id"},
                    "Last-Event-ID should be an event id (a non-negative integer)", sanitized(value), {}});
  return std::nullopt;
}

event_query parse_event_query(const request& req, const boost::urls::params_view& params, validation_errors& errors) {
  event_query q;
  if (auto it = params.find("call"); it != params.end()) {
    const std::string value = (*it).value;
    if (is_valid_call_id(value)) q.filter.call_id = value;
    else
      errors.push_back(invalid_query("call", "string_pattern_mismatch",
                                     "String should match pattern '" + std::string(call_id_pattern) + "'", value,
                                     {{"pattern", json::string_view(call_id_pattern.data(), call_id_pattern.size())}}));
  }
  if (auto it = params.find("kind"); it != params.end()) parse_kinds(std::string((*it).value), q.filter, errors);
  if (params.find("after") != params.end())
    q.after = query_int(params, "after", 0, 0, std::numeric_limits<std::int64_t>::max(), errors);
  if (auto last = req["Last-Event-ID"]; !last.empty()) q.after = parse_last_event_id(last, errors);
  return q;
}

}  // namespace

response error_response(const boost::system::error_code& ec, std::string_view detail) {
  if (ec.category() != aipbx_category()) {
    return json_response(status::internal_server_error, error_body("Internal Server Error", "internal"));
  }
  auto with_detail = [&](std::string_view fallback) { return detail.empty() ? fallback : detail; };
  switch (static_cast<errc>(ec.value())) {
    case errc::invalid_input:
      return json_response(status::unprocessable_entity, error_body(with_detail("Invalid input"), "invalid_input"));
    case errc::not_found:
      return json_response(status::not_found, error_body(with_detail("Not Found"), "not_found"));
    case errc::sequence_conflict:
      return json_response(status::conflict, error_body(with_detail("Sequence already stored with different data"),
                                                        "sequence_conflict"));
    case errc::invalid_transition:
      return json_response(status::conflict,
                           error_body(with_detail("The call's state does not allow this"), "invalid_transition"));
    case errc::job_not_dead:
      return json_response(status::conflict,
                           error_body(with_detail("Only a dead job can be retried"), "job_not_dead"));
    case errc::call_ended:
      return json_response(status::conflict,
                           error_body(with_detail("The call has ended and takes no more packets"), "call_ended"));
    case errc::overloaded: {
      auto res = json_response(status::service_unavailable,
                               error_body("Too many packets waiting to be stored; retry shortly", "overloaded"));
      res.set(beast_http::field::retry_after, "1");
      return res;
    }
    case errc::unavailable: {
      auto res = json_response(status::service_unavailable,
                               error_body("The store is unavailable; retry shortly", "unavailable"));
      res.set(beast_http::field::retry_after, "1");
      return res;
    }
    case errc::media_conflict:
      return json_response(status::conflict,
                           error_body(with_detail("The call already declared another media format"), "media_conflict"));
    case errc::media_too_late:
      return json_response(status::conflict,
                           error_body(with_detail("The call already has packets: declare its media before the first one"),
                                      "media_too_late"));
    case errc::media_changed:
      return json_response(status::conflict,
                           error_body(with_detail("The call's media declaration changed while the packet was checked; "
                                                  "send it again"),
                                      "media_changed"));
    case errc::ok:
    case errc::store_failure: break;
  }
  return json_response(status::internal_server_error, error_body("Internal Server Error", "internal"));
}

api::api(call_store& store, job_store& jobs, ingest::ingest_path& ingest, asio::thread_pool& blocking,
         api_options options)
    : store_(store), jobs_(jobs), ingest_(ingest), blocking_(blocking), options_(std::move(options)) {}

asio::awaitable<response> api::handle(request req) {
  const auto started = std::chrono::steady_clock::now();
  const std::string rid = request_id(req);
  response res;
  std::string_view pattern = "unmatched";
  try {
    auto target = boost::urls::parse_origin_form(req.target());
    if (!target) {
      res = json_response(status::bad_request, error_body("Malformed request target", "bad_request"));
    } else {
      std::vector<std::string> segments;
      for (auto s : target->segments()) segments.push_back(s);
      const route_match m = match_route(req.method(), segments);
      pattern = m.pattern.empty() ? pattern : m.pattern;
      if (auto denied = authorize(req, m)) {
        res = std::move(*denied);
      } else if (m.outcome == route_match::kind::not_found) {
        res = json_response(status::not_found, error_body("Not Found", "not_found"));
      } else if (m.outcome == route_match::kind::method_not_allowed) {
        res = json_response(status::method_not_allowed, error_body("Method Not Allowed", "method_not_allowed"));
        res.set(beast_http::field::allow, m.allow);
      } else {
        switch (m.id) {
          case route_id::root: res = asset_response("index.html"); break;
          case route_id::ui_asset: res = asset_response("ui/" + m.params[0]); break;
          case route_id::healthz: res = json_response(status::ok, json::value{{"status", "ok"}}); break;
          case route_id::readyz: res = co_await readyz(); break;
          case route_id::metrics: res = co_await scrape(); break;
          case route_id::openapi:
          case route_id::docs:
          case route_id::docs_asset:
            res = asset_response(m.id == route_id::openapi ? "openapi.json"
                                 : m.id == route_id::docs  ? "docs"
                                                           : "docs/" + m.params[0]);
            break;
          case route_id::ingest: res = co_await ingest(req, m.params[0]); break;
          case route_id::list_calls: res = co_await list_calls(req); break;
          case route_id::get_call: res = co_await get_call(m.params[0]); break;
          case route_id::declare_media: res = co_await declare_media(req, m.params[0]); break;
          case route_id::get_audio: res = co_await get_audio(m.params[0]); break;
          case route_id::list_packets: res = co_await list_packets(req, m.params[0]); break;
          case route_id::get_gaps: res = co_await get_gaps(m.params[0]); break;
          case route_id::get_transcript: res = co_await get_transcript(m.params[0]); break;
          case route_id::list_events: res = co_await list_events(req, m.params[0]); break;
          case route_id::end_call: res = co_await change_call(m.params[0], true); break;
          case route_id::archive_call: res = co_await change_call(m.params[0], false); break;
          case route_id::list_jobs: res = co_await list_jobs(req); break;
          case route_id::get_job: res = co_await get_job(m.params[0]); break;
          case route_id::retry_job: res = co_await retry_job(m.params[0]); break;
          case route_id::queue: res = co_await queue(); break;
          case route_id::nodes: res = co_await nodes(); break;
          case route_id::events:
            // A GET is answered by stream() when the node has an event hub; HEAD gets the stream's head.
            if (req.method() == beast_http::verb::head && options_.events != nullptr) {
              res = response{status::ok, 11};
              res.set(beast_http::field::content_type, "text/event-stream");
              res.set(beast_http::field::cache_control, "no-cache");
            } else {
              res = json_response(status::service_unavailable,
                                  error_body("The event stream is not available on this node", "unavailable"));
            }
            break;
          case route_id::media_streams:
          case route_id::audio_fork:
          case route_id::audio_fork_call:
            res = json_response(status::upgrade_required,
                                error_body("This endpoint is a WebSocket: send Upgrade: websocket", "upgrade_required"));
            res.set(beast_http::field::upgrade, "websocket");
            res.set(beast_http::field::connection, "Upgrade");
            break;
        }
      }
    }
  } catch (const std::exception& e) {
    log::error("request failed", {{"request_id", rid}, {"error", e.what()}});
    res = json_response(status::internal_server_error, error_body("Internal Server Error", "internal"));
  }
  res.set("X-Request-ID", rid);
  if (options_.metrics) options_.metrics->request(pattern, res.result_int());
  if (log::enabled(log::level::debug)) {
    const auto micros =
        std::chrono::duration_cast<std::chrono::microseconds>(std::chrono::steady_clock::now() - started).count();
    log::debug("request", {{"request_id", rid},
                           {"method", std::string(req.method_string())},
                           {"route", pattern},
                           {"status", res.result_int()},
                           {"micros", micros}});
  }
  co_return res;
}

upgrade_decision api::upgrade(const request& req) {
  upgrade_decision d;
  const auto refuse = [&](response res, std::string_view pattern) {
    if (options_.metrics) options_.metrics->request(pattern, res.result_int());
    d.refusal = std::move(res);
    return d;
  };
  auto target = boost::urls::parse_origin_form(req.target());
  if (!target) return refuse(json_response(status::bad_request, error_body("Malformed request target", "bad_request")), "unmatched");
  std::vector<std::string> segments;
  for (auto seg : target->segments()) segments.push_back(seg);
  const route_match m = match_route(req.method(), segments);
  if (m.outcome == route_match::kind::found && m.id == route_id::events && options_.events != nullptr) {
    auto subscribed = subscribe_events(req, events::transport::websocket);
    if (auto* refusal = std::get_if<response>(&subscribed)) return refuse(std::move(*refusal), m.pattern);
    auto sub = std::get<std::shared_ptr<events::subscription>>(std::move(subscribed));
    d.run = [sub, heartbeat = options_.event_heartbeat](streams::message_channel& channel) {
      return serve_event_socket(channel, sub, heartbeat);
    };
    if (options_.metrics) options_.metrics->request(m.pattern, 101);
    return d;
  }
  if (m.outcome != route_match::kind::found || !is_websocket_route(m.id))
    return refuse(json_response(status::not_found, error_body("Not Found: no WebSocket endpoint here", "not_found")),
                  m.pattern.empty() ? std::string_view("unmatched") : m.pattern);
  streams::stream_request& r = d.stream;
  r.kind = m.id == route_id::media_streams ? streams::protocol::twilio : streams::protocol::audio_fork;
  if (m.id == route_id::audio_fork_call) {
    if (auto e = check_call_id(m.params[0])) return refuse(unprocessable({*e}), m.pattern);
    r.call_id = m.params[0];
  }
  for (auto p : target->params()) r.query.emplace_back(std::string(p.key), p.has_value ? std::string(p.value) : std::string());
  // Senders that cannot set a bearer header authenticate otherwise: Basic auth with a token as password
  // (FreeSWITCH, jambonz), `?token=`, or a token in the stream's first message (Twilio's custom parameter
  // `token`, the fork's metadata), which the protocol session checks.
  r.authenticated = true;
  if (options_.auth != nullptr) {
    const auto tokens = options_.auth->current();
    const auto outcome = tokens->check_stream(req[beast_http::field::authorization], r.find("token"));
    if (outcome == token_verifier::outcome::invalid) {
      auto res = json_response(status::unauthorized, error_body("Invalid or unknown token", "unauthorized"));
      res.set(beast_http::field::www_authenticate, "Bearer realm=\"aipbx\", error=\"invalid_token\"");
      return refuse(std::move(res), m.pattern);
    }
    r.authenticated = outcome == token_verifier::outcome::ok;
  }
  // The sub-protocol the client asks for first (mod_audio_fork asks for audio.drachtio.org) is echoed.
  if (auto asked = req[beast_http::field::sec_websocket_protocol]; !asked.empty()) {
    auto first = asked.substr(0, asked.find(','));
    while (!first.empty() && first.back() == ' ') first.remove_suffix(1);
    while (!first.empty() && first.front() == ' ') first.remove_prefix(1);
    d.subprotocol = std::string(first);
  }
  if (options_.metrics) options_.metrics->request(m.pattern, 101);
  return d;
}

std::optional<response> api::authorize(const request& req, const route_match& m) const {
  if (options_.auth == nullptr) return std::nullopt;
  const auto tokens = options_.auth->current();
  if (!tokens->enabled()) return std::nullopt;
  // Probes and scrapers; and the dashboard's page and assets, the same for everyone and holding no data
  // (a browser cannot send a header when it opens a page: the page asks for a token and sends it itself).
  if (m.outcome == route_match::kind::found &&
      (m.id == route_id::healthz || m.id == route_id::readyz || m.id == route_id::metrics ||
       m.id == route_id::root || m.id == route_id::ui_asset))
    return std::nullopt;
  const auto outcome = tokens->check(req[beast_http::field::authorization]);
  if (outcome == token_verifier::outcome::ok) return std::nullopt;
  return unauthorized(outcome == token_verifier::outcome::missing);
}

std::optional<streamed_response> api::stream(const request& req) {
  // Cheap for every other request: a GET of /v1/events exactly, with or without a query.
  if (req.method() != beast_http::verb::get || options_.events == nullptr) return std::nullopt;
  const std::string_view target(req.target().data(), req.target().size());
  constexpr std::string_view path = "/v1/events";
  if (!target.starts_with(path) || (target.size() > path.size() && target[path.size()] != '?')) return std::nullopt;
  streamed_response out;
  try {
    auto subscribed = subscribe_events(req, events::transport::sse);
    if (auto* refusal = std::get_if<response>(&subscribed)) {
      out.head = std::move(*refusal);
    } else {
      out.head = response{status::ok, 11};
      out.head.set(beast_http::field::content_type, "text/event-stream");
      out.head.set(beast_http::field::cache_control, "no-cache");
      out.head.set("X-Accel-Buffering", "no");  // proxies such as nginx pass each event on at once
      out.body = sse_events(std::get<std::shared_ptr<events::subscription>>(std::move(subscribed)),
                            options_.event_heartbeat);
    }
  } catch (const std::exception& e) {
    log::error("request failed", {{"route", path}, {"error", e.what()}});
    out.head = json_response(status::internal_server_error, error_body("Internal Server Error", "internal"));
    out.body.reset();
  }
  out.head.set("X-Request-ID", request_id(req));
  if (options_.metrics) options_.metrics->request(path, out.head.result_int());
  return out;
}

std::variant<response, std::shared_ptr<events::subscription>> api::subscribe_events(const request& req,
                                                                                    events::transport t) {
  auto target = boost::urls::parse_origin_form(req.target());
  if (!target) return json_response(status::bad_request, error_body("Malformed request target", "bad_request"));
  const auto params = target->params();
  // An EventSource cannot set a header: the token may come as ?token= (as for the streams), or as Basic
  // auth whose password is a token.
  if (options_.auth != nullptr) {
    const auto tokens = options_.auth->current();
    std::string query_token;
    if (auto it = params.find("token"); it != params.end()) query_token = (*it).value;
    const auto outcome = tokens->check_stream(req[beast_http::field::authorization], query_token);
    if (outcome != token_verifier::outcome::ok) return unauthorized(outcome == token_verifier::outcome::missing, "token");
  }
  validation_errors errors;
  event_query q = parse_event_query(req, params, errors);
  if (!errors.empty()) return unprocessable(errors);
  auto sub = options_.events->subscribe(std::move(q.filter), q.after, t);
  if (sub) return std::move(*sub);
  if (sub.error() == errc::overloaded) {
    auto res = json_response(status::service_unavailable,
                             error_body("Too many event subscribers on this node (--max-subscribers " +
                                            std::to_string(options_.events->options().max_subscribers) + "); retry later",
                                        "too_many_subscribers"));
    res.set(beast_http::field::retry_after, "5");
    return res;
  }
  return error_response(sub.error());
}

asio::awaitable<response> api::ingest(const request& req, const std::string& call_id) {
  const auto started = std::chrono::steady_clock::now();
  const auto observe = [&] {
    if (options_.metrics)
      options_.metrics->ingest_latency(std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count());
  };
  if (auto type = req[beast_http::field::content_type]; !type.empty() && !is_json_content_type(type)) {
    ingest_.count_refused(ingest::ingest_result::media_type);
    observe();
    co_return unsupported_media_type();
  }
  validation_errors errors;
  if (auto e = check_call_id(call_id)) errors.push_back(std::move(*e));
  auto parsed = parse_packet_body(req.body());
  if (auto* body_errors = std::get_if<validation_errors>(&parsed))
    errors.insert(errors.end(), body_errors->begin(), body_errors->end());
  if (!errors.empty()) {
    ingest_.count_refused(ingest::ingest_result::invalid);
    observe();
    co_return unprocessable(errors);
  }

  auto& body = std::get<packet_body>(parsed);
  const std::int64_t sequence = body.sequence;
  auto op = ingest_.ingest(call_id, sequence, std::move(body.data), body.timestamp);
  auto checked = co_await std::move(op);
  observe();
  if (checked.undecodable)
    co_return unprocessable({undecodable_data(checked.format, checked.refused_data, *checked.undecodable)});
  const auto& outcome = checked.stored;
  if (!outcome) {
    const auto ec = outcome.error();
    if (ec == errc::sequence_conflict)
      co_return error_response(ec, "Sequence " + std::to_string(sequence) + " of call " + call_id +
                                       " is already stored with different data");
    co_return error_response(ec);
  }
  co_return json_response(status::accepted, ingest_body(*outcome, call_id, sequence));
}

asio::awaitable<response> api::list_calls(const request& req) {
  auto target = boost::urls::parse_origin_form(req.target());
  const auto params = target->params();
  validation_errors errors;
  call_query q;
  q.limit = static_cast<std::size_t>(query_int(params, "limit", 50, 1, 1000, errors));
  if (auto it = params.find("after"); it != params.end()) q.after = std::string((*it).value);
  if (auto it = params.find("state"); it != params.end()) {
    const std::string value = (*it).value;
    if (auto s = parse_call_state(value)) {
      q.state = *s;
    } else {
      errors.push_back(invalid_query("state", "enum",
                                     "Input should be 'IN_PROGRESS', 'PROCESSING_AI', 'COMPLETED', 'FAILED' or 'ARCHIVED'",
                                     value));
    }
  }
  if (!errors.empty()) co_return unprocessable(errors);
  auto op = run_blocking(blocking_, [this, q] { return store_.list_calls(q); });
  auto page = co_await std::move(op);
  if (!page) co_return error_response(page.error());
  json::array calls;
  for (const auto& c : page->calls) calls.push_back(to_json(c, options_.default_media));
  co_return json_response(status::ok, json::value{{"calls", std::move(calls)},
                                                  {"next_after", page->next_after ? json::value(*page->next_after)
                                                                                  : json::value(nullptr)}});
}

asio::awaitable<response> api::get_call(const std::string& call_id) {
  if (auto e = check_call_id(call_id)) co_return unprocessable({*e});
  auto op = run_blocking(blocking_, [this, call_id] { return store_.get_call(call_id); });
  auto call = co_await std::move(op);
  if (!call) co_return error_response(call.error(), call.error() == errc::not_found ? "Call not found" : "");
  json::object out = to_json(*call, options_.default_media);
  if (auto tracks = tracks_json(*call)) out["tracks"] = std::move(*tracks);
  // The first page of events is shown; the DTMF digits are those of every event, a page at a time.
  json::array events;
  std::string dtmf;
  std::int64_t after = 0;
  for (bool first = true;; first = false) {
    const std::size_t limit = first ? first_events : 1000;
    auto events_op = run_blocking(
        blocking_, [this, call_id, after, limit] { return store_.list_events(call_id, after, limit); });
    auto page = co_await std::move(events_op);
    if (!page)
      co_return error_response(page.error(), page.error() == errc::not_found ? "Call not found" : "");
    for (const auto& e : page->events) {
      if (first) events.push_back(to_json(e));
      if (auto digit = dtmf_digit(e)) dtmf += *digit;
    }
    if (!page->next_after) break;
    after = *page->next_after;
  }
  out["events"] = std::move(events);
  out["dtmf"] = dtmf;
  co_return json_response(status::ok, json::value(out));
}

asio::awaitable<response> api::declare_media(const request& req, const std::string& call_id) {
  if (auto type = req[beast_http::field::content_type]; !type.empty() && !is_json_content_type(type))
    co_return unsupported_media_type();
  validation_errors errors;
  if (auto e = check_call_id(call_id)) errors.push_back(std::move(*e));
  auto parsed = parse_declaration_body(req.body());
  if (auto* body_errors = std::get_if<validation_errors>(&parsed))
    errors.insert(errors.end(), body_errors->begin(), body_errors->end());
  if (!errors.empty()) co_return unprocessable(errors);
  const media_declaration wanted = std::get<media_declaration>(parsed);
  auto op = async_call<result<declare_outcome>>([this, call_id, wanted](call_store::declare_handler done) {
    store_.declare_media(call_id, wanted, std::move(done));
  });
  auto declared = co_await std::move(op);
  if (!declared) {
    const auto ec = declared.error();
    if (ec == errc::media_conflict) {
      auto current_op = run_blocking(blocking_, [this, call_id] { return store_.call_media(call_id); });
      auto current = co_await std::move(current_op);
      std::string detail = "The call already declared another media format";
      if (current && *current)
        detail += " (" + (*current)->format + ", " + std::to_string((*current)->packet_ms) + " ms packets)";
      co_return error_response(ec, detail);
    }
    if (ec == errc::call_ended) co_return error_response(ec, "The call has ended: its media can no longer be declared");
    co_return error_response(ec);
  }
  ingest_.declared(call_id, wanted);
  if (!declared->repeated)
    log::info("media declared", {{"call_id", call_id}, {"format", wanted.format}, {"packet_ms", wanted.packet_ms}});
  auto read_op = run_blocking(blocking_, [this, call_id] { return store_.get_call(call_id); });
  auto call = co_await std::move(read_op);
  if (!call) co_return error_response(call.error());
  co_return json_response(declared->created ? status::created : status::ok, to_json(*call, options_.default_media));
}

asio::awaitable<response> api::get_audio(const std::string& call_id) {
  if (auto e = check_call_id(call_id)) co_return unprocessable({*e});
  auto call_op = run_blocking(blocking_, [this, call_id] { return store_.get_call(call_id); });
  auto call = co_await std::move(call_op);
  if (!call) co_return error_response(call.error(), call.error() == errc::not_found ? "Call not found" : "");
  const call_media_format media = effective_media(call->media, options_.default_media);
  if (!media.format.carries_audio())
    co_return json_response(status::conflict,
                            error_body("The call carries no audio: its media format is none (declare one with "
                                       "POST /v1/calls/{call_id} before its first packet, or start aipbx with --media)",
                                       "no_audio"));
  const auto packet_samples = static_cast<std::size_t>(media.packet_ms * media.format.rate / 1000);
  std::vector<std::int16_t> samples;
  // The audio starts at sequence 1: a packet 0 lies before the call's start, outside its audio as it is
  // outside its AI segments.
  std::int64_t next = 1;
  std::int64_t silent = 0, undecodable = 0;
  std::int64_t after = 0;
  // Pages of packets, so that the read holds a bounded number of them at once.
  for (;;) {
    auto page_op = run_blocking(blocking_, [this, call_id, after] { return store_.list_packets(call_id, after, 1000); });
    auto page = co_await std::move(page_op);
    if (!page) co_return error_response(page.error());
    for (const auto& p : page->packets) {
      if (p.sequence > next) {
        silent += p.sequence - next;
        samples.insert(samples.end(), static_cast<std::size_t>(p.sequence - next) * packet_samples, 0);
      }
      if (auto decoded = media::decode_audio(media.format, p.data)) {
        samples.insert(samples.end(), decoded->begin(), decoded->end());
      } else {
        ++undecodable;  // stored before the call's format was what it is now: silence, counted
        samples.insert(samples.end(), packet_samples, 0);
      }
      next = p.sequence + 1;
      if (samples.size() > media::wav_max_samples)
        co_return json_response(status::payload_too_large,
                                error_body("The call's audio is longer than one WAV file can hold", "audio_too_long"));
    }
    if (!page->next_after) break;
    after = *page->next_after;
  }
  auto file = media::wav_file(samples, media.format.rate);
  if (!file) co_return error_response(make_error_code(errc::store_failure));
  response res{status::ok, 11};
  res.set(beast_http::field::content_type, "audio/wav");
  res.set(beast_http::field::content_disposition, "attachment; filename=\"" + call_id + ".wav\"");
  res.set("X-Audio-Silent-Packets", std::to_string(silent));
  res.set("X-Audio-Undecodable-Packets", std::to_string(undecodable));
  res.body() = std::move(*file);
  co_return res;
}

asio::awaitable<response> api::list_packets(const request& req, const std::string& call_id) {
  validation_errors errors;
  if (auto e = check_call_id(call_id)) errors.push_back(std::move(*e));
  auto target = boost::urls::parse_origin_form(req.target());
  const auto params = target->params();
  const auto limit = static_cast<std::size_t>(query_int(params, "limit", 100, 1, 1000, errors));
  // -1 so that a packet with sequence 0 is listed too.
  const auto after = query_int(params, "after", -1, -1, max_sequence, errors);
  if (!errors.empty()) co_return unprocessable(errors);
  auto op = run_blocking(blocking_, [this, call_id, after, limit] { return store_.list_packets(call_id, after, limit); });
  auto page = co_await std::move(op);
  if (!page) co_return error_response(page.error(), page.error() == errc::not_found ? "Call not found" : "");
  co_return page_response("packets", page->packets, page->next_after, {{"call_id", call_id}});
}

asio::awaitable<response> api::list_events(const request& req, const std::string& call_id) {
  validation_errors errors;
  if (auto e = check_call_id(call_id)) errors.push_back(std::move(*e));
  auto target = boost::urls::parse_origin_form(req.target());
  const auto params = target->params();
  const auto limit = static_cast<std::size_t>(query_int(params, "limit", 100, 1, 1000, errors));
  const auto after = query_int(params, "after", 0, 0, std::numeric_limits<std::int64_t>::max(), errors);
  if (!errors.empty()) co_return unprocessable(errors);
  auto op = run_blocking(blocking_,
                         [this, call_id, after, limit] { return store_.list_events(call_id, after, limit); });
  auto page = co_await std::move(op);
  if (!page) co_return error_response(page.error(), page.error() == errc::not_found ? "Call not found" : "");
  co_return page_response("events", page->events, page->next_after, {{"call_id", call_id}});
}

asio::awaitable<response> api::get_gaps(const std::string& call_id) {
  if (auto e = check_call_id(call_id)) co_return unprocessable({*e});
  auto call_op = run_blocking(blocking_, [this, call_id] { return store_.get_call(call_id); });
  auto call = co_await std::move(call_op);
  if (!call) co_return error_response(call.error(), call.error() == errc::not_found ? "Call not found" : "");
  auto gaps_op = run_blocking(blocking_, [this, call_id] { return store_.gaps(call_id); });
  auto gaps = co_await std::move(gaps_op);
  if (!gaps) co_return error_response(gaps.error(), gaps.error() == errc::not_found ? "Call not found" : "");
  json::array open, lost, late;
  for (const auto& r : gaps->open) open.push_back(to_json(r));
  for (const auto& r : gaps->lost) lost.push_back(to_json(r));
  for (const auto& r : gaps->late) late.push_back(to_json(r));
  co_return json_response(status::ok, json::value{{"call_id", call_id},
                                                  {"state", to_string(call->state)},
                                                  {"last_sequence", call->last_sequence},
                                                  {"expected_sequence", call->expected_sequence},
                                                  {"missing_packets", call->missing_packets},
                                                  {"lost_packets", call->lost_packets},
                                                  {"open", std::move(open)},
                                                  {"lost", std::move(lost)},
                                                  {"late", std::move(late)}});
}

asio::awaitable<response> api::change_call(const std::string& call_id, bool end) {
  if (auto e = check_call_id(call_id)) co_return unprocessable({*e});
  auto op = async_call<result<call_state>>([this, call_id, end](call_store::state_handler done) {
    if (end) store_.end_call(call_id, "ended by request", std::move(done));
    else store_.archive_call(call_id, std::move(done));
  });
  auto changed = co_await std::move(op);
  if (!changed) {
    if (changed.error() == errc::invalid_transition) {
      auto current_op = run_blocking(blocking_, [this, call_id] { return store_.get_call(call_id); });
      auto current = co_await std::move(current_op);
      const std::string state = current ? std::string(to_string(current->state)) : "unknown";
      co_return error_response(changed.error(), end ? "The call has ended already (state " + state + ")"
                                                    : "Only a COMPLETED or FAILED call can be archived (state " +
                                                          state + ")");
    }
    co_return error_response(changed.error(), changed.error() == errc::not_found ? "Call not found" : "");
  }
  auto read_op = run_blocking(blocking_, [this, call_id] { return store_.get_call(call_id); });
  auto call = co_await std::move(read_op);
  if (!call) co_return error_response(call.error());
  co_return json_response(status::ok, to_json(*call, options_.default_media));
}

asio::awaitable<response> api::get_transcript(const std::string& call_id) {
  if (auto e = check_call_id(call_id)) co_return unprocessable({*e});
  auto call_op = run_blocking(blocking_, [this, call_id] { return store_.get_call(call_id); });
  auto call = co_await std::move(call_op);
  if (!call) co_return error_response(call.error(), call.error() == errc::not_found ? "Call not found" : "");
  // The results first, then the partials: a job that succeeded in between shows its result twice at most,
  // never neither (its partial is deleted in the transaction that writes its result).
  auto op = run_blocking(blocking_, [this, call_id] { return jobs_.transcript(call_id); });
  auto segments = co_await std::move(op);
  if (!segments) co_return error_response(segments.error(), segments.error() == errc::not_found ? "Call not found" : "");
  auto partials_op = run_blocking(blocking_, [this, call_id] { return jobs_.partials(call_id); });
  auto partials = co_await std::move(partials_op);
  if (!partials) co_return error_response(partials.error(), partials.error() == errc::not_found ? "Call not found" : "");
  std::erase_if(*partials, [&](const partial_segment& p) {
    return std::any_of(segments->begin(), segments->end(), [&](const transcript_segment& s) { return s.job_id == p.job_id; });
  });
  co_return json_response(status::ok, transcript_json(*call, *segments, *partials,
                                                      effective_media(call->media, options_.default_media)));
}


asio::awaitable<response> api::list_jobs(const request& req) {
  auto target = boost::urls::parse_origin_form(req.target());
  const auto params = target->params();
  validation_errors errors;
  job_query q;
  q.limit = static_cast<std::size_t>(query_int(params, "limit", 50, 1, 1000, errors));
  q.after = query_int(params, "after", 0, 0, std::numeric_limits<std::int64_t>::max(), errors);
  if (auto it = params.find("state"); it != params.end()) {
    const std::string value = (*it).value;
    if (auto s = parse_job_state(value)) q.state = *s;
    else
      errors.push_back(invalid_query("state", "enum", "Input should be 'queued', 'running', 'succeeded' or 'dead'", value));
  }
  if (auto it = params.find("call_id"); it != params.end()) {
    const std::string value = (*it).value;
    if (is_valid_call_id(value)) q.call_id = value;
    else
      errors.push_back(invalid_query("call_id", "string_pattern_mismatch",
                                     "String should match pattern '" + std::string(call_id_pattern) + "'", value,
                                     {{"pattern", json::string_view(call_id_pattern.data(), call_id_pattern.size())}}));
  }
  if (!errors.empty()) co_return unprocessable(errors);
  auto op = run_blocking(blocking_, [this, q] { return jobs_.list_jobs(q); });
  auto page = co_await std::move(op);
  if (!page) co_return error_response(page.error());
  co_return page_response("jobs", page->jobs, page->next_after);
}

asio::awaitable<response> api::get_job(const std::string& job_id) {
  validation_errors errors;
  auto id = parse_job_id(job_id, errors);
  if (!id) co_return unprocessable(errors);
  auto op = run_blocking(blocking_, [this, id = *id] { return jobs_.get_job(id); });
  auto j = co_await std::move(op);
  if (!j) co_return error_response(j.error(), j.error() == errc::not_found ? "Job not found" : "");
  co_return json_response(status::ok, to_json(*j));
}

asio::awaitable<response> api::retry_job(const std::string& job_id) {
  validation_errors errors;
  auto id = parse_job_id(job_id, errors);
  if (!id) co_return unprocessable(errors);
  auto op = async_call<result<job>>([this, id = *id](job_store::job_handler done) { jobs_.replay(id, std::move(done)); });
  auto j = co_await std::move(op);
  if (!j) co_return error_response(j.error(), j.error() == errc::not_found ? "Job not found" : "");
  log::info("job replayed", {{"job_id", j->id}, {"call_id", j->call_id}});
  co_return json_response(status::accepted, to_json(*j));
}

response api::asset_response(std::string_view name) {
  auto a = find_asset(name);
  if (!a) return json_response(status::not_found, error_body("Not Found", "not_found"));
  response res{status::ok, 11};
  res.set(beast_http::field::content_type, a->content_type);
  // The assets change with the binary: revalidate rather than keep a stale copy.
  res.set(beast_http::field::cache_control, "no-cache");
  res.body().assign(a->content);
  return res;
}

asio::awaitable<response> api::queue() {
  auto op = run_blocking(blocking_, [this] { return jobs_.count_jobs(); });
  auto counts = co_await std::move(op);
  if (!counts) co_return error_response(counts.error());
  co_return json_response(status::ok, json::value(to_json(*counts, system_now())));
}

asio::awaitable<response> api::nodes() {
  auto op = run_blocking(blocking_, [this] { return jobs_.nodes(); });
  auto known = co_await std::move(op);
  if (!known) co_return error_response(known.error());
  // The embedded store knows no connections: this node is there because it answers.
  if (std::none_of(known->begin(), known->end(), [&](const node_presence& n) { return n.name == options_.node_name; }))
    known->push_back({options_.node_name, std::nullopt, std::nullopt, 0});
  json::array out;
  for (auto& n : *known) {
    const bool self = n.name == options_.node_name;
    if (self && !n.connected_since) n.connected_since = options_.started_at;
    out.push_back(to_json(n, self));
  }
  co_return json_response(status::ok, json::value{{"backend", options_.backend},
                                                  {"node", options_.node_name},
                                                  {"nodes", std::move(out)},
                                                  {"this_node", this_node()}});
}

// What only this node can tell of itself.
json::object api::this_node() const {
  const writer_stats w = store_.stats();
  const auto workers = options_.worker_stats ? options_.worker_stats() : std::nullopt;
  json::object out{{"name", options_.node_name},
                   {"started_at", options_.started_at},
                   {"engine", options_.engine},
                   {"workers", options_.workers},
                   {"ai_running", workers ? workers->running : 0},
                   {"writer_queue", w.queued},
                   {"writer_queue_limit", w.queue_limit},
                   {"open_connections", options_.open_connections ? options_.open_connections() : 0},
                   {"event_subscribers", nullptr},
                   {"max_subscribers", nullptr}};
  if (options_.events) {
    const auto by_transport = options_.events->stats().subscribers;
    std::size_t open = 0;
    for (const auto n : by_transport) open += n;
    out["event_subscribers"] = open;
    out["max_subscribers"] = options_.events->options().max_subscribers;
  }
  return out;
}

asio::awaitable<response> api::readyz() {
  auto op = run_blocking(blocking_, [this] { return store_.ping(); });
  const bool reachable = co_await std::move(op);
  const writer_stats s = store_.stats();
  const bool saturated = s.queue_limit > 0 && s.queued * 10 >= s.queue_limit * 9;
  const bool ready = reachable && !saturated;
  co_return json_response(ready ? status::ok : status::service_unavailable,
                          json::value{{"status", ready ? "ready" : "not_ready"},
                                      {"store", reachable ? "ok" : "unreachable"},
                                      {"writer_queue", s.queued},
                                      {"writer_queue_limit", s.queue_limit}});
}

asio::awaitable<response> api::scrape() {
  if (!options_.metrics) co_return json_response(status::not_found, error_body("Not Found", "not_found"));
  metrics::state st;
  auto calls_op = run_blocking(blocking_, [this] { return store_.count_calls(); });
  auto calls = co_await std::move(calls_op);
  if (calls) st.calls = *calls;
  auto jobs_op = run_blocking(blocking_, [this] { return jobs_.count_jobs(); });
  auto jobs = co_await std::move(jobs_op);
  if (jobs) st.jobs = *jobs;
  st.writer = store_.stats();
  st.backend = store_.backend_metrics();
  if (options_.worker_stats) st.workers = options_.worker_stats();
  if (options_.segmenter_stats) st.segmenter = options_.segmenter_stats();
  st.engine = options_.engine;
  st.configured_workers = options_.workers;
  if (options_.open_connections) st.open_connections = options_.open_connections();
  st.connection_limit = options_.connection_limit;
  st.ingest = &ingest_.stats();
  if (options_.streams) st.streams = &options_.streams->stats();
  if (options_.transport_failures) st.transport_failures = options_.transport_failures();
  if (options_.events) {
    st.events = options_.events->stats();
    st.max_subscribers = options_.events->options().max_subscribers;
  }
  st.now = system_now();
  response res{status::ok, 11};
  res.set(beast_http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
  res.body() = options_.metrics->render(st);
  co_return res;
}

}  // namespace aipbx::http
