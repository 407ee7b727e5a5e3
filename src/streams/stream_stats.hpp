// stream_stats: the counters of the streaming protocols, per protocol, for /metrics: streams open and
// opened, audio frames and bytes read, packets stored, call events, why streams closed, and each frame's
// lag from being read off the socket to being durable. Lock-free; every member is thread-safe.
#pragma once

#include "domain/histogram.hpp"

#include <array>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

namespace aipbx::streams {

enum class protocol { twilio, audio_fork, audiosocket };
inline constexpr std::size_t protocol_count = 3;
std::string_view to_string(protocol p);

// Why a stream ended. `stopped` is the protocol's own end (Twilio stop, a fork's zero-length frame or stop
// message, AudioSocket's close at a frame boundary or hang-up): its call is ended. Every other reason
// leaves the call to --idle-timeout.
enum class close_reason {
  stopped,        // the sender ended the stream (the call ended)
  closed,         // the sender closed the connection without ending the stream
  broken,         // the connection broke (reset, closed inside a frame)
  idle,           // nothing received for --stream-idle-timeout
  shutdown,       // the server is shutting down (going away)
  bad_message,    // malformed, unknown or out-of-order message, wrong kind byte, oversized frame
  bad_audio,      // a payload that does not fit the stream's codec
  unauthorized,   // no valid token
  conflict,       // the store refused the stream's packets or media (sequence conflict, call ended...)
  unavailable,    // the store could not take the packets in time
  limit,          // too many streams, or the call already streams on this node
  internal,       // an unexpected failure
};
inline constexpr std::size_t close_reason_count = 12;
std::string_view to_string(close_reason r);

// Receive -> durable lag buckets (seconds): fine around the 20 ms of one frame.
inline const std::vector<double>& commit_lag_bounds() { return duration_bounds(); }

struct protocol_stats {
  std::atomic<std::int64_t> open{0};       // streams open now
  std::atomic<std::uint64_t> opened{0};    // streams accepted (their call opened)
  std::atomic<std::uint64_t> frames{0};    // audio frames read
  std::atomic<std::uint64_t> bytes{0};     // audio bytes read (decoded payload)
  std::atomic<std::uint64_t> stored{0};    // packets stored (new)
  std::atomic<std::uint64_t> duplicates{0};  // packets already stored (a resend)
  std::atomic<std::uint64_t> retries{0};   // packets resubmitted after the store was overloaded or unavailable
  std::atomic<std::uint64_t> events{0};    // call events (DTMF, marks, texts)
  std::atomic<std::uint64_t> failures{0};  // session coroutines that ended by an exception (a bug)
  std::array<std::atomic<std::uint64_t>, close_reason_count> closes{};
  atomic_histogram commit_lag{commit_lag_bounds()};

  void closed(close_reason r) { closes[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed); }
};

class stream_stats {
 public:
  protocol_stats& of(protocol p) { return by_protocol_[static_cast<std::size_t>(p)]; }
  const protocol_stats& of(protocol p) const { return by_protocol_[static_cast<std::size_t>(p)]; }

 private:
  std::array<protocol_stats, protocol_count> by_protocol_;
};

}  // namespace aipbx::streams
