// Graceful shutdown: SIGTERM (or SIGINT) stops accepting, lets requests in flight finish and be stored,
// closes idle connections at once, and exits 0 with a "stopped" log line.
#include <csignal>
#include <map>
#include <set>
#include <thread>

#include "harness/fixture.hpp"
#include "harness/packet_streamer.hpp"

namespace aipbx::itest {
namespace {

class ShutdownTest : public integration_test {
 protected:
  // Waits for exit and checks it was clean and quick.
  void expect_clean_exit(std::chrono::milliseconds within) {
    const auto started = std::chrono::steady_clock::now();
    const auto code = server().wait_exit(within);
    ASSERT_TRUE(code.has_value()) << "aipbx still runs " << within.count() << " ms after the signal\n"
                                  << server().process_state();
    EXPECT_EQ(*code, 0);
    std::cerr << "exited "
              << std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                                       started)
                     .count()
              << " ms after the signal\n";
    EXPECT_FALSE(server().records_where(msg_is("shutting down")).empty());
    EXPECT_FALSE(server().records_where(msg_is("stopped")).empty());
    // Nothing listens on the port any more.
    EXPECT_THROW(connection(server().port(), 2s), std::exception);
  }
};

TEST_F(ShutdownTest, SigtermUnderLoadStoresEveryAnsweredPacketAndExitsZero) {
  start_server({{"--shutdown-timeout", "10s"}});
  constexpr int client_threads = 4;
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> acked_now{0};
  std::vector<std::unique_ptr<packet_streamer>> clients;
  std::vector<std::thread> threads;
  for (int t = 0; t < client_threads; ++t) {
    std::map<std::string, std::int64_t> calls;
    for (int k = 0; k < 3; ++k) calls["sd-" + std::to_string(t) + "-" + std::to_string(k)] = 1;
    clients.push_back(std::make_unique<packet_streamer>(server().port(), calls, stop, acked_now));
    threads.emplace_back([&c = *clients.back()] { c.run(); });
  }
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (acked_now.load() < 300 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(2ms);
  ASSERT_GE(acked_now.load(), 300);

  server().terminate();
  expect_clean_exit(5s);
  stop = true;
  for (auto& t : threads) t.join();

  std::set<std::pair<std::string, std::int64_t>> acked;
  for (const auto& c : clients) {
    for (const auto& u : c->unexpected()) ADD_FAILURE() << "unexpected answer during shutdown: " << u;
    acked.insert(c->acked().begin(), c->acked().end());
  }
  const auto file = db();
  std::set<std::pair<std::string, std::int64_t>> stored;
  for (const auto& row : file.rows("SELECT call_id, sequence FROM packets"))
    stored.emplace(*row[0], std::stoll(*row[1]));
  std::size_t lost = 0;
  for (const auto& key : acked) lost += stored.count(key) == 0 ? 1 : 0;
  EXPECT_EQ(lost, 0u) << "packets answered 202 but not stored";
  // Nothing half-done: the last answered packet of each call is the last stored.
  EXPECT_LE(stored.size(), acked.size() + client_threads);
  EXPECT_TRUE(
      file.rows("SELECT c.id FROM calls c JOIN (SELECT call_id, MAX(sequence) AS hi, COUNT(*) AS n FROM "
                "packets GROUP BY call_id) p ON p.call_id = c.id WHERE c.last_sequence != p.hi OR "
                "c.packets_received != p.n")
          .empty());
}

TEST_F(ShutdownTest, SigintStopsGracefullyToo) {
  start_server();
  auto c = connect();
  ASSERT_EQ(c.post_json("/v1/call/stream/int", packet_json(1, "x", 1)).status, 202);
  server().signal(SIGINT);
  expect_clean_exit(5s);
  EXPECT_EQ(db().packet_count("int"), 1);
}

TEST_F(ShutdownTest, IdleKeepAliveConnectionsDoNotDelayShutdown) {
  // If idle connections had to time out, exit would take 60 s; if the drain waited, 30 s.
  start_server({{"--keepalive-timeout", "60s"}, {"--shutdown-timeout", "30s"}});
  std::vector<connection> idle;
  for (int i = 0; i < 20; ++i) {
    idle.emplace_back(server().port());
    ASSERT_EQ(idle.back().get("/healthz").status, 200);
  }
  server().terminate();
  expect_clean_exit(5s);
  for (auto& c : idle) EXPECT_TRUE(c.closed_by_peer(1s));
}

TEST_F(ShutdownTest, RequestBeingReceivedAtSigtermIsFinishedAndStored) {
  start_server({{"--shutdown-timeout", "10s"}, {"--request-timeout", "10s"}});
  auto c = connect();
  const std::string body = packet_json(1, "in-flight", 1);
  // The 100 Continue shows that the server has read the header: from then on the request is in flight.
  c.send_raw(
      "POST /v1/call/stream/inflight HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Expect: 100-continue\r\nContent-Length: " +
      std::to_string(body.size()) + "\r\n\r\n");
  ASSERT_EQ(c.read_response().status, 100);
  c.send_raw(body.substr(0, 10));
  server().terminate();
  ASSERT_TRUE(server().wait_for_record(msg_is("shutting down"), 5s));
  c.send_raw(body.substr(10));
  const auto r = c.read_response();
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_FALSE(r.keep_alive) << "a response during shutdown should close the connection";
  expect_clean_exit(5s);
  EXPECT_EQ(db().text("SELECT data FROM packets WHERE call_id = 'inflight'"), "in-flight");
}

TEST_F(ShutdownTest, ShutdownTimeoutEndsStalledRequests) {
  // A request whose body never comes holds the drain until --shutdown-timeout, not --request-timeout.
  start_server({{"--shutdown-timeout", "1s"}, {"--request-timeout", "60s"}});
  auto c = connect();
  c.send_raw(
      "POST /v1/call/stream/stalled HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
      "Expect: 100-continue\r\nContent-Length: 100\r\n\r\n");
  ASSERT_EQ(c.read_response().status, 100);
  server().terminate();
  expect_clean_exit(6s);
  EXPECT_FALSE(server()
                   .records_where(msg_is("shutdown timeout: closing connections with requests in flight"))
                   .empty());
  EXPECT_TRUE(c.closed_by_peer(1s));
  EXPECT_FALSE(db().call_exists("stalled"));
}

TEST(StartupTest, UnusableDatabasePathExitsNonZero) {
  test::temp_dir dir;
  server_process server(dir / "no-such-dir" / "aipbx.db");
  server.spawn();
  const auto code = server.wait_exit(10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(*code, 1);
  EXPECT_FALSE(server.records_where(msg_is("cannot open the store")).empty()) << server.tail();
  EXPECT_TRUE(server.records_where(msg_is("listening")).empty());
}

TEST(StartupTest, InvalidFlagIsRefused) {
  test::temp_dir dir;
  server_process server(dir / "aipbx.db", {{"--request-timeout", "soon"}});
  server.spawn();
  const auto code = server.wait_exit(10s);
  ASSERT_TRUE(code.has_value());
  EXPECT_NE(*code, 0);
  EXPECT_NE(server.tail().find("--request-timeout"), std::string::npos) << server.tail();
  EXPECT_FALSE(std::filesystem::exists(dir / "aipbx.db"));
}

}  // namespace
}  // namespace aipbx::itest
