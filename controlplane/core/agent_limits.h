// AgentLimits: what one host may make the control plane hold. Everything an agent sends is
// kept in memory for the whole fleet (the latest batch, the inventory, events, series), so a
// faulty or hostile agent must not be able to grow it without bound, nor slow the listings
// and scrapes every other host shares (one fake host with 200,000 units took the control
// plane from 184 MB to 1.45 GB and made ListHosts take 11 s: issue 20).
//
// The hub bounds each message where it enters, before it keeps or relays anything: items
// past a count are dropped (the first ones are kept, in the agent's order), text past its
// length is clipped, an item whose *name* is too long is dropped (a clipped name would be
// another name), and a batch or an inventory still too large after that loses its last
// units or modules until it fits. Each kind of cut is a Limit, counted (Hub::Stats) and
// logged with the host's id (at most once a minute per host and kind). agentd keeps within
// these on its own (256 probes per module, 4 KiB of text per value): only a broken or
// hostile agent meets them. Pure functions: unit-tested and fuzzed on their own.
#pragma once

#include <array>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "herd/v1/gateway.pb.h"

namespace herd::controlplane {

struct AgentLimits {
  // Units of one metrics batch (the host's apps and modules).
  size_t max_units = 1000;
  // Probes of one unit (agentd sends at most 256 per module).
  size_t max_probes_per_unit = 256;
  // Modules of one inventory (Hello or Inventory).
  size_t max_modules = 256;
  // Names (units, modules, probes, actions, event kinds): an item with a longer one is
  // dropped. npm allows 214 bytes for a package name.
  size_t max_name_bytes = 256;
  // Other text (a probe's value, a unit's status reason, an event's detail, versions...) is
  // clipped to this (agentd keeps 4 KiB of a probe value).
  size_t max_text_bytes = 4096;
  // A module's manifest defaults (package.json `config`, as JSON): a module with more is
  // dropped from the inventory (clipped JSON would not parse).
  size_t max_defaults_bytes = 64 * 1024;
  // One batch, serialized, once bounded as above: the latest is kept per host (10 modules of
  // 10 probes are ~4.3 KiB).
  size_t max_batch_bytes = 1 << 20;
  // One inventory, serialized, once bounded as above (kept per host).
  size_t max_inventory_bytes = 2 << 20;
};

// Main probes are names of probes the unit has: no more of them than the widget shows.
inline constexpr size_t kMaxMainProbes = 16;

// The kinds of cut, for counters and logs.
enum class Limit : size_t {
  kUnits = 0,      // units past max_units
  kProbes,         // probes past max_probes_per_unit
  kModules,        // modules past max_modules, or with too large defaults
  kNames,          // items dropped for a name past max_name_bytes
  kText,           // text clipped to max_text_bytes
  kBatchBytes,     // units dropped to fit max_batch_bytes
  kInventoryBytes, // modules dropped to fit max_inventory_bytes
  kSeries,         // series not recorded past SeriesOptions::max_series
  kCount
};
inline constexpr size_t kLimitKinds = static_cast<size_t>(Limit::kCount);
// "units", "probes", ...: the `limit` label of herd_controlplane_agent_limited_total.
std::string_view LimitName(Limit l);

// How many items each kind of cut removed (or clipped) from one message.
struct LimitHits {
  std::array<uint64_t, kLimitKinds> n{};
  void Add(Limit l, uint64_t count = 1) { n[static_cast<size_t>(l)] += count; }
  uint64_t operator[](Limit l) const { return n[static_cast<size_t>(l)]; }
  bool any() const;
};

// `batch` bounded by `limits`: false (and `out` untouched) when it is within them already,
// which is the common case and costs one pass over the batch, no copy; otherwise the bounded
// copy is in `out` and `hits` says what was cut.
bool BoundBatch(const herd::v1::MetricsBatch& batch, const AgentLimits& limits,
                herd::v1::MetricsBatch* out, LimitHits* hits);

// Bounds an inventory (Hello's or Inventory's modules) in place, including what only the
// dashboard shows (logo, actions, issues).
void BoundInventory(google::protobuf::RepeatedPtrField<herd::v1::ModuleInventory>* modules,
                    const AgentLimits& limits, LimitHits* hits);

// Bounds a module event's text in place; false when it should be dropped (its unit's name is
// too long).
bool BoundEvent(herd::v1::ModuleEvent* event, const AgentLimits& limits, LimitHits* hits);

}  // namespace herd::controlplane
