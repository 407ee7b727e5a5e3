// TLS for the listener: an OpenSSL server context built from PEM files (Boost.Asio's ssl::context).
//
// TLS 1.2 and 1.3 only. Each connection takes the context in force when it is accepted and keeps it for its
// lifetime; tls_credentials::reload() builds a new one from the same files (a renewed certificate) for the
// connections accepted after it, without a restart.
#pragma once

#include <boost/asio/ssl/context.hpp>

#include "domain/thread_annotations.hpp"

#include <memory>
#include <string>

namespace aipbx::http {

// Loads the certificate chain (leaf first) and its private key. Throws std::runtime_error naming the file
// and OpenSSL's reason when a file cannot be read or parsed, or when the key does not match the certificate.
std::unique_ptr<boost::asio::ssl::context> make_tls_context(const std::string& cert_file, const std::string& key_file);

// The listener's certificate and key files and the context built from them. Thread-safe.
class tls_credentials {
 public:
  // Loads the files (throws as make_tls_context does).
  tls_credentials(std::string cert_file, std::string key_file);

  // The context for a new connection; the connection holds it until it closes.
  std::shared_ptr<boost::asio::ssl::context> current() const;

  // Reads both files again and puts the new context in force. Throws as make_tls_context does, and then
  // the context in force stays: a half-written or mismatched renewal never takes the listener down.
  void reload();

  const std::string& cert_file() const { return cert_file_; }
  const std::string& key_file() const { return key_file_; }

 private:
  std::string cert_file_;
  std::string key_file_;
  mutable aipbx::mutex mutex_;
  std::shared_ptr<boost::asio::ssl::context> current_ GUARDED_BY(mutex_);
};

}  // namespace aipbx::http
