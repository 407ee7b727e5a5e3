// A fresh directory under the system temp dir for one test, removed with everything in it on destruction.
// Not thread-safe; owned by one test.
#pragma once

#include <filesystem>

namespace aipbx::itest {

class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(const temp_dir&) = delete;
  temp_dir& operator=(const temp_dir&) = delete;

  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::filesystem::path& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

}  // namespace aipbx::itest
