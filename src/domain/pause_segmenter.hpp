// pause_segmenter: where to cut one call's audio into AI segments so that a segment ends in a pause, not
// inside a word. Pure logic over a voice activity detector's decisions (media/voice_detector.hpp gives
// them), one per 10 ms frame; no audio, no clock, no I/O.
//
// A segment starts at `first` (a sequence) and takes the call's packets in sequence order, each with the
// decisions of the frames that ended in it. A run of unvoiced frames after the segment's first voiced one
// is a pause (silence before any voice is no pause between words: it stays with the words that follow).
// The segment is cut:
//  - inside the first pause that reaches `silence_ms` once the pause's middle lies `min_ms` or more into
//    the segment: after the packet holding the pause's middle, so both segments keep half of it;
//  - otherwise when the segment reaches `max_ms`: in the middle of its longest pause whose middle lies past
//    `min_ms` (the earliest of equals), or, with no such pause (or no voice at all), after the packet that
//    reached it.
//    A segment is thus at most `max_ms` plus one packet long;
//  - and at the end of the call's audio (`finish`): whatever is left, however short.
// A cut is decided on a later packet than the one it falls after; the caller then starts the next segment
// after the cut and gives it the packets from there again, from a fresh detector. So the cuts of a call are
// a function of its audio and the rules alone, and so is every segment's detector state: whatever the
// packets' arrival order, and after a restart that resumes at the call's first uncut sequence.
//
// Not thread-safe (one owner).
#pragma once

#include <cstdint>
#include <optional>
#include <vector>

namespace aipbx {

struct pause_rules {
  std::int64_t min_ms = 2'000;      // no cut inside the first min_ms of a segment
  std::int64_t max_ms = 10'000;     // a segment is cut at this length at the latest
  std::int64_t silence_ms = 300;    // a pause this long ends a segment
  static constexpr std::int64_t frame_ms = 10;  // the detector's frame
  // silence_ms > 0, min_ms >= 0 and max_ms > min_ms, each a whole number of frames.
  bool valid() const;
};

class pause_segmenter {
 public:
  pause_segmenter(pause_rules rules, std::int64_t first);

  // The segment's next packet (sequence last() + 1): in order, whether each frame that ended in it holds
  // voice (a packet shorter than a frame may end none). Returns the segment's last sequence when the
  // segment is to be cut: this packet or an earlier one. Once it answered, the segmenter is spent: start the
  // next segment after the sequence it gave.
  std::optional<std::int64_t> add(const std::vector<bool>& voiced);
  // The call's audio ends: the last sequence added (the segment is everything added), if any.
  std::optional<std::int64_t> finish() const;

  std::int64_t first() const { return first_; }
  // The last sequence added, first() - 1 before any.
  std::int64_t last() const { return first_ + static_cast<std::int64_t>(packets_.size()) - 1; }
  // The audio added so far, in ms (whole frames).
  std::int64_t length_ms() const { return frames_ * pause_rules::frame_ms; }

 private:
  struct pause {
    std::int64_t start = 0;   // first frame
    std::int64_t frames = 0;  // length
    std::int64_t middle() const { return start + frames / 2; }
  };
  // Takes one frame; the frame index where the segment is to be cut, when this frame decides it.
  std::optional<std::int64_t> frame(bool voiced);
  // The sequence of the packet that holds frame `index`.
  std::int64_t packet_of(std::int64_t index) const;

  pause_rules rules_;
  std::int64_t first_;
  std::int64_t frames_ = 0;                  // frames added
  std::vector<std::int64_t> packets_;        // per packet added: the frame count at its end
  bool voice_heard_ = false;                 // a voiced frame since `first`
  pause current_;                            // the pause going on (frames == 0: none)
  std::optional<pause> longest_;             // the longest pause whose middle lies past min_ms
};

}  // namespace aipbx
