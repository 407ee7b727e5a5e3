#include "http/metrics.hpp"

#include <prometheus/counter.h>
#include <prometheus/family.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include <algorithm>

namespace aipbx::http {

namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

MetricFamily family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

void add_value(MetricFamily& f, double value, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  if (f.type == MetricType::Counter) m.counter.value = value;
  else m.gauge.value = value;
  f.metric.push_back(std::move(m));
}

void add_histogram(MetricFamily& f, const histogram_snapshot& h, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.histogram.sample_count = h.count;
  m.histogram.sample_sum = h.sum;
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i < h.bounds.size(); ++i) {
    cumulative += h.counts[i];
    m.histogram.bucket.push_back({cumulative, h.bounds[i]});
  }
  m.histogram.bucket.push_back({h.count, std::numeric_limits<double>::infinity()});
  f.metric.push_back(std::move(m));
}

// The stream protocols' counters: aipbx_streams_open, aipbx_streams_total, aipbx_stream_frames_total,
// aipbx_stream_bytes_total, aipbx_stream_packets_total, aipbx_stream_events_total, aipbx_stream_closes_total,
// aipbx_stream_commit_lag_seconds, each by protocol.
void render_streams(const streams::stream_stats& st, std::vector<MetricFamily>& out) {
  using streams::protocol;
  auto open = family("aipbx_streams_open", "Streams open now, by protocol", MetricType::Gauge);
  auto opened = family("aipbx_streams_total", "Streams accepted (their call opened), by protocol", MetricType::Counter);
  auto frames = family("aipbx_stream_frames_total", "Audio frames read, by protocol", MetricType::Counter);
  auto bytes = family("aipbx_stream_bytes_total", "Audio bytes read, by protocol", MetricType::Counter);
  auto packets = family("aipbx_stream_packets_total",
                        "Packets of streams answered by the store, by protocol and result: stored, duplicate, retried "
                        "(sent again after the store was overloaded or unavailable)",
                        MetricType::Counter);
  auto events = family("aipbx_stream_events_total", "Call events read (DTMF, marks, texts), by protocol",
                       MetricType::Counter);
  auto closes = family("aipbx_stream_closes_total", "Streams that ended, by protocol and reason", MetricType::Counter);
  auto lag = family("aipbx_stream_commit_lag_seconds",
                    "From an audio frame read off the socket to its packet durable, by protocol", MetricType::Histogram);
  for (auto p : {protocol::twilio, protocol::audio_fork, protocol::audiosocket}) {
    const auto& s = st.of(p);
    const std::string name(streams::to_string(p));
    const auto value = [](const auto& a) { return static_cast<double>(a.load(std::memory_order_relaxed)); };
    add_value(open, value(s.open), {{"protocol", name}});
    add_value(opened, value(s.opened), {{"protocol", name}});
    add_value(frames, value(s.frames), {{"protocol", name}});
    add_value(bytes, value(s.bytes), {{"protocol", name}});
    add_value(packets, value(s.stored), {{"protocol", name}, {"result", "stored"}});
    add_value(packets, value(s.duplicates), {{"protocol", name}, {"result", "duplicate"}});
    add_value(packets, value(s.retries), {{"protocol", name}, {"result", "retried"}});
    add_value(events, value(s.events), {{"protocol", name}});
    for (std::size_t r = 0; r < streams::close_reason_count; ++r) {
      const auto count = s.closes[r].load(std::memory_order_relaxed);
      if (count > 0)
        add_value(closes, static_cast<double>(count),
                  {{"protocol", name}, {"reason", std::string(streams::to_string(static_cast<streams::close_reason>(r)))}});
    }
    add_histogram(lag, s.commit_lag.snapshot(), {{"protocol", name}});
  }
  for (auto* f : {&open, &opened, &frames, &bytes, &packets, &events, &closes, &lag}) out.push_back(std::move(*f));
}

