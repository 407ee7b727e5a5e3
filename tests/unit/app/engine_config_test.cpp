// The engine options of `aipbx serve` and the engine they build.
#include "app/config.hpp"
#include "app/engine_factory.hpp"

#include <CLI/CLI.hpp>
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdlib>
#include <map>
#include <string>
#include <utility>
#include <vector>

namespace aipbx::app {
namespace {

class EngineOptions : public ::testing::Test {
 protected:
  static constexpr const char* variables[] = {
      "AIPBX_ENGINE",           "AIPBX_MEDIA",           "AIPBX_HTTP_ENGINE_URL",  "AIPBX_HTTP_ENGINE_MODEL",
      "AIPBX_HTTP_ENGINE_KEY",  "AIPBX_HTTP_ENGINE_TIMEOUT", "AIPBX_POCKETSPHINX_HMM", "AIPBX_POCKETSPHINX_DICT",
      "AIPBX_POCKETSPHINX_LM",  "AIPBX_POCKETSPHINX_GRAMMAR", "AIPBX_POCKETSPHINX_KEYWORDS", "AIPBX_WORKERS",
      "AIPBX_POCKETSPHINX_MAXHMMPF", "AIPBX_POCKETSPHINX_WBEAM"};

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
      if (it != saved_.end()) ::setenv(name, it->second.c_str(), 1);
      else ::unsetenv(name);
    }
  }
  void parse(const std::string& args) { app_.parse(args, false); }

  CLI::App app_{"aipbx serve"};
  serve_config config_;
  std::map<std::string, std::string> saved_;
  seeded_random random_{1};
};

TEST_F(EngineOptions, Defaults) {
  parse("");
  EXPECT_EQ(config_.engine, "mock");
  EXPECT_EQ(config_.media, media::media_format::none());
  EXPECT_EQ(config_.http_engine_url, "");
  EXPECT_EQ(config_.http_engine_model, "whisper-1");
  EXPECT_EQ(config_.http_engine_key, "");
  EXPECT_EQ(config_.http_engine_timeout, std::chrono::seconds(60));
  EXPECT_EQ(config_.pocketsphinx_hmm, "");
  EXPECT_EQ(config_.pocketsphinx_grammar, "");
}

TEST_F(EngineOptions, HttpFlags) {
  parse("--engine http --media pcma/8000 --http-engine-url http://127.0.0.1:8080 --http-engine-model large-v3 "
        "--http-engine-key sk-1 --http-engine-timeout 15s");
  EXPECT_EQ(config_.engine, "http");
  EXPECT_EQ(config_.media, media::media_format::pcma());
  EXPECT_EQ(config_.http_engine_url, "http://127.0.0.1:8080");
  EXPECT_EQ(config_.http_engine_model, "large-v3");
  EXPECT_EQ(config_.http_engine_key, "sk-1");
  EXPECT_EQ(config_.http_engine_timeout, std::chrono::seconds(15));
}

TEST_F(EngineOptions, KeyAndMediaFromTheEnvironment) {
  ::setenv("AIPBX_HTTP_ENGINE_KEY", "sk-from-env", 1);
  ::setenv("AIPBX_MEDIA", "l16/16000", 1);
  ::setenv("AIPBX_ENGINE", "pocketsphinx", 1);
  parse("");
  EXPECT_EQ(config_.http_engine_key, "sk-from-env");
  EXPECT_EQ(config_.media, media::media_format::l16(16000));
  EXPECT_EQ(config_.engine, "pocketsphinx");
}

TEST_F(EngineOptions, PocketsphinxFlags) {
  parse("--engine pocketsphinx --media pcmu/8000 --pocketsphinx-hmm /m/hmm --pocketsphinx-dict /m/d.dict "
        "--pocketsphinx-lm /m/lm.bin --pocketsphinx-grammar /m/g.gram");
  EXPECT_EQ(config_.pocketsphinx_hmm, "/m/hmm");
  EXPECT_EQ(config_.pocketsphinx_dict, "/m/d.dict");
  EXPECT_EQ(config_.pocketsphinx_lm, "/m/lm.bin");
  EXPECT_EQ(config_.pocketsphinx_grammar, "/m/g.gram");
}

// Each search setting becomes the pocketsphinx flag it names, once, with its last value; unset ones are
// not passed (pocketsphinx's defaults).
TEST_F(EngineOptions, PocketsphinxSearchSettings) {
  ::setenv("AIPBX_POCKETSPHINX_WBEAM", "1e-20", 1);
  parse("--pocketsphinx-maxhmmpf 3000 --pocketsphinx-fwdflat no --pocketsphinx-pl-window 0");
  using setting = std::pair<std::string, std::string>;
  std::vector<setting> got = config_.pocketsphinx_settings;
  std::sort(got.begin(), got.end());
  EXPECT_EQ(got, (std::vector<setting>{
                     {"-fwdflat", "no"}, {"-maxhmmpf", "3000"}, {"-pl_window", "0"}, {"-wbeam", "1e-20"}}));
  EXPECT_THROW(parse("--pocketsphinx-ds 0"), CLI::ValidationError);
  EXPECT_THROW(parse("--pocketsphinx-fwdflat maybe"), CLI::ValidationError);
  EXPECT_THROW(parse("--pocketsphinx-beam 2"), CLI::ValidationError);
}

TEST_F(EngineOptions, InvalidValuesAreRefused) {
  EXPECT_THROW(parse("--engine whisper"), CLI::ValidationError);
  EXPECT_THROW(parse("--media opus/48000"), CLI::ValidationError);
  EXPECT_THROW(parse("--http-engine-timeout 5x"), CLI::ValidationError);
}

TEST_F(EngineOptions, GrammarAndKeywordsExcludeEachOther) {
  EXPECT_THROW(parse("--pocketsphinx-grammar /g.gram --pocketsphinx-keywords /k.kws"), CLI::ExcludesError);
}

TEST_F(EngineOptions, FactoryBuildsTheNamedEngine) {
  parse("");
  EXPECT_EQ(make_engine(config_, random_)->name(), "mock");
  serve_config http = config_;
  http.engine = "http";
  http.media = media::media_format::pcmu();
  http.http_engine_url = "http://127.0.0.1:9";
  EXPECT_EQ(make_engine(http, random_)->name(), "http");
}

TEST_F(EngineOptions, FactoryRefusesOptionsThatDoNotFit) {
  serve_config c;
  c.engine = "http";
  c.media = media::media_format::pcmu();
  EXPECT_THROW(make_engine(c, random_), std::invalid_argument);  // no URL
  c.http_engine_url = "https://api.example.com";
  EXPECT_THROW(make_engine(c, random_), std::invalid_argument);  // https is not supported
  c.http_engine_url = "http://127.0.0.1:9";
  // --media none is no reason to refuse: calls may declare their own format.
  c.media = media::media_format::none();
  EXPECT_EQ(make_engine(c, random_)->name(), "http");
  c.engine = "pocketsphinx";
  c.pocketsphinx_hmm = "/nonexistent/hmm";
  EXPECT_THROW(make_engine(c, random_), std::runtime_error);
}

}  // namespace
}  // namespace aipbx::app
