#include "agent/api/agent_service.h"

#include <unistd.h>

#include <deque>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/str_cat.h"
#include "absl/synchronization/mutex.h"
#include "agent/supervisor/app_spec.h"
#include "common/log_escape.h"
#include "common/logging.h"

namespace herd::agent {

using herd::v1::LogLine;

grpc::Status ToGrpc(const absl::Status& s) {
  if (s.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(s.code()), std::string(s.message()));
}

AgentService::AgentService(EventLoop& loop, Supervisor& supervisor, ModuleManager& modules,
                           LogWriter& logs, AgentServiceOptions options)
    : loop_(loop),
      supervisor_(supervisor),
      modules_(modules),
      logs_(logs),
      options_(std::move(options)) {}

namespace {

void FillUnits(const absl::StatusOr<std::vector<herd::v1::UnitStatus>>& units,
               herd::v1::UnitsResponse* resp, grpc::ServerUnaryReactor* reactor) {
  if (!units.ok()) return reactor->Finish(ToGrpc(units.status()));
  for (const auto& u : *units) *resp->add_units() = u;
  reactor->Finish(grpc::Status::OK);
}

}  // namespace

grpc::ServerUnaryReactor* AgentService::GetInfo(grpc::CallbackServerContext* ctx,
                                                const herd::v1::GetInfoRequest*,
                                                herd::v1::AgentInfo* resp) {
  auto* reactor = ctx->DefaultReactor();
  loop_.Post([this, reactor, resp] {
    resp->set_version(HERD_VERSION);
    resp->set_pid(getpid());
    resp->set_home(options_.home);
    resp->set_started_at_unix_ms(absl::ToUnixMillis(options_.started_at));
    *resp->mutable_usage() = supervisor_.self_usage();
    *resp->mutable_sampler() = supervisor_.sampler_stats();
    resp->set_sample_interval_ms(options_.sample_interval_ms);
    resp->set_log_lines_dropped(logs_.dropped_writes());
    if (options_.fill_info) options_.fill_info(resp);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::List(grpc::CallbackServerContext* ctx,
                                             const herd::v1::ListRequest*,
                                             herd::v1::ListResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  loop_.Post([this, reactor, resp] {
    for (auto& u : supervisor_.List()) {
      modules_.FillStatus(&u);
      *resp->add_units() = std::move(u);
    }
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::Describe(grpc::CallbackServerContext* ctx,
                                                 const herd::v1::DescribeRequest* req,
                                                 herd::v1::UnitDetail* resp) {
  auto* reactor = ctx->DefaultReactor();
  loop_.Post([this, reactor, req, resp] {
    auto d = supervisor_.Describe(req->name());
    if (!d.ok()) return reactor->Finish(ToGrpc(d.status()));
    *resp = std::move(*d);
    modules_.FillDetail(resp);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

absl::Status AgentService::TakenName(const std::vector<herd::v1::AppSpec>& specs) const {
  for (const auto& spec : specs) {
    auto existing = supervisor_.Describe(spec.name());
    if (!existing.ok()) continue;
    return absl::AlreadyExistsError(
        absl::StrCat("a unit named \"", spec.name(), "\" already exists (",
                     existing->spec().script(), "): `agentctl restart ", spec.name(),
                     "` restarts it; --force replaces it with this script, --name starts "
                     "another"));
  }
  return absl::OkStatus();
}

grpc::ServerUnaryReactor* AgentService::Start(grpc::CallbackServerContext* ctx,
                                              const herd::v1::StartRequest* req,
                                              herd::v1::UnitsResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (req->what_case() == herd::v1::StartRequest::kName) {
    if (req->name() != "all") {
      if (auto st = ValidateUnitName(req->name()); !st.ok()) {
        reactor->Finish(ToGrpc(st));
        return reactor;
      }
    }
    loop_.Post([this, reactor, req, resp] {
      supervisor_.StartExisting(req->name(), [reactor, resp](auto units) {
        FillUnits(units, resp, reactor);
      });
    });
    return reactor;
  }
  if (req->what_case() != herd::v1::StartRequest::kEcosystemJson) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "StartRequest needs ecosystem_json or name"));
    return reactor;
  }
  if (req->ecosystem_json().size() > kMaxEcosystemBytes) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("ecosystem document is ",
                                              req->ecosystem_json().size(),
                                              " bytes; the limit is ", kMaxEcosystemBytes)));
    return reactor;
  }
  AppSpecContext sctx;
  sctx.base_dir = req->base_dir().empty() ? options_.home : req->base_dir();
  if (sctx.base_dir.front() != '/') {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 absl::StrCat("base_dir \"", sctx.base_dir,
                                              "\" must be an absolute directory")));
    return reactor;
  }
  sctx.search_path = options_.search_path;
  // Parsing is CPU only (no disk beyond stat), so it runs here rather than on the loop.
  // ParseEcosystem returns its errors; the catch is the boundary's guarantee that nothing a
  // client sends can throw into gRPC (which answered UNIMPLEMENTED with no message).
  absl::StatusOr<std::vector<herd::v1::AppSpec>> specs;
  try {
    specs = ParseEcosystem(req->ecosystem_json(), sctx);
  } catch (const std::exception& e) {
    herd::Logger("api")->error("event=start_parse_exception peer={} error=\"{}\"", ctx->peer(),
                               herd::EscapeForLog(e.what()));
    specs = absl::InternalError(absl::StrCat("the ecosystem document could not be read (",
                                             e.what(), "); this is a bug in agentd"));
  }
  if (!specs.ok()) {
    reactor->Finish(ToGrpc(specs.status()));
    return reactor;
  }
  if (req->only_size() > 0) {
    absl::flat_hash_set<std::string> only(req->only().begin(), req->only().end());
    std::vector<herd::v1::AppSpec> kept;
    for (auto& s : *specs) {
      if (only.erase(s.name())) kept.push_back(std::move(s));
    }
    if (!only.empty()) {
      reactor->Finish(grpc::Status(grpc::StatusCode::NOT_FOUND,
                                   absl::StrCat("--only names an app the document does not "
                                                "have: ", *only.begin())));
      return reactor;
    }
    *specs = std::move(kept);
  }
  loop_.Post([this, reactor, resp, new_only = req->new_only(),
              specs = std::move(*specs)]() mutable {
    if (new_only) {
      if (auto taken = TakenName(specs); !taken.ok()) return reactor->Finish(ToGrpc(taken));
    }
    supervisor_.Start(std::move(specs),
                      [reactor, resp](auto units) { FillUnits(units, resp, reactor); });
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::RunSelectorOp(grpc::CallbackServerContext* ctx,
                                                      const herd::v1::UnitSelector* req,
                                                      herd::v1::UnitsResponse* resp,
                                                      SelectorOp op) {
  auto* reactor = ctx->DefaultReactor();
  if (req->name() != "all") {
    if (auto st = ValidateUnitName(req->name()); !st.ok()) {
      reactor->Finish(ToGrpc(st));
      return reactor;
    }
  }
  loop_.Post([this, reactor, req, resp, op] {
    if (op == SelectorOp::kDelete && modules_.IsModule(req->name())) {
      return reactor->Finish(grpc::Status(
          grpc::StatusCode::FAILED_PRECONDITION,
          absl::StrCat(req->name(), " is a module: `agentctl uninstall ", req->name(),
                       "` removes it (stop keeps it installed but not running)")));
    }
    auto done = [reactor, resp](auto units) { FillUnits(units, resp, reactor); };
    switch (op) {
      case SelectorOp::kStop:
        return supervisor_.Stop(req->name(), done);
      case SelectorOp::kRestart:
        return supervisor_.Restart(req->name(), done);
      case SelectorOp::kDelete:
        return supervisor_.Delete(req->name(), done);
    }
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::Stop(grpc::CallbackServerContext* ctx,
                                             const herd::v1::UnitSelector* req,
                                             herd::v1::UnitsResponse* resp) {
  return RunSelectorOp(ctx, req, resp, SelectorOp::kStop);
}

grpc::ServerUnaryReactor* AgentService::Restart(grpc::CallbackServerContext* ctx,
                                                const herd::v1::UnitSelector* req,
                                                herd::v1::UnitsResponse* resp) {
  return RunSelectorOp(ctx, req, resp, SelectorOp::kRestart);
}

grpc::ServerUnaryReactor* AgentService::Delete(grpc::CallbackServerContext* ctx,
                                               const herd::v1::UnitSelector* req,
                                               herd::v1::UnitsResponse* resp) {
  return RunSelectorOp(ctx, req, resp, SelectorOp::kDelete);
}

grpc::ServerUnaryReactor* AgentService::Shutdown(grpc::CallbackServerContext* ctx,
                                                 const herd::v1::ShutdownRequest*,
                                                 herd::v1::ShutdownResponse*) {
  auto* reactor = ctx->DefaultReactor();
  herd::Logger("api")->info("event=shutdown_requested peer={}", ctx->peer());
  reactor->Finish(grpc::Status::OK);
  if (options_.on_shutdown) loop_.Post([this] { options_.on_shutdown(); });
  return reactor;
}

// ---------------------------------------------------------------------------------------
// Modules. Inputs are checked here (sizes, names); the manager checks the rest on the loop.

namespace {

constexpr size_t kMaxField = 4096;

grpc::Status TooLong(const char* what) {
  return grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                      absl::StrCat(what, " is longer than ", kMaxField, " bytes"));
}

}  // namespace

grpc::ServerUnaryReactor* AgentService::UninstallModule(
    grpc::CallbackServerContext* ctx, const herd::v1::UninstallModuleRequest* req,
    herd::v1::UninstallModuleResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (auto st = ValidateUnitName(req->name()); !st.ok()) {
    reactor->Finish(ToGrpc(st));
    return reactor;
  }
  loop_.Post([this, reactor, req, resp] {
    modules_.Uninstall(req->name(), req->keep_config(), [reactor, resp](auto r) {
      if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
      *resp = std::move(*r);
      reactor->Finish(grpc::Status::OK);
    });
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::GetConfig(grpc::CallbackServerContext* ctx,
                                                  const herd::v1::GetConfigRequest* req,
                                                  herd::v1::GetConfigResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  loop_.Post([this, reactor, req, resp] {
    auto c = modules_.GetConfig(req->module());
    if (!c.ok()) return reactor->Finish(ToGrpc(c.status()));
    for (auto& m : *c) *resp->add_modules() = std::move(m);
    reactor->Finish(grpc::Status::OK);
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::SetConfig(grpc::CallbackServerContext* ctx,
                                                  const herd::v1::SetConfigRequest* req,
                                                  herd::v1::ModuleConfig* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (req->module().size() > kMaxField || req->key().size() > kMaxField) {
    reactor->Finish(TooLong("module or key"));
    return reactor;
  }
  loop_.Post([this, reactor, req, resp] {
    modules_.SetConfig(*req, [reactor, resp](auto c) {
      if (!c.ok()) return reactor->Finish(ToGrpc(c.status()));
      *resp = std::move(*c);
      reactor->Finish(grpc::Status::OK);
    });
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::UnsetConfig(grpc::CallbackServerContext* ctx,
                                                    const herd::v1::UnsetConfigRequest* req,
                                                    herd::v1::ModuleConfig* resp) {
  auto* reactor = ctx->DefaultReactor();
  if (req->module().size() > kMaxField || req->key().size() > kMaxField) {
    reactor->Finish(TooLong("module or key"));
    return reactor;
  }
  loop_.Post([this, reactor, req, resp] {
    modules_.UnsetConfig(*req, [reactor, resp](auto c) {
      if (!c.ok()) return reactor->Finish(ToGrpc(c.status()));
      *resp = std::move(*c);
      reactor->Finish(grpc::Status::OK);
    });
  });
  return reactor;
}

grpc::ServerUnaryReactor* AgentService::TriggerAction(grpc::CallbackServerContext* ctx,
                                                      const herd::v1::TriggerActionRequest* req,
                                                      herd::v1::TriggerActionResponse* resp) {
  auto* reactor = ctx->DefaultReactor();
  size_t params_bytes = 0;
  for (const auto& [k, v] : req->params()) params_bytes += k.size() + v.size();
  if (req->module().size() > kMaxField || req->action().size() > kMaxField ||
      params_bytes > 65536) {
    reactor->Finish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                 "module, action or params too large (params: 64 KiB)"));
    return reactor;
  }
  loop_.Post([this, reactor, req, resp] {
    modules_.TriggerAction(*req, [reactor, resp](auto r) {
      if (!r.ok()) return reactor->Finish(ToGrpc(r.status()));
      *resp = std::move(*r);
      reactor->Finish(grpc::Status::OK);
    });
  });
  return reactor;
}

// Streams the tail of a unit's logs, then (follow) live lines. Lines are queued here,
// bounded: a client that reads slower than the unit writes loses lines (counted and told),
// it never makes the agent buffer without limit.
class AgentService::LogsReactor final : public grpc::ServerWriteReactor<LogLine> {
 public:
  static constexpr size_t kMaxQueued = 10000;

  LogsReactor(AgentService* svc, const herd::v1::LogsRequest* req)
      : svc_(svc), unit_(req->name()), follow_(req->follow()) {
    const size_t lines = req->lines() == 0 ? 15 : std::min<size_t>(req->lines(), kMaxQueued);
    svc_->loop_.Post([this, lines] { Begin(lines); });
  }

  void OnWriteDone(bool ok) override {
    absl::MutexLock l(&mu_);
    writing_ = false;
    if (!ok) {
      finished_ = true;  // client gone; OnDone follows
      return;
    }
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
    // Unsubscribe on the loop, where the sink is called, then free: after this task no
    // sink call can reach `this`.
    svc_->loop_.Post([this] {
      if (follow_id_) svc_->supervisor_.Unfollow(follow_id_);
      delete this;
    });
  }

 private:
  // On the loop thread.
  void Begin(size_t lines) {
    auto paths = svc_->supervisor_.LogPaths(unit_);
    if (!paths.ok()) {
      absl::MutexLock l(&mu_);
      if (!finished_) {
        finished_ = true;
        Finish(ToGrpc(paths.status()));
      }
      return;
    }
    // Tails are small reads (bounded by `lines`), done here so that they are ordered
    // before the first followed line.
    std::vector<std::pair<const char*, std::string>> streams = {{"out", paths->first}};
    if (paths->second != paths->first) streams.push_back({"err", paths->second});
    for (const auto& [stream, path] : streams) {
      auto tail = ReadLastLines(path, lines);
      if (!tail.ok()) continue;
      for (auto& text : *tail) {
        LogLine l;
        l.set_stream(stream);
        l.set_unit(unit_);
        l.set_text(std::move(text));
        Enqueue(std::move(l));
      }
    }
    if (follow_) {
      auto id = svc_->supervisor_.Follow(unit_, [this](const LogLine& l) { Enqueue(l); });
      if (id.ok()) follow_id_ = *id;
    } else {
      absl::MutexLock lock(&mu_);
      finish_when_drained_ = true;
      WriteNextLocked();
    }
  }

  void Enqueue(LogLine line) {
    // Already UTF-8: ReadLastLines and the Supervisor's followers repair a unit's bytes.
    absl::MutexLock l(&mu_);
    if (finished_) return;
    if (queue_.size() >= kMaxQueued) {
      ++dropped_;
      return;
    }
    if (dropped_ > 0) {
      LogLine notice;
      notice.set_stream("agent");
      notice.set_unit(unit_);
      notice.set_text(absl::StrCat("[agentd: ", dropped_, " lines dropped: the client reads slower than the unit writes]"));
      dropped_ = 0;
      queue_.push_back(std::move(notice));
    }
    queue_.push_back(std::move(line));
    WriteNextLocked();
  }

  void WriteNextLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (writing_ || finished_) return;
    if (queue_.empty()) {
      if (finish_when_drained_) {
        finished_ = true;
        Finish(grpc::Status::OK);
      }
      return;
    }
    writing_ = true;
    StartWrite(&queue_.front());
  }

  AgentService* const svc_;
  const std::string unit_;
  const bool follow_;
  uint64_t follow_id_ = 0;  // loop thread only
  absl::Mutex mu_;
  std::deque<LogLine> queue_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  bool finish_when_drained_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t dropped_ ABSL_GUARDED_BY(mu_) = 0;
};

grpc::ServerWriteReactor<LogLine>* AgentService::Logs(grpc::CallbackServerContext*,
                                                      const herd::v1::LogsRequest* req) {
  return new LogsReactor(this, req);
}

}  // namespace herd::agent
