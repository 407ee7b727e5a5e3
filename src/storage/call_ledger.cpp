#include "storage/call_ledger.hpp"

#include "log/log.hpp"
#include "storage/event_data.hpp"

namespace aipbx {

void ledger_rows::clear() {
  packets.clear();
  gaps.clear();
  jobs.clear();
  transitions.clear();
  events.clear();
  log.clear();
}

void call_ledger::begin() {
  rows_.clear();
  dirty_.clear();
  warnings_.clear();
  state_changes_.clear();
  created_.clear();
  declared_.clear();
  linked_.clear();
}

call_record call_ledger::fresh(std::string id, double now) const {
  call_record rec;
  rec.id = std::move(id);
  rec.seq = call_sequencer(options_.sequencing);
  rec.state_changed_at = now;
  return rec;
}

call_sequencer call_ledger::sequencer(std::int64_t highest, const std::vector<open_gap>& open,
                                      const std::vector<seq_range>& lost, std::int64_t next_segment) const {
  return call_sequencer(options_.sequencing, highest, open, lost, next_segment);
}

void call_ledger::created(const std::string& id, std::string_view reason, double now) {
  rows_.transitions.push_back({id, std::nullopt, call_state::in_progress, std::string(reason), now});
  created_.push_back(id);
  log(event_kind::call_created, id, std::nullopt, now, event_data().add("reason", reason).take());
}

void call_ledger::log(event_kind kind, const std::string& call_id, std::optional<std::int64_t> job_id, double at,
                      std::string data) {
  rows_.log.push_back({kind, call_id, job_id, at, std::move(data)});
}

bool call_ledger::media_matches(const call_record* rec, const packet& p) {
  return rec && rec->media ? p.media == rec->media->format : !p.media;
}

void call_ledger::mark_dirty(call_record& rec) {
  if (!rec.dirty) {
    rec.dirty = true;
    dirty_.push_back(&rec);
  }
}

ingest_outcome call_ledger::duplicate(call_record& rec) {
  ++rec.duplicate_packets;
  mark_dirty(rec);
  ingest_outcome out;
  out.duplicate = true;
  out.kind = arrival::duplicate;
  out.expected = rec.seq.tracker().expected();
  out.last_sequence = rec.seq.tracker().highest();
  out.missing = rec.seq.tracker().missing_count();
  return out;
}

result<ingest_outcome> call_ledger::ingest(call_record& rec, const packet& p, std::optional<std::string_view> stored,
                                           double now) {
  if (rec.state != call_state::in_progress) {
    // A sender retrying a packet it already sent still gets its idempotent answer after the call ended.
    if (!stored || *stored != p.data) return errc::call_ended;
    return duplicate(rec);
  }
  if (stored) {
    if (*stored != p.data) return errc::sequence_conflict;
    return duplicate(rec);
  }

  sequencer_changes changes;
  const auto arrived = sequencer_of(rec).observe(p.sequence, now, changes);
  const observation& obs = arrived.obs;
  if (obs.removed) {
    rows_.gaps.push_back({gap_row::change::closed, rec.id, *obs.removed, 0});
    rec.gaps_dirty = true;
  }
  for (const auto& r : obs.added) {
    // A split range keeps its opening time; a new one opens now (the sequencer knows which).
    rows_.gaps.push_back({gap_row::change::opened, rec.id, r, rec.seq.gap_opened_at(r.first).value_or(now)});
    rec.gaps_dirty = true;
  }

  ++rec.packets_received;
  switch (obs.kind) {
    case arrival::gap:
      ++rec.gaps_opened;
      warnings_.push_back({"packet gap", p.call_id, p.sequence, obs.expected, obs.added.front()});
      break;
    case arrival::late:
      ++rec.out_of_order_packets;
      warnings_.push_back({"late packet", p.call_id, p.sequence, obs.expected, std::nullopt});
      break;
    case arrival::after_lost:
      ++rec.late_packets;
      warnings_.push_back({"packet after its gap was declared lost", p.call_id, p.sequence, obs.expected, std::nullopt});
      break;
    case arrival::before_start:
    case arrival::duplicate:  // stored for the first time although below the highest: out of order
      ++rec.out_of_order_packets;
      warnings_.push_back({"out-of-order packet", p.call_id, p.sequence, obs.expected, std::nullopt});
      break;
    case arrival::in_order: break;
  }
  rows_.packets.push_back({p.call_id, p.sequence, p.data, p.timestamp, obs.kind == arrival::after_lost});
  log_arrival(rec, p.sequence, obs, now);

  if (!rec.first_timestamp || p.timestamp < *rec.first_timestamp) rec.first_timestamp = p.timestamp;
  if (!rec.last_timestamp || p.timestamp > *rec.last_timestamp) rec.last_timestamp = p.timestamp;
  rec.last_packet_at = now;
  apply_changes(rec, changes, now);
  mark_dirty(rec);

  ingest_outcome out;
  out.kind = obs.kind == arrival::duplicate ? arrival::late : obs.kind;
  out.expected = rec.seq.tracker().expected();
  out.last_sequence = rec.seq.tracker().highest();
  out.missing = rec.seq.tracker().missing_count();
  return out;
}

void call_ledger::log_arrival(const call_record& rec, std::int64_t sequence, const observation& obs, double now) {
  if (obs.kind == arrival::gap && !obs.added.empty()) {
    const seq_range& r = obs.added.front();
    log(event_kind::gap_opened, rec.id, std::nullopt, now, event_data().add("first", r.first).add("last", r.last).take());
  } else if (obs.kind == arrival::late && obs.removed) {
    log(event_kind::gap_filled, rec.id, std::nullopt, now,
        event_data()
            .add("sequence", sequence)
            .add("first", obs.removed->first)
            .add("last", obs.removed->last)
            .add("closed", obs.added.empty())
            .take());
  } else if (obs.kind == arrival::after_lost) {
    log(event_kind::packet_late, rec.id, std::nullopt, now, event_data().add("sequence", sequence).take());
  }
}

call_sequencer& call_ledger::sequencer_of(call_record& rec) const {
  // Decided once per record: the declaration it depends on is made before any packet and never changes.
  if (!rec.seq.cuts_decided()) rec.seq.set_external_cuts(cut_outside(rec));
  return rec.seq;
}

bool call_ledger::cut_outside(const call_record& rec) const {
  return options_.cut_outside && options_.cut_outside(rec.media);
}

void call_ledger::apply_changes(call_record& rec, const sequencer_changes& changes, double now) {
  for (const auto& r : changes.lost) {
    rows_.gaps.push_back({gap_row::change::lost, rec.id, r, 0});
    rec.gaps_dirty = true;
    warnings_.push_back({"packets declared lost", rec.id, r.last, r.first, r});
    log(event_kind::gap_lost, rec.id, std::nullopt, now, event_data().add("first", r.first).add("last", r.last).take());
  }
  for (const auto& seg : changes.segments) {
    rows_.jobs.push_back({rec.id, seg});
    ++rec.jobs_total;
    log(event_kind::segment_cut, rec.id, std::nullopt, now,
        event_data().add("first", seg.first).add("last", seg.last).take());
  }
  if (!changes.empty()) mark_dirty(rec);
}

result<bool> call_ledger::cut(call_record& rec, seq_range range, double now) {
  call_sequencer& seq = sequencer_of(rec);
  if (!seq.external_cuts() || range.last < range.first) return errc::invalid_input;
  const bool open = rec.state == call_state::in_progress || rec.state == call_state::processing_ai;
  if (!open || range.first != seq.next_segment()) return false;
  sequencer_changes changes;
  if (!seq.cut(range.last, changes)) return errc::invalid_input;
  apply_changes(rec, changes, now);
  mark_dirty(rec);  // next_segment moved, even when every sequence of the range was lost
  settle(rec, "ai jobs settled", now);
  return true;
}

result<call_state> call_ledger::end(call_record& rec, const std::string& reason, double now) {
  if (rec.state != call_state::in_progress) return errc::invalid_transition;
  sequencer_changes changes;
  sequencer_of(rec).flush(changes);
  apply_changes(rec, changes, now);
  rec.ended_at = now;
  rec.end_reason = reason;
  rec.state_dirty = true;
  mark_dirty(rec);
  log(event_kind::call_ended, rec.id, std::nullopt, now,
      event_data()
          .add("reason", reason)
          .add("last_sequence", rec.seq.tracker().highest())
          .add("packets_received", rec.packets_received)
          .add("lost_packets", rec.seq.lost_packets())
          .take());
  transition(rec, call_state::processing_ai, reason, now);
  settle(rec, "ai jobs settled", now);
  return rec.state;
}

result<call_state> call_ledger::archive(call_record& rec, double now) {
  if (!can_transition(rec.state, call_state::archived)) return errc::invalid_transition;
  transition(rec, call_state::archived, "archived by request", now);
  return rec.state;
}

result<declare_outcome> call_ledger::declare(call_record& rec, const media_declaration& media,
                                             const std::optional<track_link>& track) {
  declare_outcome out;
  if (rec.media) {
    if (*rec.media != media) return errc::media_conflict;
    out.repeated = true;
  } else {
    if (rec.state != call_state::in_progress) return errc::call_ended;
    if (rec.packets_received > 0) return errc::media_too_late;
    rec.media = media;
    rec.seq.set_external_cuts(cut_outside(rec));
    rec.media_dirty = true;
    mark_dirty(rec);
    declared_.emplace_back(rec.id, media);
  }
  // Set once: the first declaration that names a track decides (a call declared before its stream named
  // its tracks gets its link from the stream's repeat of the same media).
  if (track && !rec.track) {
    rec.track = track->name;
    rec.primary = track->primary;
    rec.track_dirty = true;
    out.repeated = false;
    linked_.emplace_back(rec.id, *track);
  }
  return out;
}

namespace {

// Well-formed UTF-8 (no overlong forms, surrogates or code points past U+10FFFF) without NUL bytes.
bool storable_text(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size()) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == 0) return false;
    if (c < 0x80) {
      ++i;
      continue;
    }
    // The lead byte gives the length and, for a few, a narrower range of the next byte.
    struct lead {
      unsigned char first, last;
      std::size_t continuation;
      unsigned char lo, hi;
    };
    static constexpr lead leads[] = {{0xC2, 0xDF, 1, 0x80, 0xBF}, {0xE0, 0xE0, 2, 0xA0, 0xBF},
                                     {0xE1, 0xEC, 2, 0x80, 0xBF}, {0xED, 0xED, 2, 0x80, 0x9F},
                                     {0xEE, 0xEF, 2, 0x80, 0xBF}, {0xF0, 0xF0, 3, 0x90, 0xBF},
                                     {0xF1, 0xF3, 3, 0x80, 0xBF}, {0xF4, 0xF4, 3, 0x80, 0x8F}};
    const lead* l = nullptr;
    for (const auto& candidate : leads)
      if (c >= candidate.first && c <= candidate.last) l = &candidate;
    if (!l) return false;
    const std::size_t n = l->continuation;
    const unsigned char lo = l->lo, hi = l->hi;
    if (s.size() - i <= n) return false;  // truncated
    for (std::size_t k = 1; k <= n; ++k) {
      const auto b = static_cast<unsigned char>(s[i + k]);
      if (b < (k == 1 ? lo : 0x80) || b > (k == 1 ? hi : 0xBF)) return false;
    }
    i += n + 1;
  }
  return true;
}

}  // namespace

