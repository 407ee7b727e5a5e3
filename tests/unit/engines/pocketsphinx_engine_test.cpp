// The pocketsphinx engine on real recorded speech shipped by Debian (pocketsphinx-testdata's
// goforward.raw: 16 kHz, 16-bit little-endian, "go forward ten meters"), with the pocketsphinx-en-us model.
#include "engines/pocketsphinx_engine.hpp"

#include "media/audio_codec.hpp"
#include "media/resampler.hpp"
#include "support/speech_corpus.hpp"

#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_future.hpp>
#include <gtest/gtest.h>

#include <fstream>
#include <future>
#include <iterator>
#include <mutex>
#include <sstream>

namespace aipbx::engines {
namespace {

const std::string& test_data = test::speech_data;
const std::string& reference = test::goforward_reference;
using test::word_error_rate;
using test::words_of;

std::vector<std::int16_t> read_raw(const std::string& path) { return test::read_raw16(path); }

// The audio cut into 20 ms packets of `format`, sequences 1..n.
audio_segment packets_of(const std::vector<std::int16_t>& pcm, media::media_format format) {
  audio_segment s;
  s.call_id = "call-1";
  s.first_sequence = 1;
  const std::size_t per_packet = format.rate / 50;
  std::int64_t sequence = 0;
  for (std::size_t at = 0; at < pcm.size(); at += per_packet) {
    const std::size_t n = std::min(per_packet, pcm.size() - at);
    ++sequence;
    s.packets.push_back({sequence, sequence,
                         media::encode_audio(format, std::span<const std::int16_t>(pcm.data() + at, n)), 0, 0});
  }
  s.last_sequence = sequence;
  s.media = format;
  return s;
}

// A call's packets as `pcmu_packets` makes them (8 kHz mu-law, 20 ms each), sequences 1..n.
audio_segment pcmu_segment(const std::vector<std::string>& packets) {
  audio_segment s;
  s.call_id = "call-1";
  s.first_sequence = 1;
  s.last_sequence = static_cast<std::int64_t>(packets.size());
  for (std::int64_t i = 0; i < s.last_sequence; ++i)
    s.packets.push_back({i + 1, i + 1, packets[static_cast<std::size_t>(i)], 0, 0});
  s.media = media::media_format::pcmu();
  return s;
}

jobs::attempt_result run(ai_engine& engine, audio_segment segment) {
  boost::asio::io_context ioc;
  auto result = boost::asio::co_spawn(ioc, engine.transcribe(std::move(segment)), boost::asio::use_future);
  ioc.run();
  return result.get();
}

// All the segments at once, as that many workers would hand them over; in the order given.
std::vector<jobs::attempt_result> run_together(ai_engine& engine,
                                               const std::vector<audio_segment>& segments) {
  boost::asio::io_context ioc;
  std::vector<std::future<jobs::attempt_result>> futures;
  for (const auto& s : segments)
    futures.push_back(boost::asio::co_spawn(ioc, engine.transcribe(s), boost::asio::use_future));
  ioc.run();
  std::vector<jobs::attempt_result> out;
  for (auto& f : futures) out.push_back(f.get());
  return out;
}

pocketsphinx_options options_with(unsigned decoders = 1) {
  pocketsphinx_options o;
  o.decoders = decoders;
  return o;
}

TEST(PocketsphinxEngine, RecognizesGoForwardDirectly) {
  pocketsphinx_engine engine(options_with());
  const auto audio = read_raw(test_data + "goforward.raw");
  ASSERT_GT(audio.size(), 16000u);
  auto r = engine.recognize(audio);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.engine, "pocketsphinx");
  EXPECT_LE(word_error_rate(reference, r.text), 0.25) << r.text;
}

TEST(PocketsphinxEngine, SixteenKilohertzPacketsGiveTheDirectTranscript) {
  pocketsphinx_engine engine(options_with());
  const auto audio = read_raw(test_data + "goforward.raw");
  const auto direct = engine.recognize(audio);
  ASSERT_TRUE(direct.ok) << direct.error;
  auto r = run(engine, packets_of(audio, media::media_format::l16(16000)));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.text, direct.text);
  EXPECT_EQ(engine.decoders_loaded(), 1u);  // the same decoder, reused
}

