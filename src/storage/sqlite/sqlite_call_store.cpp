#include "storage/sqlite/sqlite_call_store.hpp"

#include "domain/clock.hpp"
#include "log/log.hpp"
#include "storage/sqlite/buffered_wal_vfs.hpp"
#include "storage/sqlite/sqlite_db.hpp"
#include "storage/sqlite/sqlite_migrations.hpp"
#include "storage/sqlite/sqlite_writer.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <unistd.h>

namespace aipbx {

using sqlite::connection;
using sqlite::sqlite_error;
using sqlite::statement;

namespace {

constexpr const char* call_columns =
    "id, state, last_sequence, expected_sequence, packets_received, duplicate_packets, "
    "out_of_order_packets, gaps_opened, missing_packets, first_timestamp, last_timestamp, created_at, "
    "updated_at, state_changed_at, "
    "(SELECT COUNT(*) FROM call_gaps g WHERE g.call_id = calls.id AND g.lost = 0), "
    "last_packet_at, next_segment, late_packets, lost_packets, "
    "(SELECT COUNT(*) FROM call_gaps g WHERE g.call_id = calls.id AND g.lost = 1), "
    "ended_at, end_reason, jobs_total, jobs_succeeded, jobs_dead, media_format, media_packet_ms, track, "
    "primary_id";

call_summary read_call(const statement& s) {
  call_summary c;
  c.id = s.column_text(0);
  c.state = parse_call_state(s.column_text_view(1)).value_or(call_state::in_progress);
  c.last_sequence = s.column_int(2);
  c.expected_sequence = s.column_int(3);
  c.packets_received = s.column_int(4);
  c.duplicate_packets = s.column_int(5);
  c.out_of_order_packets = s.column_int(6);
  c.gaps_opened = s.column_int(7);
  c.missing_packets = s.column_int(8);
  c.first_timestamp = s.column_optional_double(9);
  c.last_timestamp = s.column_optional_double(10);
  c.created_at = s.column_double(11);
  c.updated_at = s.column_double(12);
  c.state_changed_at = s.column_double(13);
  c.missing_ranges = s.column_int(14);
  c.last_packet_at = s.column_optional_double(15);
  c.next_segment = s.column_int(16);
  c.late_packets = s.column_int(17);
  c.lost_packets = s.column_int(18);
  c.lost_ranges = s.column_int(19);
  c.ended_at = s.column_optional_double(20);
  if (!s.is_null(21)) c.end_reason = s.column_text(21);
  c.jobs_total = s.column_int(22);
  c.jobs_succeeded = s.column_int(23);
  c.jobs_dead = s.column_int(24);
  if (!s.is_null(25)) c.media = media_declaration{s.column_text(25), s.column_int(26)};
  c.track = s.column_optional_text(27);
  c.primary_call = s.column_optional_text(28);
  return c;
}

void configure(connection& c, int busy_timeout_ms) {
  sqlite3_busy_timeout(c.handle(), busy_timeout_ms);
  c.exec("PRAGMA foreign_keys = ON");
}

// Pages are read with limit + 1 rows: the extra row only says that another page follows, whose cursor is
// the key of the last row kept.
template <class T, class Key>
auto trim_page(std::vector<T>& rows, std::size_t limit, Key key) -> std::optional<decltype(key(rows.back()))> {
  if (rows.size() <= limit) return std::nullopt;
  rows.resize(limit);
  if (rows.empty()) return std::nullopt;
  return key(rows.back());
}

// One checkpoint of `schema` on `db`. SQLITE_BUSY (another checkpoint holds the lock) is no failure: that
// one copies the frames. Its time goes to `took`.
struct checkpoint_pass {
  bool ran = false;  // false when another checkpoint was running (PASSIVE does not wait) or it failed
  int log_pages = 0; // the WAL's frames when it began
};
checkpoint_pass checkpoint(sqlite3* db, const char* schema, int mode, const char* by, atomic_histogram& took) {
  int log_pages = 0, copied = 0;
  const auto started = std::chrono::steady_clock::now();
  const int rc = sqlite3_wal_checkpoint_v2(db, schema, mode, &log_pages, &copied);
  const double ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  took.observe(ms / 1000);
  if (rc != SQLITE_OK && rc != SQLITE_BUSY)
    log::warn("checkpoint failed", {{"error", sqlite3_errstr(rc)}, {"wal_pages", log_pages}, {"by", by}, {"ms", ms}});
  else
    log::debug("checkpoint",
               {{"wal_pages", log_pages}, {"copied", copied}, {"by", by}, {"ms", ms}, {"busy", rc == SQLITE_BUSY}});
  return {rc == SQLITE_OK, log_pages};
}

}  // namespace

sqlite_call_store::sqlite_call_store(sqlite_options options) : options_(std::move(options)) {
  if (!options_.clock) options_.clock = system_now;
  if (!options_.sync_file) options_.sync_file = [](int fd) { return ::fdatasync(fd) == 0 ? 0 : errno; };
  auto db = std::make_unique<connection>(options_.path, connection::mode::read_write, sqlite::buffered_wal_vfs());
  configure(*db, options_.busy_timeout_ms);
  db->exec("PRAGMA journal_mode = WAL");
  db->exec(options_.sync == sqlite_sync::pipelined ? "PRAGMA synchronous = NORMAL" : "PRAGMA synchronous = FULL");
  // Live calls insert at as many places of the packets' (call_id, sequence) index as there are calls: the
  // writer keeps those index pages in its own cache (SQLite's default is 2 MiB) instead of reading them
  // back from the file at every batch.
  db->exec(("PRAGMA cache_size = -" + std::to_string(options_.writer_cache_kib)).c_str());
  schema_version_ = sqlite::migrate(*db, options_.clock());
  // The writer is the only one that writes, and it creates a call before its packets, jobs and events:
  // checking every packet's call again (a second index seek per packet) adds nothing. (The migrations
  // above ran with the checks on.)
  db->exec("PRAGMA foreign_keys = OFF");
  {
    // One node owns this file: whatever is `running` was its previous process's, interrupted.
    // The job tallies take the moves in the same transaction.
    sqlite::transaction tx(*db);
    auto requeue = db->prepare(
        "UPDATE jobs SET state = 'queued', attempts = MAX(attempts - 1, 0), lease_owner = NULL, "
        "lease_expires_at = NULL, run_at = ?1, updated_at = ?1 WHERE state = 'running' RETURNING attempts");
    requeue.bind(1, options_.clock());
    job_tally moved;
    std::int64_t requeued = 0;
    for (; requeue.step(); ++requeued) {
      moved.add(job_state::running, 0, -1);
      moved.add(job_state::queued, static_cast<int>(requeue.column_int(0)), 1);
    }
    requeue.reset();
    if (!moved.empty())
      db->prepare("UPDATE job_tallies SET queued = queued + ?, retrying = retrying + ?, running = running + ?")
          .bind(1, moved.queued)
          .bind(2, moved.retrying)
          .bind(3, moved.running)
          .run();
    tx.commit();
    if (requeued > 0) log::info("jobs requeued", {{"jobs", requeued}, {"reason", "interrupted by a previous stop"}});
  }
  if (options_.sync == sqlite_sync::pipelined) {
    // The WAL exists now (the write above created it if needed) and stays the same file while this
    // connection is open. The syncer flushes it through its own descriptor: fdatasync acts on the file,
    // whoever wrote. The directory is synced once so that the file itself survives a power loss.
    const std::string wal_path = options_.path + "-wal";
    wal_fd_ = ::open(wal_path.c_str(), O_RDWR | O_CLOEXEC);
    if (wal_fd_ < 0) throw sqlite_error(SQLITE_CANTOPEN, "cannot open " + wal_path + ": " + std::strerror(errno));
    const std::string dir = std::filesystem::path(options_.path).parent_path().string();
    if (const int dfd = ::open(dir.empty() ? "." : dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC); dfd >= 0) {
      (void)::fsync(dfd);
      ::close(dfd);
    }
  }
  // Checkpoints are the checkpointer's, or the writer's own past the limit (on_wal_commit).
  sqlite3_wal_hook(db->handle(), &sqlite_call_store::on_wal_commit, this);
  checkpoint_db_ = std::make_unique<connection>(options_.path, connection::mode::read_write);
  configure(*checkpoint_db_, options_.busy_timeout_ms);
  checkpoint_db_->exec("PRAGMA synchronous = NORMAL");  // checkpoints sync the WAL before and the file after
  writer_ = std::make_unique<sqlite::writer>(options_, std::move(db));
  // Whatever the file holds now is what survived: durable.
  durable_event_.store(writer_->last_event_id());
  handed_event_ = writer_->last_event_id();
  checkpointer_thread_ = std::thread([this] { checkpointer_loop(); });
  if (options_.sync == sqlite_sync::pipelined) syncer_thread_ = std::thread([this] { syncer_loop(); });
  writer_thread_ = std::thread([this] { writer_loop(); });
}

sqlite_call_store::~sqlite_call_store() {
  stop();
  writer_.reset();
  checkpoint_db_.reset();
  if (wal_fd_ >= 0) ::close(wal_fd_);
}

int sqlite_call_store::on_wal_commit(void* self, sqlite3* /*db*/, const char* /*name*/, int pages) {
  auto* store = static_cast<sqlite_call_store*>(self);
  const auto& o = store->options_;
  const auto ask = [store](bool for_restart) {
    {
      std::lock_guard lock(store->checkpoint_mutex_);
      store->checkpoint_wanted_ = true;
      if (for_restart) store->restart_pass_wanted_ = true;
    }
    store->checkpoint_wake_.notify_one();
  };
  // Pages this commit appended: the growth since the last commit, or all of it if the WAL started over.
  const int before = store->wal_pages_.exchange(pages, std::memory_order_relaxed);
  store->log_pages_.fetch_add(static_cast<std::uint64_t>(pages >= before ? pages - before : pages),
                              std::memory_order_relaxed);
  if (pages < store->checkpoint_base_) {  // the WAL started over
    store->checkpoint_base_ = 0;
    store->restart_asked_ = false;
    store->restart_pass_done_.store(false, std::memory_order_relaxed);
  }
  // A background checkpoint each time the WAL has grown by checkpoint_pages (not after every commit:
  // until the WAL starts over, each pass would copy only the last few frames and sync the file again).
  if (pages - store->checkpoint_base_ >= o.checkpoint_pages) {
    store->checkpoint_base_ = pages;
    ask(false);
  }
  if (pages < o.checkpoint_limit_pages) return SQLITE_OK;
  // Background checkpoints copy what was there when each began, but the writer keeps appending, so under
  // writes that never pause the WAL is never fully copied and cannot start over. The writer completes it:
  // it asks the checkpointer for one more pass and, at its first commit after that pass, copies what was
  // appended meanwhile itself (PASSIVE: a few hundred pages, so the pause is short); its next transaction
  // then starts the WAL over. Should that not be enough (readers on old snapshots), at twice the limit it
  // copies everything, waiting for the checkpointer and for readers (FULL, through the busy timeout).
  // The copy itself waits until the commit's batch is handed on (writer_loop), so that it delays the
  // next batch only.
  const bool hard = pages >= 2 * o.checkpoint_limit_pages;
  if (hard || store->restart_pass_done_.exchange(false, std::memory_order_acquire)) {
    store->writer_checkpoint_ = hard ? SQLITE_CHECKPOINT_FULL : SQLITE_CHECKPOINT_PASSIVE;
    store->restart_asked_ = false;
  } else if (!store->restart_asked_) {
    store->restart_asked_ = true;
    ask(true);
  }
  return SQLITE_OK;
}

void sqlite_call_store::writer_checkpoint(sqlite3* db) {
  if (!writer_checkpoint_) return;
  const int mode = *writer_checkpoint_;
  writer_checkpoint_.reset();
  const bool hard = mode == SQLITE_CHECKPOINT_FULL;
  if (checkpoint(db, "main", mode, "writer", writer_checkpoint_seconds_).ran)
    (hard ? waiting_checkpoints_ : writer_checkpoints_).fetch_add(1, std::memory_order_relaxed);
}

void sqlite_call_store::checkpointer_loop() {
  log::name_thread("aipbx-checkpt");
  for (;;) {
    bool for_restart = false;
    {
      std::unique_lock lock(checkpoint_mutex_);
      checkpoint_wake_.wait(lock, [this] { return checkpoint_wanted_ || checkpoint_stop_; });
      if (checkpoint_stop_) return;
      checkpoint_wanted_ = false;
      for_restart = restart_pass_wanted_;
      restart_pass_wanted_ = false;
    }
    // For a restart, passes follow one another while each leaves more than a few commits' worth (what the
    // writer appended during the last): each copies less than the one before, so the rest that the writer
    // then copies itself, while its next batch waits, is short. A few passes at most, and none once the
    // WAL is well past its limit: meanwhile it grows, and the restart is what bounds it.
    const int few = std::max(64, options_.checkpoint_pages / 8);
    const int past_limit = options_.checkpoint_limit_pages + options_.checkpoint_limit_pages / 2;
    for (int pass = 0; pass < (for_restart ? 4 : 1); ++pass) {
      const checkpoint_pass done =
          checkpoint(checkpoint_db_->handle(), "main", SQLITE_CHECKPOINT_PASSIVE, "checkpointer", checkpointer_seconds_);
      if (done.ran) checkpoints_.fetch_add(1, std::memory_order_relaxed);
      const int wal = wal_pages_.load(std::memory_order_relaxed);
      if (!done.ran || wal - done.log_pages <= few || wal >= past_limit) break;
    }
    if (for_restart) restart_pass_done_.store(true, std::memory_order_release);
  }
}

void sqlite_call_store::submit(write_op op, bool bounded) {
  errc refused;
  {
    std::lock_guard lock(mutex_);
    if (!stopping_ && (!bounded || queue_.size() < options_.queue_limit)) {
      const bool urgent = !op.may_wait();
      queue_.push_back(std::move(op));
      queued_.store(queue_.size(), std::memory_order_relaxed);
      if (urgent) ++urgent_queued_;
      if (queue_.size() == 1) first_queued_at_ = std::chrono::steady_clock::now();
      // The writer waits for a first write, or, holding streamed ones, for one that may not wait.
      if (queue_.size() == 1 || (urgent && urgent_queued_ == 1)) wake_.notify_one();
      return;
    }
    refused = stopping_ ? errc::unavailable : errc::overloaded;
  }
  op.fail(make_error_code(refused));
  op.complete();
}

void sqlite_call_store::ingest(packet p, ingest_handler done) {
  submit({sqlite::ingest_op{std::move(p), std::move(done), std::nullopt}}, true);
}

void sqlite_call_store::claim(std::string owner, std::size_t limit, double lease_seconds, claim_handler done) {
  submit({sqlite::claim_op{std::move(owner), limit, lease_seconds, std::move(done), std::nullopt}}, false);
}

void sqlite_call_store::renew(std::int64_t job_id, std::string owner, int attempt, double lease_seconds,
                              bool_handler done) {
  submit({sqlite::renew_op{job_id, std::move(owner), attempt, lease_seconds, std::move(done), std::nullopt}}, false);
}

void sqlite_call_store::finish(std::int64_t job_id, std::string owner, int attempt, job_outcome outcome,
                               bool_handler done) {
  submit({sqlite::finish_op{job_id, std::move(owner), attempt, std::move(outcome), std::move(done), std::nullopt}},
         false);
}

void sqlite_call_store::release(std::int64_t job_id, std::string owner, int attempt, bool_handler done) {
  submit({sqlite::release_op{job_id, std::move(owner), attempt, std::move(done), std::nullopt}}, false);
}

void sqlite_call_store::replay(std::int64_t job_id, job_handler done) {
  submit({sqlite::replay_op{job_id, std::move(done), std::nullopt}}, false);
}

void sqlite_call_store::record_partial(std::int64_t job_id, std::string owner, int attempt, std::string text,
                                       std::int64_t heard_ms, bool_handler done) {
  submit({sqlite::partial_op{job_id, std::move(owner), attempt, std::move(text), heard_ms, std::move(done),
                             std::nullopt}},
         false);
}

void sqlite_call_store::cut_segment(std::string call_id, seq_range range, bool_handler done) {
  submit({sqlite::cut_op{std::move(call_id), range, std::move(done), std::nullopt}}, false);
}

void sqlite_call_store::on_jobs_queued(std::function<void()> listener) {
  std::lock_guard lock(mutex_);
  writer_->set_listener(std::move(listener));
}

void sqlite_call_store::writer_loop() {
  log::name_thread("aipbx-writer");
  std::deque<write_op> batch;
  auto next_sweep = std::chrono::steady_clock::now() + options_.sweep_interval;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait_until(lock, next_sweep, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty() && stopping_) break;
      gather(lock);
      if (queue_.size() <= options_.max_batch) {
        batch.swap(queue_);
        urgent_queued_ = 0;
      } else {
        auto end = queue_.begin() + static_cast<std::ptrdiff_t>(options_.max_batch);
        batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(end));
        queue_.erase(queue_.begin(), end);
        urgent_queued_ = static_cast<std::size_t>(
            std::count_if(queue_.begin(), queue_.end(), [](const write_op& op) { return !op.may_wait(); }));
        first_queued_at_ = std::chrono::steady_clock::now();
      }
      queued_.store(queue_.size(), std::memory_order_relaxed);
    }
    const auto steady_now = std::chrono::steady_clock::now();
    const bool sweep = steady_now >= next_sweep;
    if (sweep) next_sweep = steady_now + options_.sweep_interval;
    if (batch.empty() && !sweep) continue;
    if (broken_.load()) {
      fail_batch(batch);
      continue;
    }
    const std::uint64_t n = batch.size();
    const auto began = std::chrono::steady_clock::now();
    const bool jobs_queued = writer_->commit(batch, options_.clock(), sweep);
    commits_.committed(n, std::chrono::steady_clock::now() - began);
    failed_batches_.store(writer_->failed_batches(), std::memory_order_relaxed);
    pruned_.store(writer_->pruned_events(), std::memory_order_relaxed);
    after_commit(batch, jobs_queued);
    writer_checkpoint(writer_->handle());
  }
  {
    std::lock_guard lock(sync_mutex_);
    writer_done_ = true;
  }
  sync_wake_.notify_one();
}

