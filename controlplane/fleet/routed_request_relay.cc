#include "controlplane/fleet/routed_request_relay.h"

#include <utility>

#include "absl/strings/str_cat.h"

namespace herd::controlplane {

// One peer's part of a restart: each result as it comes; at the end, every host still
// without one fails with why.
class RoutedRequestRelay::RestartCall final
    : public grpc::ClientReadReactor<herd::v1::PeerRestartResult> {
 public:
  RestartCall(RoutedRequestRelay& relay, ReplicaInfo peer, std::vector<std::string> host_ids,
              std::vector<size_t> index, std::shared_ptr<Done> done, PeerLinks::Slot slot)
      : relay_(relay),
        peer_(std::move(peer)),
        host_ids_(std::move(host_ids)),
        index_(std::move(index)),
        answered_(index_.size(), false),
        done_(std::move(done)),
        slot_(std::move(slot)) {}

  void Start(herd::v1::Peer::Stub& stub) {
    stub.async()->RestartOnHosts(ctx.get(), &req, this);
    StartRead(&result_);
    StartCall();
  }
  void OnReadDone(bool ok) override {
    if (!ok) return;
    const size_t i = result_.index();
    // Only one answer per host of this call; anything else from the peer is ignored.
    if (i < index_.size() && !answered_[i]) {
      answered_[i] = true;
      if (result_.error_code() == 0) {
        (*done_)(index_[i], std::move(*result_.mutable_result()));
      } else {
        (*done_)(index_[i], absl::Status(static_cast<absl::StatusCode>(result_.error_code()),
                                         result_.error()));
      }
    }
    StartRead(&result_);
  }
  void OnDone(const grpc::Status& s) override {
    for (size_t i = 0; i < index_.size(); ++i) {
      if (answered_[i]) continue;
      (*done_)(index_[i],
               // ABORTED: told, outcome unknown (the rollout marks it INTERRUPTED).
               absl::AbortedError(absl::StrCat(
                   "replica ", peer_.id, " (", peer_.address, "), which holds host ",
                   host_ids_[i], "'s stream, did not give its result (", s.error_message(),
                   "): the host may have restarted; see its units")));
    }
    relay_.Untrack(ctx.get());
    delete this;
  }

  // Shared: Stop cancels it outside the relay's lock (gRPC may end the call inside).
  const std::shared_ptr<grpc::ClientContext> ctx = std::make_shared<grpc::ClientContext>();
  herd::v1::PeerRestartRequest req;

 private:
  RoutedRequestRelay& relay_;
  const ReplicaInfo peer_;
  const std::vector<std::string> host_ids_;
  const std::vector<size_t> index_;
  std::vector<bool> answered_;  // reads are one at a time: no lock
  const std::shared_ptr<Done> done_;
  PeerLinks::Slot slot_;
  herd::v1::PeerRestartResult result_;
};

void RoutedRequestRelay::RestartOnHosts(const std::vector<std::string>& host_ids,
                                        const std::vector<std::string>& units,
                                        uint32_t wait_healthy_ms, const std::string& rollout_id,
                                        Done done) {
  auto shared_done = std::make_shared<Done>(std::move(done));
  std::vector<std::string> here;
  std::vector<size_t> here_index;
  std::map<std::string, std::pair<ReplicaInfo, std::vector<size_t>>> held;  // by peer id
  for (size_t i = 0; i < host_ids.size(); ++i) {
    if (auto peer = links_.PeerHolding(host_ids[i])) {
      auto& group = held[peer->id];
      group.first = *peer;
      group.second.push_back(i);
    } else {
      here.push_back(host_ids[i]);
      here_index.push_back(i);
    }
  }
  for (auto& [id, group] : held) {
    Forward(group.first, host_ids, std::move(group.second), units, wait_healthy_ms, rollout_id,
            shared_done);
  }
  if (here.empty()) return;
  local_.RestartOnHosts(here, units, wait_healthy_ms, rollout_id,
                        [shared_done, here_index = std::move(here_index)](
                            size_t i, absl::StatusOr<herd::v1::RestartResult> r) {
                          (*shared_done)(here_index[i], std::move(r));
                        });
}

void RoutedRequestRelay::Forward(const ReplicaInfo& peer,
                                 const std::vector<std::string>& host_ids,
                                 std::vector<size_t> index,
                                 const std::vector<std::string>& units, uint32_t wait_healthy_ms,
                                 const std::string& rollout_id, std::shared_ptr<Done> done) {
  std::vector<std::string> ids;
  ids.reserve(index.size());
  for (size_t i : index) ids.push_back(host_ids[i]);
  auto fail_all = [&](const absl::Status& s) {
    for (size_t i : index) (*done)(i, s);
  };
  auto link = links_.Open(peer);
  if (!link.ok()) {
    fail_all(link.status());
    return;
  }
  auto* call = new RestartCall(*this, peer, ids, index, done, std::move(link->slot));
  for (const auto& id : ids) call->req.add_host_ids(id);
  for (const auto& u : units) call->req.add_units(u);
  call->req.set_wait_healthy_ms(wait_healthy_ms);
  call->req.set_rollout_id(rollout_id);
  // As long as the local relay gives a host (its stop time plus the wait, and a minute),
  // and half a minute more for the way there and back.
  links_.Prepare(*call->ctx, ForwardedCall{},
                 absl::Milliseconds(wait_healthy_ms) + absl::Seconds(90));
  {
    absl::MutexLock l(&mu_);
    if (!stopped_) {
      open_.emplace(call->ctx.get(), call->ctx);
    } else {
      delete call;
      call = nullptr;
    }
  }
  if (!call) {
    fail_all(absl::UnavailableError("the control plane is stopping"));
    return;
  }
  call->Start(*link->replica);
}

void RoutedRequestRelay::Untrack(grpc::ClientContext* ctx) {
  absl::MutexLock l(&mu_);
  open_.erase(ctx);
}

void RoutedRequestRelay::Stop() {
  std::vector<std::shared_ptr<grpc::ClientContext>> open;
  {
    absl::MutexLock l(&mu_);
    stopped_ = true;
    for (const auto& [p, ctx] : open_) open.push_back(ctx);
  }
  for (const auto& ctx : open) ctx->TryCancel();
  absl::MutexLock l(&mu_);
  mu_.Await(absl::Condition(+[](decltype(open_)* calls) { return calls->empty(); }, &open_));
}

}  // namespace herd::controlplane
