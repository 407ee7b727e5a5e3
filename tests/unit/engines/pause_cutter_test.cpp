// The pause cutter over a real SQLite store: synthesized calls (vowel-like tones, silence, noise) and
// Debian's recorded speech, stored as 8 kHz mu-law packets, cut by passes of the cutter run by hand.
#include "engines/pause_cutter.hpp"

#include "media/audio_codec.hpp"
#include "storage/sqlite/sqlite_call_store.hpp"
#include "support/speech_corpus.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <cmath>
#include <future>
#include <numbers>
#include <random>

namespace aipbx::engines {
namespace {

constexpr std::uint32_t rate = 8000;

// Vowel-like voice: a 150 Hz fundamental with its harmonics to 3.4 kHz, swelling four times a second.
std::vector<std::int16_t> voice(double seconds) {
  std::vector<std::int16_t> s(static_cast<std::size_t>(seconds * rate));
  for (std::size_t i = 0; i < s.size(); ++i) {
    const double t = static_cast<double>(i) / rate;
    double v = 0;
    for (int h = 1; 150.0 * h < 3400.0; ++h) v += std::sin(2 * std::numbers::pi * 150 * h * t) / h;
    s[i] = static_cast<std::int16_t>(std::lround(4000 * (0.6 + 0.4 * std::sin(2 * std::numbers::pi * 4 * t)) * v));
  }
  return s;
}

std::vector<std::int16_t> quiet(double seconds) { return std::vector<std::int16_t>(static_cast<std::size_t>(seconds * rate)); }

// A call's audio, part by part, and where its pauses are (in seconds).
struct call_audio {
  std::vector<std::int16_t> samples;
  std::vector<std::pair<double, double>> pauses;

