// Pause-aware segmentation through the real binary (issue 15): `aipbx serve --segmenter vad` cuts calls
// with audio into AI jobs at pauses, found by WebRTC's voice detector in what the store holds. The audio is
// synthesized (vowel-like voice and silence, 8 kHz), so where its pauses are is known exactly. Checked:
// every cut falls in a pause, the jobs cover the call once; the same audio cut the same way whatever the
// packets' order and repeats; each track of a two-track stream cut at its own pauses; and a kill -9 in the
// middle of a call neither loses nor doubles a cut. The mock engine (no delay, no failures) runs the jobs.
#include <algorithm>
#include <csignal>
#include <cmath>
#include <cstdint>
#include <numbers>
#include <numeric>
#include <random>
#include <string>
#include <vector>

#include "harness/api.hpp"
#include "harness/fixture.hpp"
#include "harness/run_binary.hpp"
#include "harness/stream_clients.hpp"
#include "media/audio_codec.hpp"

namespace aipbx::itest {
namespace {

namespace json = boost::json;

constexpr std::uint32_t rate = 8000;

// A call's audio at 8 kHz, built from voice and pauses, and where the pauses are (seconds).
struct call_audio {
  std::vector<std::int16_t> samples;
  std::vector<std::pair<double, double>> pauses;

  // Vowel-like voice: a `pitch` Hz fundamental and its harmonics to 3.4 kHz, swelling four times a second.
  call_audio& talk(double seconds, double pitch = 150) {
    const std::size_t from = samples.size();
    samples.resize(from + static_cast<std::size_t>(seconds * rate));
    for (std::size_t i = from; i < samples.size(); ++i) {
      const double t = static_cast<double>(i) / rate;
      double v = 0;
      for (int h = 1; pitch * h < 3400.0; ++h) v += std::sin(2 * std::numbers::pi * pitch * h * t) / h;
      samples[i] = static_cast<std::int16_t>(std::lround(4000 * (0.6 + 0.4 * std::sin(2 * std::numbers::pi * 4 * t)) * v));
    }
    return *this;
  }
  call_audio& pause(double seconds) {
    const double from = static_cast<double>(samples.size()) / rate;
    pauses.emplace_back(from, from + seconds);
    samples.resize(samples.size() + static_cast<std::size_t>(seconds * rate), 0);
    return *this;
  }
  std::size_t packet_count() const { return (samples.size() + 159) / 160; }
  std::span<const std::int16_t> packet(std::size_t i) const {
    return std::span(samples).subspan(i * 160, std::min<std::size_t>(160, samples.size() - i * 160));
  }
  std::vector<std::string> pcmu_packets() const {
    std::vector<std::string> out;
    for (std::size_t i = 0; i < packet_count(); ++i)
      out.push_back(media::encode_audio(media::media_format::pcmu(), packet(i)));
    return out;
  }
  // Whether the cut after packet `last` falls inside a pause.
  bool cut_in_a_pause(std::int64_t last) const {
    const double at = static_cast<double>(last) * 0.02;
    return std::any_of(pauses.begin(), pauses.end(), [&](const auto& p) { return at > p.first && at < p.second; });
  }
};

struct segment {
  std::int64_t first = 0, last = 0;
  friend bool operator==(const segment&, const segment&) = default;
};

class SegmenterTest : public integration_test {
 protected:
  void start(server_flags extra = {}) {
    server_flags flags{{"--engine", "mock"},          {"--mock-delay-ms", "0:0"},
                       {"--mock-failure-rate", "0"},  {"--workers", "2"},
                       {"--segmenter", "vad"},        {"--segment-min", "1s"},
                       {"--segment-max", "10s"},      {"--segment-silence", "300ms"},
                       {"--reorder-window", "50,10s"}};
    for (const auto& [name, value] : extra.items()) flags.set(name, value);
    start_server(flags);
  }

