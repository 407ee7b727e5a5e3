#include "harness/sqlite_reader.hpp"

#include <sqlite3.h>

#include <memory>
#include <stdexcept>

namespace aipbx::itest {
namespace {

struct db_closer {
  void operator()(sqlite3* db) const { sqlite3_close_v2(db); }
};
struct stmt_finalizer {
  void operator()(sqlite3_stmt* s) const { sqlite3_finalize(s); }
};

}  // namespace

std::vector<sql_row> sqlite_reader::rows(const std::string& sql, const std::vector<sql_param>& params) const {
  sqlite3* raw = nullptr;
  const int rc = sqlite3_open_v2(db_.c_str(), &raw, SQLITE_OPEN_READONLY, nullptr);
  std::unique_ptr<sqlite3, db_closer> db(raw);
  if (rc != SQLITE_OK)
    throw std::runtime_error("cannot open " + db_.string() + ": " +
                             (raw ? sqlite3_errmsg(raw) : "out of memory"));
  sqlite3_busy_timeout(db.get(), 5000);
  sqlite3_stmt* raw_stmt = nullptr;
  if (sqlite3_prepare_v2(db.get(), sql.c_str(), -1, &raw_stmt, nullptr) != SQLITE_OK)
    throw std::runtime_error("cannot prepare '" + sql + "': " + sqlite3_errmsg(db.get()));
  std::unique_ptr<sqlite3_stmt, stmt_finalizer> stmt(raw_stmt);
  int index = 1;
  for (const auto& p : params) {
    if (const auto* i = std::get_if<std::int64_t>(&p))
      sqlite3_bind_int64(stmt.get(), index, *i);
    else {
      const auto& s = std::get<std::string>(p);
      sqlite3_bind_text(stmt.get(), index, s.data(), static_cast<int>(s.size()), SQLITE_TRANSIENT);
    }
    ++index;
  }
  std::vector<sql_row> out;
  for (;;) {
    const int step = sqlite3_step(stmt.get());
    if (step == SQLITE_DONE) break;
    if (step != SQLITE_ROW)
      throw std::runtime_error("query '" + sql + "' failed: " + sqlite3_errmsg(db.get()));
    sql_row row;
    const int columns = sqlite3_column_count(stmt.get());
    for (int c = 0; c < columns; ++c) {
      if (sqlite3_column_type(stmt.get(), c) == SQLITE_NULL) {
        row.emplace_back(std::nullopt);
      } else {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt.get(), c));
        row.emplace_back(std::string(text, static_cast<std::size_t>(sqlite3_column_bytes(stmt.get(), c))));
      }
    }
    out.push_back(std::move(row));
  }
  return out;
}

std::int64_t sqlite_reader::scalar(const std::string& sql, const std::vector<sql_param>& params) const {
  auto v = text(sql, params);
  if (!v) throw std::runtime_error("query '" + sql + "' returned no value");
  return std::stoll(*v);
}

std::optional<std::string> sqlite_reader::text(const std::string& sql,
                                               const std::vector<sql_param>& params) const {
  auto r = rows(sql, params);
  if (r.empty() || r.front().empty()) return std::nullopt;
  return r.front().front();
}

row_counts sqlite_reader::counts() const {
  return {scalar("SELECT COUNT(*) FROM calls"), scalar("SELECT COUNT(*) FROM packets")};
}

std::int64_t sqlite_reader::packet_count(const std::string& call_id) const {
  return scalar("SELECT COUNT(*) FROM packets WHERE call_id = ?", {call_id});
}

bool sqlite_reader::call_exists(const std::string& call_id) const {
  return scalar("SELECT COUNT(*) FROM calls WHERE id = ?", {call_id}) > 0;
}

writer_lock::writer_lock(const std::filesystem::path& db) {
  if (sqlite3_open(db.c_str(), &db_) != SQLITE_OK) {
    const std::string message = sqlite3_errmsg(db_);
    sqlite3_close(db_);
    throw std::runtime_error("open " + db.string() + ": " + message);
  }
  sqlite3_busy_timeout(db_, 5000);
  if (sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
    const std::string message = sqlite3_errmsg(db_);
    sqlite3_close(db_);
    throw std::runtime_error("BEGIN IMMEDIATE on " + db.string() + ": " + message);
  }
}

writer_lock::~writer_lock() { (void)release(); }

bool writer_lock::release() {
  if (db_ == nullptr) return true;
  const bool rolled_back = sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr) == SQLITE_OK;
  sqlite3_close(db_);
  db_ = nullptr;
  return rolled_back;
}

}  // namespace aipbx::itest
