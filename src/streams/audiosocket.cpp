#include "streams/audiosocket.hpp"

#include "domain/clock.hpp"
#include "log/json_text.hpp"
#include "log/log.hpp"
#include "net/listen.hpp"
#include "storage/async_store.hpp"
#include "streams/call_feed.hpp"
#include "streams/idle_watch.hpp"
#include "streams/reframer.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/object.hpp>

#include <charconv>
#include <cstdio>

namespace aipbx::streams::audiosocket {

namespace asio = boost::asio;
using asio::ip::tcp;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t audio_rates[] = {8000, 12000, 16000, 24000, 32000, 44100, 48000, 96000, 192000};
}  // namespace

std::uint32_t rate_of(std::uint8_t k) {
  if (k < audio || k > audio_slin192) return 0;
  return audio_rates[k - audio];
}

std::string uuid_text(std::span<const std::uint8_t, 16> b) {
  char out[37];
  std::snprintf(out, sizeof out, "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", b[0], b[1],
                b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15]);
  return out;
}

void frame_parser::append(std::span<const std::uint8_t> bytes) {
  if (consumed_ > 0 && consumed_ == buffer_.size()) {
    buffer_.clear();
    consumed_ = 0;
  } else if (consumed_ > 4096) {
    buffer_.erase(buffer_.begin(), buffer_.begin() + static_cast<std::ptrdiff_t>(consumed_));
    consumed_ = 0;
  }
  buffer_.insert(buffer_.end(), bytes.begin(), bytes.end());
}

frame_parser::status frame_parser::next(frame& out) {
  const std::size_t available = buffer_.size() - consumed_;
  if (available < 3) return status::need_more;
  const std::uint8_t* p = buffer_.data() + consumed_;
  const std::size_t length = (static_cast<std::size_t>(p[1]) << 8) | p[2];
  if (length > max_payload_) {
    declared_ = length;
    return status::too_large;
  }
  if (available < 3 + length) return status::need_more;
  out.kind = p[0];
  out.payload = std::string_view(reinterpret_cast<const char*>(p + 3), length);
  consumed_ += 3 + length;
  return status::frame;
}

bool network::contains(const asio::ip::address& a) const {
  auto bytes_of = [](const asio::ip::address& x) -> std::vector<std::uint8_t> {
    if (x.is_v4()) {
      auto b = x.to_v4().to_bytes();
      return {b.begin(), b.end()};
    }
    auto v6 = x.to_v6();
    if (v6.is_v4_mapped()) {
      auto b = asio::ip::make_address_v4(asio::ip::v4_mapped, v6).to_bytes();
      return {b.begin(), b.end()};
    }
    auto b = v6.to_bytes();
    return {b.begin(), b.end()};
  };
  const auto mine = bytes_of(address);
  const auto theirs = bytes_of(a);
  if (mine.size() != theirs.size()) return false;
  unsigned bits = prefix;
  for (std::size_t i = 0; i < mine.size() && bits > 0; ++i) {
    const unsigned take = std::min(bits, 8u);
    const auto mask = static_cast<std::uint8_t>(0xff << (8 - take));
    if ((mine[i] & mask) != (theirs[i] & mask)) return false;
    bits -= take;
  }
  return true;
}

std::optional<network> parse_network(std::string_view text) {
  const auto slash = text.find('/');
  boost::system::error_code ec;
  const auto address = asio::ip::make_address(std::string(text.substr(0, slash)), ec);
  if (ec) return std::nullopt;
  const unsigned max = address.is_v4() ? 32 : 128;
  unsigned prefix = max;
  if (slash != std::string_view::npos) {
    const auto digits = text.substr(slash + 1);
    auto [end, pec] = std::from_chars(digits.data(), digits.data() + digits.size(), prefix);
    if (pec != std::errc{} || end != digits.data() + digits.size() || digits.empty() || prefix > max)
      return std::nullopt;
  }
  // `contains` compares a v4-mapped peer as its IPv4 address, so a network written in that form is its
  // IPv4 network (::ffff:10.0.0.0/104 is 10.0.0.0/8), and one wider than the mapped range means nothing.
  if (address.is_v6() && address.to_v6().is_v4_mapped()) {
    if (prefix < 96) return std::nullopt;
    return network{asio::ip::make_address_v4(asio::ip::v4_mapped, address.to_v6()), prefix - 96};
  }
  return network{address, prefix};
}

