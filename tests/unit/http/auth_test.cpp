#include "http/auth.hpp"

#include <gtest/gtest.h>

namespace aipbx::http {
namespace {

using outcome = token_verifier::outcome;

TEST(TokenVerifier, NoTokensLetsEverythingThrough) {
  const token_verifier v;
  EXPECT_FALSE(v.enabled());
  EXPECT_EQ(v.check(""), outcome::ok);
  EXPECT_EQ(v.check("Bearer whatever"), outcome::ok);
}

TEST(TokenVerifier, AnyConfiguredTokenMatchesExactly) {
  const token_verifier v({"first-token-0123456789", "second-token-0123456789"});
  EXPECT_TRUE(v.enabled());
  EXPECT_EQ(v.check("Bearer first-token-0123456789"), outcome::ok);
  EXPECT_EQ(v.check("Bearer second-token-0123456789"), outcome::ok);
  EXPECT_EQ(v.check("BEARER second-token-0123456789"), outcome::ok);
  EXPECT_EQ(v.check("Bearer   second-token-0123456789  "), outcome::ok);
  EXPECT_EQ(v.check(""), outcome::missing);
  for (const char* bad : {"Bearer first-token-012345678", "Bearer first-token-01234567890", "Bearer FIRST-token-0123456789",
                          "Bearer", "Bearer ", "Basic first-token-0123456789", "first-token-0123456789",
                          "Bearerfirst-token-0123456789", "Bearer first-token-0123456789 second-token-0123456789"})
    EXPECT_EQ(v.check(bad), outcome::invalid) << bad;
}

TEST(TokenProblem, ShapeOfAToken) {
  EXPECT_FALSE(token_problem("0123456789abcdef"));
  EXPECT_FALSE(token_problem("AbC-._~+/0123456789=="));
  EXPECT_TRUE(token_problem("0123456789abcde"));  // 15 characters
  EXPECT_TRUE(token_problem(std::string(1025, 'a')));
  EXPECT_TRUE(token_problem("0123456789 abcdef"));
  EXPECT_TRUE(token_problem("0123456789abcdef\""));
  EXPECT_TRUE(token_problem("0123456789=abcdef"));
  EXPECT_TRUE(token_problem("================"));
}

}  // namespace
}  // namespace aipbx::http
