#include "domain/sequence_tracker.hpp"

#include <gtest/gtest.h>

namespace aipbx {
namespace {

TEST(SequenceTracker, InOrderStream) {
  sequence_tracker t;
  for (std::int64_t s = 1; s <= 5; ++s) EXPECT_EQ(t.observe(s).kind, arrival::in_order);
  EXPECT_EQ(t.highest(), 5);
  EXPECT_EQ(t.expected(), 6);
  EXPECT_EQ(t.missing_count(), 0);
}

}  // namespace
}  // namespace aipbx
