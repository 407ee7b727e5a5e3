#include "storage/pg_test_database.hpp"

#include "storage/postgres/pg_conn.hpp"

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <stdexcept>

namespace aipbx::test {

std::string pg_admin_url() {
  if (const char* url = std::getenv("AIPBX_TEST_PG_URL"); url && *url) return url;
  const char* dir = std::getenv("AIPBX_TEST_PG_DIR");
  if (!dir || !*dir)
    throw std::runtime_error(
        "no PostgreSQL server for the tests: set AIPBX_TEST_PG_URL, or run them through ctest (its fixture "
        "starts one with scripts/pg-cluster.sh)");
  std::ifstream in(std::string(dir) + "/url");
  std::string url;
  if (!std::getline(in, url) || url.empty())
    throw std::runtime_error(std::string("no PostgreSQL server URL in ") + dir + "/url (did scripts/pg-cluster.sh start fail?)");
  return url;
}

std::string pg_url(const std::string& name) {
  std::string url = pg_admin_url();
  const auto scheme = url.find("://");
  const auto slash = url.find('/', scheme == std::string::npos ? 0 : scheme + 3);
  const auto query = url.find('?');
  std::string rest = query == std::string::npos ? "" : url.substr(query);
  return (slash == std::string::npos ? url.substr(0, query) : url.substr(0, slash)) + "/" + name + rest;
}

std::string pg_fresh_database(const std::string& name) {
  pg::connection admin(pg_admin_url(), "aipbx-tests");
  admin.exec("DROP DATABASE IF EXISTS \"" + name + "\" WITH (FORCE)", pg::params{});
  admin.exec("CREATE DATABASE \"" + name + "\"", pg::params{});
  return pg_url(name);
}

std::string pg_database_for(const std::string& dir) {
  char name[32];
  std::snprintf(name, sizeof name, "t_%016zx", std::hash<std::string>{}(dir));
  const auto marker = std::filesystem::path(dir) / "postgresql-database";
  if (std::filesystem::exists(marker)) return pg_url(name);
  std::string url = pg_fresh_database(name);
  std::ofstream(marker) << name << "\n";
  return url;
}

}  // namespace aipbx::test
