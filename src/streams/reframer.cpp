#include "streams/reframer.hpp"

#include "media/base64.hpp"

#include <algorithm>

namespace aipbx::streams {

reframer::reframer(std::size_t bytes_per_sample, std::size_t channels, std::size_t samples_per_packet)
    : bytes_per_sample_(std::max<std::size_t>(1, bytes_per_sample)),
      channels_(std::max<std::size_t>(1, channels)),
      packet_bytes_(bytes_per_sample_ * channels_ * std::max<std::size_t>(1, samples_per_packet)) {}

void reframer::split(std::span<const std::uint8_t> frames, std::size_t bytes_per_sample, std::size_t channels,
                     std::vector<std::string>& out) {
  if (channels == 1) {
    out.push_back(media::base64_encode(frames));
    return;
  }
  const std::size_t frame = bytes_per_sample * channels;
  const std::size_t n = frames.size() / frame;
  std::vector<std::uint8_t> one(n * bytes_per_sample);
  for (std::size_t c = 0; c < channels; ++c) {
    for (std::size_t i = 0; i < n; ++i)
      std::copy_n(frames.data() + i * frame + c * bytes_per_sample, bytes_per_sample, one.data() + i * bytes_per_sample);
    out.push_back(media::base64_encode(one));
  }
}

void reframer::feed(std::span<const std::uint8_t> bytes, std::vector<std::string>& out) {
  // Whole packets straight from the input when nothing is pending: the common case copies nothing.
  if (pending_.empty()) {
    while (bytes.size() >= packet_bytes_) {
      split(bytes.first(packet_bytes_), bytes_per_sample_, channels_, out);
      bytes = bytes.subspan(packet_bytes_);
    }
    pending_.assign(bytes.begin(), bytes.end());
    return;
  }
  pending_.insert(pending_.end(), bytes.begin(), bytes.end());
  std::size_t at = 0;
  while (pending_.size() - at >= packet_bytes_) {
    split(std::span<const std::uint8_t>(pending_).subspan(at, packet_bytes_), bytes_per_sample_, channels_, out);
    at += packet_bytes_;
  }
  pending_.erase(pending_.begin(), pending_.begin() + static_cast<std::ptrdiff_t>(at));
}

std::size_t reframer::flush(std::vector<std::string>& out) {
  const std::size_t frame = bytes_per_sample_ * channels_;
  const std::size_t whole = pending_.size() / frame * frame;
  const std::size_t dropped = pending_.size() - whole;
  if (whole > 0) split(std::span<const std::uint8_t>(pending_).first(whole), bytes_per_sample_, channels_, out);
  pending_.clear();
  return dropped;
}

}  // namespace aipbx::streams
