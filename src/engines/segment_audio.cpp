#include "engines/segment_audio.hpp"

#include "media/audio_codec.hpp"
#include "media/resampler.hpp"

namespace aipbx::engines {

boost::system::result<segment_pcm, std::string> decode_segment(const audio_segment& segment, std::uint32_t rate) {
  const media::media_format format = segment.media;
  if (!format.carries_audio())
    return std::string("the engine needs audio, but the call's media format is none (declare it with POST "
                       "/v1/calls/{call_id} before the first packet, or set --media)");
  std::vector<std::vector<std::int16_t>> decoded;
  decoded.reserve(segment.packets.size());
  for (const auto& p : segment.packets) {
    auto samples = media::decode_audio(format, p.data);
    if (!samples)
      return "packet " + std::to_string(p.sequence) + " is not " + media::to_string(format) + " audio: " +
             samples.error().message();
    decoded.push_back(std::move(*samples));
  }
  if (decoded.empty()) return std::string("the segment has no packets");
  const auto silence = static_cast<std::size_t>(segment.packet_ms * format.rate / 1000);

  segment_pcm out;
  out.rate = format.rate;
  std::int64_t next = segment.first_sequence;
  for (std::size_t i = 0; i < decoded.size(); ++i) {
    const std::int64_t sequence = segment.packets[i].sequence;
    if (sequence > next) {
      const auto missing = sequence - next;
      out.silent_packets += missing;
      out.samples.insert(out.samples.end(), static_cast<std::size_t>(missing) * silence, 0);
    }
    out.samples.insert(out.samples.end(), decoded[i].begin(), decoded[i].end());
    next = std::max(next, sequence + 1);
  }
  if (segment.last_sequence >= next) {
    const auto missing = segment.last_sequence - next + 1;
    out.silent_packets += missing;
    out.samples.insert(out.samples.end(), static_cast<std::size_t>(missing) * silence, 0);
  }
  if (rate != format.rate) {
    auto resampled = media::resample(out.samples, format.rate, rate);
    if (!resampled) return "cannot resample " + media::to_string(format) + " audio: " + resampled.error().message();
    out.samples = std::move(*resampled);
    out.rate = rate;
  }
  return out;
}

}  // namespace aipbx::engines
