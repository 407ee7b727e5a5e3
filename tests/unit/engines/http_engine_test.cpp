// The http engine against a scripted OpenAI-compatible server on 127.0.0.1: what it uploads, and how each
// answer becomes a success, a retry or a dead job (through the queue's own retry decision).
#include "engines/http_engine.hpp"

#include "engines/scripted_server.hpp"
#include "jobs/attempt.hpp"
#include "media/audio_codec.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

#include <cmath>
#include <numbers>

namespace aipbx::engines {
namespace {

using test::scripted_reply;
using test::scripted_server;

// `packets` 20 ms packets of a 440 Hz tone in `format`, sequences 1..packets.
audio_segment tone_segment(media::media_format format, int packets) {
  audio_segment s;
  s.call_id = "call-1";
  s.first_sequence = 1;
  s.last_sequence = packets;
  const std::size_t per_packet = format.rate / 50;
  for (int p = 0; p < packets; ++p) {
    std::vector<std::int16_t> pcm(per_packet);
    for (std::size_t i = 0; i < per_packet; ++i) {
      const double t = static_cast<double>(static_cast<std::size_t>(p) * per_packet + i) / format.rate;
      pcm[i] = static_cast<std::int16_t>(std::lround(8000 * std::sin(2 * std::numbers::pi * 440 * t)));
    }
    s.packets.push_back({p + 1, p + 1, media::encode_audio(format, pcm), 1700000000.0 + p * 0.02, 0});
  }
  s.media = format;
  return s;
}

jobs::attempt_result run(http_engine& engine, audio_segment segment) {
  boost::asio::io_context ioc;
  auto result = boost::asio::co_spawn(ioc, engine.transcribe(std::move(segment)), boost::asio::use_future);
  ioc.run();
  return result.get();
}

http_engine_options options_for(const scripted_server& server) {
  http_engine_options o;
  o.url = server.url();
  o.model = "whisper-tiny";
  o.timeout = std::chrono::milliseconds(2000);
  return o;
}

struct part {
  std::string headers;
  std::string body;
};

// Splits a multipart/form-data body by the boundary of its content type.
std::vector<part> parts_of(const test::recorded_request& r) {
  const auto& type = r.headers.at("content-type");
  const auto at = type.find("boundary=");
  EXPECT_NE(at, std::string::npos);
  const std::string delimiter = "--" + type.substr(at + 9);
  std::vector<part> parts;
  std::size_t pos = r.body.find(delimiter);
  while (pos != std::string::npos) {
    pos += delimiter.size();
    if (r.body.compare(pos, 2, "--") == 0) break;  // the closing delimiter
    pos += 2;                                      // CRLF
    const auto next = r.body.find("\r\n" + delimiter, pos);
    if (next == std::string::npos) break;
    const std::string whole = r.body.substr(pos, next - pos);
    const auto split = whole.find("\r\n\r\n");
    parts.push_back({whole.substr(0, split), whole.substr(split + 4)});
    pos = next + 2;
  }
  return parts;
}

const part* find_part(const std::vector<part>& parts, std::string_view name) {
  const std::string needle = "name=\"" + std::string(name) + "\"";
  for (const auto& p : parts)
    if (p.headers.find(needle) != std::string::npos) return &p;
  return nullptr;
}

std::uint32_t u32(const std::string& s, std::size_t at) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | static_cast<std::uint8_t>(s[at + static_cast<std::size_t>(i)]);
  return v;
}

job job_at_attempt(int attempt) {
  job j;
  j.id = 7;
  j.call_id = "call-1";
  j.attempts = attempt;
  j.max_attempts = 5;
  return j;
}

TEST(HttpEngine, UploadsTheSegmentAsA16kHzWavAndReturnsTheText) {
  scripted_server server({scripted_reply::json(200, R"({"text": "  go forward ten meters\n"})")});
  auto options = options_for(server);
  options.api_key = "sk-test";
  http_engine engine(options);
  auto r = run(engine, tone_segment(media::media_format::pcmu(), 10));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.text, "go forward ten meters");
  EXPECT_EQ(r.engine, "http");

  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 1u);
  const auto& req = requests[0];
  EXPECT_EQ(req.method, "POST");
  EXPECT_EQ(req.target, "/v1/audio/transcriptions");
  EXPECT_EQ(req.headers.at("authorization"), "Bearer sk-test");
  EXPECT_EQ(req.headers.at("content-type").rfind("multipart/form-data; boundary=", 0), 0u);
  const auto parts = parts_of(req);
  ASSERT_EQ(parts.size(), 3u);
  ASSERT_NE(find_part(parts, "model"), nullptr);
  EXPECT_EQ(find_part(parts, "model")->body, "whisper-tiny");
  ASSERT_NE(find_part(parts, "response_format"), nullptr);
  EXPECT_EQ(find_part(parts, "response_format")->body, "json");
  const part* file = find_part(parts, "file");
  ASSERT_NE(file, nullptr);
  EXPECT_NE(file->headers.find("filename=\"segment.wav\""), std::string::npos);
  EXPECT_NE(file->headers.find("Content-Type: audio/wav"), std::string::npos);
  // 10 packets of 160 mu-law samples at 8 kHz: 3200 samples at 16 kHz.
  ASSERT_EQ(file->body.size(), 44u + 6400u);
  EXPECT_EQ(file->body.substr(0, 4), "RIFF");
  EXPECT_EQ(u32(file->body, 24), 16000u);
  EXPECT_EQ(u32(file->body, 40), 6400u);
}

