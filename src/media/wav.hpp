// WAV files (RIFF, WAVE_FORMAT_PCM, 16-bit, mono) of 16-bit samples. Pure, thread-safe.
//
// Hand-written: the file is a fixed 44-byte header followed by the samples in little-endian order; the
// packaged writers (libsndfile) write to files or need virtual-I/O callbacks to build one in memory, which
// is more code than the header itself. The header can be had alone for streaming a file whose length is
// known in advance.
#pragma once

#include "domain/errc.hpp"

#include <array>
#include <cstdint>
#include <span>
#include <string>

namespace aipbx::media {

inline constexpr std::size_t wav_header_size = 44;
// The most samples one WAV file can describe (its RIFF size field is 32 bits).
inline constexpr std::uint64_t wav_max_samples = (0xffffffffull - (wav_header_size - 8)) / 2;

// Fails with media_errc::too_long above wav_max_samples, bad_rate for a rate of 0.
[[nodiscard]] result<std::array<std::uint8_t, wav_header_size>> wav_header(std::uint64_t samples,
                                                                          std::uint32_t rate);
// The whole file: header and samples. Same failures as wav_header.
[[nodiscard]] result<std::string> wav_file(std::span<const std::int16_t> samples, std::uint32_t rate);

}  // namespace aipbx::media