namespace {

// One AudioSocket connection, on its own strand.
class session {
 public:
  session(stream_hub& hub, tcp::socket socket, const listener_options& options)
      : hub_(hub),
        options_(options),
        stats_(hub.stats().of(protocol::audiosocket)),
        executor_(socket.get_executor()),
        socket_(std::move(socket)),
        idle_(executor_, hub.options().idle_timeout,
              [this] {
                boost::system::error_code ignored;
                socket_.cancel(ignored);
              }),
        parser_(hub.options().message_limit),
        feed_(hub, protocol::audiosocket, executor_),
        self_(std::make_shared<session*>(this)) {
    boost::system::error_code ec;
    remote_ = socket_.remote_endpoint(ec).address().to_string();
  }
  ~session() { *self_ = nullptr; }

  asio::awaitable<void> run() {
    const auto entry = hub_.enter(protocol::audiosocket, [self = self_, ex = executor_] {
      asio::post(ex, [self] {
        if (*self != nullptr) (*self)->stop_requested();
      });
    });
    if (!entry) {
      const bool stopping = hub_.stopping();
      stats_.closed(stopping ? close_reason::shutdown : close_reason::limit);
      log::warn("stream refused", {{"protocol", "audiosocket"}, {"remote", remote_},
                                   {"reason", stopping ? "server shutting down" : "too many streams"}});
      co_return;
    }
    stats_.open.fetch_add(1, std::memory_order_relaxed);
    started_at_ = system_now();
    // A refusal the store answered while the session waits on its socket ends the read now.
    feed_.on_failed([this] {
      boost::system::error_code ignored;
      socket_.cancel(ignored);
    });
    try {
      co_await loop();
      if (feed_.failure()) {
        reason_ = feed_.failure()->reason;
        log::warn("stream refused", {{"protocol", "audiosocket"}, {"call_id", call_id_}, {"remote", remote_},
                                     {"reason", to_string(feed_.failure()->reason)}, {"detail", feed_.failure()->text}});
      }
      if (reason_ == close_reason::stopped && frames_) {
        std::vector<std::string> last;
        frames_->flush(last);
        for (auto& data : last) {
          auto op = feed_.push(0, std::nullopt, std::move(data), false, system_now(), std::chrono::steady_clock::now());
          co_await std::move(op);
        }
      }
      co_await feed_.drain(std::chrono::steady_clock::now() + hub_.options().drain_timeout);
      if (reason_ == close_reason::stopped && feed_.opened() && !feed_.failure()) {
        auto op = feed_.end("stream stopped (audiosocket)");
        co_await std::move(op);
      }
    } catch (const std::exception& e) {
      stats_.failures.fetch_add(1, std::memory_order_relaxed);
      log::error("stream failed", {{"protocol", "audiosocket"}, {"call_id", call_id_}, {"error", e.what()}});
      reason_ = close_reason::internal;
    }
    boost::system::error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
    const close_reason reason = reason_.value_or(close_reason::closed);
    if (feed_.opened()) {
      boost::json::object stopped{{"protocol", "audiosocket"}, {"reason", to_string(reason)}};
      if (feed_.failure()) stopped["detail"] = feed_.failure()->text;
      feed_.record("stream_stopped", to_json_text(stopped));
    }
    stats_.closed(reason);
    stats_.open.fetch_sub(1, std::memory_order_relaxed);
    hub_.leave(*entry);
    log::info("stream closed", {{"protocol", "audiosocket"}, {"call_id", call_id_}, {"reason", to_string(reason)},
                                {"remote", remote_}, {"seconds", system_now() - started_at_}});
  }

 private:
  void refuse(close_reason reason, std::string text) { feed_.fail({close_code::policy_violation, reason, std::move(text)}); }

  // A call event: recorded on the call once it is open (its first audio frame opens it), kept until then.
  void event(std::string kind, boost::json::object data) {
    log::info("call event", {{"protocol", "audiosocket"}, {"call_id", call_id_}, {"kind", kind}, {"data", data}});
    if (!feed_.opened()) {
      if (waiting_events_.size() < 64) waiting_events_.emplace_back(std::move(kind), to_json_text(data));
      return;
    }
    feed_.record(std::move(kind), to_json_text(data));
  }

