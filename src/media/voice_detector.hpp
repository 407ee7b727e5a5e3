// voice_detector: which 10 ms frames of a call's audio hold voice, by WebRTC's voice activity detector as
// Debian ships it (libwebrtc-audio-processing 0.3: the AudioProcessing module with voice detection alone
// enabled; its other stages, echo cancellation, gain control, noise suppression, stay off, so the audio is
// only listened to).
//
// The detector adapts to what it hears (its noise and speech models move frame by frame), so a decision
// depends on every sample heard since construction or the last `reset`. pause_segmenter's driver resets it
// at the start of every segment, which makes each segment's decisions a function of that segment's audio.
//
// Rates: 8, 16, 32 and 48 kHz are heard as they are. Any other rate (l16 at 12, 24, 44.1, 96 or 192 kHz)
// is brought to 16 kHz by speexdsp one `process` call at a time, each on its own; so hand it whole packets,
// whatever was handed before, for the frames to depend on the packets alone.
//
// `aggressiveness` 0..3 is WebRTC's likelihood setting turned around: 0 (its high likelihood) calls the
// most frames voice and clips the least speech, 3 (very low) calls the fewest voice and passes over more
// noise as silence. Not thread-safe (one owner); instances are independent. Construction and `process`
// throw std::runtime_error when the WebRTC module refuses (it does not for the rates above).
#pragma once

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

namespace aipbx::media {

class voice_detector {
 public:
  static constexpr std::int64_t frame_ms = 10;
  static constexpr int max_aggressiveness = 3;

  // `rate` between 8000 and 192000; `aggressiveness` 0..3 (clamped).
  voice_detector(std::uint32_t rate, int aggressiveness);
  ~voice_detector();
  voice_detector(voice_detector&&) noexcept;
  voice_detector& operator=(voice_detector&&) noexcept;

  // Forgets everything heard: the next frame is judged as the first.
  void reset();
  // Appends to `voiced`, for each 10 ms frame that `samples` completes, whether it holds voice. Samples
  // short of a whole frame wait for the next call.
  void process(std::span<const std::int16_t> samples, std::vector<bool>& voiced);

  std::uint32_t rate() const { return rate_; }

 private:
  struct module;
  void judge_frames(std::span<const std::int16_t> samples, std::vector<bool>& voiced);

  std::uint32_t rate_;        // of the audio handed in
  std::uint32_t heard_rate_;  // what the module hears
  std::unique_ptr<module> module_;
  std::vector<std::int16_t> pending_;  // a partial frame, at heard_rate_
};

}  // namespace aipbx::media
