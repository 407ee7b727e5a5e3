#include "media/audio_codec.hpp"

#include "media/base64.hpp"
#include "media/g711.hpp"
#include "media/media_errc.hpp"

namespace aipbx::media {

result<std::vector<std::int16_t>> decode_audio(media_format format, std::string_view data) {
  if (!format.carries_audio()) return make_error_code(media_errc::no_audio_format);
  auto bytes = base64_decode(data);
  if (!bytes) return bytes.error();
  if (bytes->empty()) return make_error_code(media_errc::empty_audio);
  switch (format.kind) {
    case codec::pcmu: return ulaw_decode(*bytes);
    case codec::pcma: return alaw_decode(*bytes);
    case codec::l16: {
      if (bytes->size() % 2 != 0) return make_error_code(media_errc::odd_length);
      std::vector<std::int16_t> samples(bytes->size() / 2);
      for (std::size_t i = 0; i < samples.size(); ++i)
        samples[i] = static_cast<std::int16_t>(static_cast<std::uint16_t>((*bytes)[2 * i]) |
                                               static_cast<std::uint16_t>((*bytes)[2 * i + 1] << 8));
      return samples;
    }
    case codec::none: break;
  }
  return make_error_code(media_errc::no_audio_format);
}

result<std::size_t> check_audio(media_format format, std::string_view data) {
  if (!format.carries_audio()) return make_error_code(media_errc::no_audio_format);
  auto bytes = base64_decoded_size(data);
  if (!bytes) return bytes.error();
  if (*bytes == 0) return make_error_code(media_errc::empty_audio);
  if (*bytes % format.bytes_per_sample() != 0) return make_error_code(media_errc::odd_length);
  return *bytes / format.bytes_per_sample();
}

std::string encode_audio(media_format format, std::span<const std::int16_t> samples) {
  switch (format.kind) {
    case codec::pcmu: return base64_encode(ulaw_encode(samples));
    case codec::pcma: return base64_encode(alaw_encode(samples));
    case codec::l16: {
      std::vector<std::uint8_t> bytes;
      bytes.reserve(samples.size() * 2);
      for (const std::int16_t s : samples) {
        const auto u = static_cast<std::uint16_t>(s);
        bytes.push_back(static_cast<std::uint8_t>(u & 0xff));
        bytes.push_back(static_cast<std::uint8_t>(u >> 8));
      }
      return base64_encode(bytes);
    }
    case codec::none: break;
  }
  return {};
}

}  // namespace aipbx::media
