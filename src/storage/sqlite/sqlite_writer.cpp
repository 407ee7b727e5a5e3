#include "storage/sqlite/sqlite_writer.hpp"

#include "log/log.hpp"

namespace aipbx::sqlite {

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

writer::writer(const sqlite_options& options, std::unique_ptr<connection> db)
    : options_(options),
      ledger_({{options.segment_packets, options.window}, options.segment_idle, options.idle_timeout,
               options.cut_outside}),
      jobs_(ledger_, [this](const std::string& call_id) { return load(call_id); }),
      db_(std::move(db)),
      insert_packet_(db_->prepare("INSERT INTO packets(call_id, sequence, data, timestamp, received_at) "
                                  "VALUES (?, ?, ?, ?, ?) ON CONFLICT(call_id, sequence) DO NOTHING")),
      select_packet_data_(db_->prepare("SELECT data FROM packets WHERE call_id = ? AND sequence = ?")),
      select_call_(
          db_->prepare("SELECT state, last_sequence, packets_received, duplicate_packets, "
                       "out_of_order_packets, gaps_opened, first_timestamp, last_timestamp, "
                       "next_segment, last_packet_at, late_packets, jobs_total, jobs_succeeded, "
                       "jobs_dead, ended_at, end_reason, state_changed_at, media_format, media_packet_ms, "
                       "track, primary_id, rowid FROM calls WHERE id = ?")),
      select_gaps_(db_->prepare("SELECT first_sequence, last_sequence, opened_at, lost FROM call_gaps "
                                "WHERE call_id = ? ORDER BY first_sequence")),
      insert_call_(db_->prepare(
          "INSERT INTO calls(id, created_at, updated_at, state_changed_at) VALUES (?, ?, ?, ?)")),
      update_call_(
          db_->prepare("UPDATE calls SET last_sequence = ?, expected_sequence = ?, packets_received = ?, "
                       "duplicate_packets = ?, out_of_order_packets = ?, gaps_opened = ?, "
                       "missing_packets = ?, first_timestamp = ?, last_timestamp = ?, updated_at = ?, "
                       "next_segment = ?, last_packet_at = ?, late_packets = ?, lost_packets = ?, "
                       "jobs_total = ?, jobs_succeeded = ?, jobs_dead = ? WHERE rowid = ? AND id = ?")),
      // Apart, so that the index on state is only touched when the state changes.
      update_call_state_(
          db_->prepare("UPDATE calls SET state = ?, ended_at = ?, end_reason = ?, state_changed_at = ? "
                       "WHERE rowid = ? AND id = ?")),
      select_call_row_(db_->prepare("SELECT rowid FROM calls WHERE id = ?")),
      insert_gap_(db_->prepare("INSERT INTO call_gaps(call_id, first_sequence, last_sequence, opened_at) "
                               "VALUES (?, ?, ?, ?)")),
      delete_gap_(db_->prepare("DELETE FROM call_gaps WHERE call_id = ? AND first_sequence = ?")),
      insert_job_(
          db_->prepare("INSERT INTO jobs(call_id, first_sequence, last_sequence, max_attempts, run_at, "
                       "created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?)")),
      select_job_(db_->prepare(std::string("SELECT ") + job_columns + " FROM jobs WHERE id = ?")),
      // INDEXED BY: without statistics SQLite 3.40 prefers jobs_state and sorts the whole queue, which
      // makes every claim slower as the backlog grows; the partial indexes hold exactly the rows wanted.
      select_due_(db_->prepare(std::string("SELECT ") + job_columns +
                               " FROM jobs INDEXED BY jobs_queued_due WHERE state = 'queued' AND run_at <= ? "
                               "ORDER BY run_at, id LIMIT ?")),
      select_expired_(db_->prepare(std::string("SELECT ") + job_columns +
                                   " FROM jobs INDEXED BY jobs_running_lease WHERE state = 'running' "
                                   "AND lease_expires_at < ? ORDER BY lease_expires_at LIMIT ?")),
      next_due_(
          db_->prepare("SELECT MIN(run_at) FROM jobs INDEXED BY jobs_queued_due WHERE state = 'queued'")),
      next_lease_(db_->prepare(
          "SELECT MIN(lease_expires_at) FROM jobs INDEXED BY jobs_running_lease WHERE state = 'running'")),
      update_job_(db_->prepare(
          "UPDATE jobs SET state = ?, attempts = ?, run_at = ?, lease_owner = ?, lease_expires_at = ?, "
          "last_error = ?, updated_at = ?, started_at = ?, finished_at = ? WHERE id = ?")),
      insert_result_(
          db_->prepare("INSERT INTO transcript_segments(job_id, call_id, first_sequence, last_sequence, "
                       "text, engine, latency_ms, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)")),
      select_idle_(db_->prepare("SELECT id FROM calls INDEXED BY calls_state WHERE state = 'IN_PROGRESS' AND "
                                "next_segment <= last_sequence AND last_packet_at <= ? ORDER BY last_packet_at "
                                "LIMIT 1000")),
      select_expired_gaps_(
          db_->prepare("SELECT DISTINCT call_id FROM call_gaps WHERE lost = 0 AND opened_at <= ? "
                       "LIMIT 1000")),
      select_timed_out_(
          db_->prepare("SELECT id FROM calls INDEXED BY calls_state WHERE state = 'IN_PROGRESS' AND "
                       "last_packet_at <= ? ORDER BY last_packet_at LIMIT 1000")),
      mark_lost_(db_->prepare("UPDATE call_gaps SET lost = 1 WHERE call_id = ? AND first_sequence = ?")),
      insert_transition_(
          db_->prepare("INSERT INTO call_transitions(call_id, from_state, to_state, reason, at) "
                       "VALUES (?, ?, ?, ?, ?)")),
      flag_late_(db_->prepare("UPDATE packets SET late = 1 WHERE call_id = ? AND sequence = ?")),
      set_media_(db_->prepare("UPDATE calls SET media_format = ?, media_packet_ms = ? WHERE id = ?")),
      set_track_(db_->prepare("UPDATE calls SET track = ?, primary_id = ? WHERE id = ?")),
      insert_event_(
          db_->prepare("INSERT INTO call_events(call_id, kind, at, sequence, data) VALUES (?, ?, ?, ?, ?)")),
      insert_log_(db_->prepare("INSERT INTO events(id, at, kind, call_id, job_id, data) VALUES (?, ?, ?, ?, ?, ?)")),
      set_log_head_(db_->prepare("UPDATE event_log_state SET last_id = ?")),
      // The oldest events first, a slice at a time: the primary key alone finds them.
      prune_cutoff_(db_->prepare(
          "SELECT MAX(id) FROM (SELECT id, at FROM events ORDER BY id LIMIT ?) WHERE at < ?")),
      prune_log_(db_->prepare("DELETE FROM events WHERE id <= ?")),
      set_pruned_(db_->prepare("UPDATE event_log_state SET pruned_through = ?")),
      upsert_partial_(db_->prepare(
          "INSERT INTO transcript_partials(job_id, call_id, attempt, text, heard_ms, updated_at) VALUES (?, ?, ?, "
          "?, ?, ?) ON CONFLICT(job_id) DO UPDATE SET attempt = excluded.attempt, text = excluded.text, "
          "heard_ms = excluded.heard_ms, updated_at = excluded.updated_at")),
      delete_partial_(db_->prepare("DELETE FROM transcript_partials WHERE job_id = ?")),
      add_to_tallies_(db_->prepare(
          "UPDATE job_tallies SET queued = queued + ?, retrying = retrying + ?, running = running + ?, "
          "succeeded = succeeded + ?, dead = dead + ?")) {
  auto head = db_->prepare("SELECT last_id FROM event_log_state");
  if (head.step()) last_event_id_ = head.column_int(0);
}

writer::~writer() = default;

bool writer::commit(std::deque<write_op>& batch, double now, bool sweep_now) {
  if (cache_.size() > options_.cache_limit) cache_.clear();
  ledger_.begin();
  jobs_.begin();
  job_rows_.clear();
  tallies_.clear();
  jobs_queued_ = false;
  const std::int64_t events_before = last_event_id_;
  pruning_ = 0;
  try {
    transaction tx(*db_);
    for (auto& op : batch) {
      apply(op, now);
      write_rows(now);
    }
    if (sweep_now) {
      sweep(now);
      write_rows(now);
    }
    for (auto* rec : ledger_.dirty()) write_call(*rec, now);
    if (last_event_id_ != events_before) set_log_head_.bind(1, last_event_id_).run();
    if (const job_tally& t = tallies_.tally(); !t.empty())
      add_to_tallies_.bind(1, t.queued)
          .bind(2, t.retrying)
          .bind(3, t.running)
          .bind(4, t.succeeded)
          .bind(5, t.dead)
          .run();
    tx.commit();
  } catch (const sqlite_error& e) {
    // The transaction rolled back: the cached trackers may hold changes that were never stored, and the
    // event ids it gave are free again.
    cache_.clear();
    last_event_id_ = events_before;
    ++failed_batches_;
    log::error("commit failed", {{"error", e.what()}, {"sqlite_code", e.code()}, {"writes", batch.size()}});
    const auto code = make_error_code(e.transient() ? errc::unavailable : errc::store_failure);
    for (auto& op : batch) op.fail(code);
    ledger_.begin();
    jobs_.begin();
    jobs_queued_ = false;
    return false;
  }
  pruned_events_ += pruning_;
  ledger_.log_committed();
  jobs_.log_committed();
  return jobs_queued_ || jobs_.queued_now();
}

void writer::write_rows(double now) {
  auto& rows = ledger_.rows();
  // The packets and events themselves were inserted by apply_ingest and apply_event; a late packet is
  // flagged.
  for (const auto& p : rows.packets)
    if (p.late) flag_late_.bind(1, std::string_view(p.call_id)).bind(2, p.sequence).run();
  for (const auto& g : rows.gaps) {
    switch (g.what) {
      case gap_row::change::opened:
        insert_gap_.bind(1, std::string_view(g.call_id)).bind(2, g.range.first).bind(3, g.range.last)
            .bind(4, g.opened_at).run();
        break;
      case gap_row::change::closed:
        delete_gap_.bind(1, std::string_view(g.call_id)).bind(2, g.range.first).run();
        break;
      case gap_row::change::lost:
        mark_lost_.bind(1, std::string_view(g.call_id)).bind(2, g.range.first).run();
        break;
    }
  }
  for (const auto& j : rows.jobs) {
    insert_job_.bind(1, std::string_view(j.call_id))
        .bind(2, j.range.first)
        .bind(3, j.range.last)
        .bind(4, std::int64_t{options_.max_attempts})
        .bind(5, now)
        .bind(6, now)
        .bind(7, now)
        .run();
    tallies_.inserted(1);
    jobs_queued_ = true;
  }
  for (const auto& t : rows.transitions) {
    insert_transition_.bind(1, std::string_view(t.call_id))
        .bind(2, t.from ? std::optional<std::string_view>(to_string(*t.from)) : std::nullopt)
        .bind(3, to_string(t.to))
        .bind(4, std::string_view(t.reason))
        .bind(5, t.at)
        .run();
  }
  write_log_rows();
  rows.clear();
  write_job_rows();
}

void writer::write_log_rows() {
  for (const auto& e : ledger_.rows().log) {
    insert_log_.bind(1, ++last_event_id_)
        .bind(2, e.at)
        .bind(3, to_string(e.kind))
        .bind(4, std::string_view(e.call_id))
        .bind(5, e.job_id)
        .bind(6, std::string_view(e.data))
        .run();
  }
  ledger_.rows().log.clear();
}

void writer::write_job_rows() {
  auto& rows = jobs_.rows();
  tallies_.written(rows);
  for (const auto& j : rows.jobs) {
    update_job_.bind(1, to_string(j.state))
        .bind(2, std::int64_t{j.attempts})
        .bind(3, j.run_at)
        .bind(4, j.lease_owner ? std::optional<std::string_view>(*j.lease_owner) : std::nullopt)
        .bind(5, j.lease_expires_at)
        .bind(6, j.last_error ? std::optional<std::string_view>(*j.last_error) : std::nullopt)
        .bind(7, j.updated_at)
        .bind(8, j.started_at)
        .bind(9, j.finished_at)
        .bind(10, j.id)
        .run();
  }
  for (const auto& r : rows.results) {
    insert_result_.bind(1, r.job_id)
        .bind(2, std::string_view(r.call_id))
        .bind(3, r.range.first)
        .bind(4, r.range.last)
        .bind(5, std::string_view(r.text))
        .bind(6, std::string_view(r.engine))
        .bind(7, r.latency_ms)
        .bind(8, r.created_at)
        .run();
  }
  for (const auto& c : rows.partials) {
    if (!c.row) {
      delete_partial_.bind(1, c.job_id).run();
      continue;
    }
    const partial_row& p = *c.row;
    upsert_partial_.bind(1, p.job_id)
        .bind(2, std::string_view(p.call_id))
        .bind(3, std::int64_t{p.attempt})
        .bind(4, std::string_view(p.text))
        .bind(5, p.heard_ms)
        .bind(6, p.updated_at)
        .run();
  }
  rows.clear();
}

void writer::notify_jobs_queued() const {
  if (listener_) listener_();
}

void writer::answer(std::deque<write_op>& batch, bool jobs_queued) const {
  if (jobs_queued) notify_jobs_queued();
  for (auto& op : batch) op.complete();
}

void writer::apply(write_op& op, double now) {
  if (jobs_.apply(op, [this](std::int64_t id) { return load_job(id); }, now)) return;
  std::visit(
      [&](auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, ingest_op>) o.r = apply_ingest(o.p, now);
        else if constexpr (std::is_same_v<T, claim_op>) o.r = apply_claim(o, now);
        else if constexpr (std::is_same_v<T, cut_op>) o.r = apply_cut(o, now);
        else if constexpr (std::is_same_v<T, end_op>) o.r = apply_end(o.call_id, o.reason, now);
        else if constexpr (std::is_same_v<T, declare_op>) o.r = apply_declare(o, now);
        else if constexpr (std::is_same_v<T, archive_op>) o.r = apply_archive(o, now);
        else if constexpr (std::is_same_v<T, event_op>)
          o.r = apply_event(o, now);
      },
      op.v);
}

