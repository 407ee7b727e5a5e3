#include "storage/postgres/pg_call_store.hpp"

#include "domain/clock.hpp"
#include "log/log.hpp"
#include "storage/postgres/pg_conn.hpp"
#include "storage/postgres/pg_migrations.hpp"
#include "storage/postgres/pg_writer.hpp"
#include "storage/write_op.hpp"

#include <libpq-fe.h>

#include <poll.h>

#include <chrono>
#include <limits>
#include <random>

namespace aipbx {

using pg::connection;
using pg::params;
using pg::pg_error;
using pg::result_set;

namespace {

constexpr const char* call_columns =
    "id, state, last_sequence, expected_sequence, packets_received, duplicate_packets, "
    "out_of_order_packets, gaps_opened, missing_packets, first_timestamp, last_timestamp, created_at, "
    "updated_at, state_changed_at, "
    "(SELECT COUNT(*) FROM call_gaps g WHERE g.call_id = calls.id AND NOT g.lost), "
    "last_packet_at, next_segment, late_packets, lost_packets, "
    "(SELECT COUNT(*) FROM call_gaps g WHERE g.call_id = calls.id AND g.lost), "
    "ended_at, end_reason, jobs_total, jobs_succeeded, jobs_dead, media_format, media_packet_ms, track, "
    "primary_id";

call_summary read_call(const result_set& r, int i) {
  call_summary c;
  c.id = r.text(i, 0);
  c.state = parse_call_state(r.text_view(i, 1)).value_or(call_state::in_progress);
  c.last_sequence = r.int64(i, 2);
  c.expected_sequence = r.int64(i, 3);
  c.packets_received = r.int64(i, 4);
  c.duplicate_packets = r.int64(i, 5);
  c.out_of_order_packets = r.int64(i, 6);
  c.gaps_opened = r.int64(i, 7);
  c.missing_packets = r.int64(i, 8);
  c.first_timestamp = r.optional_float8(i, 9);
  c.last_timestamp = r.optional_float8(i, 10);
  c.created_at = r.float8(i, 11);
  c.updated_at = r.float8(i, 12);
  c.state_changed_at = r.float8(i, 13);
  c.missing_ranges = r.int64(i, 14);
  c.last_packet_at = r.optional_float8(i, 15);
  c.next_segment = r.int64(i, 16);
  c.late_packets = r.int64(i, 17);
  c.lost_packets = r.int64(i, 18);
  c.lost_ranges = r.int64(i, 19);
  c.ended_at = r.optional_float8(i, 20);
  c.end_reason = r.optional_text(i, 21);
  c.jobs_total = r.int64(i, 22);
  c.jobs_succeeded = r.int64(i, 23);
  c.jobs_dead = r.int64(i, 24);
  if (!r.is_null(i, 25)) c.media = media_declaration{r.text(i, 25), r.int64(i, 26)};
  c.track = r.optional_text(i, 27);
  c.primary_call = r.optional_text(i, 28);
  return c;
}

stored_packet read_packet(const result_set& r, int i) {
  return {r.int64(i, 0), r.int64(i, 1), r.bytes(i, 2), r.float8(i, 3), r.float8(i, 4)};
}

template <class T, class Key>
auto trim_page(std::vector<T>& rows, std::size_t limit, Key key) -> std::optional<decltype(key(rows.back()))> {
  if (rows.size() <= limit) return std::nullopt;
  rows.resize(limit);
  if (rows.empty()) return std::nullopt;
  return key(rows.back());
}

bool call_exists(connection& c, std::string_view id) {
  return c.exec("SELECT 1 FROM calls WHERE id = $1", params{}.add(id)).rows() > 0;
}

// The key of call `id` (calls.key: its packets and jobs carry it), if the call exists.
std::optional<std::int64_t> call_key(connection& c, std::string_view id) {
  auto r = c.exec("SELECT key FROM calls WHERE id = $1", params{}.add(id));
  if (r.rows() == 0) return std::nullopt;
  return r.int64(0, 0);
}

// The application_name of a node's listening connection, by which nodes() finds the nodes connected now.
// PostgreSQL keeps 63 bytes of it: a longer node name is cut (its leases are then listed apart).
constexpr std::string_view listener_prefix = "aipbx-listener ";
std::string listener_name(const std::string& node) {
  return (std::string(listener_prefix) + node).substr(0, 63);
}

std::string random_token() {
  std::random_device rd;
  return std::to_string(rd()) + "-" + std::to_string(rd());
}

}  // namespace

pg_call_store::pg_call_store(pg_options options) : options_(std::move(options)), token_(random_token()) {
  if (!options_.clock) options_.clock = system_now;
  if (options_.writers == 0) options_.writers = 1;
  if (options_.pool_size == 0) options_.pool_size = 1;
  auto c = std::make_unique<connection>(options_.url, "aipbx-writer");
  schema_version_ = pg::migrate(*c, options_.clock());
  if (!options_.node.empty()) requeue_own(*c);
  idle_readers_.push_back(std::move(c));
  next_sweep_ = std::chrono::steady_clock::now() + options_.sweep_interval;
  kept_ = std::make_unique<pg::kept_calls>();
  for (std::size_t i = 0; i < options_.writers; ++i) {
    writers_.push_back(std::make_unique<pg::writer>(options_, *kept_));
    queues_.push_back(std::make_unique<writer_queue>());
  }
  for (std::size_t i = 0; i < options_.writers; ++i) writer_threads_.emplace_back([this, i] { writer_loop(i); });
  listener_thread_ = std::thread([this] { listener_loop(); });
}

pg_call_store::~pg_call_store() { stop(); }

void pg_call_store::requeue_own(connection& c) {
  // A previous process of this node left these running: the attempts were interrupted, not failed. The
  // job tallies' shard 0 takes the change (see pg_migrations.cpp, version 14): only starting nodes add to it.
  const auto requeued = pg::in_transaction(c, [&] {
    auto r = c.exec(
        "UPDATE jobs SET state = 'queued', attempts = GREATEST(attempts - 1, 0), lease_owner = NULL, "
        "lease_expires_at = NULL, run_at = $1, updated_at = $1 WHERE state = 'running' AND lease_owner = $2 "
        "RETURNING attempts",
        params{}.add(options_.clock()).add(std::string_view(options_.node)));
    job_tally moved;
    for (int i = 0; i < r.rows(); ++i) {
      moved.add(job_state::running, 0, -1);
      moved.add(job_state::queued, static_cast<int>(r.int64(i, 0)), 1);
    }
    if (!moved.empty()) {
      const auto add = pg::add_to_tallies(0, moved);
      c.exec(add.sql, add.p);
    }
    return r.rows();
  });
  if (requeued > 0)
    log::info("jobs requeued", {{"jobs", requeued}, {"reason", "interrupted by a previous stop of this node"}});
}

namespace {

// The call a write names, if it names one.
const std::string* call_of(const write_op& op) {
  return std::visit(
      [](const auto& o) -> const std::string* {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, ingest_op>) return &o.p.call_id;
        else if constexpr (std::is_same_v<T, event_op>) return &o.e.call_id;
        else if constexpr (std::is_same_v<T, end_op> || std::is_same_v<T, archive_op> ||
                           std::is_same_v<T, declare_op>)
          return &o.call_id;
        else return nullptr;
      },
      op.v);
}

}  // namespace

