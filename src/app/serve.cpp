#include "app/serve.hpp"

#include "app/command_line.hpp"
#include "app/engine_factory.hpp"
#include "domain/clock.hpp"
#include "engines/pause_cutter.hpp"
#include "engines/segment_attempt.hpp"
#include "events/event_hub.hpp"
#include "http/api.hpp"
#include "http/metrics.hpp"
#include "http/server.hpp"
#include "http/tls.hpp"
#include "jobs/worker_pool.hpp"
#include "log/log.hpp"
#include "storage/database_url.hpp"
#include "storage/postgres/pg_call_store.hpp"
#include "storage/sqlite/sqlite_call_store.hpp"
#include "streams/audiosocket.hpp"
#include "streams/stream_hub.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <unistd.h>

#include <atomic>
#include <csignal>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

namespace aipbx::app {

namespace asio = boost::asio;

namespace {

std::string default_node_name() {
  char host[256] = {};
  if (gethostname(host, sizeof host - 1) != 0) std::snprintf(host, sizeof host, "aipbx");
  return std::string(host) + "-" + std::to_string(getpid());
}

// With --segmenter vad, the calls whose packets the store leaves for the pause cutter: those with audio.
std::function<bool(const std::optional<media_declaration>&)> cut_outside(const serve_config& config) {
  if (config.segmenter != "vad") return {};
  return [fallback = config.media](const std::optional<media_declaration>& declared) {
    return engines::pause_cutter::cuts(declared, fallback);
  };
}

std::unique_ptr<storage_backend> open_postgres(const serve_config& config, const std::string& url,
                                               const std::string& node) {
  pg_options options;
  options.url = url;
  options.pool_size = config.pg_pool_size;
  options.writers = config.pg_writers;
  options.queue_limit = config.writer_queue;
  options.max_batch = config.max_batch;
  options.segment_packets = config.segment_packets;
  options.cut_outside = cut_outside(config);
  options.segment_idle = static_cast<double>(config.segment_idle.count()) / 1000.0;
  options.max_attempts = config.retry_max_attempts;
  options.window = config.window;
  options.idle_timeout = static_cast<double>(config.call_idle_timeout.count()) / 1000.0;
  options.node = node;
  options.event_retention = static_cast<double>(config.event_retention.count()) / 1000.0;
  options.clock = system_now;
  auto store = std::make_unique<pg_call_store>(options);
  log::info("store opened", {{"backend", "postgresql"}, {"schema_version", store->schema_version()},
                             {"pool_size", options.pool_size}, {"writers", options.writers}});
  return store;
}

std::unique_ptr<storage_backend> open_store(const serve_config& config, const std::string& node) {
  auto url = parse_database_url(config.db);
  if (!url) throw std::runtime_error("invalid --db '" + config.db + "': expected sqlite:///path, a file path or postgresql://...");
  if (url->kind == backend::postgresql) return open_postgres(config, url->location, node);
  sqlite_options options;
  options.path = url->location;
  options.queue_limit = config.writer_queue;
  options.max_batch = config.max_batch;
  options.sync = config.sqlite_sync == "commit" ? sqlite_sync::commit : sqlite_sync::pipelined;
  options.commit_delay = config.commit_delay;
  options.checkpoint_pages = config.wal_checkpoint_pages;
  options.checkpoint_limit_pages = std::max(config.wal_limit_pages, config.wal_checkpoint_pages);
  options.segment_packets = config.segment_packets;
  options.cut_outside = cut_outside(config);
  options.segment_idle = static_cast<double>(config.segment_idle.count()) / 1000.0;
  options.max_attempts = config.retry_max_attempts;
  options.window = config.window;
  options.idle_timeout = static_cast<double>(config.call_idle_timeout.count()) / 1000.0;
  options.event_retention = static_cast<double>(config.event_retention.count()) / 1000.0;
  options.clock = system_now;
  auto store = std::make_unique<sqlite_call_store>(options);
  log::info("store opened", {{"backend", "sqlite"}, {"path", options.path}, {"schema_version", store->schema_version()},
                                 {"sync", config.sqlite_sync}});
  return store;
}

// Everything `serve` runs, started in steps. A step that fails logs why and returns false; the destructor
// is the one teardown for every way out (a failed step, or the end of a run): it stops what started, the
// workers first (they release their leases through the store), then the store, then the logger.
class service {
 public:
  explicit service(const serve_config& config);
  ~service();
  service(const service&) = delete;
  service& operator=(const service&) = delete;

