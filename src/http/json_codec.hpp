// JSON in and out of the HTTP API: the packet body parser and validator, the FastAPI-shaped error bodies,
// and the JSON form of calls, packets, gaps and call events.
//
// Validation follows FastAPI/pydantic 2, so seed clients see the errors they know:
//   {"detail": [{"type": "missing", "loc": ["body", "sequence"], "msg": "Field required", "input": {...}}]}
// Every problem in a request is reported at once. Stricter than pydantic's lax mode on purpose: a sequence
// must be a JSON number holding a whole value (5 or 5.0, not "5" or true), a timestamp a finite JSON number,
// and data a JSON string. Unknown keys are ignored, as the seed does. Pure functions, thread-safe.
#pragma once

#include "domain/call_state.hpp"
#include "ingest/call_media.hpp"
#include "media/media_format.hpp"
#include "storage/call_store.hpp"
#include "storage/job_store.hpp"

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace aipbx::http {

// One entry of FastAPI's `detail` list.
struct validation_error {
  std::string type;
  boost::json::array loc;
  std::string msg;
  boost::json::value input;
  boost::json::object ctx;  // omitted when empty
};

using validation_errors = std::vector<validation_error>;

// The ingest body, checked. On failure, every problem found, with loc under "body".
struct packet_body {
  std::int64_t sequence = 0;
  std::string data;
  double timestamp = 0;
};
// One pass with no document for the common valid body; bodies with anything to report or out of the
// ordinary go through parse_packet_body_checked, which gives the same result (the fuzz target checks it).
std::variant<packet_body, validation_errors> parse_packet_body(std::string_view body);
std::variant<packet_body, validation_errors> parse_packet_body_checked(std::string_view body);

// The body of POST /v1/calls/{call_id}: {"media": {"format": "pcmu/8000", "packet_ms": 20}}, packet_ms
// optional (20), 1..1000. The format is returned in its canonical (lower-case) text form.
std::variant<media_declaration, validation_errors> parse_declaration_body(std::string_view body);

// The 422 entry of a packet whose `data` does not decode in the call's format (`why`: media_errc).
validation_error undecodable_data(media::media_format format, std::string_view data,
                                  const boost::system::error_code& why);

// The call's effective media (ingest/call_media.hpp).
using ingest::call_media_format;
using ingest::effective_media;

// `in` as a JSON string, with bytes that are not UTF-8 replaced by U+FFFD (for echoing input back).
boost::json::string sanitized(std::string_view in);

// Path and query checks, with loc ["path", name] / ["query", name].
std::optional<validation_error> check_call_id(std::string_view call_id);
validation_error invalid_query(std::string_view name, std::string_view type, std::string_view msg,
                               std::string_view input, boost::json::object ctx = {});

// {"detail": [...]} for 422.
std::string validation_body(const validation_errors& errors);
// {"detail": "...", "error": "..."} for every other 4xx/5xx.
std::string error_body(std::string_view detail, std::string_view code);

// With `track` and `primary_call` (null when the call is no track of a stream).
boost::json::object to_json(const call_summary& c, media::media_format default_media);
// The call's tracks as GET /v1/calls/{call_id} shows them: its own track's name -> its id, and the tracks
// whose primary it is (`c.tracks`); nullopt when it has neither.
std::optional<boost::json::object> tracks_json(const call_summary& c);
// {"id", "kind", "at", "sequence" (null when unknown), "data"}. `data` is the stored JSON object; text that
// is not one (the store does not check) is shown as {"value": <it, parsed if it is JSON, else a string>}.
boost::json::object to_json(const call_event& e);
// The key a "dtmf" event's data holds (`{"digit": "5"}`); nullopt for any other event.
std::optional<std::string> dtmf_digit(const call_event& e);
boost::json::object to_json(const stored_packet& p);
boost::json::object to_json(const seq_range& r);
boost::json::object to_json(const ingest_outcome& o, std::string_view call_id, std::int64_t sequence);
// The same object as JSON text, written without a document (the body of every 202 of ingest).
std::string ingest_body(const ingest_outcome& o, std::string_view call_id, std::int64_t sequence);
boost::json::object to_json(const job& j);
// With the segment's place in the call's audio when the call carries audio (`start`/`end` in seconds:
// sequence s starts at (s - 1) x packet_ms, as in GET /v1/calls/{id}/audio); null times otherwise.
boost::json::object to_json(const transcript_segment& s, const call_media_format& media);
// A running job's current hypothesis, `"partial": true`, with how much of its segment it covers (`heard_s`).
boost::json::object to_json(const partial_segment& s, const call_media_format& media);
// GET /v1/calls/{id}/transcript: the call's results (`segments`, `"partial": false`) and their `text`; the
// current hypotheses of its running jobs (`partials`, `"partial": true`, none of a job in `segments`); and
// `current_text`, results and hypotheses joined in sequence order (what a live view shows, which may still
// change). Segments and partials in sequence order.
boost::json::object transcript_json(const call_summary& call, const std::vector<transcript_segment>& segments,
                                    const std::vector<partial_segment>& partials, const call_media_format& media);
// GET /v1/queue: {"ready", "retrying", "queued" (the two), "running", "succeeded", "dead",
// "oldest_due_s" (how long the oldest due job has waited at `now`; null when none is due)}.
boost::json::object to_json(const job_counts& c, double now);
// One node of GET /v1/nodes: {"name", "self", "connected", "connected_since", "address", "running_jobs"}.
boost::json::object to_json(const node_presence& n, bool self);
// The AI progress of a call: "none", "pending" (packets not yet cut into jobs), "processing",
// "completed" (every job so far succeeded) or "failed" (a job is dead).
std::string_view ai_status(const call_summary& c);

}  // namespace aipbx::http
