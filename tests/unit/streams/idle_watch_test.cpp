#include "streams/idle_watch.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <chrono>
#include <optional>

namespace aipbx::streams {
namespace {

using namespace std::chrono_literals;
using clock = std::chrono::steady_clock;

class IdleWatchTest : public ::testing::Test {
 protected:
  boost::asio::io_context ioc;
  int idle = 0;
  std::optional<idle_watch> watch;

  void make(std::chrono::milliseconds limit) {
    watch.emplace(ioc.get_executor(), limit, [this] { ++idle; });
  }
  // Runs the context until `on_idle` ran or `most` passed; returns the time it ran.
  clock::duration run_until_idle(clock::duration most) {
    const auto start = clock::now();
    while (idle == 0 && clock::now() - start < most) ioc.run_one_for(most - (clock::now() - start));
    return clock::now() - start;
  }
};

TEST_F(IdleWatchTest, AReadThatWaitsTheWholeLimitIsIdle) {
  make(50ms);
  watch->start();
  watch->read_started();
  const auto took = run_until_idle(5s);
  EXPECT_EQ(idle, 1);
  EXPECT_TRUE(watch->expired());
  EXPECT_GE(took, 50ms);
}

// Time outside a read (the store holding the session back) is not idle time, however long.
TEST_F(IdleWatchTest, TimeWithoutAReadIsNotIdle) {
  make(30ms);
  watch->start();
  watch->read_started();
  watch->read_ended();
  run_until_idle(200ms);
  EXPECT_EQ(idle, 0);
  EXPECT_FALSE(watch->expired());
  // The next read counts from its own start.
  const auto read_at = clock::now();
  watch->read_started();
  run_until_idle(5s);
  EXPECT_EQ(idle, 1);
  EXPECT_GE(clock::now() - read_at, 30ms);
}

TEST_F(IdleWatchTest, ReadsThatEndInTimeKeepTheStreamAlive) {
  make(60ms);
  watch->start();
  const auto start = clock::now();
  while (clock::now() - start < 300ms) {
    watch->read_started();
    run_until_idle(10ms);
    watch->read_ended();
  }
  EXPECT_EQ(idle, 0);
}

TEST_F(IdleWatchTest, AStoppedWatchNeverFires) {
  make(20ms);
  watch->start();
  watch->read_started();
  watch->stop();
  run_until_idle(150ms);
  EXPECT_EQ(idle, 0);
}

TEST_F(IdleWatchTest, NoLimitNeverFires) {
  make(0ms);
  watch->start();
  watch->read_started();
  ioc.run_for(100ms);
  EXPECT_EQ(idle, 0);
}

// A session may end with the timer's wait pending: the handler then finds nothing to touch.
TEST_F(IdleWatchTest, DestroyedWithAWaitPending) {
  make(10ms);
  watch->start();
  watch->read_started();
  watch.reset();
  ioc.run_for(100ms);
  EXPECT_EQ(idle, 0);
}

}  // namespace
}  // namespace aipbx::streams
