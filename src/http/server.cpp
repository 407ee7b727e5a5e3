#include "http/server.hpp"

#include "http/json_codec.hpp"
#include "http/tls.hpp"
#include "log/log.hpp"
#include "net/listen.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/write.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/strand.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/http/empty_body.hpp>
#include <boost/beast/http/error.hpp>
#include <boost/beast/http/parser.hpp>
#include <boost/beast/http/read.hpp>
#include <boost/beast/http/write.hpp>
#include <boost/beast/websocket/rfc6455.hpp>
#include <boost/beast/websocket/ssl.hpp>
#include <boost/beast/websocket/stream.hpp>

#include <array>
#include <tuple>
#include <type_traits>
#include <string>
#include <vector>

namespace aipbx::http {

namespace asio = boost::asio;
namespace beast = boost::beast;
using asio::ip::tcp;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

// The socket send buffer of a streamed answer (the kernel doubles it for its bookkeeping).
constexpr std::size_t stream_send_buffer = 256 * 1024;

// Writes every byte of `buffers` (a sequence of const_buffer). On plain TCP one gather write; over TLS
// one write per buffer: Beast's ssl_stream (its flat_stream) given a sequence whose first buffer is empty
// and whose next is over 16 KiB writes nothing, and asio::async_write takes a write of no bytes for the
// end. A partly written head leaves such a sequence behind, so a gathered head and large body would stop
// after the head.
template <class Stream, class Buffers>
asio::awaitable<std::tuple<boost::system::error_code, std::size_t>> write_all(Stream& stream, const Buffers& buffers) {
  if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
    co_return co_await asio::async_write(stream, buffers, use_tuple);
  } else {
    std::size_t written = 0;
    for (const asio::const_buffer piece : buffers) {
      if (piece.size() == 0) continue;
      auto [ec, n] = co_await asio::async_write(stream, piece, use_tuple);
      written += n;
      if (ec) co_return std::tuple{ec, written};
    }
    co_return std::tuple{boost::system::error_code{}, written};
  }
}

// Answers a request the transport refuses, then the caller closes the connection.
template <class Stream>
asio::awaitable<void> write_error(Stream& stream, beast_http::status status, std::string_view detail,
                                  std::string_view code, std::string_view retry_after = {}) {
  response res{status, 11};
  res.set(beast_http::field::content_type, "application/json");
  if (!retry_after.empty()) res.set(beast_http::field::retry_after, retry_after);
  res.set(beast_http::field::server, "aipbx");
  res.body() = error_body(detail, code);
  res.keep_alive(false);
  res.prepare_payload();
  co_await beast_http::async_write(stream, res, use_tuple);
}


// A WebSocket connection as the stream protocols see it (streams/message_channel.hpp), over Beast's
// websocket stream on the connection's own stream (plain or TLS).
template <class Stream>
class beast_channel final : public streams::message_channel {
 public:
  beast_channel(beast::websocket::stream<Stream&>& ws, std::string remote, std::size_t limit)
      : ws_(ws), remote_(std::move(remote)), limit_(limit) {}

  // A message is read a part at a time, so one over the limit is noticed without holding it: the session
  // then closes with 1009 and the closing handshake discards the rest (Beast's own limit would drop the
  // connection at once, and the peer might never read the close frame).
  asio::awaitable<boost::system::error_code> read() override {
    buffer_.clear();
    for (;;) {
      auto [ec, n] = co_await ws_.async_read_some(buffer_, 16 * 1024, use_tuple);
      if (ec) co_return ec;
      if (buffer_.size() > limit_) co_return beast::websocket::error::message_too_big;
      if (ws_.is_message_done()) co_return boost::system::error_code{};
    }
  }
  std::string_view message() const override {
    return {static_cast<const char*>(buffer_.data().data()), buffer_.size()};
  }
  bool is_text() const override { return ws_.got_text(); }
  asio::awaitable<boost::system::error_code> write_text(std::string text) override {
    ws_.text(true);
    auto [ec, n] = co_await ws_.async_write(asio::buffer(text), use_tuple);
    co_return ec;
  }
  asio::awaitable<boost::system::error_code> close(streams::close_code code, std::string reason) override {
    auto [ec] = co_await ws_.async_close(
        beast::websocket::close_reason(static_cast<beast::websocket::close_code>(code), beast::string_view(reason)), use_tuple);
    co_return ec;
  }
  std::uint16_t peer_close_code() const override { return ws_.reason().code; }
  asio::any_io_executor executor() override { return ws_.get_executor(); }
  std::string remote() const override { return remote_; }

