// agentd_bench: end-to-end measurements of the real agentd.
//   agentd_bench restart [--count N]  exit-to-running latency when agentd restarts a unit
//                                     with restart_delay 0, beside the posix_spawn+waitpid
//                                     floor for the same probe program
//   agentd_bench rss [--units N]      agentd's own RSS and CPU with N sleeping units
// Binaries are found next to this one (build/bin). Everything started is stopped.
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "grpcpp/grpcpp.h"
#include "herd/v1/agent.grpc.pb.h"

extern char** environ;

namespace {

std::string BinDir() {
  char buf[4096];
  ssize_t n = readlink("/proc/self/exe", buf, sizeof buf - 1);
  std::string self(buf, n > 0 ? static_cast<size_t>(n) : 0);
  return self.substr(0, self.rfind('/'));
}

struct Agent {
  std::string home;
  pid_t pid = 0;
  std::unique_ptr<herd::v1::Agent::Stub> stub;

  explicit Agent(const std::string& bin) {
    char tmpl[] = "/tmp/herd-bench-XXXXXX";
    home = mkdtemp(tmpl);
    std::string agentd = bin + "/agentd";
    std::vector<std::string> args = {agentd, "--home", home, "--log-level", "warn",
                                     "--log-file", home + "/agentd.log"};
    std::vector<char*> argv;
    for (auto& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    posix_spawn_file_actions_t fa;
    posix_spawn_file_actions_init(&fa);
    posix_spawn_file_actions_addopen(&fa, 2, "/dev/null", 1, 0);
    if (posix_spawn(&pid, agentd.c_str(), &fa, nullptr, argv.data(), environ) != 0) {
      fprintf(stderr, "cannot start %s\n", agentd.c_str());
      exit(1);
    }
    posix_spawn_file_actions_destroy(&fa);
    auto ch = grpc::CreateChannel("unix:" + home + "/agent.sock", grpc::InsecureChannelCredentials());
    for (int i = 0; i < 200; ++i) {
      if (access((home + "/agent.sock").c_str(), F_OK) == 0 &&
          ch->WaitForConnected(std::chrono::system_clock::now() + std::chrono::milliseconds(100))) {
        stub = herd::v1::Agent::NewStub(ch);
        return;
      }
      usleep(50000);
    }
    fprintf(stderr, "agentd did not come up (see %s/agentd.log)\n", home.c_str());
    exit(1);
  }
  ~Agent() {
    kill(pid, SIGTERM);
    waitpid(pid, nullptr, 0);
    std::string cmd = "rm -rf '" + home + "'";
    if (system(cmd.c_str()) != 0) fprintf(stderr, "could not remove %s\n", home.c_str());
  }
  void Start(const std::string& json) {
    herd::v1::StartRequest req;
    req.set_ecosystem_json(json);
    req.set_base_dir(home);
    herd::v1::UnitsResponse resp;
    grpc::ClientContext ctx;
    auto s = stub->Start(&ctx, req, &resp);
    if (!s.ok()) {
      fprintf(stderr, "Start failed: %s\n", s.error_message().c_str());
      exit(1);
    }
  }
  void Stop(const std::string& name) {
    herd::v1::UnitSelector sel;
    sel.set_name(name);
    herd::v1::UnitsResponse resp;
    grpc::ClientContext ctx;
    (void)stub->Stop(&ctx, sel, &resp);
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
  const std::string file = agent.home + "/probe.txt";
  agent.Start(absl::StrCat(
      R"({"name":"probe","script":")", probe,
      R"(","interpreter":"none","min_uptime":0,"max_restarts":1000000000,"restart_delay":0,)",
      R"("env":{"HERD_PROBE_FILE":")", file, R"("}})"));
  absl::Time deadline = absl::Now() + absl::Seconds(120);
  while (ReadProbe(file).size() < static_cast<size_t>(count + 1) && absl::Now() < deadline) {
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

int Rss(const std::string& bin, int units) {
  Agent agent(bin);
  std::string apps;
  for (int i = 0; i < units; ++i) {
    absl::StrAppend(&apps, i ? "," : "", R"({"name":"sleeper-)", i,
                    R"(","script":"sleep","args":["100000"]})");
  }
  agent.Start(absl::StrCat(R"({"apps":[)", apps, "]}"));
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

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2 || std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h") {
    printf("usage: agentd_bench restart [--count N] | rss [--units N]\n");
    return argc < 2 ? 2 : 0;
  }
  std::string mode = argv[1];
  int n = mode == "restart" ? 1000 : 100;
  if (argc >= 4 && !absl::SimpleAtoi(argv[3], &n)) {
    fprintf(stderr, "agentd_bench: %s is not a number\n", argv[3]);
    return 2;
  }
  const std::string bin = BinDir();
  if (mode == "restart") return Restart(bin, n);
  if (mode == "rss") return Rss(bin, n);
  fprintf(stderr, "agentd_bench: unknown mode %s (restart or rss)\n", mode.c_str());
  return 2;
}
