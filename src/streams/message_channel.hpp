// message_channel: one accepted WebSocket connection, as the stream protocols see it: whole messages in
// (text or binary), text messages out, a close with a code and a reason. The HTTP transport implements it
// over Boost.Beast's websocket stream (plain or TLS); the protocols know no transport.
//
// Threading: a channel belongs to one connection's strand; every member is called there. One `read` and
// one `write_text` or `close` may be outstanding at once (Beast's rule); the protocol sessions serialize
// their writes. Errors are values: a read fails with `boost::beast::websocket::error::closed` when the
// peer closed, `message_too_big` past the message limit, `boost::beast::error::timeout` when nothing came
// for the idle timeout, or the socket's error.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/system/error_code.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace aipbx::streams {

// RFC 6455 close codes the protocols send.
enum class close_code : std::uint16_t {
  normal = 1000,
  going_away = 1001,
  protocol_error = 1002,
  unsupported_data = 1003,
  invalid_payload = 1007,
  policy_violation = 1008,
  too_big = 1009,
  internal_error = 1011,
  try_again_later = 1013,
};

class message_channel {
 public:
  virtual ~message_channel() = default;

  // Reads the next whole message. On success `message()` holds it (valid until the next read) and
  // `is_text()` tells its kind.
  virtual boost::asio::awaitable<boost::system::error_code> read() = 0;
  virtual std::string_view message() const = 0;
  virtual bool is_text() const = 0;
  virtual boost::asio::awaitable<boost::system::error_code> write_text(std::string text) = 0;
  // Sends a close frame and waits for the peer's (bounded by the transport's timeout).
  virtual boost::asio::awaitable<boost::system::error_code> close(close_code code, std::string reason) = 0;
  // The close code the peer sent, 0 if none.
  virtual std::uint16_t peer_close_code() const = 0;
  virtual boost::asio::any_io_executor executor() = 0;
  // The peer's address, for logs.
  virtual std::string remote() const = 0;
};

}  // namespace aipbx::streams
