// Preloaded beside libfaketime by the clock-step test (clock_step_test.cc), first.
//
// libfaketime moves what a process reads from CLOCK_REALTIME, not the kernel's clock. absl
// 20220623 (Debian 12) waits with a timeout (Mutex::AwaitWithTimeout, CondVar::WaitWithTimeout)
// through syscall(SYS_futex, FUTEX_WAIT_BITSET | FUTEX_CLOCK_REALTIME, ...) with an absolute
// deadline computed from absl::Now(), i.e. the faked time, which the kernel then compares with
// its own: after a faked +1 h step every such wait would last an hour longer (the control
// plane's sweeper would stop), after −1 h it would return at once. This shim moves those
// deadlines back onto the kernel's clock by the faked offset, so that waits behave as they
// would after a real step, and the test sees what the code does rather than what the
// injector does. Everything else goes to libc's syscall() unchanged.
#include <dlfcn.h>
#include <linux/futex.h>
#include <stdarg.h>
#include <sys/syscall.h>
#include <time.h>

#include <cstdint>

using SyscallFn = long (*)(long, ...);

extern "C" long syscall(long number, ...) {
  static SyscallFn real = nullptr;
  if (real == nullptr) real = reinterpret_cast<SyscallFn>(dlsym(RTLD_NEXT, "syscall"));
  va_list ap;
  va_start(ap, number);
  long a1 = va_arg(ap, long), a2 = va_arg(ap, long), a3 = va_arg(ap, long);
  long a4 = va_arg(ap, long), a5 = va_arg(ap, long), a6 = va_arg(ap, long);
  va_end(ap);
  const int op = static_cast<int>(a2);
  if (number == SYS_futex && a4 != 0 && (op & FUTEX_CLOCK_REALTIME) != 0 &&
      (op & FUTEX_CMD_MASK) == FUTEX_WAIT_BITSET) {
    struct timespec faked, kernel;
    clock_gettime(CLOCK_REALTIME, &faked);  // libfaketime's
    // the kernel's
    real(SYS_clock_gettime, static_cast<long>(CLOCK_REALTIME), reinterpret_cast<long>(&kernel));
    const auto* deadline = reinterpret_cast<const struct timespec*>(a4);
    int64_t ns = int64_t{deadline->tv_sec} * 1000000000 + deadline->tv_nsec -
                 (int64_t{faked.tv_sec} - kernel.tv_sec) * 1000000000 -
                 (int64_t{faked.tv_nsec} - kernel.tv_nsec);
    if (ns < 0) ns = 0;
    struct timespec moved = {static_cast<time_t>(ns / 1000000000),
                             static_cast<long>(ns % 1000000000)};
    return real(number, a1, a2, a3, reinterpret_cast<long>(&moved), a5, a6);
  }
  return real(number, a1, a2, a3, a4, a5, a6);
}
