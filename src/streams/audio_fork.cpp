#include "streams/audio_fork.hpp"

#include "domain/call_id.hpp"
#include "domain/clock.hpp"
#include "log/log.hpp"

#include <boost/asio/post.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <limits>

namespace aipbx::streams::audio_fork {

namespace asio = boost::asio;
namespace json = boost::json;

namespace {

std::optional<std::int64_t> to_integer(std::string_view s) {
  std::int64_t n = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
  if (ec != std::errc{} || end != s.data() + s.size() || s.empty()) return std::nullopt;
  return n;
}

// "8000", "8k", "16k" (mod_audio_fork's own spelling).
std::optional<std::int64_t> to_rate(std::string_view s) {
  if (s.size() > 1 && (s.back() == 'k' || s.back() == 'K')) {
    auto n = to_integer(s.substr(0, s.size() - 1));
    if (!n || *n < 0 || *n > std::numeric_limits<std::int64_t>::max() / 1000) return std::nullopt;
    return *n * 1000;
  }
  return to_integer(s);
}

std::optional<std::string> text_field(const json::object* o, std::initializer_list<std::string_view> keys) {
  if (!o) return std::nullopt;
  for (auto k : keys) {
    auto it = o->find(k);
    if (it == o->end()) continue;
    if (it->value().is_string()) {
      if (it->value().get_string().empty()) continue;  // an empty value says nothing
      return std::string(it->value().get_string());
    }
    if (it->value().is_int64()) return std::to_string(it->value().get_int64());
    if (it->value().is_bool()) return std::string(it->value().get_bool() ? "true" : "false");
  }
  return std::nullopt;
}

bool is_true(std::string_view v) { return v == "1" || v == "true" || v == "yes"; }

}  // namespace

std::variant<params, std::string> resolve(const stream_request& request, std::optional<std::string_view> metadata) {
  json::value doc;
  const json::object* meta = nullptr;
  if (metadata) {
    boost::system::error_code ec;
    doc = json::parse(*metadata, ec);
    if (!ec && doc.is_object()) meta = &doc.get_object();
  }
  const auto query = [&](std::string_view name) -> std::optional<std::string> {
    if (!request.has(name)) return std::nullopt;
    return request.find(name);
  };
  params p;
  // The call id: the path, else the metadata (jambonz sends callSid, others uuid), else the query.
  if (request.call_id) p.call_id = *request.call_id;
  else if (auto id = text_field(meta, {"call_id", "callSid", "call_sid", "uuid", "callId"})) p.call_id = *id;
  else if (auto q = query("call_id")) p.call_id = *q;
  if (p.call_id.empty())
    return std::string("no call id: put it in the path (/v1/audio-fork/{call_id}) or the metadata's call_id");
  if (!is_valid_call_id(p.call_id)) return "invalid call id: it must match " + std::string(call_id_pattern);

  std::optional<std::string> format = query("format");
  std::optional<std::string> rate = query("rate");
  if (!format && !rate) {
    format = text_field(meta, {"format"});
    rate = text_field(meta, {"sampleRate", "sample_rate", "rate"});
  }
  if (format) {
    auto f = media::parse_media_format(*format);
    if (!f || !f->carries_audio()) return "unsupported format '" + format->substr(0, 40) + "'";
    p.format = *f;
  } else if (rate) {
    auto r = to_rate(*rate);
    auto f = r ? media::parse_media_format("l16/" + std::to_string(*r)) : std::nullopt;
    if (!f) return "unsupported sample rate '" + rate->substr(0, 40) + "'";
    p.format = *f;
  }

  std::optional<std::string> channels = query("channels");
  std::optional<std::string> mix = query("mix");
  if (!channels && !mix) {
    channels = text_field(meta, {"channels"});
    mix = text_field(meta, {"mixType", "mix_type", "mix"});
  }
  if (channels) {
    auto n = to_integer(*channels);
    if (!n || *n < 1 || *n > 2) return "unsupported channels '" + channels->substr(0, 40) + "': 1 or 2";
    p.channels = static_cast<std::size_t>(*n);
  } else if (mix) {
    if (*mix == "stereo") p.channels = 2;
    else if (*mix != "mono" && *mix != "mixed") return "unsupported mix '" + mix->substr(0, 40) + "': mono, mixed or stereo";
  }

  std::optional<std::string> packet_ms = query("packet_ms");
  if (!packet_ms) packet_ms = text_field(meta, {"packet_ms"});
  if (packet_ms) {
    auto n = to_integer(*packet_ms);
    if (!n || *n < 1 || *n > media::max_packet_ms) return "packet_ms must be 1..1000";
    p.packet_ms = *n;
  }
  if (auto s = query("sequenced")) p.sequenced = is_true(*s);
  else if (auto m = text_field(meta, {"sequenced"})) p.sequenced = is_true(*m);
  if (p.channels == 2 && !is_valid_call_id(p.call_id + ":outbound"))
    return std::string("call id too long for a second track");
  return p;
}

std::optional<sequenced_frame> parse_sequenced(std::string_view message) {
  if (message.size() < 8) return std::nullopt;
  std::uint64_t n = 0;
  for (int i = 0; i < 8; ++i) n = (n << 8) | static_cast<unsigned char>(message[static_cast<std::size_t>(i)]);
  if (n > static_cast<std::uint64_t>(max_sequence)) return std::nullopt;
  return sequenced_frame{static_cast<std::int64_t>(n), message.substr(8)};
}

session::session(stream_hub& hub, message_channel& channel, stream_request request)
    : websocket_session(hub, channel, protocol::audio_fork, std::move(request)) {}

asio::awaitable<bool> session::open(std::optional<std::string_view> metadata) {
  auto resolved = resolve(request_, metadata);
  if (auto* error = std::get_if<std::string>(&resolved)) {
    refuse(close_code::policy_violation, close_reason::bad_message, *error);
    co_return false;
  }
  params_ = std::get<params>(std::move(resolved));
  if (!request_.authenticated) {
    // No credentials came with the upgrade: the metadata may carry the token.
    std::optional<std::string> token;
    if (metadata) {
      boost::system::error_code ec;
      const json::value v = json::parse(*metadata, ec);
      if (!ec && v.is_object()) token = text_field(&v.get_object(), {"token"});
    }
    if (!token || !hub_.token_ok(*token)) {
      refuse(close_code::policy_violation, close_reason::unauthorized,
             "unauthorized: send a bearer token, Basic auth with a token as password, ?token=, or the metadata's token");
      co_return false;
    }
  }
  const auto& p = *params_;
  call_id_ = p.call_id;
  std::vector<track_spec> tracks{{p.call_id, "inbound", p.format, p.packet_ms}};
  if (p.channels == 2) tracks.push_back({p.call_id + ":outbound", "outbound", p.format, p.packet_ms});
  auto op = feed_.open(std::move(tracks));
  if (auto failed = co_await std::move(op)) {
    refuse(std::move(*failed));
    co_return false;
  }
  const auto samples = static_cast<std::size_t>(p.packet_ms * p.format.rate / 1000);
  frames_.emplace(p.format.bytes_per_sample(), p.channels, samples);
  hub_.stats().of(kind_).opened.fetch_add(1, std::memory_order_relaxed);
  log::info("stream started", {{"protocol", "audio_fork"}, {"call_id", p.call_id}, {"format", media::to_string(p.format)},
                               {"channels", p.channels}, {"sequenced", p.sequenced}, {"remote", request_.remote}});
  json::object started{{"protocol", "audio_fork"},
                       {"format", media::to_string(p.format)},
                       {"channels", p.channels},
                       {"packet_ms", p.packet_ms},
                       {"sequenced", p.sequenced}};
  if (metadata && !metadata->empty()) {
    // The sender's metadata, as an object when it is one (a token in it is a credential, not call data).
    boost::system::error_code ec;
    json::value parsed = json::parse(metadata->substr(0, 16 * 1024), ec);
    if (!ec && parsed.is_object()) {
      parsed.get_object().erase("token");
      started["metadata"] = std::move(parsed);
    } else {
      started["metadata"] = json::string(metadata->substr(0, 1024));
    }
  }
  event("stream_started", std::move(started));
  if (p.sequenced) {
    feed_.on_acked([this] { acked(); });
    sent_ack_ = feed_.acked();
    send_text(json::serialize(json::object{{"event", "ready"}, {"call_id", p.call_id}, {"acked", sent_ack_}}));
  }
  co_return true;
}

asio::awaitable<void> session::on_connected() {
  // A sequenced sender waits for `ready` before it sends: with the call in the path, the stream opens now,
  // from the URL's parameters (a metadata message that follows is a call event).
  const auto sequenced = request_.find("sequenced");
  if (request_.call_id && (sequenced == "1" || sequenced == "true")) {
    auto op = open(std::nullopt);
    co_await std::move(op);
  }
}

asio::awaitable<websocket_session::step> session::on_message(std::string_view message, bool text) {
  if (!params_) {
    // The metadata, or audio first when the path names the call.
    auto op = open(text ? std::optional<std::string_view>(message) : std::nullopt);
    if (!co_await std::move(op)) co_return step::go_on;
    if (text) co_return step::go_on;
  }
  if (text) {
    boost::system::error_code ec;
    const json::value v = json::parse(message, ec);
    const json::object* o = !ec && v.is_object() ? &v.get_object() : nullptr;
    const auto kind = text_field(o, {"event", "type"});
    if (kind && *kind == "stop") {
      co_await flush();
      co_return step::stopped;
    }
    if (kind && *kind == "dtmf") {
      if (auto digit = text_field(o, {"dtmf", "digit"})) {
        event("dtmf", {{"digit", digit->substr(0, 8)}});
        co_return step::go_on;
      }
    }
    event("text", {{"text", message.substr(0, 1024)}});
    co_return step::go_on;
  }
  if (message.empty()) {  // mod_audio_fork's graceful stop
    co_await flush();
    co_return step::stopped;
  }
  if (params_->sequenced) {
    auto op = on_sequenced(message);
    co_await std::move(op);
  } else {
    auto op = on_audio(message);
    co_await std::move(op);
  }
  co_return step::go_on;
}

asio::awaitable<void> session::on_audio(std::string_view bytes) {
  auto& stats = hub_.stats().of(kind_);
  stats.frames.fetch_add(1, std::memory_order_relaxed);
  stats.bytes.fetch_add(bytes.size(), std::memory_order_relaxed);
  frames_->feed({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()}, packets_);
  co_await push_packets(std::nullopt, system_now());
}

asio::awaitable<void> session::on_sequenced(std::string_view message) {
  const auto frame = parse_sequenced(message);
  const std::size_t sample_frame = params_->format.bytes_per_sample() * params_->channels;
  if (!frame || frame->audio.empty() || frame->audio.size() % sample_frame != 0) {
    refuse(close_code::invalid_payload, close_reason::bad_audio,
           "a sequenced message is an 8-byte sequence and whole samples of audio");
    co_return;
  }
  auto& stats = hub_.stats().of(kind_);
  stats.frames.fetch_add(1, std::memory_order_relaxed);
  stats.bytes.fetch_add(frame->audio.size(), std::memory_order_relaxed);
  reframer::split({reinterpret_cast<const std::uint8_t*>(frame->audio.data()), frame->audio.size()},
                  params_->format.bytes_per_sample(), params_->channels, packets_);
  co_await push_packets(frame->sequence, system_now());
}

asio::awaitable<void> session::push_packets(std::optional<std::int64_t> sequence, double timestamp) {
  const auto received = std::chrono::steady_clock::now();
  const std::size_t channels = params_->channels;
  for (std::size_t i = 0; i + channels <= packets_.size() && !feed_.failure(); i += channels) {
    for (std::size_t c = 0; c < channels; ++c) {
      auto op = feed_.push(c, sequence, std::move(packets_[i + c]), false, timestamp, received);
      co_await std::move(op);
    }
  }
  packets_.clear();
}

asio::awaitable<void> session::flush() {
  if (!frames_ || params_->sequenced) co_return;
  if (const auto dropped = frames_->flush(packets_); dropped > 0)
    log::warn("audio fork stream ended inside a sample: trailing bytes dropped", {{"call_id", call_id_}, {"bytes", dropped}});
  co_await push_packets(std::nullopt, system_now());
}

void session::acked() {
  if (ack_scheduled_) return;
  ack_scheduled_ = true;
  // Answers of one commit arrive together: one acknowledgement for all of them.
  asio::post(channel_.executor(), [this, self = self_] {
    if (*self == nullptr) return;
    ack_scheduled_ = false;
    send_ack();
  });
}

void session::send_ack() {
  const std::int64_t n = feed_.acked();
  if (n <= sent_ack_) return;
  sent_ack_ = n;
  send_text(json::serialize(json::object{{"event", "ack"}, {"sequence", n}}));
}

void session::before_close() {
  if (params_ && params_->sequenced) send_ack();
}

}  // namespace aipbx::streams::audio_fork
