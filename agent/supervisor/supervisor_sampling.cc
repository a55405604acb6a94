// Supervisor: sampling units' resource use (roots from pid files and module hooks), and
// max_memory_restart.
#include "agent/supervisor/supervisor.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/strip.h"
#include "agent/supervisor/app_spec.h"
#include "agent/supervisor/supervisor_internal.h"
#include "common/atomic_file.h"
#include "common/units.h"
#include "common/utf8.h"

namespace herd::agent {

using herd::v1::AppSpec;
using herd::v1::UnitState;
using herd::v1::UnitStatus;
using supervisor_internal::ReadStartTicks;
using supervisor_internal::UnixMs;

namespace {

// CPU time of the calling thread, nanoseconds.
uint64_t ThreadCpuNs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000u + static_cast<uint64_t>(ts.tv_nsec);
}

}  // namespace

std::vector<pid_t> Supervisor::PidFileRoots(const Unit& u) const {
  std::vector<pid_t> pids;
  for (const auto& path : u.spec.pid_files()) {
    auto content = ReadFileToString(path);
    int64_t pid = 0;
    if (content.ok() && absl::SimpleAtoi(absl::StripAsciiWhitespace(*content), &pid) &&
        pid > 0 && pid < (int64_t{1} << 22)) {
      pids.push_back(static_cast<pid_t>(pid));
    }
  }
  return pids;
}

SampleTarget Supervisor::TargetOf(const std::string& name, const Unit& u,
                                  const std::map<std::string, std::vector<pid_t>>& adopted) {
  SampleTarget t;
  t.key = name;
  if (u.spec.pid_files_size() > 0) {
    t.roots = PidFileRoots(u);
    if (u.spec.pid_files_join() || t.roots.empty()) t.roots.push_back(u.pid);
  } else {
    t.roots.push_back(u.pid);
  }
  // What left the process tree (a double-forked daemon) is the unit's all the same. With a
  // cgroup, every process in it is a root: the sampler visits each pid once, so the ones in
  // the tree cost nothing more, and no /proc/PID/stat is read here to tell them apart.
  if (cgroups_ != nullptr) {
    if (!u.cgroup.empty()) {
      for (pid_t p : cgroups_->Pids(u.cgroup)) t.roots.push_back(p);
    }
  } else if (auto a = adopted.find(name); a != adopted.end()) {
    t.roots.insert(t.roots.end(), a->second.begin(), a->second.end());
  }
  if (hooks_ != nullptr && u.spec.channel() != herd::v1::CHANNEL_KIND_NONE) {
    // A module's announced pid (initModule's `pid`) replaces its own process, as in PM2,
    // or joins it when the module asked for that (`pid_join`).
    bool join = false;
    std::vector<pid_t> announced = hooks_->SampleRoots(name, &join);
    if (!announced.empty()) {
      if (!join) t.roots.clear();
      for (pid_t p : announced) {
        if (std::find(t.roots.begin(), t.roots.end(), p) == t.roots.end()) t.roots.push_back(p);
      }
    }
  }
  return t;
}

void Supervisor::Sample() {
  // Real elapsed time, whatever clock the loop runs on (tests may give it a fake one), and
  // the loop thread's CPU time.
  const auto tick_start = std::chrono::steady_clock::now();
  const uint64_t cpu_start = ThreadCpuNs();
  sample_timer_ = loop_.RunAfter(options_.sample_interval, [this] { Sample(); });
  DrainCgroups();
  for (auto& [name, u] : units_) {
    if (!u->oom_file.empty() && u->pid != 0) NoteOomKills(*u);
  }
  const absl::Time mono = loop_.clock().Monotonic();
  const bool smaps = last_smaps_ == absl::Time() || mono - last_smaps_ >= options_.smaps_interval;
  if (smaps) last_smaps_ = mono;

  const std::map<std::string, std::vector<pid_t>> adopted = Adopted();  // one scan a tick
  std::vector<SampleTarget> targets;
  std::vector<Unit*> order;
  targets.reserve(units_.size() + 1);
  for (auto& [name, u] : units_) {
    if (u->pid == 0) continue;
    targets.push_back(TargetOf(name, *u, adopted));
    order.push_back(u.get());
  }
  targets.push_back(SampleTarget{"", {getpid()}, false});
  std::vector<TreeUsage> usage = sampler_.Sample(mono, targets, smaps);
  const int64_t now_ms = UnixMs(loop_.clock().Now());
  uint32_t processes = 0;
  for (size_t i = 0; i < usage.size(); ++i) {
    const TreeUsage& t = usage[i];
    processes += static_cast<uint32_t>(t.pids.size());
    herd::v1::ResourceUsage* r = i < order.size() ? &order[i]->usage : &self_usage_;
    const uint64_t pss = r->pss_bytes(), uss = r->uss_bytes();
    *r = herd::v1::ResourceUsage();
    r->set_cpu_percent(t.cpu_percent);
    r->set_rss_bytes(t.rss_bytes);
    r->set_pss_bytes(t.smaps_read ? t.pss_bytes : pss);
    r->set_uss_bytes(t.smaps_read ? t.uss_bytes : uss);
    r->set_threads(t.threads);
    r->set_processes(static_cast<uint32_t>(t.pids.size()));
    r->set_sampled_at_unix_ms(now_ms);
    if (i < order.size()) {
      order[i]->sampled_pids = t.pids;
      CheckMemory(*order[i]);
    }
  }
  const uint64_t ns = static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                                std::chrono::steady_clock::now() - tick_start)
                                                .count());
  const uint64_t cpu_ns = ThreadCpuNs() - cpu_start;
  sampler_stats_.set_ticks(sampler_stats_.ticks() + 1);
  sampler_stats_.set_last_tick_ns(ns);
  sampler_stats_.set_last_tick_smaps(smaps);
  sampler_stats_.set_last_tick_processes(processes);
  sampler_stats_.set_total_tick_ns(sampler_stats_.total_tick_ns() + ns);
  sampler_stats_.set_max_tick_ns(std::max(sampler_stats_.max_tick_ns(), ns));
  sampler_stats_.set_last_tick_cpu_ns(cpu_ns);
  sampler_stats_.set_total_tick_cpu_ns(sampler_stats_.total_tick_cpu_ns() + cpu_ns);
}

void Supervisor::CheckMemory(Unit& u) {
  const uint64_t limit = u.spec.max_memory_restart_bytes();
  if (limit == 0 || u.state != herd::v1::UNIT_STATE_ONLINE) return;
  if (u.usage.rss_bytes() <= limit) return;
  std::string detail = absl::StrCat("memory ", FormatBytes(u.usage.rss_bytes()),
                                    " over max_memory_restart ", FormatBytes(limit));
  AddEvent(u, "memory-limit", detail);
  log_->warn("event=memory_limit unit={} pid={} rss={} limit={} action=restart", u.spec.name(),
             u.pid, u.usage.rss_bytes(), limit);
  RequestStop(u, Intent::kRestart, nullptr);
}

}  // namespace herd::agent
