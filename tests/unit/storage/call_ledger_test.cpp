// The call lifecycle core both writers share, without a database: records in, decisions and rows out.
#include "storage/call_ledger.hpp"

#include <gtest/gtest.h>

namespace aipbx {
namespace {

ledger_options opts(std::int64_t segment_packets = 1, reorder_window window = {}, double segment_idle = 2.0,
                    double idle_timeout = 0) {
  return {{segment_packets, window}, segment_idle, idle_timeout, {}};
}

packet pkt(std::int64_t sequence, std::string data = "x", double timestamp = 0) {
  packet p;
  p.call_id = "c1";
  p.sequence = sequence;
  p.data = std::move(data);
  p.timestamp = timestamp;
  return p;
}

TEST(CallLedger, NewPacketsAreCountedStoredAndCutIntoJobs) {
  call_ledger ledger(opts(2));
  ledger.begin();
  call_record rec = ledger.fresh("c1", 10);
  const packet a = pkt(1, "a", 5.0), b = pkt(2, "b", 4.0);
  auto first = ledger.ingest(rec, a, std::nullopt, 11);
  ASSERT_TRUE(first);
  EXPECT_FALSE(first->duplicate);
  EXPECT_EQ(first->kind, arrival::in_order);
  EXPECT_EQ(first->expected, 2);
  EXPECT_TRUE(ledger.rows().jobs.empty()) << "half a segment";
  auto second = ledger.ingest(rec, b, std::nullopt, 12);
  ASSERT_TRUE(second);
  EXPECT_EQ(second->last_sequence, 2);

  const auto& rows = ledger.rows();
  ASSERT_EQ(rows.packets.size(), 2u);
  EXPECT_EQ(rows.packets[1].sequence, 2);
  EXPECT_EQ(rows.packets[1].data, "b");
  EXPECT_FALSE(rows.packets[1].late);
  ASSERT_EQ(rows.jobs.size(), 1u);
  EXPECT_EQ(rows.jobs[0].call_id, "c1");
  EXPECT_EQ(rows.jobs[0].range, (seq_range{1, 2}));
  EXPECT_TRUE(rows.gaps.empty());
  EXPECT_EQ(rec.packets_received, 2);
  EXPECT_EQ(rec.jobs_total, 1);
  EXPECT_EQ(rec.first_timestamp, 4.0);
  EXPECT_EQ(rec.last_timestamp, 5.0);
  EXPECT_EQ(rec.last_packet_at, 12);
  ASSERT_EQ(ledger.dirty().size(), 1u) << "one record, listed once";
  EXPECT_EQ(ledger.dirty()[0], &rec);
  EXPECT_TRUE(rec.dirty);
  EXPECT_FALSE(rec.state_dirty);
}

TEST(CallLedger, RepeatedPacketIsAnIdempotentDuplicateAndDifferentDataConflicts) {
  call_ledger ledger(opts());
  ledger.begin();
  call_record rec = ledger.fresh("c1", 0);
  const packet p = pkt(1, "same");
  ASSERT_TRUE(ledger.ingest(rec, p, std::nullopt, 1));
  ledger.rows().clear();

  auto dup = ledger.ingest(rec, p, std::string_view("same"), 2);
  ASSERT_TRUE(dup);
  EXPECT_TRUE(dup->duplicate);
  EXPECT_EQ(dup->kind, arrival::duplicate);
  EXPECT_EQ(dup->last_sequence, 1);
  EXPECT_EQ(rec.duplicate_packets, 1);
  EXPECT_EQ(rec.packets_received, 1);
  EXPECT_TRUE(ledger.rows().empty()) << "nothing stored again";

  auto conflict = ledger.ingest(rec, pkt(1, "other"), std::string_view("same"), 3);
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error(), make_error_code(errc::sequence_conflict));
  EXPECT_EQ(rec.duplicate_packets, 1);
}

TEST(CallLedger, EndedCallAnswersRepeatsButRefusesNewPackets) {
  call_ledger ledger(opts());
  ledger.begin();
  call_record rec = ledger.fresh("c1", 0);
  ASSERT_TRUE(ledger.ingest(rec, pkt(1, "a"), std::nullopt, 1));
  ASSERT_TRUE(ledger.end(rec, "hangup", 2));
  ledger.rows().clear();

  auto repeat = ledger.ingest(rec, pkt(1, "a"), std::string_view("a"), 3);
  ASSERT_TRUE(repeat);
  EXPECT_TRUE(repeat->duplicate);
  auto fresh = ledger.ingest(rec, pkt(2, "b"), std::nullopt, 3);
  ASSERT_FALSE(fresh);
  EXPECT_EQ(fresh.error(), make_error_code(errc::call_ended));
  auto changed = ledger.ingest(rec, pkt(1, "z"), std::string_view("a"), 3);
  ASSERT_FALSE(changed);
  EXPECT_EQ(changed.error(), make_error_code(errc::call_ended));
  EXPECT_TRUE(ledger.rows().packets.empty());
}

TEST(CallLedger, GapsOpenSplitAndCloseAsRowChanges) {
  call_ledger ledger(opts(1, {100, 0}));
  ledger.begin();
  call_record rec = ledger.fresh("c1", 0);
  ASSERT_TRUE(ledger.ingest(rec, pkt(1), std::nullopt, 1));
  auto gap = ledger.ingest(rec, pkt(5), std::nullopt, 2);
  ASSERT_TRUE(gap);
  EXPECT_EQ(gap->kind, arrival::gap);
  EXPECT_EQ(gap->missing, 3);
  EXPECT_EQ(rec.gaps_opened, 1);
  auto split = ledger.ingest(rec, pkt(3), std::nullopt, 3);
  ASSERT_TRUE(split);
  EXPECT_EQ(split->kind, arrival::late);
  EXPECT_EQ(rec.out_of_order_packets, 1);

  const auto& g = ledger.rows().gaps;
  ASSERT_EQ(g.size(), 4u);
  EXPECT_EQ(g[0].what, gap_row::change::opened);
  EXPECT_EQ(g[0].range, (seq_range{2, 4}));
  EXPECT_EQ(g[0].opened_at, 2);
  EXPECT_EQ(g[1].what, gap_row::change::closed);
  EXPECT_EQ(g[1].range.first, 2);
  EXPECT_EQ(g[2].what, gap_row::change::opened);
  EXPECT_EQ(g[2].range, (seq_range{2, 2}));
  EXPECT_EQ(g[2].opened_at, 2) << "a split gap keeps its opening time";
  EXPECT_EQ(g[3].range, (seq_range{4, 4}));
  EXPECT_TRUE(rec.gaps_dirty);
  ASSERT_EQ(ledger.rows().jobs.size(), 1u) << "only 1 is contiguous";
}

TEST(CallLedger, EndCutsTheRestDeclaresGapsLostAndSettles) {
  call_ledger ledger(opts(1, {100, 0}));
  ledger.begin();
  call_record rec = ledger.fresh("c1", 0);
  ASSERT_TRUE(ledger.ingest(rec, pkt(1), std::nullopt, 1));
  ASSERT_TRUE(ledger.ingest(rec, pkt(3), std::nullopt, 1));
  ledger.rows().clear();

  auto ended = ledger.end(rec, "hangup", 5);
  ASSERT_TRUE(ended);
  EXPECT_EQ(*ended, call_state::processing_ai) << "jobs outstanding";
  EXPECT_EQ(rec.ended_at, 5);
  EXPECT_EQ(rec.end_reason, "hangup");
  EXPECT_TRUE(rec.state_dirty);
  EXPECT_EQ(rec.seq.lost_packets(), 1);
  const auto& rows = ledger.rows();
  ASSERT_EQ(rows.gaps.size(), 1u);
  EXPECT_EQ(rows.gaps[0].what, gap_row::change::lost);
  EXPECT_EQ(rows.gaps[0].range, (seq_range{2, 2}));
  ASSERT_EQ(rows.jobs.size(), 1u);
  EXPECT_EQ(rows.jobs[0].range, (seq_range{3, 3}));
  ASSERT_EQ(rows.transitions.size(), 1u);
  EXPECT_EQ(rows.transitions[0].from, call_state::in_progress);
  EXPECT_EQ(rows.transitions[0].to, call_state::processing_ai);
  EXPECT_EQ(rows.transitions[0].reason, "hangup");

  auto again = ledger.end(rec, "hangup", 6);
  ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), make_error_code(errc::invalid_transition));

  // A packet of the lost range arriving later would be stored flagged late; the call has ended, though.
  EXPECT_EQ(rec.jobs_total, 2);
}

