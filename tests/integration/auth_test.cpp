// Bearer tokens through the real binary: every route but /healthz, /readyz, /metrics and the dashboard's
// page and assets needs one of the configured tokens (several at once, for rotation; from flags or a token
// file); a missing or wrong token is a 401 with WWW-Authenticate: Bearer and changes nothing; a non-loopback
// address without tokens refuses to start unless --insecure is given. (Servers bound to 0.0.0.0 are only
// ever spoken to on 127.0.0.1.)
#include <csignal>
#include <fstream>

#include "harness/fixture.hpp"
#include "harness/run_binary.hpp"

namespace aipbx::itest {
namespace {

constexpr const char* token_old = "old-0123456789abcdef0123456789";
constexpr const char* token_new = "new-fedcba9876543210fedcba9876";

header_list bearer(const std::string& token) { return {{"Authorization", "Bearer " + token}}; }

class AuthTest : public integration_test {
 protected:
  void expect_unauthorized(const http_response& r, bool invalid_token) {
    EXPECT_TRUE(is_json_error(r, 401)) << r.status << " " << r.body;
    const auto challenge = r.header("WWW-Authenticate");
    EXPECT_TRUE(challenge.starts_with("Bearer ")) << challenge;
    EXPECT_EQ(challenge.find("error=\"invalid_token\"") != std::string::npos, invalid_token) << challenge;
    EXPECT_EQ(body_object(r).at("error"), "unauthorized");
  }
};

TEST_F(AuthTest, MissingOrWrongTokenIs401AndRightTokensPass) {
  // (The harness keeps one value per flag, so the two tokens go comma-separated, as in AIPBX_API_TOKEN.)
  start_server({{"--api-token", std::string(token_old) + "," + token_new}});
  auto c = connect();
  const std::string body = packet_json(1, "x", 1);

  expect_unauthorized(c.get("/v1/calls"), false);
  expect_unauthorized(c.request("GET", "/v1/calls", {}, bearer("not-a-token-at-all-0000000")), true);
  expect_unauthorized(c.request("GET", "/v1/calls", {}, bearer(std::string(token_old) + "x")), true);
  expect_unauthorized(c.request("GET", "/v1/calls", {}, bearer(std::string(token_old).substr(1))), true);
  expect_unauthorized(c.request("GET", "/v1/calls", {}, {{"Authorization", std::string("Basic ") + token_old}}), true);
  expect_unauthorized(c.request("GET", "/v1/calls", {}, {{"Authorization", "Bearer"}}), true);
  expect_unauthorized(c.request("POST", "/v1/call/stream/locked", body, {{"Content-Type", "application/json"}}), false);
  expect_unauthorized(c.request("POST", "/v1/call/stream/locked", body,
                                {{"Content-Type", "application/json"}, {"Authorization", "Bearer wrong-token-0000000000"}}),
                      true);
  // Unknown paths and the documentation need a token as well.
  expect_unauthorized(c.get("/no/such/path"), false);
  expect_unauthorized(c.get("/openapi.json"), false);
  EXPECT_FALSE(db().call_exists("locked"));

  // Both tokens are accepted (rotation), the scheme in any case.
  EXPECT_EQ(c.request("GET", "/v1/calls", {}, bearer(token_old)).status, 200);
  EXPECT_EQ(c.request("GET", "/v1/calls", {}, bearer(token_new)).status, 200);
  EXPECT_EQ(c.request("GET", "/v1/calls", {}, {{"Authorization", std::string("bearer ") + token_new}}).status, 200);
  EXPECT_EQ(c.request("GET", "/no/such/path", {}, bearer(token_new)).status, 404);
  const auto r = c.request("POST", "/v1/call/stream/open", body,
                           {{"Content-Type", "application/json"}, {"Authorization", std::string("Bearer ") + token_old}});
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_EQ(db().packet_count("open"), 1);
}

TEST_F(AuthTest, HealthReadinessAndMetricsNeedNoToken) {
  start_server({{"--api-token", token_new}});
  auto c = connect();
  EXPECT_EQ(c.get("/healthz").status, 200);
  EXPECT_EQ(c.get("/readyz").status, 200);
  const auto m = c.get("/metrics");
  EXPECT_EQ(m.status, 200);
  // The refusals above and below are counted by route and status.
  expect_unauthorized(c.get("/v1/jobs"), false);
  EXPECT_NE(c.get("/metrics").body.find("status=\"401\""), std::string::npos);
}

// The dashboard's page and assets hold no data and a browser cannot send a header when it opens a page:
// they are served without a token; the page's own reads (here /v1/queue and /v1/nodes) are not.
TEST_F(AuthTest, TheDashboardPageNeedsNoTokenItsDataDoes) {
  start_server({{"--api-token", token_new}});
  auto c = connect();
  EXPECT_EQ(c.get("/").status, 200);
  EXPECT_EQ(c.get("/ui/dashboard.js").status, 200);
  EXPECT_EQ(c.get("/ui/dashboard.css").status, 200);
  EXPECT_EQ(c.get("/ui/other.js").status, 404);
  expect_unauthorized(c.get("/v1/queue"), false);
  expect_unauthorized(c.get("/v1/nodes"), false);
  EXPECT_EQ(c.request("GET", "/v1/queue", {}, bearer(token_new)).status, 200);
  EXPECT_EQ(c.request("GET", "/v1/nodes", {}, bearer(token_new)).status, 200);
}

TEST_F(AuthTest, TokensFromAFile) {
  const auto path = dir_ / "tokens";
  std::ofstream(path) << "# one token per line\n" << token_old << "\n\n" << token_new << "\n";
  start_server({{"--api-token-file", path.string()}});
  auto c = connect();
  expect_unauthorized(c.get("/v1/calls"), false);
  EXPECT_EQ(c.request("GET", "/v1/calls", {}, bearer(token_old)).status, 200);
  EXPECT_EQ(c.request("GET", "/v1/calls", {}, bearer(token_new)).status, 200);
  const auto listening = server().records_where(msg_is("listening"));
  ASSERT_FALSE(listening.empty());
  EXPECT_EQ(int_field(listening.back(), "api_tokens"), 2);
  for (const auto& line : server().all_lines()) EXPECT_EQ(line.find(token_old), std::string::npos) << line;
}

TEST_F(AuthTest, SighupReloadsTheTokenFile) {
  const auto path = dir_ / "tokens";
  std::ofstream(path) << token_old << "\n";
  start_server({{"--api-token-file", path.string()}});
  auto c = connect();
  EXPECT_EQ(c.request("GET", "/v1/calls", {}, bearer(token_old)).status, 200);
  expect_unauthorized(c.request("GET", "/v1/calls", {}, bearer(token_new)), true);

  // Rotation: both, then the new one alone; no restart, the connection stays open.
  std::ofstream(path) << token_old << "\n" << token_new << "\n";
  server().signal(SIGHUP);
  ASSERT_TRUE(server().wait_for_record(
      [](const boost::json::object& r) { return string_field(r, "msg") == "api tokens reloaded" && int_field(r, "api_tokens") == 2; },
      5s));
  EXPECT_EQ(c.request("GET", "/v1/calls", {}, bearer(token_old)).status, 200);
  EXPECT_EQ(c.request("GET", "/v1/calls", {}, bearer(token_new)).status, 200);
  std::ofstream(path) << token_new << "\n";
  server().signal(SIGHUP);
  ASSERT_TRUE(server().wait_for_record(
      [](const boost::json::object& r) { return string_field(r, "msg") == "api tokens reloaded" && int_field(r, "api_tokens") == 1; },
      5s));
  expect_unauthorized(c.request("GET", "/v1/calls", {}, bearer(token_old)), true);
  EXPECT_EQ(c.request("GET", "/v1/calls", {}, bearer(token_new)).status, 200);

  // A file that went bad leaves the tokens in force.
  allow_error_log("api tokens not reloaded; the tokens in force stay");
  std::ofstream(path) << "# emptied by mistake\n";
  server().signal(SIGHUP);
  ASSERT_TRUE(server().wait_for_record(msg_is("api tokens not reloaded; the tokens in force stay"), 5s));
  EXPECT_EQ(c.request("GET", "/v1/calls", {}, bearer(token_new)).status, 200);
  expect_unauthorized(c.get("/v1/calls"), false);
}

TEST_F(AuthTest, NonLoopbackAddressWithoutTokensRefusesToStart) {
  const auto run = run_aipbx({"serve", "--host", "0.0.0.0", "--port", "0", "--db", (dir_ / "x.db").string()});
  EXPECT_EQ(run.exit_code, 2) << run.err;
  EXPECT_NE(run.err.find("--host 0.0.0.0 is not a loopback address and no API token is set"), std::string::npos)
      << run.err;
  EXPECT_FALSE(std::filesystem::exists(dir_ / "x.db"));
}

TEST_F(AuthTest, NonLoopbackAddressStartsWithInsecureOrWithTokens) {
  start_server({{"--host", "0.0.0.0"}, {"--insecure", ""}});
  auto listening = server().records_where(msg_is("listening"));
  ASSERT_FALSE(listening.empty());
  EXPECT_EQ(string_field(listening.back(), "address"), "0.0.0.0");
  EXPECT_EQ(connect().get("/v1/calls").status, 200);  // no tokens: open, as asked

  server().stop();
  server_ = std::make_unique<server_process>(dir_ / "aipbx.db", server_flags{{"--host", "0.0.0.0"}});
  server_->set_env("AIPBX_API_TOKEN", std::string(token_old) + "," + token_new);
  server_->start();
  auto c = connect();
  expect_unauthorized(c.get("/v1/calls"), false);
  EXPECT_EQ(c.request("GET", "/v1/calls", {}, bearer(token_new)).status, 200);
}

}  // namespace
}  // namespace aipbx::itest
