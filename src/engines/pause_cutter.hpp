// pause_cutter: cuts calls with audio into AI segments at pauses (`--segmenter vad`), beside the store, off
// the ingest path: ingest only stores packets, and this thread listens to what is stored.
//
// Every `poll` it lists the calls whose packets wait uncut (job_store::uncut_calls), reads each one's new
// contiguous packets from the store in sequence order (a lost sequence is silence of one packet's
// duration, as the engines hear it), decodes them, runs them through a WebRTC voice detector
// (media/voice_detector.hpp) and the pause rules (domain/pause_segmenter.hpp), and queues each cut with
// job_store::cut_segment, which writes the segment's job durably. The detector and the rules start afresh
// at every segment's first sequence, so where a call is cut is a function of its audio and the options
// alone: not of the packets' arrival order or timing, of how many arrived between two polls, of this
// node's earlier work, or of a restart (which resumes from the call's first uncut sequence, stored with
// every cut). Two exceptions, both about when audio stops rather than what it holds: a call that ended,
// or that has had no packet for `segment_idle` seconds (and no open gap), has its rest cut as one last
// segment, however short. Two nodes (PostgreSQL) that cut the same call decide the same cuts; the store
// takes the first and answers the other stale.
//
// Between polls it keeps, per call, the detector and rules part-way through the current segment, so each
// packet is decoded and heard once; after a cut it reads the packets past the cut again (the next segment
// hears them from its own start). A call it has never seen, or whose first uncut sequence moved under it
// (another node cut it, a cut failed), starts over from the store's state.
//
// A call that declares no audio format (and no --media default) is cut by packets as before, and skipped
// here. Failures are logged and counted, never thrown: a store that cannot answer ends the pass (the next
// poll tries again); a packet that does not decode (ingest checks them, so only a hand-edited database
// holds one) is heard as silence. Thread-safe: start and stop from one thread; stats from any.
#pragma once

#include "domain/pause_segmenter.hpp"
#include "media/media_format.hpp"
#include "storage/job_store.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace aipbx::engines {

struct pause_cutter_options {
  pause_rules rules;
  int aggressiveness = 2;       // the voice detector's, 0..3 (media::voice_detector)
  double segment_idle = 2.0;    // seconds without a packet before a call's rest is cut
  std::chrono::milliseconds poll{100};
  std::size_t page = 1000;      // calls per read of the uncut list
  std::int64_t read_packets = 3000;  // packets per read of one call
  media::media_format default_media = media::media_format::none();  // of a call that declares none
  std::function<double()> clock;     // unix seconds
};

struct pause_cutter_stats {
  std::uint64_t passes = 0;
  std::uint64_t cuts = 0;          // segments cut (their jobs durable)
  std::uint64_t stale_cuts = 0;    // answered stale: another cut came first
  std::uint64_t failed_cuts = 0;   // the store refused or failed
  std::uint64_t packets = 0;       // packets heard (again after a cut included)
  std::uint64_t failures = 0;      // passes or calls that ended by an error
  std::size_t calls = 0;           // calls part-way through a segment
};

class pause_cutter {
 public:
  // Whether a call with this declaration (empty: none) is cut here, when calls that declare none are in
  // `default_media`: when its format carries audio. The store's `cut_outside` must answer the same.
  static bool cuts(const std::optional<media_declaration>& declared, media::media_format default_media);

  // Throws std::invalid_argument when the rules are not valid.
  pause_cutter(job_store& store, pause_cutter_options options);
  ~pause_cutter();  // stops

  // Runs passes on a thread of its own, every `poll`.
  void start();
  // Ends the pass in progress (its cuts answered) and the thread. Idempotent.
  void stop();
  // One pass over every call waiting for cuts, on the calling thread; returns once its cuts are answered.
  // What the thread runs; for tests and tools that drive it by hand (not beside a started thread).
  void run_once();

  pause_cutter_stats stats() const;

 private:
  struct call_cut;
  struct pending_cuts;

  void loop();
  void cut_call(const uncut_call& call, double now, const std::shared_ptr<pending_cuts>& pending);
  media::media_format format_of(const std::optional<media_declaration>& declared) const;
  call_cut& state_for(const uncut_call& call, media::media_format format);
  // Hears the call's packets after the last one heard, through `through`, up to a cut if one comes (the
  // state then starts after the cut).
  void hear(const uncut_call& call, call_cut& s, std::int64_t through, const std::shared_ptr<pending_cuts>& pending);
  void queue_cut(const std::string& call_id, seq_range range, const std::shared_ptr<pending_cuts>& pending);
  // Drops the state of calls no longer waiting for cuts.
  void forget_unseen(std::vector<std::string> seen);

  job_store& store_;
  pause_cutter_options options_;
  std::map<std::string, std::unique_ptr<call_cut>, std::less<>> calls_;  // the pass's thread only

  std::mutex mutex_;
  std::condition_variable wake_;
  bool stopping_ = false;
  std::thread thread_;

  std::atomic<std::uint64_t> passes_{0}, cuts_{0}, stale_cuts_{0}, failed_cuts_{0}, packets_{0}, failures_{0};
  std::atomic<std::size_t> tracked_{0};
};

}  // namespace aipbx::engines
