#include "media/base64.hpp"

#include "media/media_errc.hpp"

#include <boost/beast/core/detail/base64.hpp>

#include <array>

namespace aipbx::media {

namespace base64 = boost::beast::detail::base64;

result<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
  if (text.size() % 4 != 0) return make_error_code(media_errc::bad_base64);
  std::size_t padding = 0;
  while (padding < text.size() && padding < 3 && text[text.size() - 1 - padding] == '=') ++padding;
  if (padding > 2) return make_error_code(media_errc::bad_base64);
  std::vector<std::uint8_t> bytes(base64::decoded_size(text.size()));
  const auto [written, read] = base64::decode(bytes.data(), text.data(), text.size());
  // Beast stops at the first '=' or character outside the alphabet: anything but the padding left unread
  // is an error.
  if (read != text.size() - padding) return make_error_code(media_errc::bad_base64);
  bytes.resize(written);
  return bytes;
}

result<std::size_t> base64_decoded_size(std::string_view text) {
  static constexpr auto alphabet = [] {
    std::array<bool, 256> in{};
    for (char c = 'A'; c <= 'Z'; ++c) in[static_cast<unsigned char>(c)] = true;
    for (char c = 'a'; c <= 'z'; ++c) in[static_cast<unsigned char>(c)] = true;
    for (char c = '0'; c <= '9'; ++c) in[static_cast<unsigned char>(c)] = true;
    in['+'] = in['/'] = true;
    return in;
  }();
  if (text.size() % 4 != 0) return make_error_code(media_errc::bad_base64);
  std::size_t padding = 0;
  while (padding < text.size() && padding < 2 && text[text.size() - 1 - padding] == '=') ++padding;
  const std::size_t body = text.size() - padding;
  for (std::size_t i = 0; i < body; ++i)
    if (!alphabet[static_cast<unsigned char>(text[i])]) return make_error_code(media_errc::bad_base64);
  return text.size() / 4 * 3 - padding;
}

std::string base64_encode(std::span<const std::uint8_t> bytes) {
  std::string text(base64::encoded_size(bytes.size()), '\0');
  text.resize(base64::encode(text.data(), bytes.data(), bytes.size()));
  return text;
}

}  // namespace aipbx::media
