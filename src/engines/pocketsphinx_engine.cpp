#include "engines/pocketsphinx_engine.hpp"

#include "engines/segment_audio.hpp"
#include "log/log.hpp"

#include <pocketsphinx.h>
#include <ckd_alloc.h>  // sphinxbase's
#include <cmn.h>
#include <err.h>  // sphinxbase's logging
#include <fe.h>
#include <feat.h>

#include <boost/asio/associated_cancellation_slot.hpp>
#include <boost/asio/associated_executor.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/execution/outstanding_work.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/prefer.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <cstdarg>
#include <cstdio>
#include <filesystem>
#include <optional>
#include <stdexcept>

namespace aipbx::engines {

namespace asio = boost::asio;

namespace {

// The last error sphinxbase reported on this thread, for the exception of a failed load.
thread_local std::string last_sphinx_error;

void sphinx_log(void*, err_lvl_t level, const char* format, ...) {
  if (level < ERR_WARN) return;  // debug and info lines: a decoder's whole configuration, every utterance
  char text[1024];
  va_list args;
  va_start(args, format);
  std::vsnprintf(text, sizeof text, format, args);
  va_end(args);
  std::string line(text);
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.pop_back();
  if (line.empty()) return;
  if (level >= ERR_ERROR) {
    last_sphinx_error = line;
    log::error("pocketsphinx", {{"message", line}});
  } else {
    log::warn("pocketsphinx", {{"message", line}});
  }
}

void route_sphinx_logging() {
  static std::once_flag once;
  std::call_once(once, [] {
    err_set_callback(&sphinx_log, nullptr);
    err_set_logfp(nullptr);  // the configuration dump of every ps_init goes straight to this file
  });
}

void require_file(const std::string& what, const std::string& path) {
  std::error_code ec;
  if (!std::filesystem::exists(path, ec))
    throw std::runtime_error("pocketsphinx " + what + " '" + path + "' does not exist");
}

// A segment's cepstra, from the decoder's front end, in sphinxbase's own 2-D array.
class cepstra {
 public:
  cepstra(fe_t* fe, std::span<const std::int16_t> samples) {
    std::size_t n = samples.size();
    if (fe_process_frames(fe, nullptr, &n, nullptr, &frames_, nullptr) < 0) return;
    rows_ = static_cast<mfcc_t**>(
        ckd_calloc_2d(static_cast<std::size_t>(frames_) + 1, static_cast<std::size_t>(fe_get_output_size(fe)),
                      sizeof(mfcc_t)));
    // As pocketsphinx does for a whole utterance: every frame, then the last partial one.
    const std::int16_t* at = samples.data();
    n = samples.size();
    int32 tail = 0;
    ok_ = fe_start_utt(fe) >= 0 && fe_process_frames(fe, &at, &n, rows_, &frames_, nullptr) >= 0 &&
          fe_end_utt(fe, rows_[frames_], &tail) >= 0;
    frames_ += tail;
  }
  ~cepstra() {
    if (rows_) ckd_free_2d(rows_);
  }
  cepstra(const cepstra&) = delete;
  cepstra& operator=(const cepstra&) = delete;

  bool ok() const { return ok_; }
  mfcc_t** rows() const { return rows_; }
  int32 frames() const { return frames_; }

 private:
  mfcc_t** rows_ = nullptr;
  int32 frames_ = 0;
  bool ok_ = false;
};

// Normalizes a segment's cepstra by their own mean (the model's batch CMN, as sphinxbase applies it to a
// whole utterance), and keeps the feature computation from normalizing again while the search takes them in
// chunks (it would switch for good to a running mean carried from utterance to utterance). Restores the
// decoder's setting when it goes.
class segment_cmn {
 public:
  segment_cmn(feat_t* feat, const cepstra& cep) : feat_(feat), saved_(feat->cmn) {
    if (saved_ == CMN_NONE) return;
    cmn(feat_->cmn_struct, cep.rows(), feat_->varnorm, cep.frames());
    feat_->cmn = CMN_NONE;
  }
  ~segment_cmn() { feat_->cmn = saved_; }
  segment_cmn(const segment_cmn&) = delete;
  segment_cmn& operator=(const segment_cmn&) = delete;

