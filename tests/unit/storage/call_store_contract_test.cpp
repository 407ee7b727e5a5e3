// The call_store contract (storage/call_store.hpp), checked against every backend.
//
// Each backend is one `store_backend` value (contract_backends.hpp): a name and a factory that opens a store
// whose data lives under a fresh directory. The suite runs in the unit tests over the SQLite backends
// (sqlite_backends.cpp) and in the PostgreSQL tests over PostgreSQL (pg_backends.cpp).
// A factory called twice with the same directory must reopen the same data ("write, reopen, read").
#include "log/log.hpp"
#include "storage/call_store.hpp"
#include "storage/contract_backends.hpp"
#include "support/printers.hpp"
#include "support/temp_dir.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <functional>
#include <future>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace aipbx {
namespace {

using ranges = std::vector<seq_range>;

// The store logs a warning per gap and late packet; thousands of them would bury test failures.
class quiet_logs : public ::testing::Environment {
 public:
  void SetUp() override { log::init(log::level::error); }
  void TearDown() override { log::shutdown(); }
};
[[maybe_unused]] const auto* const quiet = ::testing::AddGlobalTestEnvironment(new quiet_logs);

// ---- helpers ----------------------------------------------------------------------------------------------

// Turns the callback-based ingest into a blocking call.
result<ingest_outcome> ingest_sync(call_store& store, packet p) {
  auto promise = std::make_shared<std::promise<result<ingest_outcome>>>();
  auto future = promise->get_future();
  store.ingest(std::move(p), [promise](result<ingest_outcome> r) { promise->set_value(std::move(r)); });
  return future.get();
}

packet make_packet(std::string call_id, std::int64_t sequence, std::string data = "", double timestamp = 0) {
  if (data.empty()) data = "audio-" + std::to_string(sequence);
  if (timestamp == 0) timestamp = 1'700'000'000.0 + static_cast<double>(sequence) * 0.02;
  return packet{std::move(call_id), sequence, std::move(data), timestamp, std::nullopt};
}

// Counts answers from many asynchronous ingests and waits until all have arrived.
class answer_board {
 public:
  explicit answer_board(std::size_t n) : answers_(n), results_(n) {}

  call_store::ingest_handler handler(std::size_t i) {
    return [this, i](result<ingest_outcome> r) {
      std::lock_guard lock(mutex_);
      if (++answers_[i] == 1) results_[i] = std::move(r);
      ++total_;
      done_.notify_all();
    };
  }

  // True when every ingest has been answered (at least once) within a generous bound.
  bool wait_all() {
    std::unique_lock lock(mutex_);
    return done_.wait_for(lock, std::chrono::seconds(60), [this] { return total_ >= answers_.size(); });
  }

  std::size_t answers(std::size_t i) const {
    std::lock_guard lock(mutex_);
    return answers_[i];
  }
  const result<ingest_outcome>& result_of(std::size_t i) const { return *results_[i]; }
  std::size_t size() const { return answers_.size(); }

 private:
  mutable std::mutex mutex_;
  std::condition_variable done_;
  std::vector<std::size_t> answers_;
  std::vector<std::optional<result<ingest_outcome>>> results_;
  std::size_t total_ = 0;
};

std::vector<std::int64_t> sequences_of(const std::vector<stored_packet>& packets) {
  std::vector<std::int64_t> out;
  for (const auto& p : packets) out.push_back(p.sequence);
  return out;
}

// ---- fixture ----------------------------------------------------------------------------------------------

class CallStoreContract : public ::testing::TestWithParam<store_backend> {
 protected:
  void SetUp() override { store_ = open(); }

  std::unique_ptr<call_store> open() { return GetParam().make(dir_.string()); }

  // Stops and destroys the store, then opens a new one on the same data.
  void reopen() {
    store_->stop();
    store_.reset();
    store_ = open();
  }

  call_store& store() { return *store_; }

  result<ingest_outcome> ingest(std::string call_id, std::int64_t sequence, std::string data = "",
                                double timestamp = 0) {
    return ingest_sync(*store_, make_packet(std::move(call_id), sequence, std::move(data), timestamp));
  }

  // Ingests packets that must all succeed.
  void ingest_all(const std::string& call_id, std::initializer_list<std::int64_t> sequences) {
    for (auto s : sequences) {
      auto r = ingest(call_id, s);
      ASSERT_TRUE(r.has_value()) << "sequence " << s << ": " << r.error().message();
    }
  }

  call_summary call(std::string_view id) {
    auto r = store_->get_call(id);
    EXPECT_TRUE(r.has_value()) << id;
    return r.has_value() ? *r : call_summary{};
  }

  ranges gaps(std::string_view id) {
    auto r = store_->gaps(id);
    EXPECT_TRUE(r.has_value()) << id;
    return r.has_value() ? r->open : ranges{};
  }

  std::vector<stored_packet> all_packets(std::string_view id) {
    std::vector<stored_packet> out;
    std::int64_t after = -1;
    for (int pages = 0; pages < 100'000; ++pages) {
      auto r = store_->list_packets(id, after, 1000);
      EXPECT_TRUE(r.has_value()) << id;
      if (!r) break;
      out.insert(out.end(), r->packets.begin(), r->packets.end());
      if (!r->next_after) break;
      after = *r->next_after;
    }
    return out;
  }

