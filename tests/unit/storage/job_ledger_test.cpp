// The job queue's rules both writers share, without a database: job rows in, decisions and rows out, and
// what each outcome does to the job's call through the call ledger.
#include "storage/job_ledger.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <map>

namespace aipbx {
namespace {

// A writer's side of the ledger, in memory: the jobs table, the calls the ledger may look up, and claim
// reads that answer from the table as the backends' queries do.
class JobLedger : public ::testing::Test {
 protected:
  JobLedger()
      : calls_({{1, {}}, 2.0, 0, {}}), ledger_(calls_, [this](const std::string& id) { return lookup(id); }) {
    calls_.begin();
    ledger_.begin();
    // A call that has ended and waits for its jobs: every outcome settles it.
    records_.emplace("c1", calls_.fresh("c1", 0));
    call_record& c1 = records_.at("c1");
    c1.state = call_state::processing_ai;
    c1.jobs_total = 2;
  }

  call_record* lookup(const std::string& id) {
    ++lookups_;
    auto it = records_.find(id);
    return it == records_.end() ? nullptr : &it->second;
  }

  job& add(std::int64_t id, job_state state = job_state::queued, double run_at = 10) {
    job j;
    j.id = id;
    j.call_id = "c1";
    j.first_sequence = id;
    j.last_sequence = id;
    j.state = state;
    j.max_attempts = 3;
    j.run_at = run_at;
    j.created_at = 1;
    j.updated_at = 1;
    return table_.emplace_back(std::move(j));
  }
  job& running(std::int64_t id, const std::string& owner, int attempts, double expires) {
    job& j = add(id, job_state::running);
    j.lease_owner = owner;
    j.lease_expires_at = expires;
    j.attempts = attempts;
    j.started_at = 5;
    return j;
  }

  claim_reads reads(double now) {
    claim_reads r;
    r.due = [this, now](std::size_t limit) {
      ++due_reads_;
      std::vector<job*> out;
      for (auto& j : table_)
        if (j.state == job_state::queued && j.run_at <= now && out.size() < limit) out.push_back(&j);
      return out;
    };
    r.expired = [this, now](std::size_t limit) {
      ++expired_reads_;
      std::vector<job*> out;
      for (auto& j : table_)
        if (j.state == job_state::running && *j.lease_expires_at < now && out.size() < limit)
          out.push_back(&j);
      return out;
    };
    r.next = [this] {
      ++next_reads_;
      queue_times t;
      for (const auto& j : table_) {
        if (j.state == job_state::queued) t.next_due = job_ledger::earliest(t.next_due, j.run_at);
        if (j.state == job_state::running)
          t.next_expiry = job_ledger::earliest(t.next_expiry, j.lease_expires_at);
      }
      return t;
    };
    return r;
  }

