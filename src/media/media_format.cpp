#include "media/media_format.hpp"

#include <charconv>

namespace aipbx::media {

namespace {

// ASCII case-insensitive comparison (a locale-aware one costs more than the whole ingest check, and
// format names are ASCII).
bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (std::size_t i = 0; i < a.size(); ++i) {
    const auto lower = [](char c) { return c >= 'A' && c <= 'Z' ? static_cast<char>(c - 'A' + 'a') : c; };
    if (lower(a[i]) != lower(b[i])) return false;
  }
  return true;
}

}  // namespace

std::optional<media_format> parse_media_format(std::string_view text) {
  if (iequals(text, "none")) return media_format::none();
  if (iequals(text, "pcmu/8000")) return media_format::pcmu();
  if (iequals(text, "pcma/8000")) return media_format::pcma();
  if (text.size() > 4 && iequals(text.substr(0, 4), "l16/")) {
    const auto digits = text.substr(4);
    std::uint32_t rate = 0;
    auto [end, ec] = std::from_chars(digits.data(), digits.data() + digits.size(), rate);
    if (ec != std::errc{} || end != digits.data() + digits.size() || digits.front() == '0') return std::nullopt;
    for (std::uint32_t r : l16_rates)
      if (r == rate) return media_format::l16(rate);
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
