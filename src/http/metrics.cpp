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

constexpr std::array<std::string_view, ingest_result_count> ingest_result_names{
    "accepted", "duplicate", "conflict", "call_ended", "invalid", "unsupported_media_type", "overloaded", "failed"};

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
  auto& results = prometheus::BuildCounter()
                      .Name("aipbx_packets_total")
                      .Help("Ingest requests by result: accepted (stored), duplicate, conflict, call_ended, "
                            "invalid, unsupported_media_type, overloaded, failed")
                      .Register(*registry_);
  for (std::size_t i = 0; i < ingest_result_count; ++i)
    ingest_results_[i] = &results.Add({{"result", std::string(ingest_result_names[i])}});
  auto& arrivals = prometheus::BuildCounter()
                       .Name("aipbx_packet_arrivals_total")
                       .Help("New packets by how they arrived: in_order, gap (opened a missing range), late "
                             "(filled one), before_start, late_after_lost (after their range was declared lost)")
                       .Register(*registry_);
  for (auto a : {arrival::in_order, arrival::gap, arrival::late, arrival::before_start, arrival::after_lost})
    arrivals_[static_cast<std::size_t>(a)] = &arrivals.Add({{"kind", std::string(to_string(a))}});
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

void metrics::ingest(ingest_result r, double seconds) {
  ingest_results_[static_cast<std::size_t>(r)]->Increment();
  ingest_latency_->Observe(seconds);
}

void metrics::arrival(aipbx::arrival kind) {
  if (auto* c = arrivals_[static_cast<std::size_t>(kind)]) c->Increment();  // new packets are never `duplicate`
}

std::string metrics::render(const state& s) const {
  std::vector<MetricFamily> out = registry_->Collect();

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
  auto queue = family("aipbx_writer_queue", "Writes waiting for the writer, and the limit", MetricType::Gauge);
  add_value(queue, static_cast<double>(s.writer.queued), {{"kind", "queued"}});
  add_value(queue, static_cast<double>(s.writer.queue_limit), {{"kind", "limit"}});
  out.push_back(std::move(queue));
  auto syncs = family("aipbx_log_syncs_total", "fdatasync calls on the write-ahead log by the syncer",
                      MetricType::Counter);
  add_value(syncs, static_cast<double>(s.writer.syncs));
  out.push_back(std::move(syncs));
  auto checkpoints = family("aipbx_checkpoints_total", "Write-ahead log checkpoints, by who ran them",
                            MetricType::Counter);
  add_value(checkpoints, static_cast<double>(s.writer.checkpoints), {{"by", "checkpointer"}});
  add_value(checkpoints, static_cast<double>(s.writer.writer_checkpoints), {{"by", "writer"}});
  add_value(checkpoints, static_cast<double>(s.writer.waiting_checkpoints), {{"by", "writer_waiting"}});
  out.push_back(std::move(checkpoints));

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
    auto failures =
        family("aipbx_coroutine_failures_total",
               "Coroutines that ended by an exception (a bug), by unit of work; each ended only its unit",
               MetricType::Counter);
    add_value(failures, static_cast<double>(s.workers->failures.dispatcher), {{"unit", "ai_dispatcher"}});
    add_value(failures, static_cast<double>(s.workers->failures.attempt), {{"unit", "ai_attempt"}});
    add_value(failures, static_cast<double>(s.workers->failures.lease_renewal),
              {{"unit", "ai_lease_renewal"}});
    out.push_back(std::move(failures));
  }
  return prometheus::TextSerializer().Serialize(out);
}

}  // namespace aipbx::http