// The pause cutter's counters (--segmenter vad): aipbx_segmenter_cuts_total by result,
// aipbx_segmenter_packets_total, aipbx_segmenter_passes_total, aipbx_segmenter_failures_total and the calls
// part-way through a segment, aipbx_segmenter_calls.
void render_segmenter(const engines::pause_cutter_stats& s, std::vector<MetricFamily>& out) {
  auto cuts = family("aipbx_segmenter_cuts_total",
                     "Segments the pause segmenter cut, by result: cut (its job queued), stale (another cut of the "
                     "same audio came first), failed (the store refused)",
                     MetricType::Counter);
  add_value(cuts, static_cast<double>(s.cuts), {{"result", "cut"}});
  add_value(cuts, static_cast<double>(s.stale_cuts), {{"result", "stale"}});
  add_value(cuts, static_cast<double>(s.failed_cuts), {{"result", "failed"}});
  out.push_back(std::move(cuts));
  const auto counter = [&](const char* name, const char* help, std::uint64_t value) {
    auto f = family(name, help, MetricType::Counter);
    add_value(f, static_cast<double>(value));
    out.push_back(std::move(f));
  };
  counter("aipbx_segmenter_packets_total", "Packets the voice detector heard (again after a cut included)", s.packets);
  counter("aipbx_segmenter_passes_total", "Passes of the pause segmenter over the calls waiting for cuts", s.passes);
  counter("aipbx_segmenter_failures_total", "Passes or calls of the pause segmenter that ended by an error",
          s.failures);
  auto calls = family("aipbx_segmenter_calls", "Calls part-way through a segment in the pause segmenter",
                      MetricType::Gauge);
  add_value(calls, static_cast<double>(s.calls));
  out.push_back(std::move(calls));
}

// The backend's figures, a family for each run of one name.
void add_backend_metrics(std::vector<MetricFamily>& out, const std::vector<backend_metric>& figures) {
  const std::string* current = nullptr;
  for (const auto& m : figures) {
    if (!current || *current != m.name) {
      const auto type = m.type == backend_metric::kind::counter ? MetricType::Counter
                        : m.type == backend_metric::kind::gauge ? MetricType::Gauge
                                                                  : MetricType::Histogram;
      out.push_back(family(m.name, m.help, type));
      current = &m.name;
    }
    std::vector<ClientMetric::Label> labels;
    for (const auto& [name, value] : m.labels) labels.push_back({name, value});
    if (m.type == backend_metric::kind::histogram) add_histogram(out.back(), m.buckets, std::move(labels));
    else add_value(out.back(), m.value, std::move(labels));
  }
}

}  // namespace

metrics::metrics() : registry_(std::make_shared<prometheus::Registry>()) {
  requests_ = &prometheus::BuildCounter()
                   .Name("aipbx_http_requests_total")
                   .Help("HTTP requests answered, by matched route and status")
                   .Register(*registry_);
  refused_ = &prometheus::BuildCounter()
                  .Name("aipbx_http_refused_total")
                  .Help("Requests the transport refused before routing them, by reason")
                  .Register(*registry_);
  ingest_latency_ = &prometheus::BuildHistogram()
                         .Name("aipbx_ingest_latency_seconds")
                         .Help("From a packet's request parsed to its durable answer")
                         .Register(*registry_)
                         .Add({}, prometheus::Histogram::BucketBoundaries{0.0005, 0.001, 0.002, 0.005, 0.01, 0.02,
                                                                          0.05, 0.1, 0.25, 0.5, 1, 2.5, 5});
}

metrics::~metrics() = default;

