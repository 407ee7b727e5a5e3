// Clients of aipbx's streaming protocols for the integration tests, on Boost.Beast and Asio, over 127.0.0.1.
//
// `ws_client` is one WebSocket connection (Twilio Media Streams, the audio fork): the handshake (whose HTTP
// answer is kept when the server refuses it), text and binary messages, and the close the server sends.
// `audiosocket_client` is one Asterisk AudioSocket connection: raw TLV frames over TCP. Every operation has a
// deadline; an I/O error or an expired deadline throws boost::system::system_error, so a test never hangs.
// Not thread-safe: one client per thread.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "harness/http_client.hpp"

namespace aipbx::itest {

using namespace std::chrono_literals;

struct ws_message {
  bool text = true;
  std::string data;
};

// How the server ended a WebSocket: its close frame's code and reason (code 0 when the connection ended
// without one).
struct ws_close {
  std::uint16_t code = 0;
  std::string reason;
};

class ws_client {
 public:
  // Connects and performs the handshake for `target` (e.g. "/v1/media-streams"). When the server refuses
  // the upgrade, `refused()` holds its HTTP answer and every other operation throws.
  ws_client(std::uint16_t port, std::string target, const header_list& headers = {},
            std::vector<std::string> subprotocols = {}, std::chrono::milliseconds timeout = 10s);
  ~ws_client();
  ws_client(ws_client&&) noexcept;
  ws_client& operator=(ws_client&&) noexcept;

  const std::optional<http_response>& refused() const;
  // The sub-protocol the server chose (empty if none).
  std::string subprotocol() const;

  void send_text(std::string_view text);
  void send_binary(std::string_view bytes);
  // The next message; nullopt when the server closed the connection (then `closed()` says how).
  std::optional<ws_message> read(std::chrono::milliseconds timeout = 10s);
  // Reads until the server closes, returning its close; messages read meanwhile are dropped.
  ws_close wait_close(std::chrono::milliseconds timeout = 10s);
  // Sends a close frame and waits for the server's.
  void close(std::uint16_t code = 1000);
  // Drops the TCP connection without a close frame (a sender that crashed or lost its network).
  void drop();
  const std::optional<ws_close>& closed() const;

 private:
  class impl;
  std::unique_ptr<impl> impl_;
};

class audiosocket_client {
 public:
  explicit audiosocket_client(std::uint16_t port, std::chrono::milliseconds timeout = 10s);
  ~audiosocket_client();
  audiosocket_client(audiosocket_client&&) noexcept;
  audiosocket_client& operator=(audiosocket_client&&) noexcept;

  // One frame: kind, 2-byte big-endian length, payload.
  static std::string frame(std::uint8_t kind, std::string_view payload);
  // The 16 raw bytes of a canonical UUID text ("12345678-1234-...").
  static std::string uuid_bytes(std::string_view uuid);

  void send(std::string_view bytes);
  void send_uuid(std::string_view uuid) { send(frame(0x01, uuid_bytes(uuid))); }
  void send_audio(std::string_view pcm, std::uint8_t kind = 0x10) { send(frame(kind, pcm)); }
  void send_dtmf(char digit) { send(frame(0x03, std::string(1, digit))); }
  // Closes the connection (as Asterisk does when the channel hangs up).
  void close();
  // True if the server closed the connection within `timeout`.
  bool closed_by_peer(std::chrono::milliseconds timeout);

 private:
  class impl;
  std::unique_ptr<impl> impl_;
};

// The port of the AudioSocket listener from the server's "listening" log line.
class server_process;
std::uint16_t audiosocket_port(const server_process& server);

}  // namespace aipbx::itest
