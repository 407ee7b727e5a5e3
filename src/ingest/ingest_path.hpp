// ingest_path: the one way a packet enters the store, whatever carried it (an HTTP request, a Twilio
// media message, an audio-fork frame, an AudioSocket frame).
//
// It owns what every entry point must do the same way: take the call's media format (the node's view of
// its declaration, `media_cache`, read from the store once per call and node), check the packet's data
// against it (base64, whole samples; never decoded here), hand the packet to the store's writer (group
// commit; answered once durable), check again when the store says the view was outdated
// (`media_changed`), and count the outcome (`ingest_stats`, exported by /metrics). Callers add what is
// theirs: the HTTP API its 422 shapes and latency, the stream sessions their sequence numbering and acks.
//
// Threading: thread-safe. `ingest` is a coroutine (it may read the store on the blocking pool); `submit`
// never blocks and runs its handler on a store thread (or on the caller's, for a packet refused at once).
// Errors are values: `undecodable` (data that does not fit the format; nothing stored) or the store's
// errc (see storage/call_store.hpp).
#pragma once

#include "domain/histogram.hpp"
#include "ingest/call_media.hpp"
#include "ingest/media_cache.hpp"
#include "media/media_format.hpp"
#include "storage/call_store.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/system/error_code.hpp>

#include <array>
#include <atomic>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>

namespace aipbx::ingest {

// How one packet's ingest ended, whatever carried it.
enum class ingest_result {
  accepted,     // a new packet stored
  duplicate,    // already stored with the same data
  conflict,     // already stored with other data, or checked against an outdated declaration
  call_ended,   // the call is no longer IN_PROGRESS
  invalid,      // failed validation (the caller's, or data that does not fit the format)
  media_type,   // not JSON (HTTP only)
  overloaded,   // the writer's queue is full
  failed,       // the store could not store it
};
inline constexpr std::size_t ingest_result_count = 8;
std::string_view to_string(ingest_result r);
// The result a store answer stands for.
ingest_result classify(const result<ingest_outcome>& r);

// Packets by result and new packets by arrival kind, over every entry point. Lock-free.
class ingest_stats {
 public:
  void count(ingest_result r) { results_[static_cast<std::size_t>(r)].fetch_add(1, std::memory_order_relaxed); }
  void count(const result<ingest_outcome>& r);
  std::uint64_t results(ingest_result r) const { return results_[static_cast<std::size_t>(r)].load(std::memory_order_relaxed); }
  std::uint64_t arrivals(arrival a) const { return arrivals_[static_cast<std::size_t>(a)].load(std::memory_order_relaxed); }

 private:
  std::array<std::atomic<std::uint64_t>, ingest_result_count> results_{};
  std::array<std::atomic<std::uint64_t>, 6> arrivals_{};
};

class ingest_path {
 public:
  ingest_path(call_store& store, boost::asio::thread_pool& blocking, media::media_format default_media);

  // The outcome of `ingest`: the store's answer, or why the data was refused before it reached the store.
  struct checked {
    result<ingest_outcome> stored = errc::store_failure;
    std::optional<boost::system::error_code> undecodable;  // set: nothing stored (media_errc)
    std::string refused_data;                              // with `undecodable`: the data, for the error
    media::media_format format;                            // the format the data was checked against
  };
  // A validated packet of `call_id` whose media is this node's view of the call's declaration: checked,
  // stored and counted (an `undecodable` refusal counts as invalid).
  boost::asio::awaitable<checked> ingest(std::string call_id, std::int64_t sequence, std::string data, double timestamp);

  // A packet whose call's declaration the caller knows for sure (it made it itself): `p.media` names it.
  // When `format` carries audio and `check_data`, the data is checked first (an undecodable packet is
  // answered `errc::invalid_input` and counted invalid). The outcome is counted, then `done` runs.
  void submit(packet p, media::media_format format, bool check_data, call_store::ingest_handler done);

  // This node's view of the call's declaration, read from the store when unknown or when `refresh`; an
  // error only when the store cannot answer.
  boost::asio::awaitable<result<call_media_view>> media_of(const std::string& call_id, bool refresh);
  // A declaration this node made or saw committed.
  void declared(const std::string& call_id, const media_declaration& media) { media_.put(call_id, {media, true}); }

  const ingest_stats& stats() const { return stats_; }
  // Counts a packet refused before it reached the path (a body that did not parse, a wrong content type).
  void count_refused(ingest_result r) { stats_.count(r); }
  media::media_format default_media() const { return default_media_; }

 private:
  call_store& store_;
  boost::asio::thread_pool& blocking_;
  media::media_format default_media_;
  media_cache media_;
  ingest_stats stats_;
};

}  // namespace aipbx::ingest
