#include "engines/segment_audio.hpp"

#include "media/audio_codec.hpp"

#include <gtest/gtest.h>

namespace aipbx::engines {
namespace {

stored_packet packet(std::int64_t sequence, const std::vector<std::int16_t>& pcm, media::media_format f) {
  return {sequence, sequence, media::encode_audio(f, pcm), 0, 0};
}

TEST(SegmentAudio, PacketsInOrderLostOnesAsSilence) {
  const auto f = media::media_format::l16(8000);
  audio_segment s{"c", 1, 5, {}};
  s.packets.push_back(packet(1, std::vector<std::int16_t>(4, 1), f));
  s.packets.push_back(packet(3, std::vector<std::int16_t>(4, 3), f));  // 2 was lost
  s.packets.push_back(packet(4, std::vector<std::int16_t>(4, 4), f));  // 5 lost at the end
  auto pcm = decode_segment(s, f, 8000);
  ASSERT_TRUE(pcm) << pcm.error();
  EXPECT_EQ(pcm->rate, 8000u);
  EXPECT_EQ(pcm->silent_packets, 2);
  EXPECT_EQ(pcm->samples, (std::vector<std::int16_t>{1, 1, 1, 1, 0, 0, 0, 0, 3, 3, 3, 3, 4, 4, 4, 4, 0, 0, 0, 0}));
}

TEST(SegmentAudio, ResamplesToTheAskedRate) {
  const auto f = media::media_format::pcma();
  audio_segment s{"c", 1, 2, {}};
  s.packets.push_back(packet(1, std::vector<std::int16_t>(160, 100), f));
  s.packets.push_back(packet(2, std::vector<std::int16_t>(160, 100), f));
  auto pcm = decode_segment(s, f, 16000);
  ASSERT_TRUE(pcm) << pcm.error();
  EXPECT_EQ(pcm->rate, 16000u);
  EXPECT_EQ(pcm->samples.size(), 640u);
}

TEST(SegmentAudio, FailuresNameTheCause) {
  audio_segment s{"c", 1, 1, {{1, 1, "audio_payload", 0, 0}}};
  EXPECT_EQ(decode_segment(s, media::media_format::none(), 16000).error(),
            "the engine needs audio, but the media format is none (set --media)");
  EXPECT_EQ(decode_segment(s, media::media_format::pcmu(), 16000).error(),
            "packet 1 is not pcmu/8000 audio: data is not valid base64");
  audio_segment empty{"c", 1, 1, {}};
  EXPECT_EQ(decode_segment(empty, media::media_format::pcmu(), 16000).error(), "the segment has no packets");
}

}  // namespace
}  // namespace aipbx::engines
