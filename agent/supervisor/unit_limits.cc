#include "agent/supervisor/unit_limits.h"

#include "agent/supervisor/unit_cgroups.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "common/atomic_file.h"
#include "common/units.h"

namespace herd::agent {
namespace {

// agentd's cgroup in the v1 hierarchy holding `controller` ("4:memory:/a/b" in
// /proc/self/cgroup), "" if none.
std::string OwnV1Path(const std::string& cgroup_file, const std::string& controller) {
  auto text = ReadFileToString(cgroup_file);
  if (!text.ok()) return "";
  for (absl::string_view line : absl::StrSplit(*text, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, absl::MaxSplits(':', 2));
    if (f.size() != 3) continue;
    for (absl::string_view c : absl::StrSplit(f[1], ',')) {
      if (c == controller) return std::string(f[2]);
    }
  }
  return "";
}

// The mount point and root of the v1 hierarchy holding `controller` (mountinfo).
std::pair<std::string, std::string> V1Mount(const std::string& mountinfo,
                                            const std::string& controller) {
  auto info = ReadFileToString(mountinfo);
  if (!info.ok()) return {};
  for (absl::string_view line : absl::StrSplit(*info, '\n', absl::SkipEmpty())) {
    std::vector<absl::string_view> f = absl::StrSplit(line, ' ');
    size_t dash = 0;
    while (dash < f.size() && f[dash] != "-") ++dash;
    if (f.size() < 5 || dash + 3 >= f.size() || f[dash + 1] != "cgroup") continue;
    if (absl::StrContains(f[4], "\\")) continue;
    for (absl::string_view opt : absl::StrSplit(f[dash + 3], ',')) {
      if (opt == controller) return {std::string(f[4]), std::string(f[3])};
    }
  }
  return {};
}

void RemoveEmptyUnitDirs(const std::string& base) {
  DIR* d = opendir(base.c_str());
  if (d == nullptr) return;
  while (dirent* e = readdir(d)) {
    if (absl::StartsWith(e->d_name, "unit-")) rmdir(absl::StrCat(base, "/", e->d_name).c_str());
  }
  closedir(d);
}

}  // namespace

std::unique_ptr<UnitLimits> UnitLimits::Open(const std::string& tag, std::set<std::string> v2,
                                             const std::string& proc) {
  std::vector<V1> v1;
  for (const char* c : {"memory", "pids"}) {
    if (v2.count(c)) continue;
    auto [mount, root] = V1Mount(proc + "/self/mountinfo", c);
    std::string own = OwnV1Path(proc + "/self/cgroup", c);
    if (mount.empty() || own.empty()) continue;
    // The path is relative to the mount's root (a container sees its own part only).
    if (root != "/" && absl::StartsWith(own, root)) own = own.substr(root.size());
    const std::string base = absl::StrCat(mount, own == "/" ? "" : own, "/herd-", tag);
    if (mkdir(base.c_str(), 0755) != 0 && errno != EEXIST) continue;  // not root: none
    RemoveEmptyUnitDirs(base);
    v1.push_back({c, base});
  }
  return std::make_unique<UnitLimits>(std::move(v2), std::move(v1));
}

UnitLimits::~UnitLimits() {
  for (const auto& v : v1_) {
    RemoveEmptyUnitDirs(v.base);
    rmdir(v.base.c_str());
  }
}

std::string UnitLimits::Describe() const {
  std::vector<std::string> out;
  for (const char* c : {"memory", "pids"}) {
    if (v2_.count(c)) {
      out.push_back(absl::StrCat(c, " (cgroup v2)"));
    } else if (const V1* v = V1For(c)) {
      out.push_back(absl::StrCat(c, " (cgroup v1: ", v->base, ")"));
    }
  }
  return out.empty() ? "none" : absl::StrJoin(out, ", ");
}

const UnitLimits::V1* UnitLimits::V1For(const std::string& controller) const {
  for (const auto& v : v1_) {
    if (v.controller == controller) return &v;
  }
  return nullptr;
}

std::string UnitLimits::NewV1Dir(const V1& v1, const std::string& unit) {
  for (int tries = 0; tries < 1000; ++tries) {
    std::string path = absl::StrCat(v1.base, "/unit-", unit, "@", ++next_);
    if (mkdir(path.c_str(), 0755) == 0) return path;
    if (errno != EEXIST) return "";
  }
  errno = EEXIST;
  return "";
}

UnitLimits::Applied UnitLimits::Apply(const std::string& unit, const herd::v1::AppSpec& spec,
                                      const std::string& v2_dir) {
  Applied a;
  std::vector<std::string> done, missing;
  struct Want {
    const char* controller;
    uint64_t value;
    const char* v2_file;
    const char* v1_file;
    std::string shown;
  };
  const Want wants[] = {
      {"memory", spec.memory_max_bytes(), "memory.max", "memory.limit_in_bytes",
       FormatBytes(spec.memory_max_bytes())},
      {"pids", spec.pids_max(), "pids.max", "pids.max", absl::StrCat(spec.pids_max())}};
  for (const Want& w : wants) {
    if (w.value == 0) continue;
    const std::string value = absl::StrCat(w.value);
    int err = 0;
    std::string where;
    if (v2_.count(w.controller) && !v2_dir.empty()) {
      err = WriteCgroupFile(absl::StrCat(v2_dir, "/", w.v2_file), value);
      where = "cgroup v2";
      if (err == 0 && std::string(w.controller) == "memory") a.oom_file = v2_dir + "/memory.events";
    } else if (const V1* v1 = V1For(w.controller)) {
      const std::string dir = NewV1Dir(*v1, unit);
      err = dir.empty() ? errno : WriteCgroupFile(absl::StrCat(dir, "/", w.v1_file), value);
      int fd = err == 0 ? open((dir + "/cgroup.procs").c_str(), O_WRONLY | O_CLOEXEC) : -1;
      if (err == 0 && fd < 0) err = errno;
      if (!dir.empty()) a.dirs.push_back(dir);
      if (fd >= 0) a.join_fds.push_back(fd);
      where = "cgroup v1";
      if (err == 0 && std::string(w.controller) == "memory") {
        a.oom_file = dir + "/memory.oom_control";
      }
    } else {
      missing.push_back(absl::StrCat(w.controller, "_max not enforced: agentd has no ",
                                     w.controller, " controller (", Describe() == "none"
                                         ? "no cgroup hierarchy offers it to agentd"
                                         : "only " + Describe(), ")"));
      continue;
    }
    if (err != 0) {
      missing.push_back(absl::StrCat(w.controller, "_max not enforced: ", where, ": ",
                                     strerror(err)));
      continue;
    }
    done.push_back(absl::StrCat(w.controller, " ", w.shown, " (", where, ")"));
  }
  a.complete = missing.empty();
  done.insert(done.end(), missing.begin(), missing.end());
  a.how = absl::StrJoin(done, ", ");
  return a;
}

uint64_t UnitLimits::OomKills(const std::string& oom_file) {
  if (oom_file.empty()) return 0;
  auto text = ReadFileToString(oom_file);
  if (!text.ok()) return 0;
  for (absl::string_view line : absl::StrSplit(*text, '\n')) {
    uint64_t n = 0;
    if (absl::ConsumePrefix(&line, "oom_kill ") && absl::SimpleAtoi(line, &n)) return n;
  }
  return 0;
}

}  // namespace herd::agent