result<ingest_outcome> writer::apply_ingest(const packet& p, double now) {
  // The packet was checked against the call's declaration as its node last saw it; a declaration made
  // since (by another request or node) makes that check worthless.
  if (!call_ledger::media_matches(load(p.call_id), p)) return errc::media_changed;
  bool created = false;
  call_record& rec = load_or_create(p.call_id, now, created, "first packet");
  // What the sequence held before. A call that takes packets gets this one at once (a sequence that
  // held one stores nothing: the ledger then decides between duplicate and conflict).
  std::optional<std::string> stored;
  const auto read_stored = [&] {
    select_packet_data_.bind(1, std::string_view(p.call_id)).bind(2, p.sequence);
    if (select_packet_data_.step()) stored = select_packet_data_.column_text(0);
    select_packet_data_.reset();
  };
  if (rec.state != call_state::in_progress) {
    read_stored();
  } else {
    insert_packet_.bind(1, std::string_view(p.call_id))
        .bind(2, p.sequence)
        .bind(3, std::string_view(p.data))
        .bind(4, p.timestamp)
        .bind(5, now)
        .run();
    if (db_->changes() == 0) read_stored();
  }
  auto out = ledger_.ingest(rec, p, stored, now);
  if (out) out->call_created = created;
  return out;
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
    for (const auto& id : ids)
      if (call_record* rec = load(id)) ledger_.expire_gaps(*rec, now);
  }
  if (options_.idle_timeout > 0) {
    collect(select_timed_out_, now - options_.idle_timeout);
    for (const auto& id : ids)
      if (call_record* rec = load(id)) ledger_.end_if_timed_out(*rec, now);
  }
  collect(select_idle_, now - options_.segment_idle);
  for (const auto& id : ids)
    if (call_record* rec = load(id)) ledger_.cut_if_idle(*rec, now);
  prune_events(now);
}

