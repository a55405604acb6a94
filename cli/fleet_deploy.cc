// agentctl deploy / undeploy / deployments: which modules the control plane wants where.
#include <stdio.h>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/time/clock.h"
#include "cli/fleet_commands.h"
#include "cli/render.h"
#include "common/units.h"
#include "grpcpp/grpcpp.h"

namespace herd::cli {
namespace {

std::string ScopeWords(const herd::v1::Scope& s) {
  if (s.has_selector()) return "selector " + s.selector();
  if (s.what_case() == herd::v1::Scope::kHostId) return "host " + s.host_id();
  return "global";
}

}  // namespace

int FleetCommands::Deploy(const std::string& source, const std::string& name,
                          const std::string& version, const TargetFlags& scope) {
  herd::v1::DeployRequest req;
  if (!ToScope(scope, req.mutable_scope())) return 2;
  if (!Connect()) return 1;
  req.set_source(source);
  req.set_name(name);
  req.set_version(version);
  herd::v1::DeployResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Deploy(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
  } else if (!resp.changed()) {
    printf("%s is already deployed so at %s (revision %lu)\n", source.c_str(),
           ScopeWords(req.scope()).c_str(), static_cast<unsigned long>(resp.revision()));
  } else {
    printf("deployed %s at %s (revision %lu): %d host(s) told%s%s\n", source.c_str(),
           ScopeWords(req.scope()).c_str(), static_cast<unsigned long>(resp.revision()),
           resp.hosts_size(), resp.hosts_size() ? ": " : "",
           absl::StrJoin(resp.hosts(), ", ").c_str());
    printf("follow it: agentctl deployments\n");
  }
  return 0;
}

int FleetCommands::Undeploy(const std::string& name, const TargetFlags& scope) {
  herd::v1::UndeployRequest req;
  if (!ToScope(scope, req.mutable_scope())) return 2;
  if (!Connect()) return 1;
  req.set_name(name);
  herd::v1::DeployResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->Undeploy(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
  } else {
    printf("undeployed %s at %s (revision %lu): %d host(s) told\n", name.c_str(),
           ScopeWords(req.scope()).c_str(), static_cast<unsigned long>(resp.revision()),
           resp.hosts_size());
  }
  return 0;
}

int FleetCommands::Deployments(const std::string& name) {
  if (!Connect()) return 1;
  herd::v1::ListDeploymentsRequest req;
  req.set_name(name);
  herd::v1::ListDeploymentsResponse resp;
  auto ctx = Context(options_.timeout_seconds);
  grpc::Status s = stub_->ListDeployments(ctx.get(), req, &resp);
  if (!s.ok()) return Fail(s);
  if (options_.json) {
    printf("%s\n", ToJson(resp).c_str());
    return 0;
  }
  if (resp.deployments_size() == 0) {
    printf("no deployments%s: `agentctl deploy SOURCE --global|--selector k=v|--host H`\n",
           name.empty() ? "" : (" of " + name).c_str());
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"MODULE", "SCOPE", "WANTED", "SOURCE", "HOSTS", "CONVERGED", "FAILING", "BY"}};
  for (const auto& d : resp.deployments()) {
    int converged = 0, failing = 0;
    for (const auto& h : d.hosts()) {
      converged += h.state() == "converged" ? 1 : 0;
      failing += h.state() == "failed" ? 1 : 0;
    }
    rows.push_back({d.name(), ScopeWords(d.scope()), d.version().empty() ? "any" : d.version(),
                    d.source(), absl::StrCat(d.hosts_size()), absl::StrCat(converged),
                    absl::StrCat(failing), d.updated_by()});
  }
  printf("%s", FormatTable(rows).c_str());
  // Hosts not converged, with why.
  std::vector<std::vector<std::string>> drift = {
      {"MODULE", "HOST", "ONLINE", "INSTALLED", "STATE", "ERROR"}};
  for (const auto& d : resp.deployments()) {
    for (const auto& h : d.hosts()) {
      if (h.state() == "converged") continue;
      drift.push_back({d.name(), h.hostname().empty() ? h.host_id() : h.hostname(),
                       h.online() ? "yes" : "no",
                       h.actual_version().empty() ? "-" : h.actual_version(),
                       h.state().empty() ? (h.online() ? "told" : "offline") : h.state(),
                       h.error()});
    }
  }
  if (drift.size() > 1) {
    printf("\nnot converged:\n%s", FormatTable(drift).c_str());
  }
  return 0;
}

}  // namespace herd::cli
