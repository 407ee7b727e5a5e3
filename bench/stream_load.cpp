// aipbx_stream_load: N simulated calls against a running aipbx, each sending one 20 ms frame every 20 ms on
// schedule, over one protocol, then a check that every frame was stored.
//
//   aipbx_stream_load --protocol http|twilio|fork|fork-seq|audiosocket --calls N --seconds S --port P
//                     [--audiosocket-port Q] [--host 127.0.0.1] [--ramp S] [--server-pid PID] [--prefix ID]
//                     [--token T] [--json]
//
// Open loop: call i sends frame k at start + i * 20 ms / N + k * 20 ms whatever became of the frames
// before; nothing waits for an answer to send the next. One thread, non-blocking sockets and epoll: the
// generator costs a few µs per frame (it prints its own CPU per frame beside the server's). WebSocket
// frames are masked with the zero key (masking is then the identity; RFC 6455 wants a random key so that
// intermediaries cannot be poisoned, which loopback has none of).
//
// What it measures:
// - every protocol: how late each frame left against its schedule (a server that stops reading shows here,
//   as the socket fills), and the server's receive -> durable lag from /metrics (the difference of
//   aipbx_stream_commit_lag_seconds, or aipbx_ingest_latency_seconds for HTTP, over the run);
// - http and fork-seq, which answer each frame once it is durable: the latency from the frame's scheduled
//   send to its answer, so that a stalled server cannot hide (no coordinated omission);
// - the server's CPU per frame (from /proc/PID/stat, with --server-pid) and the generator's own;
// - at the end, each call's packets_received against the frames sent: "stored" must equal "sent".
#include "media/audio_codec.hpp"

#include <CLI/CLI.hpp>
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <limits>
#include <map>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

namespace {

using clock_type = std::chrono::steady_clock;
using namespace std::chrono_literals;

enum class protocol { http, twilio, fork, fork_seq, audiosocket };

struct options {
  std::string protocol_name = "twilio";
  protocol proto = protocol::twilio;
  int calls = 100;
  double seconds = 10;
  std::string host = "127.0.0.1";
  int port = 8080;
  int audiosocket_port = 0;
  double ramp = 2;
  int server_pid = 0;
  std::string prefix = "load";
  std::string token;
  bool json = false;
};

constexpr auto frame_period = 20ms;
constexpr std::size_t samples_per_frame = 160;  // 20 ms at 8 kHz

// ---------------------------------------------------------------------------------------------------------
// Blocking helpers for set-up and the final check.

int connect_to(const std::string& host, int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) throw std::runtime_error("socket: " + std::string(std::strerror(errno)));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<std::uint16_t>(port));
  if (::inet_pton(AF_INET, host.c_str(), &addr.sin_addr) != 1) throw std::runtime_error("bad host " + host);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int e = errno;
    ::close(fd);
    throw std::runtime_error("connect " + host + ":" + std::to_string(port) + ": " + std::strerror(e));
  }
  const int one = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

void write_all(int fd, std::string_view bytes) {
  while (!bytes.empty()) {
    const auto n = ::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("send: " + std::string(std::strerror(errno)));
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

// Reads until `until` is in the buffer (blocking); returns everything read.
std::string read_until(int fd, std::string_view until, std::string already = {}) {
  std::string got = std::move(already);
  char buf[4096];
  while (got.find(until) == std::string::npos) {
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) throw std::runtime_error("connection closed during set-up: " + got.substr(0, 200));
    got.append(buf, static_cast<std::size_t>(n));
  }
  return got;
}

// One HTTP/1.1 request on a kept-alive connection: status and body.
std::pair<int, std::string> http_request(int fd, const std::string& method, const std::string& target,
                                         const std::string& token, const std::string& body = {}) {
  std::string req = method + " " + target + " HTTP/1.1\r\nHost: loadgen\r\n";
  if (!token.empty()) req += "Authorization: Bearer " + token + "\r\n";
  if (!body.empty()) req += "Content-Type: application/json\r\nContent-Length: " + std::to_string(body.size()) + "\r\n";
  req += "\r\n" + body;
  write_all(fd, req);
  std::string got = read_until(fd, "\r\n\r\n");
  const auto head_end = got.find("\r\n\r\n") + 4;
  const int status = std::atoi(got.c_str() + 9);
  std::size_t length = 0;
  std::string lower = got.substr(0, head_end);
  std::transform(lower.begin(), lower.end(), lower.begin(), [](unsigned char c) { return std::tolower(c); });
  if (const auto at = lower.find("content-length:"); at != std::string::npos)
    length = std::strtoull(lower.c_str() + at + 15, nullptr, 10);
  char buf[4096];
  while (got.size() < head_end + length) {
    const auto n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) throw std::runtime_error("connection closed in a response");
    got.append(buf, static_cast<std::size_t>(n));
  }
  return {status, got.substr(head_end, length)};
}

