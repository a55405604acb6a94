// Herd C++ SDK for native modules; see include/herd/module.h and docs/module-protocol.md.
#include "herd/module.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>
#include <sstream>
#include <stdexcept>
#include <thread>

namespace herd {
namespace {

using json = nlohmann::json;
using SteadyClock = std::chrono::steady_clock;

constexpr size_t kMaxLine = 1 << 20;  // lines longer than 1 MiB are dropped
constexpr int kWriteTimeoutMs = 5000;  // a channel that stays full this long is given up

// ---- signals: one process-wide self-pipe ----
std::atomic<uint64_t> g_signals{0};
int g_sig_pipe[2] = {-1, -1};
std::once_flag g_sig_pipe_once;
std::once_flag g_sig_handlers_once;

void OnSignal(int) {
  int saved = errno;
  g_signals.fetch_add(1, std::memory_order_relaxed);
  if (g_sig_pipe[1] >= 0) {
    char c = 's';
    ssize_t r = ::write(g_sig_pipe[1], &c, 1);
    (void)r;
  }
  errno = saved;
}

void EnsureSignalPipe() {
  std::call_once(g_sig_pipe_once, [] {
    if (::pipe2(g_sig_pipe, O_CLOEXEC | O_NONBLOCK) != 0) {
      g_sig_pipe[0] = g_sig_pipe[1] = -1;
      std::fprintf(stderr, "herd: pipe2: %s\n", std::strerror(errno));
    }
  });
}

void InstallSignalHandlers() {
  std::call_once(g_sig_handlers_once, [] {
    struct sigaction sa {};
    sa.sa_handler = OnSignal;
    sigemptyset(&sa.sa_mask);
    sa.sa_flags = SA_RESTART;
    ::sigaction(SIGTERM, &sa, nullptr);
    ::sigaction(SIGINT, &sa, nullptr);
  });
}

void DrainFd(int fd) {
  char buf[256];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
}

// ---- helpers ----
std::string ProcessName() {
  std::ifstream in("/proc/self/comm");
  std::string s;
  if (in && std::getline(in, s) && !s.empty()) return s;
  return "module";
}

std::string Trim(const std::string& s) {
  size_t b = s.find_first_not_of(" \t\r\n");
  if (b == std::string::npos) return "";
  size_t e = s.find_last_not_of(" \t\r\n");
  return s.substr(b, e - b + 1);
}

std::string Lower(std::string s) {
  for (auto& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

}  // namespace

// ---- metrics ----

const char* AggregationName(Aggregation agg) {
  switch (agg) {
    case Aggregation::kMean: return "mean";
    case Aggregation::kMin: return "min";
    case Aggregation::kMax: return "max";
    case Aggregation::kP50: return "p50";
    case Aggregation::kP95: return "p95";
    case Aggregation::kP99: return "p99";
  }
  return "p95";
}

static json Probe(double value, const char* type, const std::string& unit) {
  json v = std::isfinite(value) ? json(value) : json(0);
  return json{{"value", v}, {"type", type}, {"unit", unit}};
}

json Gauge::ToJson() const { return Probe(Value(), "gauge", unit()); }

json Counter::ToJson() const {
  return json{{"value", Value()}, {"type", "counter"}, {"unit", unit()}};
}

Meter::Meter(std::string name, std::string unit, Clock::time_point created)
    : Metric(std::move(name), std::move(unit)), created_(created) {}

int64_t Meter::SecondOf(Clock::time_point t) const {
  if (t < created_) return 0;
  return std::chrono::duration_cast<std::chrono::seconds>(t - created_).count();
}

void Meter::MarkAt(int64_t n, Clock::time_point t) {
  int64_t sec = SecondOf(t);
  std::lock_guard<std::mutex> lock(mu_);
  Bucket& b = buckets_[sec % kWindowSeconds];
  if (b.second != sec) {
    b.second = sec;
    b.count = 0;
  }
  b.count += n;
}

double Meter::RateAt(Clock::time_point t) const {
  int64_t now = SecondOf(t);
  int64_t sum = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    for (const Bucket& b : buckets_) {
      if (b.second >= 0 && b.second <= now && now - b.second < kWindowSeconds) sum += b.count;
    }
  }
  double age = t > created_ ? std::chrono::duration<double>(t - created_).count() : 0.0;
  double span = std::clamp(age, 1.0, static_cast<double>(kWindowSeconds));
  return static_cast<double>(sum) / span;
}

json Meter::ToJson() const {
  double r = std::round(Rate() * 1000.0) / 1000.0;
  return Probe(r, "meter", unit());
}

void Histogram::ObserveAt(double v, Clock::time_point t) {
  if (!std::isfinite(v)) return;
  std::lock_guard<std::mutex> lock(mu_);
  samples_.emplace_back(t, v);
  while (samples_.size() > kMaxSamples) samples_.pop_front();
}

size_t Histogram::Count() const {
  auto now = Clock::now();
  std::lock_guard<std::mutex> lock(mu_);
  while (!samples_.empty() && now - samples_.front().first > kWindow) samples_.pop_front();
  return samples_.size();
}

double Histogram::AggregateAt(Aggregation agg, Clock::time_point t) const {
  std::vector<double> v;
  {
    std::lock_guard<std::mutex> lock(mu_);
    while (!samples_.empty() && t - samples_.front().first > kWindow) samples_.pop_front();
    v.reserve(samples_.size());
    for (const auto& s : samples_) v.push_back(s.second);
  }
  if (v.empty()) return 0;
  auto percentile = [&v](double p) {  // nearest rank
    std::sort(v.begin(), v.end());
    size_t rank = static_cast<size_t>(std::ceil(p * static_cast<double>(v.size())));
    rank = std::clamp<size_t>(rank, 1, v.size());
    return v[rank - 1];
  };
  switch (agg) {
    case Aggregation::kMean: {
      double sum = 0;
      for (double x : v) sum += x;
      return sum / static_cast<double>(v.size());
    }
    case Aggregation::kMin: return *std::min_element(v.begin(), v.end());
    case Aggregation::kMax: return *std::max_element(v.begin(), v.end());
    case Aggregation::kP50: return percentile(0.50);
    case Aggregation::kP95: return percentile(0.95);
    case Aggregation::kP99: return percentile(0.99);
  }
  return 0;
}

json Histogram::ToJson() const {
  json j = Probe(Value(), "histogram", unit());
  j["agg_type"] = AggregationName(agg_);
  return j;
}

void TextProbe::Set(std::string v) {
  std::lock_guard<std::mutex> lock(mu_);
  value_ = std::move(v);
}

std::string TextProbe::Value() const {
  std::lock_guard<std::mutex> lock(mu_);
  return value_;
}

json TextProbe::ToJson() const {
  return json{{"value", Value()}, {"type", "text"}, {"unit", unit()}};
}

// ---- the channel: owns the fd, serializes writes, gives up quietly when the agent is gone ----

namespace {

class Channel {
 public:
  explicit Channel(int fd) : fd_(fd) {
    if (fd_ < 0) return;
    if (::fcntl(fd_, F_GETFD) < 0) {
      fd_ = -1;
      return;
    }
    ::fcntl(fd_, F_SETFD, FD_CLOEXEC);
    int fl = ::fcntl(fd_, F_GETFL);
    if (fl >= 0) ::fcntl(fd_, F_SETFL, fl | O_NONBLOCK);
    open_.store(true);
  }
  ~Channel() { Close(); }

