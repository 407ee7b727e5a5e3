#include "storage/job_ledger.hpp"

#include "log/log.hpp"
#include "storage/event_data.hpp"

#include <algorithm>

namespace aipbx {

namespace {
constexpr const char* lease_expired_error = "lease expired on the last attempt";
constexpr const char* lease_lost_error = "lease expired";

// The fields every job event starts with: the job's segment.
event_data segment_of(const job& j) {
  event_data d;
  d.add("first", j.first_sequence).add("last", j.last_sequence);
  return d;
}
}  // namespace

void job_rows::clear() {
  jobs.clear();
  results.clear();
  partials.clear();
}

void job_rows::put_partial(std::int64_t job_id, std::optional<partial_row> row) {
  auto it = std::find_if(partials.begin(), partials.end(), [&](const partial_change& c) { return c.job_id == job_id; });
  if (it != partials.end())
    it->row = std::move(row);
  else
    partials.push_back({job_id, std::move(row)});
}

void job_rows::put(const job& j) {
  // One row per job: a backend writing them in one statement must not see the same id twice.
  auto it = std::find_if(jobs.begin(), jobs.end(), [&](const job& listed) { return listed.id == j.id; });
  if (it != jobs.end())
    *it = j;
  else
    jobs.push_back(j);
}

void job_ledger::begin() {
  rows_.clear();
  queued_now_ = false;
  expired_dead_.clear();
}

bool job_ledger::holds(const job& j, const std::string& owner, int attempt) {
  return j.state == job_state::running && j.lease_owner == owner && j.attempts == attempt;
}

std::optional<double> job_ledger::earliest(std::optional<double> a, std::optional<double> b) {
  if (!a) return b;
  if (!b) return a;
  return std::min(*a, *b);
}

claim_result job_ledger::claim(const claim_reads& reads, const std::string& owner, std::size_t limit,
                               double lease_seconds, double now) {
  claim_result out;
  for (job* j : reads.due(limit)) {
    if (j->state != job_state::queued || j->run_at > now) continue;
    lease(*j, owner, lease_seconds, now);
    out.jobs.push_back(*j);
  }
  if (out.jobs.size() < limit) {
    // Leases that expired: their worker (or its node) died or hung. The interrupted attempt counts, so a
    // job whose last attempt never came back is dead rather than run once more.
    for (job* j : reads.expired(limit - out.jobs.size())) {
      if (j->state != job_state::running || !j->lease_expires_at || *j->lease_expires_at >= now) continue;
      if (j->attempts >= j->max_attempts) {
        log_failed(*j, lease_expired_error, std::nullopt, now);
        kill(*j, lease_expired_error, now);
        call_changed(*j, job_state::running, now);
        expired_dead_.push_back(j->id);
        continue;
      }
      log_failed(*j, lease_lost_error, now, now);
      lease(*j, owner, lease_seconds, now);
      out.jobs.push_back(*j);
    }
  }
  // When the claim was filled, the caller comes back as soon as a slot frees: when the next job is due
  // only matters to a caller that found the queue short.
  if (out.jobs.size() < limit) {
    const queue_times next = reads.next();
    out.next_run_at = earliest(next.next_due, next.next_expiry);
  }
  return out;
}

bool job_ledger::renew(job* j, const std::string& owner, int attempt, double lease_seconds, double now) {
  if (!j || !holds(*j, owner, attempt)) return false;
  j->lease_expires_at = now + lease_seconds;
  j->updated_at = now;
  rows_.put(*j);
  return true;
}

bool job_ledger::hear(job* j, const partial_op& op, double now) {
  if (!j || !holds(*j, op.owner, op.attempt)) return false;
  rows_.put_partial(j->id, partial_row{j->id, j->call_id, op.attempt, op.text, op.heard_ms, now});
  calls_.log(event_kind::transcript_partial, j->call_id, j->id, now,
             segment_of(*j)
                 .add("attempt", op.attempt)
                 .add("text", op.text)
                 .add("heard_s", static_cast<double>(op.heard_ms) / 1000.0)
                 .take());
  return true;
}

bool job_ledger::finish(job* j, const std::string& owner, int attempt, const job_outcome& outcome,
                        double now) {
  // Fenced by owner and attempt: a worker whose lease was taken over records nothing.
  if (!j || !holds(*j, owner, attempt)) return false;
  drop_partial(*j);  // the result, if any, replaces it in the same transaction
  j->lease_owner.reset();
  j->lease_expires_at.reset();
  j->updated_at = now;
  if (const auto* ok = std::get_if<job_succeeded>(&outcome)) {
    j->state = job_state::succeeded;
    j->finished_at = now;
    // The result is written with the job's state, in the same transaction: a job has at most one.
    rows_.results.push_back({j->id,
                             j->call_id,
                             {j->first_sequence, j->last_sequence},
                             ok->text,
                             ok->engine,
                             ok->latency_ms,
                             now});
    log_succeeded(*j, *ok, now);
  } else if (const auto* retry = std::get_if<job_retry>(&outcome)) {
    j->state = job_state::queued;
    j->last_error = retry->error;
    j->run_at = retry->run_at;
    log_failed(*j, retry->error, retry->run_at, now);
  } else {
    const std::string& error = std::get<job_dead>(outcome).error;
    log_failed(*j, error, std::nullopt, now);
    kill(*j, error, now);
  }
  rows_.put(*j);
  // A retry leaves the call's counters as they are: the job is still outstanding.
  if (j->state != job_state::queued) call_changed(*j, job_state::running, now);
  return true;
}

bool job_ledger::release(job* j, const std::string& owner, int attempt, double now) {
  if (!j || !holds(*j, owner, attempt)) return false;
  calls_.log(event_kind::job_released, j->call_id, j->id, now, segment_of(*j).add("attempt", j->attempts).take());
  drop_partial(*j);
  j->state = job_state::queued;
  --j->attempts;
  j->lease_owner.reset();
  j->lease_expires_at.reset();
  j->run_at = now;
  j->updated_at = now;
  rows_.put(*j);
  queued_now_ = true;
  return true;
}

result<job> job_ledger::replay(job* j, double now) {
  if (!j) return errc::not_found;
  if (j->state != job_state::dead) return errc::job_not_dead;
  // The last error stays: it tells why the job had died until a new attempt says otherwise.
  j->state = job_state::queued;
  j->attempts = 0;
  j->run_at = now;
  j->finished_at.reset();
  j->updated_at = now;
  rows_.put(*j);
  queued_now_ = true;
  calls_.log(event_kind::job_replayed, j->call_id, j->id, now, segment_of(*j).take());
  call_changed(*j, job_state::dead, now);
  return *j;
}

bool job_ledger::apply(write_op& op, const std::function<job*(std::int64_t id)>& find, double now) {
  return std::visit(
      [&](auto& o) {
        using T = std::decay_t<decltype(o)>;
        if constexpr (std::is_same_v<T, renew_op>) o.r = renew(find(o.id), o.owner, o.attempt, o.lease, now);
        else if constexpr (std::is_same_v<T, finish_op>) o.r = finish(find(o.id), o.owner, o.attempt, o.outcome, now);
        else if constexpr (std::is_same_v<T, release_op>) o.r = release(find(o.id), o.owner, o.attempt, now);
        else if constexpr (std::is_same_v<T, replay_op>) o.r = replay(find(o.id), now);
        else if constexpr (std::is_same_v<T, partial_op>) o.r = hear(find(o.id), o, now);
        else return false;
        return true;
      },
      op.v);
}

void job_ledger::lease(job& j, const std::string& owner, double seconds, double now) {
  if (j.state == job_state::running) drop_partial(j);  // the attempt whose lease expired
  j.state = job_state::running;
  ++j.attempts;
  j.lease_owner = owner;
  j.lease_expires_at = now + seconds;
  if (!j.started_at) j.started_at = now;
  j.updated_at = now;
  rows_.put(j);
  calls_.log(event_kind::job_claimed, j.call_id, j.id, now,
             segment_of(j)
                 .add("attempt", j.attempts)
                 .add("max_attempts", j.max_attempts)
                 .add("owner", owner)
                 .add("lease_expires_at", *j.lease_expires_at)
                 .take());
}

void job_ledger::kill(job& j, const std::string& error, double now) {
  drop_partial(j);
  j.state = job_state::dead;
  j.lease_owner.reset();
  j.lease_expires_at.reset();
  j.last_error = error;
  j.finished_at = now;
  j.updated_at = now;
  rows_.put(j);
  calls_.log(event_kind::job_dead, j.call_id, j.id, now,
             segment_of(j).add("attempts", j.attempts).add("error", error).take());
}

void job_ledger::log_failed(const job& j, const std::string& error, std::optional<double> next_run_at, double now) {
  calls_.log(event_kind::job_failed, j.call_id, j.id, now,
             segment_of(j).add("attempt", j.attempts).add("error", error).add("next_run_at", next_run_at).take());
}

void job_ledger::log_succeeded(const job& j, const job_succeeded& ok, double now) {
  calls_.log(event_kind::job_succeeded, j.call_id, j.id, now,
             segment_of(j)
                 .add("attempt", j.attempts)
                 .add("engine", ok.engine)
                 .add("latency_ms", ok.latency_ms)
                 .take());
  calls_.log(event_kind::transcript_final, j.call_id, j.id, now,
             segment_of(j)
                 .add("text", ok.text)
                 .add("engine", ok.engine)
                 .add("latency_ms", ok.latency_ms)
                 .take());
}

void job_ledger::call_changed(const job& j, job_state from, double now) {
  if (call_record* rec = lookup_(j.call_id)) calls_.job_changed(*rec, from, j.state, now);
}

void job_ledger::log_committed() const {
  for (auto id : expired_dead_) log::error("ai job dead", {{"job_id", id}, {"error", lease_expired_error}});
}

void job_tally_changes::written(const job_rows& rows) {
  for (const auto& j : rows.jobs) {
    auto& was = stored_.at(j.id);
    tally_.add(was.state, was.attempts, -1);
    tally_.add(j.state, j.attempts, 1);
    was = {j.state, j.attempts};
  }
}

}  // namespace aipbx
