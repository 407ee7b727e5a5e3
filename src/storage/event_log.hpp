// event_log: the store-wide log of what happened (calls created, ended and changing state, gaps opened,
// filled and lost, segments cut, jobs claimed, failed, succeeded, dead, replayed, transcripts, DTMF...),
// read by the event stream (GET /v1/events).
//
// Every write that changes something worth telling appends its events in the same transaction as the
// change (the ledgers decide them: storage/call_ledger.hpp, storage/job_ledger.hpp), so an event exists if
// and only if its change committed. Ids are given by a one-row counter (`event_log_state.last_id`) that the
// committing transaction increments: they are consecutive, never reused (pruning leaves the counter alone),
// and their order is the commit order, also across the nodes of one PostgreSQL database (there the counter's
// row lock orders the transactions that write events; see docs/architecture.md). So the events a reader
// sees are always every event up to some id: a reader that remembers the last id it saw and asks for the
// ones after it misses none and sees none twice.
//
// Durability: a read returns only durable events (the embedded store publishes a batch's events once its
// write-ahead log is flushed, not at commit), so an id a reader was given is never given again to another
// event after a crash.
//
// Retention: events older than the store's retention are pruned in the background; `pruned_through` says
// up to which id, so a reader asking for pruned events learns that they are gone instead of skipping them.
//
// Threading: every member is thread-safe. `read_log` and `log_head` block on the database (off the I/O
// threads). Errors: `unavailable` / `store_failure`.
#pragma once

#include "domain/errc.hpp"

#include <cstddef>
#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aipbx {

// The kinds of events, as stored and as clients filter on them.
enum class event_kind {
  call_created,        // call.created: {"reason"}
  call_state_changed,  // call.state_changed: {"from", "to", "reason"}
  call_ended,          // call.ended: {"reason", "last_sequence", "packets_received", "lost_packets"}
  gap_opened,          // gap.opened: {"first", "last"}: a packet skipped ahead, these are missing
  gap_filled,          // gap.filled: {"sequence", "first", "last", "closed"}: a late packet arrived in the
                       //   missing range [first, last]; closed when the range is now empty
  gap_lost,            // gap.lost: {"first", "last"}: declared lost (reorder window passed, or the call ended)
  packet_late,         // packet.late: {"sequence"}: arrived after its gap was declared lost (stored, not run)
  segment_cut,         // segment.cut: {"first", "last"}: a job was queued for these packets
  job_claimed,         // job.claimed: {"first", "last", "attempt", "max_attempts", "owner", "lease_expires_at"}
  job_failed,          // job.failed: {"first", "last", "attempt", "error", "next_run_at" (null: no retry)}
  job_succeeded,       // job.succeeded: {"first", "last", "attempt", "engine", "latency_ms"}
  job_dead,            // job.dead: {"first", "last", "attempts", "error"}
  job_replayed,        // job.replayed: {"first", "last"}
  job_released,        // job.released: {"first", "last", "attempt"}: given back at shutdown, not counted
  transcript_final,    // transcript.final: {"first", "last", "text", "engine", "latency_ms"}
  dtmf,                // dtmf: {"kind": "dtmf", "sequence", "data": {"digit"...}}: a call event (see
                       //   call_store::record_event) of kind dtmf
  call_event,          // call.event: {"kind", "sequence", "data"}: another call event (stream start and
                       //   stop, mark, text...)
  transcript_partial,  // transcript.partial: {"first", "last", "attempt", "text", "heard_s"}: the running
                       //   attempt's current hypothesis (engines that give one), replaced by transcript.final
};

inline constexpr std::size_t event_kind_count = 18;

std::string_view to_string(event_kind k);
std::optional<event_kind> parse_event_kind(std::string_view text);

// One event as stored. `data` is a JSON object as text.
struct logged_event {
  std::int64_t id = 0;
  double at = 0;  // unix seconds, the writer's clock
  event_kind kind = event_kind::call_created;
  std::string call_id;
  std::optional<std::int64_t> job_id;
  std::string data = "{}";
  friend bool operator==(const logged_event&, const logged_event&) = default;
};

// Which events a reader wants: of one call (empty: every call), of these kinds (empty: every kind).
struct event_filter {
  std::optional<std::string> call_id;
  std::vector<event_kind> kinds;
  bool matches(const logged_event& e) const;
  bool matches(event_kind kind, std::string_view call_id) const;
};

struct log_page {
  std::vector<logged_event> events;  // in id order
  // Every event that matches, with an id in (after, scanned_to], is in `events`: the next read starts here.
  std::int64_t scanned_to = 0;
  std::int64_t pruned_through = 0;  // events up to this id are gone (retention)
};

class event_log {
 public:
  virtual ~event_log() = default;

  // The durable events after `after` that match `filter`, at most `limit`, none past `up_to` (when set).
  [[nodiscard]] virtual result<log_page> read_log(std::int64_t after, std::optional<std::int64_t> up_to,
                                                  const event_filter& filter, std::size_t limit) = 0;
  // The id of the last durable event (0: none yet).
  [[nodiscard]] virtual result<std::int64_t> log_head() = 0;
  // Runs `listener` (on a store thread; it must not block) whenever durable events may have been added,
  // by this node or, on a shared database, by another one.
  virtual void on_events(std::function<void()> listener) = 0;
};

}  // namespace aipbx