  bool load_tls();
  bool open_store();
  bool start_ai();
  bool start_cutter();
  bool listen();
  void run_until_signal();

 private:
  http::api_options api_options();
  http::server_options server_options();
  streams::stream_options stream_options() const;
  std::unique_ptr<streams::audiosocket::listener> audiosocket_listener();
  void shut_down_on_signal(asio::steady_timer& deadline,
                           asio::executor_work_guard<asio::io_context::executor_type>& work);
  void reload_on_sighup();
  void run_io_threads();
  void stop_ai();

  const serve_config& config_;
  const std::string node_;
  const unsigned threads_;
  std::unique_ptr<http::tls_credentials> tls_;
  std::unique_ptr<storage_backend> store_;
  // Ingest: the one path every entry point uses, and the stream protocols on it. They hold no I/O object and
  // outlive the io_context: should a shutdown timeout stop it with streams open, the streams' coroutine
  // frames it then destroys still find the hub they leave.
  std::unique_ptr<ingest::ingest_path> ingest_;
  std::unique_ptr<streams::stream_hub> streams_;
  // The event stream's hub: subscriptions in connections' frames tell it when they go, so it too outlives
  // the io_context (its thread is stopped first, in the destructor, so that it posts to no dead strand).
  std::unique_ptr<events::event_hub> events_;
  asio::io_context ioc_;
  // Caught from construction on, before anything listens: a signal that comes before the server runs is
  // queued for it, never lost nor left to the default action.
  asio::signal_set signals_{ioc_, SIGINT, SIGTERM};
  asio::signal_set reload_{ioc_, SIGHUP};
  asio::thread_pool blocking_;
  http::metrics metrics_;
  http::token_store tokens_;

  // The AI pipeline: its own thread, never on the HTTP threads' path.
  asio::io_context ai_ioc_{1};
  asio::executor_work_guard<asio::io_context::executor_type> ai_work_;
  seeded_random random_;
  std::unique_ptr<engines::ai_engine> engine_;
  std::unique_ptr<jobs::worker_pool> workers_;
  std::thread ai_thread_;
  std::unique_ptr<engines::pause_cutter> cutter_;  // --segmenter vad

