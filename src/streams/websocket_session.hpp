// websocket_session: the life of one WebSocket stream, whatever its protocol: admission against the
// stream cap, the read loop, the idle watchdog, serialized writes, the close code and reason, shutdown
// ("going away" once what was read is durable), counters and logs. A protocol (Twilio, audio fork)
// derives from it and handles each message; the session's `feed` carries its audio to the store.
//
// Threading: everything runs on the connection's strand (the channel's executor); not thread-safe. The
// hub's stop hook posts to that strand.
#pragma once

#include "streams/call_feed.hpp"
#include "streams/idle_watch.hpp"
#include "streams/message_channel.hpp"
#include "streams/stream_hub.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <deque>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

namespace aipbx::streams {

class websocket_session {
 public:
  websocket_session(stream_hub& hub, message_channel& channel, protocol kind, stream_request request);
  virtual ~websocket_session();
  websocket_session(const websocket_session&) = delete;
  websocket_session& operator=(const websocket_session&) = delete;

  // Runs the connection to its end; never throws.
  boost::asio::awaitable<void> run();

 protected:
  // What a message did to the stream.
  enum class step {
    go_on,    // keep reading
    stopped,  // the sender ended the stream: the calls are ended once everything read is durable
  };
  // Handles one message. Refusing it (`refuse`) ends the stream with that close code and reason.
  virtual boost::asio::awaitable<step> on_message(std::string_view message, bool text) = 0;
  // Runs once the connection is admitted, before the first message is read.
  virtual boost::asio::awaitable<void> on_connected() { co_return; }
  // Sent once the stream ended normally, before the close (e.g. the fork's last acknowledgement).
  virtual void before_close() {}

  // Ends the stream with `f` (the first failure wins).
  void refuse(stream_failure f) { feed_.fail(std::move(f)); }
  void refuse(close_code code, close_reason reason, std::string text) { refuse({code, reason, std::move(text)}); }
  // Queues a text message; messages go out one at a time, in order.
  void send_text(std::string text);
  // A call event (DTMF, mark, text, metadata...): logged, counted and recorded on the stream's call.
  void event(std::string_view kind, boost::json::object data);

  stream_hub& hub_;
  message_channel& channel_;
  protocol kind_;
  stream_request request_;
  call_feed feed_;
  double started_at_ = 0;  // unix seconds, when the connection was accepted
  // Set while the session lives (cleared by its destructor, on the strand): what a handler posted to the
  // strand checks before it touches the session.
  std::shared_ptr<websocket_session*> self_;
  std::string call_id_;    // the stream's (first track's) call, once known: for logs

 private:
  // Runs `task` on the strand; the session waits for every such task before it ends.
  void spawn(boost::asio::awaitable<void> task);
  boost::asio::awaitable<void> read_loop();
  // A read waited the whole idle limit: the stream is closed (1008).
  void on_idle();
  boost::asio::awaitable<void> flush_writes();
  boost::asio::awaitable<void> writes_done();
  boost::asio::awaitable<void> close_with(close_code code, std::string text);
  // Waits until what was read is answered, then closes.
  boost::asio::awaitable<void> close_after_drain(close_code code, std::string text);
  boost::asio::awaitable<void> shut_down();
  void stop_requested();
  close_reason reason_for_read_error(const boost::system::error_code& ec) const;

  protocol_stats& stats_;
  // The idle limit counts only time waiting for the peer, not time the store holds the session back.
  idle_watch idle_;
  boost::asio::steady_timer writes_idle_;
  std::deque<std::string> outbox_;
  bool writing_ = false;
  bool closing_ = false;        // a close frame was sent (or the connection is gone): no more writes
  bool done_ = false;           // the read loop ended
  bool stopping_ = false;       // the server is stopping
  int tasks_ = 0;               // coroutines spawned on the strand that still refer to this session
  boost::asio::steady_timer tasks_done_;
  std::optional<close_reason> reason_;
};

}  // namespace aipbx::streams
