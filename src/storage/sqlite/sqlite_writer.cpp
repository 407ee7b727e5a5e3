#include "storage/sqlite/sqlite_writer.hpp"

#include "log/log.hpp"

namespace aipbx::sqlite {

// The writer's view of one call: what the calls row holds, plus the live sequencer.
struct writer::call_record {
  std::string id;
  call_state state = call_state::in_progress;
  call_sequencer seq;
  std::int64_t packets_received = 0;
  std::int64_t duplicate_packets = 0;
  std::int64_t out_of_order_packets = 0;
  std::int64_t late_packets = 0;
  std::int64_t gaps_opened = 0;
  std::int64_t jobs_total = 0;
  std::int64_t jobs_succeeded = 0;
  std::int64_t jobs_dead = 0;
  std::optional<double> first_timestamp;
  std::optional<double> last_timestamp;
  std::optional<double> last_packet_at;
  std::optional<double> ended_at;
  std::optional<std::string> end_reason;
  std::optional<media_declaration> media;
  double state_changed_at = 0;
  bool dirty = false;
  bool state_dirty = false;  // state, ended_at, end_reason or state_changed_at changed

  std::int64_t outstanding() const { return jobs_total - jobs_succeeded - jobs_dead; }
};

const char* const job_columns =
    "id, call_id, first_sequence, last_sequence, state, attempts, max_attempts, run_at, lease_owner, "
    "lease_expires_at, last_error, created_at, updated_at, started_at, finished_at";

job read_job(const statement& s) {
  job j;
  j.id = s.column_int(0);
  j.call_id = s.column_text(1);
  j.first_sequence = s.column_int(2);
  j.last_sequence = s.column_int(3);
  j.state = parse_job_state(s.column_text_view(4)).value_or(job_state::queued);
  j.attempts = static_cast<int>(s.column_int(5));
  j.max_attempts = static_cast<int>(s.column_int(6));
  j.run_at = s.column_double(7);
  if (!s.is_null(8)) j.lease_owner = s.column_text(8);
  j.lease_expires_at = s.column_optional_double(9);
  if (!s.is_null(10)) j.last_error = s.column_text(10);
  j.created_at = s.column_double(11);
  j.updated_at = s.column_double(12);
  j.started_at = s.column_optional_double(13);
  j.finished_at = s.column_optional_double(14);
  return j;
}

namespace {
std::string fenced(const char* set) {
  return std::string("UPDATE jobs SET ") + set +
         " WHERE id = ? AND state = 'running' AND lease_owner = ? AND attempts = ?";
}
}  // namespace

writer::writer(const sqlite_options& options, std::unique_ptr<connection> db)
    : options_(options),
      sequencing_{options.segment_packets, options.window},
      db_(std::move(db)),
      insert_packet_(db_->prepare("INSERT INTO packets(call_id, sequence, data, timestamp, received_at) "
                                  "VALUES (?, ?, ?, ?, ?) ON CONFLICT(call_id, sequence) DO NOTHING")),
      select_packet_data_(db_->prepare("SELECT data FROM packets WHERE call_id = ? AND sequence = ?")),
      select_call_(db_->prepare("SELECT state, last_sequence, packets_received, duplicate_packets, "
                                "out_of_order_packets, gaps_opened, first_timestamp, last_timestamp, "
                                "next_segment, last_packet_at, late_packets, jobs_total, jobs_succeeded, "
                                "jobs_dead, ended_at, end_reason, state_changed_at, media_format, media_packet_ms "
                                "FROM calls WHERE id = ?")),
      select_gaps_(db_->prepare("SELECT first_sequence, last_sequence, opened_at, lost FROM call_gaps "
                                "WHERE call_id = ? ORDER BY first_sequence")),
      insert_call_(db_->prepare("INSERT INTO calls(id, created_at, updated_at, state_changed_at) VALUES (?, ?, ?, ?)")),
      update_call_(db_->prepare("UPDATE calls SET last_sequence = ?, expected_sequence = ?, packets_received = ?, "
                                "duplicate_packets = ?, out_of_order_packets = ?, gaps_opened = ?, "
                                "missing_packets = ?, first_timestamp = ?, last_timestamp = ?, updated_at = ?, "
                                "next_segment = ?, last_packet_at = ?, late_packets = ?, lost_packets = ?, "
                                "jobs_total = ?, jobs_succeeded = ?, jobs_dead = ? WHERE id = ?")),
      // Apart, so that the index on state is only touched when the state changes.
      update_call_state_(db_->prepare("UPDATE calls SET state = ?, ended_at = ?, end_reason = ?, state_changed_at = ? "
                                      "WHERE id = ?")),
      insert_gap_(db_->prepare("INSERT INTO call_gaps(call_id, first_sequence, last_sequence, opened_at) "
                               "VALUES (?, ?, ?, ?)")),
      delete_gap_(db_->prepare("DELETE FROM call_gaps WHERE call_id = ? AND first_sequence = ?")),
      insert_job_(db_->prepare("INSERT INTO jobs(call_id, first_sequence, last_sequence, max_attempts, run_at, "
                               "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)")),
      // INDEXED BY: without statistics SQLite 3.40 prefers jobs_state and sorts the whole queue, which
      // makes every claim slower as the backlog grows; the partial indexes hold exactly the rows wanted.
      select_due_(db_->prepare("SELECT id FROM jobs INDEXED BY jobs_queued_due WHERE state = 'queued' AND run_at <= ? "
                               "ORDER BY run_at, id LIMIT ?")),
      select_expired_(db_->prepare("SELECT id, attempts, max_attempts FROM jobs INDEXED BY jobs_running_lease WHERE state = 'running' "
                                   "AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?")),
      lease_job_(db_->prepare(std::string("UPDATE jobs SET state = 'running', attempts = attempts + 1, "
                                          "lease_owner = ?, lease_expires_at = ?, started_at = "
                                          "COALESCE(started_at, ?), updated_at = ? WHERE id = ? RETURNING ") +
                              job_columns)),
      expire_job_(db_->prepare("UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_expires_at = NULL, "
                               "last_error = ?, finished_at = ?, updated_at = ? WHERE id = ?")),
      next_due_(db_->prepare("SELECT MIN(run_at) FROM jobs INDEXED BY jobs_queued_due WHERE state = 'queued'")),
      next_lease_(db_->prepare("SELECT MIN(lease_expires_at) FROM jobs INDEXED BY jobs_running_lease WHERE state = 'running'")),
      renew_(db_->prepare(fenced("lease_expires_at = ?, updated_at = ?"))),
      finish_success_(db_->prepare(fenced("state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, "
                                          "finished_at = ?1, updated_at = ?1"))),
      insert_segment_(db_->prepare("INSERT INTO transcript_segments(job_id, call_id, first_sequence, "
                                   "last_sequence, text, engine, latency_ms, created_at) SELECT id, call_id, "
                                   "first_sequence, last_sequence, ?, ?, ?, ? FROM jobs WHERE id = ?")),
      finish_retry_(db_->prepare(fenced("state = 'queued', lease_owner = NULL, lease_expires_at = NULL, "
                                        "last_error = ?1, run_at = ?2, updated_at = ?3"))),
      finish_dead_(db_->prepare(fenced("state = 'dead', lease_owner = NULL, lease_expires_at = NULL, "
                                       "last_error = ?1, finished_at = ?2, updated_at = ?2"))),
      release_job_(db_->prepare(fenced("state = 'queued', attempts = attempts - 1, lease_owner = NULL, "
                                       "lease_expires_at = NULL, run_at = ?1, updated_at = ?1"))),
      replay_job_(db_->prepare(std::string("UPDATE jobs SET state = 'queued', attempts = 0, run_at = ?1, "
                                           "finished_at = NULL, updated_at = ?1 WHERE id = ?2 AND state = "
                                           "'dead' RETURNING ") +
                               job_columns)),
      job_exists_(db_->prepare("SELECT state FROM jobs WHERE id = ?")),
      select_idle_(db_->prepare("SELECT id FROM calls WHERE next_segment <= last_sequence AND state = "
                                "'IN_PROGRESS' AND last_packet_at <= ? ORDER BY last_packet_at LIMIT 1000")),
      select_expired_gaps_(db_->prepare("SELECT DISTINCT call_id FROM call_gaps WHERE lost = 0 AND opened_at <= ? "
                                        "LIMIT 1000")),
      select_timed_out_(db_->prepare("SELECT id FROM calls WHERE state = 'IN_PROGRESS' AND last_packet_at <= ? "
                                     "ORDER BY last_packet_at LIMIT 1000")),
      mark_lost_(db_->prepare("UPDATE call_gaps SET lost = 1 WHERE call_id = ? AND first_sequence = ?")),
      insert_transition_(db_->prepare("INSERT INTO call_transitions(call_id, from_state, to_state, reason, at) "
                                      "VALUES (?, ?, ?, ?, ?)")),
      job_call_(db_->prepare("SELECT call_id, state FROM jobs WHERE id = ?")),
      flag_late_(db_->prepare("UPDATE packets SET late = 1 WHERE call_id = ? AND sequence = ?")),
      set_media_(db_->prepare("UPDATE calls SET media_format = ?, media_packet_ms = ? WHERE id = ?")) {}

writer::~writer() = default;

bool writer::commit(std::deque<write_op>& batch, double now, bool sweep_now) {
  if (cache_.size() > options_.cache_limit) cache_.clear();
  warnings_.clear();
  transitions_.clear();
  dirty_.clear();
  jobs_queued_ = false;
  try {
    transaction tx(*db_);
    for (auto& op : batch) apply(op, now);
    if (sweep_now) sweep(now);
    for (auto* rec : dirty_) write_call(*rec, now);
    tx.commit();
  } catch (const sqlite_error& e) {
    // The transaction rolled back: the cached trackers may hold changes that were never stored.
    cache_.clear();
    ++failed_batches_;
    log::error("commit failed", {{"error", e.what()}, {"sqlite_code", e.code()}, {"writes", batch.size()}});
    const auto code = make_error_code(e.transient() ? errc::unavailable : errc::store_failure);
    for (auto& op : batch) op.fail(code);
    warnings_.clear();
    transitions_.clear();
    jobs_queued_ = false;
  }
  for (const auto& t : transitions_)
    log::info("call state changed", {{"call_id", t.call_id}, {"from", t.from}, {"to", t.to}, {"reason", t.reason}});
  for (const auto& w : warnings_) {
    if (w.range)
      log::warn(w.msg, {{"call_id", w.call_id}, {"sequence", w.sequence}, {"expected", w.expected},
                        {"missing_first", w.range->first}, {"missing_last", w.range->last}});
    else
      log::warn(w.msg, {{"call_id", w.call_id}, {"sequence", w.sequence}, {"expected", w.expected}});
  }
  return jobs_queued_;
}

void writer::notify_jobs_queued() const {
  if (listener_) listener_();
}

void writer::answer(std::deque<write_op>& batch, bool jobs_queued) const {
  if (jobs_queued) notify_jobs_queued();
  for (auto& op : batch) op.complete();
}

void writer::apply(write_op& op, double now) {
  std::visit(
      [&](auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, ingest_op>) o.r = apply_ingest(o.p, now);
        else if constexpr (std::is_same_v<T, claim_op>) o.r = apply_claim(o, now);
        else if constexpr (std::is_same_v<T, renew_op>) o.r = apply_renew(o, now);
        else if constexpr (std::is_same_v<T, finish_op>) o.r = apply_finish(o, now);
        else if constexpr (std::is_same_v<T, release_op>) o.r = apply_release(o, now);
        else if constexpr (std::is_same_v<T, replay_op>) o.r = apply_replay(o, now);
        else if constexpr (std::is_same_v<T, end_op>) o.r = apply_end(o.call_id, o.reason, now);
        else if constexpr (std::is_same_v<T, declare_op>) o.r = apply_declare(o, now);
        else o.r = apply_archive(o, now);
      },
      op.v);
}