TEST(CallLedger, PacketAfterItsGapWasLostIsStoredLate) {
  call_ledger ledger(opts(1, {2, 0}));
  ledger.begin();
  call_record rec = ledger.fresh("c1", 0);
  for (std::int64_t q : {1, 3, 4, 5}) ASSERT_TRUE(ledger.ingest(rec, pkt(q), std::nullopt, 1));
  ASSERT_EQ(rec.seq.lost_packets(), 1) << "the window of 2 packets passed over 2";
  auto late = ledger.ingest(rec, pkt(2), std::nullopt, 2);
  ASSERT_TRUE(late);
  EXPECT_EQ(late->kind, arrival::after_lost);
  EXPECT_EQ(rec.late_packets, 1);
  ASSERT_FALSE(ledger.rows().packets.empty());
  EXPECT_TRUE(ledger.rows().packets.back().late);
}

TEST(CallLedger, JobsSettleTheEndedCallAndReplayReopensIt) {
  call_ledger ledger(opts());
  ledger.begin();
  call_record rec = ledger.fresh("c1", 0);
  ASSERT_TRUE(ledger.ingest(rec, pkt(1), std::nullopt, 1));
  ASSERT_TRUE(ledger.ingest(rec, pkt(2), std::nullopt, 1));
  ASSERT_TRUE(ledger.end(rec, "hangup", 2));
  ASSERT_EQ(rec.outstanding(), 2);

  ledger.job_changed(rec, job_state::running, job_state::dead, 3);
  EXPECT_EQ(rec.state, call_state::failed);
  ledger.job_changed(rec, job_state::running, job_state::succeeded, 4);
  EXPECT_EQ(rec.state, call_state::failed) << "one job is dead";
  ledger.rows().clear();

  ledger.job_changed(rec, job_state::dead, job_state::queued, 5);
  EXPECT_EQ(rec.state, call_state::processing_ai);
  ASSERT_EQ(ledger.rows().transitions.size(), 1u);
  EXPECT_EQ(ledger.rows().transitions[0].reason, "a dead job was replayed");
  ledger.rows().clear();

  ledger.job_changed(rec, job_state::running, job_state::succeeded, 6);
  EXPECT_EQ(rec.state, call_state::completed);
  EXPECT_EQ(rec.state_changed_at, 6);
  ASSERT_TRUE(ledger.archive(rec, 7));
  EXPECT_EQ(rec.state, call_state::archived);
  auto twice = ledger.archive(rec, 8);
  ASSERT_FALSE(twice);
  EXPECT_EQ(twice.error(), make_error_code(errc::invalid_transition));
}

