#include "storage/postgres/pg_writer.hpp"

#include "log/log.hpp"
#include "storage/postgres/pg_migrations.hpp"

#include <algorithm>

namespace aipbx::pg {

const char* const job_columns =
    "id, call_id, first_sequence, last_sequence, state, attempts, max_attempts, run_at, lease_owner, "
    "lease_expires_at, last_error, created_at, updated_at, started_at, finished_at";

job read_job(const result_set& r, int row) {
  job j;
  j.id = r.int64(row, 0);
  j.call_id = r.text(row, 1);
  j.first_sequence = r.int64(row, 2);
  j.last_sequence = r.int64(row, 3);
  j.state = parse_job_state(r.text_view(row, 4)).value_or(job_state::queued);
  j.attempts = static_cast<int>(r.int64(row, 5));
  j.max_attempts = static_cast<int>(r.int64(row, 6));
  j.run_at = r.float8(row, 7);
  j.lease_owner = r.optional_text(row, 8);
  j.lease_expires_at = r.optional_float8(row, 9);
  j.last_error = r.optional_text(row, 10);
  j.created_at = r.float8(row, 11);
  j.updated_at = r.float8(row, 12);
  j.started_at = r.optional_float8(row, 13);
  j.finished_at = r.optional_float8(row, 14);
  return j;
}

namespace {

constexpr const char* record_columns =
    "id, state, last_sequence, packets_received, duplicate_packets, out_of_order_packets, gaps_opened, "
    "first_timestamp, last_timestamp, next_segment, last_packet_at, late_packets, jobs_total, jobs_succeeded, "
    "jobs_dead, ended_at, end_reason, state_changed_at, media_format, media_packet_ms";

std::string fenced(const char* set) {
  return std::string("UPDATE jobs SET ") + set +
         " WHERE id = $1 AND state = 'running' AND lease_owner = $2 AND attempts = $3 RETURNING call_id";
}

void sort_unique(std::vector<std::string>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

}  // namespace

writer::writer(const pg_options& options)
    : options_(options),
      ledger_({{options.segment_packets, options.window}, options.segment_idle, options.idle_timeout}) {}

writer::~writer() = default;

void writer::reset() {
  ledger_.begin();
  calls_.clear();
  created_.clear();
  existing_.clear();
  inserted_.clear();
  sweep_ = {};
  sweeping_ = false;
  jobs_queued_ = false;
}

bool writer::commit(connection& c, std::deque<write_op>& batch, double now, bool sweep_now,
                    const std::string& token) {
  for (int attempt = 1;; ++attempt) {
    reset();
    try {
      run(c, batch, now, sweep_now, token);  // BEGIN ... COMMIT
      if (known_.size() > known_limit) known_.clear();
      for (const auto& [id, rec] : calls_) known_.insert(id);
      break;
    } catch (const pg_error& e) {
      c.rollback();
      if (e.retryable() && attempt < 10) {
        log::debug("transaction retried", {{"error", e.what()}, {"attempt", attempt}});
        continue;
      }
      ++failed_batches_;
      log::error("commit failed", {{"error", e.what()}, {"sqlstate", e.sqlstate()}, {"writes", batch.size()}});
      const auto code = make_error_code(e.unavailable() ? errc::unavailable : errc::store_failure);
      for (auto& op : batch) op.fail(code);
      reset();
      return false;
    } catch (const std::exception& e) {
      c.rollback();
      ++failed_batches_;
      log::error("commit failed", {{"error", e.what()}, {"writes", batch.size()}});
      for (auto& op : batch) op.fail(make_error_code(errc::store_failure));
      reset();
      return false;
    }
  }
  ledger_.log_committed();
  return jobs_queued_;
}

void writer::run(connection& c, std::deque<write_op>& batch, double now, bool sweep_now, const std::string& token) {
  // Every call this batch may touch, locked up front in id order (the same order on every node).
  std::vector<std::string> new_ids, lock_ids;
  std::vector<std::int64_t> job_ids;
  bool claims = false;
  for (auto& op : batch) {
    std::visit(
        [&](auto& o) {
          using T = std::decay_t<decltype(o)>;
          // Only a packet checked against no declaration may create its call (see apply_ingest).
          if constexpr (std::is_same_v<T, ingest_op>) (o.p.media ? lock_ids : new_ids).push_back(o.p.call_id);
          else if constexpr (std::is_same_v<T, declare_op>) new_ids.push_back(o.call_id);
          else if constexpr (std::is_same_v<T, end_op> || std::is_same_v<T, archive_op>) lock_ids.push_back(o.call_id);
          else if constexpr (std::is_same_v<T, finish_op> || std::is_same_v<T, replay_op>) job_ids.push_back(o.id);
          else if constexpr (std::is_same_v<T, claim_op>) claims = true;
        },
        op.v);
  }
  const auto add_ids = [&](const result_set& r) {
    for (int i = 0; i < r.rows(); ++i) lock_ids.push_back(r.text(i, 0));
  };
  // A batch of packets alone costs two round trips: BEGIN, creating, locking and reading its calls in one
  // pipeline; its writes and COMMIT in another. Job operations and sweeps first look up the calls they
  // will touch.
  bool begun = false;
  if (!job_ids.empty() || claims || sweep_now) {
    c.exec("BEGIN");
    begun = true;
  }
  if (!job_ids.empty())
    add_ids(c.exec("SELECT DISTINCT call_id FROM jobs WHERE id = ANY($1::bigint[])", params{}.add_ints(job_ids)));
  if (claims)
    add_ids(c.exec("SELECT DISTINCT call_id FROM jobs WHERE state = 'running' AND lease_expires_at < $1 "
                   "AND attempts >= max_attempts LIMIT 1000",
                   params{}.add(now)));
  if (sweep_now) {
    // One node sweeps at a time; the lock is the transaction's and goes with its end.
    sweeping_ = c.exec("SELECT pg_try_advisory_xact_lock($1::int, $2::int)",
                       params{}.add(std::int64_t{lock_space}).add(std::int64_t{sweep_lock}))
                    .boolean(0, 0);
    if (sweeping_) {
      const auto collect = [&](const char* sql, double before, std::vector<std::string>& out) {
        auto r = c.exec(sql, params{}.add(before));
        for (int i = 0; i < r.rows(); ++i) {
          out.push_back(r.text(i, 0));
          lock_ids.push_back(out.back());
        }
      };
      if (options_.window.seconds > 0)
        collect("SELECT DISTINCT call_id FROM call_gaps WHERE NOT lost AND opened_at <= $1 LIMIT 1000",
                now - options_.window.seconds, sweep_.expired_gaps);
      if (options_.idle_timeout > 0)
        collect("SELECT id FROM calls WHERE state = 'IN_PROGRESS' AND last_packet_at <= $1 "
                "ORDER BY last_packet_at LIMIT 1000",
                now - options_.idle_timeout, sweep_.timed_out);
      collect("SELECT id FROM calls WHERE next_segment <= last_sequence AND state = 'IN_PROGRESS' AND "
              "last_packet_at <= $1 ORDER BY last_packet_at LIMIT 1000",
              now - options_.segment_idle, sweep_.idle);
    }
  }

  sort_unique(new_ids);
  // A call this writer saw committed exists for good (no call is ever deleted): it is only locked.
  std::erase_if(new_ids, [&](const std::string& id) {
    if (!known_.contains(id)) return false;
    lock_ids.push_back(id);
    return true;
  });
  lock_ids.insert(lock_ids.end(), new_ids.begin(), new_ids.end());
  sort_unique(lock_ids);
  load_calls(c, begun, new_ids, lock_ids, batch, now);

  for (auto& op : batch) {
    std::visit(
        [&](auto& o) {
          using T = std::decay_t<decltype(o)>;
          if constexpr (std::is_same_v<T, ingest_op>) o.r = apply_ingest(o.p, now);
          else if constexpr (std::is_same_v<T, claim_op>) o.r = apply_claim(c, o, now);
          else if constexpr (std::is_same_v<T, renew_op>) o.r = apply_renew(c, o, now);
          else if constexpr (std::is_same_v<T, finish_op>) o.r = apply_finish(c, o, now);
          else if constexpr (std::is_same_v<T, release_op>) o.r = apply_release(c, o, now);
          else if constexpr (std::is_same_v<T, replay_op>) o.r = apply_replay(c, o, now);
          else if constexpr (std::is_same_v<T, end_op>) o.r = apply_end(o.call_id, o.reason, now);
          else if constexpr (std::is_same_v<T, declare_op>) o.r = apply_declare(o);
          else o.r = apply_archive(o.call_id, now);
        },
        op.v);
  }
  if (sweeping_) sweep(now);
  auto writes = flush(now, token);
  writes.push_back({"COMMIT", {}});
  c.exec_pipeline(writes);
}

void writer::load_calls(connection& c, bool begun, const std::vector<std::string>& new_ids,
                        const std::vector<std::string>& lock_ids, const std::deque<write_op>& batch, double now) {
  std::vector<connection::statement> reads;
  if (!begun) reads.push_back({"BEGIN", {}});
  const std::size_t created_at = reads.size();
  if (!new_ids.empty())
    reads.push_back({"INSERT INTO calls(id, created_at, updated_at, state_changed_at) SELECT id, $2, $2, $2 FROM "
                     "unnest($1::text[]) AS t(id) ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id",
                     params{}.add_texts(new_ids).add(now)});
  const std::size_t locked_at = reads.size();
  if (!lock_ids.empty()) {
    reads.push_back({std::string("SELECT ") + record_columns +
                         " FROM calls WHERE id = ANY($1::text[]) ORDER BY id FOR UPDATE",
                     params{}.add_texts(lock_ids)});
    reads.push_back({"SELECT call_id, first_sequence, last_sequence, opened_at, lost FROM call_gaps WHERE call_id = "
                     "ANY($1::text[]) ORDER BY call_id, first_sequence",
                     params{}.add_texts(lock_ids)});
  }
  // Stored packets with the sequences of this batch's packets: only sequences at or below a call's highest
  // can be (the call is locked, so no other transaction adds any meanwhile).
  std::vector<std::string> ids;
  std::vector<std::int64_t> seqs;
  for (const auto& op : batch) {
    if (const auto* in = std::get_if<ingest_op>(&op.v)) {
      ids.push_back(in->p.call_id);
      seqs.push_back(in->p.sequence);
    }
  }
  const std::size_t existing_at = reads.size();
  if (!ids.empty())
    reads.push_back({"SELECT p.call_id, p.sequence, p.data FROM unnest($1::text[], $2::bigint[]) AS k(call_id, sequence) "
                     "JOIN calls c ON c.id = k.call_id AND k.sequence <= c.last_sequence "
                     "JOIN packets p ON p.call_id = k.call_id AND p.sequence = k.sequence",
                     params{}.add_texts(ids).add_ints(seqs)});
  if (reads.empty()) return;
  auto results = c.exec_pipeline(reads);
  if (!new_ids.empty()) {
    // The first write of the batch that names a call it creates gives the creation's reason.
    std::map<std::string, const char*, std::less<>> creation_reason;
    for (const auto& op : batch) {
      if (const auto* in = std::get_if<ingest_op>(&op.v); in && !in->p.media)
        creation_reason.try_emplace(in->p.call_id, "first packet");
      if (const auto* d = std::get_if<declare_op>(&op.v)) creation_reason.try_emplace(d->call_id, "media declared");
    }
    const auto& r = results[created_at];
    for (int i = 0; i < r.rows(); ++i) {
      std::string id = r.text(i, 0);
      ledger_.created(id, creation_reason.at(id), now);
      created_.insert(std::move(id));
    }
  }
  if (!lock_ids.empty()) read_records(results[locked_at], results[locked_at + 1]);
  if (!ids.empty()) {
    const auto& r = results[existing_at];
    for (int i = 0; i < r.rows(); ++i) existing_.emplace(std::pair{r.text(i, 0), r.int64(i, 1)}, r.bytes(i, 2));
  }
}

void writer::read_records(const result_set& r, const result_set& g) {
  for (int i = 0; i < r.rows(); ++i) {
    auto rec = std::make_unique<call_record>();
    rec->id = r.text(i, 0);
    rec->state = parse_call_state(r.text_view(i, 1)).value_or(call_state::in_progress);
    rec->packets_received = r.int64(i, 3);
    rec->duplicate_packets = r.int64(i, 4);
    rec->out_of_order_packets = r.int64(i, 5);
    rec->gaps_opened = r.int64(i, 6);
    rec->first_timestamp = r.optional_float8(i, 7);
    rec->last_timestamp = r.optional_float8(i, 8);
    rec->last_packet_at = r.optional_float8(i, 10);
    rec->late_packets = r.int64(i, 11);
    rec->jobs_total = r.int64(i, 12);
    rec->jobs_succeeded = r.int64(i, 13);
    rec->jobs_dead = r.int64(i, 14);
    rec->ended_at = r.optional_float8(i, 15);
    rec->end_reason = r.optional_text(i, 16);
    rec->state_changed_at = r.float8(i, 17);
    if (!r.is_null(i, 18)) rec->media = media_declaration{r.text(i, 18), r.int64(i, 19)};
    // The sequencer is rebuilt below with the call's gaps; highest and next_segment wait in it.
    rec->seq = ledger_.sequencer(r.int64(i, 2), {}, {}, r.int64(i, 9));
    calls_.emplace(rec->id, std::move(rec));
  }
  struct gaps_of {
    std::vector<open_gap> open;
    std::vector<seq_range> lost;
  };
  std::map<std::string, gaps_of, std::less<>> gaps;
  for (int i = 0; i < g.rows(); ++i) {
    auto& entry = gaps[g.text(i, 0)];
    const seq_range range{g.int64(i, 1), g.int64(i, 2)};
    if (g.boolean(i, 4)) entry.lost.push_back(range);
    else entry.open.push_back({range, g.float8(i, 3)});
  }
  for (auto& [id, entry] : gaps) {
    auto it = calls_.find(id);
    if (it == calls_.end()) continue;
    auto& rec = *it->second;
    rec.seq = ledger_.sequencer(rec.seq.tracker().highest(), entry.open, entry.lost, rec.seq.next_segment());
  }
}

void writer::lock_call(connection& c, const std::string& id) {
  auto results = c.exec_pipeline(
      {{std::string("SELECT ") + record_columns + " FROM calls WHERE id = $1 FOR UPDATE", params{}.add(std::string_view(id))},
       {"SELECT call_id, first_sequence, last_sequence, opened_at, lost FROM call_gaps WHERE call_id = $1 "
        "ORDER BY first_sequence",
        params{}.add(std::string_view(id))}});
  read_records(results[0], results[1]);
}

call_record* writer::locked(connection& c, const std::string& id) {
  if (auto it = calls_.find(id); it != calls_.end()) return it->second.get();
  lock_call(c, id);
  auto it = calls_.find(id);
  return it == calls_.end() ? nullptr : it->second.get();
}

result<ingest_outcome> writer::apply_ingest(const packet& p, double now) {
  auto it = calls_.find(p.call_id);
  // A packet checked against a declaration is never the one that creates its call.
  if (it == calls_.end()) return p.media ? errc::media_changed : errc::store_failure;
  call_record& rec = *it->second;
  // The packet was checked against the call's declaration as its node last saw it; a declaration made
  // since (by another request or node) makes that check worthless.
  if (!call_ledger::media_matches(&rec, p)) return errc::media_changed;
  bool created = false;
  if (auto c = created_.find(p.call_id); c != created_.end()) {
    created = true;
    created_.erase(c);
  }
  // What this sequence already holds, if anything: stored before, or earlier in this batch.
  std::optional<std::string_view> stored;
  if (auto in = inserted_.find(packet_key{p.call_id, p.sequence}); in != inserted_.end()) stored = in->second;
  else if (auto ex = existing_.find(std::pair{p.call_id, p.sequence}); ex != existing_.end()) stored = ex->second;
  auto out = ledger_.ingest(rec, p, stored, now);
  if (!out) return out;
  if (!out->duplicate) inserted_.emplace(packet_key{p.call_id, p.sequence}, p.data);
  out->call_created = created;
  return out;
}

void writer::sweep(double now) {
  // Each candidate is checked again under its row lock: another node may have changed it since.
  const auto each = [&](const std::vector<std::string>& ids, auto&& apply) {
    for (const auto& id : ids)
      if (auto it = calls_.find(id); it != calls_.end()) apply(*it->second);
  };
  each(sweep_.expired_gaps, [&](call_record& rec) { ledger_.expire_gaps(rec, now); });
  each(sweep_.timed_out, [&](call_record& rec) { ledger_.end_if_timed_out(rec, now); });
  each(sweep_.idle, [&](call_record& rec) { ledger_.cut_if_idle(rec, now); });
}

result<call_state> writer::apply_end(const std::string& call_id, const std::string& reason, double now) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return errc::not_found;
  return ledger_.end(*it->second, reason, now);
}

result<declare_outcome> writer::apply_declare(const declare_op& op) {
  auto it = calls_.find(op.call_id);
  if (it == calls_.end()) return errc::store_failure;  // created or locked above; cannot happen
  bool created = false;
  if (auto c = created_.find(op.call_id); c != created_.end()) {
    created = true;
    created_.erase(c);
  }
  auto out = ledger_.declare(*it->second, op.media);
  if (out) out->created = created;
  return out;
}

result<call_state> writer::apply_archive(const std::string& call_id, double now) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return errc::not_found;
  return ledger_.archive(*it->second, now);
}

