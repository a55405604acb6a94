// UnitCgroups: each start of a unit runs in a cgroup v2 directory of its own, so that
// whatever the process forks (a daemon that double-forks and calls setsid leaves the process
// group, never the cgroup) is found, counted and stopped with the unit.
//
// Layout: <cgroup2 mount><agentd's own cgroup>/herd-<tag>/unit-<name>@<n>, <tag> naming the
// agent's home (several agents on one machine keep apart; one agent finds its tree again
// after a restart). A fresh directory per start means leftovers of an exited process are
// stopped without touching the next one. Membership and cgroup.kill need no controller;
// the memory and pids controllers are enabled for unit directories where agentd's cgroup
// offers them (memory_max, pids_max: unit_limits.h). A hybrid mount has them all on v1.
//
// Enabling a controller for children needs a cgroup without processes of its own (cgroup
// v2's rule), and agentd runs in the cgroup it was given (a systemd service with
// Delegate=yes): when agentd is alone there, it moves itself to a leaf, <base>/agentd, and a
// later agentd started in that leaf finds its tree from the leaf's parent.
//
// The machine may offer no writable cgroup v2 (no unified mount, not root, a container);
// Open says why and the supervisor falls back to process groups plus the subreaper scan.
#pragma once

#include <sys/types.h>

#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace herd::agent {

// Writes `text` to a cgroup control file in one write(2): 0, or the errno (cgroup files
// answer a refused value with the write's error, EBUSY, EINVAL...).
int WriteCgroupFile(const std::string& path, const std::string& text);

class UnitCgroups {
 public:
  // The cgroup2 mount point and the calling process's cgroup in it ("/" at its root), from
  // /proc/self/mountinfo and /proc/self/cgroup; empty when there is none.
  struct Where {
    std::string mount;
    std::string own;
  };
  static Where Find(const std::string& proc = "/proc");
  // The tag of an agent's directories (herd-<tag>): a hash of its home, the same across
  // restarts and different per agent.
  static std::string TagOf(const std::string& home);
  // Where Open puts the agent's subtree.
  static std::string BaseFor(const Where& where, const std::string& tag);

  // The agent's subtree (created if needed), or why there is none.
  static absl::StatusOr<std::unique_ptr<UnitCgroups>> Open(const std::string& tag);
  static absl::StatusOr<std::unique_ptr<UnitCgroups>> Open(const std::string& tag, Where where);
  // Over a given directory (tests): it must exist and be a cgroup v2 directory.
  explicit UnitCgroups(std::string base) : base_(std::move(base)) {}
  // Removes the empty unit directories and, if then empty, base() itself (a clean exit of
  // agentd leaves nothing in the hierarchy; a directory still holding a process stays).
  ~UnitCgroups();
  UnitCgroups(const UnitCgroups&) = delete;
  UnitCgroups& operator=(const UnitCgroups&) = delete;

  const std::string& base() const { return base_; }
  // "memory" and "pids", where they are enabled for unit directories.
  const std::set<std::string>& controllers() const { return controllers_; }
  // Enables memory and pids for unit directories where `parent` (base()'s parent: agentd's
  // cgroup) offers them; what it could not enable, and why, for the log.
  std::string EnableControllers(const std::string& parent);
  // Why a controller is not enabled (empty if both are), from Open.
  const std::string& controllers_note() const { return controllers_note_; }

  // A new, empty directory for the unit's next process: its path.
  absl::StatusOr<std::string> Create(const std::string& unit);
  // The processes in a unit directory (empty if it is gone).
  std::vector<pid_t> Pids(const std::string& path) const;
  // Every process in the directory gets `sig`; SIGKILL through cgroup.kill, which also
  // catches what forks meanwhile. The number of processes signalled (-1: cgroup.kill used).
  int Signal(const std::string& path, int sig) const;
  // Removes the directory once it holds no process; false while it still does.
  bool Remove(const std::string& path) const;
  // The unit directories under base() (left by an earlier run of this agent, on start).
  std::vector<std::string> Existing() const;

 private:
  std::string base_;
  uint64_t next_ = 0;
  std::set<std::string> controllers_;
  std::string controllers_note_;
};

}  // namespace herd::agent
