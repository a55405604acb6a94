#include "controlplane/fleet/peer_service.h"

#include <deque>
#include <memory>
#include <utility>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "controlplane/fleet/fleet_service.h"

namespace herd::controlplane {
namespace {

// Writes each host's result as it comes, one write at a time, and finishes once every host
// has one. Results wait in memory while a write is out: at most one per host of the call.
class RestartResultsWriter final : public grpc::ServerWriteReactor<herd::v1::PeerRestartResult> {
 public:
  // The relay's callbacks reach the writer through this; OnDone clears it.
  struct Guard {
    absl::Mutex mu;
    RestartResultsWriter* self ABSL_GUARDED_BY(mu) = nullptr;
  };

  RestartResultsWriter(size_t expected, std::shared_ptr<Guard> guard)
      : expected_(expected), guard_(std::move(guard)) {
    absl::MutexLock l(&guard_->mu);
    guard_->self = this;
  }
  // Ends at once with `s`.
  void Refuse(const grpc::Status& s) {
    absl::MutexLock l(&mu_);
    finished_ = true;
    Finish(s);
  }
  void Add(herd::v1::PeerRestartResult r) {
    absl::MutexLock l(&mu_);
    if (finished_) return;
    queue_.push_back(std::move(r));
    ++received_;
    WriteNextLocked();
  }
  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    writing_ = false;
    if (!ok) {
      if (!finished_) {
        finished_ = true;
        Finish(grpc::Status::CANCELLED);
      }
      return;
    }
    WriteNextLocked();
  }
  void OnCancel() override {
    absl::MutexLock l(&mu_);
    if (!finished_) {
      finished_ = true;
      Finish(grpc::Status::CANCELLED);
    }
  }
  void OnDone() override {
    {
      absl::MutexLock l(&guard_->mu);
      guard_->self = nullptr;
    }
    delete this;
  }

 private:
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    if (!queue_.empty()) {
      writing_ = true;
      current_ = std::move(queue_.front());
      queue_.pop_front();
      StartWrite(&current_);
    } else if (received_ == expected_) {
      finished_ = true;
      Finish(grpc::Status::OK);
    }
  }

  const size_t expected_;
  const std::shared_ptr<Guard> guard_;
  absl::Mutex mu_;
  std::deque<herd::v1::PeerRestartResult> queue_ ABSL_GUARDED_BY(mu_);
  herd::v1::PeerRestartResult current_ ABSL_GUARDED_BY(mu_);
  size_t received_ ABSL_GUARDED_BY(mu_) = 0;
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
};

}  // namespace

grpc::ServerWriteReactor<herd::v1::PeerRestartResult>* PeerService::RestartOnHosts(
    grpc::CallbackServerContext* ctx, const herd::v1::PeerRestartRequest* req) {
  auto guard = std::make_shared<RestartResultsWriter::Guard>();
  auto* writer = new RestartResultsWriter(static_cast<size_t>(req->host_ids_size()), guard);
  absl::StatusOr<bool> peer = links_.LocalScope(*ctx);
  if (peer.ok() && !*peer) {
    peer = absl::UnauthenticatedError(
        "herd.v1.Peer is for calls between control-plane replicas: they carry "
        "x-herd-peer-secret (restart hosts through the Fleet API's Restart instead)");
  }
  if (!peer.ok()) {
    writer->Refuse(ToGrpc(peer.status()));
    return writer;
  }
  if (req->host_ids_size() == 0 || static_cast<size_t>(req->host_ids_size()) > max_hosts_ ||
      req->units_size() == 0) {
    writer->Refuse(grpc::Status(
        grpc::StatusCode::INVALID_ARGUMENT,
        absl::StrCat("a restart names 1-", max_hosts_, " hosts and at least one unit (got ",
                     req->host_ids_size(), " hosts, ", req->units_size(), " units)")));
    return writer;
  }
  std::vector<std::string> ids(req->host_ids().begin(), req->host_ids().end());
  std::vector<std::string> units(req->units().begin(), req->units().end());
  relay_.RestartOnHosts(
      ids, units, req->wait_healthy_ms(), req->rollout_id(),
      [guard](size_t i, absl::StatusOr<herd::v1::RestartResult> r) {
        herd::v1::PeerRestartResult out;
        out.set_index(static_cast<uint32_t>(i));
        if (r.ok()) {
          *out.mutable_result() = std::move(*r);
        } else {
          out.set_error_code(static_cast<int32_t>(r.status().code()));
          out.set_error(std::string(r.status().message()));
        }
        absl::MutexLock l(&guard->mu);
        if (guard->self) guard->self->Add(std::move(out));
      });
  return writer;
}

}  // namespace herd::controlplane
