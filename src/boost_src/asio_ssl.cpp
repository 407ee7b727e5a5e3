// Boost.Asio's SSL support, compiled once (see asio.cpp). A file of its own, so that only programs that
// use TLS pull it, and OpenSSL with it, out of the static library.
#include <boost/asio/ssl/impl/src.hpp>
