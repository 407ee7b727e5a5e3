// Real speech through the real binary (issue 5): Debian's recordings (pocketsphinx-testdata) encoded as a
// telephone call carries them (8 kHz mu-law, 20 ms packets), posted over HTTP partly shuffled within the
// reorder window and with duplicates, the call ended; aipbx's transcript (--engine pocketsphinx) must be
// exactly the recognizer's own transcript of the same 8 kHz audio decoded directly, so the pipeline
// (HTTP, storage, reordering, segmenting, decoding) loses nothing. The word error rate against the
// reference text is printed and recorded as a test property.
//
// Segmenting is part of the comparison, honestly: a recognizer given a segment knows nothing of the audio
// around it, so cutting a call into segments can change the words at the cuts. With segments longer than
// the call (--segment-packets 1000) the call is one segment, cut at its end, and the direct decode is of
// the whole recording; with 1 s segments the direct decode is of the same segments, joined.
#include <algorithm>
#include <csignal>
#include <functional>
#include <cstdint>
#include <iostream>
#include <memory>
#include <numeric>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engines/pocketsphinx_engine.hpp"
#include "harness/api.hpp"
#include "harness/fixture.hpp"
#include "harness/sse_client.hpp"
#include "media/audio_codec.hpp"
#include "support/speech_corpus.hpp"

namespace aipbx::itest {
namespace {

namespace json = boost::json;

class SpeechTest : public integration_test {
 protected:
  // The recognizer alone, as aipbx configures it, on 16 kHz samples (one decoder, loaded once per test).
  std::string direct_transcript(const std::vector<std::int16_t>& samples_16k, const std::string& grammar = {}) {
    if (!recognizer_) {
      engines::pocketsphinx_options o;
      o.decoders = 1;
      o.grammar = grammar;
      recognizer_ = std::make_unique<engines::pocketsphinx_engine>(o);
    }
    auto r = recognizer_->recognize(samples_16k);
    EXPECT_TRUE(r.ok) << r.error;
    return r.text;
  }

  void start(std::int64_t segment_packets, const std::string& grammar = {}, unsigned workers = 1) {
    server_flags flags{{"--engine", "pocketsphinx"},
                       {"--workers", std::to_string(workers)},
                       {"--segment-packets", std::to_string(segment_packets)},
                       {"--reorder-window", "50,10s"}};
    if (!grammar.empty()) flags.set("--pocketsphinx-grammar", grammar);
    start_server(flags);
  }

