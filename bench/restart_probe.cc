// restart_probe: appends "<start_ns> <exit_ns>\n" (CLOCK_MONOTONIC, taken on entering main
// and just before exiting) to $HERD_PROBE_FILE, then exits 0. Used by agentd_bench.
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static long long NowNs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main() {
  const long long start = NowNs();
  const char* path = getenv("HERD_PROBE_FILE");
  if (path == nullptr) return 2;
  int fd = open(path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) return 3;
  char line[64];
  int n = snprintf(line, sizeof line, "%lld %lld\n", start, NowNs());
  if (write(fd, line, static_cast<size_t>(n)) != n) return 4;
  close(fd);
  return 0;
}
