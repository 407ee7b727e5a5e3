#include "log/log.hpp"

#include "domain/thread_annotations.hpp"
#include "log/json_text.hpp"

#include <boost/json/serialize.hpp>
#include <boost/json/string.hpp>
#include <spdlog/async.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <atomic>
#include <memory>
#include <pthread.h>
#include <string>
#include <utility>

namespace aipbx::log {

void name_thread(const char* name) { pthread_setname_np(pthread_self(), name); }
namespace {

// The pattern wraps the caller's fragment: time and level come from spdlog, the rest from write().
constexpr const char* pattern = R"({"time":"%Y-%m-%dT%H:%M:%S.%eZ","level":"%l",%v})";

std::atomic<int> min_level{static_cast<int>(level::info)};

spdlog::level::level_enum to_spdlog(level l) {
  switch (l) {
    case level::debug: return spdlog::level::debug;
    case level::info: return spdlog::level::info;
    case level::warning: return spdlog::level::warn;
    case level::error: return spdlog::level::err;
    case level::off: return spdlog::level::off;
  }
  return spdlog::level::info;
}

std::shared_ptr<spdlog::logger> make_sync_logger() {
  auto logger = std::make_shared<spdlog::logger>("aipbx", std::make_shared<spdlog::sinks::stderr_sink_mt>());
  logger->set_pattern(pattern, spdlog::pattern_time_type::utc);
  logger->set_level(spdlog::level::trace);
  return logger;
}

aipbx::mutex logger_mutex;

std::shared_ptr<spdlog::logger>& current() REQUIRES(logger_mutex) {
  static std::shared_ptr<spdlog::logger> logger = make_sync_logger();
  return logger;
}

std::shared_ptr<spdlog::logger> get() {
  aipbx::lock_guard lock(logger_mutex);
  return current();
}

}  // namespace

void init(level l) {
  min_level.store(static_cast<int>(l));
  aipbx::lock_guard lock(logger_mutex);
  if (!spdlog::thread_pool()) spdlog::init_thread_pool(16384, 1);
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::async_logger>("aipbx-async", sink, spdlog::thread_pool(),
                                                       spdlog::async_overflow_policy::block);
  logger->set_pattern(pattern, spdlog::pattern_time_type::utc);
  logger->set_level(to_spdlog(l));
  logger->flush_on(spdlog::level::warn);
  current() = logger;
}

void shutdown() {
  std::shared_ptr<spdlog::logger> async;
  {
    aipbx::lock_guard lock(logger_mutex);
    async = std::exchange(current(), make_sync_logger());
  }
  async->flush();
  // Every queued message holds the logger. spdlog::shutdown() drops the thread pool, whose destructor
  // writes out what is queued and joins its thread; only then is the logger released, here, so that it is
  // never destroyed on the pool's thread while this one goes on (a race ThreadSanitizer reports, since
  // the pool's reference counting happens inside libspdlog, which it does not see).
  spdlog::shutdown();
  async.reset();
}

bool parse_level(std::string_view text, level& out) {
  if (text == "debug") out = level::debug;
  else if (text == "info") out = level::info;
  else if (text == "warning" || text == "warn") out = level::warning;
  else if (text == "error") out = level::error;
  else if (text == "off") out = level::off;
  else return false;
  return true;
}

bool enabled(level l) { return static_cast<int>(l) >= min_level.load(std::memory_order_relaxed); }

void write(level l, std::string_view msg, std::initializer_list<field> fields) {
  if (!enabled(l)) return;
  std::string line = "\"msg\":";
  line += boost::json::serialize(boost::json::string_view(msg.data(), msg.size()));
  for (const auto& f : fields) {
    line += ',';
    line += boost::json::serialize(boost::json::string_view(f.key.data(), f.key.size()));
    line += ':';
    append_json(line, f.value());
  }
  get()->log(to_spdlog(l), spdlog::string_view_t(line.data(), line.size()));
}

}  // namespace aipbx::log
