// The effective configuration of `aipbx serve`, and the command line that fills it.
//
// Every option is a flag, an `AIPBX_*` environment variable and a key of the optional TOML file (see
// app/command_line.hpp for how the three combine). Durations take a unit: `250ms`, `30s`, `5m`. Parsing and
// validation of one option are pure; an invalid value stops start-up with a message that names the option.
// `check_config` then checks what spans options or files (tokens, TLS, the listening address).
#pragma once

#include "domain/call_sequencer.hpp"
#include "domain/pause_segmenter.hpp"
#include "log/log.hpp"
#include "media/media_format.hpp"

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <utility>
#include <vector>

// CLI11 is declared only: its header is large and all inline, and most files that include this one (main,
// serve, the engine factory) never touch the command line. Files that do include <CLI/CLI.hpp> themselves.
namespace CLI {
class App;
}  // namespace CLI

namespace aipbx::app {

struct serve_config {
  std::string host = "127.0.0.1";
  std::uint16_t port = 8000;
  std::string db = "./aipbx.db";
  unsigned threads = 0;  // 0: one per core
  unsigned blocking_threads = 4;
  std::size_t body_limit = 1024 * 1024;
  std::size_t body_memory = 256 * 1024 * 1024;
  std::size_t header_limit = 16 * 1024;
  std::chrono::milliseconds request_timeout{30'000};
  std::chrono::milliseconds keepalive_timeout{75'000};
  std::chrono::milliseconds shutdown_timeout{15'000};
  std::size_t max_connections = 10'000;
  std::size_t writer_queue = 50'000;
  std::size_t max_batch = 4096;
  std::chrono::milliseconds commit_delay{5};  // streamed packets may wait this long to be committed together
  std::string sqlite_sync = "pipelined";
  int wal_checkpoint_pages = 16000;
  int wal_limit_pages = 64000;
  std::size_t pg_pool_size = 4;  // PostgreSQL store: read connections
  std::size_t pg_writers = 1;    // PostgreSQL store: writer threads (one connection each)
  log::level log_level = log::level::info;

  // AI pipeline
  std::string engine = "mock";
  unsigned workers = 4;
  std::chrono::milliseconds lease_timeout{30'000};
  std::chrono::milliseconds job_poll{1'000};
  std::int64_t segment_packets = 1;
  std::chrono::milliseconds segment_idle{2'000};
  // How calls with audio are cut into segments: "fixed" (every segment_packets) or "vad" (at pauses, by
  // engines/pause_cutter.hpp, within segment_min..segment_max; a pause is segment_silence long).
  std::string segmenter = "fixed";
  std::chrono::milliseconds segment_min{2'000};
  std::chrono::milliseconds segment_max{10'000};
  std::chrono::milliseconds segment_silence{300};
  int vad_aggressiveness = 2;
  reorder_window window{50, 1.0};
  std::chrono::milliseconds call_idle_timeout{60'000};  // 0: calls end only by request
  std::chrono::milliseconds retry_base_delay{1'000};
  std::chrono::milliseconds retry_max_delay{600'000};
  int retry_max_attempts = 5;
  double retry_jitter = 0;
  std::chrono::milliseconds mock_min_delay{1'000};
  std::chrono::milliseconds mock_max_delay{3'000};
  double mock_failure_rate = 0.25;
  std::optional<std::uint64_t> mock_seed;
  // Engines that hear audio (http, pocketsphinx). Until calls declare their own media format, every
  // call's packets are taken to be in this one; `none` (the seed's opaque text) suits only the mock.
  media::media_format media = media::media_format::none();
  std::string http_engine_url;                       // http://host[:port][/prefix]
  std::string http_engine_model = "whisper-1";
  std::string http_engine_key;                       // bearer key; empty: none sent
  std::chrono::milliseconds http_engine_timeout{60'000};
  std::string pocketsphinx_hmm;                      // empty: the engine's default (pocketsphinx-en-us)
  std::string pocketsphinx_dict;
  std::string pocketsphinx_lm;
  std::string pocketsphinx_grammar;                  // JSGF file, replaces the language model
  std::string pocketsphinx_keywords;                 // keyword list file, replaces the language model
  // pocketsphinx's search settings given (--pocketsphinx-ds, -topn, ...), as (its flag, value); the
  // others stay at pocketsphinx's defaults.
  std::vector<std::pair<std::string, std::string>> pocketsphinx_settings;
  std::string node_name;  // empty: hostname-pid

  // Access: bearer tokens for every route but health and metrics (none: no authentication), from
  // --api-token and the lines of --api-token-file (read by check_config; again on SIGHUP).
  std::vector<std::string> api_tokens;
  std::string api_token_file;
  std::vector<std::string> api_file_tokens;
  bool insecure = false;  // allow a non-loopback address without tokens
  std::string tls_cert;   // PEM certificate chain; with tls_key, the listener speaks HTTPS only
  std::string tls_key;

  // Streaming ingest (WebSocket on the HTTP listener; AudioSocket on a listener of its own).
  std::size_t stream_window = 64;            // packets of one stream waiting for the store
  double stream_max_fps = 200;               // audio frames per second per track
  std::chrono::milliseconds stream_idle_timeout{10'000};
  std::size_t stream_message_limit = 64 * 1024;
  std::size_t max_streams = 2'000;
  std::optional<std::uint16_t> audiosocket_port;  // empty: no AudioSocket listener
  std::string audiosocket_host = "127.0.0.1";
  std::vector<std::string> audiosocket_allow;    // networks (CIDR) allowed to connect; empty: any
  bool audiosocket_registered = false;           // only calls declared beforehand through the API

  // The event stream (GET /v1/events) and its log.
  std::size_t max_subscribers = 100;                 // subscribers open at once on this node
  std::size_t event_buffer = 4096;                   // events queued per subscriber before it is cut
  std::chrono::milliseconds event_heartbeat{15'000};  // a keep-alive to an idle subscriber
  std::chrono::milliseconds event_retention{3'600'000};  // how long the log keeps an event (0: for ever)
};

// The pause rules of --segment-min, --segment-max and --segment-silence.
pause_rules segment_rules(const serve_config& config);

// Checks what no single option can: the pause rules (with --segmenter vad), the token file is read into
// `config.api_file_tokens`, every token well-formed, TLS certificate and key given together and readable,
// and a listening address that is not loopback only with tokens (or `insecure`). Throws
// std::invalid_argument with the reason.
void check_config(serve_config& config);

// The tokens of a token file: one per line, blank lines and '#' comments skipped, each checked. Throws
// std::invalid_argument naming the file (and line) when it cannot be read, a token is malformed, or it
// holds none.
std::vector<std::string> read_token_file(const std::string& path);

// Every configured token: --api-token's, then the token file's.
std::vector<std::string> all_api_tokens(const serve_config& config);

// Parses "250ms", "2s", "1.5s", "5m", "1h" (a bare number is seconds).
std::optional<std::chrono::milliseconds> parse_duration(std::string_view text);
// Formats a duration the way parse_duration reads it, in the largest unit that is exact: "30s", "250ms".
std::string format_duration(std::chrono::milliseconds d);
// Parses a reorder window: "50" (packets), "1s" (a duration), or both, "50,1s"; "0" disables it.
std::optional<reorder_window> parse_reorder_window(std::string_view text);

// Adds the `serve` options to `cmd`, bound to `config`.
void add_serve_options(CLI::App& cmd, serve_config& config);


}  // namespace aipbx::app
