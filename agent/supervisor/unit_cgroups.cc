#include "agent/supervisor/unit_cgroups.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"

namespace herd::agent {
namespace {

// The cgroup v2 path of a process ("0::/path" in /proc/PID/cgroup), "" if none.
std::string UnifiedPath(const std::string& cgroup_file) {
  auto text = ReadFileToString(cgroup_file);
  if (!text.ok()) return "";
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    if (absl::ConsumePrefix(&line, "0::")) return std::string(line);
  }
  return "";
}

// The words of a file ("memory pids\n"), none if it cannot be read.
std::set<std::string> Words(const std::string& path) {
  std::set<std::string> out;
  auto text = ReadFileToString(path);
  if (!text.ok()) return out;
  for (absl::string_view w : absl::StrSplit(*text, absl::ByAnyChar(" \n"), absl::SkipEmpty())) {
    out.emplace(w);
  }
  return out;
}

}  // namespace

int WriteCgroupFile(const std::string& path, const std::string& text) {
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return errno;
  const bool ok = write(fd, text.data(), text.size()) == static_cast<ssize_t>(text.size());
  const int err = ok ? 0 : errno;
  close(fd);
  return err;
}

UnitCgroups::Where UnitCgroups::Find(const std::string& proc) {
  Where w;
  auto info = ReadFileToString(proc + "/self/mountinfo");
  if (!info.ok()) return w;
  for (absl::string_view line : absl::StrSplit(*info, '\n')) {
    // id parent maj:min root mount-point options [optional...] - fstype source super-options
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (f.size() < 5 || dash + 1 >= f.size() || f[dash + 1] != "cgroup2") continue;
    if (absl::StrContains(f[4], "\\")) continue;  // an escaped (odd) mount point: skip it
    w.mount = std::string(f[4]);
    break;
  }
  if (w.mount.empty()) return w;
  w.own = UnifiedPath(proc + "/self/cgroup");
  if (w.own.empty()) w.mount.clear();
  return w;
}

std::string UnitCgroups::TagOf(const std::string& home) {
  uint64_t h = 1469598103934665603ull;  // FNV-1a
  for (unsigned char c : home) h = (h ^ c) * 1099511628211ull;
  return absl::StrCat(absl::Hex(h, absl::kZeroPad16)).substr(0, 12);
}

std::string UnitCgroups::BaseFor(const Where& w, const std::string& tag) {
  return absl::StrCat(w.mount, w.own == "/" ? "" : w.own, "/herd-", tag);
}

absl::StatusOr<std::unique_ptr<UnitCgroups>> UnitCgroups::Open(const std::string& tag) {
  return Open(tag, Find());
}

absl::StatusOr<std::unique_ptr<UnitCgroups>> UnitCgroups::Open(const std::string& tag,
                                                               Where w) {
  // An earlier agentd moved itself to <base>/agentd (EnableControllers): its tree is above.
  const std::string leaf = absl::StrCat("/herd-", tag, "/agentd");
  if (absl::EndsWith(w.own, leaf)) {
    std::string up = w.own.substr(0, w.own.size() - leaf.size());
    w.own = up.empty() ? std::string("/") : std::move(up);
  }
  if (w.mount.empty()) {
    return absl::UnavailableError("no cgroup v2 hierarchy is mounted (see /proc/self/mountinfo)");
  }
  std::string base = BaseFor(w, tag);
  if (mkdir(base.c_str(), 0755) != 0 && errno != EEXIST) {
    return absl::UnavailableError(
        absl::StrCat("cannot create ", base, ": ", strerror(errno),
                     " (cgroup v2 needs root, or a delegated subtree: systemd's Delegate=yes)"));
  }
  auto cg = std::make_unique<UnitCgroups>(base);
  // Proven writable the way it will be used: a unit directory made and removed.
  auto probe = cg->Create("probe");
  if (!probe.ok()) return probe.status();
  cg->Remove(*probe);
  cg->controllers_note_ = cg->EnableControllers(absl::StrCat(w.mount, w.own == "/" ? "" : w.own));
  return cg;
}

