// job_store: the persistent queue of AI work (segments of a call's packets) and its results.
//
// Jobs are created by the store itself, in the same transaction as the packets that complete a segment
// (see call_store::ingest), so an acknowledged packet's work is never lost. Workers take jobs with
// `claim`, which leases them: the job is `running`, owned by `owner` until `lease_expires_at`, and its
// `attempts` is incremented. The attempt number is the fencing token: `renew` and `finish` succeed only
// for the owner of the current attempt, so a worker whose lease expired (and whose job another worker
// took) can never record a second result. A running job whose lease expired is claimed again.
//
// Threading: every member is thread-safe. Writes (`claim`, `renew`, `finish`, `release`, `replay`) are
// queued to the store's writer and committed in a group, like ingest; their handler runs exactly once on
// a store thread. Reads block and must run off I/O threads.
//
// Errors: writes fail with `unavailable` / `store_failure` (nothing changed) or, for `replay`, with
// `not_found` or `job_not_dead`. `renew`/`finish` answer `false` (not an error) when the caller no longer
// holds the lease.
//
// Partial results: while an attempt runs, its worker may record the engine's current hypothesis
// (`record_partial`, fenced like `renew`: only the owner of the current attempt). A partial is kept apart
// from the results (transcript_partials, never transcript_segments) and only while it means something:
// `partials` lists those of jobs still running under a lease that has not expired, recorded by their
// current attempt; a job that finishes, is released or is taken by another attempt drops its partial in
// the same transaction. So a partial is never read as a result, the result replaces it at once, and one
// left by a process that died is not shown once its lease has expired (or, on the embedded store, once the
// next start requeued its job).
//
// Cuts from outside: a call with audio may be cut into segments by a segmenter beside the store (the
// pause segmenter, engines/pause_cutter.hpp) instead of every `segment_packets` (see call_ledger's
// `cut_outside`). The store then keeps the call's packets uncut; `uncut_calls` lists the calls that have
// some, and `cut_segment` queues one segment's job, durably, in a transaction of the writer like ingest. A
// cut names where it starts, the call's first uncut sequence, so that of two segmenters deciding the same
// cut (two nodes, or one before and after a restart) only the first takes effect: the second is answered
// `false`. An ended call stays PROCESSING_AI until its last packet is cut.
#pragma once

