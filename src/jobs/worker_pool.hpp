// The AI workers: they claim due jobs from the job_store under a lease, run one attempt each through an
// injected `attempt_fn` (the engines layer provides it), and record the outcome decided by the retry
// policy. Ingest never waits for them: they run on their own executor, and the store tells them when new
// jobs are queued (no hard polling; a slow poll remains as a safety net and for retries coming due).
//
// While an attempt runs, its lease is renewed every third of the lease time, so a slow AI call is never
// taken by another worker; if the process dies, the lease expires and the job is claimed again. `stop`
// stops claiming, interrupts running attempts and releases their leases (the attempt is not counted),
// then calls `done`.
//
// Every attempt start, success (with latency), retry (attempt, delay, error) and final failure is logged.
// Threading: run it on an executor of one thread (or a strand). `notify` and `stop` are thread-safe.
#pragma once

#include "domain/histogram.hpp"
#include "domain/random.hpp"
#include "jobs/attempt.hpp"
#include "jobs/retry_policy.hpp"
#include "storage/job_store.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <atomic>
#include <chrono>
#include <functional>
#include <memory>
#include <string>

namespace aipbx::jobs {

using attempt_fn = std::function<boost::asio::awaitable<attempt_result>(job)>;

struct worker_options {
  unsigned workers = 4;                          // attempts running at once
  std::chrono::milliseconds lease{30'000};       // a running job's lease; renewed every third of it
  std::chrono::milliseconds poll{1'000};         // longest sleep between two claims when nothing is said
  std::string owner;                             // this node's name in leases
  retry_policy retry;
};

struct worker_stats {
  std::uint64_t attempts = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t retried = 0;
  std::uint64_t dead = 0;
  std::uint64_t lost_leases = 0;
  unsigned running = 0;
  histogram_snapshot latency_seconds;  // of every attempt that returned (success or failure)
};

class worker_pool {
 public:
  worker_pool(boost::asio::any_io_executor executor, job_store& store, attempt_fn attempt, worker_options options,
              std::function<double()> clock, random_source& random);
  ~worker_pool();

  void start();
  void notify();
  void stop(std::function<void()> done);
  worker_stats stats() const;

 private:
  struct running_job;

  boost::asio::awaitable<void> dispatch();
  boost::asio::awaitable<void> run(std::shared_ptr<running_job> r);
  boost::asio::awaitable<void> renew_lease(std::shared_ptr<running_job> r);
  void maybe_done();

  boost::asio::any_io_executor executor_;
  job_store& store_;
  attempt_fn attempt_;
  worker_options options_;
  std::function<double()> clock_;
  random_source& random_;

  // Touched only on executor_.
  boost::asio::steady_timer wakeup_;
  bool wake_pending_ = false;
  bool stopping_ = false;
  bool dispatcher_done_ = false;
  unsigned running_ = 0;
  std::function<void()> on_stopped_;
  std::vector<std::weak_ptr<running_job>> active_;

  std::atomic<std::uint64_t> attempts_{0}, succeeded_{0}, retried_{0}, dead_{0}, lost_leases_{0};
  std::atomic<unsigned> running_count_{0};
  atomic_histogram latency_{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
};

}  // namespace aipbx::jobs
