// A fresh directory under the system temp dir for one test, removed with everything in it when the object
// is destroyed. A fixture holds one as a member (or a test as a local), so the directory goes also when the
// test fails or throws; its name is unique (mkdtemp), also across test processes that run in parallel.
// Header-only, so that the unit and the integration tests share it without linking each other's code.
// Not thread-safe; owned by one test. The constructor throws std::system_error when mkdtemp fails.
#pragma once

#include <cerrno>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>

namespace aipbx::test {

class temp_dir {
 public:
  // The directory is named `prefix`-XXXXXX, the prefix telling which tests a leftover came from.
  explicit temp_dir(std::string_view prefix = "aipbx-test") {
    std::string pattern =
        (std::filesystem::temp_directory_path() / (std::string(prefix) + "-XXXXXX")).string();
    if (::mkdtemp(pattern.data()) == nullptr)
      throw std::system_error(errno, std::generic_category(), "mkdtemp");
    path_ = pattern;
  }
  ~temp_dir() {
    std::error_code ignored;
    std::filesystem::remove_all(path_, ignored);
  }
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::string string() const { return path_.string(); }
  std::filesystem::path operator/(const std::filesystem::path& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace aipbx::test
