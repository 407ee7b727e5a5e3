// The event hub's rules over an in-memory log (a fake with the event_log contract): live delivery,
// resume with nothing skipped or doubled while events keep coming, filters, the cut of a slow
// subscriber, the subscriber limit, pruned events, shutdown.
#include "events/event_hub.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <mutex>
#include <thread>

namespace aipbx::events {
namespace {

using namespace std::chrono_literals;

// An event log in memory: events appended by the test are durable at once, and the listener hears of them.
class memory_log final : public event_log {
 public:
  std::int64_t append(event_kind kind, std::string call_id) {
    std::function<void()> l;
    std::int64_t id = 0;
    {
      std::lock_guard lock(mutex_);
      id = static_cast<std::int64_t>(events_.size()) + 1;
      events_.push_back({id, 1000.0 + static_cast<double>(id), kind, std::move(call_id), std::nullopt, "{}"});
      l = listener_;
    }
    if (l) l();
    return id;
  }
  void prune_through(std::int64_t id) {
    std::lock_guard lock(mutex_);
    pruned_ = id;
  }
  result<log_page> read_log(std::int64_t after, std::optional<std::int64_t> up_to, const event_filter& filter,
                            std::size_t limit) override {
    std::lock_guard lock(mutex_);
    log_page page;
    page.pruned_through = pruned_;
    const auto head = static_cast<std::int64_t>(events_.size());
    const std::int64_t end = up_to ? std::min(*up_to, head) : head;
    for (std::int64_t id = std::max(after, pruned_) + 1; id <= end && page.events.size() < limit; ++id) {
      const auto& e = events_[static_cast<std::size_t>(id - 1)];
      if (filter.matches(e)) page.events.push_back(e);
    }
    page.scanned_to = page.events.size() < limit ? std::max(end, after) : page.events.back().id;
    ++reads_;
    return page;
  }
  result<std::int64_t> log_head() override {
    std::lock_guard lock(mutex_);
    return static_cast<std::int64_t>(events_.size());
  }
  void on_events(std::function<void()> listener) override {
    std::lock_guard lock(mutex_);
    listener_ = std::move(listener);
  }

 private:
  std::mutex mutex_;
  std::vector<logged_event> events_;
  std::int64_t pruned_ = 0;
  int reads_ = 0;
  std::function<void()> listener_;
};

// A subscriber's side: takes its queue when woken, as a connection would.
struct reader {
  explicit reader(std::shared_ptr<subscription> s) : sub(std::move(s)) {
    sub->set_waker([this] {
      std::lock_guard lock(mutex);
      woken = true;
      cv.notify_all();
    });
  }
  // Takes until `done` holds of what was taken, or `timeout`.
  template <class Done>
  bool read_until(Done done, std::chrono::milliseconds timeout = 10s) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      for (auto& item : sub->take()) {
        if (auto* slice = std::get_if<page_slice>(&item)) {
          for (std::size_t i = 0; i < slice->size(); ++i) events.push_back(slice->id(i));
        } else {
          notices.push_back(std::get<notice>(item));
        }
      }
      if (done()) return true;
      if (std::chrono::steady_clock::now() >= deadline) return false;
      // Woken by the hub, or a look again soon (some conditions are the hub's, not the queue's).
      std::unique_lock lock(mutex);
      cv.wait_for(lock, 5ms, [&] { return woken; });
      woken = false;
    }
  }
  bool read_count(std::size_t n) { return read_until([&] { return events.size() >= n; }); }

  std::shared_ptr<subscription> sub;
  std::vector<std::int64_t> events;
  std::vector<notice> notices;
  std::mutex mutex;
  std::condition_variable cv;
  bool woken = false;
};

std::vector<std::int64_t> ids(std::int64_t first, std::int64_t last) {
  std::vector<std::int64_t> out;
  for (auto i = first; i <= last; ++i) out.push_back(i);
  return out;
}

class EventHub : public ::testing::Test {
 protected:
  void start(hub_options o = {}) {
    o.poll = 50ms;
    hub_ = std::make_unique<event_hub>(log_, o);
    hub_->start();
  }
  std::shared_ptr<subscription> subscribe(event_filter f = {}, std::optional<std::int64_t> after = std::nullopt) {
    auto s = hub_->subscribe(std::move(f), after, transport::sse);
    EXPECT_TRUE(s.has_value());
    return s ? *s : nullptr;
  }
  void TearDown() override {
    if (hub_) hub_->shutdown();
  }

