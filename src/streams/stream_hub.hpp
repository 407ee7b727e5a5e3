// stream_hub: what every stream session of a node shares: the store and the ingest path they feed, the
// limits, the counters, the set of live sessions (for the stream cap, the one-stream-per-call rule and
// shutdown), and the entry point of the WebSocket protocols.
//
// Ownership: the application owns the hub; it outlives every session. Sessions register themselves while
// they run. Threading: every member is thread-safe; `run_websocket` runs on the connection's strand.
#pragma once

#include "ingest/ingest_path.hpp"
#include "streams/message_channel.hpp"
#include "streams/stream_stats.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace aipbx {
class call_store;
}  // namespace aipbx

namespace aipbx::streams {

struct stream_options {
  // Packets of one stream queued for the store and not yet answered: past it the session stops reading
  // its socket (TCP flow control pushes back on the sender) until answers come.
  std::size_t window = 64;
  // Audio frames per second per track, sustained (a burst of one second's worth is let through): past
  // it the session reads more slowly. Real time is 50 (20 ms frames); more lets a sender catch up.
  double max_fps = 200;
  // A stream that receives nothing for this long is closed (its call is left to --idle-timeout).
  std::chrono::milliseconds idle_timeout{10'000};
  // The largest WebSocket message and the largest AudioSocket frame payload, in bytes.
  std::size_t message_limit = 64 * 1024;
  // Streams open at once, over every protocol; past it a new one is refused.
  std::size_t max_streams = 2'000;
  // How long a session keeps trying to store what it has read once its connection is gone or the
  // server is stopping (the store overloaded or unreachable); what is left is logged as lost.
  std::chrono::milliseconds drain_timeout{15'000};
};

// A WebSocket upgrade the HTTP layer accepted: which protocol, and what the request said.
struct stream_request {
  protocol kind = protocol::twilio;
  std::optional<std::string> call_id;                // from the path
  std::vector<std::pair<std::string, std::string>> query;  // decoded query parameters, in order
  bool authenticated = false;  // a valid token came with the upgrade (or none is required)
  std::string remote;          // the peer's address, for logs
  std::string find(std::string_view name) const;   // a query parameter's value ("" if absent)
  bool has(std::string_view name) const;
};

class stream_hub {
 public:
  // `token_ok` tells whether a token is valid (nullptr or an always-true function: none required).
  stream_hub(call_store& store, ingest::ingest_path& ingest, boost::asio::thread_pool& blocking, stream_options options,
             std::function<bool(std::string_view token)> token_ok);

  call_store& store() { return store_; }
  ingest::ingest_path& ingest() { return ingest_; }
  boost::asio::thread_pool& blocking() { return blocking_; }
  const stream_options& options() const { return options_; }
  stream_stats& stats() { return stats_; }
  const stream_stats& stats() const { return stats_; }
  // Whether tokens are required, and whether `token` is one of them.
  bool tokens_required() const { return tokens_required_; }
  bool token_ok(std::string_view token) const { return !tokens_required_ || token_check_(token); }

  // Runs one accepted WebSocket connection to its end (the HTTP transport's entry point).
  boost::asio::awaitable<void> run_websocket(message_channel& channel, stream_request request);

  // A live session, as the hub sees it. `stop` is called once, from any thread, when the server stops:
  // the session posts itself to its strand, stores what it has read and closes with "going away".
  struct session_entry {
    protocol kind;
    std::function<void()> stop;
  };
  // Admits a session (false: the stream cap is reached or the hub is stopping). Every admitted session
  // leaves with `leave`.
  std::optional<std::uint64_t> enter(protocol kind, std::function<void()> stop);
  void leave(std::uint64_t id);
  // One stream per call and node at a time: a second stream of a call would number its packets over the
  // first's. False when another session of this node holds the call.
  bool claim_call(const std::string& call_id);
  void release_call(const std::string& call_id);

  // Stops every session (and refuses new ones); `done` runs once every session has left.
  void stop(std::function<void()> done);
  bool stopping() const;
  std::size_t open_streams() const;

 private:
  call_store& store_;
  ingest::ingest_path& ingest_;
  boost::asio::thread_pool& blocking_;
  stream_options options_;
  stream_stats stats_;
  std::function<bool(std::string_view)> token_check_;
  bool tokens_required_;

  mutable std::mutex mutex_;
  bool stopping_ = false;                                  // guarded by mutex_
  std::uint64_t next_id_ = 0;                              // guarded by mutex_
  std::unordered_map<std::uint64_t, session_entry> sessions_;  // guarded by mutex_
  std::set<std::string, std::less<>> calls_;               // guarded by mutex_
  std::function<void()> on_stopped_;                       // guarded by mutex_
};

}  // namespace aipbx::streams
