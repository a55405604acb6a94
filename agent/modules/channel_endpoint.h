// ChannelEndpoint: the agent's end of one module's channel (docs/module-protocol.md).
//
// Before each spawn of the module the registry opens a socketpair here and hands the child's
// end to the Supervisor (it becomes fd 3); after the spawn the agent's end is read on the
// EventLoop, split into lines (LineFramer) and fed to the module's ModuleChannelState (probes,
// actions, issues, events), whose replies go to the module's PendingActions. The channel
// closes when the process exits, closes it, or is replaced; pending actions then fail.
//
// What the module reports (ModuleChannelState) outlives its processes; the socket does not.
// Threading: the loop thread only.
#pragma once

#include <sys/types.h>

#include <memory>
#include <string>

#include "agent/loop/event_loop.h"
#include "agent/modules/channel.h"
#include "agent/modules/pending_actions.h"
#include "common/logging.h"

namespace herd::agent {

class ChannelEndpoint {
 public:
  ChannelEndpoint(EventLoop& loop, std::string module, ChannelLimits limits,
                  absl::Duration action_timeout);
  // Closes the sockets without callbacks (agentd is stopping).
  ~ChannelEndpoint();
  ChannelEndpoint(const ChannelEndpoint&) = delete;
  ChannelEndpoint& operator=(const ChannelEndpoint&) = delete;

  // Makes a socketpair for the process about to start (Close the old one first); returns the child's end, or -1 when
  // none could be made (the module then runs without its channel).
  int Open();
  // The process started with the child's end (pid), or could not start (pid 0).
  void Attach(pid_t pid);
  // Closes the channel (if open) and fails the pending actions with `why`.
  void Close(const std::string& why);
  // Reads what the module sent (also after it exited: its last words).
  void Drain();
  void Trigger(const herd::v1::TriggerActionRequest& req, PendingActions::Done done);

  const ModuleChannelState& state() const { return state_; }
  size_t ClearIssues() { return state_.ClearIssues(); }
  // Every message the module sends, once handled (see ModuleChannelState::on_message).
  void set_on_message(std::function<void(const std::string&, const nlohmann::json&)> f) {
    state_.on_message = std::move(f);
  }

 private:
  bool SendLine(const std::string& line);
  void HandleLine(absl::string_view line, absl::Time now);

  EventLoop& loop_;
  const std::string module_;
  const ChannelLimits limits_;
  std::shared_ptr<spdlog::logger> log_;
  ModuleChannelState state_;
  PendingActions actions_;
  std::unique_ptr<LineFramer> framer_;
  int agent_fd_ = -1;  // our end of the socketpair
  int child_fd_ = -1;  // the child's end, between Open and Attach
  EventLoop::Handle watch_ = 0;
};

}  // namespace herd::agent
