#include "storage/sqlite/sqlite_call_store.hpp"

#include "log/log.hpp"
#include "storage/sqlite/sqlite_db.hpp"
#include "storage/sqlite/sqlite_migrations.hpp"

#include <chrono>
#include <unordered_map>

namespace aipbx {

using sqlite::connection;
using sqlite::sqlite_error;
using sqlite::statement;

namespace {

double system_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

struct string_hash {
  using is_transparent = void;
  std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
};

// The writer's view of one call: what the calls row holds, plus the live tracker.
struct call_record {
  call_state state = call_state::in_progress;
  sequence_tracker tracker;
  std::int64_t packets_received = 0;
  std::int64_t duplicate_packets = 0;
  std::int64_t out_of_order_packets = 0;
  std::int64_t gaps_opened = 0;
  std::optional<double> first_timestamp;
  std::optional<double> last_timestamp;
  bool dirty = false;
};

// A warning decided inside a transaction, written only once the transaction has committed.
struct deferred_warning {
  const char* msg;
  std::string call_id;
  std::int64_t sequence;
  std::int64_t expected;
  std::optional<seq_range> range;
};

constexpr const char* call_columns =
    "id, state, last_sequence, expected_sequence, packets_received, duplicate_packets, "
    "out_of_order_packets, gaps_opened, missing_packets, first_timestamp, last_timestamp, created_at, "
    "updated_at, state_changed_at, (SELECT COUNT(*) FROM call_gaps g WHERE g.call_id = calls.id)";

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
  return c;
}

void configure(connection& c, int busy_timeout_ms) {
  sqlite3_busy_timeout(c.handle(), busy_timeout_ms);
  c.exec("PRAGMA foreign_keys = ON");
}

}  // namespace

// Everything the writer thread alone touches.
class sqlite_call_store::writer {
 public:
  writer(const sqlite_options& options, std::unique_ptr<connection> owned)
      : options_(options),
        owned_(std::move(owned)),
        db_(*owned_),
        insert_packet_(db_.prepare("INSERT INTO packets(call_id, sequence, data, timestamp, received_at) "
                                  "VALUES (?, ?, ?, ?, ?) ON CONFLICT(call_id, sequence) DO NOTHING")),
        select_packet_data_(db_.prepare("SELECT data FROM packets WHERE call_id = ? AND sequence = ?")),
        select_call_(db_.prepare("SELECT state, last_sequence, packets_received, duplicate_packets, "
                                "out_of_order_packets, gaps_opened, first_timestamp, last_timestamp "
                                "FROM calls WHERE id = ?")),
        select_gaps_(db_.prepare("SELECT first_sequence, last_sequence FROM call_gaps WHERE call_id = ? "
                                "ORDER BY first_sequence")),
        insert_call_(db_.prepare("INSERT INTO calls(id, created_at, updated_at, state_changed_at) "
                                "VALUES (?, ?, ?, ?)")),
        update_call_(db_.prepare("UPDATE calls SET last_sequence = ?, expected_sequence = ?, packets_received = ?, "
                                "duplicate_packets = ?, out_of_order_packets = ?, gaps_opened = ?, "
                                "missing_packets = ?, first_timestamp = ?, last_timestamp = ?, updated_at = ? "
                                "WHERE id = ?")),
        insert_gap_(db_.prepare("INSERT INTO call_gaps(call_id, first_sequence, last_sequence) VALUES (?, ?, ?)")),
        delete_gap_(db_.prepare("DELETE FROM call_gaps WHERE call_id = ? AND first_sequence = ?")) {}

