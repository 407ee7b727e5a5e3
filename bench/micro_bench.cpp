// aipbx_micro_bench: the costs under one ingest request, measured apart from HTTP.
//
//   BM_tracker_in_order        sequence_tracker::observe on a call whose packets all arrive in order
//   BM_tracker_with_gaps       the same, with every 10th packet held back and delivered 5 packets late
//   BM_parse_packet_body       parse_packet_body on a typical body (160-byte payload, a 20 ms G.711 frame)
//   BM_sqlite_ingest/K         K producer threads, each ingesting one packet at a time into a real
//                              sqlite_call_store (WAL, synchronous=FULL) and waiting for its durable
//                              answer before sending the next. Throughput grows with K only through group
//                              commit; `batch` is the average number of packets per committed transaction.
//   BM_sqlite_stream_ingest/N/S  N live calls, as 20 ms streams deliver them: one packet of each call in
//                              turn, handed to the store without waiting (the way a stream session
//                              pipelines), 250 packets per call; `us/packet` is the writer's CPU time per
//                              packet (the writer thread's own clock), `batch` packets per transaction.
//                              Calls declared pcmu/8000, 20 ms G.711 frames of voice and pauses. S = 0:
//                              cut every 250 packets (--segmenter fixed); S = 1: cut at pauses by a
//                              pause_cutter running beside the writer (--segmenter vad), whose own CPU
//                              time per packet is `cutter_us/packet` (the cuts it queued are in the
//                              writer's figure).
//
// The SQLite benchmark writes to a fresh file under $AIPBX_BENCH_DIR (default: the system temp directory),
// so it measures that directory's fsync. See docs/performance.md for figures and how to run.
#include "engines/pause_cutter.hpp"
#include "http/json_codec.hpp"
#include "ingest/media_cache.hpp"
#include "log/log.hpp"
#include "media/audio_codec.hpp"
#include "storage/sqlite/sqlite_call_store.hpp"
#include "storage/sqlite/sqlite_db.hpp"

#include <benchmark/benchmark.h>

#include <atomic>
#include <cmath>
#include <condition_variable>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <future>
#include <sstream>
#include <mutex>
#include <string>
#include <thread>
#include <unistd.h>
#include <variant>
#include <vector>

namespace {

using namespace aipbx;

// 160 characters of base64-like text, as a 20 ms G.711 frame would be after encoding (the seed's `data`
// is opaque text, so the server does not decode it).
std::string frame_payload(std::uint64_t salt) {
  static constexpr char alphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string s(160, 'A');
  std::uint64_t x = salt * 0x9E3779B97F4A7C15ull + 1;
  for (auto& c : s) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    c = alphabet[x % 64];
  }
  return s;
}

void BM_tracker_in_order(benchmark::State& state) {
  sequence_tracker t;
  std::int64_t seq = 0;
  for (auto _ : state) benchmark::DoNotOptimize(t.observe(++seq));
  state.SetItemsProcessed(state.iterations());
}
BENCHMARK(BM_tracker_in_order);

// Blocks of 10 sequences; in each, the first is delivered after the next five: one gap opened and one late
// fill per block, so the missing set stays small (as on a real call that loses the odd packet).
void BM_tracker_with_gaps(benchmark::State& state) {
  std::vector<std::int64_t> order;
  for (std::int64_t base = 0; base < 1000; base += 10) {
    for (std::int64_t i = 2; i <= 6; ++i) order.push_back(base + i);
    order.push_back(base + 1);
    for (std::int64_t i = 7; i <= 10; ++i) order.push_back(base + i);
  }
  sequence_tracker t;
  std::int64_t offset = 0;
  std::size_t i = 0;
  for (auto _ : state) {
    benchmark::DoNotOptimize(t.observe(offset + order[i]));
    if (++i == order.size()) {
      i = 0;
      offset += 1000;
    }
  }
  state.SetItemsProcessed(state.iterations());
  state.counters["missing_ranges"] = static_cast<double>(t.missing_ranges());
}
BENCHMARK(BM_tracker_with_gaps);

// The ingest body parser: the one-pass path every ordinary body takes (Arg 0), against the checked path
// that builds a document and re-reads the timestamp (Arg 1), which bodies with anything to report take.
void BM_parse_packet_body(benchmark::State& state) {
  const std::string body =
      R"({"sequence": 48213, "data": ")" + frame_payload(7) + R"(", "timestamp": 1700000964.26})";
  const auto parse = state.range(0) == 0 ? http::parse_packet_body : http::parse_packet_body_checked;
  for (auto _ : state) {
    auto r = parse(body);
    if (!std::holds_alternative<http::packet_body>(r)) state.SkipWithError("body rejected");
    benchmark::DoNotOptimize(r);
  }
  state.SetLabel(state.range(0) == 0 ? "one pass" : "checked");
  state.SetItemsProcessed(state.iterations());
  state.SetBytesProcessed(state.iterations() * static_cast<std::int64_t>(body.size()));
}
BENCHMARK(BM_parse_packet_body)->Arg(0)->Arg(1);

