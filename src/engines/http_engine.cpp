#include "engines/http_engine.hpp"

#include "engines/segment_audio.hpp"
#include "media/wav.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/url/parse.hpp>

#include <stdexcept>
#include <tuple>

// GCC 12 warns that asio's coroutine frames are freed by a mismatched operator delete once their
// allocator is inlined into a large coroutine (post() below). It is a false positive of the compiler
// (GCC PR 109224: a class operator new/delete pair seen through inlining), not of asio.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

namespace aipbx::engines {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);
constexpr std::uint32_t upload_rate = 16000;
constexpr std::size_t answer_limit = 4 * 1024 * 1024;
constexpr std::size_t detail_limit = 300;

std::string trim(std::string_view s) {
  const auto first = s.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return {};
  const auto last = s.find_last_not_of(" \t\r\n");
  return std::string(s.substr(first, last - first + 1));
}

// The service's own words about a failure: OpenAI's {"error": {"message": ...}}, whisper.cpp's
// {"error": "..."}, or the start of the body.
std::string detail_of(const std::string& body) {
  boost::system::error_code ec;
  const auto json = boost::json::parse(body, ec);
  if (!ec && json.is_object()) {
    const auto& o = json.get_object();
    if (const auto* e = o.if_contains("error")) {
      if (e->is_string()) return std::string(e->get_string());
      if (e->is_object())
        if (const auto* m = e->get_object().if_contains("message"); m && m->is_string())
          return std::string(m->get_string());
    }
    if (const auto* m = o.if_contains("message"); m && m->is_string()) return std::string(m->get_string());
  }
  std::string text = trim(body);
  if (text.size() > detail_limit) text = text.substr(0, detail_limit) + "...";
  return text;
}

void add_field(std::string& body, const std::string& boundary, std::string_view name, std::string_view value) {
  body += "--" + boundary + "\r\n";
  body += "Content-Disposition: form-data; name=\"";
  body += name;
  body += "\"\r\n\r\n";
  body += value;
  body += "\r\n";
}

}  // namespace

http_engine::http_engine(http_engine_options options) : options_(std::move(options)) {
  auto url = boost::urls::parse_uri(options_.url);
  if (!url) throw std::invalid_argument("invalid engine URL '" + options_.url + "': " + url.error().message());
  if (url->scheme() != "http")
    throw std::invalid_argument("engine URL '" + options_.url +
                                "': only http:// is supported (put a TLS proxy in front of an https service)");
  if (url->host().empty()) throw std::invalid_argument("engine URL '" + options_.url + "' has no host");
  if (url->has_query() || url->has_fragment() || url->has_userinfo())
    throw std::invalid_argument("engine URL '" + options_.url + "' must be http://host[:port][/path]");
  host_ = url->encoded_host_address();
  authority_ = url->encoded_host_and_port();
  port_ = url->has_port() ? std::string(url->port()) : "80";
  std::string path(url->encoded_path());
  while (!path.empty() && path.back() == '/') path.pop_back();
  target_ = path + "/v1/audio/transcriptions";
  if (options_.timeout.count() <= 0) throw std::invalid_argument("engine timeout must be positive");
}

asio::awaitable<jobs::attempt_result> http_engine::transcribe(audio_segment segment) {
  jobs::attempt_result r;
  r.engine = "http";
  auto pcm = decode_segment(segment, upload_rate);
  if (!pcm) {
    r.error = pcm.error();
    r.permanent = true;
    co_return r;
  }
  auto wav = media::wav_file(pcm->samples, pcm->rate);
  if (!wav) {
    r.error = "cannot build the WAV file: " + wav.error().message();
    r.permanent = true;
    co_return r;
  }
  // A boundary (RFC 2046 characters only) that WAV bytes will not contain in practice: 32 fixed hex
  // digits and a per-request counter.
  const std::string boundary = "aipbx-0b1f2e3d4c5a69788796a5b4c3d2e1f0-" + std::to_string(requests_.fetch_add(1) + 1);
  std::string body;
  body.reserve(wav->size() + 1024);
  add_field(body, boundary, "model", options_.model);
  add_field(body, boundary, "response_format", "json");
  body += "--" + boundary + "\r\n";
  body += "Content-Disposition: form-data; name=\"file\"; filename=\"segment.wav\"\r\n";
  body += "Content-Type: audio/wav\r\n\r\n";
  body += *wav;
  body += "\r\n--" + boundary + "--\r\n";
  auto op = post(std::move(body), boundary);
  co_return co_await std::move(op);
}

