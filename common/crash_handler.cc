#include "common/crash_handler.h"

#include <cxxabi.h>
#include <execinfo.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <atomic>
#include <cstdlib>
#include <exception>
#include <string>
#include <typeinfo>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace herd {
namespace {

std::atomic<int> g_log_fd{-1};
char g_binary[64] = "herd";
// The local time's offset from UTC when the handlers were installed: localtime_r is not
// async-signal-safe, so the signal path adds this to the clock instead.
long g_utc_offset_s = 0;
constexpr int kSignals[] = {SIGSEGV, SIGBUS, SIGFPE, SIGILL, SIGABRT};
struct sigaction g_previous[sizeof kSignals / sizeof kSignals[0]];
std::atomic<bool> g_in_signal{false};

// A fixed buffer that only appends: what a signal handler may use to build a line.
class LineBuffer {
 public:
  void Add(const char* s) {
    while (*s && len_ < sizeof buf_) buf_[len_++] = *s++;
  }
  void AddNumber(unsigned long v, int width = 0, int base = 10) {
    char digits[24];
    int n = 0;
    do {
      digits[n++] = "0123456789abcdef"[v % base];
      v /= base;
    } while (v > 0 && n < 24);
    while (n < width && n < 24) digits[n++] = '0';
    while (n > 0 && len_ < sizeof buf_) buf_[len_++] = digits[--n];
  }
  const char* data() const { return buf_; }
  size_t size() const { return len_; }

 private:
  char buf_[512];
  size_t len_ = 0;
};

void WriteAll(int fd, const char* p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return;
    p += w;
    n -= static_cast<size_t>(w);
  }
}

// "2026-12-05T09:41:07.123" in local time, the log's pattern, by arithmetic only (days to
// a civil date: Howard Hinnant's algorithm).
void AddTimestamp(LineBuffer& line) {
  timespec ts{};
  clock_gettime(CLOCK_REALTIME, &ts);
  long long secs = static_cast<long long>(ts.tv_sec) + g_utc_offset_s;
  long long days = secs / 86400, rem = secs % 86400;
  if (rem < 0) {
    rem += 86400;
    --days;
  }
  days += 719468;
  const long long era = (days >= 0 ? days : days - 146096) / 146097;
  const unsigned doe = static_cast<unsigned>(days - era * 146097);
  const unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const unsigned mp = (5 * doy + 2) / 153;
  const unsigned day = doy - (153 * mp + 2) / 5 + 1;
  const unsigned month = mp < 10 ? mp + 3 : mp - 9;
  const long long year = static_cast<long long>(yoe) + era * 400 + (month <= 2);
  line.AddNumber(static_cast<unsigned long>(year), 4);
  line.Add("-");
  line.AddNumber(month, 2);
  line.Add("-");
  line.AddNumber(day, 2);
  line.Add("T");
  line.AddNumber(static_cast<unsigned long>(rem / 3600), 2);
  line.Add(":");
  line.AddNumber(static_cast<unsigned long>(rem % 3600 / 60), 2);
  line.Add(":");
  line.AddNumber(static_cast<unsigned long>(rem % 60), 2);
  line.Add(".");
  line.AddNumber(static_cast<unsigned long>(ts.tv_nsec / 1000000), 3);
}

const char* SignalName(int sig) {
  switch (sig) {
    case SIGSEGV: return "SIGSEGV";
    case SIGBUS: return "SIGBUS";
    case SIGFPE: return "SIGFPE";
    case SIGILL: return "SIGILL";
    case SIGABRT: return "SIGABRT";
    default: return "signal";
  }
}

