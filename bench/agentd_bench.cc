// agentd_bench: end-to-end measurements of the real agentd.
//   agentd_bench restart [--count N]  exit-to-running latency when agentd restarts a unit
//                                     with restart_delay 0, beside the posix_spawn+waitpid
//                                     floor for the same probe program
//   agentd_bench rss [--units N]      agentd's own RSS and CPU with N sleeping units
//   agentd_bench scale [--units N] [--json]
//                                     agentd with N (default 1000) sleeping units at the
//                                     default 1 s sample interval: the cost of one sampling
//                                     tick (agentd's own measurement, AgentInfo.sampler),
//                                     agentd's CPU % of one core over 20 s and its RSS,
//                                     beside the floor measured in the same run while the
//                                     units are up: a bare pread loop over the same /proc
//                                     files (stat and task/PID/children of every sampled
//                                     PID, fds opened once), once a second half-way between
//                                     agentd's ticks during the window, then 200 passes back
//                                     to back. --json adds the results as one JSON line.
// Binaries are found next to this one (build/bin). Everything started is stopped, also
// when a step fails or the bench gets SIGINT / SIGTERM.
#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <fstream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "absl/time/time.h"
#include "grpcpp/grpcpp.h"
#include "herd/v1/agent.grpc.pb.h"

extern char** environ;

namespace {

// Set by SIGINT / SIGTERM / SIGHUP: the waits give up and everything started is stopped.
volatile sig_atomic_t g_interrupted = 0;

void OnSignal(int) { g_interrupted = 1; }

void InstallSignalHandlers() {
  struct sigaction sa = {};
  sa.sa_handler = OnSignal;  // no SA_RESTART: sleeps return early
  sigemptyset(&sa.sa_mask);
  for (int sig : {SIGINT, SIGTERM, SIGHUP}) sigaction(sig, &sa, nullptr);
}

std::string BinDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  std::string self(buf, n > 0 ? static_cast<size_t>(n) : 0);
  return self.substr(0, self.rfind('/'));
}

// A real agentd in a temporary home. ok() is false when it did not come up; the destructor
// always stops it (SIGTERM: its units are stopped with it; SIGKILL after 120 s) and removes
// the home.
struct Agent {
  std::string home;
  pid_t pid = 0;
  std::unique_ptr<herd::v1::Agent::Stub> stub;

  explicit Agent(const std::string& bin) {
    char tmpl[] = "/tmp/herd-bench-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      perror("mkdtemp");
      return;
    }
    home = tmpl;
    std::string agentd = bin + "/agentd";
    std::vector<std::string> args = {agentd, "--home", home, "--log-level", "warn",
                                     "--log-file", home + "/agentd.log"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", 1, 0);
    const int rc = posix_spawn(&pid, agentd.c_str(), &fa, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&fa);
    if (rc != 0) {
      fprintf(stderr, "cannot start %s: %s\n", agentd.c_str(), strerror(rc));
      pid = 0;
      return;
    }
    auto ch = grpc::CreateChannel("unix:" + home + "/agent.sock", grpc::InsecureChannelCredentials());
    for (int i = 0; i < 200 && !g_interrupted; ++i) {
      if (access((home + "/agent.sock").c_str(), F_OK) == 0 &&
          ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::milliseconds(100))) {
        stub = herd::v1::Agent::NewStub(ch);
        return;
      }
      usleep(50000);
    }
    fprintf(stderr, "agentd did not come up (see %s/agentd.log)\n", home.c_str());
  }
  ~Agent() {
    if (pid > 0) {
      kill(pid, SIGTERM);
      int status = 0;
      pid_t r = 0;
      for (int i = 0; i < 1200 && (r = waitpid(pid, &status, WNOHANG)) == 0; ++i) usleep(100000);
      if (r == 0) {
        fprintf(stderr, "agentd did not exit 120 s after SIGTERM: SIGKILL\n");
        kill(pid, SIGKILL);
        waitpid(pid, nullptr, 0);
      }
    }
    if (home.empty()) return;
    std::string cmd = "rm -rf '" + home + "'";
    if (system(cmd.c_str()) != 0) fprintf(stderr, "could not remove %s\n", home.c_str());
  }
  Agent(const Agent&) = delete;
  Agent& operator=(const Agent&) = delete;

  bool ok() const { return stub != nullptr; }
  bool Start(const std::string& json) {
    herd::v1::StartRequest req;
    req.set_ecosystem_json(json);
    req.set_base_dir(home);
    herd::v1::UnitsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    auto s = stub->Start(&ctx, req, &resp);
    if (!s.ok()) fprintf(stderr, "Start failed: %s\n", s.error_message().c_str());
    return s.ok();
  }
  void Stop(const std::string& name) {
    herd::v1::UnitSelector sel;
    sel.set_name(name);
    herd::v1::UnitsResponse resp;
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(120));
    (void)stub->Stop(&ctx, sel, &resp);
  }
  bool Info(herd::v1::AgentInfo* info) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    auto s = stub->GetInfo(&ctx, {}, info);
    if (!s.ok()) fprintf(stderr, "GetInfo failed: %s\n", s.error_message().c_str());
    return s.ok();
  }
  bool List(herd::v1::ListResponse* list) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(30));
    auto s = stub->List(&ctx, {}, list);
    if (!s.ok()) fprintf(stderr, "List failed: %s\n", s.error_message().c_str());
    return s.ok();
  }
};

