#include "http/event_stream.hpp"

#include "events/wire_event.hpp"
#include "log/json_text.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <deque>

namespace aipbx::http {

namespace asio = boost::asio;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

using item = events::subscription::item;

std::string notice_json(const events::notice& n, std::string_view control) {
  std::string out = "{";
  if (!control.empty()) {
    out += "\"control\":";
    append_json_string(out, control);
    out += ',';
  }
  if (n.what == events::notice::kind::truncated) {
    out += "\"requested\":" + std::to_string(n.requested) + ",\"after\":" + std::to_string(n.after.value_or(0)) +
           ",\"reason\":\"pruned\"}";
  } else {
    out += "\"after\":" + (n.after ? std::to_string(*n.after) : std::string("null")) + ",\"reason\":";
    append_json_string(out, n.reason);
    out += '}';
  }
  return out;
}

bool is_resume(const item& i) {
  const auto* n = std::get_if<events::notice>(&i);
  return n != nullptr && n->what == events::notice::kind::resume;
}

// What a connection serving a subscription waits on, on its strand: the next items, a heartbeat when
// nothing came for a while, or the end. The hub wakes it by posting a cancel of its timer to the strand.
// Closes the subscription when destroyed.
class subscription_pump {
 public:
  enum class outcome { items, heartbeat, cancelled };

  subscription_pump(std::shared_ptr<events::subscription> sub, std::chrono::milliseconds heartbeat)
      : sub_(std::move(sub)), heartbeat_(heartbeat) {}
  ~subscription_pump() { sub_->close(); }
  subscription_pump(const subscription_pump&) = delete;
  subscription_pump& operator=(const subscription_pump&) = delete;

  asio::awaitable<outcome> next(std::vector<item>& items) {
    if (!timer_) {
      auto executor = co_await asio::this_coro::executor;
      timer_ = std::make_shared<asio::steady_timer>(executor);
      std::weak_ptr<asio::steady_timer> weak = timer_;
      sub_->set_waker([weak, executor] {
        asio::post(executor, [weak] {
          if (auto t = weak.lock()) t->cancel();
        });
      });
    }
    for (;;) {
      if (cancelled_) co_return outcome::cancelled;
      items = sub_->take();
      if (!items.empty()) co_return outcome::items;
      timer_->expires_after(heartbeat_);
      auto [ec] = co_await timer_->async_wait(use_tuple);
      if (!ec) co_return outcome::heartbeat;
    }
  }
  // Ends the wait at once; `next` answers `cancelled` from now on.
  void cancel() {
    cancelled_ = true;
    if (timer_) timer_->cancel();
  }
  // The server stops: what is queued, then a resume notice, is what comes next.
  void end_here() {
    sub_->end_here("shutdown");
    if (timer_) timer_->cancel();
  }

 private:
  std::shared_ptr<events::subscription> sub_;
  std::chrono::milliseconds heartbeat_;
  std::shared_ptr<asio::steady_timer> timer_;
  bool cancelled_ = false;
};

class sse_body final : public body_stream {
 public:
  sse_body(std::shared_ptr<events::subscription> sub, std::chrono::milliseconds heartbeat)
      : pump_(std::move(sub), heartbeat) {}

  asio::awaitable<std::vector<asio::const_buffer>> next() override {
    if (!started_) {
      started_ = true;
      // How long an EventSource waits before it reconnects after the stream ends.
      co_return std::vector<asio::const_buffer>{asio::buffer(preamble)};
    }
    if (done_) co_return std::vector<asio::const_buffer>{};
    auto op = pump_.next(items_);
    const auto got = co_await std::move(op);
    if (got == subscription_pump::outcome::cancelled) co_return std::vector<asio::const_buffer>{};
    if (got == subscription_pump::outcome::heartbeat) co_return std::vector<asio::const_buffer>{asio::buffer(keep_alive)};
    co_return frames();
  }

  void cancel(bool stopping) override {
    if (stopping) pump_.end_here();
    else pump_.cancel();
  }

 private:
  static constexpr std::string_view preamble = "retry: 1000\n\n";
  static constexpr std::string_view keep_alive = ": keep-alive\n\n";

