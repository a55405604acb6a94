// The Fleet API's Deploy (issue 24): a new declaration, or the same version again, is
// applied at once; a change of version (or source) of a declaration in force on online hosts
// runs as a rollout (DeployMover, deploy_rollouts.h) unless all_at_once is asked.
#include "absl/strings/str_cat.h"
#include "controlplane/core/deployments.h"
#include "controlplane/fleet/fleet_service.h"

namespace herd::controlplane {

grpc::ServerUnaryReactor* FleetService::Deploy(grpc::CallbackServerContext* ctx,
                                               const herd::v1::DeployRequest* req,
                                               herd::v1::DeployResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto finish = [&](const absl::Status& s) {
    reactor->Finish(ToGrpc(s));
    return reactor;
  };
  auto actor = Authenticate(*ctx, /*needs_operator=*/true);
  if (!actor.ok()) return finish(actor.status());
  auto checked = WithArtifact(*req);
  if (!checked.ok()) return finish(checked.status());
  if (!checked->all_at_once()) {
    auto rolled = DeployAsRollout(*checked, *actor);
    if (!rolled.ok()) return finish(rolled.status());
    if (rolled->has_value()) {
      *resp = std::move(**rolled);
      return finish(absl::OkStatus());
    }
  }
  auto r = fleet_.config.Deploy(*checked, *actor);
  if (!r.ok()) return finish(r.status());
  *resp = std::move(*r);
  return finish(absl::OkStatus());
}

absl::StatusOr<std::optional<herd::v1::DeployResponse>> FleetService::DeployAsRollout(
    const herd::v1::DeployRequest& in, const Actor& actor) {
  auto req = NormalizeDeploy(in);
  if (!req.ok()) return req.status();
  auto declared = fleet_.config.GetDeclaration(req->scope(), req->name());
  if (absl::IsNotFound(declared.status()) || absl::IsUnimplemented(declared.status())) {
    return std::nullopt;  // a new declaration: nothing to roll from
  }
  if (!declared.ok()) return declared.status();
  const std::string scope_text = ScopeText(declared->scope);
  if (auto running = rollouts_.RunningDeploy(req->name(), scope_text)) {
    return absl::FailedPreconditionError(absl::StrCat(
        "rollout ", *running, " is moving ", req->name(), " at ", scope_text,
        ": wait for it to finish (agentctl rollout ", *running, " --watch)"));
  }
  const herd::v1::DesiredModule& from = declared->base;
  if (from.source() == req->source() && from.version() == req->version()) {
    return std::nullopt;  // the same again (clears what a failed rollout left pinned)
  }
  // The online hosts under this declaration move batch by batch; the others take the new
  // version from the declaration once the rollout succeeded.
  auto listed = fleet_.config.ListDeployments(req->name());
  if (!listed.ok()) return listed.status();
  std::vector<std::pair<std::string, std::string>> hosts;
  for (const auto& d : listed->deployments()) {
    if (ScopeText(d.scope()) != scope_text) continue;
    for (const auto& h : d.hosts()) {
      if (h.online()) hosts.emplace_back(h.host_id(), h.hostname());
    }
  }
  if (hosts.empty()) return std::nullopt;
  herd::v1::RolloutDeploy dep;
  *dep.mutable_scope() = declared->scope;
  dep.set_from_source(from.source());
  dep.set_from_version(from.version());
  dep.set_to_source(req->source());
  dep.set_to_version(req->version());
  auto r = rollouts_.CreateDeploy(*req, std::move(dep), hosts, actor);
  if (!r.ok()) return r.status();
  herd::v1::DeployResponse resp;
  resp.set_changed(true);
  for (const auto& [id, name] : hosts) resp.add_hosts(id);
  *resp.mutable_rollout() = std::move(*r);
  return resp;
}

}  // namespace herd::controlplane
