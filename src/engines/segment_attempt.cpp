#include "engines/segment_attempt.hpp"

#include "storage/async_store.hpp"

#include <chrono>

namespace aipbx::engines {

namespace {

boost::asio::awaitable<jobs::attempt_result> attempt(job_store& store, ai_engine& engine,
                                                     boost::asio::thread_pool& blocking, job j) {
  auto read = run_blocking(blocking, [&store, j] { return store.segment_packets(j.call_id, j.first_sequence, j.last_sequence); });
  auto packets = co_await std::move(read);
  if (!packets) {
    jobs::attempt_result failed;
    failed.engine = std::string(engine.name());
    failed.error = "cannot read the segment's packets: " + packets.error().message();
    co_return failed;
  }
  audio_segment segment{j.call_id, j.first_sequence, j.last_sequence, std::move(*packets)};
  const auto started = std::chrono::steady_clock::now();
  auto op = engine.transcribe(std::move(segment));
  jobs::attempt_result r = co_await std::move(op);
  r.latency_ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  if (r.engine.empty()) r.engine = std::string(engine.name());
  co_return r;
}

}  // namespace

jobs::attempt_fn make_segment_attempt(job_store& store, ai_engine& engine, boost::asio::thread_pool& blocking) {
  return [&store, &engine, &blocking](job j) { return attempt(store, engine, blocking, std::move(j)); };
}

}  // namespace aipbx::engines