bool call_ledger::valid_track(std::string_view call_id, const track_link& track) {
  if (track.name.empty() || track.name.size() > 128 || !storable_text(track.name)) return false;
  return !track.primary ||
         (!track.primary->empty() && *track.primary != call_id && storable_text(*track.primary));
}

bool call_ledger::valid_event(const call_event& e) {
  return !e.kind.empty() && storable_text(e.kind) && storable_text(e.data) && storable_text(e.call_id);
}

result<void> call_ledger::record_event(const call_record* rec, call_event& e, double now) {
  if (!rec) return errc::not_found;
  if (e.at <= 0) e.at = now;
  rows_.events.push_back({&e});
  // The call's own data is JSON written by aipbx; anything else is carried as a string.
  event_data data;
  data.add("kind", e.kind).add("sequence", e.sequence);
  if (e.data.starts_with('{') && e.data.ends_with('}')) data.add_raw("data", e.data);
  else data.add("data", e.data);
  log(e.kind == "dtmf" ? event_kind::dtmf : event_kind::call_event, e.call_id, std::nullopt, e.at, data.take());
  return {};
}

void call_ledger::transition(call_record& rec, call_state to, const std::string& reason, double now) {
  const call_state from = rec.state;
  if (from == to) return;
  if (!can_transition(from, to)) {
    log::error("call state change refused", {{"call_id", rec.id}, {"from", to_string(from)}, {"to", to_string(to)}});
    return;
  }
  rec.state = to;
  rec.state_changed_at = now;
  rec.state_dirty = true;
  mark_dirty(rec);
  rows_.transitions.push_back({rec.id, from, to, reason, now});
  log(event_kind::call_state_changed, rec.id, std::nullopt, now,
      event_data().add("from", to_string(from)).add("to", to_string(to)).add("reason", reason).take());
  state_changes_.push_back({rec.id, std::string(to_string(from)), std::string(to_string(to)), reason});
}