// The recording as a telephone call carries it: 8 kHz G.711 mu-law, 20 ms packets. Through the engine
// (decode, resample to 16 kHz, recognize) the transcript equals the recognizer's own on the same audio
// decoded directly, and stays close to the reference despite the narrower band.
TEST(PocketsphinxEngine, EightKilohertzMuLawCallAudio) {
  pocketsphinx_engine engine(options_with());
  const auto wideband = read_raw(test_data + "goforward.raw");
  auto narrowband = media::resample(wideband, 16000, 8000);
  ASSERT_TRUE(narrowband);
  const auto segment = packets_of(*narrowband, media::media_format::pcmu());
  EXPECT_EQ(segment.packets.size(), (narrowband->size() + 159) / 160);

  std::vector<std::int16_t> decoded;
  for (const auto& p : segment.packets) {
    auto samples = media::decode_audio(media::media_format::pcmu(), p.data);
    ASSERT_TRUE(samples);
    decoded.insert(decoded.end(), samples->begin(), samples->end());
  }
  auto upsampled = media::resample(decoded, 8000, 16000);
  ASSERT_TRUE(upsampled);
  const auto direct = engine.recognize(*upsampled);
  ASSERT_TRUE(direct.ok) << direct.error;

  auto r = run(engine, segment);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.text, direct.text);
  EXPECT_LE(word_error_rate(reference, r.text), 0.5) << r.text;
  std::cout << "8 kHz mu-law: \"" << r.text << "\", WER " << word_error_rate(reference, r.text) << "\n";
}

// A segment's transcript is a function of its audio and the options alone: the first decode of a fresh
// engine, the same audio on either pooled decoder after both decoded other calls, and a second engine (a
// restarted process, another node) give the same words. A reused decoder used to carry the front end's
// noise estimate from the segment before into the next one, and so heard this sentence differently
// after other calls than as its first decode.
TEST(PocketsphinxEngine, TranscriptDependsOnTheAudioAlone) {
  const auto librivox = test::librivox_recordings();
  ASSERT_EQ(librivox.size(), 5u);
  auto call_of = [](const std::vector<std::int16_t>& samples) {
    return pcmu_segment(test::pcmu_packets(samples));
  };
  const auto sentence =
      call_of(test::read_wav16(librivox[1].path));  // "he was not an ill disposed young man"

  pocketsphinx_engine engine(options_with(2));
  const auto first = run(engine, sentence);
  ASSERT_TRUE(first.ok) << first.error;
  ASSERT_FALSE(first.text.empty());

  // Other calls, two at a time, so that each decoder hears some of them.
  std::vector<audio_segment> others{call_of(read_raw(test_data + "goforward.raw"))};
  for (const auto& r : test::cards_recordings()) others.push_back(call_of(test::read_wav16(r.path)));
  for (std::size_t i : {0u, 4u}) others.push_back(call_of(test::read_wav16(librivox[i].path)));
  for (const auto& r : run_together(engine, others)) ASSERT_TRUE(r.ok) << r.error;
  ASSERT_EQ(engine.decoders_loaded(), 2u);

  // The sentence again, twice at once: one decode on each decoder.
  for (const auto& r : run_together(engine, {sentence, sentence})) {
    ASSERT_TRUE(r.ok) << r.error;
    EXPECT_EQ(words_of(r.text), words_of(first.text)) << "after other calls";
  }
  // And in a second engine of its own, as its first decode.
  pocketsphinx_engine other(options_with(1));
  const auto fresh = run(other, sentence);
  ASSERT_TRUE(fresh.ok) << fresh.error;
  EXPECT_EQ(words_of(fresh.text), words_of(first.text)) << "in another engine";
  std::cout << "librivox 0880 at 8 kHz mu-law: \"" << first.text << "\", WER "
            << word_error_rate(librivox[1].reference, first.text) << "\n";
}

// The search settings reach the decoder: a tight cap on the HMMs searched per frame still recognizes the
// recording (it is how --pocketsphinx-maxhmmpf trades accuracy for speed; docs/performance.md).
TEST(PocketsphinxEngine, SearchSettingsReachTheDecoder) {
  auto options = options_with();
  options.settings = {{"-maxhmmpf", "3000"}, {"-wbeam", "1e-20"}};
  pocketsphinx_engine engine(options);
  auto r = engine.recognize(read_raw(test_data + "goforward.raw"));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_LE(word_error_rate(reference, r.text), 0.25) << r.text;
}