  // Applies and commits `batch`, then answers every packet in it.
  void commit(std::deque<pending>& batch, double now, std::atomic<std::uint64_t>& failed_batches) {
    if (cache_.size() > options_.cache_limit) cache_.clear();
    std::vector<result<ingest_outcome>> results;
    results.reserve(batch.size());
    warnings_.clear();
    dirty_.clear();
    try {
      sqlite::transaction tx(db_);
      for (auto& item : batch) results.push_back(apply(item.p, now));
      for (auto* entry : dirty_) write_call(entry->first, entry->second, now);
      tx.commit();
    } catch (const sqlite_error& e) {
      // The transaction rolled back: the cached trackers may hold changes that were never stored.
      cache_.clear();
      failed_batches.fetch_add(1, std::memory_order_relaxed);
      log::error("commit failed", {{"error", e.what()}, {"sqlite_code", e.code()}, {"packets", batch.size()}});
      results.assign(batch.size(), make_error_code(e.transient() ? errc::unavailable : errc::store_failure));
      warnings_.clear();
    }
    for (const auto& w : warnings_) {
      if (w.range)
        log::warn(w.msg, {{"call_id", w.call_id}, {"sequence", w.sequence}, {"expected", w.expected},
                          {"missing_first", w.range->first}, {"missing_last", w.range->last}});
      else
        log::warn(w.msg, {{"call_id", w.call_id}, {"sequence", w.sequence}, {"expected", w.expected}});
    }
    for (std::size_t i = 0; i < batch.size(); ++i) batch[i].done(std::move(results[i]));
  }

 private:
  using cache_map = std::unordered_map<std::string, call_record, string_hash, std::equal_to<>>;

  result<ingest_outcome> apply(const packet& p, double now) {
    ingest_outcome out;
    auto& entry = load_or_create(p.call_id, now, out.call_created);
    call_record& rec = entry.second;
    if (rec.state != call_state::in_progress) return errc::call_ended;

    insert_packet_.bind(1, std::string_view(p.call_id))
        .bind(2, p.sequence)
        .bind(3, std::string_view(p.data))
        .bind(4, p.timestamp)
        .bind(5, now)
        .run();
    if (db_.changes() == 0) {
      select_packet_data_.bind(1, std::string_view(p.call_id)).bind(2, p.sequence);
      const bool same = select_packet_data_.step() && select_packet_data_.column_text_view(0) == p.data;
      select_packet_data_.reset();
      if (!same) return errc::sequence_conflict;
      ++rec.duplicate_packets;
      mark_dirty(entry);
      out.duplicate = true;
      out.kind = arrival::duplicate;
      out.expected = rec.tracker.expected();
      out.last_sequence = rec.tracker.highest();
      out.missing = rec.tracker.missing_count();
      return out;
    }

    const observation obs = rec.tracker.observe(p.sequence);
    if (obs.removed) delete_gap_.bind(1, std::string_view(p.call_id)).bind(2, obs.removed->first).run();
    for (const auto& r : obs.added)
      insert_gap_.bind(1, std::string_view(p.call_id)).bind(2, r.first).bind(3, r.last).run();

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
      case arrival::before_start:
      case arrival::duplicate:  // stored for the first time although below the highest: out of order
        ++rec.out_of_order_packets;
        warnings_.push_back({"out-of-order packet", p.call_id, p.sequence, obs.expected, std::nullopt});
        break;
      case arrival::in_order: break;
    }
    if (!rec.first_timestamp || p.timestamp < *rec.first_timestamp) rec.first_timestamp = p.timestamp;
    if (!rec.last_timestamp || p.timestamp > *rec.last_timestamp) rec.last_timestamp = p.timestamp;
    mark_dirty(entry);

