#include "domain/call_id.hpp"

#include <gtest/gtest.h>

#include <string>
#include <string_view>

namespace aipbx {
namespace {

TEST(CallId, AcceptsEveryAllowedCharacter) {
  const std::string all =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._:@+=-";
  EXPECT_TRUE(is_valid_call_id(all));
  for (char c : all) {
    if (c == '.') continue;  // a lone dot is a path segment, not an id (see RejectsDotsAlone)
    EXPECT_TRUE(is_valid_call_id(std::string(1, c))) << "'" << c << "'";
  }
}

TEST(CallId, RejectsDotsAlone) {
  EXPECT_FALSE(is_valid_call_id("."));
  EXPECT_FALSE(is_valid_call_id(".."));
  EXPECT_FALSE(is_valid_call_id("...."));
  EXPECT_TRUE(is_valid_call_id(".a"));
  EXPECT_TRUE(is_valid_call_id("a..b"));
}

TEST(CallId, AcceptsRealWorldIdentifiers) {
  EXPECT_TRUE(is_valid_call_id("call-123"));
  EXPECT_TRUE(is_valid_call_id("0f8fad5b-d9cb-469f-a165-70867728950e"));  // UUID
  EXPECT_TRUE(is_valid_call_id("a84b4c76e66710@pc33.example.com"));       // SIP Call-ID
  EXPECT_TRUE(is_valid_call_id("+14155550123"));                          // E.164
  EXPECT_TRUE(is_valid_call_id("MZ18ad3ab5a668481ce02b83e7395059f0"));    // CPaaS stream id
  EXPECT_TRUE(is_valid_call_id("a=b:c_d.e"));
}

TEST(CallId, LengthLimits) {
  EXPECT_EQ(max_call_id_length, 128u);
  EXPECT_TRUE(is_valid_call_id("x"));
  EXPECT_TRUE(is_valid_call_id(std::string(127, 'a')));
  EXPECT_TRUE(is_valid_call_id(std::string(128, 'a')));
  EXPECT_FALSE(is_valid_call_id(std::string(129, 'a')));
  EXPECT_FALSE(is_valid_call_id(std::string(10'000, 'a')));
  EXPECT_FALSE(is_valid_call_id(""));
}

TEST(CallId, RejectsCharactersOutsideTheSet) {
  for (std::string_view bad : {"a/b", "/", "a b", " ", "a%20b", "%", "a?b", "a#b", "a\\b", "a\"b", "a'b", "a,b",
                               "a;b", "a<b", "a>b", "a*b", "a~b", "a!b", "a$b", "a&b", "a(b", "a[b", "a{b",
                               "a|b", "a^b", "a`b", "a\tb", "a\nb", "a\rb", "trailing ", "\x7f"}) {
    EXPECT_FALSE(is_valid_call_id(bad)) << "'" << bad << "'";
  }
}

TEST(CallId, RejectsNonAscii) {
  EXPECT_FALSE(is_valid_call_id("caf\xc3\xa9"));              // é in UTF-8
  EXPECT_FALSE(is_valid_call_id("\xe2\x98\x8e"));             // ☎
  EXPECT_FALSE(is_valid_call_id("\xf0\x9f\x93\x9e-call"));    // 📞
  EXPECT_FALSE(is_valid_call_id("\xff"));                     // not UTF-8 at all
}

TEST(CallId, RejectsEmbeddedNul) {
  EXPECT_FALSE(is_valid_call_id(std::string_view("ab\0cd", 5)));
  EXPECT_FALSE(is_valid_call_id(std::string_view("\0", 1)));
  EXPECT_FALSE(is_valid_call_id(std::string_view("abc\0", 4)));
}

TEST(CallId, PatternDocumentsTheSameRule) {
  EXPECT_EQ(call_id_pattern, "^(?!\\.+$)[A-Za-z0-9._:@+=-]{1,128}$");
}

}  // namespace
}  // namespace aipbx
