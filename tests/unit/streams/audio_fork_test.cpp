#include "streams/audio_fork.hpp"

#include <gtest/gtest.h>

#include <optional>
#include <string>
#include <utility>
#include <variant>
#include <vector>

#include "domain/call_id.hpp"
#include "domain/call_state.hpp"

namespace aipbx::streams::audio_fork {
namespace {

using query_list = std::vector<std::pair<std::string, std::string>>;

stream_request request_of(std::optional<std::string> path_call_id, query_list query = {}) {
  stream_request r;
  r.kind = protocol::audio_fork;
  r.call_id = std::move(path_call_id);
  r.query = std::move(query);
  r.authenticated = true;
  return r;
}

// The resolved parameters, or a failed assertion with the refusal.
params resolved(const stream_request& r, std::optional<std::string_view> metadata = std::nullopt) {
  auto out = resolve(r, metadata);
  if (const auto* error = std::get_if<std::string>(&out)) {
    ADD_FAILURE() << "refused: " << *error;
    return {};
  }
  return std::get<params>(std::move(out));
}

// The refusal, or "" (with a failed assertion) when the parameters resolved.
std::string refusal(const stream_request& r, std::optional<std::string_view> metadata = std::nullopt) {
  auto out = resolve(r, metadata);
  if (const auto* error = std::get_if<std::string>(&out)) return *error;
  ADD_FAILURE() << "resolved, for call " << std::get<params>(out).call_id;
  return "";
}

std::string format_text(const params& p) {
  return media::to_string(p.format);
}

std::string header(std::uint64_t sequence) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, sequence >>= 8)
    out[static_cast<std::size_t>(i)] = static_cast<char>(sequence & 0xff);
  return out;
}

TEST(AudioForkResolve, DefaultsAreMonoL16At8000In20MsPackets) {
  const auto p = resolved(request_of("call-1"));
  EXPECT_EQ(p.call_id, "call-1");
  EXPECT_EQ(format_text(p), "l16/8000");
  EXPECT_EQ(p.channels, 1u);
  EXPECT_EQ(p.packet_ms, 20);
  EXPECT_FALSE(p.sequenced);
}

TEST(AudioForkResolve, TheCallIdOfThePathWinsOverMetadataAndQuery) {
  const auto p = resolved(request_of("from-path", {{"call_id", "from-query"}}), R"({"call_id":"from-meta"})");
  EXPECT_EQ(p.call_id, "from-path");
}

TEST(AudioForkResolve, TheCallIdOfTheMetadataWinsOverTheQuery) {
  const auto r = request_of(std::nullopt, {{"call_id", "from-query"}});
  EXPECT_EQ(resolved(r, R"({"call_id":"from-meta"})").call_id, "from-meta");
  EXPECT_EQ(resolved(r, R"({"callSid":"CA123"})").call_id, "CA123");
  EXPECT_EQ(resolved(r, R"({"uuid":"0b3d5e9a-8f1c-4d2e-9a7b-6c5d4e3f2a1b"})").call_id,
            "0b3d5e9a-8f1c-4d2e-9a7b-6c5d4e3f2a1b");
}

TEST(AudioForkResolve, MetadataCallIdWinsOverCallSidAndUuid) {
  const auto r = request_of(std::nullopt);
  EXPECT_EQ(resolved(r, R"({"uuid":"u-1","callSid":"CA1","call_id":"c-1"})").call_id, "c-1");
  EXPECT_EQ(resolved(r, R"({"uuid":"u-1","callSid":"CA1"})").call_id, "CA1");
}

TEST(AudioForkResolve, ANumericMetadataCallIdIsItsDecimalText) {
  EXPECT_EQ(resolved(request_of(std::nullopt), R"({"call_id":42})").call_id, "42");
}

TEST(AudioForkResolve, TheQueryCallIdServesWhenNothingElseNamesTheCall) {
  const auto r = request_of(std::nullopt, {{"call_id", "from-query"}});
  EXPECT_EQ(resolved(r).call_id, "from-query");
  EXPECT_EQ(resolved(r, R"({"codec":"L16"})").call_id, "from-query");
  EXPECT_EQ(resolved(r, "FreeSWITCH metadata, not JSON").call_id, "from-query");
}

TEST(AudioForkResolve, AnEmptyMetadataCallIdSaysNothing) {
  const auto r = request_of(std::nullopt, {{"call_id", "from-query"}});
  EXPECT_EQ(resolved(r, R"({"call_id":"","callSid":"CA9"})").call_id, "CA9");
  EXPECT_EQ(resolved(r, R"({"call_id":""})").call_id, "from-query");
}

