// Parses the `--db` setting into a backend and its location. Pure function, thread-safe.
//
//   sqlite:///var/lib/aipbx/aipbx.db   -> sqlite, /var/lib/aipbx/aipbx.db (absolute)
//   sqlite://data/aipbx.db             -> sqlite, data/aipbx.db (relative to the working directory)
//   ./aipbx.db, /tmp/x.db              -> sqlite, the path as given
//   postgresql://user:pass@host/db     -> postgresql (also postgres://), the URL as given to libpq
// Returns invalid_input for an empty value or an unknown scheme.
#pragma once

#include "domain/errc.hpp"

#include <string>
#include <string_view>

namespace aipbx {

enum class backend { sqlite, postgresql };

struct database_url {
  backend kind = backend::sqlite;
  std::string location;  // a file path for sqlite, the connection URI for postgresql
};

[[nodiscard]] result<database_url> parse_database_url(std::string_view text);

}  // namespace aipbx