  // Declares pcmu/8000 and posts packets first..last of `packets` (sequence i + 1), in blocks of 8 each in
  // a random order, every 5th sent twice.
  void stream(connection& c, const std::string& call_id, const std::vector<std::string>& packets, unsigned seed,
              std::size_t first = 1, std::size_t last = 0) {
    if (first == 1) {
      auto declared = c.post_json("/v1/calls/" + call_id, R"({"media": {"format": "pcmu/8000", "packet_ms": 20}})");
      ASSERT_EQ(declared.status, 201) << declared.body;
    }
    if (last == 0) last = packets.size();
    std::vector<std::int64_t> order(last - first + 1);
    std::iota(order.begin(), order.end(), static_cast<std::int64_t>(first));
    std::mt19937 random(seed);
    for (std::size_t at = 0; at < order.size(); at += 8)
      std::shuffle(order.begin() + static_cast<std::ptrdiff_t>(at),
                   order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), at + 8)), random);
    for (std::size_t i = 0; i < order.size(); ++i) {
      const auto s = order[i];
      for (int n = 0; n < (i % 5 == 4 ? 2 : 1); ++n) {
        auto r = post_packet(c, call_id, s, packets[static_cast<std::size_t>(s - 1)]);
        ASSERT_EQ(r.status, 202) << call_id << " #" << s << ": " << r.body;
      }
    }
  }

  void end_and_settle(connection& c, const std::string& call_id) {
    auto ended = c.request("POST", "/v1/calls/" + call_id + "/end");
    ASSERT_EQ(ended.status, 200) << ended.body;
    ASSERT_TRUE(wait_until([&] { return call_state(c, call_id) == "COMPLETED"; }, 30s, 20ms))
        << call_id << " is " << call_state(c, call_id);
  }

  // The call's segments, from its jobs, in sequence order.
  std::vector<segment> segments(connection& c, const std::string& call_id) {
    std::vector<segment> out;
    for (const auto& j : all_jobs(c, "call_id=" + call_id))
      out.push_back({as_int(j.at("first_sequence")), as_int(j.at("last_sequence"))});
    std::sort(out.begin(), out.end(), [](const segment& a, const segment& b) { return a.first < b.first; });
    return out;
  }

  // Every segment but the last ends in a pause, and together they cover packets 1..count once.
  void expect_cut_at_pauses(const std::vector<segment>& segs, const call_audio& audio, const std::string& what) {
    ASSERT_FALSE(segs.empty()) << what;
    std::int64_t next = 1;
    for (std::size_t i = 0; i < segs.size(); ++i) {
      EXPECT_EQ(segs[i].first, next) << what << " segment " << i;
      if (i + 1 < segs.size()) {
        EXPECT_TRUE(audio.cut_in_a_pause(segs[i].last)) << what << " cut after " << segs[i].last;
      }
      next = segs[i].last + 1;
    }
    EXPECT_EQ(next, static_cast<std::int64_t>(audio.packet_count()) + 1) << what;
  }
};

call_audio conversation(double pitch = 150) {
  call_audio a;
  a.talk(1.6, pitch).pause(0.6).talk(2.2, pitch).pause(0.5).talk(0.8, pitch).pause(0.9).talk(2.5, pitch).pause(0.45).talk(1.2, pitch);
  return a;
}

TEST_F(SegmenterTest, CallsAreCutAtTheirPausesWhateverTheOrderOfTheirPackets) {
  start();
  auto c = connect(30s);
  const auto audio = conversation();
  const auto packets = audio.pcmu_packets();
  ASSERT_NO_FATAL_FAILURE(stream(c, "first", packets, 1));
  end_and_settle(c, "first");
  const auto reference = segments(c, "first");
  ASSERT_EQ(reference.size(), 5u) << "four pauses, four cuts";
  expect_cut_at_pauses(reference, audio, "first");

  for (unsigned seed : {2u, 3u}) {
    const std::string id = "again-" + std::to_string(seed);
    ASSERT_NO_FATAL_FAILURE(stream(c, id, packets, seed));
    end_and_settle(c, id);
    EXPECT_EQ(segments(c, id), reference) << id;
  }
  // The mock's transcript is the packets' data in order: every packet once, whatever the cuts.
  const auto transcript = get_ok(c, "/v1/calls/first/transcript");
  EXPECT_EQ(std::string(transcript.at("text").as_string()), joined(packets));

  const auto metrics = c.get("/metrics");
  ASSERT_EQ(metrics.status, 200);
  const std::string cuts = "aipbx_segmenter_cuts_total{result=\"cut\"} ";
  const auto at = metrics.body.find(cuts);
  ASSERT_NE(at, std::string::npos) << metrics.body;
  EXPECT_EQ(std::stod(metrics.body.substr(at + cuts.size())), 15.0) << "five segments of three calls";
}

