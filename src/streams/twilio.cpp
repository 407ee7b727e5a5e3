#include "streams/twilio.hpp"

#include "domain/call_id.hpp"
#include "domain/clock.hpp"
#include "log/log.hpp"

#include <boost/json/monotonic_resource.hpp>
#include <boost/json/array.hpp>
#include <boost/json/parse.hpp>

#include <array>
#include <charconv>
#include <cstring>

namespace aipbx::streams::twilio {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

const json::value* member(const json::object& o, std::string_view key) {
  auto it = o.find(key);
  return it == o.end() ? nullptr : &it->value();
}

std::string string_of(const json::object& o, std::string_view key) {
  const auto* v = member(o, key);
  return v && v->is_string() ? std::string(v->get_string()) : std::string();
}

// Twilio writes numbers as strings ("chunk": "1", "timestamp": "5"); a JSON number is taken too.
std::optional<std::int64_t> integer_of(const json::object& o, std::string_view key) {
  const auto* v = member(o, key);
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<std::int64_t>(v->get_uint64());
  if (v->is_string()) {
    const auto s = v->get_string();
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (ec == std::errc{} && end == s.data() + s.size() && !s.empty()) return n;
  }
  return std::nullopt;
}

const json::object* object_of(const json::object& o, std::string_view key) {
  const auto* v = member(o, key);
  return v && v->is_object() ? &v->get_object() : nullptr;
}

malformed bad(std::string reason) { return malformed{false, std::move(reason)}; }

}  // namespace

namespace {

// The one-pass reading of a `media` message, the one a stream sends fifty times a second per track. It
// takes only plain JSON: an object of members whose values are strings without escapes or non-ASCII
// bytes, integers, true, false or null, and the `media` object of the same; `event` must be "media" and
// no key may repeat. Anything else (another event, an escape, a float, an array, a nesting) gives up, and
// the checked parser, which builds a document, decides: both give the same message for every input the
// fast path takes (tests/unit/streams/twilio_test.cpp and the twilio_message fuzz target check it).
class media_scanner {
 public:
  explicit media_scanner(std::string_view text) : s_(text) {}

  std::optional<message> scan() {
    bool event_seen = false, media_seen = false, sequence_seen = false, sid_seen = false;
    media_event out;
    if (!eat('{')) return std::nullopt;
    if (eat('}')) return std::nullopt;
    do {
      const auto key = string();
      if (!key || !eat(':')) return std::nullopt;
      if (*key == "event") {
        const auto v = string();
        if (event_seen || !v || *v != "media") return std::nullopt;
        event_seen = true;
      } else if (*key == "media") {
        if (media_seen || !media(out)) return std::nullopt;
        media_seen = true;
      } else if (*key == "sequenceNumber" || *key == "streamSid") {
        bool& seen = *key == "streamSid" ? sid_seen : sequence_seen;
        if (seen || !scalar()) return std::nullopt;
        seen = true;
      } else {
        return std::nullopt;  // another member: the checked parser sees to duplicates and kinds
      }
    } while (eat(','));
    if (!eat('}')) return std::nullopt;
    space();
    if (at_ != s_.size() || !event_seen || !media_seen) return std::nullopt;
    return out;
  }

 private:
  bool media(media_event& out) {
    bool track = false, chunk = false, timestamp = false, payload = false;
    if (!eat('{')) return false;
    if (eat('}')) return false;
    do {
      const auto key = string();
      if (!key || !eat(':')) return false;
      if (*key == "track") {
        const auto v = string();
        if (track || !v) return false;
        out.track = std::string(*v);
        track = true;
      } else if (*key == "chunk" || *key == "timestamp") {
        bool& seen = *key == "chunk" ? chunk : timestamp;
        const auto v = integer();
        if (seen || !v) return false;
        (*key == "chunk" ? out.chunk : out.timestamp_ms) = *v;
        seen = true;
      } else if (*key == "payload") {
        const auto v = string();
        if (payload || !v) return false;
        out.payload = std::string(*v);
        payload = true;
      } else {
        return false;
      }
    } while (eat(','));
    return eat('}') && chunk && payload && out.chunk >= 1 && out.chunk <= max_sequence;
  }

