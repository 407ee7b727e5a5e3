#include "harness/server_process.hpp"

#include "harness/run_binary.hpp"

#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/json/parse.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <ctime>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <system_error>


namespace aipbx::itest {
namespace json = boost::json;

server_flags::server_flags(std::initializer_list<std::pair<std::string, std::string>> flags) {
  for (const auto& [flag, value] : flags) set(flag, value);
}

server_flags& server_flags::set(std::string flag, std::string value) {
  for (auto& item : items_) {
    if (item.first == flag) {
      item.second = std::move(value);
      return *this;
    }
  }
  items_.emplace_back(std::move(flag), std::move(value));
  return *this;
}

server_flags default_flags() {
  // The AI pipeline runs in every test; by default its mock never fails and answers at once, so tests of
  // ingest see no AI warnings. AI tests set their own failure rate, delays and retry policy.
  return server_flags{{"--threads", "2"},          {"--blocking-threads", "2"},   {"--request-timeout", "5s"},
                      {"--keepalive-timeout", "10s"}, {"--shutdown-timeout", "5s"},  {"--log-level", "info"},
                      {"--mock-failure-rate", "0"},  {"--mock-delay-ms", "0:2"},    {"--mock-seed", "1"}};
}

server_process::server_process(std::filesystem::path db, server_flags flags) : db_(std::move(db)) {
  flags_ = default_flags();
  for (const auto& [flag, value] : flags.items()) flags_.set(flag, value);
}

void server_process::set_flags(const server_flags& overrides) {
  if (running()) throw std::logic_error("server_process::set_flags: the server is running");
  for (const auto& [flag, value] : overrides.items()) flags_.set(flag, value);
}

server_process::~server_process() {
  if (running()) {
    kill();
    (void)wait_exit(10s);
  }
  if (reader_.joinable()) reader_.join();
}

std::vector<std::string> server_process::build_argv() const {
  std::vector<std::string> argv{aipbx_binary(), "serve", "--port", "0", "--db", db_.string()};
  bool host_given = false;
  for (const auto& [flag, value] : flags_.items()) {
    argv.push_back(flag);
    if (!value.empty()) argv.push_back(value);
    host_given = host_given || flag == "--host";
  }
  if (!host_given) {
    argv.push_back("--host");
    argv.push_back("127.0.0.1");
  }
  return argv;
}

void server_process::spawn() {
  if (running()) throw std::logic_error("server_process: the server is already running");
  if (reader_.joinable()) reader_.join();

  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) throw std::system_error(errno, std::generic_category(), "pipe2");
  pid_t child = -1;
  try {
    child = spawn_child(build_argv(), env_, fds[1], fds[1]);
  } catch (...) {
    ::close(fds[0]);
    ::close(fds[1]);
    throw;
  }
  ::close(fds[1]);
  pid_ = child;
  port_ = 0;
  {
    std::lock_guard lock(mutex_);
    run_start_ = lines_.size();
    output_closed_ = false;
  }
  reader_ = std::thread([this, fd = fds[0]] { read_output(fd); });
}

void server_process::start() {
  spawn();
  std::optional<std::uint16_t> port;
  {
    std::unique_lock lock(mutex_);
    const auto deadline = std::chrono::steady_clock::now() + 10s;
    std::size_t seen = run_start_;
    for (;;) {
      for (; seen < lines_.size() && !port; ++seen) {
        boost::system::error_code ec;
        auto v = json::parse(lines_[seen], ec);
        if (ec || !v.is_object()) continue;
        const auto& o = v.as_object();
        if (string_field(o, "msg") == "listening")
          if (auto p = int_field(o, "port"); p && *p > 0 && *p < 65536) port = static_cast<std::uint16_t>(*p);
      }
      if (port || output_closed_) break;
      if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) break;
    }
  }
  if (!port) {
    kill();
    (void)wait_exit(10s);
    throw std::runtime_error("aipbx did not report a listening port within 10 s; output:\n" + tail());
  }
  port_ = *port;
}

void server_process::read_output(int fd) {
  std::string pending;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    pending.append(buf, static_cast<std::size_t>(n));
    std::size_t start = 0;
    std::vector<std::string> complete;
    for (std::size_t nl; (nl = pending.find('\n', start)) != std::string::npos; start = nl + 1)
      complete.emplace_back(pending, start, nl - start);
    pending.erase(0, start);
    if (!complete.empty()) {
      std::lock_guard lock(mutex_);
      for (auto& line : complete) lines_.push_back(std::move(line));
      changed_.notify_all();
    }
  }
  ::close(fd);
  std::lock_guard lock(mutex_);
  if (!pending.empty()) lines_.push_back(std::move(pending));
  output_closed_ = true;
  changed_.notify_all();
}

void server_process::signal(int sig) {
  if (!running()) throw std::logic_error("server_process::signal: the server is not running");
  ::kill(pid_, sig);
}

void server_process::terminate() {
  signal(SIGTERM);
}
void server_process::kill() {
  signal(SIGKILL);
}