TEST(HttpEngine, NoKeyNoAuthorizationAndABasePathIsKept) {
  scripted_server server({scripted_reply::json(200, R"({"text":"ok"})")});
  auto options = options_for(server);
  options.url = server.url() + "/stt/";
  http_engine engine(options);
  EXPECT_EQ(engine.target(), "/stt/v1/audio/transcriptions");
  auto r = run(engine, tone_segment(media::media_format::l16(16000), 5));
  ASSERT_TRUE(r.ok) << r.error;
  const auto requests = server.requests();
  ASSERT_EQ(requests.size(), 1u);
  EXPECT_EQ(requests[0].target, "/stt/v1/audio/transcriptions");
  EXPECT_EQ(requests[0].headers.count("authorization"), 0u);
  const auto parts = parts_of(requests[0]);
  const part* file = find_part(parts, "file");
  ASSERT_NE(file, nullptr);
  EXPECT_EQ(file->body.size(), 44u + 5u * 320u * 2u);  // already 16 kHz: uploaded as is
}

TEST(HttpEngine, TooManyRequestsThenSuccess) {
  scripted_server server({scripted_reply::json(429, R"({"error":{"message":"Rate limit reached"}})"),
                          scripted_reply::json(200, R"({"text":"hello"})")});
  http_engine engine(options_for(server));
  seeded_random random(1);
  jobs::retry_policy policy;

  auto first = run(engine, tone_segment(media::media_format::pcmu(), 3));
  EXPECT_FALSE(first.ok);
  EXPECT_FALSE(first.permanent);
  EXPECT_NE(first.error.find("HTTP 429"), std::string::npos) << first.error;
  EXPECT_NE(first.error.find("Rate limit reached"), std::string::npos) << first.error;
  auto outcome = jobs::decide(job_at_attempt(1), first, policy, 100.0, random);
  ASSERT_TRUE(std::holds_alternative<job_retry>(outcome));
  EXPECT_DOUBLE_EQ(std::get<job_retry>(outcome).run_at, 101.0);

  auto second = run(engine, tone_segment(media::media_format::pcmu(), 3));
  ASSERT_TRUE(second.ok) << second.error;
  EXPECT_EQ(second.text, "hello");
  EXPECT_TRUE(std::holds_alternative<job_succeeded>(jobs::decide(job_at_attempt(2), second, policy, 101.0, random)));
  EXPECT_EQ(server.requests().size(), 2u);
}