  int fd() const { return fd_; }
  bool open() const { return open_.load(); }

  // Sends one line (a newline is appended). false when nothing could be sent.
  bool SendLine(const std::string& line) {
    if (!open_.load()) return false;
    std::lock_guard<std::mutex> lock(write_mu_);
    if (!open_.load() || fd_ < 0) return false;
    std::string buf = line;
    buf.push_back('\n');
    size_t off = 0;
    auto deadline = SteadyClock::now() + std::chrono::milliseconds(kWriteTimeoutMs);
    while (off < buf.size()) {
      ssize_t n;
      if (use_send_) {
        n = ::send(fd_, buf.data() + off, buf.size() - off, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno == ENOTSOCK) {
          // Not a socket (a pipe, a file): plain write(2), with SIGPIPE ignored.
          use_send_ = false;
          struct sigaction old {};
          if (::sigaction(SIGPIPE, nullptr, &old) == 0 && old.sa_handler == SIG_DFL) {
            ::signal(SIGPIPE, SIG_IGN);
          }
          continue;
        }
      } else {
        n = ::write(fd_, buf.data() + off, buf.size() - off);
      }
      if (n > 0) {
        off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
        auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                                          SteadyClock::now());
        if (left.count() > 0) {
          pollfd p{fd_, POLLOUT, 0};
          ::poll(&p, 1, static_cast<int>(left.count()));
          continue;
        }
        if (off == 0) return false;  // full for too long: drop this message, keep framing
      }
      // EPIPE, ECONNRESET, a stuck half-written line...: the agent is gone.
      open_.store(false);
      return false;
    }
    return true;
  }

