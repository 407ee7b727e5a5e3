// Opening a TCP listener the way every aipbx listener does (the HTTP server, the AudioSocket listener):
// the host resolved as a numeric or named address, SO_REUSEADDR so a restart does not wait for TIME_WAIT,
// the system's largest backlog. Throws boost::system::system_error or std::runtime_error when it cannot
// (a start-up failure). Thread-safe as far as the acceptor is.
#pragma once

#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <string>

namespace aipbx::net {

// Binds `acceptor` to host:port (0 picks a free port) and listens; answers the bound endpoint.
boost::asio::ip::tcp::endpoint listen(boost::asio::ip::tcp::acceptor& acceptor, const std::string& host,
                                      std::uint16_t port);

}  // namespace aipbx::net
