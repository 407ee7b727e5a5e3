// Bearer-token authentication of API requests (RFC 6750).
//
// A `token_verifier` keeps the SHA-256 digest of each configured token, never the token itself. `check`
// hashes what the client sent and compares the digest with every configured one using CRYPTO_memcmp,
// without stopping at a match: the time taken tells a client neither how much of a token it guessed, nor
// how long a token is, nor which of several tokens matched. Several tokens may be valid at once, so a
// token is rotated by adding the new one, moving clients over, then removing the old one.
//
// Immutable after construction: thread-safe. Nothing here fails at run time; `token_problem` is the check
// applied to configured tokens at start-up.
#pragma once

#include <array>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aipbx::http {

class token_verifier {
 public:
  token_verifier() = default;  // no tokens: every request passes
  explicit token_verifier(const std::vector<std::string>& tokens);

  bool enabled() const { return !digests_.empty(); }

  enum class outcome { ok, missing, invalid };
  // `authorization` is the request's Authorization header (empty if absent). With no tokens configured
  // every request is ok.
  outcome check(std::string_view authorization) const;

 private:
  using digest = std::array<unsigned char, 32>;
  std::vector<digest> digests_;
};

// Why `token` cannot be an API token, or nullopt if it can: 16 to 1024 characters of RFC 6750's b64token
// alphabet (letters, digits, - . _ ~ + /, then '=' padding), e.g. the output of `openssl rand -hex 32`.
std::optional<std::string> token_problem(std::string_view token);

}  // namespace aipbx::http