ingest_outcome writer::duplicate_outcome(const call_record& rec) {
  ingest_outcome out;
  out.duplicate = true;
  out.kind = arrival::duplicate;
  out.expected = rec.seq.tracker().expected();
  out.last_sequence = rec.seq.tracker().highest();
  out.missing = rec.seq.tracker().missing_count();
  return out;
}

result<ingest_outcome> writer::apply_ingest(const packet& p, double now) {
  ingest_outcome out;
  {
    // The packet was checked against the call's declaration as its node last saw it; a declaration made
    // since (by another request or node) makes that check worthless.
    const call_record* existing = load(p.call_id);
    const bool same_media = existing && existing->media ? p.media == existing->media->format : !p.media;
    if (!same_media) return errc::media_changed;
  }
  call_record& rec = load_or_create(p.call_id, now, out.call_created, "first packet");
  if (rec.state != call_state::in_progress) {
    // A sender retrying a packet it already sent still gets its idempotent answer after the call ended.
    select_packet_data_.bind(1, std::string_view(p.call_id)).bind(2, p.sequence);
    const bool same = select_packet_data_.step() && select_packet_data_.column_text_view(0) == p.data;
    select_packet_data_.reset();
    if (!same) return errc::call_ended;
    ++rec.duplicate_packets;
    mark_dirty(rec);
    return duplicate_outcome(rec);
  }

  insert_packet_.bind(1, std::string_view(p.call_id))
      .bind(2, p.sequence)
      .bind(3, std::string_view(p.data))
      .bind(4, p.timestamp)
      .bind(5, now)
      .run();
  if (db_->changes() == 0) {
    select_packet_data_.bind(1, std::string_view(p.call_id)).bind(2, p.sequence);
    const bool same = select_packet_data_.step() && select_packet_data_.column_text_view(0) == p.data;
    select_packet_data_.reset();
    if (!same) return errc::sequence_conflict;
    ++rec.duplicate_packets;
    mark_dirty(rec);
    return duplicate_outcome(rec);
  }

  sequencer_changes changes;
  const auto arrived = rec.seq.observe(p.sequence, now, changes);
  const observation& obs = arrived.obs;
  if (obs.removed) delete_gap_.bind(1, std::string_view(p.call_id)).bind(2, obs.removed->first).run();
  for (const auto& r : obs.added) {
    // A split range keeps its opening time; a new one opens now (the sequencer knows which).
    const double opened = rec.seq.gap_opened_at(r.first).value_or(now);
    insert_gap_.bind(1, std::string_view(p.call_id)).bind(2, r.first).bind(3, r.last).bind(4, opened).run();
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
      flag_late_.bind(1, std::string_view(p.call_id)).bind(2, p.sequence).run();
      warnings_.push_back({"packet after its gap was declared lost", p.call_id, p.sequence, obs.expected, std::nullopt});
      break;
    case arrival::before_start:
    case arrival::duplicate:  // stored for the first time although below the highest: out of order
      ++rec.out_of_order_packets;
      warnings_.push_back({"out-of-order packet", p.call_id, p.sequence, obs.expected, std::nullopt});
      break;
    case arrival::in_order: break;
  }
  if (!rec.first_timestamp || p.timestamp < *rec.first_timestamp) rec.first_timestamp = p.timestamp;
  if (!rec.last_timestamp || p.timestamp > *rec.last_timestamp) rec.last_timestamp = p.timestamp;
  rec.last_packet_at = now;
  apply_changes(rec, changes, now);
  mark_dirty(rec);

  out.kind = obs.kind == arrival::duplicate ? arrival::late : obs.kind;
  out.expected = rec.seq.tracker().expected();
  out.last_sequence = rec.seq.tracker().highest();
  out.missing = rec.seq.tracker().missing_count();
  return out;
}