  test::temp_dir dir_{"aipbx-contract"};  // first: removed last, after the store whose files it holds
  std::unique_ptr<call_store> store_;
};

// ---- creation and in-order packets ------------------------------------------------------------------------

TEST_P(CallStoreContract, FirstPacketCreatesTheCall) {
  auto first = ingest("c1", 1);
  ASSERT_TRUE(first.has_value());
  EXPECT_TRUE(first->call_created);
  EXPECT_FALSE(first->duplicate);
  EXPECT_EQ(first->kind, arrival::in_order);
  EXPECT_EQ(first->expected, 2);
  EXPECT_EQ(first->last_sequence, 1);
  EXPECT_EQ(first->missing, 0);

  auto second = ingest("c1", 2);
  ASSERT_TRUE(second.has_value());
  EXPECT_FALSE(second->call_created);
  EXPECT_EQ(second->kind, arrival::in_order);

  auto other = ingest("c2", 1);
  ASSERT_TRUE(other.has_value());
  EXPECT_TRUE(other->call_created);

  const call_summary c = call("c1");
  EXPECT_EQ(c.id, "c1");
  EXPECT_EQ(c.state, call_state::in_progress);
  EXPECT_EQ(c.last_sequence, 2);
  EXPECT_EQ(c.expected_sequence, 3);
  EXPECT_EQ(c.packets_received, 2);
  EXPECT_EQ(c.duplicate_packets, 0);
  EXPECT_EQ(c.gaps_opened, 0);
  EXPECT_EQ(c.missing_packets, 0);
  EXPECT_EQ(c.missing_ranges, 0);
  EXPECT_GT(c.created_at, 0);
  EXPECT_GE(c.updated_at, c.created_at);
  EXPECT_GT(c.state_changed_at, 0);
}

TEST_P(CallStoreContract, InOrderPacketsAreStoredInOrder) {
  for (std::int64_t s = 1; s <= 20; ++s) {
    auto r = ingest("call-in-order", s);
    ASSERT_TRUE(r.has_value()) << s;
    EXPECT_EQ(r->kind, arrival::in_order);
    EXPECT_EQ(r->expected, s + 1);
    EXPECT_EQ(r->last_sequence, s);
    EXPECT_EQ(r->missing, 0);
  }
  const call_summary c = call("call-in-order");
  EXPECT_EQ(c.packets_received, 20);
  EXPECT_EQ(c.last_sequence, 20);
  EXPECT_EQ(c.expected_sequence, 21);
  EXPECT_EQ(c.out_of_order_packets, 0);
  EXPECT_TRUE(gaps("call-in-order").empty());

  const auto packets = all_packets("call-in-order");
  ASSERT_EQ(packets.size(), 20u);
  for (std::size_t i = 0; i < packets.size(); ++i) {
    const auto s = static_cast<std::int64_t>(i + 1);
    EXPECT_EQ(packets[i].sequence, s);
    EXPECT_EQ(packets[i].data, "audio-" + std::to_string(s));
    EXPECT_DOUBLE_EQ(packets[i].timestamp, 1'700'000'000.0 + static_cast<double>(s) * 0.02);
    EXPECT_GT(packets[i].received_at, 0);
  }
  std::set<std::int64_t> ids;
  for (const auto& p : packets) ids.insert(p.id);
  EXPECT_EQ(ids.size(), packets.size());
}

TEST_P(CallStoreContract, DataIsStoredVerbatim) {
  const std::string data = std::string("bin\0ary", 7) + "\xc3\xa9\n\"quoted\"" + std::string(10'000, 'x');
  ASSERT_TRUE(ingest("c-data", 1, data, 12.5).has_value());
  const auto packets = all_packets("c-data");
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_EQ(packets[0].data, data);
  EXPECT_DOUBLE_EQ(packets[0].timestamp, 12.5);
}

// ---- gaps and late packets --------------------------------------------------------------------------------

TEST_P(CallStoreContract, GapIsRecorded) {
  ingest_all("c-gap", {1, 2});
  auto r = ingest("c-gap", 6);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->kind, arrival::gap);
  EXPECT_EQ(r->expected, 3);
  EXPECT_EQ(r->last_sequence, 6);
  EXPECT_EQ(r->missing, 3);

  EXPECT_EQ(gaps("c-gap"), (ranges{{3, 5}}));
  const call_summary c = call("c-gap");
  EXPECT_EQ(c.last_sequence, 6);
  EXPECT_EQ(c.expected_sequence, 3);
  EXPECT_EQ(c.missing_packets, 3);
  EXPECT_EQ(c.missing_ranges, 1);
  EXPECT_EQ(c.gaps_opened, 1);
  EXPECT_EQ(c.packets_received, 3);

  ASSERT_TRUE(ingest("c-gap", 10).has_value());
  EXPECT_EQ(gaps("c-gap"), (ranges{{3, 5}, {7, 9}}));
  EXPECT_EQ(call("c-gap").gaps_opened, 2);
  EXPECT_EQ(call("c-gap").missing_ranges, 2);
  EXPECT_EQ(call("c-gap").missing_packets, 6);
}

TEST_P(CallStoreContract, LatePacketsShrinkAndSplitGaps) {
  ingest_all("c-late", {1, 10});  // missing 2..9
  auto front = ingest("c-late", 2);
  ASSERT_TRUE(front.has_value());
  EXPECT_EQ(front->kind, arrival::late);
  EXPECT_EQ(front->expected, 3);
  EXPECT_EQ(front->missing, 7);
  EXPECT_EQ(gaps("c-late"), (ranges{{3, 9}}));

  ASSERT_TRUE(ingest("c-late", 9).has_value());
  EXPECT_EQ(gaps("c-late"), (ranges{{3, 8}}));

  auto middle = ingest("c-late", 5);
  ASSERT_TRUE(middle.has_value());
  EXPECT_EQ(middle->kind, arrival::late);
  EXPECT_EQ(middle->expected, 3);
  EXPECT_EQ(middle->last_sequence, 10);
  EXPECT_EQ(middle->missing, 5);
  EXPECT_EQ(gaps("c-late"), (ranges{{3, 4}, {6, 8}}));

  call_summary c = call("c-late");
  EXPECT_EQ(c.missing_packets, 5);
  EXPECT_EQ(c.missing_ranges, 2);
  EXPECT_EQ(c.expected_sequence, 3);
  EXPECT_EQ(c.gaps_opened, 1);
  EXPECT_EQ(c.out_of_order_packets, 3);

  ingest_all("c-late", {3, 4, 6, 7, 8});
  EXPECT_TRUE(gaps("c-late").empty());
  c = call("c-late");
  EXPECT_EQ(c.missing_packets, 0);
  EXPECT_EQ(c.missing_ranges, 0);
  EXPECT_EQ(c.expected_sequence, 11);
  EXPECT_EQ(c.packets_received, 10);
  EXPECT_EQ(c.out_of_order_packets, 8);
  EXPECT_EQ(sequences_of(all_packets("c-late")), (std::vector<std::int64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}));
}

TEST_P(CallStoreContract, FirstPacketAboveOneOpensGapFromOne) {
  auto r = ingest("c-start-late", 4);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->call_created);
  EXPECT_EQ(r->kind, arrival::gap);
  EXPECT_EQ(r->expected, 1);
  EXPECT_EQ(gaps("c-start-late"), (ranges{{1, 3}}));
}

TEST_P(CallStoreContract, HugeJumpIsOneGap) {
  ingest_all("c-huge", {1});
  auto r = ingest("c-huge", max_sequence);
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->missing, max_sequence - 2);
  EXPECT_EQ(gaps("c-huge"), (ranges{{2, max_sequence - 1}}));
  EXPECT_EQ(call("c-huge").missing_packets, max_sequence - 2);
  EXPECT_EQ(call("c-huge").last_sequence, max_sequence);
}

TEST_P(CallStoreContract, SequenceZeroIsStoredButTrackedNowhere) {
  auto r = ingest("c-zero", 0);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->call_created);
  EXPECT_EQ(r->kind, arrival::before_start);
  EXPECT_EQ(r->expected, 1);
  EXPECT_EQ(r->last_sequence, 0);
  EXPECT_EQ(r->missing, 0);
  auto again = ingest("c-zero", 0);
  ASSERT_TRUE(again.has_value());
  EXPECT_TRUE(again->duplicate);
  EXPECT_EQ(ingest("c-zero", 0, "other").error(), errc::sequence_conflict);

  ingest_all("c-zero", {1});
  EXPECT_EQ(sequences_of(all_packets("c-zero")), (std::vector<std::int64_t>{0, 1}));
  const call_summary c = call("c-zero");
  EXPECT_EQ(c.packets_received, 2);
  EXPECT_EQ(c.last_sequence, 1);
  EXPECT_EQ(c.expected_sequence, 2);
  EXPECT_EQ(c.missing_packets, 0);
  EXPECT_EQ(c.duplicate_packets, 1);
}

// ---- duplicates and conflicts -----------------------------------------------------------------------------

TEST_P(CallStoreContract, SameSequenceSameDataIsDuplicateStoredOnce) {
  ingest_all("c-dup", {1, 2, 5});
  auto dup = ingest("c-dup", 2);
  ASSERT_TRUE(dup.has_value());
  EXPECT_TRUE(dup->duplicate);
  EXPECT_FALSE(dup->call_created);
  EXPECT_EQ(dup->kind, arrival::duplicate);
  EXPECT_EQ(dup->expected, 3);
  EXPECT_EQ(dup->last_sequence, 5);
  EXPECT_EQ(dup->missing, 2);

  // The newest packet and a repeat of the first.
  EXPECT_TRUE(ingest("c-dup", 5).value().duplicate);
  EXPECT_TRUE(ingest("c-dup", 1).value().duplicate);
  // A late fill, then its repeat.
  EXPECT_FALSE(ingest("c-dup", 3).value().duplicate);
  EXPECT_TRUE(ingest("c-dup", 3).value().duplicate);

  EXPECT_EQ(sequences_of(all_packets("c-dup")), (std::vector<std::int64_t>{1, 2, 3, 5}));
  const call_summary c = call("c-dup");
  EXPECT_EQ(c.packets_received, 4);
  EXPECT_EQ(c.duplicate_packets, 4);
  EXPECT_EQ(c.last_sequence, 5);
  EXPECT_EQ(gaps("c-dup"), (ranges{{4, 4}}));
}

