// Interner<T>: one shared immutable copy of each distinct value, for state that many hosts
// hold alike (the modules they run, the config they were sent): 10,000 hosts of one kind
// hold one copy, not 10,000. Values are found by a key that the caller derives from the
// content (equal keys mean equal values); a value lives as long as someone holds it, and the
// table forgets it later: entries of values gone are swept whenever the table has doubled
// since the last sweep, so it stays within twice the values alive (plus 64). Thread-safe.
#pragma once

#include <algorithm>
#include <memory>
#include <string>

#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"

namespace herd {

template <typename T>
class Interner {
 public:
  // The held copy of a value with this key, or `value`, which becomes it.
  std::shared_ptr<const T> Intern(std::string key, T value) {
    absl::MutexLock l(&mu_);
    auto& slot = table_[std::move(key)];
    if (auto held = slot.lock()) return held;
    auto made = std::make_shared<const T>(std::move(value));
    slot = made;
    if (table_.size() >= next_sweep_) {
      absl::erase_if(table_, [](const auto& kv) { return kv.second.expired(); });
      next_sweep_ = std::max<size_t>(64, 2 * table_.size());
    }
    return made;
  }

  // Distinct values alive, and entries in the table (those of values gone included, until
  // swept), for tests and benchmarks.
  size_t Alive() const {
    absl::MutexLock l(&mu_);
    size_t n = 0;
    for (const auto& [key, value] : table_) n += value.expired() ? 0 : 1;
    return n;
  }
  size_t TableSize() const {
    absl::MutexLock l(&mu_);
    return table_.size();
  }

 private:
  mutable absl::Mutex mu_;
  absl::flat_hash_map<std::string, std::weak_ptr<const T>> table_ ABSL_GUARDED_BY(mu_);
  size_t next_sweep_ ABSL_GUARDED_BY(mu_) = 64;
};

}  // namespace herd
