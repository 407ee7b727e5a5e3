#include "engines/pause_cutter.hpp"

#include "log/log.hpp"
#include "media/audio_codec.hpp"
#include "media/voice_detector.hpp"

#include <algorithm>
#include <stdexcept>

namespace aipbx::engines {

// One call part-way through a segment: what its detector and rules have heard since the segment's start.
struct pause_cutter::call_cut {
  call_cut(const pause_rules& rules, int aggressiveness, media::media_format f, std::int64_t ms, std::int64_t first)
      : format(f), packet_ms(ms), detector(f.rate, aggressiveness), segmenter(rules, first), start(first),
        heard(first - 1) {}

  // The next segment starts at `first`: everything heard is forgotten.
  void restart(const pause_rules& rules, std::int64_t first) {
    detector.reset();
    segmenter = pause_segmenter(rules, first);
    start = first;
    heard = first - 1;
  }

  media::media_format format;
  std::int64_t packet_ms;
  media::voice_detector detector;
  pause_segmenter segmenter;
  std::int64_t start;  // the segment's first sequence
  std::int64_t heard;  // the last sequence heard
};

// The cuts a pass queued, until the store answered them all.
struct pause_cutter::pending_cuts {
  std::mutex mutex;
  std::condition_variable answered;
  std::size_t outstanding = 0;
  std::vector<std::string> refused;  // calls whose cut did not take: they start over from the store

  void wait() {
    std::unique_lock lock(mutex);
    answered.wait(lock, [this] { return outstanding == 0; });
  }
};

namespace {

// A call's format: its declaration's (one the media layer cannot read, which only a hand-edited database
// holds, is none), or the node's default.
media::media_format effective_format(const std::optional<media_declaration>& declared, media::media_format fallback) {
  if (!declared) return fallback;
  return media::parse_media_format(declared->format).value_or(media::media_format::none());
}

}  // namespace

bool pause_cutter::cuts(const std::optional<media_declaration>& declared, media::media_format default_media) {
  return effective_format(declared, default_media).carries_audio();
}

media::media_format pause_cutter::format_of(const std::optional<media_declaration>& declared) const {
  return effective_format(declared, options_.default_media);
}

pause_cutter::pause_cutter(job_store& store, pause_cutter_options options)
    : store_(store), options_(std::move(options)) {
  if (!options_.rules.valid())
    throw std::invalid_argument("pause rules: the silence must be positive, the maximum past the minimum, each in "
                                "whole 10 ms");
  if (!options_.clock) options_.clock = [] {
      return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
    };
}

pause_cutter::~pause_cutter() { stop(); }

void pause_cutter::start() {
  thread_ = std::thread([this] {
    log::name_thread("aipbx-cutter");
    loop();
  });
}

void pause_cutter::stop() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  wake_.notify_all();
  if (thread_.joinable()) thread_.join();
}

void pause_cutter::loop() {
  for (;;) {
    try {
      run_once();
    } catch (const std::exception& e) {
      ++failures_;
      log::error("segmenter pass failed", {{"error", e.what()}});
    }
    std::unique_lock lock(mutex_);
    if (wake_.wait_for(lock, options_.poll, [this] { return stopping_; })) return;
  }
}

void pause_cutter::run_once() {
  ++passes_;
  const auto pending = std::make_shared<pending_cuts>();
  const double now = options_.clock();
  std::vector<std::string> seen;
  bool listed = true;
  for (std::string after;;) {
    auto page = store_.uncut_calls(after, options_.page);
    if (!page) {
      ++failures_;
      listed = false;
      log::warn("segmenter cannot list the calls to cut", {{"error", page.error().message()}});
      break;
    }
    for (const auto& call : *page) {
      seen.push_back(call.id);
      try {
        cut_call(call, now, pending);
      } catch (const std::exception& e) {
        ++failures_;
        calls_.erase(call.id);
        log::error("segmenter could not cut a call", {{"call_id", call.id}, {"error", e.what()}});
      }
    }
    if (page->size() < options_.page) break;
    after = page->back().id;
  }
  pending->wait();
  for (const auto& id : pending->refused) calls_.erase(id);
  if (listed) forget_unseen(seen);
  tracked_ = calls_.size();
}

