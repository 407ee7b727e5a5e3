// The project's error codes and the result type every fallible call returns.
//
// Expected failures (bad input, a missing call, a conflicting packet, an overloaded or unreachable store)
// are values: functions return `aipbx::result<T>` holding either a T or an error_code in aipbx's category.
// Exceptions are kept for start-up failures and bugs. The HTTP layer maps each errc to one status code
// (`http::error_response`, http/api.hpp); nothing below it knows about HTTP.
#pragma once

#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <exception>
#include <string>
#include <type_traits>

namespace aipbx {

enum class errc {
  ok = 0,
  invalid_input,      // the request is malformed or out of range; nothing was changed
  not_found,          // the call, packet or job does not exist
  sequence_conflict,  // the sequence was already stored with different data
  call_ended,         // the call no longer accepts packets
  job_not_dead,       // only a dead job can be replayed
  invalid_transition, // the call's lifecycle does not allow that change from its current state
  overloaded,         // the writer queue is full; retry later
  unavailable,        // the store cannot be reached or is shutting down; retry later
  store_failure,      // the store failed in an unexpected way
  media_conflict,     // the call already declared another media format
  media_too_late,     // the call already has packets: its media format can no longer be declared
  media_changed,      // the packet was checked against a media declaration that is no longer the call's
};

const boost::system::error_category& aipbx_category() noexcept;

inline boost::system::error_code make_error_code(errc e) noexcept {
  return {static_cast<int>(e), aipbx_category()};
}

template <class T>
using result = boost::system::result<T, boost::system::error_code>;

// What an exception that escaped a unit of work says (its what(), or that it was not a std::exception),
// for the log line that reports the bug.
std::string describe(const std::exception_ptr& failure);

}  // namespace aipbx

template <>
struct boost::system::is_error_code_enum<aipbx::errc> : std::true_type {};