  std::unique_ptr<streams::audiosocket::listener> audiosocket_;
  std::unique_ptr<http::api> api_;
  std::unique_ptr<http::server> server_;
  bool served_ = false;
  double started_at_;  // unix seconds
};

service::service(const serve_config& config)
    : config_(config),
      node_(config.node_name.empty() ? default_node_name() : config.node_name),
      threads_(config.threads ? config.threads : std::max(1u, std::thread::hardware_concurrency())),
      ioc_(static_cast<int>(threads_)),
      blocking_(config.blocking_threads),
      tokens_(http::token_verifier(all_api_tokens(config))),
      ai_work_(asio::make_work_guard(ai_ioc_)),
      random_(config.mock_seed.value_or(seeded_random::fresh_seed())),
      started_at_(system_now()) {}

service::~service() {
  if (events_) events_->shutdown();
  stop_ai();
  if (store_) store_->stop();
  blocking_.join();
  if (served_) {
    const auto s = store_->stats();
    log::info("stopped", {{"batches", s.batches}, {"packets", s.packets}, {"largest_batch", s.largest_batch}});
  }
  store_.reset();
  log::shutdown();
}

// Before anything starts: check_config loaded the files once, but they may have changed since.
bool service::load_tls() {
  if (config_.tls_cert.empty()) return true;
  try {
    tls_ = std::make_unique<http::tls_credentials>(config_.tls_cert, config_.tls_key);
    return true;
  } catch (const std::exception& e) {
    log::error("cannot set up TLS", {{"error", e.what()}});
    return false;
  }
}

bool service::open_store() {
  try {
    store_ = app::open_store(config_, node_);
    return true;
  } catch (const std::exception& e) {
    log::error("cannot open the store", {{"db", mask_secret_parts(config_.db)}, {"error", e.what()}});
    return false;
  }
}

bool service::start_ai() {
  try {
    engine_ = make_engine(config_, random_);
  } catch (const std::exception& e) {
    log::error("cannot start the engine", {{"engine", config_.engine}, {"error", e.what()}});
    return false;
  }
  jobs::worker_options wopts;
  wopts.workers = config_.workers;
  wopts.lease = config_.lease_timeout;
  wopts.poll = config_.job_poll;
  wopts.owner = node_;
  wopts.retry.base = config_.retry_base_delay;
  wopts.retry.max_delay = config_.retry_max_delay;
  wopts.retry.max_attempts = config_.retry_max_attempts;
  wopts.retry.jitter = config_.retry_jitter;
  workers_ = std::make_unique<jobs::worker_pool>(
      ai_ioc_.get_executor(), *store_,
      engines::make_segment_attempt(*store_, *store_, *engine_, blocking_, config_.media), wopts, system_now,
      random_);
  if (config_.workers > 0) {
    store_->on_jobs_queued([this] { workers_->notify(); });
    workers_->start();
  }
  ai_thread_ = std::thread([this] {
    log::name_thread("aipbx-ai");
    ai_ioc_.run();
  });
  log::info("ai workers started", {{"engine", engine_->name()},
                                   {"workers", config_.workers},
                                   {"node", node_},
                                   {"segment_packets", config_.segment_packets}});
  return true;
}

// With --segmenter vad: the thread that cuts calls with audio at pauses, beside the store.
bool service::start_cutter() {
  if (config_.segmenter != "vad") return true;
  engines::pause_cutter_options o;
  o.rules = segment_rules(config_);
  o.aggressiveness = config_.vad_aggressiveness;
  o.segment_idle = static_cast<double>(config_.segment_idle.count()) / 1000.0;
  o.default_media = config_.media;
  o.clock = system_now;
  try {
    cutter_ = std::make_unique<engines::pause_cutter>(*store_, o);
  } catch (const std::exception& e) {
    log::error("cannot start the segmenter", {{"error", e.what()}});
    return false;
  }
  cutter_->start();
  log::info("segmenter started", {{"segmenter", "vad"},
                                  {"segment_min_ms", o.rules.min_ms},
                                  {"segment_max_ms", o.rules.max_ms},
                                  {"segment_silence_ms", o.rules.silence_ms},
                                  {"vad_aggressiveness", o.aggressiveness}});
  return true;
}

// Workers release their leases through the store, so they stop before it; so does the segmenter, whose
// last cuts the store answers.
void service::stop_ai() {
  if (cutter_) cutter_->stop();
  if (!ai_thread_.joinable()) return;
  if (config_.workers > 0)
    workers_->stop([this] { ai_work_.reset(); });
  else
    ai_work_.reset();
  ai_thread_.join();
}

http::api_options service::api_options() {
  http::api_options aopts;
  aopts.body_limit = config_.body_limit;
  aopts.metrics = &metrics_;
  if (config_.workers > 0) aopts.worker_stats = [this] { return std::optional(workers_->stats()); };
  if (cutter_) aopts.segmenter_stats = [this] { return std::optional(cutter_->stats()); };
  aopts.engine = std::string(engine_->name());
  aopts.workers = config_.workers;
  aopts.auth = &tokens_;
  // server_ is set before it accepts anything.
  aopts.open_connections = [this] { return server_ != nullptr ? server_->connections() : 0; };
  aopts.transport_failures = [this] { return server_ != nullptr ? server_->coroutine_failures() : http::server::failures{}; };
  aopts.connection_limit = config_.max_connections;
  aopts.default_media = config_.media;
  aopts.streams = streams_.get();
  aopts.events = events_.get();
  aopts.event_heartbeat = config_.event_heartbeat;
  aopts.node_name = node_;
  const auto url = parse_database_url(config_.db);
  aopts.backend = url && url->kind == backend::postgresql ? "postgresql" : "sqlite";
  aopts.started_at = started_at_;
  return aopts;
}

http::server_options service::server_options() {
  http::server_options sopts;
  sopts.host = config_.host;
  sopts.port = config_.port;
  sopts.body_limit = config_.body_limit;
  sopts.body_memory = config_.body_memory;
  sopts.header_limit = config_.header_limit;
  sopts.request_timeout = config_.request_timeout;
  sopts.idle_timeout = config_.keepalive_timeout;
  sopts.max_connections = config_.max_connections;
  sopts.on_refused = [this](std::string_view reason) { metrics_.refused(reason); };
  sopts.tls = tls_.get();
  sopts.streams = streams_.get();
  sopts.websocket_message_limit = config_.stream_message_limit;
  return sopts;
}

streams::stream_options service::stream_options() const {
  streams::stream_options o;
  o.window = config_.stream_window;
  o.max_fps = config_.stream_max_fps;
  o.idle_timeout = config_.stream_idle_timeout;
  o.message_limit = config_.stream_message_limit;
  o.max_streams = config_.max_streams;
  o.drain_timeout = config_.shutdown_timeout;
  return o;
}

std::unique_ptr<streams::audiosocket::listener> service::audiosocket_listener() {
  if (!config_.audiosocket_port) return nullptr;
  streams::audiosocket::listener_options o;
  o.host = config_.audiosocket_host;
  o.port = *config_.audiosocket_port;
  for (const auto& n : config_.audiosocket_allow) o.allow.push_back(*streams::audiosocket::parse_network(n));
  o.registered_only = config_.audiosocket_registered;
  return std::make_unique<streams::audiosocket::listener>(ioc_, *streams_, o);
}

bool service::listen() {
  ingest_ = std::make_unique<ingest::ingest_path>(*store_, blocking_, config_.media);
  std::function<bool(std::string_view)> token_ok;
  if (!all_api_tokens(config_).empty())
    token_ok = [this](std::string_view token) { return tokens_.current()->matches(token); };
  streams_ = std::make_unique<streams::stream_hub>(*store_, *ingest_, blocking_, stream_options(), token_ok);
  events::hub_options hopts;
  hopts.max_subscribers = config_.max_subscribers;
  hopts.buffer = config_.event_buffer;
  events_ = std::make_unique<events::event_hub>(*store_, hopts);
  events_->start();
  api_ = std::make_unique<http::api>(*store_, *store_, *ingest_, blocking_, api_options());
  server_ = std::make_unique<http::server>(ioc_, server_options(), *api_);
  audiosocket_ = audiosocket_listener();
  try {
    const auto endpoint = server_->listen();
    log::info("listening", {{"address", endpoint.address().to_string()},
                            {"port", endpoint.port()},
                            {"threads", threads_},
                            {"db", mask_secret_parts(config_.db)},
                            {"api_tokens", config_.api_tokens.size() + config_.api_file_tokens.size()},
                            {"tls", tls_ != nullptr}});
    if (audiosocket_) {
      const auto as = audiosocket_->listen();
      log::info("listening", {{"protocol", "audiosocket"}, {"address", as.address().to_string()}, {"port", as.port()}});
    }
    return true;
  } catch (const std::exception& e) {
    log::error("cannot listen", {{"host", config_.host}, {"port", config_.port}, {"error", e.what()}});
    return false;
  }
}

// Serves until SIGTERM or SIGINT and the end of the requests and streams in flight (or --shutdown-timeout).
void service::run_until_signal() {
  server_->start();
  if (audiosocket_) audiosocket_->start();
  auto work = asio::make_work_guard(ioc_);
  asio::steady_timer deadline(ioc_);
  shut_down_on_signal(deadline, work);
  reload_on_sighup();
  run_io_threads();
  served_ = true;
}

void service::shut_down_on_signal(asio::steady_timer& deadline,
                                  asio::executor_work_guard<asio::io_context::executor_type>& work) {
  signals_.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    log::info("shutting down", {{"signal", signal}, {"connections", server_->connections()}});
    deadline.expires_after(config_.shutdown_timeout);
    deadline.async_wait([&](const boost::system::error_code& tec) {
      if (tec) return;
      log::warn("shutdown timeout: closing connections with requests in flight",
                {{"connections", server_->connections()}});
      ioc_.stop();
    });
    // The HTTP connections and the streams end apart (a WebSocket stream is both): the process goes on
    // once both are done. Streams close with "going away" once what they read is durable.
    // The two may end on two I/O threads at once: the last one (by the atomic count) ends the run.
    auto pending = std::make_shared<std::atomic<int>>(2);
    const auto one_done = [&, pending] {
      if (pending->fetch_sub(1) > 1) return;
      asio::post(ioc_, [&] {
        deadline.cancel();
        work.reset();
        signals_.cancel();
        reload_.cancel();
      });
    };
    if (audiosocket_) audiosocket_->stop();
    // Event subscribers are told where to resume, then their connections end.
    events_->stop();
    streams_->stop(one_done);
    server_->stop(one_done);
  });
}

