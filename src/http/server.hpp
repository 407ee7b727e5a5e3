// The HTTP/1.1 transport: a listener and one coroutine per connection, on Boost.Beast.
//
// The transport knows no business: it parses requests within limits, hands each to a `request_handler`
// and writes back what it returns. Limits protect the process from hostile or broken clients: a header
// limit (431), a body limit (413, answered before the body is read), a deadline to receive each request
// (slow clients are dropped), an idle timeout between requests, and a cap on open connections. Requests on
// one connection are answered in order, one at a time. With a TLS context the listener speaks HTTPS only:
// each connection completes a TLS handshake within the request timeout before its first request.
//
// A request the handler answers with a stream (`request_handler::stream`: Server-Sent Events) gets its head
// and then the body as the handler produces it, each write within the request timeout (a client that stops
// reading is dropped; its socket's send buffer is 256 KiB, not the kernel's autotuned up to 4 MiB), while
// the connection is watched for the client closing it. The connection then ends.
//
// Threading: the server runs on the io_context it is given, which may be run by several threads; each
// connection lives on its own strand. `stop` may be called from any thread: it closes the listener and
// idle connections, lets requests in flight finish, then calls `done` once every connection has ended.
#pragma once

#include "domain/thread_annotations.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/string_body.hpp>

#include "streams/stream_hub.hpp"

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <unordered_map>
#include <vector>

