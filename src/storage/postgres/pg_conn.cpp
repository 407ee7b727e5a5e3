#include "storage/postgres/pg_conn.hpp"

#include <libpq-fe.h>

#include <arpa/inet.h>

#include <bit>
#include <charconv>
#include <cstring>

namespace aipbx::pg {

namespace {

// Element type oids of the binary arrays sent (pg_type.dat).
constexpr std::uint32_t bool_oid = 16, bytea_oid = 17, int8_oid = 20, text_oid = 25, float8_oid = 701;

void put32(std::string& out, std::uint32_t v) {
  v = htonl(v);
  out.append(reinterpret_cast<const char*>(&v), 4);
}

void put64(std::string& out, std::uint64_t v) {
  put32(out, static_cast<std::uint32_t>(v >> 32));
  put32(out, static_cast<std::uint32_t>(v & 0xffffffffu));
}

// The header of a one-dimensional array in PostgreSQL's binary format (array_send).
std::string array_header(std::size_t n, bool has_null, std::uint32_t oid) {
  std::string out;
  if (n == 0) {
    put32(out, 0);
    put32(out, 0);
    put32(out, oid);
    return out;
  }
  put32(out, 1);
  put32(out, has_null ? 1 : 0);
  put32(out, oid);
  put32(out, static_cast<std::uint32_t>(n));
  put32(out, 1);
  return out;
}

void put_element(std::string& out, std::string_view bytes) {
  put32(out, static_cast<std::uint32_t>(bytes.size()));
  out.append(bytes);
}

void put_null(std::string& out) { put32(out, 0xffffffffu); }

template <class T>
T parse_number(std::string_view text) {
  T v{};
  std::from_chars(text.data(), text.data() + text.size(), v);
  return v;
}

std::string sqlstate_of(const PGresult* r) {
  const char* s = r ? PQresultErrorField(r, PG_DIAG_SQLSTATE) : nullptr;
  return s ? s : "";
}

}  // namespace

bool pg_error::unavailable() const {
  if (connection_lost_) return true;
  // 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now;
  // 53300: too many connections.
  return sqlstate_.starts_with("08") || sqlstate_ == "57P01" || sqlstate_ == "57P02" || sqlstate_ == "57P03" ||
         sqlstate_ == "53300";
}

// ---- params -----------------------------------------------------------------------------------------------

params::value& params::push(bool binary) {
  auto& v = values_.emplace_back();
  v.binary = binary;
  return v;
}

params& params::add(std::int64_t v) {
  push(false).bytes = std::to_string(v);
  return *this;
}

params& params::add(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  push(false).bytes.assign(buf, end);
  return *this;
}

params& params::add(std::string_view text) {
  push(false).bytes.assign(text);
  return *this;
}

params& params::add(std::optional<double> v) { return v ? add(*v) : add_null(); }

params& params::add_null() {
  push(false).null = true;
  return *this;
}

params& params::add_bytes(std::string_view bytes) {
  push(true).bytes.assign(bytes);
  return *this;
}

params& params::add_texts(const std::vector<std::string>& v) {
  auto& out = push(true).bytes;
  out = array_header(v.size(), false, text_oid);
  for (const auto& s : v) put_element(out, s);
  return *this;
}

params& params::add_optional_texts(const std::vector<std::optional<std::string>>& v) {
  bool has_null = false;
  for (const auto& s : v) has_null = has_null || !s;
  auto& out = push(true).bytes;
  out = array_header(v.size(), has_null, text_oid);
  for (const auto& s : v) {
    if (s) put_element(out, *s);
    else put_null(out);
  }
  return *this;
}

params& params::add_bytes_array(const std::vector<std::string_view>& v) {
  auto& out = push(true).bytes;
  out = array_header(v.size(), false, bytea_oid);
  for (auto s : v) put_element(out, s);
  return *this;
}

params& params::add_ints(const std::vector<std::int64_t>& v) {
  auto& out = push(true).bytes;
  out = array_header(v.size(), false, int8_oid);
  for (auto x : v) {
    put32(out, 8);
    put64(out, static_cast<std::uint64_t>(x));
  }
  return *this;
}

params& params::add_optional_ints(const std::vector<std::optional<std::int64_t>>& v) {
  bool has_null = false;
  for (const auto& x : v) has_null = has_null || !x;
  auto& out = push(true).bytes;
  out = array_header(v.size(), has_null, int8_oid);
  for (const auto& x : v) {
    if (!x) {
      put_null(out);
      continue;
    }
    put32(out, 8);
    put64(out, static_cast<std::uint64_t>(*x));
  }
  return *this;
}

params& params::add_doubles(const std::vector<double>& v) {
  auto& out = push(true).bytes;
  out = array_header(v.size(), false, float8_oid);
  for (auto x : v) {
    put32(out, 8);
    put64(out, std::bit_cast<std::uint64_t>(x));
  }
  return *this;
}

params& params::add_optional_doubles(const std::vector<std::optional<double>>& v) {
  bool has_null = false;
  for (const auto& x : v) has_null = has_null || !x;
  auto& out = push(true).bytes;
  out = array_header(v.size(), has_null, float8_oid);
  for (const auto& x : v) {
    if (!x) {
      put_null(out);
      continue;
    }
    put32(out, 8);
    put64(out, std::bit_cast<std::uint64_t>(*x));
  }
  return *this;
}

params& params::add_bools(const std::vector<bool>& v) {
  auto& out = push(true).bytes;
  out = array_header(v.size(), false, bool_oid);
  for (bool b : v) {
    put32(out, 1);
    out.push_back(b ? '\1' : '\0');
  }
  return *this;
}

// ---- result_set -------------------------------------------------------------------------------------------

result_set::~result_set() {
  if (r_) PQclear(r_);
}

int result_set::rows() const { return PQntuples(r_); }

std::int64_t result_set::affected() const {
  const char* n = PQcmdTuples(r_);
  return n && *n ? parse_number<std::int64_t>(n) : 0;
}

bool result_set::is_null(int row, int col) const { return PQgetisnull(r_, row, col) != 0; }

std::string_view result_set::text_view(int row, int col) const {
  return {PQgetvalue(r_, row, col), static_cast<std::size_t>(PQgetlength(r_, row, col))};
}

std::optional<std::string> result_set::optional_text(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return text(row, col);
}

std::int64_t result_set::int64(int row, int col) const { return parse_number<std::int64_t>(text_view(row, col)); }

double result_set::float8(int row, int col) const { return parse_number<double>(text_view(row, col)); }

std::optional<double> result_set::optional_float8(int row, int col) const {
  if (is_null(row, col)) return std::nullopt;
  return float8(row, col);
}

bool result_set::boolean(int row, int col) const { return text_view(row, col) == "t"; }

std::string result_set::bytes(int row, int col) const {
  std::size_t n = 0;
  unsigned char* raw = PQunescapeBytea(reinterpret_cast<const unsigned char*>(PQgetvalue(r_, row, col)), &n);
  if (!raw) throw pg_error("53200", "out of memory decoding a bytea value", false);
  std::string out(reinterpret_cast<const char*>(raw), n);
  PQfreemem(raw);
  return out;
}

// ---- connection -------------------------------------------------------------------------------------------

connection::connection(const std::string& url, const char* application) {
  // Keywords before `dbname` are defaults: settings in the URL override them (PQconnectdbParams with
  // expand_dbname). The keepalives let a dead server or network be noticed within seconds.
  const char* keys[] = {"connect_timeout", "application_name", "keepalives", "keepalives_idle",
                        "keepalives_interval", "keepalives_count", "tcp_user_timeout", "dbname", nullptr};
  const char* values[] = {"5", application, "1", "5", "2", "3", "10000", url.c_str(), nullptr};
  conn_ = PQconnectdbParams(keys, values, 1);
  if (!conn_ || PQstatus(conn_) != CONNECTION_OK) {
    std::string message = conn_ ? PQerrorMessage(conn_) : "out of memory";
    while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
    if (conn_) PQfinish(conn_);
    conn_ = nullptr;
    throw pg_error("08001", "cannot connect to PostgreSQL: " + message, true);
  }
  // The server's notices (NOTICE: ... already exists, skipping) are not aipbx's to print.
  PQsetNoticeProcessor(conn_, [](void*, const char*) {}, nullptr);
}

connection::~connection() {
  if (conn_) PQfinish(conn_);
}

bool connection::ok() const { return conn_ && !broken_ && PQstatus(conn_) == CONNECTION_OK; }

void connection::rollback() noexcept {
  if (!ok()) return;
  if (PQtransactionStatus(conn_) == PQTRANS_IDLE) return;
  if (PGresult* r = PQexec(conn_, "ROLLBACK")) PQclear(r);
}

void connection::fail(PGresult* r, const char* sql) {
  std::string state = sqlstate_of(r);
  const char* constraint = r ? PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME) : nullptr;
  std::string constraint_name = constraint ? constraint : "";
  std::string message = r ? PQresultErrorMessage(r) : "";
  if (message.empty()) message = PQerrorMessage(conn_);
  while (!message.empty() && (message.back() == '\n' || message.back() == ' ')) message.pop_back();
  if (r) PQclear(r);
  const bool lost = !ok();
  std::string what = message;
  if (!lost) {
    std::string_view q(sql);
    what += " (in: " + std::string(q.substr(0, 80)) + ")";
  }
  throw pg_error(std::move(state), what, lost, std::move(constraint_name));
}

