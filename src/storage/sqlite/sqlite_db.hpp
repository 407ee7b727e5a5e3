// A thin RAII layer over the SQLite C API: a connection, prepared statements, transactions.
//
// Error policy: inside the SQLite backend, a failing SQLite call throws `sqlite_error` carrying SQLite's
// result code; sqlite_call_store catches it at each public entry point and returns an errc, so nothing
// outside storage/sqlite sees an exception. A connection is used by one thread at a time.
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <unordered_map>

namespace aipbx::sqlite {

class sqlite_error : public std::runtime_error {
 public:
  sqlite_error(int code, const std::string& what) : std::runtime_error(what), code_(code) {}
  int code() const { return code_; }
  // BUSY/LOCKED/IOERR/FULL/CANTOPEN: the database could not do it now; the request may be retried.
  bool transient() const;

 private:
  int code_;
};

class statement;

class connection {
 public:
  enum class mode { read_write, read_only };

  // `vfs`: the name of a registered SQLite VFS, or nullptr for the default.
  connection(const std::string& path, mode m, const char* vfs = nullptr);
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  void exec(const char* sql);
  statement prepare(std::string_view sql);
  // The statement for `sql`, prepared on first use and kept with the connection; reset, without bindings.
  // Every kept statement must be reset (reset_cached) before the connection is used by another caller,
  // so that none holds a read snapshot open.
  statement& cached(std::string_view sql);
  void reset_cached();
  std::int64_t changes() const;
  // The rowid of the last row this connection inserted.
  std::int64_t last_insert_rowid() const;
  sqlite3* handle() const { return db_; }
  [[noreturn]] void fail(int code, std::string_view context) const;

 private:
  sqlite3* db_ = nullptr;
  std::unordered_map<std::string, std::unique_ptr<statement>> cached_;
};

class statement {
 public:
  statement() = default;
  statement(connection& c, std::string_view sql);
  ~statement();
  statement(statement&& other) noexcept;
  statement& operator=(statement&& other) noexcept;

  statement& bind(int index, std::int64_t value);
  statement& bind(int index, double value);
  // The text is not copied: it must stay valid until the statement is reset (run() resets).
  statement& bind(int index, std::string_view text);
  statement& bind(int index, std::nullopt_t);
  statement& bind(int index, const std::optional<double>& value);
  statement& bind(int index, const std::optional<std::int64_t>& value);
  statement& bind(int index, const std::optional<std::string_view>& value);

  // Steps once: true when a row is available, false when done.
  bool step();
  // Steps to completion (for statements that return no rows).
  void run();
  void reset();

  bool is_null(int index) const;
  std::int64_t column_int(int index) const;
  double column_double(int index) const;
  std::optional<double> column_optional_double(int index) const;
  std::optional<std::int64_t> column_optional_int(int index) const;
  std::optional<std::string> column_optional_text(int index) const;
  std::string column_text(int index) const;
  std::string_view column_text_view(int index) const;

 private:
  connection* conn_ = nullptr;
  sqlite3_stmt* stmt_ = nullptr;
};

// Rolls back on destruction unless committed.
class transaction {
 public:
  explicit transaction(connection& c, const char* begin = "BEGIN IMMEDIATE");
  ~transaction();
  void commit();

 private:
  connection& conn_;
  bool open_ = true;
};

}  // namespace aipbx::sqlite
