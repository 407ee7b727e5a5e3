// Runs the `aipbx` binary to completion with given arguments and environment (AIPBX_* variables of the
// test's environment are not passed on), for commands that exit by themselves (`aipbx config`) and for
// start-ups that must fail. A run still going after `timeout` is killed and reported as exit code -1.
#pragma once

#include <sys/types.h>

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

// The path of the binary under test: AIPBX_IT_BINARY runs the suite against another build of aipbx (a
// sanitizer build, an installed one); otherwise the one CMake built.
std::string aipbx_binary();

// Forks and executes `argv` (argv[0] is the path) with the test's environment minus its AIPBX_* variables,
// plus `env`; stdout and stderr go to the given descriptors, stdin is /dev/null, and no other descriptor of
// the test leaks in. The child is killed if the test dies. Returns its pid; throws std::system_error.
pid_t spawn_child(const std::vector<std::string>& argv, const std::vector<std::pair<std::string, std::string>>& env,
                  int out_fd, int err_fd);

}  // namespace aipbx::itest