std::size_t pg_call_store::writer_for(const write_op& op) const {
  if (queues_.size() == 1) return 0;
  const std::string* call = call_of(op);
  return call ? std::hash<std::string>{}(*call) % queues_.size() : 0;
}

void pg_call_store::submit(write_op op, bool bounded) {
  errc refused;
  {
    std::lock_guard lock(mutex_);
    if (!stopping_ && (!bounded || queued_total_ < options_.queue_limit)) {
      auto& q = *queues_[writer_for(op)];
      q.ops.push_back(std::move(op));
      queued_.store(++queued_total_, std::memory_order_relaxed);
      q.wake.notify_one();
      return;
    }
    refused = stopping_ ? errc::unavailable : errc::overloaded;
  }
  op.fail(make_error_code(refused));
  op.complete();
}

void pg_call_store::ingest(packet p, ingest_handler done) {
  submit({ingest_op{std::move(p), std::move(done), std::nullopt}}, true);
}
void pg_call_store::claim(std::string owner, std::size_t limit, double lease_seconds, claim_handler done) {
  submit({claim_op{std::move(owner), limit, lease_seconds, std::move(done), std::nullopt}}, false);
}
void pg_call_store::renew(std::int64_t job_id, std::string owner, int attempt, double lease_seconds,
                          bool_handler done) {
  submit({renew_op{job_id, std::move(owner), attempt, lease_seconds, std::move(done), std::nullopt}}, false);
}
void pg_call_store::finish(std::int64_t job_id, std::string owner, int attempt, job_outcome outcome,
                           bool_handler done) {
  submit({finish_op{job_id, std::move(owner), attempt, std::move(outcome), std::move(done), std::nullopt}}, false);
}
void pg_call_store::release(std::int64_t job_id, std::string owner, int attempt, bool_handler done) {
  submit({release_op{job_id, std::move(owner), attempt, std::move(done), std::nullopt}}, false);
}
void pg_call_store::replay(std::int64_t job_id, job_handler done) {
  submit({replay_op{job_id, std::move(done), std::nullopt}}, false);
}
void pg_call_store::record_partial(std::int64_t job_id, std::string owner, int attempt, std::string text,
                                   std::int64_t heard_ms, bool_handler done) {
  submit({partial_op{job_id, std::move(owner), attempt, std::move(text), heard_ms, std::move(done), std::nullopt}},
         false);
}
void pg_call_store::cut_segment(std::string call_id, seq_range range, bool_handler done) {
  submit({cut_op{std::move(call_id), range, std::move(done), std::nullopt}}, false);
}
void pg_call_store::end_call(std::string call_id, std::string reason, state_handler done) {
  submit({end_op{std::move(call_id), std::move(reason), std::move(done), std::nullopt}}, false);
}
void pg_call_store::archive_call(std::string call_id, state_handler done) {
  submit({archive_op{std::move(call_id), std::move(done), std::nullopt}}, false);
}