 private:
  feat_t* feat_;
  cmn_type_t saved_;
};

}  // namespace

struct pocketsphinx_engine::decoder {
  cmd_ln_t* config = nullptr;
  ps_decoder_t* ps = nullptr;
};

void pocketsphinx_engine::decoder_deleter::operator()(decoder* d) const {
  if (d->ps) ps_free(d->ps);
  if (d->config) cmd_ln_free_r(d->config);
  delete d;
}

pocketsphinx_engine::pocketsphinx_engine(pocketsphinx_options options)
    : options_(std::move(options)), pool_(std::max(1u, options_.decoders)) {
  if (options_.decoders == 0) options_.decoders = 1;
  if (!options_.grammar.empty() && !options_.keywords.empty())
    throw std::invalid_argument("pocketsphinx: give a grammar or a keyword list, not both");
  route_sphinx_logging();
  require_file("acoustic model (hmm)", options_.hmm);
  require_file("dictionary", options_.dict);
  if (!options_.grammar.empty()) require_file("grammar", options_.grammar);
  else if (!options_.keywords.empty()) require_file("keyword list", options_.keywords);
  else require_file("language model", options_.lm);
  auto first = load();
  std::lock_guard lock(mutex_);
  idle_.push_back(std::move(first));
  loaded_ = 1;
}

pocketsphinx_engine::~pocketsphinx_engine() { pool_.join(); }

pocketsphinx_engine::decoder_ptr pocketsphinx_engine::load() const {
  last_sphinx_error.clear();
  const char* search_flag = "-lm";
  const std::string* search_path = &options_.lm;
  if (!options_.grammar.empty()) {
    search_flag = "-jsgf";
    search_path = &options_.grammar;
  } else if (!options_.keywords.empty()) {
    search_flag = "-kws";
    search_path = &options_.keywords;
  }
  std::vector<const char*> args{"-hmm",      options_.hmm.c_str(), "-dict",     options_.dict.c_str(),
                                search_flag, search_path->c_str(), "-samprate", "16000"};
  for (const auto& [flag, value] : options_.settings) {
    args.push_back(flag.c_str());
    args.push_back(value.c_str());
  }
  decoder_ptr d(new decoder);
  d->config = cmd_ln_parse_r(nullptr, ps_args(), static_cast<int>(args.size()),
                             const_cast<char**>(args.data()), TRUE);
  if (d->config) d->ps = ps_init(d->config);
  if (!d->ps) {
    std::string settings;
    for (const auto& [flag, value] : options_.settings) settings += ", " + flag + " " + value;
    throw std::runtime_error("cannot load the pocketsphinx model (hmm " + options_.hmm + ", dict " +
                             options_.dict + ", " + (search_flag + 1) + " " + *search_path + settings + ")" +
                             (last_sphinx_error.empty() ? "" : ": " + last_sphinx_error));
  }
  return d;
}

pocketsphinx_engine::decoder_ptr pocketsphinx_engine::acquire() {
  {
    std::unique_lock lock(mutex_);
    // The engine's own threads never wait here (one thread per decoder); direct callers of recognize may.
    idle_or_room_.wait(lock, [this] { return !idle_.empty() || loaded_ < options_.decoders; });
    if (!idle_.empty()) {
      auto d = std::move(idle_.back());
      idle_.pop_back();
      return d;
    }
    ++loaded_;  // counted now so that concurrent callers never load more than the pool's size
  }
  try {
    auto d = load();
    log::info("pocketsphinx decoder loaded", {{"decoders", decoders_loaded()}});
    return d;
  } catch (...) {
    {
      std::lock_guard lock(mutex_);
      --loaded_;
    }
    idle_or_room_.notify_one();
    throw;
  }
}

void pocketsphinx_engine::release(decoder_ptr d) {
  {
    std::lock_guard lock(mutex_);
    if (d) idle_.push_back(std::move(d));
    else --loaded_;
  }
  idle_or_room_.notify_one();
}

std::size_t pocketsphinx_engine::decoders_loaded() const {
  std::lock_guard lock(mutex_);
  return loaded_;
}

jobs::attempt_result pocketsphinx_engine::recognize(std::span<const std::int16_t> samples_16k,
                                                    const partial_sink& on_partial) {
  return recognize(samples_16k, nullptr, on_partial);
}

bool pocketsphinx_engine::decode(decoder& d, std::span<const std::int16_t> samples, const std::atomic<bool>* cancelled,
                                 const partial_sink& on_partial, bool& interrupted) const {
  // A transcript must depend on the segment's audio alone, not on what this pooled decoder heard before.
  // The front end's noise tracker (the noise floor that -remove_noise subtracts and -remove_silence's voice
  // detector compares against) outlives an utterance: only ps_start_stream resets it, so without it every
  // decode starts from the noise estimate the previous segment left (a reused decoder then gives other
  // words for the same audio). The cepstral mean is the segment's own (segment_cmn).
  if (ps_start_stream(d.ps) < 0 || ps_start_utt(d.ps) < 0) return false;
  const cepstra cep(ps_get_fe(d.ps), samples);
  bool healthy = cep.ok();
  if (healthy) {
    const segment_cmn normalized(ps_get_feat(d.ps), cep);
    const auto audio_ms = static_cast<std::int64_t>(samples.size() * 1000 / model_rate);
    std::string heard;
    const int32 step = std::max(1, options_.frames_per_step);
    for (int32 at = 0; healthy && at < cep.frames(); at += step) {
      if (cancelled && cancelled->load()) {
        interrupted = true;
        break;
      }
      const int32 n = std::min(step, cep.frames() - at);
      healthy = ps_process_cep(d.ps, cep.rows() + at, n, FALSE, FALSE) >= 0;
      int32 score = 0;
      const char* hyp = on_partial && healthy ? ps_get_hyp(d.ps, &score) : nullptr;
      if (hyp && *hyp && heard != hyp) {
        heard = hyp;
        on_partial({heard, audio_ms * (at + n) / cep.frames()});
      }
    }
  }
  return ps_end_utt(d.ps) >= 0 && healthy;
}

jobs::attempt_result pocketsphinx_engine::recognize(std::span<const std::int16_t> samples,
                                                    const std::atomic<bool>* cancelled,
                                                    const partial_sink& on_partial) {
  jobs::attempt_result r;
  r.engine = "pocketsphinx";
  if (cancelled && cancelled->load()) {
    r.error = "interrupted";
    return r;
  }
  decoder_ptr d;
  try {
    d = acquire();
  } catch (const std::exception& e) {
    r.error = e.what();
    return r;
  }
  bool interrupted = false;
  if (!decode(*d, samples, cancelled, on_partial, interrupted)) {
    r.error = "the pocketsphinx decoder failed" + (last_sphinx_error.empty() ? "" : ": " + last_sphinx_error);
    release(nullptr);  // a decoder in an unknown state is not reused
    return r;
  }
  if (interrupted) {
    r.error = "interrupted";
    release(std::move(d));
    return r;
  }
  std::int32_t score = 0;
  const char* hyp = ps_get_hyp(d->ps, &score);
  r.ok = true;
  r.text = hyp ? hyp : "";
  release(std::move(d));
  return r;
}

jobs::attempt_result pocketsphinx_engine::transcribe_blocking(const audio_segment& segment,
                                                              const std::atomic<bool>* cancelled) {
  auto pcm = decode_segment(segment, model_rate);
  if (!pcm) {
    jobs::attempt_result r;
    r.engine = "pocketsphinx";
    r.error = pcm.error();
    r.permanent = true;
    return r;
  }
  return recognize(pcm->samples, cancelled, segment.on_partial);
}

asio::awaitable<jobs::attempt_result> pocketsphinx_engine::transcribe(audio_segment segment) {
  // Like storage/async_store.hpp's async_call, plus cancellation: it completes the operation at once
  // ("interrupted"), and the decode on the pool stops at its next second of frames, its result dropped; a
  // decode still queued is skipped. Whichever comes first completes, and
  // only it touches the caller's executor (the work it keeps alive ends with the completion).
  return asio::async_initiate<const asio::use_awaitable_t<>, void(jobs::attempt_result)>(
      [this](auto handler, audio_segment seg) {
        using handler_type = decltype(handler);
        auto tracked =
            asio::prefer(asio::get_associated_executor(handler), asio::execution::outstanding_work.tracked);
        struct operation {
          handler_type handler;
          std::optional<decltype(tracked)> executor;
          std::atomic<bool> done{false};
        };
        auto slot = asio::get_associated_cancellation_slot(handler);
        auto op = std::make_shared<operation>(std::move(handler), std::move(tracked));
        auto complete = [](const std::shared_ptr<operation>& o, jobs::attempt_result r) {
          if (o->done.exchange(true)) return;
          auto executor = std::move(*o->executor);
          o->executor.reset();
          asio::post(executor, [o, r = std::move(r)]() mutable {
            asio::get_associated_cancellation_slot(o->handler).clear();
            std::move(o->handler)(std::move(r));
          });
        };
        if (slot.is_connected())
          slot.assign([weak = std::weak_ptr<operation>(op), complete](asio::cancellation_type) {
            auto o = weak.lock();
            if (!o) return;
            jobs::attempt_result r;
            r.engine = "pocketsphinx";
            r.error = "interrupted";
            complete(o, std::move(r));
          });
        asio::post(pool_, [this, op, complete, seg = std::move(seg)]() mutable {
          complete(op, transcribe_blocking(seg, &op->done));
        });
      },
      asio::use_awaitable, std::move(segment));
}

}  // namespace aipbx::engines