  // Declares pcmu/8000 (unless `declare` is false: the call then has the node's --media) and sends the
  // packets (sequence i + 1), each block of 4 in a random order (so no packet is more than 3 away from its
  // place, well inside the reorder window) and every 7th twice.
  void stream(connection& c, const std::string& call_id, const std::vector<std::string>& packets,
              unsigned seed, bool declare = true) {
    if (declare) {
      auto declared =
          c.post_json("/v1/calls/" + call_id, R"({"media": {"format": "pcmu/8000", "packet_ms": 20}})");
      ASSERT_EQ(declared.status, 201) << declared.body;
    }
    std::vector<std::int64_t> order(packets.size());
    std::iota(order.begin(), order.end(), 1);
    std::mt19937 random(seed);
    for (std::size_t at = 0; at < order.size(); at += 4)
      std::shuffle(order.begin() + static_cast<std::ptrdiff_t>(at),
                   order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), at + 4)), random);
    std::int64_t duplicates = 0;
    for (std::size_t i = 0; i < order.size(); ++i) {
      const auto s = order[i];
      const auto& data = packets[static_cast<std::size_t>(s - 1)];
      auto r = post_packet(c, call_id, s, data);
      ASSERT_EQ(r.status, 202) << call_id << " #" << s << ": " << r.body;
      if (i % 7 == 6) {
        auto again = post_packet(c, call_id, s, data);
        ASSERT_EQ(again.status, 202) << again.body;
        EXPECT_TRUE(body_object(again).at("duplicate").as_bool());
        ++duplicates;
      }
    }
    EXPECT_GT(duplicates, 0);
  }

  // Ends the call and waits for its transcript to be complete.
  json::object finished_transcript(connection& c, const std::string& call_id) {
    auto ended = c.request("POST", "/v1/calls/" + call_id + "/end");
    EXPECT_EQ(ended.status, 200) << ended.body;
    EXPECT_TRUE(wait_until([&] { return call_state(c, call_id) == "COMPLETED"; }, 60s, 50ms))
        << call_id << " is " << call_state(c, call_id);
    const auto call = get_ok(c, "/v1/calls/" + call_id);
    EXPECT_EQ(as_int(call.at("lost_packets")), 0);
    EXPECT_GT(as_int(call.at("duplicate_packets")), 0);
    return get_ok(c, "/v1/calls/" + call_id + "/transcript");
  }

  // The transcript's text of a call that was streamed and ended, once complete.
  std::string finished_text(connection& c, const std::string& call_id) {
    return std::string(finished_transcript(c, call_id).at("text").as_string());
  }
  // The words of a call's transcript as it stands.
  std::vector<std::string> transcript_words(connection& c, const std::string& call_id) {
    return test::words_of(
        std::string(get_ok(c, "/v1/calls/" + call_id + "/transcript").at("text").as_string()));
  }

  void report(const std::string& what, const std::string& reference, const std::string& text, double wer) {
    std::cout << "[speech] " << what << ": \"" << text << "\" against \"" << reference << "\": WER " << wer << "\n";
    RecordProperty(what + "_wer", std::to_string(wer));
  }

  std::unique_ptr<engines::pocketsphinx_engine> recognizer_;
};

TEST_F(SpeechTest, GoForwardAsOneSegmentEqualsTheDirectDecode) {
  start(1000);
  auto c = connect(30s);
  const auto packets = test::pcmu_packets(test::read_raw16(test::speech_data + "goforward.raw"));
  ASSERT_GT(packets.size(), 100u);
  ASSERT_NO_FATAL_FAILURE(stream(c, "goforward", packets, 1));
  const auto transcript = finished_transcript(c, "goforward");
  const auto& segments = transcript.at("segments").as_array();
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_EQ(as_int(segments[0].at("last_sequence")), static_cast<std::int64_t>(packets.size()));
  EXPECT_DOUBLE_EQ(as_double(segments[0].at("end")), 0.02 * static_cast<double>(packets.size()));

  const std::string text(transcript.at("text").as_string());
  EXPECT_EQ(text, direct_transcript(test::heard_16k(packets)));
  const double wer = test::word_error_rate(test::goforward_reference, text);
  report("goforward", test::goforward_reference, text, wer);
  EXPECT_LE(wer, 0.5) << "far from the reference: the audio was damaged on its way";
}

TEST_F(SpeechTest, GoForwardInOneSecondSegmentsEqualsTheDirectDecodeOfTheSameSegments) {
  start(50);
  // A one-second cut can leave the recognizer a segment that starts mid-word; sphinxbase then reports
  // "Couldn't find <s> in first frame" on its error channel (aipbx logs it) and still answers.
  allow_error_log("pocketsphinx");
  auto c = connect(30s);
  const auto packets = test::pcmu_packets(test::read_raw16(test::speech_data + "goforward.raw"));
  ASSERT_NO_FATAL_FAILURE(stream(c, "goforward-1s", packets, 2));
  const auto transcript = finished_transcript(c, "goforward-1s");
  const auto& segments = transcript.at("segments").as_array();
  ASSERT_EQ(segments.size(), (packets.size() + 49) / 50);
  std::string direct;
  for (const auto& seg : segments) {
    const auto first = static_cast<std::size_t>(as_int(seg.at("first_sequence")));
    const auto last = static_cast<std::size_t>(as_int(seg.at("last_sequence")));
    const std::vector<std::string> part(packets.begin() + static_cast<std::ptrdiff_t>(first - 1),
                                        packets.begin() + static_cast<std::ptrdiff_t>(last));
    const std::string words = direct_transcript(test::heard_16k(part));
    EXPECT_EQ(std::string(seg.at("text").as_string()), words) << "segment " << first << ".." << last;
    if (!words.empty()) direct += (direct.empty() ? "" : " ") + words;
  }
  const std::string text(transcript.at("text").as_string());
  EXPECT_EQ(text, direct);
  report("goforward_1s_segments", test::goforward_reference, text, test::word_error_rate(test::goforward_reference, text));
}

