// The `aipbx` command line: `aipbx serve` runs the service, `aipbx config` prints the configuration
// `serve` would run with. Both take the same options.
//
// Each option of `serve` can be given in four places; the first that has it wins:
//   1. a flag (`--port 9000`),
//   2. its AIPBX_* environment variable (`AIPBX_PORT=9000`),
//   3. a key of the TOML file named by --config or AIPBX_CONFIG (`port = 9000`),
//   4. its default.
// The file's keys are the flags' long names without the dashes; a table's keys are joined to its name by
// a dash (`[http-engine]` + `url` is `http-engine-url`); an array gives a repeatable option several values.
// A file value is parsed and checked exactly as the flag would be. A syntax error, an unknown key, a value
// of a kind that no option takes (dates, nested arrays) or an invalid value stops with a message that names
// the file, the line and the key; so does an invalid flag or variable, naming the option.
//
// `aipbx config` prints the effective configuration as TOML that --config reads back: one line per option
// with where its value came from, secrets masked (tokens, keys, passwords, the password of a database URL).
#pragma once

#include "app/config.hpp"

#include <ostream>
#include <string>
#include <variant>
#include <vector>

namespace aipbx::app {

// Exit code of every invalid configuration (flags, variables, file, or what check_config refuses).
inline constexpr int invalid_config_exit = 2;

enum class command { serve, show_config };

struct command_line {
  command what = command::serve;
  serve_config config;    // filled from every source and passed through check_config
  std::string effective;  // for show_config: the effective configuration as TOML, secrets masked
};

// Parses the command line, the environment and the --config file. Returns the command, or the exit code to
// stop with: 0 after --help (printed to `out`), invalid_config_exit after an error (its message on `err`).
std::variant<command_line, int> parse_command_line(int argc, const char* const* argv, std::ostream& out,
                                                   std::ostream& err);

// One key of a config file: the option's long name, its values as the flag would take them, and
// "path:line:column" of the key for messages.
struct file_setting {
  std::string name;
  std::vector<std::string> values;
  bool boolean = false;  // the value was a TOML boolean
  std::string where;
};

// Reads a TOML config file. Throws std::invalid_argument naming the file, line and column on a syntax error or
// a value of a kind no option takes; does not know which keys exist.
std::vector<file_setting> read_config_file(const std::string& path);

// `value` with a secret part replaced by "***": the password of a URL's user info, a `password=` field.
std::string mask_secret_parts(std::string value);

}  // namespace aipbx::app