void pg_call_store::declare_media(std::string call_id, media_declaration media,
                                  std::optional<track_link> track, declare_handler done) {
  if (track && !call_ledger::valid_track(call_id, *track)) return done(errc::invalid_input);
  submit({declare_op{std::move(call_id), std::move(media), std::move(track), std::move(done), std::nullopt}},
         false);
}

void pg_call_store::record_event(call_event e, event_handler done) {
  if (!call_ledger::valid_event(e)) return done(errc::invalid_input);
  submit({event_op{std::move(e), std::move(done), std::nullopt}}, true);
}

result<event_page> pg_call_store::list_events(std::string_view call_id, std::int64_t after,
                                              std::size_t limit) {
  return with_reader([&](connection& c) -> result<event_page> {
    if (!call_exists(c, call_id)) return errc::not_found;
    auto r = c.exec(
        "SELECT id, kind, at, sequence, data FROM call_events WHERE call_id = $1 AND id > $2 ORDER BY id "
        "LIMIT $3",
        params{}.add(call_id).add(after).add(static_cast<std::int64_t>(limit + 1)));
    event_page page;
    for (int i = 0; i < r.rows(); ++i) {
      std::optional<std::int64_t> sequence;
      if (!r.is_null(i, 3)) sequence = r.int64(i, 3);
      page.events.push_back(
          {r.int64(i, 0), std::string(call_id), r.text(i, 1), r.float8(i, 2), sequence, r.text(i, 4)});
    }
    page.next_after = trim_page(page.events, limit, [](const call_event& e) { return e.id; });
    return page;
  });
}

result<std::optional<media_declaration>> pg_call_store::call_media(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<std::optional<media_declaration>> {
    auto r = c.exec("SELECT media_format, media_packet_ms FROM calls WHERE id = $1", params{}.add(call_id));
    if (r.rows() == 0) return errc::not_found;
    if (r.is_null(0, 0)) return std::optional<media_declaration>{};
    return std::optional<media_declaration>{media_declaration{r.text(0, 0), r.int64(0, 1)}};
  });
}

void pg_call_store::on_jobs_queued(std::function<void()> listener) {
  aipbx::lock_guard lock(listener_mutex_);
  listener_ = std::move(listener);
}

void pg_call_store::on_events(std::function<void()> listener) {
  aipbx::lock_guard lock(listener_mutex_);
  events_listener_ = std::move(listener);
}

void pg_call_store::notify_events() const {
  std::function<void()> l;
  {
    aipbx::lock_guard lock(listener_mutex_);
    l = events_listener_;
  }
  if (l) l();
}

void pg_call_store::notify_listener() const {
  std::function<void()> l;
  {
    aipbx::lock_guard lock(listener_mutex_);
    l = listener_;
  }
  if (l) l();
}