TEST_F(SegmenterTest, EachTrackOfAStreamIsCutAtItsOwnPauses) {
  start();
  // The audio fork in stereo: the caller (left) and the callee (right) talk in turns.
  call_audio left, right;
  left.talk(2).pause(2.4).talk(1.5).pause(0.6).talk(1.5);
  right.pause(0.9).talk(3.6, 220).pause(0.7).talk(2.8, 220);
  ASSERT_EQ(left.samples.size(), right.samples.size());
  auto ws = ws_client(server().port(), "/v1/audio-fork/duo?rate=8000&mix=stereo");
  ws.send_text(R"({"from":"+15551230000"})");
  std::string frames;
  for (std::size_t i = 0; i < left.samples.size(); ++i)
    for (const auto s : {left.samples[i], right.samples[i]}) {
      frames.push_back(static_cast<char>(static_cast<std::uint16_t>(s) & 0xff));
      frames.push_back(static_cast<char>(static_cast<std::uint16_t>(s) >> 8));
    }
  for (std::size_t at = 0; at < frames.size(); at += 3200) ws.send_binary(std::string_view(frames).substr(at, 3200));
  ws.send_binary("");  // graceful stop: the calls end
  EXPECT_EQ(ws.wait_close().code, 1000);

  auto c = connect(30s);
  for (const char* id : {"duo", "duo:outbound"})
    ASSERT_TRUE(wait_until([&] { return call_state(c, id) == "COMPLETED"; }, 30s, 20ms)) << id << " is " << call_state(c, id);
  const auto caller = segments(c, "duo"), callee = segments(c, "duo:outbound");
  expect_cut_at_pauses(caller, left, "caller");
  expect_cut_at_pauses(callee, right, "callee");
  EXPECT_EQ(caller.size(), 3u);
  EXPECT_EQ(callee.size(), 2u) << "the callee's first pause is before --segment-min";
  EXPECT_NE(caller, callee);
}

TEST_F(SegmenterTest, AKillInTheMiddleOfACallNeitherLosesNorDoublesACut) {
  start();
  auto c = connect(30s);
  const auto audio = conversation();
  const auto packets = audio.pcmu_packets();
  const std::size_t half = packets.size() * 3 / 5;
  ASSERT_NO_FATAL_FAILURE(stream(c, "killed", packets, 7, 1, half));
  ASSERT_TRUE(wait_until([&] { return segments(c, "killed").size() >= 2; }, 10s, 20ms)) << "cuts in the first part";
  server().kill();
  ASSERT_EQ(server().wait_exit(10s), 128 + SIGKILL);
  server().start();
  c = connect(30s);
  // The sender goes on, repeating the packets it sent last (it never saw their answers).
  ASSERT_NO_FATAL_FAILURE(stream(c, "killed", packets, 8, half - 20, packets.size()));
  end_and_settle(c, "killed");
  ASSERT_NO_FATAL_FAILURE(stream(c, "whole", packets, 9));
  end_and_settle(c, "whole");
  const auto killed = segments(c, "killed");
  EXPECT_EQ(killed, segments(c, "whole"));
  expect_cut_at_pauses(killed, audio, "killed");
  EXPECT_EQ(std::string(get_ok(c, "/v1/calls/killed/transcript").at("text").as_string()), joined(packets));
}

TEST_F(SegmenterTest, FixedCutsStayTheDefault) {
  start({{"--segmenter", "fixed"}, {"--segment-packets", "100"}});
  auto c = connect(30s);
  const auto packets = conversation().pcmu_packets();
  ASSERT_NO_FATAL_FAILURE(stream(c, "fixed", packets, 1));
  end_and_settle(c, "fixed");
  const auto segs = segments(c, "fixed");
  ASSERT_EQ(segs.size(), (packets.size() + 99) / 100);
  for (std::size_t i = 0; i + 1 < segs.size(); ++i) EXPECT_EQ(segs[i].last, static_cast<std::int64_t>(100 * (i + 1)));
  EXPECT_EQ(c.get("/metrics").body.find("aipbx_segmenter_cuts_total"), std::string::npos);
}

TEST(SegmenterOptions, BadPauseRulesStopTheStart) {
  test::temp_dir dir;
  for (const std::vector<std::string>& rules : {std::vector<std::string>{"--segment-min", "5s", "--segment-max", "4s"},
                                               {"--segment-silence", "0"},
                                               {"--segment-silence", "305ms"}}) {
    std::vector<std::string> args{"serve", "--segmenter", "vad", "--port", "0", "--db", (dir.path() / "never.db").string()};
    args.insert(args.end(), rules.begin(), rules.end());
    const auto run = run_aipbx(args);
    EXPECT_EQ(run.exit_code, 2) << run.err;
    EXPECT_NE(run.err.find("--segment-min, --segment-max, --segment-silence"), std::string::npos) << run.err;
  }
  const auto run = run_aipbx({"serve", "--segmenter", "words", "--db", (dir.path() / "never.db").string()});
  EXPECT_EQ(run.exit_code, 2);
  EXPECT_NE(run.err.find("--segmenter"), std::string::npos) << run.err;
}

}  // namespace
}  // namespace aipbx::itest