    out.kind = obs.kind == arrival::duplicate ? arrival::late : obs.kind;
    out.expected = rec.tracker.expected();
    out.last_sequence = rec.tracker.highest();
    out.missing = rec.tracker.missing_count();
    return out;
  }

  cache_map::value_type& load_or_create(const std::string& id, double now, bool& created) {
    if (auto it = cache_.find(id); it != cache_.end()) return *it;
    call_record rec;
    select_call_.bind(1, std::string_view(id));
    if (select_call_.step()) {
      rec.state = parse_call_state(select_call_.column_text_view(0)).value_or(call_state::in_progress);
      const std::int64_t highest = select_call_.column_int(1);
      rec.packets_received = select_call_.column_int(2);
      rec.duplicate_packets = select_call_.column_int(3);
      rec.out_of_order_packets = select_call_.column_int(4);
      rec.gaps_opened = select_call_.column_int(5);
      rec.first_timestamp = select_call_.column_optional_double(6);
      rec.last_timestamp = select_call_.column_optional_double(7);
      select_call_.reset();
      std::vector<seq_range> missing;
      select_gaps_.bind(1, std::string_view(id));
      while (select_gaps_.step()) missing.push_back({select_gaps_.column_int(0), select_gaps_.column_int(1)});
      select_gaps_.reset();
      rec.tracker = sequence_tracker(highest, missing);
    } else {
      select_call_.reset();
      insert_call_.bind(1, std::string_view(id)).bind(2, now).bind(3, now).bind(4, now).run();
      created = true;
      log::info("call created", {{"call_id", id}});
    }
    return *cache_.emplace(id, std::move(rec)).first;
  }

  void mark_dirty(cache_map::value_type& entry) {
    if (!entry.second.dirty) {
      entry.second.dirty = true;
      dirty_.push_back(&entry);
    }
  }

  void write_call(const std::string& id, call_record& rec, double now) {
    update_call_.bind(1, rec.tracker.highest())
        .bind(2, rec.tracker.expected())
        .bind(3, rec.packets_received)
        .bind(4, rec.duplicate_packets)
        .bind(5, rec.out_of_order_packets)
        .bind(6, rec.gaps_opened)
        .bind(7, rec.tracker.missing_count())
        .bind(8, rec.first_timestamp)
        .bind(9, rec.last_timestamp)
        .bind(10, now)
        .bind(11, std::string_view(id))
        .run();
    rec.dirty = false;
  }

  const sqlite_options& options_;
  std::unique_ptr<connection> owned_;
  connection& db_;
  statement insert_packet_, select_packet_data_, select_call_, select_gaps_, insert_call_, update_call_,
      insert_gap_, delete_gap_;
  cache_map cache_;
  std::vector<cache_map::value_type*> dirty_;
  std::vector<deferred_warning> warnings_;
};

sqlite_call_store::sqlite_call_store(sqlite_options options) : options_(std::move(options)) {
  if (!options_.clock) options_.clock = system_now;
  auto db = std::make_unique<connection>(options_.path, connection::mode::read_write);
  configure(*db, options_.busy_timeout_ms);
  db->exec("PRAGMA journal_mode = WAL");
  db->exec("PRAGMA synchronous = FULL");
  schema_version_ = sqlite::migrate(*db, options_.clock());
  writer_ = std::make_unique<writer>(options_, std::move(db));
  writer_thread_ = std::thread([this] { writer_loop(); });
}

sqlite_call_store::~sqlite_call_store() {
  stop();
  writer_.reset();
}

void sqlite_call_store::ingest(packet p, ingest_handler done) {
  errc refusal;
  {
    std::lock_guard lock(mutex_);
    if (!stopping_ && queue_.size() < options_.queue_limit) {
      queue_.push_back({std::move(p), std::move(done)});
      queued_.store(queue_.size(), std::memory_order_relaxed);
      if (queue_.size() == 1) wake_.notify_one();
      return;
    }
    refusal = stopping_ ? errc::unavailable : errc::overloaded;
  }
  done(make_error_code(refusal));
}

void sqlite_call_store::writer_loop() {
  std::deque<pending> batch;
  for (;;) {
    {
      std::unique_lock lock(mutex_);
      wake_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      if (queue_.empty()) return;
      if (queue_.size() <= options_.max_batch) {
        batch.swap(queue_);
      } else {
        auto end = queue_.begin() + static_cast<std::ptrdiff_t>(options_.max_batch);
        batch.assign(std::make_move_iterator(queue_.begin()), std::make_move_iterator(end));
        queue_.erase(queue_.begin(), end);
      }
      queued_.store(queue_.size(), std::memory_order_relaxed);
    }
    const std::uint64_t n = batch.size();
    writer_->commit(batch, options_.clock(), failed_batches_);
    batches_.fetch_add(1, std::memory_order_relaxed);
    packets_.fetch_add(n, std::memory_order_relaxed);
    std::uint64_t largest = largest_batch_.load(std::memory_order_relaxed);
    while (n > largest && !largest_batch_.compare_exchange_weak(largest, n)) {
    }
    batch.clear();
  }
}

