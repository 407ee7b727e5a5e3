#include "ingest/ingest_path.hpp"

#include "media/audio_codec.hpp"
#include "storage/async_store.hpp"

namespace aipbx::ingest {

namespace asio = boost::asio;

std::string_view to_string(ingest_result r) {
  switch (r) {
    case ingest_result::accepted: return "accepted";
    case ingest_result::duplicate: return "duplicate";
    case ingest_result::conflict: return "conflict";
    case ingest_result::call_ended: return "call_ended";
    case ingest_result::invalid: return "invalid";
    case ingest_result::media_type: return "unsupported_media_type";
    case ingest_result::overloaded: return "overloaded";
    case ingest_result::failed: return "failed";
  }
  return "failed";
}

ingest_result classify(const result<ingest_outcome>& r) {
  if (r) return r->duplicate ? ingest_result::duplicate : ingest_result::accepted;
  const auto ec = r.error();
  if (ec == errc::sequence_conflict || ec == errc::media_changed) return ingest_result::conflict;
  if (ec == errc::call_ended) return ingest_result::call_ended;
  if (ec == errc::overloaded) return ingest_result::overloaded;
  if (ec == errc::invalid_input) return ingest_result::invalid;
  return ingest_result::failed;
}

void ingest_stats::count(const result<ingest_outcome>& r) {
  count(classify(r));
  if (r && !r->duplicate) arrivals_[static_cast<std::size_t>(r->kind)].fetch_add(1, std::memory_order_relaxed);
}

ingest_path::ingest_path(call_store& store, asio::thread_pool& blocking, media::media_format default_media)
    : store_(store), blocking_(blocking), default_media_(default_media) {}

asio::awaitable<result<call_media_view>> ingest_path::media_of(const std::string& call_id, bool refresh) {
  if (!refresh)
    if (auto known = media_.find(call_id)) co_return *known;
  auto op = run_blocking(blocking_, [this, call_id] { return store_.call_media(call_id); });
  auto read = co_await std::move(op);
  if (!read && read.error() != errc::not_found) co_return read.error();
  call_media_view view;
  if (read) view.declared = *read;
  view.settled = view.declared.has_value();  // declarations never change
  media_.put(call_id, view);
  co_return view;
}

asio::awaitable<ingest_path::checked> ingest_path::ingest(std::string call_id, std::int64_t sequence, std::string data,
                                                          double timestamp) {
  checked out;
  // The data is checked against the call's format as this node knows it; the store refuses the packet
  // (media_changed) if a declaration made meanwhile outdated that view, and the check runs once more.
  for (int attempt = 0;; ++attempt) {
    auto view_op = media_of(call_id, attempt > 0);
    auto view = co_await std::move(view_op);
    if (!view) {
      out.stored = view.error();
      break;
    }
    const call_media_format media = effective_media(view->declared, default_media_);
    out.format = media.format;
    if (media.format.carries_audio()) {
      // A second pass only follows a pass that copied `data` (last_try below): it was not moved.
      if (auto ok = media::check_audio(media.format, data); !ok) {  // NOLINT(bugprone-use-after-move)
        out.undecodable = ok.error();
        out.refused_data = std::move(data);
        stats_.count(ingest_result::invalid);
        co_return out;
      }
    }
    // A settled view cannot be outdated: the data is only needed again when a second check may follow.
    const bool last_try = view->settled || attempt > 0;
    packet p{call_id, sequence, last_try ? std::move(data) : data, timestamp,
             view->declared ? std::optional<std::string>(view->declared->format) : std::nullopt};
    auto op = async_ingest(store_, std::move(p));
    out.stored = co_await std::move(op);
    if (!out.stored && out.stored.error() == errc::media_changed && !last_try) continue;
    // The call has a packet now: it can no longer declare a format, so the view is settled.
    if (out.stored && !view->settled) media_.put(call_id, {view->declared, true});
    break;
  }
  stats_.count(out.stored);
  co_return out;
}

void ingest_path::submit(packet p, media::media_format format, bool check_data, call_store::ingest_handler done) {
  if (check_data && format.carries_audio() && !media::check_audio(format, p.data)) {
    result<ingest_outcome> refused = errc::invalid_input;
    stats_.count(refused);
    done(refused);
    return;
  }
  store_.ingest(std::move(p), [this, done = std::move(done)](result<ingest_outcome> r) {
    stats_.count(r);
    done(r);
  });
}

}  // namespace aipbx::ingest
