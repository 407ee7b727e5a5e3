// Fuzz target: Twilio Media Streams messages (streams/twilio.hpp), on untrusted bytes.
//
// `parse` reads media messages in one pass and hands everything else to `parse_checked`, which builds a
// document; both must give the same message for every input (same alternative, same fields). Beyond "no
// crash, no sanitizer report": a media message holds a chunk in [1, 2^53-1]; a refusal says why.
#include "domain/call_state.hpp"
#include "streams/twilio.hpp"

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string_view>
#include <variant>

namespace {

using namespace aipbx::streams::twilio;

[[noreturn]] void fail(const char* what) {
  std::fprintf(stderr, "twilio_message_fuzz: invariant violated: %s\n", what);
  std::abort();
}

void require(bool ok, const char* what) {
  if (!ok) fail(what);
}

bool same(const message& a, const message& b) {
  if (a.index() != b.index()) return false;
  if (const auto* x = std::get_if<media_event>(&a)) {
    const auto& y = std::get<media_event>(b);
    return x->track == y.track && x->chunk == y.chunk && x->timestamp_ms == y.timestamp_ms && x->payload == y.payload;
  }
  if (const auto* x = std::get_if<malformed>(&a)) {
    const auto& y = std::get<malformed>(b);
    return x->unknown_event == y.unknown_event && x->reason == y.reason;
  }
  if (const auto* x = std::get_if<start>(&a)) {
    const auto& y = std::get<start>(b);
    return x->stream_sid == y.stream_sid && x->call_sid == y.call_sid && x->tracks == y.tracks &&
           x->custom_parameters == y.custom_parameters && x->encoding == y.encoding &&
           x->sample_rate == y.sample_rate && x->channels == y.channels;
  }
  if (const auto* x = std::get_if<dtmf>(&a)) return x->digit == std::get<dtmf>(b).digit && x->track == std::get<dtmf>(b).track;
  if (const auto* x = std::get_if<mark>(&a)) return x->name == std::get<mark>(b).name;
  return true;  // connected, stop: no fields
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const message fast = parse(text);
  const message checked = parse_checked(text);
  require(same(fast, checked), "the one-pass and the checked parsers disagree");
  if (const auto* m = std::get_if<media_event>(&fast))
    require(m->chunk >= 1 && m->chunk <= aipbx::max_sequence, "a media chunk out of range");
  if (const auto* bad = std::get_if<malformed>(&fast)) require(!bad->reason.empty(), "a refusal without a reason");
  return 0;
}
