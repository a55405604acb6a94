// Herd C++ SDK for native modules: the module side of docs/module-protocol.md.
//
// Two files (this header and src/module.cc), depending only on nlohmann/json, the C++20
// standard library and POSIX. A module looks like:
//
//   auto mod = herd::Module::Init({.main_probes = {"ticks"}});
//   auto& ticks = mod->counter("ticks");
//   mod->Action("echo", [](const nlohmann::json& params, herd::Reply reply) { reply(params); });
//   while (!mod->WaitForShutdown(std::chrono::seconds(1))) ticks.Inc();
//
// Threading: every public member is thread-safe. Module runs one background thread that
// sends all probes in one `axm:monitor` message every `flush_interval` and reads action
// triggers from the channel. Action handlers run ON THAT THREAD: keep them short; for long
// work keep the (copyable, thread-safe) Reply and call it later from any thread.
//
// Without a channel (HERD_CHANNEL_FD unset, e.g. the module is run by hand) everything works
// and nothing is sent. When the agent goes away (the channel closes) the module keeps
// running and sends become no-ops; SIGPIPE is never raised.
#ifndef HERD_MODULE_H_
#define HERD_MODULE_H_

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

namespace herd {

// Every member has a default, so designated initializers work: Init({.main_probes = {"x"}}).
struct ModuleOptions {
  // Widget shown by the dashboards (`axm:option:configuration`).
  std::string widget_type = "generic";
  std::vector<std::string> main_probes{};
  // Empty: taken from package.json in HERD_MODULE_DIR when there is one.
  std::string description{};
  std::string version{};
  // -1: HERD_CHANNEL_FD from the environment (absent: no channel). The Module owns the fd
  // (sets it non-blocking and close-on-exec, closes it in its destructor).
  int channel_fd = -1;
  std::chrono::milliseconds flush_interval{1000};
  // Set: used instead of HERD_MODULE_CONFIG / HERD_MODULE_NAME (handy in tests).
  std::optional<std::string> config_json{};
  std::optional<std::string> name{};
  // Install SIGTERM/SIGINT handlers so Run()/WaitForShutdown()/ShutdownRequested() see
  // them (the agent stops modules with SIGTERM). false: the default dispositions stay.
  bool handle_signals = true;
};

enum class Aggregation { kMean, kMin, kMax, kP50, kP95, kP99 };
const char* AggregationName(Aggregation agg);  // "mean", "min", ..., "p99"

// A probe: one entry of the `axm:monitor` message.
class Metric {
 public:
  virtual ~Metric() = default;
  Metric(const Metric&) = delete;
  Metric& operator=(const Metric&) = delete;
  const std::string& name() const { return name_; }
  const std::string& unit() const { return unit_; }
  // {"value": v, "type": "...", "unit": "..."} (+ "agg_type" for histograms).
  virtual nlohmann::json ToJson() const = 0;

 protected:
  Metric(std::string name, std::string unit) : name_(std::move(name)), unit_(std::move(unit)) {}

 private:
  std::string name_;
  std::string unit_;
};

// A value the module sets.
class Gauge : public Metric {
 public:
  Gauge(std::string name, std::string unit) : Metric(std::move(name), std::move(unit)) {}
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  double Value() const { return value_.load(std::memory_order_relaxed); }
  nlohmann::json ToJson() const override;

 private:
  std::atomic<double> value_{0};
};

class Counter : public Metric {
 public:
  Counter(std::string name, std::string unit) : Metric(std::move(name), std::move(unit)) {}
  void Inc(int64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  void Dec(int64_t n = 1) { value_.fetch_sub(n, std::memory_order_relaxed); }
  void Reset() { value_.store(0, std::memory_order_relaxed); }
  int64_t Value() const { return value_.load(std::memory_order_relaxed); }
  nlohmann::json ToJson() const override;

 private:
  std::atomic<int64_t> value_{0};
};

// Events per second over a sliding 60 s window (counted in 1-second buckets). Until the
// meter is 60 s old the rate is over its age (at least 1 s).
class Meter : public Metric {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr int kWindowSeconds = 60;
  Meter(std::string name, std::string unit, Clock::time_point created = Clock::now());
  void Mark(int64_t n = 1) { MarkAt(n, Clock::now()); }
  double Rate() const { return RateAt(Clock::now()); }
  // Explicit time, for tests and replays.
  void MarkAt(int64_t n, Clock::time_point t);
  double RateAt(Clock::time_point t) const;
  nlohmann::json ToJson() const override;

 private:
  int64_t SecondOf(Clock::time_point t) const;
  struct Bucket {
    int64_t second = -1;
    int64_t count = 0;
  };
  const Clock::time_point created_;
  mutable std::mutex mu_;
  Bucket buckets_[kWindowSeconds];
};

// Samples of the last 60 s (at most kMaxSamples, the newest kept); the reported value is one
// aggregate of them (0 when there is none).
class Histogram : public Metric {
 public:
  using Clock = std::chrono::steady_clock;
  static constexpr size_t kMaxSamples = 1024;
  static constexpr std::chrono::seconds kWindow{60};
  Histogram(std::string name, std::string unit, Aggregation agg)
      : Metric(std::move(name), std::move(unit)), agg_(agg) {}
  void Observe(double v) { ObserveAt(v, Clock::now()); }
  double Value() const { return Aggregate(agg_); }
  double Aggregate(Aggregation agg) const { return AggregateAt(agg, Clock::now()); }
  size_t Count() const;
  Aggregation aggregation() const { return agg_; }
  // Explicit time, for tests and replays.
  void ObserveAt(double v, Clock::time_point t);
  double AggregateAt(Aggregation agg, Clock::time_point t) const;
  nlohmann::json ToJson() const override;