void pause_cutter::cut_call(const uncut_call& call, double now, const std::shared_ptr<pending_cuts>& pending) {
  const media::media_format format = format_of(call.media);
  if (!format.carries_audio()) {
    calls_.erase(call.id);  // cut by packets in the store
    return;
  }
  call_cut& s = state_for(call, format);
  const std::int64_t ready = call.expected - 1;  // below the call's lowest sequence not received
  while (s.heard < ready) hear(call, s, std::min(ready, s.heard + options_.read_packets), pending);

  // Audio that stopped: the call ended, or has had no packet for segment_idle and waits for none.
  const bool idle = call.last_packet_at && *call.last_packet_at <= now - options_.segment_idle &&
                    call.expected > call.last_sequence;
  if ((call.state != aipbx::call_state::in_progress || idle) && s.start <= ready) {
    queue_cut(call.id, {s.start, ready}, pending);
    calls_.erase(call.id);
  }
}

pause_cutter::call_cut& pause_cutter::state_for(const uncut_call& call, media::media_format format) {
  const std::int64_t packet_ms = call.media ? call.media->packet_ms : media::default_packet_ms;
  auto it = calls_.find(call.id);
  const bool current = it != calls_.end() && it->second->start == call.next_segment &&
                       it->second->format == format && it->second->packet_ms == packet_ms;
  if (current) return *it->second;
  auto fresh =
      std::make_unique<call_cut>(options_.rules, options_.aggressiveness, format, packet_ms, call.next_segment);
  auto& slot = calls_[call.id];
  slot = std::move(fresh);
  return *slot;
}

void pause_cutter::hear(const uncut_call& call, call_cut& s, std::int64_t through,
                        const std::shared_ptr<pending_cuts>& pending) {
  auto packets = store_.segment_packets(call.id, s.heard + 1, through);
  if (!packets) throw std::runtime_error("cannot read the call's packets: " + packets.error().message());
  // A lost sequence is silence of one packet's duration, as the engines hear it (engines/segment_audio.hpp).
  const std::vector<std::int16_t> silence(static_cast<std::size_t>(s.packet_ms * s.format.rate / 1000), 0);
  std::vector<bool> voiced;
  auto next = packets->begin();
  for (std::int64_t q = s.heard + 1; q <= through; ++q) {
    std::vector<std::int16_t> decoded;
    if (next != packets->end() && next->sequence == q) {
      if (auto samples = media::decode_audio(s.format, next->data)) decoded = std::move(*samples);
      else decoded = silence;
      ++next;
    } else {
      decoded = silence;
    }
    voiced.clear();
    s.detector.process(decoded, voiced);
    ++packets_;
    s.heard = q;
    if (auto last = s.segmenter.add(voiced)) {
      queue_cut(call.id, {s.start, *last}, pending);
      s.restart(options_.rules, *last + 1);  // the packets past the cut are read again for the next segment
      return;
    }
  }
}

void pause_cutter::queue_cut(const std::string& call_id, seq_range range,
                             const std::shared_ptr<pending_cuts>& pending) {
  {
    std::lock_guard lock(pending->mutex);
    ++pending->outstanding;
  }
  log::debug("segment cut", {{"call_id", call_id}, {"first", range.first}, {"last", range.last}});
  store_.cut_segment(call_id, range, [this, pending, call_id, range](result<bool> r) {
    if (r && *r) ++cuts_;
    else if (r) ++stale_cuts_;
    else ++failed_cuts_;
    if (!r)
      log::warn("segment cut failed", {{"call_id", call_id}, {"first", range.first}, {"last", range.last},
                                       {"error", r.error().message()}});
    std::lock_guard lock(pending->mutex);
    if (!r || !*r) pending->refused.push_back(call_id);
    if (--pending->outstanding == 0) pending->answered.notify_all();
  });
}

void pause_cutter::forget_unseen(std::vector<std::string> seen) {
  std::sort(seen.begin(), seen.end());
  std::erase_if(calls_, [&](const auto& entry) { return !std::binary_search(seen.begin(), seen.end(), entry.first); });
}

pause_cutter_stats pause_cutter::stats() const {
  pause_cutter_stats s;
  s.passes = passes_.load();
  s.cuts = cuts_.load();
  s.stale_cuts = stale_cuts_.load();
  s.failed_cuts = failed_cuts_.load();
  s.packets = packets_.load();
  s.failures = failures_.load();
  s.calls = tracked_.load();
  return s;
}

}  // namespace aipbx::engines
