#include "media/media_errc.hpp"

#include <string>

namespace aipbx::media {

namespace {

class category final : public boost::system::error_category {
 public:
  const char* name() const noexcept override { return "aipbx.media"; }
  std::string message(int value) const override {
    switch (static_cast<media_errc>(value)) {
      case media_errc::ok: return "no error";
      case media_errc::bad_base64: return "data is not valid base64";
      case media_errc::empty_audio: return "data holds no audio";
      case media_errc::odd_length: return "16-bit PCM data has an odd number of bytes";
      case media_errc::no_audio_format: return "the call declares no audio format";
      case media_errc::too_long: return "the audio is too long for one WAV file";
      case media_errc::bad_rate: return "unsupported sample rate";
    }
    return "unknown media error";
  }
};

}  // namespace

const boost::system::error_category& media_category() noexcept {
  static const category instance;
  return instance;
}

}  // namespace aipbx::media
