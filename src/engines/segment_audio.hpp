// A segment's audio as one buffer of 16-bit samples, for the engines that hear audio (http,
// pocketsphinx). Pure, thread-safe.
//
// The packets' `data` is decoded in the segment's media format, in sequence order. Sequences of the range
// with no packet (declared lost) become silence of one packet's duration (`packet_ms`) each, as in
// GET /v1/calls/{id}/audio, so the words around a lost packet keep their timing. The result is resampled (speexdsp) to `rate` when the format's
// rate differs. A packet that does not decode fails the whole segment with a sentence naming the
// sequence: retrying cannot change stored data, so engines report it as a permanent failure.
#pragma once

#include "engines/ai_engine.hpp"
#include "media/media_format.hpp"

#include <boost/system/result.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace aipbx::engines {

struct segment_pcm {
  std::vector<std::int16_t> samples;
  std::uint32_t rate = 0;
  std::int64_t silent_packets = 0;  // lost sequences filled with silence
};

[[nodiscard]] boost::system::result<segment_pcm, std::string> decode_segment(const audio_segment& segment,
                                                                            std::uint32_t rate);

}  // namespace aipbx::engines