void pg_call_store::writer_loop(std::size_t index) {
  log::name_thread("aipbx-pg-writer");
  pg::writer& w = *writers_[index];
  std::unique_ptr<connection> conn;
  auto last_attempt = std::chrono::steady_clock::time_point{};
  std::deque<write_op> batch;
  for (;;) {
    bool sweep = false;
    {
      std::unique_lock lock(mutex_);
      auto& q = *queues_[index];
      q.wake.wait_until(lock, next_sweep_, [&] { return stopping_ || !q.ops.empty(); });
      if (q.ops.empty() && stopping_) break;
      if (q.ops.size() <= options_.max_batch) {
        batch.swap(q.ops);
      } else {  // the rest waits for this writer's next batch, behind the writes of the same calls
        auto end = q.ops.begin() + static_cast<std::ptrdiff_t>(options_.max_batch);
        batch.assign(std::make_move_iterator(q.ops.begin()), std::make_move_iterator(end));
        q.ops.erase(q.ops.begin(), end);
      }
      queued_total_ -= batch.size();
      queued_.store(queued_total_, std::memory_order_relaxed);
      const auto now = std::chrono::steady_clock::now();
      if (now >= next_sweep_) {
        sweep = true;
        next_sweep_ = now + options_.sweep_interval;
      }
    }
    if (batch.empty() && !sweep) {
      if (conn && conn->ok()) {
        try {
          w.pay_notify(*conn, token_);
        } catch (const pg_error& e) {
          log::warn("job notification not sent", {{"error", e.what()}});
        }
      }
      continue;
    }

    if (!conn || !conn->ok()) {
      conn.reset();
      const auto now = std::chrono::steady_clock::now();
      if (now - last_attempt >= options_.reconnect_interval) {
        last_attempt = now;
        try {
          // Set only once it is ready: a connection that failed half-way is not used.
          auto fresh = std::make_unique<connection>(options_.url, "aipbx-writer");
          fresh->prepare_generic();
          w.connected(*fresh);
          conn = std::move(fresh);
          if (!reachable_.exchange(true)) log::info("database reachable again", {});
        } catch (const pg_error& e) {
          if (reachable_.exchange(false)) log::error("database unreachable", {{"error", e.what()}});
        }
      }
      if (!conn) {
        // Refused at once rather than held: the client retries after Retry-After.
        for (auto& op : batch) {
          op.fail(make_error_code(errc::unavailable));
          op.complete();
        }
        failed_batches_.fetch_add(batch.empty() ? 0 : 1, std::memory_order_relaxed);
        batch.clear();
        continue;
      }
    }

    const std::uint64_t n = batch.size();
    const auto began = std::chrono::steady_clock::now();
    const bool jobs_queued = w.commit(*conn, batch, options_.clock(), sweep, token_);
    if (!conn->ok()) {
      if (reachable_.exchange(false)) log::error("database connection lost", {});
      conn.reset();
    }
    commits_.committed(n, std::chrono::steady_clock::now() - began);
    if (jobs_queued) notify_listener();
    if (w.wrote_events()) notify_events();
    for (auto& op : batch) op.complete();
    batch.clear();
  }
}

void pg_call_store::listener_loop() {
  log::name_thread("aipbx-pg-listen");
  std::unique_ptr<connection> conn;
  while (!listener_stop_.load()) {
    if (!conn || !conn->ok()) {
      conn.reset();
      listening_.store(false);
      try {
        conn = std::make_unique<connection>(options_.url, listener_name(options_.node).c_str());
        conn->exec("LISTEN aipbx_jobs");
        conn->exec("LISTEN aipbx_events");
        // Jobs and events may have been added while nobody listened.
        notify_listener();
        notify_events();
        listening_.store(true);
      } catch (const pg_error&) {
        conn.reset();
        for (int i = 0; i < 10 && !listener_stop_.load(); ++i)
          std::this_thread::sleep_for(options_.reconnect_interval / 10);
        continue;
      }
    }
    pollfd pfd{PQsocket(conn->handle()), POLLIN, 0};
    if (::poll(&pfd, 1, 200) < 0) continue;
    if (!(pfd.revents & (POLLIN | POLLERR | POLLHUP))) continue;
    if (!PQconsumeInput(conn->handle())) {
      conn.reset();
      continue;
    }
    bool heard = false, events = false;
    while (PGnotify* n = PQnotifies(conn->handle())) {
      if (std::string_view(n->relname) == "aipbx_events") events = true;
      else if (token_ != n->extra) heard = true;
      PQfreemem(n);
    }
    if (heard) notify_listener();
    if (events) notify_events();
  }
}

void pg_call_store::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  for (auto& q : queues_) q->wake.notify_all();
  for (auto& t : writer_threads_)
    if (t.joinable()) t.join();
  listener_stop_.store(true);
  if (listener_thread_.joinable()) listener_thread_.join();
}

template <class F>
auto pg_call_store::with_reader(F&& f) -> decltype(f(std::declval<connection&>())) {
  using R = decltype(f(std::declval<connection&>()));
  std::unique_ptr<connection> c;
  {
    std::unique_lock lock(readers_mutex_);
    reader_free_.wait(lock, [this] { return !idle_readers_.empty() || readers_out_ < options_.pool_size; });
    if (!idle_readers_.empty()) {
      c = std::move(idle_readers_.back());
      idle_readers_.pop_back();
    }
    ++readers_out_;
  }
  struct give_back {
    pg_call_store& s;
    std::unique_ptr<connection>& c;
    ~give_back() {
      std::lock_guard lock(s.readers_mutex_);
      --s.readers_out_;
      if (c && c->ok()) s.idle_readers_.push_back(std::move(c));
      s.reader_free_.notify_one();
    }
  } back{*this, c};
  try {
    if (!c) c = std::make_unique<connection>(options_.url, "aipbx-reader");
    return f(*c);
  } catch (const pg_error& e) {
    if (c) c->rollback();
    log::error("read failed", {{"error", e.what()}, {"sqlstate", e.sqlstate()}});
    return R(boost::system::in_place_error, make_error_code(e.unavailable() ? errc::unavailable : errc::store_failure));
  }
}

