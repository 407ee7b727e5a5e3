#include "storage/database_url.hpp"

namespace aipbx {

result<database_url> parse_database_url(std::string_view text) {
  if (text.empty()) return errc::invalid_input;
  if (text.starts_with("postgresql://") || text.starts_with("postgres://"))
    return database_url{backend::postgresql, std::string(text)};
  if (text.starts_with("sqlite://")) {
    std::string_view path = text.substr(std::string_view("sqlite://").size());
    if (path.empty()) return errc::invalid_input;
    return database_url{backend::sqlite, std::string(path)};
  }
  if (text.find("://") != std::string_view::npos) return errc::invalid_input;
  return database_url{backend::sqlite, std::string(text)};
}

std::string redact_database_url(std::string_view text) {
  std::string out(text);
  if (!text.starts_with("postgresql://") && !text.starts_with("postgres://")) return out;
  const auto authority = text.find("://") + 3;
  const auto end = text.find_first_of("/?", authority);
  const auto at = text.rfind('@', end == std::string_view::npos ? text.size() : end);
  if (at == std::string_view::npos || at < authority) return out;
  const auto colon = text.find(':', authority);
  if (colon == std::string_view::npos || colon > at) return out;
  return out.replace(colon + 1, at - colon - 1, "***");
}

}  // namespace aipbx