  void MarkClosed() { open_.store(false); }

  void Close() {
    std::lock_guard<std::mutex> lock(write_mu_);
    open_.store(false);
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

 private:
  int fd_;
  std::atomic<bool> open_{false};
  std::mutex write_mu_;
  bool use_send_ = true;
};

}  // namespace

// ---- Reply ----

struct Reply::State {
  std::shared_ptr<Channel> channel;
  std::string action_name;
  std::atomic<bool> replied{false};
};

void Reply::operator()(json value) const {
  if (!state_ || state_->replied.exchange(true)) return;
  json msg = {{"type", "axm:reply"},
              {"data", {{"action_name", state_->action_name}, {"return", std::move(value)}}}};
  if (state_->channel) state_->channel->SendLine(msg.dump(-1, ' ', false, json::error_handler_t::replace));
}

bool Reply::replied() const { return state_ && state_->replied.load(); }

const std::string& Reply::action_name() const {
  static const std::string kEmpty;
  return state_ ? state_->action_name : kEmpty;
}

// ---- Module ----

struct Module::Impl {
  ModuleOptions options;
  std::string name;
  json config = json::object();
  std::shared_ptr<Channel> channel;

  std::mutex metrics_mu;
  std::map<std::string, std::unique_ptr<Metric>> metrics;  // ordered: stable output

  std::mutex actions_mu;
  std::map<std::string, std::shared_ptr<ActionHandler>> actions;

  uint64_t signal_base = 0;
  std::atomic<bool> shutdown{false};

  int wake[2] = {-1, -1};
  std::atomic<bool> stopping{false};
  std::thread thread;
  std::mutex stop_mu;

