// A thin RAII layer over libpq: a connection, query parameters (scalars as text, arrays in the binary array
// format so that a batch of rows is one parameter), results read as text.
//
// Error policy: inside the PostgreSQL backend a failing call throws `pg_error` carrying the SQLSTATE;
// pg_call_store catches it at each public entry point and returns an errc, so nothing outside
// storage/postgres sees an exception. A connection is used by one thread at a time.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <stdexcept>
#include <type_traits>
#include <unordered_map>
#include <string>
#include <string_view>
#include <vector>

struct pg_conn;
struct pg_result;

namespace aipbx::pg {

class pg_error : public std::runtime_error {
 public:
  pg_error(std::string sqlstate, const std::string& what, bool connection_lost, std::string constraint = {})
      : std::runtime_error(what),
        sqlstate_(std::move(sqlstate)),
        constraint_(std::move(constraint)),
        connection_lost_(connection_lost) {}
  const std::string& sqlstate() const { return sqlstate_; }
  // The constraint a statement violated, if that was the error.
  const std::string& constraint() const { return constraint_; }
  // A deadlock or serialization failure: the transaction may simply be run again.
  bool retryable() const { return sqlstate_ == "40001" || sqlstate_ == "40P01"; }
  // The server could not be reached, went away, or is starting or stopping: retry later.
  bool unavailable() const;

 private:
  std::string sqlstate_;
  std::string constraint_;
  bool connection_lost_;
};

// Query parameters. Scalars travel as text; arrays and byte strings in binary.
class params {
 public:
  params& add(std::int64_t v);
  params& add(double v);
  params& add(std::string_view text);  // no NUL bytes (a text value)
  params& add(std::optional<double> v);
  params& add_null();
  params& add_bytes(std::string_view bytes);  // a bytea value, any bytes
  params& add_texts(const std::vector<std::string>& v);
  params& add_optional_texts(const std::vector<std::optional<std::string>>& v);
  params& add_bytes_array(const std::vector<std::string_view>& v);
  params& add_ints(const std::vector<std::int64_t>& v);
  params& add_optional_ints(const std::vector<std::optional<std::int64_t>>& v);
  params& add_doubles(const std::vector<double>& v);
  params& add_optional_doubles(const std::vector<std::optional<double>>& v);
  params& add_bools(const std::vector<bool>& v);

  int size() const { return static_cast<int>(values_.size()); }

 private:
  friend class connection;
  struct value {
    std::string bytes;
    bool null = false;
    bool binary = false;
  };
  value& push(bool binary);
  std::vector<value> values_;
};

class result_set {
 public:
  explicit result_set(pg_result* r) : r_(r) {}
  ~result_set();
  result_set(result_set&& o) noexcept : r_(o.r_) { o.r_ = nullptr; }
  result_set& operator=(result_set&&) = delete;
  result_set(const result_set&) = delete;

  int rows() const;
  std::int64_t affected() const;  // rows changed by an INSERT/UPDATE/DELETE
  bool is_null(int row, int col) const;
  std::string_view text_view(int row, int col) const;
  std::string text(int row, int col) const { return std::string(text_view(row, col)); }
  std::optional<std::string> optional_text(int row, int col) const;
  std::int64_t int64(int row, int col) const;
  double float8(int row, int col) const;
  std::optional<double> optional_float8(int row, int col) const;
  bool boolean(int row, int col) const;
  std::string bytes(int row, int col) const;  // a bytea column, decoded

 private:
  pg_result* r_;
};

class connection {
 public:
  // Connects to `url` (a postgresql:// URI or key=value string); its own settings win over aipbx's defaults
  // (connect timeout, keepalives). Throws pg_error (unavailable) when the server cannot be reached.
  explicit connection(const std::string& url, const char* application = "aipbx");
  ~connection();
  connection(const connection&) = delete;
  connection& operator=(const connection&) = delete;

  result_set exec(const char* sql);
  result_set exec(const std::string& sql, const params& p) { return exec(sql.c_str(), p); }
  result_set exec(const char* sql, const params& p);
  // Sends every statement at once (libpq pipeline mode) and then reads their results: one round trip for
  // all. They run in order; the first failure throws, and the statements after it do not run (inside a
  // transaction, the transaction is then aborted).
  struct statement {
    std::string sql;
    params p;
  };
  // The statements are prepared on this connection the first time they are sent, then only executed: the
  // server plans each once (with `prepare_generic`, for good).
  std::vector<result_set> exec_pipeline(const std::vector<statement>& statements);
  // Sets plan_cache_mode = force_generic_plan: the prepared statements' plans are made once, whatever their
  // parameters (the writer's statements take arrays, whose sizes do not change the best plan). And
  // enable_seqscan = off: a plan made once may have been made on tables still empty (a new database), where
  // scanning a table costs less than its index; it is kept while they grow, and a batch's lookup of its
  // calls, or update of its jobs by id, would then read every row. Each of the writer's statements finds
  // its rows through a key or an index, but for a table of one row (the event log's counter), whose scan
  // then costs that setting's penalty: with jit = off, no statement is compiled for its cost (JIT compiled
  // that one at every execution, 200 ms each, though it reads one row).
  void prepare_generic();
  // False once the connection is broken: throw it away and connect again.
  bool ok() const;
  // Rolls back whatever transaction is open, ignoring errors (the connection may be gone).
  void rollback() noexcept;
  pg_conn* handle() const { return conn_; }

 private:
  [[noreturn]] void fail(pg_result* r, const char* sql);
  pg_conn* conn_ = nullptr;
  bool broken_ = false;  // left in a state it cannot be used in again
  std::unordered_map<std::string, std::string> prepared_;  // SQL -> name of its prepared statement
  std::size_t next_name_ = 0;
};

// Runs `sql` on `c` inside BEGIN/COMMIT; rolls back on an exception and rethrows.
template <class F>
auto in_transaction(connection& c, F&& f) {
  c.exec("BEGIN");
  try {
    if constexpr (std::is_void_v<decltype(f())>) {
      f();
      c.exec("COMMIT");
    } else {
      auto r = f();
      c.exec("COMMIT");
      return r;
    }
  } catch (...) {
    c.rollback();
    throw;
  }
}

}  // namespace aipbx::pg
