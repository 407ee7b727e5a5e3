#include "media/media_format.hpp"

#include <boost/algorithm/string/predicate.hpp>

namespace aipbx::media {

std::optional<media_format> parse_media_format(std::string_view text) {
  using boost::algorithm::iequals;
  if (iequals(text, "none")) return media_format::none();
  if (iequals(text, "pcmu/8000")) return media_format::pcmu();
  if (iequals(text, "pcma/8000")) return media_format::pcma();
  if (text.size() > 4 && iequals(text.substr(0, 4), "l16/")) {
    for (std::uint32_t rate : l16_rates)
      if (text.substr(4) == std::to_string(rate)) return media_format::l16(rate);
  }
  return std::nullopt;
}

std::string to_string(media_format format) {
  switch (format.kind) {
    case codec::none: return "none";
    case codec::pcmu: return "pcmu/" + std::to_string(format.rate);
    case codec::pcma: return "pcma/" + std::to_string(format.rate);
    case codec::l16: return "l16/" + std::to_string(format.rate);
  }
  return "none";
}

}  // namespace aipbx::media
