// event_stream: a subscription to the node's event hub (events/event_hub.hpp) written out to its client,
// as Server-Sent Events (GET /v1/events) or WebSocket messages (the same path with Upgrade: websocket).
//
// Server-Sent Events: a preamble (`retry: 1000`), then each event as an SSE frame whose `id:` is the
// event's id (so an EventSource's Last-Event-ID is where to resume) and whose data is the event's JSON
// object; a comment line every `heartbeat` when nothing else came. Notices are named SSE events:
//   event: truncated / id: N / data: {"requested": R, "after": N, "reason": "pruned"}
//       the events after R up to N were pruned by retention; the stream goes on after N;
//   event: resume / id: N / data: {"after": N, "reason": "slow_subscriber" | "shutdown"}
//       the stream ends here; reconnect with Last-Event-ID N (an EventSource does it by itself).
// WebSocket: each event is a text message holding its JSON object; notices and heartbeats are objects with
// a "control" member ({"control": "truncated" | "resume" | "heartbeat", ...}); after a resume notice the
// server closes with 1013 (try again later: slow subscriber) or 1001 (going away: shutdown). What the
// client sends is read and ignored.
//
// Threading: everything runs on the connection's strand; the hub wakes the writer by posting there.
#pragma once

#include "events/event_hub.hpp"
#include "http/server.hpp"
#include "streams/message_channel.hpp"

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <memory>

namespace aipbx::http {

// The body of a GET /v1/events answer. The subscription is closed when the body is destroyed.
std::unique_ptr<body_stream> sse_events(std::shared_ptr<events::subscription> sub, std::chrono::milliseconds heartbeat);

// Serves a WebSocket subscriber until the subscription ends or the client goes; closes the subscription.
boost::asio::awaitable<void> serve_event_socket(streams::message_channel& channel,
                                                std::shared_ptr<events::subscription> sub,
                                                std::chrono::milliseconds heartbeat);

// The SSE frames and WebSocket messages of notices (pure functions).
std::string sse_notice(const events::notice& n);
std::string socket_notice(const events::notice& n);

}  // namespace aipbx::http
