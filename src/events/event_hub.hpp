// event_hub: one node's side of the event stream (GET /v1/events): it follows the store's event log and
// hands each subscriber the events it asked for, first those it missed (read from the store), then the
// live ones, in id order, none skipped and none twice.
//
// One hub thread does all the reading. It follows the log from its `tail` (a single read per batch of new
// events, however many subscribers there are) and puts each event into the queue of every subscriber
// that is live and wants it; a subscriber that resumes from an older id is caught up with reads of its own,
// bounded by the tail, and is live from the moment its position reaches the tail. The store wakes the
// thread when events become durable (storage/event_log.hpp: on_events; on PostgreSQL a NOTIFY from any
// node), and it also reads every `poll` in case a wake-up was lost. Under a steady flow of events it reads
// at most once per `batch`, so that a subscriber gets a batch per round rather than an event per commit:
// what the stream costs grows with the number of subscribers and rounds, hardly with the rate of events.
//
// A slow subscriber never slows anyone else: its queue holds at most `buffer` events. A live subscriber
// whose queue is full is cut: it gets every event queued so far, then a notice telling it to resume after
// the last id it was given (its position), and no more. The writer and the hub never wait for it. A
// subscriber being caught up is simply read for when its queue has room again.
//
// Ownership and threading: the application owns the hub; subscriptions are shared between the hub and
// the connection that serves them, and every member of both is thread-safe. The hub must outlive its
// subscriptions (a closing subscription tells the hub), and `shutdown` (which joins the thread) must run
// before the executors that subscriptions' wakers post to are destroyed.
#pragma once

#include "domain/thread_annotations.hpp"
#include "events/wire_event.hpp"
#include "storage/event_log.hpp"

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <variant>
#include <vector>

namespace aipbx::events {

class event_hub;

// What a subscriber is told besides events.
struct notice {
  enum class kind {
    truncated,  // the events after `requested` up to `after` were pruned (retention): they are gone
    resume,     // the subscription ends: resume after `after` (reason: "slow_subscriber", "shutdown")
  } what = kind::resume;
  // Where to resume; empty for a subscription that ended before the hub placed it at the log's head
  // (nothing was given to it: resume from the head again).
  std::optional<std::int64_t> after;
  std::int64_t requested = 0;  // truncated only
  std::string reason;          // resume only
};

enum class transport { sse, websocket };
inline constexpr std::size_t transport_count = 2;
std::string_view to_string(transport t);

class subscription {
 public:
  using item = std::variant<page_slice, notice>;

  subscription(event_hub& hub, event_filter filter, std::optional<std::int64_t> after, transport t,
               std::size_t buffer);
  ~subscription();
  subscription(const subscription&) = delete;
  subscription& operator=(const subscription&) = delete;

  // The connection's side. Takes what is queued, in order. When nothing is queued, the waker runs (once,
  // from any thread) as soon as something is; a connection takes again when woken.
  std::vector<item> take();
  // True once the subscription's last item (a resume notice) has been taken: nothing more comes.
  bool finished() const;
  // Set before the first take; runs on the hub's thread and must not block.
  void set_waker(std::function<void()> wake);
  // Ends the subscription where it is: after what is queued comes a notice to resume after the last event
  // queued or read past (`reason`: "shutdown"), and nothing more. Used when the server stops.
  void end_here(std::string reason);
  // The connection is gone (or done): the hub drops the subscription. Idempotent.
  void close();

  const event_filter& filter() const { return filter_; }
  transport kind() const { return transport_; }

 private:
  friend class event_hub;
  // The hub's side. Queues the slice's events (one lock, one wake-up for the lot) as far as the queue has
  // room; returns how many were queued (fewer than the slice holds: the queue is full).
  std::size_t push(page_slice slice);
  void push_notice(notice n);
  // How many events may be queued for catching up now (0: too few; the next take wakes the hub).
  std::size_t room();
  // Every event it wants up to `position` is queued (the hub read that far).
  void advance(std::int64_t position);
  // Ends it with a resume notice after what is queued.
  void end(std::int64_t after, std::string reason);
  bool closed() const;

  event_hub& hub_;
  const event_filter filter_;
  const transport transport_;
  const std::size_t buffer_;
  const std::optional<std::int64_t> after_;  // as asked; the hub then keeps the position

