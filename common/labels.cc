#include "common/labels.h"

#include <algorithm>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"

namespace herd {
namespace {

bool ValidChars(absl::string_view s) {
  return std::all_of(s.begin(), s.end(), [](char c) {
    return absl::ascii_isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' ||
           c == '-' || c == '/';
  });
}

absl::Status CheckPart(absl::string_view what, absl::string_view s, absl::string_view term,
                       bool may_be_empty) {
  if ((!may_be_empty && s.empty()) || s.size() > 63 || !ValidChars(s)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "\"", term, "\": the ", what, " must be ", may_be_empty ? "0" : "1",
        "-63 of letters, digits, '.', '_', '-', '/' (e.g. env=prod,role!=canary)"));
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<LabelSelector> LabelSelector::Parse(absl::string_view text) {
  LabelSelector sel;
  if (absl::StripAsciiWhitespace(text).empty()) {
    return absl::InvalidArgumentError(
        "empty selector: give terms like env=prod or role!=canary, separated by commas");
  }
  for (absl::string_view raw : absl::StrSplit(text, ',')) {
    absl::string_view term = absl::StripAsciiWhitespace(raw);
    if (term.empty()) {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", text, "\": empty term between commas"));
    }
    Term t;
    size_t ne = term.find("!=");
    size_t eq = term.find('=');
    if (ne != absl::string_view::npos) {
      t.negated = true;
      t.key = std::string(absl::StripAsciiWhitespace(term.substr(0, ne)));
      t.value = std::string(absl::StripAsciiWhitespace(term.substr(ne + 2)));
    } else if (eq != absl::string_view::npos) {
      t.key = std::string(absl::StripAsciiWhitespace(term.substr(0, eq)));
      t.value = std::string(absl::StripAsciiWhitespace(term.substr(eq + 1)));
    } else {
      return absl::InvalidArgumentError(
          absl::StrCat("\"", term, "\": a term is key=value or key!=value"));
    }
    if (auto s = CheckPart("key", t.key, term, false); !s.ok()) return s;
    if (auto s = CheckPart("value", t.value, term, true); !s.ok()) return s;
    sel.terms_.push_back(std::move(t));
  }
  std::sort(sel.terms_.begin(), sel.terms_.end(), [](const Term& a, const Term& b) {
    return std::tie(a.key, a.negated, a.value) < std::tie(b.key, b.negated, b.value);
  });
  sel.terms_.erase(std::unique(sel.terms_.begin(), sel.terms_.end(),
                               [](const Term& a, const Term& b) {
                                 return a.key == b.key && a.negated == b.negated &&
                                        a.value == b.value;
                               }),
                   sel.terms_.end());
  return sel;
}

bool LabelSelector::Matches(const std::map<std::string, std::string>& labels) const {
  for (const Term& t : terms_) {
    auto it = labels.find(t.key);
    bool equal = it != labels.end() && it->second == t.value;
    if (equal == t.negated) return false;
  }
  return true;
}

std::string LabelSelector::ToString() const {
  return absl::StrJoin(terms_, ",", [](std::string* out, const Term& t) {
    absl::StrAppend(out, t.key, t.negated ? "!=" : "=", t.value);
  });
}

absl::StatusOr<std::map<std::string, std::string>> ParseLabels(absl::string_view text) {
  std::map<std::string, std::string> labels;
  if (absl::StripAsciiWhitespace(text).empty()) return labels;
  for (absl::string_view raw : absl::StrSplit(text, ',')) {
    absl::string_view term = absl::StripAsciiWhitespace(raw);
    size_t eq = term.find('=');
    if (eq == absl::string_view::npos || term.find("!=") != absl::string_view::npos) {
      return absl::InvalidArgumentError(
          absl::StrCat("label \"", term, "\": write labels as key=value,key2=value2"));
    }
    std::string key(absl::StripAsciiWhitespace(term.substr(0, eq)));
    std::string value(absl::StripAsciiWhitespace(term.substr(eq + 1)));
    if (auto s = CheckPart("key", key, term, false); !s.ok()) return s;
    if (auto s = CheckPart("value", value, term, true); !s.ok()) return s;
    if (!labels.emplace(key, value).second) {
      return absl::InvalidArgumentError(absl::StrCat("label \"", key, "\" is given twice"));
    }
  }
  return labels;
}

}  // namespace herd
