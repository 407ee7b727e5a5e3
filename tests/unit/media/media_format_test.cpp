#include "media/media_format.hpp"

#include <gtest/gtest.h>

namespace aipbx::media {
namespace {

TEST(MediaFormat, ParsesTheFiveFormsAndWritesThemBack) {
  for (const char* text : {"none", "pcmu/8000", "pcma/8000", "l16/8000", "l16/16000"}) {
    auto f = parse_media_format(text);
    ASSERT_TRUE(f) << text;
    EXPECT_EQ(to_string(*f), text);
  }
  EXPECT_EQ(parse_media_format("pcmu/8000"), media_format::pcmu());
  EXPECT_EQ(parse_media_format("PCMA/8000"), media_format::pcma());
  EXPECT_EQ(parse_media_format("L16/16000"), media_format::l16(16000));
  EXPECT_EQ(parse_media_format("none"), media_format::none());
}

TEST(MediaFormat, RefusesOtherForms) {
  for (const char* text : {"", "pcmu", "pcmu/16000", "pcma/16000", "l16/44000", "l16/22050", "l16", "l16/", "l16/+8000",
                           "l16/08000", "opus/48000", "pcmu/8000 ", "none/8000", "pcmu//8000"})
    EXPECT_FALSE(parse_media_format(text)) << text;
}

TEST(MediaFormat, TakesL16AtAsterisksSignedLinearRates) {
  for (std::uint32_t rate : {8000u, 12000u, 16000u, 24000u, 32000u, 44100u, 48000u, 96000u, 192000u}) {
    const auto f = parse_media_format("L16/" + std::to_string(rate));
    ASSERT_TRUE(f) << rate;
    EXPECT_EQ(*f, media_format::l16(rate));
    EXPECT_EQ(to_string(*f), "l16/" + std::to_string(rate));
  }
}

TEST(MediaFormat, SaysWhetherItCarriesAudio) {
  EXPECT_FALSE(media_format::none().carries_audio());
  EXPECT_TRUE(media_format::pcmu().carries_audio());
  EXPECT_EQ(media_format::pcma().bytes_per_sample(), 1u);
  EXPECT_EQ(media_format::l16(8000).bytes_per_sample(), 2u);
  EXPECT_EQ(media_format::none().bytes_per_sample(), 0u);
}

}  // namespace
}  // namespace aipbx::media
