// How a call's packets carry audio: a codec and a sample rate. A value type; pure, thread-safe.
//
// Text form (flags, API, storage): `pcmu/8000` (G.711 mu-law), `pcma/8000` (G.711 A-law), `l16/<rate>`
// (16-bit little-endian linear PCM at 8000, 12000, 16000, 24000, 32000, 44100, 48000, 96000 or 192000 Hz:
// the rates Asterisk's signed-linear formats use), all mono and base64 in a packet's `data`; or `none`, the
// seed's opaque text, which carries no audio (only the mock engine reads it). Parsing ignores the case of
// the codec name (SDP writes `PCMU/8000`); `to_string` writes the lower-case form parse accepts.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace aipbx::media {

enum class codec { none, pcmu, pcma, l16 };

struct media_format {
  codec kind = codec::none;
  std::uint32_t rate = 0;  // samples per second; 0 for none

  bool carries_audio() const { return kind != codec::none; }
  // Bytes of one sample in `data` once base64-decoded (0 for none).
  std::uint32_t bytes_per_sample() const { return kind == codec::l16 ? 2 : kind == codec::none ? 0 : 1; }

  friend bool operator==(const media_format&, const media_format&) = default;

  static constexpr media_format none() { return {}; }
  static constexpr media_format pcmu() { return {codec::pcmu, 8000}; }
  static constexpr media_format pcma() { return {codec::pcma, 8000}; }
  static constexpr media_format l16(std::uint32_t rate) { return {codec::l16, rate}; }
};

// The duration of one packet of a call that declares none: the usual RTP packetization time.
inline constexpr std::int64_t default_packet_ms = 20;
inline constexpr std::int64_t max_packet_ms = 1000;

// The rates `l16` is accepted at.
inline constexpr std::uint32_t l16_rates[] = {8000, 12000, 16000, 24000, 32000, 44100, 48000, 96000, 192000};

// nullopt for anything but the forms above.
std::optional<media_format> parse_media_format(std::string_view text);
std::string to_string(media_format format);

}  // namespace aipbx::media