void OnFatalSignal(int sig, siginfo_t* info, void*) {
  // A fault inside this handler (or a second thread crashing) goes straight to the previous
  // handler below rather than around again.
  if (!g_in_signal.exchange(true)) {
    LineBuffer line;
    AddTimestamp(line);
    line.Add(" C [crash] event=fatal_signal binary=");
    line.Add(g_binary);
    line.Add(" signal=");
    line.Add(SignalName(sig));
    line.Add(" pid=");
    line.AddNumber(static_cast<unsigned long>(getpid()));
    const bool sent = info != nullptr && (info->si_code == SI_USER || info->si_code == SI_TKILL) &&
                      info->si_pid != getpid();
    if (sent) {
      line.Add(" sender_pid=");
      line.AddNumber(static_cast<unsigned long>(info->si_pid));
    } else if (sig != SIGABRT && info != nullptr) {
      line.Add(" address=0x");
      line.AddNumber(reinterpret_cast<unsigned long>(info->si_addr), 0, 16);
    }
    line.Add(sent ? " reason=\"sent by another process\"\n"
             : sig == SIGABRT ? " reason=\"aborted (see the line before for why)\"\n"
                              : " reason=\"a bug in this program: please report it with this "
                                "log\"\n");
    void* frames[64];
    const int n = backtrace(frames, 64);
    const int fd = g_log_fd.load();
    for (int out : {fd, STDERR_FILENO}) {
      if (out < 0) continue;
      WriteAll(out, line.data(), line.size());
      backtrace_symbols_fd(frames, n, out);
      fsync(out);
    }
  }
  for (size_t i = 0; i < sizeof kSignals / sizeof kSignals[0]; ++i) {
    if (kSignals[i] == sig) sigaction(sig, &g_previous[i], nullptr);
  }
  raise(sig);
}

void OnTerminate() {
  std::string reason = "std::terminate called without an exception in flight";
  if (std::exception_ptr e = std::current_exception()) {
    try {
      std::rethrow_exception(e);
    } catch (const std::exception& ex) {
      int status = 0;
      const char* mangled = typeid(ex).name();
      char* demangled = abi::__cxa_demangle(mangled, nullptr, nullptr, &status);
      reason = absl::StrCat("uncaught exception ", demangled ? demangled : mangled, ": ",
                            ex.what());
      free(demangled);
    } catch (...) {
      reason = "uncaught exception of a type not derived from std::exception";
    }
  }
  auto log = Logger("crash");
  log->critical("event=uncaught_exception binary={} reason=\"{}\"", g_binary, reason);
  spdlog::apply_all([](const std::shared_ptr<spdlog::logger>& l) { l->flush(); });
  std::abort();
}

}  // namespace

namespace internal {
void SetCrashLogFd(int fd) {
  int old = g_log_fd.exchange(fd);
  if (old >= 0 && old != fd) close(old);
}
}  // namespace internal

void InstallCrashHandlers(absl::string_view binary) {
  const size_t n = std::min(binary.size(), sizeof g_binary - 1);
  memcpy(g_binary, binary.data(), n);
  g_binary[n] = '\0';
  time_t now = time(nullptr);
  struct tm local {};
  if (localtime_r(&now, &local) != nullptr) g_utc_offset_s = local.tm_gmtoff;
  // backtrace() loads libgcc on its first call, which allocates: do that here, not in a
  // signal handler.
  void* warm[1];
  backtrace(warm, 1);
  // A stack overflow faults on the stack itself: the handler needs one of its own (unless a
  // sanitizer has set one up already).
  stack_t current{};
  if (sigaltstack(nullptr, &current) == 0 && (current.ss_flags & SS_DISABLE)) {
    static char alt_stack[64 * 1024];
    stack_t ss{};
    ss.ss_sp = alt_stack;
    ss.ss_size = sizeof alt_stack;
    sigaltstack(&ss, nullptr);
  }
  std::set_terminate(OnTerminate);
  for (size_t i = 0; i < sizeof kSignals / sizeof kSignals[0]; ++i) {
    struct sigaction sa {};
    sa.sa_sigaction = OnFatalSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigaction(kSignals[i], &sa, &g_previous[i]);
  }
}

}  // namespace herd
