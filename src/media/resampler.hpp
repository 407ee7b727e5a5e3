// Sample-rate conversion of 16-bit mono audio, by libspeexdsp's resampler (Debian libspeexdsp-dev,
// <speex/speex_resampler.h>). Pure function, thread-safe (each call has its own resampler state).
//
// `resample` converts a whole buffer: the resampler's leading zeros are skipped and its filter is flushed
// at the end, so the output is aligned with the input and holds exactly
// round(in.size() * to_rate / from_rate) samples. Quality is speexdsp's 0 (fastest) .. 10 (best); the
// default, 4, is speexdsp's own default. Used to bring 8 kHz telephony audio to the 16 kHz the
// recognizers expect.
#pragma once

#include "domain/errc.hpp"

#include <cstdint>
#include <span>
#include <vector>

namespace aipbx::media {

inline constexpr int default_resampler_quality = 4;

// Fails with media_errc::bad_rate when a rate is 0 or above 192 kHz, or quality is outside 0..10.
[[nodiscard]] result<std::vector<std::int16_t>> resample(std::span<const std::int16_t> in, std::uint32_t from_rate,
                                                         std::uint32_t to_rate,
                                                         int quality = default_resampler_quality);

}  // namespace aipbx::media
