#include "app/config.hpp"

#include "http/auth.hpp"
#include "http/tls.hpp"
#include "streams/audiosocket.hpp"

#include <CLI/CLI.hpp>
#include <boost/asio/ip/address.hpp>

#include <cctype>
#include <charconv>
#include <cmath>
#include <fstream>
#include <optional>
#include <stdexcept>
#include <tuple>
#include <utility>

namespace aipbx::app {

std::optional<std::chrono::milliseconds> parse_duration(std::string_view text) {
  if (text.empty()) return std::nullopt;
  std::size_t split = 0;
  while (split < text.size() && (std::isdigit(static_cast<unsigned char>(text[split])) || text[split] == '.')) ++split;
  const std::string number(text.substr(0, split));
  const std::string_view unit = text.substr(split);
  if (number.empty()) return std::nullopt;
  char* end = nullptr;
  const double value = std::strtod(number.c_str(), &end);
  if (end != number.c_str() + number.size() || !std::isfinite(value) || value < 0) return std::nullopt;
  double ms;
  if (unit == "ms") ms = value;
  else if (unit == "s" || unit.empty()) ms = value * 1000;
  else if (unit == "m") ms = value * 60'000;
  else if (unit == "h") ms = value * 3'600'000;
  else return std::nullopt;
  if (ms > 1e12) return std::nullopt;
  return std::chrono::milliseconds(static_cast<std::int64_t>(std::llround(ms)));
}

std::string format_duration(std::chrono::milliseconds d) {
  const auto ms = d.count();
  if (ms != 0 && ms % 3'600'000 == 0) return std::to_string(ms / 3'600'000) + "h";
  if (ms != 0 && ms % 60'000 == 0) return std::to_string(ms / 60'000) + "m";
  if (ms % 1000 == 0) return std::to_string(ms / 1000) + "s";
  return std::to_string(ms) + "ms";
}

std::optional<reorder_window> parse_reorder_window(std::string_view text) {
  reorder_window w;
  bool any = false;
  while (!text.empty()) {
    const auto comma = text.find(',');
    const std::string_view part = text.substr(0, comma);
    text = comma == std::string_view::npos ? std::string_view{} : text.substr(comma + 1);
    if (part.empty() || (comma != std::string_view::npos && text.empty())) return std::nullopt;
    std::int64_t packets = 0;
    auto [end, ec] = std::from_chars(part.data(), part.data() + part.size(), packets);
    if (ec == std::errc{} && end == part.data() + part.size()) {
      if (packets < 0) return std::nullopt;
      w.packets = packets;
    } else if (auto d = parse_duration(part); d && part.find_first_not_of("0123456789.") != std::string_view::npos) {
      w.seconds = static_cast<double>(d->count()) / 1000.0;
    } else {
      return std::nullopt;
    }
    any = true;
  }
  if (!any) return std::nullopt;
  return w;
}

namespace {

CLI::Option* add_duration(CLI::App& cmd, const std::string& name, std::chrono::milliseconds& target,
                          const std::string& help, const std::string& env) {
  return cmd
      .add_option_function<std::string>(
          name,
          [&target, name](const std::string& text) {
            auto d = parse_duration(text);
            if (!d) throw CLI::ValidationError(name, "expected a duration such as 250ms, 30s or 5m, got '" + text + "'");
            target = *d;
          },
          help)
      ->envname(env)
      ->type_name("DURATION")
      ->default_str(format_duration(target));
}

std::string format_reorder_window(const reorder_window& w) {
  if (!w.enabled()) return "0";
  return std::to_string(w.packets) + "," +
         format_duration(std::chrono::milliseconds(std::llround(w.seconds * 1000)));
}

// The pocketsphinx search's trades of accuracy for speed, one flag each over pocketsphinx's default; none is
// set by default (docs/performance.md gives each one's CPU time and word error rate).
void add_pocketsphinx_search_options(CLI::App& cmd, serve_config& c) {
  auto add = [&](const std::string& name, const std::string& sphinx_flag, const std::string& type,
                 const std::string& help, const CLI::Validator& check) {
    std::string env = "AIPBX_POCKETSPHINX_" + name;
    for (char& ch : env)
      ch = ch == '-' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
    cmd.add_option_function<std::string>(
           "--pocketsphinx-" + name,
           [&c, sphinx_flag](const std::string& value) {
             std::erase_if(c.pocketsphinx_settings, [&](const auto& s) { return s.first == sphinx_flag; });
             c.pocketsphinx_settings.emplace_back(sphinx_flag, value);
           },
           "pocketsphinx engine: " + help)
        ->envname(env)
        ->type_name(type)
        ->check(check);
  };
  const auto yes_no = CLI::IsMember({"yes", "no"});
  add("ds", "-ds", "N", "compute the acoustic model on every Nth frame only (default 1)", CLI::Range(1, 10));
  add("topn", "-topn", "N", "Gaussians kept per codebook and frame (default 4)", CLI::Range(1, 16));
  add("beam", "-beam", "RATIO", "HMM beam, a probability ratio: larger prunes more (default 1e-48)",
      CLI::Range(1e-300, 1.0));
  add("wbeam", "-wbeam", "RATIO", "word-exit beam: larger prunes more (default 7e-29)",
      CLI::Range(1e-300, 1.0));
  add("maxhmmpf", "-maxhmmpf", "N", "most HMMs searched per frame (default 30000)",
      CLI::Range(100, 1'000'000));
  add("pl-window", "-pl_window", "FRAMES", "frames of phone lookahead that prune words (0: none; default 5)",
      CLI::Range(0, 30));
  add("fwdflat", "-fwdflat", "yes|no", "second, flat-lexicon search pass: yes or no (default yes)", yes_no);
  add("bestpath", "-bestpath", "yes|no", "best path through the word lattice: yes or no (default yes)",
      yes_no);
}


// "MIN:MAX" milliseconds, MIN <= MAX.
std::optional<std::pair<std::chrono::milliseconds, std::chrono::milliseconds>> parse_delay_range(
    const std::string& text) {
  const auto colon = text.find(':');
  std::int64_t lo = 0, hi = 0;
  const bool ok = colon != std::string::npos &&
                  std::from_chars(text.data(), text.data() + colon, lo).ec == std::errc{} &&
                  std::from_chars(text.data() + colon + 1, text.data() + text.size(), hi).ec == std::errc{} &&
                  lo >= 0 && hi >= lo;
  if (!ok) return std::nullopt;
  return std::pair{std::chrono::milliseconds(lo), std::chrono::milliseconds(hi)};
}

void add_server_options(CLI::App& cmd, serve_config& c) {
  cmd.add_option("--host", c.host, "Address to listen on")->envname("AIPBX_HOST")->capture_default_str();
  cmd.add_option("--port", c.port, "TCP port to listen on (0 picks a free port)")
      ->envname("AIPBX_PORT")
      ->capture_default_str();
  cmd.add_option("--db", c.db,
                 "Database: sqlite:///abs/path.db, sqlite://rel/path.db, a plain file path (embedded store), or "
                 "postgresql://user:pass@host:port/dbname (PostgreSQL, shared by several nodes)")
      ->envname("AIPBX_DB")
      ->capture_default_str();
  cmd.add_option("--threads", c.threads, "HTTP I/O threads (0: one per core)")
      ->envname("AIPBX_THREADS")
      ->capture_default_str();
  cmd.add_option("--blocking-threads", c.blocking_threads, "Threads for database reads")
      ->envname("AIPBX_BLOCKING_THREADS")
      ->check(CLI::Range(1u, 256u))
      ->capture_default_str();
}

void add_request_limits(CLI::App& cmd, serve_config& c) {
  cmd.add_option("--body-limit", c.body_limit, "Largest request body in bytes (larger: 413)")
      ->envname("AIPBX_BODY_LIMIT")
      ->check(CLI::Range(std::size_t{64}, std::size_t{1} << 30))
      ->capture_default_str();
  cmd.add_option("--body-memory", c.body_memory,
                 "Bytes of request bodies held at once by all connections together (past it: 503); at least "
                 "--body-limit")
      ->envname("AIPBX_BODY_MEMORY")
      ->check(CLI::Range(std::size_t{64}, std::size_t{1} << 40))
      ->capture_default_str();
  cmd.add_option("--header-limit", c.header_limit, "Largest request header block in bytes (larger: 431)")
      ->envname("AIPBX_HEADER_LIMIT")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{1} << 20))
      ->capture_default_str();
  add_duration(cmd, "--request-timeout", c.request_timeout, "Time allowed to receive one request (default 30s)",
               "AIPBX_REQUEST_TIMEOUT");
  add_duration(cmd, "--keepalive-timeout", c.keepalive_timeout,
               "How long a kept-alive connection may wait for its next request (default 75s)",
               "AIPBX_KEEPALIVE_TIMEOUT");
  add_duration(cmd, "--shutdown-timeout", c.shutdown_timeout,
               "How long SIGTERM waits for requests in flight (default 15s)", "AIPBX_SHUTDOWN_TIMEOUT");
  cmd.add_option("--max-connections", c.max_connections, "Open connections at most")
      ->envname("AIPBX_MAX_CONNECTIONS")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}))
      ->capture_default_str();
}

