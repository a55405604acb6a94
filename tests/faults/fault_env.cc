#include "tests/faults/fault_env.h"

#include <errno.h>
#include <fcntl.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "tests/integration/agent_harness.h"

namespace herd::testing {

namespace fs = std::filesystem;

absl::StatusOr<std::string> Tool(const std::string& name, const std::string& package) {
  for (const char* dir : {"/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    const std::string p = absl::StrCat(dir, "/", name);
    if (access(p.c_str(), X_OK) == 0) return p;
  }
  return absl::FailedPreconditionError(absl::StrCat(
      "the fault tests need `", name, "`: install the Debian package ", package,
      " (scripts/install-deps.sh does)"));
}

absl::Status RunOk(const std::vector<std::string>& argv) {
  CmdResult r = Run(argv);
  if (r.exit_code == 0) return absl::OkStatus();
  return absl::InternalError(absl::StrCat("`", absl::StrJoin(argv, " "), "` exited ",
                                          r.exit_code, ": ", r.err, r.out));
}

absl::Status EnterPrivateNamespaces(bool network) {
  if (geteuid() != 0) {
    return absl::PermissionDeniedError(
        "the fault tests inject faults in namespaces they create (mounts, network), which "
        "needs root: run them as root (CI does)");
  }
  const int flags = CLONE_NEWNS | (network ? CLONE_NEWNET : 0);
  if (unshare(flags) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "unshare(", network ? "CLONE_NEWNS|CLONE_NEWNET" : "CLONE_NEWNS", "): ",
        strerror(errno),
        ": this environment does not let the test create its own namespaces (a container "
        "without CAP_SYS_ADMIN/CAP_NET_ADMIN?); the fault tests cannot run here"));
  }
  // Mounts made from here on stay in this namespace (systemd makes "/" shared).
  if (mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return absl::InternalError(absl::StrCat("making / private: ", strerror(errno)));
  }
  if (!network) return absl::OkStatus();
  // `ip netns` keeps its names under /run/netns: a tmpfs of our own there keeps them private
  // (and gone with this process).
  std::error_code ec;
  fs::create_directories("/run/netns", ec);
  if (mount("tmpfs", "/run/netns", "tmpfs", 0, "size=1m,mode=0755") != 0) {
    return absl::InternalError(absl::StrCat("mounting a tmpfs on /run/netns: ", strerror(errno)));
  }
  auto ip = Tool("ip", "iproute2");
  if (!ip.ok()) return ip.status();
  return RunOk({*ip, "link", "set", "lo", "up"});
}

AgentNetwork::~AgentNetwork() {
  if (!created_) return;
  if (cut_) (void)Heal();
  // Deleting the namespace deletes its end of the veth, and with it the pair.
  (void)RunOk({ip_, "netns", "delete", ns_});
  if (!rules_file_.empty()) unlink(rules_file_.c_str());
}

absl::Status AgentNetwork::Create() {
  auto ip = Tool("ip", "iproute2");
  if (!ip.ok()) return ip.status();
  auto nft = Tool("nft", "nftables");
  if (!nft.ok()) return nft.status();
  ip_ = *ip;
  nft_ = *nft;
  if (auto s = RunOk({ip_, "netns", "add", ns_}); !s.ok()) return s;
  created_ = true;
  const std::vector<std::vector<std::string>> steps = {
      {ip_, "link", "add", host_if_, "type", "veth", "peer", "name", agent_if_},
      {ip_, "link", "set", agent_if_, "netns", ns_},
      {ip_, "addr", "add", host_address_ + "/30", "dev", host_if_},
      {ip_, "link", "set", host_if_, "up"},
      {ip_, "netns", "exec", ns_, ip_, "addr", "add", agent_address_ + "/30", "dev", agent_if_},
      {ip_, "netns", "exec", ns_, ip_, "link", "set", agent_if_, "up"},
      {ip_, "netns", "exec", ns_, ip_, "link", "set", "lo", "up"},
  };
  for (const auto& step : steps) {
    if (auto s = RunOk(step); !s.ok()) return s;
  }
  char tmpl[] = "/tmp/herd-fault-nft-XXXXXX";
  int fd = mkstemp(tmpl);
  if (fd < 0) return absl::InternalError(absl::StrCat("mkstemp: ", strerror(errno)));
  rules_file_ = tmpl;
  // Input and output both: packets already queued in either direction are lost too.
  const std::string rules = absl::StrCat(
      "table inet herd_fault {\n"
      "  chain in { type filter hook input priority -300; policy accept; iifname \"",
      agent_if_, "\" drop; }\n",
      "  chain out { type filter hook output priority -300; policy accept; oifname \"",
      agent_if_, "\" drop; }\n", "}\n");
  const bool written = write(fd, rules.data(), rules.size()) == static_cast<ssize_t>(rules.size());
  close(fd);
  if (!written) return absl::InternalError("cannot write the nft rules file");
  return absl::OkStatus();
}

std::vector<std::string> AgentNetwork::Prefix() const { return {ip_, "netns", "exec", ns_}; }

absl::Status AgentNetwork::Cut() {
  if (auto s = RunOk({ip_, "netns", "exec", ns_, nft_, "-f", rules_file_}); !s.ok()) return s;
  cut_ = true;
  return absl::OkStatus();
}

absl::Status AgentNetwork::Heal() {
  if (auto s = RunOk({ip_, "netns", "exec", ns_, nft_, "delete", "table", "inet", "herd_fault"});
      !s.ok()) {
    return s;
  }
  cut_ = false;
  return absl::OkStatus();
}

