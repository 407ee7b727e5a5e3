#include "media/resampler.hpp"

#include "media/media_errc.hpp"

#include <speex/speex_resampler.h>

#include <memory>

namespace aipbx::media {

namespace {

struct state_deleter {
  void operator()(SpeexResamplerState* s) const { speex_resampler_destroy(s); }
};
using state_ptr = std::unique_ptr<SpeexResamplerState, state_deleter>;

}  // namespace

result<std::vector<std::int16_t>> resample(std::span<const std::int16_t> in, std::uint32_t from_rate,
                                           std::uint32_t to_rate, int quality) {
  constexpr std::uint32_t max_rate = 192'000;
  if (from_rate == 0 || to_rate == 0 || from_rate > max_rate || to_rate > max_rate || quality < 0 || quality > 10)
    return make_error_code(media_errc::bad_rate);
  if (from_rate == to_rate) return std::vector<std::int16_t>(in.begin(), in.end());

  const auto expected = static_cast<std::size_t>(
      (static_cast<std::uint64_t>(in.size()) * to_rate + from_rate / 2) / from_rate);
  int err = RESAMPLER_ERR_SUCCESS;
  state_ptr st(speex_resampler_init(1, from_rate, to_rate, quality, &err));
  if (!st || err != RESAMPLER_ERR_SUCCESS) return make_error_code(media_errc::bad_rate);
  speex_resampler_skip_zeros(st.get());

  std::vector<std::int16_t> out(expected + 64);
  std::size_t produced = 0;
  // Feeds `input` until it is consumed or the output is full.
  auto feed = [&](const std::int16_t* data, std::size_t size) {
    while (size > 0 && produced < out.size()) {
      auto in_len = static_cast<spx_uint32_t>(std::min<std::size_t>(size, 1u << 20));
      auto out_len = static_cast<spx_uint32_t>(out.size() - produced);
      speex_resampler_process_int(st.get(), 0, data, &in_len, out.data() + produced, &out_len);
      if (in_len == 0 && out_len == 0) break;
      data += in_len;
      size -= in_len;
      produced += out_len;
    }
  };
  feed(in.data(), in.size());
  // Flush the filter: zeros push the last input samples through.
  const std::vector<std::int16_t> zeros(static_cast<std::size_t>(speex_resampler_get_input_latency(st.get())) + 1, 0);
  while (produced < expected) {
    const std::size_t before = produced;
    feed(zeros.data(), zeros.size());
    if (produced == before) break;
  }
  out.resize(std::min(produced, expected));
  out.resize(expected, 0);
  return out;
}

}  // namespace aipbx::media