std::vector<std::pair<long long, long long>> ReadProbe(const std::string& path) {
  std::vector<std::pair<long long, long long>> out;
  std::ifstream in(path);
  long long s, e;
  while (in >> s >> e) out.emplace_back(s, e);
  return out;
}

std::vector<double> Gaps(const std::vector<std::pair<long long, long long>>& runs) {
  std::vector<double> ms;
  for (size_t i = 1; i < runs.size(); ++i) {
    ms.push_back(static_cast<double>(runs[i].first - runs[i - 1].second) / 1e6);
  }
  std::sort(ms.begin(), ms.end());
  return ms;
}

void Report(const char* what, const std::vector<double>& ms) {
  if (ms.empty()) return;
  auto pct = [&](double p) { return ms[std::min(ms.size() - 1, static_cast<size_t>(p * ms.size()))]; };
  printf("%-28s n=%-5zu median %.3f ms  p90 %.3f ms  p99 %.3f ms  max %.3f ms\n", what,
         ms.size(), pct(0.5), pct(0.9), pct(0.99), ms.back());
}

int Restart(const std::string& bin, int count) {
  const std::string probe = bin + "/restart_probe";
  // Floor: the same probe, spawned again as soon as waitpid returns.
  {
    char tmpl[] = "/tmp/herd-floor-XXXXXX";
    int fd = mkstemp(tmpl);
    close(fd);
    std::string env_kv = std::string("HERD_PROBE_FILE=") + tmpl;
    std::vector<char*> envp = {env_kv.data(), nullptr};
    char* argv[] = {const_cast<char*>(probe.c_str()), nullptr};
    for (int i = 0; i <= count; ++i) {
      pid_t pid;
      if (posix_spawn(&pid, probe.c_str(), nullptr, nullptr, argv, envp.data()) != 0) return 1;
      waitpid(pid, nullptr, 0);
    }
    Report("posix_spawn+waitpid floor", Gaps(ReadProbe(tmpl)));
    unlink(tmpl);
  }
  Agent agent(bin);
  if (!agent.ok()) return 1;
  const std::string file = agent.home + "/probe.txt";
  const bool started = agent.Start(absl::StrCat(
      R"({"name":"probe","script":")", probe,
      R"(","interpreter":"none","min_uptime":0,"max_restarts":1000000000,"restart_delay":0,)",
      R"("env":{"HERD_PROBE_FILE":")", file, R"("}})"));
  if (!started) return 1;
  absl::Time deadline = absl::Now() + absl::Seconds(120);
  while (ReadProbe(file).size() < static_cast<size_t>(count + 1) && absl::Now() < deadline &&
         !g_interrupted) {
    usleep(20000);
  }
  agent.Stop("probe");
  Report("agentd restart (delay 0)", Gaps(ReadProbe(file)));
  return 0;
}

long ReadStatusKb(pid_t pid, const char* key) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/status"));
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind(key, 0) == 0) {
      long v = 0;
      std::istringstream(line.substr(strlen(key))) >> v;
      return v;
    }
  }
  return -1;
}

