// Which call identifiers aipbx accepts.
//
// A call_id is 1 to 128 characters from [A-Za-z0-9._:@+=-], not made of dots alone: enough for UUIDs,
// SIP Call-IDs (`a84b4c76e66710@pc33.example.com`), CPaaS stream ids and E.164 numbers, and safe to put
// in a URL path, a log line and a file name. Pure function, thread-safe.
#pragma once

#include <cstddef>
#include <string_view>

namespace aipbx {

inline constexpr std::size_t max_call_id_length = 128;
inline constexpr std::string_view call_id_pattern = "^(?!\\.+$)[A-Za-z0-9._:@+=-]{1,128}$";

bool is_valid_call_id(std::string_view id) noexcept;

}  // namespace aipbx