void writer::apply_changes(call_record& rec, const sequencer_changes& changes, double now) {
  for (const auto& r : changes.lost) {
    mark_lost_.bind(1, std::string_view(rec.id)).bind(2, r.first).run();
    warnings_.push_back({"packets declared lost", rec.id, r.last, r.first, r});
  }
  for (const auto& seg : changes.segments) {
    insert_job_.bind(1, std::string_view(rec.id))
        .bind(2, seg.first)
        .bind(3, seg.last)
        .bind(4, std::int64_t{options_.max_attempts})
        .bind(5, now)
        .bind(6, now)
        .bind(7, now)
        .run();
    ++rec.jobs_total;
    jobs_queued_ = true;
  }
  if (!changes.empty()) mark_dirty(rec);
}

void writer::sweep(double now) {
  std::vector<std::string> ids;
  const auto collect = [&](statement& q, double before) {
    ids.clear();
    q.bind(1, before);
    while (q.step()) ids.push_back(q.column_text(0));
    q.reset();
  };
  if (options_.window.seconds > 0) {
    collect(select_expired_gaps_, now - options_.window.seconds);
    for (const auto& id : ids) {
      if (call_record* rec = load(id); rec && rec->state == call_state::in_progress) {
        sequencer_changes changes;
        rec->seq.tick(now, changes);
        apply_changes(*rec, changes, now);
      }
    }
  }
  if (options_.idle_timeout > 0) {
    collect(select_timed_out_, now - options_.idle_timeout);
    for (const auto& id : ids) (void)apply_end(id, "idle timeout", now);
  }
  collect(select_idle_, now - options_.segment_idle);
  for (const auto& id : ids) {
    if (call_record* rec = load(id)) {
      sequencer_changes changes;
      rec->seq.flush(changes);
      apply_changes(*rec, changes, now);
    }
  }
}