void call_ledger::settle(call_record& rec, const std::string& reason, double now) {
  if (rec.state == call_state::in_progress || rec.state == call_state::archived) return;
  // Packets still to be cut (a call cut from outside) are AI work outstanding.
  if (rec.seq.has_uncut()) return;
  const call_state target = settled_state(rec.outstanding(), rec.jobs_dead);
  // FAILED -> COMPLETED passes through PROCESSING_AI: no skipping.
  if (rec.state == call_state::failed && target == call_state::completed)
    transition(rec, call_state::processing_ai, reason, now);
  transition(rec, target, reason, now);
}

void call_ledger::job_changed(call_record& rec, job_state from, job_state to, double now) {
  if (from == job_state::dead) --rec.jobs_dead;
  if (from == job_state::succeeded) --rec.jobs_succeeded;
  if (to == job_state::dead) ++rec.jobs_dead;
  if (to == job_state::succeeded) ++rec.jobs_succeeded;
  mark_dirty(rec);
  settle(rec,
         to == job_state::dead     ? "an ai job is dead"
         : to == job_state::queued ? "a dead job was replayed"
                                   : "ai jobs settled",
         now);
}

void call_ledger::expire_gaps(call_record& rec, double now) {
  if (rec.state != call_state::in_progress) return;
  sequencer_changes changes;
  sequencer_of(rec).tick(now, changes);
  apply_changes(rec, changes, now);
}

