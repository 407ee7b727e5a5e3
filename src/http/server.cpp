#include "http/server.hpp"

#include "http/json_codec.hpp"
#include "log/log.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>

#include <vector>

namespace aipbx::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

bool is_parse_error(const boost::system::error_code& ec) {
  return &ec.category() == &beast_http::make_error_code(beast_http::error::bad_method).category() &&
         ec != beast_http::error::end_of_stream && ec != beast_http::error::partial_message;
}

// Answers a request the transport refuses, then the caller closes the connection.
asio::awaitable<void> write_error(beast::tcp_stream& stream, beast_http::status status, std::string_view detail,
                                  std::string_view code) {
  response res{status, 11};
  res.set(beast_http::field::content_type, "application/json");
  res.set(beast_http::field::server, "aipbx");
  res.body() = error_body(detail, code);
  res.keep_alive(false);
  res.prepare_payload();
  co_await beast_http::async_write(stream, res, use_tuple);
}

}  // namespace

server::server(asio::io_context& ioc, server_options options, request_handler& handler)
    : ioc_(ioc), options_(std::move(options)), handler_(handler), acceptor_(asio::make_strand(ioc)) {}

tcp::endpoint server::listen() {
  tcp::resolver resolver(ioc_);
  auto results = resolver.resolve(options_.host, std::to_string(options_.port),
                                  tcp::resolver::passive | tcp::resolver::numeric_service);
  if (results.empty()) throw std::runtime_error("cannot resolve " + options_.host);
  const tcp::endpoint endpoint = results.begin()->endpoint();
  acceptor_.open(endpoint.protocol());
  acceptor_.set_option(asio::socket_base::reuse_address(true));
  acceptor_.bind(endpoint);
  acceptor_.listen(asio::socket_base::max_listen_connections);
  return acceptor_.local_endpoint();
}

void server::start() { asio::co_spawn(acceptor_.get_executor(), accept_loop(), asio::detached); }