result<call_page> pg_call_store::list_calls(const call_query& query) {
  return with_reader([&](connection& c) -> result<call_page> {
    std::string sql = std::string("SELECT ") + call_columns + " FROM calls WHERE id > $1";
    sql += query.state ? " AND state = $3" : " AND state <> 'ARCHIVED'";
    sql += " ORDER BY id LIMIT $2";
    params p;
    p.add(std::string_view(query.after.value_or(""))).add(static_cast<std::int64_t>(query.limit + 1));
    if (query.state) p.add(to_string(*query.state));
    auto r = c.exec(sql, p);
    call_page page;
    for (int i = 0; i < r.rows(); ++i) page.calls.push_back(read_call(r, i));
    page.next_after = trim_page(page.calls, query.limit, [](const call_summary& s) { return s.id; });
    return page;
  });
}

result<call_summary> pg_call_store::get_call(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<call_summary> {
    auto r = c.exec(std::string("SELECT ") + call_columns + " FROM calls WHERE id = $1", params{}.add(call_id));
    if (r.rows() == 0) return errc::not_found;
    call_summary call = read_call(r, 0);
    auto t = c.exec("SELECT from_state, to_state, reason, at FROM call_transitions WHERE call_id = $1 ORDER BY id",
                    params{}.add(call_id));
    for (int i = 0; i < t.rows(); ++i) {
      call_transition tr;
      if (!t.is_null(i, 0)) tr.from = parse_call_state(t.text_view(i, 0));
      tr.to = parse_call_state(t.text_view(i, 1)).value_or(call_state::in_progress);
      tr.reason = t.text(i, 2);
      tr.at = t.float8(i, 3);
      call.transitions.push_back(std::move(tr));
    }
    auto k =
        c.exec("SELECT track, id FROM calls WHERE primary_id = $1 ORDER BY track, id", params{}.add(call_id));
    for (int i = 0; i < k.rows(); ++i) call.tracks.emplace_back(k.text(i, 0), k.text(i, 1));
    return call;
  });
}

result<packet_page> pg_call_store::list_packets(std::string_view call_id, std::int64_t after, std::size_t limit) {
  return with_reader([&](connection& c) -> result<packet_page> {
    const auto key = call_key(c, call_id);
    if (!key) return errc::not_found;
    auto r = c.exec(
        "SELECT id, sequence, data, timestamp, received_at FROM packets WHERE call_key = $1 AND sequence > $2 "
        "ORDER BY sequence LIMIT $3",
        params{}.add(*key).add(after).add(static_cast<std::int64_t>(limit + 1)));
    packet_page page;
    for (int i = 0; i < r.rows(); ++i) page.packets.push_back(read_packet(r, i));
    page.next_after = trim_page(page.packets, limit, [](const stored_packet& p) { return p.sequence; });
    return page;
  });
}

result<call_store::gap_ranges> pg_call_store::gaps(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<gap_ranges> {
    if (!call_exists(c, call_id)) return errc::not_found;
    auto r = c.exec(
        "SELECT first_sequence, last_sequence, lost FROM call_gaps WHERE call_id = $1 ORDER BY first_sequence",
        params{}.add(call_id));
    gap_ranges out;
    for (int i = 0; i < r.rows(); ++i) (r.boolean(i, 2) ? out.lost : out.open).push_back({r.int64(i, 0), r.int64(i, 1)});
    if (out.lost.empty()) return out;
    // A packet inside a lost range arrived after the range was given up: read on the (call_key, sequence)
    // index, range by range, not by scanning every packet of the call for the flag.
    auto late = c.exec(
        "SELECT p.sequence FROM call_gaps g JOIN calls k ON k.id = g.call_id JOIN packets p "
        "ON p.call_key = k.key AND p.sequence BETWEEN g.first_sequence AND g.last_sequence "
        "WHERE g.call_id = $1 AND g.lost ORDER BY p.sequence",
        params{}.add(call_id));
    std::vector<std::int64_t> sequences;
    sequences.reserve(static_cast<std::size_t>(late.rows()));
    for (int i = 0; i < late.rows(); ++i) sequences.push_back(late.int64(i, 0));
    out.late = to_ranges(sequences);
    return out;
  });
}

