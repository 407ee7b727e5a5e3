#include "engines/segment_audio.hpp"

#include "media/audio_codec.hpp"

#include <gtest/gtest.h>

namespace aipbx::engines {
namespace {

stored_packet packet(std::int64_t sequence, const std::vector<std::int16_t>& pcm, media::media_format f) {
  return {sequence, sequence, media::encode_audio(f, pcm), 0, 0};
}

TEST(SegmentAudio, PacketsInOrderLostOnesAsSilenceOfOnePacketDuration) {
  const auto f = media::media_format::l16(8000);
  audio_segment s{"c", 1, 5, {}, f, 1};  // 1 ms packets: 8 samples
  s.packets.push_back(packet(1, std::vector<std::int16_t>(8, 1), f));
  s.packets.push_back(packet(3, std::vector<std::int16_t>(4, 3), f));  // 2 was lost; 3 is short
  s.packets.push_back(packet(4, std::vector<std::int16_t>(8, 4), f));  // 5 lost at the end
  auto pcm = decode_segment(s, 8000);
  ASSERT_TRUE(pcm) << pcm.error();
  EXPECT_EQ(pcm->rate, 8000u);
  EXPECT_EQ(pcm->silent_packets, 2);
  std::vector<std::int16_t> expected(8, 1);
  expected.insert(expected.end(), 8, 0);
  expected.insert(expected.end(), 4, 3);
  expected.insert(expected.end(), 8, 4);
  expected.insert(expected.end(), 8, 0);
  EXPECT_EQ(pcm->samples, expected);
}

TEST(SegmentAudio, ResamplesToTheAskedRate) {
  const auto f = media::media_format::pcma();
  audio_segment s{"c", 1, 2, {}, f};
  s.packets.push_back(packet(1, std::vector<std::int16_t>(160, 100), f));
  s.packets.push_back(packet(2, std::vector<std::int16_t>(160, 100), f));
  auto pcm = decode_segment(s, 16000);
  ASSERT_TRUE(pcm) << pcm.error();
  EXPECT_EQ(pcm->rate, 16000u);
  EXPECT_EQ(pcm->samples.size(), 640u);
}

TEST(SegmentAudio, FailuresNameTheCause) {
  audio_segment s{"c", 1, 1, {{1, 1, "audio_payload", 0, 0}}};
  EXPECT_EQ(decode_segment(s, 16000).error(),
            "the engine needs audio, but the call's media format is none (declare it with POST "
            "/v1/calls/{call_id} before the first packet, or set --media)");
  s.media = media::media_format::pcmu();
  EXPECT_EQ(decode_segment(s, 16000).error(), "packet 1 is not pcmu/8000 audio: data is not valid base64");
  audio_segment empty{"c", 1, 1, {}, media::media_format::pcmu()};
  EXPECT_EQ(decode_segment(empty, 16000).error(), "the segment has no packets");
}

}  // namespace
}  // namespace aipbx::engines