void add_store_options(CLI::App& cmd, serve_config& c) {
  cmd.add_option("--writer-queue", c.writer_queue,
                 "Packets waiting for the database writer at most; beyond it ingest answers 503")
      ->envname("AIPBX_WRITER_QUEUE")
      ->check(CLI::Range(std::size_t{1}, std::size_t{10'000'000}))
      ->capture_default_str();
  cmd.add_option("--max-batch", c.max_batch, "Packets committed in one transaction at most")
      ->envname("AIPBX_MAX_BATCH")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}))
      ->capture_default_str();
  add_duration(cmd, "--commit-delay", c.commit_delay,
               "Embedded store: how long streamed packets may wait to be committed together (HTTP requests and "
               "the job queue's writes never wait; 0: commit each batch as soon as the writer is free; default 5ms)",
               "AIPBX_COMMIT_DELAY");
  cmd.add_option("--sqlite-sync", c.sqlite_sync,
                 "How a commit reaches the disk before it is answered (embedded store): pipelined (a syncer "
                 "thread fdatasyncs the WAL while the next batch is applied) or commit (synchronous=FULL, the "
                 "commit syncs); both answer only after the data is on disk")
      ->envname("AIPBX_SQLITE_SYNC")
      ->check(CLI::IsMember({"pipelined", "commit"}))
      ->capture_default_str();
  cmd.add_option("--pg-pool-size", c.pg_pool_size,
                 "PostgreSQL store: connections for reads (the API's reads and /readyz); lost ones are opened again")
      ->envname("AIPBX_PG_POOL_SIZE")
      ->check(CLI::Range(std::size_t{1}, std::size_t{256}))
      ->capture_default_str();
  cmd.add_option("--pg-writers", c.pg_writers,
                 "PostgreSQL store: writer threads, each committing batches of writes on a connection of its own, "
                 "each for its own share of the calls")
      ->envname("AIPBX_PG_WRITERS")
      ->check(CLI::Range(std::size_t{1}, std::size_t{64}))
      ->capture_default_str();
  cmd.add_option("--wal-checkpoint-pages", c.wal_checkpoint_pages,
                 "Embedded store: a background checkpoint copies the WAL into the database each time the WAL "
                 "has grown by this many pages (4 KiB)")
      ->envname("AIPBX_WAL_CHECKPOINT_PAGES")
      ->check(CLI::Range(16, 10'000'000))
      ->capture_default_str();
  cmd.add_option("--wal-limit-pages", c.wal_limit_pages,
                 "Embedded store: past this many pages the writer completes a checkpoint itself (after one more "
                 "background pass), so that the WAL starts over even under writes that never pause; at twice "
                 "this many it waits for readers to do so")
      ->envname("AIPBX_WAL_LIMIT_PAGES")
      ->check(CLI::Range(16, 100'000'000))
      ->capture_default_str();
}

