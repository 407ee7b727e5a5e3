// Runs the `aipbx` binary to completion with given arguments and environment (AIPBX_* variables of the
// test's environment are not passed on), for commands that exit by themselves (`aipbx config`) and for
// start-ups that must fail. A run still going after `timeout` is killed and reported as exit code -1.
#pragma once

#include <chrono>
#include <string>
#include <utility>
#include <vector>

namespace aipbx::itest {

struct binary_run {
  int exit_code = -1;  // 128 + signal if a signal ended it
  std::string out;     // stdout
  std::string err;     // stderr
};

// `args` follow the binary's path (e.g. {"config", "--port", "1"}).
binary_run run_aipbx(const std::vector<std::string>& args,
                     const std::vector<std::pair<std::string, std::string>>& env = {},
                     std::chrono::milliseconds timeout = std::chrono::seconds(10));

// The path of the binary under test (AIPBX_IT_BINARY, or the one CMake built).
std::string aipbx_binary();

}  // namespace aipbx::itest
