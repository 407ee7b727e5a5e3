// scripted_server: an HTTP server on 127.0.0.1 (a free port) for engine tests. It answers requests in
// order from a script of replies (status and body, or "hang": read the request and never answer), then
// with the last reply once the script is used up, and keeps every request it read. Runs on a thread of its
// own; every member is thread-safe. The destructor stops it and closes every connection.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <deque>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace aipbx::test {

struct scripted_reply {
  unsigned status = 200;
  std::string body;
  bool hang = false;  // read the request, then say nothing
  std::string content_type = "application/json";

  static scripted_reply json(unsigned status, std::string body) { return {status, std::move(body), false, "application/json"}; }
  static scripted_reply hung() { return {0, {}, true, {}}; }
};

struct recorded_request {
  std::string method;
  std::string target;
  std::map<std::string, std::string> headers;  // lower-case names
  std::string body;
};

class scripted_server {
 public:
  explicit scripted_server(std::vector<scripted_reply> script);
  ~scripted_server();

  std::uint16_t port() const { return port_; }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  std::vector<recorded_request> requests() const;

 private:
  scripted_reply next_reply(recorded_request request);

  boost::asio::io_context ioc_;
  boost::asio::ip::tcp::acceptor acceptor_;
  std::uint16_t port_ = 0;
  mutable std::mutex mutex_;
  std::deque<scripted_reply> script_;
  scripted_reply last_;
  std::vector<recorded_request> requests_;
  std::thread thread_;
};

}  // namespace aipbx::test
