// The store-wide event log (storage/event_log.hpp), through every backend (contract_backends.hpp): which
// events each change tells, in the same transaction; ids consecutive, in commit order, never given twice
// (also across a restart and under concurrent writers); filters; retention.
#include "storage/contract_backends.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <set>
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

class EventLog : public ::testing::TestWithParam<job_backend> {
 protected:
  void SetUp() override { open(); }
  void open() {
    store_.reset();
    store_ = GetParam().make(dir_.string(), settings_);
  }
  job_store_settings& settings() { return settings_; }

  void put(const std::string& call, std::int64_t seq) {
    auto r = wait_for<result<ingest_outcome>>([&](auto done) {
      store_->ingest(packet{call, seq, "d" + std::to_string(seq), 1.0, std::nullopt}, done);
    });
    ASSERT_TRUE(r.has_value()) << r.error().message();
  }
  std::vector<job> claim() {
    auto r = wait_for<result<claim_result>>([&](auto done) { store_->claim("w", 10, 30, done); });
    EXPECT_TRUE(r.has_value());
    return r ? r->jobs : std::vector<job>{};
  }
  void finish(const job& j, job_outcome o) {
    auto r = wait_for<result<bool>>([&](auto done) { store_->finish(j.id, "w", j.attempts, o, done); });
    ASSERT_TRUE(r.has_value() && *r);
  }
  void end(const std::string& call) {
    auto r = wait_for<result<call_state>>([&](auto done) { store_->end_call(call, "ended by request", done); });
    ASSERT_TRUE(r.has_value());
  }
  // Every durable event after `after`, read a page of `page` at a time.
  std::vector<logged_event> all(std::int64_t after = 0, const event_filter& filter = {}, std::size_t page = 1000) {
    std::vector<logged_event> out;
    for (;;) {
      auto r = store_->read_log(after, std::nullopt, filter, page);
      EXPECT_TRUE(r.has_value());
      if (!r) return out;
      out.insert(out.end(), r->events.begin(), r->events.end());
      if (r->scanned_to == after) return out;
      after = r->scanned_to;
    }
  }
  static std::vector<std::string> kinds(const std::vector<logged_event>& events) {
    std::vector<std::string> out;
    for (const auto& e : events) out.emplace_back(to_string(e.kind));
    return out;
  }
  std::int64_t head() { return store_->log_head().value(); }

  test::temp_dir dir_{"aipbx-events"};  // first: removed last, after the store whose files it holds
  std::atomic<double> now_{1000.0};
  job_store_settings settings_ = [this] {
    job_store_settings s;
    s.segment_idle = 5.0;
    s.sweep_interval = std::chrono::milliseconds(5);
    s.max_attempts = 2;
    s.clock = [this] { return now_.load(); };
    s.node = "w";
    return s;
  }();
  std::unique_ptr<storage_backend> store_;
};

