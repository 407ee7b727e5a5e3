#include "net/listen.hpp"

#include <stdexcept>

namespace aipbx::net {

boost::asio::ip::tcp::endpoint listen(boost::asio::ip::tcp::acceptor& acceptor, const std::string& host,
                                      std::uint16_t port) {
  using boost::asio::ip::tcp;
  tcp::resolver resolver(acceptor.get_executor());
  auto results = resolver.resolve(host, std::to_string(port), tcp::resolver::passive | tcp::resolver::numeric_service);
  if (results.empty()) throw std::runtime_error("cannot resolve " + host);
  const tcp::endpoint endpoint = results.begin()->endpoint();
  acceptor.open(endpoint.protocol());
  acceptor.set_option(boost::asio::socket_base::reuse_address(true));
  acceptor.bind(endpoint);
  acceptor.listen(boost::asio::socket_base::max_listen_connections);
  return acceptor.local_endpoint();
}

}  // namespace aipbx::net
