// Boost.Beast's compiled part (the HTTP parser, fields, errors, ...), built once here: every translation unit
// of aipbx is compiled with BOOST_BEAST_SEPARATE_COMPILATION (the top-level CMakeLists.txt).
#include <boost/beast/src.hpp>
