// `aipbx serve --db postgresql://...`: the real binary, one or several nodes, on a real PostgreSQL server
// (the `postgres` CTest fixture's, scripts/pg-cluster.sh; the database-restart test starts one of its own,
// since it stops it). What is stored is checked in the database itself.
#include "harness/api.hpp"
#include "harness/http_client.hpp"
#include "harness/server_process.hpp"
#include "harness/sse_client.hpp"
#include "storage/pg_test_database.hpp"
#include "storage/postgres/pg_conn.hpp"

#include <boost/json/serialize.hpp>
#include <gtest/gtest.h>

#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <atomic>
#include <csignal>
#include <cstdlib>
#include <map>
#include <memory>
#include <mutex>
#include <random>
#include <set>
#include <string>
#include <thread>
#include <vector>

namespace aipbx::itest {
namespace {

namespace json = boost::json;

std::string database_name() {
  const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
  std::string name = std::string("it_") + info->test_suite_name() + "_" + info->name() + "_" + std::to_string(::getpid());
  std::transform(name.begin(), name.end(), name.begin(), [](unsigned char c) { return std::tolower(c); });
  return name;
}

// Packets a client has been answered 202 for, by call.
class acknowledged {
 public:
  void add(const std::string& call, std::int64_t seq, const std::string& data) {
    std::lock_guard lock(mutex_);
    packets_[call][seq] = data;
  }
  std::map<std::string, std::map<std::int64_t, std::string>> all() const {
    std::lock_guard lock(mutex_);
    return packets_;
  }
  std::size_t size() const {
    std::lock_guard lock(mutex_);
    std::size_t n = 0;
    for (const auto& [call, packets] : packets_) n += packets.size();
    return n;
  }

 private:
  mutable std::mutex mutex_;
  std::map<std::string, std::map<std::int64_t, std::string>> packets_;
};

// A client's connections to every node; `post` sends a packet to the node asked for, or on to the next live
// one when that node refuses or is gone, until a 202 or the deadline. Answers other than 202/503 fail.
class spreading_client {
 public:
  spreading_client(std::vector<std::uint16_t> ports, const std::vector<std::atomic<bool>>& alive)
      : ports_(std::move(ports)), alive_(alive), conns_(ports_.size()) {}

  bool post(std::size_t node, const std::string& call, std::int64_t seq, const std::string& data,
            std::atomic<int>& unavailable) {
    const auto deadline = std::chrono::steady_clock::now() + 60s;
    for (std::size_t attempt = 0; std::chrono::steady_clock::now() < deadline; ++attempt) {
      const std::size_t n = (node + attempt) % ports_.size();
      if (!alive_[n].load()) continue;
      try {
        if (!conns_[n]) conns_[n] = std::make_unique<connection>(ports_[n], 5s);
        auto r = post_packet(*conns_[n], call, seq, data);
        if (!r.keep_alive) conns_[n].reset();
        if (r.status == 202) return true;
        if (r.status == 503) {
          if (r.header("Retry-After").empty()) ADD_FAILURE() << "503 without Retry-After";
          ++unavailable;
          std::this_thread::sleep_for(50ms);
          continue;
        }
        ADD_FAILURE() << call << "/" << seq << ": " << r.status << " " << r.body;
        return false;
      } catch (const std::exception&) {
        conns_[n].reset();  // the node is gone (killed) or the connection broke: on to the next
        std::this_thread::sleep_for(10ms);
      }
    }
    return false;
  }