 private:
  beast::websocket::stream<Stream&>& ws_;
  beast::flat_buffer buffer_;
  std::string remote_;
  std::size_t limit_;
};

}  // namespace


upgrade_decision request_handler::upgrade(const request&) {
  upgrade_decision d;
  response res{beast_http::status::not_found, 11};
  res.set(beast_http::field::content_type, "application/json");
  res.body() = error_body("Not Found", "not_found");
  d.refusal = std::move(res);
  return d;
}

std::optional<streamed_response> request_handler::stream(const request&) { return std::nullopt; }

server::server(asio::io_context& ioc, server_options options, request_handler& handler)
    : ioc_(ioc), options_(std::move(options)), handler_(handler), acceptor_(asio::make_strand(ioc)) {}

tcp::endpoint server::listen() { return net::listen(acceptor_, options_.host, options_.port); }

// The accept loop runs until the listener closes. Should it end by an exception (a bug), that is logged and
// counted and the loop starts again: the server never stops accepting by accident.
void server::start() {
  asio::co_spawn(acceptor_.get_executor(), accept_loop(), [this](const std::exception_ptr& e) {
    if (!e) return;
    accept_failures_.fetch_add(1, std::memory_order_relaxed);
    log::error("accept loop failed; restarting it", {{"error", describe(e)}});
    if (!stopping_.load() && acceptor_.is_open()) start();
  });
}

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
      if (options_.on_refused) options_.on_refused("too_many_connections");
      boost::system::error_code ignored;
      socket.close(ignored);
      continue;
    }
    boost::system::error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    open_.fetch_add(1);
    auto executor = socket.get_executor();
    asio::co_spawn(executor, run_session(std::move(socket)), [this](const std::exception_ptr& e) {
      if (!e) return;  // run_session ends its connection's failures itself; this is the last net
      connection_failures_.fetch_add(1, std::memory_order_relaxed);
      log::error("connection failed", {{"error", describe(e)}});
    });
  }
  std::function<void()> drained;
  {
    aipbx::lock_guard lock(mutex_);
    accept_loop_done_ = true;
    if (stopping_ && sessions_.empty()) drained = std::move(on_drained_);
  }
  if (drained) drained();
}

asio::awaitable<void> server::run_session(tcp::socket socket) {
  // However the connection ends (run_registered catches what its handler throws; what is left to throw here
  // is setting up TLS), it leaves the count. Not a guard object: should a stopped io_context destroy this
  // frame after the server, nothing here may touch the server.
  try {
    if (options_.tls != nullptr) {
      const std::shared_ptr<asio::ssl::context> context = options_.tls->current();
      beast::ssl_stream<beast::tcp_stream> stream(std::move(socket), *context);
      co_await run_registered(stream, stream.next_layer());
    } else {
      beast::tcp_stream stream(std::move(socket));
      co_await run_registered(stream, stream);
    }
  } catch (...) {
    open_.fetch_sub(1);
    throw;
  }
  open_.fetch_sub(1);
}

template <class Stream>
asio::awaitable<void> server::run_registered(Stream& stream, beast::tcp_stream& lowest) {
  bool idle = true;
  std::uint64_t id = 0;
  {
    aipbx::lock_guard lock(mutex_);
    if (stopping_.load()) co_return;
    id = next_id_++;
    sessions_.emplace(id, connection_entry{&lowest, &idle});
  }
  try {
    if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
      co_await serve(stream, idle);
    } else {
      // The handshake gets the time of a request: a client that connects and stays silent is dropped.
      lowest.expires_after(options_.request_timeout);
      auto [hec] = co_await stream.async_handshake(asio::ssl::stream_base::server, use_tuple);
      if (hec) {
        if (options_.on_refused) options_.on_refused("tls_handshake");
        log::debug("tls handshake failed", {{"error", hec.message()}});
      } else {
        co_await serve(stream, idle);
        lowest.expires_after(std::chrono::seconds(1));
        auto [sec] = co_await stream.async_shutdown(use_tuple);
        (void)sec;  // a peer that closed first is not an error
      }
    }
  } catch (...) {
    // A handler or the transport threw (a bug): this connection ends, counted; the others go on.
    connection_failures_.fetch_add(1, std::memory_order_relaxed);
    log::error("connection failed", {{"error", describe(std::current_exception())}});
  }
  boost::system::error_code ignored;
  lowest.socket().shutdown(tcp::socket::shutdown_send, ignored);
  session_ended(id);
}