TEST_P(EventLog, APacketTellsItsCallAndSegmentAndTheJobItsLife) {
  put("c1", 1);
  auto events = all();
  ASSERT_EQ(kinds(events), (std::vector<std::string>{"call.created", "segment.cut"}));
  EXPECT_EQ(events[0].id, 1);
  EXPECT_EQ(events[1].id, 2);
  EXPECT_EQ(events[0].call_id, "c1");
  EXPECT_EQ(events[0].data, R"({"reason":"first packet"})");
  EXPECT_EQ(events[1].data, R"({"first":1,"last":1})");
  EXPECT_DOUBLE_EQ(events[1].at, 1000.0);
  EXPECT_FALSE(events[1].job_id);

  auto jobs = claim();
  ASSERT_EQ(jobs.size(), 1u);
  finish(jobs[0], job_succeeded{"hello \"world\"", "mock", 12.5});
  end("c1");
  events = all(2);
  ASSERT_EQ(kinds(events), (std::vector<std::string>{"job.claimed", "job.succeeded", "transcript.final", "call.ended",
                                                     "call.state_changed", "call.state_changed"}));
  EXPECT_EQ(events[0].job_id, jobs[0].id);
  EXPECT_EQ(events[0].data,
            R"({"first":1,"last":1,"attempt":1,"max_attempts":2,"owner":"w","lease_expires_at":1030.0})");
  EXPECT_EQ(events[1].data, R"({"first":1,"last":1,"attempt":1,"engine":"mock","latency_ms":12.5})");
  EXPECT_EQ(events[2].data, R"({"first":1,"last":1,"text":"hello \"world\"","engine":"mock","latency_ms":12.5})");
  EXPECT_EQ(events[3].data, R"({"reason":"ended by request","last_sequence":1,"packets_received":1,"lost_packets":0})");
  EXPECT_EQ(events[4].data, R"({"from":"IN_PROGRESS","to":"PROCESSING_AI","reason":"ended by request"})");
  EXPECT_EQ(events[5].data, R"({"from":"PROCESSING_AI","to":"COMPLETED","reason":"ai jobs settled"})");
  EXPECT_EQ(head(), 8);
}

TEST_P(EventLog, GapsOpenFillAndAreLost) {
  put("g", 1);
  put("g", 4);  // 2 and 3 missing
  put("g", 3);
  end("g");     // 2 is lost
  event_filter gaps;
  gaps.kinds = {event_kind::gap_opened, event_kind::gap_filled, event_kind::gap_lost};
  auto events = all(0, gaps);
  ASSERT_EQ(kinds(events), (std::vector<std::string>{"gap.opened", "gap.filled", "gap.lost"}));
  EXPECT_EQ(events[0].data, R"({"first":2,"last":3})");
  EXPECT_EQ(events[1].data, R"({"sequence":3,"first":2,"last":3,"closed":false})");
  EXPECT_EQ(events[2].data, R"({"first":2,"last":2})");
}

TEST_P(EventLog, FailedAttemptsDeadJobsAndReplaysAreTold) {
  put("f", 1);
  auto jobs = claim();
  ASSERT_EQ(jobs.size(), 1u);
  finish(jobs[0], job_retry{"engine timeout", 1001.0});
  now_ = 1002.0;
  jobs = claim();
  ASSERT_EQ(jobs.size(), 1u);
  finish(jobs[0], job_dead{"bad audio"});
  auto replayed = wait_for<result<job>>([&](auto done) { store_->replay(jobs[0].id, done); });
  ASSERT_TRUE(replayed.has_value());
  event_filter of_jobs;
  of_jobs.kinds = {event_kind::job_claimed, event_kind::job_failed, event_kind::job_dead, event_kind::job_replayed};
  auto events = all(0, of_jobs);
  ASSERT_EQ(kinds(events), (std::vector<std::string>{"job.claimed", "job.failed", "job.claimed", "job.failed",
                                                     "job.dead", "job.replayed"}));
  EXPECT_EQ(events[1].data, R"({"first":1,"last":1,"attempt":1,"error":"engine timeout","next_run_at":1001.0})");
  EXPECT_EQ(events[3].data, R"({"first":1,"last":1,"attempt":2,"error":"bad audio","next_run_at":null})");
  EXPECT_EQ(events[4].data, R"({"first":1,"last":1,"attempts":2,"error":"bad audio"})");
  EXPECT_EQ(events[5].data, R"({"first":1,"last":1})");
}

