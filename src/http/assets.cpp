#include "http/assets.hpp"

#include "assets_table.inc"

namespace aipbx::http {

namespace {
// Text assets are UTF-8; the build lists bare media types.
std::string_view with_charset(std::string_view type) {
  if (type == "text/html") return "text/html; charset=utf-8";
  if (type == "text/css") return "text/css; charset=utf-8";
  if (type == "application/javascript") return "application/javascript; charset=utf-8";
  return type;
}
}  // namespace

std::optional<asset> find_asset(std::string_view name) {
  for (const auto& a : embedded_assets) {
    if (name == a.name)
      return asset{std::string_view(a.begin, static_cast<std::size_t>(a.end - a.begin)), with_charset(a.type)};
  }
  return std::nullopt;
}

}  // namespace aipbx::http