// The integer after "name": in a JSON text, or -1.
std::int64_t json_int(std::string_view text, std::string_view name) {
  const std::string key = "\"" + std::string(name) + "\":";
  const auto at = text.find(key);
  if (at == std::string_view::npos) return -1;
  return std::strtoll(text.data() + at + key.size(), nullptr, 10);
}

// ---------------------------------------------------------------------------------------------------------
// WebSocket framing, client side.

void ws_frame(std::string& out, std::uint8_t opcode, std::string_view payload) {
  out.push_back(static_cast<char>(0x80 | opcode));
  const std::size_t n = payload.size();
  if (n < 126) {
    out.push_back(static_cast<char>(0x80 | n));
  } else if (n < 65536) {
    out.push_back(static_cast<char>(0x80 | 126));
    out.push_back(static_cast<char>(n >> 8));
    out.push_back(static_cast<char>(n & 0xff));
  } else {
    out.push_back(static_cast<char>(0x80 | 127));
    for (int i = 7; i >= 0; --i) out.push_back(static_cast<char>((n >> (8 * i)) & 0xff));
  }
  out.append(4, '\0');  // the zero masking key
  out.append(payload);
}

// One server frame (unmasked) at the front of `in`: its opcode and payload, or nothing until it is whole.
struct server_frame {
  std::uint8_t opcode;
  std::string_view payload;
  std::size_t size;
};
std::optional<server_frame> next_server_frame(std::string_view in) {
  if (in.size() < 2) return std::nullopt;
  const auto b1 = static_cast<std::uint8_t>(in[1]);
  std::size_t header = 2;
  std::uint64_t n = b1 & 0x7f;
  if (n == 126) {
    if (in.size() < 4) return std::nullopt;
    n = (static_cast<std::uint8_t>(in[2]) << 8) | static_cast<std::uint8_t>(in[3]);
    header = 4;
  } else if (n == 127) {
    if (in.size() < 10) return std::nullopt;
    n = 0;
    for (int i = 2; i < 10; ++i) n = (n << 8) | static_cast<std::uint8_t>(in[static_cast<std::size_t>(i)]);
    header = 10;
  }
  if (in.size() < header + n) return std::nullopt;
  return server_frame{static_cast<std::uint8_t>(static_cast<std::uint8_t>(in[0]) & 0x0f), in.substr(header, n),
                      header + n};
}

std::string ws_handshake(int fd, const options& o, const std::string& target) {
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: " + o.host +
                    "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                    "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";
  if (!o.token.empty()) req += "Authorization: Bearer " + o.token + "\r\n";
  req += "\r\n";
  write_all(fd, req);
  std::string got = read_until(fd, "\r\n\r\n");
  if (got.compare(0, 12, "HTTP/1.1 101") != 0) throw std::runtime_error("upgrade refused: " + got.substr(0, 200));
  return got.substr(got.find("\r\n\r\n") + 4);  // bytes after the handshake (a first frame)
}

// ---------------------------------------------------------------------------------------------------------
// The calls.