  // The frames of `items_` (kept until the next call): a page a subscriber takes whole is written as the
  // hub formatted it, shared with every other subscriber; a filtered one's events are copied together.
  std::vector<asio::const_buffer> frames() {
    texts_.clear();
    std::vector<asio::const_buffer> out;
    out.reserve(items_.size());
    for (const auto& i : items_) {
      if (const auto* slice = std::get_if<events::page_slice>(&i)) {
        if (slice->whole()) {
          out.push_back(asio::buffer(slice->page->sse));
          continue;
        }
        std::string& text = texts_.emplace_back();
        for (std::size_t k = 0; k < slice->size(); ++k) text += slice->frame(k);
        out.push_back(asio::buffer(text));
      } else {
        out.push_back(asio::buffer(texts_.emplace_back(sse_notice(std::get<events::notice>(i)))));
        if (is_resume(i)) done_ = true;
      }
    }
    return out;
  }

  subscription_pump pump_;
  std::vector<item> items_;
  std::deque<std::string> texts_;  // a deque: the buffers given out point into its strings
  bool started_ = false;
  bool done_ = false;
};

// A WebSocket subscriber's connection: what the client sends is read and dropped, until it closes.
struct socket_reader {
  explicit socket_reader(const asio::any_io_executor& executor) : finished(executor, asio::steady_timer::time_point::max()) {}
  bool done = false;
  bool peer_gone = false;
  asio::steady_timer finished;
};

asio::awaitable<void> read_until_closed(streams::message_channel& channel, subscription_pump& pump,
                                        std::shared_ptr<socket_reader> reader) {
  for (;;) {
    auto op = channel.read();
    if (co_await std::move(op)) break;
  }
  reader->peer_gone = true;
  pump.cancel();
  reader->done = true;
  reader->finished.cancel();
}

// Writes the items; true when the subscription ended (after a resume notice, whose close it sent) or the
// connection failed. (Operations are named before they are awaited: GCC 12 can destroy the temporaries of
// a co_await expression twice.)
asio::awaitable<bool> write_items(streams::message_channel& channel, const std::vector<item>& items) {
  for (const auto& i : items) {
    if (const auto* slice = std::get_if<events::page_slice>(&i)) {
      for (std::size_t k = 0; k < slice->size(); ++k) {
        std::string text(slice->json(k));
        auto write = channel.write_text(std::move(text));
        if (co_await std::move(write)) co_return true;
      }
      continue;
    }
    const auto& n = std::get<events::notice>(i);
    auto write = channel.write_text(socket_notice(n));
    if (co_await std::move(write)) co_return true;
    if (n.what != events::notice::kind::resume) continue;
    const bool slow = n.reason == "slow_subscriber";
    std::string reason = slow ? "slow subscriber: resume after the last id" : "server stopping";
    auto close = channel.close(slow ? streams::close_code::try_again_later : streams::close_code::going_away,
                               std::move(reason));
    co_await std::move(close);
    co_return true;
  }
  co_return false;
}

}  // namespace

std::string sse_notice(const events::notice& n) {
  const bool truncated = n.what == events::notice::kind::truncated;
  return events::sse_frame(truncated ? "truncated" : "resume", n.after, notice_json(n, {}));
}

std::string socket_notice(const events::notice& n) {
  return notice_json(n, n.what == events::notice::kind::truncated ? "truncated" : "resume");
}

std::unique_ptr<body_stream> sse_events(std::shared_ptr<events::subscription> sub, std::chrono::milliseconds heartbeat) {
  return std::make_unique<sse_body>(std::move(sub), heartbeat);
}

asio::awaitable<void> serve_event_socket(streams::message_channel& channel, std::shared_ptr<events::subscription> sub,
                                         std::chrono::milliseconds heartbeat) {
  subscription_pump pump(std::move(sub), heartbeat);
  auto reader = std::make_shared<socket_reader>(channel.executor());
  asio::co_spawn(channel.executor(), read_until_closed(channel, pump, reader), asio::detached);
  bool closed = false;
  std::vector<item> items;
  while (!closed) {
    auto next = pump.next(items);
    const auto got = co_await std::move(next);
    if (got == subscription_pump::outcome::cancelled) break;
    if (got == subscription_pump::outcome::heartbeat) {
      std::string text = R"({"control":"heartbeat"})";
      auto write = channel.write_text(std::move(text));
      if (co_await std::move(write)) break;
      continue;
    }
    auto write = write_items(channel, items);
    closed = co_await std::move(write);
  }
  // The client is still there: say goodbye, which also ends the reader's read.
  if (!closed && !reader->peer_gone) {
    std::string none;
    auto close = channel.close(streams::close_code::normal, std::move(none));
    co_await std::move(close);
  }
  while (!reader->done) {
    auto wait = reader->finished.async_wait(use_tuple);
    co_await std::move(wait);
  }
}

}  // namespace aipbx::http
