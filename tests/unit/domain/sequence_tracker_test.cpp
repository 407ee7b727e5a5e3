#include "domain/sequence_tracker.hpp"

#include "domain/call_state.hpp"
#include "support/printers.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <random>
#include <set>
#include <vector>

namespace aipbx {
namespace {

using ranges = std::vector<seq_range>;

TEST(SequenceTracker, StartsEmpty) {
  sequence_tracker t;
  EXPECT_EQ(t.highest(), 0);
  EXPECT_EQ(t.expected(), 1);
  EXPECT_EQ(t.missing_count(), 0);
  EXPECT_EQ(t.missing_ranges(), 0u);
  EXPECT_TRUE(t.missing().empty());
  EXPECT_FALSE(t.is_missing(1));
}

TEST(SequenceTracker, InOrderStream) {
  sequence_tracker t;
  for (std::int64_t s = 1; s <= 5; ++s) {
    const observation o = t.observe(s);
    EXPECT_EQ(o.kind, arrival::in_order);
    EXPECT_EQ(o.expected, s);
    EXPECT_FALSE(o.removed);
    EXPECT_TRUE(o.added.empty());
  }
  EXPECT_EQ(t.highest(), 5);
  EXPECT_EQ(t.expected(), 6);
  EXPECT_EQ(t.missing_count(), 0);
}

TEST(SequenceTracker, GapOpensOneRange) {
  sequence_tracker t;
  t.observe(1);
  t.observe(2);
  const observation o = t.observe(7);
  EXPECT_EQ(o.kind, arrival::gap);
  EXPECT_EQ(o.expected, 3);
  EXPECT_FALSE(o.removed);
  EXPECT_EQ(o.added, (ranges{{3, 6}}));
  EXPECT_EQ(t.highest(), 7);
  EXPECT_EQ(t.expected(), 3);
  EXPECT_EQ(t.missing(), (ranges{{3, 6}}));
  EXPECT_EQ(t.missing_count(), 4);
  EXPECT_EQ(t.missing_ranges(), 1u);
  EXPECT_FALSE(t.is_missing(2));
  EXPECT_TRUE(t.is_missing(3));
  EXPECT_TRUE(t.is_missing(6));
  EXPECT_FALSE(t.is_missing(7));
  EXPECT_FALSE(t.is_missing(8));
}

TEST(SequenceTracker, FirstPacketAboveOneOpensGapFromOne) {
  sequence_tracker t;
  const observation o = t.observe(4);
  EXPECT_EQ(o.kind, arrival::gap);
  EXPECT_EQ(o.expected, 1);
  EXPECT_EQ(o.added, (ranges{{1, 3}}));
  EXPECT_EQ(t.expected(), 1);
  EXPECT_EQ(t.missing_count(), 3);
}

TEST(SequenceTracker, PacketAfterGapContinuesInOrder) {
  sequence_tracker t;
  t.observe(1);
  t.observe(5);
  const observation o = t.observe(6);
  EXPECT_EQ(o.kind, arrival::in_order);
  EXPECT_EQ(o.expected, 2);  // the lowest not received, not highest + 1
  EXPECT_EQ(t.missing(), (ranges{{2, 4}}));
}

TEST(SequenceTracker, LateFillShrinksRangeFromTheFront) {
  sequence_tracker t;
  t.observe(1);
  t.observe(10);  // missing 2..9
  const observation o = t.observe(2);
  EXPECT_EQ(o.kind, arrival::late);
  EXPECT_EQ(o.expected, 2);
  EXPECT_EQ(o.removed, (seq_range{2, 9}));
  EXPECT_EQ(o.added, (ranges{{3, 9}}));
  EXPECT_EQ(t.missing(), (ranges{{3, 9}}));
  EXPECT_EQ(t.expected(), 3);
  EXPECT_EQ(t.missing_count(), 7);
}

TEST(SequenceTracker, LateFillShrinksRangeFromTheBack) {
  sequence_tracker t;
  t.observe(1);
  t.observe(10);
  const observation o = t.observe(9);
  EXPECT_EQ(o.kind, arrival::late);
  EXPECT_EQ(o.removed, (seq_range{2, 9}));
  EXPECT_EQ(o.added, (ranges{{2, 8}}));
  EXPECT_EQ(t.missing(), (ranges{{2, 8}}));
  EXPECT_EQ(t.expected(), 2);
  EXPECT_EQ(t.missing_count(), 7);
  EXPECT_EQ(t.highest(), 10);
}

TEST(SequenceTracker, LateFillSplitsRangeInTheMiddle) {
  sequence_tracker t;
  t.observe(1);
  t.observe(10);
  const observation o = t.observe(5);
  EXPECT_EQ(o.kind, arrival::late);
  EXPECT_EQ(o.removed, (seq_range{2, 9}));
  EXPECT_EQ(o.added, (ranges{{2, 4}, {6, 9}}));
  EXPECT_EQ(t.missing(), (ranges{{2, 4}, {6, 9}}));
  EXPECT_EQ(t.missing_ranges(), 2u);
  EXPECT_EQ(t.missing_count(), 7);
  EXPECT_FALSE(t.is_missing(5));
  EXPECT_TRUE(t.is_missing(4));
  EXPECT_TRUE(t.is_missing(6));
}

TEST(SequenceTracker, FillingARangeCompletelyRemovesIt) {
  sequence_tracker t;
  t.observe(1);
  t.observe(5);  // missing 2..4
  t.observe(3);  // 2, 4
  const observation a = t.observe(2);
  EXPECT_EQ(a.removed, (seq_range{2, 2}));
  EXPECT_TRUE(a.added.empty());
  const observation b = t.observe(4);
  EXPECT_EQ(b.kind, arrival::late);
  EXPECT_EQ(b.expected, 4);
  EXPECT_EQ(b.removed, (seq_range{4, 4}));
  EXPECT_TRUE(b.added.empty());
  EXPECT_TRUE(t.missing().empty());
  EXPECT_EQ(t.missing_count(), 0);
  EXPECT_EQ(t.expected(), 6);
  EXPECT_EQ(t.observe(6).kind, arrival::in_order);
}

TEST(SequenceTracker, SeveralGapsAreIndependent) {
  sequence_tracker t;
  t.observe(1);
  t.observe(4);  // 2..3
  t.observe(8);  // 5..7
  EXPECT_EQ(t.missing(), (ranges{{2, 3}, {5, 7}}));
  EXPECT_EQ(t.missing_count(), 5);
  const observation o = t.observe(6);
  EXPECT_EQ(o.removed, (seq_range{5, 7}));
  EXPECT_EQ(o.added, (ranges{{5, 5}, {7, 7}}));
  EXPECT_EQ(t.missing(), (ranges{{2, 3}, {5, 5}, {7, 7}}));
  EXPECT_EQ(t.expected(), 2);
}

TEST(SequenceTracker, DuplicateOfSeenPacketChangesNothing) {
  sequence_tracker t;
  t.observe(1);
  t.observe(2);
  t.observe(5);
  for (std::int64_t s : {1, 2, 5}) {
    const observation o = t.observe(s);
    EXPECT_EQ(o.kind, arrival::duplicate) << s;
    EXPECT_EQ(o.expected, 3);
    EXPECT_FALSE(o.removed);
    EXPECT_TRUE(o.added.empty());
  }
  EXPECT_EQ(t.missing(), (ranges{{3, 4}}));
  EXPECT_EQ(t.highest(), 5);
}

TEST(SequenceTracker, DuplicateOfLateFillIsDuplicate) {
  sequence_tracker t;
  t.observe(1);
  t.observe(5);
  EXPECT_EQ(t.observe(3).kind, arrival::late);
  EXPECT_EQ(t.observe(3).kind, arrival::duplicate);
  EXPECT_EQ(t.missing(), (ranges{{2, 2}, {4, 4}}));
}

TEST(SequenceTracker, SequenceZeroIsBeforeStartAndChangesNothing) {
  sequence_tracker fresh;
  const observation a = fresh.observe(0);
  EXPECT_EQ(a.kind, arrival::before_start);
  EXPECT_EQ(a.expected, 1);
  EXPECT_FALSE(a.removed);
  EXPECT_TRUE(a.added.empty());
  EXPECT_EQ(fresh.highest(), 0);
  EXPECT_EQ(fresh.expected(), 1);
  EXPECT_EQ(fresh.missing_count(), 0);
  EXPECT_EQ(fresh.observe(1).kind, arrival::in_order);  // 0 opened no gap and took no slot

  sequence_tracker t;
  t.observe(1);
  t.observe(4);
  EXPECT_EQ(t.observe(0).kind, arrival::before_start);
  EXPECT_EQ(t.observe(0).kind, arrival::before_start);  // repeated: still before start, not duplicate
  EXPECT_EQ(t.missing(), (ranges{{2, 3}}));
  EXPECT_EQ(t.highest(), 4);
  EXPECT_FALSE(t.is_missing(0));
}

TEST(SequenceTracker, HugeJumpIsOneRangeWithoutOverflow) {
  sequence_tracker t;
  t.observe(1);
  const observation o = t.observe(max_sequence);  // 2^53 - 1
  EXPECT_EQ(o.kind, arrival::gap);
  EXPECT_EQ(o.added, (ranges{{2, max_sequence - 1}}));
  EXPECT_EQ(t.missing_ranges(), 1u);
  EXPECT_EQ(t.missing_count(), max_sequence - 2);
  EXPECT_EQ(t.highest(), max_sequence);
  EXPECT_EQ(t.expected(), 2);
  EXPECT_TRUE(t.is_missing(std::int64_t{1} << 52));
  EXPECT_TRUE(t.is_missing(max_sequence - 1));
  EXPECT_FALSE(t.is_missing(max_sequence));

  // Filling near both ends and the middle keeps the count exact.
  t.observe(max_sequence - 1);
  t.observe(2);
  t.observe(std::int64_t{1} << 52);
  EXPECT_EQ(t.missing(), (ranges{{3, (std::int64_t{1} << 52) - 1}, {(std::int64_t{1} << 52) + 1, max_sequence - 2}}));
  EXPECT_EQ(t.missing_count(), max_sequence - 5);
  std::int64_t sum = 0;
  for (const auto& r : t.missing()) sum += r.size();
  EXPECT_EQ(sum, t.missing_count());
  EXPECT_EQ(t.observe(max_sequence).kind, arrival::duplicate);
}

TEST(SequenceTracker, HugeJumpFromNothing) {
  sequence_tracker t;
  t.observe(max_sequence);
  EXPECT_EQ(t.missing(), (ranges{{1, max_sequence - 1}}));
  EXPECT_EQ(t.missing_count(), max_sequence - 1);
  EXPECT_EQ(t.expected(), 1);
}

TEST(SequenceTracker, RebuiltTrackerBehavesTheSame) {
  sequence_tracker original;
  for (std::int64_t s : {1, 2, 6, 9, 4, 15}) original.observe(s);
  ASSERT_EQ(original.missing(), (ranges{{3, 3}, {5, 5}, {7, 8}, {10, 14}}));

  sequence_tracker rebuilt(original.highest(), original.missing());
  EXPECT_EQ(rebuilt.highest(), original.highest());
  EXPECT_EQ(rebuilt.expected(), original.expected());
  EXPECT_EQ(rebuilt.missing_count(), original.missing_count());
  EXPECT_EQ(rebuilt.missing_ranges(), original.missing_ranges());
  EXPECT_EQ(rebuilt.missing(), original.missing());

  for (std::int64_t s : {3, 3, 12, 16, 20, 0, 7, 1, 8, 18}) {
    const observation a = original.observe(s);
    const observation b = rebuilt.observe(s);
    EXPECT_EQ(a.kind, b.kind) << s;
    EXPECT_EQ(a.expected, b.expected) << s;
    EXPECT_EQ(a.removed, b.removed) << s;
    EXPECT_EQ(a.added, b.added) << s;
    EXPECT_EQ(original.missing(), rebuilt.missing()) << s;
    EXPECT_EQ(original.missing_count(), rebuilt.missing_count()) << s;
  }
}

TEST(SequenceTracker, RebuiltWithoutGaps) {
  sequence_tracker t(42, {});
  EXPECT_EQ(t.expected(), 43);
  EXPECT_EQ(t.observe(43).kind, arrival::in_order);
  EXPECT_EQ(t.observe(10).kind, arrival::duplicate);
}

TEST(SequenceTracker, ArrivalNames) {
  EXPECT_EQ(to_string(arrival::in_order), "in_order");
  EXPECT_EQ(to_string(arrival::gap), "gap");
  EXPECT_EQ(to_string(arrival::late), "late");
  EXPECT_EQ(to_string(arrival::before_start), "before_start");
  EXPECT_EQ(to_string(arrival::duplicate), "duplicate");
}

// The maximal runs of numbers in [1, highest] that are not in `sent`.
ranges never_sent_runs(const std::set<std::int64_t>& sent, std::int64_t highest) {
  ranges out;
  for (std::int64_t s = 1; s <= highest; ++s) {
    if (sent.contains(s)) continue;
    if (!out.empty() && out.back().last == s - 1)
      out.back().last = s;
    else
      out.push_back({s, s});
  }
  return out;
}

// Replays random streams (a shuffled window with drops and repeats) against a plain set model, checking
// every classification and delta, and the whole missing set after each packet.
TEST(SequenceTracker, RandomStreamsMatchModel) {
  std::mt19937 rng(20240611);
  constexpr int cases = 3000;
  for (int c = 0; c < cases; ++c) {
    const std::int64_t window = std::uniform_int_distribution<std::int64_t>(1, 60)(rng);
    const double drop_p = std::uniform_real_distribution<double>(0.0, 0.5)(rng);
    const double dup_p = std::uniform_real_distribution<double>(0.0, 0.3)(rng);

    std::vector<std::int64_t> stream;
    for (std::int64_t s = 1; s <= window; ++s) {
      if (std::bernoulli_distribution(drop_p)(rng)) continue;
      stream.push_back(s);
      if (std::bernoulli_distribution(dup_p)(rng)) stream.push_back(s);
    }
    if (std::bernoulli_distribution(0.1)(rng)) stream.push_back(0);
    std::shuffle(stream.begin(), stream.end(), rng);

    sequence_tracker t;
    std::set<std::int64_t> sent;
    std::map<std::int64_t, std::int64_t> mirror;  // the missing set rebuilt from the deltas alone
    std::int64_t highest = 0;
    for (std::size_t i = 0; i < stream.size(); ++i) {
      const std::int64_t s = stream[i];
      const std::int64_t expected_before = t.expected();
      const observation o = t.observe(s);
      SCOPED_TRACE(::testing::Message() << "case " << c << " packet " << i << " sequence " << s);

      arrival want;
      if (s == 0) want = arrival::before_start;
      else if (sent.contains(s)) want = arrival::duplicate;
      else if (s == highest + 1) want = arrival::in_order;
      else if (s > highest) want = arrival::gap;
      else want = arrival::late;
      ASSERT_EQ(o.kind, want);
      ASSERT_EQ(o.expected, expected_before);

      if (o.removed) {
        auto it = mirror.find(o.removed->first);
        ASSERT_NE(it, mirror.end());
        ASSERT_EQ(it->second, o.removed->last);
        mirror.erase(it);
      }
      for (const auto& r : o.added) mirror.emplace(r.first, r.last);

      if (s > 0) sent.insert(s);
      highest = std::max(highest, s);

      const ranges want_missing = never_sent_runs(sent, highest);
      ASSERT_EQ(t.missing(), want_missing);
      ranges mirrored;
      for (const auto& [first, last] : mirror) mirrored.push_back({first, last});
      ASSERT_EQ(mirrored, want_missing);
      std::int64_t sum = 0;
      for (const auto& r : want_missing) sum += r.size();
      ASSERT_EQ(t.missing_count(), sum);
      ASSERT_EQ(t.missing_ranges(), want_missing.size());
      ASSERT_EQ(t.highest(), highest);
      ASSERT_EQ(t.expected(), want_missing.empty() ? highest + 1 : want_missing.front().first);
    }

    // A tracker rebuilt from the final state classifies every sequence as the original does.
    sequence_tracker rebuilt(t.highest(), t.missing());
    for (std::int64_t s = 0; s <= window + 2; ++s) ASSERT_EQ(rebuilt.is_missing(s), t.is_missing(s)) << s;
    for (std::int64_t s = 0; s <= window + 2; ++s) {
      const observation a = t.observe(s);
      const observation b = rebuilt.observe(s);
      ASSERT_EQ(a.kind, b.kind) << "case " << c << " sequence " << s;
      ASSERT_EQ(a.added, b.added);
      ASSERT_EQ(a.removed, b.removed);
    }
    ASSERT_TRUE(t.missing().empty());
    ASSERT_EQ(t.missing_count(), 0);
  }
}

TEST(ToRanges, CollapsesConsecutiveSequences) {
  EXPECT_TRUE(to_ranges({}).empty());
  EXPECT_EQ(to_ranges({7}), (std::vector<seq_range>{{7, 7}}));
  EXPECT_EQ(to_ranges({3, 4, 5, 9, 11, 12}), (std::vector<seq_range>{{3, 5}, {9, 9}, {11, 12}}));
}

}  // namespace
}  // namespace aipbx
