// Base64 (RFC 4648, standard alphabet, padded) of packet `data`. Pure, thread-safe.
//
// The codec is Boost.Beast's (boost/beast/core/detail/base64.hpp). Beast's decoder is lenient: it stops
// quietly at the first character outside the alphabet. The strict checks around it are ours: the length
// is a multiple of 4, every character is in the alphabet, and `=` appears only as one or two characters of
// padding at the end. No whitespace or line breaks are allowed (CPaaS media streams send none). Bits left
// over in the last character are ignored, as RFC 4648 allows.
#pragma once

#include "domain/errc.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace aipbx::media {

// Fails with media_errc::bad_base64. The empty string decodes to no bytes.
[[nodiscard]] result<std::vector<std::uint8_t>> base64_decode(std::string_view text);
std::string base64_encode(std::span<const std::uint8_t> bytes);
// The same checks without decoding: how many bytes `text` decodes to, or media_errc::bad_base64. Allocates
// nothing (the ingest path checks every packet with it).
[[nodiscard]] result<std::size_t> base64_decoded_size(std::string_view text);

}  // namespace aipbx::media