result<call_state> writer::apply_end(const std::string& call_id, const std::string& reason, double now) {
  call_record* rec = load(call_id);
  if (!rec) return errc::not_found;
  if (rec->state != call_state::in_progress) return errc::invalid_transition;
  sequencer_changes changes;
  rec->seq.flush(changes);
  apply_changes(*rec, changes, now);
  rec->ended_at = now;
  rec->end_reason = reason;
  rec->state_dirty = true;
  transition(*rec, call_state::processing_ai, reason, now);
  settle(*rec, "ai jobs settled", now);
  return rec->state;
}

result<declare_outcome> writer::apply_declare(const declare_op& op, double now) {
  declare_outcome out;
  call_record* existing = load(op.call_id);
  if (existing && existing->media) {
    if (*existing->media != op.media) return errc::media_conflict;
    out.repeated = true;
    return out;
  }
  if (existing && existing->state != call_state::in_progress) return errc::call_ended;
  if (existing && existing->packets_received > 0) return errc::media_too_late;
  call_record& rec = existing ? *existing : load_or_create(op.call_id, now, out.created, "media declared");
  set_media_.bind(1, std::string_view(op.media.format)).bind(2, op.media.packet_ms).bind(3, std::string_view(op.call_id)).run();
  rec.media = op.media;
  mark_dirty(rec);
  log::info("call media declared", {{"call_id", op.call_id}, {"format", op.media.format}, {"packet_ms", op.media.packet_ms}});
  return out;
}

