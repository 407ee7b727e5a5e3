#include "jobs/worker_pool.hpp"

#include "log/log.hpp"
#include "storage/async_store.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace aipbx::jobs {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// A dispatcher that threw starts again after this pause: a fault that repeats costs a log line per pause,
// not a busy loop.
constexpr std::chrono::milliseconds dispatcher_restart_pause{200};

// async_call over a store call that may throw instead of answering: Asio does not carry an exception
// from an operation's start into the awaiting coroutine (it would leave the executor's run() and end the
// thread), so it is caught here and thrown in the coroutine, where the failure rule handles it. `start`
// must either throw or call its callback, not both.
template <class R, class Start>
asio::awaitable<R> store_call(Start start) {
  std::exception_ptr thrown;
  auto op = async_call<std::optional<R>>([&start, &thrown](std::function<void(std::optional<R>)> done) {
    try {
      start([done](R r) { done(std::move(r)); });
    } catch (...) {
      thrown = std::current_exception();
      done(std::nullopt);
    }
  });
  auto answer = co_await std::move(op);
  if (thrown) std::rethrow_exception(thrown);
  co_return std::move(*answer);
}

attempt_result failed_attempt(const std::exception_ptr& failure) {
  attempt_result r;
  r.error = "attempt failed: " + describe(failure);
  return r;
}

}  // namespace

struct worker_pool::running_job {
  running_job(const asio::any_io_executor& ex, job jb) : j(std::move(jb)), stop(ex), renew_timer(ex) {
    stop.expires_at(asio::steady_timer::time_point::max());
  }
  job j;
  asio::steady_timer stop;         // cancelled to interrupt the attempt
  asio::steady_timer renew_timer;  // paces lease renewals
  std::chrono::steady_clock::time_point started = std::chrono::steady_clock::now();
  bool finished = false;  // the attempt returned or was interrupted: renewals stop
  bool settled = false;   // the store was asked to record its outcome or to release it
};

worker_pool::worker_pool(asio::any_io_executor executor, job_store& store, attempt_fn attempt,
                         worker_options options, std::function<double()> clock, random_source& random)
    : executor_(std::move(executor)),
      store_(store),
      attempt_(std::move(attempt)),
      options_(std::move(options)),
      clock_(std::move(clock)),
      random_(random),
      wakeup_(executor_) {}

worker_pool::~worker_pool() = default;

void worker_pool::start() {
  spawn_dispatcher(std::chrono::milliseconds(0));
}

void worker_pool::notify() {
  asio::post(executor_, [this] {
    wake_pending_ = true;
    wakeup_.cancel();
  });
}

void worker_pool::stop(std::function<void()> done) {
  asio::post(executor_, [this, done = std::move(done)]() mutable {
    stopping_ = true;
    on_stopped_ = std::move(done);
    wakeup_.cancel();
    for (auto& weak : active_)
      if (auto r = weak.lock()) r->stop.cancel();
    maybe_done();
  });
}

worker_stats worker_pool::stats() const {
  return {
      attempts_.load(),    succeeded_.load(),
      retried_.load(),     dead_.load(),
      lost_leases_.load(), running_count_.load(),
      latency_.snapshot(), {dispatcher_failures_.load(), attempt_failures_.load(), renewal_failures_.load()}};
}

void worker_pool::maybe_done() {
  if (stopping_ && dispatcher_done_ && running_ == 0 && on_stopped_) {
    auto done = std::move(on_stopped_);
    on_stopped_ = nullptr;
    done();
  }
}

// Completion handlers run on executor_ (co_spawn dispatches them to the spawning executor).

void worker_pool::spawn_dispatcher(std::chrono::milliseconds pause) {
  asio::co_spawn(executor_, dispatch(pause), [this](const std::exception_ptr& failure) {
    if (!failure) return;
    count_failure(unit::dispatcher, failure, nullptr);
    if (!stopping_) return spawn_dispatcher(dispatcher_restart_pause);
    dispatcher_done_ = true;
    maybe_done();
  });
}

void worker_pool::spawn_attempt(const std::shared_ptr<running_job>& r) {
  asio::co_spawn(executor_, run(r),
                 [this, r](const std::exception_ptr& failure) { attempt_ended(r, failure); });
}

void worker_pool::spawn_renewal(const std::shared_ptr<running_job>& r) {
  asio::co_spawn(executor_, renew_lease(r), [this, r](const std::exception_ptr& failure) {
    if (failure) count_failure(unit::lease_renewal, failure, &r->j);
  });
}

