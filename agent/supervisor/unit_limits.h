// UnitLimits: a unit's memory_max and pids_max, enforced by the kernel on its whole process
// tree (the cgroup memory and pids controllers).
//
// Each controller is taken from cgroup v2 where agentd's unit directories have it enabled
// (UnitCgroups::controllers), else from its cgroup v1 hierarchy where one is mounted and
// writable (a hybrid mount, as on this project's CI machines). On v1 each limited start
// gets a directory of its own, <mount><agentd's v1 cgroup>/herd-<tag>/unit-<name>@<n>, and
// the child writes itself into its cgroup.procs before exec (SpawnRequest::join_fds), so
// that whatever it forks is inside. A limit no controller can enforce is not refused: the
// unit runs without it and Applied::how says why (as systemd runs a unit whose MemoryMax=
// its machine cannot enforce).
#pragma once

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "herd/v1/types.pb.h"

namespace herd::agent {

class UnitLimits {
 public:
  // A v1 hierarchy holding `controller`, and agentd's directory in it (herd-<tag>).
  struct V1 {
    std::string controller;
    std::string base;
  };
  // Finds the v1 memory and pids hierarchies not already covered by `v2` and makes herd-<tag>
  // in each (empty unit directories an earlier agentd left there are removed).
  static std::unique_ptr<UnitLimits> Open(const std::string& tag, std::set<std::string> v2,
                                          const std::string& proc = "/proc");
  UnitLimits(std::set<std::string> v2, std::vector<V1> v1)
      : v2_(std::move(v2)), v1_(std::move(v1)) {}
  // Removes the empty unit directories and, if then empty, the v1 bases.
  ~UnitLimits();
  UnitLimits(const UnitLimits&) = delete;
  UnitLimits& operator=(const UnitLimits&) = delete;

  // What can be limited here, for the log: "memory (cgroup v1), pids (cgroup v1)".
  std::string Describe() const;

  struct Applied {
    // "memory 64 MiB (cgroup v1), pids 50 (cgroup v1)", and what is not enforced and why.
    std::string how;
    bool complete = true;  // every limit the spec sets is enforced
    // v1 directories made for this start (to remove once empty) and their cgroup.procs,
    // open O_WRONLY|O_CLOEXEC, for the child to join: the caller closes them.
    std::vector<std::string> dirs;
    std::vector<int> join_fds;
    // Where this start's OOM kills are counted ("" without memory_max): a v2 directory's
    // memory.events or a v1 directory's memory.oom_control.
    std::string oom_file;
  };
  // Sets the spec's limits for a start whose cgroup v2 directory is `v2_dir` ("" if none).
  Applied Apply(const std::string& unit, const herd::v1::AppSpec& spec,
                const std::string& v2_dir);
  // The OOM kills counted in `oom_file` so far (0 if none or unreadable).
  static uint64_t OomKills(const std::string& oom_file);

 private:
  const V1* V1For(const std::string& controller) const;
  // A new directory under `v1.base` for the unit's start, or "" (errno set).
  std::string NewV1Dir(const V1& v1, const std::string& unit);

  std::set<std::string> v2_;
  std::vector<V1> v1_;
  uint64_t next_ = 0;
};

}  // namespace herd::agent