std::string UnitCgroups::EnableControllers(const std::string& parent) {
  static const std::set<std::string> kWanted = {"memory", "pids"};
  std::set<std::string> offered;
  for (const auto& c : Words(parent + "/cgroup.controllers")) {
    if (kWanted.count(c)) offered.insert(c);
  }
  if (offered.empty()) {
    return "agentd's cgroup offers neither memory nor pids (a hybrid mount has them on v1; "
           "systemd: Delegate=yes)";
  }
  std::string enable;
  for (const auto& c : offered) absl::StrAppend(&enable, enable.empty() ? "+" : " +", c);
  std::set<std::string> active = Words(parent + "/cgroup.subtree_control");
  if (!std::includes(active.begin(), active.end(), offered.begin(), offered.end())) {
    int err = WriteCgroupFile(parent + "/cgroup.subtree_control", enable);
    // A cgroup with processes cannot give controllers to children: agentd, alone there,
    // moves to a leaf of its own and tries again.
    if (err == EBUSY && Words(parent + "/cgroup.procs") ==
                            std::set<std::string>{absl::StrCat(getpid())}) {
      const std::string leaf = base_ + "/agentd";
      if (mkdir(leaf.c_str(), 0755) == 0 || errno == EEXIST) {
        if (WriteCgroupFile(leaf + "/cgroup.procs", "0") == 0) {
          err = WriteCgroupFile(parent + "/cgroup.subtree_control", enable);
        }
      }
    }
    if (err != 0) {
      return absl::StrCat("cannot enable ", enable, " in ", parent, ": ", strerror(err),
                          " (other processes share agentd's cgroup)");
    }
  }
  if (int err = WriteCgroupFile(base_ + "/cgroup.subtree_control", enable); err != 0) {
    return absl::StrCat("cannot enable ", enable, " in ", base_, ": ", strerror(err));
  }
  controllers_ = offered;
  return "";
}

UnitCgroups::~UnitCgroups() {
  // Processes killed just before may take a moment to leave their directory.
  for (int tries = 0; tries < 20; ++tries) {
    bool all = true;
    for (const auto& d : Existing()) all = Remove(d) && all;
    if (all) break;
    usleep(10000);
  }
  rmdir(base_.c_str());
}

absl::StatusOr<std::string> UnitCgroups::Create(const std::string& unit) {
  for (int tries = 0; tries < 1000; ++tries) {
    std::string path = absl::StrCat(base_, "/unit-", unit, "@", ++next_);
    if (mkdir(path.c_str(), 0755) == 0) return path;
    if (errno != EEXIST) {
      return absl::UnavailableError(absl::StrCat("cannot create cgroup ", path, ": ",
                                                 strerror(errno)));
    }
  }
  return absl::ResourceExhaustedError(
      absl::StrCat("1000 cgroups of ", unit, " are still in ", base_, " with processes in them"));
}

std::vector<pid_t> UnitCgroups::Pids(const std::string& path) const {
  std::vector<pid_t> pids;
  auto text = ReadFileToString(path + "/cgroup.procs");
  if (!text.ok()) return pids;
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    int pid = 0;
    if (absl::SimpleAtoi(line, &pid) && pid > 0) pids.push_back(pid);
  }
  return pids;
}

int UnitCgroups::Signal(const std::string& path, int sig) const {
  if (sig == SIGKILL) {
    int fd = open((path + "/cgroup.kill").c_str(), O_WRONLY | O_CLOEXEC);
    if (fd >= 0) {
      const bool ok = write(fd, "1", 1) == 1;
      close(fd);
      if (ok) return -1;
    }
    // Before Linux 5.14: one by one (a process forked meanwhile is caught by the next try).
  }
  int n = 0;
  for (pid_t pid : Pids(path)) n += kill(pid, sig) == 0 ? 1 : 0;
  return n;
}

bool UnitCgroups::Remove(const std::string& path) const {
  return rmdir(path.c_str()) == 0 || errno == ENOENT;
}

std::vector<std::string> UnitCgroups::Existing() const {
  std::vector<std::string> out;
  DIR* d = opendir(base_.c_str());
  if (d == nullptr) return out;
  while (dirent* e = readdir(d)) {
    if (e->d_type == DT_DIR && absl::StartsWith(e->d_name, "unit-")) {
      out.push_back(absl::StrCat(base_, "/", e->d_name));
    }
  }
  closedir(d);
  return out;
}

}  // namespace herd::agent
