// TLS for the listener: an OpenSSL server context built from PEM files (Boost.Asio's ssl::context).
//
// TLS 1.2 and 1.3 only. The context is built once at start-up and shared read-only by every connection.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include <memory>
#include <string>

namespace aipbx::http {

// Loads the certificate chain (leaf first) and its private key. Throws std::runtime_error naming the file
// and OpenSSL's reason when a file cannot be read or parsed, or when the key does not match the certificate.
std::unique_ptr<boost::asio::ssl::context> make_tls_context(const std::string& cert_file, const std::string& key_file);

}  // namespace aipbx::http