namespace {

// The statement of a page of jobs. Queued, running and dead jobs are listed from their state's own partial
// index (pg_migrations.cpp, version 12), which holds that state's jobs only and few of them: all their ids
// after the cursor are taken from it first (a separate, materialized step, so that the page's ORDER BY id
// LIMIT cannot turn it into a walk of the primary key, row by row, through the succeeded jobs that are most
// of the table: the planner takes the states' rows to be spread evenly over the ids, and they are not),
// then sorted. Succeeded jobs are listed by the primary key. The state is written into the statement (one
// of four names): a parameter would hide which partial index applies.
std::string jobs_page_sql(const job_query& query) {
  std::string where = "id > $1";
  if (query.state) where += " AND state = '" + std::string(to_string(*query.state)) + "'";
  if (query.call_id) where += " AND call_key = (SELECT key FROM calls WHERE id = $3)";
  const std::string select = std::string("SELECT ") + pg::job_columns + " FROM jobs WHERE ";
  if (!query.state || *query.state == job_state::succeeded) return select + where + " ORDER BY id LIMIT $2";
  return "WITH ids AS MATERIALIZED (SELECT id FROM jobs WHERE " + where + ") " + select +
         "id IN (SELECT id FROM ids ORDER BY id LIMIT $2) ORDER BY id";
}

}  // namespace

result<job_page> pg_call_store::list_jobs(const job_query& query) {
  return with_reader([&](connection& c) -> result<job_page> {
    params p;
    p.add(query.after).add(static_cast<std::int64_t>(query.limit + 1));
    if (query.call_id) p.add(std::string_view(*query.call_id));
    auto r = c.exec(jobs_page_sql(query), p);
    job_page page;
    for (int i = 0; i < r.rows(); ++i) page.jobs.push_back(pg::read_job(r, i));
    page.next_after = trim_page(page.jobs, query.limit, [](const job& j) { return j.id; });
    return page;
  });
}

result<job> pg_call_store::get_job(std::int64_t id) {
  return with_reader([&](connection& c) -> result<job> {
    auto r = c.exec(std::string("SELECT ") + pg::job_columns + " FROM jobs WHERE id = $1", params{}.add(id));
    if (r.rows() == 0) return errc::not_found;
    return pg::read_job(r, 0);
  });
}

result<std::vector<transcript_segment>> pg_call_store::transcript(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<std::vector<transcript_segment>> {
    if (!call_exists(c, call_id)) return errc::not_found;
    auto r = c.exec(
        "SELECT job_id, first_sequence, last_sequence, text, engine, latency_ms, created_at FROM "
        "transcript_segments WHERE call_id = $1 ORDER BY first_sequence",
        params{}.add(call_id));
    std::vector<transcript_segment> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i)
      out.push_back({r.int64(i, 0), r.int64(i, 1), r.int64(i, 2), r.text(i, 3), r.text(i, 4), r.float8(i, 5),
                     r.float8(i, 6)});
    return out;
  });
}

result<std::vector<partial_segment>> pg_call_store::partials(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<std::vector<partial_segment>> {
    if (!call_exists(c, call_id)) return errc::not_found;
    auto r = c.exec(
        "SELECT p.job_id, j.first_sequence, j.last_sequence, p.text, p.heard_ms, p.updated_at FROM "
        "transcript_partials p JOIN jobs j ON j.id = p.job_id WHERE p.call_id = $1 AND j.state = 'running' AND "
        "j.attempts = p.attempt AND j.lease_expires_at > $2 ORDER BY j.first_sequence",
        params{}.add(call_id).add(options_.clock()));
    std::vector<partial_segment> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i)
      out.push_back({r.int64(i, 0), r.int64(i, 1), r.int64(i, 2), r.text(i, 3), r.int64(i, 4), r.float8(i, 5)});
    return out;
  });
}

result<std::vector<stored_packet>> pg_call_store::segment_packets(std::string_view call_id, std::int64_t first,
                                                                 std::int64_t last) {
  return with_reader([&](connection& c) -> result<std::vector<stored_packet>> {
    auto r = c.exec(
        "SELECT p.id, p.sequence, p.data, p.timestamp, p.received_at FROM calls c JOIN packets p ON p.call_key = "
        "c.key WHERE c.id = $1 AND p.sequence BETWEEN $2 AND $3 AND NOT p.late ORDER BY p.sequence",
        params{}.add(call_id).add(first).add(last));
    std::vector<stored_packet> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) out.push_back(read_packet(r, i));
    return out;
  });
}

result<std::vector<uncut_call>> pg_call_store::uncut_calls(std::string_view after, std::size_t limit) {
  return with_reader([&](connection& c) -> result<std::vector<uncut_call>> {
    auto r = c.exec(
        "SELECT id, state, next_segment, expected_sequence, last_sequence, last_packet_at, media_format, "
        "media_packet_ms FROM calls WHERE state IN ('IN_PROGRESS', 'PROCESSING_AI') AND next_segment <= "
        "last_sequence AND id > $1 ORDER BY id LIMIT $2",
        params{}.add(after).add(static_cast<std::int64_t>(limit)));
    std::vector<uncut_call> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i) {
      uncut_call u;
      u.id = r.text(i, 0);
      u.state = parse_call_state(r.text_view(i, 1)).value_or(call_state::in_progress);
      u.next_segment = r.int64(i, 2);
      u.expected = r.int64(i, 3);
      u.last_sequence = r.int64(i, 4);
      u.last_packet_at = r.optional_float8(i, 5);
      if (!r.is_null(i, 6)) u.media = media_declaration{r.text(i, 6), r.int64(i, 7)};
      out.push_back(std::move(u));
    }
    return out;
  });
}

