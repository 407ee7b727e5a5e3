// call_store: the contract between aipbx and the database that keeps calls and packets.
//
// Implementations: the backend libraries (storage/sqlite, storage/postgres). Nothing above this header may
// assume a particular database; what a backend measures of itself alone reaches /metrics as
// `backend_metrics`, named by the backend. tests/unit/storage/call_store_contract_test.cpp
// checks every implementation against the same cases.
//
// Threading: every member is thread-safe. `ingest` never blocks: it queues the packet for the store's
// writer, which commits many packets in one transaction (group commit) and then runs each packet's
// handler on a store thread, exactly once; a packet refused at once (overloaded, stopping) has its
// handler run on the calling thread before `ingest` returns. The read calls block on the database and must be
// called off the HTTP I/O threads.
//
// Errors (`result` holds an errc): ingest fails with `sequence_conflict` (same sequence, different data;
// nothing changed), `media_changed` (see Media below; nothing changed), `call_ended` (the call takes no more
// packets), `overloaded` (the writer's queue is full; nothing changed), `unavailable` (stopping, or the
// database is unreachable; nothing changed) or `store_failure`. A success means the packet is durable: it
// survives a crash of the process and the OS. Reads fail with `not_found` for an unknown call, or
// `unavailable` / `store_failure`.
//
// Media: a call may declare how its packets carry audio (`declare_media`) before its first packet; the
// declaration creates the call if needed and never changes afterwards. Ingest refuses a packet whose
// `packet::media` (the declaration it was checked against, empty for none) is not the call's declaration
// with `media_changed`, so a packet checked against a stale view of the call is never stored.
//
// Tracks: a stream with two tracks stores each as a call of its own; the declaration of each names its
// track and, for a track other than the stream's first, the call of the first track (its primary). The
// link is set once, with the call's first declaration that names one.
//
// Events: what happened in a call besides its audio (DTMF, a stream's start and stop, marks, text), kept
// per call in the order recorded. Recording one is a write like ingest; it fails with `not_found` for an
// unknown call (an event never creates one), `invalid_input` for an event that cannot be stored (empty kind,
// text that is not UTF-8 or holds NUL bytes; refused at once, nothing changed), or as ingest does when the
// writer is full, stopping or failing.
#pragma once

