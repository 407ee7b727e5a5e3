#include "media/voice_detector.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <numbers>
#include <random>
#include <vector>

namespace aipbx::media {
namespace {

// A voiced vowel's rough shape: a 150 Hz fundamental and its harmonics up to 3.4 kHz with falling
// amplitude, swelling and fading four times a second like syllables.
std::vector<std::int16_t> vowels(std::uint32_t rate, double seconds, double amplitude = 8000) {
  const auto n = static_cast<std::size_t>(seconds * rate);
  std::vector<std::int16_t> s(n);
  for (std::size_t i = 0; i < n; ++i) {
    const double t = static_cast<double>(i) / rate;
    double v = 0;
    for (int h = 1; 150.0 * h < std::min(3400.0, rate / 2.0); ++h) v += std::sin(2 * std::numbers::pi * 150 * h * t) / h;
    const double envelope = 0.6 + 0.4 * std::sin(2 * std::numbers::pi * 4 * t);
    s[i] = static_cast<std::int16_t>(std::lround(amplitude * 0.5 * envelope * v));
  }
  return s;
}

std::vector<std::int16_t> silence(std::uint32_t rate, double seconds) {
  return std::vector<std::int16_t>(static_cast<std::size_t>(seconds * rate), 0);
}

std::vector<std::int16_t> noise(std::uint32_t rate, double seconds, double amplitude, unsigned seed = 1) {
  std::mt19937 rng(seed);
  std::normal_distribution<double> d(0, amplitude);
  std::vector<std::int16_t> s(static_cast<std::size_t>(seconds * rate));
  for (auto& x : s) x = static_cast<std::int16_t>(std::clamp(d(rng), -32768.0, 32767.0));
  return s;
}

std::vector<bool> judge(voice_detector& d, const std::vector<std::int16_t>& samples) {
  std::vector<bool> out;
  d.process(samples, out);
  return out;
}

double voiced_share(const std::vector<bool>& v, std::size_t from = 0) {
  if (v.size() <= from) return 0;
  return static_cast<double>(std::count(v.begin() + static_cast<std::ptrdiff_t>(from), v.end(), true)) /
         static_cast<double>(v.size() - from);
}

TEST(VoiceDetector, SilenceIsNeverVoice) {
  for (const std::uint32_t rate : {8000u, 16000u}) {
    voice_detector d(rate, 2);
    const auto v = judge(d, silence(rate, 2));
    EXPECT_EQ(v.size(), 200u) << rate;
    EXPECT_EQ(voiced_share(v), 0.0) << rate;
  }
}

TEST(VoiceDetector, VowelsAreVoiceAndThePauseAfterThemIsNot) {
  voice_detector d(8000, 2);
  auto audio = silence(8000, 0.5);
  const auto speech = vowels(8000, 2);
  audio.insert(audio.end(), speech.begin(), speech.end());
  const auto after = silence(8000, 1);
  audio.insert(audio.end(), after.begin(), after.end());
  const auto v = judge(d, audio);
  ASSERT_EQ(v.size(), 350u);
  EXPECT_EQ(voiced_share(std::vector<bool>(v.begin(), v.begin() + 50)), 0.0);
  EXPECT_GT(voiced_share(std::vector<bool>(v.begin() + 55, v.begin() + 250)), 0.9);
  // WebRTC holds a decision for a few frames after voice ends (its hangover); past that, silence.
  EXPECT_EQ(voiced_share(std::vector<bool>(v.begin() + 280, v.end())), 0.0);
}

TEST(VoiceDetector, SteadyLowNoiseIsMostlyNotVoiceAtTheMostAggressive) {
  voice_detector d(8000, 3);
  const auto v = judge(d, noise(8000, 5, 30));
  // The detector learns the noise floor over its first second.
  EXPECT_LT(voiced_share(v, 100), 0.1);
}

TEST(VoiceDetector, AggressivenessOrdersHowMuchIsCalledVoice) {
  // Loud noise is ambiguous: the less aggressive a detector, the more of it it calls voice.
  std::vector<double> shares;
  for (int a = 0; a <= voice_detector::max_aggressiveness; ++a) {
    voice_detector d(8000, a);
    shares.push_back(voiced_share(judge(d, noise(8000, 5, 800))));
  }
  for (std::size_t a = 1; a < shares.size(); ++a) EXPECT_LE(shares[a], shares[a - 1]) << a;
  EXPECT_GT(shares.front(), shares.back());
}

TEST(VoiceDetector, PartialFramesWaitForTheNextSamples) {
  const auto audio = vowels(8000, 1.003);
  voice_detector whole(8000, 2), piecewise(8000, 2);
  const auto expected = judge(whole, audio);
  std::vector<bool> got;
  for (std::size_t at = 0; at < audio.size(); at += 37)
    piecewise.process(std::span(audio).subspan(at, std::min<std::size_t>(37, audio.size() - at)), got);
  EXPECT_EQ(expected.size(), 100u) << "the last 3 ms are short of a frame";
  EXPECT_EQ(got, expected);
}

TEST(VoiceDetector, ResetJudgesAsAFreshDetector) {
  auto audio = noise(8000, 1, 2000, 3);
  const auto speech = vowels(8000, 1);
  audio.insert(audio.end(), speech.begin(), speech.end());
  voice_detector fresh(8000, 1), used(8000, 1);
  (void)judge(used, noise(8000, 3, 500, 9));
  std::vector<bool> leftover;
  used.process(std::vector<std::int16_t>(45, 100), leftover);  // a partial frame, forgotten too
  used.reset();
  EXPECT_EQ(judge(used, audio), judge(fresh, audio));
}

TEST(VoiceDetector, OtherRatesAreHeardAt16kHz) {
  for (const std::uint32_t rate : {12000u, 44100u, 48000u}) {
    voice_detector d(rate, 2);
    const auto v = judge(d, vowels(rate, 1));
    EXPECT_EQ(v.size(), 100u) << rate;
    EXPECT_GT(voiced_share(v, 5), 0.9) << rate;
  }
}

}  // namespace
}  // namespace aipbx::media
