// The transport's failure rule: a request handler that throws (a bug) ends only its own connection, which
// is counted, and the server keeps accepting and answering. A handler written for the test stands in for
// the API (api::handle turns its own exceptions into 500s; this checks the net under it). And its streamed
// answers: written as the body gives them, the body told when the client goes or the server stops.
#include "http/server.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/as_tuple.hpp>
#include <boost/asio/read.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <atomic>
#include <chrono>
#include <memory>
#include <stdexcept>
#include <thread>

namespace aipbx::http {
namespace {

namespace asio = boost::asio;
namespace bhttp = boost::beast::http;

class throwing_handler final : public request_handler {
 public:
  asio::awaitable<response> handle(request req) override {
    if (req.target() == "/boom") throw std::runtime_error("a handler bug");
    if (req.target() == "/odd") throw 42;  // not even a std::exception
    response res{bhttp::status::ok, 11};
    res.body() = "fine";
    co_return res;
  }
};

// One request on a new connection: the status, or 0 when the server closed the connection instead.
int status_of(std::uint16_t port, const std::string& target) {
  asio::io_context ioc;
  asio::ip::tcp::socket socket(ioc);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  bhttp::request<bhttp::string_body> req{bhttp::verb::get, target, 11};
  req.set(bhttp::field::host, "127.0.0.1");
  bhttp::write(socket, req);
  boost::beast::flat_buffer buffer;
  bhttp::response<bhttp::string_body> res;
  boost::system::error_code ec;
  bhttp::read(socket, buffer, res, ec);
  return ec ? 0 : static_cast<int>(res.result_int());
}

TEST(Server, AHandlerThatThrowsClosesItsConnectionAndTheServerKeepsAnswering) {
  asio::io_context ioc(1);
  throwing_handler handler;
  server_options options;
  options.port = 0;
  server s(ioc, options, handler);
  const auto port = s.listen().port();
  s.start();
  std::thread io([&] { ioc.run(); });

  EXPECT_EQ(status_of(port, "/fine"), 200);
  EXPECT_EQ(status_of(port, "/boom"), 0);
  EXPECT_EQ(status_of(port, "/odd"), 0);
  EXPECT_EQ(status_of(port, "/fine"), 200);
  EXPECT_EQ(s.coroutine_failures().connection, 2u);
  EXPECT_EQ(s.coroutine_failures().accept_loop, 0u);
  // Every connection leaves the count, the failed ones too (the last one as soon as the server reads that
  // its client closed).
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while (s.connections() > 0 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(s.connections(), 0u);

  bool drained = false;
  asio::post(ioc, [&] { s.stop([&] { drained = true; }); });
  io.join();  // the server's work ends with its last connection: run() returns
  EXPECT_TRUE(drained);
}

// A body that gives "one\n", "two\n", then waits: for the client to go (then ends), or for the server to
// stop (then says "bye\n" and ends).
struct stream_log {
  std::atomic<int> cancels{0};
  std::atomic<bool> stopping{false};
  std::atomic<bool> destroyed{false};
};

class test_body final : public body_stream {
 public:
  explicit test_body(stream_log& log) : log_(log) {}
  ~test_body() override { log_.destroyed = true; }
  asio::awaitable<std::vector<asio::const_buffer>> next() override {
    if (!timer_) {
      auto executor = co_await asio::this_coro::executor;
      timer_ = std::make_unique<asio::steady_timer>(executor);
    }
    static constexpr std::string_view pieces[] = {"one\n", "two\n"};
    if (given_ < 2) co_return std::vector<asio::const_buffer>{asio::buffer(pieces[given_++])};
    while (log_.cancels.load() == 0) {
      timer_->expires_after(std::chrono::seconds(30));
      co_await timer_->async_wait(asio::as_tuple(asio::use_awaitable));
    }
    if (log_.stopping && !said_bye_) {
      said_bye_ = true;
      co_return std::vector<asio::const_buffer>{asio::buffer(std::string_view("bye\n"))};
    }
    co_return std::vector<asio::const_buffer>{};
  }
  void cancel(bool stopping) override {
    log_.stopping = stopping;
    ++log_.cancels;
    if (timer_) timer_->cancel();
  }

 private:
  stream_log& log_;
  std::unique_ptr<asio::steady_timer> timer_;
  int given_ = 0;
  bool said_bye_ = false;
};

class streaming_handler final : public request_handler {
 public:
  explicit streaming_handler(stream_log& log) : log_(log) {}
  asio::awaitable<response> handle(request) override { co_return response{bhttp::status::ok, 11}; }
  std::optional<streamed_response> stream(const request& req) override {
    if (req.target() != "/stream") return std::nullopt;
    streamed_response out;
    out.head = response{bhttp::status::ok, 11};
    out.head.set(bhttp::field::content_type, "text/plain");
    out.body = std::make_unique<test_body>(log_);
    return out;
  }

 private:
  stream_log& log_;
};

// Reads from `socket` until `wanted` is among what came (true) or the server closed it (false).
bool read_until(asio::ip::tcp::socket& socket, std::string& got, std::string_view wanted) {
  char chunk[512];
  while (got.find(wanted) == std::string::npos) {
    boost::system::error_code ec;
    const auto n = socket.read_some(asio::buffer(chunk), ec);
    if (ec) return false;
    got.append(chunk, n);
  }
  return true;
}

TEST(Server, AStreamedAnswerIsWrittenAsItComesAndItsBodyHearsWhenTheClientGoes) {
  asio::io_context ioc(1);
  stream_log log;
  streaming_handler handler(log);
  server_options options;
  options.port = 0;
  server s(ioc, options, handler);
  const auto port = s.listen().port();
  s.start();
  std::thread io([&] { ioc.run(); });
  {
    asio::io_context client;
    asio::ip::tcp::socket socket(client);
    socket.connect({asio::ip::make_address("127.0.0.1"), port});
    asio::write(socket, asio::buffer(std::string_view("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")));
    std::string got;
    ASSERT_TRUE(read_until(socket, got, "two\n"));
    EXPECT_TRUE(got.starts_with("HTTP/1.1 200 OK\r\n")) << got;
    EXPECT_NE(got.find("Connection: close\r\n"), std::string::npos) << got;
    EXPECT_EQ(got.find("Content-Length"), std::string::npos) << got;
    EXPECT_TRUE(got.ends_with("\r\n\r\none\ntwo\n")) << got;
  }  // the client goes
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
  while ((!log.destroyed || s.connections() > 0) && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(std::chrono::milliseconds(1));
  EXPECT_EQ(log.cancels.load(), 1);
  EXPECT_FALSE(log.stopping.load());
  EXPECT_TRUE(log.destroyed.load());
  EXPECT_EQ(s.connections(), 0u);
  EXPECT_EQ(status_of(port, "/other"), 200) << "other requests are answered by handle()";
  asio::post(ioc, [&] { s.stop([] {}); });
  io.join();
}

TEST(Server, AStreamedAnswerEndsWithWhatItsBodySaysLastWhenTheServerStops) {
  asio::io_context ioc(1);
  stream_log log;
  streaming_handler handler(log);
  server_options options;
  options.port = 0;
  server s(ioc, options, handler);
  const auto port = s.listen().port();
  s.start();
  std::thread io([&] { ioc.run(); });
  asio::io_context client;
  asio::ip::tcp::socket socket(client);
  socket.connect({asio::ip::make_address("127.0.0.1"), port});
  asio::write(socket, asio::buffer(std::string_view("GET /stream HTTP/1.1\r\nHost: x\r\n\r\n")));
  std::string got;
  ASSERT_TRUE(read_until(socket, got, "two\n"));
  bool drained = false;
  asio::post(ioc, [&] { s.stop([&] { drained = true; }); });
  EXPECT_FALSE(read_until(socket, got, "never"));  // read to the end: the server closes
  EXPECT_TRUE(got.ends_with("two\nbye\n")) << got;
  EXPECT_TRUE(log.stopping.load());
  io.join();
  EXPECT_TRUE(drained);
}

}  // namespace
}  // namespace aipbx::http
