#include "jobs/worker_pool.hpp"

#include "log/log.hpp"
#include "storage/async_store.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace aipbx::jobs {

namespace asio = boost::asio;
using namespace boost::asio::experimental::awaitable_operators;

namespace {
constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
}

struct worker_pool::running_job {
  running_job(asio::any_io_executor ex, job jb) : j(std::move(jb)), stop(ex), renew_timer(ex) {
    stop.expires_at(asio::steady_timer::time_point::max());
  }
  job j;
  asio::steady_timer stop;         // cancelled to interrupt the attempt
  asio::steady_timer renew_timer;  // paces lease renewals
  bool finished = false;
};

worker_pool::worker_pool(asio::any_io_executor executor, job_store& store, attempt_fn attempt,
                         worker_options options, std::function<double()> clock, random_source& random)
    : executor_(executor),
      store_(store),
      attempt_(std::move(attempt)),
      options_(std::move(options)),
      clock_(std::move(clock)),
      random_(random),
      wakeup_(executor) {}

worker_pool::~worker_pool() = default;

void worker_pool::start() { asio::co_spawn(executor_, dispatch(), asio::detached); }

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
  return {attempts_.load(), succeeded_.load(), retried_.load(), dead_.load(), lost_leases_.load(),
          running_count_.load(), latency_.snapshot()};
}

void worker_pool::maybe_done() {
  if (stopping_ && dispatcher_done_ && running_ == 0 && on_stopped_) {
    auto done = std::move(on_stopped_);
    on_stopped_ = nullptr;
    done();
  }
}

asio::awaitable<void> worker_pool::dispatch() {
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
      auto op = async_call<result<claim_result>>([this, free, lease_seconds](job_store::claim_handler done) {
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
          asio::co_spawn(executor_, run(r), asio::detached);
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
    auto op = async_call<result<bool>>([this, r, lease_seconds](job_store::bool_handler done) {
      store_.renew(r->j.id, options_.owner, r->j.attempts, lease_seconds, std::move(done));
    });
    auto renewed = co_await std::move(op);
    if (renewed && !*renewed) {
      log::warn("job lease lost", {{"job_id", r->j.id}, {"call_id", r->j.call_id}, {"attempt", r->j.attempts}});
      break;
    }
  }
}

asio::awaitable<void> worker_pool::run(std::shared_ptr<running_job> r) {
  const job& j = r->j;
  attempts_.fetch_add(1);
  log::info("ai attempt started", {{"job_id", j.id},
                                   {"call_id", j.call_id},
                                   {"first_sequence", j.first_sequence},
                                   {"last_sequence", j.last_sequence},
                                   {"attempt", j.attempts},
                                   {"max_attempts", j.max_attempts}});
  asio::co_spawn(executor_, renew_lease(r), asio::detached);
  const auto started = std::chrono::steady_clock::now();

  std::optional<attempt_result> result;
  try {
    auto attempt = attempt_(j);
    auto interrupted = r->stop.async_wait(use_tuple);
    auto first = co_await (std::move(attempt) || std::move(interrupted));
    if (first.index() == 0) result = std::move(std::get<0>(first));
  } catch (const std::exception& e) {
    result = attempt_result{false, {}, std::string("attempt failed: ") + e.what(), false, {}, 0};
  }
  r->finished = true;
  r->renew_timer.cancel();

  if (!result) {
    auto op = async_call<aipbx::result<bool>>([this, &j](job_store::bool_handler done) {
      store_.release(j.id, options_.owner, j.attempts, std::move(done));
    });
    co_await std::move(op);
    log::info("ai attempt interrupted", {{"job_id", j.id}, {"call_id", j.call_id}, {"attempt", j.attempts}});
  } else {
    if (result->latency_ms == 0)
      result->latency_ms =
          std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
    latency_.observe(result->latency_ms / 1000.0);
    const double now = clock_();
    job_outcome outcome = decide(j, *result, options_.retry, now, random_);
    auto op = async_call<aipbx::result<bool>>([this, &j, outcome](job_store::bool_handler done) {
      store_.finish(j.id, options_.owner, j.attempts, outcome, std::move(done));
    });
    auto recorded = co_await std::move(op);
    if (!recorded) {
      log::error("job outcome not recorded", {{"job_id", j.id}, {"error", recorded.error().message()}});
    } else if (!*recorded) {
      lost_leases_.fetch_add(1);
      log::warn("job outcome discarded: lease lost", {{"job_id", j.id}, {"call_id", j.call_id}, {"attempt", j.attempts}});
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

  --running_;
  running_count_.store(running_);
  std::erase_if(active_, [](const auto& weak) { return weak.expired(); });
  wake_pending_ = true;
  wakeup_.cancel();
  maybe_done();
}

}  // namespace aipbx::jobs