// The transcript of a segment is a function of its audio and the configuration alone (issue 15). One
// sentence of read speech (librivox 0880) is sent as a call, shuffled and duplicated differently each
// time: as the first job of a fresh process; after other calls, twice at once on the two workers (each
// with its own pooled decoder); as the first job after a restart; and by replay of a dead job. Every
// transcript is the same, word for word, and the recognizer's own transcript of the audio. Before each
// decode started a new stream, a reused decoder heard the sentence through the noise estimate of the call
// it decoded before, and gave other words after other calls than as a first job.
TEST_F(SpeechTest, SameAudioGivesTheSameWordsWhateverRanBefore) {
  // The replayed call declares no format; with --media none its job is dead at once, on purpose.
  allow_error_log("ai job dead");
  const auto librivox = test::librivox_recordings();
  ASSERT_EQ(librivox.size(), 5u);
  const auto sentence = test::pcmu_packets(test::read_wav16(librivox[1].path));
  start(1000, {}, 2);
  auto c = connect(30s);

  ASSERT_NO_FATAL_FAILURE(stream(c, "first", sentence, 21));
  const std::string first = finished_text(c, "first");
  const auto words = test::words_of(first);
  ASSERT_FALSE(words.empty());
  EXPECT_EQ(words, test::words_of(direct_transcript(test::heard_16k(sentence))));

  // Other calls, then the sentence twice at once.
  std::vector<std::pair<std::string, std::vector<std::string>>> calls{
      {"goforward", test::pcmu_packets(test::read_raw16(test::speech_data + "goforward.raw"))},
      {"cards-5", test::pcmu_packets(test::read_wav16(test::cards_recordings()[4].path))},
      {"librivox-0870", test::pcmu_packets(test::read_wav16(librivox[0].path))}};
  for (std::size_t i = 0; i < calls.size(); ++i) {
    ASSERT_NO_FATAL_FAILURE(stream(c, calls[i].first, calls[i].second, static_cast<unsigned>(30 + i)));
    finished_text(c, calls[i].first);
  }
  std::vector<std::thread> senders;
  for (unsigned i = 0; i < 2; ++i)
    senders.emplace_back([&, i] {
      auto own = connect(30s);
      stream(own, "again-" + std::to_string(i + 1), sentence, 40 + i);
      auto ended = own.request("POST", "/v1/calls/again-" + std::to_string(i + 1) + "/end");
      EXPECT_EQ(ended.status, 200) << ended.body;
    });
  for (auto& t : senders) t.join();
  for (const char* id : {"again-1", "again-2"}) {
    EXPECT_TRUE(wait_until([&] { return call_state(c, id) == "COMPLETED"; }, 60s, 50ms)) << id;
    EXPECT_EQ(transcript_words(c, id), words) << id << ", after other calls";
  }

  // A call in no declared format: dead at once on a node without --media.
  ASSERT_NO_FATAL_FAILURE(stream(c, "replayed", sentence, 50, false));
  auto ended = c.request("POST", "/v1/calls/replayed/end");
  ASSERT_EQ(ended.status, 200) << ended.body;
  ASSERT_TRUE(wait_until([&] { return call_state(c, "replayed") == "FAILED"; }, 60s, 50ms));
  const auto jobs = all_jobs(c, "call_id=replayed");
  ASSERT_EQ(jobs.size(), 1u);
  const auto job_id = std::to_string(as_int(jobs[0].at("id")));

  // A new process on the same database, told how undeclared calls carry audio.
  restart_server({{"--media", "pcmu/8000"}});
  c = connect(30s);
  ASSERT_NO_FATAL_FAILURE(stream(c, "restarted", sentence, 60));
  EXPECT_EQ(test::words_of(finished_text(c, "restarted")), words) << "first job after a restart";
  auto retried = c.request("POST", "/v1/jobs/" + job_id + "/retry");
  ASSERT_EQ(retried.status, 202) << retried.body;
  ASSERT_TRUE(wait_until([&] { return call_state(c, "replayed") == "COMPLETED"; }, 60s, 50ms))
      << call_state(c, "replayed");
  EXPECT_EQ(transcript_words(c, "replayed"), words) << "on replay";
  report("librivox_0880", librivox[1].reference, first, test::word_error_rate(librivox[1].reference, first));
}

