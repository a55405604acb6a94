#include "agent/loop/event_loop.h"

#include <errno.h>
#include <pthread.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace herd::agent {
namespace {

// Registrations for the loop's own fds use these reserved epoll data values.
constexpr uint64_t kWakeTag = ~uint64_t{0};
constexpr uint64_t kTimerTag = ~uint64_t{0} - 1;

uint64_t ThisThreadId() { return static_cast<uint64_t>(pthread_self()); }

}  // namespace

absl::StatusOr<std::unique_ptr<EventLoop>> EventLoop::Create(const Clock& clock) {
  int epfd = epoll_create1(EPOLL_CLOEXEC);
  if (epfd < 0) return absl::InternalError(absl::StrCat("epoll_create1: ", strerror(errno)));
  int wakefd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  int timerfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (wakefd < 0 || timerfd < 0) {
    close(epfd);
    return absl::InternalError(absl::StrCat("eventfd/timerfd: ", strerror(errno)));
  }
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kWakeTag;
  epoll_ctl(epfd, EPOLL_CTL_ADD, wakefd, &ev);
  ev.data.u64 = kTimerTag;
  epoll_ctl(epfd, EPOLL_CTL_ADD, timerfd, &ev);
  return std::unique_ptr<EventLoop>(new EventLoop(clock, epfd, wakefd, timerfd));
}

EventLoop::EventLoop(const Clock& clock, int epfd, int wakefd, int timerfd)
    : clock_(clock), epfd_(epfd), wakefd_(wakefd), timerfd_(timerfd) {}

EventLoop::~EventLoop() {
  close(epfd_);
  close(wakefd_);
  close(timerfd_);
}

absl::StatusOr<EventLoop::Handle> EventLoop::WatchFd(int fd, uint32_t events, FdCallback cb) {
  Handle h = next_handle_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = h;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, fd, &ev) != 0) {
    return absl::InternalError(absl::StrCat("epoll_ctl add fd ", fd, ": ", strerror(errno)));
  }
  fds_[h] = std::make_shared<FdWatch>(FdWatch{fd, std::move(cb)});
  return h;
}

void EventLoop::UnwatchFd(Handle h) {
  auto it = fds_.find(h);
  if (it == fds_.end()) return;
  epoll_ctl(epfd_, EPOLL_CTL_DEL, it->second->fd, nullptr);
  fds_.erase(it);
}

EventLoop::Handle EventLoop::RunAfter(absl::Duration delay, Task task) {
  Handle h = next_handle_++;
  absl::Time deadline = clock_.Monotonic() + std::max(delay, absl::ZeroDuration());
  auto qit = timer_queue_.emplace(deadline, h);
  timers_.emplace(h, std::make_pair(qit, std::move(task)));
  if (qit == timer_queue_.begin()) ArmTimerFd();
  return h;
}

void EventLoop::CancelTimer(Handle h) {
  auto it = timers_.find(h);
  if (it == timers_.end()) return;
  timer_queue_.erase(it->second.first);
  timers_.erase(it);
}

void EventLoop::ArmTimerFd() {
  itimerspec spec{};
  if (!timer_queue_.empty()) {
    absl::Duration left = timer_queue_.begin()->first - clock_.Monotonic();
    if (left < absl::Nanoseconds(1)) left = absl::Nanoseconds(1);
    spec.it_value = absl::ToTimespec(left);
  }
  timerfd_settime(timerfd_, 0, &spec, nullptr);
}

void EventLoop::FireTimers() {
  uint64_t expirations;
  while (read(timerfd_, &expirations, sizeof expirations) > 0) {
  }
  absl::Time now = clock_.Monotonic();
  // Collect due timers first: a task may add timers that are already due, which run on the
  // next turn rather than starving the loop.
  std::vector<Handle> due;
  for (auto it = timer_queue_.begin(); it != timer_queue_.end() && it->first <= now; ++it) {
    due.push_back(it->second);
  }
  for (Handle h : due) {
    auto it = timers_.find(h);
    if (it == timers_.end()) continue;  // cancelled by an earlier task of this batch
    Task task = std::move(it->second.second);
    timer_queue_.erase(it->second.first);
    timers_.erase(it);
    task();
  }
  ArmTimerFd();
}

void EventLoop::Post(Task task) {
  {
    absl::MutexLock l(&post_mu_);
    posted_.push_back(std::move(task));
  }
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wakefd_, &one, sizeof one);
}

void EventLoop::DrainPosted() {
  uint64_t v;
  while (read(wakefd_, &v, sizeof v) > 0) {
  }
  std::vector<Task> tasks;
  {
    absl::MutexLock l(&post_mu_);
    tasks.swap(posted_);
  }
  for (auto& t : tasks) t();
}

void EventLoop::Stop() {
  stop_ = true;
  uint64_t one = 1;
  [[maybe_unused]] ssize_t n = write(wakefd_, &one, sizeof one);
}

bool EventLoop::InLoopThread() const { return loop_thread_id_.load() == ThisThreadId(); }

void EventLoop::Run() {
  loop_thread_id_ = ThisThreadId();
  epoll_event events[64];
  while (!stop_) {
    int n = epoll_wait(epfd_, events, 64, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      Logger("loop")->critical("epoll_wait failed: {}", strerror(errno));
      break;
    }
    for (int i = 0; i < n && !stop_; ++i) {
      uint64_t tag = events[i].data.u64;
      if (tag == kWakeTag) {
        DrainPosted();
      } else if (tag == kTimerTag) {
        FireTimers();
      } else {
        auto it = fds_.find(tag);
        if (it == fds_.end()) continue;  // removed earlier in this batch
        std::shared_ptr<FdWatch> w = it->second;  // keeps the callback alive while it runs
        w->cb(events[i].events);
      }
    }
  }
  // Run what was posted before Stop so that no caller waits forever on a dropped task.
  DrainPosted();
  loop_thread_id_ = 0;
}

}  // namespace herd::agent
