#include "controlplane/core/series.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <utility>


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

namespace {
void AppendU32(std::string* out, uint32_t v) { out->append(reinterpret_cast<const char*>(&v), 4); }
}  // namespace

Interner<HostSeries::Layout>& HostSeries::Layouts() {
  static auto* layouts = new Interner<Layout>;  // never destroyed: hosts may outlive main()
  return *layouts;
}

const HostSeries::Layout& HostSeries::layout() const {
  static const Layout* empty = new Layout;
  if (draft_) return *draft_;
  return layout_ ? *layout_ : *empty;
}

float HostSeries::BlockMean(const State& st) {
  return st.block_count > 0 ? st.block_sum / st.block_count : kMissing;
}

std::string_view HostSeries::Key(const Layout& l, const Slot& s) const {
  return std::string_view(l.keys).substr(s.key_offset, s.key_size);
}

bool HostSeries::Begin(int64_t at_ms) {
  if (times_.empty()) {
    times_.assign(std::max<size_t>({1, options_.points, options_.probe_points}), 0);
    block_times_.assign(std::max<size_t>({1, options_.coarse_points, options_.probe_coarse_points}),
                        0);
  }
  if (draft_) {
    // The series changed in the last sample: share the layout again. Layouts are found by
    // the ring sizes they were laid out for, then every key with its length.
    std::string key;
    for (size_t v : {options_.points, options_.probe_points, options_.coarse_points,
                     options_.probe_coarse_points}) {
      AppendU32(&key, static_cast<uint32_t>(v));
    }
    for (const Slot& slot : draft_->slots) {
      AppendU32(&key, slot.key_size);
      key.append(Key(*draft_, slot));
    }
    draft_->keys.shrink_to_fit();
    draft_->slots.shrink_to_fit();
    layout_ = Layouts().Intern(std::move(key), std::move(*draft_));
    draft_.reset();
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

int64_t HostSeries::Find(std::string_view unit, std::string_view metric) {
  const Layout& l = layout();
  // Batches list their series in the same order every time: try the one after the last.
  if (cursor_ < l.slots.size() && Compare(Key(l, l.slots[cursor_]), unit, metric) == 0) {
    return static_cast<int64_t>(cursor_++);
  }
  const int64_t at = std::as_const(*this).Find(unit, metric);
  if (at >= 0) cursor_ = static_cast<size_t>(at) + 1;
  return at;
}

int64_t HostSeries::Find(std::string_view unit, std::string_view metric) const {
  const Layout& l = layout();
  auto it = std::lower_bound(l.slots.begin(), l.slots.end(), 0, [&](const Slot& s, int) {
    return Compare(Key(l, s), unit, metric) < 0;
  });
  if (it == l.slots.end() || Compare(Key(l, *it), unit, metric) != 0) return -1;
  return it - l.slots.begin();
}

HostSeries::Window HostSeries::Shown(const Slot& s, const State& st) const {
  Window w;
  // The fine tier shows the host's last samples (those older than the time ring are gone
  // even if this series' ring still holds their values); the coarse tier what came before.
  const uint32_t nf = static_cast<uint32_t>(std::min(Fine(s), times_.size()));
  w.fine_first = seq_ >= nf ? seq_ - nf + 1 : 1;
  const uint32_t nc = static_cast<uint32_t>(Coarse(s));
  if (nc > 0 && st.last_seq > 0) {
    // Complete blocks that end before the fine window, still dated by the block time ring
    // and still held for this series (its ring holds the blocks before its current one).
    const uint32_t complete = seq_ / Every();
    const uint32_t bt = static_cast<uint32_t>(block_times_.size());
    const uint32_t current = Block(st.last_seq);
    w.block_end = std::min({complete, (w.fine_first - 1) / Every(), current + 1});
    // At most nc of them.
    w.block_begin = std::max({complete > bt ? complete - bt : 0, current >= nc ? current - nc : 0,
                              w.block_end > nc ? w.block_end - nc : 0});
  }
  return w;
}

bool HostSeries::ShowsBlockInProgress(const Slot& s, const State& st) const {
  return Fine(s) == 0 && Coarse(s) > 0 && st.block_count > 0 && st.last_seq > 0 &&
         Block(st.last_seq) >= seq_ / Every() && st.last_seq + times_.size() > seq_;
}

void HostSeries::Relayout(Layout next, const std::vector<int64_t>& from) {
  const Layout& now = layout();
  std::vector<State> states(next.slots.size());
  size_t offset = 0;
  for (Slot& slot : next.slots) {
    slot.value_offset = static_cast<uint32_t>(offset);
    offset += Fine(slot) + Coarse(slot);
  }
  next.values = offset;
  std::vector<float> values(offset, kMissing);
  for (size_t i = 0; i < next.slots.size(); ++i) {
    if (from[i] < 0) continue;
    const Slot& old = now.slots[static_cast<size_t>(from[i])];
    std::copy_n(values_.begin() + old.value_offset, Fine(old) + Coarse(old),
                values.begin() + next.slots[i].value_offset);
    states[i] = states_[static_cast<size_t>(from[i])];
  }
  draft_ = std::make_unique<Layout>(std::move(next));
  layout_.reset();
  states_.swap(states);
  values_.swap(values);
  cursor_ = 0;
}

void HostSeries::DropStale() {
  // A series with nothing left in either tier is dropped.
  const Layout& now = layout();
  Layout next;
  std::vector<int64_t> from;
  for (size_t i = 0; i < now.slots.size(); ++i) {
    const Slot& s = now.slots[i];
    const State& st = states_[i];
    const Window w = Shown(s, st);
    if (st.last_seq < w.fine_first && w.block_begin >= w.block_end &&
        !ShowsBlockInProgress(s, st)) {
      continue;
    }
    Slot n = s;
    n.key_offset = static_cast<uint32_t>(next.keys.size());
    next.keys.append(Key(now, s));
    next.slots.push_back(n);
    from.push_back(static_cast<int64_t>(i));
  }
  Relayout(std::move(next), from);
}

int64_t HostSeries::Insert(std::string_view unit, std::string_view metric) {
  if (unit.size() + 1 + metric.size() > kMaxKey) {
    ++dropped_series_;
    return -1;
  }
  // Stale series are looked for once per sample: a host past the cap offers a new series
  // with every value of every batch, and each look rebuilds the layout.
  if (layout().slots.size() >= options_.max_series && stale_dropped_seq_ != seq_) {
    stale_dropped_seq_ = seq_;
    DropStale();
  }
  if (layout().slots.size() >= options_.max_series) {
    ++dropped_series_;
    return -1;
  }
  const Layout& now = layout();
  Slot slot;
  slot.key_offset = static_cast<uint32_t>(now.keys.size());
  slot.key_size = static_cast<uint16_t>(unit.size() + 1 + metric.size());
  slot.probe = metric.starts_with("probe:");
  auto it = std::lower_bound(now.slots.begin(), now.slots.end(), 0, [&](const Slot& s, int) {
    return Compare(Key(now, s), unit, metric) < 0;
  });
  const size_t at = static_cast<size_t>(it - now.slots.begin());
  Layout next;
  next.keys.reserve(now.keys.size() + slot.key_size);
  next.keys.append(now.keys).append(unit).append("\n").append(metric);
  next.slots.reserve(now.slots.size() + 1);
  next.slots.assign(now.slots.begin(), it);
  next.slots.push_back(slot);
  next.slots.insert(next.slots.end(), it, now.slots.end());
  std::vector<int64_t> from(next.slots.size());
  for (size_t i = 0; i < from.size(); ++i) {
    from[i] = i < at ? static_cast<int64_t>(i) : i == at ? -1 : static_cast<int64_t>(i - 1);
  }
  Relayout(std::move(next), from);
  cursor_ = at + 1;
  return static_cast<int64_t>(at);
}

void HostSeries::Add(std::string_view unit, std::string_view metric, double value) {
  if (!accepting_) return;
  int64_t i = Find(unit, metric);
  if (i < 0 && (i = Insert(unit, metric)) < 0) return;
  const Slot& slot = layout().slots[static_cast<size_t>(i)];
  State& st = states_[static_cast<size_t>(i)];
  if (st.last_seq == seq_) return;  // already given in this sample
  const float v = static_cast<float>(value);
  float* fine = values_.data() + slot.value_offset;
  const uint32_t nf = static_cast<uint32_t>(Fine(slot));
  if (nf > 0) {
    // Samples this series missed since its last value hold NaN (at most a whole ring).
    for (uint32_t s = std::max(st.last_seq + 1, seq_ > nf ? seq_ - nf + 1 : 1); s < seq_; ++s) {
      fine[s % nf] = kMissing;
    }
    fine[seq_ % nf] = v;
  }
  float* coarse = fine + nf;
  const uint32_t nc = static_cast<uint32_t>(Coarse(slot));
  if (nc > 0) {
    const uint32_t block = Block(seq_);
    if (st.last_seq > 0 && Block(st.last_seq) != block) {
      // The block of the previous value is over: its mean goes into the ring, and the blocks
      // this series missed since hold NaN (at most a whole ring).
      const uint32_t done = Block(st.last_seq);
      coarse[done % nc] = BlockMean(st);
      for (uint32_t b = done + 1; b < block && b <= done + nc; ++b) coarse[b % nc] = kMissing;
      st.block_sum = 0;
      st.block_count = 0;
    }
    if (std::isfinite(v)) {  // a NaN or an infinity would poison the block's mean
      st.block_sum += v;
      ++st.block_count;
    }
  }
  st.last_seq = seq_;
}

bool HostSeries::Points(std::string_view unit, std::string_view metric, int64_t since_ms,
                        std::vector<herd::v1::Point>* out) const {
  const int64_t i = Find(unit, metric);
  if (i < 0) return false;
  const Slot& slot = layout().slots[static_cast<size_t>(i)];
  const State& st = states_[static_cast<size_t>(i)];
  if (st.last_seq == 0) return true;
  const float* fine = values_.data() + slot.value_offset;
  const uint32_t nf = static_cast<uint32_t>(Fine(slot));
  const uint32_t nc = static_cast<uint32_t>(Coarse(slot));
  const Window w = Shown(slot, st);
  const uint32_t current = Block(st.last_seq);
  for (uint32_t b = w.block_begin; b < w.block_end; ++b) {
    const float v = b == current ? BlockMean(st) : fine[nf + b % nc];
    const int64_t at = block_times_[b % block_times_.size()];
    if (std::isnan(v) || at < since_ms) continue;
    Push(at, v, out);
  }
  if (ShowsBlockInProgress(slot, st)) {
    // With no fine tier, the block in progress is shown as its mean so far, dated by its
    // latest sample.
    const int64_t at = times_[st.last_seq % times_.size()];
    if (at >= since_ms) Push(at, BlockMean(st), out);
  }
  if (nf > 0) {
    const uint32_t first = st.last_seq >= nf ? st.last_seq - nf + 1 : 1;
    for (uint32_t s = std::max(first, w.fine_first); s <= st.last_seq; ++s) {
      const float v = fine[s % nf];
      const int64_t at = times_[s % times_.size()];
      if (std::isnan(v) || at < since_ms) continue;
      Push(at, v, out);
    }
  }
  return true;
}

size_t HostSeries::MemoryBytes() const {
  size_t own = (times_.capacity() + block_times_.capacity()) * sizeof(int64_t) +
               values_.capacity() * sizeof(float) + states_.capacity() * sizeof(State);
  if (draft_) {
    own += sizeof(Layout) + draft_->slots.capacity() * sizeof(Slot) +
           (draft_->keys.capacity() > 15 ? draft_->keys.capacity() + 1 : 0);
  }
  return own;
}

}  // namespace herd::controlplane