void add_worker_options(CLI::App& cmd, serve_config& c) {
  cmd.add_option("--engine", c.engine,
                 "Speech-to-text engine: mock (the seed's), http (an OpenAI-compatible transcription service) or "
                 "pocketsphinx (offline recognizer)")
      ->envname("AIPBX_ENGINE")
      ->check(CLI::IsMember({"mock", "http", "pocketsphinx"}))
      ->capture_default_str();
  cmd.add_option("--workers", c.workers,
                 "AI attempts running at once (0: this node runs no AI; jobs wait in the queue for a node that does)")
      ->envname("AIPBX_WORKERS")
      ->check(CLI::Range(0u, 4096u))
      ->capture_default_str();
  add_duration(cmd, "--lease-timeout", c.lease_timeout,
               "Lease of a running job; renewed every third of it while the attempt runs (default 30s)",
               "AIPBX_LEASE_TIMEOUT");
  add_duration(cmd, "--job-poll", c.job_poll,
               "Longest wait between two looks at the queue when nothing signals new work (default 1s)",
               "AIPBX_JOB_POLL");
}

void add_segment_options(CLI::App& cmd, serve_config& c) {
  cmd.add_option("--segment-packets", c.segment_packets, "Packets per AI job (a segment)")
      ->envname("AIPBX_SEGMENT_PACKETS")
      ->check(CLI::Range(std::int64_t{1}, std::int64_t{1'000'000}))
      ->capture_default_str();
  add_duration(cmd, "--segment-idle", c.segment_idle,
               "Idle time after which a call's remaining packets are cut into a last segment (default 2s)",
               "AIPBX_SEGMENT_IDLE");
  cmd.add_option("--segmenter", c.segmenter,
                 "How calls with audio are cut into AI segments: fixed (every --segment-packets) or vad (at pauses "
                 "found by a voice activity detector, within --segment-min and --segment-max); calls without audio "
                 "are always cut by packets")
      ->envname("AIPBX_SEGMENTER")
      ->check(CLI::IsMember({"fixed", "vad"}))
      ->capture_default_str();
  add_duration(cmd, "--segment-min", c.segment_min,
               "--segmenter vad: no cut inside a segment's first this long (default 2s)", "AIPBX_SEGMENT_MIN");
  add_duration(cmd, "--segment-max", c.segment_max,
               "--segmenter vad: a segment is cut at this length at the latest, in its longest pause (default 10s)",
               "AIPBX_SEGMENT_MAX");
  add_duration(cmd, "--segment-silence", c.segment_silence,
               "--segmenter vad: a pause this long ends a segment (default 300ms)", "AIPBX_SEGMENT_SILENCE");
  cmd.add_option("--vad-aggressiveness", c.vad_aggressiveness,
                 "--segmenter vad: the voice detector's aggressiveness, 0 (calls the most audio voice) to 3 (the "
                 "least)")
      ->envname("AIPBX_VAD_AGGRESSIVENESS")
      ->check(CLI::Range(0, 3))
      ->capture_default_str();
  cmd.add_option_function<std::string>(
         "--reorder-window",
         [&c](const std::string& text) {
           auto w = parse_reorder_window(text);
           if (!w)
             throw CLI::ValidationError("--reorder-window",
                                        "expected packets (50), a duration (1s) or both (50,1s)");
           c.window = *w;
         },
         "How long a gap may still be filled before it is declared lost and skipped: packets past it, a "
         "duration, or both (whichever comes first); 0 waits for the call to end (default 50,1s)")
      ->envname("AIPBX_REORDER_WINDOW")
      ->type_name("WINDOW")
      ->default_str(format_reorder_window(c.window));
  add_duration(cmd, "--idle-timeout", c.call_idle_timeout,
               "A call with no packet for this long ends (0: only POST /v1/calls/{id}/end ends calls; default 60s)",
               "AIPBX_IDLE_TIMEOUT");
}