void call_ledger::end_if_timed_out(call_record& rec, double now) {
  if (options_.idle_timeout <= 0 || rec.state != call_state::in_progress || !rec.last_packet_at ||
      *rec.last_packet_at > now - options_.idle_timeout)
    return;
  (void)end(rec, "idle timeout", now);
}

void call_ledger::cut_if_idle(call_record& rec, double now) {
  if (rec.state != call_state::in_progress || !rec.seq.has_uncut() || !rec.last_packet_at ||
      *rec.last_packet_at > now - options_.segment_idle)
    return;
  sequencer_changes changes;
  sequencer_of(rec).flush(changes);
  apply_changes(rec, changes, now);
}

void call_ledger::log_committed() const {
  for (const auto& id : created_) log::info("call created", {{"call_id", id}});
  for (const auto& [id, media] : declared_)
    log::info("call media declared", {{"call_id", id}, {"format", media.format}, {"packet_ms", media.packet_ms}});
  for (const auto& [id, link] : linked_) {
    if (link.primary)
      log::info("call track linked",
                {{"call_id", id}, {"track", link.name}, {"primary_call", *link.primary}});
    else
      log::info("call track linked", {{"call_id", id}, {"track", link.name}});
  }
  for (const auto& t : state_changes_)
    log::info("call state changed", {{"call_id", t.call_id}, {"from", t.from}, {"to", t.to}, {"reason", t.reason}});
  for (const auto& w : warnings_) {
    if (w.range)
      log::warn(w.msg, {{"call_id", w.call_id}, {"sequence", w.sequence}, {"expected", w.expected},
                        {"missing_first", w.range->first}, {"missing_last", w.range->last}});
    else
      log::warn(w.msg, {{"call_id", w.call_id}, {"sequence", w.sequence}, {"expected", w.expected}});
  }
}

}  // namespace aipbx
