#include "controlplane/core/config_resolver.h"

#include <algorithm>
#include <tuple>

#include "absl/strings/str_cat.h"
#include "common/labels.h"
#include "controlplane/core/deployments.h"

namespace herd::controlplane {

using herd::v1::ConfigSnapshot;
using herd::v1::Override;
using herd::v1::Scope;

bool ScopeMatches(const Scope& scope, const std::string& host_id,
                  const std::map<std::string, std::string>& labels) {
  switch (scope.what_case()) {
    case Scope::kGlobal:
      return scope.global();
    case Scope::kSelector: {
      auto sel = LabelSelector::Parse(scope.selector());
      return sel.ok() && sel->Matches(labels);
    }
    case Scope::kHostId:
      return scope.host_id() == host_id;
    case Scope::WHAT_NOT_SET:
      break;
  }
  return false;
}

std::string SourceName(const Scope& scope) {
  switch (scope.what_case()) {
    case Scope::kGlobal:
      return "global";
    case Scope::kSelector: {
      auto sel = LabelSelector::Parse(scope.selector());
      return absl::StrCat("selector:", sel.ok() ? sel->ToString() : scope.selector());
    }
    case Scope::kHostId:
      return "host";
    case Scope::WHAT_NOT_SET:
      break;
  }
  return "unknown";
}

absl::Status CheckScope(const herd::v1::Scope& scope) {
  switch (scope.what_case()) {
    case herd::v1::Scope::kGlobal:
      if (!scope.global()) return absl::InvalidArgumentError("scope: global must be true");
      return absl::OkStatus();
    case herd::v1::Scope::kSelector: {
      auto sel = LabelSelector::Parse(scope.selector());
      if (!sel.ok()) return absl::InvalidArgumentError(absl::StrCat("selector ", sel.status().message()));
      return absl::OkStatus();
    }
    case herd::v1::Scope::kHostId:
      if (scope.host_id().empty()) return absl::InvalidArgumentError("scope: empty host id");
      return absl::OkStatus();
    case herd::v1::Scope::WHAT_NOT_SET:
      break;
  }
  return absl::InvalidArgumentError(
      "no scope: choose --global, --selector k=v or --host HOST");
}

herd::v1::Scope CanonicalScope(const herd::v1::Scope& scope) {
  herd::v1::Scope out = scope;
  if (scope.has_selector()) {
    auto sel = LabelSelector::Parse(scope.selector());
    if (sel.ok()) out.set_selector(sel->ToString());
  }
  return out;
}

ConfigSnapshot ResolveHostConfig(const std::vector<Override>& overrides,
                                 const std::string& host_id,
                                 const std::map<std::string, std::string>& labels,
                                 const std::set<std::string>& installed) {
  // Rank: (scope level, selector terms, updated_at); applied in increasing rank so that the
  // highest wins.
  struct Ranked {
    std::tuple<int, size_t, int64_t> rank;
    const Override* o;
  };
  std::vector<Ranked> matching;
  for (const Override& o : overrides) {
    // Deployments are for every host they match, installed or not (that is their point).
    if (o.module() != kDeployModule && !installed.count(o.module())) continue;
    if (!ScopeMatches(o.scope(), host_id, labels)) continue;
    int level = 0;
    size_t terms = 0;
    if (o.scope().has_selector()) {
      level = 1;
      auto sel = LabelSelector::Parse(o.scope().selector());
      terms = sel.ok() ? sel->size() : 0;
    } else if (o.scope().what_case() == Scope::kHostId) {
      level = 2;
    }
    matching.push_back({{level, terms, o.updated_at_unix_ms()}, &o});
  }
  std::stable_sort(matching.begin(), matching.end(),
                   [](const Ranked& a, const Ranked& b) { return a.rank < b.rank; });
  ConfigSnapshot snap;
  for (const Ranked& r : matching) {
    if (r.o->module() == kDeployModule) {
      herd::v1::DesiredModule d;
      if (!ParseDeployValue(r.o->value(), &d, &host_id)) continue;
      d.set_scope(SourceName(r.o->scope()));
      (*snap.mutable_deployments())[r.o->key()] = std::move(d);
      continue;
    }
    auto& mod = (*snap.mutable_modules())[r.o->module()];
    (*mod.mutable_values())[r.o->key()] = r.o->value();
    (*mod.mutable_sources())[r.o->key()] = SourceName(r.o->scope());
  }
  return snap;
}

}  // namespace herd::controlplane
