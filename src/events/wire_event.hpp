// wire_event: one event of the log as subscribers receive it, formatted once for all of them: the JSON
// object a WebSocket message carries, and the Server-Sent Events frame that carries the same object.
//
//   {"id":42,"kind":"gap.opened","at":1700000000.25,"call_id":"c1","job_id":null,"data":{"first":2,"last":3}}
//
// A wire_page is a page of the log read by the hub, formatted once and shared by every subscriber it goes
// to (a subscriber that takes the whole page writes its SSE text as it is: no copy, no count per event);
// a page_slice is what one subscriber is given of a page: all of it, or the events its filter picked.
// Immutable once made: thread-safe.
#pragma once

#include "storage/event_log.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace aipbx::events {

struct wire_event {
  std::int64_t id = 0;
  event_kind kind = event_kind::call_created;
  std::string call_id;
  std::string json;  // the object above
  std::string sse;   // "id: 42\ndata: {...}\n\n"
};

wire_event make_wire_event(const logged_event& e);

struct wire_page {
  std::vector<wire_event> events;  // in id order
  std::string sse;                 // every event's SSE frame, in order
};
std::shared_ptr<const wire_page> make_wire_page(const std::vector<logged_event>& events);

struct page_slice {
  std::shared_ptr<const wire_page> page;
  std::vector<std::uint32_t> picked;  // indices into page->events, ascending; empty: every event
  std::size_t size() const { return picked.empty() ? page->events.size() : picked.size(); }
  const wire_event& at(std::size_t i) const { return page->events[picked.empty() ? i : picked[i]]; }
  bool whole() const { return picked.empty(); }
};

// An SSE frame: optional `event:` and `id:` fields, then `data` (a line of its own per line of `data`,
// as the format wants), then the blank line that ends it.
std::string sse_frame(std::string_view event, std::optional<std::int64_t> id, std::string_view data);

}  // namespace aipbx::events