asio::awaitable<void> worker_pool::dispatch(std::chrono::milliseconds pause) {
  if (pause.count() > 0 && !stopping_) {
    wakeup_.expires_after(pause);
    co_await wakeup_.async_wait(use_tuple);
  }
  const double lease_seconds = static_cast<double>(options_.lease.count()) / 1000.0;
  while (!stopping_) {
    // Wake-ups that arrive from here on (new jobs, a finished attempt) are seen before the next wait.
    wake_pending_ = false;
    const unsigned free = options_.workers - std::min(options_.workers, running_);
    // While attempts run, free slots are claimed a few at a time (a quarter of the workers), not one by
    // one: each claim is a round trip through the store's writer, which ingest needs too.
    const unsigned batch = running_ == 0 ? 1 : std::max(1u, options_.workers / 4);
    std::optional<double> next_due;
    bool failed = false;
    if (free >= batch) {
      auto op = store_call<result<claim_result>>([this, free, lease_seconds](job_store::claim_handler done) {
        store_.claim(options_.owner, free, lease_seconds, std::move(done));
      });
      auto claimed = co_await std::move(op);
      if (!claimed) {
        failed = true;
        log::warn("job claim failed", {{"error", claimed.error().message()}});
      } else {
        next_due = claimed->next_run_at;
        for (auto& j : claimed->jobs) {
          auto r = std::make_shared<running_job>(executor_, std::move(j));
          if (stopping_) r->stop.cancel();
          active_.push_back(r);
          ++running_;
          running_count_.store(running_);
          spawn_attempt(r);
        }
        if (!claimed->jobs.empty() && claimed->jobs.size() < free) continue;  // maybe more are due now
      }
    }
    if (wake_pending_ || stopping_) continue;
    auto wait = options_.poll;
    if (failed) {
      wait = std::min(wait, std::chrono::milliseconds(200));
    } else if (next_due && free > 0) {
      const auto until = std::chrono::milliseconds(static_cast<std::int64_t>((*next_due - clock_()) * 1000.0) + 1);
      wait = std::clamp(until, std::chrono::milliseconds(5), options_.poll);
    }
    wakeup_.expires_after(wait);
    co_await wakeup_.async_wait(use_tuple);
  }
  dispatcher_done_ = true;
  maybe_done();
}

asio::awaitable<void> worker_pool::renew_lease(std::shared_ptr<running_job> r) {
  const double lease_seconds = static_cast<double>(options_.lease.count()) / 1000.0;
  while (!r->finished) {
    r->renew_timer.expires_after(options_.lease / 3);
    co_await r->renew_timer.async_wait(use_tuple);
    if (r->finished) break;
    auto op = store_call<result<bool>>([this, r, lease_seconds](job_store::bool_handler done) {
      store_.renew(r->j.id, options_.owner, r->j.attempts, lease_seconds, std::move(done));
    });
    auto renewed = co_await std::move(op);
    if (renewed && !*renewed) {
      log::warn("job lease lost", {{"job_id", r->j.id}, {"call_id", r->j.call_id}, {"attempt", r->j.attempts}});
      break;
    }
  }
}

// One attempt: run it (unless stop() interrupts it), then record its outcome or release the job.
asio::awaitable<void> worker_pool::run(std::shared_ptr<running_job> r) {
  const job& j = r->j;
  attempts_.fetch_add(1);
  log::info("ai attempt started", {{"job_id", j.id},
                                   {"call_id", j.call_id},
                                   {"first_sequence", j.first_sequence},
                                   {"last_sequence", j.last_sequence},
                                   {"attempt", j.attempts},
                                   {"max_attempts", j.max_attempts}});
  spawn_renewal(r);
  // Awaited operations are bound to a name first: GCC 12 may destroy the temporaries of a co_await
  // expression (here a copy of `r`) twice.
  auto attempt = attempt_or_stop(r);
  auto result = co_await std::move(attempt);
  r->finished = true;
  r->renew_timer.cancel();
  auto settle = result ? record(r, std::move(*result)) : release(r);
  co_await std::move(settle);
}

// The attempt's result, or nothing when stop() interrupted it first.
asio::awaitable<std::optional<attempt_result>> worker_pool::attempt_or_stop(std::shared_ptr<running_job> r) {
  auto attempt = guarded_attempt(r->j);
  auto interrupted = r->stop.async_wait(use_tuple);
  auto either = std::move(attempt) || std::move(interrupted);
  auto first = co_await std::move(either);
  if (first.index() == 0) co_return std::move(std::get<0>(first));
  co_return std::nullopt;
}

// `||` waits for the first operation to *succeed*: were an attempt that threw left to throw, it would
// wait for stop() and hold its slot until then. So whatever the attempt throws, synchronously or after
// suspending, becomes a failed attempt here.
asio::awaitable<attempt_result> worker_pool::guarded_attempt(job j) {
  std::exception_ptr failure;
  try {
    auto attempt = attempt_(j);
    co_return co_await std::move(attempt);
  } catch (...) {
    failure = std::current_exception();
  }
  // Interrupted by stop(): the stop timer has won the race and this result is never looked at; what the
  // cancellation made the attempt throw is no failure.
  if ((co_await asio::this_coro::cancellation_state).cancelled() != asio::cancellation_type::none)
    std::rethrow_exception(failure);
  count_failure(unit::attempt, failure, &j);
  co_return failed_attempt(failure);
}

