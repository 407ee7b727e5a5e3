// call_feed: carries one stream's audio into its call(s) through the ingest path, the part every
// protocol shares.
//
// `open` declares each track's media (creating its call: a track is a call of its own), claims the calls
// on this node and reads where each stands. `push` numbers a packet (the protocol's own sequence, or the
// next in arrival order after what the call already holds), queues it for the store and returns at once:
// packets are pipelined, never answered one at a time. Memory is bounded: while `window` packets wait for
// the store, or the track is past its frame rate, `push` suspends, so the session stops reading its socket
// and TCP flow control pushes back on the sender. A packet the store could not take (overloaded,
// unreachable) is kept and sent again with backoff: an accepted frame is never dropped silently. A refusal
// that retrying cannot cure (a sequence conflict, an ended call, audio that does not fit the codec) is
// kept as the feed's failure, which the session turns into its close reason. `acked` is the cumulative
// acknowledgement: every sequence at or below it is durable in every track's call. `end` ends the calls
// once everything queued was answered, so the last segment is cut after the last packet.
//
// Threading: a feed lives on its connection's strand and is not thread-safe; the store's answers are
// posted back to that strand. The owner must `drain` before destroying it (answers refer to it).
#pragma once

#include "media/media_format.hpp"
#include "storage/call_store.hpp"
#include "streams/message_channel.hpp"
#include "streams/stream_stats.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/steady_timer.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace aipbx::streams {

class stream_hub;

// One track of a stream: the call that keeps it, and what its packets carry.
struct track_spec {
  std::string call_id;
  std::string name;  // "inbound", "outbound"
  media::media_format format;
  std::int64_t packet_ms = 20;
};

// Why a stream must close: the code and reason text sent to the peer, and the counted reason.
struct stream_failure {
  close_code code = close_code::internal_error;
  close_reason reason = close_reason::internal;
  std::string text;
};

class call_feed {
 public:
  using clock = std::chrono::steady_clock;

  call_feed(stream_hub& hub, protocol kind, const boost::asio::any_io_executor& strand);
  ~call_feed();
  call_feed(const call_feed&) = delete;
  call_feed& operator=(const call_feed&) = delete;

  // Declares each track's media, creating its call if needed, claims the calls on this node and reads
  // where each stands. A failure says why the stream cannot go on.
  boost::asio::awaitable<std::optional<stream_failure>> open(std::vector<track_spec> tracks);

  struct track_state {
    track_spec spec;
    std::int64_t start_highest = 0;  // the call's highest sequence when the stream opened
    std::int64_t next = 1;           // the next sequence in arrival order
    std::int64_t acked = 0;          // every sequence <= acked of this call is durable
    std::string media_text;          // the declaration's format, as each packet names it
  };
  std::size_t track_count() const { return tracks_.size(); }
  const track_state& track(std::size_t t) const { return tracks_[t]; }

  // Queues a packet of track `t`: its sequence (nullopt: the next in arrival order), its data (base64 in
  // the track's format; checked first when `check`), the sender's timestamp and when it was read.
  // Suspends while the window is full or the track is past its frame rate.
  boost::asio::awaitable<void> push(std::size_t t, std::optional<std::int64_t> sequence, std::string data, bool check,
                                    double timestamp, clock::time_point received);
  // A refusal that ends the stream, if the store answered one.
  const std::optional<stream_failure>& failure() const { return failure_; }
  void fail(stream_failure f);
  // Runs on the strand when the first failure is set, so that a session waiting on its socket closes now.
  void on_failed(std::function<void()> f) { on_failed_ = std::move(f); }

  // Waits until every queued packet is answered. Past `give_up` packets still refused as overloaded or
  // unavailable are abandoned (logged and counted as lost); `give_up` is kept from the first call.
  boost::asio::awaitable<void> drain(clock::time_point give_up);
  // Ends every track's call (after `drain`), with `reason` in its transitions.
  boost::asio::awaitable<void> end(std::string reason);

  // Records a call event of the stream's first call (`kind`: dtmf, mark, text, stream_started...; `data` a
  // JSON object as text), placed after the packets read so far. Queued like a packet, not awaited: an
  // event that cannot be stored is logged.
  void record(std::string kind, std::string data);

  // Every sequence <= acked() of every track is durable.
  std::int64_t acked() const;
  // Runs on the strand whenever acked() grows.
  void on_acked(std::function<void()> f) { on_acked_ = std::move(f); }
  std::size_t in_flight() const { return in_flight_; }
  bool opened() const { return !claimed_.empty(); }

 private:
  struct pending {
    packet p;
    std::size_t track = 0;
    clock::time_point received;
    int attempts = 0;
    bool check = false;
  };
  void submit(std::uint64_t id);
  void answered(std::uint64_t id, result<ingest_outcome> r);
  void retry_later(std::uint64_t id, std::chrono::milliseconds delay);
  void arm_retry_timer();
  void settle(std::uint64_t id);
  void wake();
  boost::asio::awaitable<void> wait();
  boost::asio::awaitable<void> throttle();

  stream_hub& hub_;
  protocol kind_;
  protocol_stats& stats_;
  boost::asio::any_io_executor strand_;
  boost::asio::steady_timer wake_;
  boost::asio::steady_timer retry_timer_;
  std::multimap<clock::time_point, std::uint64_t> retries_;  // packets to send again, by when
  std::vector<track_state> tracks_;
  std::vector<std::string> claimed_;  // calls this feed holds on the node
  std::deque<std::optional<pending>> queue_;  // by id - first_id_; empty slots are answered
  std::uint64_t first_id_ = 0;
  std::size_t in_flight_ = 0;
  std::optional<stream_failure> failure_;
  std::optional<clock::time_point> give_up_;
  std::uint64_t abandoned_ = 0;
  std::function<void()> on_acked_;
  std::function<void()> on_failed_;
  // Frame-rate bucket.
  double tokens_ = 0;
  double rate_ = 0;
  clock::time_point refilled_;
};

}  // namespace aipbx::streams