void add_retry_options(CLI::App& cmd, serve_config& c) {
  add_duration(cmd, "--retry-base-delay", c.retry_base_delay,
               "Wait after the first failed attempt; doubles after each (default 1s)", "AIPBX_RETRY_BASE_DELAY");
  add_duration(cmd, "--retry-max-delay", c.retry_max_delay, "Longest wait between attempts (default 10m)",
               "AIPBX_RETRY_MAX_DELAY");
  cmd.add_option("--retry-max-attempts", c.retry_max_attempts, "Attempts of a job before it is dead")
      ->envname("AIPBX_RETRY_MAX_ATTEMPTS")
      ->check(CLI::Range(1, 1000))
      ->capture_default_str();
  cmd.add_option("--retry-jitter", c.retry_jitter,
                 "Fraction 0..1 by which each wait is shortened at random, to spread retries")
      ->envname("AIPBX_RETRY_JITTER")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
}

void add_mock_options(CLI::App& cmd, serve_config& c) {
  cmd.add_option_function<std::string>(
         "--mock-delay-ms",
         [&c](const std::string& text) {
           auto range = parse_delay_range(text);
           if (!range)
             throw CLI::ValidationError("--mock-delay-ms",
                                        "expected MIN:MAX in milliseconds, e.g. 1000:3000");
           std::tie(c.mock_min_delay, c.mock_max_delay) = *range;
         },
         "Mock engine: processing delay drawn from MIN:MAX milliseconds (default 1000:3000)")
      ->envname("AIPBX_MOCK_DELAY_MS")
      ->type_name("MIN:MAX")
      ->default_str(std::to_string(c.mock_min_delay.count()) + ":" +
                    std::to_string(c.mock_max_delay.count()));
  cmd.add_option("--mock-failure-rate", c.mock_failure_rate, "Mock engine: probability 0..1 that an attempt fails")
      ->envname("AIPBX_MOCK_FAILURE_RATE")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  cmd.add_option_function<std::uint64_t>(
         "--mock-seed", [&c](const std::uint64_t& seed) { c.mock_seed = seed; },
         "Mock engine: seed of its random choices (default: a fresh seed per run)")
      ->envname("AIPBX_MOCK_SEED");
}