result<job_counts> pg_call_store::count_jobs() {
  return with_reader([&](connection& c) -> result<job_counts> {
    // The tallies' rows, one per writer connected at once at most (pg_migrations.cpp, version 14), and the
    // first entry of the due queue's index: neither grows with the jobs kept. One statement, one snapshot.
    auto r = c.exec(
        "SELECT COALESCE(SUM(queued), 0)::bigint, COALESCE(SUM(retrying), 0)::bigint, "
        "COALESCE(SUM(running), 0)::bigint, COALESCE(SUM(succeeded), 0)::bigint, COALESCE(SUM(dead), 0)::bigint, "
        "(SELECT MIN(run_at) FROM jobs WHERE state = 'queued' AND run_at <= $1) FROM job_tallies",
        params{}.add(options_.clock()));
    job_counts counts;
    counts.queued = r.int64(0, 0);
    counts.retrying = r.int64(0, 1);
    counts.running = r.int64(0, 2);
    counts.succeeded = r.int64(0, 3);
    counts.dead = r.int64(0, 4);
    counts.oldest_due_at = r.optional_float8(0, 5);
    return counts;
  });
}

result<std::vector<node_presence>> pg_call_store::nodes() {
  return with_reader([&](connection& c) -> result<std::vector<node_presence>> {
    // Each node holds one listening connection named after it (listener_name); other roles' sessions
    // show their application_name and address too.
    auto r = c.exec(
        "WITH connected AS (SELECT substr(application_name, length($1) + 1) AS name, "
        "MIN(backend_start) AS since, MIN(host(client_addr)) AS address FROM pg_stat_activity "
        "WHERE datname = current_database() AND starts_with(application_name, $1) GROUP BY 1), "
        "leases AS (SELECT lease_owner AS name, COUNT(*) AS running FROM jobs WHERE state = 'running' "
        "GROUP BY lease_owner) "
        "SELECT COALESCE(c.name, l.name) AS name, EXTRACT(EPOCH FROM c.since)::float8, c.address, "
        "COALESCE(l.running, 0) FROM connected c FULL JOIN leases l ON l.name = c.name ORDER BY 1",
        params{}.add(listener_prefix));
    std::vector<node_presence> out;
    out.reserve(static_cast<std::size_t>(r.rows()));
    for (int i = 0; i < r.rows(); ++i)
      out.push_back({r.text(i, 0), r.optional_float8(i, 1), r.optional_text(i, 2), r.int64(i, 3)});
    return out;
  });
}

result<call_counts> pg_call_store::count_calls() {
  return with_reader([&](connection& c) -> result<call_counts> {
    auto r = c.exec(
        "SELECT state, COUNT(*), COALESCE(SUM(packets_received), 0), COALESCE(SUM(duplicate_packets), 0), "
        "COALESCE(SUM(out_of_order_packets), 0), COALESCE(SUM(gaps_opened), 0), COALESCE(SUM(late_packets), 0), "
        "COALESCE(SUM(lost_packets), 0) FROM calls GROUP BY state");
    call_counts out;
    for (int i = 0; i < r.rows(); ++i) {
      if (auto st = parse_call_state(r.text_view(i, 0))) out.by_state[static_cast<std::size_t>(*st)] = r.int64(i, 1);
      out.packets_received += r.int64(i, 2);
      out.duplicate_packets += r.int64(i, 3);
      out.out_of_order_packets += r.int64(i, 4);
      out.gaps_opened += r.int64(i, 5);
      out.late_packets += r.int64(i, 6);
      out.lost_packets += r.int64(i, 7);
    }
    return out;
  });
}

bool pg_call_store::ping() {
  auto r = with_reader([](connection& c) -> result<int> {
    return static_cast<int>(c.exec("SELECT COUNT(*) FROM schema_migrations").rows());
  });
  return r.has_value() && *r == 1;
}

writer_stats pg_call_store::stats() const {
  writer_stats s;
  commits_.fill(s);
  std::uint64_t failed = failed_batches_.load(std::memory_order_relaxed);
  for (const auto& w : writers_) failed += w->failed_batches();
  s.failed_batches = failed;
  s.queued = queued_.load(std::memory_order_relaxed);
  s.queue_limit = options_.queue_limit;
  for (const auto& w : writers_) s.events_pruned += w->pruned_events();
  return s;
}