struct call {
  int fd = -1;
  std::string id;         // the call id the server stores
  std::int64_t sent = 0;  // frames handed to the socket (or queued behind a full one)
  std::string out;        // bytes the socket has not taken yet
  std::size_t out_at = 0;
  std::string in;         // bytes read, not yet parsed
  std::deque<clock_type::time_point> waiting;  // scheduled sends of frames not answered yet (http, fork-seq)
  std::int64_t answered = 0;
  std::int64_t refused = 0;  // http answers other than 2xx
  bool blocked = false;  // the socket took not all of `out`: written on when it is writable again
  bool closed = false;
};

struct results {
  std::vector<float> lateness_ms;  // actual send - scheduled send, every frame
  std::vector<float> latency_ms;   // answer - scheduled send (http, fork-seq)
  std::int64_t stalls = 0;         // sends that found the socket full
  std::int64_t closed_early = 0;   // connections the server closed during the run
};

class load {
 public:
  explicit load(options o) : o_(std::move(o)) {
    std::vector<std::int16_t> pcm(samples_per_frame);
    for (std::size_t i = 0; i < pcm.size(); ++i)
      pcm[i] = static_cast<std::int16_t>(3000 * std::sin(2 * M_PI * 440 * static_cast<double>(i) / 8000));
    l16_.assign(reinterpret_cast<const char*>(pcm.data()), pcm.size() * 2);
    payload_b64_ = aipbx::media::encode_audio(aipbx::media::media_format::pcmu(), pcm);
    epoll_ = ::epoll_create1(EPOLL_CLOEXEC);
  }
  ~load() {
    for (auto& c : calls_)
      if (c.fd >= 0) ::close(c.fd);
    if (epoll_ >= 0) ::close(epoll_);
  }

  void open_calls() {
    calls_.resize(static_cast<std::size_t>(o_.calls));
    const auto started = clock_type::now();
    for (int i = 0; i < o_.calls; ++i) {
      // Connections open spread over --ramp seconds: a PBX's calls do not all start in one instant.
      const auto due = started + std::chrono::duration_cast<clock_type::duration>(
                                     std::chrono::duration<double>(o_.ramp * i / std::max(1, o_.calls)));
      std::this_thread::sleep_until(due);
      open_call(calls_[static_cast<std::size_t>(i)], i);
    }
  }

  results run() {
    results r;
    const auto n = calls_.size();
    r.lateness_ms.reserve(static_cast<std::size_t>(o_.seconds * 50 * static_cast<double>(n)) + 16);
    const auto start = clock_type::now() + 50ms;
    const auto frames = static_cast<std::int64_t>(std::llround(o_.seconds * 50));
    const auto offset = [&](std::size_t i) { return frame_period * static_cast<std::int64_t>(i) / static_cast<std::int64_t>(n); };
    // Frame k of call i is due at start + offset(i) + k * 20 ms: the calls in index order, cyclically.
    std::size_t i = 0;
    std::int64_t k = 0;
    while (k < frames) {
      const auto due = start + offset(i) + frame_period * k;
      poll_until(due, r);
      send_frame(calls_[i], k, due, r);
      if (++i == n) {
        i = 0;
        ++k;
      }
    }
    return r;
  }

  // Ends every call as its protocol does, then waits (10 s at most) for the answers still due.
  void finish(results& r) {
    for (auto& c : calls_) end_call(c);
    const auto deadline = clock_type::now() + 10s;
    while (clock_type::now() < deadline) {
      bool pending = false;
      for (auto& c : calls_) pending = pending || (!c.closed && (!c.out.empty() || !c.waiting.empty()));
      if (!pending) break;
      poll_until(clock_type::now() + 10ms, r);
    }
  }

  // Each call's packets_received (its first track) against the frames sent, within 10 s.
  std::pair<std::int64_t, std::int64_t> check_stored() {
    const int fd = connect_to(o_.host, o_.port);
    std::int64_t stored = 0;
    std::int64_t sent = 0;
    const auto deadline = clock_type::now() + 10s;
    for (auto& c : calls_) {
      std::int64_t got = -1;
      for (;;) {
        const auto [status, body] = http_request(fd, "GET", "/v1/calls/" + c.id, o_.token);
        got = status == 200 ? json_int(body, "packets_received") : -1;
        if (got >= c.sent || clock_type::now() > deadline) break;
        std::this_thread::sleep_for(50ms);
      }
      stored += std::max<std::int64_t>(got, 0);
      sent += c.sent;
    }
    ::close(fd);
    return {stored, sent};
  }

