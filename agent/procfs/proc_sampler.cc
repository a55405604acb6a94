#include "absl/strings/string_view.h"
#include "agent/procfs/proc_sampler.h"

#include <errno.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>

#include "absl/container/flat_hash_set.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"
#include "common/proc_stat.h"

namespace herd::agent {
namespace {

uint64_t KbLine(absl::string_view content, absl::string_view key) {
  size_t p = content.find(key);
  if (p == absl::string_view::npos) return 0;
  absl::string_view rest = content.substr(p + key.size());
  size_t nl = rest.find('\n');
  rest = rest.substr(0, nl);
  rest = rest.substr(0, rest.find("kB"));
  uint64_t v = 0;
  if (!absl::SimpleAtoi(absl::StripAsciiWhitespace(rest), &v)) return 0;
  return v * 1024;
}

}  // namespace

bool ParseStat(absl::string_view content, StatFields* out) {
  absl::StatusOr<ProcStat> stat = ParseProcStat(content);
  if (!stat.ok()) return false;
  out->ppid = stat->ppid;
  out->cpu_ticks = stat->cpu_ticks();
  out->threads = stat->threads;
  out->start_ticks = stat->start_ticks;
  out->rss_pages = stat->rss_pages;
  return true;
}

bool ParseSmapsRollup(absl::string_view content, SmapsRollup* out) {
  if (content.find("Pss:") == absl::string_view::npos) return false;
  out->pss_bytes = KbLine(content, "\nPss:");
  out->uss_bytes = KbLine(content, "\nPrivate_Clean:") + KbLine(content, "\nPrivate_Dirty:");
  return true;
}

ProcSampler::ProcSampler(std::string proc_root, long clk_tck, long page_size)
    : root_(std::move(proc_root)),
      clk_tck_(static_cast<double>(clk_tck > 0 ? clk_tck : sysconf(_SC_CLK_TCK))),
      page_size_(static_cast<uint64_t>(page_size > 0 ? page_size : sysconf(_SC_PAGESIZE))) {
  buf_.resize(4096);
}

ProcSampler::~ProcSampler() {
  for (auto& [pid, t] : procs_) Close(t);
}

void ProcSampler::Close(Tracked& t) {
  for (int* fd : {&t.stat_fd, &t.children_fd, &t.smaps_fd}) {
    if (*fd >= 0) close(*fd);
    *fd = -1;
  }
}

ProcSampler::Tracked* ProcSampler::Open(pid_t pid) {
  auto it = procs_.find(pid);
  if (it != procs_.end()) return &it->second;
  std::string base = absl::StrCat(root_, "/", pid);
  int stat_fd = open(absl::StrCat(base, "/stat").c_str(), O_RDONLY | O_CLOEXEC);
  if (stat_fd < 0) return nullptr;
  Tracked t;
  t.stat_fd = stat_fd;
  // Missing children file (kernel without CONFIG_PROC_CHILDREN) only disables descendants.
  t.children_fd =
      open(absl::StrCat(base, "/task/", pid, "/children").c_str(), O_RDONLY | O_CLOEXEC);
  return &procs_.emplace(pid, std::move(t)).first->second;
}

bool ProcSampler::PreadAll(int fd, std::string* out) {
  out->clear();
  size_t off = 0;
  while (true) {
    ssize_t n = pread(fd, buf_.data(), buf_.size(), static_cast<off_t>(off));
    if (n < 0) {
      if (errno == EINTR) continue;
      return false;
    }
    out->append(buf_.data(), static_cast<size_t>(n));
    off += static_cast<size_t>(n);
    if (n == 0 || static_cast<size_t>(n) < buf_.size()) return true;
  }
}

void ProcSampler::ReadChildren(Tracked& t, std::vector<pid_t>* out) {
  if (t.children_fd < 0) return;
  std::string content;
  if (!PreadAll(t.children_fd, &content)) return;
  for (absl::string_view tok : absl::StrSplit(content, ' ', absl::SkipWhitespace())) {
    pid_t child = 0;
    if (absl::SimpleAtoi(absl::StripAsciiWhitespace(tok), &child) && child > 0) {
      out->push_back(child);
    }
  }
}

std::vector<TreeUsage> ProcSampler::Sample(absl::Time now,
                                           const std::vector<SampleTarget>& targets,
                                           bool read_smaps) {
  ++tick_;
  std::vector<TreeUsage> result;
  result.reserve(targets.size());
  std::string content;
  std::vector<pid_t> queue;
  absl::flat_hash_set<pid_t> visited;
  for (const SampleTarget& target : targets) {
    TreeUsage usage;
    usage.key = target.key;
    usage.smaps_read = read_smaps;
    queue.assign(target.roots.begin(), target.roots.end());
    visited.clear();
    for (size_t qi = 0; qi < queue.size(); ++qi) {
      pid_t pid = queue[qi];
      if (pid <= 0 || !visited.insert(pid).second) continue;
      Tracked* t = Open(pid);
      if (t == nullptr) continue;
      StatFields stat;
      if (!PreadAll(t->stat_fd, &content) || content.empty() || !ParseStat(content, &stat)) {
        // Gone (ESRCH) or unreadable: forget it; a new process with this PID starts afresh.
        Close(*t);
        procs_.erase(pid);
        continue;
      }
      if (t->seen_tick != tick_) {
        double cpu = 0;
        if (t->seen_tick != 0 && t->start_ticks == stat.start_ticks &&
            stat.cpu_ticks >= t->last_cpu_ticks && now > t->last_time) {
          double secs = absl::ToDoubleSeconds(now - t->last_time);
          cpu = (static_cast<double>(stat.cpu_ticks - t->last_cpu_ticks) / clk_tck_) / secs * 100;
        }
        t->start_ticks = stat.start_ticks;
        t->last_cpu_ticks = stat.cpu_ticks;
        t->last_time = now;
        t->seen_tick = tick_;
        usage.cpu_percent += cpu;
      } else {
        // Shared by two targets in one tick (e.g. a watched pid that is also a child): its
        // CPU was attributed to the first target already; memory is counted in both.
      }
      usage.rss_bytes += stat.rss_pages * page_size_;
      usage.threads += stat.threads;
      usage.pids.push_back(pid);
      if (read_smaps) {
        if (t->smaps_fd < 0) {
          t->smaps_fd = open(absl::StrCat(root_, "/", pid, "/smaps_rollup").c_str(),
                             O_RDONLY | O_CLOEXEC);
        }
        SmapsRollup smaps;
        if (t->smaps_fd >= 0 && PreadAll(t->smaps_fd, &content) &&
            ParseSmapsRollup(content, &smaps)) {
          t->smaps = smaps;
        }
      }
      usage.pss_bytes += t->smaps.pss_bytes;
      usage.uss_bytes += t->smaps.uss_bytes;
      if (target.include_descendants) ReadChildren(*t, &queue);
    }
    result.push_back(std::move(usage));
  }
  // Forget processes that no target reached this tick.
  for (auto it = procs_.begin(); it != procs_.end();) {
    if (it->second.seen_tick != tick_) {
      Close(it->second);
      procs_.erase(it++);
    } else {
      ++it;
    }
  }
  return result;
}

}  // namespace herd::agent