TEST(HttpEngine, ServerErrorFiveTimesIsDead) {
  scripted_server server({scripted_reply::json(500, R"({"error":"model crashed"})")});
  http_engine engine(options_for(server));
  seeded_random random(1);
  jobs::retry_policy policy;  // the seed's: 5 attempts
  double now = 0;
  for (int attempt = 1; attempt <= 5; ++attempt) {
    auto r = run(engine, tone_segment(media::media_format::pcmu(), 2));
    ASSERT_FALSE(r.ok);
    EXPECT_FALSE(r.permanent);
    EXPECT_NE(r.error.find("HTTP 500"), std::string::npos) << r.error;
    EXPECT_NE(r.error.find("model crashed"), std::string::npos) << r.error;
    auto outcome = jobs::decide(job_at_attempt(attempt), r, policy, now, random);
    if (attempt < 5) {
      ASSERT_TRUE(std::holds_alternative<job_retry>(outcome)) << attempt;
      EXPECT_DOUBLE_EQ(std::get<job_retry>(outcome).run_at - now, std::pow(2.0, attempt - 1));
      now = std::get<job_retry>(outcome).run_at;
    } else {
      ASSERT_TRUE(std::holds_alternative<job_dead>(outcome));
      EXPECT_NE(std::get<job_dead>(outcome).error.find("failed after 5 attempts"), std::string::npos);
      EXPECT_NE(std::get<job_dead>(outcome).error.find("model crashed"), std::string::npos);
    }
  }
  EXPECT_EQ(server.requests().size(), 5u);
}

TEST(HttpEngine, BadRequestIsDeadAtOnceWithTheReason) {
  scripted_server server({scripted_reply::json(400, R"({"error":{"message":"Invalid file format."}})")});
  http_engine engine(options_for(server));
  seeded_random random(1);
  auto r = run(engine, tone_segment(media::media_format::pcmu(), 2));
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.permanent);
  auto outcome = jobs::decide(job_at_attempt(1), r, jobs::retry_policy{}, 0, random);
  ASSERT_TRUE(std::holds_alternative<job_dead>(outcome));
  EXPECT_NE(std::get<job_dead>(outcome).error.find("HTTP 400"), std::string::npos);
  EXPECT_NE(std::get<job_dead>(outcome).error.find("Invalid file format."), std::string::npos);
  EXPECT_EQ(server.requests().size(), 1u);
}

TEST(HttpEngine, OtherStatusesAreClassified) {
  scripted_server server({scripted_reply::json(401, R"({"error":{"message":"Incorrect API key"}})"),
                          scripted_reply::json(404, "not here"), scripted_reply::json(503, ""),
                          scripted_reply::json(408, ""), scripted_reply::json(200, "not json"),
                          scripted_reply::json(200, R"({"txt":"x"})")});
  http_engine engine(options_for(server));
  const auto segment = tone_segment(media::media_format::pcmu(), 1);
  auto r401 = run(engine, segment);
  EXPECT_TRUE(r401.permanent);
  EXPECT_NE(r401.error.find("Incorrect API key"), std::string::npos);
  auto r404 = run(engine, segment);
  EXPECT_TRUE(r404.permanent);
  EXPECT_NE(r404.error.find("not here"), std::string::npos);
  EXPECT_FALSE(run(engine, segment).permanent);  // 503
  EXPECT_FALSE(run(engine, segment).permanent);  // 408
  auto not_json = run(engine, segment);          // a 2xx without a transcript: the service misbehaved
  EXPECT_FALSE(not_json.ok);
  EXPECT_FALSE(not_json.permanent);
  auto no_text = run(engine, segment);
  EXPECT_FALSE(no_text.ok);
  EXPECT_FALSE(no_text.permanent);
}