void sqlite_call_store::stop() {
  {
    std::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_.notify_all();
  if (writer_thread_.joinable()) writer_thread_.join();
}

template <class F>
auto sqlite_call_store::with_reader(F&& f) -> decltype(f(std::declval<connection&>())) {
  std::unique_ptr<connection> c;
  try {
    {
      std::lock_guard lock(readers_mutex_);
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
    std::lock_guard lock(readers_mutex_);
    idle_readers_.push_back(std::move(c));
    return r;
  } catch (const sqlite_error& e) {
    log::error("read failed", {{"error", e.what()}, {"sqlite_code", e.code()}});
    using R = decltype(f(std::declval<connection&>()));
    return R(boost::system::in_place_error, make_error_code(e.transient() ? errc::unavailable : errc::store_failure));
  }
}

result<call_page> sqlite_call_store::list_calls(const call_query& query) {
  return with_reader([&](connection& c) -> result<call_page> {
    std::string sql = std::string("SELECT ") + call_columns + " FROM calls WHERE id > ?";
    if (query.state) sql += " AND state = ?";
    sql += " ORDER BY id LIMIT ?";
    auto s = c.prepare(sql);
    int i = 1;
    s.bind(i++, std::string_view(query.after.value_or("")));
    if (query.state) s.bind(i++, to_string(*query.state));
    s.bind(i, static_cast<std::int64_t>(query.limit + 1));
    call_page page;
    while (s.step()) page.calls.push_back(read_call(s));
    if (page.calls.size() > query.limit) {
      page.calls.pop_back();
      page.next_after = page.calls.back().id;
    }
    return page;
  });
}

result<call_summary> sqlite_call_store::get_call(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<call_summary> {
    auto s = c.prepare(std::string("SELECT ") + call_columns + " FROM calls WHERE id = ?");
    s.bind(1, call_id);
    if (!s.step()) return errc::not_found;
    return read_call(s);
  });
}

result<packet_page> sqlite_call_store::list_packets(std::string_view call_id, std::int64_t after,
                                                    std::size_t limit) {
  return with_reader([&](connection& c) -> result<packet_page> {
    {
      auto exists = c.prepare("SELECT 1 FROM calls WHERE id = ?");
      exists.bind(1, call_id);
      if (!exists.step()) return errc::not_found;
    }
    auto s = c.prepare(
        "SELECT id, sequence, data, timestamp, received_at FROM packets WHERE call_id = ? AND sequence > ? "
        "ORDER BY sequence LIMIT ?");
    s.bind(1, call_id).bind(2, after).bind(3, static_cast<std::int64_t>(limit + 1));
    packet_page page;
    while (s.step())
      page.packets.push_back(
          {s.column_int(0), s.column_int(1), s.column_text(2), s.column_double(3), s.column_double(4)});
    if (page.packets.size() > limit) {
      page.packets.pop_back();
      page.next_after = page.packets.back().sequence;
    }
    return page;
  });
}

result<std::vector<seq_range>> sqlite_call_store::missing_ranges(std::string_view call_id) {
  return with_reader([&](connection& c) -> result<std::vector<seq_range>> {
    {
      auto exists = c.prepare("SELECT 1 FROM calls WHERE id = ?");
      exists.bind(1, call_id);
      if (!exists.step()) return errc::not_found;
    }
    auto s = c.prepare("SELECT first_sequence, last_sequence FROM call_gaps WHERE call_id = ? ORDER BY first_sequence");
    s.bind(1, call_id);
    std::vector<seq_range> out;
    while (s.step()) out.push_back({s.column_int(0), s.column_int(1)});
    return out;
  });
}

bool sqlite_call_store::ping() {
  auto r = with_reader([](connection& c) -> result<bool> {
    auto s = c.prepare("SELECT COUNT(*) FROM schema_migrations");
    return s.step();
  });
  return r.has_value() && *r;
}

writer_stats sqlite_call_store::stats() const {
  writer_stats s;
  s.batches = batches_.load(std::memory_order_relaxed);
  s.packets = packets_.load(std::memory_order_relaxed);
  s.largest_batch = largest_batch_.load(std::memory_order_relaxed);
  s.failed_batches = failed_batches_.load(std::memory_order_relaxed);
  s.queued = queued_.load(std::memory_order_relaxed);
  s.queue_limit = options_.queue_limit;
  return s;
}

}  // namespace aipbx
