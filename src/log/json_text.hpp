// JSON text for logs and API bodies. Like boost::json::serialize, except that numbers with a fraction are
// written in their shortest round-trip form (1700000000.25, 40.08), not Boost's scientific style
// (1.70000000025E9), so seed clients and people reading logs see the numbers they sent.
// Pure function, thread-safe.
#pragma once

#include <boost/json/value.hpp>

#include <string>

namespace aipbx {

void append_json(std::string& out, const boost::json::value& v);
// A JSON string (quoted and escaped as boost::json::serialize does), for bodies written without a document.
void append_json_string(std::string& out, std::string_view s);
std::string to_json_text(const boost::json::value& v);

}  // namespace aipbx