// SIGHUP reads --api-token-file and the TLS certificate and key again: tokens and certificates are
// rotated without a restart. A file that cannot be read, a bad token or a key that does not match its
// certificate leaves what is in force.
void service::reload_on_sighup() {
  reload_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec) return;
    if (config_.api_token_file.empty() && tls_ == nullptr) log::info("SIGHUP: nothing to reload");
    if (!config_.api_token_file.empty()) {
      try {
        serve_config next = config_;
        next.api_file_tokens = read_token_file(config_.api_token_file);
        const auto all = all_api_tokens(next);
        tokens_.replace(http::token_verifier(all));
        log::info("api tokens reloaded", {{"file", config_.api_token_file}, {"api_tokens", all.size()}});
      } catch (const std::exception& e) {
        log::error("api tokens not reloaded; the tokens in force stay", {{"error", e.what()}});
      }
    }
    if (tls_ != nullptr) {
      try {
        tls_->reload();
        log::info("tls certificate reloaded", {{"cert", tls_->cert_file()}, {"key", tls_->key_file()}});
      } catch (const std::exception& e) {
        log::error("tls certificate not reloaded; the certificate in force stays", {{"error", e.what()}});
      }
    }
    reload_on_sighup();
  });
}

// The signals the service handles, blocked in every thread but the I/O threads (see serve()).
sigset_t handled_signals() {
  sigset_t set;
  sigemptyset(&set);
  for (const int sig : {SIGINT, SIGTERM, SIGHUP}) sigaddset(&set, sig);
  return set;
}

