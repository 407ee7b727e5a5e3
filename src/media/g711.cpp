#include "media/g711.hpp"

#include <stdint.h>  // spandsp's headers expect the C fixed-width types in the global namespace

#include <spandsp/telephony.h>
#include <spandsp/bit_operations.h>
#include <spandsp/g711.h>

namespace aipbx::media {

std::int16_t ulaw_decode(std::uint8_t code) { return ::ulaw_to_linear(code); }
std::uint8_t ulaw_encode(std::int16_t sample) { return ::linear_to_ulaw(sample); }
std::int16_t alaw_decode(std::uint8_t code) { return ::alaw_to_linear(code); }
std::uint8_t alaw_encode(std::int16_t sample) { return ::linear_to_alaw(sample); }

namespace {

template <class Out, class In, class F>
std::vector<Out> map_all(std::span<const In> in, F f) {
  std::vector<Out> out;
  out.reserve(in.size());
  for (const In v : in) out.push_back(f(v));
  return out;
}

}  // namespace

std::vector<std::int16_t> ulaw_decode(std::span<const std::uint8_t> codes) {
  return map_all<std::int16_t>(codes, [](std::uint8_t c) { return ::ulaw_to_linear(c); });
}
std::vector<std::uint8_t> ulaw_encode(std::span<const std::int16_t> samples) {
  return map_all<std::uint8_t>(samples, [](std::int16_t s) { return ::linear_to_ulaw(s); });
}
std::vector<std::int16_t> alaw_decode(std::span<const std::uint8_t> codes) {
  return map_all<std::int16_t>(codes, [](std::uint8_t c) { return ::alaw_to_linear(c); });
}
std::vector<std::uint8_t> alaw_encode(std::span<const std::int16_t> samples) {
  return map_all<std::uint8_t>(samples, [](std::int16_t s) { return ::linear_to_alaw(s); });
}

}  // namespace aipbx::media
