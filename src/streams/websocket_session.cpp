#include "streams/websocket_session.hpp"

#include "domain/clock.hpp"
#include "log/json_text.hpp"
#include "log/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/websocket/error.hpp>

namespace aipbx::streams {

namespace asio = boost::asio;
namespace websocket = boost::beast::websocket;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// A close frame's reason holds at most 123 bytes (RFC 6455, 5.5: 125 bytes of payload with the code).
std::string close_text(std::string text) {
  if (text.size() > 123) {
    text.resize(120);
    text += "...";
  }
  return text;
}

}  // namespace

websocket_session::websocket_session(stream_hub& hub, message_channel& channel, protocol kind, stream_request request)
    : hub_(hub),
      channel_(channel),
      kind_(kind),
      request_(std::move(request)),
      feed_(hub, kind, channel.executor()),
      self_(std::make_shared<websocket_session*>(this)),
      stats_(hub.stats().of(kind)),
      idle_(channel.executor(), hub.options().idle_timeout, [this] { on_idle(); }),
      writes_idle_(channel.executor(), std::chrono::steady_clock::time_point::max()),
      tasks_done_(channel.executor(), std::chrono::steady_clock::time_point::max()) {}

websocket_session::~websocket_session() { *self_ = nullptr; }

void websocket_session::spawn(asio::awaitable<void> task) {
  ++tasks_;
  asio::co_spawn(channel_.executor(), std::move(task), [this](const std::exception_ptr& e) {
    if (e) {
      stats_.failures.fetch_add(1, std::memory_order_relaxed);
      log::error("stream task failed", {{"protocol", to_string(kind_)}, {"call_id", call_id_}, {"error", describe(e)}});
    }
    --tasks_;
    tasks_done_.cancel();
  });
}

asio::awaitable<void> websocket_session::run() {
  started_at_ = system_now();
  // The hub may call the stop hook from any thread until this session leaves: it posts to the strand and
  // finds the session through `self_`, which the destructor clears (on the strand).
  auto entry = hub_.enter(kind_, [self = self_, ex = channel_.executor()] {
    asio::post(ex, [self] {
      if (*self != nullptr) (*self)->stop_requested();
    });
  });
  if (!entry) {
    const bool stopping = hub_.stopping();
    stats_.closed(stopping ? close_reason::shutdown : close_reason::limit);
    log::warn("stream refused", {{"protocol", to_string(kind_)}, {"remote", request_.remote},
                                 {"reason", stopping ? "server shutting down" : "too many streams"}});
    auto op = close_with(stopping ? close_code::going_away : close_code::try_again_later,
                         stopping ? "server shutting down" : "too many streams; retry shortly");
    co_await std::move(op);
    co_return;
  }
  stats_.open.fetch_add(1, std::memory_order_relaxed);
  // A refusal the store answered while the session waits on its socket closes the stream at once.
  // What was read before stays stored: the close follows once it is durable.
  feed_.on_failed([this] {
    if (done_ || closing_) return;
    reason_ = feed_.failure()->reason;
    spawn(close_after_drain(feed_.failure()->code, feed_.failure()->text));
  });
  try {
    co_await read_loop();
    co_await feed_.drain(std::chrono::steady_clock::now() + hub_.options().drain_timeout);
    if (reason_ == close_reason::stopped) {
      auto end_op = feed_.end("stream stopped (" + std::string(to_string(kind_)) + ")");
      co_await std::move(end_op);
      before_close();
      auto close_op = close_with(close_code::normal, "stream stopped");
      co_await std::move(close_op);
    }
  } catch (const std::exception& e) {
    stats_.failures.fetch_add(1, std::memory_order_relaxed);
    log::error("stream failed", {{"protocol", to_string(kind_)}, {"call_id", call_id_}, {"error", e.what()}});
    reason_ = close_reason::internal;
  }
  idle_.stop();
  writes_idle_.cancel();
  while (tasks_ > 0) co_await tasks_done_.async_wait(use_tuple);
  const close_reason reason = reason_.value_or(close_reason::closed);
  if (feed_.opened()) {
    boost::json::object stopped{{"protocol", to_string(kind_)}, {"reason", to_string(reason)}};
    if (feed_.failure()) stopped["detail"] = feed_.failure()->text;
    feed_.record("stream_stopped", to_json_text(stopped));
  }
  stats_.closed(reason);
  stats_.open.fetch_sub(1, std::memory_order_relaxed);
  hub_.leave(*entry);
  if (feed_.opened())
    log::info("stream closed", {{"protocol", to_string(kind_)}, {"call_id", call_id_}, {"reason", to_string(reason)},
                                {"detail", feed_.failure() ? feed_.failure()->text : std::string()},
                                {"seconds", system_now() - started_at_}});
}

