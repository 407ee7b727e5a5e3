#include "harness/stream_clients.hpp"

#include "harness/server_process.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/string_body.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/system/system_error.hpp>

#include <stdexcept>

namespace aipbx::itest {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace websocket = beast::websocket;
using asio::ip::tcp;
using error_code = boost::system::error_code;

namespace {

// Runs the io_context until `result` is set by a completion handler.
void wait(asio::io_context& ioc, const error_code& result) {
  while (result == asio::error::would_block) ioc.run_one();
}

void connect(asio::io_context& ioc, beast::tcp_stream& stream, std::uint16_t port, std::chrono::milliseconds timeout) {
  const tcp::endpoint endpoint(asio::ip::make_address_v4("127.0.0.1"), port);
  error_code result = asio::error::would_block;
  stream.expires_after(timeout);
  stream.async_connect(endpoint, [&](error_code ec) { result = ec; });
  wait(ioc, result);
  if (result) throw boost::system::system_error(result, "connect to 127.0.0.1:" + std::to_string(port));
  stream.socket().set_option(tcp::no_delay(true));
}

}  // namespace

class ws_client::impl {
 public:
  impl(std::uint16_t port, std::string target, const header_list& headers, std::vector<std::string> subprotocols,
       std::chrono::milliseconds timeout)
      : timeout_(timeout) {
    connect(ioc_, ws_.next_layer(), port, timeout);
    ws_.set_option(websocket::stream_base::decorator([headers, subprotocols](websocket::request_type& req) {
      for (const auto& [name, value] : headers) req.set(name, value);
      std::string list;
      for (const auto& p : subprotocols) list += (list.empty() ? "" : ", ") + p;
      if (!list.empty()) req.set(beast::http::field::sec_websocket_protocol, list);
    }));
    ws_.read_message_max(64 * 1024 * 1024);
    websocket::response_type res;
    error_code result = asio::error::would_block;
    ws_.next_layer().expires_after(timeout_);
    ws_.async_handshake(res, "127.0.0.1:" + std::to_string(port), target, [&](error_code ec) { result = ec; });
    wait(ioc_, result);
    if (result == websocket::error::upgrade_declined) {
      http_response out;
      out.status = static_cast<int>(res.result_int());
      for (const auto& field : res) out.headers.emplace_back(field.name_string(), field.value());
      out.body = res.body();
      refused_ = std::move(out);
      return;
    }
    if (result) throw boost::system::system_error(result, "websocket handshake " + target);
    subprotocol_ = std::string(res[beast::http::field::sec_websocket_protocol]);
  }

  void check_open() const {
    if (refused_) throw std::logic_error("the server refused the WebSocket upgrade");
  }

  void write(std::string_view bytes, bool text) {
    check_open();
    ws_.text(text);
    error_code result = asio::error::would_block;
    ws_.next_layer().expires_after(timeout_);
    ws_.async_write(asio::buffer(bytes.data(), bytes.size()), [&](error_code ec, std::size_t) { result = ec; });
    wait(ioc_, result);
    if (result) throw boost::system::system_error(result, "websocket write");
  }

  std::optional<ws_message> read(std::chrono::milliseconds timeout) {
    check_open();
    if (closed_) return std::nullopt;
    buffer_.clear();
    error_code result = asio::error::would_block;
    ws_.next_layer().expires_after(timeout);
    ws_.async_read(buffer_, [&](error_code ec, std::size_t) { result = ec; });
    wait(ioc_, result);
    if (result == websocket::error::closed) {
      closed_ = ws_close{static_cast<std::uint16_t>(ws_.reason().code), std::string(ws_.reason().reason.c_str())};
      return std::nullopt;
    }
    if (result == beast::error::timeout) throw boost::system::system_error(result, "websocket read: no message in time");
    if (result) {
      closed_ = ws_close{0, result.message()};
      return std::nullopt;
    }
    ws_message m;
    m.text = ws_.got_text();
    m.data.assign(static_cast<const char*>(buffer_.data().data()), buffer_.size());
    return m;
  }

  void close(std::uint16_t code) {
    check_open();
    error_code result = asio::error::would_block;
    ws_.next_layer().expires_after(timeout_);
    ws_.async_close(websocket::close_reason(code), [&](error_code ec) { result = ec; });
    wait(ioc_, result);
    closed_ = ws_close{code, "closed by the client"};
  }

  void drop() {
    error_code ignored;
    ws_.next_layer().socket().shutdown(tcp::socket::shutdown_both, ignored);
    ws_.next_layer().socket().close(ignored);
    closed_ = ws_close{0, "dropped by the client"};
  }

