// The Gateway's FetchArtifact (issue 24): an agent fetches a module artifact its config
// wants, authenticated with its host credential. The file is read in chunks as the agent
// takes them (one chunk in memory per fetch); fetches at once are bounded.
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/sha256.h"
#include "controlplane/gateway/gateway_service.h"

namespace herd::controlplane {
namespace {

constexpr size_t kChunk = 256 * 1024;

grpc::Status Grpc(const absl::Status& s) {
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

class ArtifactWriter final : public grpc::ServerWriteReactor<herd::v1::ArtifactChunk> {
 public:
  ArtifactWriter(grpc::CallbackServerContext* ctx, Hub& hub, ArtifactStore* store,
                 const herd::v1::FetchArtifactRequest& req, size_t max_fetches)
      : store_(store), log_(herd::Logger("gateway")) {
    if (auto s = Check(ctx, hub, req, max_fetches); !s.ok()) {
      log_->warn("event=artifact_fetch_refused peer={} host={} sha256={} error=\"{}\"",
                 ctx->peer(), req.host_id().substr(0, 64), req.sha256().substr(0, 64),
                 s.message());
      Finish(Grpc(s));
      return;
    }
    Send();
  }
  ~ArtifactWriter() override {
    if (fd_ >= 0) close(fd_);
    if (slot_) store_->ReleaseFetch(sent_);
  }

  void OnWriteDone(bool ok) override {
    if (!ok) {
      // The agent went away (it retries): nothing more to send.
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the fetch was cancelled"));
      return;
    }
    Send();
  }
  void OnDone() override { delete this; }

 private:
  absl::Status Check(grpc::CallbackServerContext* ctx, Hub& hub,
                     const herd::v1::FetchArtifactRequest& req, size_t max_fetches) {
    if (store_ == nullptr) {
      return absl::FailedPreconditionError("this control plane keeps no module artifacts");
    }
    if (!IsSha256Hex(req.sha256())) {
      return absl::InvalidArgumentError("sha256 must be 64 lower-case hex digits");
    }
    if (auto s = hub.AuthorizeArtifact(req.host_id(), BearerToken(*ctx), req.sha256());
        !s.ok()) {
      return s;
    }
    if (auto a = store_->Get(req.sha256()); !a.ok()) return a.status();
    if (!store_->AcquireFetch(max_fetches)) {
      return absl::ResourceExhaustedError(absl::StrCat(
          max_fetches, " artifact fetches are in progress, the most at once: retry shortly"));
    }
    slot_ = true;
    const std::string path = store_->PathOf(req.sha256());
    fd_ = open(path.c_str(), O_RDONLY | O_CLOEXEC);
    struct stat st;
    if (fd_ < 0 || fstat(fd_, &st) != 0) {
      return absl::UnavailableError(
          absl::StrCat("cannot read ", path, ": ", strerror(errno)));
    }
    size_ = static_cast<uint64_t>(st.st_size);
    log_->info("event=artifact_fetch host={} sha256={} bytes={}", req.host_id(), req.sha256(),
               size_);
    return absl::OkStatus();
  }

  void Send() {
    chunk_.Clear();
    if (first_) chunk_.set_size(size_);
    std::string* data = chunk_.mutable_data();
    data->resize(kChunk);
    ssize_t n;
    do {
      n = read(fd_, data->data(), kChunk);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      Finish(grpc::Status(grpc::StatusCode::UNAVAILABLE,
                          absl::StrCat("reading the artifact failed: ", strerror(errno))));
      return;
    }
    data->resize(static_cast<size_t>(n));
    if (n == 0 && !first_) {
      Finish(grpc::Status::OK);
      return;
    }
    first_ = false;
    sent_ += static_cast<uint64_t>(n);
    StartWrite(&chunk_);
  }

  ArtifactStore* const store_;
  std::shared_ptr<spdlog::logger> log_;
  herd::v1::ArtifactChunk chunk_;
  int fd_ = -1;
  uint64_t size_ = 0, sent_ = 0;
  bool first_ = true, slot_ = false;
};

}  // namespace

grpc::ServerWriteReactor<herd::v1::ArtifactChunk>* GatewayService::FetchArtifact(
    grpc::CallbackServerContext* ctx, const herd::v1::FetchArtifactRequest* req) {
  return new ArtifactWriter(ctx, hub_, artifacts_, *req, options_.max_artifact_fetches);
}

}  // namespace herd::controlplane
