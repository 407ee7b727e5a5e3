#include "app/command_line.hpp"

#include "support/temp_dir.hpp"

#include <toml++/toml.h>

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <map>
#include <sstream>
#include <unistd.h>

namespace aipbx::app {
namespace {

// Runs parse_command_line with the variables given set (and every other AIPBX_* one cleared), in a temp dir
// for config and token files.
class CommandLine : public ::testing::Test {
 protected:
  void SetUp() override {
    for (char** e = environ; *e != nullptr; ++e) {
      const std::string entry(*e);
      if (entry.starts_with("AIPBX_")) saved_[entry.substr(0, entry.find('='))] = entry.substr(entry.find('=') + 1);
    }
    for (const auto& [name, value] : saved_) ::unsetenv(name.c_str());
  }
  void TearDown() override {
    for (const auto& name : set_) ::unsetenv(name.c_str());
    for (const auto& [name, value] : saved_) ::setenv(name.c_str(), value.c_str(), 1);
  }

  void env(const std::string& name, const std::string& value) {
    ::setenv(name.c_str(), value.c_str(), 1);
    set_.push_back(name);
  }
  std::string file(const std::string& name, const std::string& text) {
    const auto path = dir_ / name;
    std::ofstream(path) << text;
    return path.string();
  }

  // The parsed command line; fails the test if parsing stopped.
  command_line parse(std::vector<std::string> args) {
    auto out = run(std::move(args));
    if (auto* code = std::get_if<int>(&out)) {
      ADD_FAILURE() << "stopped with " << *code << ": " << err_.str();
      return {};
    }
    return std::get<command_line>(out);
  }
  // The exit code of a parse expected to stop; its message is in err_.
  int refuse(std::vector<std::string> args) {
    auto out = run(std::move(args));
    if (auto* code = std::get_if<int>(&out)) return *code;
    ADD_FAILURE() << "accepted";
    return 0;
  }
  std::variant<command_line, int> run(std::vector<std::string> args) {
    args.insert(args.begin(), "aipbx");
    std::vector<const char*> argv;
    for (const auto& a : args) argv.push_back(a.c_str());
    out_.str({});
    err_.str({});
    return parse_command_line(static_cast<int>(argv.size()), argv.data(), out_, err_);
  }