// Holds a queue of streamed packets only (nothing else waits on it) until the commit delay since the first
// of them has passed or the batch is full. (A sweep due meanwhile runs with that commit.)
void sqlite_call_store::gather(std::unique_lock<std::mutex>& lock) {
  if (options_.commit_delay.count() == 0 || queue_.empty()) return;
  wake_.wait_until(lock, first_queued_at_ + options_.commit_delay, [this] { return stopping_ || urgent_queued_ > 0 || queue_.size() >= options_.max_batch; });
}

void sqlite_call_store::after_commit(std::deque<write_op>& batch, bool jobs_queued) {
  const std::int64_t last_event = writer_->last_event_id();
  if (options_.sync == sqlite_sync::commit) {
    publish_events(last_event);
    writer_->answer(batch, jobs_queued);
    batch.clear();
    return;
  }
  // The queue's own bookkeeping (claims, lease renewals, outcomes) is answered at once: should the
  // machine lose what the flush would have saved, it loses those with the packets and jobs they refer
  // to, and a lost lease or outcome only means the job runs again. The workers learn of new jobs now
  // too. What a client is told (ingest, end, archive, replay) waits for the flush, and so do the batch's
  // events: a reader never sees an event (nor its id) that a crash could take back.
  std::deque<write_op> durable;
  for (auto& op : batch) {
    if (op.answer_before_flush()) op.complete();
    else durable.push_back(std::move(op));
  }
  batch.clear();
  if (jobs_queued) writer_->notify_jobs_queued();
  if (durable.empty() && last_event == handed_event_) return;
  handed_event_ = last_event;
  {
    std::lock_guard lock(sync_mutex_);
    unsynced_.push_back({std::move(durable), last_event});
  }
  sync_wake_.notify_one();
}

