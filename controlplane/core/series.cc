#include "controlplane/core/series.h"

#include <algorithm>
#include <cmath>
#include <limits>

namespace herd::controlplane {
namespace {

constexpr float kMissing = std::numeric_limits<float>::quiet_NaN();
// Longer keys ("<unit>\n<metric>") are not recorded: no real unit or probe name is this long.
constexpr size_t kMaxKey = 1024;

// Orders keys "<unit>\n<metric>" without building them.
int Compare(std::string_view key, std::string_view unit, std::string_view metric) {
  const size_t nl = key.find('\n');
  if (int c = key.substr(0, nl).compare(unit); c != 0) return c;
  return key.substr(nl + 1).compare(metric);
}

void Push(int64_t at, float v, std::vector<herd::v1::Point>* out) {
  herd::v1::Point p;
  p.set_at_unix_ms(at);
  p.set_value(static_cast<double>(v));
  out->push_back(std::move(p));
}

}  // namespace

HostSeries::HostSeries(SeriesOptions options) : options_(options) {
  // A block's sample count is 16 bits.
  options_.coarse_every = std::clamp<size_t>(options_.coarse_every, 1, 65535);
}

float HostSeries::BlockMean(const Entry& e) {
  return e.block_count > 0 ? e.block_sum / e.block_count : kMissing;
}

std::string_view HostSeries::Key(const Entry& e) const {
  return std::string_view(keys_).substr(e.key_offset, e.key_size);
}

bool HostSeries::Begin(int64_t at_ms) {
  if (times_.empty()) {
    times_.assign(std::max<size_t>({1, options_.points, options_.probe_points}), 0);
    block_times_.assign(std::max<size_t>({1, options_.coarse_points, options_.probe_coarse_points}),
                        0);
  }
  if (seq_ > 0 && at_ms < times_[seq_ % times_.size()]) {
    ++dropped_late_;
    accepting_ = false;
    return false;
  }
  ++seq_;
  times_[seq_ % times_.size()] = at_ms;
  // The last sample of a block dates the block.
  if (seq_ % Every() == 0) block_times_[Block(seq_) % block_times_.size()] = at_ms;
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

HostSeries::Window HostSeries::Shown(const Entry& e) const {
  Window w;
  // The fine tier shows the host's last samples (those older than the time ring are gone
  // even if this series' ring still holds their values); the coarse tier what came before.
  const uint32_t nf = static_cast<uint32_t>(std::min(Fine(e), times_.size()));
  w.fine_first = seq_ >= nf ? seq_ - nf + 1 : 1;
  const uint32_t nc = static_cast<uint32_t>(Coarse(e));
  if (nc > 0 && e.last_seq > 0) {
    // Complete blocks that end before the fine window, still dated by the block time ring
    // and still held for this series (its ring holds the blocks before its current one).
    const uint32_t complete = seq_ / Every();
    const uint32_t bt = static_cast<uint32_t>(block_times_.size());
    const uint32_t current = Block(e.last_seq);
    w.block_end = std::min({complete, (w.fine_first - 1) / Every(), current + 1});
    // At most nc of them.
    w.block_begin = std::max({complete > bt ? complete - bt : 0, current >= nc ? current - nc : 0,
                              w.block_end > nc ? w.block_end - nc : 0});
  }
  return w;
}

bool HostSeries::ShowsBlockInProgress(const Entry& e) const {
  return Fine(e) == 0 && Coarse(e) > 0 && e.block_count > 0 && e.last_seq > 0 &&
         Block(e.last_seq) >= seq_ / Every() && e.last_seq + times_.size() > seq_;
}

void HostSeries::DropStale() {
  // A series with nothing left in either tier is dropped.
  std::vector<Entry> entries;
  std::string keys;
  std::vector<float> values;
  for (const Entry& e : entries_) {
    const Window w = Shown(e);
    if (e.last_seq < w.fine_first && w.block_begin >= w.block_end && !ShowsBlockInProgress(e)) {
      continue;
    }
    Entry n = e;
    n.key_offset = static_cast<uint32_t>(keys.size());
    keys.append(Key(e));
    n.value_offset = static_cast<uint32_t>(values.size());
    const size_t size = Fine(e) + Coarse(e);
    values.insert(values.end(), values_.begin() + e.value_offset,
                  values_.begin() + e.value_offset + static_cast<ptrdiff_t>(size));
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
  if (unit.size() + 1 + metric.size() > kMaxKey) {
    ++dropped_series_;
    return nullptr;
  }
  if (entries_.size() >= options_.max_series) DropStale();
  if (entries_.size() >= options_.max_series) {
    ++dropped_series_;
    return nullptr;
  }
  Entry e;
  e.key_offset = static_cast<uint32_t>(keys_.size());
  e.key_size = static_cast<uint16_t>(unit.size() + 1 + metric.size());
  e.value_offset = static_cast<uint32_t>(values_.size());
  e.probe = metric.starts_with("probe:");
  const size_t size = Fine(e) + Coarse(e);
  // Both arenas grow to exactly what they hold (no doubling slack): series are added rarely.
  std::string keys;
  keys.reserve(keys_.size() + e.key_size);
  keys.append(keys_).append(unit).append("\n").append(metric);
  keys_.swap(keys);
  std::vector<float> values;
  values.reserve(values_.size() + size);
  values.assign(values_.begin(), values_.end());
  values.resize(values_.size() + size, kMissing);
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
  if (e->last_seq == seq_) return;  // already given in this sample
  const float v = static_cast<float>(value);
  float* fine = values_.data() + e->value_offset;
  const uint32_t nf = static_cast<uint32_t>(Fine(*e));
  if (nf > 0) {
    // Samples this series missed since its last value hold NaN (at most a whole ring).
    for (uint32_t s = std::max(e->last_seq + 1, seq_ > nf ? seq_ - nf + 1 : 1); s < seq_; ++s) {
      fine[s % nf] = kMissing;
    }
    fine[seq_ % nf] = v;
  }
  float* coarse = fine + nf;
  const uint32_t nc = static_cast<uint32_t>(Coarse(*e));
  if (nc > 0) {
    const uint32_t block = Block(seq_);
    if (e->last_seq > 0 && Block(e->last_seq) != block) {
      // The block of the previous value is over: its mean goes into the ring, and the blocks
      // this series missed since hold NaN (at most a whole ring).
      const uint32_t done = Block(e->last_seq);
      coarse[done % nc] = BlockMean(*e);
      for (uint32_t b = done + 1; b < block && b <= done + nc; ++b) coarse[b % nc] = kMissing;
      e->block_sum = 0;
      e->block_count = 0;
    }
    if (std::isfinite(v)) {  // a NaN or an infinity would poison the block's mean
      e->block_sum += v;
      ++e->block_count;
    }
  }
  e->last_seq = seq_;
}

bool HostSeries::Points(std::string_view unit, std::string_view metric, int64_t since_ms,
                        std::vector<herd::v1::Point>* out) const {
  const Entry* e = Find(unit, metric);
  if (e == nullptr) return false;
  if (e->last_seq == 0) return true;
  const float* fine = values_.data() + e->value_offset;
  const uint32_t nf = static_cast<uint32_t>(Fine(*e));
  const uint32_t nc = static_cast<uint32_t>(Coarse(*e));
  const Window w = Shown(*e);
  const uint32_t current = Block(e->last_seq);
  for (uint32_t b = w.block_begin; b < w.block_end; ++b) {
    const float v = b == current ? BlockMean(*e) : fine[nf + b % nc];
    const int64_t at = block_times_[b % block_times_.size()];
    if (std::isnan(v) || at < since_ms) continue;
    Push(at, v, out);
  }
  if (ShowsBlockInProgress(*e)) {
    // With no fine tier, the block in progress is shown as its mean so far, dated by its
    // latest sample.
    const int64_t at = times_[e->last_seq % times_.size()];
    if (at >= since_ms) Push(at, BlockMean(*e), out);
  }
  if (nf > 0) {
    const uint32_t first = e->last_seq >= nf ? e->last_seq - nf + 1 : 1;
    for (uint32_t s = std::max(first, w.fine_first); s <= e->last_seq; ++s) {
      const float v = fine[s % nf];
      const int64_t at = times_[s % times_.size()];
      if (std::isnan(v) || at < since_ms) continue;
      Push(at, v, out);
    }
  }
  return true;
}

size_t HostSeries::MemoryBytes() const {
  return (times_.capacity() + block_times_.capacity()) * sizeof(int64_t) +
         values_.capacity() * sizeof(float) + entries_.capacity() * sizeof(Entry) +
         (keys_.capacity() > 15 ? keys_.capacity() + 1 : 0);
}

}  // namespace herd::controlplane