  memory_log log_;
  std::unique_ptr<event_hub> hub_;
};

TEST_F(EventHub, ALiveSubscriberGetsWhatComesAfterItSubscribed) {
  log_.append(event_kind::call_created, "a");
  start();
  reader r(subscribe());
  // Placed at the head once the hub has read it: wait for the position before appending.
  ASSERT_TRUE(r.read_until([&] { return hub_->stats().position == 1; }));
  for (int i = 0; i < 5; ++i) log_.append(event_kind::segment_cut, "a");
  ASSERT_TRUE(r.read_count(5));
  EXPECT_EQ(r.events, ids(2, 6));
}

TEST_F(EventHub, AResumingSubscriberMissesNothingAndSeesNothingTwiceWhileEventsKeepComing) {
  for (int i = 0; i < 2500; ++i) log_.append(event_kind::segment_cut, "a");
  hub_options o;
  o.page = 100;
  o.buffer = 5000;  // more than comes in a round (--event-buffer must be)
  start(o);
  reader live(subscribe());  // follows the tail meanwhile, on a thread of its own
  bool live_done = false;
  std::thread live_thread(
      [&] { live_done = live.read_until([&] { return !live.events.empty() && live.events.back() == 5500; }); });
  std::thread writer([&] {
    for (int i = 0; i < 3000; ++i) {
      log_.append(event_kind::segment_cut, "a");
      if (i % 50 == 0) std::this_thread::sleep_for(1ms);
    }
  });
  reader resumed(subscribe({}, 1000));
  writer.join();
  ASSERT_TRUE(resumed.read_count(4500)) << resumed.events.size();
  EXPECT_EQ(resumed.events, ids(1001, 5500));
  EXPECT_TRUE(resumed.notices.empty());
  live_thread.join();
  ASSERT_TRUE(live_done);
  EXPECT_TRUE(live.notices.empty());
  for (std::size_t i = 1; i < live.events.size(); ++i) ASSERT_EQ(live.events[i], live.events[i - 1] + 1);
}

TEST_F(EventHub, FiltersByCallAndKind) {
  start();
  event_filter of_b;
  of_b.call_id = "b";
  event_filter gaps;
  gaps.kinds = {event_kind::gap_opened, event_kind::gap_lost};
  reader b(subscribe(of_b, 0));
  reader g(subscribe(gaps, 0));
  log_.append(event_kind::call_created, "a");   // 1
  log_.append(event_kind::call_created, "b");   // 2
  log_.append(event_kind::gap_opened, "a");     // 3
  log_.append(event_kind::gap_opened, "b");     // 4
  log_.append(event_kind::gap_filled, "b");     // 5
  log_.append(event_kind::gap_lost, "a");       // 6
  ASSERT_TRUE(b.read_count(3));
  ASSERT_TRUE(g.read_count(3));
  EXPECT_EQ(b.events, (std::vector<std::int64_t>{2, 4, 5}));
  EXPECT_EQ(g.events, (std::vector<std::int64_t>{3, 4, 6}));
}

TEST_F(EventHub, ASlowSubscriberIsCutWithWhereToResumeAndOthersGoOn) {
  hub_options o;
  o.buffer = 10;
  start(o);
  auto slow = subscribe({}, 0);  // never takes while events come
  event_filter of_b;
  of_b.call_id = "b";
  reader other(subscribe(of_b, 0));
  log_.append(event_kind::call_created, "b");  // 1
  // Once the other has it, both are live at the log's tail.
  ASSERT_TRUE(other.read_count(1));
  for (int i = 0; i < 50; ++i) log_.append(event_kind::segment_cut, "a");
  log_.append(event_kind::call_ended, "b");  // 52
  ASSERT_TRUE(other.read_count(2));
  EXPECT_EQ(other.events, (std::vector<std::int64_t>{1, 52}));
  // The slow one has its ten events, then the notice to resume after the tenth, and nothing more.
  reader r(slow);
  ASSERT_TRUE(r.read_until([&] { return !r.notices.empty(); }));
  EXPECT_EQ(r.events, ids(1, 10));
  EXPECT_EQ(r.notices[0].what, notice::kind::resume);
  EXPECT_EQ(r.notices[0].after, 10);
  EXPECT_EQ(r.notices[0].reason, "slow_subscriber");
  EXPECT_TRUE(slow->finished());
  EXPECT_EQ(hub_->stats().cut_slow, 1u);
  // Resuming there gives the rest.
  reader again(subscribe({}, r.notices[0].after));
  ASSERT_TRUE(again.read_count(42));
  EXPECT_EQ(again.events, ids(11, 52));
  EXPECT_TRUE(again.notices.empty());
}

