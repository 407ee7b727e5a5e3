#include "events/wire_event.hpp"

#include "log/json_text.hpp"

#include <boost/json/value.hpp>

#include <charconv>

namespace aipbx::events {

namespace {

void append_int(std::string& out, std::int64_t n) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, n);
  out.append(buf, static_cast<std::size_t>(end - buf));
}

// The event's JSON object, on one line (the stored data is JSON: a line break in it is whitespace).
void append_json(std::string& j, const logged_event& e) {
  j += "{\"id\":";
  append_int(j, e.id);
  j += ",\"kind\":\"";
  j += to_string(e.kind);
  j += "\",\"at\":";
  aipbx::append_json(j, boost::json::value(e.at));
  j += ",\"call_id\":";
  append_json_string(j, e.call_id);
  j += ",\"job_id\":";
  if (e.job_id) append_int(j, *e.job_id);
  else j += "null";
  j += ",\"data\":";
  const std::size_t data_at = j.size();
  j += e.data;
  for (std::size_t i = data_at; i < j.size(); ++i)
    if (j[i] == '\n' || j[i] == '\r') j[i] = ' ';
  j += '}';
}

}  // namespace

std::shared_ptr<const wire_page> make_wire_page(const std::vector<logged_event>& events) {
  auto page = std::make_shared<wire_page>();
  page->events.reserve(events.size());
  std::size_t bytes = 0;
  for (const auto& e : events) bytes += 120 + e.call_id.size() + e.data.size();
  std::string& out = page->sse;
  out.reserve(bytes);
  for (const auto& e : events) {
    wire_page::event w;
    w.id = e.id;
    w.frame_begin = static_cast<std::uint32_t>(out.size());
    out += "id: ";
    append_int(out, e.id);
    out += "\ndata: ";
    w.json_begin = static_cast<std::uint32_t>(out.size());
    append_json(out, e);
    w.json_end = static_cast<std::uint32_t>(out.size());
    out += "\n\n";
    w.frame_end = static_cast<std::uint32_t>(out.size());
    page->events.push_back(w);
  }
  return page;
}

std::string sse_frame(std::string_view event, std::optional<std::int64_t> id, std::string_view data) {
  std::string out;
  out.reserve(data.size() + 40);
  if (!event.empty()) {
    out += "event: ";
    out += event;
    out += '\n';
  }
  if (id) {
    out += "id: ";
    append_int(out, *id);
    out += '\n';
  }
  // A line break inside the data would end the field: each line goes in a data field of its own, which
  // the client joins with line breaks again.
  for (;;) {
    const auto eol = data.find_first_of("\r\n");
    out += "data: ";
    out += data.substr(0, eol);
    out += '\n';
    if (eol == std::string_view::npos) break;
    data.remove_prefix(eol + (data.substr(eol, 2) == "\r\n" ? 2 : 1));
  }
  out += '\n';
  return out;
}

}  // namespace aipbx::events