  void space() {
    while (at_ < s_.size() && (s_[at_] == ' ' || s_[at_] == '\t' || s_[at_] == '\n' || s_[at_] == '\r')) ++at_;
  }
  bool eat(char c) {
    space();
    if (at_ >= s_.size() || s_[at_] != c) return false;
    ++at_;
    return true;
  }
  std::optional<std::string_view> string() {
    space();
    if (at_ >= s_.size() || s_[at_] != '"') return std::nullopt;
    const char* begin = s_.data() + at_ + 1;
    const auto* close = static_cast<const char*>(std::memchr(begin, '"', s_.size() - at_ - 1));
    if (close == nullptr) return std::nullopt;
    // One pass without an early exit, which the compiler turns into vector code: a payload is 216 bytes.
    unsigned bad = 0;
    for (const char* c = begin; c < close; ++c) {
      const auto u = static_cast<unsigned char>(*c);
      bad |= static_cast<unsigned>(u < 0x20) | static_cast<unsigned>(u >= 0x80) | static_cast<unsigned>(u == '\\');
    }
    if (bad != 0) return std::nullopt;
    at_ = static_cast<std::size_t>(close - s_.data()) + 1;
    return std::string_view(begin, static_cast<std::size_t>(close - begin));
  }
  // Twilio writes its numbers as strings ("chunk": "1"); a JSON integer is taken too.
  std::optional<std::int64_t> integer() {
    space();
    if (at_ < s_.size() && s_[at_] == '"') {
      const auto v = string();
      if (!v) return std::nullopt;
      return whole(*v);
    }
    const std::size_t begin = at_;
    if (at_ < s_.size() && s_[at_] == '-') ++at_;
    while (at_ < s_.size() && s_[at_] >= '0' && s_[at_] <= '9') ++at_;
    const auto digits = s_.substr(begin, at_ - begin);
    // JSON allows no leading zero; anything past the digits (a fraction, an exponent) is the checked
    // parser's.
    if (digits.empty() || digits == "-" || (digits.size() > 1 && digits[digits[0] == '-' ? 1 : 0] == '0' &&
                                            digits.size() > (digits[0] == '-' ? 2u : 1u)))
      return std::nullopt;
    if (at_ < s_.size() && (s_[at_] == '.' || s_[at_] == 'e' || s_[at_] == 'E')) return std::nullopt;
    return whole(digits);
  }
  static std::optional<std::int64_t> whole(std::string_view v) {
    std::int64_t n = 0;
    auto [end, ec] = std::from_chars(v.data(), v.data() + v.size(), n);
    if (ec != std::errc{} || end != v.data() + v.size() || v.empty()) return std::nullopt;
    return n;
  }
  bool scalar() {
    space();
    if (at_ < s_.size() && s_[at_] == '"') return string().has_value();
    for (std::string_view word : {"true", "false", "null"})
      if (s_.substr(at_, word.size()) == word) {
        at_ += word.size();
        return true;
      }
    return integer().has_value();
  }

  std::string_view s_;
  std::size_t at_ = 0;
};

}  // namespace

message parse(std::string_view text) {
  if (auto fast = media_scanner(text).scan()) return std::move(*fast);
  return parse_checked(text);
}