void server::session_ended(std::uint64_t id) {
  std::function<void()> drained;
  {
    aipbx::lock_guard lock(mutex_);
    sessions_.erase(id);
    if (stopping_ && sessions_.empty() && accept_loop_done_) drained = std::move(on_drained_);
  }
  if (drained) drained();
}

namespace {

// The status line and header fields of `res`, as they go on the wire (Beast's serializer does the same
// through a chain of buffer views that costs more than the small answers of this API are worth).
void append_head(std::string& out, const response& res) {
  out += res.version() == 10 ? "HTTP/1.0 " : "HTTP/1.1 ";
  out += std::to_string(res.result_int());
  out += ' ';
  const auto reason = res.reason();
  out.append(reason.data(), reason.size());
  out += "\r\n";
  for (const auto& f : res) {
    const auto name = f.name_string();
    const auto value = f.value();
    out.append(name.data(), name.size());
    out += ": ";
    out.append(value.data(), value.size());
    out += "\r\n";
  }
  out += "\r\n";
}

}  // namespace

// One connection: requests read, handled and answered in order until the client closes, a refusal closes
// the connection, or the server stops; an upgrade hands the connection to the stream protocols.
template <class Stream>
asio::awaitable<void> server::serve(Stream& stream, bool& idle) {
  connection_buffers io;
  for (bool first = true;; first = false) {
    if (stopping_.load(std::memory_order_relaxed)) co_return;
    idle = true;
    incoming in(options_);
    auto read_op = read_request(stream, io, in, idle, first);
    if (!co_await std::move(read_op)) co_return;
    idle = false;
    request req = in.parser.release();
    if (beast::websocket::is_upgrade(req)) {
      auto op = upgrade(stream, io, std::move(req), in.body_bytes);
      co_await std::move(op);
      co_return;
    }
    if (auto streamed = handler_.stream(req)) {
      in.body_bytes.release();
      const unsigned version = req.version();
      if (!streamed->body) {
        auto op = write_answer(stream, io, streamed->head, version, req.keep_alive(), false);
        if (!co_await std::move(op)) co_return;
        continue;
      }
      auto op = write_stream(stream, io, std::move(*streamed), version, idle);
      co_await std::move(op);
      co_return;
    }
    auto op = answer(stream, io, std::move(req), in.body_bytes);
    if (!co_await std::move(op)) co_return;
  }
}

// Reads one request within the limits: the header (431 past --header-limit), the body's share of
// --body-memory (503 when it would not fit, before the body is read), the body (413), the time to receive
// it. A refusal is answered here. False when the connection is done (refused, closed, timed out).
template <class Stream>
asio::awaitable<bool> server::read_request(Stream& stream, connection_buffers& io, incoming& in, bool& idle,
                                           bool first) {
  auto& lowest = beast::get_lowest_layer(stream);
  // Between requests a kept-alive connection may idle for idle_timeout; once the next request starts,
  // all of it must arrive within request_timeout (a slow client gets no more per request).
  lowest.expires_after(first || io.buffer.size() > 0 ? options_.request_timeout : options_.idle_timeout);
  bool timer_reset = first || io.buffer.size() > 0;
  // The parser is fed synchronously from the buffer; the socket is read only when it needs more.
  for (;;) {
    if (io.buffer.size() > 0) {
      const auto fed = feed(in, io.buffer);
      if (fed.refused) {
        auto op = refuse(stream, *fed.refused);
        co_await std::move(op);
        co_return false;
      }
      if (in.parser.is_done()) co_return true;
      if (fed.more_buffered) continue;
    }
    if (in.parser.is_header_done()) {
      idle = false;
      auto op = send_continue(stream, in);
      if (!co_await std::move(op)) co_return false;
    }
    auto [rec, got] = co_await stream.async_read_some(io.buffer.prepare(4096), use_tuple);
    if (rec) co_return false;  // closed, reset or timed out: nothing to answer
    io.buffer.commit(got);
    if (!timer_reset) {
      timer_reset = true;
      lowest.expires_after(options_.request_timeout);
    }
  }
}