result_set connection::exec(const char* sql) {
  PGresult* r = PQexec(conn_, sql);
  const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(r, sql);
  return result_set(r);
}

namespace {
struct wire_params {
  std::vector<const char*> values;
  std::vector<int> lengths, formats;
};
}  // namespace

template <class P>
static wire_params to_wire(const P& values) {
  wire_params w;
  w.values.reserve(values.size());
  for (const auto& v : values) {
    w.values.push_back(v.null ? nullptr : v.bytes.data());
    w.lengths.push_back(static_cast<int>(v.bytes.size()));
    w.formats.push_back(v.binary ? 1 : 0);
  }
  return w;
}

void connection::prepare_generic() {
  exec("SET plan_cache_mode = force_generic_plan");
  exec("SET enable_seqscan = off");
  exec("SET jit = off");
}

std::vector<result_set> connection::exec_pipeline(const std::vector<statement>& statements) {
  if (PQenterPipelineMode(conn_) != 1) fail(nullptr, "pipeline mode");
  // What each result read back belongs to: a statement's preparation (index, true) or its execution.
  std::vector<std::pair<std::size_t, bool>> expected;
  std::vector<std::string> names(statements.size());
  for (std::size_t i = 0; i < statements.size(); ++i) {
    const auto& st = statements[i];
    if (auto it = prepared_.find(st.sql); it != prepared_.end()) {
      names[i] = it->second;
    } else {
      names[i] = "aipbx_" + std::to_string(next_name_++);
      if (PQsendPrepare(conn_, names[i].c_str(), st.sql.c_str(), st.p.size(), nullptr) != 1) {
        broken_ = true;
        fail(nullptr, st.sql.c_str());
      }
      expected.emplace_back(i, true);
    }
    const auto w = to_wire(st.p.values_);
    if (PQsendQueryPrepared(conn_, names[i].c_str(), st.p.size(), w.values.data(), w.lengths.data(),
                            w.formats.data(), 0) != 1) {
      broken_ = true;
      fail(nullptr, st.sql.c_str());
    }
    expected.emplace_back(i, false);
  }
  if (PQpipelineSync(conn_) != 1) {
    broken_ = true;
    fail(nullptr, "pipeline sync");
  }
  std::vector<result_set> out;
  out.reserve(statements.size());
  PGresult* error = nullptr;
  const char* failed_sql = "";
  for (const auto& [i, preparation] : expected) {
    const auto& st = statements[i];
    PGresult* r = PQgetResult(conn_);
    if (!r) {
      broken_ = true;
      if (error) PQclear(error);
      fail(nullptr, st.sql.c_str());
    }
    const auto status = PQresultStatus(r);
    if (status == PGRES_COMMAND_OK || status == PGRES_TUPLES_OK) {
      if (preparation) {
        prepared_.emplace(st.sql, names[i]);  // only once the server has it
        PQclear(r);
      } else {
        out.emplace_back(r);
      }
    } else if (status == PGRES_PIPELINE_ABORTED || error) {
      PQclear(r);
    } else {
      error = r;
      failed_sql = st.sql.c_str();
    }
    // Each statement's results end with a null.
    while (PGresult* extra = PQgetResult(conn_)) PQclear(extra);
  }
  PGresult* sync = PQgetResult(conn_);
  const bool synced = sync && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  if (sync) PQclear(sync);
  if (!synced || PQexitPipelineMode(conn_) != 1) broken_ = true;
  if (error) fail(error, failed_sql);
  if (broken_) fail(nullptr, "pipeline");
  return out;
}

result_set connection::exec(const char* sql, const params& p) {
  const auto w = to_wire(p.values_);
  PGresult* r = PQexecParams(conn_, sql, p.size(), nullptr, w.values.data(), w.lengths.data(), w.formats.data(), 0);
  const auto status = r ? PQresultStatus(r) : PGRES_FATAL_ERROR;
  if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) fail(r, sql);
  return result_set(r);
}

}  // namespace aipbx::pg