// Pause-aware segmentation with the recognizer (issue 15): goforward and the cards set, each followed by
// half a second of silence as a caller pauses between sentences, cut by --segmenter vad. Every cut falls
// in a pause, so each sentence is a segment of its own and every segment's words are the recognizer's own
// for the same samples: the pipeline loses nothing at the cuts.
TEST_F(SpeechTest, PauseCutsGiveEachSentenceItsSegment) {
  server_flags flags{{"--engine", "pocketsphinx"}, {"--workers", "2"}, {"--segmenter", "vad"},
                     {"--segment-min", "1s"},      {"--reorder-window", "50,10s"}};
  start_server(flags);
  // The last segment is the rest of the last pause, silence alone: sphinxbase reports "Couldn't find <s>
  // in first frame" on its error channel (aipbx logs it) and answers an empty text.
  allow_error_log("pocketsphinx");
  const std::string silence = media::encode_audio(media::media_format::pcmu(), std::vector<std::int16_t>(160, 0));
  std::vector<std::string> packets;
  std::vector<std::size_t> sentence_ends;
  std::vector<std::vector<std::int16_t>> sentences{test::read_raw16(test::speech_data + "goforward.raw")};
  for (const auto& r : test::cards_recordings()) sentences.push_back(test::read_wav16(r.path));
  for (const auto& samples : sentences) {
    const auto p = test::pcmu_packets(samples);
    packets.insert(packets.end(), p.begin(), p.end());
    sentence_ends.push_back(packets.size());
    packets.insert(packets.end(), 25, silence);
  }
  auto c = connect(30s);
  ASSERT_NO_FATAL_FAILURE(stream(c, "paused", packets, 80));
  const auto transcript = finished_transcript(c, "paused");
  const auto& segments = transcript.at("segments").as_array();
  // A cut in each pause (which begins with the recording's own trailing silence, up to half a second:
  // goforward's), and in no other place; then the rest of the last pause, cut when the call ended.
  ASSERT_EQ(segments.size(), sentences.size() + 1);
  for (std::size_t i = 0; i < segments.size(); ++i) {
    const auto first = static_cast<std::size_t>(as_int(segments[i].at("first_sequence")));
    const auto last = static_cast<std::size_t>(as_int(segments[i].at("last_sequence")));
    if (i < sentence_ends.size()) {
      EXPECT_GE(last + 25, sentence_ends[i]) << "the cut after sentence " << i;
      EXPECT_LE(last, sentence_ends[i] + 25) << "the cut after sentence " << i;
    }
    const std::vector<std::string> part(packets.begin() + static_cast<std::ptrdiff_t>(first - 1),
                                        packets.begin() + static_cast<std::ptrdiff_t>(last));
    EXPECT_EQ(std::string(segments[i].at("text").as_string()), direct_transcript(test::heard_16k(part)))
        << "segment " << first << ".." << last;
  }
  report("paused_sentences", "goforward and the cards set", std::string(transcript.at("text").as_string()), 0);
}

