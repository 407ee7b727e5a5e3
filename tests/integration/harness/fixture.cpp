#include "harness/fixture.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string_view>

namespace aipbx::itest {

bool run_known_bugs() {
  const char* v = std::getenv("AIPBX_IT_KNOWN_BUGS");
  return v != nullptr && std::string_view(v) == "run";
}

server_process& integration_test::start_server(server_flags flags) {
  server_ = std::make_unique<server_process>(dir_ / "aipbx.db", std::move(flags));
  server_->start();
  return *server_;
}

server_process& integration_test::restart_server(const server_flags& overrides) {
  if (!server_) throw std::logic_error("restart_server: no server was started");
  if (server_->running()) {
    const auto code = server_->stop(10s);
    EXPECT_EQ(code, std::optional<int>(0)) << "aipbx did not exit cleanly on SIGTERM before a restart";
  }
  server_->set_flags(overrides);
  server_->restart();
  return *server_;
}

void integration_test::TearDown() {
  if (!server_) return;
  if (server_->running()) {
    const auto code = server_->stop(10s);
    EXPECT_EQ(code, std::optional<int>(0)) << "aipbx did not exit cleanly on SIGTERM";
  }
  if (!allow_error_logs_) {
    const auto errors = server_->records_of_all_runs_where([this](const boost::json::object& r) {
      return string_field(r, "level") == "error" && allowed_error_msgs_.count(string_field(r, "msg")) == 0;
    });
    for (const auto& e : errors) ADD_FAILURE() << "error logged by aipbx: " << boost::json::serialize(e);
  }
  if (HasFailure())
    std::cerr << "---- last aipbx output ----\n" << server_->tail() << "---------------------------\n";
}

boost::json::object body_object(const http_response& r) {
  auto v = r.json();
  if (!v.is_object()) throw std::runtime_error("response body is not a JSON object: " + r.body);
  return std::move(v.as_object());
}

::testing::AssertionResult is_json_error(const http_response& r, int status) {
  if (r.status != status)
    return ::testing::AssertionFailure()
           << "status " << r.status << ", expected " << status << "; body: " << r.body;
  if (r.header("Content-Type").rfind("application/json", 0) != 0)
    return ::testing::AssertionFailure() << "Content-Type is '" << r.header("Content-Type") << "'";
  boost::system::error_code ec;
  auto v = boost::json::parse(r.body, ec);
  if (ec || !v.is_object()) return ::testing::AssertionFailure() << "body is not a JSON object: " << r.body;
  if (!v.as_object().contains("detail"))
    return ::testing::AssertionFailure() << "no \"detail\" in " << r.body;
  return ::testing::AssertionSuccess();
}

}  // namespace aipbx::itest
