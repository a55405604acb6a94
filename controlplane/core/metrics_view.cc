#include "controlplane/core/metrics_view.h"

#include <climits>
#include <cstring>

#include <google/protobuf/io/coded_stream.h>
#include <google/protobuf/wire_format_lite.h>

#include "common/utf8.h"

namespace herd::controlplane {
namespace {

using google::protobuf::io::CodedInputStream;
using WireFormatLite = google::protobuf::internal::WireFormatLite;

constexpr uint32_t kVarint = WireFormatLite::WIRETYPE_VARINT;
constexpr uint32_t kFixed64 = WireFormatLite::WIRETYPE_FIXED64;
constexpr uint32_t kBytes = WireFormatLite::WIRETYPE_LENGTH_DELIMITED;
constexpr uint32_t kStartGroup = WireFormatLite::WIRETYPE_START_GROUP;
constexpr uint32_t kEndGroup = WireFormatLite::WIRETYPE_END_GROUP;
constexpr uint32_t kFixed32 = WireFormatLite::WIRETYPE_FIXED32;
// The longest tag or length protobuf's parser reads (parse_context.h: ReadTag, ReadSize).
constexpr int kMaxVarint32Bytes = 5;
// Unknown groups nested in one another, at most (see Reader::Skip).
constexpr int kMaxGroupDepth = 32;

int Field(uint32_t tag) { return WireFormatLite::GetTagFieldNumber(tag); }
uint32_t Type(uint32_t tag) { return static_cast<uint32_t>(WireFormatLite::GetTagWireType(tag)); }

// Field numbers: the generated code's (the wire format is the protocol's public contract).
using herd::v1::AgentMessage;
using herd::v1::HostUsage;
using herd::v1::MetricsBatch;
using herd::v1::MetricsBatches;
using herd::v1::Probe;
using herd::v1::ResourceUsage;
using herd::v1::UnitSample;

// A CodedInputStream over one flat buffer (one message: a nested one gets a Reader of its
// own), with what reading in place needs: the bytes of a length-delimited field as a view,
// and a message's end told apart from a bad tag. Positions are checked against the
// buffer's size rather than with the stream's limits, which are calls into the library.
class Reader {
 public:
  explicit Reader(std::string_view bytes)
      : base_(bytes.data()),
        size_(static_cast<int>(bytes.size())),
        in_(reinterpret_cast<const uint8_t*>(bytes.data()), size_) {}
  // The next field's tag, or 0 at the end of the message (`ok()` then tells a clean end from
  // a bad tag or a truncated field).
  uint32_t Next() {
    const int at = in_.CurrentPosition();
    if (at == size_) return 0;  // the end (ReadTag's slow path finds it)
    const uint32_t tag = in_.ReadTag();
    // Protobuf's parser reads a tag of at most 5 bytes (a CodedInputStream, up to 10).
    if (tag == 0 || in_.CurrentPosition() - at > kMaxVarint32Bytes) return Fail();
    // Field number 0 is no field: protobuf refuses the message.
    if (WireFormatLite::GetTagFieldNumber(tag) == 0) return Fail();
    return tag;
  }
  bool ok() const { return ok_; }
  bool Fail() { return ok_ = false; }
  // The field has the wire type its declaration gives it. One of another type is an unknown
  // field to protobuf, which keeps the field's default: such a message is left to it.
  bool Is(uint32_t tag, uint32_t type) { return Type(tag) == type || Fail(); }

