// HostConfigService: deployments (deployments.h), stored and pushed as overrides of the
// reserved module kDeployModule.
#include "absl/strings/str_cat.h"
#include "absl/time/time.h"
#include "controlplane/core/config_resolver.h"
#include "controlplane/core/deployments.h"
#include "controlplane/core/host_config_service.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {
namespace {

using json = nlohmann::json;

herd::v1::DeployResponse Response(const herd::v1::FleetConfigChange& c) {
  herd::v1::DeployResponse r;
  r.set_revision(c.revision());
  r.set_changed(c.changed());
  *r.mutable_hosts() = c.hosts();
  return r;
}

}  // namespace

absl::StatusOr<herd::v1::Scope> HostConfigService::StoredScope(const herd::v1::Scope& in,
                                                               bool must_exist) {
  if (auto s = CheckScope(in); !s.ok()) return s;
  herd::v1::Scope scope = CanonicalScope(in);
  if (scope.what_case() != herd::v1::Scope::kHostId) return scope;
  // A hostname is accepted for convenience.
  Entry e = registry_.FindByIdOrName(scope.host_id());
  if (!e) {
    if (!must_exist) return scope;
    return absl::NotFoundError(
        absl::StrCat("no host \"", scope.host_id(), "\": see `agentctl hosts`"));
  }
  absl::MutexLock hl(&e->mu);
  scope.set_host_id(e->s.record.host_id);
  return scope;
}

absl::StatusOr<herd::v1::DeployResponse> HostConfigService::Deploy(
    const herd::v1::DeployRequest& in, const Actor& actor) {
  auto scope = StoredScope(in.scope(), /*must_exist=*/true);
  if (!scope.ok()) return scope.status();
  auto req = NormalizeDeploy(in);
  if (!req.ok()) return req.status();
  herd::v1::Override o;
  *o.mutable_scope() = *scope;
  o.set_module(kDeployModule);
  o.set_key(req->name());
  o.set_value(DeployValue(*req));
  o.set_updated_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
  o.set_updated_by(actor.name);
  LocalChange local(*this);
  auto w = store_.SetOverride(o);
  if (!w.ok()) return w.status();
  return Response(ConfigChanged(*w, actor, "module.deploy",
                                json{{"scope", ScopeText(*scope)},
                                     {"name", req->name()},
                                     {"source", req->source()},
                                     {"version", req->version()}}
                                    .dump()));
}

absl::StatusOr<herd::v1::DeployResponse> HostConfigService::Undeploy(
    const herd::v1::UndeployRequest& req, const Actor& actor) {
  auto scope = StoredScope(req.scope(), /*must_exist=*/false);
  if (!scope.ok()) return scope.status();
  LocalChange local(*this);
  auto w = store_.UnsetOverride(*scope, kDeployModule, req.name());
  if (!w.ok()) return w.status();
  if (!w->changed) {
    // Say where it is declared instead, if anywhere.
    std::string where;
    auto all = store_.ListOverrides(kDeployModule);
    if (all.ok()) {
      for (const auto& d : Declarations(*all, req.name())) {
        absl::StrAppend(&where, where.empty() ? "" : ", ", ScopeText(d.scope()));
      }
    }
    return absl::NotFoundError(absl::StrCat(
        "no deployment of \"", req.name().substr(0, 100), "\" at ", ScopeText(*scope),
        where.empty() ? " (it is not deployed anywhere: see `agentctl deployments`)"
                      : absl::StrCat(" (it is deployed at: ", where, ")")));
  }
  return Response(ConfigChanged(*w, actor, "module.undeploy",
                                json{{"scope", ScopeText(*scope)}, {"name", req.name()}}.dump()));
}

absl::StatusOr<ConfigService::Declared> HostConfigService::GetDeclaration(
    const herd::v1::Scope& in, const std::string& name) {
  auto scope = StoredScope(in, /*must_exist=*/false);
  if (!scope.ok()) return scope.status();
  auto all = store_.ListOverrides(kDeployModule);
  if (!all.ok()) return all.status();
  for (const auto& o : *all) {
    if (o.key() != name || ScopeText(o.scope()) != ScopeText(*scope)) continue;
    Declared d;
    d.scope = *scope;
    if (!ParseDeployValue(o.value(), &d.base, nullptr, &d.pins)) break;
    return d;
  }
  return absl::NotFoundError(absl::StrCat("no deployment of \"", name.substr(0, 100), "\" at ",
                                          ScopeText(*scope)));
}

absl::StatusOr<herd::v1::DeployResponse> HostConfigService::PutDeclaration(
    const std::string& name, const Declared& d, const Actor& actor, const std::string& action,
    const std::string& detail) {
  herd::v1::DeployRequest req;
  req.set_source(d.base.source());
  req.set_version(d.base.version());
  herd::v1::Override o;
  *o.mutable_scope() = d.scope;
  o.set_module(kDeployModule);
  o.set_key(name);
  o.set_value(DeployValue(req, &d.pins));
  o.set_updated_at_unix_ms(absl::ToUnixMillis(clock_.Now()));
  o.set_updated_by(actor.name);
  LocalChange local(*this);
  auto w = store_.SetOverride(o);
  if (!w.ok()) return w.status();
  return Response(ConfigChanged(*w, actor, action, detail));
}

absl::StatusOr<herd::v1::ListDeploymentsResponse> HostConfigService::ListDeployments(
    const std::string& name) const {
  auto all = store_.ListOverrides(kDeployModule);
  if (!all.ok()) return all.status();
  herd::v1::ListDeploymentsResponse out;
  for (auto& d : Declarations(*all, name)) *out.add_deployments() = std::move(d);
  // Each host under the declaration in force for it (the highest scope declaring the module).
  for (const Entry& e : registry_.Entries()) {
    absl::MutexLock hl(&e->mu);
    const HostState& h = e->s;
    const herd::v1::ConfigSnapshot desired =
        ResolveHostConfig(*all, h.record.host_id, h.record.labels, {});
    for (auto& dep : *out.mutable_deployments()) {
      auto it = desired.deployments().find(dep.name());
      if (it == desired.deployments().end() || it->second.scope() != SourceName(dep.scope()) ||
          !ScopeMatches(dep.scope(), h.record.host_id, h.record.labels)) {
        continue;
      }
      herd::v1::DeploymentHost* host = dep.add_hosts();
      host->set_host_id(h.record.host_id);
      host->set_hostname(h.record.hostname);
      host->set_online(h.session != nullptr);
      for (const auto& m : h.record.modules) {
        if (m.name() == dep.name()) host->set_actual_version(m.version());
      }
      for (const auto& s : h.deployments) {
        if (s.name() != dep.name()) continue;
        host->set_state(s.state());
        host->set_error(s.error());
      }
    }
  }
  return out;
}

}  // namespace herd::controlplane
