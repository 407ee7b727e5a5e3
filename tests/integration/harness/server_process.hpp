// server_process: the real `aipbx serve` binary as a child process of the test.
//
// The binary is AIPBX_BINARY (set by CMake), or $AIPBX_IT_BINARY when set. It always listens on 127.0.0.1
// with --port 0; the port is read from the "listening" log line. stderr and stdout go to a pipe that a reader
// thread drains into memory, so the test can look for log lines at any time, even after the process is gone.
// AIPBX_* variables of the test's environment are not passed on, so only the flags (and the variables set
// with set_env) given here apply. A flag with an empty value is passed alone (`--insecure`); a --host flag
// replaces the harness's 127.0.0.1.
//
// One object can run the binary several times on the same database (start, kill, start again): log lines of
// every run are kept, and the lookups below search the current run unless told otherwise.
//
// Threading: start, restart, signal and wait_exit are meant for the test's main thread (the child is tied
// to it with PR_SET_PDEATHSIG, so it dies with the test). The log accessors are safe from any thread.
// Failures to start (exec fails, no "listening" line within 10 s, early exit) throw std::runtime_error
// carrying the process's output.
#pragma once

#include <sys/types.h>

#include <boost/json/object.hpp>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

namespace aipbx::itest {

using namespace std::chrono_literals;

// `aipbx serve` flags, in order; `set` replaces a flag given before.
class server_flags {
 public:
  server_flags() = default;
  server_flags(std::initializer_list<std::pair<std::string, std::string>> flags);

  server_flags& set(std::string flag, std::string value);
  const std::vector<std::pair<std::string, std::string>>& items() const { return items_; }

 private:
  std::vector<std::pair<std::string, std::string>> items_;
};

// Flags every test starts from: short timeouts so a stuck test ends quickly, two I/O threads.
server_flags default_flags();

class server_process {
 public:
  using predicate = std::function<bool(const boost::json::object&)>;

  // `flags` are applied over default_flags(); --host, --port and --db are set by the harness.
  server_process(std::filesystem::path db, server_flags flags = {});
  ~server_process();  // SIGKILL if still running
  server_process(const server_process&) = delete;
  server_process& operator=(const server_process&) = delete;

  // Starts the binary and waits (10 s at most) for its "listening" line. The process must not be running.
  void start();
  // The same as start: a new run on the same database file, on a new port.
  void restart() { start(); }
  // Starts the binary without waiting for anything, for tests of start-up failures.
  void spawn();

  std::uint16_t port() const { return port_; }
  pid_t pid() const { return pid_; }
  bool running() const { return pid_ > 0; }
  const std::filesystem::path& db_path() const { return db_; }
  // Overlays `overrides` on the flags of the next start (a restart with another configuration on the same
  // database). The process must not be running.
  void set_flags(const server_flags& overrides);
  // An environment variable for the next start (AIPBX_* ones included).
  void set_env(std::string name, std::string value) { env_.emplace_back(std::move(name), std::move(value)); }

  void signal(int sig);
  void terminate();  // SIGTERM
  void kill();       // SIGKILL
  // Waits for the process to exit: its exit code, 128 + signal number if a signal ended it, or nullopt if
  // it still runs after `timeout`.
  std::optional<int> wait_exit(std::chrono::milliseconds timeout);
  // SIGTERM, then wait; SIGKILL after `timeout`. Returns the exit status (see wait_exit), if it was running.
  std::optional<int> stop(std::chrono::milliseconds timeout = 10s);

  // Every line written so far by every run.
  std::vector<std::string> all_lines() const;
  // The JSON log records of the current (or last) run; lines that are not JSON objects are skipped.
  std::vector<boost::json::object> records() const;
  std::vector<boost::json::object> records_where(const predicate& match) const;
  // The same over every run of this object (the current one and those before a restart or a kill).
  std::vector<boost::json::object> records_of_all_runs_where(const predicate& match) const;
  // Waits until a record of the current run matches; false after `timeout`.
  bool wait_for_record(const predicate& match, std::chrono::milliseconds timeout) const;
  // The process's signal masks and each thread's state and kernel wait channel, for failure messages
  // of a server that does not exit.
  std::string process_state() const;
  // The last lines of every run, for failure messages.
  std::string tail(std::size_t lines = 60) const;

 private:
  void read_output(int fd);
  std::vector<boost::json::object> parse_records(std::size_t first, const predicate& match) const;
  std::vector<std::string> build_argv() const;

  std::filesystem::path db_;
  server_flags flags_;
  std::vector<std::pair<std::string, std::string>> env_;
  pid_t pid_ = -1;
  std::uint16_t port_ = 0;
  std::thread reader_;

  mutable std::mutex mutex_;
  mutable std::condition_variable changed_;
  std::vector<std::string> lines_;  // guarded by mutex_
  std::size_t run_start_ = 0;       // guarded by mutex_: index of the current run's first line
  bool output_closed_ = true;       // guarded by mutex_
};

// Predicates on log records.
server_process::predicate msg_is(std::string msg);
std::optional<std::int64_t> int_field(const boost::json::object& record, std::string_view key);
std::string string_field(const boost::json::object& record, std::string_view key);
// The record's "time" (UTC, millisecond precision, "2024-01-02T03:04:05.678Z") as milliseconds since the
// Unix epoch; nullopt if absent or malformed.
std::optional<std::int64_t> time_ms(const boost::json::object& record);

}  // namespace aipbx::itest
