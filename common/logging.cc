#include "common/logging.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include <mutex>
#include <vector>

#include "absl/strings/str_cat.h"
#include "absl/strings/string_view.h"
#include "common/crash_handler.h"
#include "spdlog/sinks/base_sink.h"
#include "spdlog/sinks/stdout_sinks.h"

namespace herd {
namespace {

std::mutex g_mu;
std::vector<spdlog::sink_ptr>& Sinks() {
  static auto* sinks = new std::vector<spdlog::sink_ptr>{
      std::make_shared<spdlog::sinks::stderr_sink_mt>()};
  return *sinks;
}
// Appends formatted lines to a descriptor opened once (with O_NOFOLLOW), rather than to a
// path spdlog would open again by name, following whatever link was put there meanwhile.
// write(2) of each line to an O_APPEND descriptor: nothing buffered, so nothing to flush.
class AppendFdSink final : public spdlog::sinks::base_sink<std::mutex> {
 public:
  explicit AppendFdSink(int fd) : fd_(fd) {}
  ~AppendFdSink() override { close(fd_); }

 protected:
  void sink_it_(const spdlog::details::log_msg& msg) override {
    spdlog::memory_buf_t line;
    formatter_->format(msg, line);
    const char* p = line.data();
    size_t n = line.size();
    while (n > 0) {
      const ssize_t w = write(fd_, p, n);
      if (w < 0 && errno == EINTR) continue;
      if (w <= 0) return;  // a full disk: the line is lost, the program goes on
      p += w;
      n -= static_cast<size_t>(w);
    }
  }
  void flush_() override {}

 private:
  const int fd_;
};

spdlog::level::level_enum g_level = spdlog::level::info;
constexpr char kPattern[] = "%Y-%m-%dT%H:%M:%S.%e %L [%n] %v";

}  // namespace

absl::Status InitLogging(const LogOptions& options) {
  auto level = spdlog::level::from_str(options.level);
  if (level == spdlog::level::off && options.level != "off") {
    return absl::InvalidArgumentError(absl::StrCat(
        "unknown log level \"", options.level,
        "\": use one of trace, debug, info, warn, error, critical, off"));
  }
  std::vector<spdlog::sink_ptr> sinks;
  if (options.to_stderr) sinks.push_back(std::make_shared<spdlog::sinks::stderr_sink_mt>());
  if (!options.file.empty()) {
    // O_NOFOLLOW: a link planted where the log goes would have a root agent append to
    // whatever it points at. The descriptor is kept for the crash handler's last words.
    int fd = open(options.file.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOFOLLOW,
                  0640);
    if (fd < 0) {
      return absl::UnavailableError(absl::StrCat(
          "cannot open log file ", options.file, ": ",
          errno == ELOOP ? "it is a symbolic link (remove it: logs are not written through links)"
                         : strerror(errno)));
    }
    const int crash_fd = fcntl(fd, F_DUPFD_CLOEXEC, 3);
    if (crash_fd >= 0) internal::SetCrashLogFd(crash_fd);
    sinks.push_back(std::make_shared<AppendFdSink>(fd));
  }
  std::lock_guard<std::mutex> l(g_mu);
  Sinks() = sinks;
  g_level = level;
  spdlog::apply_all([&](const std::shared_ptr<spdlog::logger>& logger) {
    logger->sinks() = sinks;
    logger->set_level(level);
    logger->set_pattern(kPattern);
  });
  // No periodic flusher: AppendFdSink writes each line as it comes, and stderr is unbuffered.
  return absl::OkStatus();
}

std::shared_ptr<spdlog::logger> Logger(absl::string_view component) {
  std::lock_guard<std::mutex> l(g_mu);
  std::string name(component);
  if (auto existing = spdlog::get(name)) return existing;
  auto logger = std::make_shared<spdlog::logger>(name, Sinks().begin(), Sinks().end());
  logger->set_level(g_level);
  logger->set_pattern(kPattern);
  logger->flush_on(spdlog::level::warn);
  spdlog::register_logger(logger);
  return logger;
}

}  // namespace herd