void writer::prune_events(double now) {
  if (options_.event_retention <= 0 || now - last_prune_ < 1.0) return;
  last_prune_ = now;
  prune_cutoff_.bind(1, static_cast<std::int64_t>(options_.prune_slice)).bind(2, now - options_.event_retention);
  std::optional<std::int64_t> cutoff;
  if (prune_cutoff_.step()) cutoff = prune_cutoff_.column_optional_int(0);
  prune_cutoff_.reset();
  if (!cutoff) return;
  prune_log_.bind(1, *cutoff).run();
  pruning_ += static_cast<std::uint64_t>(db_->changes());
  set_pruned_.bind(1, *cutoff).run();
}

result<bool> writer::apply_cut(const cut_op& op, double now) {
  call_record* rec = load(op.call_id);
  if (!rec) return errc::not_found;
  return ledger_.cut(*rec, op.range, now);
}

result<call_state> writer::apply_end(const std::string& call_id, const std::string& reason, double now) {
  call_record* rec = load(call_id);
  if (!rec) return errc::not_found;
  return ledger_.end(*rec, reason, now);
}

result<declare_outcome> writer::apply_declare(const declare_op& op, double now) {
  bool created = false;
  call_record& rec = load_or_create(op.call_id, now, created, "media declared");
  auto out = ledger_.declare(rec, op.media, op.track);
  if (out && rec.media_dirty) {
    set_media_.bind(1, std::string_view(op.media.format)).bind(2, op.media.packet_ms)
        .bind(3, std::string_view(op.call_id)).run();
    rec.media_dirty = false;
  }
  if (out && rec.track_dirty) {
    set_track_.bind(1, rec.track ? std::optional<std::string_view>(*rec.track) : std::nullopt)
        .bind(2, rec.primary ? std::optional<std::string_view>(*rec.primary) : std::nullopt)
        .bind(3, std::string_view(op.call_id))
        .run();
    rec.track_dirty = false;
  }
  if (out) out->created = created;
  return out;
}

