// Per-call sequence bookkeeping: the highest sequence received, the next one expected, and the set of
// missing ranges between 1 and the highest.
//
// Sequences start at 1, as the seed's `last_sequence` starts at 0. A packet above the highest opens a gap
// (when it skips numbers); a packet inside a missing range fills it, splitting or shrinking the range; a
// packet at or below the highest that is not missing has been seen before. Sequence 0 lies before the
// start: it is reported as such and changes nothing.
//
// Pure logic, no I/O. Not thread-safe: one owner mutates it (the store's writer).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string_view>
#include <vector>

namespace aipbx {

// An inclusive range of sequence numbers.
struct seq_range {
  std::int64_t first = 0;
  std::int64_t last = 0;

  std::int64_t size() const { return last - first + 1; }
  friend bool operator==(const seq_range&, const seq_range&) = default;
};

enum class arrival {
  in_order,      // exactly the next expected above the highest
  gap,           // above the highest, skipping numbers: a missing range opened
  late,          // inside a missing range: the range shrank or split
  before_start,  // below the first sequence (0): stored, tracked nowhere
  duplicate,     // seen before
  after_lost,    // inside a range already declared lost (see call_sequencer): stored, not run again
};

std::string_view to_string(arrival a);

// Ascending distinct sequences as the fewest inclusive ranges that hold exactly them.
std::vector<seq_range> to_ranges(const std::vector<std::int64_t>& ascending);

// What one packet did to the tracker; `removed` and `added` describe the change to the missing set so a
// store can mirror it without rewriting the whole set.
struct observation {
  arrival kind = arrival::in_order;
  std::int64_t expected = 1;              // the next expected sequence before this packet
  std::optional<seq_range> removed;       // a missing range that no longer exists as it was
  std::vector<seq_range> added;           // missing ranges that now exist (0, 1 or 2)
};

class sequence_tracker {
 public:
  static constexpr std::int64_t first_sequence = 1;

  sequence_tracker() = default;
  // Rebuilds a tracker from stored state. Ranges must be disjoint and lie within [1, highest].
  sequence_tracker(std::int64_t highest, const std::vector<seq_range>& missing);

  // Classifies `sequence` and records it.
  observation observe(std::int64_t sequence);

  // The highest sequence received so far, 0 when none.
  std::int64_t highest() const { return highest_; }
  // The lowest sequence not received yet: the start of the first missing range, or highest + 1.
  std::int64_t expected() const;
  // How many sequences are missing in total, and in how many ranges.
  std::int64_t missing_count() const { return missing_count_; }
  std::size_t missing_ranges() const { return missing_.size(); }
  bool is_missing(std::int64_t sequence) const;
  std::vector<seq_range> missing() const;
  // Stops tracking the missing range starting at `r.first` (it was declared lost): the range must be one
  // of missing(). Its sequences then count as seen.
  void forget(const seq_range& r);

 private:
  std::int64_t highest_ = 0;
  std::int64_t missing_count_ = 0;
  std::map<std::int64_t, std::int64_t> missing_;  // first -> last, disjoint
};

}  // namespace aipbx
