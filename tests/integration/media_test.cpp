// Call media through the real binary (issue 5): a call declares its media format with POST /v1/calls/{id}
// before its first packet (or takes the server's --media); a packet whose data does not decode in the
// call's format is a 422 and is not stored; GET .../audio is the call's audio as a WAV file with lost
// packets as silence; the transcript keeps its segments' times and joins their text. The mock engine
// stands in for speech-to-text here (tests/integration/speech_test.cpp runs pocketsphinx).
#include <boost/json/serialize.hpp>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "harness/api.hpp"
#include "harness/fixture.hpp"
#include "media/audio_codec.hpp"

namespace aipbx::itest {
namespace {

namespace json = boost::json;

// 20 ms of a tone at 8 kHz whose level tells packets apart.
std::vector<std::int16_t> tone(std::int64_t sequence, std::size_t samples = 160) {
  std::vector<std::int16_t> pcm(samples);
  for (std::size_t i = 0; i < samples; ++i)
    pcm[i] = static_cast<std::int16_t>((i % 2 == 0 ? 1 : -1) * (500 + 100 * sequence));
  return pcm;
}

std::string pcmu_packet(std::int64_t sequence) {
  return media::encode_audio(media::media_format::pcmu(), tone(sequence));
}

http_response declare(connection& c, const std::string& call_id, std::string body) {
  return c.post_json("/v1/calls/" + call_id, std::move(body));
}

std::int64_t packets_stored(connection& c, const std::string& call_id) {
  return as_int(get_ok(c, "/v1/calls/" + call_id).at("packets_received"));
}

// The samples of a 16-bit mono PCM WAV file, after checking its header says so at `rate`.
std::vector<std::int16_t> wav_samples(const std::string& file, std::uint32_t rate) {
  EXPECT_GE(file.size(), 44u);
  if (file.size() < 44) return {};
  EXPECT_EQ(file.substr(0, 4), "RIFF");
  EXPECT_EQ(file.substr(8, 8), "WAVEfmt ");
  const auto u16 = [&](std::size_t at) {
    return static_cast<std::uint16_t>(static_cast<unsigned char>(file[at]) | static_cast<unsigned char>(file[at + 1]) << 8);
  };
  const auto u32 = [&](std::size_t at) { return static_cast<std::uint32_t>(u16(at) | u16(at + 2) << 16); };
  EXPECT_EQ(u16(20), 1);   // PCM
  EXPECT_EQ(u16(22), 1);   // mono
  EXPECT_EQ(u32(24), rate);
  EXPECT_EQ(u16(34), 16);  // bits per sample
  EXPECT_EQ(file.substr(36, 4), "data");
  EXPECT_EQ(u32(40), file.size() - 44);
  std::vector<std::int16_t> samples((file.size() - 44) / 2);
  for (std::size_t i = 0; i < samples.size(); ++i) samples[i] = static_cast<std::int16_t>(u16(44 + 2 * i));
  return samples;
}

class MediaTest : public integration_test {};

TEST_F(MediaTest, DeclaredCallChecksItsPacketsAndServesItsAudio) {
  start_server({{"--segment-packets", "5"}});
  auto c = connect();

  auto first = declare(c, "m-1", R"({"media": {"format": "PCMU/8000", "packet_ms": 20}})");
  ASSERT_EQ(first.status, 201) << first.body;
  auto call = body_object(first);
  EXPECT_EQ(json::serialize(call.at("media")), R"({"format":"pcmu/8000","packet_ms":20,"declared":true})");
  EXPECT_EQ(call.at("state").as_string(), "IN_PROGRESS");
  EXPECT_EQ(as_int(call.at("packets_received")), 0);

  // The same declaration again is a success that changes nothing; another one is a conflict.
  auto again = declare(c, "m-1", R"({"media": {"format": "pcmu/8000"}})");
  EXPECT_EQ(again.status, 200) << again.body;
  auto other = declare(c, "m-1", R"({"media": {"format": "l16/8000"}})");
  ASSERT_TRUE(is_json_error(other, 409));
  EXPECT_EQ(body_object(other).at("error").as_string(), "media_conflict");

  // Sequences 1, 2, 4 and 5 arrive; 3 never does.
  for (std::int64_t s : {1, 2, 4, 5}) {
    auto r = post_packet(c, "m-1", s, pcmu_packet(s));
    ASSERT_EQ(r.status, 202) << r.body;
  }
  // A packet 0 is stored but lies before the call's start: it is not part of the audio.
  ASSERT_EQ(post_packet(c, "m-1", 0, pcmu_packet(9)).status, 202);
  // Data that is not base64 audio is refused and not stored.
  auto bad = post_packet(c, "m-1", 6, "audio_payload");
  ASSERT_EQ(bad.status, 422) << bad.body;
  const auto detail = body_object(bad).at("detail").as_array().at(0).as_object();
  EXPECT_EQ(detail.at("type").as_string(), "value_error");
  EXPECT_EQ(json::serialize(detail.at("loc")), R"(["body","data"])");
  EXPECT_EQ(detail.at("msg").as_string(), "Value error, data is not pcmu/8000 audio: data is not valid base64");
  EXPECT_EQ(post_packet(c, "m-1", 6, "").status, 422);
  EXPECT_EQ(packets_stored(c, "m-1"), 5);

  // After packets, a declaration is still answered when it repeats the call's own.
  EXPECT_EQ(declare(c, "m-1", R"({"media": {"format": "pcmu/8000"}})").status, 200);

  ASSERT_EQ(c.request("POST", "/v1/calls/m-1/end").status, 200);
  auto audio = c.get("/v1/calls/m-1/audio");
  ASSERT_EQ(audio.status, 200) << audio.body;
  EXPECT_EQ(audio.header("Content-Type"), "audio/wav");
  EXPECT_EQ(audio.header("X-Audio-Silent-Packets"), "1");
  const auto samples = wav_samples(audio.body, 8000);
  ASSERT_EQ(samples.size(), 5u * 160u);
  for (std::int64_t s = 1; s <= 5; ++s) {
    const std::vector<std::int16_t> got(samples.begin() + (s - 1) * 160, samples.begin() + s * 160);
    if (s == 3) {
      EXPECT_EQ(got, std::vector<std::int16_t>(160, 0)) << "the lost packet is silence";
    } else {
      EXPECT_EQ(got, media::decode_audio(media::media_format::pcmu(), pcmu_packet(s)).value()) << "packet " << s;
    }
  }

  // One segment (1..5, 3 lost): its place in the audio and its text (the mock joins the data).
  ASSERT_TRUE(wait_until([&] { return call_state(c, "m-1") == "COMPLETED"; }, 10s));
  const auto transcript = get_ok(c, "/v1/calls/m-1/transcript");
  const auto& segments = transcript.at("segments").as_array();
  ASSERT_EQ(segments.size(), 1u);
  EXPECT_EQ(as_int(segments[0].at("first_sequence")), 1);
  EXPECT_EQ(as_int(segments[0].at("last_sequence")), 5);
  EXPECT_DOUBLE_EQ(as_double(segments[0].at("start")), 0.0);
  EXPECT_DOUBLE_EQ(as_double(segments[0].at("end")), 0.1);
  EXPECT_EQ(transcript.at("text").as_string(),
            joined({pcmu_packet(1), pcmu_packet(2), pcmu_packet(4), pcmu_packet(5)}));
}

TEST_F(MediaTest, SegmentsKeepTheirTimesAndTheTextIsJoined) {
  start_server({{"--segment-packets", "4"}});
  auto c = connect();
  ASSERT_EQ(declare(c, "t-1", R"({"media": {"format": "l16/16000", "packet_ms": 10}})").status, 201);
  std::vector<std::string> data;
  for (std::int64_t s = 1; s <= 12; ++s) {
    data.push_back(media::encode_audio(media::media_format::l16(16000), tone(s, 160)));
    ASSERT_EQ(post_packet(c, "t-1", s, data.back()).status, 202);
  }
  // 16-bit audio must come in whole samples.
  auto odd = post_packet(c, "t-1", 13, "AQL+/9c=");
  ASSERT_EQ(odd.status, 422) << odd.body;
  EXPECT_NE(odd.body.find("odd number of bytes"), std::string::npos) << odd.body;
  ASSERT_EQ(c.request("POST", "/v1/calls/t-1/end").status, 200);
  ASSERT_TRUE(wait_until([&] { return call_state(c, "t-1") == "COMPLETED"; }, 10s));

  const auto transcript = get_ok(c, "/v1/calls/t-1/transcript");
  const auto& segments = transcript.at("segments").as_array();
  ASSERT_EQ(segments.size(), 3u);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(as_int(segments[i].at("first_sequence")), static_cast<std::int64_t>(4 * i + 1));
    EXPECT_DOUBLE_EQ(as_double(segments[i].at("start")), 0.04 * static_cast<double>(i));
    EXPECT_DOUBLE_EQ(as_double(segments[i].at("end")), 0.04 * static_cast<double>(i + 1));
    EXPECT_EQ(segments[i].at("text").as_string(),
              joined({data.begin() + 4 * static_cast<std::ptrdiff_t>(i), data.begin() + 4 * static_cast<std::ptrdiff_t>(i + 1)}));
  }
  EXPECT_EQ(transcript.at("text").as_string(), joined(data));
  const auto samples = wav_samples(c.get("/v1/calls/t-1/audio").body, 16000);
  EXPECT_EQ(samples.size(), 12u * 160u);
}

TEST_F(MediaTest, DeclarationAfterTheFirstPacketIsTooLateAndOpaqueCallsKeepWorking) {
  start_server({{"--segment-packets", "2"}});
  auto c = connect();
  // The seed's opaque data, with the default --media none: stored and run through the mock as before.
  ASSERT_EQ(post_packet(c, "seed", 1, "audio_payload").status, 202);
  ASSERT_EQ(post_packet(c, "seed", 2, "more audio").status, 202);
  auto late = declare(c, "seed", R"({"media": {"format": "pcmu/8000"}})");
  ASSERT_TRUE(is_json_error(late, 409));
  EXPECT_EQ(body_object(late).at("error").as_string(), "media_too_late");
  const auto call = get_ok(c, "/v1/calls/seed");
  EXPECT_EQ(json::serialize(call.at("media")), R"({"format":"none","packet_ms":20,"declared":false})");

  ASSERT_EQ(c.request("POST", "/v1/calls/seed/end").status, 200);
  ASSERT_TRUE(wait_until([&] { return call_state(c, "seed") == "COMPLETED"; }, 10s));
  const auto transcript = get_ok(c, "/v1/calls/seed/transcript");
  EXPECT_EQ(transcript.at("text").as_string(), "audio_payload more audio");
  EXPECT_TRUE(transcript.at("segments").as_array().at(0).at("start").is_null());

  auto audio = c.get("/v1/calls/seed/audio");
  ASSERT_TRUE(is_json_error(audio, 409));
  EXPECT_EQ(body_object(audio).at("error").as_string(), "no_audio");
  EXPECT_TRUE(is_json_error(c.get("/v1/calls/nobody/audio"), 404));
  // An ended call cannot be declared either.
  EXPECT_EQ(body_object(declare(c, "seed", R"({"media": {"format": "pcmu/8000"}})")).at("error").as_string(),
            "call_ended");
}

TEST_F(MediaTest, TheServerDefaultAppliesToCallsThatDeclareNothing) {
  start_server({{"--media", "pcma/8000"}});
  auto c = connect();
  const auto a_law = media::encode_audio(media::media_format::pcma(), tone(1));
  ASSERT_EQ(post_packet(c, "default", 1, a_law).status, 202);
  EXPECT_EQ(post_packet(c, "default", 2, "audio_payload").status, 422);
  EXPECT_EQ(packets_stored(c, "default"), 1);
  EXPECT_EQ(json::serialize(get_ok(c, "/v1/calls/default").at("media")),
            R"({"format":"pcma/8000","packet_ms":20,"declared":false})");
  // A call may still declare something else, even none, before its first packet.
  ASSERT_EQ(declare(c, "opaque", R"({"media": {"format": "none"}})").status, 201);
  EXPECT_EQ(post_packet(c, "opaque", 1, "audio_payload").status, 202);
}

TEST_F(MediaTest, ABadDeclarationIsA422AndChangesNothing) {
  start_server();
  auto c = connect();
  struct bad_case {
    const char* body;
    const char* loc;
    const char* type;
  };
  for (const auto& b : std::vector<bad_case>{
           {R"({})", R"(["body","media"])", "missing"},
           {R"({"media": "pcmu/8000"})", R"(["body","media"])", "model_attributes_type"},
           {R"({"media": {}})", R"(["body","media","format"])", "missing"},
           {R"({"media": {"format": "opus/48000"}})", R"(["body","media","format"])", "enum"},
           {R"({"media": {"format": 8000}})", R"(["body","media","format"])", "string_type"},
           {R"({"media": {"format": "pcmu/8000", "packet_ms": 0}})", R"(["body","media","packet_ms"])", "greater_than_equal"},
           {R"({"media": {"format": "pcmu/8000", "packet_ms": 1001}})", R"(["body","media","packet_ms"])", "less_than_equal"},
           {R"({"media": {"format": "pcmu/8000", "packet_ms": 2.5}})", R"(["body","media","packet_ms"])", "int_type"},
           {R"({"media": {"format": "pcmu/8000", "packet_ms": "20"}})", R"(["body","media","packet_ms"])", "int_type"},
           {R"([1])", R"(["body"])", "model_attributes_type"},
       }) {
    SCOPED_TRACE(b.body);
    auto r = declare(c, "bad", b.body);
    ASSERT_EQ(r.status, 422) << r.body;
    const auto d = body_object(r).at("detail").as_array().at(0).as_object();
    EXPECT_EQ(json::serialize(d.at("loc")), b.loc);
    EXPECT_EQ(d.at("type").as_string(), b.type);
  }
  EXPECT_EQ(declare(c, "bad", "{").status, 422);
  EXPECT_EQ(c.request("POST", "/v1/calls/bad", R"({"media": {"format": "pcmu/8000"}})", {{"Content-Type", "text/plain"}}).status,
            415);
  EXPECT_EQ(declare(c, "bad%20id", R"({"media": {"format": "pcmu/8000"}})").status, 422);
  EXPECT_TRUE(is_json_error(c.get("/v1/calls/bad"), 404));
}

}  // namespace
}  // namespace aipbx::itest
