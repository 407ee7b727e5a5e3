// aipbx: durable ingest of call audio packets with background speech-to-text.
#include "app/command_line.hpp"
#include "app/serve.hpp"

#include <iostream>

int main(int argc, char** argv) {
  auto parsed = aipbx::app::parse_command_line(argc, argv, std::cout, std::cerr);
  if (const int* code = std::get_if<int>(&parsed)) return *code;
  auto& command = std::get<aipbx::app::command_line>(parsed);
  if (command.what == aipbx::app::command::show_config) {
    std::cout << command.effective;
    return 0;
  }
  return aipbx::app::serve(command.config);
}
