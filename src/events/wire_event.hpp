// wire_event: one event of the log as subscribers receive it, formatted once for all of them: the JSON
// object a WebSocket message carries, and the Server-Sent Events frame that carries the same object.
//
//   {"id":42,"kind":"gap.opened","at":1700000000.25,"call_id":"c1","job_id":null,"data":{"first":2,"last":3}}
//
// Immutable once made, shared between subscribers: thread-safe.
#pragma once

#include "storage/event_log.hpp"

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

namespace aipbx::events {

struct wire_event {
  std::int64_t id = 0;
  event_kind kind = event_kind::call_created;
  std::string call_id;
  std::string json;  // the object above
  std::string sse;   // "id: 42\ndata: {...}\n\n"
};

std::shared_ptr<const wire_event> make_wire_event(const logged_event& e);

// An SSE frame: optional `event:` and `id:` fields, then `data` (a line of its own per line of `data`,
// as the format wants), then the blank line that ends it.
std::string sse_frame(std::string_view event, std::optional<std::int64_t> id, std::string_view data);

}  // namespace aipbx::events