result<std::int64_t> writer::apply_event(event_op& op, double now) {
  auto recorded = ledger_.record_event(load(op.e.call_id), op.e, now);
  if (!recorded) return recorded.error();
  // Inserted at once, like a packet: the database numbers it, and the number is the answer.
  const call_event& e = op.e;
  insert_event_.bind(1, std::string_view(e.call_id))
      .bind(2, std::string_view(e.kind))
      .bind(3, e.at)
      .bind(4, e.sequence)
      .bind(5, std::string_view(e.data))
      .run();
  op.e.id = db_->last_insert_rowid();
  return op.e.id;
}

result<call_state> writer::apply_archive(const archive_op& op, double now) {
  call_record* rec = load(op.call_id);
  if (!rec) return errc::not_found;
  return ledger_.archive(*rec, now);
}

result<claim_result> writer::apply_claim(const claim_op& op, double now) {
  const auto before_now = [&](statement& query, std::size_t limit) {
    return read_jobs(query.bind(1, now).bind(2, static_cast<std::int64_t>(limit)));
  };
  const claim_reads reads{
      [&](std::size_t limit) { return before_now(select_due_, limit); },
      [&](std::size_t limit) { return before_now(select_expired_, limit); },
      [&] { return read_queue_times(); },
  };
  return jobs_.claim(reads, op.owner, op.limit, op.lease, now);
}