std::vector<backend_metric> pg_call_store::backend_metrics() const {
  pg::writer::path_counts total;
  for (const auto& w : writers_) {
    const auto p = w->paths();
    total.kept += p.kept;
    total.read += p.read;
    total.stale += p.stale;
  }
  constexpr const char* batches_help =
      "Committed write transactions by how they got their calls' state: kept by the writer from its last "
      "commit (one round trip), or read from the database";
  const auto counter = [](const char* name, const char* help, std::uint64_t value,
                          backend_metric::labels_type labels = {}) {
    return backend_metric::counter(name, help, static_cast<double>(value), std::move(labels));
  };
  return {
      counter("aipbx_pg_batches_total", batches_help, total.kept, {{"path", "kept"}}),
      counter("aipbx_pg_batches_total", batches_help, total.read, {{"path", "read"}}),
      counter("aipbx_pg_kept_stale_total",
              "Write transactions run again because another writer or node had changed a call this writer "
              "kept",
              total.stale),
  };
}

namespace {

logged_event read_logged(const result_set& r, int i) {
  logged_event e;
  e.id = r.int64(i, 2);
  e.at = r.float8(i, 3);
  e.kind = parse_event_kind(r.text_view(i, 4)).value_or(event_kind::call_event);
  e.call_id = r.text(i, 5);
  if (!r.is_null(i, 6)) e.job_id = r.int64(i, 6);
  e.data = r.text(i, 7);
  return e;
}

}  // namespace

// One statement, so one snapshot: the counter, the prune mark and the rows agree. What is committed is
// always every event up to the counter, so the rows read are a prefix of what any later read sees. Events
// are stored a transaction's worth to a row (pg_migrations.cpp, version 13): the read takes the rows that
// hold ids in (lo, hi], by their last id (up to the first row at or past hi), and unnests them in id order;
// the filters apply to the events. Ids are consecutive, so an unfiltered read of `limit` events needs no
// more than the `limit` ids after lo: hi is bounded by that too, and a read unnests no more rows than its
// page needs (a filtered one is bounded by `up_to`; the event hub gives one).
result<log_page> pg_call_store::read_log(std::int64_t after, std::optional<std::int64_t> up_to,
                                         const event_filter& filter, std::size_t limit) {
  limit = std::max<std::size_t>(limit, 1);
  return with_reader([&](connection& c) -> result<log_page> {
    std::vector<std::string> kinds;
    for (auto k : filter.kinds) kinds.emplace_back(to_string(k));
    constexpr auto unbounded = std::numeric_limits<std::int64_t>::max();
    const bool filtered = filter.call_id || !filter.kinds.empty();
    auto r = c.exec(
        "SELECT s.last_id, s.pruned_through, e.id, e.at, e.kind, e.call_id, e.job_id, e.data "
        "FROM event_log_state s LEFT JOIN LATERAL (SELECT b.first_id + u.n - 1 AS id, u.at, u.kind, u.call_id, "
        "u.job_id, u.data FROM (SELECT GREATEST($1, s.pruned_through) AS lo, LEAST($2, s.last_id, "
        "GREATEST($1, s.pruned_through) + LEAST($6, s.last_id)) AS hi) r, event_batches b, "
        "unnest(b.ats, b.kinds, b.call_ids, b.job_ids, b.data) WITH ORDINALITY AS u(at, kind, call_id, job_id, data, n) "
        "WHERE b.last_id > r.lo AND b.last_id <= COALESCE((SELECT MIN(last_id) FROM event_batches "
        "WHERE last_id >= r.hi), r.hi) AND b.first_id + u.n - 1 > r.lo AND b.first_id + u.n - 1 <= r.hi "
        "AND ($3::text = '' OR u.call_id = $3::text) AND (cardinality($4::text[]) = 0 OR u.kind = ANY($4::text[])) "
        "ORDER BY b.last_id, u.n LIMIT $5) e ON true ORDER BY e.id",
        params{}
            .add(after)
            .add(up_to.value_or(unbounded))
            .add(std::string_view(filter.call_id.value_or("")))  // a call id is never empty
            .add_texts(kinds)
            .add(static_cast<std::int64_t>(limit))
            .add(filtered ? unbounded : static_cast<std::int64_t>(limit)));
    if (r.rows() == 0) return errc::store_failure;  // the state row is missing: not a store of this version
    log_page page;
    const std::int64_t head = r.int64(0, 0);
    page.pruned_through = r.int64(0, 1);
    for (int i = 0; i < r.rows(); ++i)
      if (!r.is_null(i, 2)) page.events.push_back(read_logged(r, i));
    const std::int64_t end = up_to ? std::min(*up_to, head) : head;
    page.scanned_to = page.events.size() < limit ? std::max(end, after) : page.events.back().id;
    return page;
  });
}

result<std::int64_t> pg_call_store::log_head() {
  return with_reader([](connection& c) -> result<std::int64_t> {
    auto r = c.exec("SELECT last_id FROM event_log_state");
    if (r.rows() == 0) return errc::store_failure;
    return r.int64(0, 0);
  });
}

}  // namespace aipbx