message parse_checked(std::string_view text) {
  std::array<unsigned char, 4096> stack;
  json::monotonic_resource resource(stack.data(), stack.size());
  boost::system::error_code ec;
  json::value doc = json::parse(text, ec, &resource);
  if (ec || !doc.is_object()) return bad("not a JSON object");
  const auto& o = doc.get_object();
  const auto* event = member(o, "event");
  if (!event || !event->is_string()) return bad("no event");
  const std::string_view name = event->get_string();
  if (name == "media") {
    const auto* m = object_of(o, "media");
    if (!m) return bad("media message without media");
    media_event out;
    out.track = string_of(*m, "track");
    const auto chunk = integer_of(*m, "chunk");
    if (!chunk || *chunk < 1 || *chunk > max_sequence) return bad("media message without a valid chunk");
    out.chunk = *chunk;
    out.timestamp_ms = integer_of(*m, "timestamp").value_or(0);
    const auto* payload = member(*m, "payload");
    if (!payload || !payload->is_string()) return bad("media message without a payload");
    out.payload = std::string(payload->get_string());
    return out;
  }
  if (name == "start") {
    const auto* s = object_of(o, "start");
    if (!s) return bad("start message without start");
    start out;
    out.stream_sid = string_of(*s, "streamSid");
    if (out.stream_sid.empty()) out.stream_sid = string_of(o, "streamSid");
    out.call_sid = string_of(*s, "callSid");
    if (const auto* tracks = member(*s, "tracks"); tracks && tracks->is_array()) {
      for (const auto& t : tracks->get_array()) {
        if (!t.is_string()) return bad("start message with a track that is not a string");
        out.tracks.emplace_back(t.get_string());
      }
    }
    if (const auto* params = object_of(*s, "customParameters")) {
      for (const auto& [k, v] : *params)
        if (v.is_string()) out.custom_parameters.emplace(std::string(k), std::string(v.get_string()));
    }
    if (const auto* f = object_of(*s, "mediaFormat")) {
      out.encoding = string_of(*f, "encoding");
      // Present but not a whole number: -1, which no format takes (rather than the 8000 Hz default).
      out.sample_rate = member(*f, "sampleRate") ? integer_of(*f, "sampleRate").value_or(-1) : 0;
      out.channels = member(*f, "channels") ? integer_of(*f, "channels").value_or(-1) : 0;
    }
    return out;
  }
  if (name == "dtmf") {
    const auto* d = object_of(o, "dtmf");
    if (!d) return bad("dtmf message without dtmf");
    dtmf out{string_of(*d, "track"), string_of(*d, "digit")};
    if (out.digit.empty() || out.digit.size() > 8) return bad("dtmf message without a digit");
    return out;
  }
  if (name == "mark") {
    const auto* m = object_of(o, "mark");
    return mark{m ? string_of(*m, "name") : std::string()};
  }
  if (name == "stop") return stop{};
  if (name == "connected") return connected{};
  std::string shown(name.substr(0, 40));
  return malformed{true, "unknown event '" + shown + "'"};
}

std::optional<media::media_format> format_of(const start& s) {
  if (s.channels > 1 || s.channels < 0 || s.sample_rate < 0) return std::nullopt;
  const std::int64_t rate = s.sample_rate == 0 ? 8000 : s.sample_rate;
  if (s.encoding.empty() || s.encoding == "audio/x-mulaw") {
    if (rate == 8000) return media::media_format::pcmu();
  } else if (s.encoding == "audio/x-alaw") {
    if (rate == 8000) return media::media_format::pcma();
  } else if (s.encoding == "audio/x-l16" || s.encoding == "audio/l16") {
    if (auto f = media::parse_media_format("l16/" + std::to_string(rate))) return f;
  }
  return std::nullopt;
}

session::session(stream_hub& hub, message_channel& channel, stream_request request)
    : websocket_session(hub, channel, protocol::twilio, std::move(request)) {}

asio::awaitable<websocket_session::step> session::on_message(std::string_view text, bool is_text) {
  if (!is_text) {
    refuse(close_code::unsupported_data, close_reason::bad_message, "binary messages are not part of the protocol");
    co_return step::go_on;
  }
  message m = parse(text);
  if (auto* bad_message = std::get_if<malformed>(&m)) {
    refuse(bad_message->unknown_event ? close_code::unsupported_data : close_code::invalid_payload,
           close_reason::bad_message, bad_message->reason);
    co_return step::go_on;
  }
  if (std::holds_alternative<connected>(m)) co_return step::go_on;
  if (auto* s = std::get_if<start>(&m)) {
    if (started_) {
      refuse(close_code::policy_violation, close_reason::bad_message, "a second start message");
      co_return step::go_on;
    }
    auto op = on_start(std::move(*s));
    co_return co_await std::move(op);
  }
  if (!started_) {
    refuse(close_code::policy_violation, close_reason::bad_message, "a message before start");
    co_return step::go_on;
  }
  if (auto* media_message = std::get_if<media_event>(&m)) {
    auto op = on_media(std::move(*media_message));
    co_await std::move(op);
    co_return step::go_on;
  }
  if (auto* d = std::get_if<dtmf>(&m)) {
    event("dtmf", {{"digit", d->digit}, {"track", d->track}});
    co_return step::go_on;
  }
  if (auto* k = std::get_if<mark>(&m)) {
    event("mark", {{"name", k->name}});
    co_return step::go_on;
  }
  co_return step::stopped;  // stop
}

