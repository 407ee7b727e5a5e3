#include "events/wire_event.hpp"

#include "log/json_text.hpp"

#include <boost/json/value.hpp>

namespace aipbx::events {

wire_event make_wire_event(const logged_event& e) {
  wire_event out;
  wire_event* w = &out;
  w->id = e.id;
  w->kind = e.kind;
  w->call_id = e.call_id;
  std::string& j = w->json;
  j.reserve(96 + e.call_id.size() + e.data.size());
  j += "{\"id\":";
  j += std::to_string(e.id);
  j += ",\"kind\":\"";
  j += to_string(e.kind);
  j += "\",\"at\":";
  append_json(j, boost::json::value(e.at));
  j += ",\"call_id\":";
  append_json_string(j, e.call_id);
  j += ",\"job_id\":";
  j += e.job_id ? std::to_string(*e.job_id) : std::string("null");
  j += ",\"data\":";
  j += e.data;  // a JSON object written by the ledgers
  j += '}';
  w->sse = sse_frame({}, e.id, j);
  return out;
}

std::shared_ptr<const wire_page> make_wire_page(const std::vector<logged_event>& events) {
  auto page = std::make_shared<wire_page>();
  page->events.reserve(events.size());
  std::size_t bytes = 0;
  for (const auto& e : events) {
    page->events.push_back(make_wire_event(e));
    bytes += page->events.back().sse.size();
  }
  page->sse.reserve(bytes);
  for (const auto& w : page->events) page->sse += w.sse;
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
    out += std::to_string(*id);
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
