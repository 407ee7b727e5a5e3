#include "harness/api.hpp"

#include <stdexcept>

namespace aipbx::itest {

namespace json = boost::json;

std::int64_t as_int(const json::value& v) {
  return v.to_number<std::int64_t>();
}

double as_double(const json::value& v) {
  return v.to_number<double>();
}

json::object get_ok(connection& c, std::string_view target) {
  const auto r = c.get(target);
  if (r.status != 200)
    throw std::runtime_error("GET " + std::string(target) + ": status " + std::to_string(r.status) + ", body " +
                             r.body);
  auto v = r.json();
  if (!v.is_object()) throw std::runtime_error("GET " + std::string(target) + ": not a JSON object: " + r.body);
  return std::move(v.as_object());
}

std::vector<json::object> all_jobs(connection& c, std::string_view query, int page) {
  std::vector<json::object> out;
  std::int64_t after = 0;
  for (int pages = 0;; ++pages) {
    if (pages > 100000) throw std::runtime_error("GET /v1/jobs: paging does not end");
    std::string target = "/v1/jobs?limit=" + std::to_string(page) + "&after=" + std::to_string(after);
    if (!query.empty()) target += "&" + std::string(query);
    auto body = get_ok(c, target);
    for (auto& j : body.at("jobs").as_array()) out.push_back(std::move(j.as_object()));
    if (body.at("next_after").is_null()) break;
    after = as_int(body.at("next_after"));
  }
  return out;
}

job_tally tally(const std::vector<json::object>& jobs) {
  job_tally t;
  for (const auto& j : jobs) {
    const auto state = j.at("state").as_string();
    if (state == "queued") ++t.queued;
    else if (state == "running") ++t.running;
    else if (state == "succeeded") ++t.succeeded;
    else if (state == "dead") ++t.dead;
    else throw std::runtime_error("unknown job state " + std::string(state));
  }
  return t;
}

std::string call_state(connection& c, const std::string& call_id) {
  return std::string(get_ok(c, "/v1/calls/" + call_id).at("state").as_string());
}

double packet_timestamp(std::int64_t sequence) {
  return 1700000000.0 + static_cast<double>(sequence) * 0.02;
}

http_response post_packet(connection& c, const std::string& call_id, std::int64_t sequence, std::string_view data) {
  return c.post_json("/v1/call/stream/" + call_id, packet_json(sequence, data, packet_timestamp(sequence)));
}

std::string joined(const std::vector<std::string>& parts) {
  std::string out;
  for (const auto& p : parts) {
    if (!out.empty()) out += ' ';
    out += p;
  }
  return out;
}

}  // namespace aipbx::itest
