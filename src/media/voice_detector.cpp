#include "media/voice_detector.hpp"

#include "media/resampler.hpp"

#include <webrtc/modules/audio_processing/include/audio_processing.h>
#include <webrtc/modules/interface/module_common_types.h>

#include <algorithm>
#include <stdexcept>
#include <string>

namespace aipbx::media {

namespace {

bool heard_as_is(std::uint32_t rate) { return rate == 8000 || rate == 16000 || rate == 32000 || rate == 48000; }

webrtc::VoiceDetection::Likelihood likelihood(int aggressiveness) {
  switch (std::clamp(aggressiveness, 0, voice_detector::max_aggressiveness)) {
    case 0: return webrtc::VoiceDetection::kHighLikelihood;
    case 1: return webrtc::VoiceDetection::kModerateLikelihood;
    case 2: return webrtc::VoiceDetection::kLowLikelihood;
    default: return webrtc::VoiceDetection::kVeryLowLikelihood;
  }
}

void check(int code, const char* what) {
  if (code != webrtc::AudioProcessing::kNoError)
    throw std::runtime_error(std::string("webrtc audio processing: ") + what + " failed (" + std::to_string(code) + ")");
}

}  // namespace

struct voice_detector::module {
  std::unique_ptr<webrtc::AudioProcessing> apm;
  webrtc::AudioFrame frame;
};

voice_detector::voice_detector(std::uint32_t rate, int aggressiveness)
    : rate_(rate), heard_rate_(heard_as_is(rate) ? rate : 16000), module_(std::make_unique<module>()) {
  webrtc::Config config;
  // On by default in this version; it only acts with gain control, which stays off, but it is not wanted.
  config.Set<webrtc::ExperimentalAgc>(new webrtc::ExperimentalAgc(false));
  module_->apm.reset(webrtc::AudioProcessing::Create(config));
  if (!module_->apm) throw std::runtime_error("webrtc audio processing: cannot create the module");
  const int r = static_cast<int>(heard_rate_);
  constexpr auto mono = webrtc::AudioProcessing::kMono;
  check(module_->apm->Initialize(r, r, r, mono, mono, mono), "Initialize");
  auto* vad = module_->apm->voice_detection();
  check(vad->Enable(true), "voice detection Enable");
  check(vad->set_likelihood(likelihood(aggressiveness)), "voice detection set_likelihood");
  check(vad->set_frame_size_ms(static_cast<int>(frame_ms)), "voice detection set_frame_size_ms");
  module_->frame.sample_rate_hz_ = r;
  module_->frame.num_channels_ = 1;
  module_->frame.samples_per_channel_ = heard_rate_ / 100;
}

voice_detector::~voice_detector() = default;
voice_detector::voice_detector(voice_detector&&) noexcept = default;
voice_detector& voice_detector::operator=(voice_detector&&) noexcept = default;

void voice_detector::reset() {
  // Initialize() starts every enabled stage afresh, keeping the settings.
  check(module_->apm->Initialize(), "Initialize");
  pending_.clear();
}

void voice_detector::process(std::span<const std::int16_t> samples, std::vector<bool>& voiced) {
  if (samples.empty()) return;
  if (heard_rate_ == rate_) {
    judge_frames(samples, voiced);
    return;
  }
  auto resampled = resample(samples, rate_, heard_rate_);
  if (!resampled) throw std::runtime_error("voice detector: cannot resample: " + resampled.error().message());
  judge_frames(*resampled, voiced);
}

void voice_detector::judge_frames(std::span<const std::int16_t> samples, std::vector<bool>& voiced) {
  const std::size_t frame = heard_rate_ / 100;
  auto& f = module_->frame;
  const auto judge = [&](const std::int16_t* data) {
    std::copy_n(data, frame, f.data_);
    f.vad_activity_ = webrtc::AudioFrame::kVadUnknown;
    check(module_->apm->ProcessStream(&f), "ProcessStream");
    voiced.push_back(module_->apm->voice_detection()->stream_has_voice());
  };
  std::size_t at = 0;
  if (!pending_.empty()) {
    at = std::min(frame - pending_.size(), samples.size());
    pending_.insert(pending_.end(), samples.begin(), samples.begin() + static_cast<std::ptrdiff_t>(at));
    if (pending_.size() < frame) return;
    judge(pending_.data());
    pending_.clear();
  }
  for (; at + frame <= samples.size(); at += frame) judge(samples.data() + at);
  pending_.assign(samples.begin() + static_cast<std::ptrdiff_t>(at), samples.end());
}

}  // namespace aipbx::media
