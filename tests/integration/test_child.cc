// herd_test_child: the program integration tests put under agentd. Behaviour is chosen by
// flags, applied in this order:
//   --write-pidfile PATH   write our pid to PATH
//   --print TEXT           print TEXT on stdout (and "err:TEXT" on stderr), flushed
//   --ignore-sigterm       ignore SIGTERM (stop must escalate to SIGKILL)
//   --fork-children N      fork N children that sleep until killed
//   --alloc-mb N           touch N MiB, then --alloc-step-mb M every --alloc-interval-ms T
//                          (default 50 ms) without bound
//   --exit CODE            exit with CODE after --after-ms MS (default 0)
//   otherwise              sleep until signalled
// Deliberately plain C++ and POSIX: no dependency on the code under test.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <cstdint>
#include <string>
#include <vector>

namespace {

void SleepMs(long ms) {
  timespec ts{ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0) {
  }
}

// Allocates and touches `mb` MiB so the pages count in RSS.
void Touch(std::vector<char*>* keep, long mb) {
  for (long i = 0; i < mb; ++i) {
    char* p = static_cast<char*>(malloc(1 << 20));
    if (p == nullptr) return;
    memset(p, 1, 1 << 20);
    keep->push_back(p);
  }
}

}  // namespace

int main(int argc, char** argv) {
  std::string print, pidfile;
  bool ignore_term = false;
  long fork_children = 0, alloc_mb = 0, alloc_step_mb = 0, alloc_interval_ms = 50;
  long after_ms = 0;
  int exit_code = -1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> const char* {
      if (i + 1 >= argc) {
        fprintf(stderr, "herd_test_child: %s needs a value\n", a.c_str());
        exit(64);
      }
      return argv[++i];
    };
    if (a == "--print") {
      print = next();
    } else if (a == "--write-pidfile") {
      pidfile = next();
    } else if (a == "--ignore-sigterm") {
      ignore_term = true;
    } else if (a == "--fork-children") {
      fork_children = atol(next());
    } else if (a == "--alloc-mb") {
      alloc_mb = atol(next());
    } else if (a == "--alloc-step-mb") {
      alloc_step_mb = atol(next());
    } else if (a == "--alloc-interval-ms") {
      alloc_interval_ms = atol(next());
    } else if (a == "--exit") {
      exit_code = atoi(next());
    } else if (a == "--after-ms") {
      after_ms = atol(next());
    } else {
      fprintf(stderr, "herd_test_child: unknown flag %s\n", a.c_str());
      return 64;
    }
  }
  if (!pidfile.empty()) {
    std::string tmp = pidfile + ".tmp";
    FILE* f = fopen(tmp.c_str(), "w");
    if (f == nullptr) return 65;
    fprintf(f, "%d\n", getpid());
    fclose(f);
    if (rename(tmp.c_str(), pidfile.c_str()) != 0) return 65;
  }
  if (!print.empty()) {
    printf("%s\n", print.c_str());
    fflush(stdout);
    fprintf(stderr, "err:%s\n", print.c_str());
  }
  if (ignore_term) signal(SIGTERM, SIG_IGN);
  for (long i = 0; i < fork_children; ++i) {
    pid_t pid = fork();
    if (pid == 0) {
      // Children keep the parent's SIGTERM disposition and sleep until killed.
      for (;;) pause();
    }
  }
  std::vector<char*> keep;
  if (alloc_mb > 0 || alloc_step_mb > 0) {
    Touch(&keep, alloc_mb);
    for (;;) {
      SleepMs(alloc_interval_ms);
      Touch(&keep, alloc_step_mb);
    }
  }
  if (exit_code >= 0) {
    SleepMs(after_ms);
    return exit_code;
  }
  for (;;) pause();
}
