#include "app/serve.hpp"

#include "app/command_line.hpp"
#include "app/engine_factory.hpp"
#include "domain/clock.hpp"
#include "engines/segment_attempt.hpp"
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

std::unique_ptr<storage_backend> open_postgres(const serve_config& config, const std::string& url,
                                               const std::string& node) {
  pg_options options;
  options.url = url;
  options.pool_size = config.pg_pool_size;
  options.writers = config.pg_writers;
  options.queue_limit = config.writer_queue;
  options.max_batch = config.max_batch;
  options.segment_packets = config.segment_packets;
  options.segment_idle = static_cast<double>(config.segment_idle.count()) / 1000.0;
  options.max_attempts = config.retry_max_attempts;
  options.window = config.window;
  options.idle_timeout = static_cast<double>(config.call_idle_timeout.count()) / 1000.0;
  options.node = node;
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
  options.checkpoint_pages = config.wal_checkpoint_pages;
  options.checkpoint_limit_pages = std::max(config.wal_limit_pages, config.wal_checkpoint_pages);
  options.segment_packets = config.segment_packets;
  options.segment_idle = static_cast<double>(config.segment_idle.count()) / 1000.0;
  options.max_attempts = config.retry_max_attempts;
  options.window = config.window;
  options.idle_timeout = static_cast<double>(config.call_idle_timeout.count()) / 1000.0;
  options.clock = system_now;
  auto store = std::make_unique<sqlite_call_store>(options);
  log::info("store opened", {{"backend", "sqlite"}, {"path", options.path}, {"schema_version", store->schema_version()},
                                 {"sync", config.sqlite_sync}});
  return store;
}

}  // namespace

