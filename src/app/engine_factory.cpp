#include "app/engine_factory.hpp"

#include "engines/http_engine.hpp"
#include "engines/mock_engine.hpp"
#include "engines/pocketsphinx_engine.hpp"

#include <algorithm>
#include <stdexcept>

namespace aipbx::app {

namespace {

void require_audio(const serve_config& config) {
  if (!config.media.carries_audio())
    throw std::invalid_argument("--engine " + config.engine +
                                " transcribes audio: set --media to the calls' format (pcmu/8000, pcma/8000, "
                                "l16/8000 or l16/16000)");
}

}  // namespace

std::unique_ptr<engines::ai_engine> make_engine(const serve_config& config, random_source& random) {
  if (config.engine == "mock")
    return std::make_unique<engines::mock_engine>(
        engines::mock_options{config.mock_min_delay, config.mock_max_delay, config.mock_failure_rate}, random);
  if (config.engine == "http") {
    require_audio(config);
    if (config.http_engine_url.empty())
      throw std::invalid_argument("--engine http needs --http-engine-url (e.g. http://127.0.0.1:8080)");
    engines::http_engine_options o;
    o.url = config.http_engine_url;
    o.model = config.http_engine_model;
    o.api_key = config.http_engine_key;
    o.timeout = config.http_engine_timeout;
    o.media = config.media;
    return std::make_unique<engines::http_engine>(std::move(o));
  }
  if (config.engine == "pocketsphinx") {
    require_audio(config);
    engines::pocketsphinx_options o;
    if (!config.pocketsphinx_hmm.empty()) o.hmm = config.pocketsphinx_hmm;
    if (!config.pocketsphinx_dict.empty()) o.dict = config.pocketsphinx_dict;
    if (!config.pocketsphinx_lm.empty()) o.lm = config.pocketsphinx_lm;
    o.grammar = config.pocketsphinx_grammar;
    o.keywords = config.pocketsphinx_keywords;
    o.decoders = std::max(1u, config.workers);  // one decoder per attempt that can run at once
    o.media = config.media;
    return std::make_unique<engines::pocketsphinx_engine>(std::move(o));
  }
  throw std::invalid_argument("unknown --engine '" + config.engine + "': expected mock, http or pocketsphinx");
}

}  // namespace aipbx::app
