// aipbx_bare_decode: the recognizer's own cost, on the audio the speech benchmark streams through aipbx.
//
//   aipbx_bare_decode [--audio loop|corpus] [--seconds D] [--segment-packets N] [--threads T]
//                     [--chunk-ms MS] [--through capi|engine] [--partials] [-- POCKETSPHINX_FLAGS...]
//
// --audio loop (default): the speech of aipbx_speech_load (goforward, the cards set and the librivox set of
// pocketsphinx-testdata, looped) as one call of D seconds (default 60) of 8 kHz mu-law 20 ms packets, cut
// into segments of N packets (default 250, aipbx's --segment-packets), exactly the samples aipbx decodes
// for each call of the benchmark. --audio corpus: each recording of the three sets as a segment of its
// own, scored against its reference (word error rate).
//
// Each segment is decoded as aipbx prepares it (G.711 decode, speexdsp to 16 kHz) and recognized by
// pocketsphinx's C API with pocketsphinx-en-us and the given flags (e.g. `-- -ds 2 -topn 2`), on T threads
// (default 1) with a decoder each: a new stream per segment, then the audio in chunks of MS milliseconds
// (20, as a live recognizer is fed) or, with --chunk-ms 0 (default), as one whole utterance, the way aipbx's
// engine's search takes the features of one. --through engine runs aipbx's pocketsphinx_engine::transcribe
// on the packets instead (decode, resample and recognize behind its thread pool), with the flags as its
// settings; with --partials, something listens to its partial hypotheses (as a worker's attempt does), and
// `partials` counts them.
//
// Time is CPU time, which a shared machine changes less than wall time: capi, CLOCK_THREAD_CPUTIME_ID of
// the decoding threads; engine, the process's CPU time from the engine's construction to the last
// transcript. It prints one line of key=value figures:
//   segments, audio_s          what was decoded
//   recognize_cpu_s            CPU of recognition (capi: pocketsphinx alone; engine: transcribe, all in)
//   prepare_cpu_s              capi: CPU of the G.711 decode and resampling (not in recognize_cpu_s)
//   cpu_per_audio_s            (recognize + prepare) / audio_s
//   load_cpu_s                 CPU of loading the decoders (not in the figures above)
//   wer, ref_words             corpus: word error rate over all references, and their word count
// With --print, each segment's transcript as well.
#include "engines/pocketsphinx_engine.hpp"
#include "media/media_format.hpp"
#include "support/speech_corpus.hpp"

#include <pocketsphinx.h>
#include <err.h>  // sphinxbase's logging

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/use_future.hpp>

#include <atomic>
#include <cstdio>
#include <ctime>
#include <iostream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

