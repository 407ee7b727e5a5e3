// call_sequencer: turns one call's packets, arriving in any order, into AI segments in sequence order.
//
// It keeps the call's sequence_tracker (open gaps), the ranges declared lost, and `next_segment`, the
// first sequence not yet cut into a segment. Invariant: every sequence below `next_segment` is either
// received or lost, so segments cover each received packet exactly once, in order.
//
// Segments are cut only from contiguous packets: whole segments of `segment_packets` sequences below the
// lowest open gap. With external cuts (set per call: the pause segmenter decides where a call with audio
// is cut), the sequencer cuts nothing itself: `cut` takes one segment from `next_segment` through any
// sequence below the lowest open gap, and `flush` only declares the open gaps lost. A gap is held open while it may still be filled: the reorder window. It is declared
// lost when the highest sequence is `window.packets` past its end, or `window.seconds` have passed since it
// opened (whichever comes first; 0 disables that bound). `flush` (a call ended or went idle) declares
// every open gap lost and cuts everything up to the highest sequence. A packet that arrives after its
// gap was declared lost is reported `late_after_lost`: the caller stores it but runs no AI on it again.
//
// Pure logic with an injected clock (`now` arguments); not thread-safe (one owner, the store's writer).
#pragma once

#include "domain/sequence_tracker.hpp"

#include <cstdint>
#include <map>
#include <optional>
#include <vector>

namespace aipbx {

struct reorder_window {
  std::int64_t packets = 0;  // 0: no bound in packets
  double seconds = 0;        // 0: no bound in time
  bool enabled() const { return packets > 0 || seconds > 0; }
};

struct sequencer_options {
  std::int64_t segment_packets = 1;
  reorder_window window;
};

struct open_gap {
  seq_range range;
  double opened_at = 0;
};

// What a call of the sequencer decided, for the store to persist.
struct sequencer_changes {
  std::vector<seq_range> segments;  // new segments, ascending
  std::vector<seq_range> lost;      // ranges declared lost now, ascending
  bool empty() const { return segments.empty() && lost.empty(); }
};

class call_sequencer {
 public:
  explicit call_sequencer(sequencer_options options = {});
  // Rebuilds from stored state: highest sequence, open gaps with their opening time, lost ranges, and
  // the first sequence not yet segmented.
  call_sequencer(sequencer_options options, std::int64_t highest, const std::vector<open_gap>& open,
                 const std::vector<seq_range>& lost, std::int64_t next_segment);

  // Records a newly stored packet. `kind` is late_after_lost for a packet of a lost range.
  struct arrival_result {
    observation obs;           // the tracker's view (gaps opened or filled)
    bool late_after_lost = false;
  };
  arrival_result observe(std::int64_t sequence, double now, sequencer_changes& out);
  // Declares lost the gaps whose time window has passed, and cuts what that frees.
  void tick(double now, sequencer_changes& out);
  // The stream stopped (ended or idle): every open gap is lost, everything up to the highest is cut (with
  // external cuts, left for `cut`).
  void flush(sequencer_changes& out);
  // Whether segments are cut from outside (`cut`) rather than every `segment_packets` (not until told).
  void set_external_cuts(bool external) { external_cuts_ = external; }
  bool external_cuts() const { return external_cuts_.value_or(false); }
  bool cuts_decided() const { return external_cuts_.has_value(); }
  // Cuts [next_segment, last] as one segment (none if all of it was lost). False, changing nothing, unless
  // next_segment <= last < the lowest sequence not received.
  bool cut(std::int64_t last, sequencer_changes& out);

  const sequence_tracker& tracker() const { return tracker_; }
  std::int64_t next_segment() const { return next_segment_; }
  std::int64_t lost_packets() const { return lost_count_; }
  std::size_t lost_ranges() const { return lost_.size(); }
  std::vector<seq_range> lost() const;
  bool is_lost(std::int64_t sequence) const;
  // When the open gap starting at `first` opened (a split gap keeps its original time).
  std::optional<double> gap_opened_at(std::int64_t first) const;
  // When the oldest open gap opened, if any (for the store's time-window sweep).
  std::optional<double> oldest_gap_opened_at() const;
  // Sequences received but not yet cut into a segment (waiting behind a gap or a partial segment).
  bool has_uncut() const { return next_segment_ <= tracker_.highest(); }

 private:
  void declare_lost(seq_range r, sequencer_changes& out);
  void apply_packet_window(sequencer_changes& out);
  void cut_ready(sequencer_changes& out);
  void cut_through(std::int64_t last, sequencer_changes& out);
  void cut_one(std::int64_t last, sequencer_changes& out);

  sequencer_options options_;
  sequence_tracker tracker_;
  std::map<std::int64_t, double> opened_at_;         // open gap first -> when its gap opened
  std::map<std::int64_t, std::int64_t> lost_;        // first -> last
  std::int64_t lost_count_ = 0;
  std::int64_t next_segment_ = sequence_tracker::first_sequence;
  std::optional<bool> external_cuts_;
};

}  // namespace aipbx
