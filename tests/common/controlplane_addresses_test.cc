#include "common/controlplane_addresses.h"

#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace herd {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

TEST(ControlPlaneAddresses, OneOrSeveralWithSpacesAndSchemes) {
  EXPECT_THAT(*ParseControlPlaneAddresses("cp:8443", "--controlplane"), ElementsAre("cp:8443"));
  EXPECT_THAT(*ParseControlPlaneAddresses(" 127.0.0.1:1 , [::1]:2,dns:///cp.example:3 ", "--x"),
              ElementsAre("127.0.0.1:1", "[::1]:2", "dns:///cp.example:3"));
  EXPECT_THAT(*ParseControlPlaneAddresses("unix:/run/herd.sock,unix:///run/b.sock", "--x"),
              ElementsAre("unix:/run/herd.sock", "unix:///run/b.sock"));
}

TEST(ControlPlaneAddresses, BadListsNameTheItemAndTheFix) {
  struct Case {
    const char* text;
    const char* says;
  };
  for (const Case& c : std::vector<Case>{
           {"", "--controlplane is empty"},
           {"  ", "--controlplane is empty"},
           {"a:1,,b:2", "item 2 is empty"},
           {"a:1,", "item 2 is empty"},
           {"a:1,b", "item 2 \"b\" has no port"},
           {":8443", "has no host"},
           {"a:0", "port must be a number from 1 to 65535"},
           {"a:65536", "port must be a number from 1 to 65535"},
           {"a:+1", "port must be a number"},
           {"a:http", "port must be a number"},
           {"::1:80", "IPv6 host goes in brackets"},
           {"[::1:80", "IPv6 host goes in brackets"},
           {"a b:1", "has a space"},
           {"a:1,a:1", "\"a:1\" is given twice"},
       }) {
    auto r = ParseControlPlaneAddresses(c.text, "--controlplane");
    ASSERT_FALSE(r.ok()) << c.text;
    EXPECT_TRUE(absl::IsInvalidArgument(r.status())) << c.text;
    EXPECT_THAT(r.status().message(), HasSubstr(c.says)) << c.text;
    EXPECT_THAT(r.status().message(), HasSubstr("--controlplane")) << c.text;
  }
}

TEST(ControlPlaneAddresses, TooManyIsRefused) {
  std::string text;
  for (size_t i = 0; i <= kMaxControlPlaneAddresses; ++i) {
    text += (i ? "," : "") + std::string("h") + std::to_string(i) + ":1";
  }
  auto r = ParseControlPlaneAddresses(text, "--controlplane");
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("more than 64"));
}

}  // namespace
}  // namespace herd
