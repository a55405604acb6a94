// Supervisor: keeping each unit's whole process tree together (unit_cgroups.h), so that a
// process that double-forks out of the unit's process group is still counted, shown and
// stopped with it.
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "agent/supervisor/supervisor.h"
#include "common/atomic_file.h"
#include "common/units.h"
#include "common/utf8.h"

namespace herd::agent {
namespace {

// The fields of /proc/PID/stat after "(comm)": state ppid pgrp ...; empty if it is gone.
std::vector<std::string> ProcStatFields(pid_t pid) {
  auto stat = ReadFileToString(absl::StrCat("/proc/", pid, "/stat"));
  if (!stat.ok()) return {};
  size_t close = stat->rfind(')');
  if (close == std::string::npos) return {};
  return absl::StrSplit(absl::string_view(*stat).substr(close + 1), ' ', absl::SkipEmpty());
}

// The process group of `pid` (field 5 of /proc/PID/stat), 0 if it is gone.
pid_t ProcessGroupOf(pid_t pid) {
  std::vector<std::string> f = ProcStatFields(pid);
  int pgrp = 0;
  return f.size() > 2 && absl::SimpleAtoi(f[2], &pgrp) ? pgrp : 0;
}

// HERD_UNIT from the process's environment ("" if none or unreadable).
std::string UnitOf(pid_t pid) {
  auto env = ReadFileToString(absl::StrCat("/proc/", pid, "/environ"));
  if (!env.ok()) return "";
  for (absl::string_view var : absl::StrSplit(*env, '\0')) {
    if (absl::ConsumePrefix(&var, "HERD_UNIT=")) return std::string(var);
  }
  return "";
}

// agentd's children, from every thread's /proc/self/task/TID/children (a re-parented
// orphan may be any thread's).
std::vector<pid_t> OwnChildren() {
  std::vector<pid_t> out;
  DIR* d = opendir("/proc/self/task");
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_name[0] == '.') continue;
    auto text = ReadFileToString(absl::StrCat("/proc/self/task/", e->d_name, "/children"));
    if (!text.ok()) continue;
    for (absl::string_view w : absl::StrSplit(*text, ' ', absl::SkipEmpty())) {
      int pid = 0;
      if (absl::SimpleAtoi(w, &pid) && pid > 0) out.push_back(pid);
    }
  }
  closedir(d);
  return out;
}

std::string CommandOf(pid_t pid) {
  auto cmd = ReadFileToString(absl::StrCat("/proc/", pid, "/cmdline"));
  if (!cmd.ok()) return "";
  std::string out = cmd->substr(0, 256);
  std::replace(out.begin(), out.end(), '\0', ' ');
  while (!out.empty() && out.back() == ' ') out.pop_back();
  return ToValidUtf8(out);
}

}  // namespace

int Supervisor::PrepareCgroup(Unit& u) {
  if (cgroups_ == nullptr) return -1;
  if (!u.cgroup.empty()) draining_cgroups_.push_back(std::exchange(u.cgroup, ""));
  auto path = cgroups_->Create(u.spec.name());
  if (!path.ok()) {
    // Started all the same, contained by its process group only.
    log_->warn("event=cgroup_unavailable unit={} error=\"{}\"", u.spec.name(),
               path.status().message());
    return -1;
  }
  int fd = open(path->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    cgroups_->Remove(*path);
    return -1;
  }
  u.cgroup = *path;
  return fd;
}

std::vector<int> Supervisor::PrepareLimits(Unit& u) {
  for (auto& d : u.limit_dirs) draining_cgroups_.push_back(std::move(d));
  u.limit_dirs.clear();
  u.oom_file.clear();
  u.oom_kills = 0;
  if (u.spec.memory_max_bytes() == 0 && u.spec.pids_max() == 0) {
    u.limits_how.clear();
    return {};
  }
  UnitLimits none({}, {});
  UnitLimits::Applied a = (limits_ != nullptr ? *limits_ : none).Apply(u.spec.name(), u.spec, u.cgroup);
  u.limit_dirs = std::move(a.dirs);
  u.oom_file = a.oom_file;
  // Said once, not at every restart of a crash loop.
  if (!a.complete && a.how != u.limits_how) {
    AddEvent(u, "limits-unavailable", a.how);
    log_->warn("event=limits_unavailable unit={} limits=\"{}\"", u.spec.name(), a.how);
  }
  u.limits_how = a.how;
  return a.join_fds;
}

void Supervisor::NoteOomKills(Unit& u) {
  const uint64_t total = UnitLimits::OomKills(u.oom_file);
  if (total <= u.oom_kills) return;
  const uint64_t n = total - u.oom_kills;
  u.oom_kills = total;
  const std::string what = absl::StrCat(
      "the kernel's OOM killer ended ", n, n == 1 ? " process" : " processes", " of the unit: ",
      "memory_max ", FormatBytes(u.spec.memory_max_bytes()), " reached");
  AddEvent(u, "oom-killed", what);
  log_->warn("event=oom_killed unit={} kills={} memory_max={}", u.spec.name(), n,
             u.spec.memory_max_bytes());
}

void Supervisor::KillUnit(const Unit& u, pid_t pgid, int sig) {
  KillGroup(pgid, sig);
  if (cgroups_ != nullptr && !u.cgroup.empty()) cgroups_->Signal(u.cgroup, sig);
  if (cgroups_ == nullptr) {
    for (pid_t p : Escaped(u)) kill(p, sig);
  }
}

