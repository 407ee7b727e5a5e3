// The job queue's state machine, through every backend (contract_backends.hpp), with a fake clock: no sleeps
// decide anything (time moves only when a test moves it).
#include "storage/contract_backends.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <memory>
#include <thread>

namespace aipbx {
namespace {

template <class R, class Start>
R wait_for(Start start) {
  auto promise = std::make_shared<std::promise<R>>();
  auto future = promise->get_future();
  start([promise](R r) { promise->set_value(std::move(r)); });
  return future.get();
}

class JobStore : public ::testing::TestWithParam<job_backend> {
 protected:
  void SetUp() override { open(); }
  void open(std::int64_t segment_packets = 1, bool cut_audio_outside = false) {
    store_.reset();
    job_store_settings o;
    o.segment_packets = segment_packets;
    if (cut_audio_outside) o.cut_outside = [](const std::optional<media_declaration>& m) { return m.has_value(); };
    o.segment_idle = 5.0;
    o.sweep_interval = std::chrono::milliseconds(5);
    o.max_attempts = 3;
    o.clock = [this] {
      ++clock_reads_;
      return now_.load();
    };
    o.node = "w";
    store_ = GetParam().make(dir_.string(), o);
  }

  ingest_outcome put(const std::string& call, std::int64_t seq, const std::string& data = "") {
    auto r = wait_for<result<ingest_outcome>>(
        [&](auto done) { store_->ingest(packet{call, seq, data.empty() ? "d" + std::to_string(seq) : data, 1.0, std::nullopt}, done); });
    EXPECT_TRUE(r.has_value());
    return r.value();
  }
  void declare_audio(const std::string& call) {
    auto r = wait_for<result<declare_outcome>>(
        [&](auto done) { store_->declare_media(call, media_declaration{"pcmu/8000", 20}, done); });
    ASSERT_TRUE(r.has_value());
  }
  void put_audio(const std::string& call, std::int64_t seq) {
    auto r = wait_for<result<ingest_outcome>>([&](auto done) {
      store_->ingest(packet{call, seq, "d" + std::to_string(seq), 1.0, std::string("pcmu/8000")}, done);
    });
    ASSERT_TRUE(r.has_value());
  }
  result<bool> cut(const std::string& call, seq_range range) {
    return wait_for<result<bool>>([&](auto done) { store_->cut_segment(call, range, done); });
  }
  claim_result claim(const std::string& owner, std::size_t n = 10, double lease = 30) {
    auto r = wait_for<result<claim_result>>([&](auto done) { store_->claim(owner, n, lease, done); });
    EXPECT_TRUE(r.has_value());
    return r.value();
  }
  bool finish(const job& j, const std::string& owner, job_outcome o) {
    auto r = wait_for<result<bool>>([&](auto done) { store_->finish(j.id, owner, j.attempts, o, done); });
    EXPECT_TRUE(r.has_value());
    return r.value();
  }
  bool renew(const job& j, const std::string& owner, double lease = 30) {
    auto r = wait_for<result<bool>>([&](auto done) { store_->renew(j.id, owner, j.attempts, lease, done); });
    EXPECT_TRUE(r.has_value());
    return r.value();
  }
  // Moves the clock to `t` and returns once the store has swept at `t`. With nothing else queued, the
  // writer commits only to sweep, and reads the clock once per commit: the first read after the move is
  // a sweep at `t`, and a write queued after that read is answered after that sweep has committed.
  void sweep_at(double t) {
    now_ = t;
    const int reads = clock_reads_.load();
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    while (clock_reads_.load() == reads && std::chrono::steady_clock::now() < deadline)
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    ASSERT_GT(clock_reads_.load(), reads) << "the store never swept";
    job nobody;
    nobody.id = -1;
    EXPECT_FALSE(renew(nobody, "nobody"));  // a round trip through the writer, behind that sweep
  }
  std::vector<job> jobs_of(const std::string& call) {
    job_query q;
    q.call_id = call;
    q.limit = 1000;
    return store_->list_jobs(q).value().jobs;
  }