// Hands the buffered bytes to the parser and checks what the limits say of them.
server::incoming::incoming(const server_options& options) {
  parser.header_limit(static_cast<std::uint32_t>(options.header_limit));
  parser.body_limit(options.body_limit);
  parser.eager(true);
}

server::fed_bytes server::feed(incoming& in, beast::flat_buffer& buffer) {
  fed_bytes out;
  boost::system::error_code pec;
  // Beast checks header_limit only when a read leaves the header unfinished, so a header block that ends
  // in the read that takes it past the limit would pass: the limit is checked here, exactly. (Beast may
  // consume the start of an unfinished header, hence header_seen.)
  if (!in.parser.is_header_done() && in.header_seen + buffer.size() > options_.header_limit) {
    const std::string_view buffered(static_cast<const char*>(buffer.data().data()), buffer.size());
    const auto end = buffered.find("\r\n\r\n");
    if (end == std::string_view::npos || in.header_seen + end + 4 > options_.header_limit)
      pec = beast_http::error::header_limit;
  }
  const auto used = pec ? 0 : in.parser.put(buffer.data(), pec);
  if (!in.parser.is_header_done()) in.header_seen += used;
  buffer.consume(used);
  if (pec == beast_http::error::header_limit) {
    out.refused = refusal{beast_http::status::request_header_fields_too_large, "Request header fields too large",
                          "header_too_large", {}, {}};
  } else if (pec == beast_http::error::body_limit) {
    // A declared Content-Length above the limit is refused as soon as the header is parsed.
    out.refused = refusal{beast_http::status::payload_too_large,
                          "Request body too large; the limit is " + std::to_string(options_.body_limit) + " bytes",
                          "body_too_large", {}, {}};
  } else if (pec && pec != beast_http::error::need_more) {
    out.refused = refusal{beast_http::status::bad_request, "Malformed HTTP request", "bad_request", {}, {}};
  } else if (!in.body_checked && in.parser.is_header_done()) {
    in.body_checked = true;
    const auto length = in.parser.content_length();
    const std::size_t wanted = length ? static_cast<std::size_t>(*length) : in.parser.chunked() ? options_.body_limit : 0;
    if (wanted > 0 && !in.body_bytes.take(body_bytes_, wanted, options_.body_memory))
      out.refused = refusal{beast_http::status::service_unavailable,
                            "The server holds as many request bodies as it may; retry shortly", "body_memory",
                            "overloaded", "1"};
  }
  out.more_buffered = !pec && used > 0 && buffer.size() > 0;
  return out;
}

template <class Stream>
asio::awaitable<void> server::refuse(Stream& stream, const refusal& r) {
  if (options_.on_refused) options_.on_refused(r.reason);
  co_await write_error(stream, r.status, r.detail, r.code.empty() ? r.reason : r.code, r.retry_after);
}

// `Expect: 100-continue`, once the header is in (and its body's bytes reserved).
template <class Stream>
asio::awaitable<bool> server::send_continue(Stream& stream, incoming& in) {
  if (in.continue_sent || !beast::iequals(in.parser.get()[beast_http::field::expect], "100-continue")) co_return true;
  in.continue_sent = true;
  beast_http::response<beast_http::empty_body> go_on{beast_http::status::continue_, in.parser.get().version()};
  auto [wec, wn] = co_await beast_http::async_write(stream, go_on, use_tuple);
  co_return !wec;
}

// Handles a request and writes its answer; false when the connection is done.
template <class Stream>
asio::awaitable<bool> server::answer(Stream& stream, connection_buffers& io, request req, body_reservation& body_bytes) {
  const unsigned version = req.version();
  const bool keep_alive = req.keep_alive();
  const bool head_only = req.method() == beast_http::verb::head;
  auto handled = handler_.handle(std::move(req));
  response res = co_await std::move(handled);
  // The request is consumed: its bytes return before the answer is written, so a client that has its
  // answer can count on them being free.
  body_bytes.release();
  auto op = write_answer(stream, io, res, version, keep_alive, head_only);
  co_return co_await std::move(op);
}

