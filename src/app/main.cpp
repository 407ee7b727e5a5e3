// aipbx: durable ingest of call audio packets with background speech-to-text.
#include "app/config.hpp"
#include "app/serve.hpp"

#include <CLI/CLI.hpp>

int main(int argc, char** argv) {
  CLI::App app{"aipbx: durable ingest of live call audio, with speech-to-text in the background"};
  app.require_subcommand(1);
  aipbx::app::serve_config config;
  CLI::App* serve = app.add_subcommand("serve", "Run the HTTP service");
  aipbx::app::add_serve_options(*serve, config);
  CLI11_PARSE(app, argc, argv);
  if (*serve) return aipbx::app::serve(config);
  return 0;
}
