#include "storage/postgres/pg_writer.hpp"

#include "log/log.hpp"
#include "storage/postgres/pg_migrations.hpp"

#include <algorithm>

namespace aipbx::pg {

// A job row holds its call's key; its call's id is read from the call's row.
const char* const job_columns =
    "id, (SELECT c.id FROM calls c WHERE c.key = jobs.call_key) AS call_id, first_sequence, last_sequence, "
    "state, attempts, max_attempts, run_at, lease_owner, lease_expires_at, last_error, created_at, updated_at, "
    "started_at, finished_at";

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

connection::statement add_to_tallies(int shard, const job_tally& t) {
  return {"INSERT INTO job_tallies(shard, queued, retrying, running, succeeded, dead) "
          "VALUES ($1::int, $2, $3, $4, $5, $6) ON CONFLICT (shard) DO UPDATE SET "
          "queued = job_tallies.queued + excluded.queued, retrying = job_tallies.retrying + excluded.retrying, "
          "running = job_tallies.running + excluded.running, "
          "succeeded = job_tallies.succeeded + excluded.succeeded, dead = job_tallies.dead + excluded.dead",
          params{}
              .add(std::int64_t{shard})
              .add(t.queued)
              .add(t.retrying)
              .add(t.running)
              .add(t.succeeded)
              .add(t.dead)};
}

int take_tally_shard(connection& c) {
  // A session holds one advisory lock per shard it took; sessions are few (max_connections), so the search
  // ends after as many tries as there are writers connected.
  for (int shard = 1;; ++shard) {
    const auto taken = c.exec("SELECT pg_try_advisory_lock($1::int, $2::int)",
                              params{}.add(std::int64_t{tally_space}).add(std::int64_t{shard}));
    if (taken.boolean(0, 0)) return shard;
  }
}

namespace {

constexpr const char* record_columns =
    "id, state, last_sequence, packets_received, duplicate_packets, out_of_order_packets, gaps_opened, "
    "first_timestamp, last_timestamp, next_segment, last_packet_at, late_packets, jobs_total, "
    "jobs_succeeded, "
    "jobs_dead, ended_at, end_reason, state_changed_at, media_format, media_packet_ms, track, primary_id, version, "
    "key";

void sort_unique(std::vector<std::string>& v) {
  std::sort(v.begin(), v.end());
  v.erase(std::unique(v.begin(), v.end()), v.end());
}

// The call and sequence of each packet of a batch, as two arrays.
struct packet_key_arrays {
  std::vector<std::string> call_ids;
  std::vector<std::int64_t> sequences;
};
packet_key_arrays packet_keys(const std::deque<write_op>& batch) {
  packet_key_arrays keys;
  for (const auto& op : batch) {
    if (const auto* in = std::get_if<ingest_op>(&op.v)) {
      keys.call_ids.push_back(in->p.call_id);
      keys.sequences.push_back(in->p.sequence);
    }
  }
  return keys;
}

}  // namespace

bool kept_calls::contains(const std::string& id) const {
  aipbx::lock_guard lock(mutex_);
  return calls_.contains(id) || contended_.contains(id);
}

bool kept_calls::copy(const std::vector<std::string>& ids, std::vector<kept_call>& out) const {
  aipbx::lock_guard lock(mutex_);
  out.clear();
  for (const auto& id : ids) {
    auto it = calls_.find(id);
    if (it == calls_.end()) return false;
    out.push_back(it->second);
  }
  return true;
}

void kept_calls::put(const std::string& id, kept_call call) {
  aipbx::lock_guard lock(mutex_);
  if (auto c = contended_.find(id); c != contended_.end()) {
    if (std::chrono::steady_clock::now() < c->second) return;
    contended_.erase(c);
  }
  if (calls_.size() >= limit) calls_.clear();
  auto [it, inserted] = calls_.try_emplace(id, std::move(call));
  // Two writers that wrote the call one after the other may keep it in either order.
  if (!inserted && it->second.version < call.version) it->second = std::move(call);
}

void kept_calls::erase(const std::string& id) {
  aipbx::lock_guard lock(mutex_);
  calls_.erase(id);
}

void kept_calls::contend(const std::string& id) {
  aipbx::lock_guard lock(mutex_);
  calls_.erase(id);
  if (contended_.size() >= limit) contended_.clear();
  contended_.insert_or_assign(id, std::chrono::steady_clock::now() + contention_pause);
}

writer::writer(const pg_options& options, kept_calls& kept)
    : options_(options),
      ledger_({{options.segment_packets, options.window}, options.segment_idle, options.idle_timeout,
               options.cut_outside}),
      jobs_(ledger_, [this](const std::string& call_id) { return locked(*conn_, call_id); }),
      kept_(kept) {}

writer::~writer() = default;

void writer::reset() {
  ledger_.begin();
  jobs_.begin();
  calls_.clear();
  versions_.clear();
  keys_.clear();
  still_.clear();
  job_rows_.clear();
  tallies_.clear();
  created_.clear();
  existing_.clear();
  inserted_.clear();
  event_ops_.clear();
  events_at_.reset();
  versions_at_.reset();
  prune_at_.reset();
  wrote_events_ = false;
  sweep_ = {};
  sweeping_ = false;
  jobs_queued_ = false;
  kept_attempt_ = false;
  jobs_notice_.begin();
  events_notice_.begin();
}

writer::path_counts writer::paths() const {
  return {kept_batches_.load(std::memory_order_relaxed), read_batches_.load(std::memory_order_relaxed),
          stale_attempts_.load(std::memory_order_relaxed)};
}

bool writer::commit(connection& c, std::deque<write_op>& batch, double now, bool sweep_now,
                    const std::string& token) {
  suspects_.clear();
  for (int attempt = 1;; ++attempt) {
    reset();
    try {
      run(c, batch, now, sweep_now, token);  // BEGIN ... COMMIT
      break;
    } catch (const pg_error& e) {
      c.rollback();
      forget_calls();
      // A call kept by this writer was changed by another (see update_calls).
      const bool stale = kept_attempt_ && e.constraint() == "calls_version_kept";
      if (stale) {
        stale_attempts_.fetch_add(1, std::memory_order_relaxed);
        suspects_ = versions_;
      }
      if ((e.retryable() || stale) && attempt < 10) {
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
      forget_calls();
      ++failed_batches_;
      log::error("commit failed", {{"error", e.what()}, {"writes", batch.size()}});
      for (auto& op : batch) op.fail(make_error_code(errc::store_failure));
      reset();
      return false;
    }
  }
  ledger_.log_committed();
  jobs_.log_committed();
  (kept_attempt_ ? kept_batches_ : read_batches_).fetch_add(1, std::memory_order_relaxed);
  keep_calls();
  jobs_notice_.committed(jobs_queued_);
  events_notice_.committed(wrote_events_);
  return jobs_queued_;
}

void writer::keep_calls() {
  for (auto& [id, rec] : calls_) {
    auto version = versions_.find(id);
    auto key = keys_.find(id);
    if (version == versions_.end() || key == keys_.end()) continue;
    rec->dirty = rec->state_dirty = rec->gaps_dirty = rec->media_dirty = rec->track_dirty = false;
    kept_.put(id, kept_call{std::move(*rec), version->second, key->second});
  }
  calls_.clear();
}

void writer::forget_calls() {
  for (const auto& [id, rec] : calls_) kept_.erase(id);
}

void writer::find_contended() {
  for (const auto& [id, version] : suspects_)
    if (auto read = versions_.find(id); read != versions_.end() && read->second != version) kept_.contend(id);
  suspects_.clear();
}

writer::still_columns writer::still_columns::of(const call_record& rec) {
  return {rec.state,        rec.duplicate_packets,       rec.out_of_order_packets, rec.gaps_opened,
          rec.seq.tracker().missing_count(), rec.late_packets, rec.seq.lost_packets(), rec.jobs_succeeded,
          rec.jobs_dead,    rec.ended_at,                rec.end_reason,           rec.state_changed_at};
}

void writer::note_still() {
  for (const auto& [id, rec] : calls_) still_.try_emplace(id, still_columns::of(*rec));
}

void writer::read_versions(const result_set& r) {
  for (int i = 0; i < r.rows(); ++i) versions_.insert_or_assign(r.text(i, 0), r.int64(i, 1));
}

// A batch of packets of kept calls is one round trip (see the header). Otherwise: claims and sweeps first
// look up the calls they will touch (one round trip); then the batch creates, locks and reads its calls
// (another); then its writes and COMMIT. Every call is locked up front in id order (the
// same order on every node, whichever way), and the jobs the batch names after them.
void writer::run(connection& c, std::deque<write_op>& batch, double now, bool sweep_now, const std::string& token) {
  conn_ = &c;
  batch_plan p = plan(batch);
  std::vector<connection::statement> writes;
  kept_attempt_ = !sweep_now && load_kept(p, batch);
  if (kept_attempt_) {
    writes.push_back({"BEGIN", {}});  // the calls' UPDATE, first of the writes, locks them
  } else {
    const bool begun = find_calls(c, p, now, sweep_now);
    order_locks(p);
    load(c, begun, p, batch, now);
    find_contended();
  }
  note_still();
  for (auto& op : batch) apply(c, op, now);
  if (sweeping_) sweep(now);
  flush(writes, now, token);
  writes.push_back({"COMMIT", {}});
  auto results = c.exec_pipeline(writes);
  if (events_at_) assign_event_ids(results[*events_at_]);
  if (versions_at_) read_versions(results[*versions_at_]);
  if (prune_at_) pruned_events_.fetch_add(static_cast<std::uint64_t>(results[*prune_at_].int64(0, 0)));
}

bool writer::load_kept(const batch_plan& p, const std::deque<write_op>& batch) {
  if (p.claims || !p.job_ids.empty()) return false;
  std::vector<std::string> ids = p.new_ids;
  ids.insert(ids.end(), p.lock_ids.begin(), p.lock_ids.end());
  sort_unique(ids);
  std::vector<kept_call> copies;
  if (!kept_.copy(ids, copies)) return false;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    versions_.emplace(ids[i], copies[i].version);
    keys_.emplace(ids[i], copies[i].key);
    calls_.emplace(std::move(ids[i]), std::make_unique<call_record>(std::move(copies[i].rec)));
  }
  // A packet at or below its call's highest sequence and not missing may repeat a stored one: reading
  // that one takes the other way.
  const bool may_repeat = std::any_of(batch.begin(), batch.end(), [&](const write_op& op) {
    const auto* in = std::get_if<ingest_op>(&op.v);
    if (!in) return false;
    const auto& tracker = calls_.at(in->p.call_id)->seq.tracker();
    return in->p.sequence <= tracker.highest() && !tracker.is_missing(in->p.sequence);
  });
  if (!may_repeat) return true;
  calls_.clear();
  versions_.clear();
  keys_.clear();
  still_.clear();
  return false;
}

writer::batch_plan writer::plan(const std::deque<write_op>& batch) {
  batch_plan p;
  for (const auto& op : batch) {
    std::visit(
        [&](const auto& o) {
          using T = std::decay_t<decltype(o)>;
          // Only a packet checked against no declaration may create its call (see apply_ingest).
          if constexpr (std::is_same_v<T, ingest_op>)
            (o.p.media ? p.lock_ids : p.new_ids).push_back(o.p.call_id);
          else if constexpr (std::is_same_v<T, declare_op>)
            p.new_ids.push_back(o.call_id);
          else if constexpr (std::is_same_v<T, end_op> || std::is_same_v<T, archive_op> ||
                             std::is_same_v<T, cut_op>)
            p.lock_ids.push_back(o.call_id);
          else if constexpr (std::is_same_v<T, event_op>)
            p.lock_ids.push_back(o.e.call_id);  // an event never creates its call
          else if constexpr (std::is_same_v<T, claim_op>)
            p.claims = true;
          else {
            // Job operations: finish and replay change their call's counters, renew and release do not.
            p.job_ids.push_back(o.id);
            if constexpr (std::is_same_v<T, finish_op> || std::is_same_v<T, replay_op>)
              p.job_call_ids.push_back(o.id);
          }
        },
        op.v);
  }
  return p;
}

bool writer::find_calls(connection& c, batch_plan& p, double now, bool sweep_now) {
  // The calls of the jobs the batch names are found by load() itself, in the statement that locks calls.
  if (!p.claims && !sweep_now) return false;
  std::vector<connection::statement> reads{{"BEGIN", {}}};
  std::optional<std::size_t> expired_at, sweep_at;
  // The calls of jobs a claim may find dead (a lease expired on their last attempt).
  if (p.claims) {
    expired_at = reads.size();
    reads.push_back({"SELECT DISTINCT c.id FROM jobs j JOIN calls c ON c.key = j.call_key WHERE j.state = 'running' "
                     "AND j.lease_expires_at < $1 AND j.attempts >= j.max_attempts LIMIT 1000",
                     params{}.add(now)});
  }
  if (sweep_now) {
    sweep_at = reads.size();
    sweep_queries(reads, now);
  }
  const auto results = c.exec_pipeline(reads);
  const auto add_ids = [&](const result_set& r) {
    for (int i = 0; i < r.rows(); ++i) p.lock_ids.push_back(r.text(i, 0));
  };
  if (expired_at) add_ids(results[*expired_at]);
  if (sweep_at) {
    collect_sweep(results, *sweep_at, p);
    if (sweeping_) collect_prune(c, now);
  }
  return true;
}

void writer::sweep_queries(std::vector<connection::statement>& out, double now) const {
  // One node sweeps at a time; the lock is the transaction's and goes with its end. The candidates are
  // read in the same round trip, and dropped when another node holds the lock.
  out.push_back({"SELECT pg_try_advisory_xact_lock($1::int, $2::int)",
                 params{}.add(std::int64_t{lock_space}).add(std::int64_t{sweep_lock})});
  if (options_.window.seconds > 0)
    out.push_back({"SELECT DISTINCT call_id FROM call_gaps WHERE NOT lost AND opened_at <= $1 LIMIT 1000",
                   params{}.add(now - options_.window.seconds)});
  if (options_.idle_timeout > 0)
    out.push_back({"SELECT id FROM calls WHERE state = 'IN_PROGRESS' AND last_packet_at <= $1 "
                   "ORDER BY last_packet_at LIMIT 1000",
                   params{}.add(now - options_.idle_timeout)});
  out.push_back({"SELECT id FROM calls WHERE next_segment <= last_sequence AND state = 'IN_PROGRESS' AND "
                 "last_packet_at <= $1 ORDER BY last_packet_at LIMIT 1000",
                 params{}.add(now - options_.segment_idle)});
}

void writer::collect_sweep(const std::vector<result_set>& results, std::size_t at, batch_plan& p) {
  sweeping_ = results[at].boolean(0, 0);
  if (!sweeping_) return;
  const auto collect = [&](const result_set& r, std::vector<std::string>& out) {
    for (int i = 0; i < r.rows(); ++i) {
      out.push_back(r.text(i, 0));
      p.lock_ids.push_back(out.back());
    }
  };
  // In the order, and under the conditions, of sweep_queries.
  std::size_t next = at + 1;
  if (options_.window.seconds > 0) collect(results[next++], sweep_.expired_gaps);
  if (options_.idle_timeout > 0) collect(results[next++], sweep_.timed_out);
  collect(results[next], sweep_.idle);
}

void writer::collect_prune(connection& c, double now) {
  if (options_.event_retention <= 0 || now - last_prune_ < 1.0) return;
  last_prune_ = now;
  // The oldest rows of events first, a slice at a time: the primary key alone finds them.
  auto r = c.exec("SELECT MAX(last_id) FROM (SELECT last_id, at FROM event_batches ORDER BY last_id LIMIT $1) e "
                  "WHERE at < $2",
                  params{}.add(static_cast<std::int64_t>(options_.prune_slice)).add(now - options_.event_retention));
  if (!r.is_null(0, 0)) sweep_.prune_through = r.int64(0, 0);
}

void writer::order_locks(batch_plan& p) const {
  sort_unique(p.new_ids);
  // A call this writer saw committed exists for good (no call is ever deleted): it is only locked.
  std::erase_if(p.new_ids, [&](const std::string& id) {
    if (!kept_.contains(id)) return false;
    p.lock_ids.push_back(id);
    return true;
  });
  p.lock_ids.insert(p.lock_ids.end(), p.new_ids.begin(), p.new_ids.end());
  sort_unique(p.lock_ids);
}

void writer::load(connection& c, bool begun, const batch_plan& p, const std::deque<write_op>& batch,
                  double now) {
  std::vector<connection::statement> reads;
  if (!begun) reads.push_back({"BEGIN", {}});
  const auto add = [&](std::string sql, params values) {
    reads.push_back({std::move(sql), std::move(values)});
    return reads.size() - 1;
  };
  std::optional<std::size_t> created_at, locked_at, existing_at, jobs_at;
  if (!p.new_ids.empty())
    created_at =
        add("INSERT INTO calls(id, created_at, updated_at, state_changed_at) SELECT id, $2, $2, $2 FROM "
            "unnest($1::text[]) AS t(id) ORDER BY id ON CONFLICT (id) DO NOTHING RETURNING id",
            params{}.add_texts(p.new_ids).add(now));
  if (!p.lock_ids.empty() || !p.job_call_ids.empty()) {
    // The calls the batch names, and those of the jobs whose outcome changes their call (finish, replay).
    const bool of_jobs = !p.job_call_ids.empty();
    const std::string named = of_jobs ? " IN (SELECT unnest($1::text[]) UNION SELECT c.id FROM jobs j JOIN calls c "
                                        "ON c.key = j.call_key WHERE j.id = ANY($2::bigint[]))"
                                      : " = ANY($1::text[])";
    const auto ids = [&] {
      params values;
      values.add_texts(p.lock_ids);
      if (of_jobs) values.add_ints(p.job_call_ids);
      return values;
    };
    locked_at = add(std::string("SELECT ") + record_columns + " FROM calls WHERE id" + named +
                        " ORDER BY id FOR UPDATE",
                    ids());
    add("SELECT call_id, first_sequence, last_sequence, opened_at, lost FROM call_gaps WHERE call_id" + named +
            " ORDER BY call_id, first_sequence",
        ids());
  }
  // Stored packets with the sequences of this batch's packets: only sequences at or below a call's highest
  // can be (the call is locked, so no other transaction adds any meanwhile).
  if (auto keys = packet_keys(batch); !keys.call_ids.empty())
    existing_at = add(
        "SELECT c.id, p.sequence, p.data FROM unnest($1::text[], $2::bigint[]) AS k(call_id, sequence) "
        "JOIN calls c ON c.id = k.call_id AND k.sequence <= c.last_sequence "
        "JOIN packets p ON p.call_key = c.key AND p.sequence = k.sequence",
        params{}.add_texts(keys.call_ids).add_ints(keys.sequences));
  // Job rows are locked after call rows, in every transaction (claims, too, take jobs after the batch's
  // calls), so that two writers never wait on each other in a cycle.
  if (!p.job_ids.empty())
    jobs_at = add(std::string("SELECT ") + job_columns +
                      " FROM jobs WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
                  params{}.add_ints(p.job_ids));
  if (reads.empty()) return;
  auto results = c.exec_pipeline(reads);
  if (created_at) read_created(results[*created_at], batch, now);
  if (locked_at) read_records(results[*locked_at], results[*locked_at + 1]);
  if (existing_at) read_existing(results[*existing_at]);
  if (jobs_at) keep_jobs(results[*jobs_at]);
}

void writer::read_created(const result_set& r, const std::deque<write_op>& batch, double now) {
  // The first write of the batch that names a call it creates gives the creation's reason.
  std::map<std::string, const char*, std::less<>> creation_reason;
  for (const auto& op : batch) {
    if (const auto* in = std::get_if<ingest_op>(&op.v); in && !in->p.media)
      creation_reason.try_emplace(in->p.call_id, "first packet");
    if (const auto* d = std::get_if<declare_op>(&op.v))
      creation_reason.try_emplace(d->call_id, "media declared");
  }
  for (int i = 0; i < r.rows(); ++i) {
    std::string id = r.text(i, 0);
    ledger_.created(id, creation_reason.at(id), now);
    created_.insert(std::move(id));
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
    rec->track = r.optional_text(i, 20);
    rec->primary = r.optional_text(i, 21);
    // The sequencer is rebuilt below with the call's gaps; highest and next_segment wait in it.
    rec->seq = ledger_.sequencer(r.int64(i, 2), {}, {}, r.int64(i, 9));
    versions_.insert_or_assign(rec->id, r.int64(i, 22));
    keys_.insert_or_assign(rec->id, r.int64(i, 23));
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

void writer::read_existing(const result_set& r) {
  for (int i = 0; i < r.rows(); ++i) existing_.emplace(std::pair{r.text(i, 0), r.int64(i, 1)}, r.bytes(i, 2));
}

void writer::lock_call(connection& c, const std::string& id) {
  auto results = c.exec_pipeline(
      {{std::string("SELECT ") + record_columns + " FROM calls WHERE id = $1 FOR UPDATE", params{}.add(std::string_view(id))},
       {"SELECT call_id, first_sequence, last_sequence, opened_at, lost FROM call_gaps WHERE call_id = $1 "
        "ORDER BY first_sequence",
        params{}.add(std::string_view(id))}});
  read_records(results[0], results[1]);
  note_still();
}

call_record* writer::locked(connection& c, const std::string& id) {
  if (auto it = calls_.find(id); it != calls_.end()) return it->second.get();
  lock_call(c, id);
  auto it = calls_.find(id);
  return it == calls_.end() ? nullptr : it->second.get();
}

void writer::apply(connection& c, write_op& op, double now) {
  if (jobs_.apply(op, [this](std::int64_t id) { return find_job(id); }, now)) return;
  std::visit(
      [&](auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, ingest_op>) o.r = apply_ingest(o.p, now);
        else if constexpr (std::is_same_v<T, claim_op>) o.r = apply_claim(c, o, now);
        else if constexpr (std::is_same_v<T, cut_op>) o.r = apply_cut(o, now);
        else if constexpr (std::is_same_v<T, end_op>) o.r = apply_end(o.call_id, o.reason, now);
        else if constexpr (std::is_same_v<T, declare_op>) o.r = apply_declare(o);
        else if constexpr (std::is_same_v<T, archive_op>) o.r = apply_archive(o.call_id, now);
        else if constexpr (std::is_same_v<T, event_op>)
          apply_event(o, now);
      },
      op.v);
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

result<bool> writer::apply_cut(const cut_op& op, double now) {
  auto it = calls_.find(op.call_id);
  if (it == calls_.end()) return errc::not_found;
  return ledger_.cut(*it->second, op.range, now);
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
  auto out = ledger_.declare(*it->second, op.media, op.track);
  if (out) out->created = created;
  return out;
}

void writer::apply_event(event_op& op, double now) {
  op.r.reset();  // from an earlier run of the batch
  auto it = calls_.find(op.e.call_id);
  // A call this batch creates exists from the write that creates it on: the embedded store applies a
  // batch's writes in order, and both answer alike.
  const call_record* rec = it == calls_.end() || created_.contains(op.e.call_id) ? nullptr : it->second.get();
  if (auto recorded = ledger_.record_event(rec, op.e, now); !recorded) {
    op.r = recorded.error();
    return;
  }
  event_ops_.push_back(&op);
}

void writer::assign_event_ids(const result_set& r) {
  // One sequence numbers the rows in the order they were inserted, which is the order of event_ops_ (see
  // insert_events); RETURNING itself promises no order, so the ids are sorted.
  std::vector<std::int64_t> ids;
  ids.reserve(static_cast<std::size_t>(r.rows()));
  for (int i = 0; i < r.rows(); ++i) ids.push_back(r.int64(i, 0));
  std::sort(ids.begin(), ids.end());
  if (ids.size() != event_ops_.size())
    log::error("event ids do not match the events inserted",
               {{"ids", ids.size()}, {"events", event_ops_.size()}});
  for (std::size_t i = 0; i < event_ops_.size(); ++i) {
    event_op& op = *event_ops_[i];
    if (i < ids.size()) {
      op.e.id = ids[i];
      op.r = ids[i];
    } else {
      op.r = make_error_code(errc::store_failure);
    }
  }
}

result<call_state> writer::apply_archive(const std::string& call_id, double now) {
  auto it = calls_.find(call_id);
  if (it == calls_.end()) return errc::not_found;
  return ledger_.archive(*it->second, now);
}

result<claim_result> writer::apply_claim(connection& c, const claim_op& op, double now) {
  // SKIP LOCKED passes over the rows another transaction holds (a claim, renewal or outcome on another
  // writer or node): they are not free to take now.
  const auto before_now = [&](const char* where, std::size_t limit) {
    return keep_jobs(read_jobs_table(c, {std::string("SELECT ") + job_columns + " FROM jobs WHERE " + where +
                                             " LIMIT $2 FOR UPDATE SKIP LOCKED",
                                         params{}.add(now).add(static_cast<std::int64_t>(limit))}));
  };
  const claim_reads reads{
      [&](std::size_t limit) {
        return before_now("state = 'queued' AND run_at <= $1 ORDER BY run_at, id", limit);
      },
      [&](std::size_t limit) {
        return before_now("state = 'running' AND lease_expires_at < $1 ORDER BY lease_expires_at", limit);
      },
      [&] { return read_queue_times(c); },
  };
  return jobs_.claim(reads, op.owner, op.limit, op.lease, now);
}

job* writer::find_job(std::int64_t id) {
  auto it = job_rows_.find(id);
  return it == job_rows_.end() ? nullptr : &it->second;
}

std::vector<job*> writer::keep_jobs(const result_set& r) {
  std::vector<job*> out;
  for (int i = 0; i < r.rows(); ++i) {
    job j = read_job(r, i);
    const auto id = j.id;
    tallies_.read(j);
    out.push_back(&(job_rows_[id] = std::move(j)));
  }
  return out;
}

queue_times writer::read_queue_times(connection& c) {
  auto r = read_jobs_table(c, {"SELECT (SELECT MIN(run_at) FROM jobs WHERE state = 'queued'), "
                               "(SELECT MIN(lease_expires_at) FROM jobs WHERE state = 'running')",
                               {}});
  return {r.optional_float8(0, 0), r.optional_float8(0, 1)};
}

namespace {

using statements = std::vector<connection::statement>;

using call_keys = std::unordered_map<std::string, std::int64_t>;

void insert_packets(statements& out, const std::vector<packet_row>& rows, const call_keys& keys, double now) {
  if (rows.empty()) return;
  std::vector<std::int64_t> call_key, sequence;
  std::vector<std::string_view> data;
  std::vector<double> timestamp;
  std::vector<bool> late;
  for (const auto& r : rows) {
    call_key.push_back(keys.at(r.call_id));
    sequence.push_back(r.sequence);
    data.push_back(r.data);
    timestamp.push_back(r.timestamp);
    late.push_back(r.late);
  }
  out.push_back(
      {"INSERT INTO packets(call_key, sequence, data, timestamp, received_at, late) SELECT c, s, d, t, $5, l "
       "FROM unnest($1::bigint[], $2::bigint[], $3::bytea[], $4::float8[], $6::bool[]) AS u(c, s, d, t, l)",
       params{}
           .add_ints(call_key)
           .add_ints(sequence)
           .add_bytes_array(data)
           .add_doubles(timestamp)
           .add(now)
           .add_bools(late)});
}

// Calls whose gaps changed have their rows written again from the sequencer's state.
template <class Calls>
void rewrite_gaps(statements& out, const Calls& calls, double now) {
  std::vector<std::string> gap_calls, call_id;
  std::vector<std::int64_t> first, last;
  std::vector<double> opened_at;
  std::vector<bool> lost;
  const auto add = [&](const std::string& id, const seq_range& r, double at, bool is_lost) {
    call_id.push_back(id);
    first.push_back(r.first);
    last.push_back(r.last);
    opened_at.push_back(at);
    lost.push_back(is_lost);
  };
  for (const auto& [id, rec] : calls) {
    if (!rec->gaps_dirty) continue;
    gap_calls.push_back(id);
    for (const auto& r : rec->seq.tracker().missing())
      add(id, r, rec->seq.gap_opened_at(r.first).value_or(now), false);
    for (const auto& r : rec->seq.lost()) add(id, r, now, true);
  }
  if (gap_calls.empty()) return;
  out.push_back({"DELETE FROM call_gaps WHERE call_id = ANY($1::text[])", params{}.add_texts(gap_calls)});
  if (!call_id.empty())
    out.push_back(
        {"INSERT INTO call_gaps(call_id, first_sequence, last_sequence, opened_at, lost) SELECT * FROM "
         "unnest($1::text[], $2::bigint[], $3::bigint[], $4::float8[], $5::bool[])",
         params{}.add_texts(call_id).add_ints(first).add_ints(last).add_doubles(opened_at).add_bools(lost)});
}

void insert_jobs(statements& out, const std::vector<job_row>& rows, const call_keys& keys, int max_attempts,
                 double now) {
  if (rows.empty()) return;
  std::vector<std::int64_t> call, first, last;
  for (const auto& r : rows) {
    call.push_back(keys.at(r.call_id));
    first.push_back(r.range.first);
    last.push_back(r.range.last);
  }
  out.push_back(
      {"INSERT INTO jobs(call_key, first_sequence, last_sequence, max_attempts, run_at, created_at, updated_at) "
       "SELECT c, f, l, $4, $5, $5, $5 FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS u(c, f, l)",
       params{}.add_ints(call).add_ints(first).add_ints(last).add(std::int64_t{max_attempts}).add(now)});
}

// The job rows the job ledger changed (one per job: see job_rows::put), whole.
void update_jobs(statements& out, const std::vector<job>& rows) {
  if (rows.empty()) return;
  std::vector<std::int64_t> id, attempts;
  std::vector<std::string> state;
  std::vector<std::optional<std::string>> owner, error;
  std::vector<double> run_at, updated_at;
  std::vector<std::optional<double>> expires, started, finished;
  for (const auto& j : rows) {
    id.push_back(j.id);
    state.emplace_back(to_string(j.state));
    attempts.push_back(j.attempts);
    run_at.push_back(j.run_at);
    owner.push_back(j.lease_owner);
    expires.push_back(j.lease_expires_at);
    error.push_back(j.last_error);
    updated_at.push_back(j.updated_at);
    started.push_back(j.started_at);
    finished.push_back(j.finished_at);
  }
  out.push_back({"UPDATE jobs SET state = u.state, attempts = u.attempts, run_at = u.run_at, "
                 "lease_owner = u.owner, lease_expires_at = u.expires, last_error = u.error, "
                 "updated_at = u.updated, started_at = u.started, finished_at = u.finished "
                 "FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::float8[], $5::text[], $6::float8[], "
                 "$7::text[], $8::float8[], $9::float8[], $10::float8[]) "
                 "AS u(id, state, attempts, run_at, owner, expires, error, updated, started, finished) "
                 "WHERE jobs.id = u.id",
                 params{}
                     .add_ints(id)
                     .add_texts(state)
                     .add_ints(attempts)
                     .add_doubles(run_at)
                     .add_optional_texts(owner)
                     .add_optional_doubles(expires)
                     .add_optional_texts(error)
                     .add_doubles(updated_at)
                     .add_optional_doubles(started)
                     .add_optional_doubles(finished)});
}

void insert_results(statements& out, const std::vector<result_row>& rows) {
  if (rows.empty()) return;
  std::vector<std::int64_t> job_id, first, last;
  std::vector<std::string> call, text, engine;
  std::vector<double> latency, at;
  for (const auto& r : rows) {
    job_id.push_back(r.job_id);
    call.push_back(r.call_id);
    first.push_back(r.range.first);
    last.push_back(r.range.last);
    text.push_back(r.text);
    engine.push_back(r.engine);
    latency.push_back(r.latency_ms);
    at.push_back(r.created_at);
  }
  out.push_back({"INSERT INTO transcript_segments(job_id, call_id, first_sequence, last_sequence, text, engine, "
                 "latency_ms, created_at) SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], "
                 "$4::bigint[], $5::text[], $6::text[], $7::float8[], $8::float8[])",
                 params{}
                     .add_ints(job_id)
                     .add_texts(call)
                     .add_ints(first)
                     .add_ints(last)
                     .add_texts(text)
                     .add_texts(engine)
                     .add_doubles(latency)
                     .add_doubles(at)});
}

// The partials the job ledger recorded (upserted) and dropped (deleted), one change per job.
void write_partials(statements& out, const std::vector<partial_change>& changes) {
  std::vector<std::int64_t> dropped, job_id, attempt, heard;
  std::vector<std::string> call, text;
  std::vector<double> at;
  for (const auto& c : changes) {
    if (!c.row) {
      dropped.push_back(c.job_id);
      continue;
    }
    job_id.push_back(c.row->job_id);
    call.push_back(c.row->call_id);
    attempt.push_back(c.row->attempt);
    text.push_back(c.row->text);
    heard.push_back(c.row->heard_ms);
    at.push_back(c.row->updated_at);
  }
  if (!dropped.empty())
    out.push_back({"DELETE FROM transcript_partials WHERE job_id = ANY($1::bigint[])", params{}.add_ints(dropped)});
  if (job_id.empty()) return;
  out.push_back({"INSERT INTO transcript_partials(job_id, call_id, attempt, text, heard_ms, updated_at) "
                 "SELECT * FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::text[], $5::bigint[], "
                 "$6::float8[]) ON CONFLICT (job_id) DO UPDATE SET attempt = excluded.attempt, "
                 "text = excluded.text, heard_ms = excluded.heard_ms, updated_at = excluded.updated_at",
                 params{}.add_ints(job_id).add_texts(call).add_ints(attempt).add_texts(text).add_ints(heard).add_doubles(at)});
}

// What the job ledger changed: the jobs' rows, the results of those that succeeded, and the partials.
void write_job_rows(statements& out, const job_rows& rows) {
  update_jobs(out, rows.jobs);
  insert_results(out, rows.results);
  write_partials(out, rows.partials);
}

// The batch's events, numbered by the table's identity in the order of `rows` (WITH ORDINALITY ... ORDER BY:
// the rows reach the insert, and draw their ids, in that order). Returns the statement's index: its
// RETURNING gives the ids.
std::optional<std::size_t> insert_events(statements& out, const std::vector<event_row>& rows) {
  if (rows.empty()) return std::nullopt;
  std::vector<std::string> call, kind, data;
  std::vector<double> at;
  std::vector<std::optional<std::int64_t>> sequence;
  for (const auto& r : rows) {
    call.push_back(r.event->call_id);
    kind.push_back(r.event->kind);
    at.push_back(r.event->at);
    sequence.push_back(r.event->sequence);
    data.push_back(r.event->data);
  }
  out.push_back(
      {"INSERT INTO call_events(call_id, kind, at, sequence, data) SELECT c, k, a, s, d FROM "
       "unnest($1::text[], $2::text[], $3::float8[], $4::bigint[], $5::text[]) WITH ORDINALITY "
       "AS u(c, k, a, s, d, n) ORDER BY n RETURNING id",
       params{}.add_texts(call).add_texts(kind).add_doubles(at).add_optional_ints(sequence).add_texts(data)});
  return out.size() - 1;
}

// The batch's events of the store-wide log, in one row (pg_migrations.cpp, version 13), numbered from the
// counter of event_log_state in the same statement: it takes the counter's row lock, which orders the
// transactions of every writer and node that log events, so ids are given in commit order (version 9). Sent
// last before COMMIT, so that the lock is held for as short a time as the commit takes.
void insert_log(statements& out, const std::vector<log_row>& rows) {
  if (rows.empty()) return;
  std::vector<double> at;
  std::vector<std::string> kind, call, data;
  std::vector<std::optional<std::int64_t>> job;
  for (const auto& r : rows) {
    at.push_back(r.at);
    kind.emplace_back(to_string(r.kind));
    call.push_back(r.call_id);
    job.push_back(r.job_id);
    data.push_back(r.data);
  }
  const double latest = *std::max_element(at.begin(), at.end());
  out.push_back(
      {"WITH c AS (UPDATE event_log_state SET last_id = last_id + $7 RETURNING last_id) "
       "INSERT INTO event_batches(last_id, first_id, at, ats, kinds, call_ids, job_ids, data) "
       "SELECT c.last_id, c.last_id - $7 + 1, $6, $1::float8[], $2::text[], $3::text[], $4::bigint[], $5::text[] "
       "FROM c",
       params{}
           .add_doubles(at)
           .add_texts(kind)
           .add_texts(call)
           .add_optional_ints(job)
           .add_texts(data)
           .add(latest)
           .add(static_cast<std::int64_t>(rows.size()))});
}

void insert_transitions(statements& out, const std::vector<transition_row>& rows) {
  if (rows.empty()) return;
  std::vector<std::string> call, to, reason;
  std::vector<std::optional<std::string>> from;
  std::vector<double> at;
  for (const auto& r : rows) {
    call.push_back(r.call_id);
    from.push_back(r.from ? std::optional<std::string>(to_string(*r.from)) : std::nullopt);
    to.emplace_back(to_string(r.to));
    reason.push_back(r.reason);
    at.push_back(r.at);
  }
  out.push_back(
      {"INSERT INTO call_transitions(call_id, from_state, to_state, reason, at) SELECT * FROM "
       "unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::float8[])",
       params{}.add_texts(call).add_optional_texts(from).add_texts(to).add_texts(reason).add_doubles(at)});
}

// The calls columns of the changed records, one array per column.
struct call_columns {
  std::vector<std::int64_t> key;
  std::vector<std::string> state;
  std::vector<std::int64_t> last, expected, received, dup, ooo, gaps, missing, next_segment, late, lost, total,
      succeeded, dead;
  std::vector<std::optional<double>> first_ts, last_ts, last_packet_at, ended_at;
  std::vector<std::optional<std::string>> end_reason;
  std::vector<double> changed_at;
  std::vector<std::int64_t> version;

  // The columns packets in sequence change (a narrow row), or all of them.
  void add(std::int64_t call_key, const call_record& rec, std::int64_t read_version, bool narrow) {
    const auto& t = rec.seq.tracker();
    key.push_back(call_key);
    last.push_back(t.highest());
    expected.push_back(t.expected());
    received.push_back(rec.packets_received);
    next_segment.push_back(rec.seq.next_segment());
    total.push_back(rec.jobs_total);
    first_ts.push_back(rec.first_timestamp);
    last_ts.push_back(rec.last_timestamp);
    last_packet_at.push_back(rec.last_packet_at);
    version.push_back(read_version);
    if (narrow) return;
    state.emplace_back(to_string(rec.state));
    dup.push_back(rec.duplicate_packets);
    ooo.push_back(rec.out_of_order_packets);
    gaps.push_back(rec.gaps_opened);
    missing.push_back(t.missing_count());
    late.push_back(rec.late_packets);
    lost.push_back(rec.seq.lost_packets());
    succeeded.push_back(rec.jobs_succeeded);
    dead.push_back(rec.jobs_dead);
    ended_at.push_back(rec.ended_at);
    end_reason.push_back(rec.end_reason);
    changed_at.push_back(rec.state_changed_at);
  }
};

// The columns every calls UPDATE sets, and the arrays they come from (the first ten parameters; $10 is the
// time). The arrays are unnested in the select list, side by side, rather than by unnest(a, b, ...) in
// FROM, which copies each array into a tuple store of its own first.
constexpr const char* narrow_sets =
    "last_sequence = u.last, expected_sequence = u.expected, packets_received = u.received, "
    "next_segment = u.next_segment, jobs_total = u.total, first_timestamp = u.first_ts, "
    "last_timestamp = u.last_ts, last_packet_at = u.last_packet_at, updated_at = $10, "
    "version = CASE WHEN calls.version = u.version THEN u.version + 1 ELSE -1 END";
constexpr const char* narrow_arrays =
    "unnest($1::bigint[]) AS key, unnest($2::bigint[]) AS last, unnest($3::bigint[]) AS expected, "
    "unnest($4::bigint[]) AS received, unnest($5::bigint[]) AS next_segment, unnest($6::bigint[]) AS total, "
    "unnest($7::float8[]) AS first_ts, unnest($8::float8[]) AS last_ts, unnest($9::float8[]) AS last_packet_at, "
    "unnest($11::bigint[]) AS version";

params narrow_params(const call_columns& u, double now) {
  params p;
  p.add_ints(u.key)
      .add_ints(u.last)
      .add_ints(u.expected)
      .add_ints(u.received)
      .add_ints(u.next_segment)
      .add_ints(u.total)
      .add_optional_doubles(u.first_ts)
      .add_optional_doubles(u.last_ts)
      .add_optional_doubles(u.last_packet_at)
      .add(now)
      .add_ints(u.version);
  return p;
}

void update_narrow(statements& out, const call_columns& u, double now) {
  out.push_back({std::string("UPDATE calls SET ") + narrow_sets + " FROM (SELECT " + narrow_arrays +
                     ") AS u WHERE calls.key = u.key RETURNING calls.id, calls.version",
                 narrow_params(u, now)});
}

void update_wide(statements& out, const call_columns& u, double now) {
  out.push_back({std::string("UPDATE calls SET ") + narrow_sets +
                     ", state = u.state, duplicate_packets = u.dup, out_of_order_packets = u.ooo, "
                     "gaps_opened = u.gaps, missing_packets = u.missing, late_packets = u.late, "
                     "lost_packets = u.lost, jobs_succeeded = u.succeeded, jobs_dead = u.dead, "
                     "ended_at = u.ended_at, end_reason = u.end_reason, state_changed_at = u.changed_at "
                     "FROM (SELECT " +
                     narrow_arrays +
                     ", unnest($12::text[]) AS state, unnest($13::bigint[]) AS dup, unnest($14::bigint[]) AS ooo, "
                     "unnest($15::bigint[]) AS gaps, unnest($16::bigint[]) AS missing, unnest($17::bigint[]) AS late, "
                     "unnest($18::bigint[]) AS lost, unnest($19::bigint[]) AS succeeded, "
                     "unnest($20::bigint[]) AS dead, unnest($21::float8[]) AS ended_at, "
                     "unnest($22::text[]) AS end_reason, unnest($23::float8[]) AS changed_at) AS u "
                     "WHERE calls.key = u.key RETURNING calls.id, calls.version",
                 narrow_params(u, now)
                     .add_texts(u.state)
                     .add_ints(u.dup)
                     .add_ints(u.ooo)
                     .add_ints(u.gaps)
                     .add_ints(u.missing)
                     .add_ints(u.late)
                     .add_ints(u.lost)
                     .add_ints(u.succeeded)
                     .add_ints(u.dead)
                     .add_optional_doubles(u.ended_at)
                     .add_optional_texts(u.end_reason)
                     .add_doubles(u.changed_at)});
}

}  // namespace

// Every call the batch wrote anything of (its row, gaps, media or track), or every call it holds in a batch of
// kept calls, gets its row written and its version counted up from the one it was read or kept at: a writer
// that kept the call's state sees the change. A row at another version gets -1, which calls_version_kept
// refuses (pg_migrations.cpp). The rows are updated in the order of calls_ (ids sorted; the plan runs through
// the arrays into calls' key, never a scan), so that, first in a transaction, the statement locks them in id
// order, as every writer does. When every call keeps its still columns (packets in sequence: the common
// batch), only the others are written; else all of them, of every call (one statement either way, so that the
// locks are taken in one order). Returns the statement's index: its RETURNING gives the new versions.
std::optional<std::size_t> writer::update_calls(std::vector<connection::statement>& out, double now) const {
  std::vector<std::pair<const std::string*, const call_record*>> changed;
  bool narrow = true;
  for (const auto& [id, rec] : calls_) {
    if (!kept_attempt_ && !rec->dirty && !rec->gaps_dirty && !rec->media_dirty && !rec->track_dirty) continue;
    changed.emplace_back(&id, rec.get());
    narrow = narrow && still_columns::of(*rec) == still_.at(id);
  }
  if (changed.empty()) return std::nullopt;
  call_columns u;
  for (const auto& [id, rec] : changed) u.add(keys_.at(*id), *rec, versions_.at(*id), narrow);
  if (narrow) update_narrow(out, u, now);
  else update_wide(out, u, now);
  return out.size() - 1;
}

namespace {

template <class Calls>
void update_media(statements& out, const Calls& calls) {
  std::vector<std::string> ids, formats;
  std::vector<std::int64_t> packet_ms;
  for (const auto& [id, rec] : calls) {
    if (!rec->media_dirty) continue;
    ids.push_back(id);
    formats.push_back(rec->media->format);
    packet_ms.push_back(rec->media->packet_ms);
  }
  if (ids.empty()) return;
  out.push_back(
      {"UPDATE calls SET media_format = u.f, media_packet_ms = u.ms FROM unnest($1::text[], $2::text[], "
       "$3::bigint[]) AS u(id, f, ms) WHERE calls.id = u.id",
       params{}.add_texts(ids).add_texts(formats).add_ints(packet_ms)});
}

template <class Calls>
void update_tracks(statements& out, const Calls& calls) {
  std::vector<std::string> ids;
  std::vector<std::optional<std::string>> tracks, primaries;
  for (const auto& [id, rec] : calls) {
    if (!rec->track_dirty) continue;
    ids.push_back(id);
    tracks.push_back(rec->track);
    primaries.push_back(rec->primary);
  }
  if (ids.empty()) return;
  out.push_back(
      {"UPDATE calls SET track = u.t, primary_id = u.p FROM unnest($1::text[], $2::text[], $3::text[]) "
       "AS u(id, t, p) WHERE calls.id = u.id",
       params{}.add_texts(ids).add_optional_texts(tracks).add_optional_texts(primaries)});
}

}  // namespace

result_set writer::read_jobs_table(connection& c, connection::statement read) {
  std::vector<connection::statement> pipeline;
  tallies_.written(jobs_.rows());
  write_job_rows(pipeline, jobs_.rows());
  jobs_.rows().clear();
  pipeline.push_back(std::move(read));
  auto results = c.exec_pipeline(pipeline);
  return std::move(results.back());
}

void writer::flush(std::vector<connection::statement>& out, double now, const std::string& token) {
  const auto& rows = ledger_.rows();
  // First: in a batch of kept calls, it locks them (see update_calls).
  versions_at_ = update_calls(out, now);
  insert_packets(out, rows.packets, keys_, now);
  rewrite_gaps(out, calls_, now);
  insert_jobs(out, rows.jobs, keys_, options_.max_attempts, now);
  tallies_.written(jobs_.rows());
  write_job_rows(out, jobs_.rows());
  tallies_.inserted(static_cast<std::int64_t>(rows.jobs.size()));
  if (!tallies_.tally().empty()) out.push_back(add_to_tallies(shard_, tallies_.tally()));
  insert_transitions(out, rows.transitions);
  update_media(out, calls_);
  update_tracks(out, calls_);
  events_at_ = insert_events(out, rows.events);
  jobs_queued_ = !rows.jobs.empty() || jobs_.queued_now();
  // Delivered at commit, to every node's listener (this node's own ignores its token).
  jobs_notice_.add(out, jobs_queued_, token);
  if (sweep_.prune_through) {
    out.push_back({"WITH d AS (DELETE FROM event_batches WHERE last_id <= $1 RETURNING last_id - first_id + 1 AS n) "
                   "SELECT COALESCE(SUM(n), 0)::bigint FROM d",
                   params{}.add(*sweep_.prune_through)});
    prune_at_ = out.size() - 1;
    out.push_back({"UPDATE event_log_state SET pruned_through = GREATEST(pruned_through, $1)",
                   params{}.add(*sweep_.prune_through)});
  }
  wrote_events_ = !rows.log.empty();
  events_notice_.add(out, wrote_events_, "");
  insert_log(out, rows.log);
}

void writer::pay_notify(connection& c, const std::string& token) {
  jobs_notice_.pay(c, token);
  events_notice_.pay(c, "");
}

void notice::add(std::vector<connection::statement>& out, bool wanted, const std::string& payload) {
  sending_ = (wanted || owed_) && std::chrono::steady_clock::now() - last_ >= interval;
  if (sending_) out.push_back({sql_, params{}.add(std::string_view(payload))});
}

void notice::committed(bool wanted) {
  if (sending_) {
    last_ = std::chrono::steady_clock::now();
    owed_ = false;
  } else if (wanted) {
    owed_ = true;
  }
}

void notice::pay(connection& c, const std::string& payload) {
  if (!owed_ || std::chrono::steady_clock::now() - last_ < interval) return;
  c.exec(sql_, params{}.add(std::string_view(payload)));
  last_ = std::chrono::steady_clock::now();
  owed_ = false;
}

}  // namespace aipbx::pg