  test::temp_dir dir_{"aipbx-cli"};
  std::ostringstream out_, err_;
  std::map<std::string, std::string> saved_;
  std::vector<std::string> set_;
};

constexpr const char* token_a = "0123456789abcdef0123456789abcdef";
constexpr const char* token_b = "fedcba9876543210fedcba9876543210";

TEST_F(CommandLine, FlagBeatsVariableBeatsFileBeatsDefault) {
  const auto path = file("a.toml", "port = 1111\nrequest-timeout = \"3s\"\nworkers = 7\nlog-level = \"error\"\n");
  env("AIPBX_PORT", "2222");
  env("AIPBX_REQUEST_TIMEOUT", "4s");
  const auto c = parse({"serve", "--config", path, "--port", "3333"}).config;
  EXPECT_EQ(c.port, 3333);                                      // flag over variable and file
  EXPECT_EQ(c.request_timeout, std::chrono::milliseconds(4000));  // variable over file
  EXPECT_EQ(c.workers, 7u);                                     // file over default
  EXPECT_EQ(c.log_level, log::level::error);
  EXPECT_EQ(c.max_batch, serve_config{}.max_batch);             // default
}

TEST_F(CommandLine, ConfigFileFromTheVariable) {
  env("AIPBX_CONFIG", file("a.toml", "port = 1234\n"));
  EXPECT_EQ(parse({"serve"}).config.port, 1234);
}

TEST_F(CommandLine, TablesArraysAndBooleans) {
  const auto path = file("a.toml", std::string("insecure = true\nhost = \"0.0.0.0\"\napi-token = [\"") + token_a +
                                       "\", \"" + token_b + "\"]\n[http-engine]\nurl = \"http://127.0.0.1:9\"\n"
                                       "timeout = \"2s\"\n");
  const auto c = parse({"serve", "--config", path}).config;
  EXPECT_TRUE(c.insecure);
  EXPECT_EQ(c.host, "0.0.0.0");
  EXPECT_EQ(c.api_tokens, (std::vector<std::string>{token_a, token_b}));
  EXPECT_EQ(c.http_engine_url, "http://127.0.0.1:9");
  EXPECT_EQ(c.http_engine_timeout, std::chrono::milliseconds(2000));
}

TEST_F(CommandLine, UnknownKeyNamesFileLineAndNearestKey) {
  const auto path = file("a.toml", "port = 1\n\nprot = 2\n");
  EXPECT_EQ(refuse({"serve", "--config", path}), invalid_config_exit);
  const auto message = err_.str();
  EXPECT_NE(message.find(path + ":3:1: unknown key 'prot'"), std::string::npos) << message;
  EXPECT_NE(message.find("did you mean 'port'"), std::string::npos) << message;
}

TEST_F(CommandLine, InvalidFileValuesNameTheirLine) {
  for (const auto& [text, expected] : std::map<std::string, std::string>{
           {"\nport = 99999\n", ":2:1: port:"},
           {"request-timeout = \"soon\"\n", ":1:1: request-timeout:"},
           {"engine = \"magic\"\n", ":1:1: engine:"},
           {"insecure = \"yes\"\n", ":1:1: insecure: expected true or false"},
           {"port = 1979-05-27\n", ":1:1: port: expected a string, a number"},
           {"port = \n", ":1:8:"},
           {"config = \"other.toml\"\n", "unknown key 'config'"},
           {"api-token = []\n", "api-token: the array is empty"},
       }) {
    SCOPED_TRACE(text);
    const auto path = file("bad.toml", text);
    EXPECT_EQ(refuse({"serve", "--config", path}), invalid_config_exit);
    EXPECT_NE(err_.str().find(expected), std::string::npos) << err_.str();
    EXPECT_TRUE(err_.str().starts_with("aipbx: invalid configuration: ")) << err_.str();
  }
}

TEST_F(CommandLine, MissingConfigFileIsAnError) {
  EXPECT_EQ(refuse({"serve", "--config", (dir_ / "none.toml").string()}), invalid_config_exit);
  EXPECT_NE(err_.str().find("none.toml"), std::string::npos) << err_.str();
}

TEST_F(CommandLine, InvalidFlagsAndVariablesStop) {
  EXPECT_EQ(refuse({"serve", "--port", "x"}), invalid_config_exit);
  EXPECT_NE(err_.str().find("--port"), std::string::npos) << err_.str();
  env("AIPBX_WORKERS", "many");
  EXPECT_EQ(refuse({"config"}), invalid_config_exit);
  EXPECT_NE(err_.str().find("--workers"), std::string::npos) << err_.str();
}

TEST_F(CommandLine, HelpExitsZero) {
  EXPECT_EQ(refuse({"serve", "--help"}), 0);
  EXPECT_NE(out_.str().find("--config"), std::string::npos);
  EXPECT_NE(out_.str().find("AIPBX_API_TOKEN"), std::string::npos);
}

TEST_F(CommandLine, ShowConfigMasksSecretsAndNamesSources) {
  const auto path = file("a.toml", std::string("api-token = \"") + token_a + "\"\nworkers = 3\n");
  env("AIPBX_HTTP_ENGINE_KEY", "sk-very-secret-key");
  env("AIPBX_DB", "postgresql://aipbx:hunter2-password@127.0.0.1/aipbx");
  const auto c = parse({"config", "--config", path, "--port", "9001"});
  ASSERT_EQ(c.what, command::show_config);
  const std::string& text = c.effective;
  EXPECT_EQ(text.find(token_a), std::string::npos) << text;
  EXPECT_EQ(text.find("sk-very-secret-key"), std::string::npos) << text;
  EXPECT_EQ(text.find("hunter2"), std::string::npos) << text;
  EXPECT_NE(text.find("api-token = ['***']  # config file"), std::string::npos) << text;
  EXPECT_NE(text.find("http-engine-key = '***'  # variable AIPBX_HTTP_ENGINE_KEY"), std::string::npos) << text;
  EXPECT_NE(text.find("db = 'postgresql://aipbx:***@127.0.0.1/aipbx'"), std::string::npos) << text;
  EXPECT_NE(text.find("port = 9001  # flag"), std::string::npos) << text;
  EXPECT_NE(text.find("workers = 3  # config file"), std::string::npos) << text;
  EXPECT_NE(text.find("request-timeout = '30s'  # default"), std::string::npos) << text;
}

TEST_F(CommandLine, ShownConfigurationReadsBack) {
  const auto first = parse({"config", "--port", "4321", "--reorder-window", "20,500ms", "--log-level", "debug"});
  const auto path = file("round.toml", first.effective);
  ASSERT_NO_THROW((void)toml::parse(first.effective)) << first.effective;
  const auto again = parse({"serve", "--config", path}).config;
  EXPECT_EQ(again.port, 4321);
  EXPECT_EQ(again.window.packets, 20);
  EXPECT_DOUBLE_EQ(again.window.seconds, 0.5);
  EXPECT_EQ(again.log_level, log::level::debug);
  EXPECT_EQ(again.request_timeout, serve_config{}.request_timeout);
}

TEST_F(CommandLine, TokenFileAndFlagTokensMerge) {
  const auto path = file("tokens", std::string("# rotated 2026-11\n") + token_a + "\n\n  " + token_b + "  \n");
  const auto c = parse({"serve", "--api-token-file", path, "--api-token", "abcdefabcdefabcdefab"}).config;
  EXPECT_EQ(all_api_tokens(c), (std::vector<std::string>{"abcdefabcdefabcdefab", token_a, token_b}));
}

TEST_F(CommandLine, BadTokensStop) {
  EXPECT_EQ(refuse({"serve", "--api-token", "short"}), invalid_config_exit);
  EXPECT_NE(err_.str().find("at least 16"), std::string::npos) << err_.str();
  EXPECT_EQ(refuse({"serve", "--api-token-file", file("t", std::string(token_a) + "\nwith space in it!!\n")}),
            invalid_config_exit);
  EXPECT_NE(err_.str().find("line 2"), std::string::npos) << err_.str();
  EXPECT_EQ(refuse({"serve", "--api-token-file", file("empty", "# none yet\n")}), invalid_config_exit);
  EXPECT_NE(err_.str().find("holds no token"), std::string::npos) << err_.str();
  EXPECT_EQ(refuse({"serve", "--api-token-file", (dir_ / "absent").string()}), invalid_config_exit);
  EXPECT_NE(err_.str().find("cannot read"), std::string::npos) << err_.str();
}

TEST_F(CommandLine, NonLoopbackNeedsTokensOrInsecure) {
  for (const char* host : {"0.0.0.0", "::", "192.0.2.1", "example.com"}) {
    SCOPED_TRACE(host);
    EXPECT_EQ(refuse({"serve", "--host", host}), invalid_config_exit);
    EXPECT_NE(err_.str().find("not a loopback address"), std::string::npos) << err_.str();
    EXPECT_TRUE(parse({"serve", "--host", host, "--insecure"}).config.insecure);
    EXPECT_EQ(parse({"serve", "--host", host, "--api-token", token_a}).config.api_tokens.size(), 1u);
    const auto token_file = file("tokens", std::string(token_b) + "\n");
    EXPECT_EQ(parse({"serve", "--host", host, "--api-token-file", token_file}).config.api_file_tokens.size(), 1u);
  }
  for (const char* host : {"127.0.0.1", "127.1.2.3", "::1", "localhost"}) EXPECT_EQ(parse({"serve", "--host", host}).config.host, host);
}

TEST_F(CommandLine, TlsNeedsCertificateAndKey) {
  EXPECT_EQ(refuse({"serve", "--tls-cert", file("cert.pem", "x")}), invalid_config_exit);
  EXPECT_NE(err_.str().find("--tls-cert and --tls-key go together"), std::string::npos) << err_.str();
  EXPECT_EQ(refuse({"serve", "--tls-cert", file("cert.pem", "not a certificate"), "--tls-key",
                    file("key.pem", "not a key")}),
            invalid_config_exit);
  EXPECT_NE(err_.str().find("cannot load the TLS certificate"), std::string::npos) << err_.str();
  EXPECT_EQ(refuse({"serve", "--tls-cert", (dir_ / "absent.pem").string(), "--tls-key", file("key.pem", "x")}),
            invalid_config_exit);
  EXPECT_NE(err_.str().find("cannot read the TLS certificate file"), std::string::npos) << err_.str();
}

TEST(MaskSecretParts, UrlPasswordsAndPasswordFields) {
  EXPECT_EQ(mask_secret_parts("postgresql://u:pw@h:5432/db"), "postgresql://u:***@h:5432/db");
  EXPECT_EQ(mask_secret_parts("postgresql://u@h/db"), "postgresql://u@h/db");
  EXPECT_EQ(mask_secret_parts("http://h:80/p@x"), "http://h:80/p@x");
  EXPECT_EQ(mask_secret_parts("host=h password=secret dbname=x"), "host=h password=*** dbname=x");
  EXPECT_EQ(mask_secret_parts("./aipbx.db"), "./aipbx.db");
}

}  // namespace
}  // namespace aipbx::app
