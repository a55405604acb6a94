// PendingActions: the actions triggered on one module and not yet answered (PM2's axm
// actions, docs/module-protocol.md).
//
// PM2 matches a reply to its trigger by the action's name, so at most one trigger per action
// is in flight; scoped actions also carry a uuid, and their stream/error lines are collected
// until the end message. Each trigger has a timeout on the Scheduler (the agent's EventLoop;
// FakeScheduler in tests); a reply after it, or one nobody asked for, is dropped.
//
// No I/O here: the trigger line goes out through the `send` function the channel passes, and
// the channel routes what the module answers to OnReply / OnScoped. Threading: the
// scheduler's thread (the loop thread) only.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/modules/channel.h"
#include "common/logging.h"
#include "common/scheduler.h"
#include "herd/v1/agent.pb.h"
#include "nlohmann/json.hpp"

namespace herd::agent {

class PendingActions {
 public:
  using Done = std::function<void(absl::StatusOr<herd::v1::TriggerActionResponse>)>;
  // Writes one line to the module; false when it cannot (not reading, or gone).
  using Send = std::function<bool(const std::string& line)>;

  PendingActions(Scheduler& scheduler, std::string module, absl::Duration default_timeout);
  // Cancels the timers; the callbacks of what is pending are not called.
  ~PendingActions();
  PendingActions(const PendingActions&) = delete;
  PendingActions& operator=(const PendingActions&) = delete;

  // Triggers req.action() if the module declared it (in `channel`) and it is not running.
  void Trigger(const herd::v1::TriggerActionRequest& req, const ModuleChannelState& channel,
               const Send& send, Done done);
  // axm:reply: the action's return value.
  void OnReply(const std::string& action, const nlohmann::json& ret);
  // A scoped action's "stream", "error" or "end" message.
  void OnScoped(const std::string& action, const std::string& uuid, const std::string& kind,
                const nlohmann::json& data);
  // Every pending action fails with Unavailable: the channel closed (`why`).
  void FailAll(const std::string& why);
  size_t size() const { return pending_.size(); }

 private:
  struct Pending {
    uint64_t id = 0;
    std::string uuid;  // scoped actions
    Scheduler::Handle timer = 0;
    absl::Time started;
    std::vector<std::string> stream;
    Done done;
  };
  void Finish(const std::string& action,
              absl::StatusOr<herd::v1::TriggerActionResponse> result);
  void TimedOut(const std::string& action, uint64_t id, absl::Duration timeout);

  Scheduler& scheduler_;
  const std::string module_;
  const absl::Duration default_timeout_;
  std::shared_ptr<spdlog::logger> log_;
  uint64_t next_id_ = 1;
  std::map<std::string, Pending> pending_;  // by action name
};

}  // namespace herd::agent
