// packet_streamer: one client thread streaming packets for a few calls over one keep-alive connection, the
// way a media gateway does, and recording which packets the server acknowledged (202).
//
// Calls are served round-robin, each with increasing sequences from its start; a packet's data is a pure
// function of (call_id, sequence) (`packet_data`), so a packet re-sent after a restart is a duplicate, never
// a conflict. The streamer stops at `stop`, when the connection fails (the server was killed), or when the
// server says it closes the connection (shutdown). Any status other than 202 is recorded as unexpected.
//
// Threading: run() on its own thread; read the results after it returned (join). `acked_total` may be
// read from any thread while it runs.
#pragma once

#include <atomic>
#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace aipbx::itest {

std::string packet_data(const std::string& call_id, std::int64_t sequence);

class packet_streamer {
 public:
  // `next` maps each call of this streamer to the first sequence to send.
  packet_streamer(std::uint16_t port, std::map<std::string, std::int64_t> next, std::atomic<bool>& stop,
                  std::atomic<std::int64_t>& acked_total);

  void run();

  const std::vector<std::pair<std::string, std::int64_t>>& acked() const { return acked_; }
  const std::map<std::string, std::int64_t>& next() const { return next_; }
  const std::vector<std::string>& unexpected() const { return unexpected_; }
  std::string ended_by() const { return ended_by_; }

 private:
  std::uint16_t port_;
  std::map<std::string, std::int64_t> next_;
  std::atomic<bool>& stop_;
  std::atomic<std::int64_t>& acked_total_;
  std::vector<std::pair<std::string, std::int64_t>> acked_;
  std::vector<std::string> unexpected_;
  std::string ended_by_;
};

}  // namespace aipbx::itest
