// The backends the storage contract suites (call_store_contract_test.cpp, job_store_contract_test.cpp) run
// over. Each test binary links one definition of the two lists: sqlite_backends.cpp (unit tests) or
// pg_backends.cpp (the PostgreSQL tests, against the throwaway server of scripts/pg-cluster.sh).
#pragma once

#include "storage/call_store.hpp"
#include "storage/storage_backend.hpp"

#include <chrono>
#include <cstddef>
#include <functional>
#include <memory>
#include <optional>
#include <ostream>
#include <string>
#include <vector>

namespace aipbx {

struct store_backend {
  std::string name;
  // Opens (or reopens) the store kept under `dir`.
  std::function<std::unique_ptr<call_store>(const std::string& dir)> make;
  // The same with a writer queue of at most `queue_limit` packets; empty when the backend has no such knob.
  std::function<std::unique_ptr<call_store>(const std::string& dir, std::size_t queue_limit)> make_with_queue_limit;
};

inline void PrintTo(const store_backend& b, std::ostream* os) { *os << b.name; }

// What the job queue's tests set on a store.
struct job_store_settings {
  std::int64_t segment_packets = 1;
  double segment_idle = 2.0;
  std::chrono::milliseconds sweep_interval{250};
  int max_attempts = 5;
  std::function<double()> clock;
  std::string node;  // the lease owner name of this node (a restart requeues its running jobs)
  double event_retention = 3600;  // seconds the event log keeps an event (0: for ever)
  std::size_t writers = 1;        // writer threads, for a backend that has several
  std::function<bool(const std::optional<media_declaration>&)> cut_outside;  // unset: every call by packets
};

struct job_backend {
  std::string name;
  // Opens (or reopens) the store kept under `dir`.
  std::function<std::unique_ptr<storage_backend>(const std::string& dir, const job_store_settings& settings)> make;
};

inline void PrintTo(const job_backend& b, std::ostream* os) { *os << b.name; }

std::vector<store_backend> call_store_backends();
std::vector<job_backend> job_store_backends();

}  // namespace aipbx