void sqlite_call_store::publish_events(std::int64_t id) {
  if (id <= durable_event_.load(std::memory_order_relaxed)) return;
  durable_event_.store(id, std::memory_order_release);
  std::function<void()> listener;
  {
    aipbx::lock_guard lock(events_mutex_);
    listener = events_listener_;
  }
  if (listener) listener();
}

void sqlite_call_store::on_events(std::function<void()> listener) {
  aipbx::lock_guard lock(events_mutex_);
  events_listener_ = std::move(listener);
}

void sqlite_call_store::syncer_loop() {
  log::name_thread("aipbx-syncer");
  std::deque<unsynced_batch> ready;
  for (;;) {
    {
      std::unique_lock lock(sync_mutex_);
      sync_wake_.wait(lock, [this] { return writer_done_ || !unsynced_.empty(); });
      if (unsynced_.empty()) return;  // the writer is done and everything is answered
      ready.swap(unsynced_);
    }
    // Every batch in `ready` was committed, hence written to the WAL, before this call starts.
    const auto began = std::chrono::steady_clock::now();
    const int err = broken_.load() ? EIO : options_.sync_file(wal_fd_);
    sync_seconds_.observe(std::chrono::duration<double>(std::chrono::steady_clock::now() - began).count());
    const bool ok = err == 0;
    syncs_.fetch_add(1, std::memory_order_relaxed);
    if (!ok && !broken_.exchange(true))
      log::error("the write-ahead log could not be flushed to disk; refusing writes until restart",
                 {{"error", std::strerror(err)}, {"db", options_.path}});
    // Published before the answers: a client told its write is durable finds its events.
    if (ok) publish_events(ready.back().last_event);
    for (auto& b : ready) {
      if (ok) writer_->answer(b.ops, false);
      else fail_batch(b.ops);
    }
    ready.clear();
  }
}

