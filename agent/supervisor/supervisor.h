// Supervisor: keeps a host's units running. It owns every unit's lifecycle (spawn, observe
// exit through the pidfd, apply the RestartPolicy, stop gracefully), captures output into
// the LogWriter, samples resource use with the ProcSampler on a timer, enforces
// max_memory_restart and cron_restart, and persists what should run in the StateFile.
//
// Threading: every method must be called on the EventLoop's thread (the gRPC service posts
// work there); callbacks passed in are also called on it. Operations that wait for
// processes (Stop, Restart, Delete, StopAll) complete through their callback, never by
// blocking the loop.
//
// Unit state machine:
//   STOPPED --start--> ONLINE --exit--> (policy) WAITING_RESTART --timer--> ONLINE
//                                               \-> STOPPED (autorestart off / stop code)
//                                               \-> ERRORED (too many unstable restarts)
//   ONLINE --stop--> STOPPING --exit or SIGKILL after kill_timeout--> STOPPED
// A spawn failure (missing program, bad cwd) goes straight to ERRORED with the reason.
#pragma once

#include <sys/types.h>

#include <deque>
#include <functional>
#include <map>
#include <set>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "absl/status/statusor.h"
#include "absl/time/time.h"
#include "agent/logs/log_writer.h"
#include "agent/logs/timestamp_format.h"
#include "agent/loop/event_loop.h"
#include "agent/procfs/proc_sampler.h"
#include "agent/supervisor/cron_schedule.h"
#include "agent/supervisor/restart_policy.h"
#include "agent/supervisor/spawner.h"
#include "agent/supervisor/unit_cgroups.h"
#include "agent/supervisor/unit_limits.h"
#include "agent/supervisor/state_file.h"
#include "common/logging.h"
#include "herd/v1/agent.pb.h"
#include "herd/v1/types.pb.h"

namespace herd::agent {

struct SupervisorOptions {
  // Directory for default log files (<logs_dir>/<name>-out.log, -err.log).
  std::string logs_dir;
  absl::Duration sample_interval = absl::Seconds(1);
  // PSS/USS (smaps_rollup) are read on this slower period.
  absl::Duration smaps_interval = absl::Seconds(10);
  uint64_t log_max_bytes = 10 << 20;
  uint32_t log_retain = 5;
  // The environment units start with, before their spec's env ("KEY=VALUE").
  std::vector<std::string> base_env;
  // Time zone for log timestamps and cron schedules.
  absl::TimeZone time_zone = absl::LocalTimeZone();
  // Events kept per unit for `describe`.
  size_t events_kept = 50;
};

// What the module manager adds to a unit whose spec has a channel (a module). Called on the
// loop thread.
class UnitHooks {
 public:
  virtual ~UnitHooks() = default;
  // Before the unit's process is spawned: may append environment and set a descriptor the
  // child inherits as fd 3 (the caller does not take ownership). An error keeps the process
  // from starting: the unit is errored with the message as its reason (a module whose
  // package.json no longer parses, a configuration too large for an environment).
  virtual absl::Status BeforeSpawn(const herd::v1::AppSpec& spec, std::vector<std::string>* env,
                                   int* channel_fd) = 0;
  // After the spawn: pid is 0 when it failed.
  virtual void AfterSpawn(const std::string& unit, pid_t pid) = 0;
  // The unit's process has exited (or was never started).
  virtual void AfterExit(const std::string& unit) = 0;
  // PIDs to sample instead of the unit's own process tree (empty = its own). With *join set,
  // they are sampled beside it.
  virtual std::vector<pid_t> SampleRoots(const std::string& unit, bool* join) = 0;
};

class Supervisor {
 public:
  using UnitsDone = std::function<void(absl::StatusOr<std::vector<herd::v1::UnitStatus>>)>;
  using LineSink = std::function<void(const herd::v1::LogLine&)>;

  // state may be null (no persistence). All references must outlive the supervisor.
  Supervisor(EventLoop& loop, Spawner& spawner, ProcSampler& sampler, LogWriter& logs,
             StateFile* state, SupervisorOptions options);
  ~Supervisor();
  Supervisor(const Supervisor&) = delete;
  Supervisor& operator=(const Supervisor&) = delete;

  // Loads the state file: stops processes orphaned by a previous agent (same PID and start
  // time), then starts the units that were meant to run. Also starts the sampling timer.
  absl::Status Restore();

  // Adds or replaces units and starts them (a running unit with the same name is restarted
  // with its new spec, as `pm2 start ecosystem.json` does). Done when all are spawned.
  void Start(std::vector<herd::v1::AppSpec> specs, UnitsDone done);
  // Starts an existing unit again by name. A selector is a unit's name, or "all": every unit
  // that is not a module (as PM2's `all`), for these four.
  void StartExisting(const std::string& selector, UnitsDone done);
  void Stop(const std::string& selector, UnitsDone done);
  void Restart(const std::string& selector, UnitsDone done);
  void Delete(const std::string& selector, UnitsDone done);
  // Stops every unit without changing what should run (agent shutdown); done when all exited.
  void StopAll(std::function<void()> done);