  std::int64_t refused() const {
    std::int64_t n = 0;
    for (const auto& c : calls_) n += c.refused;
    return n;
  }

 private:
  void open_call(call& c, int index) {
    char id[64];
    if (o_.proto == protocol::audiosocket) {
      // The UUID's last 8 bytes hold the index; the prefix's hash the rest.
      const auto h = std::hash<std::string>{}(o_.prefix);
      std::snprintf(id, sizeof id, "%08x-%04x-%04x-%04x-%012x", static_cast<unsigned>(h), static_cast<unsigned>(h >> 32) & 0xffff,
                    static_cast<unsigned>(h >> 48) & 0xffff, 0x8000u, static_cast<unsigned>(index));
    } else {
      std::snprintf(id, sizeof id, "%s-%s-%06d", o_.prefix.c_str(), o_.protocol_name.c_str(), index);
    }
    c.id = id;
    switch (o_.proto) {
      case protocol::http: c.fd = connect_to(o_.host, o_.port); break;
      case protocol::twilio: open_twilio(c); break;
      case protocol::fork: open_fork(c, false); break;
      case protocol::fork_seq: open_fork(c, true); break;
      case protocol::audiosocket: open_audiosocket(c); break;
    }
    ::fcntl(c.fd, F_SETFL, ::fcntl(c.fd, F_GETFL) | O_NONBLOCK);
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP;
    ev.data.ptr = &c;
    ::epoll_ctl(epoll_, EPOLL_CTL_ADD, c.fd, &ev);
  }

