// The worker pool's failure rule: whatever a unit of work throws (an engine, synchronously or after
// suspending; the pool's own code around an attempt; a lease renewal; the dispatcher) is logged, counted,
// and ends only that unit. An attempt that threw is a failed attempt: the job goes back to the queue with
// the attempt counted, its slot is freed, the retry can succeed, and stop() still finishes.
//
// Real components but the clock: the embedded store on a temporary file and the segment attempt of the
// engines layer, with a fake clock shared by the store and the pool, so that a retry comes due when a test
// moves the clock (never by waiting). Tests wait for the store or the pool to reach a state.
#include "engines/ai_engine.hpp"
#include "engines/segment_attempt.hpp"
#include "jobs/worker_pool.hpp"
#include "storage/sqlite/sqlite_call_store.hpp"
#include "support/temp_dir.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <future>
#include <map>
#include <mutex>
#include <stdexcept>
#include <thread>

namespace aipbx::jobs {
namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;

// Long enough for any loaded machine; a healthy one never waits for it.
constexpr auto patience = 60s;

template <class F>
bool eventually(F&& done) {
  const auto deadline = std::chrono::steady_clock::now() + patience;
  while (!done()) {
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(1ms);
  }
  return true;
}

// How the engine treats one attempt of a segment.
enum class behaviour {
  succeed,
  throw_at_once,            // throws from transcribe itself, before any coroutine runs
  throw_after_suspending,   // a coroutine that suspends once, then throws std::runtime_error
  throw_int_after_suspending,  // the same with an exception that is no std::exception
  wait_for_gate,            // suspends until the test opens the gate, then succeeds
};

// An engine that follows a script per segment (its call id): the n-th attempt of a segment behaves as the
// n-th entry, and every attempt past the script succeeds. Thread-safe.
class scripted_engine final : public engines::ai_engine {
 public:
  void script(const std::string& call_id, std::vector<behaviour> attempts) {
    std::lock_guard lock(mutex_);
    scripts_[call_id] = std::move(attempts);
  }
  void open_gate() { gate_open_ = true; }
  int calls() const { return calls_.load(); }

  std::string_view name() const override { return "scripted"; }

  asio::awaitable<attempt_result> transcribe(engines::audio_segment segment) override {
    ++calls_;
    const behaviour b = next(segment.call_id);
    if (b == behaviour::throw_at_once) throw std::runtime_error("engine threw at once");
    return run(b, std::move(segment));
  }

 private:
  behaviour next(const std::string& call_id) {
    std::lock_guard lock(mutex_);
    auto& s = scripts_[call_id];
    if (s.empty()) return behaviour::succeed;
    const behaviour b = s.front();
    s.erase(s.begin());
    return b;
  }

  asio::awaitable<attempt_result> run(behaviour b, engines::audio_segment segment) {
    auto executor = co_await asio::this_coro::executor;
    co_await asio::post(executor, asio::use_awaitable);
    if (b == behaviour::throw_after_suspending) throw std::runtime_error("engine threw after suspending");
    if (b == behaviour::throw_int_after_suspending) throw 42;
    while (b == behaviour::wait_for_gate && !gate_open_.load()) {
      asio::steady_timer tick(executor, 1ms);
      co_await tick.async_wait(asio::use_awaitable);
    }
    attempt_result r;
    r.ok = true;
    r.engine = "scripted";
    for (const auto& p : segment.packets) r.text += p.data;
    co_return r;
  }

  std::mutex mutex_;
  std::map<std::string, std::vector<behaviour>> scripts_;
  std::atomic<bool> gate_open_{false};
  std::atomic<int> calls_{0};
};

// The store the pool sees: the real one, except that the next `claims`, `renewals` or `finishes` calls
// throw (a fault injected into the pool's own code paths, where no exception is expected).
class faulty_job_store final : public job_store {
 public:
  explicit faulty_job_store(storage_backend& real) : real_(real) {}
  std::atomic<int> claims{0}, renewals{0}, finishes{0};

