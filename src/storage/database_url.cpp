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

}  // namespace aipbx