// Writes `res` (its head, and its body unless `head_only`); false when the connection is done.
template <class Stream>
asio::awaitable<bool> server::write_answer(Stream& stream, connection_buffers& io, response& res, unsigned version,
                                           bool keep_alive, bool head_only) {
  res.version(version);
  res.keep_alive(keep_alive && !stopping_.load(std::memory_order_relaxed));
  res.set(beast_http::field::server, "aipbx");
  res.prepare_payload();
  io.head.clear();
  append_head(io.head, res);
  std::array<asio::const_buffer, 2> out{asio::buffer(io.head), asio::buffer(res.body())};
  if (head_only) out[1] = asio::const_buffer();  // HEAD: the GET's headers, Content-Length included
  beast::get_lowest_layer(stream).expires_after(options_.request_timeout);
  auto [wec, wn] = co_await write_all(stream, out);
  co_return !wec && res.keep_alive();
}

template <class Stream>
asio::awaitable<void> server::write_stream(Stream& stream, connection_buffers& io, streamed_response answer,
                                           unsigned version, bool& idle) {
  auto& lowest = beast::get_lowest_layer(stream);
  response& head = answer.head;
  head.version(version);
  head.keep_alive(false);  // the body ends with the connection
  head.set(beast_http::field::server, "aipbx");
  head.body().clear();
  io.head.clear();
  append_head(io.head, head);
  lowest.expires_after(options_.request_timeout);
  auto [hec, hn] = co_await asio::async_write(stream, asio::buffer(io.head), use_tuple);
  if (hec) co_return;
  lowest.expires_never();
  // The kernel would let a client that stops reading hold up to tcp_wmem's largest send buffer (4 MiB by
  // default) of the server's memory before a write blocks; a stream's answer is bounded to much less.
  boost::system::error_code ignored_option;
  lowest.socket().set_option(asio::socket_base::send_buffer_size(static_cast<int>(stream_send_buffer)), ignored_option);
  // While the body waits for more there is nothing in flight that a stop should wait for: stop() cancels
  // the watch, and the body ends with what it says last. A write under way is left to finish (a cancelled
  // one could leave half a frame).
  body_stream& body = *answer.body;
  auto watch_done = std::make_shared<bool>(false);
  asio::steady_timer watch_signal(stream.get_executor(), asio::steady_timer::time_point::max());
  asio::co_spawn(stream.get_executor(), watch_client(stream, body, watch_done, watch_signal), asio::detached);
  bool told_stopping = false;
  for (;;) {
    idle = true;
    // A stop that came during a write did not cancel the watch: the body is told now.
    if (stopping_.load(std::memory_order_relaxed) && !told_stopping) {
      told_stopping = true;
      body.cancel(true);
    }
    auto op = body.next();
    const std::vector<asio::const_buffer> pieces = co_await std::move(op);
    idle = false;
    if (pieces.empty()) break;
    // A client that stops reading fills its socket's buffer: the write times out and the connection ends.
    lowest.expires_after(options_.request_timeout);
    auto [wec, wn] = co_await write_all(stream, pieces);
    lowest.expires_never();
    if (wec) break;
  }
  // The watch reads the socket and refers to the body: it ends before they go.
  boost::system::error_code ignored;
  lowest.socket().cancel(ignored);
  while (!*watch_done) co_await watch_signal.async_wait(use_tuple);
}

template <class Stream>
asio::awaitable<void> server::watch_client(Stream& stream, body_stream& body, std::shared_ptr<bool> done,
                                           asio::steady_timer& done_signal) {
  std::array<char, 512> scratch{};
  for (;;) {
    auto [ec, n] = co_await stream.async_read_some(asio::buffer(scratch), use_tuple);
    if (!ec) continue;  // a client has nothing to say on a stream: dropped
    body.cancel(ec == asio::error::operation_aborted && stopping_.load());
    break;
  }
  *done = true;
  done_signal.cancel();
}

