#include "media/base64.hpp"

#include "media/media_errc.hpp"

#include <gtest/gtest.h>

#include <span>
#include <string>
#include <vector>

namespace aipbx::media {
namespace {

std::string text_of(const std::vector<std::uint8_t>& bytes) { return {bytes.begin(), bytes.end()}; }

std::vector<std::uint8_t> bytes_of(std::string_view s) { return {s.begin(), s.end()}; }

TEST(Base64, DecodesTheRfc4648TestVectors) {
  const std::pair<const char*, const char*> vectors[] = {
      {"", ""}, {"f", "Zg=="}, {"fo", "Zm8="}, {"foo", "Zm9v"},
      {"foob", "Zm9vYg=="}, {"fooba", "Zm9vYmE="}, {"foobar", "Zm9vYmFy"}};
  for (const auto& [plain, encoded] : vectors) {
    auto decoded = base64_decode(encoded);
    ASSERT_TRUE(decoded) << encoded;
    EXPECT_EQ(text_of(*decoded), plain);
    EXPECT_EQ(base64_encode(bytes_of(plain)), encoded);
  }
}

TEST(Base64, RoundTripsEveryByteValue) {
  std::vector<std::uint8_t> all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<std::uint8_t>(i));
  for (std::size_t n = 0; n <= all.size(); n += 37) {
    std::vector<std::uint8_t> part(all.begin(), all.begin() + static_cast<std::ptrdiff_t>(n));
    auto back = base64_decode(base64_encode(part));
    ASSERT_TRUE(back);
    EXPECT_EQ(*back, part);
  }
}

TEST(Base64, RefusesWhatIsNotPaddedBase64) {
  for (const char* bad : {"Zg", "Zg=", "Zm9", "Z===", "====", "Zm9v!A==", "Zm 9v", "Zm9v\n", "Zg==Zg==",
                          "Z=g=", "=Zm9", "Zm9v-_==", "audio_payload", "Zm9vYmFy="}) {
    auto decoded = base64_decode(bad);
    ASSERT_FALSE(decoded) << bad;
    EXPECT_EQ(decoded.error(), make_error_code(media_errc::bad_base64)) << bad;
    EXPECT_EQ(decoded.error().message(), "data is not valid base64");
    EXPECT_EQ(base64_decoded_size(bad).error(), make_error_code(media_errc::bad_base64)) << bad;
  }
}

TEST(Base64, DecodedSizeAgreesWithTheDecoder) {
  std::vector<std::uint8_t> all;
  for (int i = 0; i < 256; ++i) all.push_back(static_cast<std::uint8_t>(i));
  for (std::size_t n = 0; n <= 40; ++n) {
    const std::string text = base64_encode(std::span(all).first(n));
    auto size = base64_decoded_size(text);
    ASSERT_TRUE(size) << text;
    EXPECT_EQ(*size, n);
  }
  // Every character of the input is checked, not only its length and padding.
  for (std::size_t i = 0; i < 8; ++i) {
    std::string text = "Zm9vYmFy";
    text[i] = '*';
    EXPECT_FALSE(base64_decoded_size(text)) << text;
  }
}

}  // namespace
}  // namespace aipbx::media
