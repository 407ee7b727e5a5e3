// The lifecycle states of a call, with the seed's names, and the packet as aipbx receives it.
// Pure values, thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace aipbx {

enum class call_state { in_progress, processing_ai, completed, failed, archived };

std::string_view to_string(call_state s);
std::optional<call_state> parse_call_state(std::string_view text);

// The lifecycle, as the seed names it:
//   IN_PROGRESS -> PROCESSING_AI            the call ended (explicitly or idle): AI work may be outstanding
//   PROCESSING_AI -> COMPLETED | FAILED     every job succeeded | a job is dead
//   FAILED -> PROCESSING_AI                 a dead job was replayed (and no other is dead)
//   COMPLETED | FAILED -> ARCHIVED          put away on request
// No other change is allowed: no skipping (an ended call passes through PROCESSING_AI, even for an
// instant) and no going back except by replay.
bool can_transition(call_state from, call_state to);
// Where an ended call belongs given its jobs: FAILED if one is dead, PROCESSING_AI while any is
// outstanding, COMPLETED otherwise.
call_state settled_state(std::int64_t outstanding_jobs, std::int64_t dead_jobs);
bool has_ended(call_state s);

// The largest sequence aipbx accepts: the largest integer a JSON number holds exactly in every client.
inline constexpr std::int64_t max_sequence = (std::int64_t{1} << 53) - 1;

// One packet of call audio as posted to `POST /v1/call/stream/{call_id}`, validated.
struct packet {
  std::string call_id;
  std::int64_t sequence = 0;
  std::string data;
  double timestamp = 0;
  // The media format `data` was checked against: the call's declared format (its text form), or empty
  // when the call had no declaration (the node's default format applied). The store refuses the packet
  // with `media_changed` when the call's declaration is not this one any more.
  std::optional<std::string> media;
  // Sent by a stream, whose sender goes on without waiting for the answer: the store may hold it for
  // its commit delay to commit it with others (a request's packet is committed as soon as the writer can).
  bool streamed = false;
};

}  // namespace aipbx
