// Durability: a 202 means the packet survives kill -9. Clients stream packets for many calls from several
// connections; the server is SIGKILLed mid-load, restarted on the same file, and every acknowledged packet
// must be there exactly once, with the calls' counters matching the stored packets. Three rounds on the
// same file, killed at different moments; after each restart the clients go on where their acknowledgements
// ended (re-sending the packet that was in flight, which the server may or may not have stored).
#include <boost/json/serialize.hpp>
#include <csignal>
#include <map>
#include <set>
#include <thread>

#include "harness/api.hpp"
#include "harness/fixture.hpp"
#include "harness/packet_streamer.hpp"

namespace aipbx::itest {
namespace {

namespace json = boost::json;

constexpr int client_threads = 6;
constexpr int calls_per_client = 4;

class DurabilityTest : public integration_test {
 protected:
  // Checks the file against what the clients were told; `in_flight_limit` bounds the stored packets that
  // were never acknowledged (one per connection at most: each waits for its answer before the next).
  void verify(const std::set<std::pair<std::string, std::int64_t>>& acked, std::size_t in_flight_limit) {
    const auto file = db();
    EXPECT_TRUE(file.rows("SELECT call_id, sequence, COUNT(*) FROM packets GROUP BY call_id, sequence "
                          "HAVING COUNT(*) > 1")
                    .empty())
        << "a packet is stored twice";

    std::map<std::pair<std::string, std::int64_t>, std::string> stored;
    for (const auto& row : file.rows("SELECT call_id, sequence, data FROM packets"))
      stored[{*row[0], std::stoll(*row[1])}] = *row[2];
    std::size_t missing = 0;
    for (const auto& key : acked) {
      auto it = stored.find(key);
      if (it == stored.end()) {
        if (++missing <= 10) ADD_FAILURE() << "acknowledged packet lost: " << key.first << " #" << key.second;
      } else {
        EXPECT_EQ(it->second, packet_data(key.first, key.second));
      }
    }
    EXPECT_EQ(missing, 0u) << "acknowledged packets lost after SIGKILL";
    std::size_t unacked = 0;
    for (const auto& [key, data] : stored) unacked += acked.count(key) == 0 ? 1 : 0;
    EXPECT_LE(unacked, in_flight_limit) << "more stored packets than acknowledged plus in flight";

    // Each call's row agrees with its packets: the highest sequence, the count, and (as every call was sent
    // in order from 1) no gaps at all.
    const auto inconsistent = file.rows(
        "SELECT c.id, c.last_sequence, c.packets_received, c.expected_sequence, c.missing_packets, "
        "       COALESCE(p.n, 0), COALESCE(p.hi, 0), COALESCE(p.lo, 0) "
        "FROM calls c LEFT JOIN (SELECT call_id, COUNT(*) AS n, MAX(sequence) AS hi, MIN(sequence) AS lo "
        "                        FROM packets GROUP BY call_id) p ON p.call_id = c.id "
        "WHERE c.last_sequence != COALESCE(p.hi, 0) OR c.packets_received != COALESCE(p.n, 0) "
        "   OR c.missing_packets != 0 OR c.expected_sequence != c.last_sequence + 1 "
        "   OR COALESCE(p.n, 0) != COALESCE(p.hi, 0) OR COALESCE(p.lo, 1) != 1");
    for (const auto& row : inconsistent) {
      std::string text;
      for (const auto& col : row) text += (col ? *col : "NULL") + " ";
      ADD_FAILURE()
          << "call row disagrees with its packets (id last received expected missing | count max min): "
          << text;
    }
    EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM call_gaps"), 0);
    EXPECT_EQ(file.scalar("SELECT COUNT(*) FROM packets WHERE call_id NOT IN (SELECT id FROM calls)"), 0);
  }
};

TEST_F(DurabilityTest, EveryAcknowledgedPacketSurvivesSigkill) {
  // The writer is killed between and inside group commits, as the batches vary in size.
  start_server({{"--max-batch", "64"}});
  std::vector<std::map<std::string, std::int64_t>> next(client_threads);
  for (int t = 0; t < client_threads; ++t)
    for (int k = 0; k < calls_per_client; ++k)
      next[t]["dur-" + std::to_string(t) + "-" + std::to_string(k)] = 1;

  std::set<std::pair<std::string, std::int64_t>> acked;
  // Each round is killed after another amount of acknowledged load (counted, not timed: a slow machine
  // reaches the same point later).
  const std::int64_t kill_after[] = {100, 800, 3000};
  for (int round = 0; round < 3; ++round) {
    SCOPED_TRACE("round " + std::to_string(round));
    std::atomic<bool> stop{false};
    std::atomic<std::int64_t> acked_now{0};
    std::vector<std::unique_ptr<packet_streamer>> clients;
    std::vector<std::thread> threads;
    for (int t = 0; t < client_threads; ++t) {
      clients.push_back(std::make_unique<packet_streamer>(server().port(), next[t], stop, acked_now));
      threads.emplace_back([&c = *clients.back()] { c.run(); });
    }
    // Load runs for a while, then the server dies mid-stream.
    ASSERT_TRUE(wait_until([&] { return acked_now.load() >= kill_after[round]; }, 60s, 1ms))
        << "the server acknowledged only " << acked_now.load() << " packets";
    server().kill();
    const auto code = server().wait_exit(10s);
    ASSERT_TRUE(code.has_value()) << "aipbx survived SIGKILL";
    EXPECT_EQ(*code, 128 + SIGKILL);
    stop = true;
    for (auto& t : threads) t.join();

    for (int t = 0; t < client_threads; ++t) {
      const auto& c = *clients[t];
      for (const auto& u : c.unexpected()) ADD_FAILURE() << "unexpected answer: " << u;
      EXPECT_EQ(c.ended_by().rfind("error: ", 0), 0u) << "client " << t << " ended by " << c.ended_by();
      acked.insert(c.acked().begin(), c.acked().end());
      next[t] = c.next();
    }
    // In-order streams never open gaps, before or after a restart.
    const auto warnings =
        server().records_where([](const json::object& r) { return string_field(r, "level") == "warning"; });
    for (const auto& w : warnings) ADD_FAILURE() << "unexpected warning: " << json::serialize(w);

    server().restart();
    verify(acked, client_threads);
    // The restarted server serves what the file holds.
    auto http = connect();
    const auto call = body_object(http.get("/v1/calls/dur-0-0"));
    EXPECT_EQ(call.at("last_sequence").to_number<std::int64_t>(),
              db().scalar("SELECT MAX(sequence) FROM packets WHERE call_id = 'dur-0-0'"));
    std::cerr << "round " << round << ": " << acked_now.load() << " packets acknowledged before SIGKILL, "
              << acked.size() << " in all\n";
  }
}

}  // namespace
}  // namespace aipbx::itest