namespace {

using namespace aipbx;

struct options {
  std::string audio = "loop";
  double seconds = 60;
  std::size_t segment_packets = 250;
  unsigned threads = 1;
  std::size_t chunk_ms = 0;
  std::string through = "capi";
  bool print = false;
  bool partials = false;
  std::vector<std::string> flags;  // pocketsphinx's, as "-name value" pairs
};

struct segment {
  std::vector<std::string> packets;  // base64 mu-law, 20 ms each
  std::string reference;             // corpus only
  std::string text;
};

double thread_cpu() {
  timespec t{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_nsec) / 1e9;
}

options parse(int argc, char** argv) {
  options o;
  int i = 1;
  for (; i < argc; ++i) {
    const std::string flag = argv[i];
    if (flag == "--") {
      ++i;
      break;
    }
    if (flag == "--print") {
      o.print = true;
      continue;
    }
    if (flag == "--partials") {
      o.partials = true;
      continue;
    }
    if (i + 1 >= argc) throw std::invalid_argument(flag + " needs a value");
    const std::string value = argv[++i];
    if (flag == "--audio")
      o.audio = value;
    else if (flag == "--seconds")
      o.seconds = std::stod(value);
    else if (flag == "--segment-packets")
      o.segment_packets = std::stoul(value);
    else if (flag == "--threads")
      o.threads = static_cast<unsigned>(std::stoul(value));
    else if (flag == "--chunk-ms")
      o.chunk_ms = std::stoul(value);
    else if (flag == "--through")
      o.through = value;
    else
      throw std::invalid_argument("unknown option " + flag);
  }
  for (; i < argc; ++i) o.flags.emplace_back(argv[i]);
  if ((o.audio != "loop" && o.audio != "corpus") || (o.through != "capi" && o.through != "engine") ||
      o.segment_packets == 0 || o.threads == 0 || o.seconds <= 0 || o.flags.size() % 2 != 0)
    throw std::invalid_argument("bad options (see the comment at the top of bench/bare_decode.cpp)");
  return o;
}

std::vector<segment> segments_of(const options& o) {
  std::vector<segment> out;
  if (o.audio == "corpus") {
    std::vector<test::recording> all{{test::speech_data + "goforward.raw", test::goforward_reference}};
    for (const auto& list : {test::cards_recordings(), test::librivox_recordings()})
      all.insert(all.end(), list.begin(), list.end());
    for (const auto& r : all) {
      const bool raw = r.path.ends_with(".raw");
      out.push_back(
          {test::pcmu_packets(raw ? test::read_raw16(r.path) : test::read_wav16(r.path)), r.reference, {}});
    }
    return out;
  }
  // The packets aipbx_speech_load sends for every call: packet i is speech packet i modulo its length.
  const auto speech = test::pcmu_packets(test::benchmark_speech());
  const auto total = static_cast<std::size_t>(o.seconds * 50);
  for (std::size_t first = 0; first < total; first += o.segment_packets) {
    segment s;
    for (std::size_t i = first; i < std::min(total, first + o.segment_packets); ++i)
      s.packets.push_back(speech[i % speech.size()]);
    out.push_back(std::move(s));
  }
  return out;
}

const std::string model = "/usr/share/pocketsphinx/model/en-us/";

ps_decoder_t* load_decoder(const options& o) {
  std::vector<const char*> args{"-hmm", "", "-dict", "", "-lm", "", "-samprate", "16000"};
  const std::string hmm = model + "en-us", dict = model + "cmudict-en-us.dict", lm = model + "en-us.lm.bin";
  args[1] = hmm.c_str();
  args[3] = dict.c_str();
  args[5] = lm.c_str();
  for (const auto& f : o.flags) args.push_back(f.c_str());
  cmd_ln_t* config = cmd_ln_parse_r(nullptr, ps_args(), static_cast<int>(args.size()),
                                    const_cast<char**>(args.data()), TRUE);
  ps_decoder_t* ps = config ? ps_init(config) : nullptr;
  if (config) cmd_ln_free_r(config);  // the decoder holds its own reference
  if (!ps) throw std::runtime_error("cannot load the pocketsphinx model with these flags");
  return ps;
}

struct totals {
  std::mutex mutex;
  double recognize = 0, prepare = 0, load = 0;
};

// pocketsphinx's C API alone, on the samples aipbx's engine would hand it.
void decode_capi(const options& o, std::vector<segment>& segments, std::atomic<std::size_t>& next,
                 totals& sum) {
  const double t0 = thread_cpu();
  ps_decoder_t* ps = load_decoder(o);
  double load = thread_cpu() - t0, recognize = 0, prepare = 0;
  for (std::size_t i; (i = next.fetch_add(1)) < segments.size();) {
    const double p0 = thread_cpu();
    const auto samples = test::heard_16k(segments[i].packets);
    const double r0 = thread_cpu();
    ps_start_stream(ps);
    ps_start_utt(ps);
    if (o.chunk_ms == 0) {
      ps_process_raw(ps, samples.data(), samples.size(), FALSE, TRUE);
    } else {
      const std::size_t chunk = o.chunk_ms * 16;
      for (std::size_t at = 0; at < samples.size(); at += chunk)
        ps_process_raw(ps, samples.data() + at, std::min(chunk, samples.size() - at), FALSE, FALSE);
    }
    ps_end_utt(ps);
    std::int32_t score = 0;
    const char* hyp = ps_get_hyp(ps, &score);
    segments[i].text = hyp ? hyp : "";
    const double r1 = thread_cpu();
    prepare += r0 - p0;
    recognize += r1 - r0;
  }
  ps_free(ps);
  std::lock_guard lock(sum.mutex);
  sum.recognize += recognize;
  sum.prepare += prepare;
  sum.load += load;
}

// aipbx's engine on the same packets: what a worker's attempt runs, less the store.
void decode_engine(engines::pocketsphinx_engine& engine, std::vector<segment>& segments,
                   std::atomic<std::size_t>& next, std::atomic<std::size_t>* partials) {
  for (std::size_t i; (i = next.fetch_add(1)) < segments.size();) {
    engines::audio_segment s;
    s.call_id = "bench";
    s.first_sequence = 1;
    s.last_sequence = static_cast<std::int64_t>(segments[i].packets.size());
    for (std::int64_t q = 0; q < s.last_sequence; ++q)
      s.packets.push_back({q + 1, q + 1, segments[i].packets[static_cast<std::size_t>(q)], 0, 0});
    s.media = media::media_format::pcmu();
    if (partials) s.on_partial = [partials](const engines::partial_hypothesis&) { ++*partials; };
    boost::asio::io_context ioc;
    auto result = boost::asio::co_spawn(ioc, engine.transcribe(std::move(s)), boost::asio::use_future);
    ioc.run();
    auto r = result.get();
    if (!r.ok) throw std::runtime_error("transcribe failed: " + r.error);
    segments[i].text = r.text;
  }
}

}  // namespace

