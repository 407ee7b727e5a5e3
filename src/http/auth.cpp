#include "http/auth.hpp"

#include "media/base64.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <boost/beast/core/string.hpp>

namespace aipbx::http {

namespace {

std::array<unsigned char, 32> sha256(std::string_view text) {
  std::array<unsigned char, 32> out{};
  SHA256(reinterpret_cast<const unsigned char*>(text.data()), text.size(), out.data());
  return out;
}

bool is_token_char(char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '.' ||
         c == '_' || c == '~' || c == '+' || c == '/';
}

}  // namespace

token_verifier::token_verifier(const std::vector<std::string>& tokens) {
  digests_.reserve(tokens.size());
  for (const auto& t : tokens) digests_.push_back(sha256(t));
}

token_verifier::outcome token_verifier::check(std::string_view authorization) const {
  if (digests_.empty()) return outcome::ok;
  // "Bearer" is case-insensitive (RFC 7235); one or more spaces before the token.
  constexpr std::string_view scheme = "bearer";
  if (authorization.size() <= scheme.size() || !boost::beast::iequals(authorization.substr(0, scheme.size()), scheme) ||
      authorization[scheme.size()] != ' ')
    return authorization.empty() ? outcome::missing : outcome::invalid;
  std::string_view token = authorization.substr(scheme.size());
  while (!token.empty() && token.front() == ' ') token.remove_prefix(1);
  while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
  if (token.empty()) return outcome::invalid;
  return matches(token) ? outcome::ok : outcome::invalid;
}

bool token_verifier::matches(std::string_view token) const {
  if (digests_.empty()) return true;
  const auto presented = sha256(token);
  int found = 0;
  for (const auto& d : digests_) found |= CRYPTO_memcmp(presented.data(), d.data(), d.size()) == 0 ? 1 : 0;
  return found != 0;
}

token_verifier::outcome token_verifier::check_stream(std::string_view authorization, std::string_view query_token) const {
  if (digests_.empty()) return outcome::ok;
  constexpr std::string_view basic = "basic ";
  if (authorization.size() > basic.size() && boost::beast::iequals(authorization.substr(0, basic.size()), basic)) {
    std::string_view encoded = authorization.substr(basic.size());
    while (!encoded.empty() && encoded.front() == ' ') encoded.remove_prefix(1);
    const auto bytes = media::base64_decode(encoded);
    if (!bytes) return outcome::invalid;
    const std::string decoded(bytes->begin(), bytes->end());
    const auto colon = decoded.find(':');
    if (colon == std::string::npos) return outcome::invalid;
    return matches(std::string_view(decoded).substr(colon + 1)) ? outcome::ok : outcome::invalid;
  }
  if (!authorization.empty()) return check(authorization);
  if (!query_token.empty()) return matches(query_token) ? outcome::ok : outcome::invalid;
  return outcome::missing;
}

std::optional<std::string> token_problem(std::string_view token) {
  if (token.size() < 16) return "an API token must be at least 16 characters (e.g. `openssl rand -hex 32`)";
  if (token.size() > 1024) return "an API token must be at most 1024 characters";
  std::size_t end = token.size();
  while (end > 0 && token[end - 1] == '=') --end;
  for (std::size_t i = 0; i < end; ++i)
    if (!is_token_char(token[i]))
      return "an API token may hold only letters, digits and - . _ ~ + / (then '=' padding)";
  if (end == 0) return "an API token cannot be only '='";
  return std::nullopt;
}

}  // namespace aipbx::http