  call_audio& talk(double seconds) {
    const auto v = voice(seconds);
    samples.insert(samples.end(), v.begin(), v.end());
    return *this;
  }
  call_audio& pause(double seconds) {
    const double from = static_cast<double>(samples.size()) / rate;
    pauses.emplace_back(from, from + seconds);
    const auto q = quiet(seconds);
    samples.insert(samples.end(), q.begin(), q.end());
    return *this;
  }
  // Steady background noise under everything (a line's hiss).
  call_audio& with_noise(double amplitude) {
    std::mt19937 rng(11);
    std::normal_distribution<double> d(0, amplitude);
    for (auto& x : samples) x = static_cast<std::int16_t>(std::clamp(x + d(rng), -32768.0, 32767.0));
    return *this;
  }
  std::vector<std::string> packets() const {
    std::vector<std::string> out;
    for (std::size_t at = 0; at < samples.size(); at += 160)
      out.push_back(media::encode_audio(media::media_format::pcmu(),
                                        std::span(samples).subspan(at, std::min<std::size_t>(160, samples.size() - at))));
    return out;
  }
};

template <class R, class Start>
R wait_for(Start start) {
  std::promise<R> promise;
  auto future = promise.get_future();
  start([&promise](R r) { promise.set_value(std::move(r)); });
  return future.get();
}

class PauseCutter : public ::testing::Test {
 protected:
  void SetUp() override { open(); }
  void open() {
    store_.reset();
    sqlite_options o;
    o.path = (dir_ / "calls.db").string();
    o.segment_packets = 1;
    o.cut_outside = [](const std::optional<media_declaration>& m) { return m && m->format != "none"; };
    o.clock = [this] { return now_; };
    store_ = std::make_unique<sqlite_call_store>(std::move(o));
  }
  pause_cutter_options cutter_options(pause_rules r, int aggressiveness) {
    pause_cutter_options o;
    o.rules = r;
    o.aggressiveness = aggressiveness;
    o.segment_idle = 2.0;
    o.clock = [this] { return now_; };
    return o;
  }
  pause_cutter cutter(pause_rules r = pause_rules{1000, 10'000, 400}, int aggressiveness = 2) {
    return pause_cutter(*store_, cutter_options(r, aggressiveness));
  }
  std::unique_ptr<pause_cutter> make_cutter() {
    return std::make_unique<pause_cutter>(*store_, cutter_options(pause_rules{1000, 10'000, 400}, 2));
  }
  void declare(const std::string& call) {
    ASSERT_TRUE(wait_for<result<declare_outcome>>(
        [&](auto done) { store_->declare_media(call, media_declaration{"pcmu/8000", 20}, done); }));
  }
  void put(const std::string& call, std::int64_t seq, const std::string& data) {
    auto r = wait_for<result<ingest_outcome>>(
        [&](auto done) { store_->ingest(packet{call, seq, data, 0.0, std::string("pcmu/8000")}, done); });
    ASSERT_TRUE(r) << r.error().message();
  }
  void put_all(const std::string& call, const std::vector<std::string>& packets) {
    for (std::size_t i = 0; i < packets.size(); ++i) put(call, static_cast<std::int64_t>(i + 1), packets[i]);
  }
  void end(const std::string& call) {
    ASSERT_TRUE(wait_for<result<call_state>>([&](auto done) { store_->end_call(call, "hangup", done); }));
  }
  std::vector<seq_range> segments(const std::string& call) {
    job_query q;
    q.call_id = call;
    q.limit = 1000;
    std::vector<seq_range> out;
    for (const auto& j : store_->list_jobs(q).value().jobs) out.push_back({j.first_sequence, j.last_sequence});
    return out;
  }

  test::temp_dir dir_{"aipbx-cutter"};  // first: removed last, after the store whose files it holds
  double now_ = 1000;
  std::unique_ptr<sqlite_call_store> store_;
};

// Whether the cut after `last` (a sequence) falls inside one of the pauses.
bool in_a_pause(const call_audio& a, std::int64_t last) {
  const double at = static_cast<double>(last) * 0.02;
  return std::any_of(a.pauses.begin(), a.pauses.end(), [&](const auto& p) { return at > p.first && at < p.second; });
}

TEST_F(PauseCutter, CutsInThePausesAndTheRestWhenTheCallEnds) {
  call_audio a;
  a.talk(2).pause(0.8).talk(2.5).pause(1).talk(1.2);
  const auto packets = a.packets();
  declare("c1");
  put_all("c1", packets);
  auto c = cutter();
  c.run_once();
  auto cuts = segments("c1");
  ASSERT_EQ(cuts.size(), 2u) << "one cut per pause; the last words wait for more audio";
  EXPECT_EQ(cuts[0].first, 1);
  EXPECT_TRUE(in_a_pause(a, cuts[0].last)) << cuts[0].last;
  EXPECT_EQ(cuts[1].first, cuts[0].last + 1);
  EXPECT_TRUE(in_a_pause(a, cuts[1].last)) << cuts[1].last;
  c.run_once();
  EXPECT_EQ(segments("c1").size(), 2u) << "nothing new heard, nothing cut";

  end("c1");
  EXPECT_EQ(store_->get_call("c1").value().state, call_state::processing_ai);
  c.run_once();
  cuts = segments("c1");
  ASSERT_EQ(cuts.size(), 3u);
  EXPECT_EQ(cuts[2], (seq_range{cuts[1].last + 1, static_cast<std::int64_t>(packets.size())}));
  EXPECT_TRUE(store_->uncut_calls("", 10).value().empty());
  EXPECT_EQ(c.stats().cuts, 3u);
}

TEST_F(PauseCutter, ContinuousSoundIsCutAtTheMaximum) {
  call_audio a;
  a.talk(12);
  declare("c1");
  put_all("c1", a.packets());
  auto c = cutter(pause_rules{1000, 5000, 400});
  c.run_once();
  EXPECT_EQ(segments("c1"), (std::vector<seq_range>{{1, 250}, {251, 500}}));
}

TEST_F(PauseCutter, SilenceStaysWithTheWordsThatFollowIt) {
  call_audio a;
  a.pause(3).talk(1.5).pause(0.8).talk(1);
  declare("c1");
  put_all("c1", a.packets());
  auto c = cutter(pause_rules{1000, 10'000, 400});
  c.run_once();
  const auto cuts = segments("c1");
  ASSERT_EQ(cuts.size(), 1u) << "the leading silence is no pause: one cut, after the words";
  EXPECT_TRUE(in_a_pause(a, cuts[0].last)) << cuts[0].last;
  EXPECT_GT(cuts[0].last, 225) << "after the voice that starts at 4.5 s";

  call_audio hush;
  hush.pause(25);
  declare("c2");
  put_all("c2", hush.packets());
  c.run_once();
  EXPECT_EQ(segments("c2"), (std::vector<seq_range>{{1, 500}, {501, 1000}})) << "silence alone: cut at the maximum";
}

TEST_F(PauseCutter, PausesUnderSteadyNoiseAreFound) {
  call_audio a;
  a.talk(2).pause(0.8).talk(2).pause(0.8).talk(1).with_noise(60);
  declare("c1");
  put_all("c1", a.packets());
  auto c = cutter(pause_rules{1000, 10'000, 400}, 3);
  c.run_once();
  const auto cuts = segments("c1");
  ASSERT_EQ(cuts.size(), 2u);
  for (const auto& cut : cuts) EXPECT_TRUE(in_a_pause(a, cut.last)) << cut.last;
}

TEST_F(PauseCutter, AnIdleCallHasItsRestCut) {
  call_audio a;
  a.talk(2).pause(0.8).talk(1);
  declare("c1");
  put_all("c1", a.packets());
  auto c = cutter();
  c.run_once();
  ASSERT_EQ(segments("c1").size(), 1u);
  now_ += 1;
  c.run_once();
  EXPECT_EQ(segments("c1").size(), 1u) << "1 s without a packet: the call may go on";
  now_ += 1.5;
  c.run_once();
  const auto cuts = segments("c1");
  ASSERT_EQ(cuts.size(), 2u);
  EXPECT_EQ(cuts[1].last, static_cast<std::int64_t>(a.packets().size()));
  EXPECT_EQ(store_->get_call("c1").value().state, call_state::in_progress) << "idle is not ended";
}

TEST_F(PauseCutter, CallsWithoutAudioAreLeftToTheStore) {
  ASSERT_TRUE(wait_for<result<ingest_outcome>>(
      [&](auto done) { store_->ingest(packet{"plain", 1, "text", 0.0, std::nullopt}, done); }));
  EXPECT_EQ(segments("plain").size(), 1u) << "cut by packets";
  auto c = cutter();
  c.run_once();
  EXPECT_EQ(segments("plain").size(), 1u);
  EXPECT_EQ(c.stats().cuts, 0u);
}

// The cuts of a call, its packets stored in `order` (indexes into `packets`, repeats allowed) with a pass
// of a cutter after every `pass_every` packets, the cutter replaced by a new one (a restart) at `restart_at`.
class PauseCutterOrder : public PauseCutter {
 public:
  std::vector<seq_range> cut(const std::string& call, const std::vector<std::string>& packets,
                             const std::vector<std::size_t>& order, std::size_t pass_every, std::size_t restart_at) {
    declare(call);
    auto c = make_cutter();
    for (std::size_t i = 0; i < order.size(); ++i) {
      put(call, static_cast<std::int64_t>(order[i] + 1), packets[order[i]]);
      if (i == restart_at) c = make_cutter();
      if ((i + 1) % pass_every == 0) c->run_once();
    }
    end(call);
    c->run_once();
    return segments(call);
  }
};

TEST_F(PauseCutterOrder, CutsDependOnTheAudioNotOnArrivalOrPassesOrRestarts) {
  call_audio a;
  a.talk(1.5).pause(0.6).talk(2).pause(0.5).talk(0.7).pause(0.9).talk(3).pause(0.45).talk(1);
  const auto packets = a.packets();
  std::vector<std::size_t> in_order(packets.size());
  for (std::size_t i = 0; i < in_order.size(); ++i) in_order[i] = i;
  const auto reference = cut("ref", packets, in_order, packets.size(), packets.size());
  ASSERT_GE(reference.size(), 3u);

  std::mt19937 rng(5);
  for (int run = 0; run < 3; ++run) {
    // Shuffled within a window of 30 packets, with a tenth of them sent twice.
    std::vector<std::size_t> order = in_order;
    for (std::size_t at = 0; at < order.size(); at += 30)
      std::shuffle(order.begin() + static_cast<std::ptrdiff_t>(at),
                   order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), at + 30)), rng);
    for (std::size_t i = 0; i < order.size(); i += 10) {
      const std::size_t again = order[i];  // sent again up to three packets later (never past the end)
      order.insert(order.begin() + static_cast<std::ptrdiff_t>(std::min(i + 3, order.size())), again);
    }
    const std::string call = "c" + std::to_string(run);
    EXPECT_EQ(cut(call, packets, order, 7 + 13 * static_cast<std::size_t>(run), 100 + 150 * static_cast<std::size_t>(run)),
              reference)
        << call;
  }
}

TEST_F(PauseCutter, RecordedSpeechIsCutInThePausesBetweenSentences) {
  // goforward and the cards set, each followed by half a second of silence, as a caller pauses between
  // sentences (the recordings themselves end within a few tens of ms of their last word).
  std::vector<std::string> packets;
  std::vector<double> boundaries;  // where each pause starts, in seconds
  const auto add = [&](const std::vector<std::int16_t>& samples_16k) {
    auto p = test::pcmu_packets(samples_16k);
    boundaries.push_back(static_cast<double>(packets.size() + p.size()) * 0.02);
    p.resize(p.size() + 25, media::encode_audio(media::media_format::pcmu(), quiet(0.02)));
    packets.insert(packets.end(), p.begin(), p.end());
  };
  add(test::read_raw16(test::speech_data + "goforward.raw"));
  for (const auto& r : test::cards_recordings()) add(test::read_wav16(r.path));
  declare("speech");
  put_all("speech", packets);
  end("speech");
  auto c = cutter(pause_rules{1000, 15'000, 300});
  c.run_once();
  const auto cuts = segments("speech");
  ASSERT_GE(cuts.size(), boundaries.size() - 1);
  // A cut in each pause, which begins with the recording's own trailing silence (up to half a second:
  // goforward's), and in no other place; then the rest of the last pause, cut when the call ended.
  ASSERT_EQ(cuts.size(), boundaries.size() + 1);
  EXPECT_EQ(cuts.back().last, static_cast<std::int64_t>(packets.size()));
  for (std::size_t i = 0; i < boundaries.size(); ++i) {
    const double at = static_cast<double>(cuts[i].last) * 0.02;
    EXPECT_GE(at, boundaries[i] - 0.5) << "recording " << i;
    EXPECT_LE(at, boundaries[i] + 0.5) << "recording " << i;
  }
  for (const auto& r : cuts) EXPECT_LE((r.last - r.first + 1) * 20, 15'000 + 20);
}

}  // namespace
}  // namespace aipbx::engines
