#include "streams/audiosocket.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <array>
#include <boost/asio/ip/address.hpp>
#include <cstdint>
#include <ostream>
#include <span>
#include <string>
#include <vector>

#include "domain/call_id.hpp"

namespace aipbx::streams::audiosocket {
namespace {

using bytes = std::vector<std::uint8_t>;

struct seen_frame {
  std::uint8_t kind = 0;
  std::string payload;
  friend bool operator==(const seen_frame&, const seen_frame&) = default;
  friend std::ostream& operator<<(std::ostream& os, const seen_frame& f) {
    return os << "{kind " << int{f.kind} << ", " << f.payload.size() << " bytes}";
  }
};

bytes frame_bytes(std::uint8_t kind, std::string_view payload) {
  bytes out(3 + payload.size());
  out[0] = kind;
  out[1] = static_cast<std::uint8_t>(payload.size() >> 8);
  out[2] = static_cast<std::uint8_t>(payload.size() & 0xff);
  std::copy(payload.begin(), payload.end(), out.begin() + 3);
  return out;
}

void append(bytes& to, const bytes& b) {
  to.insert(to.end(), b.begin(), b.end());
}

// Every whole frame the parser has, copied (a payload is valid only until the next call).
std::vector<seen_frame> drain(frame_parser& p) {
  std::vector<seen_frame> out;
  frame_parser::frame f;
  while (p.next(f) == frame_parser::status::frame) out.push_back({f.kind, std::string(f.payload)});
  return out;
}

const std::array<std::uint8_t, 16> some_uuid = {0x0b, 0x3d, 0x5e, 0x9a, 0x8f, 0x1c, 0x4d, 0x2e,
                                                0x9a, 0x7b, 0x6c, 0x5d, 0x4e, 0x3f, 0x2a, 0x1b};

// An AudioSocket conversation: the UUID, audio of two lengths and two rates, a DTMF digit, an empty error,
// a hang-up.
std::vector<seen_frame> conversation() {
  std::string samples(320, '\0');
  for (std::size_t i = 0; i < samples.size(); ++i) samples[i] = static_cast<char>(i * 7);
  return {{uuid, std::string(some_uuid.begin(), some_uuid.end())},
          {audio, samples},
          {dtmf, "5"},
          {audio, samples.substr(0, 3)},
          {error, ""},
          {0x16, samples},
          {hangup, ""}};
}

bytes wire_of(const std::vector<seen_frame>& frames) {
  bytes out;
  for (const auto& f : frames) append(out, frame_bytes(f.kind, f.payload));
  return out;
}

boost::asio::ip::address ip(const char* text) {
  return boost::asio::ip::make_address(text);
}

bool contains(const char* net, const char* address) {
  const auto n = parse_network(net);
  EXPECT_TRUE(n) << net;
  return n && n->contains(ip(address));
}

TEST(AudioSocketFrameParser, AWholeFrame) {
  frame_parser p(1024);
  p.append(frame_bytes(audio, "abcd"));
  frame_parser::frame f;
  ASSERT_EQ(p.next(f), frame_parser::status::frame);
  EXPECT_EQ(f.kind, audio);
  EXPECT_EQ(f.payload, "abcd");
  EXPECT_FALSE(p.inside_frame());
  EXPECT_EQ(p.next(f), frame_parser::status::need_more);
}

TEST(AudioSocketFrameParser, AnEmptyParserNeedsMore) {
  frame_parser p(1024);
  frame_parser::frame f;
  EXPECT_EQ(p.next(f), frame_parser::status::need_more);
  EXPECT_FALSE(p.inside_frame());
}

TEST(AudioSocketFrameParser, AFrameWithoutPayload) {
  frame_parser p(1024);
  p.append(bytes{hangup, 0, 0});
  EXPECT_EQ(drain(p), (std::vector<seen_frame>{{hangup, ""}}));
  EXPECT_FALSE(p.inside_frame());
}

TEST(AudioSocketFrameParser, SeveralFramesInOneAppend) {
  const auto frames = conversation();
  frame_parser p(1024);
  p.append(wire_of(frames));
  EXPECT_EQ(drain(p), frames);
  EXPECT_FALSE(p.inside_frame());
}

TEST(AudioSocketFrameParser, FramesSplitAtEveryByteBoundary) {
  const auto frames = conversation();
  const bytes wire = wire_of(frames);
  for (std::size_t cut = 0; cut <= wire.size(); ++cut) {
    frame_parser p(1024);
    p.append(std::span(wire).first(cut));
    auto got = drain(p);
    p.append(std::span(wire).subspan(cut));
    const auto rest = drain(p);
    got.insert(got.end(), rest.begin(), rest.end());
    EXPECT_EQ(got, frames) << "cut at " << cut;
    EXPECT_FALSE(p.inside_frame());
  }
}

TEST(AudioSocketFrameParser, FramesArrivingOneByteAtATime) {
  const auto frames = conversation();
  const bytes wire = wire_of(frames);
  frame_parser p(1024);
  std::vector<seen_frame> got;
  std::size_t boundary = 0;  // where the next frame starts in `wire`
  std::size_t next_frame = 0;
  for (std::size_t i = 0; i < wire.size(); ++i) {
    p.append(std::span(wire).subspan(i, 1));
    const auto now = drain(p);
    got.insert(got.end(), now.begin(), now.end());
    if (!now.empty()) {
      ASSERT_EQ(now.size(), 1u);
      boundary += 3 + frames[next_frame++].payload.size();
      // A frame is handed out at its last byte, not before.
      EXPECT_EQ(i + 1, boundary);
    }
    EXPECT_EQ(p.inside_frame(), i + 1 != boundary) << "after byte " << i;
  }
  EXPECT_EQ(got, frames);
}

TEST(AudioSocketFrameParser, ManyFramesPastTheCompactionPoint) {
  // Far more bytes than one buffer's worth go through one parser, appended in uneven pieces.
  frame_parser p(400);
  std::vector<seen_frame> sent;
  for (int i = 0; i < 500; ++i)
    sent.push_back({audio, std::string(static_cast<std::size_t>(1 + (i * 37) % 320), static_cast<char>(i))});
  const bytes wire = wire_of(sent);
  std::vector<seen_frame> got;
  for (std::size_t at = 0, n = 1; at < wire.size(); at += n, n = n % 997 + 13) {
    p.append(std::span(wire).subspan(at, std::min(n, wire.size() - at)));
    const auto now = drain(p);
    got.insert(got.end(), now.begin(), now.end());
  }
  EXPECT_EQ(got, sent);
}

TEST(AudioSocketFrameParser, AFrameOverTheLimitIsTooLargeWithItsDeclaredLength) {
  frame_parser p(320);
  p.append(bytes{audio, 0x01, 0x41});  // 321 bytes declared
  frame_parser::frame f;
  EXPECT_EQ(p.next(f), frame_parser::status::too_large);
  EXPECT_EQ(p.declared_length(), 321u);
  EXPECT_TRUE(p.inside_frame());

  frame_parser q(320);
  q.append(bytes{audio, 0xff, 0xff});
  EXPECT_EQ(q.next(f), frame_parser::status::too_large);
  EXPECT_EQ(q.declared_length(), 65535u);
}

TEST(AudioSocketFrameParser, TooLargeIsToldFromTheHeaderAlone) {
  frame_parser p(320);
  p.append(bytes{audio, 0x10});
  frame_parser::frame f;
  EXPECT_EQ(p.next(f), frame_parser::status::need_more);
  p.append(bytes{0x00});  // 4096 bytes declared, none of them sent
  EXPECT_EQ(p.next(f), frame_parser::status::too_large);
  EXPECT_EQ(p.declared_length(), 4096u);
}

TEST(AudioSocketFrameParser, AFrameAtTheLimitPasses) {
  frame_parser p(320);
  p.append(frame_bytes(audio, std::string(320, 'x')));
  frame_parser::frame f;
  ASSERT_EQ(p.next(f), frame_parser::status::frame);
  EXPECT_EQ(f.payload.size(), 320u);
}

TEST(AudioSocketFrameParser, FramesBeforeATooLargeOneAreHandedOut) {
  frame_parser p(320);
  bytes wire = frame_bytes(uuid, std::string(16, 'u'));
  append(wire, bytes{audio, 0x02, 0x00});
  p.append(wire);
  frame_parser::frame f;
  ASSERT_EQ(p.next(f), frame_parser::status::frame);
  EXPECT_EQ(f.kind, uuid);
  EXPECT_EQ(p.next(f), frame_parser::status::too_large);
  EXPECT_EQ(p.declared_length(), 512u);
}

TEST(AudioSocketFrameParser, InsideFrameAfterAnyPartOfAFrame) {
  const bytes wire = frame_bytes(dtmf, "7");
  for (std::size_t n = 1; n < wire.size(); ++n) {
    frame_parser p(1024);
    p.append(std::span(wire).first(n));
    frame_parser::frame f;
    EXPECT_EQ(p.next(f), frame_parser::status::need_more) << n;
    EXPECT_TRUE(p.inside_frame()) << n;
  }
}

TEST(AudioSocketRateOf, TheAudioKinds) {
  EXPECT_EQ(rate_of(0x10), 8000u);
  EXPECT_EQ(rate_of(0x11), 12000u);
  EXPECT_EQ(rate_of(0x12), 16000u);
  EXPECT_EQ(rate_of(0x13), 24000u);
  EXPECT_EQ(rate_of(0x14), 32000u);
  EXPECT_EQ(rate_of(0x15), 44100u);
  EXPECT_EQ(rate_of(0x16), 48000u);
  EXPECT_EQ(rate_of(0x17), 96000u);
  EXPECT_EQ(rate_of(0x18), 192000u);
  EXPECT_EQ(rate_of(audio), 8000u);
  EXPECT_EQ(rate_of(audio_slin192), 192000u);
}

TEST(AudioSocketRateOf, ZeroForEveryOtherKind) {
  for (int k = 0; k < 256; ++k) {
    if (k >= 0x10 && k <= 0x18) continue;
    EXPECT_EQ(rate_of(static_cast<std::uint8_t>(k)), 0u) << k;
  }
}

TEST(AudioSocketUuidText, CanonicalLowerCase) {
  EXPECT_EQ(uuid_text(some_uuid), "0b3d5e9a-8f1c-4d2e-9a7b-6c5d4e3f2a1b");
  std::array<std::uint8_t, 16> zero{};
  EXPECT_EQ(uuid_text(zero), "00000000-0000-0000-0000-000000000000");
  std::array<std::uint8_t, 16> high;
  high.fill(0xff);
  EXPECT_EQ(uuid_text(high), "ffffffff-ffff-ffff-ffff-ffffffffffff");
  std::array<std::uint8_t, 16> counting;
  for (std::size_t i = 0; i < 16; ++i) counting[i] = static_cast<std::uint8_t>(i * 0x11);
  EXPECT_EQ(uuid_text(counting), "00112233-4455-6677-8899-aabbccddeeff");
}

TEST(AudioSocketUuidText, IsAValidCallId) {
  EXPECT_TRUE(is_valid_call_id(uuid_text(some_uuid)));
  EXPECT_EQ(uuid_text(some_uuid).size(), 36u);
}

TEST(AudioSocketNetwork, Ipv4Prefixes) {
  EXPECT_TRUE(contains("10.0.0.0/8", "10.0.0.1"));
  EXPECT_TRUE(contains("10.0.0.0/8", "10.255.255.255"));
  EXPECT_FALSE(contains("10.0.0.0/8", "11.0.0.0"));
  EXPECT_FALSE(contains("10.0.0.0/8", "9.255.255.255"));
  EXPECT_TRUE(contains("192.168.0.0/23", "192.168.1.255"));
  EXPECT_FALSE(contains("192.168.0.0/23", "192.168.2.0"));
  EXPECT_TRUE(contains("172.16.0.0/12", "172.31.1.1"));
  EXPECT_FALSE(contains("172.16.0.0/12", "172.32.0.0"));
  EXPECT_TRUE(contains("0.0.0.0/0", "203.0.113.7"));
  // Host bits of the network's address do not matter.
  EXPECT_TRUE(contains("10.1.2.3/8", "10.200.0.1"));
}

TEST(AudioSocketNetwork, AnAddressAloneIsThatHost) {
  const auto n = parse_network("127.0.0.1");
  ASSERT_TRUE(n);
  EXPECT_EQ(n->prefix, 32u);
  EXPECT_TRUE(n->contains(ip("127.0.0.1")));
  EXPECT_FALSE(n->contains(ip("127.0.0.2")));

  const auto v6 = parse_network("::1");
  ASSERT_TRUE(v6);
  EXPECT_EQ(v6->prefix, 128u);
  EXPECT_TRUE(v6->contains(ip("::1")));
  EXPECT_FALSE(v6->contains(ip("::2")));
  EXPECT_TRUE(contains("10.0.0.7/32", "10.0.0.7"));
  EXPECT_FALSE(contains("10.0.0.7/32", "10.0.0.6"));
}

TEST(AudioSocketNetwork, Ipv6Prefixes) {
  EXPECT_TRUE(contains("fd00::/8", "fd12:3456::1"));
  EXPECT_FALSE(contains("fd00::/8", "fe80::1"));
  EXPECT_TRUE(contains("2001:db8::/32", "2001:db8:ffff::1"));
  EXPECT_FALSE(contains("2001:db8::/32", "2001:db9::1"));
  EXPECT_TRUE(contains("2001:db8:0:0:8000::/65", "2001:db8::ffff:0:0:1"));
  EXPECT_FALSE(contains("2001:db8:0:0:8000::/65", "2001:db8::7fff:0:0:1"));
  EXPECT_TRUE(contains("::/0", "2001:db8::1"));
}

TEST(AudioSocketNetwork, FamiliesDoNotMix) {
  EXPECT_FALSE(contains("0.0.0.0/0", "2001:db8::1"));
  EXPECT_FALSE(contains("::/0", "10.0.0.1"));
  EXPECT_FALSE(contains("::1", "127.0.0.1"));
}

TEST(AudioSocketNetwork, AV4MappedPeerIsItsIpv4Address) {
  // A listener bound to :: sees IPv4 peers as ::ffff:a.b.c.d.
  EXPECT_TRUE(contains("10.0.0.0/8", "::ffff:10.1.2.3"));
  EXPECT_FALSE(contains("10.0.0.0/8", "::ffff:11.1.2.3"));
  EXPECT_TRUE(contains("127.0.0.1", "::ffff:127.0.0.1"));
  // Being its IPv4 address, it is in no IPv6 network: allowing ::/0 does not allow IPv4 peers.
  EXPECT_FALSE(contains("::/0", "::ffff:10.1.2.3"));
}

TEST(AudioSocketNetwork, AV4MappedNetworkIsItsIpv4Network) {
  const auto n = parse_network("::ffff:10.0.0.0/104");
  ASSERT_TRUE(n);
  EXPECT_TRUE(n->contains(ip("10.1.2.3")));
  EXPECT_TRUE(n->contains(ip("::ffff:10.255.0.1")));
  EXPECT_FALSE(n->contains(ip("11.0.0.1")));
  EXPECT_TRUE(contains("::ffff:192.0.2.1", "192.0.2.1"));
  EXPECT_FALSE(contains("::ffff:192.0.2.1", "192.0.2.2"));
  EXPECT_EQ(n->prefix, 8u);
  EXPECT_TRUE(n->address.is_v4());
  // Wider than the v4-mapped range: no IPv4 network.
  EXPECT_FALSE(parse_network("::ffff:10.0.0.0/95"));
}

TEST(AudioSocketNetwork, RefusesWhatIsNotANetwork) {
  for (const char* bad : {"", "/8", "10.0.0.0/", "10.0.0.0/33", "10.0.0.0/-1", "10.0.0.0/8x", "10.0.0.0/8/8",
                          "10.0.0.0/ 8", " 10.0.0.0/8", "10.0.0/8", "10.0.0.256", "localhost",
                          "host.example/8", "::1/129", "fd00::/1000", "fd00:::/8", "10.0.0.0/99999999999"}) {
    EXPECT_FALSE(parse_network(bad)) << bad;
  }
}

TEST(AudioSocketNetwork, TheWidestPrefixesAreTaken) {
  ASSERT_TRUE(parse_network("10.0.0.0/32"));
  ASSERT_TRUE(parse_network("10.0.0.0/0"));
  ASSERT_TRUE(parse_network("fd00::/128"));
  EXPECT_EQ(parse_network("fd00::/128")->prefix, 128u);
  EXPECT_EQ(parse_network("10.0.0.0/0")->prefix, 0u);
}

}  // namespace
}  // namespace aipbx::streams::audiosocket
