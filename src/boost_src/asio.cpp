// Boost.Asio's compiled part, built once here: every translation unit of aipbx is compiled with
// BOOST_ASIO_SEPARATE_COMPILATION (the top-level CMakeLists.txt), so the Asio headers declare these functions instead
// of defining them inline in each file that includes them.
#include <boost/asio/impl/src.hpp>
