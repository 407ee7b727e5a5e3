#include "domain/sequence_tracker.hpp"

namespace aipbx {

std::string_view to_string(arrival a) {
  switch (a) {
    case arrival::in_order: return "in_order";
    case arrival::gap: return "gap";
    case arrival::late: return "late";
    case arrival::before_start: return "before_start";
    case arrival::duplicate: return "duplicate";
    case arrival::after_lost: return "late_after_lost";
  }
  return "unknown";
}

std::vector<seq_range> to_ranges(const std::vector<std::int64_t>& ascending) {
  std::vector<seq_range> out;
  for (const auto s : ascending) {
    if (!out.empty() && out.back().last + 1 == s) out.back().last = s;
    else out.push_back({s, s});
  }
  return out;
}

sequence_tracker::sequence_tracker(std::int64_t highest, const std::vector<seq_range>& missing)
    : highest_(highest) {
  for (const auto& r : missing) {
    missing_.emplace(r.first, r.last);
    missing_count_ += r.size();
  }
}

std::int64_t sequence_tracker::expected() const {
  return missing_.empty() ? highest_ + 1 : missing_.begin()->first;
}

bool sequence_tracker::is_missing(std::int64_t sequence) const {
  auto it = missing_.upper_bound(sequence);
  if (it == missing_.begin()) return false;
  --it;
  return sequence <= it->second;
}

void sequence_tracker::forget(const seq_range& r) {
  if (auto it = missing_.find(r.first); it != missing_.end()) {
    missing_count_ -= it->second - it->first + 1;
    missing_.erase(it);
  }
}

std::vector<seq_range> sequence_tracker::missing() const {
  std::vector<seq_range> out;
  out.reserve(missing_.size());
  for (const auto& [first, last] : missing_) out.push_back({first, last});
  return out;
}

observation sequence_tracker::observe(std::int64_t sequence) {
  observation obs;
  obs.expected = expected();

  if (sequence < first_sequence) {
    obs.kind = arrival::before_start;
    return obs;
  }
  if (sequence > highest_) {
    if (sequence == highest_ + 1) {
      obs.kind = arrival::in_order;
    } else {
      obs.kind = arrival::gap;
      seq_range opened{highest_ + 1, sequence - 1};
      missing_.emplace(opened.first, opened.last);
      missing_count_ += opened.size();
      obs.added.push_back(opened);
    }
    highest_ = sequence;
    return obs;
  }

  auto it = missing_.upper_bound(sequence);
  if (it == missing_.begin() || std::prev(it)->second < sequence) {
    obs.kind = arrival::duplicate;
    return obs;
  }
  --it;
  seq_range was{it->first, it->second};
  missing_.erase(it);
  --missing_count_;
  obs.kind = arrival::late;
  obs.removed = was;
  if (was.first < sequence) {
    missing_.emplace(was.first, sequence - 1);
    obs.added.push_back({was.first, sequence - 1});
  }
  if (sequence < was.last) {
    missing_.emplace(sequence + 1, was.last);
    obs.added.push_back({sequence + 1, was.last});
  }
  return obs;
}

}  // namespace aipbx