void add_media_option(CLI::App& cmd, serve_config& c) {
  cmd.add_option_function<std::string>(
         "--media",
         [&c](const std::string& text) {
           auto f = media::parse_media_format(text);
           if (!f) throw CLI::ValidationError("--media", "expected none, pcmu/8000, pcma/8000, l16/8000 or l16/16000");
           c.media = *f;
         },
         "How every call's packet data carries audio, for the http and pocketsphinx engines: pcmu/8000, "
         "pcma/8000 (G.711), l16/8000, l16/16000 (16-bit little-endian PCM), base64; none: opaque text "
         "(default none)")
      ->envname("AIPBX_MEDIA")
      ->type_name("FORMAT")
      ->default_str(media::to_string(c.media));
}

void add_http_engine_options(CLI::App& cmd, serve_config& c) {
  cmd.add_option("--http-engine-url", c.http_engine_url,
                 "http engine: base URL of the service; aipbx posts to {url}/v1/audio/transcriptions")
      ->envname("AIPBX_HTTP_ENGINE_URL");
  cmd.add_option("--http-engine-model", c.http_engine_model, "http engine: the `model` field of each request")
      ->envname("AIPBX_HTTP_ENGINE_MODEL")
      ->capture_default_str();
  cmd.add_option("--http-engine-key", c.http_engine_key,
                 "http engine: bearer key sent as Authorization (prefer the variable: flags show in ps)")
      ->envname("AIPBX_HTTP_ENGINE_KEY");
  add_duration(cmd, "--http-engine-timeout", c.http_engine_timeout,
               "http engine: time one attempt may take, upload and answer (default 60s)",
               "AIPBX_HTTP_ENGINE_TIMEOUT");
}

