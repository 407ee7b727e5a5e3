#include "domain/call_sequencer.hpp"

#include <algorithm>

namespace aipbx {

call_sequencer::call_sequencer(sequencer_options options) : options_(options) {}

call_sequencer::call_sequencer(sequencer_options options, std::int64_t highest, const std::vector<open_gap>& open,
                               const std::vector<seq_range>& lost, std::int64_t next_segment)
    : options_(options), next_segment_(next_segment) {
  std::vector<seq_range> missing;
  for (const auto& g : open) {
    missing.push_back(g.range);
    opened_at_[g.range.first] = g.opened_at;
  }
  tracker_ = sequence_tracker(highest, missing);
  for (const auto& r : lost) {
    lost_.emplace(r.first, r.last);
    lost_count_ += r.size();
  }
}

bool call_sequencer::is_lost(std::int64_t sequence) const {
  auto it = lost_.upper_bound(sequence);
  if (it == lost_.begin()) return false;
  --it;
  return sequence <= it->second;
}

std::vector<seq_range> call_sequencer::lost() const {
  std::vector<seq_range> out;
  for (const auto& [first, last] : lost_) out.push_back({first, last});
  return out;
}

std::optional<double> call_sequencer::gap_opened_at(std::int64_t first) const {
  if (auto it = opened_at_.find(first); it != opened_at_.end()) return it->second;
  return std::nullopt;
}

std::optional<double> call_sequencer::oldest_gap_opened_at() const {
  if (opened_at_.empty()) return std::nullopt;
  return opened_at_.begin()->second;
}

call_sequencer::arrival_result call_sequencer::observe(std::int64_t sequence, double now, sequencer_changes& out) {
  arrival_result r;
  if (is_lost(sequence)) {
    // Its gap was given up: the packet is kept but the AI has moved past it.
    r.late_after_lost = true;
    r.obs.kind = arrival::after_lost;
    r.obs.expected = tracker_.expected();
    return r;
  }
  r.obs = tracker_.observe(sequence);
  if (r.obs.removed) {
    const double opened = opened_at_.at(r.obs.removed->first);
    opened_at_.erase(r.obs.removed->first);
    for (const auto& added : r.obs.added) opened_at_[added.first] = opened;
  } else {
    for (const auto& added : r.obs.added) opened_at_[added.first] = now;
  }
  apply_packet_window(out);
  cut_ready(out);
  return r;
}

void call_sequencer::tick(double now, sequencer_changes& out) {
  if (options_.window.seconds <= 0) return;
  // Gaps open in sequence order, so the oldest is the lowest: stop at the first still inside the window.
  while (!opened_at_.empty() && now - opened_at_.begin()->second >= options_.window.seconds) {
    const auto first = opened_at_.begin()->first;
    const auto missing = tracker_.missing();
    const auto it = std::find_if(missing.begin(), missing.end(), [&](const seq_range& m) { return m.first == first; });
    declare_lost(*it, out);
  }
  cut_ready(out);
}

void call_sequencer::flush(sequencer_changes& out) {
  for (const auto& gap : tracker_.missing()) declare_lost(gap, out);
  if (!external_cuts()) cut_through(tracker_.highest(), out);
}

bool call_sequencer::cut(std::int64_t last, sequencer_changes& out) {
  if (last < next_segment_ || last >= tracker_.expected()) return false;
  cut_one(last, out);
  return true;
}

void call_sequencer::apply_packet_window(sequencer_changes& out) {
  if (options_.window.packets <= 0) return;
  for (const auto& gap : tracker_.missing()) {
    if (tracker_.highest() - gap.last < options_.window.packets) break;
    declare_lost(gap, out);
  }
}

void call_sequencer::declare_lost(seq_range r, sequencer_changes& out) {
  tracker_.forget(r);
  opened_at_.erase(r.first);
  lost_.emplace(r.first, r.last);
  lost_count_ += r.size();
  out.lost.push_back(r);
}

void call_sequencer::cut_ready(sequencer_changes& out) {
  if (external_cuts()) return;
  // [next_segment, expected) has no open gap: cut its whole segments.
  const std::int64_t n = options_.segment_packets;
  const std::int64_t expected = tracker_.expected();
  if (expected - next_segment_ >= n) cut_through(next_segment_ + (expected - next_segment_) / n * n - 1, out);
}

void call_sequencer::cut_through(std::int64_t last, sequencer_changes& out) {
  const std::int64_t n = options_.segment_packets;
  while (next_segment_ <= last) cut_one(std::min(last, next_segment_ + n - 1), out);
}

void call_sequencer::cut_one(std::int64_t last, sequencer_changes& out) {
  // A segment made only of lost sequences has nothing to transcribe.
  auto it = lost_.upper_bound(next_segment_);
  const bool all_lost = it != lost_.begin() && std::prev(it)->second >= last && std::prev(it)->first <= next_segment_;
  if (!all_lost) out.segments.push_back({next_segment_, last});
  next_segment_ = last + 1;
}

}  // namespace aipbx