TEST_P(CallStoreContract, DuplicateWithOtherTimestampKeepsTheFirst) {
  ASSERT_TRUE(ingest("c-dup-ts", 1, "same", 100.0).has_value());
  auto dup = ingest("c-dup-ts", 1, "same", 5.0);
  ASSERT_TRUE(dup.has_value());
  EXPECT_TRUE(dup->duplicate);
  const auto packets = all_packets("c-dup-ts");
  ASSERT_EQ(packets.size(), 1u);
  EXPECT_DOUBLE_EQ(packets[0].timestamp, 100.0);
  EXPECT_EQ(call("c-dup-ts").first_timestamp, 100.0);
}

TEST_P(CallStoreContract, SameSequenceDifferentDataIsConflictAndChangesNothing) {
  ASSERT_TRUE(ingest("c-conflict", 1, "original").has_value());
  ASSERT_TRUE(ingest("c-conflict", 3, "three").has_value());
  const call_summary before = call("c-conflict");

  auto r = ingest("c-conflict", 1, "different");
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::sequence_conflict);
  EXPECT_EQ(ingest("c-conflict", 3, "").error(), errc::sequence_conflict);  // "" means "audio-3" in the helper
  EXPECT_EQ(ingest("c-conflict", 3, "THREE").error(), errc::sequence_conflict);

  const call_summary after = call("c-conflict");
  EXPECT_EQ(after.packets_received, before.packets_received);
  EXPECT_EQ(after.duplicate_packets, before.duplicate_packets);
  EXPECT_EQ(after.out_of_order_packets, before.out_of_order_packets);
  EXPECT_EQ(after.last_sequence, before.last_sequence);
  EXPECT_EQ(after.missing_packets, before.missing_packets);
  EXPECT_EQ(after.first_timestamp, before.first_timestamp);
  EXPECT_EQ(after.last_timestamp, before.last_timestamp);
  EXPECT_EQ(gaps("c-conflict"), (ranges{{2, 2}}));
  const auto packets = all_packets("c-conflict");
  ASSERT_EQ(packets.size(), 2u);
  EXPECT_EQ(packets[0].data, "original");
  EXPECT_EQ(packets[1].data, "three");

  // The call still works afterwards.
  auto fill = ingest("c-conflict", 2);
  ASSERT_TRUE(fill.has_value());
  EXPECT_EQ(fill->kind, arrival::late);
}

// ---- reads ------------------------------------------------------------------------------------------------

TEST_P(CallStoreContract, ListCallsPagesByIdWithState) {
  auto empty = store().list_calls({});
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->calls.empty());
  EXPECT_FALSE(empty->next_after);

  // Created out of id order: pages come back sorted by id.
  for (const char* id : {"c04", "c00", "c06", "c02", "c01", "c05", "c03"}) ASSERT_TRUE(ingest(id, 1).has_value());

  auto ids = [](const call_page& p) {
    std::vector<std::string> out;
    for (const auto& c : p.calls) out.push_back(c.id);
    return out;
  };
  call_query q;
  q.limit = 3;
  auto p1 = store().list_calls(q);
  ASSERT_TRUE(p1.has_value());
  EXPECT_EQ(ids(*p1), (std::vector<std::string>{"c00", "c01", "c02"}));
  ASSERT_TRUE(p1->next_after);
  EXPECT_EQ(*p1->next_after, "c02");

  q.after = *p1->next_after;
  auto p2 = store().list_calls(q);
  ASSERT_TRUE(p2.has_value());
  EXPECT_EQ(ids(*p2), (std::vector<std::string>{"c03", "c04", "c05"}));
  ASSERT_TRUE(p2->next_after);

  q.after = *p2->next_after;
  auto p3 = store().list_calls(q);
  ASSERT_TRUE(p3.has_value());
  EXPECT_EQ(ids(*p3), (std::vector<std::string>{"c06"}));
  EXPECT_FALSE(p3->next_after);

  // A page that is exactly full is the last one when nothing follows.
  q.after = "c03";
  auto exact = store().list_calls(q);
  ASSERT_TRUE(exact.has_value());
  EXPECT_EQ(ids(*exact), (std::vector<std::string>{"c04", "c05", "c06"}));
  EXPECT_FALSE(exact->next_after);

  // A cursor that is not an id still works as a position.
  q.after = "c035";
  EXPECT_EQ(ids(store().list_calls(q).value()), (std::vector<std::string>{"c04", "c05", "c06"}));
  q.after = "zzz";
  EXPECT_TRUE(store().list_calls(q).value().calls.empty());

  // Summaries in the page are complete.
  q = {};
  auto all = store().list_calls(q);
  ASSERT_TRUE(all.has_value());
  ASSERT_EQ(all->calls.size(), 7u);
  EXPECT_EQ(all->calls[0].packets_received, 1);
  EXPECT_EQ(all->calls[0].last_sequence, 1);
  EXPECT_FALSE(all->next_after);
}

TEST_P(CallStoreContract, ListCallsFiltersByState) {
  ingest_all("a", {1});
  ingest_all("b", {1});
  call_query q;
  q.state = call_state::in_progress;
  auto live = store().list_calls(q);
  ASSERT_TRUE(live.has_value());
  EXPECT_EQ(live->calls.size(), 2u);
  for (const auto s : {call_state::processing_ai, call_state::completed, call_state::failed, call_state::archived}) {
    q.state = s;
    auto r = store().list_calls(q);
    ASSERT_TRUE(r.has_value());
    EXPECT_TRUE(r->calls.empty()) << to_string(s);
    EXPECT_FALSE(r->next_after);
  }
}

TEST_P(CallStoreContract, ListCallsLimitZero) {
  ingest_all("c0", {1});
  call_query q;
  q.limit = 0;
  auto r = store().list_calls(q);
  ASSERT_TRUE(r.has_value());
  EXPECT_TRUE(r->calls.empty());
  auto p = store().list_packets("c0", -1, 0);
  ASSERT_TRUE(p.has_value());
  EXPECT_TRUE(p->packets.empty());
}

TEST_P(CallStoreContract, ListPacketsPagesInSequenceOrder) {
  // Arrive shuffled; pages come back by sequence.
  for (std::int64_t s : {7, 3, 10, 1, 9, 2, 8, 4, 6, 5}) ASSERT_TRUE(ingest("c-pages", s).has_value());

  auto p1 = store().list_packets("c-pages", 0, 4);
  ASSERT_TRUE(p1.has_value());
  EXPECT_EQ(sequences_of(p1->packets), (std::vector<std::int64_t>{1, 2, 3, 4}));
  ASSERT_TRUE(p1->next_after);
  EXPECT_EQ(*p1->next_after, 4);

  auto p2 = store().list_packets("c-pages", *p1->next_after, 4);
  ASSERT_TRUE(p2.has_value());
  EXPECT_EQ(sequences_of(p2->packets), (std::vector<std::int64_t>{5, 6, 7, 8}));
  ASSERT_TRUE(p2->next_after);
  EXPECT_EQ(*p2->next_after, 8);

  auto p3 = store().list_packets("c-pages", *p2->next_after, 4);
  ASSERT_TRUE(p3.has_value());
  EXPECT_EQ(sequences_of(p3->packets), (std::vector<std::int64_t>{9, 10}));
  EXPECT_FALSE(p3->next_after);

  auto exact = store().list_packets("c-pages", 6, 4);
  ASSERT_TRUE(exact.has_value());
  EXPECT_EQ(sequences_of(exact->packets), (std::vector<std::int64_t>{7, 8, 9, 10}));
  EXPECT_FALSE(exact->next_after);

  auto past = store().list_packets("c-pages", 10, 4);
  ASSERT_TRUE(past.has_value());
  EXPECT_TRUE(past->packets.empty());
  EXPECT_FALSE(past->next_after);

  // `after` need not be a stored sequence.
  ASSERT_TRUE(ingest("c-sparse", 10).has_value());
  ASSERT_TRUE(ingest("c-sparse", 20).has_value());
  EXPECT_EQ(sequences_of(store().list_packets("c-sparse", 15, 10).value().packets), (std::vector<std::int64_t>{20}));
}