void add_pocketsphinx_options(CLI::App& cmd, serve_config& c) {
  cmd.add_option("--pocketsphinx-hmm", c.pocketsphinx_hmm,
                 "pocketsphinx engine: acoustic model directory (default "
                 "/usr/share/pocketsphinx/model/en-us/en-us)")
      ->envname("AIPBX_POCKETSPHINX_HMM");
  cmd.add_option("--pocketsphinx-dict", c.pocketsphinx_dict,
                 "pocketsphinx engine: pronunciation dictionary (default "
                 "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict)")
      ->envname("AIPBX_POCKETSPHINX_DICT");
  cmd.add_option("--pocketsphinx-lm", c.pocketsphinx_lm,
                 "pocketsphinx engine: language model (default /usr/share/pocketsphinx/model/en-us/en-us.lm.bin)")
      ->envname("AIPBX_POCKETSPHINX_LM");
  auto* grammar = cmd.add_option("--pocketsphinx-grammar", c.pocketsphinx_grammar,
                                 "pocketsphinx engine: JSGF grammar file; only its sentences are recognized")
                      ->envname("AIPBX_POCKETSPHINX_GRAMMAR");
  cmd.add_option("--pocketsphinx-keywords", c.pocketsphinx_keywords,
                 "pocketsphinx engine: keyword list file (one phrase per line with its /threshold/); only its "
                 "phrases are spotted")
      ->envname("AIPBX_POCKETSPHINX_KEYWORDS")
      ->excludes(grammar);
  add_pocketsphinx_search_options(cmd, c);
}

void add_node_options(CLI::App& cmd, serve_config& c) {
  cmd.add_option("--node-name", c.node_name, "This node's name in job leases (default: hostname-pid)")
      ->envname("AIPBX_NODE_NAME");
  cmd.add_option_function<std::string>(
         "--log-level",
         [&c](const std::string& text) {
           if (!log::parse_level(text, c.log_level))
             throw CLI::ValidationError("--log-level", "expected debug, info, warning, error or off");
         },
         "Log level: debug, info, warning, error, off (default info)")
      ->envname("AIPBX_LOG_LEVEL")
      ->default_str("info");
}

void add_access_options(CLI::App& cmd, serve_config& c) {
  cmd.add_option("--api-token", c.api_tokens,
                 "Bearer token accepted on every route but /healthz, /readyz and /metrics; repeat it (or separate "
                 "tokens with commas) to accept several while rotating (prefer the variable or the token file: "
                 "flags show in ps)")
      ->envname("AIPBX_API_TOKEN")
      ->delimiter(',')
      ->type_name("TOKEN");
  cmd.add_option("--api-token-file", c.api_token_file,
                 "File of bearer tokens, one per line ('#' starts a comment); added to --api-token; SIGHUP "
                 "reads it again")
      ->envname("AIPBX_API_TOKEN_FILE")
      ->type_name("PATH");
  cmd.add_flag("--insecure", c.insecure,
               "Allow listening on a non-loopback address without API tokens")
      ->envname("AIPBX_INSECURE");
  cmd.add_option("--tls-cert", c.tls_cert, "PEM certificate chain; with --tls-key the listener speaks HTTPS only; SIGHUP reads both again")
      ->envname("AIPBX_TLS_CERT")
      ->type_name("PATH");
  cmd.add_option("--tls-key", c.tls_key, "PEM private key of --tls-cert")
      ->envname("AIPBX_TLS_KEY")
      ->type_name("PATH");
}

