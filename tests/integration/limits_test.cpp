// Limits and back-pressure under load, through the real binary on 127.0.0.1: many slow clients (a byte a
// second) and a bounded flood (fast keep-alive ingest, large bodies, connections past --max-connections)
// are dropped or refused while another client keeps being answered, and the server's memory (VmRSS and
// VmHWM of /proc/<pid>/status) stays bounded; a full writer queue answers 503 with Retry-After, and every
// packet that got a 202 is stored. Each test stops by itself within about ten seconds.
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <thread>

#include "harness/api.hpp"
#include "harness/fixture.hpp"
#include "harness/run_binary.hpp"

namespace aipbx::itest {
namespace {

struct memory {
  std::int64_t rss_kib = 0;   // VmRSS: resident now
  std::int64_t peak_kib = 0;  // VmHWM: the most ever resident
};

memory read_memory(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  memory m;
  std::string line;
  while (std::getline(in, line)) {
    if (line.starts_with("VmRSS:")) m.rss_kib = std::stoll(line.substr(6));
    if (line.starts_with("VmHWM:")) m.peak_kib = std::stoll(line.substr(6));
  }
  return m;
}

// A sanitizer runtime keeps freed memory in quarantine and shadow memory beside it, so RSS says little
// about aipbx itself there: the figures are printed, the bound is checked on plain builds only.
bool sanitized(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/maps");
  std::string line;
  while (std::getline(in, line))
    if (line.find("libasan") != std::string::npos || line.find("libtsan") != std::string::npos) return true;
  return false;
}

// A raw TCP connection to 127.0.0.1:port; -1 on failure.
int dial(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// True if the server closed `fd` (end of stream or reset); reads and drops whatever came before.
bool peer_closed(int fd) {
  pollfd p{fd, POLLIN, 0};
  while (::poll(&p, 1, 0) > 0) {
    char buf[512];
    const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) return true;
    if (n < 0) return false;
  }
  return false;
}

class LimitsTest : public integration_test {
 protected:
  void report(const std::string& what, const memory& before, const memory& after) {
    std::cerr << what << ": VmRSS " << before.rss_kib / 1024 << " MiB before, " << after.rss_kib / 1024
              << " MiB after, VmHWM " << after.peak_kib / 1024 << " MiB (peak growth "
              << (after.peak_kib - before.rss_kib) / 1024 << " MiB)" << (sanitized(server().pid()) ? " [sanitizer build]" : "")
              << "\n";
  }
  void expect_bounded(const memory& before, const memory& after, std::int64_t bound_mib) {
    if (sanitized(server().pid())) return;
    EXPECT_LT(after.peak_kib - before.rss_kib, bound_mib * 1024) << "peak resident memory grew by more than " << bound_mib << " MiB";
  }
};

TEST_F(LimitsTest, ManySlowClientsAreDroppedWhileOthersAreServedAndMemoryStaysBounded) {
  start_server({{"--request-timeout", "2s"}, {"--keepalive-timeout", "2s"}});
  auto probe = connect(5s);
  ASSERT_EQ(probe.post_json("/v1/call/stream/probe", packet_json(1, "x", 1)).status, 202);
  const memory before = read_memory(server().pid());

  // 300 clients send a request one byte a second; none would finish within a minute.
  constexpr int slow_count = 300;
  const std::string slow_request = "POST /v1/call/stream/slow HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: "
                                   "application/json\r\nContent-Length: 60\r\n\r\n" + std::string(60, ' ');
  std::vector<int> slow;
  for (int i = 0; i < slow_count; ++i) {
    const int fd = dial(server().port());
    ASSERT_GE(fd, 0) << "connection " << i;
    slow.push_back(fd);
  }
  std::vector<std::optional<std::chrono::milliseconds>> dropped(slow_count);
  std::atomic<bool> done{false};
  std::thread trickler([&] {
    const auto started = std::chrono::steady_clock::now();
    for (std::size_t byte = 0; byte < slow_request.size() && !done; ++byte) {
      int open = 0;
      for (int i = 0; i < slow_count; ++i) {
        if (dropped[i]) continue;
        if (peer_closed(slow[i]) || ::send(slow[i], &slow_request[byte], 1, MSG_NOSIGNAL) != 1) {
          dropped[i] = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
          continue;
        }
        ++open;
      }
      if (open == 0 || std::chrono::steady_clock::now() - started > 8s) break;
      // A second between bytes, looking for closes every 100 ms.
      for (int tick = 0; tick < 10; ++tick) {
        std::this_thread::sleep_for(100ms);
        for (int i = 0; i < slow_count; ++i)
          if (!dropped[i] && peer_closed(slow[i]))
            dropped[i] = std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - started);
      }
    }
    done = true;
  });
  // Meanwhile the probe is answered, again and again.
  int served = 0;
  memory during = before;
  for (std::int64_t s = 2; !done; ++s) {
    const auto r = probe.post_json("/v1/call/stream/probe", packet_json(s, "x", 1));
    ASSERT_EQ(r.status, 202) << r.body;
    EXPECT_EQ(connect(5s).get("/healthz").status, 200);
    ++served;
    during = read_memory(server().pid());
    std::this_thread::sleep_for(50ms);
  }
  trickler.join();
  for (const int fd : slow) ::close(fd);
  const memory after = read_memory(server().pid());
  report("300 slow clients", before, after);
  std::cerr << "  probe answered " << served << " times meanwhile; VmRSS with the slow clients connected: "
            << during.rss_kib / 1024 << " MiB\n";
  int never_dropped = 0;
  std::int64_t latest = 0;
  for (const auto& d : dropped) {
    if (!d) ++never_dropped;
    else latest = std::max<std::int64_t>(latest, d->count());
  }
  EXPECT_EQ(never_dropped, 0);
  EXPECT_LT(latest, 6000) << "a slow client outlived the 2 s request timeout by far";
  std::cerr << "  every slow client dropped within " << latest << " ms\n";
  EXPECT_GT(served, 10);
  EXPECT_EQ(db().packet_count("probe"), served + 1);
  EXPECT_FALSE(db().call_exists("slow"));
  expect_bounded(before, after, 64);
}

TEST_F(LimitsTest, BoundedFloodLeavesOthersServedAndMemoryBounded) {
  start_server({{"--max-connections", "64"}, {"--body-limit", "262144"}, {"--request-timeout", "2s"}});
  auto probe = connect(5s);
  ASSERT_EQ(probe.get("/healthz").status, 200);
  const memory before = read_memory(server().pid());
  std::atomic<bool> stop{false};
  std::atomic<std::int64_t> accepted{0}, refused_bodies{0}, invalid_bodies{0}, refused_connections{0};
  std::vector<std::thread> flood;
  // Fast keep-alive ingest on 8 connections, opened before the waves below fill the cap.
  std::vector<connection> fast;
  for (int t = 0; t < 8; ++t) {
    fast.push_back(connect(10s));
    ASSERT_EQ(fast.back().get("/healthz").status, 200);
  }
  for (int t = 0; t < 8; ++t) {
    flood.emplace_back([&, t] {
      try {
        auto& c = fast[t];
        for (std::int64_t s = 1; !stop; ++s) {
          const auto r = c.post_json("/v1/call/stream/flood-" + std::to_string(t), packet_json(s, "audio", 1));
          if (r.status == 202) ++accepted;
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << "flood client " << t << ": " << e.what();
      }
    });
  }
  // Large bodies on fresh connections: over the limit (413 once the header is read) and just under it
  // (read whole, then 422: not JSON).
  for (int t = 0; t < 2; ++t) {
    flood.emplace_back([&, t] {
      const std::string big((t == 0 ? 300 : 250) * 1024, 'a');
      while (!stop) {
        const int fd = dial(server().port());
        if (fd < 0) continue;
        const std::string head = "POST /v1/call/stream/big HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                                 "Content-Length: " + std::to_string(big.size()) + "\r\n\r\n";
        (void)::send(fd, head.data(), head.size(), MSG_NOSIGNAL);
        (void)::send(fd, big.data(), big.size(), MSG_NOSIGNAL);
        char buf[256];
        if (::recv(fd, buf, sizeof buf, 0) >= 12) {
          if (std::string_view(buf, 12) == "HTTP/1.1 413") ++refused_bodies;
          if (std::string_view(buf, 12) == "HTTP/1.1 422") ++invalid_bodies;
        }
        ::close(fd);
      }
    });
  }
  // Connections opened and held past --max-connections, in waves.
  flood.emplace_back([&] {
    while (!stop) {
      std::vector<int> held;
      for (int i = 0; i < 100; ++i)
        if (const int fd = dial(server().port()); fd >= 0) held.push_back(fd);
      std::this_thread::sleep_for(200ms);
      // The server closes the connections past the cap as it accepts them; a slow build (a sanitizer's)
      // may take longer than the pause above to get through the wave, so look again for up to 2 s.
      std::vector<bool> closed(held.size(), false);
      const auto give_up = std::chrono::steady_clock::now() + 2s;
      for (bool any = false; !any && !stop && std::chrono::steady_clock::now() < give_up;
           std::this_thread::sleep_for(50ms))
        for (std::size_t i = 0; i < held.size(); ++i) any = (closed[i] = closed[i] || peer_closed(held[i])) || any;
      for (std::size_t i = 0; i < held.size(); ++i) {
        if (closed[i] || peer_closed(held[i])) ++refused_connections;
        ::close(held[i]);
      }
      std::this_thread::sleep_for(50ms);  // room for the body senders between waves
    }
  });
  // The probe, connected before the flood, is answered throughout.
  int probes = 0;
  memory peak_seen = before;
  const auto until = std::chrono::steady_clock::now() + 5s;
  for (std::int64_t s = 1; std::chrono::steady_clock::now() < until; ++s) {
    const auto r = probe.post_json("/v1/call/stream/probe", packet_json(s, "x", 1));
    ASSERT_EQ(r.status, 202) << r.body;
    ASSERT_EQ(probe.get("/healthz").status, 200);
    ++probes;
    const auto m = read_memory(server().pid());
    peak_seen.rss_kib = std::max(peak_seen.rss_kib, m.rss_kib);
    std::this_thread::sleep_for(20ms);
  }
  stop = true;
  for (auto& t : flood) t.join();
  const memory after = read_memory(server().pid());
  report("flood", before, after);
  std::cerr << "  " << accepted << " packets accepted by the flood, " << refused_bodies << " oversized bodies refused (413), " << invalid_bodies
            << " 250 KiB bodies read and refused (422), "
            << refused_connections << " connections closed at the cap; probe answered " << probes << " times\n";
  EXPECT_GT(accepted.load(), 0);
  EXPECT_GT(refused_bodies.load(), 0);
  EXPECT_GT(invalid_bodies.load(), 0);
  EXPECT_GT(refused_connections.load(), 0);
  EXPECT_EQ(db().packet_count("probe"), probes);
  EXPECT_FALSE(db().call_exists("big"));
  expect_bounded(before, after, 96);
  // The connection gauge shows the cap; once the flood is over only the probe is open.
  const auto scraped = probe.get("/metrics").body;
  EXPECT_NE(scraped.find("aipbx_http_connections{kind=\"limit\"} 64"), std::string::npos) << scraped;
  // Once the flood is over the server answers as before (connections the flood has closed may still
  // count against the cap until the server has seen them close).
  EXPECT_TRUE(wait_until(
      [&] {
        try {
          return connect(5s).get("/healthz").status == 200;
        } catch (const std::exception&) {
          return false;
        }
      },
      15s));
}

TEST_F(LimitsTest, FullWriterQueueAnswers503WithRetryAfterAndLosesNothingAcknowledged) {
  // The writer takes at most 2 writes per transaction and 3 more may wait: once a lock held by another
  // process stops its transaction, at most 5 packets wait (fewer when the store's own writes, such as
  // timers, hold places) and every further packet is refused at once. No AI workers: none of their writes.
  start_server({{"--writer-queue", "3"}, {"--max-batch", "2"}, {"--workers", "0"}});
  ASSERT_EQ(connect().post_json("/v1/call/stream/warm", packet_json(1, "x", 1)).status, 202);
  // Connected before the lock is taken, so that the lock is held only while the packets are sent.
  constexpr int clients = 12;
  std::vector<connection> conns;
  for (int i = 0; i < clients; ++i) conns.push_back(connect(15s));
  writer_lock lock(server().db_path());

  std::vector<http_response> answers(clients);
  std::vector<char> answered_under_lock(clients, 0);
  std::atomic<int> answered{0};
  std::atomic<bool> releasing{false};
  std::vector<std::thread> threads;
  for (int i = 0; i < clients; ++i) {
    threads.emplace_back([&, i] {
      try {
        answers[i] = conns[i].post_json("/v1/call/stream/q" + std::to_string(i), packet_json(1, "x", 1));
      } catch (const std::exception& e) {
        ADD_FAILURE() << e.what();
      }
      answered_under_lock[i] = !releasing.load();
      ++answered;
    });
  }
  // The refused ones are answered while the lock is held; those the writer took wait for it. At least
  // clients - 5 are refused: wait for those (the store's busy timeout, 5 s, bounds how long the lock may be
  // held in all).
  EXPECT_TRUE(wait_until([&] { return answered.load() >= clients - 5; }, 4s, 5ms));
  releasing = true;  // before the lock goes: an answer the lock held back always sees it
  ASSERT_TRUE(lock.release());
  for (auto& t : threads) t.join();

  int accepted = 0, refused = 0;
  for (int i = 0; i < clients; ++i) {
    const auto& r = answers[i];
    const bool stored = db().call_exists("q" + std::to_string(i));
    if (r.status == 202) {
      ++accepted;
      EXPECT_TRUE(stored) << "q" << i << " got 202 but is not stored";
      EXPECT_FALSE(answered_under_lock[i]) << "q" << i << " was answered before the lock was released";
    } else {
      ++refused;
      EXPECT_TRUE(is_json_error(r, 503)) << r.status << " " << r.body;
      EXPECT_EQ(body_object(r).at("error"), "overloaded");
      EXPECT_EQ(r.header("Retry-After"), "1");
      EXPECT_FALSE(stored) << "q" << i << " was refused but stored";
    }
  }
  EXPECT_GE(accepted, 1);
  EXPECT_LE(accepted, 5);
  EXPECT_EQ(refused, clients - accepted);
  // A retry is accepted once the writer has room again (it has: every packet it held was answered).
  for (int i = 0; i < clients; ++i) {
    if (answers[i].status == 503) {
      EXPECT_EQ(connect().post_json("/v1/call/stream/q" + std::to_string(i), packet_json(1, "x", 1)).status, 202);
    }
  }
  EXPECT_EQ(db().counts().calls, clients + 1);
}

TEST_F(LimitsTest, RequestBodiesPastTheProcessWideBudgetAre503UntilBytesAreReturned) {
  // Two 60,000-byte bodies on their way take 120,000 of the 131,072 bytes all connections may hold: a
  // third is refused as soon as its header is read, a small one still fits, and once the first is
  // answered its bytes return and the third gets in on retry.
  start_server({{"--body-limit", "65536"}, {"--body-memory", "131072"}, {"--workers", "0"}});
  const auto padded = [](std::int64_t sequence) {
    std::string body = packet_json(sequence, "x", 1);
    body.resize(60000, ' ');  // JSON allows the trailing whitespace
    return body;
  };
  const auto head = [](const std::string& call, std::size_t length, const std::string& extra = "") {
    return "POST /v1/call/stream/" + call + " HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n" +
           extra + "Content-Length: " + std::to_string(length) + "\r\n\r\n";
  };
  const std::string first = padded(1);
  auto a = connect();
  auto b = connect();
  // The budget is taken when a header is read, before 100 Continue is sent: once both have their 100,
  // both bodies' bytes are held.
  a.send_raw(head("budget-a", first.size(), "Expect: 100-continue\r\n"));
  ASSERT_EQ(a.read_response().status, 100);
  b.send_raw(head("budget-b", first.size(), "Expect: 100-continue\r\n"));
  ASSERT_EQ(b.read_response().status, 100);
  a.send_raw(first.substr(0, 100));
  b.send_raw(first.substr(0, 100));
  auto c = connect();
  c.send_raw(head("budget-c", first.size()));
  const http_response refused = c.read_response();
  ASSERT_TRUE(is_json_error(refused, 503)) << refused.status << " " << refused.body;
  EXPECT_EQ(body_object(refused).at("error"), "overloaded");
  EXPECT_EQ(refused.header("Retry-After"), "1");
  EXPECT_FALSE(db().call_exists("budget-c"));
  // A small body still fits beside the two.
  EXPECT_EQ(connect().post_json("/v1/call/stream/budget-small", packet_json(1, "x", 1)).status, 202);

  // The first body completes and is answered: its bytes return.
  a.send_raw(first.substr(100));
  EXPECT_EQ(a.read_response().status, 202);
  EXPECT_EQ(connect().post_json("/v1/call/stream/budget-c", padded(1)).status, 202);
  b.send_raw(first.substr(100));
  EXPECT_EQ(b.read_response().status, 202);
  EXPECT_EQ(db().packet_count("budget-a"), 1);
  EXPECT_EQ(db().packet_count("budget-b"), 1);
  EXPECT_EQ(db().packet_count("budget-c"), 1);
  const auto metrics = connect().get("/metrics").body;
  EXPECT_NE(metrics.find("aipbx_http_refused_total{reason=\"body_memory\"}"), std::string::npos) << metrics;
}

TEST_F(LimitsTest, BodyMemoryBelowTheBodyLimitStopsStartUp) {
  const auto run = run_aipbx({"serve", "--port", "0", "--db", (dir_ / "never.db").string(), "--body-limit", "65536",
                              "--body-memory", "65535"});
  EXPECT_EQ(run.exit_code, 2) << run.err;
  EXPECT_NE(run.err.find("--body-memory (65535) is less than --body-limit (65536)"), std::string::npos) << run.err;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "never.db"));
}

}  // namespace
}  // namespace aipbx::itest
