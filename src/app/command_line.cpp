#include "app/command_line.hpp"

#include <toml++/toml.h>

#include <CLI/CLI.hpp>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>

namespace aipbx::app {

namespace {

// The whole `aipbx` command line. Built afresh for every parse: CLI11 keeps the results of a parse in its
// options. Each subcommand has its own serve_config: CLI11 applies the environment to the options of
// subcommands that were not chosen as well.
struct cli {
  CLI::App app{"aipbx: durable ingest of live call audio, with speech-to-text in the background"};
  serve_config configs[2];
  std::string config_files[2];
  CLI::App* serve = nullptr;
  CLI::App* show = nullptr;

  cli() {
    app.require_subcommand(1);
    serve = app.add_subcommand("serve", "Run the HTTP service");
    show = app.add_subcommand("config",
                              "Print the configuration `serve` would run with, as TOML (secrets masked), and "
                              "check it; takes the same options");
    for (int i = 0; i < 2; ++i) {
      CLI::App* sub = i == 0 ? serve : show;
      add_serve_options(*sub, configs[i]);
      sub->add_option("--config", config_files[i],
                      "TOML file of options (keys: the flags' names without dashes); a flag or an AIPBX_* "
                      "variable wins over the file")
          ->envname("AIPBX_CONFIG")
          ->type_name("PATH");
    }
  }

  CLI::App& chosen() { return *show ? *show : *serve; }
  serve_config& config() { return *show ? configs[1] : configs[0]; }
  const std::string& config_file() { return *show ? config_files[1] : config_files[0]; }

