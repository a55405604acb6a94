// Where the store is (--data / --store and the --etcd-* flags): SQLite by default, etcd's
// client options from the flags, and a clear error naming the flag otherwise.
#include "controlplane/store/store_location.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <string>

#include "common/atomic_file.h"
#include "tests/controlplane/store_contract_test.h"

namespace herd::controlplane::testing {
namespace {

using ::testing::HasSubstr;

TEST(StoreLocationTest, DefaultIsSqliteInTheDataDirectoryWhichIsMade) {
  TempDir dir;
  StoreLocation loc;
  loc.data_dir = dir.path() + "/data";
  OpenedStore opened = Must(OpenStoreAt(loc));
  EXPECT_EQ(opened.etcd_client, nullptr);
  EXPECT_THAT(opened.description, HasSubstr("sqlite " + loc.data_dir + "/herd.db"));
  struct stat st {};
  EXPECT_EQ(stat((loc.data_dir + "/herd.db").c_str(), &st), 0);
}

TEST(StoreLocationTest, EtcdFlagsBecomeClientOptions) {
  TempDir dir;
  const std::string password_file = dir.path() + "/pw";
  ASSERT_TRUE(WriteFileAtomically(password_file, "s3cret\n", 0600).ok());
  StoreLocation loc;
  loc.url = "etcd://127.0.0.1:2379,127.0.0.1:22379";
  loc.etcd_ca = "/ca.pem";
  loc.etcd_cert = "/c.pem";
  loc.etcd_key = "/k.pem";
  loc.etcd_user = "herd";
  loc.etcd_password_file = password_file;
  etcd::Options o = Must(EtcdClientOptions(loc));
  EXPECT_THAT(o.endpoints, ::testing::ElementsAre("127.0.0.1:2379", "127.0.0.1:22379"));
  EXPECT_EQ(o.ca_file, "/ca.pem");
  EXPECT_EQ(o.user, "herd");
  EXPECT_EQ(o.password, "s3cret") << "the file's newline is not part of the password";
}

TEST(StoreLocationTest, BadEtcdFlagsNameTheFlag) {
  StoreLocation loc;
  loc.url = "http://127.0.0.1:2379";
  EXPECT_THAT(std::string(EtcdClientOptions(loc).status().message()), HasSubstr("--store"));
  loc.url = "etcd://127.0.0.1:2379";
  loc.etcd_cert = "/c.pem";
  EXPECT_THAT(std::string(EtcdClientOptions(loc).status().message()), HasSubstr("--etcd-key"));
  loc.etcd_cert.clear();
  loc.etcd_user = "herd";
  EXPECT_THAT(std::string(EtcdClientOptions(loc).status().message()),
              HasSubstr("--etcd-password-file"));
  loc.etcd_password_file = "/nonexistent/pw";
  absl::Status s = EtcdClientOptions(loc).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(std::string(s.message()), HasSubstr("/nonexistent/pw"));
}

}  // namespace
}  // namespace herd::controlplane::testing
