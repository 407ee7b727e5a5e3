// Asterisk AudioSocket: a TCP listener of its own, for Asterisk's `AudioSocket()` dialplan application and
// its `AudioSocket/` channel driver.
//
// The protocol (res_audiosocket): frames of a kind byte, a 2-byte big-endian length and a payload. Asterisk
// sends 0x01 (the call's UUID, 16 raw bytes) first, then 0x10 audio (signed linear 16-bit, 8 kHz, mono,
// little-endian as Asterisk writes it) or 0x11..0x18 (the same at 12, 16, 24, 32, 44.1, 48, 96, 192 kHz),
// 0x03 DTMF (one ASCII digit) and 0xff on an Asterisk-side error. Asterisk never sends 0x00: that is the
// server asking Asterisk to hang up, which aipbx never does (a transcription service does not end calls);
// one received is taken as the end of the stream. When the channel hangs up Asterisk just closes the
// socket: a close at a frame boundary ends the call (its last segment is cut), a close inside a frame is a
// broken stream (the call is left to --idle-timeout). aipbx sends nothing back.
//
// The call id is the UUID in its canonical lower-case form. Audio is cut into packets of 20 ms whatever
// Asterisk's framing, numbered in arrival order after what the call already holds.
//
// AudioSocket carries no credentials, so access is by address: the listener binds --audiosocket-host
// (127.0.0.1 by default) and, with --audiosocket-allow, accepts only peers in those networks; with
// --audiosocket-registered a stream is accepted only for a call declared beforehand through the API (POST
// /v1/calls/{uuid}, which needs a token).
//
// The parser is pure and thread-safe; each connection runs on its own strand.
#pragma once

#include "streams/stream_hub.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <array>
#include <cstdint>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace aipbx::streams::audiosocket {

enum kind : std::uint8_t {
  hangup = 0x00,
  uuid = 0x01,
  dtmf = 0x03,
  audio = 0x10,         // slin, 8 kHz
  audio_slin12 = 0x11,  // .. 0x18: 12, 16, 24, 32, 44.1, 48, 96, 192 kHz
  audio_slin192 = 0x18,
  error = 0xff,
};

// The sample rate of an audio kind (0x10..0x18); 0 for any other kind.
std::uint32_t rate_of(std::uint8_t kind);
// "0b3d...-...": the canonical text of 16 raw UUID bytes.
std::string uuid_text(std::span<const std::uint8_t, 16> bytes);

// Cuts a byte stream into frames. Pure; not thread-safe (one connection owns it).
class frame_parser {
 public:
  explicit frame_parser(std::size_t max_payload) : max_payload_(max_payload) {}

  struct frame {
    std::uint8_t kind = 0;
    std::string_view payload;  // into the parser's buffer: valid until the next call
  };
  enum class status { frame, need_more, too_large };
  // Appends received bytes.
  void append(std::span<const std::uint8_t> bytes);
  // The next whole frame, if any.
  status next(frame& out);
  // Whether bytes of an unfinished frame are buffered (a close now is inside a frame).
  bool inside_frame() const { return buffer_.size() > consumed_; }
  // The declared length of the frame being refused as too large.
  std::size_t declared_length() const { return declared_; }

 private:
  std::size_t max_payload_;
  std::vector<std::uint8_t> buffer_;
  std::size_t consumed_ = 0;
  std::size_t declared_ = 0;
};

// An IPv4 or IPv6 network, e.g. 10.0.0.0/8.
struct network {
  boost::asio::ip::address address;
  unsigned prefix = 0;
  bool contains(const boost::asio::ip::address& a) const;
};
std::optional<network> parse_network(std::string_view text);

struct listener_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 0;
  std::vector<network> allow;  // empty: every peer
  bool registered_only = false;
};

// The listener: accepts connections and runs a session for each, until `stop`.
class listener {
 public:
  listener(boost::asio::io_context& ioc, stream_hub& hub, listener_options options);
  ~listener();
  // Binds and listens; returns the bound endpoint. Throws on failure (a start-up error).
  boost::asio::ip::tcp::endpoint listen();
  void start();
  // Stops accepting (sessions are stopped through the hub).
  void stop();

 private:
  boost::asio::awaitable<void> accept_loop();

  boost::asio::io_context& ioc_;
  stream_hub& hub_;
  listener_options options_;
  boost::asio::ip::tcp::acceptor acceptor_;
};

}  // namespace aipbx::streams::audiosocket