long CpuTicks(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string s((std::istreambuf_iterator<char>(in)), {});
  size_t p = s.rfind(')');
  std::istringstream f(s.substr(p + 2));
  std::string tok;
  long utime = 0, stime = 0;
  for (int i = 3; f >> tok; ++i) {
    if (i == 14) utime = std::stol(tok);
    if (i == 15) { stime = std::stol(tok); break; }
  }
  return utime + stime;
}

// An ecosystem document with N units that only sleep.
std::string Sleepers(int units) {
  std::string apps;
  for (int i = 0; i < units; ++i) {
    absl::StrAppend(&apps, i ? "," : "", R"({"name":"sleeper-)", i,
                    R"(","script":"sleep","args":["100000"]})");
  }
  return absl::StrCat(R"({"apps":[)", apps, "]}");
}

int Rss(const std::string& bin, int units) {
  Agent agent(bin);
  if (!agent.ok() || !agent.Start(Sleepers(units))) return 1;
  sleep(3);  // a few sample ticks and one smaps tick
  long t0 = CpuTicks(agent.pid);
  sleep(10);
  long t1 = CpuTicks(agent.pid);
  printf("agentd with %d units: VmRSS %ld KiB (RssAnon %ld KiB, RssFile %ld KiB), CPU %.2f%% of "
         "one core over 10 s at a 1 s sample interval\n",
         units, ReadStatusKb(agent.pid, "VmRSS:"), ReadStatusKb(agent.pid, "RssAnon:"),
         ReadStatusKb(agent.pid, "RssFile:"),
         static_cast<double>(t1 - t0) / static_cast<double>(sysconf(_SC_CLK_TCK)) / 10.0 * 100.0);
  agent.Stop("all");
  return 0;
}


// --- scale ------------------------------------------------------------------------------

// starttime (field 22 of /proc/PID/stat, clock ticks since boot); 0 when the process is gone.
// With the PID it identifies a process across PID reuse.
unsigned long long StartTicks(pid_t pid) {
  std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
  std::string s((std::istreambuf_iterator<char>(in)), {});
  size_t p = s.rfind(')');
  if (p == std::string::npos || p + 2 > s.size()) return 0;
  std::istringstream f(s.substr(p + 2));
  std::string tok;
  for (int i = 3; f >> tok; ++i) {
    if (i == 22) return std::stoull(tok);
  }
  return 0;
}

double Median(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

double Max(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::max_element(v.begin(), v.end());
}

double Min(const std::vector<double>& v) {
  return v.empty() ? 0 : *std::min_element(v.begin(), v.end());
}

double MonoSeconds() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

// CPU time of the calling thread, ms.
double ThreadCpuMs() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
}

// Sleeps until MonoSeconds() reaches t; false when interrupted.
bool SleepUntil(double t) {
  while (!g_interrupted) {
    double left = t - MonoSeconds();
    if (left <= 0) return true;
    usleep(static_cast<useconds_t>(std::min(left, 0.2) * 1e6));
  }
  return false;
}

// The bare floor: the same files agentd's ProcSampler reads every tick (each unit's
// /proc/PID/stat and /proc/PID/task/PID/children, agentd's own stat), opened once, read with
// one pread each per pass. Each pass records its wall and CPU time.
class BareFloor {
 public:
  BareFloor(const std::vector<pid_t>& unit_pids, pid_t agentd) {
    std::vector<std::string> paths;
    for (pid_t p : unit_pids) {
      paths.push_back(absl::StrCat("/proc/", p, "/stat"));
      paths.push_back(absl::StrCat("/proc/", p, "/task/", p, "/children"));
    }
    paths.push_back(absl::StrCat("/proc/", agentd, "/stat"));  // agentd samples itself, no tree
    for (const auto& path : paths) {
      int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) {
        ++unopened_;
        continue;
      }
      fds_.push_back(fd);
    }
  }
  ~BareFloor() {
    for (int fd : fds_) close(fd);
  }
  BareFloor(const BareFloor&) = delete;
  BareFloor& operator=(const BareFloor&) = delete;

  void Pass(std::vector<double>* wall_ms, std::vector<double>* cpu_ms) {
    size_t bytes = 0;
    const double c0 = ThreadCpuMs();
    const auto t0 = std::chrono::steady_clock::now();
    for (int fd : fds_) {
      ssize_t n = pread(fd, buf_, sizeof buf_, 0);
      if (n > 0) bytes += static_cast<size_t>(n);
    }
    const auto t1 = std::chrono::steady_clock::now();
    cpu_ms->push_back(ThreadCpuMs() - c0);
    wall_ms->push_back(std::chrono::duration<double, std::milli>(t1 - t0).count());
    bytes_per_pass_ = bytes;
  }

  size_t files() const { return fds_.size(); }
  size_t unopened() const { return unopened_; }
  size_t bytes_per_pass() const { return bytes_per_pass_; }

 private:
  std::vector<int> fds_;
  size_t unopened_ = 0;
  size_t bytes_per_pass_ = 0;
  char buf_[4096];
};