namespace aipbx::http {

class tls_credentials;  // tls.hpp

namespace beast_http = boost::beast::http;
using request = beast_http::request<beast_http::string_body>;
using response = beast_http::response<beast_http::string_body>;

// What a request handler decides for a WebSocket upgrade request: a response that refuses it (401, 404,
// 426...; the connection then closes), or what to run once the handshake is done: `run` when set (a
// session of the handler's own), else the stream protocol of `stream` (on the server's stream hub).
struct upgrade_decision {
  std::optional<response> refusal;
  streams::stream_request stream;
  std::string subprotocol;  // echoed in the handshake when not empty
  std::function<boost::asio::awaitable<void>(streams::message_channel&)> run;
};

// The body of an answer written as it is produced (Server-Sent Events), until it ends or the client goes.
class body_stream {
 public:
  virtual ~body_stream() = default;
  // The next bytes of the body, written as they are (they stay valid until the next call); none: the body
  // is done and the connection closes. Runs on the connection's strand and may wait.
  virtual boost::asio::awaitable<std::vector<boost::asio::const_buffer>> next() = 0;
  // Called on the strand when the client closed the connection (`stopping` false: `next` should give
  // nothing soon) or the server stops (`stopping` true: `next` should end the body soon, with whatever
  // it wants to say last).
  virtual void cancel(bool stopping) = 0;
};

// A request answered by a stream: its head (200 and its headers; the body ends when the connection
// closes, so no Content-Length), and the body. A null body: `head` is a whole answer (a refusal).
struct streamed_response {
  response head;
  std::unique_ptr<body_stream> body;
};

// Turns a request into a response. Must not throw; runs on the connection's strand and may suspend.
class request_handler {
 public:
  virtual ~request_handler() = default;
  virtual boost::asio::awaitable<response> handle(request req) = 0;
  // A request that asks to become a WebSocket (`Upgrade: websocket`). Must not throw.
  virtual upgrade_decision upgrade(const request& req);
  // Asked first for every other request: the handler's answer when it is a stream (or a refusal of one),
  // nullopt to have `handle` answer it. Must not throw, and must be cheap for requests that are not
  // streams.
  virtual std::optional<streamed_response> stream(const request& req);
};

struct server_options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;
  std::size_t body_limit = 1024 * 1024;
  // Bytes of request bodies all connections may hold at once. A request is given its Content-Length (a
  // chunked one body_limit) from it as soon as its header is parsed; one that does not fit is answered 503
  // with Retry-After before its body is read, and the bytes return when its answer is written.
  std::size_t body_memory = 256 * 1024 * 1024;
  std::size_t header_limit = 16 * 1024;
  std::chrono::milliseconds request_timeout{30'000};  // to receive one whole request
  std::chrono::milliseconds idle_timeout{75'000};     // between requests on a kept-alive connection
  std::size_t max_connections = 10'000;
  // Told of every request the transport answers itself (reason: header_too_large, body_too_large,
  // bad_request), of connections refused at the cap (too_many_connections) and of failed TLS handshakes
  // (tls_handshake). May be empty.
  std::function<void(std::string_view reason)> on_refused;
  // TLS (see tls.hpp); owned by the caller, outlives the server. Null: plain HTTP. Each connection
  // takes the context in force when it is accepted (tls_credentials::reload() changes it for later ones).
  const tls_credentials* tls = nullptr;
  // The stream protocols' hub: upgraded WebSocket connections run there. Null: upgrades are refused.
  streams::stream_hub* streams = nullptr;
  std::size_t websocket_message_limit = 64 * 1024;
};

class server {
 public:
  server(boost::asio::io_context& ioc, server_options options, request_handler& handler);

  // Binds and listens; returns the bound endpoint (port 0 picks a free one). Throws on failure.
  boost::asio::ip::tcp::endpoint listen();
  void start();
  void stop(std::function<void()> done);

  std::size_t connections() const { return open_.load(); }
  // Coroutines that ended by an exception (a bug): each ended only its unit. A connection's closes that
  // connection; the accept loop's is restarted.
  struct failures {
    std::uint64_t connection = 0;
    std::uint64_t accept_loop = 0;
  };
  failures coroutine_failures() const { return {connection_failures_.load(), accept_failures_.load()}; }

 private:
  struct connection_entry {
    boost::beast::tcp_stream* stream;
    bool* idle;
  };

  // Bytes taken from the shared body budget (--body-memory); returned when destroyed. The budget is
  // shared: a reservation in a connection's frame that a stopped io_context destroys after the server
  // still returns its bytes to a live counter.
  using byte_budget = std::shared_ptr<std::atomic<std::size_t>>;
  class body_reservation {
   public:
    body_reservation() = default;
    body_reservation(const body_reservation&) = delete;
    body_reservation& operator=(const body_reservation&) = delete;
    ~body_reservation() { release(); }

    // Returns the bytes now (at most once).
    void release() noexcept {
      if (pool_ != nullptr) pool_->fetch_sub(bytes_, std::memory_order_relaxed);
      pool_.reset();
    }
    // Takes `bytes` from `pool` if the total stays within `budget`.
    bool take(const byte_budget& pool, std::size_t bytes, std::size_t budget) {
      std::size_t held = pool->load(std::memory_order_relaxed);
      do {
        if (bytes > budget || held > budget - bytes) return false;
      } while (!pool->compare_exchange_weak(held, held + bytes, std::memory_order_relaxed));
      pool_ = pool;
      bytes_ = bytes;
      return true;
    }

   private:
    byte_budget pool_;
    std::size_t bytes_ = 0;
  };
  // What a connection keeps from one request to the next: bytes read ahead, the answer's head.
  struct connection_buffers {
    boost::beast::flat_buffer buffer;
    std::string head;
  };
  // One request being read.
  struct incoming {
    explicit incoming(const server_options& options);
    beast_http::request_parser<beast_http::string_body> parser;
    body_reservation body_bytes;
    bool body_checked = false;
    bool continue_sent = false;
    std::size_t header_seen = 0;  // bytes of the header the parser consumed before it was done
  };
  // A request the transport answers itself, then closes the connection.
  struct refusal {
    beast_http::status status;
    std::string detail;
    std::string reason;  // told to on_refused
    std::string code;    // the body's "error" (the reason when empty)
    std::string retry_after;
  };
  struct fed_bytes {
    std::optional<refusal> refused;
    bool more_buffered = false;  // the parser took bytes and more are buffered: feed again
  };

  boost::asio::awaitable<void> accept_loop();
  boost::asio::awaitable<void> run_session(boost::asio::ip::tcp::socket socket);
  // One connection over `stream` (a tcp_stream, or an ssl_stream over `lowest`), registered for stop().
  template <class Stream>
  boost::asio::awaitable<void> run_registered(Stream& stream, boost::beast::tcp_stream& lowest);
  template <class Stream>
  boost::asio::awaitable<void> serve(Stream& stream, bool& idle);
  template <class Stream>
  boost::asio::awaitable<bool> read_request(Stream& stream, connection_buffers& io, incoming& in, bool& idle, bool first);
  fed_bytes feed(incoming& in, boost::beast::flat_buffer& buffer);
  template <class Stream>
  boost::asio::awaitable<void> refuse(Stream& stream, const refusal& r);
  template <class Stream>
  boost::asio::awaitable<bool> send_continue(Stream& stream, incoming& in);
  template <class Stream>
  boost::asio::awaitable<bool> answer(Stream& stream, connection_buffers& io, request req, body_reservation& body_bytes);
  template <class Stream>
  boost::asio::awaitable<bool> write_answer(Stream& stream, connection_buffers& io, response& res, unsigned version,
                                            bool keep_alive, bool head_only);
  // Writes a streamed answer's head and body until it ends, the client goes or a write times out.
  template <class Stream>
  boost::asio::awaitable<void> write_stream(Stream& stream, connection_buffers& io, streamed_response answer,
                                            unsigned version, bool& idle);
  // Reads (and drops) what the client sends during a streamed answer; tells the body when it closes.
  template <class Stream>
  boost::asio::awaitable<void> watch_client(Stream& stream, body_stream& body, std::shared_ptr<bool> done,
                                            boost::asio::steady_timer& done_signal);
  template <class Stream>
  boost::asio::awaitable<void> upgrade(Stream& stream, connection_buffers& io, request req, body_reservation& body_bytes);
  // Completes the WebSocket handshake of `req` and runs the stream until it closes.
  template <class Stream>
  boost::asio::awaitable<void> run_websocket(Stream& stream, request req, upgrade_decision decision);
  template <class NextLayer>
  boost::asio::awaitable<void> run_websocket_on(NextLayer& next, request req, upgrade_decision decision);
  void session_ended(std::uint64_t id);

  boost::asio::io_context& ioc_;
  server_options options_;
  request_handler& handler_;
  boost::asio::ip::tcp::acceptor acceptor_;

  aipbx::mutex mutex_;
  std::atomic<bool> stopping_{false};  // written under mutex_; read without it on every request
  std::uint64_t next_id_ GUARDED_BY(mutex_) = 0;
  std::unordered_map<std::uint64_t, connection_entry> sessions_ GUARDED_BY(mutex_);
  std::function<void()> on_drained_ GUARDED_BY(mutex_);
  bool accept_loop_done_ GUARDED_BY(mutex_) = false;
  std::atomic<std::size_t> open_{0};
  byte_budget body_bytes_ = std::make_shared<std::atomic<std::size_t>>(0);  // held against options_.body_memory
  std::atomic<std::uint64_t> connection_failures_{0};
  std::atomic<std::uint64_t> accept_failures_{0};
};

}  // namespace aipbx::http
