#include "streams/idle_watch.hpp"

#include <utility>

namespace aipbx::streams {

idle_watch::idle_watch(const boost::asio::any_io_executor& executor, std::chrono::milliseconds limit,
                       std::function<void()> on_idle)
    : timer_(executor),
      limit_(limit),
      on_idle_(std::move(on_idle)),
      self_(std::make_shared<idle_watch*>(this)) {}

idle_watch::~idle_watch() {
  *self_ = nullptr;
}

void idle_watch::start() {
  if (limit_.count() <= 0 || watching_ || expired_) return;
  watching_ = true;
  arm(std::chrono::steady_clock::now());
}

void idle_watch::stop() {
  watching_ = false;
  timer_.cancel();
}

void idle_watch::arm(std::chrono::steady_clock::time_point from) {
  timer_.expires_at(from + limit_);
  timer_.async_wait([self = self_](boost::system::error_code ec) {
    if (ec || *self == nullptr || !(*self)->watching_) return;
    idle_watch& w = **self;
    const auto now = std::chrono::steady_clock::now();
    if (!w.in_read_ || now < w.read_since_ + w.limit_) {
      w.arm(w.in_read_ ? w.read_since_ : now);
      return;
    }
    w.watching_ = false;
    w.expired_ = true;
    w.on_idle_();
  });
}

}  // namespace aipbx::streams