void sqlite_call_store::fail_batch(std::deque<write_op>& batch) {
  const auto code = make_error_code(errc::store_failure);
  for (auto& op : batch) {
    op.fail(code);
    op.complete();
  }
  batch.clear();
}

void sqlite_call_store::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_thread_.joinable()) writer_thread_.join();
  if (syncer_thread_.joinable()) syncer_thread_.join();
  {
    std::lock_guard lock(checkpoint_mutex_);
    checkpoint_stop_ = true;
  }
  checkpoint_wake_.notify_all();
  if (checkpointer_thread_.joinable()) checkpointer_thread_.join();
  const sqlite_wal_stats s = wal_stats();
  const auto checkpoints = s.checkpoints + s.writer_checkpoints + s.waiting_checkpoints;
  log::info("store stopped", {{"backend", "sqlite"}, {"syncs", s.syncs}, {"checkpoints", checkpoints}});
}

template <class F>
auto sqlite_call_store::with_reader(F&& f) -> decltype(f(std::declval<connection&>())) {
  std::unique_ptr<connection> c;
  try {
    {
      aipbx::lock_guard lock(readers_mutex_);
      if (!idle_readers_.empty()) {
        c = std::move(idle_readers_.back());
        idle_readers_.pop_back();
      }
    }
    if (!c) {
      c = std::make_unique<connection>(options_.path, connection::mode::read_only);
      configure(*c, options_.busy_timeout_ms);
    }
    auto r = f(*c);
    c->reset_cached();
    aipbx::lock_guard lock(readers_mutex_);
    idle_readers_.push_back(std::move(c));
    return r;
  } catch (const sqlite_error& e) {
    log::error("read failed", {{"error", e.what()}, {"sqlite_code", e.code()}});
    using R = decltype(f(std::declval<connection&>()));
    return R(boost::system::in_place_error, make_error_code(e.transient() ? errc::unavailable : errc::store_failure));
  }
}

