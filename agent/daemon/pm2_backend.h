// UnitsAsPm2: the PM2 daemon API's view of agentd (agent/pm2/pm2_daemon.h): the supervisor's
// units as PM2 describes its processes, its logs reopened, its units started, stopped,
// restarted or deleted, and notes written to a unit's log. Loop thread only.
#pragma once

#include <string>

#include "agent/logs/log_writer.h"
#include "agent/modules/module_manager.h"
#include "agent/pm2/pm2_daemon.h"
#include "agent/supervisor/supervisor.h"

namespace herd::agent {

class UnitsAsPm2 final : public pm2::Pm2Backend {
 public:
  UnitsAsPm2(Supervisor& supervisor, LogWriter& logs) : supervisor_(supervisor), logs_(logs) {}
  // Which units are modules, and their probes (made after the daemon: set once it is).
  void set_modules(const ModuleManager* modules) { modules_ = modules; }
  // agentd is stopping: starts and restarts asked through PM2's API are refused from now on
  // (a module reacting to the units' stop events would otherwise start what is being
  // stopped, after the stop counted it).
  void RefuseStarts() { refuse_starts_ = true; }

  nlohmann::json Processes() override;
  void ReopenLogs() override { logs_.ReopenAll(); }
  void Act(Verb verb, const std::string& unit, Done done) override;
  void NoteForProcess(pid_t pid, const std::string& line) override;

  // One unit as PM2's process description (getMonitorData's entries; the bus's "process").
  nlohmann::json Describe(const herd::v1::UnitStatus& status);

 private:
  Supervisor& supervisor_;
  LogWriter& logs_;
  const ModuleManager* modules_ = nullptr;
  bool refuse_starts_ = false;
};

// PM2's name for a unit event's kind ("started" is PM2's "online"...), for process:event.
std::string Pm2EventName(const std::string& kind);

}  // namespace herd::agent