TEST(CallLedger, FailedCallCompletesThroughProcessing) {
  call_ledger ledger(opts());
  ledger.begin();
  call_record rec = ledger.fresh("c1", 0);
  ASSERT_TRUE(ledger.ingest(rec, pkt(1), std::nullopt, 1));
  ASSERT_TRUE(ledger.end(rec, "hangup", 2));
  ledger.job_changed(rec, job_state::running, job_state::dead, 3);
  ASSERT_EQ(rec.state, call_state::failed);
  ledger.rows().clear();
  // The dead job's replay succeeded without the call having been told of the replay first.
  ledger.job_changed(rec, job_state::dead, job_state::succeeded, 4);
  const auto& t = ledger.rows().transitions;
  ASSERT_EQ(t.size(), 2u);
  EXPECT_EQ(t[0].to, call_state::processing_ai);
  EXPECT_EQ(t[1].to, call_state::completed);
}

TEST(CallLedger, ArchiveNeedsAFinishedCall) {
  call_ledger ledger(opts());
  ledger.begin();
  call_record rec = ledger.fresh("c1", 0);
  auto r = ledger.archive(rec, 1);
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), make_error_code(errc::invalid_transition));
  EXPECT_TRUE(ledger.rows().transitions.empty());
}

TEST(CallLedger, MediaIsDeclaredOnceBeforeThePackets) {
  call_ledger ledger(opts());
  ledger.begin();
  const media_declaration ulaw{"pcmu/8000", 20}, alaw{"pcma/8000", 20};
  call_record rec = ledger.fresh("c1", 0);
  EXPECT_TRUE(call_ledger::media_matches(nullptr, pkt(1)));
  packet checked = pkt(1);
  checked.media = ulaw.format;
  EXPECT_FALSE(call_ledger::media_matches(nullptr, checked)) << "no call, no declaration";

  auto d = ledger.declare(rec, ulaw);
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->repeated);
  EXPECT_TRUE(rec.media_dirty);
  EXPECT_TRUE(call_ledger::media_matches(&rec, checked));
  EXPECT_FALSE(call_ledger::media_matches(&rec, pkt(1)));
  auto again = ledger.declare(rec, ulaw);
  ASSERT_TRUE(again);
  EXPECT_TRUE(again->repeated);
  auto other = ledger.declare(rec, alaw);
  ASSERT_FALSE(other);
  EXPECT_EQ(other.error(), make_error_code(errc::media_conflict));

  call_record late = ledger.fresh("c2", 0);
  ASSERT_TRUE(ledger.ingest(late, pkt(1), std::nullopt, 1));
  auto too_late = ledger.declare(late, ulaw);
  ASSERT_FALSE(too_late);
  EXPECT_EQ(too_late.error(), make_error_code(errc::media_too_late));

  call_record ended = ledger.fresh("c3", 0);
  ASSERT_TRUE(ledger.end(ended, "hangup", 1));
  auto after_end = ledger.declare(ended, ulaw);
  ASSERT_FALSE(after_end);
  EXPECT_EQ(after_end.error(), make_error_code(errc::call_ended));
}

