// http_engine: speech-to-text by an OpenAI-compatible service, `POST {url}/v1/audio/transcriptions`
// (OpenAI, whisper.cpp's server, and many providers speak it). Each attempt decodes the segment's audio,
// resamples it to 16 kHz (whisper.cpp's server reads only 16 kHz WAV unless started with --convert),
// wraps it in a WAV file and uploads it as multipart/form-data with `model` and `response_format=json`,
// and the bearer key when one is set. The answer's `text` is the transcript.
//
// Outcome of an attempt:
// - 2xx with a JSON object holding a string `text`: success (the text, trimmed).
// - 429, 408, 5xx, a connection failure, a 2xx without `text`, or no full answer within `timeout`:
//   retryable (the queue tries again after its backoff).
// - any other status (4xx: the service refuses the request; 3xx: the URL points elsewhere): permanent, the
//   job is dead at once, its error naming the status and the service's own message.
// - a packet whose data does not decode in the media format: permanent (stored data cannot change).
//
// One connection per attempt (no keep-alive pool): an attempt is seconds of audio, the connection is not
// the cost. Plain http only: run a TLS-terminating proxy on the host for an https service.
// Runs on the workers' executor without blocking it (asynchronous I/O; decoding a segment is microseconds
// of work per packet); `transcribe` may run concurrently and stops at asio cancellation.
#pragma once

#include "engines/ai_engine.hpp"
#include "media/media_format.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <string>

namespace aipbx::engines {

struct http_engine_options {
  std::string url;                            // http://host[:port][/prefix]
  std::string model = "whisper-1";
  std::string api_key;                        // empty: no Authorization header
  std::chrono::milliseconds timeout{60'000};  // one attempt: resolve, connect, upload, answer
};

class http_engine final : public ai_engine {
 public:
  // Throws std::invalid_argument when the URL is not http://host[:port][/path].
  explicit http_engine(http_engine_options options);

  std::string_view name() const override { return "http"; }
  boost::asio::awaitable<jobs::attempt_result> transcribe(audio_segment segment) override;

  // The request target the engine posts to, e.g. "/v1/audio/transcriptions".
  const std::string& target() const { return target_; }

 private:
  boost::asio::awaitable<jobs::attempt_result> post(std::string body, std::string boundary);
  jobs::attempt_result timed_out(jobs::attempt_result r) const;

  http_engine_options options_;
  std::string host_;
  std::string authority_;  // host[:port], for the Host header
  std::string port_;
  std::string target_;
  std::atomic<std::uint64_t> requests_{0};  // makes each multipart boundary distinct
};

}  // namespace aipbx::engines