  std::vector<herd::v1::UnitStatus> List() const;
  absl::StatusOr<herd::v1::UnitDetail> Describe(const std::string& name) const;
  // Log file paths of a unit: {out, err} (equal when merged).
  absl::StatusOr<std::pair<std::string, std::string>> LogPaths(const std::string& name) const;

  // Live output of a unit, line by line, from now on. Returns a subscription id.
  absl::StatusOr<uint64_t> Follow(const std::string& name, LineSink sink);
  // Every unit's output, line by line, from now on (PM2's bus while someone listens).
  uint64_t FollowAll(LineSink sink);
  void Unfollow(uint64_t id);

  // Module hooks (may be null); must outlive the supervisor.
  void set_hooks(UnitHooks* hooks) { hooks_ = hooks; }
  // Where units' processes are contained (null: process groups only); set before Restore()
  // and must outlive the supervisor.
  void set_cgroups(UnitCgroups* cgroups) { cgroups_ = cgroups; }
  // Where memory_max and pids_max are enforced (null: nowhere); as set_cgroups.
  void set_limits(UnitLimits* limits) { limits_ = limits; }
  // Without cgroups: makes agentd the child subreaper (prctl PR_SET_CHILD_SUBREAPER), so that
  // a unit's process that double-forks is re-parented to agentd rather than to init, found
  // by the HERD_UNIT its environment carries, stopped and counted with the unit, and reaped.
  absl::Status BecomeSubreaper();
  // Called (on the loop) with every unit event, e.g. to forward it to the control plane or to
  // PM2's bus. An id for RemoveEventListener.
  using EventListener = std::function<void(const std::string&, const herd::v1::UnitEvent&)>;
  uint64_t AddEventListener(EventListener f) {
    event_listeners_.emplace(next_listener_, std::move(f));
    return next_listener_++;
  }
  void RemoveEventListener(uint64_t id) { event_listeners_.erase(id); }
  // Writes `line` to the unit's error log as the unit's own output would go (agentd's note
  // about something the unit did); nothing if the unit has no open log.
  void NoteInLog(const std::string& name, const std::string& line);

  // The agent's own latest resource sample.
  const herd::v1::ResourceUsage& self_usage() const { return self_usage_; }
  // What the sampling ticks cost so far: wall (steady clock) and loop-thread CPU time of
  // each Sample().
  const herd::v1::SamplerStats& sampler_stats() const { return sampler_stats_; }
  size_t unit_count() const { return units_.size(); }

 private:
  struct Unit;
  struct OutputStream {
    int read_fd = -1;
    int write_fd = -1;  // kept so every process of the unit reuses the same pipe
    EventLoop::Handle watch = 0;
    std::string partial;  // bytes after the last newline
    LogWriter::SinkId sink = 0;
    const char* name = "out";
  };
  enum class Intent { kNone, kStop, kRestart, kDelete };

  struct Unit {
    explicit Unit(const herd::v1::AppSpec& s) : spec(s), policy(s) {}
    herd::v1::AppSpec spec;
    RestartPolicy policy;
    std::optional<CronSchedule> cron;
    std::optional<TimestampFormat> timestamp;
    herd::v1::UnitState state = herd::v1::UNIT_STATE_STOPPED;
    std::string reason;
    bool desired_running = false;
    pid_t pid = 0;
    int pidfd = -1;
    uint64_t start_ticks = 0;
    EventLoop::Handle pidfd_watch = 0;
    OutputStream out, err;
    std::string out_path, err_path;
    absl::Time started_mono, started_wall;
    uint32_t restarts = 0;
    int last_exit_code = 0;
    int last_signal = 0;
    EventLoop::Handle restart_timer = 0, kill_timer = 0, cron_timer = 0;
    absl::Time next_restart_wall;
    absl::Time cron_last;  // the instant the cron timer was last armed for
    Intent intent = Intent::kNone;
    std::vector<std::function<void()>> on_stopped;  // called when no process runs
    std::deque<herd::v1::UnitEvent> events;
    herd::v1::ResourceUsage usage;
    std::vector<pid_t> sampled_pids;
    std::string exec_path;
    // The cgroup of the current process ("" when none or not running).
    std::string cgroup;
    // Its limits: how they are enforced (or why not), the v1 directories made for them,
    // where its OOM kills are counted.
    std::string limits_how;
    std::vector<std::string> limit_dirs;
    std::string oom_file;
    uint64_t oom_kills = 0;  // told so far
  };

