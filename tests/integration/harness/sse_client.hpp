// sse_client: a Server-Sent Events client for the integration tests, over a raw socket to 127.0.0.1 (what an
// EventSource or `curl -N` does: one GET, then frames read as they come).
//
// The constructor connects and sends the request but reads nothing: a test can play a subscriber that never
// reads (with a small receive buffer, the server's writes to it soon block). `head` reads the answer's
// status line and headers (and, for an answer other than 200, its body); `next` reads the next frame.
// Comment lines (the server's keep-alives) are counted, not returned. Every read has a deadline: an expired
// one throws std::runtime_error, so a test never hangs. Not thread-safe: one client per thread.
#pragma once

#include "harness/http_client.hpp"

#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace aipbx::itest {

struct sse_frame {
  std::string event;  // empty for an event of the log ("message" to an EventSource)
  std::optional<std::int64_t> id;
  std::string data;
  // The data as a JSON object (throws if it is not one).
  boost::json::object json() const;
};

class sse_client {
 public:
  sse_client(std::uint16_t port, std::string target, const header_list& headers = {},
             std::optional<int> receive_buffer = std::nullopt);
  ~sse_client();
  sse_client(const sse_client&) = delete;
  sse_client& operator=(const sse_client&) = delete;

  // The answer's status and headers; its body too when the status is not 200.
  const http_response& head(std::chrono::milliseconds timeout = 10s);
  // The next frame, or nullopt when the server closed the connection.
  std::optional<sse_frame> next(std::chrono::milliseconds timeout = 10s);
  // Reads up to `at_most` log events, appending their ids to `ids` (and the frames to `frames`, when
  // given). Returns the notice that stopped it (a frame with an `event`), nullopt when the server closed
  // the connection, or an empty frame once `at_most` events were read.
  std::optional<sse_frame> read_events(std::vector<std::int64_t>& ids, std::size_t at_most,
                                       std::chrono::milliseconds timeout = 10s,
                                       std::vector<sse_frame>* frames = nullptr);
  int keep_alives() const { return keep_alives_; }
  std::optional<int> retry() const { return retry_; }
  // Drops the connection at once (a client that goes away).
  void close();

 private:
  // Reads more bytes into buffer_; false at the end of the stream.
  bool fill(std::chrono::steady_clock::time_point deadline);
  std::optional<std::string> line(std::chrono::steady_clock::time_point deadline);

  int fd_ = -1;
  std::string buffer_;
  bool eof_ = false;
  std::optional<http_response> head_;
  int keep_alives_ = 0;
  std::optional<int> retry_;
};

}  // namespace aipbx::itest
