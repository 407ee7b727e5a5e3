// Helpers for tests of the AI pipeline and the call lifecycle: polling with a deadline, JSON numbers,
// GETs that must answer 200, the jobs listing followed across its pages, and packet posts.
//
// Everything here runs on the calling thread over the given connection (see http_client.hpp); failures to
// talk to the server throw, a status other than the expected one throws std::runtime_error with the body.
#pragma once

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>
#include <chrono>
#include <cstdint>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "harness/http_client.hpp"

namespace aipbx::itest {

// Calls `done` every `poll` until it returns true or `timeout` has passed; the last call's answer.
template <class F>
bool wait_until(F&& done, std::chrono::milliseconds timeout, std::chrono::milliseconds poll = 20ms) {
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= deadline) return false;
    std::this_thread::sleep_for(poll);
  }
}

// A JSON number as an integer or a double (throws if it is not a number).
std::int64_t as_int(const boost::json::value& v);
double as_double(const boost::json::value& v);

// GET `target`; its JSON object body, which must come with 200.
boost::json::object get_ok(connection& c, std::string_view target);

// Every job of GET /v1/jobs?{query}, in id order, across pages of `page` jobs.
std::vector<boost::json::object> all_jobs(connection& c, std::string_view query = {}, int page = 1000);

struct job_tally {
  std::int64_t queued = 0;
  std::int64_t running = 0;
  std::int64_t succeeded = 0;
  std::int64_t dead = 0;
  std::int64_t total() const { return queued + running + succeeded + dead; }
  std::int64_t settled() const { return succeeded + dead; }
};
job_tally tally(const std::vector<boost::json::object>& jobs);

// The call's "state" from GET /v1/calls/{id}.
std::string call_state(connection& c, const std::string& call_id);

// The JSON timestamp a test gives packet `sequence` (20 ms apart, as a 50 packet/s stream).
double packet_timestamp(std::int64_t sequence);
// POST /v1/call/stream/{call_id} with that packet.
http_response post_packet(connection& c, const std::string& call_id, std::int64_t sequence, std::string_view data);

// The data strings joined by single spaces: the mock engine's transcript of those packets.
std::string joined(const std::vector<std::string>& parts);

}  // namespace aipbx::itest