  call_ledger calls_;
  job_ledger ledger_;
  std::map<std::string, call_record> records_;
  std::deque<job> table_;  // stable addresses, as the writers' row maps
  int lookups_ = 0, due_reads_ = 0, expired_reads_ = 0, next_reads_ = 0;
};

TEST_F(JobLedger, ClaimLeasesDueJobsAndCountsTheAttempt) {
  add(1, job_state::queued, 10);
  add(2, job_state::queued, 50);  // not due yet
  auto c = ledger_.claim(reads(20), "w1", 5, 30, 20);
  ASSERT_EQ(c.jobs.size(), 1u);
  const job& j = c.jobs[0];
  EXPECT_EQ(j.id, 1);
  EXPECT_EQ(j.state, job_state::running);
  EXPECT_EQ(j.attempts, 1);
  EXPECT_EQ(j.lease_owner, "w1");
  EXPECT_EQ(j.lease_expires_at, 50);
  EXPECT_EQ(j.started_at, 20);
  EXPECT_EQ(j.updated_at, 20);
  ASSERT_EQ(ledger_.rows().jobs.size(), 1u) << "the leased row is written back";
  EXPECT_EQ(ledger_.rows().jobs[0].lease_owner, "w1");
  EXPECT_EQ(table_[0].state, job_state::running) << "changed in place: a later read in the batch sees it";
  EXPECT_EQ(c.next_run_at, 50) << "a short claim learns when to come back: the next due job, or a lease";
  EXPECT_EQ(lookups_, 0) << "a lease does not touch the call";
  EXPECT_FALSE(ledger_.queued_now());
}

TEST_F(JobLedger, AFullClaimNeitherTakesExpiredLeasesNorAsksWhenToComeBack) {
  add(1);
  add(2);
  running(3, "gone", 1, 5);
  auto c = ledger_.claim(reads(20), "w1", 2, 30, 20);
  EXPECT_EQ(c.jobs.size(), 2u);
  EXPECT_FALSE(c.next_run_at.has_value());
  EXPECT_EQ(expired_reads_, 0);
  EXPECT_EQ(next_reads_, 0);
  EXPECT_EQ(table_[2].lease_owner, "gone");
}

TEST_F(JobLedger, ExpiredLeaseIsTakenOverAndTheInterruptedAttemptCounts) {
  running(1, "gone", 1, 15);
  auto c = ledger_.claim(reads(20), "w2", 5, 30, 20);
  ASSERT_EQ(c.jobs.size(), 1u);
  EXPECT_EQ(c.jobs[0].attempts, 2);
  EXPECT_EQ(c.jobs[0].lease_owner, "w2");
  EXPECT_EQ(c.jobs[0].lease_expires_at, 50);
  EXPECT_EQ(c.jobs[0].started_at, 5) << "the first attempt's start stays";
  EXPECT_FALSE(ledger_.finish(&table_[0], "gone", 1, job_succeeded{"late", "mock", 1}, 21))
      << "the old worker is fenced out";
  EXPECT_TRUE(ledger_.finish(&table_[0], "w2", 2, job_succeeded{"ok", "mock", 1}, 22));
}

TEST_F(JobLedger, LeaseExpiredOnTheLastAttemptKillsTheJobAndFailsItsCall) {
  running(1, "gone", 3, 15);
  add(2, job_state::queued, 100);
  auto c = ledger_.claim(reads(20), "w", 5, 30, 20);
  EXPECT_TRUE(c.jobs.empty());
  const job& dead = table_[0];
  EXPECT_EQ(dead.state, job_state::dead);
  EXPECT_EQ(dead.last_error, "lease expired on the last attempt");
  EXPECT_FALSE(dead.lease_owner.has_value());
  EXPECT_FALSE(dead.lease_expires_at.has_value());
  EXPECT_EQ(dead.finished_at, 20);
  EXPECT_EQ(dead.attempts, 3);
  ASSERT_EQ(ledger_.rows().jobs.size(), 1u);
  EXPECT_EQ(ledger_.rows().jobs[0].state, job_state::dead);
  const call_record& call = records_.at("c1");
  EXPECT_EQ(call.jobs_dead, 1);
  EXPECT_EQ(call.state, call_state::failed);
  ASSERT_EQ(calls_.rows().transitions.size(), 1u);
  EXPECT_EQ(calls_.rows().transitions[0].reason, "an ai job is dead");
  EXPECT_EQ(c.next_run_at, 100);
}

TEST_F(JobLedger, ClaimChecksEachRowItIsGiven) {
  // A backend's read may return rows this batch has changed since (the ledger has the final word).
  add(1, job_state::queued, 30);
  running(2, "w", 1, 40);
  claim_reads r = reads(20);
  r.due = [this](std::size_t) { return std::vector<job*>{&table_[0]}; };
  r.expired = [this](std::size_t) { return std::vector<job*>{&table_[1]}; };
  auto c = ledger_.claim(r, "x", 5, 30, 20);
  EXPECT_TRUE(c.jobs.empty());
  EXPECT_TRUE(ledger_.rows().jobs.empty());
}

TEST_F(JobLedger, RenewExtendsOnlyTheCurrentAttemptsLease) {
  job& j = running(1, "w", 2, 30);
  EXPECT_FALSE(ledger_.renew(&j, "other", 2, 30, 20)) << "another owner";
  EXPECT_FALSE(ledger_.renew(&j, "w", 1, 30, 20)) << "an earlier attempt";
  EXPECT_FALSE(ledger_.renew(nullptr, "w", 2, 30, 20)) << "no such job";
  EXPECT_TRUE(ledger_.rows().empty());
  EXPECT_TRUE(ledger_.renew(&j, "w", 2, 30, 20));
  EXPECT_EQ(j.lease_expires_at, 50);
  EXPECT_EQ(j.updated_at, 20);
  EXPECT_EQ(j.state, job_state::running);
  EXPECT_EQ(ledger_.rows().jobs.size(), 1u);
}

TEST_F(JobLedger, SuccessWritesOneResultAndSettlesTheCall) {
  job& j = running(1, "w", 1, 50);
  EXPECT_TRUE(ledger_.finish(&j, "w", 1, job_succeeded{"hello", "mock", 12.5}, 20));
  EXPECT_EQ(j.state, job_state::succeeded);
  EXPECT_FALSE(j.lease_owner.has_value());
  EXPECT_FALSE(j.lease_expires_at.has_value());
  EXPECT_EQ(j.finished_at, 20);
  const auto& rows = ledger_.rows();
  ASSERT_EQ(rows.results.size(), 1u);
  EXPECT_EQ(rows.results[0].job_id, 1);
  EXPECT_EQ(rows.results[0].call_id, "c1");
  EXPECT_EQ(rows.results[0].range, (seq_range{1, 1}));
  EXPECT_EQ(rows.results[0].text, "hello");
  EXPECT_EQ(rows.results[0].engine, "mock");
  EXPECT_EQ(rows.results[0].latency_ms, 12.5);
  EXPECT_EQ(rows.results[0].created_at, 20);
  EXPECT_FALSE(ledger_.finish(&j, "w", 1, job_succeeded{"again", "mock", 1}, 21))
      << "a finished attempt records nothing more";
  EXPECT_EQ(rows.results.size(), 1u);

  const call_record& call = records_.at("c1");
  EXPECT_EQ(call.jobs_succeeded, 1);
  EXPECT_EQ(call.state, call_state::processing_ai) << "one job of two is outstanding";
  job& other = running(2, "w", 1, 50);
  EXPECT_TRUE(ledger_.finish(&other, "w", 1, job_succeeded{"bye", "mock", 1}, 22));
  EXPECT_EQ(call.jobs_succeeded, 2);
  EXPECT_EQ(call.state, call_state::completed);
}

TEST_F(JobLedger, RetryQueuesTheJobAgainAndLeavesTheCallAlone) {
  job& j = running(1, "w", 1, 50);
  EXPECT_TRUE(ledger_.finish(&j, "w", 1, job_retry{"AI Service Unavailable", 22}, 20));
  EXPECT_EQ(j.state, job_state::queued);
  EXPECT_EQ(j.run_at, 22);
  EXPECT_EQ(j.attempts, 1) << "the failed attempt counts";
  EXPECT_EQ(j.last_error, "AI Service Unavailable");
  EXPECT_FALSE(j.lease_owner.has_value());
  EXPECT_FALSE(j.finished_at.has_value());
  EXPECT_TRUE(ledger_.rows().results.empty());
  EXPECT_EQ(lookups_, 0);
  EXPECT_FALSE(ledger_.queued_now()) << "due later: the claim's next_run_at tells the workers";
}

TEST_F(JobLedger, DeadKeepsItsErrorAndFailsTheCall) {
  job& j = running(1, "w", 2, 50);
  EXPECT_TRUE(ledger_.finish(&j, "w", 2, job_dead{"failed after 2 attempts: boom"}, 20));
  EXPECT_EQ(j.state, job_state::dead);
  EXPECT_EQ(j.last_error, "failed after 2 attempts: boom");
  EXPECT_EQ(j.finished_at, 20);
  EXPECT_TRUE(ledger_.rows().results.empty());
  EXPECT_EQ(records_.at("c1").jobs_dead, 1);
  EXPECT_EQ(records_.at("c1").state, call_state::failed);
}

TEST_F(JobLedger, ReleaseGivesTheAttemptBackAndWakesTheWorkers) {
  job& j = running(1, "w", 2, 50);
  EXPECT_FALSE(ledger_.release(&j, "w", 1, 20));
  EXPECT_TRUE(ledger_.release(&j, "w", 2, 20));
  EXPECT_EQ(j.state, job_state::queued);
  EXPECT_EQ(j.attempts, 1);
  EXPECT_EQ(j.run_at, 20) << "due at once";
  EXPECT_FALSE(j.lease_owner.has_value());
  EXPECT_TRUE(ledger_.queued_now());
  EXPECT_EQ(lookups_, 0) << "the job is still outstanding: the call does not change";
  EXPECT_FALSE(ledger_.release(&j, "w", 1, 21)) << "a released job is no longer held";
}

TEST_F(JobLedger, OnlyADeadJobIsReplayedWithFreshAttempts) {
  EXPECT_EQ(ledger_.replay(nullptr, 20).error(), errc::not_found);
  job& queued = add(1);
  EXPECT_EQ(ledger_.replay(&queued, 20).error(), errc::job_not_dead);
  EXPECT_TRUE(ledger_.rows().empty());

  job& j = running(2, "w", 3, 50);
  ASSERT_TRUE(ledger_.finish(&j, "w", 3, job_dead{"boom"}, 20));
  EXPECT_EQ(records_.at("c1").state, call_state::failed);
  auto replayed = ledger_.replay(&j, 30);
  ASSERT_TRUE(replayed.has_value());
  EXPECT_EQ(replayed->state, job_state::queued);
  EXPECT_EQ(replayed->attempts, 0);
  EXPECT_EQ(replayed->run_at, 30);
  EXPECT_FALSE(replayed->finished_at.has_value());
  EXPECT_EQ(replayed->last_error, "boom") << "why it had died stays until a new attempt says otherwise";
  EXPECT_TRUE(ledger_.queued_now());
  const call_record& call = records_.at("c1");
  EXPECT_EQ(call.jobs_dead, 0);
  EXPECT_EQ(call.state, call_state::processing_ai) << "the call waits for the replayed job again";
  EXPECT_EQ(ledger_.replay(&j, 31).error(), errc::job_not_dead);
}

TEST_F(JobLedger, AJobChangedTwiceInABatchIsWrittenOnceInItsLatestState) {
  job& j = running(1, "w", 1, 50);
  ASSERT_TRUE(ledger_.renew(&j, "w", 1, 30, 20));
  ASSERT_TRUE(ledger_.finish(&j, "w", 1, job_retry{"again", 25}, 21));
  ASSERT_EQ(ledger_.rows().jobs.size(), 1u);
  EXPECT_EQ(ledger_.rows().jobs[0].state, job_state::queued);
  EXPECT_EQ(ledger_.rows().jobs[0].run_at, 25);
  ledger_.begin();
  EXPECT_TRUE(ledger_.rows().empty());
  EXPECT_FALSE(ledger_.queued_now());
}

TEST(JobLedgerTimes, EarliestOfTwoOptionalTimes) {
  EXPECT_EQ(job_ledger::earliest(std::nullopt, std::nullopt), std::nullopt);
  EXPECT_EQ(job_ledger::earliest(3.0, std::nullopt), 3.0);
  EXPECT_EQ(job_ledger::earliest(std::nullopt, 4.0), 4.0);
  EXPECT_EQ(job_ledger::earliest(5.0, 4.0), 4.0);
}

partial_op partial(std::int64_t id, const std::string& owner, int attempt, std::string text) {
  return partial_op{id, owner, attempt, std::move(text), 1500, {}, std::nullopt};
}

TEST_F(JobLedger, OnlyTheRunningAttemptRecordsAPartialAndEveryChangeOfHandsDropsIt) {
  running(1, "w1", 2, 100);
  EXPECT_TRUE(ledger_.hear(&table_[0], partial(1, "w1", 2, "go for"), 20));
  EXPECT_TRUE(ledger_.hear(&table_[0], partial(1, "w1", 2, "go forward"), 21));
  ASSERT_EQ(ledger_.rows().partials.size(), 1u) << "the latest replaces the earlier one";
  const auto& row = ledger_.rows().partials[0].row;
  ASSERT_TRUE(row.has_value());
  EXPECT_EQ(row->text, "go forward");
  EXPECT_EQ(row->attempt, 2);
  EXPECT_EQ(row->call_id, "c1");
  EXPECT_EQ(row->heard_ms, 1500);
  EXPECT_EQ(row->updated_at, 21);
  EXPECT_FALSE(ledger_.hear(&table_[0], partial(1, "w1", 1, "stale"), 22)) << "an earlier attempt";
  EXPECT_FALSE(ledger_.hear(&table_[0], partial(1, "w2", 2, "other"), 22)) << "another owner";
  EXPECT_FALSE(ledger_.hear(nullptr, partial(9, "w1", 2, "none"), 22));

  ASSERT_TRUE(ledger_.finish(&table_[0], "w1", 2, job_succeeded{"go forward ten meters", "pocketsphinx", 5}, 23));
  ASSERT_EQ(ledger_.rows().partials.size(), 1u);
  EXPECT_FALSE(ledger_.rows().partials[0].row.has_value()) << "the result replaces the partial";
  ASSERT_EQ(ledger_.rows().results.size(), 1u);
  EXPECT_FALSE(ledger_.hear(&table_[0], partial(1, "w1", 2, "late"), 24)) << "after its outcome";
  EXPECT_FALSE(ledger_.rows().partials[0].row.has_value());

  ledger_.begin();
  running(2, "w1", 1, 100);
  ASSERT_TRUE(ledger_.hear(&table_[1], partial(2, "w1", 1, "ten"), 20));
  ASSERT_TRUE(ledger_.release(&table_[1], "w1", 1, 21));
  EXPECT_FALSE(ledger_.rows().partials[0].row.has_value()) << "a release drops it";

  ledger_.begin();
  running(3, "gone", 1, 5);  // its lease expires: another worker takes it
  auto c = ledger_.claim(reads(20), "w2", 1, 30, 20);
  ASSERT_EQ(c.jobs.size(), 1u);
  ASSERT_EQ(ledger_.rows().partials.size(), 1u);
  EXPECT_EQ(ledger_.rows().partials[0].job_id, 3);
  EXPECT_FALSE(ledger_.rows().partials[0].row.has_value()) << "the expired attempt's partial goes";
}

}  // namespace
}  // namespace aipbx
