#include "engines/scripted_server.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/redirect_error.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>

#include <algorithm>
#include <cctype>
#include <functional>

namespace aipbx::test {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

namespace {

asio::awaitable<void> serve_connection(tcp::socket socket, std::function<scripted_reply(recorded_request)> next) {
  beast::flat_buffer buffer;
  for (;;) {
    boost::system::error_code ec;
    http::request_parser<http::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    co_await http::async_read(socket, buffer, parser, asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    const auto& req = parser.get();
    recorded_request r;
    r.method = std::string(req.method_string());
    r.target = std::string(req.target());
    for (const auto& f : req) {
      std::string name(f.name_string());
      std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
      r.headers[name] = std::string(f.value());
    }
    r.body = req.body();
    const bool keep_alive = req.keep_alive();
    scripted_reply reply = next(std::move(r));
    if (reply.hang) {
      // Wait for the client to give up (it closes the connection) or the server to stop.
      char byte;
      co_await socket.async_read_some(asio::buffer(&byte, 1), asio::redirect_error(asio::use_awaitable, ec));
      co_return;
    }
    http::response<http::string_body> res{static_cast<http::status>(reply.status), 11};
    res.set(http::field::content_type, reply.content_type);
    res.body() = reply.body;
    res.keep_alive(keep_alive);
    res.prepare_payload();
    co_await http::async_write(socket, res, asio::redirect_error(asio::use_awaitable, ec));
    if (ec || !keep_alive) co_return;
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor& acceptor, std::function<scripted_reply(recorded_request)> next) {
  for (;;) {
    boost::system::error_code ec;
    tcp::socket socket = co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) co_return;
    asio::co_spawn(acceptor.get_executor(), serve_connection(std::move(socket), next), asio::detached);
  }
}

}  // namespace

scripted_server::scripted_server(std::vector<scripted_reply> script)
    : acceptor_(ioc_, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0)),
      script_(script.begin(), script.end()),
      last_(script.empty() ? scripted_reply::json(200, R"({"text":""})") : script.back()) {
  port_ = acceptor_.local_endpoint().port();
  asio::co_spawn(ioc_, accept_loop(acceptor_, [this](recorded_request r) { return next_reply(std::move(r)); }),
                 asio::detached);
  thread_ = std::thread([this] { ioc_.run(); });
}

scripted_server::~scripted_server() {
  ioc_.stop();
  thread_.join();
}

scripted_reply scripted_server::next_reply(recorded_request request) {
  std::lock_guard lock(mutex_);
  requests_.push_back(std::move(request));
  if (script_.empty()) return last_;
  scripted_reply reply = std::move(script_.front());
  script_.pop_front();
  return reply;
}

std::vector<recorded_request> scripted_server::requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

}  // namespace aipbx::test