  // Reader state (SDK thread only).
  std::string inbuf;
  bool discarding = false;  // inside a line longer than kMaxLine
  bool reading = false;
};

std::unique_ptr<Module> Module::Init(ModuleOptions options) {
  return std::make_unique<Module>(std::move(options));
}

Module::Module(ModuleOptions options) : impl_(std::make_unique<Impl>()) {
  Impl& m = *impl_;
  m.options = std::move(options);
  if (m.options.flush_interval.count() <= 0) m.options.flush_interval = std::chrono::milliseconds(1000);

  if (m.options.name) {
    m.name = *m.options.name;
  } else if (const char* n = std::getenv("HERD_MODULE_NAME"); n && *n) {
    m.name = n;
  } else {
    m.name = ProcessName();
  }

  std::optional<std::string> conf_text = m.options.config_json;
  if (!conf_text) {
    if (const char* c = std::getenv("HERD_MODULE_CONFIG")) conf_text = std::string(c);
  }
  if (conf_text && !Trim(*conf_text).empty()) {
    json parsed = json::parse(*conf_text, nullptr, /*allow_exceptions=*/false);
    if (parsed.is_object()) {
      m.config = std::move(parsed);
    } else {
      std::fprintf(stderr, "herd: %s: HERD_MODULE_CONFIG is not a JSON object, using {}\n",
                   m.name.c_str());
    }
  }

  // Description and version default to the module's package.json.
  if (m.options.description.empty() || m.options.version.empty()) {
    if (const char* dir = std::getenv("HERD_MODULE_DIR"); dir && *dir) {
      std::ifstream in(std::string(dir) + "/package.json");
      if (in) {
        std::stringstream ss;
        ss << in.rdbuf();
        json pkg = json::parse(ss.str(), nullptr, false, /*ignore_comments=*/true);
        if (pkg.is_object()) {
          if (m.options.description.empty() && pkg.contains("description") &&
              pkg["description"].is_string()) {
            m.options.description = pkg["description"].get<std::string>();
          }
          if (m.options.version.empty() && pkg.contains("version") && pkg["version"].is_string()) {
            m.options.version = pkg["version"].get<std::string>();
          }
        }
      }
    }
  }

  int fd = m.options.channel_fd;
  if (fd < 0) {
    if (const char* c = std::getenv("HERD_CHANNEL_FD"); c && *c) {
      int v = -1;
      auto [p, ec] = std::from_chars(c, c + std::strlen(c), v);
      if (ec == std::errc() && *p == '\0' && v >= 0) fd = v;
    }
  }
  m.channel = std::make_shared<Channel>(fd);
  m.reading = m.channel->open();

  EnsureSignalPipe();
  if (m.options.handle_signals) InstallSignalHandlers();
  m.signal_base = g_signals.load();

  json widget = {
      {"type", m.options.widget_type},
      {"theme", {"#1d3b53", "#0f2436", "white", "white"}},
      {"el", {{"probes", true}, {"actions", true}}},
      {"block",
       {{"actions", true},
        {"issues", true},
        {"cpu", true},
        {"mem", true},
        {"main_probes", m.options.main_probes}}},
  };
  Send("axm:option:configuration", {{"module_name", m.name},
                                    {"module_version", m.options.version},
                                    {"description", m.options.description},
                                    {"module_conf", m.config},
                                    {"widget", widget}});

  if (::pipe2(m.wake, O_CLOEXEC | O_NONBLOCK) != 0) {
    m.wake[0] = m.wake[1] = -1;
    std::fprintf(stderr, "herd: pipe2: %s\n", std::strerror(errno));
  }
  m.thread = std::thread([this] { Loop(); });
}

Module::~Module() {
  Stop();
  impl_->channel->Close();
  for (int& fd : impl_->wake) {
    if (fd >= 0) ::close(fd);
    fd = -1;
  }
}

const std::string& Module::name() const { return impl_->name; }
bool Module::has_channel() const { return impl_->channel->open(); }

void Module::Stop() {
  std::lock_guard<std::mutex> lock(impl_->stop_mu);
  if (!impl_->thread.joinable()) return;
  impl_->stopping.store(true);
  if (impl_->wake[1] >= 0) {
    char c = 'x';
    ssize_t r = ::write(impl_->wake[1], &c, 1);
    (void)r;
  }
  // Stop() from an action handler: the loop ends after it; the destructor joins.
  if (impl_->thread.get_id() != std::this_thread::get_id()) impl_->thread.join();
}

void Module::Send(const std::string& type, json data) {
  if (!impl_->channel->open()) return;
  json msg = {{"type", type}, {"data", std::move(data)}};
  impl_->channel->SendLine(msg.dump(-1, ' ', false, json::error_handler_t::replace));
}

// ---- config ----

const json& Module::config() const { return impl_->config; }

std::string Module::GetString(const std::string& key, const std::string& def) const {
  auto it = impl_->config.find(key);
  if (it == impl_->config.end()) return def;
  if (it->is_string()) return it->get<std::string>();
  if (it->is_number() || it->is_boolean()) return it->dump();
  return def;
}

int64_t Module::GetInt(const std::string& key, int64_t def) const {
  auto it = impl_->config.find(key);
  if (it == impl_->config.end()) return def;
  if (it->is_number_integer()) {
    if (it->is_number_unsigned() &&
        it->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      return def;
    }
    return it->get<int64_t>();
  }
  if (it->is_number_float()) {
    double d = it->get<double>();
    if (!std::isfinite(d) || d >= 9.2e18 || d <= -9.2e18) return def;
    return static_cast<int64_t>(d);
  }
  if (it->is_string()) {
    std::string s = Trim(it->get<std::string>());
    int64_t v = 0;
    auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (!s.empty() && ec == std::errc() && p == s.data() + s.size()) return v;
    return def;
  }
  return def;
}

double Module::GetDouble(const std::string& key, double def) const {
  auto it = impl_->config.find(key);
  if (it == impl_->config.end()) return def;
  if (it->is_number()) return it->get<double>();
  if (it->is_string()) {
    std::string s = Trim(it->get<std::string>());
    if (s.empty()) return def;
    char* end = nullptr;
    errno = 0;
    double v = std::strtod(s.c_str(), &end);
    if (end == s.c_str() + s.size() && errno == 0 && std::isfinite(v)) return v;
  }
  return def;
}

bool Module::GetBool(const std::string& key, bool def) const {
  auto it = impl_->config.find(key);
  if (it == impl_->config.end()) return def;
  if (it->is_boolean()) return it->get<bool>();
  if (it->is_number_integer()) return it->get<int64_t>() != 0;
  if (it->is_string()) {
    std::string s = Lower(Trim(it->get<std::string>()));
    if (s == "true" || s == "yes" || s == "on" || s == "1") return true;
    if (s == "false" || s == "no" || s == "off" || s == "0") return false;
  }
  return def;
}

// ---- metrics registry ----

template <typename T, typename... Args>
T& Module::GetOrCreate(const std::string& name, Args&&... args) {
  std::lock_guard<std::mutex> lock(impl_->metrics_mu);
  auto it = impl_->metrics.find(name);
  if (it != impl_->metrics.end()) {
    if (auto* t = dynamic_cast<T*>(it->second.get())) return *t;
    throw std::invalid_argument("herd: metric \"" + name + "\" exists with another type");
  }
  auto owned = std::make_unique<T>(name, std::forward<Args>(args)...);
  T& ref = *owned;
  impl_->metrics.emplace(name, std::move(owned));
  return ref;
}

Gauge& Module::gauge(const std::string& name, const std::string& unit) {
  return GetOrCreate<Gauge>(name, unit);
}
Counter& Module::counter(const std::string& name, const std::string& unit) {
  return GetOrCreate<Counter>(name, unit);
}
Meter& Module::meter(const std::string& name, const std::string& unit) {
  return GetOrCreate<Meter>(name, unit);
}
Histogram& Module::histogram(const std::string& name, const std::string& unit, Aggregation agg) {
  return GetOrCreate<Histogram>(name, unit, agg);
}
TextProbe& Module::text(const std::string& name, const std::string& unit) {
  return GetOrCreate<TextProbe>(name, unit);
}

void Module::Flush() {
  if (!impl_->channel->open()) return;
  json data = json::object();
  {
    std::lock_guard<std::mutex> lock(impl_->metrics_mu);
    for (const auto& [name, metric] : impl_->metrics) data[name] = metric->ToJson();
  }
  if (data.empty()) return;
  Send("axm:monitor", std::move(data));
}

// ---- actions, issues, events ----

void Module::Action(const std::string& name, ActionHandler handler) {
  {
    std::lock_guard<std::mutex> lock(impl_->actions_mu);
    impl_->actions[name] = std::make_shared<ActionHandler>(std::move(handler));
  }
  Send("axm:action", {{"action_name", name}, {"action_type", "custom"}, {"arity", 2}});
}

void Module::NotifyIssue(const std::string& message, const std::string& stack) {
  Send("process:exception", {{"message", message}, {"stack", stack}, {"name", "Error"}});
}

void Module::EmitEvent(const std::string& name, const json& data) {
  json d = json::object();
  if (data.is_object()) {
    d = data;
  } else if (!data.is_null()) {
    d["data"] = data;
  }
  d["__name"] = name;
  Send("human:event", std::move(d));
}

void Module::HandleLine(const std::string& line) {
  json msg = json::parse(line, nullptr, /*allow_exceptions=*/false);
  if (!msg.is_object()) return;
  auto mit = msg.find("msg");
  if (mit == msg.end() || !mit->is_string()) return;
  const std::string action = mit->get<std::string>();
  json opts = json::object();
  if (auto oit = msg.find("opts"); oit != msg.end() && !oit->is_null()) opts = *oit;

  auto state = std::make_shared<Reply::State>();
  state->channel = impl_->channel;
  state->action_name = action;
  Reply reply(state);

  std::shared_ptr<ActionHandler> handler;
  {
    std::lock_guard<std::mutex> lock(impl_->actions_mu);
    auto it = impl_->actions.find(action);
    if (it != impl_->actions.end()) handler = it->second;
  }
  if (!handler || !*handler) {
    reply(json{{"error", "unknown action " + action}});
    return;
  }
  bool failed = false;
  std::string error;
  try {
    (*handler)(opts, reply);
  } catch (const std::exception& e) {
    failed = true;
    error = e.what();
  } catch (...) {
    failed = true;
    error = "unknown exception";
  }
  if (failed) {
    reply(json{{"error", error}});
    NotifyIssue("action " + action + " failed: " + error);
  }
}

// ---- shutdown ----

bool Module::ShutdownRequested() const {
  return impl_->shutdown.load() || g_signals.load() > impl_->signal_base;
}

void Module::RequestShutdown() {
  impl_->shutdown.store(true);
  if (g_sig_pipe[1] >= 0) {
    char c = 'r';
    ssize_t r = ::write(g_sig_pipe[1], &c, 1);
    (void)r;
  }
}

bool Module::WaitForShutdown(std::chrono::milliseconds timeout) {
  auto deadline = SteadyClock::now() + timeout;
  for (;;) {
    if (ShutdownRequested()) return true;
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - SteadyClock::now());
    if (left.count() <= 0) return false;
    // Slices: another waiter may drain the shared pipe first.
    int slice = static_cast<int>(std::min<int64_t>(left.count(), 200));
    if (g_sig_pipe[0] >= 0) {
      pollfd p{g_sig_pipe[0], POLLIN, 0};
      if (::poll(&p, 1, slice) > 0) DrainFd(g_sig_pipe[0]);
    } else {
      std::this_thread::sleep_for(std::chrono::milliseconds(slice));
    }
  }
}

void Module::Run() {
  while (!WaitForShutdown(std::chrono::hours(1))) {
  }
  Stop();
  Flush();
}

// ---- the SDK thread ----

void Module::Loop() {
  Impl& m = *impl_;
  const auto interval = m.options.flush_interval;
  auto next_flush = SteadyClock::now() + interval;
  std::vector<char> buf(64 * 1024);
  while (!m.stopping.load()) {
    auto now = SteadyClock::now();
    if (now >= next_flush) {
      Flush();
      next_flush += interval;
      if (next_flush <= now) next_flush = now + interval;
      continue;
    }
    auto wait = std::chrono::duration_cast<std::chrono::milliseconds>(next_flush - now).count() + 1;
    pollfd fds[2];
    nfds_t n = 0;
    if (m.wake[0] >= 0) fds[n++] = {m.wake[0], POLLIN, 0};
    const bool reading = m.reading && m.channel->fd() >= 0;
    if (reading) fds[n++] = {m.channel->fd(), POLLIN, 0};
    int r = ::poll(fds, n, static_cast<int>(std::min<int64_t>(wait, 60'000)));
    if (r <= 0) continue;
    if (m.wake[0] >= 0 && (fds[0].revents & POLLIN)) DrainFd(m.wake[0]);
    if (!reading || fds[n - 1].revents == 0) continue;
    // Read what is there; frame by '\n'.
    for (;;) {
      ssize_t got = ::read(m.channel->fd(), buf.data(), buf.size());
      if (got < 0 && errno == EINTR) continue;
      if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) break;
      if (got <= 0) {  // EOF or error: the agent is gone; keep running without it
        m.reading = false;
        m.channel->MarkClosed();
        break;
      }
      size_t start = 0;
      for (size_t i = 0; i < static_cast<size_t>(got); ++i) {
        if (buf[i] != '\n') continue;
        if (m.discarding) {
          m.discarding = false;
        } else {
          m.inbuf.append(buf.data() + start, i - start);
          if (m.inbuf.size() <= kMaxLine) HandleLine(m.inbuf);
        }
        m.inbuf.clear();
        start = i + 1;
      }
      if (!m.discarding && start < static_cast<size_t>(got)) {
        m.inbuf.append(buf.data() + start, static_cast<size_t>(got) - start);
        if (m.inbuf.size() > kMaxLine) {
          m.inbuf.clear();
          m.inbuf.shrink_to_fit();
          m.discarding = true;
        }
      }
      if (m.stopping.load()) break;
    }
  }
}

}  // namespace herd
