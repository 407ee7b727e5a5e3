#include "domain/call_id.hpp"

namespace aipbx {

bool is_valid_call_id(std::string_view id) noexcept {
  if (id.empty() || id.size() > max_call_id_length) return false;
  // "." and ".." (any run of dots alone) name directories, and clients normalise them out of URLs.
  if (id.find_first_not_of('.') == std::string_view::npos) return false;
  for (char c : id) {
    const bool ok = (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '.' ||
                    c == '_' || c == ':' || c == '@' || c == '+' || c == '=' || c == '-';
    if (!ok) return false;
  }
  return true;
}

}  // namespace aipbx