TEST_F(EventHub, ACatchingUpSubscriberIsReadForAtItsOwnPaceAndNotCut) {
  for (int i = 0; i < 100; ++i) log_.append(event_kind::segment_cut, "a");
  hub_options o;
  o.buffer = 10;
  start(o);
  reader r(subscribe({}, 0));
  ASSERT_TRUE(r.read_count(100));
  EXPECT_EQ(r.events, ids(1, 100));
  EXPECT_TRUE(r.notices.empty());
}

TEST_F(EventHub, TheSubscriberLimitRefusesAndAClosedSlotIsFree) {
  hub_options o;
  o.max_subscribers = 2;
  start(o);
  auto a = subscribe();
  auto b = subscribe();
  auto refused = hub_->subscribe({}, std::nullopt, transport::websocket);
  ASSERT_FALSE(refused.has_value());
  EXPECT_EQ(refused.error(), errc::overloaded);
  EXPECT_EQ(hub_->stats().refused, 1u);
  a->close();
  EXPECT_TRUE(hub_->subscribe({}, std::nullopt, transport::websocket).has_value());
  EXPECT_EQ(hub_->stats().subscribers[static_cast<std::size_t>(transport::websocket)], 1u);
}

TEST_F(EventHub, PrunedEventsAreToldNotSkippedSilently) {
  for (int i = 0; i < 20; ++i) log_.append(event_kind::segment_cut, "a");
  log_.prune_through(12);
  start();
  reader r(subscribe({}, 5));
  ASSERT_TRUE(r.read_count(8));
  ASSERT_EQ(r.notices.size(), 1u);
  EXPECT_EQ(r.notices[0].what, notice::kind::truncated);
  EXPECT_EQ(r.notices[0].requested, 5);
  EXPECT_EQ(r.notices[0].after, 12);
  EXPECT_EQ(r.events, ids(13, 20));
}

TEST_F(EventHub, ShutdownTellsEverySubscriberWhereToResume) {
  for (int i = 0; i < 3; ++i) log_.append(event_kind::segment_cut, "a");
  start();
  reader r(subscribe({}, 0));
  ASSERT_TRUE(r.read_count(3));
  hub_->shutdown();
  ASSERT_TRUE(r.read_until([&] { return !r.notices.empty(); }));
  EXPECT_EQ(r.notices[0].what, notice::kind::resume);
  EXPECT_EQ(r.notices[0].reason, "shutdown");
  EXPECT_EQ(r.notices[0].after, 3);
  EXPECT_EQ(hub_->subscribe({}, std::nullopt, transport::sse).error(), errc::unavailable);
}

TEST(WireEvent, JsonAndServerSentEventFrames) {
  logged_event e{7, 1700000000.25, event_kind::gap_opened, "c1", std::nullopt, R"({"first":2,"last":3})"};
  logged_event f{8, 1700000000.5, event_kind::job_failed, "c\"2", 3, "{\"error\":\"x\",\n \"y\":1}"};
  auto page = make_wire_page({e, f});
  ASSERT_EQ(page->events.size(), 2u);
  const std::string json7 =
      R"({"id":7,"kind":"gap.opened","at":1700000000.25,"call_id":"c1","job_id":null,"data":{"first":2,"last":3}})";
  // A line break of the stored data is whitespace: the JSON stays on one line.
  const std::string json8 = R"({"id":8,"kind":"job.failed","at":1700000000.5,"call_id":"c\"2","job_id":3,"data":{"error":"x",  "y":1}})";
  EXPECT_EQ(page->json(0), json7);
  EXPECT_EQ(page->json(1), json8);
  EXPECT_EQ(page->frame(0), "id: 7\ndata: " + json7 + "\n\n");
  EXPECT_EQ(page->sse, "id: 7\ndata: " + json7 + "\n\nid: 8\ndata: " + json8 + "\n\n");
  page_slice picked{page, {1}};
  EXPECT_EQ(picked.size(), 1u);
  EXPECT_EQ(picked.id(0), 8);
  EXPECT_EQ(picked.json(0), json8);
  EXPECT_EQ(sse_frame("resume", 9, "a\nb\r\nc"), "event: resume\nid: 9\ndata: a\ndata: b\ndata: c\n\n");
}

}  // namespace
}  // namespace aipbx::events
