#include "controlplane/core/agent_limits.h"

#include <algorithm>
#include <string>
#include "common/utf8.h"

namespace herd::controlplane {
namespace {

using herd::v1::MetricsBatch;
using herd::v1::Probe;
using herd::v1::UnitSample;

bool Long(const std::string& s, size_t max) { return s.size() > max; }

void Clip(std::string* s, size_t max, LimitHits* hits) {
  if (s->size() > max) {
    // Between characters: a string cut inside one is no longer UTF-8, and every reply that
    // carries it (ListHosts, GetHost, a watch) would fail to parse for every client.
    *s = TruncateUtf8(std::move(*s), max);
    hits->Add(Limit::kText);
  }
}

// Text of a probe beyond its name.
bool ProbeTextLong(const Probe& p, size_t max) {
  return Long(p.value(), max) || Long(p.type(), max) || Long(p.unit(), max) ||
         Long(p.agg_type(), max);
}

// The wire size of one repeated element: its bytes, its tag and its length prefix.
size_t ElementBytes(size_t size) { return size + 1 + (size < 128 ? 1 : size < 16384 ? 2 : 3); }

}  // namespace

std::string_view LimitName(Limit l) {
  switch (l) {
    case Limit::kUnits: return "units";
    case Limit::kProbes: return "probes";
    case Limit::kModules: return "modules";
    case Limit::kNames: return "names";
    case Limit::kText: return "text";
    case Limit::kBatchBytes: return "batch_bytes";
    case Limit::kInventoryBytes: return "inventory_bytes";
    case Limit::kSeries: return "series";
    case Limit::kCount: break;
  }
  return "unknown";
}

bool LimitHits::any() const {
  return std::any_of(n.begin(), n.end(), [](uint64_t v) { return v > 0; });
}

namespace {
// One pass to tell whether anything is past a limit: the sizes of its text are its bulk,
// so their sum (with a little per item) tells a batch that may be too large; only that
// one is measured exactly.
bool MayBeOver(const MetricsBatch& batch, const AgentLimits& limits) {
  bool over = static_cast<size_t>(batch.units_size()) > limits.max_units;
  size_t estimate = 64;
  for (const UnitSample& u : batch.units()) {
    if (over) break;
    over = Long(u.name(), limits.max_name_bytes) ||
           static_cast<size_t>(u.probes_size()) > limits.max_probes_per_unit ||
           static_cast<size_t>(u.main_probes_size()) > kMaxMainProbes ||
           Long(u.status_reason(), limits.max_text_bytes) ||
           Long(u.version(), limits.max_text_bytes);
    estimate += 64 + u.name().size() + u.status_reason().size() + u.version().size();
    for (const std::string& m : u.main_probes()) {
      over = over || Long(m, limits.max_name_bytes);
      estimate += 2 + m.size();
    }
    for (const Probe& p : u.probes()) {
      over = over || Long(p.name(), limits.max_name_bytes) || ProbeTextLong(p, limits.max_text_bytes);
      estimate += 32 + p.name().size() + p.value().size() + p.type().size() + p.unit().size() +
                  p.agg_type().size();
    }
  }
  return over || estimate > limits.max_batch_bytes;
}

// Copies one unit into `u`: everything but the probes, then the probes that fit.
void CopyUnit(const UnitSample& in, const AgentLimits& limits, UnitSample* u, LimitHits* cut) {
  u->set_name(in.name());
  u->set_is_module(in.is_module());
  u->set_state(in.state());
  u->set_pid(in.pid());
  u->set_restarts(in.restarts());
  u->set_started_at_unix_ms(in.started_at_unix_ms());
  if (in.has_usage()) *u->mutable_usage() = in.usage();
  u->set_issues_count(in.issues_count());
  u->set_status_reason(in.status_reason());
  Clip(u->mutable_status_reason(), limits.max_text_bytes, cut);
  u->set_version(in.version());
  Clip(u->mutable_version(), limits.max_text_bytes, cut);
  for (const std::string& m : in.main_probes()) {
    if (Long(m, limits.max_name_bytes) ||
        static_cast<size_t>(u->main_probes_size()) >= kMaxMainProbes) {
      cut->Add(Limit::kNames);
      continue;
    }
    u->add_main_probes(m);
  }
  for (const Probe& p : in.probes()) {
    if (Long(p.name(), limits.max_name_bytes)) {
      cut->Add(Limit::kNames);
      continue;
    }
    if (static_cast<size_t>(u->probes_size()) >= limits.max_probes_per_unit) {
      cut->Add(Limit::kProbes);
      continue;
    }
    Probe* q = u->add_probes();
    *q = p;
    Clip(q->mutable_value(), limits.max_text_bytes, cut);
    Clip(q->mutable_type(), limits.max_text_bytes, cut);
    Clip(q->mutable_unit(), limits.max_text_bytes, cut);
    Clip(q->mutable_agg_type(), limits.max_text_bytes, cut);
  }
}
}  // namespace

bool BoundBatch(const MetricsBatch& batch, const AgentLimits& limits, MetricsBatch* out,
                LimitHits* hits) {
  if (!MayBeOver(batch, limits)) return false;

  LimitHits cut;
  MetricsBatch b;
  b.set_at_unix_ms(batch.at_unix_ms());
  if (batch.has_host()) *b.mutable_host() = batch.host();
  b.set_dropped_batches(batch.dropped_batches());
  b.set_replayed(batch.replayed());
  for (const UnitSample& in : batch.units()) {
    if (Long(in.name(), limits.max_name_bytes)) {
      cut.Add(Limit::kNames);
      continue;
    }
    if (static_cast<size_t>(b.units_size()) >= limits.max_units) {
      cut.Add(Limit::kUnits);
      continue;
    }
    CopyUnit(in, limits, b.add_units(), &cut);
  }
  // Still too large: the last units go (the host's own usage stays).
  size_t bytes = b.ByteSizeLong();
  while (bytes > limits.max_batch_bytes && b.units_size() > 0) {
    bytes -= std::min(bytes, ElementBytes(b.units(b.units_size() - 1).ByteSizeLong()));
    b.mutable_units()->RemoveLast();
    cut.Add(Limit::kBatchBytes);
  }
  if (!cut.any()) return false;  // the estimate was high: nothing was past a limit
  for (size_t i = 0; i < kLimitKinds; ++i) hits->n[i] += cut.n[i];
  *out = std::move(b);
  return true;
}

void BoundInventory(google::protobuf::RepeatedPtrField<herd::v1::ModuleInventory>* modules,
                    const AgentLimits& limits, LimitHits* hits) {
  const size_t name_max = limits.max_name_bytes, text_max = limits.max_text_bytes;
  google::protobuf::RepeatedPtrField<herd::v1::ModuleInventory> kept;
  for (auto& m : *modules) {
    if (Long(m.name(), name_max)) {
      hits->Add(Limit::kNames);
      continue;
    }
    if (Long(m.defaults_json(), limits.max_defaults_bytes) ||
        static_cast<size_t>(kept.size()) >= limits.max_modules) {
      hits->Add(Limit::kModules);
      continue;
    }
    Clip(m.mutable_version(), text_max, hits);
    Clip(m.mutable_source(), text_max, hits);
    // What only the dashboard shows, bounded tighter. A module that announced no widget
    // keeps none (an empty one would read as "every block off").
    Clip(m.mutable_description(), 1024, hits);
    Clip(m.mutable_interpreter(), 256, hits);
    if (m.has_widget()) {
      auto* w = m.mutable_widget();
      Clip(w->mutable_logo(), 4096, hits);
      Clip(w->mutable_type(), 64, hits);
      while (w->theme_size() > 8) w->mutable_theme()->RemoveLast();
      for (auto& t : *w->mutable_theme()) Clip(&t, 64, hits);
      while (static_cast<size_t>(w->main_probes_size()) > kMaxMainProbes) {
        w->mutable_main_probes()->RemoveLast();
      }
      for (auto& p : *w->mutable_main_probes()) Clip(&p, name_max, hits);
    }
    while (m.actions_size() > 128) m.mutable_actions()->RemoveLast();
    for (auto& a : *m.mutable_actions()) {
      Clip(a.mutable_name(), name_max, hits);
      Clip(a.mutable_type(), 64, hits);
    }
    while (m.recent_issues_size() > 5) m.mutable_recent_issues()->DeleteSubrange(0, 1);
    for (auto& i : *m.mutable_recent_issues()) {
      Clip(i.mutable_name(), name_max, hits);
      Clip(i.mutable_message(), text_max, hits);
      Clip(i.mutable_stack(), 4 * text_max, hits);
    }
    kept.Add(std::move(m));
  }
  size_t bytes = 0;
  for (const auto& m : kept) bytes += ElementBytes(m.ByteSizeLong());
  while (bytes > limits.max_inventory_bytes && !kept.empty()) {
    bytes -= std::min(bytes, ElementBytes(kept[kept.size() - 1].ByteSizeLong()));
    kept.RemoveLast();
    hits->Add(Limit::kInventoryBytes);
  }
  modules->Swap(&kept);
}

bool BoundEvent(herd::v1::ModuleEvent* event, const AgentLimits& limits, LimitHits* hits) {
  if (Long(event->unit(), limits.max_name_bytes) || Long(event->kind(), limits.max_name_bytes)) {
    hits->Add(Limit::kNames);
    return false;
  }
  Clip(event->mutable_detail(), limits.max_text_bytes, hits);
  return true;
}

}  // namespace herd::controlplane