void add_stream_options(CLI::App& cmd, serve_config& c) {
  cmd.add_option("--stream-window", c.stream_window,
                 "Streams: packets of one stream waiting for the store; past it the stream's socket is not read "
                 "(TCP pushes back on the sender)")
      ->envname("AIPBX_STREAM_WINDOW")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100'000}))
      ->capture_default_str();
  cmd.add_option("--stream-max-fps", c.stream_max_fps,
                 "Streams: audio frames per second per track at most, sustained (real time is 50); past it the "
                 "stream is read more slowly")
      ->envname("AIPBX_STREAM_MAX_FPS")
      ->check(CLI::Range(1.0, 1e6))
      ->capture_default_str();
  add_duration(cmd, "--stream-idle-timeout", c.stream_idle_timeout,
               "Streams: close a stream that sends nothing for this long, counting only time waiting for the "
               "sender (0: never; default 10s)",
               "AIPBX_STREAM_IDLE_TIMEOUT");
  cmd.add_option("--stream-message-limit", c.stream_message_limit,
                 "Streams: largest WebSocket message and AudioSocket frame in bytes (larger: the stream is closed)")
      ->envname("AIPBX_STREAM_MESSAGE_LIMIT")
      ->check(CLI::Range(std::size_t{1024}, std::size_t{16} << 20))
      ->capture_default_str();
  cmd.add_option("--max-streams", c.max_streams, "Streams open at once, over every protocol")
      ->envname("AIPBX_MAX_STREAMS")
      ->check(CLI::Range(std::size_t{1}, std::size_t{1'000'000}))
      ->capture_default_str();
  cmd.add_option_function<std::uint16_t>(
         "--audiosocket-port", [&c](const std::uint16_t& port) { c.audiosocket_port = port; },
         "Asterisk AudioSocket: TCP port of its listener (0 picks a free port; default: no listener)")
      ->envname("AIPBX_AUDIOSOCKET_PORT");
  cmd.add_option("--audiosocket-host", c.audiosocket_host, "Asterisk AudioSocket: address to listen on")
      ->envname("AIPBX_AUDIOSOCKET_HOST")
      ->capture_default_str();
  cmd.add_option("--audiosocket-allow", c.audiosocket_allow,
                 "Asterisk AudioSocket: networks allowed to connect (CIDR, e.g. 10.0.0.0/8; repeat or separate with "
                 "commas); default: any")
      ->envname("AIPBX_AUDIOSOCKET_ALLOW")
      ->delimiter(',')
      ->type_name("CIDR");
  cmd.add_flag("--audiosocket-registered", c.audiosocket_registered,
               "Asterisk AudioSocket: accept a stream only for a call declared beforehand through the API "
               "(POST /v1/calls/{uuid})")
      ->envname("AIPBX_AUDIOSOCKET_REGISTERED");
}