  asio::awaitable<void> loop() {
    std::array<std::uint8_t, 8192> chunk;
    idle_.start();
    struct stop_watching {
      idle_watch& idle;
      ~stop_watching() { idle.stop(); }
    } stop{idle_};
    for (;;) {
      frame_parser::frame f;
      frame_parser::status st;
      while ((st = parser_.next(f)) == frame_parser::status::frame) {
        co_await on_frame(f);
        if (feed_.failure() || reason_) co_return;
      }
      if (st == frame_parser::status::too_large) {
        refuse(close_reason::bad_message, "a frame of " + std::to_string(parser_.declared_length()) +
                                              " bytes, over the limit of " + std::to_string(hub_.options().message_limit));
        co_return;
      }
      if (stopping_) {
        reason_ = close_reason::shutdown;
        co_return;
      }
      idle_.read_started();
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(chunk), use_tuple);
      idle_.read_ended();
      if (ec) {
        if (feed_.failure()) co_return;
        if (stopping_) reason_ = close_reason::shutdown;
        else if (idle_.expired()) reason_ = close_reason::idle;
        else if (ec == asio::error::eof) reason_ = parser_.inside_frame() ? close_reason::broken : close_reason::stopped;
        else reason_ = close_reason::broken;
        co_return;
      }
      parser_.append({chunk.data(), n});
    }
  }

  asio::awaitable<void> on_frame(const frame_parser::frame& f) {
    if (call_id_.empty()) {
      if (f.kind != uuid || f.payload.size() != 16) {
        refuse(close_reason::bad_message, "the first frame must be the call's UUID (kind 0x01, 16 bytes)");
        co_return;
      }
      call_id_ = uuid_text(std::span<const std::uint8_t, 16>(reinterpret_cast<const std::uint8_t*>(f.payload.data()), 16));
      if (options_.registered_only) co_await check_registered();
      co_return;
    }
    if (const auto rate = rate_of(f.kind); rate != 0) {
      co_await on_audio(rate, f.payload);
      co_return;
    }
    switch (f.kind) {
      case dtmf:
        if (f.payload.size() != 1) {
          refuse(close_reason::bad_message, "a DTMF frame holds one digit");
          co_return;
        }
        event("dtmf", {{"digit", std::string(f.payload)}});
        co_return;
      case hangup: reason_ = close_reason::stopped; co_return;
      case error: {
        // Asterisk's error frames carry an error code byte (res_audiosocket leaves their meaning open).
        std::string code;
        for (unsigned char b : f.payload.substr(0, 16)) {
          char hex[3];
          std::snprintf(hex, sizeof hex, "%02x", b);
          code += hex;
        }
        log::warn("audiosocket peer reported an error", {{"call_id", call_id_}, {"payload", code}});
        event("error", {{"payload", code}});
        co_return;
      }
      case uuid: refuse(close_reason::bad_message, "a second UUID frame"); co_return;
      default: {
        char kind[8];
        std::snprintf(kind, sizeof kind, "0x%02x", f.kind);
        refuse(close_reason::bad_message, std::string("unknown frame kind ") + kind);
        co_return;
      }
    }
  }

  asio::awaitable<void> check_registered() {
    call_store& store = hub_.store();
    auto op = run_blocking(hub_.blocking(), [&store, id = call_id_] { return store.get_call(id); });
    auto call = co_await std::move(op);
    if (!call) refuse(close_reason::unauthorized, "call " + call_id_ + " was not registered through the API");
  }