TEST(AudioForkResolve, MetadataThatIsNotAJsonObjectIsFine) {
  for (const char* metadata :
       {"", "hello from freeswitch", "{\"call_id\":", "[\"call_id\",\"x\"]", "\"x\"", "17"}) {
    const auto p = resolved(request_of("call-1"), metadata);
    EXPECT_EQ(p.call_id, "call-1") << metadata;
    EXPECT_EQ(format_text(p), "l16/8000") << metadata;
    EXPECT_EQ(p.channels, 1u) << metadata;
  }
}

TEST(AudioForkResolve, FormatFromTheQuery) {
  EXPECT_EQ(format_text(resolved(request_of("c", {{"format", "pcmu/8000"}}))), "pcmu/8000");
  EXPECT_EQ(format_text(resolved(request_of("c", {{"format", "pcma/8000"}}))), "pcma/8000");
  EXPECT_EQ(format_text(resolved(request_of("c", {{"format", "l16/16000"}}))), "l16/16000");
  EXPECT_EQ(format_text(resolved(request_of("c", {{"format", "PCMU/8000"}}))), "pcmu/8000");
}

TEST(AudioForkResolve, RateFromTheQueryIsL16AtThatRate) {
  EXPECT_EQ(format_text(resolved(request_of("c", {{"rate", "8000"}}))), "l16/8000");
  EXPECT_EQ(format_text(resolved(request_of("c", {{"rate", "16000"}}))), "l16/16000");
  EXPECT_EQ(format_text(resolved(request_of("c", {{"rate", "8k"}}))), "l16/8000");
  EXPECT_EQ(format_text(resolved(request_of("c", {{"rate", "16k"}}))), "l16/16000");
  EXPECT_EQ(format_text(resolved(request_of("c", {{"rate", "16K"}}))), "l16/16000");
}

TEST(AudioForkResolve, FormatAndRateFromTheMetadata) {
  EXPECT_EQ(format_text(resolved(request_of("c"), R"({"format":"pcma/8000"})")), "pcma/8000");
  EXPECT_EQ(format_text(resolved(request_of("c"), R"({"sampleRate":16000})")), "l16/16000");
  EXPECT_EQ(format_text(resolved(request_of("c"), R"({"sampleRate":"16k"})")), "l16/16000");
  EXPECT_EQ(format_text(resolved(request_of("c"), R"({"sample_rate":"8000"})")), "l16/8000");
  EXPECT_EQ(format_text(resolved(request_of("c"), R"({"rate":16000})")), "l16/16000");
}

TEST(AudioForkResolve, TheQueryWinsOverTheMetadataForFormatAndRate) {
  EXPECT_EQ(format_text(resolved(request_of("c", {{"format", "pcmu/8000"}}), R"({"format":"l16/16000"})")),
            "pcmu/8000");
  EXPECT_EQ(format_text(resolved(request_of("c", {{"rate", "16k"}}), R"({"sampleRate":8000})")), "l16/16000");
  // A query rate sets the format too: the metadata's format is not mixed in.
  EXPECT_EQ(format_text(resolved(request_of("c", {{"rate", "16000"}}), R"({"format":"pcmu/8000"})")),
            "l16/16000");
  // An unsupported query format is refused even when the metadata's would do.
  EXPECT_EQ(refusal(request_of("c", {{"format", "opus/48000"}}), R"({"format":"pcmu/8000"})"),
            "unsupported format 'opus/48000'");
}

TEST(AudioForkResolve, StereoMixIsTwoChannels) {
  EXPECT_EQ(resolved(request_of("c", {{"mix", "stereo"}})).channels, 2u);
  EXPECT_EQ(resolved(request_of("c", {{"mix", "mono"}})).channels, 1u);
  EXPECT_EQ(resolved(request_of("c", {{"mix", "mixed"}})).channels, 1u);
  EXPECT_EQ(resolved(request_of("c"), R"({"mixType":"stereo"})").channels, 2u);
  EXPECT_EQ(resolved(request_of("c"), R"({"mix_type":"stereo"})").channels, 2u);
}

TEST(AudioForkResolve, Channels) {
  EXPECT_EQ(resolved(request_of("c", {{"channels", "2"}})).channels, 2u);
  EXPECT_EQ(resolved(request_of("c", {{"channels", "1"}})).channels, 1u);
  EXPECT_EQ(resolved(request_of("c"), R"({"channels":2})").channels, 2u);
  EXPECT_EQ(resolved(request_of("c"), R"({"channels":"2"})").channels, 2u);
}

TEST(AudioForkResolve, TheQueryWinsOverTheMetadataForChannelsAndMix) {
  EXPECT_EQ(resolved(request_of("c", {{"channels", "1"}}), R"({"channels":2})").channels, 1u);
  EXPECT_EQ(resolved(request_of("c", {{"mix", "mono"}}), R"({"mixType":"stereo"})").channels, 1u);
  EXPECT_EQ(resolved(request_of("c", {{"channels", "2"}}), R"({"mixType":"mono"})").channels, 2u);
}

