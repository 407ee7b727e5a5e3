#include "ingest/call_media.hpp"

namespace aipbx::ingest {

call_media_format effective_media(const std::optional<media_declaration>& declared, media::media_format fallback) {
  if (!declared) return {fallback, media::default_packet_ms, false};
  return {media::parse_media_format(declared->format).value_or(media::media_format::none()), declared->packet_ms,
          true};
}

}  // namespace aipbx::ingest