void add_event_options(CLI::App& cmd, serve_config& c) {
  cmd.add_option("--max-subscribers", c.max_subscribers,
                 "Event stream: subscribers (GET /v1/events) open at once on this node; past it 503")
      ->envname("AIPBX_MAX_SUBSCRIBERS")
      ->check(CLI::Range(std::size_t{1}, std::size_t{100'000}))
      ->capture_default_str();
  cmd.add_option("--event-buffer", c.event_buffer,
                 "Event stream: events queued per subscriber; a live subscriber that falls this far behind is "
                 "told to resume from its last id and disconnected")
      ->envname("AIPBX_EVENT_BUFFER")
      ->check(CLI::Range(std::size_t{16}, std::size_t{1'000'000}))
      ->capture_default_str();
  add_duration(cmd, "--event-heartbeat", c.event_heartbeat,
               "Event stream: a keep-alive to a subscriber after this long without an event (default 15s)",
               "AIPBX_EVENT_HEARTBEAT");
  add_duration(cmd, "--event-retention", c.event_retention,
               "Event log: how long an event is kept for subscribers to resume from (0: for ever; default 1h)",
               "AIPBX_EVENT_RETENTION");
}

}  // namespace

// The steps' order is the order of --help and of `aipbx config`.
void add_serve_options(CLI::App& cmd, serve_config& c) {
  add_server_options(cmd, c);
  add_request_limits(cmd, c);
  add_store_options(cmd, c);
  add_worker_options(cmd, c);
  add_segment_options(cmd, c);
  add_retry_options(cmd, c);
  add_mock_options(cmd, c);
  add_media_option(cmd, c);
  add_http_engine_options(cmd, c);
  add_pocketsphinx_options(cmd, c);
  add_node_options(cmd, c);
  add_access_options(cmd, c);
  add_stream_options(cmd, c);
  add_event_options(cmd, c);
}

namespace {

// Loopback only when the host is a loopback address, or the name localhost; any other name may resolve to
// an outside address.
bool is_loopback_host(const std::string& host) {
  if (host == "localhost") return true;
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(host, ec);
  return !ec && address.is_loopback();
}

}  // namespace

std::vector<std::string> read_token_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::invalid_argument("--api-token-file: cannot read '" + path + "'");
  std::vector<std::string> tokens;
  std::string line;
  int number = 0;
  while (std::getline(in, line)) {
    ++number;
    const auto first = line.find_first_not_of(" \t\r");
    if (first == std::string::npos || line[first] == '#') continue;
    const auto last = line.find_last_not_of(" \t\r");
    std::string token = line.substr(first, last - first + 1);
    if (auto problem = http::token_problem(token))
      throw std::invalid_argument("--api-token-file: " + path + " line " + std::to_string(number) + ": " + *problem);
    tokens.push_back(std::move(token));
  }
  if (tokens.empty()) throw std::invalid_argument("--api-token-file: '" + path + "' holds no token");
  return tokens;
}

std::vector<std::string> all_api_tokens(const serve_config& c) {
  std::vector<std::string> all = c.api_tokens;
  all.insert(all.end(), c.api_file_tokens.begin(), c.api_file_tokens.end());
  return all;
}

pause_rules segment_rules(const serve_config& c) {
  pause_rules r;
  r.min_ms = c.segment_min.count();
  r.max_ms = c.segment_max.count();
  r.silence_ms = c.segment_silence.count();
  return r;
}

void check_config(serve_config& c) {
  if (c.segmenter == "vad" && !segment_rules(c).valid())
    throw std::invalid_argument("--segment-min, --segment-max, --segment-silence: each a whole number of 10 ms, "
                                "the silence above 0 and the maximum above the minimum (got " +
                                format_duration(c.segment_min) + ", " + format_duration(c.segment_max) + ", " +
                                format_duration(c.segment_silence) + ")");
  for (const auto& token : c.api_tokens)
    if (auto problem = http::token_problem(token)) throw std::invalid_argument("--api-token: " + *problem);
  if (!c.api_token_file.empty()) c.api_file_tokens = read_token_file(c.api_token_file);
  if (c.event_heartbeat.count() <= 0) throw std::invalid_argument("--event-heartbeat must be more than 0");
  if (c.body_memory < c.body_limit)
    throw std::invalid_argument("--body-memory (" + std::to_string(c.body_memory) + ") is less than --body-limit (" +
                                std::to_string(c.body_limit) + "): a body of the largest size could never be read");
  if (c.tls_cert.empty() != c.tls_key.empty())
    throw std::invalid_argument("--tls-cert and --tls-key go together: give both, or neither");
  if (!c.tls_cert.empty()) {
    try {
      (void)http::make_tls_context(c.tls_cert, c.tls_key);
    } catch (const std::exception& e) {
      throw std::invalid_argument(std::string("--tls-cert/--tls-key: ") + e.what());
    }
  }
  for (const auto& n : c.audiosocket_allow)
    if (!streams::audiosocket::parse_network(n))
      throw std::invalid_argument("--audiosocket-allow: '" + n + "' is not an address or a network such as 10.0.0.0/8");
  // AudioSocket carries no credentials: off loopback, something must say who may connect.
  if (c.audiosocket_port && !c.insecure && !is_loopback_host(c.audiosocket_host) && c.audiosocket_allow.empty() &&
      !c.audiosocket_registered)
    throw std::invalid_argument("--audiosocket-host " + c.audiosocket_host +
                                " is not a loopback address: give --audiosocket-allow or --audiosocket-registered "
                                "(AudioSocket carries no credentials), or --insecure");
  if (c.api_tokens.empty() && c.api_file_tokens.empty() && !c.insecure && !is_loopback_host(c.host))
    throw std::invalid_argument("--host " + c.host +
                                " is not a loopback address and no API token is set: give --api-token or "
                                "--api-token-file, or --insecure to serve it without authentication");
}

}  // namespace aipbx::app
