// Sampler cost per PID per tick, beside the bare loops it is measured against:
//   BM_ProcSampler           ProcSampler::Sample over N processes (stat + children, fds
//                            kept open; what agentd does every --sample-interval)
//   BM_BareOpenReadClose     open/read/close of the same two files per PID per tick
//   BM_BarePread             pread of the same two files, fds kept open (the floor)
// N sleeping processes are forked once per N and killed at the end. Report: the
// `per_pid` counter is the time per PID per tick.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "agent/procfs/proc_sampler.h"
#include "benchmark/benchmark.h"

namespace {

// Forked children that only wait to be killed.
class Sleepers {
 public:
  explicit Sleepers(int n) {
    for (int i = 0; i < n; ++i) {
      pid_t pid = fork();
      if (pid == 0) {
        for (;;) pause();
      }
      if (pid > 0) pids_.push_back(pid);
    }
  }
  ~Sleepers() {
    for (pid_t p : pids_) kill(p, SIGKILL);
    for (pid_t p : pids_) waitpid(p, nullptr, 0);
  }
  const std::vector<pid_t>& pids() const { return pids_; }

 private:
  std::vector<pid_t> pids_;
};

Sleepers* g_sleepers = nullptr;
int g_count = 0;

const std::vector<pid_t>& PidsFor(int n) {
  if (g_count != n) {
    delete g_sleepers;
    g_sleepers = new Sleepers(n);
    g_count = n;
  }
  return g_sleepers->pids();
}

std::vector<std::string> FilesFor(const std::vector<pid_t>& pids) {
  std::vector<std::string> files;
  for (pid_t p : pids) {
    files.push_back(absl::StrCat("/proc/", p, "/stat"));
    files.push_back(absl::StrCat("/proc/", p, "/task/", p, "/children"));
  }
  return files;
}

void SetPerPid(benchmark::State& state, size_t n) {
  state.counters["per_pid"] = benchmark::Counter(
      static_cast<double>(n), benchmark::Counter::kIsIterationInvariantRate |
                                  benchmark::Counter::kInvert);
}

void BM_ProcSampler(benchmark::State& state) {
  const auto& pids = PidsFor(static_cast<int>(state.range(0)));
  herd::agent::ProcSampler sampler;
  std::vector<herd::agent::SampleTarget> targets;
  for (pid_t p : pids) targets.push_back({absl::StrCat(p), {p}, true});
  absl::Time now = absl::Now();
  sampler.Sample(now, targets, false);  // opens the files once, as agentd's first tick does
  for (auto _ : state) {
    now += absl::Seconds(1);
    auto r = sampler.Sample(now, targets, false);
    benchmark::DoNotOptimize(r.data());
  }
  SetPerPid(state, pids.size());
}

void BM_BareOpenReadClose(benchmark::State& state) {
  const auto files = FilesFor(PidsFor(static_cast<int>(state.range(0))));
  char buf[4096];
  for (auto _ : state) {
    for (const auto& f : files) {
      int fd = open(f.c_str(), O_RDONLY | O_CLOEXEC);
      if (fd < 0) continue;
      benchmark::DoNotOptimize(read(fd, buf, sizeof buf));
      close(fd);
    }
  }
  SetPerPid(state, files.size() / 2);
}

void BM_BarePread(benchmark::State& state) {
  const auto files = FilesFor(PidsFor(static_cast<int>(state.range(0))));
  std::vector<int> fds;
  for (const auto& f : files) fds.push_back(open(f.c_str(), O_RDONLY | O_CLOEXEC));
  char buf[4096];
  for (auto _ : state) {
    for (int fd : fds) benchmark::DoNotOptimize(pread(fd, buf, sizeof buf, 0));
  }
  for (int fd : fds) close(fd);
  SetPerPid(state, files.size() / 2);
}

BENCHMARK(BM_ProcSampler)->Arg(100)->Arg(1000)->Arg(5000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_BareOpenReadClose)->Arg(100)->Arg(1000)->Arg(5000)->Unit(benchmark::kMicrosecond);
BENCHMARK(BM_BarePread)->Arg(100)->Arg(1000)->Arg(5000)->Unit(benchmark::kMicrosecond);

}  // namespace

int main(int argc, char** argv) {
  benchmark::Initialize(&argc, argv);
  if (benchmark::ReportUnrecognizedArguments(argc, argv)) return 1;
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  delete g_sleepers;
  return 0;
}
