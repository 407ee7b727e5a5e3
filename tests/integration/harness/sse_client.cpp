#include "harness/sse_client.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <boost/json/parse.hpp>

#include <cerrno>
#include <cstring>
#include <stdexcept>

namespace aipbx::itest {

boost::json::object sse_frame::json() const { return boost::json::parse(data).as_object(); }

sse_client::sse_client(std::uint16_t port, std::string target, const header_list& headers,
                       std::optional<int> receive_buffer) {
  fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  if (receive_buffer) (void)::setsockopt(fd_, SOL_SOCKET, SO_RCVBUF, &*receive_buffer, sizeof(int));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    const int err = errno;
    ::close(fd_);
    throw std::runtime_error(std::string("connect: ") + std::strerror(err));
  }
  std::string req = "GET " + target + " HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n";
  for (const auto& [name, value] : headers) req += name + ": " + value + "\r\n";
  req += "\r\n";
  for (std::size_t sent = 0; sent < req.size();) {
    const auto n = ::send(fd_, req.data() + sent, req.size() - sent, MSG_NOSIGNAL);
    if (n <= 0) throw std::runtime_error(std::string("send: ") + std::strerror(errno));
    sent += static_cast<std::size_t>(n);
  }
}

sse_client::~sse_client() { close(); }

void sse_client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

bool sse_client::fill(std::chrono::steady_clock::time_point deadline) {
  if (eof_ || fd_ < 0) return false;
  const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
  pollfd p{fd_, POLLIN, 0};
  const int ready = ::poll(&p, 1, static_cast<int>(std::max<std::int64_t>(0, left.count())));
  if (ready == 0) throw std::runtime_error("sse_client: no data before the deadline");
  char chunk[16384];
  const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
  if (n <= 0) {
    eof_ = true;
    return false;
  }
  buffer_.append(chunk, static_cast<std::size_t>(n));
  return true;
}

std::optional<std::string> sse_client::line(std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    if (const auto eol = buffer_.find('\n'); eol != std::string::npos) {
      std::string out = buffer_.substr(0, eol);
      buffer_.erase(0, eol + 1);
      if (!out.empty() && out.back() == '\r') out.pop_back();
      return out;
    }
    if (!fill(deadline)) return std::nullopt;
  }
}

const http_response& sse_client::head(std::chrono::milliseconds timeout) {
  if (head_) return *head_;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  http_response r;
  auto status = line(deadline);
  if (!status) throw std::runtime_error("sse_client: the server closed before answering");
  r.status = std::stoi(status->substr(status->find(' ') + 1, 3));
  std::size_t length = 0;
  for (auto l = line(deadline); l && !l->empty(); l = line(deadline)) {
    const auto colon = l->find(':');
    std::string name = l->substr(0, colon), value = l->substr(colon + 1);
    while (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (strcasecmp(name.c_str(), "content-length") == 0) length = std::stoul(value);
    r.headers.emplace_back(std::move(name), std::move(value));
  }
  if (r.status != 200) {
    while (buffer_.size() < length && fill(deadline)) {
    }
    r.body = buffer_.substr(0, length);
    buffer_.erase(0, std::min(length, buffer_.size()));
  }
  head_ = std::move(r);
  return *head_;
}

std::optional<sse_frame> sse_client::next(std::chrono::milliseconds timeout) {
  head(timeout);
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  sse_frame f;
  bool any = false;
  for (;;) {
    auto l = line(deadline);
    if (!l) return std::nullopt;
    if (l->empty()) {
      if (any) return f;
      continue;
    }
    if (l->front() == ':') {
      ++keep_alives_;
      continue;
    }
    const auto colon = l->find(':');
    const std::string field = l->substr(0, colon);
    std::string value = colon == std::string::npos ? std::string() : l->substr(colon + 1);
    if (!value.empty() && value.front() == ' ') value.erase(0, 1);
    if (field == "retry") {
      retry_ = std::stoi(value);
      continue;
    }
    any = true;
    if (field == "event") f.event = value;
    else if (field == "id") f.id = std::stoll(value);
    else if (field == "data") f.data += (f.data.empty() ? "" : "\n") + value;
  }
}

std::optional<sse_frame> sse_client::read_events(std::vector<std::int64_t>& ids, std::size_t at_most,
                                                 std::chrono::milliseconds timeout, std::vector<sse_frame>* frames) {
  for (std::size_t n = 0; n < at_most; ++n) {
    auto f = next(timeout);
    if (!f || !f->event.empty()) return f;
    if (f->id) ids.push_back(*f->id);
    if (frames) frames->push_back(std::move(*f));
  }
  return sse_frame{};
}

}  // namespace aipbx::itest