TEST(HttpEngine, HungServerTimesOutAndTheRetrySucceeds) {
  scripted_server server({scripted_reply::hung(), scripted_reply::json(200, R"({"text":"late but fine"})")});
  auto options = options_for(server);
  options.timeout = std::chrono::milliseconds(300);
  http_engine engine(options);
  seeded_random random(1);

  const auto started = std::chrono::steady_clock::now();
  auto first = run(engine, tone_segment(media::media_format::pcmu(), 2));
  const auto waited = std::chrono::steady_clock::now() - started;
  EXPECT_FALSE(first.ok);
  EXPECT_FALSE(first.permanent);
  EXPECT_NE(first.error.find("within 300 ms"), std::string::npos) << first.error;
  EXPECT_GE(waited, std::chrono::milliseconds(300));
  EXPECT_TRUE(std::holds_alternative<job_retry>(jobs::decide(job_at_attempt(1), first, jobs::retry_policy{}, 0, random)));

  auto second = run(engine, tone_segment(media::media_format::pcmu(), 2));
  ASSERT_TRUE(second.ok) << second.error;
  EXPECT_EQ(second.text, "late but fine");
  EXPECT_EQ(server.requests().size(), 2u);
}

// The workers interrupt a running attempt on shutdown by cancelling it (`attempt || stop`): the engine
// gives up at once instead of waiting for its own timeout.
TEST(HttpEngine, CancellationInterruptsAHungExchange) {
  scripted_server server({scripted_reply::hung()});
  auto options = options_for(server);
  options.timeout = std::chrono::milliseconds(20'000);
  http_engine engine(options);
  boost::asio::io_context ioc;
  auto race = [&]() -> boost::asio::awaitable<std::size_t> {
    using namespace boost::asio::experimental::awaitable_operators;
    boost::asio::steady_timer stop(ioc, std::chrono::milliseconds(200));
    auto attempt = engine.transcribe(tone_segment(media::media_format::pcmu(), 2));
    auto stopped = stop.async_wait(boost::asio::use_awaitable);
    auto first = co_await (std::move(attempt) || std::move(stopped));
    co_return first.index();
  };
  const auto started = std::chrono::steady_clock::now();
  auto winner = boost::asio::co_spawn(ioc, race(), boost::asio::use_future);
  ioc.run();
  EXPECT_EQ(winner.get(), 1u);
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
}

TEST(HttpEngine, NobodyListeningIsRetryable) {
  std::string url;
  {
    scripted_server gone({});
    url = gone.url();
  }
  http_engine_options o;
  o.url = url;
  http_engine engine(o);
  auto r = run(engine, tone_segment(media::media_format::pcmu(), 1));
  EXPECT_FALSE(r.ok);
  EXPECT_FALSE(r.permanent);
  EXPECT_NE(r.error.find("cannot connect"), std::string::npos) << r.error;
}

TEST(HttpEngine, UndecodableAudioIsPermanentAndNothingIsSent) {
  scripted_server server({scripted_reply::json(200, R"({"text":"x"})")});
  http_engine engine(options_for(server));
  auto segment = tone_segment(media::media_format::pcmu(), 3);
  segment.packets[1].data = "audio_payload";
  auto r = run(engine, segment);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.permanent);
  EXPECT_EQ(r.error, "packet 2 is not pcmu/8000 audio: data is not valid base64");
  EXPECT_TRUE(server.requests().empty());
}

TEST(HttpEngine, RefusesUrlsItCannotUse) {
  for (const char* url : {"", "127.0.0.1:8080", "https://api.example.com", "ftp://host/", "http://",
                          "http://host/path?x=1"}) {
    http_engine_options o;
    o.url = url;
    EXPECT_THROW(http_engine{o}, std::invalid_argument) << url;
  }
}

}  // namespace
}  // namespace aipbx::engines
