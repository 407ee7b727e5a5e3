#include "harness/packet_streamer.hpp"

#include <exception>

#include "harness/http_client.hpp"

namespace aipbx::itest {

std::string packet_data(const std::string& call_id, std::int64_t sequence) {
  return "frame:" + call_id + ":" + std::to_string(sequence);
}

packet_streamer::packet_streamer(std::uint16_t port, std::map<std::string, std::int64_t> next,
                                 std::atomic<bool>& stop, std::atomic<std::int64_t>& acked_total)
    : port_(port), next_(std::move(next)), stop_(stop), acked_total_(acked_total) {}

void packet_streamer::run() {
  try {
    connection c(port_, 10s);
    while (!stop_.load()) {
      for (auto& [call_id, sequence] : next_) {
        const auto r = c.post_json("/v1/call/stream/" + call_id,
                                   packet_json(sequence, packet_data(call_id, sequence),
                                               1700000000.0 + static_cast<double>(sequence) * 0.02));
        if (r.status == 202) {
          acked_.emplace_back(call_id, sequence);
          ++sequence;
          acked_total_.fetch_add(1);
        } else {
          unexpected_.push_back(call_id + "/" + std::to_string(sequence) + ": " + std::to_string(r.status) +
                                " " + r.body);
        }
        if (!r.keep_alive) {
          ended_by_ = "connection: close";
          return;
        }
        if (stop_.load()) break;
      }
    }
    ended_by_ = "stop";
  } catch (const std::exception& e) {
    ended_by_ = std::string("error: ") + e.what();
  }
}

}  // namespace aipbx::itest
