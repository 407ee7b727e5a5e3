#include "harness/http_client.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/error.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/string.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/system/system_error.hpp>
#include <cstdio>

namespace aipbx::itest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using asio::ip::tcp;
using error_code = boost::system::error_code;

std::string http_response::header(std::string_view name) const {
  for (const auto& [key, value] : headers)
    if (beast::iequals(key, name)) return value;
  return {};
}

bool http_response::has_header(std::string_view name) const {
  for (const auto& [key, value] : headers)
    if (beast::iequals(key, name)) return true;
  return false;
}

boost::json::value http_response::json() const {
  return boost::json::parse(body);
}

// Each blocking call runs one asynchronous operation on the connection's private io_context, under the
// tcp_stream's deadline, which closes the socket when it expires.
class connection::impl {
 public:
  impl(std::uint16_t port, std::chrono::milliseconds timeout) : port_(port), timeout_(timeout) {
    const tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), port);
    error_code result = asio::error::would_block;
    stream_.expires_after(timeout_);
    stream_.async_connect(endpoint, [&](error_code ec) { result = ec; });
    wait(result);
    if (result) throw boost::system::system_error(result, "connect to 127.0.0.1:" + std::to_string(port));
    stream_.socket().set_option(tcp::no_delay(true));
  }

  void write(std::string_view bytes) {
    error_code result = asio::error::would_block;
    stream_.expires_after(timeout_);
    asio::async_write(stream_, asio::buffer(bytes.data(), bytes.size()),
                      [&](error_code ec, std::size_t) { result = ec; });
    wait(result);
    if (result) throw boost::system::system_error(result, "write");
  }

  template <class Message>
  void write_message(Message& message) {
    error_code result = asio::error::would_block;
    stream_.expires_after(timeout_);
    bhttp::async_write(stream_, message, [&](error_code ec, std::size_t) { result = ec; });
    wait(result);
    if (result) throw boost::system::system_error(result, "write request");
  }

  http_response read_response() {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.body_limit(64 * 1024 * 1024);
    parser.header_limit(64 * 1024);
    error_code result = asio::error::would_block;
    stream_.expires_after(timeout_);
    bhttp::async_read(stream_, buffer_, parser, [&](error_code ec, std::size_t) { result = ec; });
    wait(result);
    if (result) throw boost::system::system_error(result, "read response");
    auto message = parser.release();
    http_response out;
    out.status = static_cast<int>(message.result_int());
    for (const auto& field : message) out.headers.emplace_back(field.name_string(), field.value());
    out.body = std::move(message.body());
    out.keep_alive = message.keep_alive();
    return out;
  }

  // Reads until end of stream, a reset or the deadline. The deadline cancels the read without closing the
  // socket, so a connection the server kept open stays usable.
  close_outcome wait_closed(std::chrono::milliseconds timeout) {
    close_outcome out;
    const auto data = buffer_.data();  // bytes an earlier read buffered count as received
    out.received.assign(static_cast<const char*>(data.data()), data.size());
    buffer_.consume(buffer_.size());
    if (peer_closed_) {
      out.closed = true;
      return out;
    }
    asio::steady_timer timer(ioc_);
    timer.expires_after(timeout);
    bool expired = false;
    bool timer_done = false;
    timer.async_wait([&](error_code ec) {
      timer_done = true;
      if (ec) return;
      expired = true;
      error_code ignored;
      stream_.socket().cancel(ignored);
    });
    stream_.expires_never();
    char chunk[4096];
    for (;;) {
      error_code result = asio::error::would_block;
      std::size_t n = 0;
      stream_.async_read_some(asio::buffer(chunk), [&](error_code ec, std::size_t got) {
        result = ec;
        n = got;
      });
      wait(result);
      out.received.append(chunk, n);
      if (!result && !expired) continue;
      if (!result || (result == asio::error::operation_aborted && expired)) break;
      // End of stream, connection reset, broken pipe: the server left this connection. It is remembered, as a
      // read after the end of stream need not report it again.
      out.closed = peer_closed_ = true;
      break;
    }
    // The timer's handler refers to this frame: it must have run before the frame is gone.
    timer.cancel();
    while (!timer_done) ioc_.run_one();
    return out;
  }

  void close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  std::uint16_t port() const { return port_; }
  void set_timeout(std::chrono::milliseconds timeout) { timeout_ = timeout; }

 private:
  // Runs handlers until the operation that sets `result` has completed. Completions of earlier timers
  // may run here too; they do nothing.
  void wait(const error_code& result) {
    while (result == asio::error::would_block) ioc_.run_one();
  }

  std::uint16_t port_;
  std::chrono::milliseconds timeout_;
  asio::io_context ioc_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_{ioc_.get_executor()};
  beast::tcp_stream stream_{ioc_};
  beast::flat_buffer buffer_;
  bool peer_closed_ = false;
};

connection::connection(std::uint16_t port, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<impl>(port, timeout)) {}
connection::~connection() = default;
connection::connection(connection&&) noexcept = default;
connection& connection::operator=(connection&&) noexcept = default;

http_response connection::request(std::string_view method, std::string_view target, std::string body,
                                  const header_list& headers) {
  bhttp::request<bhttp::string_body> req;
  const bhttp::verb verb = bhttp::string_to_verb(method);
  if (verb == bhttp::verb::unknown)
    req.method_string(method);
  else
    req.method(verb);
  req.target(target);
  req.version(11);
  req.set(bhttp::field::host, "127.0.0.1:" + std::to_string(impl_->port()));
  bool framed = false;
  for (const auto& [name, value] : headers) {
    req.insert(name, value);
    framed = framed || beast::iequals(name, "Content-Length") || beast::iequals(name, "Transfer-Encoding");
  }
  req.body() = std::move(body);
  if (!framed && (!req.body().empty() || verb == bhttp::verb::post || verb == bhttp::verb::put))
    req.content_length(req.body().size());
  impl_->write_message(req);
  return impl_->read_response();
}

http_response connection::post_json(std::string_view target, std::string body) {
  return request("POST", target, std::move(body), {{"Content-Type", "application/json"}});
}

void connection::send_raw(std::string_view bytes) {
  impl_->write(bytes);
}
http_response connection::read_response() {
  return impl_->read_response();
}
close_outcome connection::wait_closed(std::chrono::milliseconds timeout) {
  return impl_->wait_closed(timeout);
}
void connection::set_timeout(std::chrono::milliseconds timeout) {
  impl_->set_timeout(timeout);
}
void connection::close() {
  impl_->close();
}

std::string packet_json(std::int64_t sequence, std::string_view data, double timestamp) {
  boost::json::object o;
  o["sequence"] = sequence;
  o["data"] = boost::json::string_view(data.data(), data.size());
  o["timestamp"] = timestamp;
  return boost::json::serialize(o);
}

std::string url_encode(std::string_view text) {
  std::string out;
  for (const unsigned char c : text) {
    const bool unreserved = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
                            c == '-' || c == '.' || c == '_' || c == '~';
    if (unreserved) {
      out += static_cast<char>(c);
    } else {
      char buf[4];
      std::snprintf(buf, sizeof buf, "%%%02X", c);
      out += buf;
    }
  }
  return out;
}

}  // namespace aipbx::itest