 private:
  std::vector<std::uint16_t> ports_;
  const std::vector<std::atomic<bool>>& alive_;
  std::vector<std::unique_ptr<connection>> conns_;
};

std::int64_t scalar(pg::connection& db, const std::string& sql) { return db.exec(sql.c_str()).int64(0, 0); }

// Every acknowledged packet is stored exactly once with its data, and nothing else is; the calls' sequence
// state agrees with what is stored (everything sent, so no gap is left).
void expect_stored_exactly(pg::connection& db, const std::map<std::string, std::map<std::int64_t, std::string>>& acked) {
  std::size_t total = 0;
  for (const auto& [call, packets] : acked) {
    auto r = db.exec("SELECT p.sequence, p.data FROM packets p JOIN calls c ON c.key = p.call_key WHERE c.id = $1 "
                     "ORDER BY p.sequence",
                     pg::params{}.add(std::string_view(call)));
    std::map<std::int64_t, std::string> stored;
    for (int i = 0; i < r.rows(); ++i) stored.emplace(r.int64(i, 0), r.bytes(i, 1));
    EXPECT_EQ(static_cast<std::size_t>(r.rows()), stored.size()) << call << ": a sequence stored twice";
    EXPECT_EQ(stored, packets) << call;
    auto c = db.exec(
        "SELECT packets_received, last_sequence, expected_sequence, missing_packets, "
        "(SELECT COUNT(*) FROM call_gaps g WHERE g.call_id = calls.id AND NOT g.lost) FROM calls WHERE id = $1",
        pg::params{}.add(std::string_view(call)));
    ASSERT_EQ(c.rows(), 1) << call;
    EXPECT_EQ(c.int64(0, 0), static_cast<std::int64_t>(packets.size())) << call;
    EXPECT_EQ(c.int64(0, 1), packets.rbegin()->first) << call;
    EXPECT_EQ(c.int64(0, 2), packets.rbegin()->first + 1) << call;
    EXPECT_EQ(c.int64(0, 3), 0) << call;
    EXPECT_EQ(c.int64(0, 4), 0) << call;
    total += packets.size();
  }
  EXPECT_EQ(scalar(db, "SELECT COUNT(*) FROM packets"), static_cast<std::int64_t>(total));
  EXPECT_EQ(scalar(db, "SELECT COUNT(*) FROM calls"), static_cast<std::int64_t>(acked.size()));
}

// Every job ended once: succeeded (with exactly one transcript segment) or dead (with none); each call's
// segments cover its sequences once, in order; the calls' job counters and final state agree.
void expect_jobs_settled_once(pg::connection& db, std::int64_t packets_per_call) {
  EXPECT_EQ(scalar(db, "SELECT COUNT(*) FROM jobs WHERE state NOT IN ('succeeded', 'dead')"), 0);
  EXPECT_EQ(scalar(db, "SELECT COUNT(*) FROM jobs j WHERE state = 'succeeded' AND NOT EXISTS "
                       "(SELECT 1 FROM transcript_segments t WHERE t.job_id = j.id)"),
            0);
  EXPECT_EQ(scalar(db, "SELECT COUNT(*) FROM transcript_segments t JOIN jobs j ON j.id = t.job_id "
                       "WHERE j.state <> 'succeeded'"),
            0);
  EXPECT_EQ(scalar(db, "SELECT COUNT(*) FROM jobs WHERE attempts > max_attempts"), 0);
  auto calls = db.exec(
      "SELECT id, state, jobs_total, jobs_succeeded, jobs_dead, "
      "(SELECT COUNT(*) FROM jobs j WHERE j.call_key = calls.key), "
      "(SELECT COUNT(*) FROM jobs j WHERE j.call_key = calls.key AND j.state = 'succeeded'), "
      "(SELECT COUNT(*) FROM jobs j WHERE j.call_key = calls.key AND j.state = 'dead') FROM calls ORDER BY id");
  for (int i = 0; i < calls.rows(); ++i) {
    const std::string id = calls.text(i, 0);
    EXPECT_EQ(calls.int64(i, 2), calls.int64(i, 5)) << id;
    EXPECT_EQ(calls.int64(i, 3), calls.int64(i, 6)) << id;
    EXPECT_EQ(calls.int64(i, 4), calls.int64(i, 7)) << id;
    EXPECT_EQ(calls.text(i, 1), calls.int64(i, 7) > 0 ? "FAILED" : "COMPLETED") << id;
    auto segs = db.exec("SELECT j.first_sequence, j.last_sequence FROM jobs j JOIN calls c ON c.key = j.call_key "
                        "WHERE c.id = $1 ORDER BY j.first_sequence",
                        pg::params{}.add(std::string_view(id)));
    std::int64_t next = 1;
    for (int s = 0; s < segs.rows(); ++s) {
      EXPECT_EQ(segs.int64(s, 0), next) << id;
      next = segs.int64(s, 1) + 1;
    }
    EXPECT_EQ(next, packets_per_call + 1) << id;
  }
}

// ---- one node --------------------------------------------------------------------------------------------

TEST(PostgresServe, IngestReadApiAndAiJobsEndToEnd) {
  const std::string url = test::pg_fresh_database(database_name());
  server_process node(url, {{"--segment-packets", "2"}, {"--pg-pool-size", "2"}, {"--pg-writers", "2"}});
  node.start();
  connection c(node.port());
  // Out of order, a duplicate, a conflict.
  for (std::int64_t s : {1, 2, 4, 3, 5, 6}) ASSERT_EQ(post_packet(c, "pg-a", s, "a" + std::to_string(s)).status, 202);
  auto dup = post_packet(c, "pg-a", 4, "a4");
  ASSERT_EQ(dup.status, 202);
  EXPECT_EQ(as_int(dup.json().as_object().at("expected_sequence")), 7);
  EXPECT_TRUE(dup.json().as_object().at("duplicate").as_bool());
  EXPECT_EQ(post_packet(c, "pg-a", 4, "other").status, 409);
  for (std::int64_t s : {1, 3}) ASSERT_EQ(post_packet(c, "pg-b", s, "b" + std::to_string(s)).status, 202);

  auto a = get_ok(c, "/v1/calls/pg-a");
  EXPECT_EQ(as_int(a.at("packets_received")), 6);
  EXPECT_EQ(as_int(a.at("duplicate_packets")), 1);
  EXPECT_EQ(as_int(a.at("out_of_order_packets")), 1);
  EXPECT_EQ(as_int(a.at("gaps_opened")), 1);
  auto gaps = get_ok(c, "/v1/calls/pg-b/gaps");
  ASSERT_EQ(gaps.at("open").as_array().size(), 1u);
  auto page = get_ok(c, "/v1/calls?limit=1");
  ASSERT_EQ(page.at("calls").as_array().size(), 1u);
  EXPECT_EQ(page.at("calls").as_array()[0].as_object().at("id").as_string(), "pg-a");
  auto packets = get_ok(c, "/v1/calls/pg-a/packets?limit=100");
  ASSERT_EQ(packets.at("packets").as_array().size(), 6u);

  EXPECT_EQ(c.post_json("/v1/calls/pg-a/end", "").status, 200);
  EXPECT_EQ(c.post_json("/v1/calls/pg-b/end", "").status, 200);
  ASSERT_TRUE(wait_until([&] { return call_state(c, "pg-a") == "COMPLETED" && call_state(c, "pg-b") == "COMPLETED"; },
                         20s))
      << node.tail();
  EXPECT_EQ(get_ok(c, "/v1/calls/pg-a/transcript").at("text").as_string(), "a1 a2 a3 a4 a5 a6");
  EXPECT_EQ(get_ok(c, "/v1/calls/pg-b/transcript").at("text").as_string(), "b1 b3");
  EXPECT_EQ(post_packet(c, "pg-a", 7, "a7").status, 409) << "an ended call takes no more packets";
  EXPECT_EQ(c.get("/readyz").status, 200);
  // pg-a: segments 1-2, 3-4, 5-6; pg-b: 1-2 (2 declared lost at the end) and 3.
  const auto jobs = tally(all_jobs(c));
  EXPECT_EQ(jobs.succeeded, 5);
  EXPECT_EQ(jobs.total(), 5);
  auto metrics = c.get("/metrics");
  EXPECT_NE(metrics.body.find("aipbx_jobs{state=\"succeeded\"} 5"), std::string::npos) << metrics.body;
  // pg-a's packets after its first were applied to the state its writer kept; this node alone wrote them.
  const auto value = [&](const std::string& name) {
    const auto at = metrics.body.find("\n" + name + " ");
    return at == std::string::npos ? -1.0 : std::stod(metrics.body.substr(at + name.size() + 2));
  };
  EXPECT_GE(value(R"(aipbx_pg_batches_total{path="kept"})"), 1) << metrics.body;
  EXPECT_GE(value(R"(aipbx_pg_batches_total{path="read"})"), 1) << metrics.body;
  EXPECT_EQ(value("aipbx_pg_kept_stale_total"), 0) << metrics.body;
  EXPECT_EQ(node.stop(), 0);
}

// ---- several nodes ---------------------------------------------------------------------------------------

// Two nodes on one database, and a declaration that races a call's first packets: node A has seen call X
// unknown (a packet it refused under the default --media), node B then declares X as l16/8000. A's view
// of X is outdated; the store refuses a packet A checked against it (media_changed) and A checks again:
// l16 data is stored, data that is pcmu but not l16 (an odd byte count) gets its 422, nothing else.
TEST(PostgresNodes, ADeclarationOnAnotherNodeIsHonouredByTheIngestCheck) {
  const std::string url = test::pg_fresh_database(database_name());
  server_process a(url, {{"--node-name", "a"}, {"--media", "pcmu/8000"}});
  server_process b(url, {{"--node-name", "b"}, {"--media", "pcmu/8000"}});
  a.start();
  b.start();
  connection ca(a.port()), cb(b.port());
  for (const std::string call : {"race-1", "race-2"}) {
    ASSERT_EQ(post_packet(ca, call, 1, "not base64!").status, 422);  // A now knows the call as undeclared
    ASSERT_EQ(cb.post_json("/v1/calls/" + call, R"({"media": {"format": "l16/8000"}})").status, 201);
  }
  // "AQID" is 3 bytes: 3 mu-law samples, but not whole 16-bit samples.
  auto odd = post_packet(ca, "race-1", 1, "AQID");
  EXPECT_EQ(odd.status, 422) << odd.body;
  EXPECT_NE(odd.body.find("l16/8000"), std::string::npos) << odd.body;
  auto even = post_packet(ca, "race-2", 1, "AQIDBA==");
  EXPECT_EQ(even.status, 202) << even.body;
  EXPECT_EQ(as_int(get_ok(cb, "/v1/calls/race-1").at("packets_received")), 0);
  EXPECT_EQ(as_int(get_ok(cb, "/v1/calls/race-2").at("packets_received")), 1);
  EXPECT_EQ(a.stop(), 0);
  EXPECT_EQ(b.stop(), 0);
}

// GET /v1/nodes on a shared database: each node sees every node connected (by the name of its listening
// connection) and the jobs each runs; a node killed while running jobs is shown not connected, with the
// leases it still holds. Late packets of a lost range are listed in /gaps here too.
TEST(PostgresNodes, NodesAreListedWithTheirJobsAndAKilledOneKeepsItsLeases) {
  const std::string url = test::pg_fresh_database(database_name());
  server_process a(url, {{"--node-name", "node-a"}, {"--workers", "0"}, {"--reorder-window", "2,60s"}});
  // b runs every attempt for a minute: its jobs are running under its lease when it is killed.
  server_process b(url, {{"--node-name", "node-b"}, {"--workers", "2"}, {"--mock-delay-ms", "60000:60000"},
                         {"--lease-timeout", "60s"}});
  a.start();
  b.start();
  connection ca(a.port());
  for (std::int64_t s : {1, 2, 3, 7, 8, 9}) ASSERT_EQ(post_packet(ca, "n1", s, "p").status, 202);  // 4-6 lost
  ASSERT_EQ(post_packet(ca, "n1", 5, "p").status, 202);  // late
  const auto gaps = get_ok(ca, "/v1/calls/n1/gaps");
  ASSERT_EQ(gaps.at("lost").as_array().size(), 1u) << json::serialize(gaps);
  const auto& late = gaps.at("late").as_array();
  ASSERT_EQ(late.size(), 1u) << json::serialize(gaps);
  EXPECT_EQ(as_int(late[0].as_object().at("first")), 5);
  EXPECT_EQ(as_int(late[0].as_object().at("last")), 5);

  const auto node = [&](const json::object& nodes, const std::string& name) -> json::object {
    for (const auto& n : nodes.at("nodes").as_array())
      if (n.as_object().at("name").as_string() == name) return n.as_object();
    return {};
  };
  json::object nodes;
  ASSERT_TRUE(wait_until([&] {
    nodes = get_ok(ca, "/v1/nodes");
    const auto nb = node(nodes, "node-b");
    return !nb.empty() && nb.at("connected").as_bool() && as_int(nb.at("running_jobs")) == 2;
  }, 20s)) << json::serialize(nodes);
  EXPECT_EQ(nodes.at("backend").as_string(), "postgresql");
  EXPECT_EQ(nodes.at("node").as_string(), "node-a");
  const auto na = node(nodes, "node-a");
  ASSERT_FALSE(na.empty()) << json::serialize(nodes);
  EXPECT_TRUE(na.at("self").as_bool());
  EXPECT_TRUE(na.at("connected").as_bool());
  EXPECT_EQ(as_int(na.at("running_jobs")), 0);
  EXPECT_FALSE(node(nodes, "node-b").at("self").as_bool());
  EXPECT_EQ(nodes.at("this_node").as_object().at("workers").as_int64(), 0);

  b.kill();
  EXPECT_EQ(b.wait_exit(10s), 128 + SIGKILL);
  ASSERT_TRUE(wait_until([&] {
    nodes = get_ok(ca, "/v1/nodes");
    const auto nb = node(nodes, "node-b");
    return !nb.empty() && !nb.at("connected").as_bool();
  }, 20s)) << json::serialize(nodes);
  const auto gone = node(nodes, "node-b");
  EXPECT_EQ(as_int(gone.at("running_jobs")), 2) << "its leases outlive it";
  EXPECT_TRUE(gone.at("connected_since").is_null());
  EXPECT_EQ(a.stop(), 0);
}

// Three nodes on one database; clients spread the packets of the same calls over all three at once; the mock
// fails 30 % of attempts; one node is SIGKILLed halfway. Calls end by idle timeout, decided by whichever node
// sweeps. At the end: every acknowledged packet stored once, every job succeeded or dead exactly once, the
// sequence state right, each call ended once.
TEST(PostgresNodes, ThreeNodesShareCallsAndOneIsKilled) {
  const std::string url = test::pg_fresh_database(database_name());
  constexpr int node_count = 3;
  constexpr int calls = 12;
  constexpr std::int64_t per_call = 60;
  constexpr int clients = 6;
  std::vector<std::unique_ptr<server_process>> nodes;
  for (int i = 0; i < node_count; ++i) {
    nodes.push_back(std::make_unique<server_process>(
        url, server_flags{{"--node-name", "node-" + std::to_string(i)},
                          {"--mock-failure-rate", "0.3"},
                          {"--mock-delay-ms", "5:30"},
                          {"--mock-seed", std::to_string(i + 1)},
                          {"--segment-packets", "4"},
                          {"--retry-base-delay", "20ms"},
                          {"--retry-max-delay", "100ms"},
                          {"--retry-max-attempts", "3"},
                          {"--lease-timeout", "2s"},
                          {"--job-poll", "200ms"},
                          {"--reorder-window", "0"},
                          {"--idle-timeout", "6s"},
                          {"--pg-pool-size", "2"}}));
    nodes.back()->start();
  }
  std::vector<std::uint16_t> ports;
  for (auto& n : nodes) ports.push_back(n->port());
  std::vector<std::atomic<bool>> alive(node_count);
  for (auto& a : alive) a = true;

  // Each client owns two calls and sends their packets in shuffled windows of 8, each to node (seq % 3):
  // consecutive packets of a call arrive at different nodes at the same time.
  acknowledged acked;
  std::atomic<int> unavailable{0}, sent{0}, failed{0};
  const int total = calls * static_cast<int>(per_call);
  std::vector<std::thread> threads;
  for (int t = 0; t < clients; ++t) {
    threads.emplace_back([&, t] {
      spreading_client client(ports, alive);
      std::mt19937 rng(static_cast<unsigned>(t + 7));
      std::vector<std::pair<std::string, std::int64_t>> order;
      for (int k = t; k < calls; k += clients)
        for (std::int64_t s = 1; s <= per_call; ++s) order.emplace_back("pg-multi-" + std::to_string(k), s);
      for (std::size_t w = 0; w < order.size(); w += 8)
        std::shuffle(order.begin() + static_cast<std::ptrdiff_t>(w),
                     order.begin() + static_cast<std::ptrdiff_t>(std::min(order.size(), w + 8)), rng);
      for (const auto& [call, seq] : order) {
        const std::string data = call + "-" + std::to_string(seq);
        if (client.post(static_cast<std::size_t>(seq % node_count), call, seq, data, unavailable)) acked.add(call, seq, data);
        else ++failed;
        // Now and then the same packet again, to another node: a duplicate.
        if (seq % 7 == 0 && client.post(static_cast<std::size_t>(seq + 1) % node_count, call, seq, data, unavailable))
          acked.add(call, seq, data);
        ++sent;
      }
    });
  }
  ASSERT_TRUE(wait_until([&] { return sent.load() >= total / 2; }, 60s));
  alive[1] = false;
  nodes[1]->kill();
  EXPECT_EQ(nodes[1]->wait_exit(10s), 128 + SIGKILL);
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);

