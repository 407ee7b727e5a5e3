#include "streams/twilio.hpp"

#include <gtest/gtest.h>

#include <random>
#include <string>
#include <variant>
#include <vector>

#include "domain/call_state.hpp"

namespace aipbx::streams::twilio {
namespace {

// The message as the alternative `T`, or a failed assertion naming what it was.
template <class T>
T as(const message& m) {
  if (const auto* bad = std::get_if<malformed>(&m); bad && !std::is_same_v<T, malformed>)
    ADD_FAILURE() << "malformed: " << bad->reason;
  EXPECT_TRUE(std::holds_alternative<T>(m)) << "alternative " << m.index();
  const auto* v = std::get_if<T>(&m);
  return v ? *v : T{};
}

std::string media_with_chunk(std::string_view chunk) {
  return R"({"event":"media","media":{"track":"inbound","chunk":)" + std::string(chunk) +
         R"(,"timestamp":"5","payload":"AAAA"}})";
}

std::string format_text(const start& s) {
  const auto f = format_of(s);
  return f ? media::to_string(*f) : "refused";
}

start with_format(std::string encoding, std::int64_t rate, std::int64_t channels = 1) {
  start s;
  s.encoding = std::move(encoding);
  s.sample_rate = rate;
  s.channels = channels;
  return s;
}

TEST(TwilioParse, Connected) {
  as<connected>(parse(R"({"event":"connected","protocol":"Call","version":"1.0.0"})"));
}

TEST(TwilioParse, StartWithTracksParametersAndFormat) {
  const auto s = as<start>(parse(R"({"event":"start","sequenceNumber":"1","streamSid":"MZtop",
    "start":{"accountSid":"AC1","streamSid":"MZ1","callSid":"CA1","tracks":["inbound","outbound"],
             "customParameters":{"call_id":"call-7","token":"secret","n":5,"o":{"x":"y"}},
             "mediaFormat":{"encoding":"audio/x-mulaw","sampleRate":8000,"channels":1}}})"));
  EXPECT_EQ(s.stream_sid, "MZ1");
  EXPECT_EQ(s.call_sid, "CA1");
  EXPECT_EQ(s.tracks, (std::vector<std::string>{"inbound", "outbound"}));
  // Only string values are custom parameters.
  EXPECT_EQ(s.custom_parameters,
            (std::map<std::string, std::string>{{"call_id", "call-7"}, {"token", "secret"}}));
  EXPECT_EQ(s.encoding, "audio/x-mulaw");
  EXPECT_EQ(s.sample_rate, 8000);
  EXPECT_EQ(s.channels, 1);
}

TEST(TwilioParse, StartTakesTheStreamSidOfTheMessageWhenStartHasNone) {
  const auto s = as<start>(parse(R"({"event":"start","streamSid":"MZtop","start":{"callSid":"CA1"}})"));
  EXPECT_EQ(s.stream_sid, "MZtop");
  EXPECT_EQ(s.call_sid, "CA1");
}

TEST(TwilioParse, StartWithoutTracksParametersOrFormatLeavesThemEmpty) {
  const auto s = as<start>(parse(R"({"event":"start","start":{"callSid":"CA1"}})"));
  EXPECT_TRUE(s.tracks.empty());
  EXPECT_TRUE(s.custom_parameters.empty());
  EXPECT_EQ(s.encoding, "");
  EXPECT_EQ(s.sample_rate, 0);
  EXPECT_EQ(s.channels, 0);
}

TEST(TwilioParse, StartFormatNumbersMayBeStrings) {
  const auto s = as<start>(parse(
      R"({"event":"start","start":{"mediaFormat":{"encoding":"audio/x-l16","sampleRate":"16000","channels":"1"}}})"));
  EXPECT_EQ(s.sample_rate, 16000);
  EXPECT_EQ(s.channels, 1);
}

TEST(TwilioParse, MediaWithStringChunkAndTimestamp) {
  const auto m = as<media_event>(parse(
      R"({"event":"media","sequenceNumber":"3","streamSid":"MZ1",
          "media":{"track":"outbound","chunk":"2","timestamp":"25","payload":"f39/fw=="}})"));
  EXPECT_EQ(m.track, "outbound");
  EXPECT_EQ(m.chunk, 2);
  EXPECT_EQ(m.timestamp_ms, 25);
  EXPECT_EQ(m.payload, "f39/fw==");
}

TEST(TwilioParse, MediaWithNumericChunkAndTimestamp) {
  const auto m =
      as<media_event>(parse(R"({"event":"media","media":{"chunk":7,"timestamp":140,"payload":"AAAA"}})"));
  EXPECT_EQ(m.track, "");
  EXPECT_EQ(m.chunk, 7);
  EXPECT_EQ(m.timestamp_ms, 140);
  EXPECT_EQ(m.payload, "AAAA");
}

TEST(TwilioParse, MediaChunkUpToTheLargestSequence) {
  EXPECT_EQ(as<media_event>(parse(media_with_chunk("\"9007199254740991\""))).chunk, max_sequence);
  EXPECT_EQ(as<media_event>(parse(media_with_chunk("9007199254740991"))).chunk, max_sequence);
  EXPECT_EQ(as<media_event>(parse(media_with_chunk("\"1\""))).chunk, 1);
}

TEST(TwilioParse, MediaWithoutAValidChunkIsMalformed) {
  for (const char* chunk : {"\"0\"", "0", "\"-1\"", "-3", "\"abc\"", "\"\"", "\"1x\"", "\" 1\"",
                            "\"9007199254740992\"", "9007199254740992", "18446744073709551615",
                            "\"99999999999999999999\"", "1.5", "null", "true", "[1]"}) {
    const auto m = parse(media_with_chunk(chunk));
    const auto bad = as<malformed>(m);
    EXPECT_FALSE(bad.unknown_event) << chunk;
    EXPECT_EQ(bad.reason, "media message without a valid chunk") << chunk;
  }
  const auto bad = as<malformed>(parse(R"({"event":"media","media":{"payload":"AAAA"}})"));
  EXPECT_EQ(bad.reason, "media message without a valid chunk");
}

TEST(TwilioParse, MediaWithoutPayloadIsMalformed) {
  for (const char* text : {R"({"event":"media","media":{"chunk":"1"}})",
                           R"({"event":"media","media":{"chunk":"1","payload":5}})",
                           R"({"event":"media","media":{"chunk":"1","payload":null}})"}) {
    const auto bad = as<malformed>(parse(text));
    EXPECT_FALSE(bad.unknown_event) << text;
    EXPECT_EQ(bad.reason, "media message without a payload") << text;
  }
}

TEST(TwilioParse, MediaWithoutMediaIsMalformed) {
  for (const char* text : {R"({"event":"media"})", R"({"event":"media","media":"AAAA"})"}) {
    const auto bad = as<malformed>(parse(text));
    EXPECT_FALSE(bad.unknown_event);
    EXPECT_EQ(bad.reason, "media message without media") << text;
  }
}

TEST(TwilioParse, Dtmf) {
  const auto d = as<dtmf>(
      parse(R"({"event":"dtmf","sequenceNumber":"5","dtmf":{"track":"inbound_track","digit":"1"}})"));
  EXPECT_EQ(d.track, "inbound_track");
  EXPECT_EQ(d.digit, "1");
}

TEST(TwilioParse, DtmfWithoutADigitIsMalformed) {
  for (const char* text :
       {R"({"event":"dtmf","dtmf":{"track":"inbound_track"}})", R"({"event":"dtmf","dtmf":{"digit":""}})",
        R"({"event":"dtmf","dtmf":{"digit":5}})", R"({"event":"dtmf","dtmf":{"digit":"123456789"}})"}) {
    const auto bad = as<malformed>(parse(text));
    EXPECT_FALSE(bad.unknown_event) << text;
    EXPECT_EQ(bad.reason, "dtmf message without a digit") << text;
  }
  EXPECT_EQ(as<malformed>(parse(R"({"event":"dtmf"})")).reason, "dtmf message without dtmf");
}

TEST(TwilioParse, Mark) {
  EXPECT_EQ(as<mark>(parse(R"({"event":"mark","mark":{"name":"greeting-done"}})")).name, "greeting-done");
  EXPECT_EQ(as<mark>(parse(R"({"event":"mark"})")).name, "");
}

TEST(TwilioParse, Stop) {
  as<stop>(parse(R"({"event":"stop","sequenceNumber":"9","stop":{"accountSid":"AC1","callSid":"CA1"}})"));
  as<stop>(parse(R"({"event":"stop"})"));
}

TEST(TwilioParse, WhatIsNotAJsonObjectIsMalformed) {
  for (const char* text : {"", "not json", "{\"event\":\"media\"", "[1,2]", "\"media\"", "42", "null",
                           "{\"event\":\"stop\"} trailing"}) {
    const auto bad = as<malformed>(parse(text));
    EXPECT_FALSE(bad.unknown_event) << text;
    EXPECT_EQ(bad.reason, "not a JSON object") << text;
  }
}

TEST(TwilioParse, AnObjectWithoutAnEventNameIsMalformed) {
  for (const char* text : {"{}", R"({"media":{"chunk":"1","payload":"AAAA"}})", R"({"event":5})",
                           R"({"event":null})", R"({"Event":"stop"})"}) {
    const auto bad = as<malformed>(parse(text));
    EXPECT_FALSE(bad.unknown_event) << text;
    EXPECT_EQ(bad.reason, "no event") << text;
  }
}

TEST(TwilioParse, StartWithoutStartIsMalformed) {
  for (const char* text : {R"({"event":"start","streamSid":"MZ1"})", R"({"event":"start","start":[]})"}) {
    const auto bad = as<malformed>(parse(text));
    EXPECT_FALSE(bad.unknown_event) << text;
    EXPECT_EQ(bad.reason, "start message without start") << text;
  }
}

TEST(TwilioParse, StartWithATrackThatIsNotAStringIsMalformed) {
  const auto bad = as<malformed>(parse(R"({"event":"start","start":{"tracks":["inbound",2]}})"));
  EXPECT_FALSE(bad.unknown_event);
  EXPECT_EQ(bad.reason, "start message with a track that is not a string");
}

TEST(TwilioParse, AnUnknownEventIsFlaggedAndNamed) {
  const auto bad = as<malformed>(parse(R"({"event":"clear","streamSid":"MZ1"})"));
  EXPECT_TRUE(bad.unknown_event);
  EXPECT_EQ(bad.reason, "unknown event 'clear'");
  // Event names are case-sensitive, as Twilio writes them.
  EXPECT_TRUE(as<malformed>(parse(R"({"event":"Media"})")).unknown_event);
}

TEST(TwilioParse, AnUnknownEventNameIsShownCut) {
  const std::string name(1000, 'x');
  const auto bad = as<malformed>(parse(R"({"event":")" + name + R"("})"));
  EXPECT_TRUE(bad.unknown_event);
  EXPECT_EQ(bad.reason, "unknown event '" + name.substr(0, 40) + "'");
}

TEST(TwilioParse, ALargeMessageParses) {
  // Past the parser's stack buffer: the payload of a second of audio.
  const std::string payload(10'668, 'A');
  const auto m = as<media_event>(
      parse(R"({"event":"media","media":{"chunk":"1","timestamp":"0","payload":")" + payload + R"("}})"));
  EXPECT_EQ(m.payload, payload);
}

TEST(TwilioFormatOf, MulawAt8000IsTheDefault) {
  EXPECT_EQ(format_text(start{}), "pcmu/8000");
  EXPECT_EQ(format_text(with_format("audio/x-mulaw", 8000)), "pcmu/8000");
  EXPECT_EQ(format_text(with_format("audio/x-mulaw", 0, 0)), "pcmu/8000");
  EXPECT_EQ(format_text(with_format("", 8000, 1)), "pcmu/8000");
}

TEST(TwilioFormatOf, Alaw) {
  EXPECT_EQ(format_text(with_format("audio/x-alaw", 8000)), "pcma/8000");
}

TEST(TwilioFormatOf, LinearAtItsRates) {
  EXPECT_EQ(format_text(with_format("audio/x-l16", 8000)), "l16/8000");
  EXPECT_EQ(format_text(with_format("audio/x-l16", 16000)), "l16/16000");
  EXPECT_EQ(format_text(with_format("audio/l16", 16000)), "l16/16000");
  EXPECT_EQ(format_text(with_format("audio/l16", 48000)), "l16/48000");
  EXPECT_EQ(format_text(with_format("audio/x-l16", 0)), "l16/8000");
}

TEST(TwilioFormatOf, RefusesWhatItCannotStore) {
  EXPECT_EQ(format_text(with_format("audio/x-mulaw", 8000, 2)), "refused");
  EXPECT_EQ(format_text(with_format("audio/x-l16", 16000, 2)), "refused");
  EXPECT_EQ(format_text(with_format("audio/x-mulaw", 16000)), "refused");
  EXPECT_EQ(format_text(with_format("audio/x-alaw", 16000)), "refused");
  EXPECT_EQ(format_text(with_format("audio/x-l16", 11025)), "refused");
  EXPECT_EQ(format_text(with_format("audio/x-l16", -8000)), "refused");
  EXPECT_EQ(format_text(with_format("audio/opus", 48000)), "refused");
  EXPECT_EQ(format_text(with_format("audio/x-mulaw-ish", 8000)), "refused");
}

TEST(TwilioFormatOf, ARateOrChannelCountThatIsNoWholeNumberIsRefusedNotDefaulted) {
  for (const char* f : {R"({"encoding":"audio/x-l16","sampleRate":16000.0,"channels":1})",
                        R"({"encoding":"audio/x-mulaw","sampleRate":"8k","channels":1})",
                        R"({"encoding":"audio/x-mulaw","sampleRate":8000,"channels":"abc"})"}) {
    const auto s = as<start>(parse(std::string(R"({"event":"start","start":{"mediaFormat":)") + f + "}}"));
    EXPECT_EQ(format_text(s), "refused") << f;
  }
}

TEST(TwilioFormatOf, OfAParsedStart) {
  const auto s = as<start>(parse(
      R"({"event":"start","start":{"mediaFormat":{"encoding":"audio/x-alaw","sampleRate":8000,"channels":1}}})"));
  EXPECT_EQ(format_text(s), "pcma/8000");
}

}  // namespace
}  // namespace aipbx::streams::twilio

namespace aipbx::streams::twilio {
namespace {

// What a media message's fields are, to compare the two parsers' answers.
std::string described(const message& m) {
  if (const auto* x = std::get_if<media_event>(&m))
    return "media " + x->track + " " + std::to_string(x->chunk) + " " + std::to_string(x->timestamp_ms) + " " + x->payload;
  if (const auto* x = std::get_if<malformed>(&m)) return std::string("malformed ") + (x->unknown_event ? "unknown " : "") + x->reason;
  return "alternative " + std::to_string(m.index());
}

TEST(TwilioParse, TheOnePassReadingOfMediaAgreesWithTheCheckedParserOnMutatedMessages) {
  const std::vector<std::string> seeds = {
      R"({"event":"media","sequenceNumber":"3","media":{"track":"inbound","chunk":"1","timestamp":"5","payload":"/////w=="},"streamSid":"MZ1"})",
      R"({"event":"media","media":{"chunk":2,"timestamp":40,"payload":"AAAA"}})",
      R"({ "event" : "media" , "media" : { "payload" : "AA==" , "chunk" : "7" , "track" : "outbound" } })",
      R"({"streamSid":"MZ","media":{"timestamp":"-20","chunk":"9007199254740991","payload":""},"event":"media"})",
  };
  const std::string alphabet = R"({}[]":,. -+0123456789eEtrufalsn\\abc)";
  std::mt19937_64 random(20261207);
  int fast_taken = 0;
  for (int i = 0; i < 50'000; ++i) {
    std::string text = seeds[random() % seeds.size()];
    const int edits = 1 + static_cast<int>(random() % 3);
    for (int e = 0; e < edits && !text.empty(); ++e) {
      const std::size_t at = random() % text.size();
      switch (random() % 3) {
        case 0: text.erase(at, 1); break;
        case 1: text.insert(at, 1, alphabet[random() % alphabet.size()]); break;
        default: text[at] = alphabet[random() % alphabet.size()]; break;
      }
    }
    const auto fast = parse(text), checked = parse_checked(text);
    ASSERT_EQ(described(fast), described(checked)) << text;
    if (std::holds_alternative<media_event>(fast)) ++fast_taken;
  }
  EXPECT_GT(fast_taken, 1000);  // the mutations keep many messages valid
  for (const auto& seed : seeds) EXPECT_EQ(described(parse(seed)), described(parse_checked(seed))) << seed;
}

}  // namespace
}  // namespace aipbx::streams::twilio
