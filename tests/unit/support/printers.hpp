// GoogleTest printers for domain values, so failing assertions show ranges rather than bytes.
#pragma once

#include "domain/sequence_tracker.hpp"

#include <ostream>

namespace aipbx {

inline void PrintTo(const seq_range& r, std::ostream* os) { *os << '[' << r.first << ", " << r.last << ']'; }
inline void PrintTo(arrival a, std::ostream* os) { *os << to_string(a); }

}  // namespace aipbx