  pg::connection db(url, "aipbx-tests");
  // Idle timeout (6 s: no call idles out while a slow build still streams it) ends every call; the killed
  // node's leases (2 s) expire and the others take its jobs.
  const bool settled = wait_until(
      [&] {
        return scalar(db, "SELECT COUNT(*) FROM calls WHERE state IN ('COMPLETED', 'FAILED')") == calls &&
               scalar(db, "SELECT COUNT(*) FROM jobs WHERE state NOT IN ('succeeded', 'dead')") == 0;
      },
      90s, 200ms);
  ASSERT_TRUE(settled) << nodes[0]->tail(30) << nodes[2]->tail(30);

  const auto all = acked.all();
  ASSERT_EQ(all.size(), static_cast<std::size_t>(calls));
  for (const auto& [call, packets] : all) EXPECT_EQ(packets.size(), static_cast<std::size_t>(per_call)) << call;
  expect_stored_exactly(db, all);
  expect_jobs_settled_once(db, per_call);
  // Each call was created once and ended once, by one node's idle-timeout decision.
  EXPECT_EQ(scalar(db, "SELECT COUNT(*) FROM call_transitions WHERE from_state IS NULL"), calls);
  EXPECT_EQ(scalar(db, "SELECT COUNT(*) FROM call_transitions WHERE to_state = 'PROCESSING_AI' AND "
                       "from_state = 'IN_PROGRESS' AND reason = 'idle timeout'"),
            calls);
  EXPECT_GT(scalar(db, "SELECT COUNT(*) FROM jobs WHERE attempts > 1"), 0) << "the mock failed no attempt";
  for (int i : {0, 2}) EXPECT_EQ(nodes[i]->stop(), 0) << nodes[i]->tail(30);
}

// ---- the event stream across nodes ----------------------------------------------------------------------

// Two nodes on one database, packets spread over both. A subscriber on node A sees what both nodes commit, in
// one order; A is killed mid-stream and the subscriber resumes on node B with Last-Event-ID. In the end it has
// had every event of the shared log exactly once, in order (the ids 1..last_id of the database).
TEST(PostgresEvents, ASubscriberSeesEveryNodeAndResumesOnAnotherAfterAKill) {
  const std::string url = test::pg_fresh_database(database_name());
  std::vector<std::unique_ptr<server_process>> nodes;
  for (const std::string name : {"ev-a", "ev-b"}) {
    nodes.push_back(std::make_unique<server_process>(
        url, server_flags{{"--node-name", name}, {"--lease-timeout", "2s"}, {"--job-poll", "200ms"},
                          {"--reorder-window", "0"}, {"--idle-timeout", "0"}, {"--pg-pool-size", "2"}}));
    nodes.back()->start();
  }
  std::vector<std::uint16_t> ports{nodes[0]->port(), nodes[1]->port()};
  std::vector<std::atomic<bool>> alive(2);
  for (auto& a : alive) a = true;
  constexpr int calls = 4;
  constexpr std::int64_t per_call = 120;
  std::atomic<int> unavailable{0}, failed{0};
  std::thread writer([&] {
    spreading_client client(ports, alive);
    for (std::int64_t seq = 1; seq <= per_call; ++seq)
      for (int k = 0; k < calls; ++k) {
        const std::string call = "pg-ev-" + std::to_string(k);
        if (!client.post(static_cast<std::size_t>(seq + k) % 2, call, seq, call + "-" + std::to_string(seq), unavailable))
          ++failed;
      }
  });

  std::vector<std::int64_t> got;
  std::vector<sse_frame> frames;
  {
    sse_client on_a(nodes[0]->port(), "/v1/events?after=0");
    ASSERT_EQ(on_a.head().status, 200);
    auto stop = on_a.read_events(got, 300, 30s, &frames);
    ASSERT_TRUE(stop && stop->event.empty()) << nodes[0]->tail(20);
    alive[0] = false;
    nodes[0]->kill();
    EXPECT_EQ(nodes[0]->wait_exit(10s), 128 + SIGKILL);
    // What A had written to the socket before it died may still be read; then the stream ends.
    try {
      while (on_a.read_events(got, 1, 5s, &frames)) {
      }
    } catch (const std::runtime_error&) {
    }
  }
  // Node A's stream carried both nodes' work: jobs claimed by each.
  std::set<std::string> owners;
  for (const auto& f : frames) {
    const auto e = f.json();
    if (e.at("kind").as_string() == "job.claimed") owners.insert(std::string(e.at("data").as_object().at("owner").as_string()));
  }
  EXPECT_TRUE(owners.count("ev-a") && owners.count("ev-b")) << "owners seen on A: " << owners.size();

  sse_client on_b(nodes[1]->port(), "/v1/events", {{"Last-Event-ID", std::to_string(got.back())}});
  ASSERT_EQ(on_b.head().status, 200);
  writer.join();
  EXPECT_EQ(failed.load(), 0);
  connection cb(nodes[1]->port());
  for (int k = 0; k < calls; ++k) ASSERT_EQ(cb.post_json("/v1/calls/pg-ev-" + std::to_string(k) + "/end", "").status, 200);
  pg::connection db(url, "aipbx-tests");
  // A's leases expire (2 s) and B takes its jobs; then nothing more happens.
  ASSERT_TRUE(wait_until([&] {
    return scalar(db, "SELECT COUNT(*) FROM calls WHERE state IN ('COMPLETED', 'FAILED')") == calls;
  }, 60s, 200ms)) << nodes[1]->tail(30);
  const std::int64_t head = scalar(db, "SELECT last_id FROM event_log_state");
  while (got.back() < head) {
    auto stop = on_b.read_events(got, 1, 30s);
    ASSERT_TRUE(stop && stop->event.empty()) << nodes[1]->tail(20);
  }
  std::vector<std::int64_t> expected;
  for (std::int64_t id = 1; id <= head; ++id) expected.push_back(id);
  EXPECT_EQ(got, expected);
  // The log's rows hold every id once: each row the ids after its predecessor's, as many as its arrays.
  EXPECT_EQ(scalar(db, "SELECT COALESCE(SUM(last_id - first_id + 1), 0) FROM event_batches"), head)
      << "an id missing from the log";
  EXPECT_EQ(scalar(db, "SELECT COUNT(*) FROM (SELECT first_id, lag(last_id) OVER (ORDER BY last_id) AS previous "
                       "FROM event_batches) b WHERE first_id <> COALESCE(previous, 0) + 1"),
            0);
  EXPECT_EQ(scalar(db, "SELECT COUNT(*) FROM event_batches WHERE cardinality(ats) <> last_id - first_id + 1 OR "
                       "cardinality(kinds) <> cardinality(ats) OR cardinality(call_ids) <> cardinality(ats) OR "
                       "cardinality(job_ids) <> cardinality(ats) OR cardinality(data) <> cardinality(ats)"),
            0);
  EXPECT_EQ(nodes[1]->stop(), 0) << nodes[1]->tail(30);
}

// ---- the database restarting -----------------------------------------------------------------------------

// A PostgreSQL server of the test's own (it is stopped and started again), removed at the end.
class own_cluster {
 public:
  own_cluster() : dir_("/tmp/aipbx-pg-restart-" + std::to_string(::getpid())) { run("start"); }
  ~own_cluster() { run("stop"); }
  void run(const std::string& cmd) const {
    const std::string line = std::string(AIPBX_PG_CLUSTER_SCRIPT) + " " + cmd + " " + dir_ + " >/dev/null";
    if (std::system(line.c_str()) != 0) throw std::runtime_error("pg-cluster.sh " + cmd + " failed");
  }
  std::string url() const {
    std::ifstream in(dir_ + "/url");
    std::string u;
    std::getline(in, u);
    return u;
  }

