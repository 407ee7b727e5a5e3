#include "storage/sqlite/sqlite_db.hpp"

#include <utility>

namespace aipbx::sqlite {

bool sqlite_error::transient() const {
  switch (code_ & 0xff) {
    case SQLITE_BUSY:
    case SQLITE_LOCKED:
    case SQLITE_IOERR:
    case SQLITE_FULL:
    case SQLITE_CANTOPEN:
    case SQLITE_READONLY: return true;
    default: return false;
  }
}

connection::connection(const std::string& path, mode m, const char* vfs) {
  const int flags = (m == mode::read_only ? SQLITE_OPEN_READONLY : SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE) |
                    SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(path.c_str(), &db_, flags, vfs);
  if (rc != SQLITE_OK) {
    std::string msg = "cannot open " + path + ": " + (db_ ? sqlite3_errmsg(db_) : sqlite3_errstr(rc));
    sqlite3_close(db_);
    db_ = nullptr;
    throw sqlite_error(rc, msg);
  }
  sqlite3_extended_result_codes(db_, 1);
}

connection::~connection() {
  cached_.clear();
  sqlite3_close_v2(db_);
}

statement& connection::cached(std::string_view sql) {
  auto it = cached_.find(std::string(sql));
  if (it == cached_.end()) it = cached_.emplace(std::string(sql), std::make_unique<statement>(*this, sql)).first;
  it->second->reset();
  return *it->second;
}

void connection::reset_cached() {
  for (auto& [sql, s] : cached_) s->reset();
}

void connection::fail(int code, std::string_view context) const {
  std::string msg(context);
  msg += ": ";
  msg += sqlite3_errmsg(db_);
  throw sqlite_error(code, msg);
}

void connection::exec(const char* sql) {
  char* err = nullptr;
  const int rc = sqlite3_exec(db_, sql, nullptr, nullptr, &err);
  if (rc != SQLITE_OK) {
    std::string msg = err ? err : sqlite3_errstr(rc);
    sqlite3_free(err);
    throw sqlite_error(rc, msg);
  }
}

statement connection::prepare(std::string_view sql) { return statement(*this, sql); }

std::int64_t connection::changes() const { return sqlite3_changes64(db_); }

std::int64_t connection::last_insert_rowid() const {
  return sqlite3_last_insert_rowid(db_);
}

statement::statement(connection& c, std::string_view sql) : conn_(&c) {
  const int rc = sqlite3_prepare_v3(c.handle(), sql.data(), static_cast<int>(sql.size()),
                                    SQLITE_PREPARE_PERSISTENT, &stmt_, nullptr);
  if (rc != SQLITE_OK) c.fail(rc, "prepare");
}

statement::~statement() { sqlite3_finalize(stmt_); }

statement::statement(statement&& other) noexcept
    : conn_(std::exchange(other.conn_, nullptr)), stmt_(std::exchange(other.stmt_, nullptr)) {}

statement& statement::operator=(statement&& other) noexcept {
  if (this != &other) {
    sqlite3_finalize(stmt_);
    conn_ = std::exchange(other.conn_, nullptr);
    stmt_ = std::exchange(other.stmt_, nullptr);
  }
  return *this;
}

statement& statement::bind(int index, std::int64_t value) {
  if (int rc = sqlite3_bind_int64(stmt_, index, value); rc != SQLITE_OK) conn_->fail(rc, "bind");
  return *this;
}

statement& statement::bind(int index, double value) {
  if (int rc = sqlite3_bind_double(stmt_, index, value); rc != SQLITE_OK) conn_->fail(rc, "bind");
  return *this;
}

statement& statement::bind(int index, std::string_view text) {
  // SQLITE_STATIC: SQLite reads the caller's bytes instead of copying them (a malloc and a copy per text,
  // a packet's data included); reset() clears the bindings, so none outlives its step.
  if (int rc = sqlite3_bind_text64(stmt_, index, text.data(), text.size(), SQLITE_STATIC, SQLITE_UTF8);
      rc != SQLITE_OK)
    conn_->fail(rc, "bind");
  return *this;
}

statement& statement::bind(int index, std::nullopt_t) {
  if (int rc = sqlite3_bind_null(stmt_, index); rc != SQLITE_OK) conn_->fail(rc, "bind");
  return *this;
}

statement& statement::bind(int index, const std::optional<double>& value) {
  return value ? bind(index, *value) : bind(index, std::nullopt);
}

statement& statement::bind(int index, const std::optional<std::int64_t>& value) {
  return value ? bind(index, *value) : bind(index, std::nullopt);
}

statement& statement::bind(int index, const std::optional<std::string_view>& value) {
  return value ? bind(index, *value) : bind(index, std::nullopt);
}

bool statement::step() {
  const int rc = sqlite3_step(stmt_);
  if (rc == SQLITE_ROW) return true;
  if (rc == SQLITE_DONE) return false;
  conn_->fail(rc, "step");
}

void statement::run() {
  while (step()) {
  }
  reset();
}

void statement::reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

bool statement::is_null(int index) const { return sqlite3_column_type(stmt_, index) == SQLITE_NULL; }

std::int64_t statement::column_int(int index) const { return sqlite3_column_int64(stmt_, index); }
double statement::column_double(int index) const { return sqlite3_column_double(stmt_, index); }

std::optional<double> statement::column_optional_double(int index) const {
  if (sqlite3_column_type(stmt_, index) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_double(stmt_, index);
}

std::optional<std::int64_t> statement::column_optional_int(int index) const {
  if (sqlite3_column_type(stmt_, index) == SQLITE_NULL) return std::nullopt;
  return sqlite3_column_int64(stmt_, index);
}

std::optional<std::string> statement::column_optional_text(int index) const {
  if (sqlite3_column_type(stmt_, index) == SQLITE_NULL) return std::nullopt;
  return column_text(index);
}

std::string statement::column_text(int index) const { return std::string(column_text_view(index)); }

std::string_view statement::column_text_view(int index) const {
  const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, index));
  if (!text) return {};
  return {text, static_cast<std::size_t>(sqlite3_column_bytes(stmt_, index))};
}

transaction::transaction(connection& c, const char* begin) : conn_(c) { conn_.exec(begin); }

transaction::~transaction() {
  if (open_) sqlite3_exec(conn_.handle(), "ROLLBACK", nullptr, nullptr, nullptr);
}

void transaction::commit() {
  conn_.exec("COMMIT");
  open_ = false;
}

}  // namespace aipbx::sqlite