TEST_P(CallStoreContract, PacketsOfOtherCallsAreSeparate) {
  ingest_all("x", {1, 2, 3});
  ingest_all("y", {1});
  EXPECT_EQ(all_packets("x").size(), 3u);
  EXPECT_EQ(all_packets("y").size(), 1u);
  EXPECT_EQ(call("y").last_sequence, 1);
}

TEST_P(CallStoreContract, UnknownCallIsNotFound) {
  ingest_all("known", {1, 3});
  auto c = store().get_call("unknown");
  ASSERT_FALSE(c.has_value());
  EXPECT_EQ(c.error(), errc::not_found);
  auto p = store().list_packets("unknown", 0, 10);
  ASSERT_FALSE(p.has_value());
  EXPECT_EQ(p.error(), errc::not_found);
  auto g = store().gaps("unknown");
  ASSERT_FALSE(g.has_value());
  EXPECT_EQ(g.error(), errc::not_found);
  // Ids compare exactly.
  EXPECT_EQ(store().get_call("KNOWN").error(), errc::not_found);
  EXPECT_EQ(store().get_call("known ").error(), errc::not_found);
}

// ---- media declarations ---------------------------------------------------------------------------------

result<declare_outcome> declare_sync(call_store& store, std::string call_id, media_declaration media) {
  auto promise = std::make_shared<std::promise<result<declare_outcome>>>();
  auto future = promise->get_future();
  store.declare_media(std::move(call_id), std::move(media),
                      [promise](result<declare_outcome> r) { promise->set_value(std::move(r)); });
  return future.get();
}

result<call_state> end_sync(call_store& store, std::string call_id) {
  auto promise = std::make_shared<std::promise<result<call_state>>>();
  auto future = promise->get_future();
  store.end_call(std::move(call_id), "ended by request",
                 [promise](result<call_state> r) { promise->set_value(std::move(r)); });
  return future.get();
}

packet media_packet(std::string call_id, std::int64_t sequence, std::optional<std::string> media) {
  packet p = make_packet(std::move(call_id), sequence);
  p.media = std::move(media);
  return p;
}

TEST_P(CallStoreContract, DeclarationCreatesTheCallAndIsKept) {
  const media_declaration pcmu{"pcmu/8000", 20};
  auto r = declare_sync(store(), "declared", pcmu);
  ASSERT_TRUE(r.has_value()) << r.error().message();
  EXPECT_TRUE(r->created);
  EXPECT_FALSE(r->repeated);

  call_summary c = call("declared");
  EXPECT_EQ(c.state, call_state::in_progress);
  EXPECT_EQ(c.packets_received, 0);
  EXPECT_EQ(c.last_sequence, 0);
  ASSERT_TRUE(c.media.has_value());
  EXPECT_EQ(*c.media, pcmu);
  ASSERT_EQ(c.transitions.size(), 1u);
  EXPECT_EQ(c.transitions[0].reason, "media declared");
  EXPECT_EQ(store().call_media("declared").value(), pcmu);
  EXPECT_EQ(store().list_calls({}).value().calls.at(0).media, pcmu);

  // Packets checked against the declaration are stored as usual.
  auto first = ingest_sync(store(), media_packet("declared", 1, "pcmu/8000"));
  ASSERT_TRUE(first.has_value()) << first.error().message();
  EXPECT_FALSE(first->call_created);
  EXPECT_EQ(call("declared").packets_received, 1);

  reopen();
  EXPECT_EQ(call("declared").media, pcmu);
  EXPECT_EQ(store().call_media("declared").value(), pcmu);
}

TEST_P(CallStoreContract, RepeatedDeclarationIsIdempotentAndAnotherIsAConflict) {
  const media_declaration l16{"l16/16000", 30};
  ASSERT_TRUE(declare_sync(store(), "twice", l16).has_value());
  auto again = declare_sync(store(), "twice", l16);
  ASSERT_TRUE(again.has_value());
  EXPECT_FALSE(again->created);
  EXPECT_TRUE(again->repeated);

  EXPECT_EQ(declare_sync(store(), "twice", {"pcmu/8000", 30}).error(), errc::media_conflict);
  EXPECT_EQ(declare_sync(store(), "twice", {"l16/16000", 20}).error(), errc::media_conflict);
  EXPECT_EQ(call("twice").media, l16);

  // After packets, and after the end, the same declaration is still answered as a repeat.
  ASSERT_TRUE(ingest_sync(store(), media_packet("twice", 1, "l16/16000")).has_value());
  EXPECT_TRUE(declare_sync(store(), "twice", l16).value().repeated);
  ASSERT_TRUE(end_sync(store(), "twice").has_value());
  EXPECT_TRUE(declare_sync(store(), "twice", l16).value().repeated);
  EXPECT_EQ(declare_sync(store(), "twice", {"pcma/8000", 20}).error(), errc::media_conflict);
}

TEST_P(CallStoreContract, DeclarationAfterTheFirstPacketIsTooLate) {
  ingest_all("undeclared", {2});
  EXPECT_EQ(declare_sync(store(), "undeclared", {"pcmu/8000", 20}).error(), errc::media_too_late);
  const call_summary c = call("undeclared");
  EXPECT_FALSE(c.media.has_value());
  EXPECT_EQ(store().call_media("undeclared").value(), std::nullopt);

  ASSERT_TRUE(end_sync(store(), "undeclared").has_value());
  EXPECT_EQ(declare_sync(store(), "undeclared", {"pcmu/8000", 20}).error(), errc::call_ended);
  EXPECT_EQ(store().call_media("nobody").error(), errc::not_found);
}

TEST_P(CallStoreContract, IngestRefusesAPacketCheckedAgainstAnotherDeclaration) {
  // Unknown call: only a packet checked without a declaration may create it.
  EXPECT_EQ(ingest_sync(store(), media_packet("fresh", 1, "pcmu/8000")).error(), errc::media_changed);
  EXPECT_EQ(store().get_call("fresh").error(), errc::not_found);

  ASSERT_TRUE(declare_sync(store(), "pcma", {"pcma/8000", 20}).has_value());
  EXPECT_EQ(ingest_sync(store(), media_packet("pcma", 1, std::nullopt)).error(), errc::media_changed);
  EXPECT_EQ(ingest_sync(store(), media_packet("pcma", 1, "pcmu/8000")).error(), errc::media_changed);
  EXPECT_EQ(call("pcma").packets_received, 0);
  EXPECT_TRUE(all_packets("pcma").empty());
  ASSERT_TRUE(ingest_sync(store(), media_packet("pcma", 1, "pcma/8000")).has_value());

  ingest_all("plain", {1});
  EXPECT_EQ(ingest_sync(store(), media_packet("plain", 2, "pcmu/8000")).error(), errc::media_changed);
  EXPECT_EQ(call("plain").packets_received, 1);
}

// ---- call tracks ------------------------------------------------------------------------------------------

result<declare_outcome> declare_track_sync(call_store& store, std::string call_id, media_declaration media,
                                           std::optional<track_link> track) {
  auto promise = std::make_shared<std::promise<result<declare_outcome>>>();
  auto future = promise->get_future();
  store.declare_media(std::move(call_id), std::move(media), std::move(track),
                      [promise](result<declare_outcome> r) { promise->set_value(std::move(r)); });
  return future.get();
}

using track_list = std::vector<std::pair<std::string, std::string>>;

