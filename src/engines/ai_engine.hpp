// ai_engine: one speech-to-text service behind one interface. An engine turns a segment (a contiguous
// range of a call's packets, in sequence order) into text, or says why it could not and whether trying
// again could help.
//
// An engine that can tell what it has heard so far (pocketsphinx) reports its current hypothesis while it
// works, through the segment's `on_partial`: a hint for a live view, never a result.
//
// Engines run on the AI workers' executor and must not block it: slow or blocking work goes to a thread
// pool of the engine's own. `transcribe` may be called concurrently (once per worker) and honours asio
// cancellation when the workers stop. Implementations: mock_engine (the seed's unreliable mock),
// http_engine (an OpenAI-compatible transcription service), pocketsphinx_engine (offline recognizer).
#pragma once

#include "jobs/attempt.hpp"
#include "media/media_format.hpp"
#include "storage/call_store.hpp"

#include <boost/asio/awaitable.hpp>

#include <functional>
#include <string>
#include <string_view>
#include <vector>

namespace aipbx::engines {

// What an engine has recognized so far of a segment: its hypothesis over the first `heard_ms` of the
// segment's audio. The final text may differ.
struct partial_hypothesis {
  std::string text;
  std::int64_t heard_ms = 0;
};
// Called from an engine's own thread, in order, with hypotheses that changed; possibly after `transcribe`
// completed (a cancelled decode runs on): it must hold what it uses by value. Thread-safe to call.
using partial_sink = std::function<void(const partial_hypothesis&)>;

struct audio_segment {
  std::string call_id;
  std::int64_t first_sequence = 0;
  std::int64_t last_sequence = 0;
  std::vector<stored_packet> packets;  // the stored packets of the range, ascending
  // How the call's packets carry audio: its declaration, or the node's --media.
  media::media_format media = media::media_format::none();
  std::int64_t packet_ms = media::default_packet_ms;
  partial_sink on_partial{};  // empty: nobody listens
};

class ai_engine {
 public:
  virtual ~ai_engine() = default;
  virtual std::string_view name() const = 0;
  virtual boost::asio::awaitable<jobs::attempt_result> transcribe(audio_segment segment) = 0;
};

}  // namespace aipbx::engines