  mutable aipbx::mutex mutex_;
  std::vector<item> queue_ GUARDED_BY(mutex_);
  std::size_t queued_events_ GUARDED_BY(mutex_) = 0;
  // Where a resume starts: the last event queued or read past (unset: a live subscription not placed yet).
  std::optional<std::int64_t> position_ GUARDED_BY(mutex_);
  bool waiting_ GUARDED_BY(mutex_) = false;      // a take found nothing: wake on the next push
  bool ended_ GUARDED_BY(mutex_) = false;        // the resume notice is queued
  bool finished_ GUARDED_BY(mutex_) = false;     // ... and taken
  bool wants_room_ GUARDED_BY(mutex_) = false;   // the hub waits for room to catch it up
  bool closed_ GUARDED_BY(mutex_) = false;
  std::function<void()> wake_ GUARDED_BY(mutex_);
};

struct hub_options {
  std::size_t max_subscribers = 100;
  std::size_t buffer = 4096;  // events queued per subscriber at most
  std::size_t page = 1000;    // events per read of the store
  std::chrono::milliseconds poll{1000};
  // Rounds of reads start at most this often while events keep coming, so that each subscriber gets them
  // in batches (one wake-up and one write per round, not per commit); an event after a quiet spell goes
  // out at once.
  std::chrono::milliseconds batch{50};
};

struct hub_stats {
  std::array<std::size_t, transport_count> subscribers{};          // open now, by transport
  std::array<std::uint64_t, transport_count> subscriptions{};      // accepted, by transport
  std::uint64_t refused = 0;        // over --max-subscribers
  std::uint64_t cut_slow = 0;       // ended because their queue was full
  std::uint64_t ended_shutdown = 0; // ended by the server's stop
  std::uint64_t truncated = 0;      // told that events they asked for were pruned
  std::uint64_t events_read = 0;    // events read from the store (following the log, catching up)
  std::uint64_t events_queued = 0;  // events queued to subscribers
  std::int64_t position = 0;        // the last event id the hub has followed the log to
  std::uint64_t read_failures = 0;  // store reads that failed (retried)
};

class event_hub {
 public:
  event_hub(event_log& log, hub_options options);
  ~event_hub();
  event_hub(const event_hub&) = delete;
  event_hub& operator=(const event_hub&) = delete;

  // Starts the hub thread and listens to the store.
  void start();
  // The events that match `filter` with an id above `after` (without one: those the log gets from now
  // on). Fails with `overloaded` when `max_subscribers` are open, `unavailable` once stopping.
  result<std::shared_ptr<subscription>> subscribe(event_filter filter, std::optional<std::int64_t> after,
                                                  transport t);
  // Ends every subscription (each is told to resume where it is, "shutdown") and refuses new ones; does
  // not wait. Idempotent.
  void stop();
  // stop(), then waits for the hub thread to end.
  void shutdown();

  hub_stats stats() const;
  const hub_options& options() const { return options_; }

 private:
  friend class subscription;
  // A subscription as the hub thread follows it.
  struct member {
    std::shared_ptr<subscription> sub;
    std::optional<std::int64_t> position;  // every matching event up to here is queued (unset: not yet known)
  };

  void wake();
  // A subscriber being caught up took its queue: read for it at once (no wait for the next round).
  void wake_for_room();
  void closed(transport t);
  void run();
  // One round of reads and deliveries; true when more is ready to read at once.
  bool step();
  void adopt_new_members();
  bool place_members();
  bool follow_tail();
  bool catch_up(member& m);
  // Queues `slice` (all of which `m` wants) to `m`; false when `m` was cut for being full.
  bool deliver(member& m, page_slice slice);
  void tell_truncated(member& m, std::int64_t pruned_through);
  void end_all(const std::string& reason);

  event_log& log_;
  const hub_options options_;

  mutable aipbx::mutex mutex_;
  std::condition_variable_any wake_cv_;
  bool woken_ GUARDED_BY(mutex_) = false;
  bool room_ GUARDED_BY(mutex_) = false;  // the wake-up is a subscriber's room, not new events
  bool stopping_ GUARDED_BY(mutex_) = false;
  std::vector<std::shared_ptr<subscription>> joining_ GUARDED_BY(mutex_);
  std::thread thread_;

  // The hub thread's own.
  std::vector<member> members_;
  std::optional<std::int64_t> tail_;

  std::atomic<std::size_t> open_{0};
  std::array<std::atomic<std::size_t>, transport_count> open_by_{};
  std::array<std::atomic<std::uint64_t>, transport_count> accepted_{};
  std::atomic<std::uint64_t> refused_{0}, cut_slow_{0}, ended_shutdown_{0}, truncated_{0}, events_read_{0},
      events_queued_{0}, read_failures_{0};
  std::atomic<std::int64_t> position_{0};
};

}  // namespace aipbx::events