namespace {
bool call_exists(connection& c, std::string_view call_id) {
  auto& exists = c.cached("SELECT 1 FROM calls WHERE id = ?");
  exists.bind(1, call_id);
  return exists.step();
}
}  // namespace

result<call_page> sqlite_call_store::list_calls(const call_query& query) {
  return with_reader([&](connection& c) -> result<call_page> {
    std::string sql = std::string("SELECT ") + call_columns + " FROM calls WHERE id > ?";
    sql += query.state ? " AND state = ?" : " AND state <> 'ARCHIVED'";
    sql += " ORDER BY id LIMIT ?";
    auto& s = c.cached(sql);
    int i = 1;
    s.bind(i++, query.after ? std::string_view(*query.after) : std::string_view(""));
    if (query.state) s.bind(i++, to_string(*query.state));
    s.bind(i, static_cast<std::int64_t>(query.limit + 1));
    call_page page;
    while (s.step()) page.calls.push_back(read_call(s));
    page.next_after = trim_page(page.calls, query.limit, [](const call_summary& summary) { return summary.id; });
    return page;
  });
}

result<call_summary> sqlite_call_store::get_call(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<call_summary> {
    auto& s = c.cached(std::string("SELECT ") + call_columns + " FROM calls WHERE id = ?");
    s.bind(1, call_id);
    if (!s.step()) return errc::not_found;
    call_summary call = read_call(s);
    auto& t = c.cached("SELECT from_state, to_state, reason, at FROM call_transitions WHERE call_id = ? ORDER BY id");
    t.bind(1, call_id);
    while (t.step()) {
      call_transition tr;
      if (!t.is_null(0)) tr.from = parse_call_state(t.column_text_view(0));
      tr.to = parse_call_state(t.column_text_view(1)).value_or(call_state::in_progress);
      tr.reason = t.column_text(2);
      tr.at = t.column_double(3);
      call.transitions.push_back(std::move(tr));
    }
    auto& k = c.cached("SELECT track, id FROM calls WHERE primary_id = ? ORDER BY track, id");
    k.bind(1, call_id);
    while (k.step()) call.tracks.emplace_back(k.column_text(0), k.column_text(1));
    return call;
  });
}

result<packet_page> sqlite_call_store::list_packets(std::string_view call_id, std::int64_t after,
                                                    std::size_t limit) {
  return with_reader([&](connection& c) -> result<packet_page> {
    if (!call_exists(c, call_id)) return errc::not_found;
    auto& s = c.cached(
        "SELECT id, sequence, data, timestamp, received_at FROM packets WHERE call_id = ? AND sequence > ? "
        "ORDER BY sequence LIMIT ?");
    s.bind(1, call_id).bind(2, after).bind(3, static_cast<std::int64_t>(limit + 1));
    packet_page page;
    while (s.step())
      page.packets.push_back(
          {s.column_int(0), s.column_int(1), s.column_text(2), s.column_double(3), s.column_double(4)});
    page.next_after = trim_page(page.packets, limit, [](const stored_packet& p) { return p.sequence; });
    return page;
  });
}