TEST(PocketsphinxEngine, GrammarRestrictsTheVocabulary) {
  auto options = options_with();
  options.grammar = test_data + "goforward.gram";
  pocketsphinx_engine engine(options);
  auto r = run(engine, packets_of(read_raw(test_data + "goforward.raw"), media::media_format::l16(16000)));
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(r.text, reference);
}

TEST(PocketsphinxEngine, KeywordListSpotsItsPhrases) {
  // A keyword list of our own: pocketsphinx-testdata's goforward.kws holds deliberately broken lines.
  const auto path = testing::TempDir() + "aipbx_keywords.kws";
  {
    std::ofstream out(path);
    out << "forward /1e-20/\nmeters /1e-20/\n";
  }
  auto options = options_with();
  options.keywords = path;
  pocketsphinx_engine engine(options);
  auto r = run(engine, packets_of(read_raw(test_data + "goforward.raw"), media::media_format::l16(16000)));
  ASSERT_TRUE(r.ok) << r.error;
  const auto words = words_of(r.text);
  EXPECT_FALSE(words.empty()) << r.text;
  for (const auto& w : words) EXPECT_TRUE(w == "forward" || w == "meters") << r.text;
}

TEST(PocketsphinxEngine, DecodersArePooledUpToTheirNumber) {
  pocketsphinx_engine engine(options_with(2));
  const auto segment = packets_of(read_raw(test_data + "goforward.raw"), media::media_format::l16(16000));
  boost::asio::io_context ioc;
  std::vector<std::future<jobs::attempt_result>> results;
  for (int i = 0; i < 4; ++i)
    results.push_back(boost::asio::co_spawn(ioc, engine.transcribe(segment), boost::asio::use_future));
  ioc.run();
  std::string first;
  for (auto& f : results) {
    auto r = f.get();
    ASSERT_TRUE(r.ok) << r.error;
    if (first.empty()) first = r.text;
    EXPECT_EQ(r.text, first);
  }
  EXPECT_LE(word_error_rate(reference, first), 0.25) << first;
  EXPECT_EQ(engine.decoders_loaded(), 2u);
}

TEST(PocketsphinxEngine, CancellationStopsALongDecode) {
  pocketsphinx_engine engine(options_with());
  const auto once = read_raw(test_data + "goforward.raw");
  std::vector<std::int16_t> long_audio;
  for (int i = 0; i < 8; ++i) long_audio.insert(long_audio.end(), once.begin(), once.end());  // about 22 s
  const auto packets = packets_of(long_audio, media::media_format::l16(16000));
  boost::asio::io_context ioc;
  auto race = [&]() -> boost::asio::awaitable<std::size_t> {
    using namespace boost::asio::experimental::awaitable_operators;
    boost::asio::steady_timer stop(ioc, std::chrono::milliseconds(200));
    auto attempt = engine.transcribe(packets);
    auto stopped = stop.async_wait(boost::asio::use_awaitable);
    auto first = co_await (std::move(attempt) || std::move(stopped));
    co_return first.index();
  };
  const auto started = std::chrono::steady_clock::now();
  auto winner = boost::asio::co_spawn(ioc, race(), boost::asio::use_future);
  ioc.run();
  EXPECT_EQ(winner.get(), 1u);
  // Decoding it takes about ten seconds (far longer in a sanitizer build); the interrupted attempt
  // returns at once.
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(5));
  // The decode stopped at its next second of frames; its decoder went back to the pool and still works.
  auto r = engine.recognize(once);
  ASSERT_TRUE(r.ok) << r.error;
  EXPECT_EQ(engine.decoders_loaded(), 1u);
}