asio::awaitable<void> worker_pool::release(std::shared_ptr<running_job> r) {
  const job& j = r->j;
  auto op = store_call<aipbx::result<bool>>([this, &j](job_store::bool_handler done) {
    store_.release(j.id, options_.owner, j.attempts, std::move(done));
  });
  co_await std::move(op);
  r->settled = true;
  log::info("ai attempt interrupted", {{"job_id", j.id}, {"call_id", j.call_id}, {"attempt", j.attempts}});
}

asio::awaitable<void> worker_pool::record(std::shared_ptr<running_job> r, attempt_result result) {
  const job& j = r->j;
  if (result.latency_ms == 0)
    result.latency_ms =
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - r->started).count();
  latency_.observe(result.latency_ms / 1000.0);
  const double now = clock_();
  job_outcome outcome = decide(j, result, options_.retry, now, random_);
  auto op = store_call<aipbx::result<bool>>([this, &j, outcome](job_store::bool_handler done) {
    store_.finish(j.id, options_.owner, j.attempts, outcome, std::move(done));
  });
  auto recorded = co_await std::move(op);
  r->settled = true;
  log_outcome(j, outcome, recorded, now);
}

void worker_pool::log_outcome(const job& j, const job_outcome& outcome, const aipbx::result<bool>& recorded,
                              double now) {
  if (!recorded) {
    log::error("job outcome not recorded", {{"job_id", j.id}, {"error", recorded.error().message()}});
  } else if (!*recorded) {
    lost_leases_.fetch_add(1);
    log::warn("job outcome discarded: lease lost",
              {{"job_id", j.id}, {"call_id", j.call_id}, {"attempt", j.attempts}});
  } else if (const auto* ok = std::get_if<job_succeeded>(&outcome)) {
    succeeded_.fetch_add(1);
    log::info("ai attempt succeeded", {{"job_id", j.id},
                                       {"call_id", j.call_id},
                                       {"attempt", j.attempts},
                                       {"engine", ok->engine},
                                       {"latency_ms", ok->latency_ms}});
  } else if (const auto* retry = std::get_if<job_retry>(&outcome)) {
    retried_.fetch_add(1);
    log::warn("ai attempt failed, retrying", {{"job_id", j.id},
                                              {"call_id", j.call_id},
                                              {"attempt", j.attempts},
                                              {"max_attempts", j.max_attempts},
                                              {"delay_ms", std::llround((retry->run_at - now) * 1000.0)},
                                              {"error", retry->error}});
  } else {
    dead_.fetch_add(1);
    log::error("ai job dead", {{"job_id", j.id},
                               {"call_id", j.call_id},
                               {"attempts", j.attempts},
                               {"error", std::get<job_dead>(outcome).error}});
  }
}

// The failure rule: an attempt that ended by an exception is a failed attempt (the retry policy applies)
// unless its outcome already reached the store; either way its slot is freed.
void worker_pool::attempt_ended(const std::shared_ptr<running_job>& r, const std::exception_ptr& failure) {
  if (!failure) return free_slot(r);
  count_failure(unit::attempt, failure, &r->j);
  r->finished = true;
  r->renew_timer.cancel();
  if (r->settled) return free_slot(r);
  r->settled = true;
  asio::co_spawn(executor_, record(r, failed_attempt(failure)), [this, r](const std::exception_ptr& again) {
    if (again) count_failure(unit::attempt, again, &r->j);  // the lease expires and the job runs again
    free_slot(r);
  });
}

void worker_pool::free_slot(const std::shared_ptr<running_job>& r) {
  --running_;
  running_count_.store(running_);
  std::erase_if(active_, [&r](const auto& weak) {
    auto other = weak.lock();
    return other == nullptr || other == r;
  });
  wake_pending_ = true;
  wakeup_.cancel();
  maybe_done();
}

void worker_pool::count_failure(unit u, const std::exception_ptr& failure, const job* j) {
  std::string_view name;
  switch (u) {
    case unit::dispatcher:
      dispatcher_failures_.fetch_add(1);
      name = "dispatcher";
      break;
    case unit::attempt:
      attempt_failures_.fetch_add(1);
      name = "attempt";
      break;
    case unit::lease_renewal:
      renewal_failures_.fetch_add(1);
      name = "lease_renewal";
      break;
  }
  const std::string error = describe(failure);
  if (j == nullptr)
    log::error("worker coroutine failed", {{"unit", name}, {"error", error}});
  else
    log::error("worker coroutine failed", {{"unit", name},
                                           {"job_id", j->id},
                                           {"call_id", j->call_id},
                                           {"attempt", j->attempts},
                                           {"error", error}});
}

}  // namespace aipbx::jobs
