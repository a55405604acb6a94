#include "agent/daemon/pm2_backend.h"

#include <algorithm>
#include <utility>

namespace herd::agent {
namespace {

using json = nlohmann::json;

// PM2's status words (lib/API/... `pm2_env.status`).
const char* Pm2Status(herd::v1::UnitState s) {
  switch (s) {
    case herd::v1::UNIT_STATE_ONLINE:
      return "online";
    case herd::v1::UNIT_STATE_STOPPING:
      return "stopping";
    case herd::v1::UNIT_STATE_WAITING_RESTART:
      return "waiting restart";
    case herd::v1::UNIT_STATE_ERRORED:
      return "errored";
    default:
      return "stopped";
  }
}

}  // namespace

std::string Pm2EventName(const std::string& kind) {
  if (kind == "started") return "online";
  if (kind == "exited") return "exit";
  if (kind == "stopped") return "stop";
  // An operator's, a cron's or the memory limit's restart; a crash's is "exit", then the
  // restart-scheduled that follows it, then "online".
  if (kind == "restart-requested" || kind == "cron-restart" || kind == "memory-limit") {
    return "restart";
  }
  return kind;  // errored, spawn-failed...
}

json UnitsAsPm2::Describe(const herd::v1::UnitStatus& status) {
  herd::v1::UnitStatus u = status;
  if (modules_ != nullptr) modules_->FillStatus(&u);
  // A module's probes as PM2 keeps them (axm_monitor: name -> {value}).
  json monitor = json::object();
  for (const auto& p : u.main_probes()) {
    monitor[p.name()] = {{"value", p.numeric() ? json(p.number()) : json(p.value())}};
    if (!p.unit().empty()) monitor[p.name()]["unit"] = p.unit();
  }
  std::string out, err;
  if (auto paths = supervisor_.LogPaths(u.name()); paths.ok()) std::tie(out, err) = *paths;
  json env = {
      {"name", u.name()},
      {"status", Pm2Status(u.state())},
      {"restart_time", u.restarts()},
      {"unstable_restarts", u.unstable_restarts()},
      {"pm_uptime", u.started_at_unix_ms()},
      {"created_at", u.started_at_unix_ms()},
      {"pm_out_log_path", out},
      {"pm_err_log_path", err},
      {"pm_exec_path", u.exec_path()},
      {"exec_mode", "fork_mode"},
      {"instances", 1},
      {"exit_code", u.last_exit_code()},
      {"pmx_module", u.is_module()},
      // pm2-logrotate reads axm_options.isModule on every process: always an object.
      {"axm_options", u.is_module() ? json{{"isModule", true}} : json::object()},
      {"axm_monitor", std::move(monitor)},
      {"axm_actions", json::array()},
      {"axm_dynamic", json::object()},
      {"env", json::object()},
      {"versioning", nullptr},
  };
  return {{"name", u.name()},
          {"pid", u.pid()},
          {"monit", {{"memory", u.usage().rss_bytes()}, {"cpu", u.usage().cpu_percent()}}},
          {"pm2_env", std::move(env)}};
}

json UnitsAsPm2::Processes() {
  json out = json::array();
  for (const auto& u : supervisor_.List()) out.push_back(Describe(u));
  return out;
}

void UnitsAsPm2::Act(Verb verb, const std::string& unit, Done done) {
  if (refuse_starts_ && (verb == Verb::kStart || verb == Verb::kRestart)) {
    return done(absl::FailedPreconditionError(
        "agentd is stopping: units are not started or restarted through PM2's API now"));
  }
  auto finish = [done = std::move(done)](
                    absl::StatusOr<std::vector<herd::v1::UnitStatus>> r) { done(r.status()); };
  switch (verb) {
    case Verb::kStart:
      return supervisor_.StartExisting(unit, finish);
    case Verb::kStop:
      return supervisor_.Stop(unit, finish);
    case Verb::kRestart:
      return supervisor_.Restart(unit, finish);
    case Verb::kDelete:
      return supervisor_.Delete(unit, finish);
  }
}

void UnitsAsPm2::NoteForProcess(pid_t pid, const std::string& line) {
  for (const auto& u : supervisor_.List()) {
    const auto& pids = u.sampled_pids();
    if (u.pid() == pid || std::find(pids.begin(), pids.end(), pid) != pids.end()) {
      supervisor_.NoteInLog(u.name(), line);
      return;
    }
  }
}

}  // namespace herd::agent
