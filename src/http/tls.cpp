#include "http/tls.hpp"

#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <fstream>
#include <stdexcept>
#include <utility>

namespace aipbx::http {

namespace ssl = boost::asio::ssl;

namespace {

void require_readable(const std::string& what, const std::string& path) {
  std::ifstream in(path);
  if (!in.good()) throw std::runtime_error("cannot read the TLS " + what + " file '" + path + "'");
}

std::string openssl_reason(const boost::system::error_code& ec) {
  std::string reason = ec.message();
  if (const unsigned long e = ERR_get_error(); e != 0) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    reason = buf;
  }
  ERR_clear_error();
  return reason;
}

}  // namespace

std::unique_ptr<ssl::context> make_tls_context(const std::string& cert_file, const std::string& key_file) {
  require_readable("certificate", cert_file);
  require_readable("key", key_file);
  auto ctx = std::make_unique<ssl::context>(ssl::context::tls_server);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                   ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
  boost::system::error_code ec;
  ERR_clear_error();
  ctx->use_certificate_chain_file(cert_file, ec);
  if (ec) throw std::runtime_error("cannot load the TLS certificate '" + cert_file + "': " + openssl_reason(ec));
  ctx->use_private_key_file(key_file, ssl::context::pem, ec);
  // Asio moves OpenSSL's error into `ec`.
  if (ec && ERR_GET_REASON(static_cast<unsigned long>(ec.value())) == X509_R_KEY_VALUES_MISMATCH) {
    ERR_clear_error();
    throw std::runtime_error("the TLS key '" + key_file + "' does not match the certificate '" + cert_file + "'");
  }
  if (ec) throw std::runtime_error("cannot load the TLS key '" + key_file + "': " + openssl_reason(ec));
  if (SSL_CTX_check_private_key(ctx->native_handle()) != 1) {
    ERR_clear_error();
    throw std::runtime_error("the TLS key '" + key_file + "' does not match the certificate '" + cert_file + "'");
  }
  return ctx;
}

tls_credentials::tls_credentials(std::string cert_file, std::string key_file)
    : cert_file_(std::move(cert_file)),
      key_file_(std::move(key_file)),
      current_(make_tls_context(cert_file_, key_file_)) {}

std::shared_ptr<ssl::context> tls_credentials::current() const {
  aipbx::lock_guard lock(mutex_);
  return current_;
}

void tls_credentials::reload() {
  std::shared_ptr<ssl::context> next = make_tls_context(cert_file_, key_file_);
  aipbx::lock_guard lock(mutex_);
  current_ = std::move(next);
}

}  // namespace aipbx::http
