#include "domain/job.hpp"

#include <array>
#include <utility>

namespace aipbx {
namespace {
constexpr std::array<std::pair<job_state, std::string_view>, 4> names{{
    {job_state::queued, "queued"},
    {job_state::running, "running"},
    {job_state::succeeded, "succeeded"},
    {job_state::dead, "dead"},
}};
}  // namespace

std::string_view to_string(job_state s) {
  for (const auto& [state, name] : names)
    if (state == s) return name;
  return "unknown";
}

std::optional<job_state> parse_job_state(std::string_view text) {
  for (const auto& [state, name] : names)
    if (name == text) return state;
  return std::nullopt;
}

void job_tally::add(job_state state, int attempts, std::int64_t n) {
  switch (state) {
    case job_state::queued:
      queued += n;
      if (attempts > 0) retrying += n;
      break;
    case job_state::running: running += n; break;
    case job_state::succeeded: succeeded += n; break;
    case job_state::dead: dead += n; break;
  }
}

}  // namespace aipbx
