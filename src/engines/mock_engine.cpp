#include "engines/mock_engine.hpp"

#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

namespace aipbx::engines {

std::string mock_engine::transcript_of(const audio_segment& segment) {
  std::string text;
  for (const auto& p : segment.packets) {
    if (!text.empty()) text += ' ';
    text += p.data;
  }
  return text;
}

boost::asio::awaitable<jobs::attempt_result> mock_engine::transcribe(audio_segment segment) {
  const auto span = options_.max_delay - options_.min_delay;
  const auto delay = options_.min_delay + std::chrono::milliseconds(static_cast<std::int64_t>(
                                              random_.uniform01() * static_cast<double>(span.count() + 1)));
  const bool fails = random_.uniform01() < options_.failure_rate;
  if (delay.count() > 0) {
    boost::asio::steady_timer timer(co_await boost::asio::this_coro::executor, delay);
    co_await timer.async_wait(boost::asio::use_awaitable);
  }
  jobs::attempt_result r;
  r.engine = "mock";
  if (fails) {
    r.error = "AI Service Unavailable";
  } else {
    r.ok = true;
    r.text = transcript_of(segment);
  }
  co_return r;
}

}  // namespace aipbx::engines