TEST_P(CallStoreContract, TrackLinksAreSetOnceAndShownBothWays) {
  const media_declaration ulaw{"pcmu/8000", 20};
  auto first = declare_track_sync(store(), "X", ulaw, track_link{"inbound", std::nullopt});
  ASSERT_TRUE(first.has_value()) << first.error().message();
  EXPECT_TRUE(first->created);
  EXPECT_FALSE(first->repeated);
  // Declared in another order than their names sort in.
  for (const char* name : {"zeta", "outbound", "alpha"}) {
    auto other = declare_track_sync(store(), std::string("X:") + name, ulaw, track_link{name, "X"});
    ASSERT_TRUE(other.has_value()) << name << ": " << other.error().message();
    EXPECT_TRUE(other->created);
    EXPECT_FALSE(other->repeated);
  }

  const auto check = [&] {
    const call_summary x = call("X");
    EXPECT_EQ(x.track, "inbound");
    EXPECT_EQ(x.primary_call, std::nullopt);
    EXPECT_EQ(x.tracks, (track_list{{"alpha", "X:alpha"}, {"outbound", "X:outbound"}, {"zeta", "X:zeta"}}));
    const call_summary out = call("X:outbound");
    EXPECT_EQ(out.track, "outbound");
    EXPECT_EQ(out.primary_call, "X");
    EXPECT_TRUE(out.tracks.empty());
    EXPECT_EQ(out.media, ulaw);
    // Listings show each call's own link, not the others'.
    const auto page = store().list_calls({}).value();
    ASSERT_EQ(page.calls.size(), 4u);
    EXPECT_EQ(page.calls[0].id, "X");
    EXPECT_EQ(page.calls[0].track, "inbound");
    EXPECT_TRUE(page.calls[0].tracks.empty());
    EXPECT_EQ(page.calls[2].id, "X:outbound");
    EXPECT_EQ(page.calls[2].track, "outbound");
    EXPECT_EQ(page.calls[2].primary_call, "X");
  };
  check();

  // A repeat with the same link, with none, or with another link: `repeated`, nothing changes.
  for (const auto& link :
       {std::optional<track_link>(track_link{"outbound", "X"}), std::optional<track_link>(),
        std::optional<track_link>(track_link{"inbound", "Y"})}) {
    auto again = declare_track_sync(store(), "X:outbound", ulaw, link);
    ASSERT_TRUE(again.has_value()) << again.error().message();
    EXPECT_FALSE(again->created);
    EXPECT_TRUE(again->repeated);
  }
  check();
  reopen();
  check();
}

TEST_P(CallStoreContract, TrackLinkComesWithTheFirstDeclarationThatNamesOne) {
  const media_declaration l16{"l16/8000", 20};
  ASSERT_TRUE(declare_sync(store(), "plain", l16).has_value());
  EXPECT_EQ(call("plain").track, std::nullopt);
  // The stream declares the call it finds declared already, naming its track: the link is recorded.
  auto linked = declare_track_sync(store(), "plain", l16, track_link{"inbound", std::nullopt});
  ASSERT_TRUE(linked.has_value()) << linked.error().message();
  EXPECT_FALSE(linked->created);
  EXPECT_FALSE(linked->repeated);
  EXPECT_EQ(call("plain").track, "inbound");

  // A declaration that fails records no link.
  EXPECT_EQ(
      declare_track_sync(store(), "plain:b", {"pcmu/8000", 20}, track_link{"b", "plain"}).value().created,
      true);
  ASSERT_TRUE(ingest_sync(store(), media_packet("plain:b", 1, "pcmu/8000")).has_value());
  ASSERT_TRUE(declare_sync(store(), "other", l16).has_value());
  EXPECT_EQ(declare_track_sync(store(), "other", {"pcmu/8000", 20}, track_link{"c", "plain"}).error(),
            errc::media_conflict);
  ingest_all("late", {1});
  EXPECT_EQ(declare_track_sync(store(), "late", l16, track_link{"d", "plain"}).error(), errc::media_too_late);
  EXPECT_EQ(call("other").track, std::nullopt);
  EXPECT_EQ(call("late").track, std::nullopt);
  EXPECT_EQ(call("plain").tracks, (track_list{{"b", "plain:b"}}));

  // A primary that does not exist (yet) is recorded as named.
  ASSERT_TRUE(declare_track_sync(store(), "orphan:b", l16, track_link{"b", "orphan"}).has_value());
  EXPECT_EQ(call("orphan:b").primary_call, "orphan");
  EXPECT_EQ(store().get_call("orphan").error(), errc::not_found);
}

TEST_P(CallStoreContract, InvalidTrackLinkIsRefusedAndChangesNothing) {
  const media_declaration ulaw{"pcmu/8000", 20};
  for (const auto& link :
       {track_link{"", std::nullopt}, track_link{std::string(129, 'n'), std::nullopt},
        track_link{"self", "bad"}, track_link{"x", ""}, track_link{"\xff", std::nullopt}}) {
    SCOPED_TRACE(link.name);
    EXPECT_EQ(declare_track_sync(store(), "bad", ulaw, link).error(), errc::invalid_input);
    EXPECT_EQ(store().get_call("bad").error(), errc::not_found);
  }
}

// ---- call events ------------------------------------------------------------------------------------------

result<std::int64_t> record_sync(call_store& store, call_event e) {
  auto promise = std::make_shared<std::promise<result<std::int64_t>>>();
  auto future = promise->get_future();
  store.record_event(std::move(e), [promise](result<std::int64_t> r) { promise->set_value(std::move(r)); });
  return future.get();
}

call_event make_event(std::string call_id, std::string kind, std::string data = "{}",
                      std::optional<std::int64_t> sequence = std::nullopt, double at = 1'700'000'000.5) {
  return call_event{0, std::move(call_id), std::move(kind), at, sequence, std::move(data)};
}

std::vector<call_event> all_events(call_store& store, std::string_view id) {
  std::vector<call_event> out;
  std::int64_t after = 0;
  for (int pages = 0; pages < 10'000; ++pages) {
    auto r = store.list_events(id, after, 1000);
    EXPECT_TRUE(r.has_value()) << id;
    if (!r) break;
    out.insert(out.end(), r->events.begin(), r->events.end());
    if (!r->next_after) break;
    after = *r->next_after;
  }
  return out;
}

TEST_P(CallStoreContract, EventsAreKeptInOrderWithIdsIncreasingOverEveryCall) {
  ingest_all("a", {1});
  ingest_all("b", {1});
  std::vector<call_event> a, b;
  std::int64_t last = 0;
  for (int i = 0; i < 6; ++i) {
    // Alternating calls: the ids increase over both.
    const bool to_a = i % 2 == 0;
    call_event e =
        make_event(to_a ? "a" : "b", i == 4 ? "mark" : "dtmf", R"({"digit":")" + std::to_string(i) + R"("})",
                   i == 2 ? std::nullopt : std::optional<std::int64_t>(i + 1), 1'700'000'000.25 + i);
    auto id = record_sync(store(), e);
    ASSERT_TRUE(id.has_value()) << id.error().message();
    EXPECT_GT(*id, last);
    last = *id;
    e.id = *id;
    (to_a ? a : b).push_back(e);
  }
  EXPECT_EQ(all_events(store(), "a"), a);
  EXPECT_EQ(all_events(store(), "b"), b);
  // An event does not touch the call's packets or counters.
  EXPECT_EQ(call("a").packets_received, 1);
  EXPECT_EQ(sequences_of(all_packets("a")), (std::vector<std::int64_t>{1}));
}

TEST_P(CallStoreContract, EventsPageInIdOrder) {
  ingest_all("paged", {1});
  std::vector<std::int64_t> ids;
  for (int i = 0; i < 7; ++i) ids.push_back(record_sync(store(), make_event("paged", "mark")).value());
  std::vector<std::int64_t> seen;
  std::int64_t after = 0;
  int pages = 0;
  for (;; ++pages) {
    ASSERT_LT(pages, 10);
    auto page = store().list_events("paged", after, 3);
    ASSERT_TRUE(page.has_value());
    EXPECT_LE(page->events.size(), 3u);
    for (const auto& e : page->events) {
      seen.push_back(e.id);
      EXPECT_EQ(e.call_id, "paged");
    }
    if (!page->next_after) break;
    EXPECT_EQ(*page->next_after, page->events.back().id);
    after = *page->next_after;
  }
  EXPECT_EQ(pages + 1, 3);
  EXPECT_EQ(seen, ids);
  // From the middle, and past the end.
  auto rest = store().list_events("paged", ids[4], 100).value();
  ASSERT_EQ(rest.events.size(), 2u);
  EXPECT_EQ(rest.events[0].id, ids[5]);
  EXPECT_FALSE(rest.next_after);
  auto end = store().list_events("paged", ids.back(), 100).value();
  EXPECT_TRUE(end.events.empty());
  EXPECT_FALSE(end.next_after);
  // A call without events lists none.
  ingest_all("quiet", {1});
  auto none = store().list_events("quiet", 0, 100).value();
  EXPECT_TRUE(none.events.empty());
  EXPECT_FALSE(none.next_after);
}

TEST_P(CallStoreContract, EventOfAnUnknownCallIsNotFoundAndCreatesNothing) {
  auto r = record_sync(store(), make_event("ghost", "dtmf", R"({"digit":"1"})"));
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::not_found);
  EXPECT_EQ(store().get_call("ghost").error(), errc::not_found);
  EXPECT_EQ(store().list_events("ghost", 0, 10).error(), errc::not_found);
  EXPECT_TRUE(store().list_calls({}).value().calls.empty());
  // Ids compare exactly.
  ingest_all("known", {1});
  EXPECT_EQ(record_sync(store(), make_event("KNOWN", "mark")).error(), errc::not_found);
  EXPECT_TRUE(all_events(store(), "known").empty());
}

