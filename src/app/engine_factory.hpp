// Builds the speech-to-text engine that `--engine` names, from the serve configuration. The app layer is
// the only one that knows every concrete engine.
//
// Throws std::invalid_argument when the options do not fit the engine (http without --http-engine-url),
// and whatever the engine's constructor throws (a bad URL, a
// model that cannot be loaded): start-up failures, each with a message naming the option.
#pragma once

#include "app/config.hpp"
#include "domain/random.hpp"
#include "engines/ai_engine.hpp"

#include <memory>

namespace aipbx::app {

// `random` is the mock's source; it must outlive the engine.
std::unique_ptr<engines::ai_engine> make_engine(const serve_config& config, random_source& random);

}  // namespace aipbx::app