std::string LoadAverage() {
  std::ifstream in("/proc/loadavg");
  std::string one, five;
  in >> one >> five;
  return absl::StrCat(one, " ", five);
}

// Unit processes seen during the run (PID -> start time), killed if they outlive agentd.
using SeenProcesses = std::map<pid_t, unsigned long long>;

void RecordPids(const herd::v1::ListResponse& list, SeenProcesses* seen) {
  for (const auto& u : list.units()) {
    if (u.pid() > 0 && seen->count(u.pid()) == 0) {
      unsigned long long start = StartTicks(u.pid());
      if (start != 0) (*seen)[u.pid()] = start;
    }
  }
}

// Adds agentd's children (its units' main processes, also those of a Start that failed half
// way) to `seen`.
void RecordChildren(pid_t parent, SeenProcesses* seen) {
  DIR* dir = opendir("/proc");
  if (dir == nullptr) return;
  while (dirent* e = readdir(dir)) {
    pid_t pid = 0;
    if (!absl::SimpleAtoi(e->d_name, &pid) || seen->count(pid) != 0) continue;
    std::ifstream in(absl::StrCat("/proc/", pid, "/stat"));
    std::string s((std::istreambuf_iterator<char>(in)), {});
    size_t p = s.rfind(')');
    if (p == std::string::npos) continue;
    std::istringstream f(s.substr(p + 1));
    std::string state;
    pid_t ppid = 0;
    if (!(f >> state >> ppid) || ppid != parent) continue;
    if (unsigned long long start = StartTicks(pid); start != 0) (*seen)[pid] = start;
  }
  closedir(dir);
}

// SIGKILLs the processes of `seen` that still run (same PID and start time); returns how many.
int KillLeftovers(const SeenProcesses& seen) {
  int left = 0;
  for (const auto& [pid, start] : seen) {
    if (StartTicks(pid) == start) {
      ++left;
      kill(pid, SIGKILL);
    }
  }
  return left;
}

