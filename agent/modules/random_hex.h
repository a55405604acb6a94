// Random lowercase hex digits: names that must not collide (a replaced module's
// `.old-XXXXXX` directory) and the uuids of scoped actions. Not for secrets.
#pragma once

#include <cstddef>
#include <random>
#include <string>

namespace herd::agent {

inline std::string RandomHex(size_t n) {
  static thread_local std::mt19937_64 rng{std::random_device{}()};
  static const char* digits = "0123456789abcdef";
  std::string s;
  for (size_t i = 0; i < n; ++i) s.push_back(digits[rng() % 16]);
  return s;
}

}  // namespace herd::agent
