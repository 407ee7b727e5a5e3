#include "media/resampler.hpp"

#include "media/media_errc.hpp"

#include <gtest/gtest.h>

#include <cmath>
#include <numbers>
#include <vector>

namespace aipbx::media {
namespace {

std::vector<std::int16_t> sine(double frequency, std::uint32_t rate, std::size_t n, double amplitude = 10000) {
  std::vector<std::int16_t> s(n);
  for (std::size_t i = 0; i < n; ++i)
    s[i] = static_cast<std::int16_t>(
        std::lround(amplitude * std::sin(2 * std::numbers::pi * frequency * static_cast<double>(i) / rate)));
  return s;
}

double rms(const std::vector<std::int16_t>& s, std::size_t from, std::size_t to) {
  double sum = 0;
  for (std::size_t i = from; i < to; ++i) sum += static_cast<double>(s[i]) * s[i];
  return std::sqrt(sum / static_cast<double>(to - from));
}

// Power of `s` at `frequency` (a single DFT bin, Goertzel-style), normalized by length.
double power_at(const std::vector<std::int16_t>& s, double frequency, std::uint32_t rate, std::size_t from,
                std::size_t to) {
  double re = 0, im = 0;
  for (std::size_t i = from; i < to; ++i) {
    const double phase = 2 * std::numbers::pi * frequency * static_cast<double>(i) / rate;
    re += s[i] * std::cos(phase);
    im += s[i] * std::sin(phase);
  }
  const double n = static_cast<double>(to - from);
  return (re * re + im * im) / (n * n);
}

TEST(Resampler, EightToSixteenKilohertzKeepsASinesFrequencyAndEnergy) {
  const auto in = sine(1000, 8000, 8000);  // 1 s of 1 kHz
  auto out = resample(in, 8000, 16000);
  ASSERT_TRUE(out);
  ASSERT_EQ(out->size(), 16000u);
  // Away from the edges (the filter sees zeros beyond them).
  const double in_rms = rms(in, 400, 7600);
  const double out_rms = rms(*out, 800, 15200);
  EXPECT_NEAR(out_rms / in_rms, 1.0, 0.05);
  // The energy is at 1 kHz, not elsewhere (an imaging product would sit at 8 - 1 = 7 kHz).
  const double at_1k = power_at(*out, 1000, 16000, 800, 15200);
  const double at_7k = power_at(*out, 7000, 16000, 800, 15200);
  const double at_2k = power_at(*out, 2000, 16000, 800, 15200);
  EXPECT_NEAR(std::sqrt(at_1k) * 2 / std::sqrt(2.0), out_rms, out_rms * 0.05);
  EXPECT_LT(at_7k, at_1k * 1e-3);
  EXPECT_LT(at_2k, at_1k * 1e-3);
}

TEST(Resampler, OutputIsAlignedWithTheInput) {
  // The resampler's filter delay is compensated: sample 2i of the output is sample i of the input.
  const auto in = sine(300, 8000, 4000);
  auto out = resample(in, 8000, 16000);
  ASSERT_TRUE(out);
  for (std::size_t i = 200; i < 3800; i += 97)
    EXPECT_NEAR((*out)[2 * i], in[i], 300) << i;
}

TEST(Resampler, RoundTripEightSixteenEightKeepsTheSignal) {
  const auto in = sine(440, 8000, 8000, 8000);
  auto up = resample(in, 8000, 16000);
  ASSERT_TRUE(up);
  auto back = resample(*up, 16000, 8000);
  ASSERT_TRUE(back);
  ASSERT_EQ(back->size(), in.size());
  double err = 0, sig = 0;
  for (std::size_t i = 400; i < 7600; ++i) {
    const double d = static_cast<double>((*back)[i]) - in[i];
    err += d * d;
    sig += static_cast<double>(in[i]) * in[i];
  }
  // Signal-to-error ratio above 30 dB.
  EXPECT_GT(10 * std::log10(sig / err), 30.0);
}

TEST(Resampler, LengthsAndBadArguments) {
  const std::vector<std::int16_t> in(160, 0);
  EXPECT_EQ(resample(in, 8000, 16000)->size(), 320u);
  EXPECT_EQ(resample(in, 16000, 8000)->size(), 80u);
  EXPECT_EQ(*resample(in, 8000, 8000), in);
  EXPECT_TRUE(resample({}, 8000, 16000)->empty());
  EXPECT_EQ(resample(in, 0, 16000).error(), make_error_code(media_errc::bad_rate));
  EXPECT_EQ(resample(in, 8000, 16000, 11).error(), make_error_code(media_errc::bad_rate));
}

}  // namespace
}  // namespace aipbx::media
