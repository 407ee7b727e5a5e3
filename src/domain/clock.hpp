// The system clock as aipbx stores time: unix seconds as a double (the stores' and the API's timestamps).
#pragma once

#include <chrono>

namespace aipbx {

inline double system_now() {
  return std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
}

}  // namespace aipbx