  bool Varint(uint64_t* v) { return in_.ReadVarint64(v) || Fail(); }
  bool Double(double* v) {
    uint64_t bits;
    if (!in_.ReadLittleEndian64(&bits)) return Fail();
    std::memcpy(v, &bits, sizeof bits);
    return true;
  }
  // A length-delimited field's bytes, in place.
  bool Bytes(std::string_view* v) {
    // Its length as protobuf's parser reads one: at most 5 bytes, below 2 GiB (a
    // CodedInputStream reads up to 10 and keeps the low 32 bits).
    const int start = in_.CurrentPosition();
    uint64_t size;
    if (!in_.ReadVarint64(&size)) return Fail();
    const int at = in_.CurrentPosition();
    if (at - start > kMaxVarint32Bytes || size > static_cast<uint64_t>(size_ - at)) return Fail();
    *v = std::string_view(base_ + at, size);
    return in_.Skip(static_cast<int>(size)) || Fail();
  }
  // A string field: its bytes, which must be UTF-8 (protobuf refuses a proto3 string that is
  // not) and at most `max` long (past it, the batch is bounded by the caller).
  bool String(std::string_view* v, size_t max) {
    return Bytes(v) &&
           ((v->size() <= max && IsValidUtf8(absl::string_view(v->data(), v->size()))) || Fail());
  }
  // An unknown field, read as protobuf's parser reads it (WireFormatLite::SkipField is more
  // lenient: long tags and lengths, field 0 in a group). A group nests at most
  // kMaxGroupDepth deep: the parser counts its depth from the top of the whole message,
  // which a nested Reader does not know, so this stays well under its 100 less the 4
  // messages above a probe.
  bool Skip(uint32_t tag, int depth = 0) {
    uint64_t ignored;
    std::string_view bytes;
    switch (Type(tag)) {
      case kVarint:
        return Varint(&ignored);
      case kFixed64:
        return in_.ReadLittleEndian64(&ignored) || Fail();
      case kFixed32: {
        uint32_t v;
        return in_.ReadLittleEndian32(&v) || Fail();
      }
      case kBytes:
        return Bytes(&bytes);
      case kStartGroup:
        if (depth >= kMaxGroupDepth) return Fail();
        for (;;) {
          const uint32_t t = Next();
          if (t == 0) return Fail();  // the message ends first
          if (Type(t) == kEndGroup) return Field(t) == Field(tag) || Fail();
          if (!Skip(t, depth + 1)) return false;
        }
      default:  // an end-group tag of no group, wire types 6 and 7
        return Fail();
    }
  }