  void claim(std::string owner, std::size_t limit, double lease_seconds, claim_handler done) override {
    if (take(claims)) throw std::runtime_error("claim threw");
    real_.claim(std::move(owner), limit, lease_seconds, std::move(done));
  }
  void renew(std::int64_t job_id, std::string owner, int attempt, double lease_seconds,
             bool_handler done) override {
    if (take(renewals)) throw std::runtime_error("renew threw");
    real_.renew(job_id, std::move(owner), attempt, lease_seconds, std::move(done));
  }
  void finish(std::int64_t job_id, std::string owner, int attempt, job_outcome outcome,
              bool_handler done) override {
    if (take(finishes)) throw std::runtime_error("finish threw");
    real_.finish(job_id, std::move(owner), attempt, std::move(outcome), std::move(done));
  }
  void release(std::int64_t job_id, std::string owner, int attempt, bool_handler done) override {
    real_.release(job_id, std::move(owner), attempt, std::move(done));
  }
  void replay(std::int64_t job_id, job_handler done) override { real_.replay(job_id, std::move(done)); }
  void record_partial(std::int64_t job_id, std::string owner, int attempt, std::string text, std::int64_t heard_ms,
                      bool_handler done) override {
    real_.record_partial(job_id, std::move(owner), attempt, std::move(text), heard_ms, std::move(done));
  }
  result<std::vector<partial_segment>> partials(std::string_view call_id) override { return real_.partials(call_id); }
  void cut_segment(std::string call_id, seq_range range, bool_handler done) override {
    real_.cut_segment(std::move(call_id), range, std::move(done));
  }
  result<std::vector<uncut_call>> uncut_calls(std::string_view after, std::size_t limit) override {
    return real_.uncut_calls(after, limit);
  }
  void on_jobs_queued(std::function<void()> listener) override { real_.on_jobs_queued(std::move(listener)); }
  result<job_page> list_jobs(const job_query& query) override { return real_.list_jobs(query); }
  result<job> get_job(std::int64_t id) override { return real_.get_job(id); }
  result<std::vector<transcript_segment>> transcript(std::string_view call_id) override {
    return real_.transcript(call_id);
  }
  result<std::vector<stored_packet>> segment_packets(std::string_view call_id, std::int64_t first,
                                                     std::int64_t last) override {
    return real_.segment_packets(call_id, first, last);
  }
  result<job_counts> count_jobs() override { return real_.count_jobs(); }
  result<std::vector<node_presence>> nodes() override { return real_.nodes(); }

 private:
  static bool take(std::atomic<int>& n) {
    int left = n.load();
    while (left > 0)
      if (n.compare_exchange_weak(left, left - 1)) return true;
    return false;
  }
  storage_backend& real_;
};

class WorkerPool : public ::testing::Test {
 protected:
  void SetUp() override {
    sqlite_options o;
    o.path = (dir_ / "jobs.db").string();
    o.clock = [this] { return now_.load(); };
    store_ = std::make_unique<sqlite_call_store>(std::move(o));
    faulty_ = std::make_unique<faulty_job_store>(*store_);
    ai_thread_ = std::thread([this] { ai_.run(); });
  }

  void TearDown() override {
    // A pool that cannot stop (the failure a test reports) must not hang the suite.
    if (pool_ && !stopped_ && !stop()) ai_.stop();
    work_.reset();
    ai_thread_.join();
    store_.reset();  // first: its writer tells the pool of queued jobs until it stops
    pool_.reset();
  }

  // Starts `workers` workers that run the segment attempt over `engine_`, or over `attempt` when given.
  void start(unsigned workers, std::chrono::milliseconds lease = 30s, attempt_fn attempt = {}) {
    worker_options o;
    o.workers = workers;
    o.lease = lease;
    o.owner = "node-1";
    o.retry.base = 1s;  // of the fake clock
    if (!attempt)
      attempt = engines::make_segment_attempt(*store_, *store_, engine_, blocking_, media::media_format::none());
    pool_ = std::make_unique<worker_pool>(ai_.get_executor(), *faulty_, std::move(attempt), o,
                                          [this] { return now_.load(); }, random_);
    store_->on_jobs_queued([this] { pool_->notify(); });
    pool_->start();
  }

  // Stops the pool; false when it did not finish (a slot was never freed).
  [[nodiscard]] bool stop() {
    stopped_ = true;
    auto done = std::make_shared<std::promise<void>>();
    auto finished = done->get_future();
    pool_->stop([done] { done->set_value(); });
    return finished.wait_for(patience) == std::future_status::ready;
  }

  void put(const std::string& call_id) {
    std::promise<result<ingest_outcome>> stored;
    auto answer = stored.get_future();
    store_->ingest(packet{call_id, 1, call_id + "-audio", 1.0, std::nullopt},
                   [&stored](result<ingest_outcome> r) { stored.set_value(std::move(r)); });
    ASSERT_TRUE(answer.get().has_value());
  }

