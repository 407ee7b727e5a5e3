// call_ledger: the call lifecycle every backend's writer shares, as pure logic over plain data.
//
// A writer loads a call's state into a `call_record` (from its calls and call_gaps rows, or fresh for a
// call it creates), hands the record and each of the batch's operations to the ledger, and writes the rows
// the ledger decided on in its own SQL dialect. The ledger owns what a call's record means: the arrival
// counters (in order, gaps, late, out of order, after a lost gap, duplicates), the idempotent answer to a
// repeated packet, the reorder window and idle cut (through the call's sequencer), the lifecycle
// (IN_PROGRESS -> PROCESSING_AI -> COMPLETED | FAILED -> ARCHIVED, replay), the media declaration and track
// link, and which packet, gap, job, transition, event and log rows to write (the log: the store-wide events
// of storage/event_log.hpp, written in the same transaction as what they tell). It runs no SQL, reads no clock (`now`
// arguments) and logs only in `log_committed`, which the writer calls once its transaction committed.
//
// Not thread-safe: one writer thread owns a ledger and the records it is given.
#pragma once

#include "domain/call_sequencer.hpp"
#include "domain/call_state.hpp"
#include "domain/errc.hpp"
#include "domain/job.hpp"
#include "storage/call_store.hpp"
#include "storage/event_log.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace aipbx {

// One call as its calls row holds it, plus its live sequencer (rebuilt from its call_gaps rows).
struct call_record {
  std::string id;
  call_state state = call_state::in_progress;
  call_sequencer seq;
  std::int64_t packets_received = 0;
  std::int64_t duplicate_packets = 0;
  std::int64_t out_of_order_packets = 0;
  std::int64_t late_packets = 0;
  std::int64_t gaps_opened = 0;
  std::int64_t jobs_total = 0;
  std::int64_t jobs_succeeded = 0;
  std::int64_t jobs_dead = 0;
  std::optional<double> first_timestamp;
  std::optional<double> last_timestamp;
  std::optional<double> last_packet_at;
  std::optional<double> ended_at;
  std::optional<std::string> end_reason;
  std::optional<media_declaration> media;
  std::optional<std::string> track;    // its track of a stream, set once
  std::optional<std::string> primary;  // the call of its stream's first track
  double state_changed_at = 0;
  // Where the backend keeps its row, when it has such a key (SQLite: the calls row's rowid), 0 when not known.
  std::int64_t row = 0;
  // What changed since the writer last wrote the record (the writer clears the flags it wrote).
  bool dirty = false;        // the calls row
  bool state_dirty = false;  // of which state, ended_at, end_reason or state_changed_at
  bool gaps_dirty = false;   // its call_gaps rows
  bool media_dirty = false;  // its declaration
  bool track_dirty = false;  // its track and primary

  std::int64_t outstanding() const { return jobs_total - jobs_succeeded - jobs_dead; }
};

struct ledger_options {
  sequencer_options sequencing;
  double segment_idle = 2.0;  // seconds without a packet before a call's remaining packets are cut
  double idle_timeout = 0;    // seconds without a packet before a call ends (0: never)
  // Whether a call, by its media declaration (empty: it declared none), is cut into segments from outside
  // (`cut`: the pause segmenter) rather than every `segment_packets`. Unset: every call is cut by packets.
  std::function<bool(const std::optional<media_declaration>&)> cut_outside;
};

// The rows the ledger decided on, each kind in the order decided.
struct packet_row {  // a packet to store (new: its sequence held nothing)
  std::string call_id;
  std::int64_t sequence = 0;
  std::string_view data;  // the packet's own data: valid while its operation is
  double timestamp = 0;
  bool late = false;  // arrived after its gap was declared lost: stored, never run by the AI
};
struct gap_row {  // a change to one call_gaps row, for a writer that mirrors them one by one
  enum class change { opened, closed, lost } what = change::opened;
  std::string call_id;
  seq_range range;         // `closed` and `lost` name the row by range.first
  double opened_at = 0;    // `opened`: when the gap opened (a split gap keeps its original time)
};
struct job_row {  // an AI job over one segment, queued now
  std::string call_id;
  seq_range range;
};
struct transition_row {  // a call_transitions row
  std::string call_id;
  std::optional<call_state> from;  // empty: the call was created
  call_state to = call_state::in_progress;
  std::string reason;
  double at = 0;
};
struct event_row {                    // a call_events row; the database numbers it
  const call_event* event = nullptr;  // the operation's own event: valid while its operation is
};
struct log_row {  // an events row of the store-wide log (storage/event_log.hpp); the writer numbers it
  event_kind kind = event_kind::call_created;
  std::string call_id;
  std::optional<std::int64_t> job_id;
  double at = 0;
  std::string data;  // a JSON object
};
struct ledger_rows {
  std::vector<packet_row> packets;
  std::vector<gap_row> gaps;
  std::vector<job_row> jobs;
  std::vector<transition_row> transitions;
  std::vector<event_row> events;
  std::vector<log_row> log;  // in the order things happened, the job ledger's included
  bool empty() const {
    return packets.empty() && gaps.empty() && jobs.empty() && transitions.empty() && events.empty() &&
           log.empty();
  }
  void clear();
};

class call_ledger {
 public:
  explicit call_ledger(ledger_options options) : options_(std::move(options)) {}

  const ledger_options& options() const { return options_; }

  // Starts a batch (or its retry): no rows, nothing to log, no dirty records.
  void begin();