asio::awaitable<void> server::accept_loop() {
  for (;;) {
    auto [ec, socket] = co_await acceptor_.async_accept(asio::make_strand(ioc_), use_tuple);
    if (ec) {
      if (ec == asio::error::operation_aborted || !acceptor_.is_open()) break;
      log::warn("accept failed", {{"error", ec.message()}});
      // Out of file descriptors and the like: back off instead of spinning.
      asio::steady_timer pause(acceptor_.get_executor(), std::chrono::milliseconds(50));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    if (open_.load() >= options_.max_connections) {
      log::warn("connection refused: too many open connections", {{"limit", options_.max_connections}});
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    open_.fetch_add(1);
    auto executor = socket.get_executor();
    asio::co_spawn(executor, run_session(std::move(socket)), asio::detached);
  }
  std::function<void()> drained;
  {
    std::lock_guard lock(mutex_);
    accept_loop_done_ = true;
    if (stopping_ && sessions_.empty()) drained = std::move(on_drained_);
  }
  if (drained) drained();
}

asio::awaitable<void> server::run_session(tcp::socket socket) {
  beast::tcp_stream stream(std::move(socket));
  bool idle = true;
  std::uint64_t id = 0;
  bool registered = false;
  {
    std::lock_guard lock(mutex_);
    if (!stopping_) {
      id = next_id_++;
      sessions_.emplace(id, connection_entry{&stream, &idle});
      registered = true;
    }
  }
  if (registered) {
    try {
      co_await serve(stream, idle);
    } catch (const std::exception& e) {
      log::error("connection failed", {{"error", e.what()}});
    }
    boost::system::error_code ignored;
    stream.socket().shutdown(tcp::socket::shutdown_send, ignored);
    session_ended(id);
  }
  open_.fetch_sub(1);
}

void server::session_ended(std::uint64_t id) {
  std::function<void()> drained;
  {
    std::lock_guard lock(mutex_);
    sessions_.erase(id);
    if (stopping_ && sessions_.empty() && accept_loop_done_) drained = std::move(on_drained_);
  }
  if (drained) drained();
}

asio::awaitable<void> server::serve(beast::tcp_stream& stream, bool& idle) {
  const std::string too_large =
      "Request body too large; the limit is " + std::to_string(options_.body_limit) + " bytes";
  beast::flat_buffer buffer;
  bool first = true;
  for (;;) {
    {
      std::lock_guard lock(mutex_);
      if (stopping_) co_return;
    }
    idle = true;
    beast_http::request_parser<beast_http::string_body> parser;
    parser.header_limit(static_cast<std::uint32_t>(options_.header_limit));
    parser.body_limit(options_.body_limit);
    if (!first && buffer.size() == 0) {
      // Between requests a kept-alive connection may idle for idle_timeout; once the next request
      // starts, all of it must arrive within request_timeout (a slow client gets no more per request).
      stream.expires_after(options_.idle_timeout);
      auto [wec, got] = co_await stream.async_read_some(buffer.prepare(1024), use_tuple);
      if (wec) co_return;
      buffer.commit(got);
    }
    first = false;
    stream.expires_after(options_.request_timeout);

    auto [ec, ignored_n] = co_await beast_http::async_read_header(stream, buffer, parser, use_tuple);
    if (ec) {
      if (ec == beast_http::error::header_limit) {
        co_await write_error(stream, beast_http::status::request_header_fields_too_large,
                             "Request header fields too large", "header_too_large");
      } else if (ec == beast_http::error::body_limit) {
        // The parser refuses a declared Content-Length above the limit as soon as the header is read.
        co_await write_error(stream, beast_http::status::payload_too_large, too_large, "body_too_large");
      } else if (is_parse_error(ec)) {
        co_await write_error(stream, beast_http::status::bad_request, "Malformed HTTP request", "bad_request");
      }
      co_return;
    }
    idle = false;
    stream.expires_after(options_.request_timeout);

    if (beast::iequals(parser.get()[beast_http::field::expect], "100-continue")) {
      beast_http::response<beast_http::empty_body> go_on{beast_http::status::continue_, parser.get().version()};
      auto [wec, wn] = co_await beast_http::async_write(stream, go_on, use_tuple);
      if (wec) co_return;
    }
    if (!parser.is_done()) {
      auto [rec, rn] = co_await beast_http::async_read(stream, buffer, parser, use_tuple);
      if (rec) {
        if (rec == beast_http::error::body_limit) {
          co_await write_error(stream, beast_http::status::payload_too_large, too_large, "body_too_large");
        } else if (is_parse_error(rec)) {
          co_await write_error(stream, beast_http::status::bad_request, "Malformed HTTP request", "bad_request");
        }
        co_return;
      }
    }

    request req = parser.release();
    const unsigned version = req.version();
    const bool keep_alive = req.keep_alive();
    const bool head = req.method() == beast_http::verb::head;
    auto handled = handler_.handle(std::move(req));
    response res = co_await std::move(handled);
    bool stopping;
    {
      std::lock_guard lock(mutex_);
      stopping = stopping_;
    }
    res.version(version);
    res.keep_alive(keep_alive && !stopping);
    res.set(beast_http::field::server, "aipbx");
    res.prepare_payload();
    if (head) res.body().clear();  // HEAD: the GET's headers, Content-Length included, and no body
    stream.expires_after(options_.request_timeout);
    auto [wec, wn] = co_await beast_http::async_write(stream, res, use_tuple);
    if (wec || !res.keep_alive()) co_return;
  }
}

void server::stop(std::function<void()> done) {
  std::vector<std::pair<std::uint64_t, asio::any_io_executor>> targets;
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
    on_drained_ = std::move(done);
    for (const auto& [id, entry] : sessions_) targets.emplace_back(id, entry.stream->get_executor());
  }
  asio::post(acceptor_.get_executor(), [this] {
    boost::system::error_code ignored;
    acceptor_.close(ignored);
  });
  // Connections waiting for a request are closed now; those with a request in flight finish it first.
  for (auto& [id, executor] : targets) {
    asio::post(executor, [this, id = id] {
      std::lock_guard lock(mutex_);
      auto it = sessions_.find(id);
      boost::system::error_code ignored;
      if (it != sessions_.end() && *it->second.idle) it->second.stream->socket().cancel(ignored);
    });
  }
}

}  // namespace aipbx::http