int serve(const serve_config& config) {
  log::init(config.log_level);
  // Before anything starts: check_config loaded the files once, but they may have changed since.
  std::unique_ptr<http::tls_credentials> tls;
  if (!config.tls_cert.empty()) {
    try {
      tls = std::make_unique<http::tls_credentials>(config.tls_cert, config.tls_key);
    } catch (const std::exception& e) {
      log::error("cannot set up TLS", {{"error", e.what()}});
      log::shutdown();
      return 1;
    }
  }
  const std::string node = config.node_name.empty() ? default_node_name() : config.node_name;
  std::unique_ptr<storage_backend> store;
  try {
    store = open_store(config, node);
  } catch (const std::exception& e) {
    log::error("cannot open the store", {{"db", mask_secret_parts(config.db)}, {"error", e.what()}});
    log::shutdown();
    return 1;
  }

  const unsigned threads = config.threads ? config.threads : std::max(1u, std::thread::hardware_concurrency());
  asio::io_context ioc(static_cast<int>(threads));
  asio::thread_pool blocking(config.blocking_threads);
  http::metrics metrics;

  // The AI pipeline: its own thread, never on the HTTP threads' path.
  asio::io_context ai_ioc(1);
  auto ai_work = asio::make_work_guard(ai_ioc);
  seeded_random random(config.mock_seed.value_or(seeded_random::fresh_seed()));
  std::unique_ptr<engines::ai_engine> engine;
  try {
    engine = make_engine(config, random);
  } catch (const std::exception& e) {
    log::error("cannot start the engine", {{"engine", config.engine}, {"error", e.what()}});
    store->stop();
    log::shutdown();
    return 1;
  }
  jobs::worker_options wopts;
  wopts.workers = config.workers;
  wopts.lease = config.lease_timeout;
  wopts.poll = config.job_poll;
  wopts.owner = node;
  wopts.retry.base = config.retry_base_delay;
  wopts.retry.max_delay = config.retry_max_delay;
  wopts.retry.max_attempts = config.retry_max_attempts;
  wopts.retry.jitter = config.retry_jitter;
  jobs::worker_pool workers(ai_ioc.get_executor(), *store, engines::make_segment_attempt(*store, *store, *engine, blocking, config.media),
                            wopts, system_now, random);
  if (config.workers > 0) {
    store->on_jobs_queued([&workers] { workers.notify(); });
    workers.start();
  }
  std::thread ai_thread([&] {
    log::name_thread("aipbx-ai");
    ai_ioc.run();
  });
  log::info("ai workers started", {{"engine", engine->name()}, {"workers", config.workers}, {"node", wopts.owner},
                                   {"segment_packets", config.segment_packets}});
  http::api_options aopts;
  aopts.body_limit = config.body_limit;
  aopts.metrics = &metrics;
  if (config.workers > 0) aopts.worker_stats = [&workers] { return std::optional(workers.stats()); };
  aopts.engine = std::string(engine->name());
  aopts.workers = config.workers;
  http::token_store tokens{http::token_verifier(all_api_tokens(config))};
  aopts.auth = &tokens;
  const http::server* transport = nullptr;  // set once the server exists, before it accepts anything
  aopts.open_connections = [&transport] { return transport != nullptr ? transport->connections() : 0; };
  aopts.connection_limit = config.max_connections;
  aopts.default_media = config.media;
  ingest::ingest_path ingest(*store, blocking, config.media);
  streams::stream_options stream_opts;
  stream_opts.window = config.stream_window;
  stream_opts.max_fps = config.stream_max_fps;
  stream_opts.idle_timeout = config.stream_idle_timeout;
  stream_opts.message_limit = config.stream_message_limit;
  stream_opts.max_streams = config.max_streams;
  stream_opts.drain_timeout = config.shutdown_timeout;
  std::function<bool(std::string_view)> stream_token_ok;
  if (!all_api_tokens(config).empty())
    stream_token_ok = [&tokens](std::string_view token) { return tokens.current()->matches(token); };
  streams::stream_hub hub(*store, ingest, blocking, stream_opts, stream_token_ok);
  aopts.streams = &hub;
  http::api api(*store, *store, ingest, blocking, aopts);

  http::server_options sopts;
  sopts.host = config.host;
  sopts.port = config.port;
  sopts.body_limit = config.body_limit;
  sopts.body_memory = config.body_memory;
  sopts.header_limit = config.header_limit;
  sopts.request_timeout = config.request_timeout;
  sopts.idle_timeout = config.keepalive_timeout;
  sopts.max_connections = config.max_connections;
  sopts.on_refused = [&metrics](std::string_view reason) { metrics.refused(reason); };
  sopts.tls = tls.get();
  sopts.streams = &hub;
  sopts.websocket_message_limit = config.stream_message_limit;
  http::server server(ioc, sopts, api);
  std::unique_ptr<streams::audiosocket::listener> audiosocket;
  if (config.audiosocket_port) {
    streams::audiosocket::listener_options lopts;
    lopts.host = config.audiosocket_host;
    lopts.port = *config.audiosocket_port;
    for (const auto& n : config.audiosocket_allow) lopts.allow.push_back(*streams::audiosocket::parse_network(n));
    lopts.registered_only = config.audiosocket_registered;
    audiosocket = std::make_unique<streams::audiosocket::listener>(ioc, hub, lopts);
  }
  transport = &server;

  try {
    const auto endpoint = server.listen();
    log::info("listening", {{"address", endpoint.address().to_string()},
                            {"port", endpoint.port()},
                            {"threads", threads},
                            {"db", mask_secret_parts(config.db)},
                            {"api_tokens", config.api_tokens.size() + config.api_file_tokens.size()},
                            {"tls", sopts.tls != nullptr}});
    if (audiosocket) {
      const auto as = audiosocket->listen();
      log::info("listening", {{"protocol", "audiosocket"}, {"address", as.address().to_string()}, {"port", as.port()}});
    }
  } catch (const std::exception& e) {
    log::error("cannot listen", {{"host", config.host}, {"port", config.port}, {"error", e.what()}});
    ai_work.reset();
    ai_ioc.stop();
    ai_thread.join();
    store->stop();
    log::shutdown();
    return 1;
  }
  server.start();
  if (audiosocket) audiosocket->start();

  auto work = asio::make_work_guard(ioc);
  asio::signal_set signals(ioc, SIGINT, SIGTERM);
  asio::signal_set reload(ioc, SIGHUP);
  asio::steady_timer deadline(ioc);
  signals.async_wait([&](const boost::system::error_code& ec, int signal) {
    if (ec) return;
    log::info("shutting down", {{"signal", signal}, {"connections", server.connections()}});
    deadline.expires_after(config.shutdown_timeout);
    deadline.async_wait([&](const boost::system::error_code& tec) {
      if (tec) return;
      log::warn("shutdown timeout: closing connections with requests in flight",
                {{"connections", server.connections()}});
      ioc.stop();
    });
    // The HTTP connections and the streams end apart (a WebSocket stream is both): the process goes on
    // once both are done. Streams close with "going away" once what they read is durable.
    auto pending = std::make_shared<int>(2);
    auto one_done = [&, pending] {
      asio::post(ioc, [&, pending] {
        if (--*pending > 0) return;
        deadline.cancel();
        work.reset();
        signals.cancel();
        reload.cancel();
      });
    };
    if (audiosocket) audiosocket->stop();
    hub.stop(one_done);
    server.stop(one_done);
  });

  // SIGHUP reads --api-token-file and the TLS certificate and key again: tokens and certificates are
  // rotated without a restart. A file that cannot be read, a bad token or a key that does not match its
  // certificate leaves what is in force.
  std::function<void(const boost::system::error_code&, int)> on_reload = [&](const boost::system::error_code& ec, int) {
    if (ec) return;
    if (config.api_token_file.empty() && tls == nullptr) log::info("SIGHUP: nothing to reload");
    if (!config.api_token_file.empty()) {
      try {
        serve_config next = config;
        next.api_file_tokens = read_token_file(config.api_token_file);
        const auto all = all_api_tokens(next);
        tokens.replace(http::token_verifier(all));
        log::info("api tokens reloaded", {{"file", config.api_token_file}, {"api_tokens", all.size()}});
      } catch (const std::exception& e) {
        log::error("api tokens not reloaded; the tokens in force stay", {{"error", e.what()}});
      }
    }
    if (tls != nullptr) {
      try {
        tls->reload();
        log::info("tls certificate reloaded", {{"cert", tls->cert_file()}, {"key", tls->key_file()}});
      } catch (const std::exception& e) {
        log::error("tls certificate not reloaded; the certificate in force stays", {{"error", e.what()}});
      }
    }
    reload.async_wait(on_reload);
  };
  reload.async_wait(on_reload);

  std::vector<std::thread> pool;
  for (unsigned i = 1; i < threads; ++i)
    pool.emplace_back([&] {
      log::name_thread("aipbx-http");
      ioc.run();
    });
  ioc.run();
  for (auto& t : pool) t.join();

  // Workers release their leases through the store, so they stop first.
  if (config.workers > 0) workers.stop([&] { ai_work.reset(); });
  else ai_work.reset();
  ai_thread.join();
  store->stop();
  blocking.join();
  const auto s = store->stats();
  log::info("stopped", {{"batches", s.batches}, {"packets", s.packets}, {"largest_batch", s.largest_batch}});
  store.reset();
  log::shutdown();
  return 0;
}

}  // namespace aipbx::app
