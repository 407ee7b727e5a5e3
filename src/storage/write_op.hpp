// The writes a store queues for its writer (ingest, the job queue's operations, call lifecycle, call
// events): their arguments, their handler, and the result the writer sets. Shared by every backend. Not
// thread-safe: an op belongs to one thread at a time (the caller, then the writer, then whoever answers it).
#pragma once

#include "storage/call_store.hpp"
#include "storage/job_store.hpp"

#include <functional>
#include <optional>
#include <string>
#include <variant>

namespace aipbx {

// One queued write: its arguments, its handler, and the result set by `apply`.
struct ingest_op {
  packet p;
  call_store::ingest_handler done;
  std::optional<result<ingest_outcome>> r;
};
struct claim_op {
  std::string owner;
  std::size_t limit;
  double lease;
  job_store::claim_handler done;
  std::optional<result<claim_result>> r;
};
struct renew_op {
  std::int64_t id;
  std::string owner;
  int attempt;
  double lease;
  job_store::bool_handler done;
  std::optional<result<bool>> r;
};
struct finish_op {
  std::int64_t id;
  std::string owner;
  int attempt;
  job_outcome outcome;
  job_store::bool_handler done;
  std::optional<result<bool>> r;
};
struct partial_op {
  std::int64_t id;
  std::string owner;
  int attempt;
  std::string text;
  std::int64_t heard_ms;
  job_store::bool_handler done;
  std::optional<result<bool>> r;
};
struct release_op {
  std::int64_t id;
  std::string owner;
  int attempt;
  job_store::bool_handler done;
  std::optional<result<bool>> r;
};
struct replay_op {
  std::int64_t id;
  job_store::job_handler done;
  std::optional<result<job>> r;
};
struct cut_op {
  std::string call_id;
  seq_range range;
  job_store::bool_handler done;
  std::optional<result<bool>> r;
};
struct end_op {
  std::string call_id;
  std::string reason;
  std::function<void(result<call_state>)> done;
  std::optional<result<call_state>> r;
};
struct archive_op {
  std::string call_id;
  std::function<void(result<call_state>)> done;
  std::optional<result<call_state>> r;
};

struct declare_op {
  std::string call_id;
  media_declaration media;
  std::optional<track_link> track;
  call_store::declare_handler done;
  std::optional<result<declare_outcome>> r;
};
struct event_op {
  call_event e;
  call_store::event_handler done;
  std::optional<result<std::int64_t>> r;
};

struct write_op {
  std::variant<ingest_op, claim_op, renew_op, finish_op, release_op, replay_op, partial_op, cut_op, end_op,
               archive_op, declare_op, event_op>
      v;
  // Runs the handler with the stored result, or with `failure` when the transaction failed.
  void complete();
  void fail(const boost::system::error_code& failure);
  // The job queue's internal operations, whose answers need not wait for the flush to disk.
  bool answer_before_flush() const {
    return std::holds_alternative<claim_op>(v) || std::holds_alternative<renew_op>(v) ||
           std::holds_alternative<finish_op>(v) || std::holds_alternative<release_op>(v) ||
           std::holds_alternative<partial_op>(v);
  }
  // A streamed packet, which the writer may hold for its commit delay (see packet::streamed).
  bool may_wait() const {
    const auto* i = std::get_if<ingest_op>(&v);
    return i != nullptr && i->p.streamed;
  }
};

}  // namespace aipbx
