#include "app/engine_factory.hpp"

#include "engines/http_engine.hpp"
#include "engines/mock_engine.hpp"
#include "engines/pocketsphinx_engine.hpp"

#include <algorithm>
#include <stdexcept>

namespace aipbx::app {

std::unique_ptr<engines::ai_engine> make_engine(const serve_config& config, random_source& random) {
  if (config.engine == "mock")
    return std::make_unique<engines::mock_engine>(
        engines::mock_options{config.mock_min_delay, config.mock_max_delay, config.mock_failure_rate}, random);
  if (config.engine == "http") {
    if (config.http_engine_url.empty())
      throw std::invalid_argument("--engine http needs --http-engine-url (e.g. http://127.0.0.1:8080)");
    engines::http_engine_options o;
    o.url = config.http_engine_url;
    o.model = config.http_engine_model;
    o.api_key = config.http_engine_key;
    o.timeout = config.http_engine_timeout;
    return std::make_unique<engines::http_engine>(std::move(o));
  }
  if (config.engine == "pocketsphinx") {
    engines::pocketsphinx_options o;
    if (!config.pocketsphinx_hmm.empty()) o.hmm = config.pocketsphinx_hmm;
    if (!config.pocketsphinx_dict.empty()) o.dict = config.pocketsphinx_dict;
    if (!config.pocketsphinx_lm.empty()) o.lm = config.pocketsphinx_lm;
    o.grammar = config.pocketsphinx_grammar;
    o.keywords = config.pocketsphinx_keywords;
    o.settings = config.pocketsphinx_settings;
    o.decoders = std::max(1u, config.workers);  // one decoder per attempt that can run at once
    return std::make_unique<engines::pocketsphinx_engine>(std::move(o));
  }
  throw std::invalid_argument("unknown --engine '" + config.engine + "': expected mock, http or pocketsphinx");
}

}  // namespace aipbx::app
