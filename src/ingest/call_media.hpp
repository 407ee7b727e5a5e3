// A call's effective media format: what its packets' `data` carries, from its declaration or the node's
// default. Pure values and functions, thread-safe.
#pragma once

#include "media/media_format.hpp"
#include "storage/call_store.hpp"

#include <cstdint>
#include <optional>

namespace aipbx::ingest {

// A call's declaration, or the node's default format with the default packet duration. A format the media
// layer cannot parse (only a hand-edited database holds one) counts as none.
struct call_media_format {
  media::media_format format;
  std::int64_t packet_ms = media::default_packet_ms;
  bool declared = false;
};
call_media_format effective_media(const std::optional<media_declaration>& declared, media::media_format fallback);

}  // namespace aipbx::ingest