// While it decodes, the engine tells what it has heard so far; listening changes nothing of the result.
TEST(PocketsphinxEngine, PartialHypothesesGrowAndListeningChangesNothing) {
  pocketsphinx_engine engine(options_with());
  const auto sentence = test::librivox_recordings()[0];  // 7 s of read speech
  const auto audio = test::heard_16k(test::pcmu_packets(test::read_wav16(sentence.path)));
  const auto audio_ms = static_cast<std::int64_t>(audio.size() / 16);
  const auto unheard = engine.recognize(audio);
  ASSERT_TRUE(unheard.ok) << unheard.error;

  std::vector<partial_hypothesis> heard;
  const auto listened = engine.recognize(audio, [&](const partial_hypothesis& h) { heard.push_back(h); });
  ASSERT_TRUE(listened.ok) << listened.error;
  EXPECT_EQ(listened.text, unheard.text);
  ASSERT_GE(heard.size(), 3u) << "a hypothesis most seconds of a 7 s sentence";
  for (std::size_t i = 0; i < heard.size(); ++i) {
    EXPECT_FALSE(heard[i].text.empty());
    EXPECT_LE(heard[i].heard_ms, audio_ms);
    if (i > 0) {
      EXPECT_GT(heard[i].heard_ms, heard[i - 1].heard_ms);
      EXPECT_NE(heard[i].text, heard[i - 1].text) << "only hypotheses that changed";
    }
  }
  EXPECT_LT(heard.front().heard_ms, audio_ms / 2);
  EXPECT_LE(words_of(heard.front().text).size(), words_of(unheard.text).size());

  // Through transcribe, the hypotheses come from the engine's own thread.
  auto segment = pcmu_segment(test::pcmu_packets(test::read_wav16(sentence.path)));
  std::mutex mutex;
  std::size_t told = 0;
  segment.on_partial = [&](const partial_hypothesis&) {
    std::lock_guard lock(mutex);
    ++told;
  };
  const auto transcribed = run(engine, segment);
  ASSERT_TRUE(transcribed.ok) << transcribed.error;
  EXPECT_EQ(transcribed.text, unheard.text);
  EXPECT_EQ(told, heard.size());
}

// The search takes the segment's features a step of frames at a time; how many changes nothing.
TEST(PocketsphinxEngine, TheWordsDoNotDependOnTheStepsOfTheSearch) {
  std::vector<std::vector<std::int16_t>> recordings{test::read_raw16(test_data + "goforward.raw")};
  for (std::size_t i : {1u, 3u}) recordings.push_back(test::read_wav16(test::librivox_recordings()[i].path));
  std::vector<std::string> by_second;
  for (const int step : {100, 7, 1'000'000}) {
    auto o = options_with();
    o.frames_per_step = step;
    pocketsphinx_engine engine(o);
    std::vector<std::string> texts;
    for (const auto& r : recordings) {
      const auto result = engine.recognize(test::heard_16k(test::pcmu_packets(r)));
      ASSERT_TRUE(result.ok) << result.error;
      texts.push_back(result.text);
    }
    if (by_second.empty()) by_second = texts;
    EXPECT_EQ(texts, by_second) << step << " frames per step";
  }
  EXPECT_EQ(by_second[1], "he was not until that those young man");
}

TEST(PocketsphinxEngine, UndecodableAudioIsPermanent) {
  pocketsphinx_engine engine(options_with());
  audio_segment s{"call-1", 1, 1, {{1, 1, "audio_payload", 0, 0}}, media::media_format::pcmu()};
  auto r = run(engine, s);
  EXPECT_FALSE(r.ok);
  EXPECT_TRUE(r.permanent);
  EXPECT_EQ(r.error, "packet 1 is not pcmu/8000 audio: data is not valid base64");
}

TEST(PocketsphinxEngine, BadOptionsStopTheStart) {
  auto missing = options_with();
  missing.hmm = "/nonexistent/en-us";
  EXPECT_THROW(pocketsphinx_engine{missing}, std::runtime_error);
  auto bad_grammar = options_with();
  bad_grammar.grammar = test_data + "defective.gram";  // a word the dictionary does not have
  EXPECT_THROW(pocketsphinx_engine{bad_grammar}, std::runtime_error);
  auto unknown_setting = options_with();
  unknown_setting.settings = {{"-no_such_flag", "1"}};
  EXPECT_THROW(pocketsphinx_engine{unknown_setting}, std::runtime_error);
  auto both = options_with();
  both.grammar = test_data + "goforward.gram";
  both.keywords = test_data + "goforward.kws";
  EXPECT_THROW(pocketsphinx_engine{both}, std::invalid_argument);
}

}  // namespace
}  // namespace aipbx::engines