TmpfsMount::~TmpfsMount() { (void)Unmount(); }

absl::Status TmpfsMount::Mount(const std::string& dir, size_t bytes) {
  const std::string opts = absl::StrCat("size=", bytes, ",mode=0700");
  if (mount("tmpfs", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV, opts.c_str()) != 0) {
    return absl::PermissionDeniedError(absl::StrCat(
        "mounting a ", bytes, "-byte tmpfs on ", dir, ": ", strerror(errno),
        ": the fault tests need root and their own mount namespace"));
  }
  dir_ = dir;
  return absl::OkStatus();
}

absl::Status TmpfsMount::Unmount() {
  if (dir_.empty()) return absl::OkStatus();
  const std::string dir = dir_;
  dir_.clear();
  if (umount2(dir.c_str(), 0) == 0) {
    // The harness that made the directory could not remove it while it was a mount point.
    rmdir(dir.c_str());  // fails, harmlessly, while something is still in it
    return absl::OkStatus();
  }
  const int err = errno;
  // Something (a process we could not stop) still has it open: detach it now, the kernel
  // frees it when the last file closes.
  umount2(dir.c_str(), MNT_DETACH);
  return absl::InternalError(absl::StrCat("unmounting ", dir, ": ", strerror(err),
                                          " (detached instead)"));
}

absl::StatusOr<size_t> FillDisk(const std::string& path) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return absl::InternalError(absl::StrCat("open ", path, ": ", strerror(errno)));
  const std::string chunk(64 << 10, 'f');
  size_t total = 0;
  while (true) {
    ssize_t n = write(fd, chunk.data(), chunk.size());
    if (n > 0) {
      total += static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    const int err = errno;
    close(fd);
    if (n < 0 && err != ENOSPC) {
      return absl::InternalError(absl::StrCat("write ", path, ": ", strerror(err)));
    }
    return total;
  }
}

size_t FreeBytes(const std::string& path) {
  struct statvfs s {};
  if (statvfs(path.c_str(), &s) != 0) return 0;
  return static_cast<size_t>(s.f_bavail) * s.f_frsize;
}

size_t CountInFile(const std::string& path, const std::string& needle) {
  const std::string text = ReadFile(path);
  size_t n = 0;
  for (size_t at = text.find(needle); at != std::string::npos; at = text.find(needle, at + 1)) {
    ++n;
  }
  return n;
}

absl::Status InstallPythonModule(AgentHarness& agent, const std::string& name,
                                 const std::string& dir, const std::string& extra_python,
                                 const nlohmann::json& env) {
  CmdResult gen = agent.Ctl({"generate", name, "--lang", "python", "--dir", dir});
  if (gen.exit_code != 0) {
    return absl::InternalError(absl::StrCat("agentctl generate: ", gen.err, gen.out));
  }
  if (!extra_python.empty()) {
    const std::string main_py = dir + "/main.py";
    std::string text = ReadFile(main_py);
    const std::string run = "mod.notify_issue(";
    const size_t at = text.find(run);
    if (at == std::string::npos) {
      return absl::InternalError(absl::StrCat(main_py, " has no `", run, "` line to add before"));
    }
    text.insert(at, extra_python + "\n\n");
    std::ofstream(main_py, std::ios::trunc) << text;
  }
  if (!env.empty()) {
    const std::string manifest_path = dir + "/package.json";
    nlohmann::json manifest =
        nlohmann::json::parse(ReadFile(manifest_path), nullptr, /*allow_exceptions=*/false);
    if (manifest.is_discarded() || !manifest.contains("apps")) {
      return absl::InternalError(absl::StrCat(manifest_path, " is not the generated manifest"));
    }
    for (const auto& [k, v] : env.items()) manifest["apps"][0]["env"][k] = v;
    std::ofstream(manifest_path, std::ios::trunc) << manifest.dump(2);
  }
  CmdResult inst = agent.Ctl({"install", dir});
  if (inst.exit_code != 0) {
    return absl::InternalError(absl::StrCat("agentctl install: ", inst.err, inst.out));
  }
  return absl::OkStatus();
}

std::string JsonStr(const nlohmann::json& j, const char* key) {
  if (!j.is_object() || !j.contains(key)) return "";
  return j[key].is_string() ? j[key].get<std::string>() : j[key].dump();
}

int64_t JsonInt(const nlohmann::json& j, const char* key) {
  const std::string s = JsonStr(j, key);
  return s.empty() ? 0 : strtoll(s.c_str(), nullptr, 10);
}

absl::Status InstallSvc(AgentHarness& agent) {
  return InstallPythonModule(agent, "svc", agent.Path("src/svc"));
}

double PromValue(const std::string& text, const std::string& name) {
  const std::string key = name + " ";
  for (size_t at = 0; at < text.size();) {
    size_t end = text.find('\n', at);
    if (end == std::string::npos) end = text.size();
    if (text.compare(at, key.size(), key) == 0) {
      return strtod(text.c_str() + at + key.size(), nullptr);
    }
    at = end + 1;
  }
  return -1;
}

static int64_t MonoNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

Stopwatch::Stopwatch(std::string name) : name_(std::move(name)), start_ns_(MonoNs()) {}

Stopwatch::~Stopwatch() {
  fprintf(stderr, "[fault] %s took %.1f s\n", name_.c_str(),
          static_cast<double>(MonoNs() - start_ns_) / 1e9);
}

}  // namespace herd::testing