  absl::StatusOr<std::vector<Unit*>> Select(const std::string& selector);
  Unit& AddUnit(const herd::v1::AppSpec& spec);
  void ConfigureUnit(Unit& u);
  void OpenOutput(Unit& u);
  void CloseOutput(Unit& u);
  void Spawn(Unit& u);
  void OnExit(Unit& u);
  // Collects the exit of the unit's process (nothing if it still runs) and what it wrote last.
  std::optional<ExitInfo> Reap(Unit& u);
  // An exit nobody asked for: restart now or later, stop, or error, as the policy decides.
  void ApplyRestartPolicy(Unit& u, pid_t old_pid, const std::string& how, const ExitInfo& exit);
  void ScheduleRestart(Unit& u, const std::string& how, absl::Duration delay);
  void OnOutput(Unit& u, OutputStream& s);
  void EmitLines(Unit& u, OutputStream& s, absl::string_view data, bool flush_partial);
  void RequestStop(Unit& u, Intent intent, std::function<void()> on_stopped);
  void AfterStopped(Unit& u);
  void ScheduleCron(Unit& u);
  void Sample();
  void CheckMemory(Unit& u);
  void RemoveUnit(const std::string& name);
  void AddEvent(Unit& u, const std::string& kind, const std::string& detail);
  // Queues the state file's update for the end of this turn of the loop: what one call
  // changes (a batch of starts, a restart of many) is serialized once, not once per unit.
  void Persist();
  void PersistNow();
  void KillGroup(pid_t pgid, int sig);

  // Containment (supervisor_containment.cc), with cgroups: a fresh cgroup per process.
  // Creates the next process's cgroup: an fd for the spawner, -1 without one.
  int PrepareCgroup(Unit& u);
  // Sets the spec's memory_max and pids_max for the next process: the cgroup.procs the child
  // must join (the caller closes them).
  std::vector<int> PrepareLimits(Unit& u);
  // The kernel's OOM kills in the process's memory cgroup since last told, as an event
  // (at each exit and sampling tick).
  void NoteOomKills(Unit& u);
  // The unit's process group and everything in its cgroup get `sig`.
  void KillUnit(const Unit& u, pid_t pgid, int sig);
  // The main process has exited: what is left in its cgroup is stopped, at once when the
  // exit was asked for (they had their SIGTERM with it), else SIGTERM then SIGKILL after
  // kill_timeout (the next process runs in a cgroup of its own meanwhile).
  void StopLeftovers(Unit& u, bool asked);
  void StopAdopted(Unit& u, bool asked);
  // The unit's processes outside its process group.
  std::vector<pid_t> Escaped(const Unit& u) const;
  // Subreaper: the processes re-parented to agentd, by unit (HERD_UNIT); reaps those that
  // have exited since.
  std::map<std::string, std::vector<pid_t>> Adopted() const;
  void DescribeContainment(const Unit& u, herd::v1::UnitDetail* d) const;
  // Removes the cgroups emptied since (each sampling tick).
  void DrainCgroups();
  // On Restore: whatever an earlier run of the agent left in its cgroups is killed.
  void KillPreviousRun();
  herd::v1::UnitStatus StatusOf(const Unit& u) const;
  std::vector<herd::v1::UnitStatus> StatusOf(const std::vector<Unit*>& units) const;
  std::vector<pid_t> PidFileRoots(const Unit& u) const;
  // What one unit is sampled as: its process (or pid files), what escaped it, a module's
  // announced pids.
  SampleTarget TargetOf(const std::string& name, const Unit& u,
                        const std::map<std::string, std::vector<pid_t>>& adopted);

  EventLoop& loop_;
  Spawner& spawner_;
  ProcSampler& sampler_;
  LogWriter& logs_;
  StateFile* state_;
  const SupervisorOptions options_;
  std::shared_ptr<spdlog::logger> log_;
  // std::map: List() is sorted by name; node-based so Unit& stays valid across inserts.
  std::map<std::string, std::unique_ptr<Unit>> units_;
  EventLoop::Handle sample_timer_ = 0;
  std::map<uint64_t, EventListener> event_listeners_;
  uint64_t next_listener_ = 1;
  absl::Time last_smaps_;
  herd::v1::ResourceUsage self_usage_;
  herd::v1::SamplerStats sampler_stats_;
  uint64_t next_follow_id_ = 1;
  struct Follower {
    std::string unit;  // empty: every unit
    LineSink sink;
  };
  std::map<uint64_t, Follower> followers_;
  bool shutting_down_ = false;
  bool persist_queued_ = false;
  // Cleared by the destructor: a queued update finds it so if the loop outlives us.
  std::shared_ptr<bool> alive_ = std::make_shared<bool>(true);
  UnitHooks* hooks_ = nullptr;
  UnitCgroups* cgroups_ = nullptr;
  UnitLimits* limits_ = nullptr;
  std::vector<std::string> draining_cgroups_;
  bool subreaper_ = false;
  // Adopted processes seen with a unit's HERD_UNIT: reaped once they exit.
  mutable std::set<pid_t> adopted_;
};

}  // namespace herd::agent
