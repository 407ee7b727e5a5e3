#include "storage/event_log.hpp"

#include "log/json_text.hpp"
#include "storage/event_data.hpp"

#include <boost/json/value.hpp>

#include <algorithm>
#include <array>
#include <charconv>

namespace aipbx {

namespace {

constexpr std::array<std::string_view, event_kind_count> kind_names{
    "call.created", "call.state_changed", "call.ended",     "gap.opened",       "gap.filled",
    "gap.lost",     "packet.late",        "segment.cut",    "job.claimed",      "job.failed",
    "job.succeeded", "job.dead",          "job.replayed",   "job.released",     "transcript.final",
    "dtmf",         "call.event",         "transcript.partial",
};

}  // namespace

std::string_view to_string(event_kind k) { return kind_names[static_cast<std::size_t>(k)]; }

std::optional<event_kind> parse_event_kind(std::string_view text) {
  for (std::size_t i = 0; i < kind_names.size(); ++i)
    if (kind_names[i] == text) return static_cast<event_kind>(i);
  return std::nullopt;
}

bool event_filter::matches(event_kind kind, std::string_view call) const {
  if (call_id && *call_id != call) return false;
  return kinds.empty() || std::find(kinds.begin(), kinds.end(), kind) != kinds.end();
}

bool event_filter::matches(const logged_event& e) const { return matches(e.kind, e.call_id); }

void event_data::key(std::string_view name) {
  if (text_.size() > 1) text_ += ',';
  text_ += '"';
  text_ += name;
  text_ += "\":";
}

event_data& event_data::add(std::string_view name, std::int64_t value) {
  key(name);
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, value);
  text_.append(buf, static_cast<std::size_t>(end - buf));
  return *this;
}

event_data& event_data::add(std::string_view name, double value) {
  key(name);
  append_json(text_, boost::json::value(value));
  return *this;
}

event_data& event_data::add(std::string_view name, bool value) { return add_raw(name, value ? "true" : "false"); }

event_data& event_data::add(std::string_view name, std::string_view value) {
  key(name);
  append_json_string(text_, value);
  return *this;
}

event_data& event_data::add_raw(std::string_view name, std::string_view json) {
  key(name);
  text_ += json;
  return *this;
}

std::string event_data::take() {
  std::string out = std::move(text_);
  out.push_back('}');
  text_.clear();
  text_.push_back('{');
  return out;
}

}  // namespace aipbx
