// Twilio Media Streams: the JSON messages a `<Stream>` sends over its WebSocket, parsed, and the session
// that turns them into the call's packets.
//
// Messages (Twilio's format): `connected`, `start` (streamSid, callSid, tracks, customParameters,
// mediaFormat), `media` (track, chunk from "1" per track, timestamp in ms from the stream's start, base64
// payload), `dtmf`, `mark`, `stop`, each with `sequenceNumber`, which counts every message of the stream,
// marks and DTMF included: it is no packet number. Each track's `chunk` is its packet's sequence, so a
// two-track stream shows no false gaps. The inbound track (the caller) is the call named by the custom
// parameter `call_id` or else the callSid; the outbound track (what the caller hears) is the call
// `<call_id>:outbound`. `stop` ends both once their packets are durable. aipbx sends nothing back.
//
// The parser is pure and thread-safe; a session lives on its connection's strand.
#pragma once

#include "streams/websocket_session.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace aipbx::streams::twilio {

struct connected {};
struct start {
  std::string stream_sid;
  std::string call_sid;
  std::vector<std::string> tracks;  // "inbound", "outbound"
  std::map<std::string, std::string> custom_parameters;  // string values only
  std::string encoding;             // "audio/x-mulaw"
  std::int64_t sample_rate = 0;
  std::int64_t channels = 0;
};
struct media_event {
  std::string track;            // "inbound" or "outbound" ("" when absent)
  std::int64_t chunk = 0;       // from 1, per track
  std::int64_t timestamp_ms = 0;
  std::string payload;          // base64
};
struct dtmf {
  std::string track;
  std::string digit;
};
struct mark {
  std::string name;
};
struct stop {};
// A message that is not valid JSON, lacks what its event needs, or names an unknown event.
struct malformed {
  bool unknown_event = false;
  std::string reason;
};
using message = std::variant<connected, start, media_event, dtmf, mark, stop, malformed>;

// A media message in one pass without a document; anything else (and anything unusual) through
// `parse_checked`, which gives the same result for every input.
message parse(std::string_view text);
message parse_checked(std::string_view text);

// The call's media format for a Twilio `mediaFormat` (audio/x-mulaw at 8000 Hz, one channel; A-law and
// 16-bit linear are taken too); nullopt for anything else.
std::optional<media::media_format> format_of(const start& s);

// The session of one Twilio stream.
class session final : public websocket_session {
 public:
  session(stream_hub& hub, message_channel& channel, stream_request request);

 private:
  boost::asio::awaitable<step> on_message(std::string_view text, bool is_text) override;
  boost::asio::awaitable<step> on_start(start s);
  boost::asio::awaitable<void> on_media(media_event m);

  bool started_ = false;
  std::vector<std::string> track_names_;  // index = feed track
};

}  // namespace aipbx::streams::twilio