TEST_P(CallStoreContract, EventsOfEndedAndArchivedCallsAreRecorded) {
  ingest_all("ended", {1, 2});
  const call_state settled = end_sync(store(), "ended").value();  // its jobs are outstanding
  EXPECT_TRUE(record_sync(store(), make_event("ended", "dtmf", R"({"digit":"9"})")).has_value());

  // A declared call without packets settles COMPLETED when it ends; then it can be archived.
  ASSERT_TRUE(declare_sync(store(), "archived", {"pcmu/8000", 20}).has_value());
  ASSERT_EQ(end_sync(store(), "archived").value(), call_state::completed);
  auto promise = std::make_shared<std::promise<result<call_state>>>();
  store().archive_call("archived", [promise](result<call_state> r) { promise->set_value(std::move(r)); });
  ASSERT_EQ(promise->get_future().get().value(), call_state::archived);
  EXPECT_TRUE(record_sync(store(), make_event("archived", "stream_stopped")).has_value());

  EXPECT_EQ(all_events(store(), "ended").size(), 1u);
  EXPECT_EQ(all_events(store(), "archived").size(), 1u);
  EXPECT_EQ(call("ended").state, settled) << "an event changes no state";
  EXPECT_EQ(call("ended").packets_received, 2);
}

TEST_P(CallStoreContract, EventWithoutATimeIsStampedByTheStore) {
  ingest_all("stamped", {1});
  const double before = static_cast<double>(
      std::chrono::duration_cast<std::chrono::seconds>(std::chrono::system_clock::now().time_since_epoch())
          .count());
  auto id = record_sync(store(), make_event("stamped", "stream_started", "{}", std::nullopt, 0));
  ASSERT_TRUE(id.has_value());
  const auto events = all_events(store(), "stamped");
  ASSERT_EQ(events.size(), 1u);
  EXPECT_GE(events[0].at, before - 1);
  EXPECT_LT(events[0].at, before + 3600);
}

TEST_P(CallStoreContract, EventsAreStoredVerbatimAndSurviveARestart) {
  ingest_all("kept", {1});
  const std::string data =
      R"({"protocol":"twilio","stream_sid":"MZ1","custom":{"text":"café ☎ \u00e9","n":[1,2.5,null]}})";
  call_event started = make_event("kept", "stream_started", data, std::nullopt, 1'700'000'000.125);
  call_event digit = make_event("kept", "dtmf", R"({"digit":"#"})", 9'007'199'254'740'991, 1'700'000'001.0);
  started.id = record_sync(store(), started).value();
  digit.id = record_sync(store(), digit).value();

  reopen();
  EXPECT_EQ(all_events(store(), "kept"), (std::vector<call_event>{started, digit}));
  // Numbering continues after the restart.
  auto next = record_sync(store(), make_event("kept", "stream_stopped"));
  ASSERT_TRUE(next.has_value());
  EXPECT_GT(*next, digit.id);
}

TEST_P(CallStoreContract, InvalidEventIsRefusedAndChangesNothing) {
  ingest_all("strict", {1});
  EXPECT_EQ(record_sync(store(), make_event("strict", "")).error(), errc::invalid_input);
  EXPECT_EQ(record_sync(store(), make_event("strict", "text", "{\"t\":\"\xff\"}")).error(),
            errc::invalid_input);
  EXPECT_EQ(record_sync(store(), make_event("strict", "text", std::string("{\"t\":\"\0\"}", 9))).error(),
            errc::invalid_input);
  EXPECT_EQ(record_sync(store(), make_event("strict", "te\xc3")).error(), errc::invalid_input);
  EXPECT_TRUE(all_events(store(), "strict").empty());
  EXPECT_TRUE(record_sync(store(), make_event("strict", "text", R"({"t":"ok"})")).has_value());
}

// Events and packets of many calls, from many threads at once: every write answered once, the ids unique,
// each call's events in the order its thread recorded them.
TEST_P(CallStoreContract, ConcurrentEventsAndPacketsAreAnsweredOnceAndInOrder) {
  constexpr int threads = 6;
  constexpr int per_thread = 40;
  std::vector<std::vector<std::int64_t>> ids(threads);
  std::vector<std::thread> pool;
  std::atomic<int> failures{0};
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const std::string id = "ev-" + std::to_string(t);
      for (int i = 1; i <= per_thread; ++i) {
        if (!ingest_sync(store(), make_packet(id, i)).has_value()) ++failures;
        auto r =
            record_sync(store(), make_event(id, "mark", R"({"name":"m)" + std::to_string(i) + R"("})", i));
        if (r)
          ids[static_cast<std::size_t>(t)].push_back(*r);
        else
          ++failures;
      }
    });
  }
  for (auto& th : pool) th.join();
  ASSERT_EQ(failures.load(), 0);
  std::set<std::int64_t> unique;
  for (int t = 0; t < threads; ++t) {
    const auto& mine = ids[static_cast<std::size_t>(t)];
    EXPECT_TRUE(std::is_sorted(mine.begin(), mine.end()));
    unique.insert(mine.begin(), mine.end());
    const auto stored = all_events(store(), "ev-" + std::to_string(t));
    ASSERT_EQ(stored.size(), static_cast<std::size_t>(per_thread));
    for (int i = 0; i < per_thread; ++i) {
      EXPECT_EQ(stored[static_cast<std::size_t>(i)].id, mine[static_cast<std::size_t>(i)]);
      EXPECT_EQ(stored[static_cast<std::size_t>(i)].sequence, i + 1);
    }
    EXPECT_EQ(call("ev-" + std::to_string(t)).packets_received, per_thread);
  }
  EXPECT_EQ(unique.size(), static_cast<std::size_t>(threads * per_thread));
}

// Events queued at once share batches: each answer is the id of its own event's row.
TEST_P(CallStoreContract, EventsQueuedTogetherAreEachAnsweredWithTheirOwnId) {
  constexpr int calls = 4;
  constexpr int n = 400;
  for (int c = 0; c < calls; ++c) ingest_all("burst-" + std::to_string(c), {1});
  std::mutex mutex;
  std::condition_variable done;
  std::map<int, result<std::int64_t>> answers;
  for (int i = 0; i < n; ++i) {
    store().record_event(
        make_event("burst-" + std::to_string(i % calls), "mark", R"({"i":)" + std::to_string(i) + "}", i),
        [&, i](result<std::int64_t> r) {
          std::lock_guard lock(mutex);
          answers.emplace(i, std::move(r));
          done.notify_all();
        });
  }
  {
    std::unique_lock lock(mutex);
    ASSERT_TRUE(done.wait_for(lock, std::chrono::seconds(60), [&] { return answers.size() == n; }));
  }
  std::map<std::int64_t, int> by_id;
  for (const auto& [i, r] : answers) {
    ASSERT_TRUE(r.has_value()) << i << ": " << r.error().message();
    EXPECT_TRUE(by_id.emplace(*r, i).second) << "id " << *r << " given twice";
  }
  for (int c = 0; c < calls; ++c) {
    const auto stored = all_events(store(), "burst-" + std::to_string(c));
    ASSERT_EQ(stored.size(), static_cast<std::size_t>(n / calls));
    for (const auto& e : stored) {
      ASSERT_TRUE(by_id.contains(e.id)) << e.id;
      const int i = by_id.at(e.id);
      EXPECT_EQ(e.data, R"({"i":)" + std::to_string(i) + "}") << "id " << e.id;
      EXPECT_EQ(e.sequence, i);
      EXPECT_EQ(e.call_id, "burst-" + std::to_string(i % calls));
    }
  }
  EXPECT_GT(store().stats().largest_batch, 1u) << "the events were committed one by one";
}

