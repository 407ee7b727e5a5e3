// A packet's `data` <-> 16-bit linear samples, in a media_format. Pure, thread-safe.
//
// Decoding is base64 first (media/base64.hpp), then the codec: G.711 codes expand one byte to one sample
// (media/g711.hpp); l16 is read as little-endian pairs whatever the host's byte order. The samples stay at
// the format's rate (resample with media/resampler.hpp).
#pragma once

#include "domain/errc.hpp"
#include "media/media_format.hpp"

#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace aipbx::media {

// Fails with media_errc: no_audio_format (format none), bad_base64, empty_audio, odd_length (l16).
[[nodiscard]] result<std::vector<std::int16_t>> decode_audio(media_format format, std::string_view data);

// Checks that `data` would decode in `format` (the same failures as decode_audio) without decoding it,
// and answers its sample count. Allocates nothing: ingest checks every packet with it.
[[nodiscard]] result<std::size_t> check_audio(media_format format, std::string_view data);

// The base64 `data` of `samples` in `format` (for senders and tests). Format none yields "".
std::string encode_audio(media_format format, std::span<const std::int16_t> samples);

}  // namespace aipbx::media