// What ingest adds for a call that carries audio: the call's view from the media cache, and the check of
// one 20 ms G.711 packet's data (216 base64 characters) against its format, without decoding it.
void BM_media_check(benchmark::State& state) {
  aipbx::ingest::media_cache cache;
  for (int i = 0; i < 10'000; ++i)
    cache.put("call-" + std::to_string(i), {aipbx::media_declaration{"pcmu/8000", 20}, true});
  const std::vector<std::int16_t> pcm(160, 1234);
  const std::string data = aipbx::media::encode_audio(aipbx::media::media_format::pcmu(), pcm);
  std::size_t i = 0;
  for (auto _ : state) {
    auto view = cache.find("call-" + std::to_string(i++ % 10'000));
    auto checked = aipbx::media::check_audio(aipbx::media::media_format::pcmu(), data);
    benchmark::DoNotOptimize(view);
    benchmark::DoNotOptimize(checked);
  }
}
BENCHMARK(BM_media_check);

// One producer's wait for its packet's answer. Not std::binary_semaphore: libstdc++ 12 spins on
// sched_yield in acquire(), and 64 spinning producers on 2 cores starve the writer they wait for.
class answer_slot {
 public:
  void post() {
    {
      std::lock_guard lock(mutex_);
      ready_ = true;
    }
    cv_.notify_one();
  }
  void wait() {
    std::unique_lock lock(mutex_);
    cv_.wait(lock, [this] { return ready_; });
    ready_ = false;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool ready_ = false;
};

std::filesystem::path bench_dir() {
  if (const char* d = std::getenv("AIPBX_BENCH_DIR"); d && *d) return d;
  return std::filesystem::temp_directory_path();
}

// K producers (state.range(0)), each ingesting its own call's packets one at a time with a blocking wait
// for the durable answer. One benchmark iteration is a round of 64 packets per producer.
void BM_sqlite_ingest(benchmark::State& state) {
  const auto producers = static_cast<std::size_t>(state.range(0));
  const auto dir = bench_dir() / ("aipbx-micro-" + std::to_string(::getpid()) + "-" + std::to_string(producers));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  std::uint64_t packets = 0, batches = 0, failures = 0;
  {
    sqlite_options options;
    options.path = (dir / "bench.db").string();
    sqlite_call_store store(options);
    const std::string payload = frame_payload(producers);

    // Producers wait for the next round under `mutex`; the last one to finish a round wakes the benchmark
    // thread. Each round is `round` packets per producer, so hand-offs cost little next to the commits.
    constexpr std::int64_t round = 64;
    std::mutex mutex;
    std::condition_variable cv;
    std::uint64_t generation = 0;
    std::size_t finished = 0;
    bool quit = false;
    std::atomic<std::uint64_t> errors{0};
    std::vector<std::thread> threads;
    for (std::size_t k = 0; k < producers; ++k) {
      threads.emplace_back([&, k] {
        const std::string call_id = "bench-" + std::to_string(k);
        answer_slot answered;
        std::int64_t seq = 0;
        std::uint64_t seen = 0;
        for (;;) {
          {
            std::unique_lock lock(mutex);
            cv.wait(lock, [&] { return quit || generation != seen; });
            if (quit) return;
            seen = generation;
          }
          for (std::int64_t i = 0; i < round; ++i) {
            ++seq;
            store.ingest({call_id, seq, payload, 1'700'000'000.0 + 0.02 * static_cast<double>(seq), std::nullopt},
                         [&](result<ingest_outcome> r) {
                           if (!r) errors.fetch_add(1, std::memory_order_relaxed);
                           answered.post();
                         });
            answered.wait();
          }
          std::lock_guard lock(mutex);
          if (++finished == producers) cv.notify_all();
        }
      });
    }

    for (auto _ : state) {
      std::unique_lock lock(mutex);
      finished = 0;
      ++generation;
      cv.notify_all();
      cv.wait(lock, [&] { return finished == producers; });
    }
    {
      std::lock_guard lock(mutex);
      quit = true;
    }
    cv.notify_all();
    for (auto& t : threads) t.join();
    store.stop();  // joins the writer, so its counters are final
    const auto s = store.stats();
    packets = s.packets;
    batches = s.batches;
    failures = errors.load() + s.failed_batches;
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(producers) * round);
  }
  std::filesystem::remove_all(dir);
  state.counters["batch"] = batches ? static_cast<double>(packets) / static_cast<double>(batches) : 0.0;
  state.counters["commits/s"] = benchmark::Counter(static_cast<double>(batches), benchmark::Counter::kIsRate);
  if (failures) state.SkipWithError("ingest failures");
}
BENCHMARK(BM_sqlite_ingest)->Arg(1)->Arg(16)->Arg(64)->Arg(256)->UseRealTime()->Unit(benchmark::kMillisecond);

// The CPU time (user + system) of this process's thread named `name`, in seconds, from /proc.
double thread_cpu_seconds(const std::string& name) {
  for (const auto& task : std::filesystem::directory_iterator("/proc/self/task")) {
    std::ifstream comm(task.path() / "comm");
    std::string n;
    std::getline(comm, n);
    if (n != name) continue;
    std::ifstream stat(task.path() / "stat");
    std::string line;
    std::getline(stat, line);
    std::istringstream fields(line.substr(line.rfind(')') + 2));
    std::string field;
    double ticks = 0;
    for (int i = 3; i <= 15 && fields >> field; ++i)
      if (i == 14 || i == 15) ticks += std::stod(field);  // utime, stime
    return ticks / static_cast<double>(::sysconf(_SC_CLK_TCK));
  }
  return 0;
}

// 20 ms of G.711 mu-law: a vowel-like sound for 1.2 s, then a pause of 0.5 s, over and over.
std::string voice_or_pause(std::int64_t sequence) {
  std::vector<std::int16_t> pcm(160, 0);
  if ((sequence - 1) % 85 < 60)
    for (std::size_t i = 0; i < pcm.size(); ++i) {
      const double t = (static_cast<double>(sequence) * 160 + static_cast<double>(i)) / 8000;
      double v = 0;
      for (int h = 1; h < 20; ++h) v += std::sin(2 * 3.14159265358979 * 150 * h * t) / h;
      pcm[i] = static_cast<std::int16_t>(3000 * v);
    }
  return aipbx::media::encode_audio(aipbx::media::media_format::pcmu(), pcm);
}

void declare_pcmu(sqlite_call_store& store, const std::string& id) {
  std::promise<void> done;
  store.declare_media(id, media_declaration{"pcmu/8000", 20}, [&](result<declare_outcome>) { done.set_value(); });
  done.get_future().wait();
}

// N calls, each a stream of 250 packets; packets arrive call after call (packet 1 of every call, then
// packet 2...), never waiting for an answer, so the writer sees the batches a busy node sees.
void BM_sqlite_stream_ingest(benchmark::State& state) {
  const auto calls = static_cast<std::size_t>(state.range(0));
  const bool at_pauses = state.range(1) != 0;
  constexpr std::int64_t per_call = 250;
  const auto dir = bench_dir() / ("aipbx-micro-stream-" + std::to_string(::getpid()) + "-" + std::to_string(calls));
  double writer_cpu = 0, cutter_cpu = 0;
  std::uint64_t packets = 0, batches = 0, failures = 0;
  int run = 0;
  std::vector<std::string> frames;
  for (std::int64_t seq = 1; seq <= per_call; ++seq) frames.push_back(voice_or_pause(seq));
  for (auto _ : state) {
    std::filesystem::remove_all(dir);
    std::filesystem::create_directories(dir);
    sqlite_options options;
    options.path = (dir / "bench.db").string();
    options.segment_packets = 250;  // one AI job per 5 s of a call, as stream users configure
    if (at_pauses)
      options.cut_outside = [](const std::optional<media_declaration>& m) {
        return engines::pause_cutter::cuts(m, media::media_format::none());
      };
    sqlite_call_store store(options);
    ++run;
    std::vector<std::string> ids;
    for (std::size_t c = 0; c < calls; ++c) ids.push_back("stream-" + std::to_string(run) + "-" + std::to_string(c));
    for (const auto& id : ids) declare_pcmu(store, id);
    std::unique_ptr<engines::pause_cutter> cutter;
    if (at_pauses) {
      cutter = std::make_unique<engines::pause_cutter>(store, engines::pause_cutter_options{});
      cutter->start();
    }
    const auto writer_clock = [] { return thread_cpu_seconds("aipbx-writer"); };
    const auto cutter_clock = [] { return thread_cpu_seconds("aipbx-cutter"); };
    const double before = writer_clock(), cutter_before = cutter_clock();
    const auto declared = store.stats();  // the declarations' commits are not the stream's
    std::atomic<std::uint64_t> answered{0}, errors{0};
    const std::uint64_t total = calls * static_cast<std::uint64_t>(per_call);
    for (std::int64_t seq = 1; seq <= per_call; ++seq) {
      for (const auto& id : ids) {
        // Bounded like the streams' windows: the writer's queue never holds more than a few batches.
        while (static_cast<std::uint64_t>((seq - 1) * static_cast<std::int64_t>(calls)) > answered.load() + 20'000)
          std::this_thread::yield();
        store.ingest({id, seq, frames[static_cast<std::size_t>(seq - 1)],
                      1'700'000'000.0 + 0.02 * static_cast<double>(seq), std::string("pcmu/8000")},
                     [&](result<ingest_outcome> r) {
                       if (!r) errors.fetch_add(1, std::memory_order_relaxed);
                       answered.fetch_add(1, std::memory_order_relaxed);
                     });
      }
    }
    while (answered.load() < total) std::this_thread::yield();
    if (cutter) {
      // Until it has heard every packet once (after a cut it hears some again).
      while (cutter->stats().packets < total) std::this_thread::sleep_for(std::chrono::milliseconds(5));
      cutter_cpu += cutter_clock() - cutter_before;
      cutter->stop();
    }
    writer_cpu += writer_clock() - before;
    store.stop();
    const auto st = store.stats();
    packets += st.packets - declared.packets;
    batches += st.batches - declared.batches;
    failures += errors.load();
  }
  std::filesystem::remove_all(dir);
  const double n = static_cast<double>(state.iterations()) * static_cast<double>(calls) * per_call;
  state.SetItemsProcessed(static_cast<std::int64_t>(n));
  state.counters["us/packet"] = writer_cpu / n * 1e6;
  if (at_pauses) state.counters["cutter_us/packet"] = cutter_cpu / n * 1e6;
  state.SetLabel(at_pauses ? "at pauses" : "fixed");
  state.counters["batch"] = batches ? static_cast<double>(packets) / static_cast<double>(batches) : 0.0;
  if (failures) state.SkipWithError("ingest failures");
}
BENCHMARK(BM_sqlite_stream_ingest)
    ->ArgsProduct({{100, 1000}, {0, 1}})
    ->UseRealTime()
    ->Unit(benchmark::kMillisecond)
    ->Iterations(2);

// count_jobs (GET /v1/queue, the dashboard's queue, the job gauges of /metrics) on a file holding N jobs
// (state.range(0)), nearly all succeeded, as the history of a busy box does. range(1) = 0: the store's
// count_jobs, the job_tallies row and the first entry of the queued jobs' index; 1: the statement it ran
// before (a GROUP BY over every job), on a reader connection of its own, for the ratio in one run.
void BM_sqlite_count_jobs(benchmark::State& state) {
  const auto jobs = state.range(0);
  const bool grouped = state.range(1) != 0;
  const auto dir = bench_dir() / ("aipbx-micro-jobs-" + std::to_string(::getpid()));
  std::filesystem::remove_all(dir);
  std::filesystem::create_directories(dir);
  sqlite_options options;
  options.path = (dir / "bench.db").string();
  {
    sqlite_call_store schema(options);  // creates the file and its schema
    schema.stop();
  }
  {
    sqlite::connection c(options.path, sqlite::connection::mode::read_write);
    c.exec("INSERT INTO calls(id, created_at, updated_at, state_changed_at) VALUES ('bench', 1, 1, 1)");
    c.prepare("WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
              "INSERT INTO jobs(call_id, first_sequence, last_sequence, state, attempts, max_attempts, run_at, "
              "created_at, updated_at) SELECT 'bench', i, i, CASE WHEN i % 1000 = 0 THEN 'queued' ELSE "
              "'succeeded' END, 1, 5, i, i, i FROM n")
        .bind(1, jobs)
        .run();
    c.exec("UPDATE job_tallies SET queued = (SELECT COUNT(*) FROM jobs WHERE state = 'queued'), "
           "succeeded = (SELECT COUNT(*) FROM jobs WHERE state = 'succeeded')");
  }
  std::int64_t counted = 0;
  {
    sqlite_call_store store(options);
    sqlite::connection reader(options.path, sqlite::connection::mode::read_only);
    auto group = reader.prepare("SELECT state, COUNT(*) FROM jobs GROUP BY state");
    for (auto _ : state) {
      counted = 0;
      if (grouped) {
        while (group.step()) counted += group.column_int(1);
        group.reset();
      } else {
        const auto c = store.count_jobs().value();
        counted = c.queued + c.running + c.succeeded + c.dead;
      }
    }
    store.stop();
  }
  std::filesystem::remove_all(dir);
  state.SetLabel(grouped ? "GROUP BY over the jobs (before)" : "count_jobs (tallies)");
  if (counted != jobs) state.SkipWithError("the figures do not add up to the jobs");
}
BENCHMARK(BM_sqlite_count_jobs)->ArgsProduct({{20'000, 200'000}, {0, 1}})->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  aipbx::log::init(aipbx::log::level::error);  // "call created" lines would otherwise flood stderr
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  aipbx::log::shutdown();
  return 0;
}
