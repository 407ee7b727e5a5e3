#include "media/audio_codec.hpp"

#include "media/g711.hpp"
#include "media/media_errc.hpp"

#include <gtest/gtest.h>

#include <span>

#include <vector>

namespace aipbx::media {
namespace {

TEST(AudioCodec, L16IsLittleEndian) {
  // 0x0201, 0xFFFE (-2), 0x7FFF
  auto samples = decode_audio(media_format::l16(8000), "AQL+/9f/");
  ASSERT_TRUE(samples);
  // bytes 01 02 fe ff d7 ff
  EXPECT_EQ(*samples, (std::vector<std::int16_t>{0x0201, -2, -41}));
  EXPECT_EQ(encode_audio(media_format::l16(16000), *samples), "AQL+/9f/");
}

TEST(AudioCodec, G711DataDecodesByteBySample) {
  const std::vector<std::int16_t> pcm{0, 1000, -1000, 20000, -20000};
  for (auto format : {media_format::pcmu(), media_format::pcma()}) {
    auto data = encode_audio(format, pcm);
    auto back = decode_audio(format, data);
    ASSERT_TRUE(back);
    ASSERT_EQ(back->size(), pcm.size());
    for (std::size_t i = 0; i < pcm.size(); ++i) {
      const auto expected = format == media_format::pcmu() ? ulaw_decode(ulaw_encode(pcm[i]))
                                                           : alaw_decode(alaw_encode(pcm[i]));
      EXPECT_EQ((*back)[i], expected);
    }
  }
}

TEST(AudioCodec, RefusesDataThatIsNotAudioInTheFormat) {
  EXPECT_EQ(decode_audio(media_format::pcmu(), "audio_payload").error(), make_error_code(media_errc::bad_base64));
  EXPECT_EQ(decode_audio(media_format::pcmu(), "").error(), make_error_code(media_errc::empty_audio));
  EXPECT_EQ(decode_audio(media_format::l16(8000), "AQL+/9c=").error(), make_error_code(media_errc::odd_length));
  EXPECT_EQ(decode_audio(media_format::none(), "AQI=").error(), make_error_code(media_errc::no_audio_format));
  EXPECT_EQ(encode_audio(media_format::none(), std::vector<std::int16_t>{1, 2}), "");
}

TEST(AudioCodec, CheckAgreesWithDecode) {
  const std::vector<std::int16_t> pcm{0, 1000, -1000, 32767, -32768, 7};
  for (auto format : {media_format::pcmu(), media_format::pcma(), media_format::l16(8000), media_format::l16(16000)}) {
    for (std::size_t n = 0; n <= pcm.size(); ++n) {
      const std::string data = encode_audio(format, std::span(pcm).first(n));
      auto checked = check_audio(format, data);
      auto decoded = decode_audio(format, data);
      ASSERT_EQ(checked.has_value(), decoded.has_value()) << data;
      if (checked) EXPECT_EQ(*checked, decoded->size());
      else EXPECT_EQ(checked.error(), decoded.error());
    }
    for (const char* bad : {"audio_payload", "", "AQL+/9c=", "AQ=="})
      if (auto d = decode_audio(format, bad); !d) {
        EXPECT_EQ(check_audio(format, bad).error(), d.error()) << bad;
      }
  }
  EXPECT_EQ(check_audio(media_format::none(), "AQI=").error(), make_error_code(media_errc::no_audio_format));
}

}  // namespace
}  // namespace aipbx::media
