#include "streams/stream_hub.hpp"

#include "log/log.hpp"
#include "streams/audio_fork.hpp"
#include "streams/twilio.hpp"

namespace aipbx::streams {

std::string_view to_string(protocol p) {
  switch (p) {
    case protocol::twilio: return "twilio";
    case protocol::audio_fork: return "audio_fork";
    case protocol::audiosocket: return "audiosocket";
  }
  return "unknown";
}

std::string_view to_string(close_reason r) {
  switch (r) {
    case close_reason::stopped: return "stopped";
    case close_reason::closed: return "closed";
    case close_reason::broken: return "broken";
    case close_reason::idle: return "idle";
    case close_reason::shutdown: return "shutdown";
    case close_reason::bad_message: return "bad_message";
    case close_reason::bad_audio: return "bad_audio";
    case close_reason::unauthorized: return "unauthorized";
    case close_reason::conflict: return "conflict";
    case close_reason::unavailable: return "unavailable";
    case close_reason::limit: return "limit";
    case close_reason::internal: return "internal";
  }
  return "internal";
}

std::string stream_request::find(std::string_view name) const {
  for (const auto& [k, v] : query)
    if (k == name) return v;
  return {};
}

bool stream_request::has(std::string_view name) const {
  for (const auto& [k, v] : query)
    if (k == name) return true;
  return false;
}

stream_hub::stream_hub(call_store& store, ingest::ingest_path& ingest, boost::asio::thread_pool& blocking,
                       stream_options options, std::function<bool(std::string_view)> token_ok)
    : store_(store),
      ingest_(ingest),
      blocking_(blocking),
      options_(options),
      token_check_(std::move(token_ok)),
      tokens_required_(static_cast<bool>(token_check_)) {}

boost::asio::awaitable<void> stream_hub::run_websocket(message_channel& channel, stream_request request) {
  if (request.kind == protocol::twilio) {
    twilio::session s(*this, channel, std::move(request));
    auto op = s.run();
    co_await std::move(op);
  } else {
    audio_fork::session s(*this, channel, std::move(request));
    auto op = s.run();
    co_await std::move(op);
  }
}

std::optional<std::uint64_t> stream_hub::enter(protocol kind, std::function<void()> stop) {
  std::lock_guard lock(mutex_);
  if (stopping_ || sessions_.size() >= options_.max_streams) return std::nullopt;
  const auto id = next_id_++;
  sessions_.emplace(id, session_entry{kind, std::move(stop)});
  return id;
}

void stream_hub::leave(std::uint64_t id) {
  std::function<void()> done;
  {
    std::lock_guard lock(mutex_);
    sessions_.erase(id);
    if (stopping_ && sessions_.empty()) done = std::move(on_stopped_);
  }
  if (done) done();
}

bool stream_hub::claim_call(const std::string& call_id) {
  std::lock_guard lock(mutex_);
  return calls_.insert(call_id).second;
}

void stream_hub::release_call(const std::string& call_id) {
  std::lock_guard lock(mutex_);
  calls_.erase(call_id);
}

void stream_hub::stop(std::function<void()> done) {
  std::vector<std::function<void()>> stops;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    if (sessions_.empty()) {
      stops.clear();
    } else {
      on_stopped_ = std::move(done);
      done = nullptr;
      for (auto& [id, entry] : sessions_) stops.push_back(entry.stop);
    }
  }
  if (!stops.empty()) log::info("closing streams", {{"streams", stops.size()}});
  for (auto& s : stops) s();
  if (done) done();
}

bool stream_hub::stopping() const {
  std::lock_guard lock(mutex_);
  return stopping_;
}

std::size_t stream_hub::open_streams() const {
  std::lock_guard lock(mutex_);
  return sessions_.size();
}

}  // namespace aipbx::streams
