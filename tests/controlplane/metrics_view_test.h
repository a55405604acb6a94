// Shared by metrics_view_test.cc and hub_metrics_bytes_test.cc: realistic batches, a
// protobuf wire-format writer for inputs protobuf's own serializer would never produce, and
// the reader's promise as an assertion (ReadsLikeProtobuf).
#pragma once

#include <gtest/gtest.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "absl/strings/str_cat.h"
#include "controlplane/core/agent_limits.h"
#include "controlplane/core/metrics_view.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/message_differencer.h"
#include "herd/v1/gateway.pb.h"

namespace herd::controlplane::testing {

// Raw wire format (https://protobuf.dev/programming-guides/encoding/).
namespace wire {
constexpr uint32_t kVarint = 0, kFixed64 = 1, kBytes = 2, kStartGroup = 3, kEndGroup = 4,
                   kFixed32 = 5;

inline std::string Varint(uint64_t v) {
  std::string out;
  while (v >= 0x80) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v));
  return out;
}
// `v` as a varint of exactly `n` bytes (padded with continuation bytes: protobuf's parser
// reads at most 5 for a tag or a length, 10 for a value).
inline std::string PaddedVarint(uint64_t v, size_t n) {
  std::string out;
  for (size_t i = 0; i + 1 < n; ++i) {
    out.push_back(static_cast<char>((v & 0x7f) | 0x80));
    v >>= 7;
  }
  out.push_back(static_cast<char>(v & 0x7f));
  return out;
}
inline std::string Tag(uint32_t field, uint32_t type) { return Varint((field << 3) | type); }
inline std::string VarintField(uint32_t f, uint64_t v) { return Tag(f, kVarint) + Varint(v); }
inline std::string Fixed64Field(uint32_t f, uint64_t bits) {
  std::string out = Tag(f, kFixed64);
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<char>(bits >> (8 * i)));
  return out;
}
inline std::string DoubleField(uint32_t f, double d) {
  uint64_t bits;
  std::memcpy(&bits, &d, sizeof bits);
  return Fixed64Field(f, bits);
}
inline std::string Fixed32Field(uint32_t f, uint32_t bits) {
  std::string out = Tag(f, kFixed32);
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<char>(bits >> (8 * i)));
  return out;
}
inline std::string LenField(uint32_t f, std::string_view bytes) {
  return Tag(f, kBytes) + Varint(bytes.size()) + std::string(bytes);
}
inline std::string Group(uint32_t f, std::string_view inner) {
  return Tag(f, kStartGroup) + std::string(inner) + Tag(f, kEndGroup);
}
}  // namespace wire

// A module's batch as agentd sends it: `units` units of `probes` probes each (numeric and
// text, a NaN with a payload and a -0.0 among them), host usage, main probes, a version.
inline herd::v1::MetricsBatch RealisticBatch(int units = 10, int probes = 10) {
  herd::v1::MetricsBatch b;
  b.set_at_unix_ms(1700000001000);
  b.set_dropped_batches(3);
  auto* host = b.mutable_host();
  host->set_cpu_percent(12.5);
  host->set_memory_total_bytes(4000000000);
  host->set_memory_available_bytes(2500000000);
  host->set_load1(0.4);
  host->set_load5(0.3);
  host->set_load15(0.2);
  for (int i = 0; i < units; ++i) {
    auto* u = b.add_units();
    u->set_name(absl::StrCat("module-", i));
    u->set_is_module(i % 2 == 0);
    u->set_state(herd::v1::UNIT_STATE_ONLINE);
    u->set_pid(4000 + i);
    u->set_restarts(i);
    u->set_started_at_unix_ms(1700000000000 + i);
    u->mutable_usage()->set_cpu_percent(1.5 * i);
    u->mutable_usage()->set_rss_bytes(52428800 + i);
    u->mutable_usage()->set_threads(7);
    u->set_issues_count(i);
    u->set_status_reason(i == 3 ? "restarting after exit code 1" : "");
    u->set_version("1.2." + std::to_string(i));
    for (int j = 0; j < probes; ++j) {
      auto* p = u->add_probes();
      p->set_name(absl::StrCat("probe/", j, "/é"));
      p->set_numeric(j % 3 != 2);
      double n = 83.37 * j + i;
      if (j == 4) n = -0.0;
      if (j == 5) {
        const uint64_t nan_bits = 0x7ff8000000000abcULL;  // a NaN with a payload
        std::memcpy(&n, &nan_bits, sizeof n);
      }
      p->set_number(n);
      p->set_value(absl::StrCat(n));
      p->set_type(j % 2 ? "gauge" : "counter");
      p->set_unit("ops");
      p->set_agg_type("avg");
      p->set_updated_at_unix_ms(1700000000500);
      if (j < 3) u->add_main_probes(p->name());
    }
  }
  return b;
}