#include "domain/call_state.hpp"
#include "domain/errc.hpp"
#include "domain/histogram.hpp"
#include "domain/job.hpp"
#include "domain/sequence_tracker.hpp"
#include "storage/backend_metric.hpp"

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace aipbx {

struct ingest_outcome {
  bool duplicate = false;         // the same packet was stored before; nothing changed
  bool call_created = false;      // this packet created the call
  arrival kind = arrival::in_order;
  std::int64_t expected = 1;      // the call's lowest sequence not yet received, after this packet
  std::int64_t last_sequence = 0; // the call's highest sequence after it
  std::int64_t missing = 0;       // how many sequences the call is missing after it
};

// How a call's packets carry audio, as its sender declared it. `format` is the media layer's text form
// (media/media_format.hpp; storage does not interpret it), `packet_ms` the duration of one packet.
struct media_declaration {
  std::string format;
  std::int64_t packet_ms = 20;
  friend bool operator==(const media_declaration&, const media_declaration&) = default;
};

struct declare_outcome {
  bool created = false;   // the declaration created the call
  bool repeated = false;  // the call had declared exactly this before; nothing changed
};

// A call that is one track of a stream: its track's name, and for a track other than the stream's first,
// the call of the first track. A name is 1-128 bytes of UTF-8 without NUL bytes, and a call is not its own
// primary (`invalid_input` otherwise).
struct track_link {
  std::string name;
  std::optional<std::string> primary;
  friend bool operator==(const track_link&, const track_link&) = default;
};

// A call event, kept in the order it was recorded. `id` is durable and increasing over every call of the
// store (0 until stored); `data` is a JSON object as text (the store does not interpret it). A "dtmf"
// event's data holds the key as `{"digit": "5"}`.
struct call_event {
  std::int64_t id = 0;
  std::string call_id;
  std::string kind;                      // "dtmf", "stream_started", "stream_stopped", "mark", "text"...
  double at = 0;                         // unix seconds, server clock (0: when the writer stores it)
  std::optional<std::int64_t> sequence;  // where in the call's packets it happened, when known
  std::string data = "{}";
  friend bool operator==(const call_event&, const call_event&) = default;
};

struct event_page {
  std::vector<call_event> events;
  std::optional<std::int64_t> next_after;  // pass as `after` for the next page; empty on the last page
};

struct call_transition {
  std::optional<call_state> from;  // empty for the call's creation
  call_state to = call_state::in_progress;
  std::string reason;
  double at = 0;
};

struct call_summary {
  std::string id;
  call_state state = call_state::in_progress;
  std::int64_t last_sequence = 0;      // the highest sequence received
  std::int64_t expected_sequence = 1;  // the lowest sequence not yet received
  std::int64_t packets_received = 0;   // distinct packets stored
  std::int64_t duplicate_packets = 0;  // repeats answered as duplicates
  std::int64_t out_of_order_packets = 0;  // packets that arrived below the highest (late fills, before start)
  std::int64_t gaps_opened = 0;        // how many times a packet skipped ahead
  std::int64_t missing_packets = 0;    // sequences missing now, in `missing_ranges` ranges
  std::int64_t missing_ranges = 0;
  std::optional<double> first_timestamp;  // smallest / largest packet timestamp (sender's clock)
  std::optional<double> last_timestamp;
  double created_at = 0;               // unix seconds, server clock
  double updated_at = 0;
  double state_changed_at = 0;
  std::optional<double> last_packet_at;  // when the last new packet was stored
  std::int64_t next_segment = 1;       // the first sequence not yet cut into an AI job
  std::int64_t late_packets = 0;       // arrived after their gap was declared lost (stored, not run)
  std::int64_t lost_packets = 0;       // declared lost (reorder window passed, or the call ended), in
  std::int64_t lost_ranges = 0;        //   this many ranges
  std::optional<double> ended_at;
  std::optional<std::string> end_reason;  // "ended by request", "idle timeout"
  std::int64_t jobs_total = 0;         // the call's AI jobs: all, succeeded, dead
  std::int64_t jobs_succeeded = 0;
  std::int64_t jobs_dead = 0;
  std::optional<media_declaration> media;  // empty when the call declared nothing
  std::optional<std::string> track;        // the call's track of its stream, when it declared one
  std::optional<std::string> primary_call;   // the call of its stream's first track, for another track
  std::vector<call_transition> transitions;  // filled by get_call only, oldest first
  // Track name -> call id of the calls whose primary is this one, by track name; filled by get_call only.
  std::vector<std::pair<std::string, std::string>> tracks;
};

struct stored_packet {
  std::int64_t id = 0;
  std::int64_t sequence = 0;
  std::string data;
  double timestamp = 0;
  double received_at = 0;
};

struct call_query {
  std::size_t limit = 50;
  std::optional<std::string> after;      // keyset cursor: return calls whose id sorts after this
  std::optional<call_state> state;       // only calls in this state; without it, every call but ARCHIVED
};

struct call_page {
  std::vector<call_summary> calls;
  std::optional<std::string> next_after;  // pass as `after` for the next page; empty on the last page
};

struct packet_page {
  std::vector<stored_packet> packets;
  std::optional<std::int64_t> next_after;
};

// Totals over every call, for /metrics.
struct call_counts {
  std::array<std::int64_t, 5> by_state{};  // indexed by call_state
  std::int64_t packets_received = 0;
  std::int64_t duplicate_packets = 0;
  std::int64_t out_of_order_packets = 0;
  std::int64_t gaps_opened = 0;
  std::int64_t late_packets = 0;
  std::int64_t lost_packets = 0;
};

// Counters of the writer, for /metrics, /readyz and the benchmarks.
struct writer_stats {
  std::uint64_t batches = 0;        // committed transactions
  std::uint64_t packets = 0;        // packets committed (new and duplicate)
  std::uint64_t largest_batch = 0;
  std::uint64_t failed_batches = 0;
  histogram_snapshot batch_sizes;   // writes per committed transaction
  histogram_snapshot commit_seconds;  // the writer's time in each transaction, from its first write to its commit
  std::size_t queued = 0;           // waiting for the writer now
  std::size_t queue_limit = 0;
  std::uint64_t events_pruned = 0;  // events of the log deleted by retention (by this node's writers)
};

class call_store {
 public:
  using ingest_handler = std::function<void(result<ingest_outcome>)>;

  virtual ~call_store() = default;

  // Queues `p` (already validated) for durable storage; `done` runs once, on a store thread.
  virtual void ingest(packet p, ingest_handler done) = 0;

  [[nodiscard]] virtual result<call_page> list_calls(const call_query& query) = 0;
  [[nodiscard]] virtual result<call_summary> get_call(std::string_view call_id) = 0;
  // Packets in sequence order, starting after sequence `after`.
  [[nodiscard]] virtual result<packet_page> list_packets(std::string_view call_id, std::int64_t after,
                                                         std::size_t limit) = 0;
  // The call's open (still missing) and lost (given up) ranges, ascending, and the late packets: those
  // stored after their range was declared lost (so inside `lost`, which they do not shrink), as ranges.
  struct gap_ranges {
    std::vector<seq_range> open;
    std::vector<seq_range> lost;
    std::vector<seq_range> late;
  };
  [[nodiscard]] virtual result<gap_ranges> gaps(std::string_view call_id) = 0;

  // Ends the call (IN_PROGRESS -> PROCESSING_AI, then settled by its jobs): the rest of its packets are
  // cut into segments and its open gaps declared lost. Answers the state it settled in; `not_found`, or
  // `invalid_transition` if it has ended already. A write: queued to the writer like ingest.
  using state_handler = std::function<void(result<call_state>)>;
  virtual void end_call(std::string call_id, std::string reason, state_handler done) = 0;
  // Puts a finished (COMPLETED or FAILED) call away; `invalid_transition` otherwise.
  virtual void archive_call(std::string call_id, state_handler done) = 0;

  // Declares the call's media format, creating the call if it does not exist. A repeat of the same
  // declaration succeeds (`repeated`, nothing changed). Fails with `media_conflict` when the call declared
  // another one, `media_too_late` when it has packets and no declaration, `call_ended` when it has ended.
  // A write: queued to the writer like ingest.
  using declare_handler = std::function<void(result<declare_outcome>)>;
  // Like the declaration without a track, and the call records its track (set once: a call that has a
  // track keeps it; a repeat with the same link or none changes nothing; another link is ignored, not an
  // error). A declaration that fails records no track either; an invalid link fails with `invalid_input`
  // at once (nothing changed, the handler runs on the calling thread).
  virtual void declare_media(std::string call_id, media_declaration media, std::optional<track_link> track,
                             declare_handler done) = 0;
  void declare_media(std::string call_id, media_declaration media, declare_handler done) {
    declare_media(std::move(call_id), std::move(media), std::nullopt, std::move(done));
  }
  // The call's declaration (empty if none): a light read for the ingest path's cache and the AI workers.
  [[nodiscard]] virtual result<std::optional<media_declaration>> call_media(std::string_view call_id) = 0;

  // Records an event of an existing call (`not_found` otherwise; an event never creates a call), whatever
  // its state: a late DTMF of a call that just ended is still a fact. A write, queued to the writer like
  // ingest, durable when answered with the event's id.
  using event_handler = std::function<void(result<std::int64_t>)>;
  virtual void record_event(call_event e, event_handler done) = 0;
  // The call's events in id order, after `after` (0: from the first); `not_found` for an unknown call.
  [[nodiscard]] virtual result<event_page> list_events(std::string_view call_id, std::int64_t after,
                                                       std::size_t limit) = 0;

  // Totals over every call (a scan of the calls: for /metrics, not for the ingest path).
  [[nodiscard]] virtual result<call_counts> count_calls() = 0;
  // True when the database answers a trivial query.
  [[nodiscard]] virtual bool ping() = 0;
  virtual writer_stats stats() const = 0;
  // What this backend measures of itself beyond writer_stats (none by default), read when scraped.
  virtual std::vector<backend_metric> backend_metrics() const { return {}; }

  // Commits what is queued, answers it, then fails further ingests with `unavailable`. Idempotent.
  virtual void stop() = 0;
};

}  // namespace aipbx