TEST(CallLedger, TrackIsRecordedOnceWithTheDeclaration) {
  call_ledger ledger(opts());
  ledger.begin();
  const media_declaration ulaw{"pcmu/8000", 20};
  call_record rec = ledger.fresh("X:outbound", 0);
  auto d = ledger.declare(rec, ulaw, track_link{"outbound", "X"});
  ASSERT_TRUE(d);
  EXPECT_FALSE(d->repeated);
  EXPECT_TRUE(rec.track_dirty);
  EXPECT_EQ(rec.track, "outbound");
  EXPECT_EQ(rec.primary, "X");
  rec.track_dirty = false;

  // The same link, none, or another: nothing changes, and the call keeps its first.
  for (const auto& link :
       {std::optional<track_link>(track_link{"outbound", "X"}), std::optional<track_link>(),
        std::optional<track_link>(track_link{"inbound", std::nullopt})}) {
    auto again = ledger.declare(rec, ulaw, link);
    ASSERT_TRUE(again);
    EXPECT_TRUE(again->repeated);
    EXPECT_FALSE(rec.track_dirty);
    EXPECT_EQ(rec.track, "outbound");
    EXPECT_EQ(rec.primary, "X");
  }

  // A call declared before any track gets it from a repeat of its declaration that names one.
  call_record plain = ledger.fresh("X", 0);
  ASSERT_TRUE(ledger.declare(plain, ulaw));
  EXPECT_FALSE(plain.track);
  auto linked = ledger.declare(plain, ulaw, track_link{"inbound", std::nullopt});
  ASSERT_TRUE(linked);
  EXPECT_FALSE(linked->repeated);
  EXPECT_EQ(plain.track, "inbound");
  EXPECT_FALSE(plain.primary);

  // A refused declaration records no track.
  call_record other = ledger.fresh("Y", 0);
  ASSERT_TRUE(ledger.declare(other, ulaw));
  auto conflict = ledger.declare(other, {"pcma/8000", 20}, track_link{"inbound", std::nullopt});
  ASSERT_FALSE(conflict);
  EXPECT_EQ(conflict.error(), make_error_code(errc::media_conflict));
  EXPECT_FALSE(other.track);
  EXPECT_FALSE(other.track_dirty);
}