prometheus::Counter& metrics::request_counter(std::string_view route, unsigned status) {
  status = std::min(status, 599u);
  route_slots* slots = nullptr;
  const std::size_t n = route_count_.load(std::memory_order_acquire);
  for (std::size_t i = 0; i < n && !slots; ++i)
    if (routes_[i]->route == route) slots = routes_[i].get();
  if (!slots) {
    std::lock_guard lock(mutex_);
    const std::size_t m = route_count_.load(std::memory_order_relaxed);
    for (std::size_t i = 0; i < m && !slots; ++i)
      if (routes_[i]->route == route) slots = routes_[i].get();
    if (!slots) {
      const std::size_t at = std::min(m, max_routes - 1);  // more routes than slots share the last one
      if (!routes_[at]) {
        routes_[at] = std::make_unique<route_slots>();
        routes_[at]->route = at == max_routes - 1 ? "other" : std::string(route);
        route_count_.store(at + 1, std::memory_order_release);
      }
      slots = routes_[at].get();
    }
  }
  auto& slot = slots->by_status[status];
  if (auto* c = slot.load(std::memory_order_acquire)) return *c;
  std::lock_guard lock(mutex_);
  if (auto* c = slot.load(std::memory_order_relaxed)) return *c;
  auto* c = &requests_->Add({{"route", slots->route}, {"status", std::to_string(status)}});
  slot.store(c, std::memory_order_release);
  return *c;
}

void metrics::request(std::string_view route, unsigned status) { request_counter(route, status).Increment(); }

void metrics::refused(std::string_view reason) {
  std::lock_guard lock(mutex_);
  refused_->Add({{"reason", std::string(reason)}}).Increment();
}

void metrics::ingest_latency(double seconds) { ingest_latency_->Observe(seconds); }

namespace {

void render_events(const events::hub_stats& e, std::size_t limit, std::uint64_t pruned, std::vector<MetricFamily>& out) {
  auto subscribers = family("aipbx_event_subscribers",
                            "Event stream subscribers open now, by transport (sse, websocket), and --max-subscribers",
                            MetricType::Gauge);
  for (std::size_t i = 0; i < events::transport_count; ++i)
    add_value(subscribers, static_cast<double>(e.subscribers[i]),
              {{"transport", std::string(events::to_string(static_cast<events::transport>(i)))}});
  add_value(subscribers, static_cast<double>(limit), {{"transport", "limit"}});
  out.push_back(std::move(subscribers));
  auto accepted = family("aipbx_event_subscriptions_total", "Event stream subscriptions accepted, by transport",
                         MetricType::Counter);
  for (std::size_t i = 0; i < events::transport_count; ++i)
    add_value(accepted, static_cast<double>(e.subscriptions[i]),
              {{"transport", std::string(events::to_string(static_cast<events::transport>(i)))}});
  out.push_back(std::move(accepted));
  auto ended = family("aipbx_event_subscribers_ended_total",
                      "Subscriptions the server ended, by reason: slow (their queue was full: told to resume), "
                      "shutdown, refused (over --max-subscribers)",
                      MetricType::Counter);
  add_value(ended, static_cast<double>(e.cut_slow), {{"reason", "slow"}});
  add_value(ended, static_cast<double>(e.ended_shutdown), {{"reason", "shutdown"}});
  add_value(ended, static_cast<double>(e.refused), {{"reason", "refused"}});
  out.push_back(std::move(ended));
  auto events_total = family("aipbx_events_total",
                             "Event stream: events read from the log (following it, catching subscribers up), "
                             "queued to subscribers, pruned from the log by retention (by this node), and "
                             "subscribers told that events they asked for were pruned",
                             MetricType::Counter);
  add_value(events_total, static_cast<double>(e.events_read), {{"kind", "read"}});
  add_value(events_total, static_cast<double>(e.events_queued), {{"kind", "queued"}});
  add_value(events_total, static_cast<double>(pruned), {{"kind", "pruned"}});
  add_value(events_total, static_cast<double>(e.truncated), {{"kind", "truncated_notices"}});
  out.push_back(std::move(events_total));
  auto position = family("aipbx_event_log_position",
                         "The last event id the node's event stream has followed the log to (while it has "
                         "subscribers)",
                         MetricType::Gauge);
  add_value(position, static_cast<double>(e.position));
  out.push_back(std::move(position));
  auto failures = family("aipbx_event_read_failures_total", "Reads of the event log that failed (retried)",
                         MetricType::Counter);
  add_value(failures, static_cast<double>(e.read_failures));
  out.push_back(std::move(failures));
}

}  // namespace