TEST_P(CallStoreContract, TimestampsAreMinAndMax) {
  ASSERT_TRUE(ingest("c-ts", 1, "a", 100.5).has_value());
  EXPECT_EQ(call("c-ts").first_timestamp, 100.5);
  EXPECT_EQ(call("c-ts").last_timestamp, 100.5);
  ASSERT_TRUE(ingest("c-ts", 2, "b", 50.25).has_value());  // earlier clock, later sequence
  ASSERT_TRUE(ingest("c-ts", 4, "c", 200.0).has_value());
  ASSERT_TRUE(ingest("c-ts", 3, "d", 150.0).has_value());
  const call_summary c = call("c-ts");
  ASSERT_TRUE(c.first_timestamp);
  ASSERT_TRUE(c.last_timestamp);
  EXPECT_DOUBLE_EQ(*c.first_timestamp, 50.25);
  EXPECT_DOUBLE_EQ(*c.last_timestamp, 200.0);
}

TEST_P(CallStoreContract, PingAndStats) {
  EXPECT_TRUE(store().ping());
  ingest_all("c-stats", {1, 2, 3});
  const writer_stats s = store().stats();
  EXPECT_EQ(s.failed_batches, 0u);
  EXPECT_EQ(s.queued, 0u);
  EXPECT_GT(s.queue_limit, 0u);
}

// Once a packet has been answered, the writer's counters include it (a client that got its 202 and then
// scrapes /metrics must see it counted).
TEST_P(CallStoreContract, StatsCountAnsweredPackets) {
  ingest_all("c-stats", {1, 2, 3});
  const writer_stats s = store().stats();
  EXPECT_EQ(s.packets, 3u);
  EXPECT_GE(s.batches, 1u);
  EXPECT_LE(s.batches, s.packets);
  EXPECT_GE(s.largest_batch, 1u);
}

// ---- concurrency ------------------------------------------------------------------------------------------

TEST_P(CallStoreContract, ConcurrentIngestsAreAnsweredOnceAndConsistent) {
  constexpr int threads = 8;
  constexpr int calls = 4;
  constexpr std::int64_t per_call = 240;
  // Sequences never sent: single holes, and the gap they leave must be exactly what is reported.
  auto skipped = [](std::int64_t s) { return s % 37 == 0; };
  // Sequences sent twice (by two different threads): duplicates.
  auto repeated = [](std::int64_t s) { return s % 11 == 0 && s % 37 != 0; };

  struct job {
    int call;
    std::int64_t sequence;
  };
  std::vector<std::vector<job>> work(threads);
  std::size_t total = 0;
  for (int c = 0; c < calls; ++c) {
    for (std::int64_t s = 1; s <= per_call; ++s) {
      if (skipped(s)) continue;
      work[static_cast<std::size_t>((s + c) % threads)].push_back({c, s});
      ++total;
      if (repeated(s)) {
        work[static_cast<std::size_t>((s + c + 3) % threads)].push_back({c, s});
        ++total;
      }
    }
  }
  std::mt19937 rng(7);
  for (auto& w : work) std::shuffle(w.begin(), w.end(), rng);  // out of order within each thread too

  answer_board board(total);
  std::vector<std::vector<std::size_t>> index(threads);
  {
    std::size_t next = 0;
    for (int t = 0; t < threads; ++t)
      for (std::size_t i = 0; i < work[static_cast<std::size_t>(t)].size(); ++i) index[static_cast<std::size_t>(t)].push_back(next++);
  }
  std::latch start(threads);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      const auto& w = work[static_cast<std::size_t>(t)];
      start.arrive_and_wait();
      for (std::size_t i = 0; i < w.size(); ++i)
        store().ingest(make_packet("conc-" + std::to_string(w[i].call), w[i].sequence),
                       board.handler(index[static_cast<std::size_t>(t)][i]));
    });
  }
  for (auto& th : pool) th.join();
  ASSERT_TRUE(board.wait_all()) << "not every ingest was answered";

  std::size_t duplicates = 0, created = 0;
  for (std::size_t i = 0; i < board.size(); ++i) {
    ASSERT_EQ(board.answers(i), 1u) << "ingest " << i;
    const auto& r = board.result_of(i);
    ASSERT_TRUE(r.has_value()) << "ingest " << i << ": " << r.error().message();
    if (r->duplicate) ++duplicates;
    if (r->call_created) ++created;
  }
  EXPECT_EQ(created, static_cast<std::size_t>(calls));  // each call created by exactly one packet

  std::size_t repeats = 0;
  for (std::int64_t s = 1; s <= per_call; ++s) repeats += repeated(s) ? 1 : 0;
  EXPECT_EQ(duplicates, repeats * calls);

  for (int c = 0; c < calls; ++c) {
    const std::string id = "conc-" + std::to_string(c);
    SCOPED_TRACE(id);
    std::vector<std::int64_t> want_sequences;
    ranges want_gaps;
    for (std::int64_t s = 1; s <= per_call; ++s) {
      if (skipped(s)) want_gaps.push_back({s, s});
      else want_sequences.push_back(s);
    }
    EXPECT_EQ(sequences_of(all_packets(id)), want_sequences);
    EXPECT_EQ(gaps(id), want_gaps);
    const call_summary summary = call(id);
    EXPECT_EQ(summary.packets_received, static_cast<std::int64_t>(want_sequences.size()));
    EXPECT_EQ(summary.duplicate_packets, static_cast<std::int64_t>(repeats));
    EXPECT_EQ(summary.last_sequence, per_call);
    EXPECT_EQ(summary.expected_sequence, 37);
    EXPECT_EQ(summary.missing_packets, static_cast<std::int64_t>(want_gaps.size()));
    EXPECT_EQ(summary.missing_ranges, static_cast<std::int64_t>(want_gaps.size()));
    EXPECT_GE(summary.gaps_opened, 1);
  }
}

TEST_P(CallStoreContract, ConcurrentReadsDuringWrites) {
  std::atomic<bool> writing{true};
  std::atomic<int> read_failures{0};
  std::thread reader([&] {
    while (writing.load()) {
      auto c = store().list_calls({});
      if (!c) ++read_failures;
      if (auto p = store().list_packets("rw", -1, 50); !p && p.error() != errc::not_found) ++read_failures;
    }
  });
  for (std::int64_t s = 1; s <= 200; ++s) ASSERT_TRUE(ingest("rw", s).has_value());
  writing = false;
  reader.join();
  EXPECT_EQ(read_failures.load(), 0);
  EXPECT_EQ(call("rw").packets_received, 200);
}

// ---- lifecycle --------------------------------------------------------------------------------------------

