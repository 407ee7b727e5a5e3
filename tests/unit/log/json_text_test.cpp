#include "log/json_text.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <cstdint>
#include <limits>
#include <random>
#include <string>

namespace aipbx {
namespace {

namespace json = boost::json;

// Everything but numbers with a fraction is written exactly as boost::json::serialize writes it.
TEST(JsonText, WritesStringsIntegersAndLiteralsAsBoostDoes) {
  std::mt19937_64 random(7);
  for (int i = 0; i < 2000; ++i) {
    std::string s(random() % 40, '\0');
    for (auto& c : s) c = static_cast<char>(random() % 256);  // control characters, quotes, any byte
    const json::value v = json::object{{s, s},
                                       {"n", static_cast<std::int64_t>(random())},
                                       {"u", std::numeric_limits<std::uint64_t>::max()},
                                       {"neg", std::numeric_limits<std::int64_t>::min()},
                                       {"list", json::array{true, false, nullptr, json::string(s), json::object{}}}};
    EXPECT_EQ(to_json_text(v), json::serialize(v));
  }
}

TEST(JsonText, NumbersWithAFractionInTheirShortestForm) {
  EXPECT_EQ(to_json_text(json::value(1700000000.25)), "1700000000.25");
  EXPECT_EQ(to_json_text(json::value(5.0)), "5.0");
  EXPECT_EQ(to_json_text(json::value(std::numeric_limits<double>::infinity())), "null");
  const json::value back = json::parse(to_json_text(json::value(0.1 + 0.2)));
  EXPECT_EQ(back.as_double(), 0.1 + 0.2);
}

}  // namespace
}  // namespace aipbx