void writer::job_changed(connection& c, const std::string& call_id, job_state from, job_state to, double now) {
  if (call_record* rec = locked(c, call_id)) ledger_.job_changed(*rec, from, to, now);
}

result<claim_result> writer::apply_claim(connection& c, const claim_op& op, double now) {
  claim_result out;
  const auto limit = static_cast<std::int64_t>(op.limit);
  // Due jobs nobody else is taking right now: SKIP LOCKED passes over rows another node is claiming.
  auto due = c.exec(std::string("UPDATE jobs SET state = 'running', attempts = attempts + 1, lease_owner = $1, "
                                "lease_expires_at = $2, started_at = COALESCE(started_at, $3), updated_at = $3 "
                                "WHERE id IN (SELECT id FROM jobs WHERE state = 'queued' AND run_at <= $3 "
                                "ORDER BY run_at, id LIMIT $4 FOR UPDATE SKIP LOCKED) RETURNING ") +
                        job_columns,
                    params{}.add(std::string_view(op.owner)).add(now + op.lease).add(now).add(limit));
  for (int i = 0; i < due.rows(); ++i) out.jobs.push_back(read_job(due, i));
  std::sort(out.jobs.begin(), out.jobs.end(),
            [](const job& a, const job& b) { return a.run_at != b.run_at ? a.run_at < b.run_at : a.id < b.id; });
  if (static_cast<std::int64_t>(out.jobs.size()) < limit) {
    // Leases that expired: their worker (or its node) died or hung. The interrupted attempt counts.
    auto expired = c.exec(
        "SELECT id, attempts, max_attempts, call_id FROM jobs WHERE state = 'running' AND lease_expires_at < $1 "
        "ORDER BY lease_expires_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        params{}.add(now).add(limit - static_cast<std::int64_t>(out.jobs.size())));
    std::vector<std::int64_t> take;
    for (int i = 0; i < expired.rows(); ++i) {
      const std::int64_t id = expired.int64(i, 0);
      if (expired.int64(i, 1) < expired.int64(i, 2)) {
        take.push_back(id);
        continue;
      }
      const std::string call = expired.text(i, 3);
      c.exec("UPDATE jobs SET state = 'dead', lease_owner = NULL, lease_expires_at = NULL, last_error = $1, "
             "finished_at = $2, updated_at = $2 WHERE id = $3",
             params{}.add(std::string_view("lease expired on the last attempt")).add(now).add(id));
      job_changed(c, call, job_state::running, job_state::dead, now);
      log::error("ai job dead", {{"job_id", id}, {"error", "lease expired on the last attempt"}});
    }
    if (!take.empty()) {
      auto leased = c.exec(std::string("UPDATE jobs SET attempts = attempts + 1, lease_owner = $1, "
                                       "lease_expires_at = $2, updated_at = $3 WHERE id = ANY($4::bigint[]) "
                                       "RETURNING ") +
                               job_columns,
                           params{}.add(std::string_view(op.owner)).add(now + op.lease).add(now).add_ints(take));
      for (int i = 0; i < leased.rows(); ++i) out.jobs.push_back(read_job(leased, i));
    }
  }
  if (static_cast<std::int64_t>(out.jobs.size()) < limit) {
    auto next = c.exec(
        "SELECT (SELECT MIN(run_at) FROM jobs WHERE state = 'queued'), "
        "(SELECT MIN(lease_expires_at) FROM jobs WHERE state = 'running')");
    std::optional<double> at = next.optional_float8(0, 0);
    if (auto lease = next.optional_float8(0, 1); lease && (!at || *lease < *at)) at = lease;
    out.next_run_at = at;
  }
  return out;
}

result<bool> writer::apply_renew(connection& c, const renew_op& op, double now) {
  auto r = c.exec(fenced("lease_expires_at = $4, updated_at = $5"),
                  params{}.add(op.id).add(std::string_view(op.owner)).add(std::int64_t{op.attempt}).add(now + op.lease)
                      .add(now));
  return r.rows() > 0;
}

result<bool> writer::apply_finish(connection& c, const finish_op& op, double now) {
  // Fenced by owner and attempt: a worker whose lease was taken over records nothing.
  const auto fence = [&] { return params{}.add(op.id).add(std::string_view(op.owner)).add(std::int64_t{op.attempt}); };
  job_state to;
  std::string call;
  if (const auto* ok = std::get_if<job_succeeded>(&op.outcome)) {
    auto r = c.exec(fenced("state = 'succeeded', lease_owner = NULL, lease_expires_at = NULL, finished_at = $4, "
                           "updated_at = $4"),
                    fence().add(now));
    if (r.rows() == 0) return false;
    call = r.text(0, 0);
    c.exec("INSERT INTO transcript_segments(job_id, call_id, first_sequence, last_sequence, text, engine, "
           "latency_ms, created_at) SELECT id, call_id, first_sequence, last_sequence, $1, $2, $3, $4 FROM jobs "
           "WHERE id = $5",
           params{}.add(std::string_view(ok->text)).add(std::string_view(ok->engine)).add(ok->latency_ms).add(now)
               .add(op.id));
    to = job_state::succeeded;
  } else if (const auto* retry = std::get_if<job_retry>(&op.outcome)) {
    auto r = c.exec(fenced("state = 'queued', lease_owner = NULL, lease_expires_at = NULL, last_error = $4, "
                           "run_at = $5, updated_at = $6"),
                    fence().add(std::string_view(retry->error)).add(retry->run_at).add(now));
    return r.rows() > 0;
  } else {
    auto r = c.exec(fenced("state = 'dead', lease_owner = NULL, lease_expires_at = NULL, last_error = $4, "
                           "finished_at = $5, updated_at = $5"),
                    fence().add(std::string_view(std::get<job_dead>(op.outcome).error)).add(now));
    if (r.rows() == 0) return false;
    call = r.text(0, 0);
    to = job_state::dead;
  }
  job_changed(c, call, job_state::running, to, now);
  return true;
}

result<bool> writer::apply_release(connection& c, const release_op& op, double now) {
  auto r = c.exec(fenced("state = 'queued', attempts = attempts - 1, lease_owner = NULL, lease_expires_at = NULL, "
                         "run_at = $4, updated_at = $4"),
                  params{}.add(op.id).add(std::string_view(op.owner)).add(std::int64_t{op.attempt}).add(now));
  const bool released = r.rows() > 0;
  if (released) jobs_queued_ = true;
  return released;
}

result<job> writer::apply_replay(connection& c, const replay_op& op, double now) {
  auto r = c.exec(std::string("UPDATE jobs SET state = 'queued', attempts = 0, run_at = $1, finished_at = NULL, "
                              "updated_at = $1 WHERE id = $2 AND state = 'dead' RETURNING ") +
                      job_columns,
                  params{}.add(now).add(op.id));
  if (r.rows() > 0) {
    job j = read_job(r, 0);
    jobs_queued_ = true;
    job_changed(c, j.call_id, job_state::dead, job_state::queued, now);
    return j;
  }
  auto exists = c.exec("SELECT 1 FROM jobs WHERE id = $1", params{}.add(op.id));
  return exists.rows() > 0 ? errc::job_not_dead : errc::not_found;
}

std::vector<connection::statement> writer::flush(double now, const std::string& token) {
  std::vector<connection::statement> out;
  const auto& rows = ledger_.rows();
  if (!rows.packets.empty()) {
    struct {
      std::vector<std::string> call_id;
      std::vector<std::int64_t> sequence;
      std::vector<std::string_view> data;
      std::vector<double> timestamp;
      std::vector<bool> late;
    } p;
    for (const auto& r : rows.packets) {
      p.call_id.push_back(r.call_id);
      p.sequence.push_back(r.sequence);
      p.data.push_back(r.data);
      p.timestamp.push_back(r.timestamp);
      p.late.push_back(r.late);
    }
    out.push_back({"INSERT INTO packets(call_id, sequence, data, timestamp, received_at, late) SELECT c, s, d, t, $5, l "
           "FROM unnest($1::text[], $2::bigint[], $3::bytea[], $4::float8[], $6::bool[]) AS u(c, s, d, t, l)",
           params{}.add_texts(p.call_id).add_ints(p.sequence).add_bytes_array(p.data)
               .add_doubles(p.timestamp).add(now).add_bools(p.late)});
  }

  // Calls whose gaps changed: their rows are written again from the sequencer's state.
  std::vector<std::string> gap_calls, gc;
  std::vector<std::int64_t> gf, gl;
  std::vector<double> go;
  std::vector<bool> glost;
  for (auto& [id, rec] : calls_) {
    if (!rec->gaps_dirty) continue;
    gap_calls.push_back(id);
    for (const auto& r : rec->seq.tracker().missing()) {
      gc.push_back(id);
      gf.push_back(r.first);
      gl.push_back(r.last);
      go.push_back(rec->seq.gap_opened_at(r.first).value_or(now));
      glost.push_back(false);
    }
    for (const auto& r : rec->seq.lost()) {
      gc.push_back(id);
      gf.push_back(r.first);
      gl.push_back(r.last);
      go.push_back(now);
      glost.push_back(true);
    }
  }
  if (!gap_calls.empty()) {
    out.push_back({"DELETE FROM call_gaps WHERE call_id = ANY($1::text[])", params{}.add_texts(gap_calls)});
    if (!gc.empty())
      out.push_back({"INSERT INTO call_gaps(call_id, first_sequence, last_sequence, opened_at, lost) SELECT * FROM "
             "unnest($1::text[], $2::bigint[], $3::bigint[], $4::float8[], $5::bool[])",
             params{}.add_texts(gc).add_ints(gf).add_ints(gl).add_doubles(go).add_bools(glost)});
  }

  if (!rows.jobs.empty()) {
    jobs_queued_ = true;
    std::vector<std::string> call;
    std::vector<std::int64_t> first, last;
    for (const auto& r : rows.jobs) {
      call.push_back(r.call_id);
      first.push_back(r.range.first);
      last.push_back(r.range.last);
    }
    out.push_back({"INSERT INTO jobs(call_id, first_sequence, last_sequence, max_attempts, run_at, created_at, updated_at) "
           "SELECT c, f, l, $4, $5, $5, $5 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) AS u(c, f, l)",
           params{}.add_texts(call).add_ints(first).add_ints(last)
               .add(std::int64_t{options_.max_attempts}).add(now)});
  }

  if (!rows.transitions.empty()) {
    std::vector<std::string> call, to, reason;
    std::vector<std::optional<std::string>> from;
    std::vector<double> at;
    for (const auto& r : rows.transitions) {
      call.push_back(r.call_id);
      from.push_back(r.from ? std::optional<std::string>(to_string(*r.from)) : std::nullopt);
      to.emplace_back(to_string(r.to));
      reason.push_back(r.reason);
      at.push_back(r.at);
    }
    out.push_back({"INSERT INTO call_transitions(call_id, from_state, to_state, reason, at) SELECT * FROM "
           "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[])",
           params{}.add_texts(call).add_optional_texts(from).add_texts(to).add_texts(reason).add_doubles(at)});
  }

  struct {
    std::vector<std::string> id, state;
    std::vector<std::int64_t> last, expected, received, dup, ooo, gaps, missing, next_segment, late, lost, total,
        succeeded, dead;
    std::vector<std::optional<double>> first_ts, last_ts, last_packet_at, ended_at;
    std::vector<std::optional<std::string>> end_reason;
    std::vector<double> changed_at;
  } u;
  for (auto& [id, rec] : calls_) {
    if (!rec->dirty) continue;
    const auto& t = rec->seq.tracker();
    u.id.push_back(id);
    u.state.emplace_back(to_string(rec->state));
    u.last.push_back(t.highest());
    u.expected.push_back(t.expected());
    u.received.push_back(rec->packets_received);
    u.dup.push_back(rec->duplicate_packets);
    u.ooo.push_back(rec->out_of_order_packets);
    u.gaps.push_back(rec->gaps_opened);
    u.missing.push_back(t.missing_count());
    u.next_segment.push_back(rec->seq.next_segment());
    u.late.push_back(rec->late_packets);
    u.lost.push_back(rec->seq.lost_packets());
    u.total.push_back(rec->jobs_total);
    u.succeeded.push_back(rec->jobs_succeeded);
    u.dead.push_back(rec->jobs_dead);
    u.first_ts.push_back(rec->first_timestamp);
    u.last_ts.push_back(rec->last_timestamp);
    u.last_packet_at.push_back(rec->last_packet_at);
    u.ended_at.push_back(rec->ended_at);
    u.end_reason.push_back(rec->end_reason);
    u.changed_at.push_back(rec->state_changed_at);
  }
  if (!u.id.empty())
    out.push_back({"UPDATE calls SET state = u.state, last_sequence = u.last, expected_sequence = u.expected, "
           "packets_received = u.received, duplicate_packets = u.dup, out_of_order_packets = u.ooo, "
           "gaps_opened = u.gaps, missing_packets = u.missing, next_segment = u.next_segment, late_packets = u.late, "
           "lost_packets = u.lost, jobs_total = u.total, jobs_succeeded = u.succeeded, jobs_dead = u.dead, "
           "first_timestamp = u.first_ts, last_timestamp = u.last_ts, last_packet_at = u.last_packet_at, "
           "ended_at = u.ended_at, end_reason = u.end_reason, state_changed_at = u.changed_at, updated_at = $22 "
           "FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[], $6::bigint[], "
           "$7::bigint[], $8::bigint[], $9::bigint[], $10::bigint[], $11::bigint[], $12::bigint[], $13::bigint[], "
           "$14::bigint[], $15::bigint[], $16::float8[], $17::float8[], $18::float8[], $19::float8[], $20::text[], "
           "$21::float8[]) AS u(id, state, last, expected, received, dup, ooo, gaps, missing, next_segment, late, "
           "lost, total, succeeded, dead, first_ts, last_ts, last_packet_at, ended_at, end_reason, changed_at) "
           "WHERE calls.id = u.id",
           params{}
               .add_texts(u.id)
               .add_texts(u.state)
               .add_ints(u.last)
               .add_ints(u.expected)
               .add_ints(u.received)
               .add_ints(u.dup)
               .add_ints(u.ooo)
               .add_ints(u.gaps)
               .add_ints(u.missing)
               .add_ints(u.next_segment)
               .add_ints(u.late)
               .add_ints(u.lost)
               .add_ints(u.total)
               .add_ints(u.succeeded)
               .add_ints(u.dead)
               .add_optional_doubles(u.first_ts)
               .add_optional_doubles(u.last_ts)
               .add_optional_doubles(u.last_packet_at)
               .add_optional_doubles(u.ended_at)
               .add_optional_texts(u.end_reason)
               .add_doubles(u.changed_at)
               .add(now)});

  std::vector<std::string> media_ids, media_formats;
  std::vector<std::int64_t> media_ms;
  for (auto& [id, rec] : calls_) {
    if (!rec->media_dirty) continue;
    media_ids.push_back(id);
    media_formats.push_back(rec->media->format);
    media_ms.push_back(rec->media->packet_ms);
  }
  if (!media_ids.empty())
    out.push_back({"UPDATE calls SET media_format = u.f, media_packet_ms = u.ms FROM unnest($1::text[], $2::text[], "
                   "$3::bigint[]) AS u(id, f, ms) WHERE calls.id = u.id",
                   params{}.add_texts(media_ids).add_texts(media_formats).add_ints(media_ms)});

  // Delivered at commit, to every node's listener (this node's own ignores its token).
  if (jobs_queued_) out.push_back({"SELECT pg_notify('aipbx_jobs', $1)", params{}.add(std::string_view(token))});
  return out;
}

}  // namespace aipbx::pg