asio::awaitable<void> websocket_session::read_loop() {
  idle_.start();
  auto connected_op = on_connected();
  co_await std::move(connected_op);
  while (!feed_.failure()) {
    idle_.read_started();
    auto read_op = channel_.read();
    const auto ec = co_await std::move(read_op);
    idle_.read_ended();
    if (ec == websocket::error::message_too_big) {
      refuse(close_code::too_big, close_reason::bad_message,
             "a message over the limit of " + std::to_string(hub_.options().message_limit) + " bytes");
      break;
    }
    if (ec) {
      if (!reason_) reason_ = reason_for_read_error(ec);
      break;
    }
    auto handle_op = on_message(channel_.message(), channel_.is_text());
    const step s = co_await std::move(handle_op);
    if (feed_.failure()) break;
    if (s == step::stopped) {
      reason_ = close_reason::stopped;
      break;
    }
  }
  done_ = true;
  idle_.stop();
  if (const auto& f = feed_.failure()) {
    reason_ = f->reason;
    log::warn("stream refused", {{"protocol", to_string(kind_)}, {"call_id", call_id_}, {"remote", request_.remote},
                                 {"reason", to_string(f->reason)}, {"detail", f->text}});
    auto op = close_after_drain(f->code, f->text);
    co_await std::move(op);
  }
}

close_reason websocket_session::reason_for_read_error(const boost::system::error_code& ec) const {
  if (ec == websocket::error::closed) return close_reason::closed;
  if (ec == websocket::error::message_too_big) return close_reason::bad_message;
  // Beast fails the connection on a protocol violation (bad framing, a text message that is not UTF-8...).
  if (ec.category() == boost::system::error_code(websocket::error::closed).category() ||
      ec == websocket::condition::protocol_violation)
    return close_reason::bad_message;
  return close_reason::broken;
}

void websocket_session::on_idle() {
  if (done_ || closing_) return;
  reason_ = close_reason::idle;
  spawn(close_with(close_code::policy_violation,
                   "idle: nothing received for " + std::to_string(idle_.limit().count()) + " ms"));
}

void websocket_session::send_text(std::string text) {
  if (closing_) return;
  outbox_.push_back(std::move(text));
  if (writing_) return;
  writing_ = true;
  spawn(flush_writes());
}

asio::awaitable<void> websocket_session::flush_writes() {
  while (!outbox_.empty() && !closing_) {
    std::string text = std::move(outbox_.front());
    outbox_.pop_front();
    auto op = channel_.write_text(std::move(text));
    if (co_await std::move(op)) break;
  }
  outbox_.clear();
  writing_ = false;
  writes_idle_.cancel();
}

asio::awaitable<void> websocket_session::close_with(close_code code, std::string text) {
  while (writing_) co_await writes_idle_.async_wait(use_tuple);
  if (closing_) co_return;
  closing_ = true;
  auto op = channel_.close(code, close_text(std::move(text)));
  co_await std::move(op);
}

asio::awaitable<void> websocket_session::close_after_drain(close_code code, std::string text) {
  auto drain_op = feed_.drain(std::chrono::steady_clock::now() + hub_.options().drain_timeout);
  co_await std::move(drain_op);
  auto op = close_with(code, std::move(text));
  co_await std::move(op);
}

void websocket_session::stop_requested() {
  if (done_ || stopping_) return;
  stopping_ = true;
  spawn(shut_down());
}

asio::awaitable<void> websocket_session::shut_down() {
  // What was read is made durable (and acknowledged) before the close, so a sender that reconnects to
  // another node resends nothing that was stored.
  co_await feed_.drain(std::chrono::steady_clock::now() + hub_.options().drain_timeout);
  if (done_ || closing_) co_return;
  before_close();
  reason_ = close_reason::shutdown;
  auto op = close_with(close_code::going_away, "server shutting down");
  co_await std::move(op);
}

void websocket_session::event(std::string_view kind, boost::json::object data) {
  std::string text = to_json_text(data);
  log::info("call event", {{"protocol", to_string(kind_)}, {"call_id", call_id_}, {"kind", kind}, {"data", data}});
  feed_.record(std::string(kind), std::move(text));
}

}  // namespace aipbx::streams
