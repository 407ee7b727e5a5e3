// A small synchronous HTTP/1.1 client for the tests, on Boost.Beast, over 127.0.0.1 only.
//
// `connection` is one TCP connection to the server. It speaks HTTP (`request`, keep-alive: many requests on
// one connection, the way a media gateway would) and raw bytes (`send_raw`, `read_response`,
// `wait_closed`) for tests of broken or hostile clients. Every operation has a deadline (`timeout`, 10 s by
// default); an I/O error or an expired deadline throws boost::system::system_error, so a test never hangs.
//
// Not thread-safe: one connection per thread. Beast is kept out of this header so test files compile fast.
#pragma once

#include <boost/json/value.hpp>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace aipbx::itest {

using namespace std::chrono_literals;

using header_list = std::vector<std::pair<std::string, std::string>>;

struct http_response {
  int status = 0;
  header_list headers;
  std::string body;
  bool keep_alive = true;

  // The first header of that name (case-insensitive), empty if absent.
  std::string header(std::string_view name) const;
  bool has_header(std::string_view name) const;
  // The body parsed as JSON; throws if it is not JSON.
  boost::json::value json() const;
};

// What a connection received before the server closed it (or before the deadline).
struct close_outcome {
  std::string received;
  bool closed = false;  // end of stream or reset; false if the deadline came first
};

class connection {
 public:
  explicit connection(std::uint16_t port, std::chrono::milliseconds timeout = 10s);
  ~connection();
  connection(connection&&) noexcept;
  connection& operator=(connection&&) noexcept;

  // Sends one request and reads its response. `headers` are sent as given, after Host; Content-Length is
  // set from `body` unless `headers` has Content-Length or Transfer-Encoding.
  http_response request(std::string_view method, std::string_view target, std::string body = {},
                        const header_list& headers = {});
  http_response get(std::string_view target) { return request("GET", target); }
  // POST with Content-Type: application/json.
  http_response post_json(std::string_view target, std::string body);

  void send_raw(std::string_view bytes);
  // Reads one response (an interim 1xx counts as one).
  http_response read_response();
  // Reads until the server closes the connection or `timeout` passes.
  close_outcome wait_closed(std::chrono::milliseconds timeout);
  // True if the server has closed the connection (end of stream, or a reset) within `timeout`.
  bool closed_by_peer(std::chrono::milliseconds timeout) { return wait_closed(timeout).closed; }

  void set_timeout(std::chrono::milliseconds timeout);
  void close();

 private:
  class impl;
  std::unique_ptr<impl> impl_;
};

// JSON for one ingest request body.
std::string packet_json(std::int64_t sequence, std::string_view data, double timestamp);

// Percent-encodes everything outside RFC 3986's unreserved set.
std::string url_encode(std::string_view text);

}  // namespace aipbx::itest
