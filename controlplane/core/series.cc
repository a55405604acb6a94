#include "controlplane/core/series.h"

#include <algorithm>
#include <cmath>
#include <limits>


namespace herd::controlplane {
namespace {

constexpr float kMissing = std::numeric_limits<float>::quiet_NaN();

// Orders keys "<unit>\n<metric>" without building them.
int Compare(std::string_view key, std::string_view unit, std::string_view metric) {
  const size_t nl = key.find('\n');
  if (int c = key.substr(0, nl).compare(unit); c != 0) return c;
  return key.substr(nl + 1).compare(metric);
}

}  // namespace

size_t HostSeries::Capacity(std::string_view metric) const {
  size_t n = metric.starts_with("probe:") ? options_.probe_points : options_.points;
  return std::max<size_t>(1, std::min(n, options_.points));
}

std::string_view HostSeries::Key(const Entry& e) const {
  return std::string_view(keys_).substr(e.key_offset, e.key_size);
}

bool HostSeries::Begin(int64_t at_ms) {
  if (times_.empty()) times_.assign(std::max<size_t>(1, options_.points), 0);
  if (seq_ > 0 && at_ms < times_[seq_ % times_.size()]) {
    ++dropped_late_;
    accepting_ = false;
    return false;
  }
  ++seq_;
  times_[seq_ % times_.size()] = at_ms;
  accepting_ = true;
  cursor_ = 0;
  return true;
}

HostSeries::Entry* HostSeries::Find(std::string_view unit, std::string_view metric) {
  // Batches list their series in the same order every time: try the one after the last.
  if (cursor_ < entries_.size() && Compare(Key(entries_[cursor_]), unit, metric) == 0) {
    return &entries_[cursor_++];
  }
  auto it = std::lower_bound(entries_.begin(), entries_.end(), 0,
                             [&](const Entry& e, int) { return Compare(Key(e), unit, metric) < 0; });
  if (it != entries_.end() && Compare(Key(*it), unit, metric) == 0) {
    cursor_ = static_cast<size_t>(it - entries_.begin()) + 1;
    return &*it;
  }
  return nullptr;
}

const HostSeries::Entry* HostSeries::Find(std::string_view unit, std::string_view metric) const {
  auto it = std::lower_bound(entries_.begin(), entries_.end(), 0,
                             [&](const Entry& e, int) { return Compare(Key(e), unit, metric) < 0; });
  return it != entries_.end() && Compare(Key(*it), unit, metric) == 0 ? &*it : nullptr;
}

void HostSeries::DropStale() {
  // A series whose last value is older than the time ring has nothing left to show.
  std::vector<Entry> entries;
  std::string keys;
  std::vector<float> values;
  for (const Entry& e : entries_) {
    if (e.last_seq + times_.size() <= seq_) continue;
    Entry n = e;
    n.key_offset = static_cast<uint32_t>(keys.size());
    keys.append(Key(e));
    n.value_offset = static_cast<uint32_t>(values.size());
    values.insert(values.end(), values_.begin() + e.value_offset,
                  values_.begin() + e.value_offset + e.capacity);
    entries.push_back(n);
  }
  entries.shrink_to_fit();
  keys.shrink_to_fit();
  values.shrink_to_fit();
  entries_.swap(entries);
  keys_.swap(keys);
  values_.swap(values);
  cursor_ = 0;
}

HostSeries::Entry* HostSeries::Insert(std::string_view unit, std::string_view metric) {
  if (entries_.size() >= options_.max_series) DropStale();
  if (entries_.size() >= options_.max_series) {
    ++dropped_series_;
    return nullptr;
  }
  Entry e;
  e.key_offset = static_cast<uint32_t>(keys_.size());
  e.key_size = static_cast<uint32_t>(unit.size() + 1 + metric.size());
  e.value_offset = static_cast<uint32_t>(values_.size());
  e.capacity = static_cast<uint32_t>(Capacity(metric));
  // Both arenas grow to exactly what they hold (no doubling slack): series are added rarely.
  std::string keys;
  keys.reserve(keys_.size() + e.key_size);
  keys.append(keys_).append(unit).append("\n").append(metric);
  keys_.swap(keys);
  std::vector<float> values;
  values.reserve(values_.size() + e.capacity);
  values.assign(values_.begin(), values_.end());
  values.resize(values_.size() + e.capacity, kMissing);
  values_.swap(values);
  auto it = std::lower_bound(entries_.begin(), entries_.end(), 0,
                             [&](const Entry& x, int) { return Compare(Key(x), unit, metric) < 0; });
  const size_t at = static_cast<size_t>(it - entries_.begin());
  std::vector<Entry> entries;
  entries.reserve(entries_.size() + 1);
  entries.assign(entries_.begin(), it);
  entries.push_back(e);
  entries.insert(entries.end(), entries_.begin() + static_cast<ptrdiff_t>(at), entries_.end());
  entries_.swap(entries);
  cursor_ = at + 1;
  return &entries_[at];
}

void HostSeries::Add(std::string_view unit, std::string_view metric, double value) {
  if (!accepting_) return;
  Entry* e = Find(unit, metric);
  if (e == nullptr && (e = Insert(unit, metric)) == nullptr) return;
  float* ring = values_.data() + e->value_offset;
  const uint64_t cap = e->capacity;
  // Samples this series missed since its last value hold NaN (at most a whole ring).
  for (uint64_t s = std::max(e->last_seq + 1, seq_ > cap ? seq_ - cap + 1 : 1); s < seq_; ++s) {
    ring[s % cap] = kMissing;
  }
  ring[seq_ % cap] = static_cast<float>(value);
  e->last_seq = seq_;
}

bool HostSeries::Points(std::string_view unit, std::string_view metric, int64_t since_ms,
                        std::vector<herd::v1::Point>* out) const {
  const Entry* e = Find(unit, metric);
  if (e == nullptr) return false;
  const float* ring = values_.data() + e->value_offset;
  const uint64_t cap = e->capacity;
  const uint64_t first = e->last_seq >= cap ? e->last_seq - cap + 1 : 1;
  // Samples older than the time ring are gone even if this ring still holds their values.
  const uint64_t oldest = seq_ > times_.size() ? seq_ - times_.size() + 1 : 1;
  for (uint64_t s = std::max(first, oldest); s <= e->last_seq && s > 0; ++s) {
    const float v = ring[s % cap];
    const int64_t at = times_[s % times_.size()];
    if (std::isnan(v) || at < since_ms) continue;
    herd::v1::Point p;
    p.set_at_unix_ms(at);
    p.set_value(static_cast<double>(v));
    out->push_back(std::move(p));
  }
  return true;
}

size_t HostSeries::MemoryBytes() const {
  return times_.capacity() * sizeof(int64_t) + values_.capacity() * sizeof(float) +
         entries_.capacity() * sizeof(Entry) + (keys_.capacity() > 15 ? keys_.capacity() + 1 : 0);
}

}  // namespace herd::controlplane
