#include "streams/call_feed.hpp"

#include "domain/clock.hpp"
#include "log/log.hpp"
#include "storage/async_store.hpp"
#include "streams/stream_hub.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>

namespace aipbx::streams {

namespace asio = boost::asio;

namespace {

constexpr auto use_tuple = asio::as_tuple(asio::use_awaitable);

stream_failure refusal(const std::string& call_id, errc e) {
  switch (e) {
    case errc::media_conflict:
      return {close_code::policy_violation, close_reason::conflict,
              "call " + call_id + " already declared another media format"};
    case errc::media_too_late:
      return {close_code::policy_violation, close_reason::conflict,
              "call " + call_id + " already has packets stored without a media declaration"};
    case errc::call_ended: return {close_code::policy_violation, close_reason::conflict, "call " + call_id + " has ended"};
    case errc::overloaded:
    case errc::unavailable:
      return {close_code::try_again_later, close_reason::unavailable, "the store is unavailable; retry shortly"};
    default: return {close_code::internal_error, close_reason::internal, "internal error"};
  }
}

}  // namespace

call_feed::call_feed(stream_hub& hub, protocol kind, const asio::any_io_executor& strand)
    : hub_(hub), kind_(kind), stats_(hub.stats().of(kind)), strand_(strand), wake_(strand), retry_timer_(strand) {
  wake_.expires_at(clock::time_point::max());
}

call_feed::~call_feed() {
  for (const auto& id : claimed_) hub_.release_call(id);
}

asio::awaitable<std::optional<stream_failure>> call_feed::open(std::vector<track_spec> tracks) {
  call_store& store = hub_.store();
  const std::string primary = tracks.empty() ? std::string() : tracks.front().call_id;
  for (auto& spec : tracks) {
    const media_declaration media{media::to_string(spec.format), spec.packet_ms};
    // A track other than the first names the first's call, so the API shows a call's tracks together.
    track_link link{spec.name, spec.call_id == primary ? std::nullopt : std::optional<std::string>(primary)};
    auto declare_op = async_call<result<declare_outcome>>(
        [&store, id = spec.call_id, media, link](call_store::declare_handler done) {
          store.declare_media(id, media, link, std::move(done));
        });
    auto declared = co_await std::move(declare_op);
    if (!declared) co_return refusal(spec.call_id, static_cast<errc>(declared.error().value()));
    hub_.ingest().declared(spec.call_id, media);
    // A sender that reconnects may come back before its old session has stored what it read and let go
    // of the call: it waits for that, a little.
    const auto give_up = clock::now() + std::chrono::seconds(2);
    while (!hub_.claim_call(spec.call_id)) {
      if (clock::now() >= give_up)
        co_return stream_failure{close_code::policy_violation, close_reason::limit,
                                 "call " + spec.call_id + " is already streaming to this node"};
      asio::steady_timer pause(strand_, std::chrono::milliseconds(20));
      co_await pause.async_wait(use_tuple);
    }
    claimed_.push_back(spec.call_id);
    auto read_op = run_blocking(hub_.blocking(), [&store, id = spec.call_id] { return store.get_call(id); });
    auto call = co_await std::move(read_op);
    if (!call) co_return refusal(spec.call_id, static_cast<errc>(call.error().value()));
    if (has_ended(call->state)) co_return refusal(spec.call_id, errc::call_ended);
    track_state t;
    t.media_text = media.format;
    t.spec = std::move(spec);
    t.start_highest = call->last_sequence;
    t.next = call->last_sequence + 1;
    t.acked = call->expected_sequence - 1;
    tracks_.push_back(std::move(t));
  }
  rate_ = hub_.options().max_fps * static_cast<double>(tracks_.size());
  tokens_ = rate_;  // one second's burst
  refilled_ = clock::now();
  co_return std::nullopt;
}

void call_feed::fail(stream_failure f) {
  if (failure_) return;
  failure_ = std::move(f);
  wake();
  if (on_failed_) on_failed_();
}

asio::awaitable<void> call_feed::push(std::size_t t, std::optional<std::int64_t> sequence, std::string data, bool check,
                                      double timestamp, clock::time_point received) {
  if (failure_) co_return;  // the stream is closing: nothing more is taken
  co_await throttle();
  while (in_flight_ >= hub_.options().window && !failure_) co_await wait();
  if (failure_) co_return;
  auto& track = tracks_[t];
  const std::int64_t seq = sequence ? *sequence : track.next;
  track.next = std::max(track.next, seq + 1);
  queue_.emplace_back(pending{packet{track.spec.call_id, seq, std::move(data), timestamp, track.media_text, true}, t,
                              received, 0, check});
  ++in_flight_;
  submit(first_id_ + queue_.size() - 1);
}

void call_feed::submit(std::uint64_t id) {
  auto& entry = *queue_[id - first_id_];
  ++entry.attempts;
  // The store takes its own copy: this one stays until answered, to be sent again if it must.
  hub_.ingest().submit(entry.p, tracks_[entry.track].spec.format, entry.check, [this, id](result<ingest_outcome> r) {
    asio::post(strand_, [this, id, r]() { answered(id, r); });
  });
}

void call_feed::answered(std::uint64_t id, result<ingest_outcome> r) {
  auto& entry = *queue_[id - first_id_];
  auto& track = tracks_[entry.track];
  if (r) {
    stats_.commit_lag.observe(std::chrono::duration<double>(clock::now() - entry.received).count());
    (r->duplicate ? stats_.duplicates : stats_.stored).fetch_add(1, std::memory_order_relaxed);
    // `expected` is the call's lowest sequence not yet received once this packet is durable.
    if (r->expected - 1 > track.acked) {
      const std::int64_t before = acked();
      track.acked = r->expected - 1;
      if (acked() > before && on_acked_) on_acked_();
    }
    settle(id);
    return;
  }
  const auto e = static_cast<errc>(r.error().value());
  if (e == errc::overloaded || e == errc::unavailable) {
    if (give_up_ && clock::now() >= *give_up_) {
      ++abandoned_;
      settle(id);
      return;
    }
    stats_.retries.fetch_add(1, std::memory_order_relaxed);
    // 20 ms, doubling to a second: the writer's queue drains in milliseconds; an unreachable database
    // takes longer, and meanwhile the window fills and the socket is not read.
    retry_later(id, std::chrono::milliseconds(std::min(1000, 20 << std::min(entry.attempts - 1, 6))));
    return;
  }
  const std::string where = "packet " + std::to_string(entry.p.sequence) + " of call " + entry.p.call_id;
  if (e == errc::sequence_conflict)
    fail({close_code::policy_violation, close_reason::conflict, where + " is already stored with different data"});
  else if (e == errc::invalid_input)
    fail({close_code::invalid_payload, close_reason::bad_audio,
          where + " is not " + media::to_string(track.spec.format) + " audio"});
  else if (e == errc::call_ended || e == errc::media_changed)
    fail(refusal(entry.p.call_id, e == errc::call_ended ? errc::call_ended : errc::media_conflict));
  else
    fail({close_code::internal_error, close_reason::internal, "internal error"});
  settle(id);
}

void call_feed::retry_later(std::uint64_t id, std::chrono::milliseconds delay) {
  const auto it = retries_.emplace(clock::now() + delay, id);
  if (it == retries_.begin()) arm_retry_timer();  // else the timer is set for an earlier one
}

void call_feed::arm_retry_timer() {
  retry_timer_.expires_at(retries_.begin()->first);  // cancels the wait for a later one
  retry_timer_.async_wait([this](boost::system::error_code ec) {
    if (ec) return;  // cancelled: re-armed, or the feed is gone
    const auto now = clock::now();
    while (!retries_.empty() && retries_.begin()->first <= now) {
      const auto id = retries_.begin()->second;
      retries_.erase(retries_.begin());
      submit(id);
    }
    if (!retries_.empty()) arm_retry_timer();
  });
}

void call_feed::settle(std::uint64_t id) {
  queue_[id - first_id_].reset();
  while (!queue_.empty() && !queue_.front()) {
    queue_.pop_front();
    ++first_id_;
  }
  --in_flight_;
  wake();
}

void call_feed::wake() { wake_.cancel(); }

// The wake timer never expires: cancel() wakes every waiter (the reader waiting for room, a drain).
asio::awaitable<void> call_feed::wait() { co_await wake_.async_wait(use_tuple); }

asio::awaitable<void> call_feed::throttle() {
  const auto now = clock::now();
  tokens_ = std::min(rate_, tokens_ + rate_ * std::chrono::duration<double>(now - refilled_).count());
  refilled_ = now;
  if (tokens_ < 1 && rate_ > 0) {
    asio::steady_timer pause(strand_, std::chrono::duration_cast<clock::duration>(
                                          std::chrono::duration<double>((1 - tokens_) / rate_)));
    co_await pause.async_wait(use_tuple);
    const auto later = clock::now();
    tokens_ = std::min(rate_, tokens_ + rate_ * std::chrono::duration<double>(later - refilled_).count());
    refilled_ = later;
  }
  tokens_ -= 1;
}

asio::awaitable<void> call_feed::drain(clock::time_point give_up) {
  if (!give_up_) give_up_ = give_up;
  while (in_flight_ > 0) {
    if (!retries_.empty() && clock::now() >= *give_up_) {
      // Only packets the store keeps refusing are left: abandon them now rather than at their next try.
      retry_timer_.cancel();
      for (const auto& [due, id] : retries_) {
        ++abandoned_;
        settle(id);
      }
      retries_.clear();
      continue;
    }
    if (!retries_.empty()) {
      asio::steady_timer pause(strand_, std::min(*give_up_, retries_.begin()->first));
      co_await pause.async_wait(use_tuple);
      continue;
    }
    co_await wait();
  }
  if (abandoned_ > 0) {
    const std::string call = tracks_.empty() ? std::string() : tracks_.front().spec.call_id;
    log::error("stream packets not stored: the store did not take them in time",
               {{"call_id", call}, {"protocol", to_string(kind_)}, {"packets", abandoned_}});
    abandoned_ = 0;
  }
}

asio::awaitable<void> call_feed::end(std::string reason) {
  call_store& store = hub_.store();
  for (const auto& t : tracks_) {
    auto op = async_call<result<call_state>>([&store, id = t.spec.call_id, reason](call_store::state_handler done) {
      store.end_call(id, reason, std::move(done));
    });
    auto ended = co_await std::move(op);
    if (!ended && ended.error() != errc::invalid_transition)
      log::warn("stream call not ended", {{"call_id", t.spec.call_id}, {"error", ended.error().message()}});
  }
}

void call_feed::record(std::string kind, std::string data) {
  if (tracks_.empty()) return;
  call_event e;
  e.call_id = tracks_.front().spec.call_id;
  e.kind = std::move(kind);
  e.at = system_now();
  e.sequence = tracks_.front().next - 1;
  e.data = std::move(data);
  stats_.events.fetch_add(1, std::memory_order_relaxed);
  // Answered on a store thread, maybe after the session ended: the handler keeps nothing of it.
  hub_.store().record_event(std::move(e), [call = tracks_.front().spec.call_id](result<std::int64_t> r) {
    if (!r) log::warn("call event not stored", {{"call_id", call}, {"error", r.error().message()}});
  });
}

std::int64_t call_feed::acked() const {
  if (tracks_.empty()) return 0;
  std::int64_t low = tracks_.front().acked;
  for (const auto& t : tracks_) low = std::min(low, t.acked);
  return low;
}

}  // namespace aipbx::streams
