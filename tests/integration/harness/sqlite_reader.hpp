// Read-only look into the server's SQLite file, to check what is really stored.
//
// Each query opens the file read-only (SQLITE_OPEN_READONLY, 5 s busy timeout), runs, and closes it, so the
// test never holds a read transaction that would hold back the server's WAL. Safe while the server runs
// (WAL readers see the last committed state). Errors throw std::runtime_error with SQLite's message.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <variant>
#include <vector>

struct sqlite3;

namespace aipbx::itest {

using sql_param = std::variant<std::int64_t, std::string>;
using sql_row = std::vector<std::optional<std::string>>;  // every column as text; NULL is nullopt

struct row_counts {
  std::int64_t calls = 0;
  std::int64_t packets = 0;
  friend bool operator==(const row_counts&, const row_counts&) = default;
};

class sqlite_reader {
 public:
  explicit sqlite_reader(std::filesystem::path db) : db_(std::move(db)) {}

  std::vector<sql_row> rows(const std::string& sql, const std::vector<sql_param>& params = {}) const;
  // The first column of the first row as an integer; throws if there is no row or it is NULL.
  std::int64_t scalar(const std::string& sql, const std::vector<sql_param>& params = {}) const;
  // The first column of the first row as text, nullopt if no row or NULL.
  std::optional<std::string> text(const std::string& sql, const std::vector<sql_param>& params = {}) const;

  row_counts counts() const;
  std::int64_t packet_count(const std::string& call_id) const;
  bool call_exists(const std::string& call_id) const;

 private:
  std::filesystem::path db_;
};

// Holds the file's write lock from a connection of its own (BEGIN IMMEDIATE, as another process would), so
// that the server's writer cannot commit until `release` (false if its ROLLBACK failed) or destruction.
// Throws std::runtime_error with SQLite's message if the lock cannot be taken within 5 s.
class writer_lock {
 public:
  explicit writer_lock(const std::filesystem::path& db);
  ~writer_lock();
  writer_lock(const writer_lock&) = delete;
  writer_lock& operator=(const writer_lock&) = delete;
  bool release();

 private:
  sqlite3* db_ = nullptr;
};

}  // namespace aipbx::itest