int main(int argc, char** argv) try {
  const options o = parse(argc, argv);
  err_set_logfp(nullptr);
  auto segments = segments_of(o);
  double audio = 0;
  for (const auto& s : segments) audio += 0.02 * static_cast<double>(s.packets.size());

  totals sum;
  std::atomic<std::size_t> next{0}, partials{0};
  std::vector<std::thread> threads;
  if (o.through == "capi") {
    for (unsigned t = 0; t < o.threads; ++t)
      threads.emplace_back([&] { decode_capi(o, segments, next, sum); });
    for (auto& t : threads) t.join();
  } else {
    engines::pocketsphinx_options eo;
    eo.decoders = o.threads;
    for (std::size_t i = 0; i < o.flags.size(); i += 2) eo.settings.emplace_back(o.flags[i], o.flags[i + 1]);
    timespec p0{}, p1{};
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &p0);
    engines::pocketsphinx_engine engine(eo);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &p1);
    sum.load =
        static_cast<double>(p1.tv_sec - p0.tv_sec) + static_cast<double>(p1.tv_nsec - p0.tv_nsec) / 1e9;
    // The engine decodes on its own pool; the process's CPU time over the run is all of it.
    for (unsigned t = 0; t < o.threads; ++t)
      threads.emplace_back([&] { decode_engine(engine, segments, next, o.partials ? &partials : nullptr); });
    for (auto& t : threads) t.join();
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &p0);
    sum.recognize =
        static_cast<double>(p0.tv_sec - p1.tv_sec) + static_cast<double>(p0.tv_nsec - p1.tv_nsec) / 1e9;
  }

  double edits = 0, words = 0;
  for (const auto& s : segments) {
    if (o.print) std::cout << "# " << s.text << "\n";
    if (s.reference.empty()) continue;
    const double n = static_cast<double>(test::words_of(s.reference).size());
    edits += test::word_error_rate(s.reference, s.text) * n;
    words += n;
  }
  std::string flags;
  for (const auto& f : o.flags) flags += (flags.empty() ? "" : " ") + f;
  std::printf(
      "through=%s chunk_ms=%zu threads=%u flags=\"%s\" segments=%zu audio_s=%.1f recognize_cpu_s=%.2f "
      "prepare_cpu_s=%.3f cpu_per_audio_s=%.4f load_cpu_s=%.2f",
      o.through.c_str(), o.chunk_ms, o.threads, flags.c_str(), segments.size(), audio, sum.recognize,
      sum.prepare, (sum.recognize + sum.prepare) / audio, sum.load);
  if (words > 0) std::printf(" wer=%.3f ref_words=%.0f", edits / words, words);
  if (o.partials) std::printf(" partials=%zu", partials.load());
  std::printf("\n");
  return 0;
} catch (const std::exception& e) {
  std::cerr << "aipbx_bare_decode: " << e.what() << "\n";
  return 2;
}