void service::run_io_threads() {
  const sigset_t handled = handled_signals();
  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads_; ++i)
    pool.emplace_back([this, handled] {
      log::name_thread("aipbx-http");
      pthread_sigmask(SIG_UNBLOCK, &handled, nullptr);
      ioc_.run();
    });
  pthread_sigmask(SIG_UNBLOCK, &handled, nullptr);
  ioc_.run();
  for (auto& t : pool) t.join();
}

}  // namespace

int serve(const serve_config& config) {
  // SIGTERM, SIGINT and SIGHUP reach only the I/O threads, which wait in the reactor that reads them: the
  // store's writer, the AI thread and the pools start with them blocked and are never interrupted by one,
  // and no signal waits on a thread busy elsewhere. One that comes before the I/O threads run is held
  // pending until they do.
  const sigset_t handled = handled_signals();
  sigset_t before;
  pthread_sigmask(SIG_BLOCK, &handled, &before);
  const auto served = [&] {
    log::init(config.log_level);
    service s(config);
    if (!s.load_tls() || !s.open_store() || !s.start_ai() || !s.start_cutter() || !s.listen()) return 1;
    s.run_until_signal();
    return 0;
  }();
  pthread_sigmask(SIG_SETMASK, &before, nullptr);
  return served;
}

}  // namespace aipbx::app
