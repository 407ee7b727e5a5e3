// reframer: cuts a byte stream of audio into packets of one fixed duration, and splits interleaved
// channels into one packet per channel. Senders that write whatever they buffered (mod_audio_fork, an
// AudioSocket peer with another packetization) still give the call packets of `packet_ms` each, so a
// packet's sequence says where it lies in the call's audio.
//
// A value type: pure, not thread-safe (one stream owns it).
#pragma once

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <vector>

namespace aipbx::streams {

class reframer {
 public:
  // `bytes_per_sample` of one channel (2 for L16, 1 for G.711), `channels` interleaved, and the samples
  // per channel of one packet.
  reframer(std::size_t bytes_per_sample, std::size_t channels, std::size_t samples_per_packet);

  // Appends `bytes`; every whole packet is cut, each channel's bytes base64-encoded into `out`
  // (out[i * channels + c]: packet i, channel c).
  void feed(std::span<const std::uint8_t> bytes, std::vector<std::string>& out);
  // What is left as a last, shorter packet (whole samples only; out is empty when nothing is left).
  // Answers how many trailing bytes were not a whole sample frame and were dropped.
  std::size_t flush(std::vector<std::string>& out);

  std::size_t packet_bytes() const { return packet_bytes_; }
  std::size_t channels() const { return channels_; }

  // Splits whole interleaved frames into one base64 string per channel, appended to `out`.
  static void split(std::span<const std::uint8_t> frames, std::size_t bytes_per_sample, std::size_t channels,
                    std::vector<std::string>& out);

 private:
  std::size_t bytes_per_sample_;
  std::size_t channels_;
  std::size_t packet_bytes_;  // all channels
  std::vector<std::uint8_t> pending_;
};

}  // namespace aipbx::streams
