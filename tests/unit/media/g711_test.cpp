// G.711 against the standard's tables (ITU-T G.711, Tables 1a/1b for A-law, 2a/2b for mu-law).
//
// The expected values are built here from the tables' own description, not from the implementation's
// bit tricks: each law has 8 segments of 16 quantization intervals; the table gives each segment's first
// decision value and its interval width, and the decoder output is the middle of its interval. A
// character's bits are P (polarity, 1 = positive), S (3-bit segment), Q (4-bit interval); mu-law sends
// them all inverted, A-law inverts the even bits (XOR 0x55).
#include "media/g711.hpp"

#include <gtest/gtest.h>

#include <array>
#include <cstdlib>
#include <limits>

namespace aipbx::media {
namespace {

// Mu-law, Table 2a: decision values in the 14-bit scale (outputs up to 8031). Segment 0 starts with the
// single interval 0..1 (output 0), then intervals of width 2 from 1 to 31; segment s >= 1 starts at
// 31, 95, 223, 479, 991, 2015, 4063 with widths 4, 8, ..., 256.
constexpr std::array<int, 8> ulaw_segment_start{-1, 31, 95, 223, 479, 991, 2015, 4063};
constexpr std::array<int, 8> ulaw_width{2, 4, 8, 16, 32, 64, 128, 256};

int ulaw_table_output(int segment, int interval) {
  if (segment == 0 && interval == 0) return 0;
  const int lower = ulaw_segment_start[segment] + interval * ulaw_width[segment];
  return lower + ulaw_width[segment] / 2;
}

// A-law, Table 1a: decision values in the 13-bit scale (outputs up to 4032). Segments 0 and 1 both have
// width 2 (0..32, 32..64); segment s >= 2 starts at 64, 128, ..., 2048 with widths 4, 8, ..., 128.
constexpr std::array<int, 8> alaw_segment_start{0, 32, 64, 128, 256, 512, 1024, 2048};
constexpr std::array<int, 8> alaw_width{2, 2, 4, 8, 16, 32, 64, 128};

int alaw_table_output(int segment, int interval) {
  return alaw_segment_start[segment] + interval * alaw_width[segment] + alaw_width[segment] / 2;
}

TEST(G711, MuLawDecodesEveryCharacterToTheTableOutput) {
  for (int code = 0; code < 256; ++code) {
    const int bits = ~code & 0xff;  // mu-law characters are sent inverted
    const bool positive = (bits & 0x80) == 0;  // after inversion, P = 0 is positive
    const int magnitude = ulaw_table_output((bits >> 4) & 7, bits & 15) * 4;
    const int expected = positive ? magnitude : -magnitude;
    EXPECT_EQ(ulaw_decode(static_cast<std::uint8_t>(code)), expected) << "code " << code;
  }
  // A few values read straight off the table, as a check of the construction above.
  EXPECT_EQ(ulaw_decode(0xFF), 0);
  EXPECT_EQ(ulaw_decode(0x7F), 0);  // "negative zero"
  EXPECT_EQ(ulaw_decode(0x80), 8031 * 4);
  EXPECT_EQ(ulaw_decode(0x00), -8031 * 4);
  EXPECT_EQ(ulaw_decode(0xEF), 33 * 4);   // segment 1, interval 0
  EXPECT_EQ(ulaw_decode(0x8F), 4191 * 4); // segment 7, interval 0
}

TEST(G711, ALawDecodesEveryCharacterToTheTableOutput) {
  for (int code = 0; code < 256; ++code) {
    const int bits = code ^ 0x55;  // A-law inverts the even bits
    const bool positive = (bits & 0x80) != 0;
    const int magnitude = alaw_table_output((bits >> 4) & 7, bits & 15) * 8;
    const int expected = positive ? magnitude : -magnitude;
    EXPECT_EQ(alaw_decode(static_cast<std::uint8_t>(code)), expected) << "code " << code;
  }
  EXPECT_EQ(alaw_decode(0xD5), 1 * 8);
  EXPECT_EQ(alaw_decode(0x55), -1 * 8);
  EXPECT_EQ(alaw_decode(0xAA), 4032 * 8);
  EXPECT_EQ(alaw_decode(0x2A), -4032 * 8);
}

TEST(G711, MuLawEncodeOfADecodedValueGivesItsCharacterBack) {
  for (int code = 0; code < 256; ++code) {
    const auto c = static_cast<std::uint8_t>(code);
    // Both zeros decode to 0, which encodes as positive zero.
    const std::uint8_t expected = c == 0x7F ? 0xFF : c;
    EXPECT_EQ(ulaw_encode(ulaw_decode(c)), expected) << "code " << code;
  }
}

TEST(G711, ALawEncodeOfADecodedValueGivesItsCharacterBack) {
  for (int code = 0; code < 256; ++code) {
    const auto c = static_cast<std::uint8_t>(code);
    EXPECT_EQ(alaw_encode(alaw_decode(c)), c) << "code " << code;
  }
}

// Every 16-bit sample lands in the interval of the table that holds it: the error is at most half an
// interval, and encoding is monotonic (a larger sample never gets a smaller output).
TEST(G711, MuLawEncodesEverySampleIntoItsInterval) {
  int previous = std::numeric_limits<int>::min();
  for (int x = -32768; x <= 32767; ++x) {
    const int y = ulaw_decode(ulaw_encode(static_cast<std::int16_t>(x)));
    ASSERT_GE(y, previous) << "sample " << x;
    previous = y;
    if (std::abs(x) > 8159 * 4) continue;  // beyond the last decision value: clipped to the largest output
    const int mag = std::abs(y) / 4;
    int half_width = 1;
    for (int s = 0; s < 8; ++s)
      if (mag >= ulaw_segment_start[s] + (s == 0 ? 1 : 0)) half_width = ulaw_width[s] / 2;
    ASSERT_LE(std::abs(x - y), half_width * 4 + 4) << "sample " << x << " decoded as " << y;
  }
}

TEST(G711, ALawEncodesEverySampleIntoItsInterval) {
  int previous = std::numeric_limits<int>::min();
  for (int x = -32768; x <= 32767; ++x) {
    const int y = alaw_decode(alaw_encode(static_cast<std::int16_t>(x)));
    ASSERT_GE(y, previous) << "sample " << x;
    previous = y;
    const int mag = std::abs(y) / 8;
    int half_width = 1;
    for (int s = 0; s < 8; ++s)
      if (mag >= alaw_segment_start[s]) half_width = alaw_width[s] / 2;
    if (std::abs(x) > 4096 * 8) continue;
    ASSERT_LE(std::abs(x - y), half_width * 8) << "sample " << x << " decoded as " << y;
  }
}

TEST(G711, BufferFormsMatchTheSampleForms) {
  const std::array<std::int16_t, 5> samples{0, 100, -100, 32767, -32768};
  const auto u = ulaw_encode(samples);
  const auto a = alaw_encode(samples);
  ASSERT_EQ(u.size(), samples.size());
  ASSERT_EQ(a.size(), samples.size());
  for (std::size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(u[i], ulaw_encode(samples[i]));
    EXPECT_EQ(a[i], alaw_encode(samples[i]));
  }
  const auto ud = ulaw_decode(u);
  const auto ad = alaw_decode(a);
  for (std::size_t i = 0; i < samples.size(); ++i) {
    EXPECT_EQ(ud[i], ulaw_decode(u[i]));
    EXPECT_EQ(ad[i], alaw_decode(a[i]));
  }
}

}  // namespace
}  // namespace aipbx::media
