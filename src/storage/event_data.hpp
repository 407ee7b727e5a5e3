// event_data: the JSON object of an event's `data`, written field by field without a document (the
// ledgers build one for most writes, so it stays cheap). Keys are written as given (plain ASCII names);
// strings are escaped. Not thread-safe: one builder per event.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace aipbx {

class event_data {
 public:
  event_data& add(std::string_view key, std::int64_t value);
  event_data& add(std::string_view key, int value) { return add(key, std::int64_t{value}); }
  event_data& add(std::string_view key, double value);
  event_data& add(std::string_view key, bool value);
  event_data& add(std::string_view key, std::string_view value);
  event_data& add(std::string_view key, const char* value) { return add(key, std::string_view(value)); }
  event_data& add(std::string_view key, const std::string& value) { return add(key, std::string_view(value)); }
  // A value that may be absent: JSON null then.
  template <class T>
  event_data& add(std::string_view key, const std::optional<T>& value) {
    if (value) return add(key, *value);
    return add_raw(key, "null");
  }
  // `json` is written as it is: a JSON value the caller vouches for.
  event_data& add_raw(std::string_view key, std::string_view json);
  // The object's text; the builder is empty afterwards.
  std::string take();

 private:
  void key(std::string_view name);
  std::string text_ = "{";
};

}  // namespace aipbx