result<call_state> writer::apply_archive(const archive_op& op, double now) {
  call_record* rec = load(op.call_id);
  if (!rec) return errc::not_found;
  if (!can_transition(rec->state, call_state::archived)) return errc::invalid_transition;
  transition(*rec, call_state::archived, "archived by request", now);
  return rec->state;
}

void writer::transition(call_record& rec, call_state to, const std::string& reason, double now) {
  const call_state from = rec.state;
  if (from == to) return;
  if (!can_transition(from, to)) {
    log::error("call state change refused", {{"call_id", rec.id}, {"from", to_string(from)}, {"to", to_string(to)}});
    return;
  }
  rec.state = to;
  rec.state_changed_at = now;
  rec.state_dirty = true;
  insert_transition_.bind(1, std::string_view(rec.id))
      .bind(2, to_string(from))
      .bind(3, to_string(to))
      .bind(4, std::string_view(reason))
      .bind(5, now)
      .run();
  transitions_.push_back({rec.id, std::string(to_string(from)), std::string(to_string(to)), reason});
  mark_dirty(rec);
}

void writer::settle(call_record& rec, const std::string& reason, double now) {
  if (rec.state == call_state::in_progress || rec.state == call_state::archived) return;
  const call_state target = settled_state(rec.outstanding(), rec.jobs_dead);
  // FAILED -> COMPLETED passes through PROCESSING_AI: no skipping.
  if (rec.state == call_state::failed && target == call_state::completed)
    transition(rec, call_state::processing_ai, reason, now);
  transition(rec, target, reason, now);
}

void writer::job_changed(const std::string& call_id, job_state from, job_state to, double now) {
  call_record* rec = load(call_id);
  if (!rec) return;
  if (from == job_state::dead) --rec->jobs_dead;
  if (from == job_state::succeeded) --rec->jobs_succeeded;
  if (to == job_state::dead) ++rec->jobs_dead;
  if (to == job_state::succeeded) ++rec->jobs_succeeded;
  mark_dirty(*rec);
  settle(*rec, to == job_state::dead ? "an ai job is dead" : to == job_state::queued ? "a dead job was replayed" : "ai jobs settled", now);
}

