#include "app/config.hpp"

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>

#include <cstdlib>
#include <map>
#include <optional>
#include <string>

namespace aipbx::app {
namespace {

using std::chrono::milliseconds;

TEST(ParseDuration, Units) {
  EXPECT_EQ(parse_duration("250ms"), milliseconds(250));
  EXPECT_EQ(parse_duration("2s"), milliseconds(2'000));
  EXPECT_EQ(parse_duration("1.5s"), milliseconds(1'500));
  EXPECT_EQ(parse_duration("5m"), milliseconds(300'000));
  EXPECT_EQ(parse_duration("1h"), milliseconds(3'600'000));
  EXPECT_EQ(parse_duration("0.5h"), milliseconds(1'800'000));
  EXPECT_EQ(parse_duration("0ms"), milliseconds(0));
}

TEST(ParseDuration, BareNumberIsSeconds) {
  EXPECT_EQ(parse_duration("30"), milliseconds(30'000));
  EXPECT_EQ(parse_duration("0.25"), milliseconds(250));
  EXPECT_EQ(parse_duration("0"), milliseconds(0));
}

TEST(ParseDuration, Rejects) {
  for (const char* bad : {"", "abc", "-1s", "5x", "s", "ms", ".", ".s", "1.2.3s", "5 s", " 5s", "5s ", "5S", "5sec",
                          "1e3s", "+5s", "5min", "inf", "nan"}) {
    EXPECT_FALSE(parse_duration(bad).has_value()) << "'" << bad << "'";
  }
}

TEST(ParseDuration, RejectsAbsurdlyLarge) {
  EXPECT_FALSE(parse_duration("99999999999999999999h").has_value());
}

// Every AIPBX_* variable the serve options read, cleared for each test and restored after it, so the
// developer's environment cannot change the outcome.
class ServeOptions : public ::testing::Test {
 protected:
  static constexpr const char* variables[] = {
      "AIPBX_HOST",          "AIPBX_PORT",           "AIPBX_DB",           "AIPBX_THREADS",
      "AIPBX_BLOCKING_THREADS", "AIPBX_BODY_LIMIT",  "AIPBX_HEADER_LIMIT", "AIPBX_REQUEST_TIMEOUT",
      "AIPBX_IDLE_TIMEOUT",  "AIPBX_KEEPALIVE_TIMEOUT", "AIPBX_SHUTDOWN_TIMEOUT", "AIPBX_MAX_CONNECTIONS", "AIPBX_WRITER_QUEUE",
      "AIPBX_MAX_BATCH",     "AIPBX_LOG_LEVEL"};

  void SetUp() override {
    for (const char* name : variables) {
      if (const char* v = std::getenv(name)) saved_[name] = v;
      ::unsetenv(name);
    }
    add_serve_options(app_, config_);
  }

  void TearDown() override {
    for (const char* name : variables) {
      auto it = saved_.find(name);
      if (it != saved_.end())
        ::setenv(name, it->second.c_str(), 1);
      else
        ::unsetenv(name);
    }
  }

  static void set(const char* name, const char* value) { ASSERT_EQ(::setenv(name, value, 1), 0); }

  void parse(const std::string& args) { app_.parse(args, false); }

  CLI::App app_{"aipbx serve"};
  serve_config config_;
  std::map<std::string, std::string> saved_;
};

TEST_F(ServeOptions, DefaultsWithoutFlagsOrEnvironment) {
  parse("");
  const serve_config defaults;
  EXPECT_EQ(config_.host, "127.0.0.1");
  EXPECT_EQ(config_.port, 8000);
  EXPECT_EQ(config_.db, "./aipbx.db");
  EXPECT_EQ(config_.body_limit, defaults.body_limit);
  EXPECT_EQ(config_.request_timeout, defaults.request_timeout);
  EXPECT_EQ(config_.writer_queue, defaults.writer_queue);
  EXPECT_EQ(config_.log_level, log::level::info);
}

TEST_F(ServeOptions, FlagsParse) {
  parse("--host 0.0.0.0 --port 9001 --db sqlite:///tmp/x.db --threads 3 --blocking-threads 8 --body-limit 2048 "
        "--header-limit 4096 --request-timeout 250ms --keepalive-timeout 2m --shutdown-timeout 1.5s "
        "--max-connections 77 --writer-queue 123 --max-batch 64 --log-level warning");
  EXPECT_EQ(config_.host, "0.0.0.0");
  EXPECT_EQ(config_.port, 9001);
  EXPECT_EQ(config_.db, "sqlite:///tmp/x.db");
  EXPECT_EQ(config_.threads, 3u);
  EXPECT_EQ(config_.blocking_threads, 8u);
  EXPECT_EQ(config_.body_limit, 2048u);
  EXPECT_EQ(config_.header_limit, 4096u);
  EXPECT_EQ(config_.request_timeout, milliseconds(250));
  EXPECT_EQ(config_.keepalive_timeout, milliseconds(120'000));
  EXPECT_EQ(config_.shutdown_timeout, milliseconds(1'500));
  EXPECT_EQ(config_.max_connections, 77u);
  EXPECT_EQ(config_.writer_queue, 123u);
  EXPECT_EQ(config_.max_batch, 64u);
  EXPECT_EQ(config_.log_level, log::level::warning);
}

TEST_F(ServeOptions, EqualsSyntax) {
  parse("--port=0 --db=./other.db");
  EXPECT_EQ(config_.port, 0);
  EXPECT_EQ(config_.db, "./other.db");
}

TEST_F(ServeOptions, EnvironmentApplies) {
  set("AIPBX_HOST", "10.0.0.1");
  set("AIPBX_PORT", "8123");
  set("AIPBX_DB", "/var/lib/aipbx/a.db");
  set("AIPBX_REQUEST_TIMEOUT", "5s");
  set("AIPBX_WRITER_QUEUE", "99");
  set("AIPBX_LOG_LEVEL", "debug");
  parse("");
  EXPECT_EQ(config_.host, "10.0.0.1");
  EXPECT_EQ(config_.port, 8123);
  EXPECT_EQ(config_.db, "/var/lib/aipbx/a.db");
  EXPECT_EQ(config_.request_timeout, milliseconds(5'000));
  EXPECT_EQ(config_.writer_queue, 99u);
  EXPECT_EQ(config_.log_level, log::level::debug);
}

TEST(ReorderWindow, PacketsDurationOrBoth) {
  auto w = parse_reorder_window("50");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->packets, 50);
  EXPECT_EQ(w->seconds, 0);
  w = parse_reorder_window("1.5s");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->packets, 0);
  EXPECT_DOUBLE_EQ(w->seconds, 1.5);
  w = parse_reorder_window("250ms,20");
  ASSERT_TRUE(w);
  EXPECT_EQ(w->packets, 20);
  EXPECT_DOUBLE_EQ(w->seconds, 0.25);
  w = parse_reorder_window("0");
  ASSERT_TRUE(w);
  EXPECT_FALSE(w->enabled());
  for (const char* bad : {"", ",", "x", "-5", "5,", "1s,,2"}) EXPECT_FALSE(parse_reorder_window(bad)) << bad;
}

TEST_F(ServeOptions, CallLifecycleOptions) {
  parse("--reorder-window 30,500ms --idle-timeout 5s");
  EXPECT_EQ(config_.window.packets, 30);
  EXPECT_DOUBLE_EQ(config_.window.seconds, 0.5);
  EXPECT_EQ(config_.call_idle_timeout, milliseconds(5'000));
}

TEST_F(ServeOptions, FlagBeatsEnvironment) {
  set("AIPBX_PORT", "8123");
  set("AIPBX_KEEPALIVE_TIMEOUT", "10s");
  set("AIPBX_HOST", "10.0.0.1");
  parse("--port 9002 --keepalive-timeout 250ms");
  EXPECT_EQ(config_.port, 9002);
  EXPECT_EQ(config_.keepalive_timeout, milliseconds(250));
  EXPECT_EQ(config_.host, "10.0.0.1");  // no flag: the environment still applies
}

TEST_F(ServeOptions, InvalidFlagValuesThrow) {
  for (const char* args : {"--port abc", "--port 70000", "--port -1", "--blocking-threads 0",
                           "--body-limit 10", "--header-limit 1", "--max-batch 0", "--writer-queue 0",
                           "--request-timeout 5x", "--keepalive-timeout -1s", "--shutdown-timeout abc",
                           "--log-level loud", "--threads many", "--no-such-flag 1", "--port"}) {
    SCOPED_TRACE(args);
    CLI::App app{"aipbx serve"};
    serve_config c;
    add_serve_options(app, c);
    EXPECT_THROW(app.parse(args, false), CLI::ParseError);
  }
}

TEST_F(ServeOptions, InvalidValuesThrowSpecificErrors) {
  EXPECT_THROW(parse("--request-timeout 5x"), CLI::ValidationError);
}

TEST_F(ServeOptions, InvalidRangeIsValidationError) {
  EXPECT_THROW(parse("--blocking-threads 0"), CLI::ValidationError);
}

TEST_F(ServeOptions, NonNumberIsConversionError) {
  EXPECT_THROW(parse("--port abc"), CLI::ConversionError);
}

TEST_F(ServeOptions, InvalidEnvironmentValuesThrow) {
  for (const auto& [name, value] : std::map<std::string, std::string>{{"AIPBX_PORT", "eighty"},
                                                                      {"AIPBX_REQUEST_TIMEOUT", "soon"},
                                                                      {"AIPBX_LOG_LEVEL", "chatty"},
                                                                      {"AIPBX_MAX_BATCH", "0"}}) {
    SCOPED_TRACE(name);
    set(name.c_str(), value.c_str());
    CLI::App app{"aipbx serve"};
    serve_config c;
    add_serve_options(app, c);
    EXPECT_THROW(app.parse("", false), CLI::ParseError);
    ::unsetenv(name.c_str());
  }
}

TEST_F(ServeOptions, HelpMentionsEveryEnvironmentVariable) {
  const std::string help = app_.help();
  for (const char* name : variables) EXPECT_NE(help.find(name), std::string::npos) << name;
}

}  // namespace
}  // namespace aipbx::app
