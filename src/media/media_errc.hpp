// Why call audio could not be decoded or written. The media layer's own error codes, in their own
// category ("aipbx.media"), so each failure carries a sentence a client can read: ingest will answer an
// undecodable packet with a 422 carrying `message()`, and an engine records it as a permanent failure.
#pragma once

#include <boost/system/error_code.hpp>

#include <type_traits>

namespace aipbx::media {

enum class media_errc {
  ok = 0,
  bad_base64,      // `data` is not padded base64 (RFC 4648, standard alphabet)
  empty_audio,     // `data` decodes to no samples
  odd_length,      // 16-bit PCM data has an odd number of bytes
  no_audio_format, // the format is `none`: the data is opaque text, not audio
  too_long,        // more audio than one WAV file can hold (4 GiB)
  bad_rate,        // a sample rate the operation does not support
};

const boost::system::error_category& media_category() noexcept;

inline boost::system::error_code make_error_code(media_errc e) noexcept {
  return {static_cast<int>(e), media_category()};
}

}  // namespace aipbx::media

template <>
struct boost::system::is_error_code_enum<aipbx::media::media_errc> : std::true_type {};
