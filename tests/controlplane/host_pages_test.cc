// Keyset pages of a host listing (controlplane/fleet/host_pages.h).
#include "controlplane/fleet/host_pages.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

namespace herd::controlplane {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

herd::v1::Host MakeHost(const std::string& id, const std::string& hostname, bool online = true) {
  herd::v1::Host h;
  h.set_host_id(id);
  h.set_hostname(hostname);
  h.set_online(online);
  return h;
}

std::vector<std::string> Ids(const herd::v1::ListHostsResponse& r) {
  std::vector<std::string> out;
  for (const auto& h : r.hosts()) out.push_back(h.host_id());
  return out;
}

// One page of `hosts` (copied: PageHosts moves from them) after `token`.
herd::v1::ListHostsResponse Page(std::vector<herd::v1::Host> hosts, uint32_t size,
                                 const std::string& token, const std::string& query = "") {
  herd::v1::ListHostsRequest req;
  req.set_page_size(size);
  req.set_query(query);
  auto after = ParsePageToken(token);
  EXPECT_TRUE(after.ok()) << after.status();
  herd::v1::ListHostsResponse resp;
  PageHosts(req, after.ok() ? *after : std::nullopt, hosts, &resp);
  return resp;
}

TEST(HostPages, WalksEveryHostOnceInHostnameThenIdOrder) {
  const std::vector<herd::v1::Host> hosts = {
      MakeHost("h5", "web"), MakeHost("h2", "db", false), MakeHost("h4", "web"),
      MakeHost("h1", "api"), MakeHost("h3", "db")};
  std::vector<std::string> seen;
  std::string token;
  int pages = 0;
  do {
    auto r = Page(hosts, 2, token);
    EXPECT_EQ(r.total_size(), 5u);
    EXPECT_EQ(r.online_size(), 4u);
    for (const auto& id : Ids(r)) seen.push_back(id);
    token = r.next_page_token();
    ++pages;
  } while (!token.empty() && pages < 10);
  EXPECT_EQ(pages, 3);
  EXPECT_THAT(seen, ElementsAre("h1", "h2", "h3", "h4", "h5"));
}

TEST(HostPages, AHostAddedOrRemovedBetweenPagesMovesNoOtherAcrossTheBoundary) {
  std::vector<herd::v1::Host> hosts = {MakeHost("a", "a"), MakeHost("b", "b"), MakeHost("c", "c"),
                                       MakeHost("d", "d")};
  auto first = Page(hosts, 2, "");
  ASSERT_THAT(Ids(first), ElementsAre("a", "b"));
  // "a" is removed and "aa" registered before the next page: with positions, "c" would be
  // skipped (or "b" shown again); after the key, the next page is what follows "b".
  hosts.erase(hosts.begin());
  hosts.push_back(MakeHost("aa", "aa"));
  auto second = Page(hosts, 2, first.next_page_token());
  EXPECT_THAT(Ids(second), ElementsAre("c", "d"));
  EXPECT_TRUE(second.next_page_token().empty());
}

TEST(HostPages, TheQueryFiltersBeforeCountingAndPaging) {
  herd::v1::Host labelled = MakeHost("h9", "z-host");
  (*labelled.mutable_labels())["env"] = "Prod";
  auto r = Page({MakeHost("h1", "prod-1"), MakeHost("h2", "dev-1"), labelled}, 1, "", "PROD");
  EXPECT_EQ(r.total_size(), 2u);
  EXPECT_THAT(Ids(r), ElementsAre("h1"));
  auto rest = Page({MakeHost("h1", "prod-1"), MakeHost("h2", "dev-1"), labelled}, 1,
                   r.next_page_token(), "prod");
  EXPECT_THAT(Ids(rest), ElementsAre("h9"));
  EXPECT_TRUE(rest.next_page_token().empty());
}

TEST(HostPages, PageSizeZeroIsEveryHostAfterTheKey) {
  auto r = Page({MakeHost("c", "c"), MakeHost("a", "a"), MakeHost("b", "b")}, 0, "");
  EXPECT_THAT(Ids(r), ElementsAre("a", "b", "c"));
  EXPECT_TRUE(r.next_page_token().empty());
}

TEST(HostPages, HostnamesWithAnyBytesRoundTripThroughTheToken) {
  // Dots, slashes, spaces and non-ASCII in the key: the token still names it exactly.
  const std::string odd = "web.1/π x";
  auto key = ParsePageToken(PageTokenAfter(MakeHost("id.with.dots", odd)));
  ASSERT_TRUE(key.ok()) << key.status();
  ASSERT_TRUE(key->has_value());
  EXPECT_EQ((*key)->hostname, odd);
  EXPECT_EQ((*key)->host_id, "id.with.dots");
}

TEST(HostPages, TokensThisApiDidNotMakeAreRefusedSayingWhatToPass) {
  for (const std::string bad : {"2", "x", "k1.", "k1.aGVsbG8", "k2.aA.aA", "k1.!!.aA", "k1.aA."}) {
    auto key = ParsePageToken(bad);
    ASSERT_FALSE(key.ok()) << bad;
    EXPECT_EQ(key.status().code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(key.status().message(), HasSubstr("next_page_token")) << bad;
  }
  auto first = ParsePageToken("");
  ASSERT_TRUE(first.ok());
  EXPECT_FALSE(first->has_value());
}

}  // namespace
}  // namespace herd::controlplane
