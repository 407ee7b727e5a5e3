#include "streams/reframer.hpp"

#include <gtest/gtest.h>

#include <cstdint>
#include <random>
#include <span>
#include <string>
#include <vector>

#include "media/base64.hpp"

namespace aipbx::streams {
namespace {

using bytes = std::vector<std::uint8_t>;

// n bytes that differ from their neighbours, so a misplaced byte shows.
bytes stream_of(std::size_t n, std::uint32_t seed = 1) {
  bytes out(n);
  std::mt19937 random(seed);
  for (auto& b : out) b = static_cast<std::uint8_t>(random());
  return out;
}

bytes decoded(const std::string& text) {
  auto out = media::base64_decode(text);
  EXPECT_TRUE(out) << text;
  return out ? *out : bytes{};
}

bytes slice(const bytes& b, std::size_t at, std::size_t n) {
  return {b.begin() + static_cast<std::ptrdiff_t>(at), b.begin() + static_cast<std::ptrdiff_t>(at + n)};
}

// One channel of interleaved frames.
bytes channel_of(const bytes& interleaved, std::size_t bytes_per_sample, std::size_t channels,
                 std::size_t c) {
  bytes out;
  for (std::size_t at = c * bytes_per_sample; at + bytes_per_sample <= interleaved.size();
       at += bytes_per_sample * channels)
    out.insert(out.end(), interleaved.begin() + static_cast<std::ptrdiff_t>(at),
               interleaved.begin() + static_cast<std::ptrdiff_t>(at + bytes_per_sample));
  return out;
}

// Feeds `input` in pieces whose sizes a seeded random source picks (0 to max_piece bytes each).
std::vector<std::string> fed_in_pieces(reframer& r, const bytes& input, std::uint32_t seed,
                                       std::size_t max_piece) {
  std::mt19937 random(seed);
  std::uniform_int_distribution<std::size_t> piece(0, max_piece);
  std::vector<std::string> out;
  std::span<const std::uint8_t> rest(input);
  while (!rest.empty()) {
    const std::size_t n = std::min(piece(random), rest.size());
    r.feed(rest.first(n), out);
    rest = rest.subspan(n);
  }
  return out;
}

TEST(Reframer, CutsWholePacketsOfOneChannel) {
  reframer r(2, 1, 160);  // L16, 8 kHz, 20 ms
  EXPECT_EQ(r.packet_bytes(), 320u);
  EXPECT_EQ(r.channels(), 1u);
  const bytes input = stream_of(3 * 320 + 100);
  std::vector<std::string> out;
  r.feed(input, out);
  ASSERT_EQ(out.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) EXPECT_EQ(decoded(out[i]), slice(input, i * 320, 320)) << i;
}

TEST(Reframer, KeepsWhatIsShortOfAPacketForTheNextFeed) {
  reframer r(2, 1, 160);
  const bytes input = stream_of(640);
  std::vector<std::string> out;
  r.feed(std::span(input).first(319), out);
  EXPECT_TRUE(out.empty());
  r.feed(std::span(input).subspan(319, 1), out);
  ASSERT_EQ(out.size(), 1u);
  r.feed(std::span(input).subspan(320), out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(decoded(out[0]), slice(input, 0, 320));
  EXPECT_EQ(decoded(out[1]), slice(input, 320, 320));
}

TEST(Reframer, AppendsToWhatTheOutputHolds) {
  reframer r(1, 1, 4);
  std::vector<std::string> out{"earlier"};
  r.feed(stream_of(8), out);
  ASSERT_EQ(out.size(), 3u);
  EXPECT_EQ(out[0], "earlier");
}

TEST(Reframer, AnEmptyFeedCutsNothing) {
  reframer r(2, 1, 160);
  std::vector<std::string> out;
  r.feed({}, out);
  EXPECT_TRUE(out.empty());
  std::vector<std::string> last;
  EXPECT_EQ(r.flush(last), 0u);
  EXPECT_TRUE(last.empty());
}

TEST(Reframer, AnyChunkingGivesTheSamePackets) {
  // Whatever pieces the sender wrote, the same byte stream is the same packets: mono and stereo, L16 and
  // G.711, pieces smaller and larger than a packet.
  struct shape {
    std::size_t bytes_per_sample, channels, samples;
  };
  for (const shape s : {shape{2, 1, 160}, shape{2, 2, 160}, shape{1, 1, 160}, shape{1, 2, 80},
                        shape{2, 1, 320}, shape{2, 2, 3}}) {
    const std::size_t packet = s.bytes_per_sample * s.channels * s.samples;
    const bytes input = stream_of(packet * 25 + packet / 2 + 1, static_cast<std::uint32_t>(packet));
    reframer whole(s.bytes_per_sample, s.channels, s.samples);
    std::vector<std::string> expected;
    whole.feed(input, expected);
    std::vector<std::string> expected_last;
    const std::size_t expected_dropped = whole.flush(expected_last);
    ASSERT_EQ(expected.size(), 25 * s.channels);

    for (std::uint32_t seed = 1; seed <= 20; ++seed) {
      for (const std::size_t max_piece :
           {std::size_t{1}, std::size_t{7}, packet - 1, packet + 3, 5 * packet}) {
        reframer r(s.bytes_per_sample, s.channels, s.samples);
        EXPECT_EQ(fed_in_pieces(r, input, seed, max_piece), expected)
            << "seed " << seed << ", pieces up to " << max_piece << ", packet " << packet;
        std::vector<std::string> last;
        EXPECT_EQ(r.flush(last), expected_dropped);
        EXPECT_EQ(last, expected_last);
      }
    }
  }
}

TEST(Reframer, SplitsStereoIntoChannelZeroThenChannelOnePerPacket) {
  reframer r(2, 2, 160);
  EXPECT_EQ(r.packet_bytes(), 640u);
  EXPECT_EQ(r.channels(), 2u);
  const bytes input = stream_of(3 * 640);
  std::vector<std::string> out;
  r.feed(input, out);
  ASSERT_EQ(out.size(), 6u);
  for (std::size_t i = 0; i < 3; ++i) {
    const bytes packet = slice(input, i * 640, 640);
    for (std::size_t c = 0; c < 2; ++c) {
      const bytes one = decoded(out[i * 2 + c]);
      EXPECT_EQ(one.size(), 320u);
      EXPECT_EQ(one, channel_of(packet, 2, 2, c)) << "packet " << i << ", channel " << c;
    }
  }
}

TEST(Reframer, StereoSamplesStayWhole) {
  // Frames L0 R0 L1 R1 of 16-bit samples: each channel keeps both bytes of its samples, in order.
  reframer r(2, 2, 2);
  std::vector<std::string> out;
  r.feed(bytes{0x10, 0x11, 0x20, 0x21, 0x12, 0x13, 0x22, 0x23}, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(decoded(out[0]), (bytes{0x10, 0x11, 0x12, 0x13}));
  EXPECT_EQ(decoded(out[1]), (bytes{0x20, 0x21, 0x22, 0x23}));
}

TEST(Reframer, G711IsOneBytePerSample) {
  reframer mono(1, 1, 160);
  EXPECT_EQ(mono.packet_bytes(), 160u);
  const bytes input = stream_of(2 * 160);
  std::vector<std::string> out;
  mono.feed(input, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(decoded(out[1]), slice(input, 160, 160));

  reframer stereo(1, 2, 3);
  std::vector<std::string> both;
  stereo.feed(bytes{1, 2, 3, 4, 5, 6}, both);
  ASSERT_EQ(both.size(), 2u);
  EXPECT_EQ(decoded(both[0]), (bytes{1, 3, 5}));
  EXPECT_EQ(decoded(both[1]), (bytes{2, 4, 6}));
}

TEST(Reframer, FlushCutsTheRemainderAsAShorterPacket) {
  reframer r(2, 1, 160);
  const bytes input = stream_of(320 + 100);
  std::vector<std::string> out;
  r.feed(input, out);
  ASSERT_EQ(out.size(), 1u);
  std::vector<std::string> last;
  EXPECT_EQ(r.flush(last), 0u);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(decoded(last[0]), slice(input, 320, 100));
  // Nothing is left after a flush.
  std::vector<std::string> again;
  EXPECT_EQ(r.flush(again), 0u);
  EXPECT_TRUE(again.empty());
}

TEST(Reframer, FlushKeepsWholeSamplesAndCountsTheDroppedBytes) {
  reframer r(2, 1, 160);
  const bytes input = stream_of(101);
  std::vector<std::string> out;
  r.feed(input, out);
  EXPECT_TRUE(out.empty());
  std::vector<std::string> last;
  EXPECT_EQ(r.flush(last), 1u);
  ASSERT_EQ(last.size(), 1u);
  EXPECT_EQ(decoded(last[0]), slice(input, 0, 100));
}

TEST(Reframer, FlushOfStereoKeepsWholeSampleFrames) {
  reframer r(2, 2, 160);
  const bytes input = stream_of(640 + 4 * 10 + 3);  // a packet, ten frames and three bytes of an eleventh
  std::vector<std::string> out;
  r.feed(input, out);
  ASSERT_EQ(out.size(), 2u);
  std::vector<std::string> last;
  EXPECT_EQ(r.flush(last), 3u);
  ASSERT_EQ(last.size(), 2u);
  const bytes rest = slice(input, 640, 40);
  EXPECT_EQ(decoded(last[0]), channel_of(rest, 2, 2, 0));
  EXPECT_EQ(decoded(last[1]), channel_of(rest, 2, 2, 1));
  EXPECT_EQ(decoded(last[0]).size(), 20u);
}

TEST(Reframer, FlushOfLessThanOneSampleFrameOutputsNothing) {
  reframer r(2, 2, 160);
  std::vector<std::string> out;
  r.feed(bytes{1, 2, 3}, out);
  std::vector<std::string> last;
  EXPECT_EQ(r.flush(last), 3u);
  EXPECT_TRUE(last.empty());
}

TEST(Reframer, FeedsAfterAFlushStartAFreshPacket) {
  reframer r(1, 1, 4);
  std::vector<std::string> out;
  r.feed(bytes{1, 2}, out);
  r.flush(out);
  r.feed(bytes{3, 4, 5, 6}, out);
  ASSERT_EQ(out.size(), 2u);
  EXPECT_EQ(decoded(out[0]), (bytes{1, 2}));
  EXPECT_EQ(decoded(out[1]), (bytes{3, 4, 5, 6}));
}

TEST(Reframer, SplitOfOneChannelIsTheBytesAsTheyAre) {
  const bytes input = stream_of(50);
  std::vector<std::string> out;
  reframer::split(input, 2, 1, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0], media::base64_encode(input));
}

TEST(Reframer, SplitOfInterleavedFramesIsOneStringPerChannel) {
  const bytes input = stream_of(6 * 3);  // six frames of three one-byte channels
  std::vector<std::string> out{"kept"};
  reframer::split(input, 1, 3, out);
  ASSERT_EQ(out.size(), 4u);
  EXPECT_EQ(out[0], "kept");
  for (std::size_t c = 0; c < 3; ++c) EXPECT_EQ(decoded(out[1 + c]), channel_of(input, 1, 3, c)) << c;
}

}  // namespace
}  // namespace aipbx::streams