std::string server_process::process_state() const {
  if (!running()) return "(not running)";
  const std::filesystem::path proc = "/proc/" + std::to_string(pid_);
  std::ostringstream out;
  std::ifstream status(proc / "status");
  for (std::string line; std::getline(status, line);)
    if (line.starts_with("Sig") || line.starts_with("ShdPnd") || line.starts_with("State")) out << line << '\n';
  std::error_code ec;
  for (const auto& task : std::filesystem::directory_iterator(proc / "task", ec)) {
    std::string comm;
    std::string wchan;
    std::string stat;
    std::getline(std::ifstream(task.path() / "comm"), comm);
    std::getline(std::ifstream(task.path() / "wchan"), wchan);
    std::getline(std::ifstream(task.path() / "stat"), stat);
    const auto state_at = stat.rfind(')');
    out << "thread " << task.path().filename().string() << " " << comm << " state "
        << (state_at != std::string::npos && state_at + 2 < stat.size() ? stat.substr(state_at + 2, 1) : "?")
        << " wchan " << wchan << '\n';
  }
  return out.str();
}

std::optional<int> server_process::wait_exit(std::chrono::milliseconds timeout) {
  if (!running()) throw std::logic_error("server_process::wait_exit: the server is not running");
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    int status = 0;
    const pid_t r = ::waitpid(pid_, &status, WNOHANG);
    if (r == pid_) {
      pid_ = -1;
      // The child is gone, so the pipe reaches end of file once its last bytes are read.
      if (reader_.joinable()) reader_.join();
      if (WIFEXITED(status)) return WEXITSTATUS(status);
      if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
      return -1;
    }
    if (r < 0 && errno != EINTR) throw std::system_error(errno, std::generic_category(), "waitpid");
    if (std::chrono::steady_clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(5ms);
  }
}

std::optional<int> server_process::stop(std::chrono::milliseconds timeout) {
  if (!running()) return std::nullopt;
  terminate();
  if (auto code = wait_exit(timeout)) return code;
  kill();
  return wait_exit(10s);
}

std::vector<std::string> server_process::all_lines() const {
  std::lock_guard lock(mutex_);
  return lines_;
}

std::vector<json::object> server_process::records() const {
  return records_where([](const json::object&) { return true; });
}

std::vector<json::object> server_process::records_where(const predicate& match) const {
  std::size_t first = 0;
  {
    std::lock_guard lock(mutex_);
    first = run_start_;
  }
  return parse_records(first, match);
}

std::vector<json::object> server_process::records_of_all_runs_where(const predicate& match) const {
  return parse_records(0, match);
}

std::vector<json::object> server_process::parse_records(std::size_t first, const predicate& match) const {
  std::vector<std::string> lines;
  {
    std::lock_guard lock(mutex_);
    if (first < lines_.size()) lines.assign(lines_.begin() + static_cast<std::ptrdiff_t>(first), lines_.end());
  }
  std::vector<json::object> out;
  for (const auto& line : lines) {
    boost::system::error_code ec;
    auto v = json::parse(line, ec);
    if (!ec && v.is_object() && match(v.as_object())) out.push_back(std::move(v.as_object()));
  }
  return out;
}

bool server_process::wait_for_record(const predicate& match, std::chrono::milliseconds timeout) const {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::unique_lock lock(mutex_);
  std::size_t seen = run_start_;
  for (;;) {
    for (; seen < lines_.size(); ++seen) {
      boost::system::error_code ec;
      auto v = json::parse(lines_[seen], ec);
      if (!ec && v.is_object() && match(v.as_object())) return true;
    }
    if (changed_.wait_until(lock, deadline) == std::cv_status::timeout) {
      // One last look at lines that arrived with the timeout.
      for (; seen < lines_.size(); ++seen) {
        boost::system::error_code ec;
        auto v = json::parse(lines_[seen], ec);
        if (!ec && v.is_object() && match(v.as_object())) return true;
      }
      return false;
    }
  }
}

std::string server_process::tail(std::size_t count) const {
  std::lock_guard lock(mutex_);
  std::string out;
  const std::size_t first = lines_.size() > count ? lines_.size() - count : 0;
  for (std::size_t i = first; i < lines_.size(); ++i) {
    out += lines_[i];
    out += '\n';
  }
  return out;
}

server_process::predicate msg_is(std::string msg) {
  return [msg = std::move(msg)](const json::object& r) { return string_field(r, "msg") == msg; };
}

std::optional<std::int64_t> int_field(const json::object& record, std::string_view key) {
  const json::value* v = record.if_contains(key);
  if (v == nullptr) return std::nullopt;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64() && v->get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<std::int64_t>(v->get_uint64());
  return std::nullopt;
}

std::string string_field(const json::object& record, std::string_view key) {
  const json::value* v = record.if_contains(key);
  if (v == nullptr || !v->is_string()) return {};
  return std::string(v->get_string());
}

std::optional<std::int64_t> time_ms(const json::object& record) {
  const std::string text = string_field(record, "time");
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0, milli = 0;
  char zone = 0;
  if (std::sscanf(text.c_str(), "%4d-%2d-%2dT%2d:%2d:%2d.%3d%c", &year, &month, &day, &hour, &minute, &second,
                  &milli, &zone) != 8 ||
      zone != 'Z')
    return std::nullopt;
  std::tm tm{};
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  const std::time_t seconds = ::timegm(&tm);
  return static_cast<std::int64_t>(seconds) * 1000 + milli;
}

}  // namespace aipbx::itest
