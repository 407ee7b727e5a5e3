#include "engines/segment_attempt.hpp"

#include "storage/async_store.hpp"

#include <chrono>
#include <memory>
#include <mutex>

namespace aipbx::engines {

namespace {

struct attempt_context {
  job_store& jobs;
  call_store& calls;
  ai_engine& engine;
  boost::asio::thread_pool& blocking;
  media::media_format default_media;
  std::chrono::milliseconds partial_interval;
};

// Records an attempt's hypotheses as its partial result: one at a time, at most one per interval; the
// others are dropped (a later one, or the result, supersedes them). Shared by the engine's thread and the
// store's answers; it lives as long as either holds it.
class partial_reporter : public std::enable_shared_from_this<partial_reporter> {
 public:
  partial_reporter(job_store& jobs, const job& j, std::chrono::milliseconds interval)
      : jobs_(jobs), job_id_(j.id), owner_(j.lease_owner.value_or("")), attempt_(j.attempts), interval_(interval) {}

  void report(const partial_hypothesis& h) {
    {
      std::lock_guard lock(mutex_);
      const auto now = std::chrono::steady_clock::now();
      if (in_flight_ || now - last_ < interval_) return;
      in_flight_ = true;
      last_ = now;
    }
    jobs_.record_partial(job_id_, owner_, attempt_, h.text, h.heard_ms,
                         [self = shared_from_this()](const result<bool>&) {
                           std::lock_guard lock(self->mutex_);
                           self->in_flight_ = false;
                         });
  }

 private:
  job_store& jobs_;
  const std::int64_t job_id_;
  const std::string owner_;
  const int attempt_;
  const std::chrono::milliseconds interval_;
  std::mutex mutex_;
  std::chrono::steady_clock::time_point last_{};
  bool in_flight_ = false;
};

jobs::attempt_result read_failure(const attempt_context& ctx, const std::string& what,
                                  const boost::system::error_code& ec) {
  jobs::attempt_result failed;
  failed.engine = std::string(ctx.engine.name());
  failed.error = "cannot read the segment's " + what + ": " + ec.message();
  return failed;
}

boost::asio::awaitable<jobs::attempt_result> attempt(attempt_context ctx, job j) {
  auto read = run_blocking(ctx.blocking, [&ctx, j] {
    return ctx.jobs.segment_packets(j.call_id, j.first_sequence, j.last_sequence);
  });
  auto packets = co_await std::move(read);
  if (!packets) co_return read_failure(ctx, "packets", packets.error());
  auto media_read = run_blocking(ctx.blocking, [&ctx, j] { return ctx.calls.call_media(j.call_id); });
  auto declared = co_await std::move(media_read);
  if (!declared) co_return read_failure(ctx, "media declaration", declared.error());

  audio_segment segment{j.call_id, j.first_sequence, j.last_sequence, std::move(*packets)};
  segment.media = ctx.default_media;
  if (*declared) {
    // Only a hand-edited database holds a format the media layer cannot read: treat it as no audio.
    segment.media = media::parse_media_format((*declared)->format).value_or(media::media_format::none());
    segment.packet_ms = (*declared)->packet_ms;
  }
  auto reporter = std::make_shared<partial_reporter>(ctx.jobs, j, ctx.partial_interval);
  segment.on_partial = [reporter](const partial_hypothesis& h) { reporter->report(h); };
  const auto started = std::chrono::steady_clock::now();
  auto op = ctx.engine.transcribe(std::move(segment));
  jobs::attempt_result r = co_await std::move(op);
  r.latency_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  if (r.engine.empty()) r.engine = std::string(ctx.engine.name());
  co_return r;
}

}  // namespace

jobs::attempt_fn make_segment_attempt(job_store& jobs, call_store& calls, ai_engine& engine,
                                      boost::asio::thread_pool& blocking, media::media_format default_media,
                                      std::chrono::milliseconds partial_interval) {
  attempt_context ctx{jobs, calls, engine, blocking, default_media, partial_interval};
  return [ctx](job j) { return attempt(ctx, std::move(j)); };
}

}  // namespace aipbx::engines