  std::chrono::milliseconds timeout_;
  asio::io_context ioc_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_{ioc_.get_executor()};
  websocket::stream<beast::tcp_stream> ws_{ioc_};
  beast::flat_buffer buffer_;
  std::optional<http_response> refused_;
  std::string subprotocol_;
  std::optional<ws_close> closed_;
};

ws_client::ws_client(std::uint16_t port, std::string target, const header_list& headers,
                     std::vector<std::string> subprotocols, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<impl>(port, std::move(target), headers, std::move(subprotocols), timeout)) {}
ws_client::~ws_client() = default;
ws_client::ws_client(ws_client&&) noexcept = default;
ws_client& ws_client::operator=(ws_client&&) noexcept = default;

const std::optional<http_response>& ws_client::refused() const { return impl_->refused_; }
std::string ws_client::subprotocol() const { return impl_->subprotocol_; }
void ws_client::send_text(std::string_view text) { impl_->write(text, true); }
void ws_client::send_binary(std::string_view bytes) { impl_->write(bytes, false); }
std::optional<ws_message> ws_client::read(std::chrono::milliseconds timeout) { return impl_->read(timeout); }
void ws_client::close(std::uint16_t code) { impl_->close(code); }
void ws_client::drop() { impl_->drop(); }
const std::optional<ws_close>& ws_client::closed() const { return impl_->closed_; }

ws_close ws_client::wait_close(std::chrono::milliseconds timeout) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  while (!impl_->closed_) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) throw std::runtime_error("the server did not close the WebSocket in time");
    (void)impl_->read(left);
  }
  return *impl_->closed_;
}

class audiosocket_client::impl {
 public:
  impl(std::uint16_t port, std::chrono::milliseconds timeout) : timeout_(timeout) { connect(ioc_, stream_, port, timeout); }

  void send(std::string_view bytes) {
    error_code result = asio::error::would_block;
    stream_.expires_after(timeout_);
    asio::async_write(stream_, asio::buffer(bytes.data(), bytes.size()), [&](error_code ec, std::size_t) { result = ec; });
    wait(ioc_, result);
    if (result) throw boost::system::system_error(result, "audiosocket write");
  }

  void close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.socket().close(ignored);
  }

  bool closed_by_peer(std::chrono::milliseconds timeout) {
    char chunk[4096];
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    for (;;) {
      error_code result = asio::error::would_block;
      stream_.expires_at(deadline);
      stream_.async_read_some(asio::buffer(chunk), [&](error_code ec, std::size_t) { result = ec; });
      wait(ioc_, result);
      if (result == beast::error::timeout) return false;
      if (result) return true;  // end of stream or a reset; anything the server sent is ignored
    }
  }

  std::chrono::milliseconds timeout_;
  asio::io_context ioc_{1};
  asio::executor_work_guard<asio::io_context::executor_type> work_{ioc_.get_executor()};
  beast::tcp_stream stream_{ioc_};
};

audiosocket_client::audiosocket_client(std::uint16_t port, std::chrono::milliseconds timeout)
    : impl_(std::make_unique<impl>(port, timeout)) {}
audiosocket_client::~audiosocket_client() = default;
audiosocket_client::audiosocket_client(audiosocket_client&&) noexcept = default;
audiosocket_client& audiosocket_client::operator=(audiosocket_client&&) noexcept = default;

std::string audiosocket_client::frame(std::uint8_t kind, std::string_view payload) {
  std::string out;
  out.push_back(static_cast<char>(kind));
  out.push_back(static_cast<char>((payload.size() >> 8) & 0xff));
  out.push_back(static_cast<char>(payload.size() & 0xff));
  out.append(payload);
  return out;
}

std::string audiosocket_client::uuid_bytes(std::string_view uuid) {
  std::string out;
  for (std::size_t i = 0; i + 1 < uuid.size();) {
    if (uuid[i] == '-') {
      ++i;
      continue;
    }
    out.push_back(static_cast<char>(std::stoi(std::string(uuid.substr(i, 2)), nullptr, 16)));
    i += 2;
  }
  if (out.size() != 16) throw std::invalid_argument("not a UUID: " + std::string(uuid));
  return out;
}

void audiosocket_client::send(std::string_view bytes) { impl_->send(bytes); }
void audiosocket_client::close() { impl_->close(); }
bool audiosocket_client::closed_by_peer(std::chrono::milliseconds timeout) { return impl_->closed_by_peer(timeout); }

std::uint16_t audiosocket_port(const server_process& server) {
  const auto is_listener = [](const boost::json::object& o) {
    return string_field(o, "msg") == "listening" && string_field(o, "protocol") == "audiosocket";
  };
  // Logged just after the HTTP listener's line, which is what the start of the server waited for.
  (void)server.wait_for_record(is_listener, 10s);
  const auto records = server.records_where(is_listener);
  if (records.empty()) throw std::runtime_error("the server reported no AudioSocket listener");
  return static_cast<std::uint16_t>(int_field(records.back(), "port").value_or(0));
}

}  // namespace aipbx::itest
