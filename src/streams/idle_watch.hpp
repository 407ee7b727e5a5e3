// idle_watch: a stream's idle limit, counted only while the stream waits for its peer (a read is
// outstanding). Time the session spends handing what it read to the store (which pushes back when the
// writer is behind) is not idle time: a store stall never closes a stream as idle.
//
// One timer per connection, not one per read: it is set for the limit after the start of the read it
// knows of; when it fires early (a later read started, or no read is waiting), it is set again. Once a
// read has waited the whole limit, `on_idle` runs (once).
//
// Threading: every member, and `on_idle`, runs on the connection's strand (the executor given); not
// thread-safe. The timer's handler finds the watch through a token its destructor clears, so a watch may
// be destroyed with a wait pending.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <memory>

namespace aipbx::streams {

class idle_watch {
 public:
  // A limit of zero or less never expires.
  idle_watch(const boost::asio::any_io_executor& executor, std::chrono::milliseconds limit,
             std::function<void()> on_idle);
  ~idle_watch();
  idle_watch(const idle_watch&) = delete;
  idle_watch& operator=(const idle_watch&) = delete;

  // Starts watching; the first read is expected soon.
  void start();
  // A read of the peer starts / has ended.
  void read_started() {
    read_since_ = std::chrono::steady_clock::now();
    in_read_ = true;
  }
  void read_ended() { in_read_ = false; }
  // Stops watching for good.
  void stop();
  std::chrono::milliseconds limit() const { return limit_; }
  // Whether a read waited the whole limit.
  bool expired() const { return expired_; }

 private:
  void arm(std::chrono::steady_clock::time_point from);

  boost::asio::steady_timer timer_;
  std::chrono::milliseconds limit_;
  std::function<void()> on_idle_;
  std::shared_ptr<idle_watch*> self_;
  std::chrono::steady_clock::time_point read_since_;  // when the current or last read started
  bool in_read_ = false;
  bool watching_ = false;
  bool expired_ = false;
};

}  // namespace aipbx::streams