 private:
  const char* base_;
  int size_;
  CodedInputStream in_;
  bool ok_ = true;
};

// Reads one nested message with `field(reader, tag)` for each of its fields.
template <typename F>
bool ReadMessage(std::string_view bytes, F field) {
  Reader r(bytes);
  while (const uint32_t tag = r.Next()) {
    if (!field(r, tag)) return false;
  }
  return r.ok();
}

// A varint field this reader does not keep: read only to check its wire type.
bool SkipVarint(Reader& r, uint32_t tag) {
  uint64_t ignored;
  return r.Is(tag, kVarint) && r.Varint(&ignored);
}

// An int32 or enum field (a unit's pid, state): protobuf writes a negative one in 10 bytes
// (sign-extended to 64 bits), so one that came shorter (e.g. 5 bytes, as a uint32) grows
// when the batch is serialized again, past max_batch_bytes perhaps, and BoundBatch would cut
// it. Only such a shorter one is refused; a sign-extended one (10 bytes) is read.
bool SkipInt32(Reader& r, uint32_t tag) {
  uint64_t v;
  if (!r.Is(tag, kVarint) || !r.Varint(&v)) return r.Fail();
  const int32_t n = static_cast<int32_t>(v);
  return n >= 0 || static_cast<int64_t>(v) == n || r.Fail();
}

bool ReadProbe(std::string_view bytes, const AgentLimits& limits, ProbeView* p) {
  return ReadMessage(bytes, [&](Reader& r, uint32_t tag) {
    std::string_view text;
    uint64_t v;
    switch (Field(tag)) {
      case Probe::kNameFieldNumber:
        return r.Is(tag, kBytes) && r.String(&p->name, limits.max_name_bytes);
      case Probe::kValueFieldNumber:
      case Probe::kTypeFieldNumber:
      case Probe::kUnitFieldNumber:
      case Probe::kAggTypeFieldNumber:
        return r.Is(tag, kBytes) && r.String(&text, limits.max_text_bytes);
      case Probe::kNumberFieldNumber:
        return r.Is(tag, kFixed64) && r.Double(&p->number);
      case Probe::kNumericFieldNumber:
        if (!r.Is(tag, kVarint) || !r.Varint(&v)) return r.Fail();
        p->numeric = v != 0;
        return true;
      case Probe::kUpdatedAtUnixMsFieldNumber:
        return SkipVarint(r, tag);
      default:
        return r.Skip(tag);
    }
  });
}

bool ReadUsage(std::string_view bytes, UnitView* u) {
  return ReadMessage(bytes, [&](Reader& r, uint32_t tag) {
    const int f = Field(tag);
    if (f == ResourceUsage::kCpuPercentFieldNumber) {
      return r.Is(tag, kFixed64) && r.Double(&u->cpu_percent);
    }
    if (f == ResourceUsage::kRssBytesFieldNumber) {
      return r.Is(tag, kVarint) && r.Varint(&u->rss_bytes);
    }
    // pss, uss, threads, processes, sampled_at: varints, not kept.
    if (f > ResourceUsage::kRssBytesFieldNumber &&
        f <= ResourceUsage::kSampledAtUnixMsFieldNumber) {
      return SkipVarint(r, tag);
    }
    return r.Skip(tag);
  });
}

// A HostUsage: what the series keep of it.
bool ReadHost(std::string_view bytes, double* cpu_percent, double* load1,
              uint64_t* memory_available) {
  return ReadMessage(bytes, [&](Reader& r, uint32_t tag) {
    switch (Field(tag)) {
      case HostUsage::kCpuPercentFieldNumber:
        return r.Is(tag, kFixed64) && r.Double(cpu_percent);
      case HostUsage::kLoad1FieldNumber:
        return r.Is(tag, kFixed64) && r.Double(load1);
      case HostUsage::kLoad5FieldNumber:
      case HostUsage::kLoad15FieldNumber: {
        double ignored;
        return r.Is(tag, kFixed64) && r.Double(&ignored);
      }
      case HostUsage::kMemoryAvailableBytesFieldNumber:
        return r.Is(tag, kVarint) && r.Varint(memory_available);
      case HostUsage::kMemoryTotalBytesFieldNumber:
        return SkipVarint(r, tag);
      default:
        return r.Skip(tag);
    }
  });
}

// One UnitSample into `u`, its probes appended to `probes`.
bool ReadUnit(std::string_view bytes, const AgentLimits& limits, UnitView* u,
              std::vector<ProbeView>* probes) {
  u->first_probe = static_cast<uint32_t>(probes->size());
  bool usage_seen = false;
  size_t main_probes = 0;
  return ReadMessage(bytes, [&](Reader& r, uint32_t tag) {
    std::string_view v;
    switch (Field(tag)) {
      case UnitSample::kNameFieldNumber:
        return r.Is(tag, kBytes) && r.String(&u->name, limits.max_name_bytes);
      case UnitSample::kStatusReasonFieldNumber:
      case UnitSample::kVersionFieldNumber:
        return r.Is(tag, kBytes) && r.String(&v, limits.max_text_bytes);
      case UnitSample::kMainProbesFieldNumber:
        if (++main_probes > kMaxMainProbes) return r.Fail();
        return r.Is(tag, kBytes) && r.String(&v, limits.max_name_bytes);
      case UnitSample::kUsageFieldNumber:
        // Given twice, protobuf merges the two: left to it.
        if (!r.Is(tag, kBytes) || usage_seen || !r.Bytes(&v)) return r.Fail();
        usage_seen = true;
        return ReadUsage(v, u) || r.Fail();
      case UnitSample::kProbesFieldNumber:
        if (!r.Is(tag, kBytes) || u->probes >= limits.max_probes_per_unit || !r.Bytes(&v)) {
          return r.Fail();
        }
        ++u->probes;
        return ReadProbe(v, limits, &probes->emplace_back()) || r.Fail();
      case UnitSample::kStateFieldNumber:
      case UnitSample::kPidFieldNumber:
        return SkipInt32(r, tag);
      case UnitSample::kIsModuleFieldNumber:
      case UnitSample::kRestartsFieldNumber:
      case UnitSample::kStartedAtUnixMsFieldNumber:
      case UnitSample::kIssuesCountFieldNumber:
        return SkipVarint(r, tag);
      default:
        return r.Skip(tag);
    }
  });
}

}  // namespace

void MetricsBatchView::Clear() {
  Reset();
  if (probes_.capacity() > kKeptProbes) std::vector<ProbeView>().swap(probes_);
  if (units_.capacity() > kKeptUnits) std::vector<UnitView>().swap(units_);
}

void MetricsBatchView::Reset() {
  wire_ = host_ = {};
  parsed_ = nullptr;
  at_unix_ms_ = 0;
  dropped_batches_ = 0;
  replayed_ = false;
  host_cpu_percent_ = host_load1_ = 0;
  host_memory_available_ = 0;
  units_.clear();
  probes_.clear();
}

bool MetricsBatchView::Read(std::string_view bytes, const AgentLimits& limits) {
  Reset();
  // Exact where BoundBatch estimates: a batch within this size is within it re-serialized.
  if (bytes.size() > limits.max_batch_bytes || bytes.size() > INT_MAX) return false;
  wire_ = bytes;
  bool host_seen = false;
  const bool ok = ReadMessage(bytes, [&](Reader& r, uint32_t tag) {
    std::string_view v;
    uint64_t n;
    switch (Field(tag)) {
      case MetricsBatch::kAtUnixMsFieldNumber:
        if (!r.Is(tag, kVarint) || !r.Varint(&n)) return r.Fail();
        at_unix_ms_ = static_cast<int64_t>(n);
        return true;
      case MetricsBatch::kHostFieldNumber:
        if (!r.Is(tag, kBytes) || host_seen || !r.Bytes(&host_)) return r.Fail();
        host_seen = true;
        return ReadHost(host_, &host_cpu_percent_, &host_load1_, &host_memory_available_) ||
               r.Fail();
      case MetricsBatch::kUnitsFieldNumber:
        if (!r.Is(tag, kBytes) || units_.size() >= limits.max_units || !r.Bytes(&v)) {
          return r.Fail();
        }
        return ReadUnit(v, limits, &units_.emplace_back(), &probes_) || r.Fail();
      case MetricsBatch::kDroppedBatchesFieldNumber:
        return r.Is(tag, kVarint) && r.Varint(&dropped_batches_);
      case MetricsBatch::kReplayedFieldNumber:
        if (!r.Is(tag, kVarint) || !r.Varint(&n)) return r.Fail();
        replayed_ = n != 0;
        return true;
      default:
        return r.Skip(tag);
    }
  });
  if (!ok) Reset();
  return ok;
}

void MetricsBatchView::From(const herd::v1::MetricsBatch& batch) {
  Reset();
  parsed_ = &batch;
  at_unix_ms_ = batch.at_unix_ms();
  dropped_batches_ = batch.dropped_batches();
  replayed_ = batch.replayed();
  host_cpu_percent_ = batch.host().cpu_percent();
  host_load1_ = batch.host().load1();
  host_memory_available_ = batch.host().memory_available_bytes();
  for (const auto& unit : batch.units()) {
    UnitView& u = units_.emplace_back();
    u.name = unit.name();
    u.cpu_percent = unit.usage().cpu_percent();
    u.rss_bytes = unit.usage().rss_bytes();
    u.first_probe = static_cast<uint32_t>(probes_.size());
    u.probes = static_cast<uint32_t>(unit.probes_size());
    for (const auto& p : unit.probes()) probes_.push_back({p.name(), p.number(), p.numeric()});
  }
}

void MetricsBatchView::HostUsageTo(herd::v1::HostUsage* out) const {
  if (parsed_ != nullptr) {
    *out = parsed_->host();
  } else if (!out->ParseFromArray(host_.data(), static_cast<int>(host_.size()))) {
    out->Clear();  // not reached: Read read it
  }
}

void MetricsBatchView::WireTo(std::string* out) const {
  if (parsed_ != nullptr) {
    parsed_->SerializeToString(out);
  } else {
    out->assign(wire_);
  }
}

bool MetricsBatchesOf(std::string_view agent_message, size_t max_batches,
                      std::vector<std::string_view>* batches) {
  batches->clear();
  if (agent_message.size() > INT_MAX) return false;
  Reader r(agent_message);
  const uint32_t tag = r.Next();
  std::string_view v;
  if (tag == 0 || Type(tag) != kBytes || !r.Bytes(&v) || r.Next() != 0 || !r.ok()) return false;
  if (Field(tag) == AgentMessage::kMetricsFieldNumber) {
    batches->push_back(v);
    return true;
  }
  if (Field(tag) != AgentMessage::kMetricsBatchesFieldNumber) return false;
  const bool ok = ReadMessage(v, [&](Reader& group, uint32_t t) {
    std::string_view batch;
    if (Field(t) != MetricsBatches::kBatchesFieldNumber || !group.Is(t, kBytes) ||
        batches->size() >= max_batches || !group.Bytes(&batch)) {
      return group.Fail();
    }
    batches->push_back(batch);
    return true;
  });
  if (!ok) batches->clear();
  return ok;
}

}  // namespace herd::controlplane
