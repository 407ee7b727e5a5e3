#include "domain/pause_segmenter.hpp"

#include <algorithm>

namespace aipbx {

bool pause_rules::valid() const {
  const auto whole = [](std::int64_t ms) { return ms % frame_ms == 0; };
  return silence_ms > 0 && min_ms >= 0 && max_ms > min_ms && whole(silence_ms) && whole(min_ms) && whole(max_ms);
}

pause_segmenter::pause_segmenter(pause_rules rules, std::int64_t first) : rules_(rules), first_(first) {}

std::optional<std::int64_t> pause_segmenter::add(const std::vector<bool>& voiced) {
  std::optional<std::int64_t> cut_frame;
  for (const bool v : voiced) {
    cut_frame = frame(v);
    if (cut_frame) break;  // the frames after the cut belong to the next segment, which hears them again
  }
  packets_.push_back(frames_);
  if (!cut_frame) return std::nullopt;
  return packet_of(*cut_frame);
}

std::optional<std::int64_t> pause_segmenter::finish() const {
  if (packets_.empty()) return std::nullopt;
  return last();
}

std::optional<std::int64_t> pause_segmenter::frame(bool voiced) {
  const std::int64_t index = frames_++;
  const std::int64_t min_frames = rules_.min_ms / pause_rules::frame_ms;
  if (voiced) {
    voice_heard_ = true;
    current_ = {};
  } else if (voice_heard_) {
    if (current_.frames == 0) current_.start = index;
    ++current_.frames;
    const bool past_min = current_.middle() >= min_frames;
    if (past_min && current_.frames * pause_rules::frame_ms >= rules_.silence_ms) return current_.middle();
    if (past_min && (!longest_ || current_.frames > longest_->frames)) longest_ = current_;
  }
  if (frames_ * pause_rules::frame_ms >= rules_.max_ms) return longest_ ? longest_->middle() : index;
  return std::nullopt;
}

std::int64_t pause_segmenter::packet_of(std::int64_t index) const {
  // packets_ holds each packet's end as a frame count: the packet that holds `index` is the first that ends
  // past it.
  const auto it = std::upper_bound(packets_.begin(), packets_.end(), index);
  return first_ + static_cast<std::int64_t>(it - packets_.begin());
}

}  // namespace aipbx