TEST_P(EventLog, PartialHypothesesAreToldThenTheFinalText) {
  put("p", 1);
  auto jobs = claim();
  ASSERT_EQ(jobs.size(), 1u);
  const auto hear = [&](const std::string& owner, int attempt, std::string text, std::int64_t heard_ms) {
    return wait_for<result<bool>>(
        [&](auto done) { store_->record_partial(jobs[0].id, owner, attempt, std::move(text), heard_ms, done); });
  };
  ASSERT_TRUE(hear("w", jobs[0].attempts, "go", 1000).value());
  ASSERT_TRUE(hear("w", jobs[0].attempts, "go forward", 2000).value());
  // Not the lease's holder: nothing is heard, nothing is told.
  EXPECT_FALSE(hear("someone else", jobs[0].attempts, "stop", 3000).value());
  finish(jobs[0], job_succeeded{"go forward ten meters", "mock", 5});
  // An outcome is answered before the flush and its events are read once durable: a packet, answered
  // after its flush, makes everything committed before it durable.
  put("p", 2);
  event_filter f;
  f.kinds = {event_kind::transcript_partial, event_kind::transcript_final};
  auto events = all(0, f);
  ASSERT_EQ(kinds(events), (std::vector<std::string>{"transcript.partial", "transcript.partial", "transcript.final"}));
  EXPECT_EQ(events[0].data, R"({"first":1,"last":1,"attempt":1,"text":"go","heard_s":1.0})");
  EXPECT_EQ(events[1].data, R"({"first":1,"last":1,"attempt":1,"text":"go forward","heard_s":2.0})");
  EXPECT_EQ(events[0].job_id, jobs[0].id);
  EXPECT_EQ(events[2].call_id, "p");
}

TEST_P(EventLog, CallEventsAndDtmfAreLogged) {
  put("d", 1);
  auto id = wait_for<result<std::int64_t>>([&](auto done) {
    store_->record_event(call_event{0, "d", "dtmf", 0, 1, R"({"digit":"5"})"}, done);
  });
  ASSERT_TRUE(id.has_value());
  auto mark = wait_for<result<std::int64_t>>([&](auto done) {
    store_->record_event(call_event{0, "d", "mark", 0, std::nullopt, R"({"name":"m1"})"}, done);
  });
  ASSERT_TRUE(mark.has_value());
  event_filter f;
  f.kinds = {event_kind::dtmf, event_kind::call_event};
  auto events = all(0, f);
  ASSERT_EQ(kinds(events), (std::vector<std::string>{"dtmf", "call.event"}));
  EXPECT_EQ(events[0].data, R"({"kind":"dtmf","sequence":1,"data":{"digit":"5"}})");
  EXPECT_EQ(events[1].data, R"({"kind":"mark","sequence":null,"data":{"name":"m1"}})");
}

TEST_P(EventLog, FiltersPagesAndBounds) {
  for (std::int64_t s = 1; s <= 3; ++s) put("a", s);
  for (std::int64_t s = 1; s <= 3; ++s) put("b", s);
  ASSERT_EQ(head(), 8);  // two calls created, six segments
  event_filter of_b;
  of_b.call_id = "b";
  auto b = all(0, of_b, 2);
  ASSERT_EQ(b.size(), 4u);
  for (const auto& e : b) EXPECT_EQ(e.call_id, "b");
  EXPECT_EQ(b.front().id, 5);

  // A page stops at its limit and says where; a bound stops the read below the head.
  auto page = store_->read_log(0, std::nullopt, {}, 3).value();
  ASSERT_EQ(page.events.size(), 3u);
  EXPECT_EQ(page.scanned_to, 3);
  auto bounded = store_->read_log(3, 6, of_b, 100).value();
  ASSERT_EQ(bounded.events.size(), 2u);  // b created (5), b's first segment (6)
  EXPECT_EQ(bounded.scanned_to, 6);
  // Nothing matches: the whole range was scanned all the same.
  event_filter none;
  none.call_id = "nobody";
  auto empty = store_->read_log(0, std::nullopt, none, 10).value();
  EXPECT_TRUE(empty.events.empty());
  EXPECT_EQ(empty.scanned_to, 8);
  // Past the head: nothing, and no move backwards.
  EXPECT_EQ(store_->read_log(50, std::nullopt, {}, 10).value().scanned_to, 50);
}

