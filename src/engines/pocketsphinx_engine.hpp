// pocketsphinx_engine: offline speech-to-text by CMU PocketSphinx as Debian ships it (5prealpha, the
// `cmd_ln_t` API), with the pocketsphinx-en-us model by default. Each attempt decodes the segment's audio
// in the media format, resamples 8 kHz audio to the model's 16 kHz (speexdsp), and runs one utterance
// through a decoder; the hypothesis is the transcript (empty when nothing was recognized). The transcript
// is a function of the segment's audio and the options only: every decode starts from the same decoder
// state (a new stream, one utterance), whichever pooled decoder runs it and whatever it decoded before,
// in this process or another.
//
// One utterance, heard in two steps: the front end turns the whole segment into cepstra, which are
// normalized by the segment's own mean (the model's batch CMN); then the search takes them one second of
// frames at a time, so that the hypothesis so far can be read between two seconds (the segment's
// `on_partial` hears each one that changed, with how much of the segment it covers) and a cancelled
// decode stops there. The words do not depend on that step: the search is frame by frame over the same
// features whatever the chunking (`frames_per_step`; tests/unit/engines/pocketsphinx_engine_test.cpp).
//
// Vocabulary: the language model (`lm`) by default; a JSGF grammar file (`grammar`) or a keyword list
// (`keywords`, pocketsphinx's -kws format: one phrase per line with its /threshold/) replaces it for
// closed vocabularies. Giving both a grammar and keywords is an error.
//
// Decoders are costly (about 90 MB and 0.2-0.8 s to load), so they are pooled and reused: the engine
// loads one at construction (which checks the model) and up to `decoders` in all, each on first need;
// size it by the worker count. Decoding runs on a thread pool of the engine's own with one thread per
// decoder, never on the workers' executor; a decoder is used by one thread at a time.
//
// Outcomes: undecodable packet data is permanent (stored data cannot change); a decoder failure is
// retryable and the decoder is dropped from the pool. At asio cancellation `transcribe` completes at once
// ("interrupted"); the decode in progress stops at its next second of frames. Thread-safe.
// sphinxbase's warnings and errors are written to aipbx's log; its informational chatter is dropped.
#pragma once

#include "engines/ai_engine.hpp"
#include "media/media_format.hpp"

#include <boost/asio/thread_pool.hpp>

#include <atomic>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <utility>
#include <vector>

namespace aipbx::engines {

struct pocketsphinx_options {
  // Paths of Debian's pocketsphinx-en-us.
  std::string hmm = "/usr/share/pocketsphinx/model/en-us/en-us";
  std::string dict = "/usr/share/pocketsphinx/model/en-us/cmudict-en-us.dict";
  std::string lm = "/usr/share/pocketsphinx/model/en-us/en-us.lm.bin";
  std::string grammar;   // JSGF file; replaces lm
  std::string keywords;  // keyword list file; replaces lm
  // pocketsphinx's own settings over its defaults, as (flag, value), e.g. {"-ds", "2"}: the search's
  // trade of accuracy for speed (docs/performance.md measures each). A flag pocketsphinx does not know, or
  // a value it cannot read, fails the load.
  std::vector<std::pair<std::string, std::string>> settings;
  unsigned decoders = 4;  // decoders and decode threads at most (>= 1): the worker count
  // Frames the search takes between two looks at its hypothesis and for cancellation (100: a second at
  // pocketsphinx's 100 frames/s). The words do not depend on it; tests vary it to show so.
  int frames_per_step = 100;
};

class pocketsphinx_engine final : public ai_engine {
 public:
  static constexpr std::uint32_t model_rate = 16000;

  // Loads the first decoder. Throws std::invalid_argument for contradictory options and
  // std::runtime_error (with sphinxbase's reason) when the model cannot be loaded.
  explicit pocketsphinx_engine(pocketsphinx_options options);
  ~pocketsphinx_engine() override;  // waits for the decodes in progress

  std::string_view name() const override { return "pocketsphinx"; }
  boost::asio::awaitable<jobs::attempt_result> transcribe(audio_segment segment) override;

  // The recognizer on 16 kHz samples, on the calling thread (it blocks for about half the audio's
  // duration, and while every decoder is busy): what `transcribe` runs on its pool, for tools and tests
  // that compare against it. `on_partial`, if set, hears the hypotheses on the way, on this thread.
  jobs::attempt_result recognize(std::span<const std::int16_t> samples_16k, const partial_sink& on_partial = {});

  std::size_t decoders_loaded() const;

 private:
  struct decoder;
  struct decoder_deleter {
    void operator()(decoder* d) const;
  };
  using decoder_ptr = std::unique_ptr<decoder, decoder_deleter>;

  decoder_ptr load() const;
  decoder_ptr acquire();
  void release(decoder_ptr d);
  jobs::attempt_result recognize(std::span<const std::int16_t> samples_16k, const std::atomic<bool>* cancelled,
                                 const partial_sink& on_partial);
  // One utterance on decoder `d` (see above): whether the decoder stayed healthy; `interrupted` when
  // `cancelled` stopped it between two seconds of frames.
  bool decode(decoder& d, std::span<const std::int16_t> samples_16k, const std::atomic<bool>* cancelled,
              const partial_sink& on_partial, bool& interrupted) const;
  jobs::attempt_result transcribe_blocking(const audio_segment& segment, const std::atomic<bool>* cancelled);

  pocketsphinx_options options_;
  mutable std::mutex mutex_;
  std::condition_variable idle_or_room_;
  std::vector<decoder_ptr> idle_;  // guarded by mutex_
  std::size_t loaded_ = 0;         // guarded by mutex_
  boost::asio::thread_pool pool_;
};

}  // namespace aipbx::engines
