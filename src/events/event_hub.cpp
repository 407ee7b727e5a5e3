#include "events/event_hub.hpp"

#include "log/log.hpp"

#include <algorithm>

namespace aipbx::events {

std::string_view to_string(transport t) { return t == transport::sse ? "sse" : "websocket"; }

namespace {

// Which events of a page a member at `position` with `filter` wants: every one (the usual case of a live
// member without a filter: it is given the page as it is), or those listed.
struct picked_events {
  bool all = false;
  std::vector<std::uint32_t> indices;
};

picked_events pick(const std::vector<logged_event>& events, std::int64_t position, const event_filter& filter) {
  picked_events out;
  for (std::uint32_t i = 0; i < events.size(); ++i)
    if (events[i].id > position && filter.matches(events[i])) out.indices.push_back(i);
  out.all = !events.empty() && out.indices.size() == events.size();
  if (out.all) out.indices.clear();
  return out;
}

}  // namespace

// ---- subscription ----------------------------------------------------------------------------------------

subscription::subscription(event_hub& hub, event_filter filter, std::optional<std::int64_t> after, transport t,
                           std::size_t buffer)
    : hub_(hub),
      filter_(std::move(filter)),
      transport_(t),
      buffer_(std::max<std::size_t>(buffer, 1)),
      after_(after),
      position_(after) {}

subscription::~subscription() { close(); }

std::vector<subscription::item> subscription::take() {
  std::vector<item> out;
  bool room_wanted = false;
  {
    aipbx::lock_guard lock(mutex_);
    out.swap(queue_);
    queued_events_ = 0;
    waiting_ = out.empty() && !ended_;
    if (ended_ && !out.empty() && std::holds_alternative<notice>(out.back()) &&
        std::get<notice>(out.back()).what == notice::kind::resume)
      finished_ = true;
    room_wanted = wants_room_ && !out.empty();
    if (room_wanted) wants_room_ = false;
  }
  if (room_wanted) hub_.wake_for_room();
  return out;
}

bool subscription::finished() const {
  aipbx::lock_guard lock(mutex_);
  return finished_;
}

void subscription::set_waker(std::function<void()> wake) {
  aipbx::lock_guard lock(mutex_);
  wake_ = std::move(wake);
}

void subscription::close() {
  {
    aipbx::lock_guard lock(mutex_);
    if (closed_) return;
    closed_ = true;
    wake_ = nullptr;
  }
  hub_.closed(transport_);
}

bool subscription::closed() const {
  aipbx::lock_guard lock(mutex_);
  return closed_;
}

std::size_t subscription::push(page_slice slice) {
  std::function<void()> wake;
  const std::size_t offered = slice.size();
  std::size_t queued = 0;
  {
    aipbx::lock_guard lock(mutex_);
    if (ended_ || closed_) return offered;  // nothing more for it; not a reason to cut it again
    const std::size_t room = buffer_ > queued_events_ ? buffer_ - queued_events_ : 0;
    queued = std::min(room, offered);
    if (queued == 0) return 0;
    if (queued < offered) {
      // What fits: the first `queued` events of the slice.
      if (slice.whole()) {
        for (std::uint32_t i = 0; i < queued; ++i) slice.picked.push_back(i);
      } else {
        slice.picked.resize(queued);
      }
    }
    position_ = std::max(position_.value_or(0), slice.id(queued - 1));
    queue_.emplace_back(std::move(slice));
    queued_events_ += queued;
    if (waiting_) {
      waiting_ = false;
      wake = wake_;
    }
  }
  if (wake) wake();
  return queued;
}

void subscription::push_notice(notice n) {
  std::function<void()> wake;
  {
    aipbx::lock_guard lock(mutex_);
    if (ended_ || closed_) return;
    if (n.what == notice::kind::resume) ended_ = true;
    queue_.emplace_back(std::move(n));
    if (waiting_) {
      waiting_ = false;
      wake = wake_;
    }
  }
  if (wake) wake();
}

std::size_t subscription::room() {
  aipbx::lock_guard lock(mutex_);
  const std::size_t free = buffer_ > queued_events_ ? buffer_ - queued_events_ : 0;
  // Caught up in slices of at least half the buffer, not an event at a time; the next take wakes the hub.
  if (free * 2 < buffer_) {
    wants_room_ = true;
    return 0;
  }
  return free;
}

void subscription::advance(std::int64_t position) {
  aipbx::lock_guard lock(mutex_);
  position_ = std::max(position_.value_or(0), position);
}

void subscription::end(std::int64_t after, std::string reason) {
  push_notice({notice::kind::resume, after, 0, std::move(reason)});
}

void subscription::end_here(std::string reason) {
  std::function<void()> wake;
  {
    aipbx::lock_guard lock(mutex_);
    if (ended_ || closed_) return;
    ended_ = true;
    queue_.emplace_back(notice{notice::kind::resume, position_, 0, std::move(reason)});
    if (waiting_) {
      waiting_ = false;
      wake = wake_;
    }
  }
  if (wake) wake();
}

// ---- event_hub -------------------------------------------------------------------------------------------

event_hub::event_hub(event_log& log, hub_options options) : log_(log), options_(options) {}

event_hub::~event_hub() { shutdown(); }

void event_hub::start() {
  // Without subscribers there is nothing to read: a commit does not wake the thread.
  log_.on_events([this] {
    if (open_.load(std::memory_order_relaxed) > 0) wake();
  });
  thread_ = std::thread([this] { run(); });
}

result<std::shared_ptr<subscription>> event_hub::subscribe(event_filter filter, std::optional<std::int64_t> after,
                                                           transport t) {
  // The count is taken first and given back on refusal, so that racing subscribers never pass the limit.
  if (open_.fetch_add(1) >= options_.max_subscribers) {
    open_.fetch_sub(1);
    refused_.fetch_add(1, std::memory_order_relaxed);
    return errc::overloaded;
  }
  auto sub = std::make_shared<subscription>(*this, std::move(filter), after, t, options_.buffer);
  {
    aipbx::lock_guard lock(mutex_);
    if (stopping_) {
      open_.fetch_sub(1);
      return errc::unavailable;
    }
    joining_.push_back(sub);
    woken_ = true;
  }
  open_by_[static_cast<std::size_t>(t)].fetch_add(1, std::memory_order_relaxed);
  accepted_[static_cast<std::size_t>(t)].fetch_add(1, std::memory_order_relaxed);
  wake_cv_.notify_one();
  return sub;
}

void event_hub::closed(transport t) {
  open_.fetch_sub(1);
  open_by_[static_cast<std::size_t>(t)].fetch_sub(1, std::memory_order_relaxed);
  wake();
}

void event_hub::wake() {
  {
    aipbx::lock_guard lock(mutex_);
    woken_ = true;
  }
  wake_cv_.notify_one();
}

void event_hub::wake_for_room() {
  {
    aipbx::lock_guard lock(mutex_);
    woken_ = true;
    room_ = true;
  }
  wake_cv_.notify_one();
}

void event_hub::stop() {
  {
    aipbx::lock_guard lock(mutex_);
    if (stopping_) return;
    stopping_ = true;
  }
  wake_cv_.notify_one();
}

void event_hub::shutdown() {
  stop();
  if (thread_.joinable()) {
    thread_.join();
    log_.on_events(nullptr);
  }
}

void event_hub::run() {
  log::name_thread("aipbx-events");
  bool more = false;
  auto last_round = std::chrono::steady_clock::now() - options_.batch;
  for (;;) {
    {
      aipbx::unique_lock lock(mutex_);
      if (!more)
        wake_cv_.wait_for(lock.native(), options_.poll, [this]() REQUIRES(mutex_) { return woken_ || stopping_; });
      // New events are read in rounds no closer than `batch` (what comes meanwhile is read in the next one);
      // work already there (more to read, a subscriber to catch up) goes on at once.
      if (!more && !room_)
        wake_cv_.wait_until(lock.native(), last_round + options_.batch, [this]() REQUIRES(mutex_) { return stopping_; });
      woken_ = false;
      room_ = false;
      if (stopping_) break;
    }
    last_round = std::chrono::steady_clock::now();
    try {
      more = step();
    } catch (const std::exception& e) {
      // A bug, not a store failure (those are values): logged, and the next round starts afresh.
      log::error("event stream round failed", {{"error", e.what()}});
      more = false;
    }
  }
  adopt_new_members();
  end_all("shutdown");
}

bool event_hub::step() {
  adopt_new_members();
  std::erase_if(members_, [](const member& m) { return m.sub->closed(); });
  if (members_.empty()) {
    tail_.reset();  // followed again from the head when someone subscribes
    return false;
  }
  if (!place_members()) return false;
  bool more = follow_tail();
  for (auto& m : members_)
    if (*m.position < *tail_ && catch_up(m)) more = true;
  std::erase_if(members_, [](const member& m) { return m.sub->closed(); });
  return more;
}

void event_hub::adopt_new_members() {
  std::vector<std::shared_ptr<subscription>> joining;
  {
    aipbx::lock_guard lock(mutex_);
    joining.swap(joining_);
  }
  for (auto& s : joining) members_.push_back({s, s->after_});
}

// Subscribers without a position start at the log's head, and the tail is the head when nothing was
// followed yet. False when the store could not say where its head is (tried again next round).
bool event_hub::place_members() {
  const bool unplaced = std::any_of(members_.begin(), members_.end(), [](const member& m) { return !m.position; });
  if (!unplaced && tail_) return true;
  auto head = log_.log_head();
  if (!head) {
    read_failures_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  for (auto& m : members_) {
    if (m.position) continue;
    m.position = *head;
    m.sub->advance(*head);
  }
  if (!tail_) tail_ = *head;
  position_.store(*tail_, std::memory_order_relaxed);
  return true;
}

// Reads the log from the tail, a page at a time (a few per round, so that catching up is not starved),
// and gives each page's events to the members at the tail or beyond it, each member's in one push. True
// when more is there.
bool event_hub::follow_tail() {
  for (int pages = 0; pages < 8; ++pages) {
    auto page = log_.read_log(*tail_, std::nullopt, {}, options_.page);
    if (!page) {
      read_failures_.fetch_add(1, std::memory_order_relaxed);
      return false;
    }
    events_read_.fetch_add(page->events.size(), std::memory_order_relaxed);
    const std::int64_t from = *tail_;
    // Formatted once, when some member wants an event of it, and shared by every member it goes to.
    std::shared_ptr<const wire_page> wired;
    for (auto& m : members_) {
      if (*m.position < from) continue;  // catching up: read for apart
      if (page->pruned_through > *m.position) tell_truncated(m, page->pruned_through);
      picked_events wanted = pick(page->events, *m.position, m.sub->filter());
      if (wanted.all || !wanted.indices.empty()) {
        if (!wired) wired = make_wire_page(page->events);
        if (!deliver(m, page_slice{wired, std::move(wanted.indices)})) continue;
      }
      m.position = std::max(*m.position, page->scanned_to);
      m.sub->advance(*m.position);
    }
    tail_ = page->scanned_to;
    position_.store(*tail_, std::memory_order_relaxed);
    if (page->events.size() < options_.page) return false;
  }
  return true;
}

// One read of the events a member missed, no further than the tail; true when it is still behind and has
// room for more.
bool event_hub::catch_up(member& m) {
  const std::size_t room = m.sub->room();
  if (room == 0) return false;  // woken again when the connection has taken its queue
  auto page = log_.read_log(*m.position, *tail_, m.sub->filter(), std::min(room, options_.page));
  if (!page) {
    read_failures_.fetch_add(1, std::memory_order_relaxed);
    return false;
  }
  events_read_.fetch_add(page->events.size(), std::memory_order_relaxed);
  if (page->pruned_through > *m.position) tell_truncated(m, page->pruned_through);
  // The read was filtered and bounded by the room: all of it is the member's, and it fits.
  if (!page->events.empty() && !deliver(m, page_slice{make_wire_page(page->events), {}})) return false;
  m.position = std::max(*m.position, page->scanned_to);
  m.sub->advance(*m.position);
  return *m.position < *tail_;
}

bool event_hub::deliver(member& m, page_slice slice) {
  const std::size_t offered = slice.size();
  if (offered == 0) return true;
  // Kept apart: the slice moves into the queue.
  std::vector<std::int64_t> ids;
  ids.reserve(offered);
  for (std::size_t i = 0; i < offered; ++i) ids.push_back(slice.id(i));
  const std::size_t queued = m.sub->push(std::move(slice));
  events_queued_.fetch_add(queued, std::memory_order_relaxed);
  if (queued == offered) return true;
  // Full while live: everything up to the event before the first left out is queued; it resumes there.
  const std::int64_t resume_after = ids[queued] - 1;
  m.sub->end(resume_after, "slow_subscriber");
  m.sub->close();
  cut_slow_.fetch_add(1, std::memory_order_relaxed);
  log::warn("event subscriber cut: it reads more slowly than events come",
            {{"transport", to_string(m.sub->kind())}, {"resume_after", resume_after}, {"buffer", options_.buffer}});
  return false;
}

void event_hub::tell_truncated(member& m, std::int64_t pruned_through) {
  m.sub->push_notice({notice::kind::truncated, pruned_through, *m.position, {}});
  m.position = pruned_through;
  m.sub->advance(pruned_through);
  truncated_.fetch_add(1, std::memory_order_relaxed);
}

void event_hub::end_all(const std::string& reason) {
  for (auto& m : members_) {
    if (m.sub->closed()) continue;
    m.sub->end_here(reason);
    ended_shutdown_.fetch_add(1, std::memory_order_relaxed);
  }
  members_.clear();
}

hub_stats event_hub::stats() const {
  hub_stats s;
  for (std::size_t i = 0; i < transport_count; ++i) {
    s.subscribers[i] = open_by_[i].load(std::memory_order_relaxed);
    s.subscriptions[i] = accepted_[i].load(std::memory_order_relaxed);
  }
  s.refused = refused_.load(std::memory_order_relaxed);
  s.cut_slow = cut_slow_.load(std::memory_order_relaxed);
  s.ended_shutdown = ended_shutdown_.load(std::memory_order_relaxed);
  s.truncated = truncated_.load(std::memory_order_relaxed);
  s.events_read = events_read_.load(std::memory_order_relaxed);
  s.events_queued = events_queued_.load(std::memory_order_relaxed);
  s.position = position_.load(std::memory_order_relaxed);
  s.read_failures = read_failures_.load(std::memory_order_relaxed);
  return s;
}

}  // namespace aipbx::events