job* writer::load_job(std::int64_t id) {
  // Read again even when this batch read it before: the database holds what the ledger changed since.
  select_job_.bind(1, id);
  job* j = nullptr;
  if (select_job_.step()) j = keep_job(read_job(select_job_));
  select_job_.reset();
  return j;
}

job* writer::keep_job(job j) {
  const auto id = j.id;
  tallies_.read(j);
  return &(job_rows_[id] = std::move(j));
}

std::vector<job*> writer::read_jobs(statement& query) {
  std::vector<job*> out;
  // The statement is bound already; writing first does not disturb it (another statement).
  write_job_rows();
  while (query.step()) out.push_back(keep_job(read_job(query)));
  query.reset();
  return out;
}

queue_times writer::read_queue_times() {
  write_job_rows();
  queue_times t;
  if (next_due_.step()) t.next_due = next_due_.column_optional_double(0);
  next_due_.reset();
  if (next_lease_.step()) t.next_expiry = next_lease_.column_optional_double(0);
  next_lease_.reset();
  return t;
}

call_record* writer::load(const std::string& id) {
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
  rec->track = q.column_optional_text(19);
  rec->primary = q.column_optional_text(20);
  rec->row = q.column_int(21);
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
  rec->seq = ledger_.sequencer(highest, open, lost, next_segment);
  return cache_.emplace(id, std::move(rec)).first->second.get();
}

call_record& writer::load_or_create(const std::string& id, double now, bool& created, std::string_view reason) {
  if (call_record* rec = load(id)) return *rec;
  insert_call_.bind(1, std::string_view(id)).bind(2, now).bind(3, now).bind(4, now).run();
  ledger_.created(id, reason, now);
  created = true;
  auto& rec = *cache_.emplace(id, std::make_unique<call_record>(ledger_.fresh(id, now))).first->second;
  rec.row = db_->last_insert_rowid();
  return rec;
}

void writer::write_call(call_record& rec, double now) {
  // The row is found by its rowid (one B-tree seek instead of two: the key's index, then the table) and
  // checked by its id. Should the rowid have moved (a VACUUM renumbers the rowids of a table without an
  // INTEGER PRIMARY KEY), it is looked up again.
  const auto update = [&] {
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
        .bind(18, rec.row)
        .bind(19, std::string_view(rec.id))
        .run();
    return db_->changes() > 0;
  };
  if (!update()) {
    select_call_row_.bind(1, std::string_view(rec.id));
    const bool found = select_call_row_.step();
    rec.row = found ? select_call_row_.column_int(0) : 0;
    select_call_row_.reset();
    if (!found || !update()) throw sqlite_error(SQLITE_NOTFOUND, "call " + rec.id + " has no row to update");
  }
  if (rec.state_dirty) {
    update_call_state_.bind(1, to_string(rec.state))
        .bind(2, rec.ended_at)
        .bind(3, rec.end_reason ? std::optional<std::string_view>(*rec.end_reason) : std::nullopt)
        .bind(4, rec.state_changed_at)
        .bind(5, rec.row)
        .bind(6, std::string_view(rec.id))
        .run();
    rec.state_dirty = false;
  }
  rec.dirty = false;
  rec.gaps_dirty = false;  // mirrored row by row as they changed (write_rows)
}

}  // namespace aipbx::sqlite
