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
//
// Failures: expected ones (the engine could not transcribe, the store refused a write) are values. An
// exception is a bug, and it ends only its own unit of work: every coroutine the pool spawns has a
// completion handler that logs it (level error) and counts it (`worker_stats::failures`). An attempt
// that threw (the engine, synchronously or after suspending, or the pool's own code around it) is a
// failed attempt: the job goes back to the queue under the retry policy, and its slot is freed. A lease
// renewal that threw stops renewing that lease (the attempt goes on; should the lease expire, the
// fencing token discards its outcome). A dispatcher that threw is started again after a pause.
//
// Threading: run it on an executor of one thread (or a strand). `notify`, `stop` and `stats` are
// thread-safe.
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
#include <exception>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace aipbx::jobs {

using attempt_fn = std::function<boost::asio::awaitable<attempt_result>(job)>;

struct worker_options {
  unsigned workers = 4;                          // attempts running at once
  std::chrono::milliseconds lease{30'000};       // a running job's lease; renewed every third of it
  std::chrono::milliseconds poll{1'000};         // longest sleep between two claims when nothing is said
  std::string owner;                             // this node's name in leases
  retry_policy retry;
};

// Spawned coroutines that ended by an exception, by unit of work.
struct coroutine_failures {
  std::uint64_t dispatcher = 0;
  std::uint64_t attempt = 0;
  std::uint64_t lease_renewal = 0;
};

struct worker_stats {
  std::uint64_t attempts = 0;
  std::uint64_t succeeded = 0;
  std::uint64_t retried = 0;
  std::uint64_t dead = 0;
  std::uint64_t lost_leases = 0;
  unsigned running = 0;
  histogram_snapshot latency_seconds;  // of every attempt that returned (success or failure)
  coroutine_failures failures;
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

  enum class unit { dispatcher, attempt, lease_renewal };

  void spawn_dispatcher(std::chrono::milliseconds pause);
  void spawn_attempt(const std::shared_ptr<running_job>& r);
  void spawn_renewal(const std::shared_ptr<running_job>& r);
  boost::asio::awaitable<void> dispatch(std::chrono::milliseconds pause);
  boost::asio::awaitable<void> run(std::shared_ptr<running_job> r);
  boost::asio::awaitable<std::optional<attempt_result>> attempt_or_stop(std::shared_ptr<running_job> r);
  boost::asio::awaitable<attempt_result> guarded_attempt(job j);
  boost::asio::awaitable<void> release(std::shared_ptr<running_job> r);
  boost::asio::awaitable<void> record(std::shared_ptr<running_job> r, attempt_result result);
  boost::asio::awaitable<void> renew_lease(std::shared_ptr<running_job> r);
  void log_outcome(const job& j, const job_outcome& outcome, const result<bool>& recorded, double now);
  void attempt_ended(const std::shared_ptr<running_job>& r, const std::exception_ptr& failure);
  void free_slot(const std::shared_ptr<running_job>& r);
  void count_failure(unit u, const std::exception_ptr& failure, const job* j);
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
  std::atomic<std::uint64_t> dispatcher_failures_{0}, attempt_failures_{0}, renewal_failures_{0};
  std::atomic<unsigned> running_count_{0};
  atomic_histogram latency_{{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60}};
};

}  // namespace aipbx::jobs
