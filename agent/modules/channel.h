// The module channel's parsing side (docs/module-protocol.md): a bounded line framer and
// the state a module reports through PM2's axm messages. No I/O here: ModuleManager reads
// the socket and feeds bytes in, so this is unit-tested on its own.
//
// Nothing a module sends can hurt the agent: lines are bounded (an oversized line is dropped
// whole, up to its newline), invalid JSON and unknown types are counted and ignored, a
// flood beyond max_messages_per_second is dropped, probes/actions/issues/events are
// bounded in number and size.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "absl/strings/string_view.h"
#include "absl/time/time.h"
#include "herd/v1/types.pb.h"
#include "nlohmann/json.hpp"

namespace herd::agent {

struct ChannelLimits {
  size_t max_line_bytes = 1 << 20;
  uint32_t max_messages_per_second = 1000;
  size_t max_probes = 256;
  size_t max_actions = 128;
  size_t kept_issues = 20;
  size_t kept_events = 20;
  size_t probe_history = 300;   // numeric points kept per probe
  size_t max_text_bytes = 4096; // longest probe value / issue message kept (stack: 4x)
};

// Splits a byte stream into lines. A line longer than the bound is dropped whole (the bytes
// up to its newline are discarded) and counted.
class LineFramer {
 public:
  explicit LineFramer(size_t max_line) : max_line_(max_line) {}
  void Feed(absl::string_view data, const std::function<void(absl::string_view)>& on_line);
  uint64_t oversized() const { return oversized_; }

 private:
  size_t max_line_;
  std::string buf_;
  bool discarding_ = false;
  uint64_t oversized_ = 0;
};

// A point of a probe's numeric history.
struct ProbePoint {
  int64_t at_unix_ms;
  double value;
};

class ModuleChannelState {
 public:
  enum class Result { kOk, kInvalidJson, kUnknownType, kFlood, kInvalidMessage };

  explicit ModuleChannelState(ChannelLimits limits = {}) : limits_(limits) {}

  // Called for every message of a known type once handled: (type, data). PM2's bus carries
  // them (process:exception, process:msg, human:event, axm:*) to whoever listens.
  std::function<void(const std::string&, const nlohmann::json&)> on_message;
  // Called for axm:reply: (action name, the `return` value).
  std::function<void(const std::string&, const nlohmann::json&)> on_reply;
  // Called for scoped action messages: (action name, uuid, "stream"|"error"|"end", data).
  std::function<void(const std::string&, const std::string&, const std::string&,
                     const nlohmann::json&)>
      on_scoped;

  // Handles one line received at `now` (wall time).
  Result HandleLine(absl::string_view line, absl::Time now);

  // Forgets the issues (an operator saw them): the number of groups dropped.
  size_t ClearIssues();

  // A new process of the module starts: registrations and announcements belong to the old
  // one and are dropped; issues, events and probe history are kept.
  void ResetForNewProcess();

  void set_connected(bool c) { stats_.set_connected(c); }
  void count_oversized(uint64_t n) { stats_.set_oversized_lines(stats_.oversized_lines() + n); }

  const herd::v1::ChannelStats& stats() const { return stats_; }
  const std::vector<pid_t>& pid_override() const { return pid_override_; }
  // The announced pids are sampled beside the module's own process, not instead of it.
  bool pid_join() const { return pid_join_; }
  bool has_action(const std::string& name) const { return actions_.count(name) > 0; }
  const std::map<std::string, herd::v1::Probe>& probes() const { return probes_; }
  const std::deque<ProbePoint>* history(const std::string& probe) const;

  // Fills the channel-derived fields of `info` (widget, probes, actions, issues, events,
  // pid_override, channel stats, announced config).
  void Fill(herd::v1::ModuleInfo* info) const;
  // The probes to show in `list`: the widget's main_probes if announced, else the first
  // `max` probes by name.
  std::vector<herd::v1::Probe> MainProbes(size_t max = 3) const;

 private:
  bool Admit(absl::Time now);
  void OnConfiguration(const nlohmann::json& data);
  void OnMonitor(const nlohmann::json& data, absl::Time now);
  void OnAction(const nlohmann::json& data);
  void OnException(const nlohmann::json& data, absl::Time now);
  void OnEvent(const nlohmann::json& data, absl::Time now);
  std::string Clip(std::string s, size_t max) const;

  ChannelLimits limits_;
  herd::v1::ChannelStats stats_;
  // Flood control: messages admitted in the current one-second window.
  int64_t window_second_ = 0;
  uint32_t window_count_ = 0;

  herd::v1::ModuleWidget widget_;
  bool widget_announced_ = false;
  std::string announced_conf_json_;
  std::vector<pid_t> pid_override_;
  bool pid_join_ = false;
  std::map<std::string, herd::v1::Probe> probes_;
  std::map<std::string, std::deque<ProbePoint>> history_;
  std::map<std::string, herd::v1::ModuleAction> actions_;
  uint64_t issues_count_ = 0;
  std::deque<herd::v1::ModuleIssue> issues_;
  std::deque<herd::v1::ModuleEventRecord> events_;
};

}  // namespace herd::agent
