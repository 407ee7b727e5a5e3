#include "domain/call_state.hpp"

#include <array>
#include <utility>

namespace aipbx {
namespace {
constexpr std::array<std::pair<call_state, std::string_view>, 5> names{{
    {call_state::in_progress, "IN_PROGRESS"},
    {call_state::processing_ai, "PROCESSING_AI"},
    {call_state::completed, "COMPLETED"},
    {call_state::failed, "FAILED"},
    {call_state::archived, "ARCHIVED"},
}};
}  // namespace

std::string_view to_string(call_state s) {
  for (const auto& [state, name] : names)
    if (state == s) return name;
  return "UNKNOWN";
}

std::optional<call_state> parse_call_state(std::string_view text) {
  for (const auto& [state, name] : names)
    if (name == text) return state;
  return std::nullopt;
}

bool can_transition(call_state from, call_state to) {
  using enum call_state;
  switch (from) {
    case in_progress: return to == processing_ai;
    case processing_ai: return to == completed || to == failed;
    case failed: return to == processing_ai || to == archived;
    case completed: return to == archived;
    case archived: return false;
  }
  return false;
}

call_state settled_state(std::int64_t outstanding_jobs, std::int64_t dead_jobs) {
  if (dead_jobs > 0) return call_state::failed;
  if (outstanding_jobs > 0) return call_state::processing_ai;
  return call_state::completed;
}

bool has_ended(call_state s) { return s != call_state::in_progress; }

}  // namespace aipbx