// A WebSocket upgrade: refused with the handler's answer, or the handshake and the stream.
template <class Stream>
asio::awaitable<void> server::upgrade(Stream& stream, connection_buffers& io, request req, body_reservation& body_bytes) {
  upgrade_decision decision = handler_.upgrade(req);
  // A stream protocol needs the hub; without one only the handler's own sessions are served.
  if (!decision.refusal && !decision.run && options_.streams == nullptr)
    decision = handler_.request_handler::upgrade(req);
  body_bytes.release();
  // A client sends nothing before the handshake's answer (RFC 6455, 4.1): bytes already here are not a
  // WebSocket stream's.
  if (!decision.refusal && io.buffer.size() > 0) {
    // NOLINTNEXTLINE(bugprone-use-after-move): the check misreads the coroutine's frame (`req` moves later)
    co_await write_error(stream, beast_http::status::bad_request, "Data sent before the WebSocket handshake",
                         "bad_request");
    co_return;
  }
  if (decision.refusal) {
    response& res = *decision.refusal;
    res.version(req.version());
    res.keep_alive(false);
    res.set(beast_http::field::server, "aipbx");
    res.prepare_payload();
    beast::get_lowest_layer(stream).expires_after(options_.request_timeout);
    co_await beast_http::async_write(stream, res, use_tuple);
    co_return;
  }
  auto op = run_websocket(stream, std::move(req), std::move(decision));
  co_await std::move(op);  // NOLINT(bugprone-use-after-move): the check misreads the coroutine's frame
}

template <class Stream>
asio::awaitable<void> server::run_websocket(Stream& stream, request req, upgrade_decision decision) {
  auto& lowest = beast::get_lowest_layer(stream);
  boost::system::error_code ec;
  const auto peer = lowest.socket().remote_endpoint(ec);
  decision.stream.remote = ec ? std::string() : peer.address().to_string();
  // The websocket stream keeps its own timers: the handshakes (opening and closing) get a request's time;
  // the protocols watch for idle streams themselves.
  lowest.expires_never();
  if constexpr (std::is_same_v<Stream, beast::tcp_stream>) {
    // A plain connection's frames go straight to its socket: the tcp_stream's timeout and rate machinery
    // would cost every read of a stream that sends fifty messages a second, and is not used here.
    auto op = run_websocket_on(lowest.socket(), std::move(req), std::move(decision));
    co_await std::move(op);  // NOLINT(bugprone-use-after-move): one branch of the if constexpr runs
  } else {
    auto op = run_websocket_on(stream, std::move(req), std::move(decision));
    co_await std::move(op);  // NOLINT(bugprone-use-after-move): one branch of the if constexpr runs
  }
}

template <class NextLayer>
asio::awaitable<void> server::run_websocket_on(NextLayer& next, request req, upgrade_decision decision) {
  beast::websocket::stream<NextLayer&> ws(next);
  // The stream protocols watch for idle streams themselves. A session of the handler's own (the event
  // stream) only writes: a client that stops answering pings (or reading) is dropped after the idle timeout.
  using ws_duration = beast::websocket::stream_base::duration;
  const ws_duration idle = decision.run ? std::chrono::duration_cast<ws_duration>(options_.idle_timeout)
                                        : beast::websocket::stream_base::none();
  ws.set_option(beast::websocket::stream_base::timeout{options_.request_timeout, idle, decision.run != nullptr});
  ws.set_option(beast::websocket::stream_base::decorator([sub = decision.subprotocol](auto& res) {
    res.set(beast_http::field::server, "aipbx");
    if (!sub.empty()) res.set(beast_http::field::sec_websocket_protocol, sub);
  }));
  ws.auto_fragment(false);
  auto [aec] = co_await ws.async_accept(req, use_tuple);
  if (aec) co_return;
  beast_channel<NextLayer> channel(ws, decision.stream.remote, options_.websocket_message_limit);
  if (decision.run) {
    auto op = decision.run(channel);
    co_await std::move(op);
    co_return;
  }
  auto op = options_.streams->run_websocket(channel, std::move(decision.stream));
  co_await std::move(op);
}

void server::stop(std::function<void()> done) {
  std::vector<std::pair<std::uint64_t, asio::any_io_executor>> targets;
  {
    aipbx::lock_guard lock(mutex_);
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
      aipbx::lock_guard lock(mutex_);
      auto it = sessions_.find(id);
      boost::system::error_code ignored;
      if (it != sessions_.end() && *it->second.idle) it->second.stream->socket().cancel(ignored);
    });
  }
}

}  // namespace aipbx::http
