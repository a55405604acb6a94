// AgentService: installing and updating modules, in one reply (InstallModule, UpdateModule)
// or step by step (InstallModuleSteps, UpdateModuleSteps: agentctl's progress line).
#include <chrono>
#include <deque>
#include <memory>

#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/api/agent_service.h"
#include "agent/supervisor/app_spec.h"

namespace herd::agent {
namespace {

using herd::v1::InstallStep;

constexpr size_t kMaxSource = 4096;

// The checked base directory of an install request, or why it is refused.
absl::StatusOr<std::string> CheckInstall(const herd::v1::InstallModuleRequest& req,
                                         const std::string& home) {
  if (req.source().size() > kMaxSource || req.base_dir().size() > kMaxSource) {
    return absl::InvalidArgumentError(
        absl::StrCat("source is longer than ", kMaxSource, " bytes"));
  }
  std::string base = req.base_dir().empty() ? home : req.base_dir();
  if (base.front() != '/') {
    return absl::InvalidArgumentError("base_dir must be an absolute directory");
  }
  return base;
}

}  // namespace

grpc::ServerUnaryReactor* AgentService::InstallModule(grpc::CallbackServerContext* ctx,
                                                      const herd::v1::InstallModuleRequest* req,
                                                      herd::v1::ModuleInfo* resp) {
  auto* reactor = ctx->DefaultReactor();
  auto base = CheckInstall(*req, options_.home);
  if (!base.ok()) {
    reactor->Finish(ToGrpc(base.status()));
    return reactor;
  }
  loop_.Post([this, reactor, req, resp, base = *base] {
    modules_.Install(req->source(), base, [reactor, resp](auto info) {
      if (!info.ok()) return reactor->Finish(ToGrpc(info.status()));
      *resp = std::move(*info);
      reactor->Finish(grpc::Status::OK);
    });
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::UpdateModule(grpc::CallbackServerContext* ctx,
                                                     const herd::v1::UpdateModuleRequest* req,
                                                     herd::v1::ModuleInfo* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (auto st = ValidateUnitName(req->name()); !st.ok()) {
    reactor->Finish(ToGrpc(st));
    return reactor;
  }
  loop_.Post([this, reactor, req, resp] {
    modules_.Update(req->name(), req->version(), [reactor, resp](auto info) {
      if (!info.ok()) return reactor->Finish(ToGrpc(info.status()));
      *resp = std::move(*info);
      reactor->Finish(grpc::Status::OK);
    });
  });
  return reactor;
}

// Writes an install's steps as they begin, then the module (or the error). The manager's
// callbacks arrive on the install worker and on the loop, possibly after the client has
// gone: they reach the reactor through a Sink that OnDone detaches. Steps are few (under
// ten), but bounded all the same: past kMaxQueued the newest replaces the last queued.
class AgentService::StepsReactor final : public grpc::ServerWriteReactor<InstallStep> {
 public:
  static constexpr size_t kMaxQueued = 32;

  struct Sink {
    absl::Mutex mu;
    StepsReactor* reactor ABSL_GUARDED_BY(mu) = nullptr;
  };

  StepsReactor() : sink_(std::make_shared<Sink>()) {
    absl::MutexLock l(&sink_->mu);
    sink_->reactor = this;
  }

  // What the manager calls: copies that keep the sink, never the reactor, alive.
  InstallSteps Steps() {
    return [sink = sink_](const std::string& step) {
      absl::MutexLock l(&sink->mu);
      if (sink->reactor != nullptr) sink->reactor->Push(step, nullptr);
    };
  }
  ModuleManager::Done<herd::v1::ModuleInfo> Result() {
    return [sink = sink_](absl::StatusOr<herd::v1::ModuleInfo> info) {
      absl::MutexLock l(&sink->mu);
      if (sink->reactor != nullptr) sink->reactor->End(std::move(info));
    };
  }
  // Refused before anything ran.
  void Refuse(const absl::Status& s) { End(s); }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    writing_ = false;
    if (!ok) return;  // the client is gone; OnDone follows
    queue_.pop_front();
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
      absl::MutexLock l(&sink_->mu);
      sink_->reactor = nullptr;
    }
    delete this;
  }

 private:
  void Push(const std::string& step, herd::v1::ModuleInfo* module) {
    absl::MutexLock l(&mu_);
    if (finished_ || ending_) return;
    InstallStep m;
    m.set_step(step);
    m.set_elapsed_ms(std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::steady_clock::now() - start_).count());
    if (module != nullptr) *m.mutable_module() = std::move(*module);
    // The one being written stays: replace the last one waiting behind it.
    if (queue_.size() >= kMaxQueued) queue_.pop_back();
    queue_.push_back(std::move(m));
    WriteNextLocked();
  }
  void End(absl::StatusOr<herd::v1::ModuleInfo> info) {
    if (info.ok()) Push("", &*info);
    absl::MutexLock l(&mu_);
    if (finished_ || ending_) return;
    ending_ = true;
    status_ = info.ok() ? grpc::Status::OK : ToGrpc(info.status());
    WriteNextLocked();
  }
  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    if (queue_.empty()) {
      if (ending_) {
        finished_ = true;
        Finish(status_);
      }
      return;
    }
    writing_ = true;
    StartWrite(&queue_.front());
  }

  const std::shared_ptr<Sink> sink_;
  const std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  absl::Mutex mu_;
  std::deque<InstallStep> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool ending_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status status_ ABSL_GUARDED_BY(mu_);
};

grpc::ServerWriteReactor<InstallStep>* AgentService::InstallModuleSteps(
    grpc::CallbackServerContext*, const herd::v1::InstallModuleRequest* req) {
  auto* reactor = new StepsReactor();
  auto base = CheckInstall(*req, options_.home);
  if (!base.ok()) {
    reactor->Refuse(base.status());
    return reactor;
  }
  // Copied: the request goes with the call, which a client may cancel before the loop runs.
  loop_.Post([this, source = req->source(), base = *base, steps = reactor->Steps(),
              done = reactor->Result()] {
    modules_.Install(source, base, done, steps);
  });
  return reactor;
}

grpc::ServerWriteReactor<InstallStep>* AgentService::UpdateModuleSteps(
    grpc::CallbackServerContext*, const herd::v1::UpdateModuleRequest* req) {
  auto* reactor = new StepsReactor();
  if (auto st = ValidateUnitName(req->name()); !st.ok()) {
    reactor->Refuse(st);
    return reactor;
  }
  loop_.Post([this, name = req->name(), version = req->version(), steps = reactor->Steps(),
              done = reactor->Result()] {
    modules_.Update(name, version, done, steps);
  });
  return reactor;
}

}  // namespace herd::agent