// Partial results (issue 15): while the worker decodes a long segment, the call's transcript shows the
// recognizer's hypothesis so far under `partials`, marked `"partial": true`, never in `segments` or `text`;
// the result replaces it when the job succeeds. A process killed while a partial shows leaves none behind
// as a result: the next start requeues the job, which decodes again to the same words.
TEST_F(SpeechTest, ATranscriptShowsThePartialHypothesisUntilTheResultReplacesIt) {
  std::vector<std::int16_t> reading;  // the five librivox sentences, 25 s: one segment, a decode of seconds
  for (const auto& r : test::librivox_recordings()) {
    const auto samples = test::read_wav16(r.path);
    reading.insert(reading.end(), samples.begin(), samples.end());
  }
  const auto packets = test::pcmu_packets(reading);
  start(100000);
  auto c = connect(30s);

  // Polls the transcript until the call completes: the partials seen, each with the response it came in.
  struct seen {
    std::int64_t job_id = 0;
    std::string text, current_text;
    double heard_s = 0;
  };
  const auto watch = [&](const std::string& id, const std::function<bool(const seen&)>& stop_at) {
    std::vector<seen> partials;
    EXPECT_TRUE(wait_until(
        [&] {
          const auto t = get_ok(c, "/v1/calls/" + id + "/transcript");
          for (const auto& p : t.at("partials").as_array()) {
            const auto& o = p.as_object();
            EXPECT_TRUE(o.at("partial").as_bool());
            EXPECT_TRUE(t.at("segments").as_array().empty()) << "one job: its partial or its result";
            EXPECT_EQ(t.at("text").as_string(), "") << "a partial is never in the text of the results";
            partials.push_back({as_int(o.at("job_id")), std::string(o.at("text").as_string()),
                                std::string(t.at("current_text").as_string()), as_double(o.at("heard_s"))});
            if (stop_at(partials.back())) return true;
          }
          return call_state(c, id) == "COMPLETED";
        },
        120s, 20ms));
    return partials;
  };

  ASSERT_NO_FATAL_FAILURE(stream(c, "reading", packets, 70));
  ASSERT_EQ(c.request("POST", "/v1/calls/reading/end").status, 200);
  const auto partials = watch("reading", [](const seen&) { return false; });
  ASSERT_FALSE(partials.empty()) << "no partial seen while 25 s of speech were decoded";
  for (std::size_t i = 0; i < partials.size(); ++i) {
    EXPECT_FALSE(partials[i].text.empty());
    EXPECT_EQ(partials[i].current_text, partials[i].text);
    EXPECT_GT(partials[i].heard_s, 0.0);
    EXPECT_LE(partials[i].heard_s, 0.02 * static_cast<double>(packets.size()) + 0.001);
    if (i > 0) {
      EXPECT_GE(partials[i].heard_s, partials[i - 1].heard_s);
    }
  }
  const auto done = get_ok(c, "/v1/calls/reading/transcript");
  EXPECT_TRUE(done.at("partials").as_array().empty());
  ASSERT_EQ(done.at("segments").as_array().size(), 1u);
  EXPECT_FALSE(done.at("segments").as_array()[0].at("partial").as_bool());
  const std::string final_text(done.at("text").as_string());
  EXPECT_EQ(final_text, direct_transcript(test::heard_16k(packets)));
  EXPECT_EQ(done.at("current_text").as_string(), final_text);
  std::cout << "[speech] partials seen while decoding 25 s: " << partials.size() << ", the first over "
            << partials.front().heard_s << " s: \"" << partials.front().text << "\"\n";
  {
    // The event stream told the same: hypotheses of the running attempt as it went, then the final text.
    sse_client sub(server().port(), "/v1/events?after=0&call=reading&kind=transcript.partial,transcript.final");
    ASSERT_EQ(sub.head().status, 200);
    std::vector<boost::json::object> partial_events;
    std::string told_final;
    while (told_final.empty()) {
      auto frame = sub.next(30s);
      ASSERT_TRUE(frame.has_value()) << "the stream ended before the final text";
      if (!frame->event.empty()) continue;  // a notice
      const auto e = frame->json();
      const auto& data = e.at("data").as_object();
      if (e.at("kind").as_string() == "transcript.final") told_final = std::string(data.at("text").as_string());
      else partial_events.push_back(data);
    }
    EXPECT_EQ(told_final, final_text);
    ASSERT_FALSE(partial_events.empty()) << "no transcript.partial before transcript.final";
    for (std::size_t i = 0; i < partial_events.size(); ++i) {
      EXPECT_FALSE(partial_events[i].at("text").as_string().empty());
      EXPECT_GT(as_double(partial_events[i].at("heard_s")), 0.0);
      if (i > 0) {
        EXPECT_GE(as_double(partial_events[i].at("heard_s")), as_double(partial_events[i - 1].at("heard_s")));
      }
    }
    std::cout << "[speech] partial hypotheses on the event stream: " << partial_events.size() << "\n";
  }

  // The same audio again; the process is killed while its partial shows. (A new connection: the direct
  // decode above may have kept this one idle past the server's keep-alive timeout on a loaded machine.)
  c = connect(30s);
  ASSERT_NO_FATAL_FAILURE(stream(c, "killed", packets, 71));
  ASSERT_EQ(c.request("POST", "/v1/calls/killed/end").status, 200);
  const auto before_kill = watch("killed", [](const seen&) { return true; });
  ASSERT_FALSE(before_kill.empty()) << "the job ended before a partial was seen";
  server().kill();
  ASSERT_EQ(server().wait_exit(10s), 128 + SIGKILL);
  server().start();
  c = connect(30s);
  const auto after = get_ok(c, "/v1/calls/killed/transcript");
  EXPECT_TRUE(after.at("segments").as_array().empty()) << "no result, and no partial taken for one";
  EXPECT_EQ(after.at("text").as_string(), "");
  for (const auto& p : after.at("partials").as_array()) EXPECT_TRUE(p.at("partial").as_bool());
  ASSERT_TRUE(wait_until([&] { return call_state(c, "killed") == "COMPLETED"; }, 120s, 50ms));
  EXPECT_EQ(std::string(get_ok(c, "/v1/calls/killed/transcript").at("text").as_string()), final_text)
      << "decoded again after the restart, to the same words";
}