  void parse(const std::vector<std::string>& args) {
    std::vector<const char*> argv;
    argv.reserve(args.size());
    for (const auto& a : args) argv.push_back(a.c_str());
    app.parse(static_cast<int>(argv.size()), argv.data());
  }
};

std::string position(const std::string& path, const toml::source_region& where) {
  return path + ":" + std::to_string(where.begin.line) + ":" + std::to_string(where.begin.column);
}

std::string scalar_text(const toml::node& node, const std::string& name, const std::string& where, bool& boolean) {
  if (auto v = node.value_exact<std::string>()) return *v;
  if (auto v = node.value_exact<std::int64_t>()) return std::to_string(*v);
  if (auto v = node.value_exact<double>()) {
    char buf[64];
    auto [end, ec] = std::to_chars(buf, buf + sizeof buf, *v);
    return std::string(buf, end);
  }
  if (auto v = node.value_exact<bool>()) {
    boolean = true;
    return *v ? "true" : "false";
  }
  throw std::invalid_argument(where + ": " + name + ": expected a string, a number, a boolean or an array of them");
}

void flatten(const toml::table& table, const std::string& prefix, const std::string& path,
             std::vector<file_setting>& out) {
  for (auto&& [key, node] : table) {
    const std::string name = prefix.empty() ? std::string(key.str()) : prefix + "-" + std::string(key.str());
    const std::string where = position(path, key.source());
    if (const auto* sub = node.as_table()) {
      flatten(*sub, name, path, out);
      continue;
    }
    file_setting s{name, {}, false, where};
    if (const auto* array = node.as_array()) {
      for (const auto& element : *array) s.values.push_back(scalar_text(element, name, where, s.boolean));
    } else {
      s.values.push_back(scalar_text(node, name, where, s.boolean));
    }
    out.push_back(std::move(s));
  }
}

// The long name of `opt` without its dashes ("port" for --port).
std::string key_of(const CLI::Option& opt) { return opt.get_lnames().empty() ? opt.get_name() : opt.get_lnames().front(); }

bool is_flag(const CLI::Option& opt) { return opt.get_expected_min() == 0; }

bool is_secret(const std::string& name) {
  static const std::set<std::string> secrets{"api-token", "http-engine-key"};
  return secrets.contains(name) || name.find("password") != std::string::npos ||
         name.find("secret") != std::string::npos;
}

// Levenshtein distance, for "did you mean" on unknown keys.
std::size_t distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> row(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    std::size_t diagonal = row[0];
    row[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j) {
      const std::size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

std::string unknown_key_message(CLI::App& sub, const file_setting& s) {
  std::string message = s.where + ": unknown key '" + s.name + "'";
  std::string best;
  std::size_t best_distance = 3;
  for (const CLI::Option* opt : sub.get_options()) {
    const std::string key = key_of(*opt);
    const std::size_t d = distance(key, s.name);
    if (d < best_distance && key != "help" && key != "config") {
      best_distance = d;
      best = key;
    }
  }
  if (!best.empty()) message += " (did you mean '" + best + "'?)";
  return message + "; keys are the long names of `aipbx serve --help` without the dashes";
}

// A value as TOML: integers, simple decimals and booleans bare, everything else a quoted string.
std::string toml_text(const std::string& value, bool flag) {
  if (flag) return value;
  const bool number = !value.empty() && std::all_of(value.begin(), value.end(), [](char c) {
    return (c >= '0' && c <= '9') || c == '.' || c == '-';
  }) && value.find_first_of("0123456789") == 0 && std::count(value.begin(), value.end(), '.') <= 1 &&
                      value.find('-') == std::string::npos && value.back() != '.';
  if (number && !(value.size() > 1 && value[0] == '0' && value[1] != '.')) return value;
  std::ostringstream out;
  out << toml::value<std::string>(value);
  return out.str();
}

bool given_as_flag(const std::vector<std::string>& args, const std::string& key) {
  const std::string flag = "--" + key;
  return std::any_of(args.begin() + 1, args.end(),
                     [&](const std::string& a) { return a == flag || a.starts_with(flag + "="); });
}

std::string effective_toml(cli& parsed, const std::vector<std::string>& args, const std::set<std::string>& from_file) {
  CLI::App& sub = parsed.chosen();
  std::ostringstream out;
  out << "# The configuration of `aipbx serve`: flag > AIPBX_* variable > config file > default. Secrets are masked.\n";
  out << "# config file: " << (parsed.config_file().empty() ? "none" : parsed.config_file()) << "\n";
  for (const CLI::Option* opt : sub.get_options()) {
    const std::string key = key_of(*opt);
    if (key == "help" || key == "config") continue;
    const bool flag = is_flag(*opt);
    std::vector<std::string> values;
    if (flag) {
      values.emplace_back(opt->count() > 0 && opt->as<bool>() ? "true" : "false");
    } else if (opt->count() > 0) {
      values = opt->results();
    } else if (!opt->get_default_str().empty()) {
      values.push_back(opt->get_default_str());
    }
    std::string source = "default";
    if (from_file.contains(key)) source = "config file";
    else if (given_as_flag(args, key)) source = "flag";
    else if (opt->count() > 0) source = "variable " + opt->get_envname();
    if (values.empty()) {
      out << "# " << key << " is not set\n";
      continue;
    }
    for (auto& v : values) v = is_secret(key) ? std::string("***") : mask_secret_parts(v);
    const bool list = opt->get_expected_max() > 1 || values.size() > 1;
    out << key << " = ";
    if (list) {
      out << "[";
      for (std::size_t i = 0; i < values.size(); ++i) out << (i ? ", " : "") << toml_text(values[i], flag);
      out << "]";
    } else {
      out << toml_text(values.front(), flag);
    }
    out << "  # " << source << "\n";
  }
  return out.str();
}

}  // namespace

std::vector<file_setting> read_config_file(const std::string& path) {
  toml::table table;
  try {
    table = toml::parse_file(path);
  } catch (const toml::parse_error& e) {
    const auto& where = e.source();
    std::string message(e.description());
    if (where.begin.line == 0) throw std::invalid_argument("config file " + path + ": " + message);
    throw std::invalid_argument("config file " + position(path, where) + ": " + message);
  }
  std::vector<file_setting> out;
  flatten(table, "", path, out);
  return out;
}

std::string mask_secret_parts(std::string value) {
  if (const auto scheme = value.find("://"); scheme != std::string::npos) {
    const auto start = scheme + 3;
    const auto end = value.find_first_of("/?#", start);
    const auto at = value.rfind('@', end == std::string::npos ? std::string::npos : end);
    if (at != std::string::npos && at > start) {
      const auto colon = value.find(':', start);
      if (colon != std::string::npos && colon < at) value.replace(colon + 1, at - colon - 1, "***");
    }
  }
  for (std::size_t pos = value.find("password="); pos != std::string::npos; pos = value.find("password=", pos + 1)) {
    const auto begin = pos + 9;
    const auto end = value.find_first_of(" &;", begin);
    value.replace(begin, (end == std::string::npos ? value.size() : end) - begin, "***");
  }
  return value;
}

std::variant<command_line, int> parse_command_line(int argc, const char* const* argv, std::ostream& out,
                                                   std::ostream& err) {
  const std::vector<std::string> args(argv, argv + argc);
  auto first = std::make_unique<cli>();
  try {
    first->parse(args);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == static_cast<int>(CLI::ExitCodes::Success)) return first->app.exit(e, out, err);
    err << "aipbx: invalid configuration: " << e.what() << "\nRun with --help for more information.\n";
    return invalid_config_exit;
  }

  std::unique_ptr<cli> final_cli = std::move(first);
  std::set<std::string> from_file;
  try {
    if (!final_cli->config_file().empty()) {
      const std::string path = final_cli->config_file();
      CLI::App& sub = final_cli->chosen();
      const std::string sub_name = sub.get_name();
      // Flags and variables win: only keys whose option neither gave are applied, as extra flags.
      std::vector<std::string> merged = args;
      for (const auto& s : read_config_file(path)) {
        CLI::Option* opt = s.name == "help" || s.name == "config" ? nullptr : sub.get_option_no_throw("--" + s.name);
        if (opt == nullptr) throw std::invalid_argument(unknown_key_message(sub, s));
        if (opt->count() > 0) continue;
        std::vector<std::string> extra;
        if (is_flag(*opt)) {
          if (!s.boolean || s.values.size() != 1)
            throw std::invalid_argument(s.where + ": " + s.name + ": expected true or false");
          extra.push_back("--" + s.name + "=" + s.values.front());
        } else {
          if (s.values.empty()) throw std::invalid_argument(s.where + ": " + s.name + ": the array is empty");
          for (const auto& v : s.values) extra.push_back("--" + s.name + "=" + v);
        }
        // Each key is checked alone first, so that its error names its line.
        std::vector<std::string> alone{args.front(), sub_name};
        alone.insert(alone.end(), extra.begin(), extra.end());
        try {
          cli check;
          check.parse(alone);
        } catch (const CLI::ParseError& e) {
          throw std::invalid_argument(s.where + ": " + s.name + ": " + e.what());
        }
        merged.insert(merged.end(), extra.begin(), extra.end());
        from_file.insert(s.name);
      }
      auto second = std::make_unique<cli>();
      try {
        second->parse(merged);
      } catch (const CLI::ParseError& e) {
        throw std::invalid_argument("config file " + path + ": " + e.what());
      }
      final_cli = std::move(second);
    }
    command_line result;
    result.what = *final_cli->show ? command::show_config : command::serve;
    if (result.what == command::show_config) result.effective = effective_toml(*final_cli, args, from_file);
    result.config = final_cli->config();
    check_config(result.config);
    return result;
  } catch (const std::invalid_argument& e) {
    err << "aipbx: invalid configuration: " << e.what() << "\n";
    return invalid_config_exit;
  }
}

}  // namespace aipbx::app
