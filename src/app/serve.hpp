// `aipbx serve`: wires the store, the API and the HTTP server together, runs until SIGTERM/SIGINT, then
// shuts down gracefully: stop accepting, finish requests in flight, commit and close the store.
// The only place that knows every concrete type. Returns the process exit code; throws nothing.
#pragma once

#include "app/config.hpp"

namespace aipbx::app {

int serve(const serve_config& config);

}  // namespace aipbx::app