void Supervisor::StopLeftovers(Unit& u, bool asked) {
  if (cgroups_ == nullptr) return StopAdopted(u, asked);
  if (u.cgroup.empty()) return;
  const std::string cg = std::exchange(u.cgroup, "");
  draining_cgroups_.push_back(cg);
  const size_t left = cgroups_->Pids(cg).size();
  if (left == 0) return;
  AddEvent(u, "leftovers-stopped",
           absl::StrCat(left, " process", left == 1 ? "" : "es",
                        " of the unit still ran after its main process exited (outside its "
                        "process group): ",
                        asked ? "SIGKILL" : "SIGTERM, then SIGKILL after kill_timeout"));
  log_->info("event=leftovers_stopped unit={} processes={} cgroup={}", u.spec.name(), left, cg);
  if (asked) {
    cgroups_->Signal(cg, SIGKILL);
    return;
  }
  cgroups_->Signal(cg, SIGTERM);
  UnitCgroups* cgroups = cgroups_;
  loop_.RunAfter(absl::Milliseconds(u.spec.kill_timeout_ms()), [alive = alive_, cgroups, cg] {
    if (*alive) cgroups->Signal(cg, SIGKILL);
  });
}

absl::Status Supervisor::BecomeSubreaper() {
  if (prctl(PR_SET_CHILD_SUBREAPER, 1) != 0) {
    return absl::InternalError(absl::StrCat("prctl(PR_SET_CHILD_SUBREAPER): ", strerror(errno)));
  }
  subreaper_ = true;
  return absl::OkStatus();
}

std::map<std::string, std::vector<pid_t>> Supervisor::Adopted() const {
  std::map<std::string, std::vector<pid_t>> out;
  if (!subreaper_) return out;
  std::set<pid_t> mains;
  for (const auto& [name, u] : units_) {
    if (u->pid != 0) mains.insert(u->pid);
  }
  for (pid_t p : OwnChildren()) {
    if (mains.count(p)) continue;  // a unit's own process (or a command's: no HERD_UNIT)
    std::vector<std::string> f = ProcStatFields(p);
    if (!f.empty() && f[0] == "Z") {
      // An orphan agentd adopted (a unit's, or a command's): reaped here. The children agentd
      // started are waited for by their owners.
      adopted_.erase(p);
      if (!IsSpawnedChild(p)) waitpid(p, nullptr, WNOHANG);
      continue;
    }
    std::string unit = UnitOf(p);
    if (unit.empty() || !units_.count(unit)) continue;
    adopted_.insert(p);
    out[unit].push_back(p);
  }
  return out;
}

void Supervisor::StopAdopted(Unit& u, bool asked) {
  std::vector<pid_t> left = Escaped(u);
  if (left.empty()) return;
  AddEvent(u, "leftovers-stopped",
           absl::StrCat(left.size(), " process", left.size() == 1 ? "" : "es",
                        " of the unit (re-parented to agentd) still ran after its main "
                        "process exited: ", asked ? "SIGKILL" : "SIGTERM, then SIGKILL"));
  for (pid_t p : left) kill(p, asked ? SIGKILL : SIGTERM);
  if (asked) return;
  loop_.RunAfter(absl::Milliseconds(u.spec.kill_timeout_ms()), [this, alive = alive_, left] {
    if (!*alive) return;
    // Still ours (not reaped, so not reused): adopted_ holds them until they are.
    for (pid_t p : left) {
      if (adopted_.count(p)) kill(p, SIGKILL);
    }
  });
}

std::vector<pid_t> Supervisor::Escaped(const Unit& u) const {
  std::vector<pid_t> out;
  if (subreaper_ && cgroups_ == nullptr) {
    auto adopted = Adopted();
    auto it = adopted.find(u.spec.name());
    return it == adopted.end() ? out : it->second;
  }
  if (cgroups_ == nullptr || u.cgroup.empty() || u.pid == 0) return out;
  for (pid_t p : cgroups_->Pids(u.cgroup)) {
    const pid_t pgrp = ProcessGroupOf(p);
    if (pgrp != 0 && pgrp != u.pid) out.push_back(p);
  }
  return out;
}

void Supervisor::DescribeContainment(const Unit& u, herd::v1::UnitDetail* d) const {
  d->set_cgroup(u.cgroup);
  d->set_limits(u.limits_how);
  for (pid_t p : Escaped(u)) {
    auto* e = d->add_escaped();
    e->set_pid(static_cast<uint32_t>(p));
    e->set_command(CommandOf(p));
  }
}

void Supervisor::DrainCgroups() {
  // v2 unit directories and v1 limit directories alike: removed once empty.
  std::erase_if(draining_cgroups_,
                [](const std::string& cg) { return rmdir(cg.c_str()) == 0 || errno == ENOENT; });
}

void Supervisor::KillPreviousRun() {
  if (cgroups_ == nullptr) return;
  for (const std::string& cg : cgroups_->Existing()) {
    // Units of this run already started (modules, before Restore) are not the past.
    if (std::any_of(units_.begin(), units_.end(),
                    [&](const auto& u) { return u.second->cgroup == cg; })) {
      continue;
    }
    const size_t left = cgroups_->Pids(cg).size();
    if (left > 0) {
      log_->warn("event=previous_run_killed cgroup={} processes={}", cg, left);
      cgroups_->Signal(cg, SIGKILL);
    }
    if (!cgroups_->Remove(cg)) draining_cgroups_.push_back(cg);
  }
}

}  // namespace herd::agent
