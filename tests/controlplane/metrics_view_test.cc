// MetricsBatchView and MetricsBatchesOf against protobuf itself: what the reader takes in
// place, protobuf must parse to the same values (and BoundBatch must leave whole); what it
// refuses is left to the parsing path. Inputs protobuf's serializer never writes (unknown
// fields, wrong wire types, fields given twice, padded varints, groups) are written by hand
// with metrics_view_test.h's wire::.
#include "tests/controlplane/metrics_view_test.h"

#include <gtest/gtest.h>

#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "absl/strings/str_replace.h"

namespace herd::controlplane {
namespace {

using herd::v1::AgentMessage;
using herd::v1::MetricsBatch;
using herd::v1::Probe;
using herd::v1::UnitSample;
using testing::ReadsLikeProtobuf;
using testing::RealisticBatch;
using testing::SameView;
namespace wire = testing::wire;

bool Parses(const std::string& bytes) {
  MetricsBatch b;
  return b.ParseFromString(bytes);
}

bool Read(const std::string& bytes, const AgentLimits& limits = {}) {
  MetricsBatchView v;
  return v.Read(bytes, limits);
}

// A batch of one unit "u" whose body is `unit_body` (after its name).
std::string OneUnit(const std::string& unit_body) {
  return wire::LenField(3, wire::LenField(1, "u") + unit_body);
}
// A batch of one unit with one probe "p" whose body is `probe_body` (after its name).
std::string OneProbe(const std::string& probe_body) {
  return OneUnit(wire::LenField(8, wire::LenField(1, "p") + probe_body));
}

TEST(MetricsBatchViewTest, ARealisticBatchReadsAsProtobufParsesIt) {
  const MetricsBatch batch = RealisticBatch();
  const std::string bytes = batch.SerializeAsString();
  MetricsBatchView view, from;
  ASSERT_TRUE(view.Read(bytes, AgentLimits{}));
  from.From(batch);
  EXPECT_TRUE(SameView(view, from));
  EXPECT_TRUE(ReadsLikeProtobuf(bytes, AgentLimits{}));
  // And against the batch itself, not only the other view.
  EXPECT_EQ(view.at_unix_ms(), 1700000001000);
  EXPECT_EQ(view.dropped_batches(), 3u);
  EXPECT_FALSE(view.replayed());
  EXPECT_EQ(view.host_cpu_percent(), 12.5);
  EXPECT_EQ(view.host_memory_available_bytes(), 2500000000u);
  EXPECT_EQ(view.host_load1(), 0.4);
  ASSERT_EQ(view.units().size(), 10u);
  ASSERT_EQ(view.probes().size(), 100u);
  for (int i = 0; i < 10; ++i) {
    const UnitView& u = view.units()[i];
    const UnitSample& s = batch.units(i);
    EXPECT_EQ(u.name, s.name());
    EXPECT_EQ(u.cpu_percent, s.usage().cpu_percent());
    EXPECT_EQ(u.rss_bytes, s.usage().rss_bytes());
    EXPECT_EQ(u.first_probe, static_cast<uint32_t>(10 * i));
    ASSERT_EQ(u.probes, 10u);
    for (int j = 0; j < 10; ++j) {
      const ProbeView& p = view.probes()[u.first_probe + j];
      EXPECT_EQ(p.name, s.probes(j).name());
      EXPECT_EQ(testing::Bits(p.number), testing::Bits(s.probes(j).number()));
      EXPECT_EQ(p.numeric, s.probes(j).numeric());
    }
  }
  // In place: the names are views into the bytes read.
  EXPECT_GE(view.units()[0].name.data(), bytes.data());
  EXPECT_LT(view.units()[0].name.data(), bytes.data() + bytes.size());
}

TEST(MetricsBatchViewTest, WireToAndHostUsageToRoundTrip) {
  const MetricsBatch batch = RealisticBatch(3, 6);  // a NaN among the probes
  const std::string bytes = batch.SerializeAsString();
  MetricsBatchView read, from;
  ASSERT_TRUE(read.Read(bytes, AgentLimits{}));
  from.From(batch);
  for (const MetricsBatchView* v : {&read, &from}) {
    std::string out;
    v->WireTo(&out);
    MetricsBatch back;
    ASSERT_TRUE(back.ParseFromString(out));
    EXPECT_TRUE(testing::SameMessage(back, batch)) << back.DebugString();
    herd::v1::HostUsage usage;
    usage.set_cpu_percent(99);  // replaced, not merged
    v->HostUsageTo(&usage);
    EXPECT_TRUE(testing::SameMessage(usage, batch.host())) << usage.DebugString();
  }
  // Without a host, none.
  MetricsBatch bare;
  bare.set_at_unix_ms(5);
  const std::string bare_bytes = bare.SerializeAsString();
  ASSERT_TRUE(read.Read(bare_bytes, AgentLimits{}));
  herd::v1::HostUsage usage;
  read.HostUsageTo(&usage);
  EXPECT_EQ(usage.ByteSizeLong(), 0u);
}

// A view is reused from batch to batch (the hub keeps them): nothing of the last one stays,
// nor of one refused half-way.
TEST(MetricsBatchViewTest, AReadLeavesNothingOfTheLastBatch) {
  const std::string big = RealisticBatch(5, 5).SerializeAsString();
  MetricsBatch small;
  small.set_replayed(true);
  small.add_units()->set_name("only");
  const std::string small_bytes = small.SerializeAsString();
  MetricsBatchView view;
  ASSERT_TRUE(view.Read(big, AgentLimits{}));
  ASSERT_TRUE(view.Read(small_bytes, AgentLimits{}));
  MetricsBatchView expected;
  expected.From(small);
  EXPECT_TRUE(SameView(view, expected));
  ASSERT_FALSE(view.Read(big.substr(0, big.size() - 3), AgentLimits{}));
  EXPECT_TRUE(view.units().empty());
  EXPECT_TRUE(view.probes().empty());
  EXPECT_EQ(view.at_unix_ms(), 0);
  EXPECT_EQ(view.host_cpu_percent(), 0);
}

// The hub keeps a view per thread: a batch at the limits (here 120 units of 200 probes,
// 24,000 probes) must not leave it holding that much once cleared, while an ordinary
// batch's storage is kept for the next one.
TEST(MetricsBatchViewTest, ClearingGivesBackWhatABatchAtTheLimitsGrewTo) {
  const std::string huge = RealisticBatch(120, 200).SerializeAsString();
  AgentLimits limits;  // the default 1 MiB a batch is too little for these realistic probes
  limits.max_batch_bytes = 4 << 20;
  MetricsBatchView view;
  ASSERT_TRUE(view.Read(huge, limits));
  ASSERT_EQ(view.probes().size(), 24000u);
  const size_t grown = view.MemoryBytes();
  view.Clear();
  EXPECT_TRUE(view.probes().empty());
  EXPECT_LT(view.MemoryBytes(), grown / 10);
  EXPECT_LE(view.MemoryBytes(), MetricsBatchView::kKeptProbes * sizeof(ProbeView) +
                                    MetricsBatchView::kKeptUnits * sizeof(UnitView));
  const std::string usual = RealisticBatch(10, 10).SerializeAsString();
  ASSERT_TRUE(view.Read(usual, AgentLimits{}));
  const size_t usual_bytes = view.MemoryBytes();
  view.Clear();
  EXPECT_EQ(view.MemoryBytes(), usual_bytes);  // kept: no allocation for the next batch
}

// Every cut of a realistic batch: taken only when protobuf parses it too, to the same values.
TEST(MetricsBatchViewTest, EveryPrefixIsReadOnlyAsProtobufReadsIt) {
  const std::string bytes = RealisticBatch(4, 5).SerializeAsString();
  size_t taken = 0;
  for (size_t n = 0; n <= bytes.size(); ++n) {
    const std::string prefix = bytes.substr(0, n);
    bool read = false;
    ASSERT_TRUE(ReadsLikeProtobuf(prefix, AgentLimits{}, &read)) << "prefix of " << n;
    if (!Parses(prefix)) {
      EXPECT_FALSE(read) << "prefix of " << n;
    }
    taken += read;
  }
  // The cuts between the batch's top-level fields parse (a shorter batch), and are read.
  EXPECT_GE(taken, 4u);
  EXPECT_TRUE(Read(bytes));
}

TEST(MetricsBatchViewTest, UnknownFieldsAreSkippedAtEveryLevel) {
  const std::string unknown =
      wire::VarintField(99, 300) + wire::Fixed32Field(98, 7) + wire::Fixed64Field(97, 8) +
      wire::LenField(96, "not read") +
      wire::Group(95, wire::VarintField(1, 1) + wire::LenField(2, "in a group") +
                          wire::Group(3, wire::Fixed32Field(4, 4)));
  const std::string probe = wire::LenField(1, "p") + unknown + wire::DoubleField(3, 2.5) +
                            wire::VarintField(4, 1) + unknown;
  const std::string usage = unknown + wire::DoubleField(1, 4.5) + wire::VarintField(2, 77) + unknown;
  const std::string unit = wire::LenField(1, "u") + unknown + wire::LenField(7, usage) +
                           wire::LenField(8, probe) + unknown;
  const std::string host = unknown + wire::DoubleField(1, 9.5) + wire::VarintField(3, 11) +
                           wire::DoubleField(4, 0.75) + unknown;
  const std::string batch = unknown + wire::VarintField(1, 1234) + wire::LenField(2, host) +
                            unknown + wire::LenField(3, unit) + wire::VarintField(4, 6) +
                            wire::VarintField(5, 1) + unknown;
  MetricsBatchView view;
  ASSERT_TRUE(view.Read(batch, AgentLimits{}));
  EXPECT_TRUE(ReadsLikeProtobuf(batch, AgentLimits{}));
  EXPECT_EQ(view.at_unix_ms(), 1234);
  EXPECT_EQ(view.dropped_batches(), 6u);
  EXPECT_TRUE(view.replayed());
  EXPECT_EQ(view.host_cpu_percent(), 9.5);
  EXPECT_EQ(view.host_memory_available_bytes(), 11u);
  EXPECT_EQ(view.host_load1(), 0.75);
  ASSERT_EQ(view.units().size(), 1u);
  EXPECT_EQ(view.units()[0].cpu_percent, 4.5);
  EXPECT_EQ(view.units()[0].rss_bytes, 77u);
  ASSERT_EQ(view.probes().size(), 1u);
  EXPECT_EQ(view.probes()[0].number, 2.5);
  EXPECT_TRUE(view.probes()[0].numeric);
  // The unknown fields are the host's latest state too (protobuf keeps them as well).
  std::string out;
  view.WireTo(&out);
  EXPECT_EQ(out, batch);
}

// A repeated scalar or string: the last one counts, as in protobuf.
TEST(MetricsBatchViewTest, TheLastOfAFieldGivenTwiceCounts) {
  const std::string probe = wire::LenField(1, "first") + wire::DoubleField(3, 1) +
                            wire::VarintField(4, 1) + wire::LenField(1, "last") +
                            wire::DoubleField(3, 2) + wire::VarintField(4, 0);
  const std::string usage = wire::DoubleField(1, 1) + wire::VarintField(2, 5) +
                            wire::DoubleField(1, 3) + wire::VarintField(2, 6);
  const std::string unit = wire::LenField(1, "a") + wire::LenField(7, usage) +
                           wire::LenField(8, probe) + wire::LenField(1, "b");
  const std::string host = wire::DoubleField(1, 1) + wire::DoubleField(1, 8) +
                           wire::VarintField(3, 1) + wire::VarintField(3, 9);
  const std::string batch = wire::VarintField(1, 1) + wire::VarintField(5, 1) +
                            wire::LenField(2, host) + wire::LenField(3, unit) +
                            wire::VarintField(1, 2) + wire::VarintField(4, 1) +
                            wire::VarintField(4, 4) + wire::VarintField(5, 0);
  MetricsBatchView view;
  ASSERT_TRUE(view.Read(batch, AgentLimits{}));
  EXPECT_TRUE(ReadsLikeProtobuf(batch, AgentLimits{}));
  EXPECT_EQ(view.at_unix_ms(), 2);
  EXPECT_EQ(view.dropped_batches(), 4u);
  EXPECT_FALSE(view.replayed());
  EXPECT_EQ(view.host_cpu_percent(), 8);
  EXPECT_EQ(view.host_memory_available_bytes(), 9u);
  ASSERT_EQ(view.units().size(), 1u);
  EXPECT_EQ(view.units()[0].name, "b");
  EXPECT_EQ(view.units()[0].cpu_percent, 3);
  EXPECT_EQ(view.units()[0].rss_bytes, 6u);
  ASSERT_EQ(view.probes().size(), 1u);
  EXPECT_EQ(view.probes()[0].name, "last");
  EXPECT_EQ(view.probes()[0].number, 2);
  EXPECT_FALSE(view.probes()[0].numeric);
}

// Each string field with bytes that are not UTF-8: protobuf refuses the batch, so must Read.
TEST(MetricsBatchViewTest, InvalidUtf8InAnyStringIsRefused) {
  const std::string kMark = "QZQZ", kBad = "\xC3\x28\xED\xA0";  // bad continuation; surrogate
  const std::vector<std::pair<const char*, std::function<void(MetricsBatch&)>>> fields = {
      {"unit name", [&](MetricsBatch& b) { b.mutable_units(0)->set_name(kMark); }},
      {"status_reason", [&](MetricsBatch& b) { b.mutable_units(0)->set_status_reason(kMark); }},
      {"version", [&](MetricsBatch& b) { b.mutable_units(0)->set_version(kMark); }},
      {"main_probes", [&](MetricsBatch& b) { b.mutable_units(0)->set_main_probes(0, kMark); }},
      {"probe name", [&](MetricsBatch& b) { b.mutable_units(0)->mutable_probes(0)->set_name(kMark); }},
      {"probe value", [&](MetricsBatch& b) { b.mutable_units(0)->mutable_probes(0)->set_value(kMark); }},
      {"probe type", [&](MetricsBatch& b) { b.mutable_units(0)->mutable_probes(0)->set_type(kMark); }},
      {"probe unit", [&](MetricsBatch& b) { b.mutable_units(0)->mutable_probes(0)->set_unit(kMark); }},
      {"probe agg_type",
       [&](MetricsBatch& b) { b.mutable_units(0)->mutable_probes(0)->set_agg_type(kMark); }},
  };
  for (const auto& [what, set] : fields) {
    MetricsBatch b = RealisticBatch(2, 2);
    set(b);
    const std::string good = b.SerializeAsString();
    ASSERT_TRUE(Read(good)) << what;
    const std::string bad = absl::StrReplaceAll(good, {{kMark, kBad}});
    ASSERT_NE(bad, good) << what;
    EXPECT_FALSE(Parses(bad)) << what << ": protobuf takes it";
    EXPECT_FALSE(Read(bad)) << what;
  }
}

// A known field in another wire type than its own: protobuf keeps it as an unknown field
// (and the field its default); the reader leaves such a batch to it.
TEST(MetricsBatchViewTest, AKnownFieldOfTheWrongWireTypeIsRefused) {
  // The wire type each known field is not: a varint for a length-delimited or fixed64 one, a
  // fixed64 for a varint one.
  auto wrong = [](uint32_t field, uint32_t right) {
    return right == wire::kVarint ? wire::Fixed64Field(field, 1) : wire::VarintField(field, 1);
  };
  using Level = std::pair<std::function<std::string(const std::string&)>,
                          std::vector<std::pair<uint32_t, uint32_t>>>;
  const uint32_t V = wire::kVarint, F = wire::kFixed64, B = wire::kBytes;
  const std::vector<std::pair<const char*, Level>> levels = {
      {"batch", {[](const std::string& f) { return f; }, {{1, V}, {2, B}, {3, B}, {4, V}, {5, V}}}},
      {"host",
       {[](const std::string& f) { return wire::LenField(2, f); },
        {{1, F}, {2, V}, {3, V}, {4, F}, {5, F}, {6, F}}}},
      {"unit",
       {OneUnit, {{1, B}, {2, V}, {3, V}, {4, V}, {5, V}, {6, V}, {7, B}, {8, B}, {9, B},
                  {10, V}, {11, B}, {12, B}}}},
      {"usage",
       {[](const std::string& f) { return OneUnit(wire::LenField(7, f)); },
        {{1, F}, {2, V}, {3, V}, {4, V}, {5, V}, {6, V}, {7, V}}}},
      {"probe",
       {OneProbe, {{1, B}, {2, B}, {3, F}, {4, V}, {5, B}, {6, B}, {7, B}, {8, V}}}},
  };
  for (const auto& [where, level] : levels) {
    const auto& [wrap, fields] = level;
    for (const auto& [field, right] : fields) {
      const std::string good = wrap(right == V   ? wire::VarintField(field, 1)
                                    : right == F ? wire::DoubleField(field, 1)
                                                 : wire::LenField(field, ""));
      EXPECT_TRUE(Read(good)) << where << " field " << field;
      for (const std::string& f : {wrong(field, right), wire::Fixed32Field(field, 1),
                                   wire::Group(field, "")}) {
        const std::string bad = wrap(f);
        EXPECT_TRUE(Parses(bad)) << where << " field " << field;  // as an unknown field
        EXPECT_FALSE(Read(bad)) << where << " field " << field << " of wire type "
                                << (static_cast<uint8_t>(f[0]) & 7);
      }
    }
  }
}

// A submessage given twice is merged by protobuf: left to it.
TEST(MetricsBatchViewTest, HostOrUsageGivenTwiceIsRefused) {
  const std::string host_twice = wire::LenField(2, wire::DoubleField(1, 1)) +
                                 wire::LenField(2, wire::VarintField(3, 2));
  MetricsBatch merged;
  ASSERT_TRUE(merged.ParseFromString(host_twice));
  EXPECT_EQ(merged.host().cpu_percent(), 1);  // merged, not replaced
  EXPECT_FALSE(Read(host_twice));
  const std::string usage_twice = OneUnit(wire::LenField(7, wire::DoubleField(1, 1)) +
                                          wire::LenField(7, wire::VarintField(2, 2)));
  EXPECT_TRUE(Parses(usage_twice));
  EXPECT_FALSE(Read(usage_twice));
  // Once each is fine.
  EXPECT_TRUE(Read(wire::LenField(2, wire::DoubleField(1, 1)) +
                   OneUnit(wire::LenField(7, wire::DoubleField(1, 1)))));
}

TEST(MetricsBatchViewTest, BrokenFramingIsRefused) {
  const std::vector<std::pair<const char*, std::string>> cases = {
      {"field number 0", wire::VarintField(1, 1) + wire::VarintField(0, 1)},
      {"field number 0, length-delimited", wire::LenField(0, "x")},
      {"field number 0 in a unit", OneUnit(wire::VarintField(0, 1))},
      {"field number 0 in a probe", OneProbe(wire::LenField(0, ""))},
      {"wire type 6", wire::Tag(99, 6) + wire::Varint(1)},
      {"wire type 7 in a unit", OneUnit(wire::Tag(99, 7))},
      {"an end-group tag alone", wire::Tag(99, wire::kEndGroup)},
      {"an end-group tag in a unit", OneUnit(wire::Tag(99, wire::kEndGroup))},
      {"a group never ended", wire::Tag(99, wire::kStartGroup) + wire::VarintField(1, 1)},
      {"a group ended by another", wire::Tag(99, wire::kStartGroup) + wire::Tag(98, 4)},
      {"a length past the end", wire::Tag(3, wire::kBytes) + wire::Varint(10) + "abc"},
      {"a length past its unit", wire::LenField(3, wire::Tag(1, wire::kBytes) + wire::Varint(9))},
      {"a varint of 11 bytes", wire::Tag(1, 0) + std::string(10, '\x80') + "\x01"},
  };
  for (const auto& [what, bytes] : cases) {
    EXPECT_FALSE(Parses(bytes)) << what << ": protobuf takes it";
    EXPECT_FALSE(Read(bytes)) << what;
  }
}

// Limits small enough to write a batch at each and one past it.
AgentLimits Small() {
  AgentLimits l;
  l.max_units = 3;
  l.max_probes_per_unit = 4;
  l.max_name_bytes = 8;
  l.max_text_bytes = 16;
  return l;
}

// Each limit: a batch exactly at it is read; one past it is refused (and BoundBatch would cut).
TEST(MetricsBatchViewTest, EachLimitIsReadUpToItAndRefusedPastIt) {
  const AgentLimits limits = Small();
  using Edit = std::function<void(MetricsBatch&, size_t n)>;
  auto text = [](size_t n) { return std::string(n, 't'); };
  const std::vector<std::tuple<const char*, size_t, Edit>> cases = {
      {"units", limits.max_units,
       [](MetricsBatch& b, size_t n) { while (b.units_size() < static_cast<int>(n)) *b.add_units() = b.units(0); }},
      {"probes", limits.max_probes_per_unit,
       [](MetricsBatch& b, size_t n) {
         auto* u = b.mutable_units(0);
         while (u->probes_size() < static_cast<int>(n)) *u->add_probes() = u->probes(0);
       }},
      {"main probes", kMaxMainProbes,
       [](MetricsBatch& b, size_t n) {
         auto* u = b.mutable_units(0);
         while (u->main_probes_size() < static_cast<int>(n)) u->add_main_probes("p");
       }},
      {"unit name", limits.max_name_bytes,
       [&](MetricsBatch& b, size_t n) { b.mutable_units(0)->set_name(text(n)); }},
      {"probe name", limits.max_name_bytes,
       [&](MetricsBatch& b, size_t n) { b.mutable_units(0)->mutable_probes(0)->set_name(text(n)); }},
      {"main probe name", limits.max_name_bytes,
       [&](MetricsBatch& b, size_t n) { b.mutable_units(0)->add_main_probes(text(n)); }},
      {"status_reason", limits.max_text_bytes,
       [&](MetricsBatch& b, size_t n) { b.mutable_units(0)->set_status_reason(text(n)); }},
      {"version", limits.max_text_bytes,
       [&](MetricsBatch& b, size_t n) { b.mutable_units(0)->set_version(text(n)); }},
      {"probe value", limits.max_text_bytes,
       [&](MetricsBatch& b, size_t n) { b.mutable_units(0)->mutable_probes(0)->set_value(text(n)); }},
      {"probe type", limits.max_text_bytes,
       [&](MetricsBatch& b, size_t n) { b.mutable_units(0)->mutable_probes(0)->set_type(text(n)); }},
      {"probe unit", limits.max_text_bytes,
       [&](MetricsBatch& b, size_t n) { b.mutable_units(0)->mutable_probes(0)->set_unit(text(n)); }},
      {"probe agg_type", limits.max_text_bytes,
       [&](MetricsBatch& b, size_t n) {
         b.mutable_units(0)->mutable_probes(0)->set_agg_type(text(n));
       }},
  };
  for (const auto& [what, limit, edit] : cases) {
    MetricsBatch at;
    auto* u = at.add_units();
    u->set_name("u");
    auto* p = u->add_probes();
    p->set_name("p");
    p->set_value("1");
    MetricsBatch past = at;
    edit(at, limit);
    edit(past, limit + 1);
    bool read = false;
    EXPECT_TRUE(ReadsLikeProtobuf(at.SerializeAsString(), limits, &read)) << what;
    EXPECT_TRUE(read) << what << " at its limit";
    EXPECT_FALSE(Read(past.SerializeAsString(), limits)) << what << " past its limit";
    MetricsBatch bounded;
    LimitHits hits;
    EXPECT_TRUE(BoundBatch(past, limits, &bounded, &hits)) << what << ": BoundBatch cuts nothing";
  }
}

TEST(MetricsBatchViewTest, ABatchPastMaxBatchBytesIsRefused) {
  const std::string bytes = RealisticBatch(2, 3).SerializeAsString();
  AgentLimits limits;
  limits.max_batch_bytes = bytes.size();
  EXPECT_TRUE(Read(bytes, limits));
  EXPECT_TRUE(ReadsLikeProtobuf(bytes, limits));
  limits.max_batch_bytes = bytes.size() - 1;
  EXPECT_FALSE(Read(bytes, limits));
  // Past the default (1 MiB) too.
  MetricsBatch big;
  big.add_units()->set_status_reason(std::string(4000, 'x'));
  while (big.ByteSizeLong() <= AgentLimits{}.max_batch_bytes) *big.add_units() = big.units(0);
  EXPECT_FALSE(Read(big.SerializeAsString()));
}

// ---------------------------------------------------------------------------------------
// What protobuf's parser refuses but a CodedInputStream reads: each must be refused too, or
// the host's latest state is bytes that do not parse (HostRegistry::LatestUnits then shows
// no units) and its series hold values protobuf never read.

void ExpectRefusedLikeProtobuf(const std::string& what, const std::string& bytes) {
  EXPECT_FALSE(Parses(bytes)) << what << ": protobuf takes it (the case is wrong)";
  EXPECT_TRUE(ReadsLikeProtobuf(bytes, AgentLimits{})) << what;
}

// A tag is at most 5 bytes to protobuf's parser (parse_context.h, ReadTag); a
// CodedInputStream reads up to 10.
TEST(MetricsBatchViewTest, ATagOfMoreThanFiveBytesIsRefused) {
  const std::string at = wire::VarintField(1, 5);
  ExpectRefusedLikeProtobuf("a known field's tag in 6 bytes",
                            wire::PaddedVarint(1 << 3, 6) + wire::Varint(5));
  ExpectRefusedLikeProtobuf("an unknown field's tag in 10 bytes",
                            at + wire::PaddedVarint(99 << 3, 10) + wire::Varint(5));
  ExpectRefusedLikeProtobuf("a probe field's tag in 6 bytes",
                            OneProbe(wire::PaddedVarint((4 << 3) | 0, 6) + wire::Varint(1)));
  // In 5 bytes, both read it.
  const std::string five = wire::PaddedVarint(1 << 3, 5) + wire::Varint(5);
  EXPECT_TRUE(Parses(five));
  EXPECT_TRUE(Read(five));
  EXPECT_TRUE(ReadsLikeProtobuf(five, AgentLimits{}));
}

// A length is at most 5 bytes, and below 2 GiB, to protobuf's parser (ReadSize); a
// CodedInputStream reads up to 10 bytes and keeps the low 32 bits.
TEST(MetricsBatchViewTest, ALengthOfMoreThanFiveBytesOrPast2GiBIsRefused) {
  auto unit_with_length = [](const std::string& length) {
    return wire::Tag(3, wire::kBytes) + length + wire::LenField(1, "u");
  };
  ExpectRefusedLikeProtobuf("a unit's length in 6 bytes",
                            unit_with_length(wire::PaddedVarint(3, 6)));
  // 3 + 2^32: 5 bytes, its low 32 bits 3.
  ExpectRefusedLikeProtobuf("a unit's length past 4 GiB",
                            unit_with_length(wire::PaddedVarint(3 + (uint64_t{1} << 32), 5)));
  ExpectRefusedLikeProtobuf("an unknown field's length in 6 bytes",
                            wire::Tag(96, wire::kBytes) + wire::PaddedVarint(1, 6) + "x");
  ExpectRefusedLikeProtobuf("a probe name's length in 7 bytes",
                            OneUnit(wire::Tag(8, wire::kBytes) + wire::PaddedVarint(9, 6) +
                                    wire::Tag(1, wire::kBytes) + wire::PaddedVarint(1, 7) + "p"));
  const std::string five = unit_with_length(wire::PaddedVarint(3, 5));
  EXPECT_TRUE(Parses(five));
  EXPECT_TRUE(ReadsLikeProtobuf(five, AgentLimits{}));
}

// Inside an unknown group, protobuf's parser refuses a field numbered 0 (FieldParser);
// WireFormatLite::SkipField skips it.
TEST(MetricsBatchViewTest, FieldNumberZeroInsideAGroupIsRefused) {
  ExpectRefusedLikeProtobuf("field 0 in a group",
                            wire::Group(99, wire::LenField(0, "")));
  ExpectRefusedLikeProtobuf("field 0 in a group in a probe",
                            OneProbe(wire::Group(99, wire::Fixed64Field(0, 1))));
}

// Protobuf's parser counts nesting from the top of the message (100 levels: each submessage
// and group one); the reader starts a new CodedInputStream, with a budget of 100 of its
// own, in every submessage, so groups nested in a unit or a probe are read deeper.
TEST(MetricsBatchViewTest, GroupsNestedPastProtobufsDepthAreRefused) {
  auto nested = [](int depth) {
    std::string g;
    for (int i = 0; i < depth; ++i) g = wire::Group(99, g);
    return g;
  };
  // At the batch's top level both read 100 and refuse 101.
  EXPECT_TRUE(Parses(nested(100)));
  EXPECT_TRUE(ReadsLikeProtobuf(nested(100), AgentLimits{}));
  EXPECT_FALSE(Read(nested(101)));
  ExpectRefusedLikeProtobuf("100 groups in a unit", OneUnit(nested(100)));
  ExpectRefusedLikeProtobuf("99 groups in a probe", OneProbe(nested(99)));
  ExpectRefusedLikeProtobuf("99 groups in a unit's usage",
                            OneUnit(wire::LenField(7, nested(99))));
  ExpectRefusedLikeProtobuf("100 groups in the host", wire::LenField(2, nested(100)));
}

// A negative int32 (or enum) written in 5 bytes, as a CodedInputStream and protobuf's parser
// both read it, is 10 bytes once serialized again: a batch within max_batch_bytes as it came
// is past it as protobuf holds it, and BoundBatch cuts it.
TEST(MetricsBatchViewTest, ABatchThatGrowsPastMaxBatchBytesOnceParsedIsRefused) {
  const std::string unit = wire::LenField(3, wire::VarintField(4, 0xFFFFFFFFu));  // pid -1
  std::string batch;
  for (int i = 0; i < 16; ++i) batch += unit;
  MetricsBatch parsed;
  ASSERT_TRUE(parsed.ParseFromString(batch));
  ASSERT_EQ(parsed.units(0).pid(), -1);
  ASSERT_GT(parsed.ByteSizeLong(), batch.size());
  AgentLimits limits;
  limits.max_batch_bytes = batch.size();
  MetricsBatch bounded;
  LimitHits hits;
  ASSERT_TRUE(BoundBatch(parsed, limits, &bounded, &hits));  // what OnMessage would keep
  EXPECT_TRUE(ReadsLikeProtobuf(batch, limits));
}

// A negative pid as protobuf writes it (10 bytes, sign-extended) does not grow: read, even at
// max_batch_bytes (a fix for the test above must not refuse it: a unit's pid may be -1).
TEST(MetricsBatchViewTest, ANegativePidAsProtobufWritesItIsRead) {
  MetricsBatch batch;
  batch.mutable_host()->set_cpu_percent(1);
  UnitSample* u = batch.add_units();
  u->set_name("u");
  u->set_pid(-1);
  u->set_state(static_cast<herd::v1::UnitState>(-2));
  u->mutable_usage()->set_rss_bytes(1);
  const std::string bytes = batch.SerializeAsString();
  AgentLimits limits;
  limits.max_batch_bytes = bytes.size();
  bool read = false;
  EXPECT_TRUE(ReadsLikeProtobuf(bytes, limits, &read));
  EXPECT_TRUE(read);
}

// BoundBatch measures its copy of the batch, which has a host and a usage in each unit even
// when the batch had none (mutable_host(), mutable_usage(): 2 bytes each, empty): a batch
// within max_batch_bytes as it came, and as protobuf holds it, is cut. Found by
// metrics_view_fuzz (input 00 07 30 03 1a 00 1a 00 1a 00 1a 00).
TEST(MetricsBatchViewTest, ABatchWithoutHostOrUsageAtMaxBatchBytesIsLeftWhole) {
  MetricsBatch batch;
  for (int i = 0; i < 4; ++i) batch.add_units()->set_name("u");
  const std::string bytes = batch.SerializeAsString();
  AgentLimits limits;
  limits.max_batch_bytes = bytes.size();
  bool read = false;
  EXPECT_TRUE(ReadsLikeProtobuf(bytes, limits, &read));
  EXPECT_TRUE(read);
  MetricsBatch bounded;
  LimitHits hits;
  EXPECT_FALSE(BoundBatch(batch, limits, &bounded, &hits))
      << "BoundBatch cut " << batch.units_size() - bounded.units_size()
      << " units of a batch within max_batch_bytes";
}

// ---------------------------------------------------------------------------------------
// MetricsBatchesOf

std::vector<std::string> BatchesOf(const std::string& message, size_t max_batches, bool* ok) {
  std::vector<std::string_view> views;
  *ok = MetricsBatchesOf(message, max_batches, &views);
  return {views.begin(), views.end()};
}

TEST(MetricsBatchesOfTest, OneMetricsFieldIsOneBatch) {
  AgentMessage m;
  *m.mutable_metrics() = RealisticBatch(2, 2);
  bool ok = false;
  const auto batches = BatchesOf(m.SerializeAsString(), 4, &ok);
  ASSERT_TRUE(ok);
  ASSERT_EQ(batches.size(), 1u);
  EXPECT_EQ(batches[0], m.metrics().SerializeAsString());
}

TEST(MetricsBatchesOfTest, AGroupIsItsBatchesOldestFirstUpToTheMax) {
  for (int n : {0, 1, 3, 5}) {
    AgentMessage m;
    for (int i = 0; i < n; ++i) {
      MetricsBatch* b = m.mutable_metrics_batches()->add_batches();
      *b = RealisticBatch(1, 1);
      b->set_at_unix_ms(1000 + i);
    }
    if (n == 0) m.mutable_metrics_batches();
    const std::string bytes = m.SerializeAsString();
    bool ok = false;
    auto batches = BatchesOf(bytes, 5, &ok);
    ASSERT_TRUE(ok) << n;
    ASSERT_EQ(batches.size(), static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      EXPECT_EQ(batches[i], m.metrics_batches().batches(i).SerializeAsString()) << i;
    }
    if (n > 0) {
      batches = BatchesOf(bytes, n - 1, &ok);  // one past the max
      EXPECT_FALSE(ok) << n;
      EXPECT_TRUE(batches.empty());
    }
  }
}

TEST(MetricsBatchesOfTest, AnyOtherMessageOrFormIsRefused) {
  const std::string batch = RealisticBatch(1, 1).SerializeAsString();
  const std::string group = wire::LenField(1, batch);
  std::vector<std::pair<std::string, std::string>> cases = {
      {"empty", ""},
      {"metrics twice (merged)", wire::LenField(2, batch) + wire::LenField(2, batch)},
      {"metrics then a group", wire::LenField(2, batch) + wire::LenField(9, group)},
      {"a group then metrics", wire::LenField(9, group) + wire::LenField(2, batch)},
      {"two groups (merged)", wire::LenField(9, group) + wire::LenField(9, group)},
      {"metrics and an unknown field", wire::LenField(2, batch) + wire::VarintField(99, 1)},
      {"an unknown field before", wire::VarintField(99, 1) + wire::LenField(2, batch)},
      {"another field in the group", wire::LenField(9, group + wire::VarintField(2, 1))},
      {"a batch of the wrong type in the group", wire::LenField(9, wire::VarintField(1, 1))},
      {"metrics as a varint", wire::VarintField(2, 1)},
      {"metrics as a group", wire::Group(2, "")},
      {"a truncated metrics", wire::LenField(2, batch).substr(0, 10)},
      {"a truncated group", wire::LenField(9, group).substr(0, 3 + group.size() / 2)},
      {"field 0", wire::LenField(0, batch)},
  };
  for (uint32_t f = 1; f <= 12; ++f) {
    if (f != 2 && f != 9) cases.emplace_back("field " + std::to_string(f), wire::LenField(f, ""));
  }
  for (const auto& [what, bytes] : cases) {
    bool ok = true;
    const auto batches = BatchesOf(bytes, 8, &ok);
    EXPECT_FALSE(ok) << what;
    EXPECT_TRUE(batches.empty()) << what;
  }
  // The messages agentd sends besides metrics.
  AgentMessage event;
  event.mutable_event()->set_kind("started");
  AgentMessage inventory;
  inventory.mutable_inventory()->add_modules()->set_name("m");
  for (const AgentMessage& m : {event, inventory}) {
    bool ok = true;
    BatchesOf(m.SerializeAsString(), 8, &ok);
    EXPECT_FALSE(ok) << m.DebugString();
  }
}

// Whatever MetricsBatchesOf and Read take from an AgentMessage, protobuf parses the whole
// message to the same batches: every prefix of a group, and batches nested as deep as a
// batch alone may be (an AgentMessage's batch is one or two levels down already).
::testing::AssertionResult TakenLikeProtobuf(const std::string& message) {
  std::vector<std::string_view> wires;
  if (!MetricsBatchesOf(message, 8, &wires)) return ::testing::AssertionSuccess();
  std::vector<MetricsBatchView> views(wires.size());
  for (size_t i = 0; i < wires.size(); ++i) {
    if (!views[i].Read(wires[i], AgentLimits{})) return ::testing::AssertionSuccess();
  }
  AgentMessage parsed;
  if (!parsed.ParseFromString(message)) {
    return ::testing::AssertionFailure() << "taken, but protobuf refuses the message";
  }
  const bool group = parsed.has_metrics_batches();
  if (!group && !parsed.has_metrics()) return ::testing::AssertionFailure() << "not metrics";
  const size_t n = group ? static_cast<size_t>(parsed.metrics_batches().batches_size()) : 1;
  if (n != wires.size()) return ::testing::AssertionFailure() << "batch count";
  for (size_t i = 0; i < n; ++i) {
    MetricsBatchView from;
    from.From(group ? parsed.metrics_batches().batches(static_cast<int>(i)) : parsed.metrics());
    if (auto same = SameView(views[i], from); !same) return same << " (batch " << i << ")";
  }
  return ::testing::AssertionSuccess();
}

TEST(MetricsBatchesOfTest, EveryPrefixOfAGroupIsTakenOnlyAsProtobufParsesIt) {
  AgentMessage m;
  for (int i = 0; i < 3; ++i) *m.mutable_metrics_batches()->add_batches() = RealisticBatch(2, 3);
  const std::string bytes = m.SerializeAsString();
  for (size_t n = 0; n <= bytes.size(); ++n) {
    ASSERT_TRUE(TakenLikeProtobuf(bytes.substr(0, n))) << "prefix of " << n;
  }
  std::vector<std::string_view> wires;
  EXPECT_TRUE(MetricsBatchesOf(bytes, 8, &wires));
}

TEST(MetricsBatchesOfTest, GroupsNestedPastTheMessagesDepthAreRefused) {
  std::string g;
  for (int i = 0; i < 100; ++i) g = wire::Group(99, g);
  ASSERT_TRUE(Parses(g));  // alone, a batch may hold them (to protobuf)
  const std::string metrics = wire::LenField(2, g);
  AgentMessage parsed;
  EXPECT_FALSE(parsed.ParseFromString(metrics));
  EXPECT_TRUE(TakenLikeProtobuf(metrics));
  const std::string group = wire::LenField(9, wire::LenField(1, g));
  EXPECT_FALSE(parsed.ParseFromString(group));
  EXPECT_TRUE(TakenLikeProtobuf(group));
}

}  // namespace
}  // namespace herd::controlplane