TEST_P(CallStoreContract, WriteReopenRead) {
  ASSERT_TRUE(ingest("persist", 1, "one", 10.0).has_value());
  ASSERT_TRUE(ingest("persist", 2, "two", 10.02).has_value());
  ASSERT_TRUE(ingest("persist", 6, "six", 10.1).has_value());  // gap 3..5
  ASSERT_TRUE(ingest("persist", 2, "two", 10.02).value().duplicate);
  ASSERT_TRUE(ingest("other", 1).has_value());
  const call_summary before = call("persist");

  reopen();

  const call_summary after = call("persist");
  EXPECT_EQ(after.last_sequence, 6);
  EXPECT_EQ(after.expected_sequence, 3);
  EXPECT_EQ(after.packets_received, 3);
  EXPECT_EQ(after.duplicate_packets, 1);
  EXPECT_EQ(after.gaps_opened, 1);
  EXPECT_EQ(after.missing_packets, 3);
  EXPECT_EQ(after.missing_ranges, 1);
  EXPECT_EQ(after.first_timestamp, 10.0);
  EXPECT_EQ(after.last_timestamp, 10.1);
  EXPECT_EQ(after.created_at, before.created_at);
  EXPECT_EQ(gaps("persist"), (ranges{{3, 5}}));
  const auto packets = all_packets("persist");
  ASSERT_EQ(packets.size(), 3u);
  EXPECT_EQ(packets[0].data, "one");
  EXPECT_EQ(packets[2].data, "six");
  EXPECT_EQ(store().list_calls({}).value().calls.size(), 2u);

  // The tracker continues where it stopped: the gap opened before the restart is filled after it.
  auto first = ingest("persist", 4, "four");
  ASSERT_TRUE(first.has_value());
  EXPECT_FALSE(first->call_created);
  EXPECT_EQ(first->kind, arrival::late);
  EXPECT_EQ(first->expected, 3);
  EXPECT_EQ(first->missing, 2);
  EXPECT_EQ(gaps("persist"), (ranges{{3, 3}, {5, 5}}));
  // Duplicates and conflicts are recognised against what was stored before the restart.
  EXPECT_TRUE(ingest("persist", 6, "six", 10.1).value().duplicate);
  EXPECT_EQ(ingest("persist", 1, "uno").error(), errc::sequence_conflict);
  ASSERT_TRUE(ingest("persist", 3, "three").has_value());
  ASSERT_TRUE(ingest("persist", 5, "five").has_value());
  auto next = ingest("persist", 7, "seven");
  ASSERT_TRUE(next.has_value());
  EXPECT_EQ(next->kind, arrival::in_order);
  EXPECT_EQ(next->expected, 8);
  EXPECT_EQ(next->missing, 0);

  reopen();

  const call_summary last = call("persist");
  EXPECT_EQ(last.packets_received, 7);
  EXPECT_EQ(last.duplicate_packets, 2);
  EXPECT_EQ(last.out_of_order_packets, 3);
  EXPECT_EQ(last.missing_packets, 0);
  EXPECT_EQ(last.expected_sequence, 8);
  EXPECT_TRUE(gaps("persist").empty());
  EXPECT_EQ(sequences_of(all_packets("persist")), (std::vector<std::int64_t>{1, 2, 3, 4, 5, 6, 7}));
  EXPECT_TRUE(ingest("persist", 8).has_value());
}

TEST_P(CallStoreContract, StopAnswersWhatIsQueued) {
  constexpr std::size_t n = 500;
  answer_board board(n);
  for (std::size_t i = 0; i < n; ++i)
    store().ingest(make_packet("c-stop", static_cast<std::int64_t>(i + 1)), board.handler(i));
  store().stop();
  // No waiting: stop() returns only after every queued packet is committed and answered.
  for (std::size_t i = 0; i < n; ++i) {
    ASSERT_EQ(board.answers(i), 1u) << i;
    ASSERT_TRUE(board.result_of(i).has_value()) << i;
  }
  reopen();
  EXPECT_EQ(call("c-stop").packets_received, static_cast<std::int64_t>(n));
}

TEST_P(CallStoreContract, IngestAfterStopIsUnavailable) {
  ASSERT_TRUE(ingest("c-after-stop", 1).has_value());
  store().stop();
  auto r = ingest("c-after-stop", 2);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error(), errc::unavailable);
  EXPECT_EQ(ingest("new-call", 1).error(), errc::unavailable);
  store().stop();  // idempotent
  EXPECT_EQ(ingest("c-after-stop", 3).error(), errc::unavailable);

  reopen();
  EXPECT_EQ(call("c-after-stop").packets_received, 1);
  EXPECT_EQ(store().get_call("new-call").error(), errc::not_found);
}

// With a writer queue of one packet, a burst overflows it: refused packets get `overloaded` and are not
// stored; every accepted one is. The writer is held inside a handler (handlers run on the store's thread)
// while the burst starts, so overflow is certain rather than a matter of timing.
TEST_P(CallStoreContract, FullQueueAnswersOverloadedAndStoresNothing) {
  if (!GetParam().make_with_queue_limit) GTEST_SKIP() << GetParam().name << " has no writer queue limit";
  store_.reset();
  store_ = GetParam().make_with_queue_limit(dir_.string(), 1);

  std::promise<void> entered, release;
  auto release_future = release.get_future().share();
  store().ingest(make_packet("blocker", 1), [&entered, release_future](result<ingest_outcome> r) {
    EXPECT_TRUE(r.has_value());
    entered.set_value();
    release_future.wait();
  });
  entered.get_future().wait();

  constexpr int threads = 8;
  constexpr std::int64_t per_thread = 60;  // half sent while the writer is held, half after
  const std::size_t total = threads * per_thread;
  answer_board board(total);
  std::latch first_half_done(threads + 1);
  std::vector<std::thread> pool;
  for (int t = 0; t < threads; ++t) {
    pool.emplace_back([&, t] {
      for (std::int64_t i = 0; i < per_thread; ++i) {
        if (i == per_thread / 2) first_half_done.arrive_and_wait();
        const std::int64_t sequence = t * per_thread + i + 1;
        store().ingest(make_packet("burst-" + std::to_string(t % 3), sequence),
                       board.handler(static_cast<std::size_t>(sequence - 1)));
      }
    });
  }
  first_half_done.arrive_and_wait();
  release.set_value();
  for (auto& th : pool) th.join();
  ASSERT_TRUE(board.wait_all()) << "not every ingest was answered";

  std::map<std::string, std::vector<std::int64_t>> accepted;
  std::size_t overloaded = 0;
  for (std::size_t i = 0; i < total; ++i) {
    ASSERT_EQ(board.answers(i), 1u) << i;
    const auto sequence = static_cast<std::int64_t>(i + 1);
    const int t = static_cast<int>((sequence - 1) / per_thread);
    const auto& r = board.result_of(i);
    if (r.has_value()) {
      accepted["burst-" + std::to_string(t % 3)].push_back(sequence);
    } else {
      ASSERT_EQ(r.error(), errc::overloaded) << i << ": " << r.error().message();
      ++overloaded;
    }
  }
  // While the writer was held, at most one packet fit in the queue.
  EXPECT_GE(overloaded, static_cast<std::size_t>(threads * (per_thread / 2) - 1));
  EXPECT_LT(overloaded, total);

  std::size_t stored = 0;
  for (int c = 0; c < 3; ++c) {
    const std::string id = "burst-" + std::to_string(c);
    auto& want = accepted[id];
    std::sort(want.begin(), want.end());
    if (want.empty()) {
      EXPECT_EQ(store().get_call(id).error(), errc::not_found) << id;
      continue;
    }
    EXPECT_EQ(sequences_of(all_packets(id)), want) << id;
    EXPECT_EQ(call(id).packets_received, static_cast<std::int64_t>(want.size())) << id;
    EXPECT_EQ(call(id).last_sequence, want.back()) << id;
    stored += want.size();
  }
  EXPECT_EQ(stored + overloaded, total);
  EXPECT_EQ(store().stats().queue_limit, 1u);
}

// ---- backends ---------------------------------------------------------------------------------------------

INSTANTIATE_TEST_SUITE_P(Backends, CallStoreContract, ::testing::ValuesIn(call_store_backends()),
                         [](const ::testing::TestParamInfo<store_backend>& p) { return p.param.name; });

}  // namespace
}  // namespace aipbx
