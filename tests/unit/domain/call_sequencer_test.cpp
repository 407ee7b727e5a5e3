#include "domain/call_sequencer.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <random>
#include <set>

namespace aipbx {
namespace {

sequencer_options opts(std::int64_t n, std::int64_t window_packets = 0, double window_seconds = 0) {
  return {n, {window_packets, window_seconds}};
}

TEST(CallSequencer, InOrderPacketsAreCutInWholeSegments) {
  call_sequencer s(opts(3));
  sequencer_changes c;
  for (std::int64_t q = 1; q <= 7; ++q) s.observe(q, 0, c);
  ASSERT_EQ(c.segments.size(), 2u);
  EXPECT_EQ(c.segments[0], (seq_range{1, 3}));
  EXPECT_EQ(c.segments[1], (seq_range{4, 6}));
  EXPECT_EQ(s.next_segment(), 7);
  EXPECT_TRUE(s.has_uncut());
  s.flush(c);
  EXPECT_EQ(c.segments.back(), (seq_range{7, 7}));
  EXPECT_TRUE(c.lost.empty());
}

TEST(CallSequencer, GapHoldsSegmentsUntilFilled) {
  call_sequencer s(opts(1, 10));
  sequencer_changes c;
  s.observe(1, 0, c);
  s.observe(3, 0, c);
  s.observe(4, 0, c);
  ASSERT_EQ(c.segments.size(), 1u) << "3 and 4 wait for 2";
  s.observe(2, 0, c);
  ASSERT_EQ(c.segments.size(), 4u);
  EXPECT_EQ(c.segments[1], (seq_range{2, 2}));
  EXPECT_EQ(c.segments[3], (seq_range{4, 4}));
}

TEST(CallSequencer, PacketWindowDeclaresTheGapLost) {
  call_sequencer s(opts(1, 3));
  sequencer_changes c;
  s.observe(1, 0, c);
  s.observe(3, 0, c);  // gap [2,2]
  s.observe(4, 0, c);
  EXPECT_TRUE(c.lost.empty());
  s.observe(5, 0, c);  // 3 sequences past the gap
  ASSERT_EQ(c.lost.size(), 1u);
  EXPECT_EQ(c.lost[0], (seq_range{2, 2}));
  EXPECT_EQ(s.lost_packets(), 1);
  EXPECT_EQ(s.next_segment(), 6);
  EXPECT_EQ(c.segments.size(), 4u) << "1, 3, 4, 5: the lost 2 has no segment";
  auto late = s.observe(2, 0, c);
  EXPECT_TRUE(late.late_after_lost);
  EXPECT_EQ(c.segments.size(), 4u) << "a packet after its gap was lost is not run again";
}

TEST(CallSequencer, TimeWindowDeclaresTheGapLostWithAFakeClock) {
  call_sequencer s(opts(2, 0, 1.5));
  sequencer_changes c;
  s.observe(1, 100.0, c);
  s.observe(2, 100.0, c);
  s.observe(5, 100.2, c);  // gap [3,4] opened at 100.2
  s.tick(101.6, c);
  EXPECT_TRUE(c.lost.empty());
  ASSERT_TRUE(s.oldest_gap_opened_at());
  EXPECT_DOUBLE_EQ(*s.oldest_gap_opened_at(), 100.2);
  s.tick(101.7, c);
  ASSERT_EQ(c.lost.size(), 1u);
  EXPECT_EQ(c.lost[0], (seq_range{3, 4}));
  EXPECT_EQ(c.segments, (std::vector<seq_range>{{1, 2}})) << "the segment holding only the lost 3..4 is skipped";
  EXPECT_EQ(s.next_segment(), 5);
}

TEST(CallSequencer, SplitGapKeepsItsOpeningTime) {
  call_sequencer s(opts(1, 0, 1.0));
  sequencer_changes c;
  s.observe(1, 10.0, c);
  s.observe(6, 10.0, c);  // gap [2,5] at 10.0
  s.observe(4, 10.9, c);  // splits into [2,3] and [5,5], both opened at 10.0
  s.tick(11.0, c);
  EXPECT_EQ(s.lost_packets(), 3);
  EXPECT_EQ(s.tracker().missing_count(), 0);
}

TEST(CallSequencer, FlushLosesOpenGapsAndCutsEverything) {
  call_sequencer s(opts(4));
  sequencer_changes c;
  for (std::int64_t q : {1, 2, 5, 6, 9}) s.observe(q, 0, c);
  EXPECT_TRUE(c.segments.empty());
  s.flush(c);
  EXPECT_EQ(c.lost, (std::vector<seq_range>{{3, 4}, {7, 8}}));
  EXPECT_EQ(c.segments, (std::vector<seq_range>{{1, 4}, {5, 8}, {9, 9}}));
  EXPECT_FALSE(s.has_uncut());
}

TEST(CallSequencer, RebuiltFromStoredStateBehavesTheSame) {
  call_sequencer a(opts(2, 5));
  sequencer_changes ca;
  for (std::int64_t q : {1, 2, 3, 6, 7}) a.observe(q, 0, ca);
  call_sequencer b(opts(2, 5), a.tracker().highest(), {{{4, 5}, 0.0}}, a.lost(), a.next_segment());
  sequencer_changes cb;
  ca = {};
  for (std::int64_t q : {5, 4, 8}) {
    a.observe(q, 1, ca);
    b.observe(q, 1, cb);
  }
  EXPECT_EQ(ca.segments, cb.segments);
  EXPECT_EQ(a.next_segment(), b.next_segment());
}

// Property: packets 1..n, some dropped, some repeated, shuffled within the reorder window, always give
// segments that cover each received packet exactly once, in order, and lost ranges equal to exactly the
// dropped packets.
TEST(CallSequencerProperty, SegmentsCoverReceivedOnceAndLostIsExactlyDropped) {
  std::mt19937_64 rng(20261127);
  for (int round = 0; round < 4000; ++round) {
    const std::int64_t n = std::uniform_int_distribution<std::int64_t>(1, 200)(rng);
    const std::int64_t segment = std::uniform_int_distribution<std::int64_t>(1, 6)(rng);
    const std::int64_t window = std::uniform_int_distribution<std::int64_t>(1, 16)(rng);
    const double drop_rate = std::uniform_real_distribution<double>(0, 0.2)(rng);
    const double dup_rate = std::uniform_real_distribution<double>(0, 0.2)(rng);
    SCOPED_TRACE("round " + std::to_string(round) + " n=" + std::to_string(n) + " segment=" +
                 std::to_string(segment) + " window=" + std::to_string(window));

    std::set<std::int64_t> dropped, received;
    std::vector<std::pair<double, std::int64_t>> order;
    std::uniform_real_distribution<double> unit(0, 1);
    for (std::int64_t q = 1; q <= n; ++q) {
      if (unit(rng) < drop_rate) {
        dropped.insert(q);
        continue;
      }
      received.insert(q);
      // Displaced by less than the window: it arrives before its gap can be given up.
      order.push_back({static_cast<double>(q) + unit(rng) * static_cast<double>(window - 1), q});
      if (unit(rng) < dup_rate) order.push_back({static_cast<double>(q) + unit(rng) * 3.0 * static_cast<double>(window), q});
    }
    std::sort(order.begin(), order.end());

    call_sequencer s(opts(segment, window));
    sequencer_changes c;
    std::set<std::int64_t> stored;
    for (const auto& [key, q] : order) {
      if (!stored.insert(q).second) continue;  // the store answers a repeat as a duplicate
      auto r = s.observe(q, 0, c);
      ASSERT_FALSE(r.late_after_lost) << q;
    }
    s.flush(c);

    std::int64_t previous_last = 0;
    std::multiset<std::int64_t> covered;
    for (const auto& seg : c.segments) {
      ASSERT_GT(seg.first, previous_last);
      ASSERT_LE(seg.first, seg.last);
      ASSERT_LE(seg.size(), segment);
      previous_last = seg.last;
      for (auto it = received.lower_bound(seg.first); it != received.end() && *it <= seg.last; ++it)
        covered.insert(*it);
    }
    ASSERT_EQ(covered.size(), received.size());
    ASSERT_TRUE(std::equal(covered.begin(), covered.end(), received.begin()));
    std::set<std::int64_t> lost;
    for (const auto& r : c.lost)
      for (std::int64_t q = r.first; q <= r.last; ++q) ASSERT_TRUE(lost.insert(q).second);
    // Drops above the highest received packet are invisible: nothing says they were ever sent.
    const std::int64_t highest = received.empty() ? 0 : *received.rbegin();
    std::set<std::int64_t> visible_drops;
    for (auto q : dropped)
      if (q < highest) visible_drops.insert(q);
    ASSERT_EQ(lost, visible_drops);
    ASSERT_EQ(s.lost_packets(), static_cast<std::int64_t>(visible_drops.size()));
  }
}

}  // namespace
}  // namespace aipbx
