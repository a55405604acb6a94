// ModuleList: equal module lists are held once, whoever reported them.
#include <gtest/gtest.h>

#include "controlplane/store/store.h"

namespace herd::controlplane {
namespace {

herd::v1::ModuleInventory Module(const std::string& name, const std::string& version) {
  herd::v1::ModuleInventory m;
  m.set_name(name);
  m.set_version(version);
  m.set_defaults_json(R"({"limit":5})");
  return m;
}

TEST(ModuleListTest, EqualListsShareOneCopy) {
  const size_t before = ModuleList::InternedLists();
  ModuleList a = {Module("redis", "1.0.0"), Module("mongo", "2.1.0")};
  ModuleList b = ModuleList::Vector{Module("redis", "1.0.0"), Module("mongo", "2.1.0")};
  EXPECT_TRUE(a.SameList(b));
  EXPECT_EQ(&a[0], &b[0]);
  EXPECT_EQ(ModuleList::InternedLists(), before + 1);

  // Another version, or the same modules in another order, is another list.
  ModuleList c = {Module("redis", "1.0.1"), Module("mongo", "2.1.0")};
  ModuleList d = {Module("mongo", "2.1.0"), Module("redis", "1.0.0")};
  EXPECT_FALSE(a.SameList(c));
  EXPECT_FALSE(a.SameList(d));
  EXPECT_EQ(c[0].version(), "1.0.1");
  EXPECT_EQ(d[0].name(), "mongo");
  EXPECT_EQ(ModuleList::InternedLists(), before + 3);
}

TEST(ModuleListTest, AListIsFreedWithItsLastHolder) {
  const size_t before = ModuleList::InternedLists();
  {
    ModuleList a = {Module("only-here", "1.0.0")};
    ModuleList b = a;
    EXPECT_EQ(ModuleList::InternedLists(), before + 1);
  }
  EXPECT_EQ(ModuleList::InternedLists(), before);
  // Reported again, it is a new list with the same content.
  ModuleList again = {Module("only-here", "1.0.0")};
  EXPECT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].name(), "only-here");
}

TEST(ModuleListTest, TheTableDoesNotGrowWithListsGone) {
  // 1,000 short-lived lists (a module whose inventory changes every time it reports).
  for (int i = 0; i < 1000; ++i) {
    ModuleList l = {Module("churn", std::to_string(i))};
    ASSERT_EQ(l[0].version(), std::to_string(i));
  }
  EXPECT_LT(ModuleList::TableSize(), 200u);
}

TEST(ModuleListTest, EmptyListHoldsNothing) {
  ModuleList empty = ModuleList::Vector{};
  EXPECT_TRUE(empty.empty());
  EXPECT_EQ(empty.begin(), empty.end());
  EXPECT_TRUE(empty.SameList(ModuleList{}));
}

TEST(ModuleListTest, RecordsCompareByContent) {
  HostRecord a, b;
  a.host_id = b.host_id = "h1";
  a.modules = {Module("redis", "1.0.0")};
  b.modules = {Module("redis", "1.0.0")};
  EXPECT_EQ(a, b);
  b.modules = {Module("redis", "1.0.1")};
  EXPECT_FALSE(a == b);
}

}  // namespace
}  // namespace herd::controlplane