TEST(CallLedger, TrackLinksAreChecked) {
  EXPECT_TRUE(call_ledger::valid_track("X", {"inbound", std::nullopt}));
  EXPECT_TRUE(call_ledger::valid_track("X:outbound", {"outbound", "X"}));
  EXPECT_TRUE(call_ledger::valid_track("X", {std::string(128, 't'), std::nullopt}));
  EXPECT_FALSE(call_ledger::valid_track("X", {"", std::nullopt}));
  EXPECT_FALSE(call_ledger::valid_track("X", {std::string(129, 't'), std::nullopt}));
  EXPECT_FALSE(call_ledger::valid_track("X", {"outbound", "X"})) << "its own primary";
  EXPECT_FALSE(call_ledger::valid_track("X", {"outbound", ""}));
  EXPECT_FALSE(call_ledger::valid_track("X", {"out\xff"
                                              "bound",
                                              std::nullopt}));
}

TEST(CallLedger, EventsOfExistingCallsBecomeRowsWhateverTheirState) {
  call_ledger ledger(opts());
  ledger.begin();
  call_event e{0, "c1", "dtmf", 0, 3, R"({"digit":"5"})"};
  auto missing = ledger.record_event(nullptr, e, 10);
  ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), make_error_code(errc::not_found));
  EXPECT_TRUE(ledger.rows().empty());

  call_record rec = ledger.fresh("c1", 0);
  ASSERT_TRUE(ledger.record_event(&rec, e, 10));
  EXPECT_EQ(e.at, 10) << "stamped by the writer's clock";
  call_event timed{0, "c1", "mark", 7.5, std::nullopt, "{}"};
  ASSERT_TRUE(ledger.end(rec, "hangup", 11));
  ASSERT_TRUE(ledger.record_event(&rec, timed, 12)) << "an ended call still takes events";
  EXPECT_EQ(timed.at, 7.5);
  const auto& rows = ledger.rows().events;
  ASSERT_EQ(rows.size(), 2u);
  EXPECT_EQ(rows[0].event, &e);
  EXPECT_EQ(rows[1].event, &timed);
  EXPECT_FALSE(rec.track_dirty);
  ledger.begin();
  EXPECT_TRUE(ledger.rows().events.empty());
}