TEST_P(EventLog, IdsGoOnAfterARestart) {
  put("r", 1);
  ASSERT_EQ(head(), 2);
  open();
  EXPECT_EQ(head(), 2);
  put("r", 2);
  auto events = all();
  ASSERT_EQ(events.size(), 3u);
  EXPECT_EQ(events[2].id, 3);
  EXPECT_EQ(kinds(events)[2], "segment.cut");
}

TEST_P(EventLog, OldEventsArePrunedAndReadersAreToldHowFar) {
  settings().event_retention = 60;
  open();
  put("old", 1);
  put("old", 2);
  now_ = 1100.0;
  put("new", 1);  // events at 1100
  ASSERT_EQ(head(), 5);
  // The sweep prunes once a second at most, what is older than 60 s: the first three events.
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
  std::int64_t pruned = 0;
  while (std::chrono::steady_clock::now() < deadline) {
    now_ = now_.load() + 1.5;
    pruned = store_->read_log(0, std::nullopt, {}, 10).value().pruned_through;
    if (pruned > 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  ASSERT_EQ(pruned, 3);
  auto page = store_->read_log(0, std::nullopt, {}, 10).value();
  ASSERT_EQ(page.events.size(), 2u);
  EXPECT_EQ(page.events[0].id, 4);
  EXPECT_EQ(page.events[0].call_id, "new");
  EXPECT_GE(store_->stats().events_pruned, 3u);
  // Pruning never gives an id again.
  put("new", 2);
  EXPECT_EQ(head(), 6);
}

TEST_P(EventLog, TheListenerHearsOfDurableEvents) {
  std::atomic<int> heard{0};
  store_->on_events([&] { ++heard; });
  put("l", 1);
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (heard.load() == 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_GT(heard.load(), 0);
  store_->on_events(nullptr);
}

// Writers commit concurrently (several clients, and on PostgreSQL several writer threads) while a reader
// follows the log by its last id: it sees every id once, in order, without a hole, and every packet's
// segment exactly once.
TEST_P(EventLog, AReaderFollowingTheLogMissesNothingWhileWritersCommit) {
  settings().writers = 3;
  open();
  constexpr int clients = 4;
  constexpr std::int64_t per_client = 150;
  std::atomic<bool> done{false};
  std::vector<logged_event> seen;
  std::thread reader([&] {
    std::int64_t after = 0;
    for (;;) {
      const bool last = done.load();
      auto page = store_->read_log(after, std::nullopt, {}, 37);
      ASSERT_TRUE(page.has_value());
      seen.insert(seen.end(), page->events.begin(), page->events.end());
      if (last && page->scanned_to == after) return;
      after = page->scanned_to;
    }
  });
  std::vector<std::thread> writers;
  for (int t = 0; t < clients; ++t)
    writers.emplace_back([&, t] {
      for (std::int64_t s = 1; s <= per_client; ++s) put("w" + std::to_string(t), s);
    });
  for (auto& w : writers) w.join();
  done = true;
  reader.join();
  ASSERT_EQ(seen.size(), static_cast<std::size_t>(clients * (per_client + 1)));
  for (std::size_t i = 0; i < seen.size(); ++i) ASSERT_EQ(seen[i].id, static_cast<std::int64_t>(i + 1));
  std::map<std::string, std::set<std::string>> segments;
  for (const auto& e : seen) {
    if (e.kind == event_kind::segment_cut) {
      EXPECT_TRUE(segments[e.call_id].insert(e.data).second) << e.data;
    }
  }
  for (int t = 0; t < clients; ++t) EXPECT_EQ(segments["w" + std::to_string(t)].size(), static_cast<std::size_t>(per_client));
}

INSTANTIATE_TEST_SUITE_P(Backends, EventLog, ::testing::ValuesIn(job_store_backends()),
                         [](const ::testing::TestParamInfo<job_backend>& p) { return p.param.name; });

}  // namespace
}  // namespace aipbx