  void open_twilio(call& c) {
    c.fd = connect_to(o_.host, o_.port);
    c.in = ws_handshake(c.fd, o_, "/v1/media-streams");
    std::string out;
    ws_frame(out, 1, R"({"event":"connected","protocol":"Call","version":"1.0.0"})");
    ws_frame(out, 1,
             R"({"event":"start","sequenceNumber":"1","streamSid":"MZ)" + c.id + R"(","start":{"accountSid":"AC0","streamSid":"MZ)" +
                 c.id + R"(","callSid":")" + c.id +
                 R"(","tracks":["inbound"],"customParameters":{},"mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}})");
    write_all(c.fd, out);
  }

  void open_fork(call& c, bool sequenced) {
    c.fd = connect_to(o_.host, o_.port);
    const std::string target = "/v1/audio-fork/" + c.id + "?format=l16/8000" + (sequenced ? "&sequenced=1" : "");
    c.in = ws_handshake(c.fd, o_, target);
    if (sequenced) {
      // The server says `ready` once the call is open; frames go only after it.
      for (;;) {
        if (auto f = next_server_frame(c.in)) {
          const std::string text(f->payload);
          c.in.erase(0, f->size);
          if (text.find("\"ready\"") != std::string::npos) break;
          continue;
        }
        c.in = read_until(c.fd, "ready", std::move(c.in));
      }
    } else {
      std::string out;
      ws_frame(out, 1, R"({"callSid":")" + c.id + R"(","sampleRate":8000,"mixType":"mono"})");
      write_all(c.fd, out);
    }
  }

  void open_audiosocket(call& c) {
    c.fd = connect_to(o_.host, o_.audiosocket_port);
    std::string out{'\x01', '\x00', '\x10'};
    unsigned bytes[16];
    std::sscanf(c.id.c_str(), "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x", &bytes[0], &bytes[1],
                &bytes[2], &bytes[3], &bytes[4], &bytes[5], &bytes[6], &bytes[7], &bytes[8], &bytes[9], &bytes[10],
                &bytes[11], &bytes[12], &bytes[13], &bytes[14], &bytes[15]);
    for (unsigned b : bytes) out.push_back(static_cast<char>(b));
    write_all(c.fd, out);
  }

  // Frame k of the call (k from 0), appended to its output, then written as far as the socket takes it.
  void send_frame(call& c, std::int64_t k, clock_type::time_point due, results& r) {
    if (c.closed) return;
    const auto seq = k + 1;
    switch (o_.proto) {
      case protocol::http: {
        const int len = std::snprintf(body_, sizeof body_, R"({"sequence":%lld,"data":"%s","timestamp":%.2f})",
                                      static_cast<long long>(seq), payload_b64_.c_str(), 1.7e9 + 0.02 * static_cast<double>(seq));
        char head[256];
        const int hlen = std::snprintf(head, sizeof head,
                                       "POST /v1/call/stream/%s HTTP/1.1\r\nHost: loadgen\r\nContent-Type: "
                                       "application/json\r\nContent-Length: %d\r\n%s\r\n",
                                       c.id.c_str(), len, auth_header().c_str());
        c.out.append(head, static_cast<std::size_t>(hlen));
        c.out.append(body_, static_cast<std::size_t>(len));
        c.waiting.push_back(due);
        break;
      }
      case protocol::twilio: {
        const int len = std::snprintf(
            body_, sizeof body_,
            R"({"event":"media","sequenceNumber":"%lld","streamSid":"MZ%s","media":{"track":"inbound","chunk":"%lld","timestamp":"%lld","payload":"%s"}})",
            static_cast<long long>(seq + 1), c.id.c_str(), static_cast<long long>(seq), static_cast<long long>(k * 20),
            payload_b64_.c_str());
        ws_frame(c.out, 1, std::string_view(body_, static_cast<std::size_t>(len)));
        break;
      }
      case protocol::fork: ws_frame(c.out, 2, l16_); break;
      case protocol::fork_seq: {
        std::string m(8, '\0');
        for (int b = 0; b < 8; ++b) m[static_cast<std::size_t>(7 - b)] = static_cast<char>((seq >> (8 * b)) & 0xff);
        m += l16_;
        ws_frame(c.out, 2, m);
        c.waiting.push_back(due);
        break;
      }
      case protocol::audiosocket:
        c.out += std::string{'\x10', static_cast<char>(l16_.size() >> 8), static_cast<char>(l16_.size() & 0xff)};
        c.out += l16_;
        break;
    }
    ++c.sent;
    if (!c.blocked) flush(c, r);  // else the socket is full: EPOLLOUT writes on
    r.lateness_ms.push_back(std::chrono::duration<float, std::milli>(clock_type::now() - due).count());
  }

  std::string auth_header() const { return o_.token.empty() ? std::string() : "Authorization: Bearer " + o_.token + "\r\n"; }

  void flush(call& c, results& r) {
    while (c.out_at < c.out.size()) {
      const auto n = ::send(c.fd, c.out.data() + c.out_at, c.out.size() - c.out_at, MSG_NOSIGNAL);
      if (n < 0) {
        if (errno == EAGAIN) {
          ++r.stalls;
          c.blocked = true;
          watch_writable(c, true);
          return;
        }
        if (errno == EINTR) continue;
        lost(c, r);
        return;
      }
      c.out_at += static_cast<std::size_t>(n);
    }
    c.out.clear();
    c.out_at = 0;
    if (c.blocked) watch_writable(c, false);
    c.blocked = false;
  }

  void watch_writable(call& c, bool on) {
    epoll_event ev{};
    ev.events = EPOLLIN | EPOLLRDHUP | (on ? EPOLLOUT : 0u);
    ev.data.ptr = &c;
    ::epoll_ctl(epoll_, EPOLL_CTL_MOD, c.fd, &ev);
  }

  void lost(call& c, results& r) {
    if (c.closed) return;
    c.closed = true;
    ++r.closed_early;
    ::epoll_ctl(epoll_, EPOLL_CTL_DEL, c.fd, nullptr);
  }

  // Handles socket events until `until`; returns at once when it has passed.
  void poll_until(clock_type::time_point until, results& r) {
    epoll_event events[256];
    for (;;) {
      const auto left = until - clock_type::now();
      const int timeout = left <= 0ms ? 0 : static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(left).count());
      const int n = ::epoll_wait(epoll_, events, 256, timeout);
      for (int e = 0; e < n; ++e) {
        auto& c = *static_cast<call*>(events[e].data.ptr);
        if (events[e].events & EPOLLOUT) flush(c, r);
        if (events[e].events & (EPOLLIN | EPOLLRDHUP | EPOLLHUP | EPOLLERR)) read_from(c, r);
      }
      if (n < 256 && clock_type::now() >= until) return;
      if (n == 0 && timeout == 0) {
        // Under a millisecond left: sleep it out rather than spin.
        std::this_thread::sleep_until(until);
        return;
      }
    }
  }

  void read_from(call& c, results& r) {
    char buf[16384];
    for (;;) {
      const auto n = ::recv(c.fd, buf, sizeof buf, 0);
      if (n > 0) {
        c.in.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) break;
      parse_answers(c, r);
      lost(c, r);
      return;
    }
    parse_answers(c, r);
  }

  void answered(call& c, results& r, std::int64_t count) {
    const auto now = clock_type::now();
    for (; count > 0 && !c.waiting.empty(); --count) {
      r.latency_ms.push_back(std::chrono::duration<float, std::milli>(now - c.waiting.front()).count());
      c.waiting.pop_front();
      ++c.answered;
    }
  }

  void parse_answers(call& c, results& r) {
    std::size_t at = 0;
    if (o_.proto == protocol::http) {
      for (;;) {
        const auto head_end = c.in.find("\r\n\r\n", at);
        if (head_end == std::string::npos) break;
        const auto length = json_header_length(std::string_view(c.in).substr(at, head_end - at));
        if (c.in.size() < head_end + 4 + length) break;
        if (c.in.compare(at + 9, 1, "2") != 0) ++c.refused;
        answered(c, r, 1);
        at = head_end + 4 + length;
      }
    } else if (o_.proto != protocol::audiosocket) {
      while (auto f = next_server_frame(std::string_view(c.in).substr(at))) {
        if (o_.proto == protocol::fork_seq && f->opcode == 1) {
          const auto acked = json_int(f->payload, "sequence");
          if (acked > c.answered) answered(c, r, acked - c.answered);
        }
        at += f->size;
      }
    } else {
      at = c.in.size();  // nothing is expected from the server but a hang-up
    }
    c.in.erase(0, at);
  }

  // The Content-Length of a response head as aipbx writes it.
  static std::size_t json_header_length(std::string_view head) {
    const auto at = head.find("\r\nContent-Length:");
    return at == std::string_view::npos ? 0 : std::strtoull(head.data() + at + 17, nullptr, 10);
  }

  void end_call(call& c) {
    if (c.closed) return;
    switch (o_.proto) {
      case protocol::http: return;  // the call ends by its idle timeout, as a packet stream without an end does
      case protocol::twilio:
        ws_frame(c.out, 1, R"({"event":"stop","sequenceNumber":"0","streamSid":"MZ)" + c.id + R"(","stop":{"callSid":")" + c.id + R"("}})");
        break;
      case protocol::fork:
        ws_frame(c.out, 2, "");  // mod_audio_fork's graceful stop
        break;
      case protocol::fork_seq: return;  // closed after its last ack (finish)
      case protocol::audiosocket: ::shutdown(c.fd, SHUT_WR); return;
    }
    results ignored;
    flush(c, ignored);
  }

  options o_;
  std::vector<call> calls_;
  std::string l16_;
  std::string payload_b64_;
  char body_[2048];
  int epoll_ = -1;
};