 private:
  std::string dir_;
};

// Under load from two nodes, PostgreSQL stops and starts again. While it is down, ingest answers 503 with
// Retry-After at once and /readyz says not ready; afterwards both nodes serve again without a restart, and
// every packet ever acknowledged is stored.
TEST(PostgresRestart, NodesRideOutADatabaseRestartAndLoseNothing) {
  own_cluster cluster;
  const std::string url = cluster.url();
  std::vector<std::unique_ptr<server_process>> nodes;
  for (int i = 0; i < 2; ++i) {
    nodes.push_back(std::make_unique<server_process>(url, server_flags{{"--node-name", "r" + std::to_string(i)},
                                                                       {"--reorder-window", "0"},
                                                                       {"--idle-timeout", "0"}}));
    nodes.back()->start();
  }
  std::vector<std::uint16_t> ports{nodes[0]->port(), nodes[1]->port()};
  std::vector<std::atomic<bool>> alive(2);
  for (auto& a : alive) a = true;

  acknowledged acked;
  std::atomic<int> unavailable{0}, failed{0};
  std::atomic<bool> stop{false};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      spreading_client client(ports, alive);
      const std::string call = "pg-restart-" + std::to_string(t);
      for (std::int64_t seq = 1; !stop.load(); ++seq) {
        const std::string data = call + "-" + std::to_string(seq);
        if (client.post(static_cast<std::size_t>(seq % 2), call, seq, data, unavailable)) acked.add(call, seq, data);
        else ++failed;
        std::this_thread::sleep_for(2ms);
      }
    });
  }
  // Load runs on both nodes, then the database stops under it.
  EXPECT_TRUE(wait_until([&] { return acked.size() >= 200; }, 60s, 5ms))
      << "only " << acked.size() << " acknowledged";
  cluster.run("stop-server");
  connection probe(nodes[0]->port());
  // Down: answers come at once (no hanging on the dead database).
  ASSERT_TRUE(wait_until([&] { return probe.get("/readyz").status == 503; }, 10s));
  const auto before = std::chrono::steady_clock::now();
  auto refused = post_packet(probe, "pg-restart-probe", 1, "probe");
  EXPECT_LT(std::chrono::steady_clock::now() - before, 2s);
  EXPECT_EQ(refused.status, 503);
  EXPECT_FALSE(refused.header("Retry-After").empty());
  // The clients meet the outage before the database comes back.
  EXPECT_TRUE(wait_until([&] { return unavailable.load() > 0; }, 60s, 5ms)) << "no client met the outage";
  cluster.run("start-server");
  for (auto& n : nodes) {
    connection c(n->port());
    EXPECT_TRUE(wait_until([&] { return c.get("/readyz").status == 200; }, 60s)) << n->tail(20);
  }
  // The load goes on after the restart.
  const auto after_restart = acked.size();
  EXPECT_TRUE(wait_until([&] { return acked.size() >= after_restart + 200; }, 60s, 5ms))
      << "only " << acked.size() - after_restart << " acknowledged since the restart";
  stop = true;
  for (auto& th : threads) th.join();
  EXPECT_EQ(failed.load(), 0);
  EXPECT_GT(unavailable.load(), 0) << "no client met the outage";

  pg::connection db(url, "aipbx-tests");
  expect_stored_exactly(db, acked.all());
  for (auto& n : nodes) EXPECT_EQ(n->stop(), 0) << n->tail(30);
}

}  // namespace
}  // namespace aipbx::itest
