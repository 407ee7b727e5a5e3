#include "engines/segment_attempt.hpp"

#include "storage/async_store.hpp"

#include <chrono>

namespace aipbx::engines {

namespace {

struct attempt_context {
  job_store& jobs;
  call_store& calls;
  ai_engine& engine;
  boost::asio::thread_pool& blocking;
  media::media_format default_media;
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
  const auto started = std::chrono::steady_clock::now();
  auto op = ctx.engine.transcribe(std::move(segment));
  jobs::attempt_result r = co_await std::move(op);
  r.latency_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  if (r.engine.empty()) r.engine = std::string(ctx.engine.name());
  co_return r;
}

}  // namespace

jobs::attempt_fn make_segment_attempt(job_store& jobs, call_store& calls, ai_engine& engine,
                                      boost::asio::thread_pool& blocking, media::media_format default_media) {
  attempt_context ctx{jobs, calls, engine, blocking, default_media};
  return [ctx](job j) { return attempt(ctx, std::move(j)); };
}

}  // namespace aipbx::engines
