// metrics: what GET /metrics exposes, in the Prometheus text format, built with prometheus-cpp (Debian's
// prometheus-cpp-dev: its registry, counters, histograms and text serializer).
//
// Two kinds of figures:
//  - events the HTTP layer sees, counted as they happen: requests by route and status, transport
//    refusals, ingest latency;
//  - state read when scraped: ingest outcomes and packet arrival kinds (the ingest path's counters),
//    calls by state and packet totals (a scan of the calls table), jobs by state and the age of the
//    oldest due job, the writer's commits, batch sizes and queue, whatever the store's backend measures
//    of itself (the embedded store's log syncs and checkpoints), the stream protocols' counters, the event
//    stream's subscribers and events (and the event log's pruning), the AI
//    workers' attempts, retries, dead jobs and latency (a histogram per engine), and their coroutines
//    that ended by an exception.
//
// Metric names and their meaning are listed in docs/operations.md. Thread-safe: counting is lock-free
// after a label set's first use.
#pragma once

#include "domain/job.hpp"
#include "events/event_hub.hpp"
#include "engines/pause_cutter.hpp"
#include "ingest/ingest_path.hpp"
#include "http/server.hpp"
#include "streams/stream_stats.hpp"
#include "jobs/worker_pool.hpp"
#include "storage/call_store.hpp"

#include <array>
#include <atomic>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace prometheus {
class Counter;
class Histogram;
class Registry;
template <typename T>
class Family;
}  // namespace prometheus

namespace aipbx::http {

class metrics {
 public:
  metrics();
  ~metrics();
  metrics(const metrics&) = delete;
  metrics& operator=(const metrics&) = delete;

  // `route` is the matched pattern ("/v1/calls/{call_id}") or "unmatched"; it must outlive the call.
  void request(std::string_view route, unsigned status);
  // A request the transport refused before it reached a route: header_too_large, body_too_large,
  // bad_request.
  void refused(std::string_view reason);
  // An HTTP ingest request's time from parsed to answered (its result is counted by the ingest path).
  void ingest_latency(double seconds);

  // What is read when scraped.
  struct state {
    std::optional<call_counts> calls;  // empty when the store could not be read
    std::optional<job_counts> jobs;
    writer_stats writer;
    std::vector<backend_metric> backend;        // the store backend's own figures, exported as they are
    std::optional<jobs::worker_stats> workers;  // empty on a node without AI workers
    std::optional<engines::pause_cutter_stats> segmenter;  // empty without --segmenter vad
    std::string engine;
    unsigned configured_workers = 0;
    double now = 0;                   // unix seconds
    std::optional<std::size_t> open_connections;  // empty when the transport does not tell
    std::size_t connection_limit = 0;
    const ingest::ingest_stats* ingest = nullptr;  // packets by result and arrival, over every entry point
    const streams::stream_stats* streams = nullptr;  // the stream protocols
    std::optional<server::failures> transport_failures;  // the HTTP transport's coroutines, when it tells
    std::optional<events::hub_stats> events;             // the event stream, when the node has one
    std::size_t max_subscribers = 0;
  };
  std::string render(const state& s) const;

 private:
  prometheus::Counter& request_counter(std::string_view route, unsigned status);

  std::shared_ptr<prometheus::Registry> registry_;
  prometheus::Family<prometheus::Counter>* requests_;
  prometheus::Family<prometheus::Counter>* refused_;
  prometheus::Histogram* ingest_latency_;

  // request_counter's cache: one slot per (route, status), filled on first use.
  struct route_slots {
    std::string route;
    std::array<std::atomic<prometheus::Counter*>, 600> by_status{};
  };
  static constexpr std::size_t max_routes = 64;
  std::mutex mutex_;
  std::array<std::unique_ptr<route_slots>, max_routes> routes_;  // [0, route_count_) set, written once
  std::atomic<std::size_t> route_count_{0};
};

}  // namespace aipbx::http
