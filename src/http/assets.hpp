// Static files compiled into the binary: the OpenAPI document and the Swagger UI (from the npm package
// swagger-ui-dist), so /docs works with no network. Immutable data, thread-safe.
#pragma once

#include <optional>
#include <string_view>

namespace aipbx::http {

struct asset {
  std::string_view content;
  std::string_view content_type;
};

// `name` is a path below the site root, e.g. "openapi.json" or "docs/swagger-ui.css".
std::optional<asset> find_asset(std::string_view name);

}  // namespace aipbx::http