// ---------------------------------------------------------------------------------------------------------
// Figures.

double percentile(std::vector<float>& v, double p) {
  if (v.empty()) return 0;
  const auto at = static_cast<std::size_t>(std::min<double>(static_cast<double>(v.size()) - 1, p * static_cast<double>(v.size())));
  std::nth_element(v.begin(), v.begin() + static_cast<std::ptrdiff_t>(at), v.end());
  return v[at];
}

// CPU seconds (user + system) of a process, from /proc/PID/stat.
double process_cpu(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  const auto close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream fields(stat.substr(close + 2));
  std::string f;
  double ticks = 0;
  for (int i = 3; i <= 15 && fields >> f; ++i)
    if (i == 14 || i == 15) ticks += std::stod(f);
  return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
}

double self_cpu() {
  rusage u{};
  ::getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) + static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

// A Prometheus histogram's cumulative bucket counts (le -> count) for the series whose line holds `match`.
std::map<double, double> scrape_histogram(const options& o, const std::string& metric, const std::string& match) {
  std::map<double, double> out;
  try {
    const int fd = connect_to(o.host, o.port);
    const auto [status, body] = http_request(fd, "GET", "/metrics", o.token);
    ::close(fd);
    std::istringstream lines(body);
    for (std::string line; std::getline(lines, line);) {
      if (line.rfind(metric + "_bucket{", 0) != 0 || line.find(match) == std::string::npos) continue;
      const auto le = line.find("le=\"");
      const auto end = line.find('"', le + 4);
      const std::string bound = line.substr(le + 4, end - le - 4);
      const double b = bound == "+Inf" ? std::numeric_limits<double>::infinity() : std::stod(bound);
      out[b] = std::stod(line.substr(line.rfind(' ') + 1));
    }
  } catch (const std::exception&) {
  }
  return out;
}

