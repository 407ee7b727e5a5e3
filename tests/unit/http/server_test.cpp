// The transport's failure rule: a request handler that throws (a bug) ends only its own connection, which
// is counted, and the server keeps accepting and answering. A handler written for the test stands in for
// the API (api::handle turns its own exceptions into 500s; this checks the net under it).
#include "http/server.hpp"

#include <gtest/gtest.h>

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <chrono>
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

}  // namespace
}  // namespace aipbx::http