TEST(CallLedger, EventsAreChecked) {
  EXPECT_TRUE(call_ledger::valid_event({0, "c1", "dtmf", 0, std::nullopt, R"({"digit":"#"})"}));
  EXPECT_TRUE(call_ledger::valid_event(
      {0, "c1", "text", 0, 1, "{\"text\":\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x93\x9e\"}"}));
  EXPECT_FALSE(call_ledger::valid_event({0, "c1", "", 0, std::nullopt, "{}"})) << "no kind";
  EXPECT_FALSE(call_ledger::valid_event({0, "c1", "text", 0, std::nullopt, std::string("{\"a\":\"\0\"}", 9)}))
      << "NUL";
  for (const char* bad :
       {"\xff", "\xc0\xaf", "\xe0\x80\xaf", "\xed\xa0\x80", "\xf4\x90\x80\x80", "\xe2\x82", "\xc3"}) {
    SCOPED_TRACE(bad);
    EXPECT_FALSE(call_ledger::valid_event({0, "c1", "text", 0, std::nullopt, bad}));
    EXPECT_FALSE(call_ledger::valid_event({0, "c1", bad, 0, std::nullopt, "{}"}));
  }
}

TEST(CallLedger, SweepActsOnlyOnCallsStillDue) {
  call_ledger ledger(opts(2, {0, 5}, 2.0, 30));
  ledger.begin();
  call_record rec = ledger.fresh("c1", 0);
  ASSERT_TRUE(ledger.ingest(rec, pkt(1), std::nullopt, 100));
  ASSERT_TRUE(ledger.ingest(rec, pkt(3), std::nullopt, 100));
  ledger.rows().clear();

  ledger.expire_gaps(rec, 104);
  EXPECT_EQ(rec.seq.lost_packets(), 0) << "the gap opened 4 s ago; the window is 5 s";
  ledger.expire_gaps(rec, 105);
  EXPECT_EQ(rec.seq.lost_packets(), 1);
  ASSERT_EQ(ledger.rows().jobs.size(), 1u) << "1..2 (2 lost) form a whole segment";
  EXPECT_EQ(ledger.rows().jobs[0].range, (seq_range{1, 2}));
  ledger.rows().clear();

  ledger.cut_if_idle(rec, 101);
  EXPECT_TRUE(ledger.rows().jobs.empty()) << "a packet came 1 s ago";
  ledger.cut_if_idle(rec, 102);
  ASSERT_EQ(ledger.rows().jobs.size(), 1u);
  EXPECT_EQ(ledger.rows().jobs[0].range, (seq_range{3, 3}));
  EXPECT_FALSE(rec.seq.has_uncut());

  ledger.end_if_timed_out(rec, 129);
  EXPECT_EQ(rec.state, call_state::in_progress);
  ledger.end_if_timed_out(rec, 130);
  EXPECT_EQ(rec.state, call_state::processing_ai);
  EXPECT_EQ(rec.end_reason, "idle timeout");

  call_record quiet = ledger.fresh("c2", 0);
  ledger.end_if_timed_out(quiet, 1000);
  EXPECT_EQ(quiet.state, call_state::in_progress) << "no packet yet: nothing to time out from";
}

TEST(CallLedger, NoIdleTimeoutNeverEndsACall) {
  call_ledger ledger(opts());
  ledger.begin();
  call_record rec = ledger.fresh("c1", 0);
  ASSERT_TRUE(ledger.ingest(rec, pkt(1), std::nullopt, 1));
  ledger.end_if_timed_out(rec, 1e9);
  EXPECT_EQ(rec.state, call_state::in_progress);
}

TEST(CallLedger, CreationAndBeginReset) {
  call_ledger ledger(opts());
  ledger.begin();
  ledger.created("c1", "first packet", 3);
  ASSERT_EQ(ledger.rows().transitions.size(), 1u);
  const auto& t = ledger.rows().transitions[0];
  EXPECT_FALSE(t.from);
  EXPECT_EQ(t.to, call_state::in_progress);
  EXPECT_EQ(t.reason, "first packet");
  EXPECT_EQ(t.at, 3);
  call_record rec = ledger.fresh("c1", 3);
  EXPECT_EQ(rec.state_changed_at, 3);
  ASSERT_TRUE(ledger.ingest(rec, pkt(1), std::nullopt, 4));
  ledger.begin();
  EXPECT_TRUE(ledger.rows().empty());
  EXPECT_TRUE(ledger.dirty().empty());
}

TEST(CallLedger, RebuiltSequencerContinuesWhereTheStoredStateLeftOff) {
  call_ledger ledger(opts(1, {100, 0}));
  ledger.begin();
  call_record rec = ledger.fresh("c1", 0);
  // Stored: highest 5, 2..3 open since t=7, 4 lost, segments cut through 1.
  rec.seq = ledger.sequencer(5, {{{2, 3}, 7.0}}, {{4, 4}}, 2);
  auto fill = ledger.ingest(rec, pkt(2), std::nullopt, 9);
  ASSERT_TRUE(fill);
  EXPECT_EQ(fill->kind, arrival::late);
  EXPECT_EQ(fill->missing, 1);
  const auto& g = ledger.rows().gaps;
  ASSERT_EQ(g.size(), 2u);
  EXPECT_EQ(g[1].range, (seq_range{3, 3}));
  EXPECT_EQ(g[1].opened_at, 7.0);
  ASSERT_EQ(ledger.rows().jobs.size(), 1u);
  EXPECT_EQ(ledger.rows().jobs[0].range, (seq_range{2, 2}));
}

// A call declared with media is cut from outside; one without, every `segment_packets`.
ledger_options cut_outside_opts(reorder_window window = {100, 0}) {
  ledger_options o = opts(2, window);
  o.cut_outside = [](const std::optional<media_declaration>& m) { return m.has_value(); };
  return o;
}

call_record audio_call(call_ledger& ledger, const std::string& id) {
  call_record rec = ledger.fresh(id, 0);
  EXPECT_TRUE(ledger.declare(rec, {"pcmu/8000", 20}));
  return rec;
}

packet audio_pkt(std::int64_t sequence) {
  packet p = pkt(sequence);
  p.media = "pcmu/8000";
  return p;
}

TEST(CallLedger, ACallCutFromOutsideGetsJobsOnlyFromCuts) {
  call_ledger ledger(cut_outside_opts());
  ledger.begin();
  call_record rec = audio_call(ledger, "c1");
  for (std::int64_t q : {1, 2, 3, 4, 6}) ASSERT_TRUE(ledger.ingest(rec, audio_pkt(q), std::nullopt, 1));
  EXPECT_TRUE(ledger.rows().jobs.empty()) << "not every 2 packets";

  auto first = ledger.cut(rec, {1, 3}, 2);
  ASSERT_TRUE(first);
  EXPECT_TRUE(*first);
  ASSERT_EQ(ledger.rows().jobs.size(), 1u);
  EXPECT_EQ(ledger.rows().jobs[0].range, (seq_range{1, 3}));
  EXPECT_EQ(rec.seq.next_segment(), 4);
  EXPECT_EQ(rec.jobs_total, 1);

  auto again = ledger.cut(rec, {1, 3}, 2);
  ASSERT_TRUE(again);
  EXPECT_FALSE(*again) << "the same cut a second time is stale";
  auto past_gap = ledger.cut(rec, {4, 6}, 2);
  ASSERT_FALSE(past_gap);
  EXPECT_EQ(past_gap.error(), make_error_code(errc::invalid_input)) << "5 has not arrived";
  auto empty = ledger.cut(rec, {4, 3}, 2);
  ASSERT_FALSE(empty);
  EXPECT_EQ(empty.error(), make_error_code(errc::invalid_input));
  EXPECT_EQ(ledger.rows().jobs.size(), 1u);

  call_record plain = ledger.fresh("c2", 0);
  for (std::int64_t q : {1, 2}) ASSERT_TRUE(ledger.ingest(plain, pkt(q), std::nullopt, 1));
  EXPECT_EQ(ledger.rows().jobs.size(), 2u) << "no media: cut every 2 packets";
  auto refused = ledger.cut(plain, {3, 3}, 2);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error(), make_error_code(errc::invalid_input));
}

TEST(CallLedger, AnEndedCallCutFromOutsideSettlesAfterItsLastCut) {
  call_ledger ledger(cut_outside_opts());
  ledger.begin();
  call_record rec = audio_call(ledger, "c1");
  for (std::int64_t q : {1, 2, 4}) ASSERT_TRUE(ledger.ingest(rec, audio_pkt(q), std::nullopt, 1));
  auto ended = ledger.end(rec, "hangup", 2);
  ASSERT_TRUE(ended);
  EXPECT_EQ(*ended, call_state::processing_ai) << "its packets wait for their cuts";
  EXPECT_EQ(rec.seq.lost_packets(), 1);
  EXPECT_TRUE(ledger.rows().jobs.empty());

  ASSERT_TRUE(ledger.cut(rec, {1, 2}, 3));
  ASSERT_TRUE(ledger.cut(rec, {3, 3}, 3));
  EXPECT_EQ(ledger.rows().jobs.size(), 1u) << "3 was lost: no job";
  ledger.job_changed(rec, job_state::running, job_state::succeeded, 4);
  EXPECT_EQ(rec.state, call_state::processing_ai) << "4 is not cut yet";
  ASSERT_TRUE(ledger.cut(rec, {4, 4}, 5));
  ASSERT_EQ(ledger.rows().jobs.size(), 2u);
  EXPECT_EQ(rec.state, call_state::processing_ai);
  ledger.job_changed(rec, job_state::running, job_state::succeeded, 6);
  EXPECT_EQ(rec.state, call_state::completed);
  auto late = ledger.cut(rec, {5, 5}, 7);
  ASSERT_TRUE(late);
  EXPECT_FALSE(*late) << "a settled call takes no cut";
}

TEST(CallLedger, AnIdleCallCutFromOutsideOnlyLosesItsGaps) {
  call_ledger ledger(cut_outside_opts());
  ledger.begin();
  call_record rec = audio_call(ledger, "c1");
  for (std::int64_t q : {1, 3}) ASSERT_TRUE(ledger.ingest(rec, audio_pkt(q), std::nullopt, 100));
  ledger.cut_if_idle(rec, 110);
  EXPECT_EQ(rec.seq.lost_packets(), 1);
  EXPECT_TRUE(ledger.rows().jobs.empty()) << "the cut is the segmenter's";
  EXPECT_TRUE(rec.seq.has_uncut());
  EXPECT_EQ(rec.seq.tracker().expected(), 4);
  ASSERT_TRUE(ledger.cut(rec, {1, 3}, 111));
  EXPECT_FALSE(rec.seq.has_uncut());
}

}  // namespace
}  // namespace aipbx
