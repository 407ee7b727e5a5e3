// The events of the log as subscribers receive them, formatted once for all of them: each event's JSON
// object (what a WebSocket message carries) inside its Server-Sent Events frame:
//
//   id: 42
//   data: {"id":42,"kind":"gap.opened","at":1700000000.25,"call_id":"c1","job_id":null,"data":{"first":2,"last":3}}
//
// A wire_page is a page of the log read by the hub: its events' frames in one string, shared by every
// subscriber the page goes to (a subscriber that takes the whole page writes that string as it is: no copy,
// no allocation or reference count per event). A page_slice is what one subscriber is given of a page: all
// of it, or the events its filter picked. The JSON is always one line (a line break can only be whitespace
// between a JSON text's tokens: it is written as a space), so it is a part of the frame.
// Immutable once made: thread-safe.
#pragma once

#include "storage/event_log.hpp"

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aipbx::events {

struct wire_page {
  struct event {
    std::int64_t id = 0;
    std::uint32_t frame_begin = 0, json_begin = 0, json_end = 0, frame_end = 0;  // offsets into `sse`
  };
  std::vector<event> events;  // in id order
  std::string sse;            // every event's SSE frame, in order

  std::string_view frame(std::size_t i) const { return view(events[i].frame_begin, events[i].frame_end); }
  std::string_view json(std::size_t i) const { return view(events[i].json_begin, events[i].json_end); }

 private:
  std::string_view view(std::uint32_t begin, std::uint32_t end) const {
    return std::string_view(sse).substr(begin, end - begin);
  }
};
std::shared_ptr<const wire_page> make_wire_page(const std::vector<logged_event>& events);

struct page_slice {
  std::shared_ptr<const wire_page> page;
  std::vector<std::uint32_t> picked;  // indices into page->events, ascending; empty: every event
  bool whole() const { return picked.empty(); }
  std::size_t size() const { return whole() ? page->events.size() : picked.size(); }
  // The i-th event of the slice, as an index into the page.
  std::size_t index(std::size_t i) const { return whole() ? i : picked[i]; }
  std::int64_t id(std::size_t i) const { return page->events[index(i)].id; }
  std::string_view frame(std::size_t i) const { return page->frame(index(i)); }
  std::string_view json(std::size_t i) const { return page->json(index(i)); }
};

// An SSE frame: optional `event:` and `id:` fields, then `data` (a line of its own per line of `data`,
// as the format wants), then the blank line that ends it.
std::string sse_frame(std::string_view event, std::optional<std::int64_t> id, std::string_view data);

}  // namespace aipbx::events
