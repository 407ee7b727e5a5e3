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

// The largest sequence aipbx accepts: the largest integer a JSON number holds exactly in every client.
inline constexpr std::int64_t max_sequence = (std::int64_t{1} << 53) - 1;

// One packet of call audio as posted to `POST /v1/call/stream/{call_id}`, validated.
struct packet {
  std::string call_id;
  std::int64_t sequence = 0;
  std::string data;
  double timestamp = 0;
};

}  // namespace aipbx
