// Structured logging: one JSON object per line on stderr, e.g.
//   {"time":"2026-11-27T11:12:26.123Z","level":"warning","msg":"packet gap","call_id":"c1","expected":4,...}
//
// Lines are formatted by the caller and written by spdlog's asynchronous logger, so a burst of warnings on
// the ingest path costs a queue push, not a write(2). Every function is thread-safe. Before `init` runs,
// lines go to a synchronous stderr logger, so start-up errors are never lost.
#pragma once

#include <boost/json/value.hpp>
#include <boost/json/value_from.hpp>

#include <initializer_list>
#include <string_view>
#include <utility>

namespace aipbx::log {

enum class level { debug, info, warning, error, off };

// One key and value of a log line; any value boost::json::value_from takes (numbers, strings, bools...).
// A field only refers to its value, which is converted when the line is written: a line below the
// level costs nothing but the call. Fields live only as arguments of the logging call they appear in.
class field {
 public:
  template <class T>
  field(std::string_view k, const T& v) : key(k), object_(&v), convert_(&convert<T>) {}
  boost::json::value value() const { return convert_(object_); }
  std::string_view key;

 private:
  template <class T>
  static boost::json::value convert(const void* p) {
    return boost::json::value_from(*static_cast<const T*>(p));
  }
  const void* object_;
  boost::json::value (*convert_)(const void*);
};

// Installs the asynchronous JSON logger at `min_level`; may be called again to change the level.
void init(level min_level);
// Flushes and stops the asynchronous logger (called at shutdown).
void shutdown();
bool parse_level(std::string_view text, level& out);
bool enabled(level l);

void write(level l, std::string_view msg, std::initializer_list<field> fields = {});

// Names the calling thread (at most 15 characters shown) so that top -H, perf and gdb tell aipbx's
// threads apart: aipbx-http, aipbx-writer, aipbx-ai...
void name_thread(const char* name);

inline void debug(std::string_view msg, std::initializer_list<field> fields = {}) {
  if (enabled(level::debug)) write(level::debug, msg, fields);
}
inline void info(std::string_view msg, std::initializer_list<field> fields = {}) {
  if (enabled(level::info)) write(level::info, msg, fields);
}
inline void warn(std::string_view msg, std::initializer_list<field> fields = {}) {
  write(level::warning, msg, fields);
}
inline void error(std::string_view msg, std::initializer_list<field> fields = {}) {
  write(level::error, msg, fields);
}

}  // namespace aipbx::log