inline uint64_t Bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, sizeof b);
  return b;
}

// Two messages equal, a NaN equal to a NaN (MessageDifferencer's default is IEEE's: a batch
// with a NaN probe would differ from itself). The views compare NaNs bit for bit.
inline bool SameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  google::protobuf::util::DefaultFieldComparator numbers;
  numbers.set_treat_nan_as_equal(true);
  google::protobuf::util::MessageDifferencer d;
  d.set_field_comparator(&numbers);
  return d.Compare(a, b);
}

// Two views equal field by field (doubles bit for bit: NaN payloads and -0.0 too).
inline ::testing::AssertionResult SameView(const MetricsBatchView& a, const MetricsBatchView& b) {
  auto fail = [](auto what) { return ::testing::AssertionFailure() << what; };
  if (a.at_unix_ms() != b.at_unix_ms()) return fail("at_unix_ms");
  if (a.dropped_batches() != b.dropped_batches()) return fail("dropped_batches");
  if (a.replayed() != b.replayed()) return fail("replayed");
  if (Bits(a.host_cpu_percent()) != Bits(b.host_cpu_percent())) return fail("host cpu");
  if (a.host_memory_available_bytes() != b.host_memory_available_bytes()) return fail("host mem");
  if (Bits(a.host_load1()) != Bits(b.host_load1())) return fail("host load1");
  if (a.units().size() != b.units().size()) {
    return fail(absl::StrCat("units: ", a.units().size(), " vs ", b.units().size()));
  }
  for (size_t i = 0; i < a.units().size(); ++i) {
    const UnitView &u = a.units()[i], &v = b.units()[i];
    if (u.name != v.name) return fail(absl::StrCat("unit ", i, " name"));
    if (Bits(u.cpu_percent) != Bits(v.cpu_percent)) return fail(absl::StrCat("unit ", i, " cpu"));
    if (u.rss_bytes != v.rss_bytes) return fail(absl::StrCat("unit ", i, " rss"));
    if (u.probes != v.probes) return fail(absl::StrCat("unit ", i, " probes"));
    for (uint32_t j = 0; j < u.probes; ++j) {
      const ProbeView &p = a.probes()[u.first_probe + j], &q = b.probes()[v.first_probe + j];
      if (p.name != q.name || Bits(p.number) != Bits(q.number) || p.numeric != q.numeric) {
        return fail(absl::StrCat("unit ", i, " probe ", j));
      }
    }
  }
  return ::testing::AssertionSuccess();
}

// The reader's promise for `bytes`: when Read takes it, protobuf parses it, to the same
// values, within `limits` (BoundBatch cuts nothing), and WireTo gives back those bytes.
// `read` (optional) gets Read's answer.
inline ::testing::AssertionResult ReadsLikeProtobuf(std::string_view bytes,
                                                    const AgentLimits& limits,
                                                    bool* read = nullptr) {
  MetricsBatchView view;
  const bool ok = view.Read(bytes, limits);
  if (read != nullptr) *read = ok;
  if (!ok) return ::testing::AssertionSuccess();
  herd::v1::MetricsBatch parsed;
  if (!parsed.ParseFromArray(bytes.data(), static_cast<int>(bytes.size()))) {
    return ::testing::AssertionFailure() << "Read took bytes protobuf refuses";
  }
  MetricsBatchView from;
  from.From(parsed);
  if (auto same = SameView(view, from); !same) {
    return ::testing::AssertionFailure() << "Read and protobuf differ: " << same.message();
  }
  herd::v1::MetricsBatch bounded;
  LimitHits hits;
  if (BoundBatch(parsed, limits, &bounded, &hits)) {
    return ::testing::AssertionFailure() << "Read took a batch BoundBatch cuts";
  }
  std::string out;
  view.WireTo(&out);
  if (out != bytes) return ::testing::AssertionFailure() << "WireTo is not the bytes read";
  return ::testing::AssertionSuccess();
}

}  // namespace herd::controlplane::testing
