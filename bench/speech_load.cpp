// aipbx_speech_load: live calls of real speech against a running aipbx, for bench/run_speech_bench.sh.
//
//   aipbx_speech_load --port P --calls K --seconds D [--host 127.0.0.1] [--wait S]
//   aipbx_speech_load --port P --calls K --once [--lead-ms L] [--pace fast|live] [--wait S]
//
// Each of K calls (one thread and one connection each) declares pcmu/8000, then sends Debian's recorded
// speech (pocketsphinx-testdata: goforward.raw, the five cards recordings and the five librivox sentences,
// one after the other, in a loop) as 20 ms mu-law packets at the pace of a live call (packet i at start + i x
// 20 ms) for D seconds, and ends the call. With --once, each call is that speech once (41 s, 96 words),
// call k led by k x L ms of silence (so that cuts every N packets fall elsewhere in each), sent as fast as
// the server answers (--pace fast, the default then) or live; the transcripts are then scored against the
// recordings' references. Then it waits (at most --wait seconds) until every call is COMPLETED and reads
// the transcripts. It prints one line of key=value figures:
//   rtf_mean, rtf_p95    the engine's time per segment over the segment's audio duration (real-time factor)
//   lag_p50, lag_max     how long after a segment's last packet was sent its transcript was stored, in s
//   late_packets         packets sent later than 100 ms after their due time (the sender fell behind)
//   completed            calls whose transcript was complete within --wait
//   wer, errors, words   (--once) word errors over the K calls' references, and the word error rate
// A box keeps up with K calls when the lag stays near the segment duration and does not grow over the
// call. Loopback only; it stops by itself after D + --wait seconds.
#include "media/audio_codec.hpp"
#include "support/speech_corpus.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace json = boost::json;
using clock_type = std::chrono::steady_clock;

struct options {
  std::string host = "127.0.0.1";
  std::string port;
  int calls = 1;
  double seconds = 30;
  double wait = 120;
  bool once = false;
  double lead_ms = 0;
  bool live = true;
};

class client {
 public:
  client(const std::string& host, const std::string& port) : socket_(ioc_) {
    asio::ip::tcp::resolver resolver(ioc_);
    asio::connect(socket_, resolver.resolve(host, port));
    socket_.set_option(asio::ip::tcp::no_delay(true));
  }

  std::pair<int, std::string> request(http::verb method, const std::string& target, const std::string& body = {}) {
    http::request<http::string_body> req{method, target, 11};
    req.set(http::field::host, "127.0.0.1");
    if (!body.empty()) {
      req.set(http::field::content_type, "application/json");
      req.body() = body;
    }
    req.prepare_payload();
    http::write(socket_, req);
    http::response<http::string_body> res;
    http::read(socket_, buffer_, res);
    return {res.result_int(), res.body()};
  }

 private:
  asio::io_context ioc_;
  asio::ip::tcp::socket socket_;
  beast::flat_buffer buffer_;
};

double percentile(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, static_cast<std::size_t>(p * static_cast<double>(v.size())))];
}

options parse(int argc, char** argv) {
  options o;
  bool paced = false;
  for (int i = 1; i < argc; i += 2) {
    const std::string flag = argv[i];
    if (flag == "--once") {
      o.once = true;
      --i;
      continue;
    }
    if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
    const std::string value = argv[i + 1];
    if (flag == "--host") o.host = value;
    else if (flag == "--lead-ms") o.lead_ms = std::stod(value);
    else if (flag == "--pace") {
      if (value != "fast" && value != "live") throw std::invalid_argument("--pace fast or live");
      o.live = value == "live";
      paced = true;
    }
    else if (flag == "--port") o.port = value;
    else if (flag == "--calls") o.calls = std::stoi(value);
    else if (flag == "--seconds") o.seconds = std::stod(value);
    else if (flag == "--wait") o.wait = std::stod(value);
    else throw std::invalid_argument("unknown option " + flag);
  }
  if (o.port.empty() || o.calls < 1 || o.seconds <= 0) throw std::invalid_argument("need --port, --calls >= 1, --seconds > 0");
  if (o.once && !paced) o.live = false;
  return o;
}

}  // namespace