result<call_store::gap_ranges> sqlite_call_store::gaps(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<gap_ranges> {
    if (!call_exists(c, call_id)) return errc::not_found;
    auto& s = c.cached(
        "SELECT first_sequence, last_sequence, lost FROM call_gaps WHERE call_id = ? ORDER BY first_sequence");
    s.bind(1, call_id);
    gap_ranges out;
    while (s.step()) (s.column_int(2) ? out.lost : out.open).push_back({s.column_int(0), s.column_int(1)});
    if (out.lost.empty()) return out;
    // A packet inside a lost range arrived after the range was given up: read on the (call_id, sequence)
    // index, range by range, not by scanning every packet of the call for the flag.
    auto& in_lost = c.cached(
        "SELECT p.sequence FROM call_gaps g JOIN packets p ON p.call_id = g.call_id "
        "AND p.sequence BETWEEN g.first_sequence AND g.last_sequence WHERE g.call_id = ? AND g.lost = 1 "
        "ORDER BY p.sequence");
    in_lost.bind(1, call_id);
    std::vector<std::int64_t> late;
    while (in_lost.step()) late.push_back(in_lost.column_int(0));
    out.late = to_ranges(late);
    return out;
  });
}

void sqlite_call_store::end_call(std::string call_id, std::string reason, state_handler done) {
  submit({sqlite::end_op{std::move(call_id), std::move(reason), std::move(done), std::nullopt}}, false);
}

void sqlite_call_store::declare_media(std::string call_id, media_declaration media,
                                      std::optional<track_link> track, declare_handler done) {
  if (track && !call_ledger::valid_track(call_id, *track)) return done(errc::invalid_input);
  submit({sqlite::declare_op{std::move(call_id), std::move(media), std::move(track), std::move(done),
                             std::nullopt}},
         false);
}

void sqlite_call_store::record_event(call_event e, event_handler done) {
  if (!call_ledger::valid_event(e)) return done(errc::invalid_input);
  submit({sqlite::event_op{std::move(e), std::move(done), std::nullopt}}, true);
}

result<event_page> sqlite_call_store::list_events(std::string_view call_id, std::int64_t after,
                                                  std::size_t limit) {
  return with_reader([&](connection& c) -> result<event_page> {
    if (!call_exists(c, call_id)) return errc::not_found;
    auto& s = c.cached(
        "SELECT id, kind, at, sequence, data FROM call_events WHERE call_id = ? AND id > ? ORDER BY id LIMIT "
        "?");
    s.bind(1, call_id).bind(2, after).bind(3, static_cast<std::int64_t>(limit + 1));
    event_page page;
    while (s.step())
      page.events.push_back({s.column_int(0), std::string(call_id), s.column_text(1), s.column_double(2),
                             s.column_optional_int(3), s.column_text(4)});
    page.next_after = trim_page(page.events, limit, [](const call_event& e) { return e.id; });
    return page;
  });
}

namespace {

// The events query for a filter: its SQL (cached per shape) and the values to bind after the id bounds.
std::string log_query(const event_filter& filter) {
  std::string sql = "SELECT id, at, kind, call_id, job_id, data FROM events WHERE id > ? AND id <= ?";
  if (filter.call_id) sql += " AND call_id = ?";
  if (!filter.kinds.empty()) {
    sql += " AND kind IN (";
    for (std::size_t i = 0; i < filter.kinds.size(); ++i) sql += i == 0 ? "?" : ", ?";
    sql += ")";
  }
  return sql + " ORDER BY id LIMIT ?";
}

logged_event read_logged(const statement& s) {
  logged_event e;
  e.id = s.column_int(0);
  e.at = s.column_double(1);
  e.kind = parse_event_kind(s.column_text_view(2)).value_or(event_kind::call_event);
  e.call_id = s.column_text(3);
  e.job_id = s.column_optional_int(4);
  e.data = s.column_text(5);
  return e;
}

}  // namespace

result<log_page> sqlite_call_store::read_log(std::int64_t after, std::optional<std::int64_t> up_to,
                                             const event_filter& filter, std::size_t limit) {
  // Only what is durable: the writer may have committed more, not yet flushed.
  const std::int64_t durable = durable_event_.load(std::memory_order_acquire);
  const std::int64_t end = up_to ? std::min(*up_to, durable) : durable;
  limit = std::max<std::size_t>(limit, 1);
  return with_reader([&](connection& c) -> result<log_page> {
    log_page page;
    // One snapshot for the rows and the prune mark: a prune between the two reads cannot hide events.
    sqlite::transaction tx(c, "BEGIN");
    auto& state = c.cached("SELECT pruned_through FROM event_log_state");
    if (state.step()) page.pruned_through = state.column_int(0);
    state.reset();
    auto& s = c.cached(log_query(filter));
    s.bind(1, std::max(after, page.pruned_through));
    s.bind(2, end);
    int i = 3;
    if (filter.call_id) s.bind(i++, std::string_view(*filter.call_id));
    for (auto k : filter.kinds) s.bind(i++, to_string(k));
    s.bind(i, static_cast<std::int64_t>(limit));
    while (s.step()) page.events.push_back(read_logged(s));
    s.reset();
    tx.commit();
    page.scanned_to = page.events.size() < limit ? std::max(end, after) : page.events.back().id;
    return page;
  });
}

result<std::int64_t> sqlite_call_store::log_head() { return durable_event_.load(std::memory_order_acquire); }

