// Differential: MetricsBatchView::Read and MetricsBatchesOf (controlplane/core/metrics_view.h)
// against protobuf's own parser. Whatever the reader takes in place, protobuf must parse, to
// the same values (doubles bit for bit), within the limits (BoundBatch cuts nothing), and
// WireTo must give bytes that parse to the same batch: otherwise the hub would keep state
// the parsing path (Hub::OnMessage, the gateway) would not.
//
// Input: [mode][limits][protobuf bytes]. `mode` bit 0: the bytes are an AgentMessage (its
// batches picked by MetricsBatchesOf, each then Read), else a MetricsBatch. `limits` 0: the
// defaults; otherwise small ones derived from it and `mode` (so a mutation reaches each
// limit, max_batch_bytes included, in a few bytes). Seeds: tests/fuzz/corpus/metrics_view/
// (serialized realistic batches and messages, make_metrics_view_seeds.sh).
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

#include "common/gateway_protocol.h"
#include "controlplane/core/agent_limits.h"
#include "controlplane/core/metrics_view.h"
#include "google/protobuf/util/field_comparator.h"
#include "google/protobuf/util/message_differencer.h"
#include "herd/v1/gateway.pb.h"
#include "tests/fuzz/fuzz_util.h"

namespace {

using google::protobuf::util::MessageDifferencer;
using herd::controlplane::AgentLimits;
using herd::controlplane::MetricsBatchView;
using herd::v1::MetricsBatch;

uint64_t Bits(double d) {
  uint64_t b;
  std::memcpy(&b, &d, sizeof b);
  return b;
}

// A NaN equal to a NaN (MessageDifferencer's default is IEEE's); the views compare bits.
bool SameMessage(const google::protobuf::Message& a, const google::protobuf::Message& b) {
  google::protobuf::util::DefaultFieldComparator numbers;
  numbers.set_treat_nan_as_equal(true);
  MessageDifferencer d;
  d.set_field_comparator(&numbers);
  return d.Compare(a, b);
}

bool SameView(const MetricsBatchView& a, const MetricsBatchView& b) {
  if (a.at_unix_ms() != b.at_unix_ms() || a.dropped_batches() != b.dropped_batches() ||
      a.replayed() != b.replayed() || Bits(a.host_cpu_percent()) != Bits(b.host_cpu_percent()) ||
      a.host_memory_available_bytes() != b.host_memory_available_bytes() ||
      Bits(a.host_load1()) != Bits(b.host_load1()) || a.units().size() != b.units().size() ||
      a.probes().size() != b.probes().size()) {
    return false;
  }
  for (size_t i = 0; i < a.units().size(); ++i) {
    const auto &u = a.units()[i], &v = b.units()[i];
    if (u.name != v.name || Bits(u.cpu_percent) != Bits(v.cpu_percent) ||
        u.rss_bytes != v.rss_bytes || u.first_probe != v.first_probe || u.probes != v.probes) {
      return false;
    }
  }
  for (size_t i = 0; i < a.probes().size(); ++i) {
    const auto &p = a.probes()[i], &q = b.probes()[i];
    if (p.name != q.name || Bits(p.number) != Bits(q.number) || p.numeric != q.numeric) {
      return false;
    }
  }
  return true;
}

AgentLimits LimitsOf(uint8_t mode, uint8_t l) {
  AgentLimits limits;
  if (l == 0) return limits;
  limits.max_units = 1 + (l & 3);
  limits.max_probes_per_unit = 1 + ((l >> 2) & 3);
  limits.max_name_bytes = 2 + ((l >> 4) & 3) * 4;
  limits.max_text_bytes = 4 + ((l >> 6) & 3) * 8;
  limits.max_batch_bytes = 16 + (mode >> 1) * 8;  // 16 to 1032
  return limits;
}

// A batch Read took (`view`, from `wire`) and protobuf's parse of it (`parsed`): the same.
void CheckSame(std::string_view wire, const MetricsBatchView& view, const MetricsBatch& parsed,
               const AgentLimits& limits) {
  MetricsBatchView from;
  from.From(parsed);
  HERD_FUZZ_CHECK(SameView(view, from));
  MetricsBatch bounded;
  herd::controlplane::LimitHits hits;
  HERD_FUZZ_CHECK(!herd::controlplane::BoundBatch(parsed, limits, &bounded, &hits));
  std::string out;
  view.WireTo(&out);
  HERD_FUZZ_CHECK(out == wire);
  MetricsBatch back;
  HERD_FUZZ_CHECK(back.ParseFromString(out));
  HERD_FUZZ_CHECK(SameMessage(back, parsed));
  herd::v1::HostUsage usage;
  view.HostUsageTo(&usage);
  HERD_FUZZ_CHECK(SameMessage(usage, parsed.host()));
  // The parsed batch's view writes it back as protobuf does.
  from.WireTo(&out);
  HERD_FUZZ_CHECK(back.ParseFromString(out));
  HERD_FUZZ_CHECK(SameMessage(back, parsed));
}

void FuzzBatch(std::string_view bytes, const AgentLimits& limits) {
  MetricsBatchView view;
  if (!view.Read(bytes, limits)) {
    HERD_FUZZ_CHECK(view.units().empty() && view.probes().empty());
    return;
  }
  MetricsBatch parsed;
  HERD_FUZZ_CHECK(parsed.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  CheckSame(bytes, view, parsed, limits);
}

void FuzzMessage(std::string_view bytes, const AgentLimits& limits, size_t max_batches) {
  std::vector<std::string_view> wires;
  if (!herd::controlplane::MetricsBatchesOf(bytes, max_batches, &wires)) {
    HERD_FUZZ_CHECK(wires.empty());
    return;
  }
  HERD_FUZZ_CHECK(wires.size() <= max_batches);
  for (std::string_view w : wires) {  // views into the message
    HERD_FUZZ_CHECK(w.data() >= bytes.data() && w.data() + w.size() <= bytes.data() + bytes.size());
  }
  std::vector<MetricsBatchView> views(wires.size());
  for (size_t i = 0; i < wires.size(); ++i) {
    if (!views[i].Read(wires[i], limits)) return;  // the hub leaves the message to protobuf
  }
  // Taken whole by the hub: protobuf must read the message as the same batches.
  herd::v1::AgentMessage parsed;
  HERD_FUZZ_CHECK(parsed.ParseFromArray(bytes.data(), static_cast<int>(bytes.size())));
  if (parsed.has_metrics()) {
    HERD_FUZZ_CHECK(wires.size() == 1);
    CheckSame(wires[0], views[0], parsed.metrics(), limits);
    return;
  }
  HERD_FUZZ_CHECK(parsed.has_metrics_batches());
  const auto& group = parsed.metrics_batches().batches();
  HERD_FUZZ_CHECK(static_cast<size_t>(group.size()) == wires.size());
  for (size_t i = 0; i < wires.size(); ++i) {
    CheckSame(wires[i], views[i], group[static_cast<int>(i)], limits);
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < 2) return 0;
  const uint8_t mode = data[0];
  const AgentLimits limits = LimitsOf(mode, data[1]);
  const std::string_view bytes(reinterpret_cast<const char*>(data + 2), size - 2);
  if (mode & 1) {
    FuzzMessage(bytes, limits, data[1] == 0 ? herd::kMaxMetricsBatchesPerMessage : 1 + (data[1] & 7));
  } else {
    FuzzBatch(bytes, limits);
  }
  return 0;
}