TEST(AudioForkResolve, PacketMs) {
  EXPECT_EQ(resolved(request_of("c", {{"packet_ms", "1"}})).packet_ms, 1);
  EXPECT_EQ(resolved(request_of("c", {{"packet_ms", "1000"}})).packet_ms, 1000);
  EXPECT_EQ(resolved(request_of("c"), R"({"packet_ms":40})").packet_ms, 40);
  EXPECT_EQ(resolved(request_of("c", {{"packet_ms", "60"}}), R"({"packet_ms":40})").packet_ms, 60);
}

TEST(AudioForkResolve, Sequenced) {
  for (const char* yes : {"1", "true", "yes"})
    EXPECT_TRUE(resolved(request_of("c", {{"sequenced", yes}})).sequenced);
  for (const char* no : {"0", "false", "no", ""})
    EXPECT_FALSE(resolved(request_of("c", {{"sequenced", no}})).sequenced);
  EXPECT_TRUE(resolved(request_of("c"), R"({"sequenced":true})").sequenced);
  EXPECT_TRUE(resolved(request_of("c"), R"({"sequenced":"1"})").sequenced);
  EXPECT_FALSE(resolved(request_of("c"), R"({"sequenced":false})").sequenced);
  EXPECT_FALSE(resolved(request_of("c", {{"sequenced", "0"}}), R"({"sequenced":true})").sequenced);
  EXPECT_TRUE(resolved(request_of("c", {{"sequenced", "1"}}), R"({"sequenced":false})").sequenced);
}

TEST(AudioForkResolve, EveryParameterFromTheMetadataAlone) {
  const auto p = resolved(
      request_of(std::nullopt),
      R"({"callSid":"CA9","format":"pcmu/8000","mixType":"stereo","packet_ms":30,"sequenced":true})");
  EXPECT_EQ(p.call_id, "CA9");
  EXPECT_EQ(format_text(p), "pcmu/8000");
  EXPECT_EQ(p.channels, 2u);
  EXPECT_EQ(p.packet_ms, 30);
  EXPECT_TRUE(p.sequenced);
}

TEST(AudioForkResolve, RefusesAStreamWithoutACallId) {
  const std::string expected =
      "no call id: put it in the path (/v1/audio-fork/{call_id}) or the metadata's call_id";
  EXPECT_EQ(refusal(request_of(std::nullopt)), expected);
  EXPECT_EQ(refusal(request_of(std::nullopt), "not json"), expected);
  EXPECT_EQ(refusal(request_of(std::nullopt), R"({"format":"pcmu/8000"})"), expected);
  EXPECT_EQ(refusal(request_of(std::nullopt, {{"format", "pcmu/8000"}})), expected);
}

TEST(AudioForkResolve, RefusesAnInvalidCallId) {
  const std::string expected = "invalid call id: it must match " + std::string(call_id_pattern);
  EXPECT_EQ(refusal(request_of("has space")), expected);
  EXPECT_EQ(refusal(request_of("...")), expected);
  EXPECT_EQ(refusal(request_of(std::string(max_call_id_length + 1, 'a'))), expected);
  EXPECT_EQ(refusal(request_of(std::nullopt), R"({"call_id":"a/b"})"), expected);
  EXPECT_EQ(refusal(request_of(std::nullopt, {{"call_id", "é"}})), expected);
}

TEST(AudioForkResolve, RefusesAnUnsupportedFormat) {
  EXPECT_EQ(refusal(request_of("c", {{"format", "opus/48000"}})), "unsupported format 'opus/48000'");
  EXPECT_EQ(refusal(request_of("c", {{"format", "none"}})), "unsupported format 'none'");
  EXPECT_EQ(refusal(request_of("c", {{"format", "pcmu/16000"}})), "unsupported format 'pcmu/16000'");
  EXPECT_EQ(refusal(request_of("c"), R"({"format":"l16"})"), "unsupported format 'l16'");
  const std::string long_format(100, 'f');
  EXPECT_EQ(refusal(request_of("c", {{"format", long_format}})),
            "unsupported format '" + long_format.substr(0, 40) + "'");
}

TEST(AudioForkResolve, RefusesAnUnsupportedRate) {
  for (const char* rate : {"11025", "0", "-8000", "8", "k", "abc", "8kk", "8.0k", "", "99999999999999999999"})
    EXPECT_EQ(refusal(request_of("c", {{"rate", rate}})),
              "unsupported sample rate '" + std::string(rate) + "'");
  EXPECT_EQ(refusal(request_of("c"), R"({"sampleRate":22050})"), "unsupported sample rate '22050'");
}

