// G.711 (ITU-T, 1988) mu-law and A-law companding: one 8-bit code per sample, 8 kHz. Pure, thread-safe.
//
// The conversions are spandsp's (Debian libspandsp-dev, <spandsp/g711.h>), wrapped so no spandsp header
// leaks into aipbx. Linear samples are 16-bit: the standard's mu-law decoder outputs (14-bit, up to 8031)
// are scaled by 4 (up to 32124), its A-law outputs (13-bit, up to 4032) by 8 (up to 32256). Encoding
// picks the quantization interval of G.711's tables (mu-law without the optional zero-code trap).
#pragma once

#include <cstdint>
#include <span>
#include <vector>

namespace aipbx::media {

std::int16_t ulaw_decode(std::uint8_t code);
std::uint8_t ulaw_encode(std::int16_t sample);
std::int16_t alaw_decode(std::uint8_t code);
std::uint8_t alaw_encode(std::int16_t sample);

std::vector<std::int16_t> ulaw_decode(std::span<const std::uint8_t> codes);
std::vector<std::uint8_t> ulaw_encode(std::span<const std::int16_t> samples);
std::vector<std::int16_t> alaw_decode(std::span<const std::uint8_t> codes);
std::vector<std::uint8_t> alaw_encode(std::span<const std::int16_t> samples);

}  // namespace aipbx::media
