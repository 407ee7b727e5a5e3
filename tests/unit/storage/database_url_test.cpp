#include "storage/database_url.hpp"

#include <gtest/gtest.h>

namespace aipbx {
namespace {

TEST(DatabaseUrl, SqliteAbsolutePath) {
  auto u = parse_database_url("sqlite:///var/lib/aipbx/aipbx.db");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->kind, backend::sqlite);
  EXPECT_EQ(u->location, "/var/lib/aipbx/aipbx.db");
}

TEST(DatabaseUrl, SqliteRelativePath) {
  auto u = parse_database_url("sqlite://data/aipbx.db");
  ASSERT_TRUE(u.has_value());
  EXPECT_EQ(u->kind, backend::sqlite);
  EXPECT_EQ(u->location, "data/aipbx.db");
}

TEST(DatabaseUrl, PlainPathsAreSqlite) {
  for (const char* path : {"./aipbx.db", "/tmp/x.db", "aipbx.db", "dir/with:colon.db"}) {
    auto u = parse_database_url(path);
    ASSERT_TRUE(u.has_value()) << path;
    EXPECT_EQ(u->kind, backend::sqlite) << path;
    EXPECT_EQ(u->location, path);
  }
}

TEST(DatabaseUrl, PostgresqlUrlsAreKeptWhole) {
  for (const char* url : {"postgresql://user:pass@host:5432/db?sslmode=require", "postgres://host/db",
                          "postgresql:///db"}) {
    auto u = parse_database_url(url);
    ASSERT_TRUE(u.has_value()) << url;
    EXPECT_EQ(u->kind, backend::postgresql) << url;
    EXPECT_EQ(u->location, url);
  }
}

TEST(DatabaseUrl, RejectsEmptyAndUnknown) {
  for (const char* bad : {"", "sqlite://", "mysql://host/db", "http://example.com/db", "file:///tmp/x.db"}) {
    auto u = parse_database_url(bad);
    ASSERT_FALSE(u.has_value()) << bad;
    EXPECT_EQ(u.error(), errc::invalid_input) << bad;
  }
}

}  // namespace
}  // namespace aipbx