std::string metrics::render(const state& s) const {
  std::vector<MetricFamily> out = registry_->Collect();

  if (s.ingest) {
    auto results = family("aipbx_packets_total",
                          "Packets by ingest result, over every entry point: accepted (stored), duplicate, conflict, "
                          "call_ended, invalid, unsupported_media_type, overloaded, failed",
                          MetricType::Counter);
    for (std::size_t i = 0; i < ingest::ingest_result_count; ++i) {
      const auto r = static_cast<ingest::ingest_result>(i);
      add_value(results, static_cast<double>(s.ingest->results(r)), {{"result", std::string(ingest::to_string(r))}});
    }
    out.push_back(std::move(results));
    auto arrivals = family("aipbx_packet_arrivals_total",
                           "New packets by how they arrived: in_order, gap (opened a missing range), late (filled "
                           "one), before_start, late_after_lost (after their range was declared lost)",
                           MetricType::Counter);
    for (auto a : {arrival::in_order, arrival::gap, arrival::late, arrival::before_start, arrival::after_lost})
      add_value(arrivals, static_cast<double>(s.ingest->arrivals(a)), {{"kind", std::string(to_string(a))}});
    out.push_back(std::move(arrivals));
  }

  if (s.streams) render_streams(*s.streams, out);

  if (s.calls) {
    auto calls = family("aipbx_calls", "Calls by state", MetricType::Gauge);
    for (auto st : {call_state::in_progress, call_state::processing_ai, call_state::completed, call_state::failed,
                    call_state::archived})
      add_value(calls, static_cast<double>(s.calls->by_state[static_cast<std::size_t>(st)]),
                {{"state", std::string(to_string(st))}});
    out.push_back(std::move(calls));
    auto stored = family("aipbx_call_packets_total",
                         "Packets over every stored call, by kind: received (stored), duplicate, out_of_order, "
                         "late (after their range was declared lost), lost (declared lost, never received)",
                         MetricType::Counter);
    add_value(stored, static_cast<double>(s.calls->packets_received), {{"kind", "received"}});
    add_value(stored, static_cast<double>(s.calls->duplicate_packets), {{"kind", "duplicate"}});
    add_value(stored, static_cast<double>(s.calls->out_of_order_packets), {{"kind", "out_of_order"}});
    add_value(stored, static_cast<double>(s.calls->late_packets), {{"kind", "late"}});
    add_value(stored, static_cast<double>(s.calls->lost_packets), {{"kind", "lost"}});
    out.push_back(std::move(stored));
    auto gaps = family("aipbx_call_gaps_total", "Missing ranges opened over every stored call", MetricType::Counter);
    add_value(gaps, static_cast<double>(s.calls->gaps_opened));
    out.push_back(std::move(gaps));
  }
  if (s.jobs) {
    auto jobs = family("aipbx_jobs", "AI jobs by state", MetricType::Gauge);
    add_value(jobs, static_cast<double>(s.jobs->queued), {{"state", "queued"}});
    add_value(jobs, static_cast<double>(s.jobs->running), {{"state", "running"}});
    add_value(jobs, static_cast<double>(s.jobs->succeeded), {{"state", "succeeded"}});
    add_value(jobs, static_cast<double>(s.jobs->dead), {{"state", "dead"}});
    out.push_back(std::move(jobs));
    auto age = family("aipbx_job_queue_oldest_due_seconds",
                      "How long the oldest due job has waited for a worker (0 when none is due)", MetricType::Gauge);
    add_value(age, s.jobs->oldest_due_at ? std::max(0.0, s.now - *s.jobs->oldest_due_at) : 0.0);
    out.push_back(std::move(age));
  }

  if (s.open_connections) {
    auto connections = family("aipbx_http_connections", "Open client connections, and --max-connections",
                              MetricType::Gauge);
    add_value(connections, static_cast<double>(*s.open_connections), {{"kind", "open"}});
    add_value(connections, static_cast<double>(s.connection_limit), {{"kind", "limit"}});
    out.push_back(std::move(connections));
  }

  auto commits = family("aipbx_commits_total", "Write transactions committed by the store's writer", MetricType::Counter);
  add_value(commits, static_cast<double>(s.writer.batches));
  out.push_back(std::move(commits));
  auto failed = family("aipbx_commit_failures_total", "Write transactions that failed and were rolled back",
                       MetricType::Counter);
  add_value(failed, static_cast<double>(s.writer.failed_batches));
  out.push_back(std::move(failed));
  auto batch = family("aipbx_commit_batch_size", "Writes per committed transaction (group commit)",
                      MetricType::Histogram);
  add_histogram(batch, s.writer.batch_sizes);
  out.push_back(std::move(batch));
  auto commit_time = family("aipbx_commit_seconds",
                            "The writer's time in each transaction, from its first write to its commit",
                            MetricType::Histogram);
  add_histogram(commit_time, s.writer.commit_seconds);
  out.push_back(std::move(commit_time));
  auto queue = family("aipbx_writer_queue", "Writes waiting for the writer, and the limit", MetricType::Gauge);
  add_value(queue, static_cast<double>(s.writer.queued), {{"kind", "queued"}});
  add_value(queue, static_cast<double>(s.writer.queue_limit), {{"kind", "limit"}});
  out.push_back(std::move(queue));
  add_backend_metrics(out, s.backend);
  if (s.events) render_events(*s.events, s.max_subscribers, s.writer.events_pruned, out);

  if (s.workers) {
    const std::vector<ClientMetric::Label> engine{{"engine", s.engine}};
    auto attempts = family("aipbx_ai_attempts_total", "AI attempts by outcome", MetricType::Counter);
    auto with = [&](const char* outcome) {
      auto l = engine;
      l.push_back({"outcome", outcome});
      return l;
    };
    add_value(attempts, static_cast<double>(s.workers->attempts), with("started"));
    add_value(attempts, static_cast<double>(s.workers->succeeded), with("succeeded"));
    add_value(attempts, static_cast<double>(s.workers->retried), with("retried"));
    add_value(attempts, static_cast<double>(s.workers->dead), with("dead"));
    add_value(attempts, static_cast<double>(s.workers->lost_leases), with("lease_lost"));
    out.push_back(std::move(attempts));
    auto running = family("aipbx_ai_running", "AI attempts running now, and the workers configured",
                          MetricType::Gauge);
    add_value(running, static_cast<double>(s.workers->running), {{"engine", s.engine}, {"kind", "running"}});
    add_value(running, static_cast<double>(s.configured_workers), {{"engine", s.engine}, {"kind", "workers"}});
    out.push_back(std::move(running));
    auto latency = family("aipbx_ai_latency_seconds", "Duration of AI attempts that returned, by engine",
                          MetricType::Histogram);
    add_histogram(latency, s.workers->latency_seconds, engine);
    out.push_back(std::move(latency));
  }
  if (s.segmenter) render_segmenter(*s.segmenter, out);
  auto failures = family("aipbx_coroutine_failures_total",
                         "Coroutines that ended by an exception (a bug), by unit of work; each ended only its unit",
                         MetricType::Counter);
  if (s.workers) {
    add_value(failures, static_cast<double>(s.workers->failures.dispatcher), {{"unit", "ai_dispatcher"}});
    add_value(failures, static_cast<double>(s.workers->failures.attempt), {{"unit", "ai_attempt"}});
    add_value(failures, static_cast<double>(s.workers->failures.lease_renewal), {{"unit", "ai_lease_renewal"}});
  }
  if (s.transport_failures) {
    add_value(failures, static_cast<double>(s.transport_failures->connection), {{"unit", "http_connection"}});
    add_value(failures, static_cast<double>(s.transport_failures->accept_loop), {{"unit", "http_accept_loop"}});
  }
  if (s.streams) {
    std::uint64_t streams = 0;
    for (auto p : {streams::protocol::twilio, streams::protocol::audio_fork, streams::protocol::audiosocket})
      streams += s.streams->of(p).failures.load(std::memory_order_relaxed);
    add_value(failures, static_cast<double>(streams), {{"unit", "stream_session"}});
  }
  if (!failures.metric.empty()) out.push_back(std::move(failures));
  return prometheus::TextSerializer().Serialize(out);
}

}  // namespace aipbx::http
