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

TEST(TokenVerifier, AStreamMayBringItsTokenByBearerBasicAuthOrQuery) {
  const token_verifier v({"first-token-0123456789"});
  // Basic auth: any user name, the token as password ("aipbx:first-token-0123456789", base64).
  EXPECT_EQ(v.check_stream("Basic YWlwYng6Zmlyc3QtdG9rZW4tMDEyMzQ1Njc4OQ==", ""), outcome::ok);
  EXPECT_EQ(v.check_stream("basic  YWlwYng6Zmlyc3QtdG9rZW4tMDEyMzQ1Njc4OQ==", ""), outcome::ok);
  EXPECT_EQ(v.check_stream("Basic YWlwYng6d3Jvbmc=", ""), outcome::invalid);  // aipbx:wrong
  EXPECT_EQ(v.check_stream("Basic not base64!", ""), outcome::invalid);
  EXPECT_EQ(v.check_stream("Basic Zmlyc3QtdG9rZW4tMDEyMzQ1Njc4OQ==", ""), outcome::invalid);  // no colon
  EXPECT_EQ(v.check_stream("Bearer first-token-0123456789", ""), outcome::ok);
  EXPECT_EQ(v.check_stream("Bearer other", "first-token-0123456789"), outcome::invalid);  // the header decides
  EXPECT_EQ(v.check_stream("", "first-token-0123456789"), outcome::ok);
  EXPECT_EQ(v.check_stream("", "first-token-012345678"), outcome::invalid);
  EXPECT_EQ(v.check_stream("", ""), outcome::missing);
  EXPECT_TRUE(v.matches("first-token-0123456789"));
  EXPECT_FALSE(v.matches("first-token-012345678"));
  EXPECT_EQ(token_verifier().check_stream("", ""), outcome::ok);
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
