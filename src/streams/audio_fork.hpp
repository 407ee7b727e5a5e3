// The audio fork protocol: FreeSWITCH's mod_audio_fork, jambonz's `listen`, and aipbx's sequenced variant,
// over a WebSocket at `/v1/audio-fork` or `/v1/audio-fork/{call_id}`.
//
// The first text message is the sender's metadata, any text (often JSON); it need not hold a call id, so
// the call id and format may come from the URL instead: the call id is the path's, else the metadata's
// (`call_id`, `callSid`, `uuid`), else the query's; for the format, the query wins over the metadata. Then
// binary messages of raw audio: L16 little-endian (or G.711), one channel, or two interleaved (`stereo`:
// the caller, then what is played to the caller). Messages are whatever the sender buffered: the stream is
// cut into packets of `packet_ms` (20 ms by default), numbered in arrival order after what the call
// already holds. Each channel is a track and a call of its own: channel 0 is the call (track `inbound`),
// channel 1 the call `<call_id>:outbound`. A zero-length binary message (mod_audio_fork's graceful stop)
// or the text `{"event":"stop"}` ends the calls; other text messages mid-stream (DTMF, send_text) are call
// events.
//
// The sequenced variant (`sequenced=1`, or `"sequenced": true` in the metadata) is aipbx's own: each binary
// message is one packet, an 8-byte big-endian sequence number followed by its audio, and aipbx answers
// with text messages: `{"event":"ready","call_id":...,"acked":N}` once the stream is open, then
// `{"event":"ack","sequence":N}` whenever more became durable, N being cumulative (every sequence <= N of
// the call, in every track, is stored). A sender that reconnects resends from N + 1 and loses nothing.
//
// The parameter resolution is pure and thread-safe; a session lives on its connection's strand.
#pragma once

#include "streams/reframer.hpp"
#include "streams/websocket_session.hpp"

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace aipbx::streams::audio_fork {

struct params {
  std::string call_id;
  media::media_format format = media::media_format::l16(8000);
  std::size_t channels = 1;
  std::int64_t packet_ms = media::default_packet_ms;
  bool sequenced = false;
};

// The stream's parameters from the upgrade request (path and query) and the metadata message (nullopt
// when the sender sent audio first). A string says what is wrong.
std::variant<params, std::string> resolve(const stream_request& request, std::optional<std::string_view> metadata);

// The sequence of a sequenced message and its audio; nullopt when it is shorter than its header.
struct sequenced_frame {
  std::int64_t sequence = 0;
  std::string_view audio;
};
std::optional<sequenced_frame> parse_sequenced(std::string_view message);

class session final : public websocket_session {
 public:
  session(stream_hub& hub, message_channel& channel, stream_request request);

 private:
  boost::asio::awaitable<step> on_message(std::string_view message, bool text) override;
  void before_close() override;
  boost::asio::awaitable<void> on_connected() override;
  boost::asio::awaitable<bool> open(std::optional<std::string_view> metadata);
  boost::asio::awaitable<void> on_audio(std::string_view bytes);
  boost::asio::awaitable<void> on_sequenced(std::string_view message);
  boost::asio::awaitable<void> push_packets(std::optional<std::int64_t> sequence, double timestamp);
  boost::asio::awaitable<void> flush();
  void acked();
  void send_ack();

  std::optional<params> params_;
  std::optional<reframer> frames_;
  std::vector<std::string> packets_;  // cut packets waiting to be pushed (packet i, channel c)
  std::int64_t sent_ack_ = -1;
  bool ack_scheduled_ = false;
};

}  // namespace aipbx::streams::audio_fork
