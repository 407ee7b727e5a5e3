// Bearer-token authentication of API requests (RFC 6750).
//
// A `token_verifier` keeps the SHA-256 digest of each configured token, never the token itself. `check`
// hashes what the client sent and compares the digest with every configured one using CRYPTO_memcmp,
// without stopping at a match: the time taken tells a client neither how much of a token it guessed, nor
// how long a token is, nor which of several tokens matched. Several tokens may be valid at once, so a
// token is rotated by adding the new one, moving clients over, then removing the old one.
//
// A token_verifier is immutable after construction: thread-safe. A `token_store` holds the one in force and
// lets it be replaced while requests are checked (a reload of the token file). Nothing here fails at run
// time; `token_problem` is the check applied to configured tokens.
#pragma once

#include <array>
#include <atomic>
#include <memory>
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
  // Whether `token` itself is one of the tokens (true with none configured).
  bool matches(std::string_view token) const;
  // For a WebSocket upgrade, whose senders cannot always set a bearer header: the Authorization header
  // (Bearer, or Basic whose password is a token: FreeSWITCH and jambonz send Basic auth), else the
  // `token` query parameter.
  outcome check_stream(std::string_view authorization, std::string_view query_token) const;

 private:
  using digest = std::array<unsigned char, 32>;
  std::vector<digest> digests_;
};

// The token_verifier in force. `current` and `replace` may be called from any thread at any time; a
// request checked during a replace sees the old set or the new one, whole.
class token_store {
 public:
  explicit token_store(token_verifier initial)
      : current_(std::make_shared<const token_verifier>(std::move(initial))) {}

  std::shared_ptr<const token_verifier> current() const { return current_.load(std::memory_order_acquire); }
  void replace(token_verifier next) {
    current_.store(std::make_shared<const token_verifier>(std::move(next)), std::memory_order_release);
  }

 private:
  std::atomic<std::shared_ptr<const token_verifier>> current_;
};

// Why `token` cannot be an API token, or nullopt if it can: 16 to 1024 characters of RFC 6750's b64token
// alphabet (letters, digits, - . _ ~ + /, then '=' padding), e.g. the output of `openssl rand -hex 32`.
std::optional<std::string> token_problem(std::string_view token);

}  // namespace aipbx::http
