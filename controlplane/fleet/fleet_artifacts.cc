// The Fleet API's module artifacts (issue 24): UploadArtifact, ListArtifacts, and what
// Deploy checks of a "sha256:HEX" source. The bytes go to the ArtifactStore as they arrive
// (one chunk in memory at a time); agents fetch them through the Gateway (FetchArtifact).
#include <memory>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/sha256.h"
#include "controlplane/core/deployments.h"
#include "controlplane/fleet/fleet_service.h"
#include "nlohmann/json.hpp"

namespace herd::controlplane {
namespace {

constexpr size_t kMaxChunk = 1 << 20;

absl::Status NoArtifacts() {
  return absl::FailedPreconditionError(
      "this control plane keeps no module artifacts: start it with --data DIR (they are kept "
      "in DIR/artifacts) or --artifacts-dir DIR (with replicas, a directory they share)");
}

// Reads the header, then each chunk into the store's upload; answers once the client has
// sent everything (or refuses at the first problem: the rest is not read).
class UploadReader final : public grpc::ServerReadReactor<herd::v1::ArtifactUpload> {
 public:
  UploadReader(ArtifactStore* store, AuditLog& audit, absl::StatusOr<Actor> actor,
               herd::v1::Artifact* resp)
      : store_(store), audit_(audit), resp_(resp) {
    if (!actor.ok()) {
      End(actor.status());
      return;
    }
    if (store_ == nullptr) {
      End(NoArtifacts());
      return;
    }
    actor_ = std::move(*actor);
    StartRead(&msg_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) return Complete();
    if (!upload_) {
      if (!msg_.has_header()) {
        return End(absl::InvalidArgumentError(
            "an upload starts with its header (filename, size), then the bytes"));
      }
      auto begun = store_->Begin(msg_.header());
      if (!begun.ok()) return End(begun.status());
      upload_ = std::move(*begun);
    } else if (msg_.has_header()) {
      return End(absl::InvalidArgumentError("an upload has one header, first"));
    } else if (msg_.chunk().size() > kMaxChunk) {
      return End(absl::InvalidArgumentError(
          absl::StrCat("a chunk is at most ", kMaxChunk, " bytes")));
    } else if (auto s = upload_->Write(msg_.chunk()); !s.ok()) {
      return End(s);
    }
    StartRead(&msg_);
  }

  void OnDone() override { delete this; }
  void OnCancel() override {}

 private:
  void Complete() {
    if (!upload_) return End(absl::InvalidArgumentError("the upload sent nothing"));
    auto kept = upload_->Finish(actor_.name);
    upload_.reset();
    if (!kept.ok()) return End(kept.status());
    *resp_ = *kept;
    if (kept->created()) {
      audit_.Audit(actor_.name, "artifact.upload",
                   nlohmann::json{{"sha256", kept->sha256()},
                                  {"name", kept->name()},
                                  {"version", kept->version()},
                                  {"size", kept->size()},
                                  {"filename", kept->filename()}}
                       .dump(-1, ' ', false, nlohmann::json::error_handler_t::replace));
    }
    End(absl::OkStatus());
  }
  void End(const absl::Status& s) {
    upload_.reset();  // an unfinished upload leaves nothing
    Finish(ToGrpc(s));
  }

  ArtifactStore* const store_;
  AuditLog& audit_;
  herd::v1::Artifact* const resp_;
  Actor actor_;
  herd::v1::ArtifactUpload msg_;
  std::unique_ptr<ArtifactStore::Upload> upload_;
};

}  // namespace

grpc::ServerReadReactor<herd::v1::ArtifactUpload>* FleetService::UploadArtifact(
    grpc::CallbackServerContext* ctx, herd::v1::Artifact* resp) {
  return new UploadReader(artifacts_, fleet_.audit, Authenticate(*ctx, /*needs_operator=*/true),
                          resp);
}

grpc::ServerUnaryReactor* FleetService::ListArtifacts(grpc::CallbackServerContext* ctx,
                                                      const herd::v1::ListArtifactsRequest* req,
                                                      herd::v1::ListArtifactsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto actor = Authenticate(*ctx, /*needs_operator=*/false);
  if (!actor.ok()) {
    reactor->Finish(ToGrpc(actor.status()));
  } else if (artifacts_ == nullptr) {
    reactor->Finish(ToGrpc(NoArtifacts()));
  } else {
    for (auto& a : artifacts_->List(req->name().substr(0, 256))) {
      *resp->add_artifacts() = std::move(a);
    }
    reactor->Finish(grpc::Status::OK);
  }
  return reactor;
}

absl::StatusOr<herd::v1::DeployRequest> FleetService::WithArtifact(
    herd::v1::DeployRequest req) const {
  if (!absl::StartsWith(req.source(), "sha256:")) return req;
  if (artifacts_ == nullptr) return NoArtifacts();
  const std::string digest = ArtifactDigest(req.source());
  if (digest.empty()) {
    return absl::InvalidArgumentError(
        "an artifact source is sha256: and 64 lower-case hex digits, as UploadArtifact gives");
  }
  auto a = artifacts_->Get(digest);
  if (!a.ok()) return a.status();
  if (!req.name().empty() && req.name() != a->name()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the artifact holds the module \"", a->name(), "\", not \"", req.name().substr(0, 64),
        "\": deploy it under its own name"));
  }
  if (!req.version().empty() && req.version() != a->version()) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the artifact is version ", a->version(), " of ", a->name(), ", not ",
        req.version().substr(0, 64)));
  }
  req.set_name(a->name());
  req.set_version(a->version());
  return req;
}

}  // namespace herd::controlplane