int main(int argc, char** argv) try {
  const options o = parse(argc, argv);
  // The speech, as packets: goforward, the cards set and the librivox set, looped (aipbx_bare_decode
  // decodes the same).
  const auto packets = aipbx::test::pcmu_packets(aipbx::test::benchmark_speech());
  // Call k's packets: with --once, k x lead of silence then the speech once; else the speech looped.
  const std::string silence = aipbx::media::encode_audio(aipbx::media::media_format::pcmu(),
                                                         std::vector<std::int16_t>(160, 0));
  const auto lead_packets = [&](int k) { return static_cast<std::size_t>(o.lead_ms * k / 20); };
  const auto total_of = [&](int k) {
    return o.once ? lead_packets(k) + packets.size() : static_cast<std::size_t>(o.seconds * 50);
  };
  const auto packet_of = [&](int k, std::size_t i) -> const std::string& {
    if (!o.once) return packets[i % packets.size()];
    return i < lead_packets(k) ? silence : packets[i - lead_packets(k)];
  };

  const std::string run = std::to_string(std::chrono::system_clock::now().time_since_epoch().count() % 1000000);
  std::atomic<long> late{0}, failed{0};
  std::vector<double> first_due(static_cast<std::size_t>(o.calls));  // unix time packet 1 of each call was due
  std::vector<std::thread> senders;
  const auto start = clock_type::now() + std::chrono::milliseconds(200);
  for (int k = 0; k < o.calls; ++k) {
    senders.emplace_back([&, k] {
      try {
        client c(o.host, o.port);
        const std::string id = "speech-" + run + "-" + std::to_string(k);
        if (c.request(http::verb::post, "/v1/calls/" + id, R"({"media": {"format": "pcmu/8000"}})").first != 201)
          ++failed;
        // Calls start 20 ms / K apart, as independent callers would, not all on the same tick.
        const auto offset = std::chrono::microseconds(20'000 * k / o.calls);
        first_due[static_cast<std::size_t>(k)] =
            std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count() +
            std::chrono::duration<double>(start + offset - clock_type::now()).count();
        for (std::size_t i = 0; i < total_of(k); ++i) {
          if (o.live) {
            const auto due = start + offset + std::chrono::milliseconds(20 * i);
            std::this_thread::sleep_until(due);
            if (clock_type::now() - due > std::chrono::milliseconds(100)) ++late;
          }
          const std::string body = "{\"sequence\":" + std::to_string(i + 1) + ",\"data\":\"" + packet_of(k, i) +
                                   "\",\"timestamp\":" + std::to_string(static_cast<double>(i) * 0.02) + "}";
          if (c.request(http::verb::post, "/v1/call/stream/" + id, body).first != 202) ++failed;
        }
        if (c.request(http::verb::post, "/v1/calls/" + id + "/end").first != 200) ++failed;
      } catch (const std::exception& e) {
        std::cerr << "call " << k << ": " << e.what() << "\n";
        ++failed;
      }
    });
  }
  for (auto& t : senders) t.join();
  const auto sent = clock_type::now();

  client c(o.host, o.port);
  int completed = 0;
  std::vector<double> rtf, lag;
  const std::string reference = aipbx::test::benchmark_reference();
  double errors = 0, words = 0;
  for (int k = 0; k < o.calls; ++k) {
    const std::string id = "speech-" + run + "-" + std::to_string(k);
    json::object call;
    for (;;) {
      call = json::parse(c.request(http::verb::get, "/v1/calls/" + id).second).as_object();
      if (call.at("state") == "COMPLETED" || call.at("state") == "FAILED") break;
      if (clock_type::now() - sent > std::chrono::duration<double>(o.wait)) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(200));
    }
    if (call.at("state") == "COMPLETED") ++completed;
    const auto transcript = json::parse(c.request(http::verb::get, "/v1/calls/" + id + "/transcript").second).as_object();
    if (o.once) {
      const auto n = static_cast<double>(aipbx::test::words_of(reference).size());
      errors += n * aipbx::test::word_error_rate(reference, std::string(transcript.at("text").as_string()));
      words += n;
    }
    for (const auto& seg : transcript.at("segments").as_array()) {
      const double begin = seg.at("start").to_number<double>(), end = seg.at("end").to_number<double>();
      if (end <= begin) continue;
      rtf.push_back(seg.at("latency_ms").to_number<double>() / 1000.0 / (end - begin));
      // The segment's last packet was due `end` seconds after the call's first.
      lag.push_back(seg.at("created_at").to_number<double>() - (first_due[static_cast<std::size_t>(k)] + end));
    }
  }
  double mean = 0;
  for (double r : rtf) mean += r;
  mean = rtf.empty() ? 0 : mean / static_cast<double>(rtf.size());
  double audio = 0;
  for (int k = 0; k < o.calls; ++k) audio += static_cast<double>(total_of(k)) * 0.02;
  std::printf("calls=%d seconds=%.0f audio_s=%.1f segments=%zu rtf_mean=%.3f rtf_p95=%.3f lag_p50=%.2f lag_max=%.2f "
              "late_packets=%ld failed_requests=%ld completed=%d",
              o.calls, o.seconds, audio, rtf.size(), mean, percentile(rtf, 0.95), percentile(lag, 0.5),
              percentile(lag, 1.0), late.load(), failed.load(), completed);
  if (o.once) std::printf(" wer=%.3f errors=%.0f words=%.0f", words > 0 ? errors / words : 0.0, errors, words);
  std::printf("\n");
  return failed.load() == 0 && completed == o.calls ? 0 : 1;
} catch (const std::exception& e) {
  std::cerr << "aipbx_speech_load: " << e.what() << "\n";
  return 2;
}
