// Label selectors: comma-separated terms `key=value` or `key!=value`, all of which must hold
// ("env=prod,role!=canary"). A missing label never equals a value (and so satisfies `!=`).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace herd {

class LabelSelector {
 public:
  struct Term {
    std::string key;
    std::string value;
    bool negated = false;
  };

  // Keys and values: 1-63 (values 0-63) of [A-Za-z0-9._-/]; whitespace around terms ignored.
  static absl::StatusOr<LabelSelector> Parse(absl::string_view text);

  bool Matches(const std::map<std::string, std::string>& labels) const;
  // Canonical text: terms sorted, no spaces. Two selectors with the same canonical text
  // select the same hosts.
  std::string ToString() const;
  size_t size() const { return terms_.size(); }
  const std::vector<Term>& terms() const { return terms_; }

 private:
  std::vector<Term> terms_;
};

// Parses "k=v,k2=v2" host labels (agentd --labels). Same character rules as selectors.
absl::StatusOr<std::map<std::string, std::string>> ParseLabels(absl::string_view text);

}  // namespace herd
