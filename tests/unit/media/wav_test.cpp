#include "media/wav.hpp"

#include "media/media_errc.hpp"

#include <gtest/gtest.h>

#include <cstring>
#include <vector>

namespace aipbx::media {
namespace {

std::uint32_t u32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(s[at + static_cast<std::size_t>(i)]);
  return v;
}
std::uint16_t u16(const std::string& s, std::size_t at) {
  return static_cast<std::uint16_t>(static_cast<std::uint8_t>(s[at]) | (static_cast<std::uint8_t>(s[at + 1]) << 8));
}

TEST(Wav, HeaderFieldsDescribeMonoPcm16) {
  const std::vector<std::int16_t> samples{0, 1, -1, 0x1234, -32768, 32767};
  auto file = wav_file(samples, 8000);
  ASSERT_TRUE(file);
  const std::string& f = *file;
  ASSERT_EQ(f.size(), 44u + 12u);
  EXPECT_EQ(f.substr(0, 4), "RIFF");
  EXPECT_EQ(u32(f, 4), f.size() - 8);
  EXPECT_EQ(f.substr(8, 4), "WAVE");
  EXPECT_EQ(f.substr(12, 4), "fmt ");
  EXPECT_EQ(u32(f, 16), 16u);     // fmt chunk size
  EXPECT_EQ(u16(f, 20), 1u);      // PCM
  EXPECT_EQ(u16(f, 22), 1u);      // mono
  EXPECT_EQ(u32(f, 24), 8000u);   // sample rate
  EXPECT_EQ(u32(f, 28), 16000u);  // byte rate
  EXPECT_EQ(u16(f, 32), 2u);      // block align
  EXPECT_EQ(u16(f, 34), 16u);     // bits per sample
  EXPECT_EQ(f.substr(36, 4), "data");
  EXPECT_EQ(u32(f, 40), 12u);
  for (std::size_t i = 0; i < samples.size(); ++i)
    EXPECT_EQ(static_cast<std::int16_t>(u16(f, 44 + 2 * i)), samples[i]) << i;
}

TEST(Wav, SixteenKilohertzByteRate) {
  auto h = wav_header(16000, 16000);
  ASSERT_TRUE(h);
  std::string s(reinterpret_cast<const char*>(h->data()), h->size());
  EXPECT_EQ(u32(s, 24), 16000u);
  EXPECT_EQ(u32(s, 28), 32000u);
  EXPECT_EQ(u32(s, 40), 32000u);
  EXPECT_EQ(u32(s, 4), 32036u);
}

TEST(Wav, EmptyAndLimits) {
  auto empty = wav_file({}, 16000);
  ASSERT_TRUE(empty);
  EXPECT_EQ(empty->size(), 44u);
  EXPECT_EQ(u32(*empty, 40), 0u);
  EXPECT_TRUE(wav_header(wav_max_samples, 8000));
  EXPECT_EQ(wav_header(wav_max_samples + 1, 8000).error(), make_error_code(media_errc::too_long));
  EXPECT_EQ(wav_header(10, 0).error(), make_error_code(media_errc::bad_rate));
}

}  // namespace
}  // namespace aipbx::media