jobs::attempt_result http_engine::timed_out(jobs::attempt_result r) const {
  r.error = "no answer from " + options_.url + " within " + std::to_string(options_.timeout.count()) + " ms";
  return r;
}

asio::awaitable<jobs::attempt_result> http_engine::post(std::string body, std::string boundary) {
  jobs::attempt_result r;
  r.engine = "http";
  const auto executor = co_await asio::this_coro::executor;
  const auto deadline = std::chrono::steady_clock::now() + options_.timeout;
  boost::system::error_code ec;

  // The resolver has no timeout of its own: a timer cancels it at the deadline.
  tcp::resolver resolver(executor);
  asio::steady_timer resolve_timer(executor, deadline);
  resolve_timer.async_wait([&resolver](const boost::system::error_code& tec) {
    if (!tec) resolver.cancel();
  });
  auto [rec, endpoints] = co_await resolver.async_resolve(host_, port_, use_tuple);
  ec = rec;
  resolve_timer.cancel();
  if (ec) {
    if (std::chrono::steady_clock::now() >= deadline) co_return timed_out(r);
    r.error = "cannot resolve " + host_ + ": " + ec.message();
    co_return r;
  }

  beast::tcp_stream stream(executor);
  stream.expires_at(deadline);  // one deadline for connect, upload and answer together
  std::tie(ec, std::ignore) = co_await stream.async_connect(endpoints, use_tuple);
  if (ec == beast::error::timeout) co_return timed_out(r);
  if (ec) {
    r.error = "cannot connect to " + options_.url + ": " + ec.message();
    co_return r;
  }

  http::request<http::string_body> req{http::verb::post, target_, 11};
  req.set(http::field::host, authority_);
  req.set(http::field::user_agent, "aipbx");
  req.set(http::field::accept, "application/json");
  req.set(http::field::content_type, "multipart/form-data; boundary=" + boundary);
  if (!options_.api_key.empty()) req.set(http::field::authorization, "Bearer " + options_.api_key);
  req.body() = std::move(body);
  req.prepare_payload();
  std::tie(ec, std::ignore) = co_await http::async_write(stream, req, use_tuple);
  if (ec == beast::error::timeout) co_return timed_out(r);
  if (ec) {
    r.error = "cannot send the audio to " + options_.url + ": " + ec.message();
    co_return r;
  }

  beast::flat_buffer buffer;
  http::response_parser<http::string_body> parser;
  parser.body_limit(answer_limit);
  std::tie(ec, std::ignore) = co_await http::async_read(stream, buffer, parser, use_tuple);
  if (ec == beast::error::timeout) co_return timed_out(r);
  if (ec) {
    r.error = "no valid answer from " + options_.url + ": " + ec.message();
    co_return r;
  }
  boost::system::error_code ignored;
  stream.socket().shutdown(tcp::socket::shutdown_both, ignored);

  const auto& res = parser.get();
  const unsigned status = res.result_int();
  const std::string what = "HTTP " + std::to_string(status) + " from " + options_.url;
  if (status >= 200 && status < 300) {
    boost::system::error_code jec;
    const auto json = boost::json::parse(res.body(), jec);
    const auto* text = !jec && json.is_object() ? json.get_object().if_contains("text") : nullptr;
    if (!text || !text->is_string()) {
      r.error = what + " without a transcript (expected a JSON object with \"text\")";
      co_return r;
    }
    r.ok = true;
    r.text = trim(text->get_string());
    co_return r;
  }
  const std::string detail = detail_of(res.body());
  r.error = detail.empty() ? what : what + ": " + detail;
  const bool retryable = status == 429 || status == 408 || status >= 500;
  r.permanent = !retryable;
  co_return r;
}

}  // namespace aipbx::engines
