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

}  // namespace aipbx
