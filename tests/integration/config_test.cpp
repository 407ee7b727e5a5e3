// Configuration through the real binary: `aipbx config` shows what flags, AIPBX_* variables and the
// --config TOML file add up to (secrets masked); `aipbx serve` runs with it; an invalid configuration stops
// start-up with exit code 2 and a message naming the file, line and key.
#include <fstream>

#include "harness/fixture.hpp"
#include "harness/run_binary.hpp"

namespace aipbx::itest {
namespace {

constexpr const char* token = "4f1c0e2d9b8a7c6d5e4f3a2b1c0d9e8f";

class ConfigTest : public integration_test {
 protected:
  std::string write(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }
};

TEST_F(ConfigTest, ConfigCommandPrintsTheEffectiveConfigurationWithSecretsMasked) {
  const auto file = write("aipbx.toml", std::string("port = 1111\nworkers = 2\nmax-batch = 64\napi-token = \"") +
                                            token + "\"\n[http-engine]\nkey = \"sk-file-secret-1\"\n");
  const auto run = run_aipbx({"config", "--config", file, "--port", "3333"},
                             {{"AIPBX_WORKERS", "5"}, {"AIPBX_DB", "postgresql://aipbx:pg-secret@127.0.0.1/aipbx"}});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  const auto& out = run.out;
  EXPECT_NE(out.find("port = 3333  # flag"), std::string::npos) << out;
  EXPECT_NE(out.find("workers = 5  # variable AIPBX_WORKERS"), std::string::npos) << out;
  EXPECT_NE(out.find("max-batch = 64  # config file"), std::string::npos) << out;
  EXPECT_NE(out.find("body-limit = 1048576  # default"), std::string::npos) << out;
  EXPECT_NE(out.find("api-token = ['***']"), std::string::npos) << out;
  EXPECT_NE(out.find("http-engine-key = '***'"), std::string::npos) << out;
  EXPECT_NE(out.find("db = 'postgresql://aipbx:***@127.0.0.1/aipbx'"), std::string::npos) << out;
  for (const char* secret : {token, "sk-file-secret-1", "pg-secret"}) EXPECT_EQ(out.find(secret), std::string::npos) << secret;
}

TEST_F(ConfigTest, InvalidConfigurationStopsStartUpWithAClearMessage) {
  struct bad_case {
    std::vector<std::string> args;
    std::vector<std::pair<std::string, std::string>> env;
    std::string message;
  };
  const auto unknown = write("unknown.toml", "port = 0\nmax-conections = 5\n");
  const auto invalid = write("invalid.toml", "port = 0\nrequest-timeout = \"forever\"\n");
  const auto syntax = write("syntax.toml", "port = 0\nhost = \"127.0.0.1\n");
  const std::vector<bad_case> cases{
      {{"serve", "--config", unknown}, {}, unknown + ":2:1: unknown key 'max-conections' (did you mean 'max-connections'?)"},
      {{"serve", "--config", invalid}, {}, invalid + ":2:1: request-timeout: "},
      {{"serve"}, {{"AIPBX_CONFIG", syntax}}, syntax + ":2:"},
      {{"serve", "--port", "0", "--max-batch", "0"}, {}, "--max-batch"},
      {{"serve", "--port", "0"}, {{"AIPBX_ENGINE", "magic"}}, "--engine"},
      {{"serve", "--port", "0", "--host", "0.0.0.0"}, {}, "not a loopback address and no API token is set"},
  };
  for (const auto& c : cases) {
    SCOPED_TRACE(c.message);
    auto args = c.args;
    args.insert(args.end(), {"--db", (dir_ / "never.db").string()});
    const auto run = run_aipbx(args, c.env);
    EXPECT_EQ(run.exit_code, 2) << run.err;
    EXPECT_NE(run.err.find("aipbx: invalid configuration: "), std::string::npos) << run.err;
    EXPECT_NE(run.err.find(c.message), std::string::npos) << run.err;
    EXPECT_EQ(run.err.find("listening"), std::string::npos) << run.err;
  }
  EXPECT_FALSE(std::filesystem::exists(dir_ / "never.db"));
}

TEST_F(ConfigTest, ServeRunsWithTheFileUnderVariablesAndFlags) {
  // The file sets both limits; the variable overrides the body limit, so a 300-byte body passes the 200 of the file.
  const auto file = write("aipbx.toml", "header-limit = 2048\nbody-limit = 200\n");
  server_ = std::make_unique<server_process>(dir_ / "aipbx.db", server_flags{{"--config", file}});
  server_->set_env("AIPBX_BODY_LIMIT", "400");
  server_->start();
  auto c = connect();
  EXPECT_EQ(c.request("GET", "/healthz", {}, {{"X-Pad", std::string(1500, 'a')}}).status, 200);
  const std::string body = packet_json(1, std::string(260, 'x'), 1);
  ASSERT_GT(body.size(), 200u);
  EXPECT_EQ(c.post_json("/v1/call/stream/from-file", body).status, 202);
  EXPECT_TRUE(is_json_error(c.post_json("/v1/call/stream/from-file", packet_json(2, std::string(500, 'x'), 1)), 413));
  auto big = connect();
  EXPECT_TRUE(is_json_error(big.request("GET", "/healthz", {}, {{"X-Pad", std::string(2100, 'a')}}), 431));
}

}  // namespace
}  // namespace aipbx::itest