  // The record of a call that does not exist yet.
  call_record fresh(std::string id, double now) const;
  // Rebuilds a call's sequencer from its stored state (see call_sequencer).
  call_sequencer sequencer(std::int64_t highest, const std::vector<open_gap>& open, const std::vector<seq_range>& lost,
                           std::int64_t next_segment) const;
  // The writer created the call `id` for `reason` ("first packet", "media declared"): its first transition.
  void created(const std::string& id, std::string_view reason, double now);

  // Whether `p` was checked against the declaration `rec` holds (no record: the call has none). A packet
  // checked against a declaration made or changed since must be refused with `media_changed`.
  static bool media_matches(const call_record* rec, const packet& p);
  // Records packet `p` of the call (its media already matched). `stored` is what its sequence held before
  // (stored earlier, or earlier in this batch), if anything. A new packet yields a packet row; the same
  // packet again is a duplicate (its idempotent answer, even after the call ended); different data at a
  // stored sequence is `sequence_conflict`; a new packet of an ended call is `call_ended`. `call_created`
  // is left to the writer.
  result<ingest_outcome> ingest(call_record& rec, const packet& p, std::optional<std::string_view> stored, double now);
  // Cuts [range.first, range.last] of a call cut from outside into one job (none when every sequence of it
  // was lost). `false`, changing nothing, when the cut is stale: range.first is not the call's first uncut
  // sequence (a cut made since by another segmenter), or the call has settled. `invalid_input` when the
  // call is cut by packets, or the range is empty or reaches its lowest sequence not received. An ended
  // call settles once its last packet is cut.
  result<bool> cut(call_record& rec, seq_range range, double now);
  // Ends an IN_PROGRESS call: the rest of its packets are cut (later, by `cut`, for a call cut from
  // outside), its open gaps lost, and it settles.
  result<call_state> end(call_record& rec, const std::string& reason, double now);
  // Puts a COMPLETED or FAILED call away.
  result<call_state> archive(call_record& rec, double now);
  // Declares the call's media (a repeat of the same declaration is `repeated`), and records its track when
  // `track` names one and the call has none yet (a call keeps the track it has; another link is ignored).
  // A failed declaration records no track. `created` is left to the writer.
  result<declare_outcome> declare(call_record& rec, const media_declaration& media,
                                  const std::optional<track_link>& track = std::nullopt);
  // Whether `track` may be recorded on call `call_id` (see track_link). Checked before a declaration is
  // queued, so that a refused one changes nothing.
  static bool valid_track(std::string_view call_id, const track_link& track);
  // Whether `e` can be stored: a kind, and kind and data UTF-8 without NUL bytes (what every backend's text
  // columns hold). Checked before an event is queued.
  static bool valid_event(const call_event& e);
  // Records event `e` of the call `rec` holds (null: no such call, `not_found`), whatever the call's state.
  // Fills in `e.at` with `now` when it is 0, and yields an event row that refers to `e`.
  result<void> record_event(const call_record* rec, call_event& e, double now);
  // A job of the call changed state: its counters, and an ended call settles.
  void job_changed(call_record& rec, job_state from, job_state to, double now);

  // The sweep, for a call its queries picked (each checks the record again: it may have changed since).
  // Declares lost the gaps whose time window has passed.
  void expire_gaps(call_record& rec, double now);
  // Ends a call that has had no packet for `idle_timeout` seconds.
  void end_if_timed_out(call_record& rec, double now);
  // Cuts the packets of a call that has had none for `segment_idle` seconds.
  void cut_if_idle(call_record& rec, double now);

  // Appends an event of the store-wide log (the job ledger tells its own here, so that one list holds the
  // batch's events in the order they happened).
  void log(event_kind kind, const std::string& call_id, std::optional<std::int64_t> job_id, double at,
           std::string data);

  ledger_rows& rows() { return rows_; }
  // The records changed in this batch, in the order of their first change.
  const std::vector<call_record*>& dirty() const { return dirty_; }
  // Logs what the batch did (calls created, media declared, state changes, sequence warnings). Call once
  // the batch committed, and only then.
  void log_committed() const;

 private:
  void mark_dirty(call_record& rec);
  ingest_outcome duplicate(call_record& rec);
  // The call's sequencer, told whether the call is cut from outside.
  call_sequencer& sequencer_of(call_record& rec) const;
  bool cut_outside(const call_record& rec) const;
  // Records what the call's sequencer decided: ranges lost, segments to queue as jobs.
  void apply_changes(call_record& rec, const sequencer_changes& changes, double now);
  // The log events of one packet's arrival: a gap opened or filled, a packet after a lost gap.
  void log_arrival(const call_record& rec, std::int64_t sequence, const observation& obs, double now);
  void transition(call_record& rec, call_state to, const std::string& reason, double now);
  void settle(call_record& rec, const std::string& reason, double now);

  ledger_options options_;
  ledger_rows rows_;
  std::vector<call_record*> dirty_;
  struct warning {
    const char* msg;
    std::string call_id;
    std::int64_t sequence;
    std::int64_t expected;
    std::optional<seq_range> range;
  };
  std::vector<warning> warnings_;
  struct state_change {
    std::string call_id, from, to, reason;
  };
  std::vector<state_change> state_changes_;
  std::vector<std::string> created_;
  std::vector<std::pair<std::string, media_declaration>> declared_;
  std::vector<std::pair<std::string, track_link>> linked_;
};

}  // namespace aipbx
