#include "jobs/retry_policy.hpp"

#include "jobs/attempt.hpp"

#include <gtest/gtest.h>

#include <vector>

namespace aipbx::jobs {
namespace {

using std::chrono::milliseconds;

// Returns scripted numbers in turn: a test decides what "random" is.
class scripted_random final : public random_source {
 public:
  explicit scripted_random(std::vector<double> values) : values_(std::move(values)) {}
  double uniform01() override { return values_.at(next_++ % values_.size()); }

 private:
  std::vector<double> values_;
  std::size_t next_ = 0;
};

TEST(RetryPolicy, SeedDefaultsWaitOneTwoFourEightSecondsThenStop) {
  retry_policy p;
  scripted_random r({0.5});
  EXPECT_EQ(p.delay_after(1, 5, r), milliseconds(1000));
  EXPECT_EQ(p.delay_after(2, 5, r), milliseconds(2000));
  EXPECT_EQ(p.delay_after(3, 5, r), milliseconds(4000));
  EXPECT_EQ(p.delay_after(4, 5, r), milliseconds(8000));
  EXPECT_EQ(p.delay_after(5, 5, r), std::nullopt) << "no pointless wait after the last attempt";
  EXPECT_EQ(p.total_backoff(), milliseconds(15000));
}

TEST(RetryPolicy, BaseScalesEveryWait) {
  retry_policy p;
  p.base = milliseconds(20);
  scripted_random r({0.0});
  EXPECT_EQ(p.delay_after(1, 5, r), milliseconds(20));
  EXPECT_EQ(p.delay_after(4, 5, r), milliseconds(160));
  EXPECT_EQ(p.total_backoff(), milliseconds(20 + 40 + 80 + 160));
}

TEST(RetryPolicy, MaxDelayCapsTheWaitWithoutOverflow) {
  retry_policy p;
  p.base = milliseconds(1000);
  p.max_delay = milliseconds(5000);
  p.max_attempts = 200;
  scripted_random r({0.0});
  EXPECT_EQ(p.delay_after(3, 200, r), milliseconds(4000));
  EXPECT_EQ(p.delay_after(4, 200, r), milliseconds(5000));
  EXPECT_EQ(p.delay_after(150, 200, r), milliseconds(5000));
}

TEST(RetryPolicy, JitterShortensWithinBoundsAndNeverLengthens) {
  retry_policy p;
  p.jitter = 0.5;
  scripted_random lowest({0.0}), highest({0.999999}), middle({0.5});
  EXPECT_EQ(p.delay_after(2, 5, lowest), milliseconds(2000));
  EXPECT_EQ(p.delay_after(2, 5, middle), milliseconds(1500));
  EXPECT_EQ(p.delay_after(2, 5, highest), milliseconds(1000));
}

TEST(RetryPolicy, SeededJitterIsReproducible) {
  retry_policy p;
  p.jitter = 1.0;
  seeded_random a(42), b(42);
  for (int attempt = 1; attempt < 5; ++attempt) EXPECT_EQ(p.delay_after(attempt, 5, a), p.delay_after(attempt, 5, b));
}

TEST(RetryPolicy, JobsOwnMaxAttemptsDecides) {
  retry_policy p;  // 5 by default, but a job created with 3 stops after 3
  scripted_random r({0.0});
  EXPECT_TRUE(p.delay_after(2, 3, r));
  EXPECT_FALSE(p.delay_after(3, 3, r));
}

job running_job(int attempt, int max_attempts = 5) {
  job j;
  j.id = 7;
  j.call_id = "c";
  j.state = job_state::running;
  j.attempts = attempt;
  j.max_attempts = max_attempts;
  return j;
}

TEST(Decide, SuccessRecordsTheText) {
  retry_policy p;
  scripted_random r({0.0});
  attempt_result ok{true, "hello", "", false, "mock", 12.5};
  auto o = decide(running_job(1), ok, p, 1000.0, r);
  ASSERT_TRUE(std::holds_alternative<job_succeeded>(o));
  EXPECT_EQ(std::get<job_succeeded>(o).text, "hello");
  EXPECT_EQ(std::get<job_succeeded>(o).engine, "mock");
  EXPECT_DOUBLE_EQ(std::get<job_succeeded>(o).latency_ms, 12.5);
}

TEST(Decide, RetryableFailureIsDueAfterTheBackoff) {
  retry_policy p;  // fake clock: "now" is a plain number
  scripted_random r({0.0});
  attempt_result failed{false, "", "AI Service Unavailable", false, "mock", 1};
  auto o = decide(running_job(3), failed, p, 1000.0, r);
  ASSERT_TRUE(std::holds_alternative<job_retry>(o));
  EXPECT_DOUBLE_EQ(std::get<job_retry>(o).run_at, 1004.0);
  EXPECT_EQ(std::get<job_retry>(o).error, "AI Service Unavailable");
}

TEST(Decide, LastAttemptFailureIsDeadAtOnce) {
  retry_policy p;
  scripted_random r({0.0});
  attempt_result failed{false, "", "AI Service Unavailable", false, "mock", 1};
  auto o = decide(running_job(5), failed, p, 1000.0, r);
  ASSERT_TRUE(std::holds_alternative<job_dead>(o));
  EXPECT_NE(std::get<job_dead>(o).error.find("5 attempts"), std::string::npos);
  EXPECT_NE(std::get<job_dead>(o).error.find("AI Service Unavailable"), std::string::npos);
}

TEST(Decide, PermanentFailureIsNotRetried) {
  retry_policy p;
  scripted_random r({0.0});
  attempt_result rejected{false, "", "400 bad audio", true, "http", 1};
  auto o = decide(running_job(1), rejected, p, 1000.0, r);
  ASSERT_TRUE(std::holds_alternative<job_dead>(o));
  EXPECT_NE(std::get<job_dead>(o).error.find("400 bad audio"), std::string::npos);
}

}  // namespace
}  // namespace aipbx::jobs