TEST(AudioForkResolve, RefusesARateWhoseThousandsOverflow) {
  // 9223372036854776 fits a 64-bit integer; a thousand times it does not.
  for (const char* rate : {"9223372036854776k", "18446744073709552k", "9223372036854775807k"})
    EXPECT_EQ(refusal(request_of("c", {{"rate", rate}})),
              "unsupported sample rate '" + std::string(rate) + "'");
}

TEST(AudioForkResolve, RefusesUnsupportedChannels) {
  for (const char* channels : {"0", "3", "-1", "two", "", "1.0"})
    EXPECT_EQ(refusal(request_of("c", {{"channels", channels}})),
              "unsupported channels '" + std::string(channels) + "': 1 or 2");
  EXPECT_EQ(refusal(request_of("c"), R"({"channels":6})"), "unsupported channels '6': 1 or 2");
}

TEST(AudioForkResolve, RefusesAnUnsupportedMix) {
  for (const char* mix : {"quad", "Stereo", ""})
    EXPECT_EQ(refusal(request_of("c", {{"mix", mix}})),
              "unsupported mix '" + std::string(mix) + "': mono, mixed or stereo");
  EXPECT_EQ(refusal(request_of("c"), R"({"mixType":"surround"})"),
            "unsupported mix 'surround': mono, mixed or stereo");
}

TEST(AudioForkResolve, RefusesPacketMsOutsideOneToAThousand) {
  for (const char* packet_ms : {"0", "1001", "-20", "abc", "", "20ms"})
    EXPECT_EQ(refusal(request_of("c", {{"packet_ms", packet_ms}})), "packet_ms must be 1..1000") << packet_ms;
  EXPECT_EQ(refusal(request_of("c"), R"({"packet_ms":0})"), "packet_ms must be 1..1000");
  EXPECT_EQ(refusal(request_of("c"), R"({"packet_ms":5000})"), "packet_ms must be 1..1000");
}

TEST(AudioForkResolve, RefusesACallIdTooLongForASecondTrack) {
  const std::string suffix = ":outbound";
  const std::string longest(max_call_id_length - suffix.size(), 'a');
  EXPECT_EQ(resolved(request_of(longest, {{"channels", "2"}})).channels, 2u);
  EXPECT_EQ(refusal(request_of(longest + "a", {{"channels", "2"}})), "call id too long for a second track");
  EXPECT_EQ(refusal(request_of(longest + "a", {{"mix", "stereo"}})), "call id too long for a second track");
  // One channel: the call id may use every character.
  EXPECT_EQ(resolved(request_of(std::string(max_call_id_length, 'a'))).channels, 1u);
}

TEST(AudioForkParseSequenced, ReadsABigEndianSequenceBeforeTheAudio) {
  const std::string message = header(0x0102030405060708ull >> 8) + "audio";  // the view points into it
  const auto f = parse_sequenced(message);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->sequence, 0x01020304050607);
  EXPECT_EQ(f->audio, "audio");

  const std::string second = header(1) + std::string("\x00\xff", 2);
  const auto one = parse_sequenced(second);
  ASSERT_TRUE(one);
  EXPECT_EQ(one->sequence, 1);
  EXPECT_EQ(one->audio, std::string_view("\x00\xff", 2));
}

TEST(AudioForkParseSequenced, TheAudioMayBeEmpty) {
  const std::string message = header(7);
  const auto f = parse_sequenced(message);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->sequence, 7);
  EXPECT_TRUE(f->audio.empty());
}

TEST(AudioForkParseSequenced, BytesWithTheirHighBitSetAreReadUnsigned) {
  const std::string message = header(0x0019'8081'82fe'ffull);
  const auto f = parse_sequenced(message);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->sequence, 0x0019'8081'82fe'ff);
}

TEST(AudioForkParseSequenced, UpToTheLargestSequence) {
  const std::string message = header(static_cast<std::uint64_t>(max_sequence)) + "x";
  const auto f = parse_sequenced(message);
  ASSERT_TRUE(f);
  EXPECT_EQ(f->sequence, max_sequence);
}

TEST(AudioForkParseSequenced, RefusesASequenceAboveTheLargest) {
  for (std::uint64_t n :
       {static_cast<std::uint64_t>(max_sequence) + 1, std::uint64_t{1} << 63, ~std::uint64_t{0}})
    EXPECT_FALSE(parse_sequenced(header(n) + "audio")) << n;
}

TEST(AudioForkParseSequenced, RefusesAMessageShorterThanItsHeader) {
  for (std::size_t n = 0; n < 8; ++n) EXPECT_FALSE(parse_sequenced(header(1).substr(0, n))) << n;
}

}  // namespace
}  // namespace aipbx::streams::audio_fork
