// The streaming protocols through the real binary (issue 14): Twilio Media Streams and the audio fork over
// WebSocket, Asterisk AudioSocket over TCP, each driven by a real client over loopback. Every stream lands
// on the same durable path as HTTP packets: the calls, their packets in order, their end, readable through
// the read API. Bad input closes the stream with a clear reason, stores nothing wrong and leaves other
// streams alone.
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstdint>
#include <string>
#include <thread>
#include <vector>

#include "harness/api.hpp"
#include "harness/fixture.hpp"
#include "harness/stream_clients.hpp"
#include "media/audio_codec.hpp"
#include "media/base64.hpp"

namespace aipbx::itest {
namespace {

namespace json = boost::json;

// 20 ms of a tone at 8 kHz whose level tells packets (and tracks) apart.
std::vector<std::int16_t> tone(std::int64_t n, std::size_t samples = 160) {
  std::vector<std::int16_t> pcm(samples);
  for (std::size_t i = 0; i < samples; ++i) pcm[i] = static_cast<std::int16_t>((i % 2 == 0 ? 1 : -1) * (300 + 7 * n));
  return pcm;
}

std::string pcmu(std::int64_t n) { return media::encode_audio(media::media_format::pcmu(), tone(n)); }

// Little-endian 16-bit PCM bytes.
std::string l16_bytes(const std::vector<std::int16_t>& pcm) {
  std::string out;
  for (auto s : pcm) {
    out.push_back(static_cast<char>(static_cast<std::uint16_t>(s) & 0xff));
    out.push_back(static_cast<char>(static_cast<std::uint16_t>(s) >> 8));
  }
  return out;
}

std::string base64(std::string_view bytes) {
  return media::base64_encode({reinterpret_cast<const std::uint8_t*>(bytes.data()), bytes.size()});
}

std::string twilio_start(const std::string& call_sid, std::vector<std::string> tracks = {"inbound"},
                         json::object params = {}, std::string encoding = "audio/x-mulaw") {
  json::array t;
  for (auto& name : tracks) t.push_back(json::string(name));
  return json::serialize(json::object{
      {"event", "start"},
      {"sequenceNumber", "1"},
      {"streamSid", "MZ" + call_sid},
      {"start",
       {{"accountSid", "AC0"},
        {"streamSid", "MZ" + call_sid},
        {"callSid", call_sid},
        {"tracks", t},
        {"customParameters", params},
        {"mediaFormat", {{"encoding", encoding}, {"sampleRate", 8000}, {"channels", 1}}}}}});
}

std::string twilio_media(const std::string& track, std::int64_t chunk, const std::string& payload, int seq = 2) {
  return json::serialize(json::object{{"event", "media"},
                                      {"sequenceNumber", std::to_string(seq)},
                                      {"streamSid", "MZ"},
                                      {"media",
                                       {{"track", track},
                                        {"chunk", std::to_string(chunk)},
                                        {"timestamp", std::to_string(chunk * 20)},
                                        {"payload", payload}}}});
}

const std::string twilio_connected = R"({"event":"connected","protocol":"Call","version":"1.0.0"})";
const std::string twilio_stop = R"({"event":"stop","sequenceNumber":"99","streamSid":"MZ","stop":{"accountSid":"AC0","callSid":"CA"}})";

// Every packet's data of the call, in sequence order (across pages).
std::vector<std::pair<std::int64_t, std::string>> packets_of(connection& c, const std::string& call_id) {
  std::vector<std::pair<std::int64_t, std::string>> out;
  std::string after = "-1";
  for (;;) {
    auto page = get_ok(c, "/v1/calls/" + url_encode(call_id) + "/packets?limit=1000&after=" + after);
    for (const auto& p : page.at("packets").as_array())
      out.emplace_back(as_int(p.at("sequence")), std::string(p.at("data").as_string()));
    if (page.at("next_after").is_null()) break;
    after = std::to_string(as_int(page.at("next_after")));
  }
  return out;
}

bool call_exists(connection& c, const std::string& call_id) {
  return c.get("/v1/calls/" + url_encode(call_id)).status == 200;
}

class StreamTest : public integration_test {
 protected:
  server_process& start(server_flags flags = {}) {
    flags.set("--audiosocket-port", "0");
    return start_server(std::move(flags));
  }
  ws_client twilio(const header_list& headers = {}) { return ws_client(server().port(), "/v1/media-streams", headers); }
  ws_client fork(const std::string& target, const header_list& headers = {}, std::vector<std::string> subprotocols = {}) {
    return ws_client(server().port(), target, headers, std::move(subprotocols));
  }
  audiosocket_client audiosocket() { return audiosocket_client(audiosocket_port(server())); }
};

TEST_F(StreamTest, TwilioStreamWithBothTracksMarksAndDtmfBecomesTwoCallsEndedAtStop) {
  start();
  auto ws = twilio();
  ws.send_text(twilio_connected);
  ws.send_text(twilio_start("CA100", {"inbound", "outbound"}));
  int message = 2;
  for (int chunk = 1; chunk <= 40; ++chunk) {
    ws.send_text(twilio_media("inbound", chunk, pcmu(chunk), message++));
    ws.send_text(twilio_media("outbound", chunk, pcmu(1000 + chunk), message++));
    if (chunk == 10) ws.send_text(R"({"event":"mark","sequenceNumber":"50","streamSid":"MZ","mark":{"name":"greeting"}})");
    if (chunk == 20) ws.send_text(R"({"event":"dtmf","sequenceNumber":"51","streamSid":"MZ","dtmf":{"track":"inbound_track","digit":"7"}})");
  }
  ws.send_text(twilio_stop);
  const auto closed = ws.wait_close();
  EXPECT_EQ(closed.code, 1000);
  EXPECT_EQ(closed.reason, "stream stopped");

  auto c = connect();
  for (const auto& [id, base] : {std::pair<std::string, int>{"CA100", 0}, {"CA100:outbound", 1000}}) {
    const auto call = get_ok(c, "/v1/calls/" + id);
    EXPECT_NE(call.at("state").as_string(), "IN_PROGRESS") << id;
    EXPECT_EQ(call.at("end_reason").as_string(), "stream stopped (twilio)") << id;
    EXPECT_EQ(as_int(call.at("packets_received")), 40) << id;
    EXPECT_EQ(as_int(call.at("missing_packets")), 0) << id;
    EXPECT_EQ(call.at("media").at("format").as_string(), "pcmu/8000") << id;
    const auto packets = packets_of(c, id);
    ASSERT_EQ(packets.size(), 40u) << id;
    for (int i = 0; i < 40; ++i) {
      EXPECT_EQ(packets[static_cast<std::size_t>(i)].first, i + 1);
      EXPECT_EQ(packets[static_cast<std::size_t>(i)].second, pcmu(base + i + 1)) << id << " chunk " << i + 1;
    }
    EXPECT_EQ(c.get("/v1/calls/" + id + "/audio").status, 200) << id;
  }
  // The call's view: its tracks, its DTMF digit and its events (the stream's start, the digit, the mark,
  // the stream's end) in order; the outbound track names its primary call.
  ASSERT_TRUE(wait_until([&] {
    const auto events = get_ok(c, "/v1/calls/CA100").at("events").as_array();
    return !events.empty() && events.back().at("kind").as_string() == "stream_stopped";
  }, 5s));
  const auto call = get_ok(c, "/v1/calls/CA100");
  EXPECT_EQ(call.at("track").as_string(), "inbound");
  EXPECT_EQ(json::serialize(call.at("tracks")), R"({"inbound":"CA100","outbound":"CA100:outbound"})");
  EXPECT_EQ(call.at("dtmf").as_string(), "7");
  std::vector<std::string> kinds;
  for (const auto& e : call.at("events").as_array()) kinds.emplace_back(e.at("kind").as_string());
  EXPECT_EQ(kinds, (std::vector<std::string>{"stream_started", "mark", "dtmf", "stream_stopped"}));
  const auto started = call.at("events").as_array()[0].at("data").as_object();
  EXPECT_EQ(started.at("protocol").as_string(), "twilio");
  EXPECT_EQ(started.at("stream_sid").as_string(), "MZCA100");
  EXPECT_EQ(as_int(call.at("events").as_array()[2].at("sequence")), 20);  // after chunk 20 of the inbound track
  const auto outbound = get_ok(c, "/v1/calls/CA100:outbound");
  EXPECT_EQ(outbound.at("primary_call").as_string(), "CA100");
  EXPECT_EQ(outbound.at("track").as_string(), "outbound");
  EXPECT_EQ(get_ok(c, "/v1/calls/CA100/events").at("events").as_array().size(), 4u);
}

TEST_F(StreamTest, TwilioCustomParameterNamesTheCallAndASecondStreamContinuesIt) {
  start();
  {
    auto ws = twilio();
    ws.send_text(twilio_start("CA200", {"inbound"}, {{"call_id", "agent-7:call-1"}}));
    for (int chunk = 1; chunk <= 5; ++chunk) ws.send_text(twilio_media("inbound", chunk, pcmu(chunk)));
    ws.close();
  }
  auto c = connect();
  ASSERT_TRUE(wait_until([&] { return call_exists(c, "agent-7:call-1") &&
                                      as_int(get_ok(c, "/v1/calls/agent-7:call-1").at("packets_received")) == 5; },
                         5s));
  EXPECT_FALSE(call_exists(c, "CA200"));
  // Closed without stop: the call goes on (left to --idle-timeout). A new stream of it numbers its
  // chunks after what is stored.
  EXPECT_EQ(call_state(c, "agent-7:call-1"), "IN_PROGRESS");
  auto ws = twilio();
  ws.send_text(twilio_start("CA201", {"inbound"}, {{"call_id", "agent-7:call-1"}}));
  for (int chunk = 1; chunk <= 3; ++chunk) ws.send_text(twilio_media("inbound", chunk, pcmu(100 + chunk)));
  ws.send_text(twilio_stop);
  EXPECT_EQ(ws.wait_close().code, 1000);
  const auto packets = packets_of(c, "agent-7:call-1");
  ASSERT_EQ(packets.size(), 8u);
  EXPECT_EQ(packets[5].first, 6);
  EXPECT_EQ(packets[5].second, pcmu(101));
  EXPECT_EQ(call_state(c, "agent-7:call-1") == "IN_PROGRESS", false);
}

struct bad_case {
  std::string name;
  std::vector<std::string> messages;  // sent in order ("<binary>" is sent as a binary message)
  std::uint16_t code;
  std::string reason_part;
  std::int64_t packets_stored;  // of the case's call; -1: the call must not exist
};

// Each case's stream names its own call, `id`.
std::vector<bad_case> twilio_bad_cases(const std::string& id) {
  return {
      {"malformed JSON", {"{\"event\": \"start\""}, 1007, "not a JSON object", -1},
      {"unknown event", {R"({"event":"hello"})"}, 1003, "unknown event 'hello'", -1},
      {"media before start", {twilio_media("inbound", 1, pcmu(1))}, 1008, "before start", -1},
      {"binary message", {"<binary>"}, 1003, "binary", -1},
      {"second start", {twilio_start(id), twilio_start(id)}, 1008, "second start", 0},
      {"payload not mu-law", {twilio_start(id), twilio_media("inbound", 1, pcmu(1)), twilio_media("inbound", 2, "%%%")},
       1007, "is not pcmu/8000 audio", 1},
      {"unknown track", {twilio_start(id), twilio_media("sideways", 1, pcmu(1))}, 1008, "which start did not name", 0},
      {"unsupported format", {twilio_start(id, {"inbound"}, {}, "audio/opus")}, 1003, "unsupported mediaFormat", -1},
      {"media without chunk", {twilio_start(id), R"({"event":"media","media":{"track":"inbound","payload":""}})"}, 1007,
       "chunk", 0},
      {"oversized message", {twilio_start(id), twilio_media("inbound", 1, std::string(80000, 'A'))}, 1009,
       "over the limit of 4096 bytes", 0},
  };
}

TEST_F(StreamTest, TwilioBadInputClosesWithAClearReasonStoresNothingWrongAndSparesOtherStreams) {
  start({{"--stream-message-limit", "4096"}});
  // A healthy stream runs beside every bad one and must not notice them.
  auto good = twilio();
  good.send_text(twilio_start("CA-good"));
  int good_chunk = 0;
  auto c = connect();
  const std::size_t count = twilio_bad_cases("x").size();
  for (std::size_t i = 0; i < count; ++i) {
    const std::string id = "CA-bad-" + std::to_string(i);
    const auto bad = twilio_bad_cases(id)[i];
    SCOPED_TRACE(bad.name);
    auto ws = twilio();
    for (const auto& m : bad.messages) {
      if (m == "<binary>") ws.send_binary("\x01\x02");
      else ws.send_text(m);
    }
    const auto closed = ws.wait_close();
    EXPECT_EQ(closed.code, bad.code);
    EXPECT_NE(closed.reason.find(bad.reason_part), std::string::npos) << closed.reason;
    if (bad.packets_stored < 0) {
      EXPECT_FALSE(call_exists(c, id));
    } else {
      ASSERT_TRUE(call_exists(c, id));
      EXPECT_EQ(as_int(get_ok(c, "/v1/calls/" + id).at("packets_received")), bad.packets_stored);
    }
    ++good_chunk;
    good.send_text(twilio_media("inbound", good_chunk, pcmu(good_chunk)));
  }
  good.send_text(twilio_stop);
  EXPECT_EQ(good.wait_close().code, 1000);
  EXPECT_EQ(as_int(get_ok(c, "/v1/calls/CA-good").at("packets_received")), good_chunk);
  const auto metrics = c.get("/metrics").body;
  EXPECT_NE(metrics.find(R"(aipbx_stream_closes_total{protocol="twilio",reason="bad_message"})"), std::string::npos);
  EXPECT_NE(metrics.find(R"(aipbx_stream_closes_total{protocol="twilio",reason="bad_audio"} 1)"), std::string::npos);
}

TEST_F(StreamTest, TwilioNeedsATokenWhenTokensAreConfigured) {
  const std::string token = "stream-test-token-0123456789";
  start({{"--api-token", token}});
  {  // No credentials at all: the start message must bring them.
    auto ws = twilio();
    ws.send_text(twilio_start("CA-anon"));
    const auto closed = ws.wait_close();
    EXPECT_EQ(closed.code, 1008);
    EXPECT_NE(closed.reason.find("unauthorized"), std::string::npos);
  }
  {  // A wrong bearer token is refused at the upgrade.
    auto ws = twilio({{"Authorization", "Bearer not-the-token-at-all"}});
    ASSERT_TRUE(ws.refused());
    EXPECT_EQ(ws.refused()->status, 401);
  }
  {  // Twilio cannot set headers: the custom parameter `token`.
    auto ws = twilio();
    ws.send_text(twilio_start("CA-param", {"inbound"}, {{"token", token}}));
    ws.send_text(twilio_media("inbound", 1, pcmu(1)));
    ws.send_text(twilio_stop);
    EXPECT_EQ(ws.wait_close().code, 1000);
  }
  {
    auto ws = twilio({{"Authorization", "Bearer " + token}});
    ws.send_text(twilio_start("CA-bearer"));
    ws.send_text(twilio_media("inbound", 1, pcmu(1)));
    ws.send_text(twilio_stop);
    EXPECT_EQ(ws.wait_close().code, 1000);
  }
  auto c = connect();
  const header_list auth{{"Authorization", "Bearer " + token}};
  EXPECT_EQ(c.request("GET", "/v1/calls/CA-anon", {}, auth).status, 404);
  EXPECT_EQ(c.request("GET", "/v1/calls/CA-param", {}, auth).status, 200);
  // The token was a credential, not call data: the stream's start event does not keep it.
  const auto events = c.request("GET", "/v1/calls/CA-param/events", {}, auth).json().as_object().at("events").as_array();
  ASSERT_FALSE(events.empty());
  EXPECT_EQ(events[0].at("kind").as_string(), "stream_started");
  EXPECT_FALSE(events[0].at("data").at("custom_parameters").as_object().contains("token"));
  EXPECT_EQ(c.request("GET", "/v1/calls/CA-bearer", {}, auth).status, 200);
  // A plain GET of a WebSocket endpoint: 426 (with the token: the route exists but needs an upgrade).
  EXPECT_EQ(c.request("GET", "/v1/media-streams", {}, auth).status, 426);
}

TEST_F(StreamTest, AudioForkTakesATokenByBasicAuthQueryOrMetadata) {
  const std::string token = "fork-test-token-0123456789";
  start({{"--api-token", token}});
  const auto stream_one_packet = [&](const std::string& target, const header_list& headers, const std::string& metadata) {
    auto ws = fork(target, headers);
    if (ws.refused()) return ws_close{static_cast<std::uint16_t>(ws.refused()->status), "refused"};
    if (!metadata.empty()) ws.send_text(metadata);
    ws.send_binary(l16_bytes(tone(1)));
    ws.send_binary("");
    return ws.wait_close();
  };
  // FreeSWITCH and jambonz send Basic auth; the token is its password.
  const std::string basic = "Basic " + base64("aipbx:" + token);
  EXPECT_EQ(stream_one_packet("/v1/audio-fork/f-basic", {{"Authorization", basic}}, "").code, 1000);
  EXPECT_EQ(stream_one_packet("/v1/audio-fork/f-query?token=" + token, {}, "").code, 1000);
  EXPECT_EQ(stream_one_packet("/v1/audio-fork", {}, R"({"callSid":"f-meta","token":")" + token + R"("})").code, 1000);
  const auto anonymous = stream_one_packet("/v1/audio-fork/f-anon", {}, "");
  EXPECT_EQ(anonymous.code, 1008);
  EXPECT_NE(anonymous.reason.find("unauthorized"), std::string::npos);
  EXPECT_EQ(stream_one_packet("/v1/audio-fork/f-wrong", {{"Authorization", "Basic " + base64("aipbx:wrong-token-123456789")}}, "").code, 401);
  auto c = connect();
  const header_list auth{{"Authorization", "Bearer " + token}};
  for (const char* id : {"f-basic", "f-query", "f-meta"})
    EXPECT_EQ(c.request("GET", std::string("/v1/calls/") + id, {}, auth).status, 200) << id;
  EXPECT_EQ(c.request("GET", "/v1/calls/f-anon", {}, auth).status, 404);
}

TEST_F(StreamTest, AudioForkPlainStreamIsCutInto20msPacketsInArrivalOrder) {
  start();
  auto ws = fork("/v1/audio-fork/fork-1", {}, {"audio.drachtio.org"});
  EXPECT_EQ(ws.subprotocol(), "audio.drachtio.org");
  ws.send_text(R"({"from":"+15551230000","to":"+15559870000"})");  // metadata without a call id
  std::string sent;
  for (int n = 0; n < 50; ++n) sent += l16_bytes(tone(n));  // 50 x 20 ms of L16 at 8 kHz
  // Sent in chunks that are not 20 ms each, as mod_audio_fork writes whatever it buffered.
  for (std::size_t at = 0; at < sent.size(); at += 1234) ws.send_binary(std::string_view(sent).substr(at, 1234));
  ws.send_binary("");  // graceful stop
  EXPECT_EQ(ws.wait_close().code, 1000);
  auto c = connect();
  const auto call = get_ok(c, "/v1/calls/fork-1");
  EXPECT_EQ(call.at("media").at("format").as_string(), "l16/8000");
  EXPECT_NE(call.at("state").as_string(), "IN_PROGRESS");
  const auto packets = packets_of(c, "fork-1");
  ASSERT_EQ(packets.size(), 50u);
  for (int n = 0; n < 50; ++n) EXPECT_EQ(packets[static_cast<std::size_t>(n)].second, base64(l16_bytes(tone(n))));
}

TEST_F(StreamTest, AudioForkStereoFromJambonzMetadataGivesEachChannelItsCall) {
  start();
  auto ws = fork("/v1/audio-fork");
  ws.send_text(R"({"callSid":"jb-1","from":"+1555","to":"+1666","sampleRate":16000,"mixType":"stereo"})");
  std::string sent;
  for (int n = 0; n < 10; ++n) {
    const auto left = tone(n, 320), right = tone(500 + n, 320);  // 20 ms at 16 kHz
    for (std::size_t i = 0; i < 320; ++i) sent += l16_bytes({left[i], right[i]});
  }
  ws.send_binary(sent);
  ws.send_text(R"({"event":"stop"})");
  EXPECT_EQ(ws.wait_close().code, 1000);
  auto c = connect();
  const auto inbound = packets_of(c, "jb-1");
  const auto outbound = packets_of(c, "jb-1:outbound");
  ASSERT_EQ(inbound.size(), 10u);
  ASSERT_EQ(outbound.size(), 10u);
  for (int n = 0; n < 10; ++n) {
    EXPECT_EQ(inbound[static_cast<std::size_t>(n)].second, base64(l16_bytes(tone(n, 320))));
    EXPECT_EQ(outbound[static_cast<std::size_t>(n)].second, base64(l16_bytes(tone(500 + n, 320))));
  }
  EXPECT_EQ(get_ok(c, "/v1/calls/jb-1:outbound").at("media").at("format").as_string(), "l16/16000");
}

std::string sequenced(std::uint64_t sequence, std::string_view audio) {
  std::string out(8, '\0');
  for (int i = 7; i >= 0; --i, sequence >>= 8) out[static_cast<std::size_t>(i)] = static_cast<char>(sequence & 0xff);
  return out + std::string(audio);
}

std::int64_t json_int(const ws_message& m, const char* key) {
  return json::parse(m.data).as_object().at(key).as_int64();
}

TEST_F(StreamTest, AudioForkSequencedSenderResumesAfterADroppedConnectionWithNothingLostOrDoubled) {
  start();
  std::int64_t acked = 0;
  {
    auto ws = fork("/v1/audio-fork/seq-1?sequenced=1");
    auto ready = ws.read();
    ASSERT_TRUE(ready);
    EXPECT_EQ(json::parse(ready->data).as_object().at("event").as_string(), "ready");
    EXPECT_EQ(json_int(*ready, "acked"), 0);
    for (int n = 1; n <= 30; ++n) ws.send_binary(sequenced(static_cast<std::uint64_t>(n), l16_bytes(tone(n))));
    while (acked < 30) {
      auto m = ws.read();
      ASSERT_TRUE(m);
      const auto seq = json_int(*m, "sequence");
      EXPECT_GT(seq, acked);  // cumulative, growing
      acked = seq;
    }
    // More frames, then the connection dies before their acknowledgements are read.
    for (int n = 31; n <= 40; ++n) ws.send_binary(sequenced(static_cast<std::uint64_t>(n), l16_bytes(tone(n))));
    ws.drop();
  }
  auto c = connect();
  // The dropped stream's frames are stored by the server that read them; wait until it let go of the call.
  ASSERT_TRUE(wait_until([&] { return server().records_where(msg_is("stream closed")).size() >= 1; }, 5s));
  auto ws = fork("/v1/audio-fork/seq-1?sequenced=1");
  auto ready = ws.read();
  ASSERT_TRUE(ready);
  const auto resume_from = json_int(*ready, "acked") + 1;
  EXPECT_GE(resume_from, 31);
  for (auto n = resume_from; n <= 60; ++n) ws.send_binary(sequenced(static_cast<std::uint64_t>(n), l16_bytes(tone(n))));
  ws.send_binary("");
  std::int64_t last_ack = 0;
  for (;;) {
    auto m = ws.read();
    if (!m) break;
    last_ack = json_int(*m, "sequence");
  }
  EXPECT_EQ(ws.closed()->code, 1000);
  EXPECT_EQ(last_ack, 60);  // the last acknowledgement comes before the close
  const auto packets = packets_of(c, "seq-1");
  ASSERT_EQ(packets.size(), 60u);
  for (int n = 1; n <= 60; ++n) {
    EXPECT_EQ(packets[static_cast<std::size_t>(n - 1)].first, n);
    EXPECT_EQ(packets[static_cast<std::size_t>(n - 1)].second, base64(l16_bytes(tone(n))));
  }
  EXPECT_EQ(as_int(get_ok(c, "/v1/calls/seq-1").at("duplicate_packets")), 0);
}

TEST_F(StreamTest, AudioForkBadInputClosesWithAClearReason) {
  start();
  auto c = connect();
  {
    auto ws = fork("/v1/audio-fork");
    ws.send_binary(std::string(320, '\0'));
    const auto closed = ws.wait_close();
    EXPECT_EQ(closed.code, 1008);
    EXPECT_NE(closed.reason.find("no call id"), std::string::npos) << closed.reason;
  }
  {
    auto ws = fork("/v1/audio-fork/bad-rate?rate=11025");
    ws.send_binary(std::string(320, '\0'));
    const auto closed = ws.wait_close();
    EXPECT_EQ(closed.code, 1008);
    EXPECT_NE(closed.reason.find("unsupported sample rate"), std::string::npos) << closed.reason;
    EXPECT_FALSE(call_exists(c, "bad-rate"));
  }
  {
    auto ws = fork("/v1/audio-fork/bad-seq?sequenced=1");
    ASSERT_TRUE(ws.read());  // ready
    ws.send_binary(sequenced(1, l16_bytes(tone(1))));
    ws.send_binary("\x01\x02\x03");  // shorter than its header
    for (;;)
      if (!ws.read()) break;
    EXPECT_EQ(ws.closed()->code, 1007);
    EXPECT_EQ(packets_of(c, "bad-seq").size(), 1u);
  }
  {
    auto ws = fork("/v1/audio-fork/bad%20id");
    ASSERT_TRUE(ws.refused());
    EXPECT_EQ(ws.refused()->status, 422);
  }
}

TEST_F(StreamTest, AudioSocketByteStreamFromAsteriskBecomesTheCallAndItsEnd) {
  start();
  const std::string uuid = "0b3d7c5e-2f3a-4e5b-9c1d-8e7f6a5b4c3d";
  auto as = audiosocket();
  std::string stream = audiosocket_client::frame(0x01, audiosocket_client::uuid_bytes(uuid));
  for (int n = 0; n < 50; ++n) {
    stream += audiosocket_client::frame(0x10, l16_bytes(tone(n)));
    if (n == 25) stream += audiosocket_client::frame(0x03, "#");
  }
  // Written in pieces that split headers and payloads, as TCP may deliver them.
  for (std::size_t at = 0; at < stream.size(); at += 77) as.send(std::string_view(stream).substr(at, 77));
  as.close();  // Asterisk hangs up: a close at a frame boundary
  auto c = connect();
  ASSERT_TRUE(wait_until([&] { return call_exists(c, uuid) && call_state(c, uuid) != "IN_PROGRESS"; }, 5s));
  const auto call = get_ok(c, "/v1/calls/" + uuid);
  EXPECT_EQ(call.at("end_reason").as_string(), "stream stopped (audiosocket)");
  EXPECT_EQ(call.at("media").at("format").as_string(), "l16/8000");
  const auto packets = packets_of(c, uuid);
  ASSERT_EQ(packets.size(), 50u);
  for (int n = 0; n < 50; ++n) EXPECT_EQ(packets[static_cast<std::size_t>(n)].second, base64(l16_bytes(tone(n))));
  ASSERT_TRUE(wait_until([&] { return get_ok(c, "/v1/calls/" + uuid).at("events").as_array().size() == 3; }, 5s));
  EXPECT_EQ(get_ok(c, "/v1/calls/" + uuid).at("dtmf").as_string(), "#");
}

TEST_F(StreamTest, AudioSocketWidebandAndACloseInsideAFrame) {
  start();
  auto c = connect();
  const std::string wide = "11111111-2222-3333-4444-555555555555";
  {
    auto as = audiosocket();
    as.send_uuid(wide);
    for (int n = 0; n < 5; ++n) as.send_audio(l16_bytes(tone(n, 320)), 0x12);  // slin16: 16 kHz
    as.send(audiosocket_client::frame(0x12, l16_bytes(tone(9, 320))).substr(0, 100));  // cut short
    as.close();
  }
  ASSERT_TRUE(wait_until([&] { return call_exists(c, wide) && as_int(get_ok(c, "/v1/calls/" + wide).at("packets_received")) == 5; }, 5s));
  ASSERT_TRUE(server().wait_for_record(
      [](const json::object& o) { return string_field(o, "msg") == "stream closed" && string_field(o, "reason") == "broken"; }, 5s));
  const auto call = get_ok(c, "/v1/calls/" + wide);
  EXPECT_EQ(call.at("media").at("format").as_string(), "l16/16000");
  EXPECT_EQ(call.at("state").as_string(), "IN_PROGRESS");  // broken: left to the idle timeout
}

// One timer per connection stands for the idle timeout (not one per read): a connection that keeps sending
// outlives several limits; one that stops is closed once a limit passes after its last frame.
TEST_F(StreamTest, AudioSocketClosesIdleConnectionsAndKeepsBusyOnes) {
  start({{"--stream-idle-timeout", "600ms"}});
  auto c = connect();
  const std::string busy_id = "bbbbbbbb-0000-0000-0000-000000000001";
  const std::string quiet_id = "bbbbbbbb-0000-0000-0000-000000000002";
  auto busy = audiosocket();
  auto quiet = audiosocket();
  busy.send_uuid(busy_id);
  quiet.send_uuid(quiet_id);
  quiet.send_audio(l16_bytes(tone(0)));
  // A frame every 100 ms for 1.5 s: two and a half times the limit.
  for (int n = 0; n < 15; ++n) {
    busy.send_audio(l16_bytes(tone(n)));
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_TRUE(quiet.closed_by_peer(5s));
  EXPECT_FALSE(busy.closed_by_peer(50ms));
  busy.close();
  ASSERT_TRUE(wait_until([&] { return call_exists(c, busy_id) && call_state(c, busy_id) != "IN_PROGRESS"; }, 5s));
  EXPECT_EQ(as_int(get_ok(c, "/v1/calls/" + busy_id).at("packets_received")), 15);
  EXPECT_EQ(as_int(get_ok(c, "/v1/calls/" + quiet_id).at("packets_received")), 1);
  EXPECT_NE(c.get("/metrics").body.find(R"(aipbx_stream_closes_total{protocol="audiosocket",reason="idle"} 1)"),
            std::string::npos);
}

TEST_F(StreamTest, AudioSocketBadFramesCloseTheConnectionAndStoreNothing) {
  start({{"--stream-message-limit", "2048"}});
  auto c = connect();
  const std::string id = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee";
  struct as_case {
    std::string name, bytes;
  };
  const std::vector<as_case> cases = {
      {"audio before the UUID", audiosocket_client::frame(0x10, std::string(320, '\0'))},
      {"unknown kind", audiosocket_client::frame(0x01, audiosocket_client::uuid_bytes(id)) +
                           audiosocket_client::frame(0x42, "x")},
      {"oversized frame", audiosocket_client::frame(0x01, audiosocket_client::uuid_bytes(id)) + std::string("\x10\xff\xff")},
      {"odd audio", audiosocket_client::frame(0x01, audiosocket_client::uuid_bytes(id)) +
                        audiosocket_client::frame(0x10, std::string(321, '\0'))},
  };
  for (const auto& k : cases) {
    SCOPED_TRACE(k.name);
    auto as = audiosocket();
    as.send(k.bytes);
    EXPECT_TRUE(as.closed_by_peer(5s));
    EXPECT_FALSE(call_exists(c, id));
  }
  const auto metrics = c.get("/metrics").body;
  EXPECT_NE(metrics.find(R"(aipbx_stream_closes_total{protocol="audiosocket",reason="bad_message"} 3)"), std::string::npos);
  EXPECT_NE(metrics.find(R"(aipbx_stream_closes_total{protocol="audiosocket",reason="bad_audio"} 1)"), std::string::npos);
}

TEST_F(StreamTest, AudioSocketRegisteredOnlyTakesCallsDeclaredThroughTheApi) {
  start({{"--audiosocket-registered", ""}});
  auto c = connect();
  const std::string known = "12121212-3434-5656-7878-909090909090";
  const std::string unknown = "99999999-3434-5656-7878-909090909090";
  ASSERT_EQ(c.post_json("/v1/calls/" + known, R"({"media":{"format":"l16/8000"}})").status, 201);
  {
    auto as = audiosocket();
    as.send_uuid(unknown);
    as.send_audio(l16_bytes(tone(1)));
    EXPECT_TRUE(as.closed_by_peer(5s));
  }
  EXPECT_FALSE(call_exists(c, unknown));
  auto as = audiosocket();
  as.send_uuid(known);
  for (int n = 0; n < 3; ++n) as.send_audio(l16_bytes(tone(n)));
  as.close();
  ASSERT_TRUE(wait_until([&] { return call_state(c, known) != "IN_PROGRESS"; }, 5s));
  EXPECT_EQ(as_int(get_ok(c, "/v1/calls/" + known).at("packets_received")), 3);
}

TEST_F(StreamTest, AudioSocketAllowListRefusesOtherAddresses) {
  start({{"--audiosocket-allow", "10.0.0.0/8"}});
  auto as = audiosocket();
  EXPECT_TRUE(as.closed_by_peer(5s));
  auto c = connect();
  EXPECT_NE(c.get("/metrics").body.find(R"(aipbx_stream_closes_total{protocol="audiosocket",reason="unauthorized"} 1)"),
            std::string::npos);
}

TEST_F(StreamTest, ASecondStreamOfALiveCallIsRefusedWhileTheFirstStreams) {
  start();
  auto first = twilio();
  first.send_text(twilio_start("CA-twice"));
  first.send_text(twilio_media("inbound", 1, pcmu(1)));
  auto c = connect();
  // The call exists once the first stream declared its media; the stream holds it only once its first
  // packet can be stored.
  ASSERT_TRUE(wait_until([&] { return call_exists(c, "CA-twice") && packets_of(c, "CA-twice").size() == 1; }, 5s));
  // Both would number packets after the same stored ones: the second waits a little for the first to
  // let go of the call, then gives up.
  auto second = twilio();
  second.send_text(twilio_start("CA-twice"));
  const auto refused = second.wait_close();
  EXPECT_EQ(refused.code, 1008);
  EXPECT_NE(refused.reason.find("already streaming"), std::string::npos) << refused.reason;
  first.send_text(twilio_media("inbound", 2, pcmu(2)));
  first.send_text(twilio_stop);
  EXPECT_EQ(first.wait_close().code, 1000);
  EXPECT_EQ(packets_of(c, "CA-twice").size(), 2u);
}

TEST_F(StreamTest, StreamCapAndIdleStreamsAreClosed) {
  start({{"--max-streams", "2"}, {"--stream-idle-timeout", "500ms"}});
  auto a = twilio();
  auto b = twilio();
  a.send_text(twilio_connected);
  b.send_text(twilio_connected);
  // Both are admitted once their first message is read: wait for the second to count.
  auto c = connect();
  ASSERT_TRUE(wait_until([&] { return c.get("/metrics").body.find(R"(aipbx_streams_open{protocol="twilio"} 2)") != std::string::npos; }, 5s));
  auto third = twilio();
  const auto refused = third.wait_close();
  EXPECT_EQ(refused.code, 1013);
  // Nothing more from a and b: the idle timeout closes them.
  EXPECT_EQ(a.wait_close().code, 1008);
  const auto idle = b.wait_close();
  EXPECT_EQ(idle.code, 1008);
  EXPECT_NE(idle.reason.find("idle"), std::string::npos);
}

}  // namespace
}  // namespace aipbx::itest