result<std::optional<media_declaration>> sqlite_call_store::call_media(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<std::optional<media_declaration>> {
    auto& s = c.cached("SELECT media_format, media_packet_ms FROM calls WHERE id = ?");
    s.bind(1, call_id);
    if (!s.step()) return errc::not_found;
    if (s.is_null(0)) return std::optional<media_declaration>{};
    return std::optional<media_declaration>{media_declaration{s.column_text(0), s.column_int(1)}};
  });
}

void sqlite_call_store::archive_call(std::string call_id, state_handler done) {
  submit({sqlite::archive_op{std::move(call_id), std::move(done), std::nullopt}}, false);
}

result<job_page> sqlite_call_store::list_jobs(const job_query& query) {
  return with_reader([&](connection& c) -> result<job_page> {
    std::string sql = std::string("SELECT ") + sqlite::job_columns + " FROM jobs WHERE id > ?";
    if (query.state) sql += " AND state = ?";
    if (query.call_id) sql += " AND call_id = ?";
    sql += " ORDER BY id LIMIT ?";
    auto& s = c.cached(sql);
    int i = 1;
    s.bind(i++, query.after);
    if (query.state) s.bind(i++, to_string(*query.state));
    if (query.call_id) s.bind(i++, std::string_view(*query.call_id));
    s.bind(i, static_cast<std::int64_t>(query.limit + 1));
    job_page page;
    while (s.step()) page.jobs.push_back(sqlite::read_job(s));
    page.next_after = trim_page(page.jobs, query.limit, [](const job& j) { return j.id; });
    return page;
  });
}

result<job> sqlite_call_store::get_job(std::int64_t id) {
  return with_reader([&](connection& c) -> result<job> {
    auto& s = c.cached(std::string("SELECT ") + sqlite::job_columns + " FROM jobs WHERE id = ?");
    s.bind(1, id);
    if (!s.step()) return errc::not_found;
    return sqlite::read_job(s);
  });
}

result<std::vector<transcript_segment>> sqlite_call_store::transcript(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<std::vector<transcript_segment>> {
    if (!call_exists(c, call_id)) return errc::not_found;
    auto& s = c.cached(
        "SELECT job_id, first_sequence, last_sequence, text, engine, latency_ms, created_at FROM "
        "transcript_segments WHERE call_id = ? ORDER BY first_sequence");
    s.bind(1, call_id);
    std::vector<transcript_segment> out;
    while (s.step())
      out.push_back({s.column_int(0), s.column_int(1), s.column_int(2), s.column_text(3), s.column_text(4),
                     s.column_double(5), s.column_double(6)});
    return out;
  });
}

result<std::vector<partial_segment>> sqlite_call_store::partials(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<std::vector<partial_segment>> {
    if (!call_exists(c, call_id)) return errc::not_found;
    auto& s = c.cached(
        "SELECT p.job_id, j.first_sequence, j.last_sequence, p.text, p.heard_ms, p.updated_at FROM "
        "transcript_partials p JOIN jobs j ON j.id = p.job_id WHERE p.call_id = ? AND j.state = 'running' AND "
        "j.attempts = p.attempt AND j.lease_expires_at > ? ORDER BY j.first_sequence");
    s.bind(1, call_id).bind(2, options_.clock());
    std::vector<partial_segment> out;
    while (s.step())
      out.push_back({s.column_int(0), s.column_int(1), s.column_int(2), s.column_text(3), s.column_int(4),
                     s.column_double(5)});
    return out;
  });
}

result<std::vector<stored_packet>> sqlite_call_store::segment_packets(std::string_view call_id, std::int64_t first,
                                                                     std::int64_t last) {
  return with_reader([&](connection& c) -> result<std::vector<stored_packet>> {
    auto& s = c.cached(
        "SELECT id, sequence, data, timestamp, received_at FROM packets WHERE call_id = ? AND sequence BETWEEN ? "
        "AND ? AND late = 0 ORDER BY sequence");
    s.bind(1, call_id).bind(2, first).bind(3, last);
    std::vector<stored_packet> out;
    while (s.step())
      out.push_back({s.column_int(0), s.column_int(1), s.column_text(2), s.column_double(3), s.column_double(4)});
    return out;
  });
}

result<std::vector<uncut_call>> sqlite_call_store::uncut_calls(std::string_view after, std::size_t limit) {
  return with_reader([&](connection& c) -> result<std::vector<uncut_call>> {
    // INDEXED BY: the live calls, a few among every call the file ever held.
    auto& s = c.cached(
        "SELECT id, state, next_segment, expected_sequence, last_sequence, last_packet_at, media_format, "
        "media_packet_ms FROM calls INDEXED BY calls_state WHERE state IN ('IN_PROGRESS', 'PROCESSING_AI') "
        "AND next_segment <= last_sequence AND id > ? ORDER BY id LIMIT ?");
    s.bind(1, after).bind(2, static_cast<std::int64_t>(limit));
    std::vector<uncut_call> out;
    while (s.step()) {
      uncut_call u;
      u.id = s.column_text(0);
      u.state = parse_call_state(s.column_text_view(1)).value_or(call_state::in_progress);
      u.next_segment = s.column_int(2);
      u.expected = s.column_int(3);
      u.last_sequence = s.column_int(4);
      u.last_packet_at = s.column_optional_double(5);
      if (!s.is_null(6)) u.media = media_declaration{s.column_text(6), s.column_int(7)};
      out.push_back(std::move(u));
    }
    return out;
  });
}

