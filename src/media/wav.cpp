#include "media/wav.hpp"

#include "media/media_errc.hpp"

#include <cstring>

namespace aipbx::media {

namespace {

void put_u16(std::uint8_t* p, std::uint16_t v) {
  p[0] = static_cast<std::uint8_t>(v & 0xff);
  p[1] = static_cast<std::uint8_t>(v >> 8);
}

void put_u32(std::uint8_t* p, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<std::uint8_t>((v >> (8 * i)) & 0xff);
}

}  // namespace

result<std::array<std::uint8_t, wav_header_size>> wav_header(std::uint64_t samples, std::uint32_t rate) {
  if (samples > wav_max_samples) return make_error_code(media_errc::too_long);
  if (rate == 0) return make_error_code(media_errc::bad_rate);
  constexpr std::uint16_t channels = 1;
  constexpr std::uint16_t bits = 16;
  constexpr std::uint16_t block_align = channels * bits / 8;
  const auto data_bytes = static_cast<std::uint32_t>(samples * block_align);
  std::array<std::uint8_t, wav_header_size> h{};
  std::memcpy(&h[0], "RIFF", 4);
  put_u32(&h[4], static_cast<std::uint32_t>(wav_header_size - 8) + data_bytes);
  std::memcpy(&h[8], "WAVE", 4);
  std::memcpy(&h[12], "fmt ", 4);
  put_u32(&h[16], 16);  // size of the PCM fmt chunk
  put_u16(&h[20], 1);   // WAVE_FORMAT_PCM
  put_u16(&h[22], channels);
  put_u32(&h[24], rate);
  put_u32(&h[28], rate * block_align);  // byte rate
  put_u16(&h[32], block_align);
  put_u16(&h[34], bits);
  std::memcpy(&h[36], "data", 4);
  put_u32(&h[40], data_bytes);
  return h;
}

result<std::string> wav_file(std::span<const std::int16_t> samples, std::uint32_t rate) {
  auto header = wav_header(samples.size(), rate);
  if (!header) return header.error();
  std::string file;
  file.reserve(wav_header_size + samples.size() * 2);
  file.append(reinterpret_cast<const char*>(header->data()), header->size());
  for (const std::int16_t s : samples) {
    const auto u = static_cast<std::uint16_t>(s);
    file.push_back(static_cast<char>(u & 0xff));
    file.push_back(static_cast<char>(u >> 8));
  }
  return file;
}

}  // namespace aipbx::media