result<claim_result> writer::apply_claim(const claim_op& op, double now) {
  claim_result out;
  std::vector<std::int64_t> ids;
  select_due_.bind(1, now).bind(2, static_cast<std::int64_t>(op.limit));
  while (select_due_.step()) ids.push_back(select_due_.column_int(0));
  select_due_.reset();
  if (ids.size() < op.limit) {
    // Leases that expired: their worker died or hung. The interrupted attempt counts.
    select_expired_.bind(1, now).bind(2, static_cast<std::int64_t>(op.limit - ids.size()));
    std::vector<std::int64_t> exhausted;
    while (select_expired_.step()) {
      if (select_expired_.column_int(1) >= select_expired_.column_int(2)) exhausted.push_back(select_expired_.column_int(0));
      else ids.push_back(select_expired_.column_int(0));
    }
    select_expired_.reset();
    for (auto id : exhausted) {
      expire_job_.bind(1, std::string_view("lease expired on the last attempt")).bind(2, now).bind(3, now).bind(4, id).run();
      if (auto call = call_of_job(id)) job_changed(*call, job_state::running, job_state::dead, now);
      log::error("ai job dead", {{"job_id", id}, {"error", "lease expired on the last attempt"}});
    }
  }
  for (auto id : ids) {
    lease_job_.bind(1, std::string_view(op.owner)).bind(2, now + op.lease).bind(3, now).bind(4, now).bind(5, id);
    if (lease_job_.step()) out.jobs.push_back(read_job(lease_job_));
    lease_job_.reset();
  }
  // When the claim was filled, the caller comes back as soon as a slot frees: when the next job is due
  // only matters to a caller that found the queue short.
  if (ids.size() < op.limit) {
    std::optional<double> next;
    if (next_due_.step()) next = next_due_.column_optional_double(0);
    next_due_.reset();
    if (next_lease_.step()) {
      if (auto lease = next_lease_.column_optional_double(0); lease && (!next || *lease < *next)) next = lease;
    }
    next_lease_.reset();
    out.next_run_at = next;
  }
  return out;
}

result<bool> writer::apply_renew(const renew_op& op, double now) {
  renew_.bind(1, now + op.lease).bind(2, now).bind(3, op.id).bind(4, std::string_view(op.owner))
      .bind(5, std::int64_t{op.attempt}).run();
  return db_->changes() > 0;
}

result<bool> writer::apply_finish(const finish_op& op, double now) {
  // Fenced by owner and attempt: a worker whose lease was taken over records nothing.
  const auto fence = [&](statement& s, int first) -> statement& {
    return s.bind(first, op.id).bind(first + 1, std::string_view(op.owner)).bind(first + 2, std::int64_t{op.attempt});
  };
  job_state to;
  if (const auto* ok = std::get_if<job_succeeded>(&op.outcome)) {
    fence(finish_success_.bind(1, now), 2).run();
    if (db_->changes() == 0) return false;
    insert_segment_.bind(1, std::string_view(ok->text)).bind(2, std::string_view(ok->engine)).bind(3, ok->latency_ms)
        .bind(4, now).bind(5, op.id).run();
    to = job_state::succeeded;
  } else if (const auto* retry = std::get_if<job_retry>(&op.outcome)) {
    fence(finish_retry_.bind(1, std::string_view(retry->error)).bind(2, retry->run_at).bind(3, now), 4).run();
    return db_->changes() > 0;
  } else {
    fence(finish_dead_.bind(1, std::string_view(std::get<job_dead>(op.outcome).error)).bind(2, now), 3).run();
    if (db_->changes() == 0) return false;
    to = job_state::dead;
  }
  if (auto call = call_of_job(op.id)) job_changed(*call, job_state::running, to, now);
  return true;
}

std::optional<std::string> writer::call_of_job(std::int64_t job_id) {
  job_call_.bind(1, job_id);
  std::optional<std::string> call;
  if (job_call_.step()) call = job_call_.column_text(0);
  job_call_.reset();
  return call;
}

result<bool> writer::apply_release(const release_op& op, double now) {
  release_job_.bind(1, now).bind(2, op.id).bind(3, std::string_view(op.owner)).bind(4, std::int64_t{op.attempt}).run();
  const bool released = db_->changes() > 0;
  if (released) jobs_queued_ = true;
  return released;
}

result<job> writer::apply_replay(const replay_op& op, double now) {
  replay_job_.bind(1, now).bind(2, op.id);
  if (replay_job_.step()) {
    job j = read_job(replay_job_);
    replay_job_.reset();
    jobs_queued_ = true;
    job_changed(j.call_id, job_state::dead, job_state::queued, now);
    return j;
  }
  replay_job_.reset();
  job_exists_.bind(1, op.id);
  const bool exists = job_exists_.step();
  job_exists_.reset();
  return exists ? errc::job_not_dead : errc::not_found;
}