#include "domain/errc.hpp"
#include "domain/job.hpp"
#include "storage/call_store.hpp"

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace aipbx {

struct claim_result {
  std::vector<job> jobs;              // each now `running` under the caller's lease, attempts incremented
  // When the earliest job still queued becomes due, if any; only told when fewer jobs than asked for were
  // claimed (a full claim means the caller will ask again when a slot frees).
  std::optional<double> next_run_at;
};

struct transcript_segment {
  std::int64_t job_id = 0;
  std::int64_t first_sequence = 0;
  std::int64_t last_sequence = 0;
  std::string text;
  std::string engine;
  double latency_ms = 0;
  double created_at = 0;
};

// A call with packets not yet cut into a segment, as its calls row holds it (see uncut_calls).
struct uncut_call {
  std::string id;
  call_state state = call_state::in_progress;
  std::int64_t next_segment = 1;   // its first uncut sequence
  std::int64_t expected = 1;       // its lowest sequence not received: cuts end below it
  std::int64_t last_sequence = 0;  // its highest sequence received
  std::optional<double> last_packet_at;
  std::optional<media_declaration> media;
};

// The current hypothesis of a running job's attempt (see partials).
struct partial_segment {
  std::int64_t job_id = 0;
  std::int64_t first_sequence = 0;
  std::int64_t last_sequence = 0;
  std::string text;
  std::int64_t heard_ms = 0;  // how much of the segment's audio the hypothesis covers
  double updated_at = 0;
};

// A node that shares the store, as the database knows it (see job_store::nodes).
struct node_presence {
  std::string name;                        // its --node-name: the lease owner of the jobs it runs
  std::optional<double> connected_since;   // unix seconds; none: not connected now (or not told)
  std::optional<std::string> address;      // its address as the database sees its connection, when told
  std::int64_t running_jobs = 0;           // jobs running under its lease
};

struct job_query {
  std::size_t limit = 50;
  std::int64_t after = 0;              // keyset cursor on id
  std::optional<job_state> state;
  std::optional<std::string> call_id;
};

struct job_page {
  std::vector<job> jobs;
  std::optional<std::int64_t> next_after;
};

class job_store {
 public:
  using claim_handler = std::function<void(result<claim_result>)>;
  using bool_handler = std::function<void(result<bool>)>;
  using job_handler = std::function<void(result<job>)>;

  virtual ~job_store() = default;

  // Leases up to `limit` due jobs (queued and due, or running with an expired lease) to `owner`.
  virtual void claim(std::string owner, std::size_t limit, double lease_seconds, claim_handler done) = 0;
  // Extends the lease of the current attempt; `false` when the caller no longer holds it.
  virtual void renew(std::int64_t job_id, std::string owner, int attempt, double lease_seconds,
                     bool_handler done) = 0;
  // Records the outcome of the current attempt; `false` when the caller no longer holds the lease.
  virtual void finish(std::int64_t job_id, std::string owner, int attempt, job_outcome outcome,
                      bool_handler done) = 0;
  // Gives a running job back without counting the attempt (graceful shutdown).
  virtual void release(std::int64_t job_id, std::string owner, int attempt, bool_handler done) = 0;
  // Puts a dead job back in the queue with fresh attempts.
  virtual void replay(std::int64_t job_id, job_handler done) = 0;

  // Records the current hypothesis of the caller's attempt, replacing the one it recorded before; `false`
  // when the caller no longer holds the lease (nothing changed). Answered without waiting for the disk: a
  // partial lost with the machine is no loss.
  virtual void record_partial(std::int64_t job_id, std::string owner, int attempt, std::string text,
                              std::int64_t heard_ms, bool_handler done) = 0;
  // The partials of the call's jobs running now (see above), in sequence order; `not_found` for an unknown
  // call.
  [[nodiscard]] virtual result<std::vector<partial_segment>> partials(std::string_view call_id) = 0;

  // Cuts [range.first, range.last] of a call cut from outside into one job (see above): `true` once the
  // job is durable, `false` when the cut is stale (range.first is no longer the call's first uncut
  // sequence, or the call settled; nothing changed); `not_found`; `invalid_input` for a call cut by
  // packets, an empty range, or one that reaches the call's lowest sequence not received.
  virtual void cut_segment(std::string call_id, seq_range range, bool_handler done) = 0;
  // Calls IN_PROGRESS or PROCESSING_AI with packets not yet cut, by id, after `after` (empty: from the
  // first), at most `limit`.
  [[nodiscard]] virtual result<std::vector<uncut_call>> uncut_calls(std::string_view after, std::size_t limit) = 0;

  // Runs `listener` (on a store thread) after each commit that queued jobs due now.
  virtual void on_jobs_queued(std::function<void()> listener) = 0;

  [[nodiscard]] virtual result<job_page> list_jobs(const job_query& query) = 0;
  [[nodiscard]] virtual result<job> get_job(std::int64_t id) = 0;
  [[nodiscard]] virtual result<std::vector<transcript_segment>> transcript(std::string_view call_id) = 0;
  // The stored packets of [first, last] of a call, in sequence order (what an AI run reads): packets that
  // arrived after their gap was declared lost are left out, so a run sees the same packets whenever it
  // happens.
  [[nodiscard]] virtual result<std::vector<stored_packet>> segment_packets(std::string_view call_id,
                                                                          std::int64_t first,
                                                                          std::int64_t last) = 0;
  [[nodiscard]] virtual result<job_counts> count_jobs() = 0;
  // The nodes the store knows of, by name: those connected to a shared database now (PostgreSQL: each
  // node's listening connection, named after it), and those holding leases of running jobs (a node that
  // died keeps its leases until they expire). The embedded store tells lease holders only.
  [[nodiscard]] virtual result<std::vector<node_presence>> nodes() = 0;
};

}  // namespace aipbx