int ScaleRun(Agent& agent, int units, bool json, SeenProcesses* seen) {
  constexpr int kWindowSeconds = 20;
  constexpr int kBarePasses = 200;
  const double t_start = MonoSeconds();
  if (!agent.Start(Sleepers(units))) return 1;
  const double started_s = MonoSeconds() - t_start;  // Start returns once all are spawned

  // Every unit online, polled through agentd's API.
  herd::v1::ListResponse list;
  int online = 0;
  const double online_deadline = MonoSeconds() + 180;
  while (!g_interrupted) {
    list.Clear();
    if (!agent.List(&list)) return 1;
    RecordPids(list, seen);
    online = 0;
    for (const auto& u : list.units()) {
      if (u.state() == herd::v1::UNIT_STATE_ONLINE && u.pid() > 0) ++online;
    }
    if (online == units) break;
    if (MonoSeconds() > online_deadline) {
      fprintf(stderr, "only %d of %d units online after 180 s\n", online, units);
      return 1;
    }
    usleep(200000);
  }
  if (g_interrupted) return 1;
  const double online_s = MonoSeconds() - t_start;

  // The floor's files: the processes agentd samples (its units' trees, and itself).
  std::vector<pid_t> pids;
  for (const auto& u : list.units()) {
    if (u.sampled_pids_size() > 0) {
      pids.insert(pids.end(), u.sampled_pids().begin(), u.sampled_pids().end());
    } else {
      pids.push_back(u.pid());
    }
  }
  BareFloor bare(pids, agent.pid);

  // Warm-up: three ticks with every unit up, so every file is open (the first tick that
  // sees a process opens its files) and the first smaps tick is behind us.
  herd::v1::AgentInfo info;
  if (!agent.Info(&info)) return 1;
  const uint64_t warm_until = info.sampler().ticks() + 3;
  const double warm_deadline = MonoSeconds() + 30;
  while (info.sampler().ticks() < warm_until) {
    if (MonoSeconds() > warm_deadline) {
      fprintf(stderr, "agentd's sampler did not tick (AgentInfo.sampler.ticks = %llu)\n",
              static_cast<unsigned long long>(info.sampler().ticks()));
      return 1;
    }
    if (!SleepUntil(MonoSeconds() + 0.25) || !agent.Info(&info)) return 1;
  }

  // The window, timed half-way between agentd's ticks (its last tick's sampled_at tells
  // when they happen): each second, read the tick agentd just measured, then run one bare
  // pass, so that both are measured at 1 Hz, under the same load, and never at once.
  // agentd's CPU comes from /proc/PID/stat over the whole window.
  const double unix_minus_mono = absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()) -
                                 MonoSeconds();
  double w0 = static_cast<double>(info.usage().sampled_at_unix_ms()) / 1e3 - unix_minus_mono;
  while (w0 < MonoSeconds() + 0.5) w0 += 1;
  w0 -= 0.5;
  if (!SleepUntil(w0) || !agent.Info(&info)) return 1;
  const herd::v1::SamplerStats first = info.sampler();
  const std::string load_before = LoadAverage();
  const long cpu0 = CpuTicks(agent.pid);
  const double cpu_w0 = MonoSeconds();
  std::vector<double> wall_ms, cpu_ms, smaps_wall_ms, smaps_cpu_ms;  // one per tick read
  std::vector<double> bare_1hz_wall_ms, bare_1hz_cpu_ms;
  uint64_t last_tick = first.ticks();
  uint32_t processes = first.last_tick_processes();
  herd::v1::SamplerStats last = first;
  for (int k = 1; k <= kWindowSeconds; ++k) {
    if (!SleepUntil(w0 + k)) return 1;
    if (!agent.Info(&info)) return 1;
    bare.Pass(&bare_1hz_wall_ms, &bare_1hz_cpu_ms);
    last = info.sampler();
    if (last.ticks() == last_tick) continue;
    const bool smaps = last.last_tick_smaps();
    (smaps ? smaps_wall_ms : wall_ms).push_back(static_cast<double>(last.last_tick_ns()) / 1e6);
    (smaps ? smaps_cpu_ms : cpu_ms).push_back(static_cast<double>(last.last_tick_cpu_ns()) / 1e6);
    processes = last.last_tick_processes();
    last_tick = last.ticks();
  }
  const long cpu1 = CpuTicks(agent.pid);
  const double window_s = MonoSeconds() - cpu_w0;
  const long vm_rss = ReadStatusKb(agent.pid, "VmRSS:");
  const long rss_anon = ReadStatusKb(agent.pid, "RssAnon:");
  const long rss_file = ReadStatusKb(agent.pid, "RssFile:");
  const double cpu_pct = static_cast<double>(cpu1 - cpu0) /
                         static_cast<double>(sysconf(_SC_CLK_TCK)) / window_s * 100.0;
  const uint64_t window_ticks = last.ticks() - first.ticks();
  const double window_tick_ms =
      static_cast<double>(last.total_tick_ns() - first.total_tick_ns()) / 1e6;
  const double window_tick_cpu_ms =
      static_cast<double>(last.total_tick_cpu_ns() - first.total_tick_cpu_ns()) / 1e6;
  const double mean_tick_ms = window_ticks ? window_tick_ms / static_cast<double>(window_ticks) : 0;
  // CPU time spent in ticks over the window, as a share of one core.
  const double tick_pct = window_tick_cpu_ms / 1e3 / window_s * 100.0;

  // Then the bare loop back to back, as sampler_bench measures it (warm caches), with the
  // same processes up.
  std::vector<double> bare_wall_ms, bare_cpu_ms;
  for (int i = 0; i < kBarePasses && !g_interrupted; ++i) bare.Pass(&bare_wall_ms, &bare_cpu_ms);
  if (g_interrupted) return 1;
  const std::string load_after = LoadAverage();

  const double tick_ms = Median(wall_ms), tick_cpu_ms = Median(cpu_ms);
  const double bare_ms = Median(bare_wall_ms), bare_cpu = Median(bare_cpu_ms);
  const double bare_1hz_ms = Median(bare_1hz_wall_ms), bare_1hz_cpu = Median(bare_1hz_cpu_ms);
  auto ratio = [](double a, double b) { return b > 0 ? a / b : 0; };
  // What the floor costs at agentd's rate: its CPU per pass at 1 Hz.
  const double bare_pct = bare_1hz_cpu / 1000.0 * 100.0;

  printf("agentd with %d sleeping units, 1 s sample interval: Start returned after %.1f s, "
         "all online after %.1f s\n",
         units, started_s, online_s);
  printf("  load average (1 min, 5 min): %s before the window, %s after the bare loop\n",
         load_before.c_str(), load_after.c_str());
  printf("  agentd's sampling ticks (its own measurement; %zu ticks read in %.1f s, %u processes "
         "per tick):\n",
         wall_ms.size() + smaps_wall_ms.size(), window_s, processes);
  printf("    stat + children             wall median %7.3f ms (max %.3f)  CPU median %7.3f ms\n",
         tick_ms, Max(wall_ms), tick_cpu_ms);
  printf("    with smaps_rollup           wall median %7.3f ms  CPU median %7.3f ms  (%zu in "
         "the window, every 10 s)\n",
         Median(smaps_wall_ms), Median(smaps_cpu_ms), smaps_wall_ms.size());
  printf("    mean of the window's %llu ticks %.3f ms wall; longest since agentd started %.3f ms\n",
         static_cast<unsigned long long>(window_ticks), mean_tick_ms,
         static_cast<double>(last.max_tick_ns()) / 1e6);
  printf("  bare pread loop over the same files (%zu fds, %zu bytes per pass):\n", bare.files(),
         bare.bytes_per_pass());
  printf("    1 Hz, between agentd's ticks wall median %7.3f ms  CPU median %7.3f ms  (%zu "
         "passes)\n",
         bare_1hz_ms, bare_1hz_cpu, bare_1hz_wall_ms.size());
  printf("    back to back                wall median %7.3f ms  CPU median %7.3f ms  (%d "
         "passes, min %.3f ms)\n",
         bare_ms, bare_cpu, kBarePasses, Min(bare_wall_ms));
  if (bare.unopened() > 0) printf("    (%zu files could not be opened)\n", bare.unopened());
  printf("  ratio agentd tick / bare pass (CPU): %.2fx against the 1 Hz passes, %.2fx against "
         "back to back (wall: %.2fx, %.2fx)\n",
         ratio(tick_cpu_ms, bare_1hz_cpu), ratio(tick_cpu_ms, bare_cpu),
         ratio(tick_ms, bare_1hz_ms), ratio(tick_ms, bare_ms));
  printf("  agentd CPU %.2f %% of one core over %.1f s (in sampling ticks %.2f %%); the bare "
         "loop at 1 Hz %.2f %%; agentd minus the bare loop %.2f %%\n",
         cpu_pct, window_s, tick_pct, bare_pct, cpu_pct - bare_pct);
  printf("  agentd VmRSS %ld KiB (RssAnon %ld KiB, RssFile %ld KiB)\n", vm_rss, rss_anon,
         rss_file);
  if (json) {
    printf("{\"units\":%d,\"start_s\":%.2f,\"online_s\":%.2f,\"processes_per_tick\":%u,"
           "\"window_s\":%.2f,\"window_ticks\":%llu,"
           "\"tick_ms_median\":%.4f,\"tick_ms_max\":%.4f,\"tick_cpu_ms_median\":%.4f,"
           "\"smaps_tick_ms_median\":%.4f,\"smaps_tick_cpu_ms_median\":%.4f,"
           "\"tick_ms_mean\":%.4f,\"tick_ms_max_since_start\":%.4f,\"bare_files\":%zu,"
           "\"bare_1hz_ms_median\":%.4f,\"bare_1hz_cpu_ms_median\":%.4f,"
           "\"bare_pass_ms_median\":%.4f,\"bare_pass_cpu_ms_median\":%.4f,"
           "\"ratio_cpu_1hz\":%.3f,\"ratio_cpu\":%.3f,\"ratio_1hz\":%.3f,\"ratio\":%.3f,"
           "\"cpu_percent\":%.3f,\"tick_cpu_percent\":%.3f,\"bare_cpu_percent_at_1hz\":%.3f,"
           "\"cpu_percent_minus_bare\":%.3f,\"vmrss_kib\":%ld,\"rss_anon_kib\":%ld,"
           "\"rss_file_kib\":%ld,\"loadavg_before\":\"%s\",\"loadavg_after\":\"%s\"}\n",
           units, started_s, online_s, processes, window_s,
           static_cast<unsigned long long>(window_ticks), tick_ms, Max(wall_ms), tick_cpu_ms,
           Median(smaps_wall_ms), Median(smaps_cpu_ms), mean_tick_ms,
           static_cast<double>(last.max_tick_ns()) / 1e6, bare.files(), bare_1hz_ms,
           bare_1hz_cpu, bare_ms, bare_cpu, ratio(tick_cpu_ms, bare_1hz_cpu),
           ratio(tick_cpu_ms, bare_cpu), ratio(tick_ms, bare_1hz_ms), ratio(tick_ms, bare_ms),
           cpu_pct, tick_pct, bare_pct, cpu_pct - bare_pct, vm_rss, rss_anon, rss_file,
           load_before.c_str(), load_after.c_str());
  }
  fflush(stdout);
  return 0;
}

