// AgentLimits: what the hub keeps of one host's batches and inventories.
#include "controlplane/core/agent_limits.h"

#include <gtest/gtest.h>

#include <string>

namespace herd::controlplane {
namespace {

herd::v1::MetricsBatch BatchOf(int units, int probes, size_t value_bytes = 1) {
  herd::v1::MetricsBatch b;
  b.set_at_unix_ms(1000);
  b.mutable_host()->set_cpu_percent(12);
  for (int i = 0; i < units; ++i) {
    auto* u = b.add_units();
    u->set_name("unit-" + std::to_string(i));
    for (int j = 0; j < probes; ++j) {
      auto* p = u->add_probes();
      p->set_name("p" + std::to_string(j));
      p->set_value(std::string(value_bytes, 'v'));
      p->set_numeric(true);
      p->set_number(j);
    }
  }
  return b;
}

TEST(AgentLimits, ABatchWithinTheLimitsIsNotCopied) {
  herd::v1::MetricsBatch out;
  out.set_at_unix_ms(7);  // untouched
  LimitHits hits;
  EXPECT_FALSE(BoundBatch(BatchOf(10, 10), AgentLimits{}, &out, &hits));
  EXPECT_EQ(out.at_unix_ms(), 7);
  EXPECT_FALSE(hits.any());
}

TEST(AgentLimits, UnitsAndProbesPastTheirCountsAreCutKeepingTheFirst) {
  AgentLimits limits;
  limits.max_units = 3;
  limits.max_probes_per_unit = 2;
  herd::v1::MetricsBatch out;
  LimitHits hits;
  ASSERT_TRUE(BoundBatch(BatchOf(5, 4), limits, &out, &hits));
  ASSERT_EQ(out.units_size(), 3);
  EXPECT_EQ(out.units(2).name(), "unit-2");
  EXPECT_EQ(out.units(0).probes_size(), 2);
  EXPECT_EQ(out.units(0).probes(1).name(), "p1");
  EXPECT_EQ(out.host().cpu_percent(), 12);
  EXPECT_EQ(out.at_unix_ms(), 1000);
  EXPECT_EQ(hits[Limit::kUnits], 2u);
  EXPECT_EQ(hits[Limit::kProbes], 3u * 2u);
}

TEST(AgentLimits, LongNamesDropTheirItemAndLongTextIsClipped) {
  AgentLimits limits;
  limits.max_name_bytes = 16;
  limits.max_text_bytes = 8;
  herd::v1::MetricsBatch in = BatchOf(2, 2, 100);
  in.mutable_units(0)->set_name(std::string(17, 'n'));
  in.mutable_units(1)->mutable_probes(0)->set_name(std::string(17, 'n'));
  herd::v1::MetricsBatch out;
  LimitHits hits;
  ASSERT_TRUE(BoundBatch(in, limits, &out, &hits));
  ASSERT_EQ(out.units_size(), 1);
  EXPECT_EQ(out.units(0).name(), "unit-1");
  ASSERT_EQ(out.units(0).probes_size(), 1);
  EXPECT_EQ(out.units(0).probes(0).value(), std::string(8, 'v'));
  EXPECT_EQ(hits[Limit::kNames], 2u);
  EXPECT_EQ(hits[Limit::kText], 1u);
}

TEST(AgentLimits, ABatchStillTooLargeLosesItsLastUnits) {
  AgentLimits limits;
  limits.max_batch_bytes = 64 * 1024;
  herd::v1::MetricsBatch out;
  LimitHits hits;
  // 100 units of 10 probes of 1 KiB: about 1 MiB.
  ASSERT_TRUE(BoundBatch(BatchOf(100, 10, 1024), limits, &out, &hits));
  EXPECT_LE(out.ByteSizeLong(), limits.max_batch_bytes);
  EXPECT_GT(out.units_size(), 0);
  EXPECT_EQ(out.units(0).name(), "unit-0");
  EXPECT_EQ(hits[Limit::kBatchBytes], static_cast<uint64_t>(100 - out.units_size()));
}

TEST(AgentLimits, InventoryKeepsTheFirstModulesWithinCountAndBytes) {
  AgentLimits limits;
  limits.max_modules = 3;
  limits.max_defaults_bytes = 100;
  google::protobuf::RepeatedPtrField<herd::v1::ModuleInventory> mods;
  for (int i = 0; i < 5; ++i) {
    auto* m = mods.Add();
    m->set_name("m" + std::to_string(i));
    m->set_defaults_json("{}");
    m->mutable_widget()->set_logo(std::string(10000, 'x'));
  }
  mods[1].set_defaults_json(std::string(101, ' '));
  LimitHits hits;
  BoundInventory(&mods, limits, &hits);
  ASSERT_EQ(mods.size(), 3);
  EXPECT_EQ(mods[0].name(), "m0");
  EXPECT_EQ(mods[1].name(), "m2");  // m1's defaults are too large
  EXPECT_EQ(mods[0].widget().logo().size(), 4096u);
  EXPECT_EQ(hits[Limit::kModules], 2u);

  limits.max_modules = 100;
  limits.max_inventory_bytes = 5000;  // one module's logo is 4 KiB
  LimitHits bytes;
  BoundInventory(&mods, limits, &bytes);
  EXPECT_EQ(mods.size(), 1);
  EXPECT_EQ(bytes[Limit::kInventoryBytes], 2u);
}

// A module without a widget (tx2 modules announce none) must not get an empty one: the
// dashboard would read every flag as off and draw an empty card.
TEST(AgentLimits, AModuleWithoutAWidgetKeepsNone) {
  google::protobuf::RepeatedPtrField<herd::v1::ModuleInventory> mods;
  mods.Add()->set_name("sysmonit");
  mods.Add()->set_name("themed");
  mods[1].mutable_widget()->add_theme("#39bdb1");
  LimitHits hits;
  BoundInventory(&mods, AgentLimits(), &hits);
  ASSERT_EQ(mods.size(), 2);
  EXPECT_FALSE(mods[0].has_widget());
  EXPECT_TRUE(mods[1].has_widget());
}

TEST(AgentLimits, EventsWithLongNamesAreDroppedAndTheirDetailClipped) {
  AgentLimits limits;
  limits.max_text_bytes = 4;
  herd::v1::ModuleEvent e;
  e.set_unit("app");
  e.set_detail("0123456789");
  LimitHits hits;
  EXPECT_TRUE(BoundEvent(&e, limits, &hits));
  EXPECT_EQ(e.detail(), "0123");
  e.set_unit(std::string(300, 'u'));
  EXPECT_FALSE(BoundEvent(&e, limits, &hits));
  EXPECT_EQ(hits[Limit::kNames], 1u);
}

}  // namespace
}  // namespace herd::controlplane