struct lag_summary {
  double count = 0;
  double within_20ms = 0;  // share of observations <= 20 ms
  double p50 = 0;
  double p99 = 0;  // upper bound of the bucket that holds the 99th percentile
};

lag_summary lag_between(const std::map<double, double>& before, const std::map<double, double>& after) {
  lag_summary s;
  std::vector<std::pair<double, double>> diff;
  for (const auto& [le, n] : after) {
    const auto b = before.find(le);
    diff.emplace_back(le, n - (b == before.end() ? 0 : b->second));
  }
  if (diff.empty()) return s;
  s.count = diff.back().second;
  if (s.count <= 0) return s;
  for (const auto& [le, n] : diff)
    if (le <= 0.02 + 1e-9) s.within_20ms = n / s.count;
  const auto quantile = [&](double q) {
    for (const auto& [le, n] : diff)
      if (n >= q * s.count) return le;
    return std::numeric_limits<double>::infinity();
  };
  s.p50 = quantile(0.5) * 1000;
  s.p99 = quantile(0.99) * 1000;
  return s;
}

options parse(int argc, char** argv) {
  options o;
  CLI::App app{"aipbx_stream_load: open-loop calls of 20 ms frames against a running aipbx"};
  app.add_option("--protocol", o.protocol_name, "http, twilio, fork, fork-seq or audiosocket")
      ->check(CLI::IsMember({"http", "twilio", "fork", "fork-seq", "audiosocket"}));
  app.add_option("--calls", o.calls, "Concurrent calls")->check(CLI::Range(1, 100000));
  app.add_option("--seconds", o.seconds, "Seconds of audio each call sends")->check(CLI::Range(0.02, 3600.0));
  app.add_option("--host", o.host, "aipbx's address (loopback)");
  app.add_option("--port", o.port, "aipbx's HTTP port")->required();
  app.add_option("--audiosocket-port", o.audiosocket_port, "aipbx's AudioSocket port");
  app.add_option("--ramp", o.ramp, "Seconds over which the calls connect");
  app.add_option("--server-pid", o.server_pid, "aipbx's process, for its CPU per frame");
  app.add_option("--prefix", o.prefix, "Call id prefix (distinct per run on one database)");
  app.add_option("--token", o.token, "Bearer token");
  app.add_flag("--json", o.json, "One JSON line of results");
  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    std::exit(app.exit(e));
  }
  static const std::map<std::string, protocol> names{{"http", protocol::http},
                                                     {"twilio", protocol::twilio},
                                                     {"fork", protocol::fork},
                                                     {"fork-seq", protocol::fork_seq},
                                                     {"audiosocket", protocol::audiosocket}};
  o.proto = names.at(o.protocol_name);
  if (o.proto == protocol::audiosocket && o.audiosocket_port == 0) {
    std::cerr << "--protocol audiosocket needs --audiosocket-port\n";
    std::exit(2);
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  const options o = parse(argc, argv);
  try {
    load l(o);
    l.open_calls();
    const std::string metric = o.proto == protocol::http ? "aipbx_ingest_latency_seconds" : "aipbx_stream_commit_lag_seconds";
    static const std::map<protocol, std::string> series{{protocol::http, ""},
                                                        {protocol::twilio, "protocol=\"twilio\""},
                                                        {protocol::fork, "protocol=\"audio_fork\""},
                                                        {protocol::fork_seq, "protocol=\"audio_fork\""},
                                                        {protocol::audiosocket, "protocol=\"audiosocket\""}};
    const auto lag_before = scrape_histogram(o, metric, series.at(o.proto));
    const double server_before = o.server_pid ? process_cpu(o.server_pid) : 0;
    const double self_before = self_cpu();
    const auto t0 = clock_type::now();
    auto r = l.run();
    const double wall = std::chrono::duration<double>(clock_type::now() - t0).count();
    const double server_cpu = o.server_pid ? process_cpu(o.server_pid) - server_before : 0;
    const double self = self_cpu() - self_before;
    l.finish(r);
    const auto lag = lag_between(lag_before, scrape_histogram(o, metric, series.at(o.proto)));
    const auto [stored, sent] = l.check_stored();
    const double frames = static_cast<double>(r.lateness_ms.size());
    const double late_p99 = percentile(r.lateness_ms, 0.99);
    const double late_max = r.lateness_ms.empty() ? 0 : *std::max_element(r.lateness_ms.begin(), r.lateness_ms.end());
    const double lat_p50 = percentile(r.latency_ms, 0.5);
    const double lat_p99 = percentile(r.latency_ms, 0.99);
    const bool ok = stored == sent && r.closed_early == 0 && l.refused() == 0;
    char line[1024];
    if (o.json) {
      std::snprintf(line, sizeof line,
                    R"({"protocol":"%s","calls":%d,"frames_per_s":%.0f,"sent":%lld,"stored":%lld,"refused":%lld,"closed_early":%lld,)"
                    R"("send_late_p99_ms":%.2f,"send_late_max_ms":%.1f,"stalls":%lld,"answer_p50_ms":%.2f,"answer_p99_ms":%.2f,)"
                    R"("lag_p50_ms":%.2f,"lag_p99_ms":%.2f,"lag_within_20ms":%.4f,"server_us_per_frame":%.2f,"load_us_per_frame":%.2f,"ok":%s})",
                    o.protocol_name.c_str(), o.calls, frames / wall, static_cast<long long>(sent), static_cast<long long>(stored),
                    static_cast<long long>(l.refused()), static_cast<long long>(r.closed_early), late_p99, late_max,
                    static_cast<long long>(r.stalls), lat_p50, lat_p99, lag.p50, lag.p99, lag.within_20ms,
                    frames > 0 ? server_cpu * 1e6 / frames : 0, frames > 0 ? self * 1e6 / frames : 0, ok ? "true" : "false");
      std::cout << line << std::endl;
    } else {
      std::cout << o.protocol_name << ": " << o.calls << " calls, " << static_cast<long>(frames / wall) << " frames/s; sent "
                << sent << ", stored " << stored << (stored == sent ? " (all)" : " (MISSING)") << ", refused " << l.refused()
                << ", closed early " << r.closed_early << "\n  send lateness p99 " << late_p99 << " ms, max " << late_max
                << " ms, socket-full stalls " << r.stalls << "\n  server receive->durable lag p50 <= " << lag.p50
                << " ms, p99 <= " << lag.p99 << " ms, within 20 ms " << lag.within_20ms * 100 << " %\n";
      if (!r.latency_ms.empty())
        std::cout << "  answer latency from scheduled send p50 " << lat_p50 << " ms, p99 " << lat_p99 << " ms\n";
      if (o.server_pid) std::cout << "  CPU per frame: server " << server_cpu * 1e6 / frames << " µs, generator " << self * 1e6 / frames << " µs\n";
    }
    return ok ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "aipbx_stream_load: " << e.what() << "\n";
    return 2;
  }
}