TEST_F(SpeechTest, CardsAsFiveConcurrentCallsEqualTheDirectDecodes) {
  const std::string grammar = test::speech_data + "cards/cards.gram";
  start(1000, grammar, 2);
  const auto recordings = test::cards_recordings();
  ASSERT_EQ(recordings.size(), 5u);
  std::vector<std::vector<std::string>> calls;
  for (const auto& r : recordings) calls.push_back(test::pcmu_packets(test::read_wav16(r.path)));

  // The five calls at once, each on its own connection, as a gateway streams them.
  std::vector<std::thread> senders;
  for (std::size_t i = 0; i < calls.size(); ++i)
    senders.emplace_back([&, i] {
      auto c = connect(30s);
      stream(c, "cards-" + std::to_string(i + 1), calls[i], static_cast<unsigned>(10 + i));
    });
  for (auto& t : senders) t.join();

  auto c = connect(30s);
  double edits = 0, words = 0;
  std::string all_text, all_reference;
  for (std::size_t i = 0; i < calls.size(); ++i) {
    const std::string id = "cards-" + std::to_string(i + 1);
    const auto transcript = finished_transcript(c, id);
    const std::string text(transcript.at("text").as_string());
    EXPECT_EQ(text, direct_transcript(test::heard_16k(calls[i]), grammar)) << id;
    const double wer = test::word_error_rate(recordings[i].reference, text);
    report(id, recordings[i].reference, text, wer);
    const auto n = static_cast<double>(std::count(recordings[i].reference.begin(), recordings[i].reference.end(), ' ') + 1);
    edits += wer * n;
    words += n;
  }
  report("cards", "cards.transcription", std::to_string(static_cast<int>(edits)) + " edits in " +
                                             std::to_string(static_cast<int>(words)) + " words",
         edits / words);
  EXPECT_LE(edits / words, 0.5);
}

}  // namespace
}  // namespace aipbx::itest