  // count_jobs against the jobs themselves, listed one by one: every figure, and the oldest due job.
  void expect_counts_exact(const char* after) {
    job_query all;
    all.limit = 1000;
    job_counts listed;
    for (const auto& j : store_->list_jobs(all).value().jobs) {
      job_tally one;
      one.add(j.state, j.attempts, 1);
      listed.queued += one.queued;
      listed.retrying += one.retrying;
      listed.running += one.running;
      listed.succeeded += one.succeeded;
      listed.dead += one.dead;
      if (j.state == job_state::queued && j.run_at <= now_.load())
        listed.oldest_due_at = std::min(listed.oldest_due_at.value_or(j.run_at), j.run_at);
    }
    const auto counts = store_->count_jobs().value();
    EXPECT_EQ(counts.queued, listed.queued) << after;
    EXPECT_EQ(counts.retrying, listed.retrying) << after;
    EXPECT_EQ(counts.running, listed.running) << after;
    EXPECT_EQ(counts.succeeded, listed.succeeded) << after;
    EXPECT_EQ(counts.dead, listed.dead) << after;
    EXPECT_EQ(counts.oldest_due_at, listed.oldest_due_at) << after;
  }

  test::temp_dir dir_{"aipbx-jobs"};  // first of the data members: removed last, after the store whose files it holds
  std::atomic<double> now_{1000.0};
  std::atomic<int> clock_reads_{0};
  std::unique_ptr<storage_backend> store_;
};

TEST_P(JobStore, PacketCreatesADueJobInTheSameCommit) {
  put("c1", 1);
  auto js = jobs_of("c1");
  ASSERT_EQ(js.size(), 1u);
  EXPECT_EQ(js[0].state, job_state::queued);
  EXPECT_EQ(js[0].first_sequence, 1);
  EXPECT_EQ(js[0].last_sequence, 1);
  EXPECT_EQ(js[0].attempts, 0);
  EXPECT_EQ(js[0].max_attempts, 3);
  EXPECT_DOUBLE_EQ(js[0].run_at, 1000.0);
}

TEST_P(JobStore, DuplicatePacketCreatesNoSecondJob) {
  put("c1", 1, "same");
  put("c1", 1, "same");
  EXPECT_EQ(jobs_of("c1").size(), 1u);
}

TEST_P(JobStore, ClaimLeasesAndCountsTheAttempt) {
  put("c1", 1);
  auto c = claim("w1");
  ASSERT_EQ(c.jobs.size(), 1u);
  const job& j = c.jobs[0];
  EXPECT_EQ(j.state, job_state::running);
  EXPECT_EQ(j.attempts, 1);
  EXPECT_EQ(j.lease_owner, "w1");
  EXPECT_DOUBLE_EQ(*j.lease_expires_at, 1030.0);
  EXPECT_TRUE(claim("w2").jobs.empty()) << "a leased job is not claimed twice";
}

TEST_P(JobStore, SuccessStoresOneResultAndIsFenced) {
  put("c1", 1, "hello");
  job j = claim("w1").jobs.at(0);
  EXPECT_TRUE(finish(j, "w1", job_succeeded{"hello", "mock", 3}));
  EXPECT_FALSE(finish(j, "w1", job_succeeded{"again", "mock", 3})) << "a finished attempt records nothing more";
  auto t = store_->transcript("c1").value();
  ASSERT_EQ(t.size(), 1u);
  EXPECT_EQ(t[0].text, "hello");
  EXPECT_EQ(store_->get_job(j.id).value().state, job_state::succeeded);
  EXPECT_TRUE(store_->get_job(j.id).value().finished_at.has_value());
}

TEST_P(JobStore, RetryIsNotDueBeforeItsTime) {
  put("c1", 1);
  job j = claim("w1").jobs.at(0);
  EXPECT_TRUE(finish(j, "w1", job_retry{"AI Service Unavailable", 1002.0}));
  auto early = claim("w1");
  EXPECT_TRUE(early.jobs.empty());
  ASSERT_TRUE(early.next_run_at.has_value());
  EXPECT_DOUBLE_EQ(*early.next_run_at, 1002.0);
  now_ = 1001.999;
  EXPECT_TRUE(claim("w1").jobs.empty());
  now_ = 1002.0;
  auto due = claim("w1");
  ASSERT_EQ(due.jobs.size(), 1u);
  EXPECT_EQ(due.jobs[0].attempts, 2);
  EXPECT_EQ(due.jobs[0].last_error, "AI Service Unavailable");
}

TEST_P(JobStore, ExpiredLeaseIsTakenOverAndTheOldWorkerIsFencedOut) {
  put("c1", 1);
  job first = claim("w1", 10, 2.0).jobs.at(0);
  now_ = 1001.0;
  EXPECT_TRUE(renew(first, "w1", 2.0)) << "renewal extends to 1003";
  EXPECT_FALSE(renew(first, "w2", 2.0)) << "only the owner renews";
  now_ = 1002.5;
  EXPECT_TRUE(claim("w2").jobs.empty()) << "renewed lease still holds";
  now_ = 1003.5;
  auto taken = claim("w2");
  ASSERT_EQ(taken.jobs.size(), 1u);
  EXPECT_EQ(taken.jobs[0].attempts, 2);
  EXPECT_EQ(taken.jobs[0].lease_owner, "w2");
  EXPECT_FALSE(finish(first, "w1", job_succeeded{"late", "mock", 1})) << "the old attempt records nothing";
  EXPECT_TRUE(finish(taken.jobs[0], "w2", job_succeeded{"ok", "mock", 1}));
  EXPECT_EQ(store_->transcript("c1").value().size(), 1u);
}

TEST_P(JobStore, LeaseExpiringOnTheLastAttemptKillsTheJob) {
  put("c1", 1);
  for (int attempt = 1; attempt <= 3; ++attempt) {
    auto c = claim("w", 10, 1.0);
    ASSERT_EQ(c.jobs.size(), 1u) << attempt;
    EXPECT_EQ(c.jobs[0].attempts, attempt);
    now_ = now_ + 2.0;
  }
  EXPECT_TRUE(claim("w").jobs.empty());
  auto j = jobs_of("c1").at(0);
  EXPECT_EQ(j.state, job_state::dead);
  EXPECT_TRUE(j.last_error.has_value());
}

TEST_P(JobStore, DeadJobIsReplayedWithFreshAttempts) {
  put("c1", 1);
  job j = claim("w").jobs.at(0);
  EXPECT_TRUE(finish(j, "w", job_dead{"failed after 1 attempts: boom"}));
  EXPECT_EQ(store_->get_call("c1").value().jobs_dead, 1);
  auto replayed = wait_for<result<job>>([&](auto done) { store_->replay(j.id, done); });
  ASSERT_TRUE(replayed.has_value());
  EXPECT_EQ(replayed->state, job_state::queued);
  EXPECT_EQ(replayed->attempts, 0);
  EXPECT_FALSE(replayed->finished_at.has_value());
  auto again = wait_for<result<job>>([&](auto done) { store_->replay(j.id, done); });
  EXPECT_EQ(again.error(), errc::job_not_dead);
  auto missing = wait_for<result<job>>([&](auto done) { store_->replay(9999, done); });
  EXPECT_EQ(missing.error(), errc::not_found);
  EXPECT_EQ(claim("w").jobs.at(0).attempts, 1);
}

TEST_P(JobStore, ReleaseGivesTheAttemptBack) {
  put("c1", 1);
  job j = claim("w").jobs.at(0);
  auto released = wait_for<result<bool>>([&](auto done) { store_->release(j.id, "w", j.attempts, done); });
  EXPECT_TRUE(released.value());
  auto again = claim("w").jobs.at(0);
  EXPECT_EQ(again.attempts, 1);
}

TEST_P(JobStore, RestartRequeuesRunningJobsWithoutCountingTheInterruptedAttempt) {
  put("c1", 1);
  put("c1", 2);
  auto c = claim("w", 1);
  ASSERT_EQ(c.jobs.size(), 1u);
  open();
  auto js = jobs_of("c1");
  ASSERT_EQ(js.size(), 2u);
  for (const auto& j : js) {
    EXPECT_EQ(j.state, job_state::queued);
    EXPECT_EQ(j.attempts, 0);
    EXPECT_FALSE(j.lease_owner.has_value());
  }
  expect_counts_exact("after the restart");
}

TEST_P(JobStore, SegmentsAreCutFromContiguousPacketsOnly) {
  open(3);
  for (std::int64_t s : {1, 2, 4, 5}) put("c1", s);
  EXPECT_TRUE(jobs_of("c1").empty()) << "3 is missing: nothing contiguous to cut";
  put("c1", 3);
  auto js = jobs_of("c1");
  ASSERT_EQ(js.size(), 1u);
  EXPECT_EQ(js[0].first_sequence, 1);
  EXPECT_EQ(js[0].last_sequence, 3);
  put("c1", 6);
  js = jobs_of("c1");
  ASSERT_EQ(js.size(), 2u);
  EXPECT_EQ(js[1].first_sequence, 4);
  EXPECT_EQ(js[1].last_sequence, 6);
  EXPECT_EQ(store_->get_call("c1").value().next_segment, 7);
}

TEST_P(JobStore, IdleCallGetsItsLastPartialSegment) {
  open(3);
  for (std::int64_t s : {1, 2, 3, 4, 6}) put("c1", s);
  ASSERT_EQ(jobs_of("c1").size(), 1u);
  sweep_at(1004.0);  // idle for 4 s: not yet (segment_idle is 5 s)
  EXPECT_EQ(jobs_of("c1").size(), 1u);
  sweep_at(1006.0);
  auto js = jobs_of("c1");
  ASSERT_EQ(js.size(), 2u);
  EXPECT_EQ(js[1].first_sequence, 4);
  EXPECT_EQ(js[1].last_sequence, 6) << "the missing 5 is inside the last segment; the run reads 4 and 6";
  auto packets = store_->segment_packets("c1", 4, 6).value();
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(packets[0].sequence, 4);
  EXPECT_EQ(packets[1].sequence, 6);
}

TEST_P(JobStore, CallsCutFromOutsideWaitForTheirCuts) {
  open(2, true);
  declare_audio("c1");
  for (std::int64_t s : {1, 2, 3, 4, 5}) put_audio("c1", s);
  put("c2", 1);
  put("c2", 2);
  EXPECT_TRUE(jobs_of("c1").empty()) << "no cut every 2 packets for a call with audio";
  EXPECT_EQ(jobs_of("c2").size(), 1u) << "a call without audio is cut by packets";

  auto uncut = store_->uncut_calls("", 10).value();
  ASSERT_EQ(uncut.size(), 1u);
  EXPECT_EQ(uncut[0].id, "c1");
  EXPECT_EQ(uncut[0].state, call_state::in_progress);
  EXPECT_EQ(uncut[0].next_segment, 1);
  EXPECT_EQ(uncut[0].expected, 6);
  EXPECT_EQ(uncut[0].last_sequence, 5);
  EXPECT_EQ(uncut[0].media, (media_declaration{"pcmu/8000", 20}));
  ASSERT_TRUE(uncut[0].last_packet_at.has_value());

  auto first = cut("c1", {1, 3});
  ASSERT_TRUE(first);
  EXPECT_TRUE(*first);
  auto stale = cut("c1", {1, 3});
  ASSERT_TRUE(stale);
  EXPECT_FALSE(*stale) << "another segmenter made this cut first";
  auto beyond = cut("c1", {4, 6});
  ASSERT_FALSE(beyond);
  EXPECT_EQ(beyond.error(), make_error_code(errc::invalid_input));
  auto unknown = cut("nobody", {1, 1});
  ASSERT_FALSE(unknown);
  EXPECT_EQ(unknown.error(), make_error_code(errc::not_found));
  auto js = jobs_of("c1");
  ASSERT_EQ(js.size(), 1u);
  EXPECT_EQ(js[0].first_sequence, 1);
  EXPECT_EQ(js[0].last_sequence, 3);

  auto ended = wait_for<result<call_state>>([&](auto done) { store_->end_call("c1", "hangup", done); });
  ASSERT_TRUE(ended);
  EXPECT_EQ(*ended, call_state::processing_ai);
  open(2, true);  // a restart keeps what was cut and what was not
  uncut = store_->uncut_calls("", 10).value();
  ASSERT_EQ(uncut.size(), 1u);
  EXPECT_EQ(uncut[0].state, call_state::processing_ai);
  EXPECT_EQ(uncut[0].next_segment, 4);
  EXPECT_TRUE(store_->uncut_calls("c1", 10).value().empty()) << "a page after c1";
  ASSERT_TRUE(cut("c1", {4, 5}).value());
  EXPECT_TRUE(store_->uncut_calls("", 10).value().empty());
  EXPECT_EQ(jobs_of("c1").size(), 2u);
  const auto call = store_->get_call("c1").value();
  EXPECT_EQ(call.next_segment, 6);
  EXPECT_EQ(call.state, call_state::processing_ai) << "its jobs are outstanding";
}

TEST_P(JobStore, APartialIsShownWhileItsAttemptRunsAndTheResultReplacesIt) {
  put("c1", 1);
  put("c1", 2);
  auto c = claim("w", 2, 30);
  ASSERT_EQ(c.jobs.size(), 2u);
  const job& a = c.jobs[0];
  const job& b = c.jobs[1];
  const auto record = [&](const job& j, const std::string& owner, int attempt, const std::string& text) {
    return wait_for<result<bool>>(
        [&](auto done) { store_->record_partial(j.id, owner, attempt, text, 1200, done); });
  };
  EXPECT_TRUE(record(a, "w", a.attempts, "go for").value());
  EXPECT_TRUE(record(a, "w", a.attempts, "go forward").value());
  EXPECT_TRUE(record(b, "w", b.attempts, "ten").value());
  EXPECT_FALSE(record(a, "other", a.attempts, "not mine").value());
  EXPECT_FALSE(record(a, "w", a.attempts + 1, "no such attempt").value());
  auto p = store_->partials("c1").value();
  ASSERT_EQ(p.size(), 2u);
  EXPECT_EQ(p[0].job_id, a.id);
  EXPECT_EQ(p[0].text, "go forward") << "the latest replaces the earlier one";
  EXPECT_EQ(p[0].first_sequence, 1);
  EXPECT_EQ(p[0].heard_ms, 1200);
  EXPECT_DOUBLE_EQ(p[0].updated_at, 1000.0);
  EXPECT_EQ(p[1].text, "ten");
  EXPECT_TRUE(store_->transcript("c1").value().empty()) << "a partial is no result";

  EXPECT_TRUE(finish(a, "w", job_succeeded{"go forward ten", "mock", 3}));
  p = store_->partials("c1").value();
  ASSERT_EQ(p.size(), 1u) << "the result replaced it in the same transaction";
  EXPECT_EQ(p[0].job_id, b.id);
  const auto results = store_->transcript("c1").value();
  ASSERT_EQ(results.size(), 1u);
  EXPECT_EQ(results[0].text, "go forward ten");

  // b's worker dies: once its lease has expired, its partial is not shown, and the next attempt's replaces it.
  now_ = 1031.0;
  EXPECT_TRUE(store_->partials("c1").value().empty()) << "a lease that expired shows nothing";
  auto again = claim("w2", 1, 30);
  ASSERT_EQ(again.jobs.size(), 1u);
  EXPECT_FALSE(record(again.jobs[0], "w", b.attempts, "the dead one").value());
  EXPECT_TRUE(record(again.jobs[0], "w2", again.jobs[0].attempts, "ten meters").value());
  p = store_->partials("c1").value();
  ASSERT_EQ(p.size(), 1u);
  EXPECT_EQ(p[0].text, "ten meters");
  EXPECT_TRUE(finish(again.jobs[0], "w2", job_retry{"busy", 1040.0}));
  EXPECT_TRUE(store_->partials("c1").value().empty()) << "a failed attempt's partial goes with it";
  EXPECT_EQ(store_->partials("nobody").error(), make_error_code(errc::not_found));
}

TEST_P(JobStore, ListenerHearsOfNewJobs) {
  // Shared: a store that also hears its own notification from the database may call the listener again
  // after this body returns, until the store is gone.
  auto heard = std::make_shared<std::atomic<int>>(0);
  store_->on_jobs_queued([heard] { ++*heard; });
  put("c1", 1);
  EXPECT_GE(heard->load(), 1);
}

TEST_P(JobStore, CountsAndFiltersByState) {
  for (std::int64_t s = 1; s <= 4; ++s) put("c1", s);
  auto c = claim("w", 2);
  ASSERT_EQ(c.jobs.size(), 2u);
  EXPECT_TRUE(finish(c.jobs[0], "w", job_dead{"x"}));
  auto counts = store_->count_jobs().value();
  EXPECT_EQ(counts.queued, 2);
  EXPECT_EQ(counts.retrying, 0);
  EXPECT_EQ(counts.running, 1);
  EXPECT_EQ(counts.dead, 1);
  ASSERT_TRUE(counts.oldest_due_at.has_value());
  job_query q;
  q.state = job_state::queued;
  EXPECT_EQ(store_->list_jobs(q).value().jobs.size(), 2u);
  q.limit = 1;
  auto page = store_->list_jobs(q).value();
  ASSERT_EQ(page.jobs.size(), 1u);
  ASSERT_TRUE(page.next_after.has_value());
  q.after = *page.next_after;
  EXPECT_EQ(store_->list_jobs(q).value().jobs.size(), 1u);
  EXPECT_TRUE(finish(c.jobs[1], "w", job_retry{"busy", now_ + 5}));
  counts = store_->count_jobs().value();
  EXPECT_EQ(counts.queued, 3) << "a job waiting out its backoff is queued";
  EXPECT_EQ(counts.retrying, 1) << "and counted apart";
  EXPECT_EQ(counts.running, 0);
  // Every state, alone and with a call, in id order.
  put("c2", 1);
  const auto listed = [&](std::optional<job_state> state, std::optional<std::string> call) {
    job_query all;
    all.state = state;
    all.call_id = std::move(call);
    std::vector<std::int64_t> ids;
    for (const auto& j : store_->list_jobs(all).value().jobs) {
      EXPECT_TRUE(!state || j.state == *state);
      ids.push_back(j.id);
    }
    EXPECT_TRUE(std::is_sorted(ids.begin(), ids.end()));
    return ids.size();
  };
  EXPECT_EQ(listed(job_state::queued, std::nullopt), 4u);
  EXPECT_EQ(listed(job_state::queued, "c1"), 3u);
  EXPECT_EQ(listed(job_state::queued, "c2"), 1u);
  EXPECT_EQ(listed(job_state::running, std::nullopt), 0u);
  EXPECT_EQ(listed(job_state::running, "c2"), 0u);
  EXPECT_EQ(listed(job_state::dead, "c1"), 1u);
  EXPECT_EQ(listed(job_state::succeeded, std::nullopt), 0u);
  EXPECT_EQ(listed(std::nullopt, "c1"), 4u);
  EXPECT_EQ(listed(std::nullopt, "nobody"), 0u);
}

// The counts follow every change of a job's state, each path of it, and a restart.
TEST_P(JobStore, CountsStayExactThroughEveryChange) {
  expect_counts_exact("empty");
  for (std::int64_t s = 1; s <= 6; ++s) put("c1", s);
  expect_counts_exact("queued");
  auto c = claim("w", 6, 10);
  ASSERT_EQ(c.jobs.size(), 6u);
  expect_counts_exact("claimed");
  EXPECT_TRUE(finish(c.jobs[0], "w", job_succeeded{"one", "mock", 1}));
  expect_counts_exact("succeeded");
  EXPECT_TRUE(finish(c.jobs[1], "w", job_retry{"busy", now_ + 5}));
  expect_counts_exact("retry, not due");
  EXPECT_TRUE(finish(c.jobs[2], "w", job_dead{"bad audio"}));
  expect_counts_exact("dead");
  auto released = wait_for<result<bool>>([&](auto done) { store_->release(c.jobs[3].id, "w", 1, done); });
  ASSERT_TRUE(released.value());
  expect_counts_exact("released");
  auto replayed = wait_for<result<job>>([&](auto done) { store_->replay(c.jobs[2].id, done); });
  ASSERT_TRUE(replayed.has_value());
  expect_counts_exact("replayed");
  EXPECT_FALSE(finish(c.jobs[0], "w", job_dead{"again"})) << "a fenced outcome changes nothing";
  expect_counts_exact("fenced");

  // Jobs 5 and 6 are left running. Their leases expire and they are taken over, with the retry, the released
  // and the replayed job; then every lease expires twice more, and three jobs end on their last attempt.
  now_ = 1011.0;
  expect_counts_exact("retry due");
  EXPECT_EQ(claim("w2", 10, 10).jobs.size(), 5u);
  expect_counts_exact("taken over");
  now_ = 1022.0;
  EXPECT_EQ(claim("w3", 10, 10).jobs.size(), 5u);
  expect_counts_exact("taken over again");
  now_ = 1033.0;
  EXPECT_EQ(claim("w", 10, 10).jobs.size(), 2u) << "the other three were on their last attempt";
  expect_counts_exact("dead when their leases expired");
  const auto counts = store_->count_jobs().value();
  EXPECT_EQ(counts.dead, 3);
  EXPECT_EQ(counts.running, 2);
  EXPECT_EQ(counts.succeeded, 1);

  put("c1", 7);
  EXPECT_EQ(claim("w", 1, 10).jobs.size(), 1u);
  open();  // node "w" starts again: its three running jobs go back to the queue, two of them retrying
  expect_counts_exact("restarted");
  EXPECT_EQ(store_->count_jobs().value().retrying, 2);
}

TEST_P(JobStore, NodesAreThoseConnectedAndThoseHoldingLeases) {
  for (std::int64_t s = 1; s <= 3; ++s) put("c1", s);
  ASSERT_EQ(claim("w", 2).jobs.size(), 2u);
  ASSERT_EQ(claim("gone", 1).jobs.size(), 1u);
  const bool shared = GetParam().name == "postgresql";
  std::vector<node_presence> nodes;
  // The listening connection of a shared store connects on a thread of its own.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(20);
  for (;;) {
    nodes = store_->nodes().value();
    const bool told = !shared || (!nodes.empty() && nodes.back().connected_since);
    if (told || std::chrono::steady_clock::now() > deadline) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(nodes.size(), 2u);
  EXPECT_EQ(nodes[0].name, "gone");
  EXPECT_EQ(nodes[0].running_jobs, 1);
  EXPECT_FALSE(nodes[0].connected_since) << "no connection of its own: only its leases";
  EXPECT_EQ(nodes[1].name, "w");
  EXPECT_EQ(nodes[1].running_jobs, 2);
  EXPECT_EQ(nodes[1].connected_since.has_value(), shared) << "a shared database tells who is connected";
}

INSTANTIATE_TEST_SUITE_P(Backends, JobStore, ::testing::ValuesIn(job_store_backends()),
                         [](const ::testing::TestParamInfo<job_backend>& p) { return p.param.name; });

}  // namespace
}  // namespace aipbx
