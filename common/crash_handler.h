// Last words: an uncaught exception or a fatal signal leaves its reason in the log.
//
// A daemon's stderr is /dev/null, so without this an agentd that died of an uncaught
// exception (nlohmann's out_of_range on a number too large for a double was one) left
// nothing behind but a missing process. InstallCrashHandlers() sets
//   - a std::terminate handler that logs the exception's type and message through the
//     "crash" logger (every sink: the log file and stderr), flushes, and aborts;
//   - handlers for SIGSEGV, SIGBUS, SIGFPE, SIGILL and SIGABRT that write one line and a
//     backtrace to the log file and stderr with write(2) only (async-signal-safe: no
//     allocation, no locks), then put back the handler that was there before (the default,
//     or a sanitizer's, which then prints its own report) and raise the signal again, so
//     the process still dies of it with the same status and core dump.
// Call it once in main(), after InitLogging() (which opens the file the signal handlers
// write to; a later InitLogging() with another file moves them along).
#pragma once

#include "absl/strings/string_view.h"

namespace herd {

// `binary` names the process in the crash line ("agentd", "controlplane"...).
void InstallCrashHandlers(absl::string_view binary);

namespace internal {
// Where the signal handlers write besides stderr (-1: stderr only). Set by InitLogging.
void SetCrashLogFd(int fd);
}  // namespace internal

}  // namespace herd