  job job_of(const std::string& call_id) {
    job_query q;
    q.call_id = call_id;
    auto page = store_->list_jobs(q);
    EXPECT_TRUE(page.has_value());
    EXPECT_EQ(page->jobs.size(), 1u);
    return page->jobs.at(0);
  }

  // Waits until the job of `call_id` has had `attempts` attempts, the last one failed, and the pool has
  // freed its slot.
  [[nodiscard]] bool failed_and_requeued(const std::string& call_id, int attempts) {
    return eventually([&] {
      const job j = job_of(call_id);
      return j.state == job_state::queued && j.attempts == attempts && pool_->stats().running == 0;
    });
  }

  // Moves the fake clock past every retry's due time and tells the pool.
  void retries_come_due() {
    now_ = now_.load() + 3600;
    pool_->notify();
  }

  [[nodiscard]] bool succeeded(const std::string& call_id) {
    return eventually([&] { return job_of(call_id).state == job_state::succeeded; });
  }

  test::temp_dir dir_{"aipbx-workers"};  // first: removed last, after the store whose files it holds
  std::atomic<double> now_{1000.0};
  seeded_random random_{7};
  std::unique_ptr<sqlite_call_store> store_;
  std::unique_ptr<faulty_job_store> faulty_;
  asio::thread_pool blocking_{2};
  scripted_engine engine_;
  asio::io_context ai_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_ = asio::make_work_guard(ai_);
  std::thread ai_thread_;
  std::unique_ptr<worker_pool> pool_;
  bool stopped_ = false;
};

TEST_F(WorkerPool, AnEngineThatThrowsAtOnceFailsTheAttemptAndTheRetrySucceeds) {
  engine_.script("c1", {behaviour::throw_at_once});
  start(1);
  put("c1");
  ASSERT_TRUE(failed_and_requeued("c1", 1));
  const job j = job_of("c1");
  EXPECT_EQ(j.last_error, "attempt failed: engine threw at once");
  EXPECT_DOUBLE_EQ(j.run_at, 1001.0) << "the retry policy's first wait (1 s)";
  EXPECT_EQ(pool_->stats().failures.attempt, 1u);
  EXPECT_EQ(pool_->stats().retried, 1u);

  retries_come_due();
  ASSERT_TRUE(succeeded("c1"));
  EXPECT_EQ(job_of("c1").attempts, 2);
  const auto transcript = store_->transcript("c1");
  ASSERT_TRUE(transcript.has_value());
  ASSERT_EQ(transcript->size(), 1u);
  EXPECT_EQ(transcript->at(0).text, "c1-audio");
  EXPECT_TRUE(stop());
}

TEST_F(WorkerPool, AnEngineThatThrowsAfterSuspendingFailsTheAttemptAndTheRetrySucceeds) {
  engine_.script("c1", {behaviour::throw_after_suspending});
  start(1);
  put("c1");
  ASSERT_TRUE(failed_and_requeued("c1", 1));
  EXPECT_EQ(job_of("c1").last_error, "attempt failed: engine threw after suspending");
  EXPECT_EQ(pool_->stats().failures.attempt, 1u);
  retries_come_due();
  ASSERT_TRUE(succeeded("c1"));
  EXPECT_EQ(job_of("c1").attempts, 2);
  EXPECT_TRUE(stop());
}

TEST_F(WorkerPool, AnExceptionOfAnyTypeIsAFailedAttempt) {
  engine_.script("c1", {behaviour::throw_int_after_suspending});
  start(1);
  put("c1");
  ASSERT_TRUE(failed_and_requeued("c1", 1));
  EXPECT_EQ(job_of("c1").last_error, "attempt failed: an exception of unknown type");
  retries_come_due();
  ASSERT_TRUE(succeeded("c1"));
  EXPECT_TRUE(stop());
}

TEST_F(WorkerPool, AnAttemptFunctionThatThrowsBeforeReturningIsAFailedAttempt) {
  auto real = engines::make_segment_attempt(*store_, *store_, engine_, blocking_, media::media_format::none());
  auto calls = std::make_shared<std::atomic<int>>(0);
  start(1, 30s, [real, calls](job j) -> asio::awaitable<attempt_result> {
    if (calls->fetch_add(1) == 0) throw std::logic_error("no attempt for you");
    return real(std::move(j));
  });
  put("c1");
  ASSERT_TRUE(failed_and_requeued("c1", 1));
  EXPECT_EQ(job_of("c1").last_error, "attempt failed: no attempt for you");
  retries_come_due();
  ASSERT_TRUE(succeeded("c1"));
  EXPECT_TRUE(stop());
}

// One worker and every first attempt throws: each throw must free the one slot, or the next job never runs.
TEST_F(WorkerPool, ThrowingAttemptsLeakNoSlot) {
  const std::vector<std::string> calls{"c1", "c2", "c3", "c4"};
  for (std::size_t i = 0; i < calls.size(); ++i)
    engine_.script(calls[i], {i % 2 == 0 ? behaviour::throw_at_once : behaviour::throw_after_suspending});
  start(1);
  for (const auto& c : calls) put(c);
  for (const auto& c : calls) ASSERT_TRUE(failed_and_requeued(c, 1)) << c;
  EXPECT_EQ(pool_->stats().failures.attempt, calls.size());
  retries_come_due();
  for (const auto& c : calls) ASSERT_TRUE(succeeded(c)) << c;
  // The pool counts a success once the store has answered, a moment after the store shows it.
  EXPECT_TRUE(
      eventually([&] { return pool_->stats().succeeded == calls.size() && pool_->stats().running == 0; }));
  EXPECT_TRUE(stop());
}

// The pool's own code throws after the attempt (the store's finish): the attempt is recorded as failed
// by the completion handler, the slot is freed, and shutdown finishes.
TEST_F(WorkerPool, AnExceptionAfterTheAttemptRecordsAFailedAttemptAndFreesTheSlot) {
  faulty_->finishes = 1;
  start(1);
  put("c1");
  ASSERT_TRUE(failed_and_requeued("c1", 1));
  EXPECT_EQ(job_of("c1").last_error, "attempt failed: finish threw");
  EXPECT_EQ(pool_->stats().failures.attempt, 1u);
  retries_come_due();
  ASSERT_TRUE(succeeded("c1"));
  EXPECT_TRUE(stop());
}

TEST_F(WorkerPool, WhenRecordingTheFailureThrowsTooTheSlotIsStillFreed) {
  faulty_->finishes = 2;
  start(1);
  put("c1");
  ASSERT_TRUE(eventually([&] { return pool_->stats().failures.attempt == 2 && pool_->stats().running == 0; }));
  const job j = job_of("c1");
  EXPECT_EQ(j.state, job_state::running) << "nothing was recorded: the job waits for its lease to expire";
  EXPECT_EQ(j.attempts, 1);
  EXPECT_TRUE(stop());
}

TEST_F(WorkerPool, ADispatcherThatThrowsStartsAgain) {
  faulty_->claims = 1;
  start(1);
  put("c1");
  ASSERT_TRUE(succeeded("c1"));
  EXPECT_EQ(pool_->stats().failures.dispatcher, 1u);
  EXPECT_EQ(job_of("c1").attempts, 1);
  EXPECT_TRUE(stop());
}

// A renewal that throws ends the renewals of that lease only: the attempt goes on and succeeds.
TEST_F(WorkerPool, ARenewalThatThrowsEndsOnlyTheRenewals) {
  faulty_->renewals = 1;
  engine_.script("c1", {behaviour::wait_for_gate});
  start(1, 30ms);  // renewed every 10 ms of real time; the fake clock never lets the lease expire
  put("c1");
  ASSERT_TRUE(eventually([&] { return pool_->stats().failures.lease_renewal == 1; }));
  EXPECT_EQ(pool_->stats().running, 1u);
  engine_.open_gate();
  ASSERT_TRUE(succeeded("c1"));
  EXPECT_EQ(job_of("c1").attempts, 1);
  EXPECT_EQ(pool_->stats().failures.attempt, 0u);
  EXPECT_TRUE(stop());
}

// stop() interrupts a running attempt without counting it and without calling it a failure.
TEST_F(WorkerPool, StopInterruptsARunningAttemptWithoutAFailure) {
  engine_.script("c1", {behaviour::wait_for_gate});
  start(1);
  put("c1");
  ASSERT_TRUE(eventually([&] { return engine_.calls() == 1; }));
  ASSERT_TRUE(stop());
  const job j = job_of("c1");
  EXPECT_EQ(j.state, job_state::queued);
  EXPECT_EQ(j.attempts, 0) << "the interrupted attempt is not counted";
  const auto s = pool_->stats();
  EXPECT_EQ(s.failures.attempt + s.failures.dispatcher + s.failures.lease_renewal, 0u);
}

}  // namespace
}  // namespace aipbx::jobs