result<job_counts> sqlite_call_store::count_jobs() {
  return with_reader([&](connection& c) -> result<job_counts> {
    // The tallies the writer keeps (a row), and the oldest due job (the first entry of the queued jobs'
    // index): two page reads whatever the history holds.
    job_counts counts;
    auto& s = c.cached("SELECT queued, retrying, running, succeeded, dead FROM job_tallies");
    if (s.step()) {
      counts.queued = s.column_int(0);
      counts.retrying = s.column_int(1);
      counts.running = s.column_int(2);
      counts.succeeded = s.column_int(3);
      counts.dead = s.column_int(4);
    }
    auto& due = c.cached("SELECT MIN(run_at) FROM jobs INDEXED BY jobs_queued_due WHERE state = 'queued' AND run_at <= ?");
    due.bind(1, options_.clock());
    if (due.step()) counts.oldest_due_at = due.column_optional_double(0);
    return counts;
  });
}

result<std::vector<node_presence>> sqlite_call_store::nodes() {
  return with_reader([&](connection& c) -> result<std::vector<node_presence>> {
    auto& s = c.cached(
        "SELECT lease_owner, COUNT(*) FROM jobs INDEXED BY jobs_running_lease WHERE state = 'running' "
        "GROUP BY lease_owner ORDER BY lease_owner");
    std::vector<node_presence> out;
    while (s.step()) out.push_back({s.column_text(0), std::nullopt, std::nullopt, s.column_int(1)});
    return out;
  });
}

result<call_counts> sqlite_call_store::count_calls() {
  return with_reader([&](connection& c) -> result<call_counts> {
    auto& s = c.cached(
        "SELECT state, COUNT(*), TOTAL(packets_received), TOTAL(duplicate_packets), TOTAL(out_of_order_packets), "
        "TOTAL(gaps_opened), TOTAL(late_packets), TOTAL(lost_packets) FROM calls GROUP BY state");
    call_counts out;
    while (s.step()) {
      if (auto st = parse_call_state(s.column_text_view(0)))
        out.by_state[static_cast<std::size_t>(*st)] = s.column_int(1);
      out.packets_received += s.column_int(2);
      out.duplicate_packets += s.column_int(3);
      out.out_of_order_packets += s.column_int(4);
      out.gaps_opened += s.column_int(5);
      out.late_packets += s.column_int(6);
      out.lost_packets += s.column_int(7);
    }
    return out;
  });
}

bool sqlite_call_store::ping() {
  if (broken_.load()) return false;
  auto r = with_reader([](connection& c) -> result<int> {
    auto& s = c.cached("SELECT COUNT(*) FROM schema_migrations");
    return s.step() ? 1 : 0;
  });
  return r.has_value() && *r == 1;
}

writer_stats sqlite_call_store::stats() const {
  writer_stats s;
  commits_.fill(s);
  s.failed_batches = failed_batches_.load(std::memory_order_relaxed);
  s.queued = queued_.load(std::memory_order_relaxed);
  s.queue_limit = options_.queue_limit;
  s.events_pruned = pruned_.load(std::memory_order_relaxed);
  return s;
}

sqlite_wal_stats sqlite_call_store::wal_stats() const {
  sqlite_wal_stats s;
  s.syncs = syncs_.load(std::memory_order_relaxed);
  s.checkpoints = checkpoints_.load(std::memory_order_relaxed);
  s.writer_checkpoints = writer_checkpoints_.load(std::memory_order_relaxed);
  s.waiting_checkpoints = waiting_checkpoints_.load(std::memory_order_relaxed);
  return s;
}

std::vector<backend_metric> sqlite_call_store::backend_metrics() const {
  const sqlite_wal_stats s = wal_stats();
  const auto counter = [](const char* name, const char* help, std::uint64_t value,
                          backend_metric::labels_type labels = {}) {
    return backend_metric::counter(name, help, static_cast<double>(value), std::move(labels));
  };
  const auto histogram = [](const char* name, const char* help, const atomic_histogram& h,
                            backend_metric::labels_type labels = {}) {
    return backend_metric::histogram(name, help, h.snapshot(), std::move(labels));
  };
  constexpr const char* checkpoints_help = "Write-ahead log checkpoints, by who ran them";
  constexpr const char* checkpoint_time_help = "Time of each write-ahead log checkpoint, by who ran it";
  return {
      counter("aipbx_log_pages_total", "Pages the commits appended to the write-ahead log",
              log_pages_.load(std::memory_order_relaxed)),
      counter("aipbx_log_syncs_total", "fdatasync calls on the write-ahead log by the syncer", s.syncs),
      histogram("aipbx_log_sync_seconds", "Time of each fdatasync of the write-ahead log", sync_seconds_),
      counter("aipbx_checkpoints_total", checkpoints_help, s.checkpoints, {{"by", "checkpointer"}}),
      counter("aipbx_checkpoints_total", checkpoints_help, s.writer_checkpoints, {{"by", "writer"}}),
      counter("aipbx_checkpoints_total", checkpoints_help, s.waiting_checkpoints, {{"by", "writer_waiting"}}),
      histogram("aipbx_checkpoint_seconds", checkpoint_time_help, checkpointer_seconds_, {{"by", "checkpointer"}}),
      histogram("aipbx_checkpoint_seconds", checkpoint_time_help, writer_checkpoint_seconds_, {{"by", "writer"}}),
  };
}

}  // namespace aipbx