writer::call_record* writer::load(const std::string& id) {
  if (auto it = cache_.find(id); it != cache_.end()) return it->second.get();
  auto rec = std::make_unique<call_record>();
  rec->id = id;
  select_call_.bind(1, std::string_view(id));
  if (!select_call_.step()) {
    select_call_.reset();
    return nullptr;
  }
  auto& q = select_call_;
  rec->state = parse_call_state(q.column_text_view(0)).value_or(call_state::in_progress);
  const std::int64_t highest = q.column_int(1);
  rec->packets_received = q.column_int(2);
  rec->duplicate_packets = q.column_int(3);
  rec->out_of_order_packets = q.column_int(4);
  rec->gaps_opened = q.column_int(5);
  rec->first_timestamp = q.column_optional_double(6);
  rec->last_timestamp = q.column_optional_double(7);
  const std::int64_t next_segment = q.column_int(8);
  rec->last_packet_at = q.column_optional_double(9);
  rec->late_packets = q.column_int(10);
  rec->jobs_total = q.column_int(11);
  rec->jobs_succeeded = q.column_int(12);
  rec->jobs_dead = q.column_int(13);
  rec->ended_at = q.column_optional_double(14);
  if (!q.is_null(15)) rec->end_reason = q.column_text(15);
  rec->state_changed_at = q.column_double(16);
  if (!q.is_null(17)) rec->media = media_declaration{q.column_text(17), q.column_int(18)};
  q.reset();
  std::vector<open_gap> open;
  std::vector<seq_range> lost;
  select_gaps_.bind(1, std::string_view(id));
  while (select_gaps_.step()) {
    const seq_range r{select_gaps_.column_int(0), select_gaps_.column_int(1)};
    if (select_gaps_.column_int(3) != 0) lost.push_back(r);
    else open.push_back({r, select_gaps_.column_double(2)});
  }
  select_gaps_.reset();
  rec->seq = call_sequencer(sequencing_, highest, open, lost, next_segment);
  return cache_.emplace(id, std::move(rec)).first->second.get();
}

writer::call_record& writer::load_or_create(const std::string& id, double now, bool& created, std::string_view reason) {
  if (call_record* rec = load(id)) return *rec;
  insert_call_.bind(1, std::string_view(id)).bind(2, now).bind(3, now).bind(4, now).run();
  insert_transition_.bind(1, std::string_view(id)).bind(2, std::nullopt).bind(3, to_string(call_state::in_progress))
      .bind(4, reason).bind(5, now).run();
  created = true;
  log::info("call created", {{"call_id", id}});
  auto rec = std::make_unique<call_record>();
  rec->id = id;
  rec->seq = call_sequencer(sequencing_);
  rec->state_changed_at = now;
  return *cache_.emplace(id, std::move(rec)).first->second;
}

void writer::mark_dirty(call_record& rec) {
  if (!rec.dirty) {
    rec.dirty = true;
    dirty_.push_back(&rec);
  }
}

void writer::write_call(call_record& rec, double now) {
  const auto& t = rec.seq.tracker();
  update_call_.bind(1, t.highest())
      .bind(2, t.expected())
      .bind(3, rec.packets_received)
      .bind(4, rec.duplicate_packets)
      .bind(5, rec.out_of_order_packets)
      .bind(6, rec.gaps_opened)
      .bind(7, t.missing_count())
      .bind(8, rec.first_timestamp)
      .bind(9, rec.last_timestamp)
      .bind(10, now)
      .bind(11, rec.seq.next_segment())
      .bind(12, rec.last_packet_at)
      .bind(13, rec.late_packets)
      .bind(14, rec.seq.lost_packets())
      .bind(15, rec.jobs_total)
      .bind(16, rec.jobs_succeeded)
      .bind(17, rec.jobs_dead)
      .bind(18, std::string_view(rec.id))
      .run();
  if (rec.state_dirty) {
    update_call_state_.bind(1, to_string(rec.state))
        .bind(2, rec.ended_at)
        .bind(3, rec.end_reason ? std::optional<std::string_view>(*rec.end_reason) : std::nullopt)
        .bind(4, rec.state_changed_at)
        .bind(5, std::string_view(rec.id))
        .run();
    rec.state_dirty = false;
  }
  rec.dirty = false;
}

}  // namespace aipbx::sqlite