 private:
  const Aggregation agg_;
  mutable std::mutex mu_;
  mutable std::deque<std::pair<Clock::time_point, double>> samples_;
};

// A string-valued probe.
class TextProbe : public Metric {
 public:
  TextProbe(std::string name, std::string unit) : Metric(std::move(name), std::move(unit)) {}
  void Set(std::string v);
  std::string Value() const;
  nlohmann::json ToJson() const override;

 private:
  mutable std::mutex mu_;
  std::string value_;
};

// Answers one action trigger: reply(value) sends {"type":"axm:reply","data":{"action_name":
// ..., "return": value}}. Copyable, thread-safe; only the first call (across all copies) sends.
// Safe to call after the Module is gone (it then sends nothing).
class Reply {
 public:
  Reply() = default;  // an empty Reply: calling it does nothing
  void operator()(nlohmann::json value) const;
  bool replied() const;
  const std::string& action_name() const;

 private:
  friend class Module;
  struct State;
  explicit Reply(std::shared_ptr<State> state) : state_(std::move(state)) {}
  std::shared_ptr<State> state_;
};

using ActionHandler = std::function<void(const nlohmann::json& params, Reply reply)>;

class Module {
 public:
  // Reads the environment, announces the module (`axm:option:configuration`) and starts the
  // background thread. Never throws on a bad environment: a config that is not a JSON object
  // becomes {} (with a message on stderr).
  static std::unique_ptr<Module> Init(ModuleOptions options = {});
  explicit Module(ModuleOptions options);
  ~Module();  // stops the thread, closes the channel
  Module(const Module&) = delete;
  Module& operator=(const Module&) = delete;

  const std::string& name() const;
  bool has_channel() const;  // false when standalone or once the agent is gone

  // The effective config (HERD_MODULE_CONFIG), always an object. The getters are tolerant:
  // a missing key or a value of the wrong type gives `def`; strings are parsed ("5" for
  // GetInt, "true"/"yes"/"on"/"1" for GetBool); GetInt truncates finite doubles; GetString
  // renders numbers and booleans as JSON text.
  const nlohmann::json& config() const;
  std::string GetString(const std::string& key, const std::string& def = "") const;
  int64_t GetInt(const std::string& key, int64_t def = 0) const;
  double GetDouble(const std::string& key, double def = 0) const;
  bool GetBool(const std::string& key, bool def = false) const;

  // Metrics: created on first use, the same name returns the same object (which lives as
  // long as the Module). Asking for an existing name with another kind throws
  // std::invalid_argument. The unit of a later call is ignored.
  Gauge& gauge(const std::string& name, const std::string& unit = "");
  Counter& counter(const std::string& name, const std::string& unit = "");
  Meter& meter(const std::string& name, const std::string& unit = "req/s");
  Histogram& histogram(const std::string& name, const std::string& unit = "",
                       Aggregation agg = Aggregation::kP95);
  TextProbe& text(const std::string& name, const std::string& unit = "");
  void SetText(const std::string& name, std::string value) { text(name).Set(std::move(value)); }

  // Registers (or replaces) an action. A trigger {"msg": name, "opts": {...}} calls the
  // handler on the SDK thread with opts (an object, {} when absent). A handler that throws
  // gets {"error": what()} replied (unless it already replied) and an issue reported.
  // Triggers of unknown actions are answered {"error": "unknown action <name>"}.
  void Action(const std::string& name, ActionHandler handler);

  // process:exception {message, stack, name: "Error"}.
  void NotifyIssue(const std::string& message, const std::string& stack = "");
  // human:event {__name: name, ...fields of data} (data that is not an object goes to "data").
  void EmitEvent(const std::string& name, const nlohmann::json& data = nlohmann::json::object());

  // Sends every probe now (one axm:monitor message; nothing when there are no probes).
  void Flush();

  // Shutdown: SIGTERM/SIGINT (with handle_signals) or RequestShutdown().
  bool ShutdownRequested() const;
  void RequestShutdown();
  // true once shutdown is requested, false when `timeout` passes first.
  bool WaitForShutdown(std::chrono::milliseconds timeout);
  // Blocks until shutdown is requested, sends the probes a last time, stops the thread.
  void Run();
  // Stops the background thread (idempotent); sends still work from the caller's thread.
  void Stop();

  // Sends {"type": type, "data": data} as is (for messages the helpers do not cover).
  void Send(const std::string& type, nlohmann::json data);

 private:
  struct Impl;
  template <typename T, typename... Args>
  T& GetOrCreate(const std::string& name, Args&&... args);
  void HandleLine(const std::string& line);
  void Loop();
  std::unique_ptr<Impl> impl_;
};

}  // namespace herd

#endif  // HERD_MODULE_H_
