#include "domain/pause_segmenter.hpp"

#include <gtest/gtest.h>

#include <random>

namespace aipbx {
namespace {

// 20 ms packets: two frames each.
const std::vector<bool> voice{true, true};
const std::vector<bool> quiet{false, false};

// Adds `count` packets of `frames`; the first cut any of them answers.
std::optional<std::int64_t> add_packets(pause_segmenter& s, int count, const std::vector<bool>& frames) {
  for (int i = 0; i < count; ++i)
    if (auto cut = s.add(frames)) return cut;
  return std::nullopt;
}

TEST(PauseRules, ValidOnlyWithWholeFramesAndAMaximumPastTheMinimum) {
  EXPECT_TRUE((pause_rules{3000, 20000, 400}.valid()));
  EXPECT_TRUE((pause_rules{0, 10, 10}.valid()));
  EXPECT_FALSE((pause_rules{3000, 3000, 400}.valid()));
  EXPECT_FALSE((pause_rules{3000, 20000, 0}.valid()));
  EXPECT_FALSE((pause_rules{3005, 20000, 400}.valid()));
  EXPECT_FALSE((pause_rules{-10, 20000, 400}.valid()));
}

TEST(PauseSegmenter, CutsInTheMiddleOfTheFirstPauseLongEnoughPastTheMinimum) {
  pause_segmenter s(pause_rules{1000, 10000, 300}, 101);
  EXPECT_FALSE(add_packets(s, 75, voice));  // 1.5 s of voice: packets 101..175, frames 0..149
  // The pause starts at frame 150 (packet 176) and reaches 300 ms at frame 179 (packet 190), whose middle,
  // frame 165, is in packet 183.
  for (std::int64_t q = 176; q < 190; ++q) ASSERT_FALSE(s.add(quiet)) << q;
  EXPECT_EQ(s.add(quiet), 183);
}

TEST(PauseSegmenter, IgnoresPausesBeforeTheMinimum) {
  pause_segmenter s(pause_rules{2000, 10000, 300}, 1);
  EXPECT_FALSE(add_packets(s, 25, voice));  // 0.5 s
  EXPECT_FALSE(add_packets(s, 50, quiet)) << "a 1 s pause whose middle is at 1 s, before the 2 s minimum";
  EXPECT_FALSE(add_packets(s, 40, voice));
  // Voice until 2.3 s, then a pause: 300 ms of it, middle at 2.45 s (frame 245, packet 123), cuts.
  EXPECT_EQ(add_packets(s, 15, quiet), 123);
}

TEST(PauseSegmenter, APauseThatStraddlesTheMinimumCutsOnceItsMiddlePassesIt) {
  pause_segmenter s(pause_rules{1000, 10000, 200}, 1);
  EXPECT_FALSE(add_packets(s, 45, voice));  // 0.9 s
  // The pause starts at frame 90; its middle reaches frame 100 when it is 20 frames (200 ms) long.
  EXPECT_EQ(add_packets(s, 10, quiet), 51) << "frame 100 is in packet 51";
}

TEST(PauseSegmenter, WithoutAPauseCutsAtTheMaximum) {
  pause_segmenter s(pause_rules{1000, 3000, 300}, 1);
  EXPECT_FALSE(add_packets(s, 149, voice));
  EXPECT_EQ(s.add(voice), 150) << "3 s of voice: the 150th packet reaches the maximum";
}

TEST(PauseSegmenter, AtTheMaximumCutsInTheLongestShortPausePastTheMinimum) {
  pause_segmenter s(pause_rules{1000, 4000, 500}, 1);
  EXPECT_FALSE(add_packets(s, 25, voice));
  EXPECT_FALSE(add_packets(s, 10, quiet)) << "200 ms, before the minimum: not a candidate";
  EXPECT_FALSE(add_packets(s, 30, voice));  // to 1.9 s, packet 65
  EXPECT_FALSE(add_packets(s, 5, quiet));   // 100 ms: packets 66..70, frames 130..139
  EXPECT_FALSE(add_packets(s, 20, voice));  // to 2.8 s, packet 90
  EXPECT_FALSE(add_packets(s, 10, quiet));  // 200 ms: packets 91..100, frames 180..199, middle 190 (packet 96)
  EXPECT_FALSE(add_packets(s, 10, voice));  // to 3.2 s, packet 110
  EXPECT_FALSE(add_packets(s, 10, quiet));  // 200 ms again, later: packets 111..120
  EXPECT_EQ(add_packets(s, 80, voice), 96) << "the earliest of the longest pauses";
}

TEST(PauseSegmenter, SilenceBeforeAnyVoiceIsNoPause) {
  pause_segmenter s(pause_rules{1000, 4000, 300}, 1);
  EXPECT_FALSE(add_packets(s, 100, quiet)) << "2 s of silence: it stays with the words that follow";
  EXPECT_FALSE(add_packets(s, 20, voice));
  EXPECT_EQ(add_packets(s, 15, quiet), 128) << "the first pause after the voice: 120 + 15 / 2";

  pause_segmenter hush(pause_rules{1000, 4000, 300}, 1);
  EXPECT_EQ(add_packets(hush, 200, quiet), 200) << "no voice at all: cut at the maximum";
}

TEST(PauseSegmenter, FinishCutsWhatIsLeftHoweverShort) {
  pause_segmenter s(pause_rules{3000, 20000, 400}, 7);
  EXPECT_FALSE(s.finish());
  EXPECT_EQ(s.last(), 6);
  EXPECT_FALSE(add_packets(s, 3, voice));
  EXPECT_EQ(s.finish(), 9);
  EXPECT_EQ(s.length_ms(), 60);
}

TEST(PauseSegmenter, PacketsOfAnySizeMapFramesToThePacketThatHoldsThem) {
  pause_segmenter s(pause_rules{0, 10000, 100}, 1);
  EXPECT_FALSE(s.add({true, true, true}));
  EXPECT_FALSE(s.add({}));  // a packet shorter than a frame ends none
  EXPECT_FALSE(s.add({false, false, false, false}));  // frames 3..6
  EXPECT_FALSE(s.add({false, false, false, false, false}));  // frames 7..11; the pause reaches 10 at frame 12
  EXPECT_EQ(s.add({false, true}), 4) << "the pause's middle, frame 3 + 5 = 8, is in the fourth packet";
}

// Cuts a whole call as the segmenter's driver does: after each cut, a fresh segmenter starts after it and
// hears the packets from there again.
std::vector<std::int64_t> cut_call(const pause_rules& r, const std::vector<std::vector<bool>>& packets) {
  std::vector<std::int64_t> cuts;
  std::int64_t start = 1;
  pause_segmenter s(r, start);
  for (std::int64_t q = start; q <= static_cast<std::int64_t>(packets.size());) {
    if (auto cut = s.add(packets[static_cast<std::size_t>(q - 1)])) {
      cuts.push_back(*cut);
      s = pause_segmenter(r, *cut + 1);
      q = *cut + 1;
    } else {
      ++q;
    }
  }
  if (auto rest = s.finish()) cuts.push_back(*rest);
  return cuts;
}

TEST(PauseSegmenter, SegmentsCoverTheCallWithinTheirBounds) {
  std::mt19937 rng(7);
  std::vector<std::vector<bool>> packets;
  bool talking = true;
  for (int i = 0; i < 20'000; ++i) {
    if (rng() % 40 == 0) talking = !talking;
    packets.push_back(talking ? voice : quiet);
  }
  const auto r = pause_rules{2000, 8000, 300};
  const auto cuts = cut_call(r, packets);
  ASSERT_FALSE(cuts.empty());
  EXPECT_EQ(cuts.back(), 20'000);
  std::int64_t first = 1;
  for (std::size_t i = 0; i < cuts.size(); ++i) {
    const std::int64_t ms = (cuts[i] - first + 1) * 20;
    EXPECT_LE(ms, r.max_ms + 20) << i;
    if (i + 1 < cuts.size()) {
      EXPECT_GE(ms, r.min_ms) << i;
    }
    first = cuts[i] + 1;
  }
  EXPECT_EQ(cuts, cut_call(r, packets)) << "the same audio, the same cuts";
}

}  // namespace
}  // namespace aipbx