asio::awaitable<websocket_session::step> session::on_start(start s) {
  started_ = true;
  if (!request_.authenticated) {
    auto it = s.custom_parameters.find("token");
    if (it == s.custom_parameters.end() || !hub_.token_ok(it->second)) {
      refuse(close_code::policy_violation, close_reason::unauthorized,
             "unauthorized: send a bearer token, or the custom parameter token");
      co_return step::go_on;
    }
  }
  auto it = s.custom_parameters.find("call_id");
  std::string call_id = it != s.custom_parameters.end() ? it->second : s.call_sid;
  if (call_id.empty() || !is_valid_call_id(call_id)) {
    refuse(close_code::policy_violation, close_reason::bad_message,
           "no valid call id: the custom parameter call_id or the callSid must match " + std::string(call_id_pattern));
    co_return step::go_on;
  }
  const auto format = format_of(s);
  if (!format) {
    refuse(close_code::unsupported_data, close_reason::bad_message,
           "unsupported mediaFormat " + s.encoding + "/" + std::to_string(s.sample_rate));
    co_return step::go_on;
  }
  if (s.tracks.empty()) s.tracks.emplace_back("inbound");
  std::vector<track_spec> tracks;
  for (const auto& name : s.tracks) {
    if (name != "inbound" && name != "outbound") {
      refuse(close_code::unsupported_data, close_reason::bad_message, "unknown track '" + name.substr(0, 40) + "'");
      co_return step::go_on;
    }
    for (const auto& seen : track_names_)
      if (seen == name) {
        refuse(close_code::policy_violation, close_reason::bad_message, "track '" + name + "' named twice");
        co_return step::go_on;
      }
    track_names_.push_back(name);
  }
  // The inbound track is the call itself; another track is a call of its own, named after it.
  for (const auto& name : track_names_) {
    std::string id = call_id;
    if (name != "inbound") id.append(":").append(name);
    if (!is_valid_call_id(id)) {
      refuse(close_code::policy_violation, close_reason::bad_message, "call id too long for track " + name);
      co_return step::go_on;
    }
    tracks.push_back({std::move(id), name, *format, media::default_packet_ms});
  }
  call_id_ = call_id;
  auto op = feed_.open(std::move(tracks));
  if (auto failed = co_await std::move(op)) {
    refuse(std::move(*failed));
    co_return step::go_on;
  }
  hub_.stats().of(kind_).opened.fetch_add(1, std::memory_order_relaxed);
  log::info("stream started", {{"protocol", "twilio"}, {"call_id", call_id}, {"stream_sid", s.stream_sid},
                               {"call_sid", s.call_sid}, {"tracks", track_names_.size()}, {"remote", request_.remote}});
  json::array names;
  for (const auto& name : track_names_) names.emplace_back(name);
  json::object parameters;
  for (const auto& [k, v] : s.custom_parameters)
    if (k != "token") parameters[k] = v;  // a credential is not call data
  event("stream_started", {{"protocol", "twilio"},
                           {"stream_sid", s.stream_sid},
                           {"call_sid", s.call_sid},
                           {"tracks", std::move(names)},
                           {"custom_parameters", std::move(parameters)},
                           {"format", media::to_string(*format)}});
  co_return step::go_on;
}

asio::awaitable<void> session::on_media(media_event m) {
  if (m.track.empty()) m.track = track_names_.front();
  std::size_t t = 0;
  while (t < track_names_.size() && track_names_[t] != m.track) ++t;
  if (t == track_names_.size()) {
    refuse(close_code::policy_violation, close_reason::bad_message,
           "media of track '" + m.track.substr(0, 40) + "', which start did not name");
    co_return;
  }
  auto& stats = hub_.stats().of(kind_);
  stats.frames.fetch_add(1, std::memory_order_relaxed);
  stats.bytes.fetch_add(m.payload.size() * 3 / 4, std::memory_order_relaxed);
  // Twilio numbers each track's chunks from 1; a stream that follows packets already stored (a second
  // stream of the call) continues after them.
  const std::int64_t sequence = feed_.track(t).start_highest + m.chunk;
  const double timestamp = started_at_ + static_cast<double>(m.timestamp_ms) / 1000.0;
  auto op = feed_.push(t, sequence, std::move(m.payload), true, timestamp, std::chrono::steady_clock::now());
  co_await std::move(op);
}

}  // namespace aipbx::streams::twilio