  asio::awaitable<void> on_audio(std::uint32_t rate, std::string_view payload) {
    if (payload.size() % 2 != 0) {
      refuse(close_reason::bad_audio, "signed-linear audio of an odd number of bytes");
      co_return;
    }
    if (!frames_) {
      const auto format = media::media_format::l16(rate);
      auto op = feed_.open({{call_id_, "inbound", format, media::default_packet_ms}});
      if (auto failed = co_await std::move(op)) {
        feed_.fail(std::move(*failed));
        co_return;
      }
      rate_ = rate;
      frames_.emplace(2, 1, static_cast<std::size_t>(media::default_packet_ms * rate / 1000));
      stats_.opened.fetch_add(1, std::memory_order_relaxed);
      log::info("stream started", {{"protocol", "audiosocket"}, {"call_id", call_id_}, {"format", media::to_string(format)},
                                   {"remote", remote_}});
      feed_.record("stream_started", to_json_text(boost::json::object{
                                         {"protocol", "audiosocket"}, {"format", media::to_string(format)}, {"remote", remote_}}));
      for (auto& [kind, data] : waiting_events_) feed_.record(std::move(kind), std::move(data));
      waiting_events_.clear();
    } else if (rate != rate_) {
      refuse(close_reason::bad_audio, "the audio's sample rate changed mid-stream");
      co_return;
    }
    stats_.frames.fetch_add(1, std::memory_order_relaxed);
    stats_.bytes.fetch_add(payload.size(), std::memory_order_relaxed);
    packets_.clear();
    frames_->feed({reinterpret_cast<const std::uint8_t*>(payload.data()), payload.size()}, packets_);
    const auto received = std::chrono::steady_clock::now();
    const double now = system_now();
    for (auto& data : packets_) {
      auto op = feed_.push(0, std::nullopt, std::move(data), false, now, received);
      co_await std::move(op);
    }
  }

  void stop_requested() {
    stopping_ = true;
    boost::system::error_code ignored;
    socket_.cancel(ignored);
  }

  stream_hub& hub_;
  const listener_options& options_;
  protocol_stats& stats_;
  asio::any_io_executor executor_;
  // A plain socket: Beast's tcp_stream would set and cancel a timer around every read of every frame.
  tcp::socket socket_;
  // The idle limit counts only time waiting for the peer, not time the store holds the session back.
  idle_watch idle_;
  frame_parser parser_;
  call_feed feed_;
  std::shared_ptr<session*> self_;
  std::string remote_;
  std::string call_id_;
  std::optional<reframer> frames_;
  std::vector<std::string> packets_;
  std::uint32_t rate_ = 0;
  bool stopping_ = false;
  std::optional<close_reason> reason_;
  double started_at_ = 0;
  std::vector<std::pair<std::string, std::string>> waiting_events_;  // before the call opened
};

asio::awaitable<void> run_session(stream_hub& hub, tcp::socket socket, const listener_options& options) {
  session s(hub, std::move(socket), options);
  auto op = s.run();
  co_await std::move(op);
}

}  // namespace

listener::listener(asio::io_context& ioc, stream_hub& hub, listener_options options)
    : ioc_(ioc), hub_(hub), options_(std::move(options)), acceptor_(asio::make_strand(ioc)) {}

listener::~listener() = default;

tcp::endpoint listener::listen() { return net::listen(acceptor_, options_.host, options_.port); }

void listener::start() {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), [](const std::exception_ptr& e) {
    if (e) log::error("audiosocket accept loop failed", {{"error", describe(e)}});
  });
}

void listener::stop() {
  asio::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
}

asio::awaitable<void> listener::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::make_strand(ioc_), use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) co_return;
      log::warn("audiosocket accept failed", {{"error", ec.message()}});
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    if (!options_.allow.empty()) {
      boost::system::error_code rec;
      const auto peer = socket.remote_endpoint(rec).address();
      bool allowed = false;
      for (const auto& n : options_.allow) allowed = allowed || (!rec && n.contains(peer));
      if (!allowed) {
        hub_.stats().of(protocol::audiosocket).closed(close_reason::unauthorized);
        log::warn("audiosocket connection refused: address not allowed", {{"remote", peer.to_string()}});
        boost::system::error_code ignored;
        socket.close(ignored);
        continue;
      }
    }
    auto executor = socket.get_executor();
    asio::co_spawn(executor, run_session(hub_, std::move(socket), options_), [this](const std::exception_ptr& e) {
      if (!e) return;
      hub_.stats().of(protocol::audiosocket).failures.fetch_add(1, std::memory_order_relaxed);
      log::error("audiosocket session failed", {{"error", describe(e)}});
    });
  }
}

}  // namespace aipbx::streams::audiosocket