int Scale(const std::string& bin, int units, bool json) {
  // The bare loop keeps 2 fds per unit open; agentd raises nothing itself and inherits this.
  rlimit nofile;
  if (getrlimit(RLIMIT_NOFILE, &nofile) == 0 && nofile.rlim_cur < nofile.rlim_max) {
    nofile.rlim_cur = nofile.rlim_max;
    setrlimit(RLIMIT_NOFILE, &nofile);
  }
  SeenProcesses seen;
  int rc = 1;
  {
    Agent agent(bin);
    if (agent.ok()) {
      rc = ScaleRun(agent, units, json, &seen);
      RecordChildren(agent.pid, &seen);
      agent.Stop("all");
    }
  }  // agentd gets SIGTERM and is waited for here
  if (int left = KillLeftovers(seen); left > 0) {
    fprintf(stderr, "%d unit processes outlived agentd: killed\n", left);
  }
  if (g_interrupted) fprintf(stderr, "agentd_bench: interrupted, everything stopped\n");
  return rc;
}
}  // namespace

int main(int argc, char** argv) {
  const char* usage = "usage: agentd_bench restart [--count N] | rss [--units N] | "
                      "scale [--units N] [--json]\n";
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    printf("%s", usage);
    return argc < 2 ? 2 : 0;
  }
  std::string mode = argv[1];
  if (mode != "restart" && mode != "rss" && mode != "scale") {
    fprintf(stderr, "agentd_bench: unknown mode %s (restart, rss or scale)\n%s", mode.c_str(),
            usage);
    return 2;
  }
  int n = mode == "rss" ? 100 : 1000;
  bool json = false;
  for (int i = 2; i < argc; ++i) {
    std::string a = argv[i];
    if ((a == "--count" && mode == "restart") || (a == "--units" && mode != "restart")) {
      if (i + 1 >= argc || !absl::SimpleAtoi(argv[i + 1], &n) || n <= 0) {
        fprintf(stderr, "agentd_bench: %s needs a positive number\n", a.c_str());
        return 2;
      }
      ++i;
    } else if (a == "--json" && mode == "scale") {
      json = true;
    } else {
      fprintf(stderr, "agentd_bench: unknown argument %s for %s\n%s", a.c_str(), mode.c_str(),
              usage);
      return 2;
    }
  }
  InstallSignalHandlers();
  const std::string bin = BinDir();
  if (mode == "restart") return Restart(bin, n);
  if (mode == "rss") return Rss(bin, n);
  return Scale(bin, n, json);
}
